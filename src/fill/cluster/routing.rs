//! Routing: every entry queued on the primary that owns its slot, and redirections
//! followed (the slot map updated on `MOVED`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::Router;
use super::node::NodeFeed;
use crate::dataset::Dataset;
use crate::fill::lock::{lock, read, write};
use crate::fill::span::Span;
use crate::plan::NodeAddr;
use crate::resp::{ErrorReply, Redirect};
use crate::slot::slot;

/// Entries the router hands a primary at once.
const ROUTE_BATCH: usize = 256;
/// How long a cluster may answer TRYAGAIN, CLUSTERDOWN or LOADING before the stage gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(30);
/// Pause before resending an entry the cluster asked to try again.
const BUSY_PAUSE: Duration = Duration::from_millis(100);

impl Router {
    /// Walks this shard's part of the stage (entries handed out by the stage, see
    /// [`crate::shard`]) and queues every entry on its primary.
    pub async fn route(&self, dataset: &Dataset) {
        let mut key = Vec::with_capacity(dataset.key_size());
        let mut pending: Vec<Vec<u64>> = Vec::new();
        while !self.stage.should_stop() {
            let mut full = Vec::new();
            // Entries are taken and mapped under one read of the slot map: a failover reads
            // how far the stage was handed out as it switches the map, so what it re-checks
            // is exactly what went by the old map (see `take_over`).
            let taken = {
                let slots = read(&self.slots);
                let range = self.stage.take(ROUTE_BATCH as u64);
                for index in range.clone().into_iter().flatten() {
                    key.clear();
                    dataset.push_key(&dataset.entry(index), &mut key);
                    let node = slots[usize::from(slot(&key))];
                    if pending.len() <= node {
                        pending.resize_with(node + 1, Vec::new);
                    }
                    pending[node].push(index);
                    if pending[node].len() == ROUTE_BATCH {
                        full.push(node);
                    }
                }
                range.is_some()
            };
            if !taken {
                // An until_memory stage hands out entries as memory allows.
                if self.stage.wait_for_budget().await {
                    continue;
                }
                break;
            }
            for node in full {
                let indices = std::mem::take(&mut pending[node]);
                self.queue(node, indices).await;
            }
            // Entries are routed in batches: a budgeted stage flushes them at once so memory
            // is measured on what was written.
            if self.stage.handed_out() >= self.stage.planned() || self.stage.is_budgeted() {
                for (node, indices) in pending.iter_mut().enumerate() {
                    if !indices.is_empty() {
                        let indices = std::mem::take(indices);
                        self.queue(node, indices).await;
                    }
                }
            }
        }
        for (node, indices) in pending.into_iter().enumerate() {
            if !indices.is_empty() {
                self.queue(node, indices).await;
            }
        }
        self.routed_all.store(true, Relaxed);
        self.wake_all();
    }

    async fn queue(&self, node: usize, indices: Vec<u64>) {
        let feed = self.nodes()[node].clone();
        // The queue is bounded: wait for room (this is where a slow primary holds the others).
        let count = indices.len().min(self.capacity) as u32;
        if let Ok(permits) = feed.space.acquire_many(count).await {
            permits.forget();
        }
        if feed.retired.load(Relaxed) {
            // Its slots moved to a successor while we waited for room. Typed keys are the
            // failover re-check's (they were handed out before it read how far to check):
            // it resumes them, and a second writer of a list would duplicate its items.
            if !self.dataset.is_typed() {
                for index in indices {
                    self.reroute(index);
                }
            }
            return;
        }
        lock(&feed.queue).push_back(Span::List { indices, start: 0 });
        feed.work.notify_one();
    }

    /// The feed of the primary at `addr`, created (and announced) when it is new.
    pub(super) fn node_at(&self, addr: &NodeAddr) -> (usize, Arc<NodeFeed>) {
        let mut nodes = write(&self.nodes);
        if let Some(i) = nodes.iter().position(|n| &n.addr == addr) {
            return (i, nodes[i].clone());
        }
        let feed = Arc::new(NodeFeed::new(addr.clone(), self.capacity));
        nodes.push(feed.clone());
        let _ = self.new_nodes.send(feed.clone());
        (nodes.len() - 1, feed)
    }

    /// Handles an error reply to entry `index` sent to `from`: true when it was a
    /// redirection (the entry is on its way elsewhere), false for a real error.
    pub fn redirect(&self, index: u64, reply: ErrorReply<'_>, from: &Arc<NodeFeed>) -> bool {
        match reply {
            ErrorReply::Moved(to) => {
                self.follow_moved(&to, from).push_moved(index);
                true
            }
            ErrorReply::Ask(to) => {
                let (_, feed) = self.node_at(&to.addr(&from.addr));
                self.ask.fetch_add(1, Relaxed);
                feed.push_asked(index);
                true
            }
            reply if reply.is_transient() => self.later(from, move |feed| feed.push_moved(index)),
            _ => false,
        }
    }

    /// Handles an error reply to typed key `index` sent to `from`: to one of its commands
    /// (`in_flight`: more of them may follow on the same connection) or to the count or
    /// `DEL` that resumes it. The key is resumed from what its owner holds (a list or stream
    /// must not get its elements twice): at once at the new owner after `MOVED`; after a
    /// pause at the same node after `ASK` (the key is in a slot being migrated, which
    /// answers `MOVED` once done). After a transient refusal of one of its commands it is
    /// resumed on the same connection, once its commands in flight are answered (the
    /// refusal may clear before the next one is read); after a transient refusal of its
    /// count, after a pause.
    pub fn redirect_key(
        &self,
        index: u64,
        reply: ErrorReply<'_>,
        from: &Arc<NodeFeed>,
        in_flight: bool,
    ) -> KeyRefused {
        let goes_on =
            matches!(reply, ErrorReply::Moved(_) | ErrorReply::Ask(_)) || reply.is_transient();
        if goes_on && from.is_retired() {
            // A replica took over `from`: the failover re-check resumes its keys, once.
            return KeyRefused::HandedOn;
        }
        let handed_on = match reply {
            ErrorReply::Moved(to) => {
                self.follow_moved(&to, from).push_resume(index);
                true
            }
            ErrorReply::Ask(_) => {
                self.ask.fetch_add(1, Relaxed);
                self.later(from, move |feed| feed.push_resume(index))
            }
            reply if reply.is_transient() && in_flight => {
                return if self.still_patient() {
                    KeyRefused::ResumeHere
                } else {
                    KeyRefused::Failed
                };
            }
            reply if reply.is_transient() => self.later(from, move |feed| feed.push_resume(index)),
            _ => false,
        };
        if handed_on {
            KeyRefused::HandedOn
        } else {
            KeyRefused::Failed
        }
    }

    /// Typed key `index` may hold elements past a gap: one of its commands was refused and
    /// a later one applied (or may have been). Its next resume writes it again from its
    /// first element.
    pub fn restart_key(&self, index: u64) {
        self.restarts.insert(self.stage.position(index));
    }

    /// True (once) when typed key `index` is to be written again from its first element.
    pub fn take_restart(&self, index: u64) -> bool {
        self.restarts.remove(self.stage.position(index))
    }

    /// Updates the slot map after `MOVED` and gives the feed of the new owner.
    fn follow_moved(&self, to: &Redirect<'_>, from: &NodeFeed) -> Arc<NodeFeed> {
        let (node, feed) = self.node_at(&to.addr(&from.addr));
        self.moved.fetch_add(1, Relaxed);
        if let Some(owner) = write(&self.slots).get_mut(usize::from(to.slot)) {
            *owner = node;
        }
        feed
    }

    /// Notes that the cluster answered busy; false once it has been busy for longer than
    /// [`BUSY_LIMIT`].
    fn still_patient(&self) -> bool {
        let now = Instant::now();
        let since = *lock(&self.busy_since).get_or_insert(now);
        now.duration_since(since) <= BUSY_LIMIT
    }

    /// Sends again to `from` after a pause, while the cluster has been busy for less than
    /// [`BUSY_LIMIT`]; false once it has been busy for longer.
    fn later(&self, from: &Arc<NodeFeed>, send: impl FnOnce(&NodeFeed) + Send + 'static) -> bool {
        if !self.still_patient() {
            return false;
        }
        let feed = from.clone();
        tokio::spawn(async move {
            tokio::time::sleep(BUSY_PAUSE).await;
            send(&feed);
        });
        true
    }

    /// The feed of the primary that owns `index`'s slot now.
    pub(super) fn owner_of(&self, index: u64) -> Arc<NodeFeed> {
        let node = read(&self.slots)[usize::from(self.slot_of(index))];
        self.nodes()[node].clone()
    }

    /// The cluster slot of entry `index`'s key (off the hot path: the key is made anew).
    pub(super) fn slot_of(&self, index: u64) -> u16 {
        let mut key = Vec::with_capacity(self.dataset.key_size());
        self.dataset.push_key(&self.dataset.entry(index), &mut key);
        slot(&key)
    }

    /// Sends `index` to the primary that owns its slot now.
    pub(super) fn reroute(&self, index: u64) {
        self.owner_of(index).push_moved(index);
    }

    /// Entries a connection of `node` had sent without seeing their replies: back to the
    /// node's feed, or to the new owners when the node has been replaced.
    pub fn hand_back(&self, node: &NodeFeed, spans: impl IntoIterator<Item = Span>) {
        for span in spans {
            for index in span.into_indices() {
                if node.retired.load(Relaxed) {
                    self.reroute(index);
                } else {
                    lock(&node.moved_here).push_back(index);
                }
            }
        }
        node.work.notify_one();
    }
}

/// What becomes of a typed key after an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    /// It is on its way elsewhere, or back to the same node after a pause.
    HandedOn,
    /// The cluster refused it for a moment: resume it on this connection, after its
    /// commands in flight.
    ResumeHere,
    /// A real error: the stage fails.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_lead_to_the_named_node_or_the_one_that_answered() {
        let from = NodeAddr {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        let to = |line: &'static [u8]| match ErrorReply::parse(line) {
            ErrorReply::Moved(to) | ErrorReply::Ask(to) => to.addr(&from),
            other => panic!("not a redirection: {other:?}"),
        };
        let addr = |host: &str, port| NodeAddr {
            host: host.into(),
            port,
        };
        assert_eq!(to(b"MOVED 1 127.0.0.1:7001"), addr("127.0.0.1", 7001));
        assert_eq!(to(b"ASK 1 :7002"), addr("10.0.0.1", 7002));
        assert_eq!(to(b"MOVED 1 ::1:7003"), addr("::1", 7003));
        assert_eq!(
            to(b"MOVED 12182 redis-2.example:6379"),
            addr("redis-2.example", 6379)
        );
    }
}
