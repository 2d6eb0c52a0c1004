//! What the connections of one stage share: the next entries to hand out and the counts of
//! what the server acknowledged.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::dataset::Dataset;
use crate::interrupt;
use crate::shard::Shard;

/// Shared state of a running stage.
#[derive(Debug)]
pub struct StageState {
    next: AtomicU64,
    end: u64,
    shard: Shard,
    /// Entries the server acknowledged with `+OK`.
    pub acked: AtomicU64,
    /// Payload bytes of the acknowledged entries.
    pub bytes: AtomicU64,
    /// Error replies received.
    pub errors: AtomicU64,
    /// Connections re-established after a break.
    pub reconnects: AtomicU64,
    stop: AtomicBool,
    first_error: Mutex<Option<String>>,
}

impl StageState {
    /// State for writing this shard's part of a stage of `keys` entries.
    pub fn new(keys: u64, shard: Shard) -> StageState {
        StageState {
            next: AtomicU64::new(0),
            end: shard.len(keys),
            shard,
            acked: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            first_error: Mutex::new(None),
        }
    }

    /// Hands out the next at most `count` consecutive entries (stage indexes), or `None`
    /// when all are handed out.
    pub fn take(&self, count: u64) -> Option<Range<u64>> {
        let mut position = self.next.load(Relaxed);
        loop {
            if position >= self.end {
                return None;
            }
            let range = self.shard.range(position, count, self.end);
            let len = range.end - range.start;
            match self
                .next
                .compare_exchange_weak(position, position + len, Relaxed, Relaxed)
            {
                Ok(_) => return Some(range),
                Err(now) => position = now,
            }
        }
    }

    /// The stage index of this shard's `position`-th entry.
    pub fn global(&self, position: u64) -> u64 {
        self.shard.global(position)
    }

    /// Entries this process writes for the stage.
    pub fn planned(&self) -> u64 {
        self.end
    }

    /// True when connections should send nothing more: an error, or an interrupt.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Relaxed) || interrupt::requested()
    }

    /// Records an error reply to the command carrying `entries` and stops the stage.
    pub fn record_error(&self, dataset: &Dataset, entries: Range<u64>, message: &str) {
        self.errors.fetch_add(entries.end - entries.start, Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            let key = String::from_utf8_lossy(&dataset.key(entries.start)).into_owned();
            let command = if entries.end - entries.start > 1 {
                "MSET"
            } else {
                "SET"
            };
            *first = Some(format!("the server refused {command} {key}: {message}"));
        }
        self.stop.store(true, Relaxed);
    }

    /// Records a failure that is not an error reply (a connection that could not be mended).
    pub fn record_failure(&self, message: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(message);
        }
        self.stop.store(true, Relaxed);
    }

    /// The first error of the stage, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
