//! Cluster stages: every entry goes straight to the primary that owns its slot. A router
//! task walks the stage's index range and queues each entry on its primary's feed (bounded,
//! so a slow primary holds up the others only once its queue is full); each primary has its
//! own connections.
//!
//! `routing`: the slot map, queueing, and redirections (`MOVED` updates the slot map and
//! moves the entry to the new owner, `ASK` sends it once with `ASKING`, `TRYAGAIN`,
//! `CLUSTERDOWN` and `LOADING` retry it after a pause, within a bounded time).
//! `failover`: when a primary is lost, waiting for a replica to take over and moving the
//! lost primary's slots and pending entries to the new owners. `recheck`: then making sure
//! every entry routed there is on them (replication is asynchronous: acknowledged writes
//! can be gone): strings read back and written again when missing, typed keys resumed.
//! `restart`: the same re-check for a primary that restarted with its cluster config.

pub(super) mod node;
mod redirects;
mod routing;

use crate::fill::error::StageError;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::mpsc;

pub(super) use node::NodeFeed;
pub(super) use redirects::KeyRefused;

use crate::dataset::Dataset;
use crate::fill::key_bits::KeyBits;
use crate::fill::lock::{lock, read};
use crate::fill::state::StageState;
use crate::plan::NodeAddr;
use crate::server::Connector;
use crate::server::cluster::Topology;

/// The slot map and the primaries' feeds of one cluster stage.
pub(super) struct Router {
    pub(in crate::fill) stage: Arc<StageState>,
    /// The index in `nodes` of each slot's primary.
    pub(in crate::fill) slots: RwLock<Vec<usize>>,
    nodes: RwLock<Vec<Arc<NodeFeed>>>,
    new_nodes: mpsc::UnboundedSender<Arc<NodeFeed>>,
    capacity: usize,
    /// Told when a primary's queue has room again.
    room_made: Arc<tokio::sync::Notify>,
    /// Strings without a TTL: entries are routed by slot, a window at a time, so that a
    /// primary's connections write each slot's keys in `MSET`s (see `routing.rs`).
    by_slot: bool,
    routed_all: AtomicBool,
    /// Since when the cluster has answered only TRYAGAIN, CLUSTERDOWN or LOADING.
    busy_since: Mutex<Option<Instant>>,
    /// `MOVED` replies followed.
    pub moved: AtomicU64,
    /// `ASK` replies followed.
    pub ask: AtomicU64,
    /// Primaries replaced by a replica during the stage.
    pub failovers: AtomicU64,
    /// Entries found missing after a failover and written again (typed stages: keys
    /// acknowledged whole that the new owner held incomplete).
    pub rewritten: AtomicU64,
    /// Typed keys a failover re-check handed on after they had counted as written, until
    /// their new owner answers with their element count.
    pub(in crate::fill) handed_on: KeyBits,
    /// Typed keys to write again from their first element at their next resume.
    restarts: KeyBits,
    pub(in crate::fill) connector: Arc<Connector>,
    pub(in crate::fill) dataset: Arc<Dataset>,
    /// Every node seen, primaries and replicas: where to read the topology after a loss.
    pub(in crate::fill) known: Mutex<Vec<NodeAddr>>,
    /// Failover re-checks running.
    pub(in crate::fill) recovering: AtomicU64,
    /// Strings routed by slot: what of the window being routed went to which queue.
    pub(in crate::fill) queued: Mutex<Option<QueuedWindow>>,
}

/// The window of entries the router is routing by slot (stage positions `first` to
/// `first + len`), and for each primary how many of its share went to its queue: its share
/// goes in slot order, so those are the first ones of it. A failover re-checks no entry of
/// the window that never went to the lost primary.
#[derive(Debug, Clone, Default)]
pub(super) struct QueuedWindow {
    pub(super) first: u64,
    pub(super) len: u64,
    pub(super) queued: Vec<u64>,
}

impl Router {
    /// A router over `topology`; primaries found later (after MOVED or ASK) arrive on the
    /// returned channel so the stage can open connections to them.
    pub(super) fn new(
        stage: Arc<StageState>,
        topology: &Topology,
        capacity: usize,
        connector: Arc<Connector>,
        dataset: Arc<Dataset>,
        by_slot: bool,
    ) -> Result<(Arc<Router>, mpsc::UnboundedReceiver<Arc<NodeFeed>>), StageError> {
        if let Some(uncovered) = topology.uncovered() {
            return Err(StageError::Topology(format!(
                "no primary serves slots {uncovered}; the cluster is not ready"
            )));
        }
        let (new_nodes, receiver) = mpsc::unbounded_channel();
        let room_made = Arc::new(tokio::sync::Notify::new());
        let nodes = topology
            .primaries
            .iter()
            .map(|p| Arc::new(NodeFeed::new(p.addr.clone(), capacity, room_made.clone())))
            .collect();
        let slots = topology.owner.iter().map(|o| o.unwrap_or(0)).collect();
        let router = Router {
            stage,
            slots: RwLock::new(slots),
            nodes: RwLock::new(nodes),
            new_nodes,
            capacity,
            room_made,
            by_slot,
            routed_all: AtomicBool::new(false),
            busy_since: Mutex::new(None),
            moved: AtomicU64::new(0),
            ask: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
            handed_on: KeyBits::new(),
            restarts: KeyBits::new(),
            connector,
            dataset,
            known: Mutex::new(
                topology
                    .primaries
                    .iter()
                    .chain(&topology.replicas)
                    .map(|n| n.addr.clone())
                    .collect(),
            ),
            recovering: AtomicU64::new(0),
            queued: Mutex::new(None),
        };
        Ok((Arc::new(router), receiver))
    }

    /// The primaries known so far.
    pub(super) fn nodes(&self) -> Vec<Arc<NodeFeed>> {
        read(&self.nodes).clone()
    }

    /// Called after acknowledgements: the cluster is answering, and the stage may be done.
    pub(super) fn acknowledged(&self) {
        *lock(&self.busy_since) = None;
        if self.finished() {
            self.wake_all();
        }
    }

    /// True when nothing more will be sent: all routed, all acknowledged and no failover
    /// re-check running, or stopping.
    pub(super) fn finished(&self) -> bool {
        self.stage.should_stop()
            || (self.routed_all.load(Relaxed)
                && self.stage.acked.load(Relaxed) >= self.stage.planned()
                && self.recovering.load(Relaxed) == 0)
    }

    /// Wakes every waiting connection (to exit, or to look for work). When the stage stops,
    /// the queues close too, so the router never waits for room that will not come.
    pub(super) fn wake_all(&self) {
        let stopping = self.stage.should_stop();
        for node in self.nodes() {
            if stopping {
                node.space.close();
            }
            node.work.notify_waiters();
        }
        self.room_made.notify_waiters();
    }
}
