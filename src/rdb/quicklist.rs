//! Lists: where `RPUSH` splits a list's items into quicklist nodes (Redis `quicklist.c`,
//! `t_list.c`), so that a payload's nodes are the ones the server's commands would have
//! made.
//!
//! An item goes into the tail node when the node's listpack bytes, plus the item's length,
//! plus 8 (an estimate of an entry's overhead) stay within the node limit
//! (`list-max-listpack-size`: -1 to -5 for 4 KiB to 64 KiB; positive, items per node within
//! 8 KiB); else it starts a node. Redis 7.2 and later (and Valkey) keep a small list as one
//! listpack instead: `RPUSH` turns a list into a quicklist only when the listpack's bytes
//! plus the raw bytes of the items it adds pass the limit, and a loaded quicklist of one
//! node within the limit becomes a listpack again. Redis 7.4 and Valkey 8 put an item longer
//! than the node limit in a plain node of its own (its bytes, not a listpack).

use super::server::Family;

/// The node size limits of `list-max-listpack-size` from -1 to -5.
const LEVELS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
/// Most bytes of a node limited by its item count.
const SAFETY_LIMIT: usize = 8192;
/// What `quicklist.c` adds to an item's length for its entry's overhead.
const ENTRY_OVERHEAD: usize = 8;
/// Bytes of an empty listpack.
pub const EMPTY_LISTPACK: usize = super::listpack::EMPTY_BYTES;

/// How one server splits lists into nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nodes {
    family: Family,
    /// `list-max-listpack-size`.
    fill: i64,
}

impl Nodes {
    /// The rule of a server of `family` with `list-max-listpack-size` `fill`; `None` for
    /// settings cachefill does not reproduce: sizes beyond -5, and on 7.2 and later item
    /// counts (whose listpacks and quicklists are bounded by other rules).
    pub fn new(family: Family, fill: i64) -> Option<Nodes> {
        let supported = match family {
            Family::Ziplists => false,
            Family::Redis70 => fill >= -5,
            Family::Redis72 | Family::Redis74 => (-5..0).contains(&fill),
        };
        supported.then_some(Nodes { family, fill })
    }

    /// The node size limit of a size-limited fill.
    fn size_limit(&self) -> Option<usize> {
        (self.fill < 0).then(|| LEVELS[(-self.fill - 1) as usize])
    }

    /// True when an item of `len` bytes goes into a tail node of `bytes` bytes and `count`
    /// items (`_quicklistNodeAllowInsert`).
    #[inline]
    pub fn allows(&self, bytes: usize, count: u64, len: usize) -> bool {
        let new_bytes = bytes + len + ENTRY_OVERHEAD;
        match self.size_limit() {
            Some(limit) => new_bytes <= limit,
            // Limited by items: 7.0 only (see `new`).
            None => new_bytes <= SAFETY_LIMIT && (count as i64) < self.fill,
        }
    }

    /// True when an item of `len` bytes is a plain node of its own (7.4 and later:
    /// `isLargeElement`, longer than the node limit, or than 8 KiB when items are counted).
    #[inline]
    pub fn plain(&self, len: usize) -> bool {
        self.family == Family::Redis74 && len > self.size_limit().unwrap_or(SAFETY_LIMIT)
    }

    /// On 7.2 and later: true when a list whose items' raw bytes are `raw` in all stays one
    /// listpack (`listTypeTryConvertListpack` on a new key).
    pub fn stays_listpack(&self, raw: usize) -> bool {
        self.family.has_listpack_lists()
            && self
                .size_limit()
                .is_some_and(|limit| EMPTY_LISTPACK + raw <= limit)
    }

    /// The node size limit when lists may be one listpack (7.2 and later).
    pub fn listpack_limit(&self) -> Option<usize> {
        match self.family {
            Family::Redis72 | Family::Redis74 => self.size_limit(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_join_the_tail_node_while_it_stays_within_the_limit() {
        let nodes = Nodes::new(Family::Redis70, -2).unwrap();
        assert!(nodes.allows(8000, 100, 184));
        assert!(!nodes.allows(8000, 100, 185));
        let by_count = Nodes::new(Family::Redis70, 3).unwrap();
        assert!(by_count.allows(100, 2, 10));
        assert!(!by_count.allows(100, 3, 10));
        assert!(
            !by_count.allows(8180, 1, 10),
            "8 KiB at most whatever the count"
        );
        assert!(Nodes::new(Family::Redis72, 3).is_none());
        assert!(Nodes::new(Family::Redis70, -6).is_none());
    }

    #[test]
    fn on_7_4_items_longer_than_a_node_are_plain_nodes() {
        let nodes = Nodes::new(Family::Redis74, -2).unwrap();
        assert!(!nodes.plain(8192) && nodes.plain(8193));
        assert!(!Nodes::new(Family::Redis72, -2).unwrap().plain(100_000));
        assert!(Nodes::new(Family::Redis74, -1).unwrap().plain(4097));
    }

    #[test]
    fn on_7_2_small_lists_stay_one_listpack() {
        let nodes = Nodes::new(Family::Redis72, -2).unwrap();
        assert!(nodes.stays_listpack(8185));
        assert!(!nodes.stays_listpack(8186));
        assert!(!Nodes::new(Family::Redis70, -2).unwrap().stays_listpack(10));
    }
}
