//! How a connection batches, groups and windows its entries.

/// Bytes encoded per write, about.
pub(super) const WRITE_BATCH_BYTES: u64 = 64 << 10;

/// How a connection batches, groups and windows its entries.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriterConfig {
    /// Entries encoded and written at once.
    pub batch: u64,
    /// Entries per command: 1 writes `SET`, more write `MSET` (one reply per command).
    pub group: u64,
    /// Most entries in flight (the stage's `pipeline`); typed stages: commands.
    pub window: u32,
    /// A typed stage: spans are the commands of one key, one reply each.
    pub typed: bool,
}

/// Most entries in one `MSET` when the plan leaves the grouping to cachefill.
const MAX_GROUP: u64 = 1024;

impl WriterConfig {
    /// Batches of about 64 KiB, at most a quarter of the window so writing never waits for
    /// a whole window to drain. Entries with a TTL need `SET … PX`, so they are never grouped.
    /// Without `keys_per_command`, entries are grouped by bytes, the rule that also splits
    /// typed keys: an `MSET` carries about 64 KiB (at most 1024 entries and the window).
    pub(super) fn new(
        pipeline: u32,
        mean_entry_bytes: u64,
        keys_per_command: Option<u32>,
        has_ttl: bool,
    ) -> WriterConfig {
        let by_bytes = (WRITE_BATCH_BYTES / mean_entry_bytes.max(1)).max(1);
        // A command never carries more than a batch's worth of bytes (huge values: one each).
        let group = match keys_per_command {
            _ if has_ttl => 1,
            Some(k) => u64::from(k.min(pipeline).max(1)).min(by_bytes),
            // Larger commands win even with fewer in flight: the server parses one while the
            // next is on its way (scripts/bench: 80 B entries, 16 per MSET 1.42× the
            // server-only ceiling, 512 1.28×, 819 1.16×).
            None => by_bytes.min(MAX_GROUP).min(u64::from(pipeline)),
        };
        let by_window = u64::from(pipeline / 4).max(1);
        let batch = by_bytes.min(by_window).max(group).min(u64::from(pipeline));
        WriterConfig {
            batch,
            group,
            window: pipeline,
            typed: false,
        }
    }

    /// A typed stage: the window counts commands, a write carries about 64 KiB of them
    /// (at most a quarter of the window), one reply per command.
    pub(super) fn typed(pipeline: u32, command_bytes: u64) -> WriterConfig {
        let by_bytes = (WRITE_BATCH_BYTES / command_bytes.max(1)).max(1);
        let by_window = u64::from(pipeline / 4).max(1);
        WriterConfig {
            batch: by_bytes.min(by_window),
            group: 1,
            window: pipeline,
            typed: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_config_respects_window_group_and_bytes() {
        let serial = WriterConfig::new(1, 544, Some(16), false);
        assert_eq!((serial.batch, serial.group, serial.window), (1, 1, 1));
        let odd = WriterConfig::new(7, 544, Some(16), false);
        assert!(odd.group <= 7 && odd.batch <= 7 && odd.batch >= odd.group);
        let ttl = WriterConfig::new(1024, 544, None, true);
        assert_eq!(ttl.group, 1);
        let huge = WriterConfig::new(1024, 64 << 20, None, false);
        assert_eq!(
            (huge.group, huge.batch),
            (1, 1),
            "64 MiB values go one per command"
        );
        // By bytes: about 64 KiB per MSET, the window at most.
        assert_eq!(WriterConfig::new(1024, 1032, None, false).group, 63);
        assert_eq!(WriterConfig::new(1024, 80, None, false).group, 819);
        assert_eq!(WriterConfig::new(512, 80, None, false).group, 512);
        assert_eq!(WriterConfig::new(1, 80, None, false).group, 1);
    }
}
