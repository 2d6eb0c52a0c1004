//! What a stage knows about the server processes it writes to: the `run_id` each answered
//! with, and, once one restarted, the typed keys it had handed out that are to be
//! re-checked there. Each of those keys is resumed once (its element count, then what is
//! missing), by whichever connection asks for work next, before anything new.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use crate::fill::key_bits::KeyBits;
use crate::fill::lock::lock;
use crate::plan::NodeAddr;

/// The processes a stage's connections met, and the re-check a restart calls for.
#[derive(Debug, Default)]
pub(in crate::fill) struct Restarts {
    seen: Mutex<Seen>,
    /// Set while `pending` may hold positions: the feed's common path takes no lock.
    rechecking: AtomicBool,
    /// Positions handed out as re-check resumes whose element count has not come back.
    resuming: KeyBits,
}

#[derive(Debug, Default)]
struct Seen {
    /// The `run_id` each server answered the stage's connections with last.
    run_ids: HashMap<NodeAddr, String>,
    /// Positions still to resume after the latest restart (typed stages).
    pending: Range<u64>,
    /// Positions below this were handed out before the latest restart: the re-check's.
    upto: u64,
}

impl Restarts {
    /// Records that `addr` answered a connection as process `run_id` (`target_knew`: the
    /// process the target's connections met there last, for the stage's first connection).
    /// True when that is another process than the one the stage knew: it restarted. Then
    /// `on_restart` runs under the same lock as the note, so that any connection noting
    /// later sees what it recorded; when it returns `Some(upto)` (a standalone typed stage),
    /// every position below `upto` is to be resumed once.
    pub(in crate::fill) fn note(
        &self,
        addr: &NodeAddr,
        run_id: &str,
        target_knew: Option<String>,
        on_restart: impl FnOnce() -> Option<u64>,
    ) -> bool {
        let mut seen = lock(&self.seen);
        let before = seen.run_ids.insert(addr.clone(), run_id.to_string());
        let restarted = before
            .or(target_knew)
            .is_some_and(|before| before != run_id);
        if restarted && let Some(upto) = on_restart() {
            // A second restart starts the re-check over: the first one's resumes in flight
            // went down with the server, and their keys are this re-check's.
            self.resuming.drain(|_| {});
            seen.pending = 0..upto;
            seen.upto = upto;
            self.rechecking.store(true, Relaxed);
        }
        restarted
    }

    /// Positions below this belong to the re-check of the latest restart: a connection
    /// that held some of them when the server went down leaves them to it.
    pub(in crate::fill) fn recheck_upto(&self) -> u64 {
        lock(&self.seen).upto
    }

    /// True while positions remain to be re-checked.
    pub(in crate::fill) fn pending(&self) -> bool {
        self.rechecking.load(Relaxed) && !lock(&self.seen).pending.is_empty()
    }

    /// The next position to re-check, marked as resuming.
    pub(in crate::fill) fn next(&self) -> Option<u64> {
        if !self.rechecking.load(Relaxed) {
            return None;
        }
        let position = {
            let mut seen = lock(&self.seen);
            let next = seen.pending.next();
            if next.is_none() {
                self.rechecking.store(false, Relaxed);
            }
            next
        }?;
        self.resuming.insert(position);
        Some(position)
    }

    /// True when the key at `position` was handed out as a re-check resume whose element
    /// count has not come back.
    pub(in crate::fill) fn is_resuming(&self, position: u64) -> bool {
        self.resuming.contains(position)
    }

    /// The stage ended: calls `each` with every position the re-check did not finish (still
    /// pending, or resumed without its count back), and forgets them.
    pub(in crate::fill) fn give_up(&self, mut each: impl FnMut(u64)) {
        let pending = {
            let mut seen = lock(&self.seen);
            self.rechecking.store(false, Relaxed);
            std::mem::replace(&mut seen.pending, 0..0)
        };
        pending.for_each(&mut each);
        self.resuming.drain(each);
    }

    /// The element count of the key at `position` came back: true when it was a re-check
    /// resume (then no more).
    pub(in crate::fill) fn counted(&self, position: u64) -> bool {
        self.resuming.remove(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> NodeAddr {
        NodeAddr {
            host: "127.0.0.1".into(),
            port: 6379,
        }
    }

    #[test]
    fn a_new_run_id_rechecks_what_was_handed_out_once() {
        let restarts = Restarts::default();
        assert!(!restarts.note(&addr(), "a", None, || Some(5)));
        assert!(!restarts.note(&addr(), "a", None, || Some(5)));
        assert!(!restarts.pending());
        assert!(restarts.note(&addr(), "b", None, || Some(3)));
        assert!(
            !restarts.note(&addr(), "b", None, || Some(9)),
            "noticed once"
        );
        assert_eq!(restarts.recheck_upto(), 3);
        let positions: Vec<u64> = std::iter::from_fn(|| restarts.next()).collect();
        assert_eq!(positions, vec![0, 1, 2]);
        assert!(restarts.counted(1));
        assert!(!restarts.counted(1), "once");
        assert!(!restarts.counted(7), "never a re-check resume");
        assert!(restarts.is_resuming(0) && !restarts.is_resuming(1));
        assert!(
            restarts.note(&addr(), "c", None, || Some(2)),
            "a second restart"
        );
        assert!(!restarts.is_resuming(0), "its key is the new re-check's");
        assert_eq!(restarts.next(), Some(0));
    }

    #[test]
    fn giving_up_names_what_the_recheck_did_not_finish() {
        let restarts = Restarts::default();
        restarts.note(&addr(), "a", None, || Some(6));
        restarts.note(&addr(), "b", None, || Some(6));
        let taken: Vec<u64> = std::iter::from_fn(|| restarts.next()).take(3).collect();
        assert_eq!(taken, vec![0, 1, 2]);
        assert!(restarts.counted(1), "1 was re-checked");
        let mut left = Vec::new();
        restarts.give_up(|position| left.push(position));
        left.sort_unstable();
        assert_eq!(left, vec![0, 2, 3, 4, 5]);
        assert!(!restarts.pending());
        assert_eq!(restarts.next(), None);
    }

    #[test]
    fn the_first_connection_compares_with_what_the_target_knew() {
        let restarts = Restarts::default();
        assert!(restarts.note(&addr(), "b", Some("a".into()), || None));
        assert_eq!(restarts.recheck_upto(), 0, "strings re-check otherwise");
        assert!(!restarts.pending());
        let same = Restarts::default();
        assert!(!same.note(&addr(), "a", Some("a".into()), || Some(4)));
    }
}
