//! A lost primary: its connections wait (once, together) for a replica to take over or for
//! the primary to answer again in place. After a failover the lost primary's slots and
//! pending entries move to the new owners, and a re-check (`cluster_recheck.rs`) makes sure
//! that everything routed to it is on them; a primary back in place is connected to again,
//! and its new `run_id` starts the re-check of `cluster_restart.rs`.

use crate::fill::error::StageError;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::fill::cluster::Router;
use crate::fill::cluster::node::NodeFeed;
use crate::fill::lock::{lock, read, write};
use crate::plan::NodeAddr;
use crate::server::cluster::{LostPrimary, Topology, discover, ranges, successor_or_return};
use crate::slot::SLOTS;

/// At most one such question per primary in this long (its connections share the answer).
const ASK_REPLACED_EVERY: Duration = Duration::from_secs(1);

/// What the connections of a lost primary do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterLoss {
    /// Nothing more here: a replica took over, the entries are on their way to it.
    Done,
    /// The stage is stopping: what the connections had in doubt stays in doubt.
    Stopping,
    /// The primary answers again (restarted in place): connect to it again; the new
    /// process's `run_id` starts the re-check of what it acknowledged.
    Reconnect,
}

impl Router {
    /// A primary that its connections cannot reach any more: waits (once, for all of its
    /// connections) for a replica to take over or for the primary to come back in place.
    /// `Err` naming the node and its slots when neither happened in time. `seen_returns`
    /// is the calling connection's count of the returns it reconnected for: each return
    /// lets each connection reconnect once; a loss after that waits again, and only a new
    /// process counts as a return then, so a primary that keeps breaking its links ends
    /// the stage within `failover_timeout` instead of being reconnected to for ever.
    pub(crate) async fn node_unreachable(
        self: &Arc<Self>,
        node: &Arc<NodeFeed>,
        reason: &str,
        seen_returns: &mut u64,
    ) -> Result<AfterLoss, StageError> {
        let mut outcome = node.failover.lock().await;
        if let Some(decided) = outcome.as_ref() {
            return decided.clone();
        }
        let returns = node.returns.load(Relaxed);
        if returns > *seen_returns {
            *seen_returns = returns;
            return Ok(AfterLoss::Reconnect);
        }
        let decided = self.wait_for_successor(node, reason).await;
        if decided == Ok(AfterLoss::Reconnect) {
            // Not kept as the decision: a later loss of the new process waits again.
            *seen_returns = node.returns.fetch_add(1, Relaxed) + 1;
        } else {
            *outcome = Some(decided.clone());
        }
        decided
    }

    async fn wait_for_successor(
        self: &Arc<Self>,
        node: &Arc<NodeFeed>,
        reason: &str,
    ) -> Result<AfterLoss, StageError> {
        let timeout = humantime::format_duration(self.connector.failover_timeout);
        self.stage.note(format!(
            "primary {} is unreachable ({reason}); waiting up to {timeout} (failover_timeout) for it to answer again or for a replica to take over",
            node.addr
        ));
        let successor = successor_or_return(
            &self.connector,
            &node.addr,
            || self.seeds_without(node),
            || self.stage.should_stop(),
        )
        .await;
        match successor {
            Some(LostPrimary::Replaced(topology)) => {
                self.take_over(node, &topology);
                Ok(AfterLoss::Done)
            }
            Some(LostPrimary::Back) => {
                self.stage.note(format!(
                    "primary {} answers again; connecting to it again",
                    node.addr
                ));
                Ok(AfterLoss::Reconnect)
            }
            None if self.stage.should_stop() => Ok(AfterLoss::Stopping),
            None => Err(StageError::Lost(format!(
                "primary {} (slots {}) is unreachable ({reason}); it did not answer again and no replica took over within {timeout} (failover_timeout)",
                node.addr,
                ranges(self.slots_of(node).into_iter()).unwrap_or_else(|| "none".into()),
            ))),
        }
    }

    /// Every node seen but `node`: where to read the topology when `node` is lost.
    fn seeds_without(&self, node: &NodeFeed) -> Vec<NodeAddr> {
        lock(&self.known)
            .iter()
            .filter(|a| **a != node.addr)
            .cloned()
            .collect()
    }

    /// True once the cluster has given all of silent primary `node`'s slots to other nodes
    /// (its replica took over while it was paused, hung or cut off): its connections stop
    /// waiting for `io_timeout` and the failover follows at once. Reads the topology from
    /// the other nodes at most once a second per primary.
    pub(crate) async fn replaced(&self, node: &Arc<NodeFeed>) -> bool {
        if node.replaced.load(Relaxed) {
            return true;
        }
        {
            let mut asked = lock(&node.replacement_asked);
            if asked.is_some_and(|at: Instant| at.elapsed() < ASK_REPLACED_EVERY) {
                return false;
            }
            *asked = Some(Instant::now());
        }
        let replaced = matches!(
            discover(&self.connector, &self.seeds_without(node)).await,
            Ok(topology) if topology.replaced(&node.addr)
        );
        if replaced {
            node.replaced.store(true, Relaxed);
        }
        replaced
    }

    /// Which slots `node` serves now, slot by slot.
    fn slots_of(&self, node: &Arc<NodeFeed>) -> Vec<bool> {
        let index = self.nodes().iter().position(|n| Arc::ptr_eq(n, node));
        read(&self.slots)
            .iter()
            .map(|&o| Some(o) == index)
            .collect()
    }

    /// Switches to the topology after a failover: new slot map, the lost primary retired
    /// and its entries moved on, and a re-check of everything routed to it.
    fn take_over(self: &Arc<Self>, node: &Arc<NodeFeed>, topology: &Topology) {
        // Before any connection to a new owner starts: the stage is not over until the
        // re-check is (it may take back keys counted as written).
        self.recovering.fetch_add(1, Relaxed);
        self.failovers.fetch_add(1, Relaxed);
        {
            let mut known = lock(&self.known);
            for n in topology.primaries.iter().chain(&topology.replicas) {
                if !known.contains(&n.addr) {
                    known.push(n.addr.clone());
                }
            }
        }
        let mut map = vec![0usize; usize::from(SLOTS)];
        for (slot, owner) in topology.owner.iter().enumerate() {
            if let Some(owner) = owner {
                map[slot] = self.node_at(&topology.primaries[*owner].addr).0;
            }
        }
        // The lost slots and how far the stage was handed out are read as the map is
        // switched: the router takes entries and maps them under one read of the map, so
        // the entries below `upto` went by the old map (those of the lost slots to the lost
        // primary) and the ones after it go by the new one.
        let (lost, upto, unsent) = {
            let index = self.nodes().iter().position(|n| Arc::ptr_eq(n, node));
            let mut slots = write(&self.slots);
            let lost: Vec<bool> = slots.iter().map(|&o| Some(o) == index).collect();
            *slots = map;
            let window = lock(&self.queued).clone();
            let unsent = index.zip(window).map(|(index, window)| {
                let queued = window.queued.get(index).copied().unwrap_or(0);
                (window, queued)
            });
            (lost, self.stage.handed_out(), unsent)
        };
        node.retired.store(true, Relaxed);
        node.space.close();
        let drained = node.drain();
        let typed = self.dataset.is_typed();
        if !typed {
            for index in drained.iter().copied() {
                self.reroute(index);
            }
        }
        node.work.notify_waiters();
        let (router, node) = (self.clone(), node.clone());
        tokio::spawn(async move {
            let checked = if typed {
                // Typed keys waiting here are resumed by the re-check with the others: two
                // writers of one list would both write its rest.
                let drained: HashSet<u64> = drained.into_iter().collect();
                router.hand_on(&node, &lost, upto, drained).await;
                Ok(())
            } else {
                // What never went to the lost primary is not re-checked: the rest of the
                // window being routed, and what waited in its queue (sent elsewhere now).
                let mut skip = HashSet::new();
                if let Some((window, queued)) = unsent {
                    skip = router.not_queued_to(&lost, &window, queued);
                }
                skip.extend(drained);
                router.recheck(&lost, upto, &skip).await
            };
            if let Err(e) = checked {
                router.stage.record_failure(format!(
                    "re-checking the entries of lost primary {} failed: {e}",
                    node.addr
                ));
            }
            router.recovering.fetch_sub(1, Relaxed);
            router.wake_all();
        });
    }
}
