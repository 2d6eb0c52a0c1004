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
pub(super) const EMPTY_LISTPACK: usize = super::listpack::EMPTY_BYTES;

/// One node of a list: it ends before item `end` (it starts where the node before it ends),
/// holds `count` items in `bytes` (its listpack's; a plain node's, its item's length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NodeSpan {
    pub end: u64,
    pub bytes: usize,
    pub count: u64,
    pub plain: bool,
}

/// How one server splits lists into nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Nodes {
    family: Family,
    /// `list-max-listpack-size`.
    fill: i64,
}

impl Nodes {
    /// The rule of a server of `family` with `list-max-listpack-size` `fill`; `None` for
    /// settings cachefill does not reproduce: sizes beyond -5, and on 7.2 and later item
    /// counts (whose listpacks and quicklists are bounded by other rules).
    pub(super) fn new(family: Family, fill: i64) -> Option<Nodes> {
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
    pub(super) fn allows(&self, bytes: usize, count: u64, len: usize) -> bool {
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
    pub(super) fn plain(&self, len: usize) -> bool {
        self.family == Family::Redis74 && len > self.size_limit().unwrap_or(SAFETY_LIMIT)
    }

    /// On 7.2 and later: true when a list whose items' raw bytes are `raw` in all stays one
    /// listpack (`listTypeTryConvertListpack` on a new key).
    pub(super) fn stays_listpack(&self, raw: usize) -> bool {
        self.family.has_listpack_lists()
            && self
                .size_limit()
                .is_some_and(|limit| EMPTY_LISTPACK + raw <= limit)
    }

    /// The nodes `RPUSH` leaves a new list in, its `items` (each item's length and the bytes
    /// of its listpack entry) sent `per_command` a command, into `nodes`; true when the list
    /// stays one listpack (7.2 and later), whose bytes are then the one node's. On 7.2 and
    /// later a command checks the raw bytes it adds before it pushes anything: a list whose
    /// listpack would pass the limit becomes a quicklist, the listpack so far its first node
    /// (of whatever size), and the command's items go on by the node rule from there.
    pub(super) fn layout(
        &self,
        items: &[(usize, usize)],
        per_command: u64,
        nodes: &mut Vec<NodeSpan>,
    ) -> bool {
        nodes.clear();
        let mut listpack = self.family.has_listpack_lists();
        let limit = self.size_limit().unwrap_or(SAFETY_LIMIT);
        let (mut lp_bytes, mut lp_count) = (EMPTY_LISTPACK, 0u64);
        for (n, chunk) in items.chunks(per_command.max(1) as usize).enumerate() {
            let first = (n as u64) * per_command.max(1);
            if listpack {
                let raw: usize = chunk.iter().map(|&(len, _)| len).sum();
                if lp_bytes + raw <= limit {
                    lp_bytes += chunk.iter().map(|&(_, entry)| entry).sum::<usize>();
                    lp_count += chunk.len() as u64;
                    continue;
                }
                listpack = false;
                if lp_count > 0 {
                    nodes.push(NodeSpan {
                        end: first,
                        bytes: lp_bytes,
                        count: lp_count,
                        plain: false,
                    });
                }
            }
            for (k, &(len, entry)) in chunk.iter().enumerate() {
                let end = first + k as u64 + 1;
                if self.plain(len) {
                    nodes.push(NodeSpan {
                        end,
                        bytes: len,
                        count: 1,
                        plain: true,
                    });
                    continue;
                }
                match nodes.last_mut() {
                    Some(tail) if !tail.plain && self.allows(tail.bytes, tail.count, len) => {
                        tail.bytes += entry;
                        tail.count += 1;
                        tail.end = end;
                    }
                    _ => nodes.push(NodeSpan {
                        end,
                        bytes: EMPTY_LISTPACK + entry,
                        count: 1,
                        plain: false,
                    }),
                }
            }
        }
        if listpack {
            nodes.push(NodeSpan {
                end: items.len() as u64,
                bytes: lp_bytes,
                count: lp_count,
                plain: false,
            });
        }
        listpack
    }

    /// True when a payload of `nodes` loads as the object `RPUSH` made (`listpack`: one
    /// listpack): a server of 7.2 and later turns a loaded quicklist of one listpack node
    /// within the limit into a listpack, so a listpack over the limit, or a quicklist of one
    /// such node, cannot be sent as what it is.
    pub(super) fn reloads_as(&self, nodes: &[NodeSpan], listpack: bool) -> bool {
        let Some(limit) = self.listpack_limit() else {
            return true;
        };
        let one_small_node = matches!(nodes, [node] if !node.plain && node.bytes <= limit);
        one_small_node == listpack
    }

    /// The node size limit when lists may be one listpack (7.2 and later).
    pub(super) fn listpack_limit(&self) -> Option<usize> {
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

    /// Items of 100 bytes (103-byte entries): 79 fit in one listpack; a command that adds
    /// the 80th makes a quicklist whose first node is the listpack so far.
    #[test]
    fn a_command_that_passes_the_limit_wraps_the_listpack_so_far() {
        let nodes = Nodes::new(Family::Redis72, -2).unwrap();
        let items = vec![(100, 103); 200];
        let mut spans = Vec::new();
        // One command of all 200: the list is a quicklist from the first item.
        assert!(!nodes.layout(&items, 1024, &mut spans));
        assert_eq!(spans[0].end, 79);
        assert!(nodes.reloads_as(&spans, false));
        // Commands of 50: the first stays a listpack (5,157 bytes); the second, which
        // would take it past the limit, wraps it as node 1, and its items go on by the node
        // rule: 29 more into node 1 (8,144 bytes), then new nodes.
        assert!(!nodes.layout(&items, 50, &mut spans));
        assert_eq!(
            spans.iter().map(|n| (n.end, n.count)).collect::<Vec<_>>(),
            [(79, 79), (158, 79), (200, 42)]
        );
        // 79 items: one listpack within the limit; 80 in one command of raw 8,000 bytes:
        // one listpack of 8,247 bytes, which a load would make a quicklist.
        assert!(nodes.layout(&items[..79], 1024, &mut spans));
        assert!(nodes.reloads_as(&spans, true));
        assert!(nodes.layout(&items[..80], 1024, &mut spans));
        assert_eq!(spans[0].bytes, 7 + 80 * 103);
        assert!(!nodes.reloads_as(&spans, true));
        // 7.0 has no listpack lists: batching makes no difference.
        let old = Nodes::new(Family::Redis70, -2).unwrap();
        assert!(!old.layout(&items[..80], 1024, &mut spans));
        assert_eq!(spans.len(), 2);
    }

    #[test]
    fn on_7_2_small_lists_stay_one_listpack() {
        let nodes = Nodes::new(Family::Redis72, -2).unwrap();
        assert!(nodes.stays_listpack(8185));
        assert!(!nodes.stays_listpack(8186));
        assert!(!Nodes::new(Family::Redis70, -2).unwrap().stays_listpack(10));
    }
}
