//! How a connection batches, groups and windows its entries.

/// Bytes encoded per write, about.
pub const WRITE_BATCH_BYTES: u64 = 64 << 10;

/// How a connection batches, groups and windows its entries.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Entries encoded and written at once.
    pub batch: u64,
    /// Entries per command: 1 writes `SET`, more write `MSET` (one reply per command).
    pub group: u64,
    /// Most entries in flight (the stage's `pipeline`).
    pub window: u32,
}

impl WriterConfig {
    /// Batches of about 64 KiB, at most a quarter of the window so writing never waits for
    /// a whole window to drain. Entries with a TTL need `SET … PX`, so they are never grouped.
    pub fn new(
        pipeline: u32,
        mean_entry_bytes: u64,
        keys_per_command: u32,
        has_ttl: bool,
    ) -> WriterConfig {
        let by_bytes = (WRITE_BATCH_BYTES / mean_entry_bytes.max(1)).max(1);
        // A command never carries more than a batch's worth of bytes (huge values: one each).
        let group = if has_ttl {
            1
        } else {
            u64::from(keys_per_command.min(pipeline).max(1)).min(by_bytes)
        };
        let by_window = u64::from(pipeline / 4).max(1);
        let batch = by_bytes.min(by_window).max(group).min(u64::from(pipeline));
        WriterConfig {
            batch,
            group,
            window: pipeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_config_respects_window_group_and_bytes() {
        let serial = WriterConfig::new(1, 544, 16, false);
        assert_eq!((serial.batch, serial.group, serial.window), (1, 1, 1));
        let odd = WriterConfig::new(7, 544, 16, false);
        assert!(odd.group <= 7 && odd.batch <= 7 && odd.batch >= odd.group);
        let ttl = WriterConfig::new(1024, 544, 16, true);
        assert_eq!(ttl.group, 1);
        let huge = WriterConfig::new(1024, 64 << 20, 16, false);
        assert_eq!(
            (huge.group, huge.batch),
            (1, 1),
            "64 MiB values go one per command"
        );
    }
}
