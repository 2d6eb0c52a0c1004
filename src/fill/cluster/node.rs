//! The entries waiting for one primary of a cluster stage, and its state across a failover.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, Semaphore};

use crate::fill::lock::lock;
use crate::fill::span::Span;
use crate::plan::NodeAddr;

/// The entries waiting for one primary.
#[derive(Debug)]
pub(crate) struct NodeFeed {
    /// The primary's address.
    pub addr: NodeAddr,
    /// Entries the router queued here, in batches.
    pub(super) queue: Mutex<VecDeque<Span>>,
    /// Room left in `queue`: bounds what a slow primary holds back.
    pub(in crate::fill) space: Semaphore,
    /// Told when room is made in `queue` (shared by a stage's primaries: the router waits
    /// on it when every queue it has entries for is full).
    pub(super) room_made: Arc<Notify>,
    /// Entries sent here after MOVED, a busy reply or a lost connection.
    pub(super) moved_here: Mutex<VecDeque<u64>>,
    /// Entries to send here once each, after `ASKING`.
    pub(super) asked_here: Mutex<VecDeque<u64>>,
    pub(in crate::fill) work: Notify,
    /// Entries this primary acknowledged.
    pub keys: AtomicU64,
    /// Set once a replica took over: nothing is sent here any more.
    pub(in crate::fill) retired: AtomicBool,
    /// Set when the cluster gave this primary's slots to other nodes while it was silent.
    pub(in crate::fill) replaced: AtomicBool,
    /// When a silent connection last asked whether the cluster replaced this primary.
    pub(in crate::fill) replacement_asked: Mutex<Option<Instant>>,
    /// The outcome of waiting for a successor, decided once for all connections.
    pub(in crate::fill) failover: tokio::sync::Mutex<
        Option<Result<crate::fill::recovery::AfterLoss, crate::fill::error::StageError>>,
    >,
    /// How often this primary came back in place (restarted as a new process): each of its
    /// connections reconnects once per return (see `Router::node_unreachable`).
    pub(in crate::fill) returns: AtomicU64,
    /// Typed stages: the keys the re-check after this primary's latest restart resumes.
    pub(in crate::fill) restarted: Mutex<Option<Arc<RestartScope>>>,
}

/// The typed keys a restarted primary's re-check resumes: those routed to its slots before
/// the restart was found. Nothing else writes them (two writers of one list would both
/// append its rest).
#[derive(Debug)]
pub(in crate::fill) struct RestartScope {
    /// Positions below this had been handed out when the restart was found.
    pub(in crate::fill) upto: u64,
    /// The primary's slots then, slot by slot.
    pub(in crate::fill) lost: Vec<bool>,
}

impl RestartScope {
    /// True for the key at `position` in `slot`.
    pub(in crate::fill) fn covers(&self, position: u64, slot: u16) -> bool {
        position < self.upto && self.lost[usize::from(slot)]
    }
}

impl NodeFeed {
    /// An empty feed for the primary at `addr`, holding at most `capacity` routed entries;
    /// `room_made` is told when some are taken.
    pub(super) fn new(addr: NodeAddr, capacity: usize, room_made: Arc<Notify>) -> NodeFeed {
        NodeFeed {
            addr,
            queue: Mutex::new(VecDeque::new()),
            space: Semaphore::new(capacity),
            room_made,
            moved_here: Mutex::new(VecDeque::new()),
            asked_here: Mutex::new(VecDeque::new()),
            work: Notify::new(),
            keys: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            replacement_asked: Mutex::new(None),
            failover: tokio::sync::Mutex::new(None),
            returns: AtomicU64::new(0),
            restarted: Mutex::new(None),
        }
    }

    /// True once the cluster gave this primary's slots to other nodes while it was silent:
    /// its connections give up at once and wait for the failover.
    pub(crate) fn is_replaced(&self) -> bool {
        self.replaced.load(Relaxed)
    }

    /// True once a replica took over this primary: nothing is sent here any more, and what
    /// was routed here is the failover re-check's.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Relaxed)
    }

    /// Every entry waiting here, taken out.
    pub(in crate::fill) fn drain(&self) -> Vec<u64> {
        let mut out: Vec<u64> = lock(&self.asked_here).drain(..).collect();
        out.extend(lock(&self.moved_here).drain(..));
        for span in lock(&self.queue).drain(..) {
            out.extend(span.into_indices());
        }
        out
    }

    /// Up to `max` entries to send: asked ones first, then moved ones, then routed ones.
    pub(crate) fn next(&self, max: u64) -> Option<Span> {
        if self.retired.load(Relaxed) {
            return None;
        }
        if let Some(index) = lock(&self.asked_here).pop_front() {
            return Some(Span::Asking {
                index,
                asked: false,
            });
        }
        {
            let mut moved = lock(&self.moved_here);
            if !moved.is_empty() {
                let take = moved.len().min(max as usize);
                let indices: Vec<u64> = moved.drain(..take).collect();
                return Some(Span::List { indices, start: 0 });
            }
        }
        let span = lock(&self.queue).pop_front()?;
        self.space.add_permits(span.len() as usize);
        self.room_made.notify_one();
        Some(span)
    }

    /// Waits until there is work or the stage is over (`finished`, asked after every
    /// wake-up); false when it is over.
    pub(crate) async fn wait(&self, finished: impl Fn() -> bool) -> bool {
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !lock(&self.asked_here).is_empty()
                || !lock(&self.moved_here).is_empty()
                || !lock(&self.queue).is_empty()
            {
                return true;
            }
            if finished() || self.retired.load(Relaxed) {
                return false;
            }
            notified.await;
        }
    }

    /// Sends `index` here (again), with the next batch.
    pub(super) fn push_moved(&self, index: u64) {
        lock(&self.moved_here).push_back(index);
        self.work.notify_one();
    }

    /// Resumes typed key `index` here: its element count first, then the rest of it.
    pub(in crate::fill) fn push_resume(&self, index: u64) {
        // Typed stages never ask (they resume instead), so the queue serves them.
        self.push_asked(index);
    }

    /// Sends `index` here once, after `ASKING`.
    pub(super) fn push_asked(&self, index: u64) {
        lock(&self.asked_here).push_back(index);
        self.work.notify_one();
    }
}
