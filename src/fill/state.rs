//! What the connections of one stage share: the next entries to hand out and the counts of
//! what the server acknowledged.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::key_bits::KeyBits;
use super::lock::lock;
use super::recovery::restart::Restarts;
use super::stall::Stalls;
use crate::dataset::Dataset;
use crate::interrupt;
use crate::plan::NodeAddr;
use crate::shard::Shard;

/// Shared state of a running stage.
#[derive(Debug)]
pub(super) struct StageState {
    next: AtomicU64,
    end: AtomicU64,
    shard: Shard,
    /// `until_memory`: entries may be handed out only below `limit`, which a monitor raises
    /// as memory allows, until it closes the stage.
    budgeted: bool,
    limit: AtomicU64,
    closed: AtomicBool,
    more: tokio::sync::Notify,
    /// Entries the server acknowledged with `+OK`.
    pub acked: AtomicU64,
    /// Payload bytes of the acknowledged entries.
    pub bytes: AtomicU64,
    /// Typed stages: elements of the keys written whole.
    pub elements: AtomicU64,
    /// Typed stages: keys left with some of their elements when the stage stopped.
    pub partial_keys: AtomicU64,
    /// Error replies received.
    pub errors: AtomicU64,
    /// Connections re-established after a break.
    pub reconnects: AtomicU64,
    /// Entries sent whose acknowledgement never came (the stage gave up on their
    /// connection): the server may or may not have applied them.
    pub unacknowledged: AtomicU64,
    /// Connections waiting for replies that do not come.
    pub stalls: Stalls,
    /// The server processes the stage met, and the re-check of typed keys a restart calls for.
    processes: Restarts,
    /// Servers found restarted (a new `run_id`) while the stage ran.
    pub restarts: AtomicU64,
    /// Entries a restarted server no longer held, written again.
    pub rewritten: AtomicU64,
    /// Typed stages: the keys counted in `acked`, so that each counts once however often
    /// it is completed (a failover re-check completes again keys already counted).
    written: KeyBits,
    /// Typed stages: the keys a `RESTORE` wrote (each once), and how many.
    restored: KeyBits,
    pub restored_keys: AtomicU64,
    stop: AtomicBool,
    first_error: Mutex<Option<String>>,
    /// Lines for the display from where there is none (a primary lost, found again),
    /// shown at its next tick.
    notes: Mutex<Vec<String>>,
}

impl StageState {
    /// State for writing this shard's part of a stage of `keys` entries; `budgeted` stages
    /// hand out entries only as a memory monitor allows.
    pub(super) fn new(keys: u64, shard: Shard, budgeted: bool) -> StageState {
        StageState {
            next: AtomicU64::new(0),
            end: AtomicU64::new(shard.len(keys)),
            shard,
            budgeted,
            limit: AtomicU64::new(if budgeted { 0 } else { u64::MAX }),
            closed: AtomicBool::new(false),
            more: tokio::sync::Notify::new(),
            acked: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            elements: AtomicU64::new(0),
            partial_keys: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            unacknowledged: AtomicU64::new(0),
            stalls: Stalls::default(),
            processes: Restarts::default(),
            restarts: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
            written: KeyBits::new(),
            restored: KeyBits::new(),
            restored_keys: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            first_error: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// Hands out the next at most `count` consecutive entries (stage indexes), or `None`
    /// when all are handed out.
    pub(super) fn take(&self, count: u64) -> Option<Range<u64>> {
        let mut position = self.next.load(Relaxed);
        loop {
            let end = self.end.load(Relaxed).min(self.limit.load(Relaxed));
            if position >= end {
                return None;
            }
            let range = self.shard.range(position, count, end);
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
    pub(super) fn global(&self, position: u64) -> u64 {
        self.shard.global(position)
    }

    /// This shard's position of stage index `index`.
    pub(super) fn position(&self, index: u64) -> u64 {
        self.shard.position(index)
    }

    /// Typed key `index` was found complete: true when it counts now (the first time), false
    /// when it is already counted in `acked` and `elements`.
    pub(super) fn count_key(&self, index: u64) -> bool {
        self.written.insert(self.position(index))
    }

    /// Typed key `index` was acknowledged whole by a `RESTORE`: it counts in
    /// `restored_keys`, once however often it is restored.
    pub(super) fn count_restored(&self, index: u64) {
        if self.restored.insert(self.position(index)) {
            self.restored_keys.fetch_add(1, Relaxed);
        }
    }

    /// Takes back the count of typed key `index` (its completion is in doubt: a failover
    /// lost the primary that acknowledged it), so that it counts again once complete on
    /// its new owner; true when it had counted.
    pub(super) fn take_back(&self, dataset: &Dataset, index: u64) -> bool {
        let counted = self.written.remove(self.position(index));
        if counted {
            self.acked.fetch_sub(1, Relaxed);
            self.elements
                .fetch_sub(dataset.entry(index).elements, Relaxed);
        }
        counted
    }

    /// Entries this process writes for the stage (for `until_memory`: so far allowed, and
    /// the final count once closed).
    pub(super) fn planned(&self) -> u64 {
        self.end.load(Relaxed)
    }

    /// True for `until_memory` stages.
    pub(super) fn is_budgeted(&self) -> bool {
        self.budgeted
    }

    /// Positions handed out so far.
    pub(super) fn handed_out(&self) -> u64 {
        self.next.load(Relaxed).min(self.planned())
    }

    /// Waits until a budgeted stage may hand out more; false when it never will.
    pub(super) async fn wait_for_budget(&self) -> bool {
        if !self.budgeted {
            return false;
        }
        loop {
            let notified = self.more.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Relaxed) || self.should_stop() {
                return false;
            }
            if self.next.load(Relaxed) < self.limit.load(Relaxed).min(self.planned()) {
                return true;
            }
            notified.await;
        }
    }

    /// Lets a budgeted stage hand out entries up to position `limit`.
    pub(super) fn raise_limit(&self, limit: u64) {
        if self.limit.fetch_max(limit, Relaxed) < limit {
            self.more.notify_waiters();
        }
    }

    /// Ends a budgeted stage: nothing more is handed out, and what was handed out is the
    /// stage's count (a prefix of the index range).
    pub(super) fn close(&self) {
        self.closed.store(true, Relaxed);
        loop {
            let handed = self.next.load(Relaxed);
            self.limit.store(handed, Relaxed);
            // A take that read the old limit may have slipped in: settle on what it took.
            if self.next.load(Relaxed) == handed {
                self.end.fetch_min(handed, Relaxed);
                break;
            }
        }
        self.more.notify_waiters();
    }

    /// Records that `addr` answered a connection of this stage as process `run_id`
    /// (`target_knew`: the process the target's connections met there last). True when the
    /// stage knew another process there: it restarted. With `recheck_keys` (a standalone
    /// typed stage) every key handed out so far is then re-checked, each resumed once (see
    /// [`Self::next_recheck`]).
    pub(super) fn note_run_id(
        &self,
        addr: &NodeAddr,
        run_id: &str,
        target_knew: Option<String>,
        recheck_keys: bool,
    ) -> bool {
        self.processes.note(addr, run_id, target_knew, || {
            recheck_keys.then(|| self.handed_out())
        })
    }

    /// [`Self::note_run_id`] for a primary of a cluster stage: when it restarted,
    /// `on_restart` runs under the same lock as the note (the router records there which
    /// typed keys the primary's re-check resumes).
    pub(super) fn note_node_run_id(
        &self,
        addr: &NodeAddr,
        run_id: &str,
        target_knew: Option<String>,
        on_restart: impl FnOnce(),
    ) -> bool {
        self.processes.note(addr, run_id, target_knew, || {
            on_restart();
            None
        })
    }

    /// Positions below this were handed out before the latest restart: their keys are the
    /// re-check's, whoever held them then.
    pub(super) fn recheck_upto(&self) -> u64 {
        self.processes.recheck_upto()
    }

    /// True while typed keys remain to be re-checked after a restart.
    pub(super) fn recheck_pending(&self) -> bool {
        self.processes.pending()
    }

    /// The next typed key (stage index) to re-check after a restart, if any.
    pub(super) fn next_recheck(&self) -> Option<u64> {
        self.processes.next().map(|position| self.global(position))
    }

    /// True when typed key `index` was handed out as a re-check resume (after a restart)
    /// whose element count has not come back: whoever holds it resumes it.
    pub(super) fn is_recheck_resume(&self, index: u64) -> bool {
        self.processes.is_resuming(self.position(index))
    }

    /// The element count of typed key `index` came back, `short` of the dataset's. For a
    /// key re-checked after a restart: its count is taken back (it counts again once whole),
    /// and a short one is `rewritten`. True when it had counted (its payload with it).
    pub(super) fn rechecked_counted(&self, dataset: &Dataset, index: u64, short: bool) -> bool {
        if !self.processes.counted(self.position(index)) {
            return false;
        }
        if short {
            self.rewritten.fetch_add(1, Relaxed);
        }
        self.take_back(dataset, index)
    }

    /// Once the stage's tasks have ended: the keys a restart's re-check did not get to (an
    /// interrupt, or a failure, stopped it) are in doubt, the restarted server may hold them
    /// or not. Those that counted before the restart no longer count as written; they are
    /// `unacknowledged` instead.
    pub(super) fn give_up_rechecks(&self, dataset: &Dataset) {
        let mut unchecked = 0;
        self.processes.give_up(|position| {
            unchecked += u64::from(self.in_doubt(dataset, self.global(position)));
        });
        self.unacknowledged.fetch_add(unchecked, Relaxed);
    }

    /// Takes back the count of typed key `index`, its payload with it, when it counted as
    /// written (a restart's re-check could not confirm it); true when it had counted. The
    /// caller counts it `unacknowledged`.
    pub(super) fn in_doubt(&self, dataset: &Dataset, index: u64) -> bool {
        let counted = self.take_back(dataset, index);
        if counted {
            self.bytes.fetch_sub(dataset.payload_bytes(index), Relaxed);
        }
        counted
    }

    /// True when connections should send nothing more: an error, or an interrupt.
    pub(super) fn should_stop(&self) -> bool {
        self.stop.load(Relaxed) || interrupt::requested()
    }

    /// Records the refusal of the `MSET` of `indices` (keys of one cluster slot) and stops
    /// the stage.
    pub(super) fn record_listed_error(&self, dataset: &Dataset, indices: &[u64], message: &str) {
        let Some(&first) = indices.first() else {
            return;
        };
        self.record_refused(dataset, first, indices.len() as u64, "MSET", message);
    }

    /// Records an error reply to the command carrying `entries` and stops the stage.
    pub(super) fn record_error(&self, dataset: &Dataset, entries: Range<u64>, message: &str) {
        let command = if entries.end - entries.start > 1 {
            "MSET"
        } else {
            "SET"
        };
        self.record_refusal(dataset, entries, command, message);
    }

    /// Records the refusal of `command` for `entries` (typed keys: one key) and stops the
    /// stage.
    pub(super) fn record_refusal(
        &self,
        dataset: &Dataset,
        entries: Range<u64>,
        command: &str,
        message: &str,
    ) {
        self.record_refused(
            dataset,
            entries.start,
            entries.end - entries.start,
            command,
            message,
        );
    }

    /// Records the refusal of `command` for `count` entries, the first `first`, and stops
    /// the stage.
    fn record_refused(
        &self,
        dataset: &Dataset,
        first: u64,
        count: u64,
        command: &str,
        message: &str,
    ) {
        self.errors.fetch_add(count, Relaxed);
        let mut first_error = lock(&self.first_error);
        if first_error.is_none() {
            let key = String::from_utf8_lossy(&dataset.key(first)).into_owned();
            *first_error = Some(format!("the server refused {command} {key}: {message}"));
        }
        self.stop.store(true, Relaxed);
        self.more.notify_waiters();
    }

    /// Records a failure that is not an error reply (a connection that could not be mended).
    pub(super) fn record_failure(&self, message: String) {
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(message);
        }
        self.stop.store(true, Relaxed);
        self.more.notify_waiters();
    }

    /// The first error of the stage, if any.
    pub(super) fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// A line for the stage's display (shown at its next tick, prefixed with the stage).
    pub(super) fn note(&self, line: String) {
        lock(&self.notes).push(line);
    }

    /// The lines noted since the last call.
    pub(super) fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DataType, Elemental, Elements, Shape, ValueSize};

    #[test]
    fn a_typed_key_counts_once_and_again_only_after_its_count_was_taken_back() {
        let shape = Shape {
            key: crate::plan::KeyShape::sized("h:", 8),
            value_size: ValueSize { min: 3, max: 3 },
            ttl: None,
            elemental: Elemental {
                data_type: DataType::Hash,
                elements: Elements { min: 7, max: 7 },
                ..Elemental::STRING
            },
        };
        let dataset = Dataset::new(1, "h", &shape, 100_000);
        // The second of two shards: positions, not stage indexes, key the bits.
        let state = StageState::new(100_000, Shard::new(1, 2).unwrap(), false);
        let index = state.global(70_000);
        assert!(state.count_key(index), "first completion counts");
        assert!(!state.count_key(index), "a second completion does not");
        state.acked.store(5, Relaxed);
        state.elements.store(35, Relaxed);
        assert!(state.take_back(&dataset, index));
        assert_eq!(
            (state.acked.load(Relaxed), state.elements.load(Relaxed)),
            (4, 28)
        );
        assert!(!state.take_back(&dataset, index), "taken back once");
        assert!(state.count_key(index), "complete again: counts again");
        assert!(
            !state.take_back(&dataset, state.global(3)),
            "a key never counted is not taken back"
        );
    }
}
