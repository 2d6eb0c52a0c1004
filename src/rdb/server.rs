//! What a server's encodings are, learned once per target: which RDB version it loads (from
//! its version in `INFO server`), how it lays out lists, and the limits past which a key
//! leaves its compact encoding (from `CONFIG GET`, or the servers' defaults when `CONFIG`
//! is refused).

use std::collections::HashMap;

/// The RDB version whose payloads carry listpack hashes and sorted sets and quicklist 2
/// lists (Redis 7.0).
pub(super) const RDB_LISTPACKS: u16 = 10;
/// The RDB version whose payloads carry listpack sets (Redis 7.2).
pub(super) const RDB_LISTPACK_SETS: u16 = 11;
/// The RDB version of the plain types and intsets that cachefill writes: the oldest server
/// it supports (Redis 6.2) loads them.
pub(super) const RDB_PLAIN: u16 = 9;

/// Which server family a server is, by its version: what its RDB and its lists are like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Redis before 7.0: ziplists, which cachefill does not write (RDB 9).
    Ziplists,
    /// Redis 7.0: listpacks; lists are always quicklists (RDB 10).
    Redis70,
    /// Redis 7.2, Valkey 7.2: listpack sets, and small lists are one listpack (RDB 11).
    Redis72,
    /// Redis 7.4 and later, Valkey 8 and later: as 7.2, and a list item longer than a node
    /// may be is a node of its own, a plain one (RDB 11 and later).
    Redis74,
}

impl Family {
    /// True for 7.2 and later: listpack sets, lists of one listpack.
    pub fn has_listpack_lists(self) -> bool {
        matches!(self, Family::Redis72 | Family::Redis74)
    }
}

/// The limits past which a key leaves its compact encoding (`CONFIG GET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `hash-max-listpack-entries`.
    pub hash_entries: u64,
    /// `hash-max-listpack-value`.
    pub hash_value: u64,
    /// `zset-max-listpack-entries`.
    pub zset_entries: u64,
    /// `zset-max-listpack-value`.
    pub zset_value: u64,
    /// `set-max-intset-entries`.
    pub set_intset_entries: u64,
    /// `set-max-listpack-entries` (7.2+).
    pub set_entries: u64,
    /// `set-max-listpack-value` (7.2+).
    pub set_value: u64,
    /// `list-max-listpack-size`: positive, items per node; negative, -1 to -5 for 4 KiB to
    /// 64 KiB per node.
    pub list_size: i64,
    /// `list-compress-depth`: nodes left uncompressed at each end (0: none compressed). The
    /// server compresses the nodes of a payload as it loads it, as its commands would.
    pub list_compress_depth: u64,
    /// `stream-node-max-bytes` (0: no limit).
    pub stream_node_bytes: u64,
    /// `stream-node-max-entries` (0: no limit).
    pub stream_node_entries: u64,
}

impl Limits {
    /// The servers' defaults (Redis 6.2 to 8, Valkey 7.2 to 9).
    pub const DEFAULT: Limits = Limits {
        hash_entries: 512,
        hash_value: 64,
        zset_entries: 128,
        zset_value: 64,
        set_intset_entries: 512,
        set_entries: 128,
        set_value: 64,
        list_size: -2,
        list_compress_depth: 0,
        stream_node_bytes: 4096,
        stream_node_entries: 100,
    };

    /// The limits in a `CONFIG GET` reply (name → value); a missing or unreadable one keeps
    /// its default. Older names (`*-ziplist-*`) are read when the listpack ones are missing.
    pub fn from_config(config: &HashMap<String, String>) -> Limits {
        let mut limits = Limits::DEFAULT;
        let read = |names: [&str; 2], into: &mut u64| {
            if let Some(value) = names
                .iter()
                .find_map(|name| config.get(*name)?.trim().parse::<u64>().ok())
            {
                *into = value;
            }
        };
        read(
            ["hash-max-listpack-entries", "hash-max-ziplist-entries"],
            &mut limits.hash_entries,
        );
        read(
            ["hash-max-listpack-value", "hash-max-ziplist-value"],
            &mut limits.hash_value,
        );
        read(
            ["zset-max-listpack-entries", "zset-max-ziplist-entries"],
            &mut limits.zset_entries,
        );
        read(
            ["zset-max-listpack-value", "zset-max-ziplist-value"],
            &mut limits.zset_value,
        );
        read(
            ["set-max-intset-entries", "set-max-intset-entries"],
            &mut limits.set_intset_entries,
        );
        read(
            ["set-max-listpack-entries", "set-max-listpack-entries"],
            &mut limits.set_entries,
        );
        read(
            ["set-max-listpack-value", "set-max-listpack-value"],
            &mut limits.set_value,
        );
        read(
            ["list-compress-depth", "list-compress-depth"],
            &mut limits.list_compress_depth,
        );
        read(
            ["stream-node-max-bytes", "stream-node-max-bytes"],
            &mut limits.stream_node_bytes,
        );
        read(
            ["stream-node-max-entries", "stream-node-max-entries"],
            &mut limits.stream_node_entries,
        );
        if let Some(size) = ["list-max-listpack-size", "list-max-ziplist-size"]
            .iter()
            .find_map(|name| config.get(*name)?.trim().parse::<i64>().ok())
        {
            limits.list_size = size;
        }
        limits
    }
}

/// How one server encodes keys: what cachefill needs to write payloads it loads as the same
/// objects its commands would have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerEncoding {
    /// The family, by the server's version.
    pub family: Family,
    /// The highest RDB version the server's payloads may carry (its own, as far as
    /// cachefill writes: 9, 10 or 11).
    pub rdb_version: u16,
    /// Its compact-encoding limits.
    pub limits: Limits,
}

impl ServerEncoding {
    /// A server's encoding from its `INFO server` version fields and its `CONFIG GET`
    /// reply. `version` is `valkey_version` on Valkey (`valkey` true), else
    /// `redis_version`; an unknown version is taken for Redis 7.0 (a server that refuses
    /// the payloads then gets commands).
    pub fn new(version: Option<&str>, valkey: bool, config: &HashMap<String, String>) -> Self {
        let family = match version.and_then(major_minor) {
            // Valkey forked from Redis 7.2; its 8.0 took 7.4's plain list nodes.
            Some((major, _)) if valkey && major < 8 => Family::Redis72,
            Some(_) if valkey => Family::Redis74,
            Some((major, _)) if major < 7 => Family::Ziplists,
            Some((7, 0 | 1)) | None => Family::Redis70,
            Some((7, 2 | 3)) => Family::Redis72,
            Some(_) => Family::Redis74,
        };
        ServerEncoding {
            family,
            rdb_version: match family {
                Family::Ziplists => RDB_PLAIN,
                Family::Redis70 => RDB_LISTPACKS,
                Family::Redis72 | Family::Redis74 => RDB_LISTPACK_SETS,
            },
            limits: Limits::from_config(config),
        }
    }

    /// A server of RDB version `version` (10: Redis 7.0; 11 and later: Redis 7.2 and later,
    /// Valkey; taken for 7.2, whose lists Redis 7.4 and Valkey 8 load alike unless an item
    /// is longer than a node) with the default limits: for payloads made without a server
    /// (`export`).
    pub fn of_rdb_version(version: u16) -> Self {
        let family = match version {
            ..RDB_LISTPACKS => Family::Ziplists,
            RDB_LISTPACKS => Family::Redis70,
            _ => Family::Redis72,
        };
        ServerEncoding {
            family,
            rdb_version: version.min(RDB_LISTPACK_SETS),
            limits: Limits::DEFAULT,
        }
    }

    /// True when the server loads listpacks (hashes, sorted sets, list nodes).
    pub fn has_listpacks(&self) -> bool {
        self.rdb_version >= RDB_LISTPACKS
    }

    /// True when sets can be listpacks on this server.
    pub fn has_listpack_sets(&self) -> bool {
        self.rdb_version >= RDB_LISTPACK_SETS
    }
}

/// `major.minor` of a version such as `7.0.15`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_and_rdb_version_follow_the_server_version() {
        let none = HashMap::new();
        let of = |v: &str, valkey| {
            let e = ServerEncoding::new(Some(v), valkey, &none);
            (e.family, e.rdb_version)
        };
        assert_eq!(of("6.2.5", false), (Family::Ziplists, 9));
        assert_eq!(of("7.0.15", false), (Family::Redis70, 10));
        assert_eq!(of("7.2.4", false), (Family::Redis72, 11));
        assert_eq!(of("7.4.1", false), (Family::Redis74, 11));
        assert_eq!(of("8.0.0", false), (Family::Redis74, 11));
        assert_eq!(of("9.1.2", true), (Family::Redis74, 11));
        assert_eq!(of("8.0.1", true), (Family::Redis74, 11));
        assert_eq!(of("7.2.5", true), (Family::Redis72, 11));
        let unknown = ServerEncoding::new(None, false, &none);
        assert_eq!((unknown.family, unknown.rdb_version), (Family::Redis70, 10));
    }

    #[test]
    fn limits_come_from_config_with_defaults_for_the_rest() {
        let config: HashMap<String, String> = [
            ("hash-max-listpack-entries", "64"),
            ("zset-max-ziplist-value", "32"),
            ("list-max-listpack-size", "-3"),
            ("set-max-intset-entries", "not a number"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let limits = Limits::from_config(&config);
        assert_eq!(limits.hash_entries, 64);
        assert_eq!(limits.zset_value, 32);
        assert_eq!(limits.list_size, -3);
        assert_eq!(limits.set_intset_entries, 512);
        assert_eq!(limits.hash_value, 64);
    }
}
