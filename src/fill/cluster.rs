//! Cluster stages: every entry goes straight to the primary that owns its slot. A router
//! task walks the stage's index range and queues each entry on its primary's feed (bounded,
//! so a slow primary holds up the others only once its queue is full); each primary has its
//! own connections. Redirections are followed: `MOVED` updates the slot map and moves the
//! entry to the new owner, `ASK` sends it once with `ASKING`, `TRYAGAIN`/`CLUSTERDOWN` retry
//! it after a pause, within a bounded time. When a primary is lost, the router waits for a
//! replica to take over, moves the lost primary's pending entries to the new owners, and
//! re-checks every entry it had routed there (replication is asynchronous: acknowledged
//! writes can be gone), rewriting the missing ones before the stage may end.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};

use super::state::StageState;
use super::writer::Span;
use crate::dataset::Dataset;
use crate::plan::NodeAddr;
use crate::server::cluster::{Topology, discover, ranges};
use crate::server::{Connector, Control};
use crate::slot::{SLOTS, slot};

/// Entries the router hands a primary at once.
const ROUTE_BATCH: usize = 256;
/// How long a cluster may answer TRYAGAIN or CLUSTERDOWN before the stage gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(30);
/// Pause before resending an entry the cluster asked to try again.
const BUSY_PAUSE: Duration = Duration::from_millis(100);
/// Pause between topology reads while waiting for a replica to take over.
const FAILOVER_POLL: Duration = Duration::from_millis(250);
/// Entries re-checked per round trip after a failover.
const RECHECK_BATCH: u64 = 1000;

/// The entries waiting for one primary.
#[derive(Debug)]
pub struct NodeFeed {
    /// The primary's address.
    pub addr: NodeAddr,
    queue: Mutex<VecDeque<Span>>,
    space: Semaphore,
    moved_here: Mutex<VecDeque<u64>>,
    asked_here: Mutex<VecDeque<u64>>,
    work: Notify,
    /// Entries this primary acknowledged.
    pub keys: AtomicU64,
    /// Set once a replica took over: nothing is sent here any more.
    retired: AtomicBool,
    /// The outcome of waiting for a successor, decided once for all connections.
    failover: tokio::sync::Mutex<Option<Result<(), String>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl NodeFeed {
    fn new(addr: NodeAddr, capacity: usize) -> NodeFeed {
        NodeFeed {
            addr,
            queue: Mutex::new(VecDeque::new()),
            space: Semaphore::new(capacity),
            moved_here: Mutex::new(VecDeque::new()),
            asked_here: Mutex::new(VecDeque::new()),
            work: Notify::new(),
            keys: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            failover: tokio::sync::Mutex::new(None),
        }
    }

    /// Every entry waiting here, taken out.
    fn drain(&self) -> Vec<u64> {
        let mut out: Vec<u64> = lock(&self.asked_here).drain(..).collect();
        out.extend(lock(&self.moved_here).drain(..));
        for span in lock(&self.queue).drain(..) {
            if let Span::List { indices, start } = span {
                out.extend_from_slice(&indices[start..]);
            }
        }
        out
    }

    /// Up to `max` entries to send: asked ones first, then moved ones, then routed ones.
    pub fn next(&self, max: u64) -> Option<Span> {
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
        Some(span)
    }

    /// Waits until there is work or the stage is over; false when it is over.
    pub async fn wait(&self, router: &Router) -> bool {
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
            if router.finished() || self.retired.load(Relaxed) {
                return false;
            }
            notified.await;
        }
    }

    fn push_moved(&self, index: u64) {
        lock(&self.moved_here).push_back(index);
        self.work.notify_one();
    }
}

/// The slot map and the primaries' feeds of one cluster stage.
pub struct Router {
    stage: Arc<StageState>,
    slots: RwLock<Vec<usize>>,
    nodes: RwLock<Vec<Arc<NodeFeed>>>,
    new_nodes: mpsc::UnboundedSender<Arc<NodeFeed>>,
    capacity: usize,
    routed_all: AtomicBool,
    busy_since: Mutex<Option<Instant>>,
    /// `MOVED` replies followed.
    pub moved: AtomicU64,
    /// `ASK` replies followed.
    pub ask: AtomicU64,
    /// Primaries replaced by a replica during the stage.
    pub failovers: AtomicU64,
    /// Entries found missing after a failover and written again.
    pub rewritten: AtomicU64,
    connector: Arc<Connector>,
    dataset: Arc<Dataset>,
    known: Mutex<Vec<NodeAddr>>,
    recovering: AtomicU64,
}

impl Router {
    /// A router over `topology`; primaries found later (after MOVED or ASK) arrive on the
    /// returned channel so the stage can open connections to them.
    pub fn new(
        stage: Arc<StageState>,
        topology: &Topology,
        capacity: usize,
        connector: Arc<Connector>,
        dataset: Arc<Dataset>,
    ) -> Result<(Arc<Router>, mpsc::UnboundedReceiver<Arc<NodeFeed>>), String> {
        if let Some(uncovered) = topology.uncovered() {
            return Err(format!(
                "no primary serves slots {uncovered}; the cluster is not ready"
            ));
        }
        let (new_nodes, receiver) = mpsc::unbounded_channel();
        let nodes = topology
            .primaries
            .iter()
            .map(|p| Arc::new(NodeFeed::new(p.addr.clone(), capacity)))
            .collect();
        let slots = topology.owner.iter().map(|o| o.unwrap_or(0)).collect();
        let router = Router {
            stage,
            slots: RwLock::new(slots),
            nodes: RwLock::new(nodes),
            new_nodes,
            capacity,
            routed_all: AtomicBool::new(false),
            busy_since: Mutex::new(None),
            moved: AtomicU64::new(0),
            ask: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
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
        };
        Ok((Arc::new(router), receiver))
    }

    /// The primaries known so far.
    pub fn nodes(&self) -> Vec<Arc<NodeFeed>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Walks this shard's part of the stage (entries handed out by the stage, see
    /// [`crate::shard`]) and queues every entry on its primary.
    pub async fn route(&self, dataset: &Dataset) {
        let mut key = Vec::with_capacity(dataset.key_size());
        let mut pending: Vec<Vec<u64>> = Vec::new();
        while !self.stage.should_stop() {
            let Some(range) = self.stage.take(ROUTE_BATCH as u64) else {
                // An until_memory stage hands out entries as memory allows.
                if self.stage.wait_for_budget().await {
                    continue;
                }
                break;
            };
            let mut full = Vec::new();
            {
                let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
                for index in range {
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
            // Its slots moved to a successor while we waited for room.
            for index in indices {
                self.reroute(index);
            }
            return;
        }
        lock(&feed.queue).push_back(Span::List { indices, start: 0 });
        feed.work.notify_one();
    }

    /// The feed of the primary at `addr`, created (and announced) when it is new.
    fn node_at(&self, addr: &NodeAddr) -> (usize, Arc<NodeFeed>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
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
    pub fn redirect(&self, index: u64, line: &[u8], from: &Arc<NodeFeed>) -> bool {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        match words.next() {
            Some(kind @ ("MOVED" | "ASK")) => {
                let (Some(slot), Some(addr)) = (
                    words.next().and_then(|s| s.parse::<usize>().ok()),
                    words.next(),
                ) else {
                    return false;
                };
                let Some(addr) = parse_redirect_addr(addr, &from.addr) else {
                    return false;
                };
                let (node, feed) = self.node_at(&addr);
                if kind == "MOVED" {
                    self.moved.fetch_add(1, Relaxed);
                    if let Some(owner) = self
                        .slots
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(slot)
                    {
                        *owner = node;
                    }
                    feed.push_moved(index);
                } else {
                    self.ask.fetch_add(1, Relaxed);
                    lock(&feed.asked_here).push_back(index);
                    feed.work.notify_one();
                }
                true
            }
            Some("TRYAGAIN" | "CLUSTERDOWN" | "LOADING") => {
                let now = Instant::now();
                let since = *lock(&self.busy_since).get_or_insert(now);
                if now.duration_since(since) > BUSY_LIMIT {
                    return false;
                }
                let feed = from.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(BUSY_PAUSE).await;
                    feed.push_moved(index);
                });
                true
            }
            _ => false,
        }
    }

    /// Called after acknowledgements: the cluster is answering, and the stage may be done.
    pub fn acknowledged(&self) {
        *lock(&self.busy_since) = None;
        if self.finished() {
            self.wake_all();
        }
    }

    /// True when nothing more will be sent: all routed, all acknowledged and no failover
    /// re-check running, or stopping.
    pub fn finished(&self) -> bool {
        self.stage.should_stop()
            || (self.routed_all.load(Relaxed)
                && self.stage.acked.load(Relaxed) >= self.stage.planned()
                && self.recovering.load(Relaxed) == 0)
    }

    /// The feed of the primary that owns `index`'s slot now.
    fn owner_of(&self, index: u64) -> Arc<NodeFeed> {
        let mut key = Vec::with_capacity(self.dataset.key_size());
        self.dataset.push_key(&self.dataset.entry(index), &mut key);
        let node = self.slots.read().unwrap_or_else(|p| p.into_inner())[usize::from(slot(&key))];
        self.nodes()[node].clone()
    }

    /// Sends `index` to the primary that owns its slot now.
    fn reroute(&self, index: u64) {
        self.owner_of(index).push_moved(index);
    }

    /// Entries a connection of `node` had sent without seeing their replies: back to the
    /// node's feed, or to the new owners when the node has been replaced.
    pub fn hand_back(&self, node: &NodeFeed, spans: impl IntoIterator<Item = Span>) {
        for span in spans {
            let indices: Vec<u64> = match span {
                Span::Range(range) => range.collect(),
                Span::List { indices, start } => indices[start..].to_vec(),
                Span::Asking { index, .. } => vec![index],
            };
            for index in indices {
                if node.retired.load(Relaxed) {
                    self.reroute(index);
                } else {
                    lock(&node.moved_here).push_back(index);
                }
            }
        }
        node.work.notify_one();
    }

    /// A primary that its connections cannot reach any more: waits (once, for all of its
    /// connections) for a replica to take over. `Ok` when one did and the entries are on
    /// their way to it; `Err` naming the node and its slots when none did in time.
    pub async fn node_unreachable(
        self: &Arc<Self>,
        node: &Arc<NodeFeed>,
        reason: &str,
    ) -> Result<(), String> {
        let mut outcome = node.failover.lock().await;
        if let Some(decided) = outcome.as_ref() {
            return decided.clone();
        }
        let decided = self.wait_for_successor(node, reason).await;
        *outcome = Some(decided.clone());
        decided
    }

    async fn wait_for_successor(
        self: &Arc<Self>,
        node: &Arc<NodeFeed>,
        reason: &str,
    ) -> Result<(), String> {
        let index = self.nodes().iter().position(|n| Arc::ptr_eq(n, node));
        let lost: Vec<bool> = self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|&o| Some(o) == index)
            .collect();
        let timeout = self.connector.failover_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if self.stage.should_stop() {
                return Ok(());
            }
            let seeds: Vec<NodeAddr> = lock(&self.known)
                .iter()
                .filter(|a| **a != node.addr)
                .cloned()
                .collect();
            if let Ok(topology) = discover(&self.connector, &seeds).await
                && topology.uncovered().is_none()
                && !topology.primaries.iter().any(|p| p.addr == node.addr)
            {
                self.take_over(node, &topology, lost);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "primary {} (slots {}) is unreachable ({reason}) and no replica took over within {} (failover_timeout)",
                    node.addr,
                    ranges(lost.into_iter()).unwrap_or_else(|| "none".into()),
                    humantime::format_duration(timeout)
                ));
            }
            tokio::time::sleep(FAILOVER_POLL).await;
        }
    }

    /// Switches to the topology after a failover: new slot map, the lost primary's entries
    /// moved on, and a re-check of what it had acknowledged.
    fn take_over(self: &Arc<Self>, node: &Arc<NodeFeed>, topology: &Topology, lost: Vec<bool>) {
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
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = map;
        node.retired.store(true, Relaxed);
        node.space.close();
        for index in node.drain() {
            self.reroute(index);
        }
        node.work.notify_waiters();
        self.recovering.fetch_add(1, Relaxed);
        let upto = self.stage.handed_out();
        let (router, addr) = (self.clone(), node.addr.clone());
        tokio::spawn(async move {
            if let Err(e) = router.recheck(&lost, upto).await {
                router.stage.record_failure(format!(
                    "re-checking the entries of lost primary {addr} failed: {e}"
                ));
            }
            router.recovering.fetch_sub(1, Relaxed);
            router.wake_all();
        });
    }

    /// Reads back every entry below `upto` whose slot was lost, and writes again the ones
    /// that are missing (acknowledged by the lost primary, never replicated).
    async fn recheck(&self, lost: &[bool], upto: u64) -> Result<(), String> {
        let mut controls: HashMap<NodeAddr, Control> = HashMap::new();
        let mut key = Vec::with_capacity(self.dataset.key_size());
        let mut start = 0;
        while start < upto && !self.stage.should_stop() {
            let end = (start + RECHECK_BATCH).min(upto);
            let mut by_owner: HashMap<NodeAddr, Vec<(u64, Vec<u8>)>> = HashMap::new();
            for position in start..end {
                let index = self.stage.global(position);
                key.clear();
                self.dataset.push_key(&self.dataset.entry(index), &mut key);
                if lost[usize::from(slot(&key))] {
                    let owner = self.owner_of(index).addr.clone();
                    by_owner
                        .entry(owner)
                        .or_default()
                        .push((index, key.clone()));
                }
            }
            for (addr, entries) in by_owner {
                if !controls.contains_key(&addr) {
                    let control = self.connector.control(&addr).await.map_err(|e| e.0)?;
                    controls.insert(addr.clone(), control);
                }
                let Some(control) = controls.get_mut(&addr) else {
                    continue;
                };
                let mut exists = redis::pipe();
                for (_, key) in &entries {
                    exists.cmd("EXISTS").arg(key);
                }
                let found: Vec<i64> = control
                    .pipeline(&exists)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
                let mut rewrite = redis::pipe();
                let mut missing = 0;
                for ((index, key), found) in entries.iter().zip(found) {
                    if found == 0 {
                        let entry = self.dataset.entry(*index);
                        let mut value = Vec::with_capacity(entry.value_len);
                        self.dataset.push_value(&entry, &mut value);
                        let command = rewrite.cmd("SET").arg(key).arg(value);
                        if let Some(ms) = entry.ttl_ms {
                            command.arg("PX").arg(ms);
                        }
                        missing += 1;
                    }
                }
                if missing > 0 {
                    let _: Vec<redis::Value> = control
                        .pipeline(&rewrite)
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?;
                    self.rewritten.fetch_add(missing, Relaxed);
                }
            }
            start = end;
        }
        Ok(())
    }

    /// Wakes every waiting connection (to exit, or to look for work). When the stage stops,
    /// the queues close too, so the router never waits for room that will not come.
    pub fn wake_all(&self) {
        let stopping = self.stage.should_stop();
        for node in self.nodes() {
            if stopping {
                node.space.close();
            }
            node.work.notify_waiters();
        }
    }
}

/// `host:port` from a MOVED/ASK reply; an empty host means the node we asked.
fn parse_redirect_addr(text: &str, from: &NodeAddr) -> Option<NodeAddr> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() {
        from.host.clone()
    } else {
        host.to_string()
    };
    Some(NodeAddr { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_addresses_parse() {
        let from = NodeAddr {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        assert_eq!(
            parse_redirect_addr("127.0.0.1:7001", &from),
            Some(NodeAddr {
                host: "127.0.0.1".into(),
                port: 7001
            })
        );
        assert_eq!(
            parse_redirect_addr(":7002", &from),
            Some(NodeAddr {
                host: "10.0.0.1".into(),
                port: 7002
            })
        );
        assert_eq!(
            parse_redirect_addr("::1:7003", &from),
            Some(NodeAddr {
                host: "::1".into(),
                port: 7003
            })
        );
        assert_eq!(parse_redirect_addr("nonsense", &from), None);
    }
}
