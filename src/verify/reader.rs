//! Where verify reads a target's entries from: its primaries, which one serves each slot,
//! and one control connection to each, made again when a link breaks
//! ([`Reconnecting`]). A read the cluster redirects (`MOVED`: its slot moved since verify
//! read the slot map; `ASK`: its slot is migrating and the key already went) is sent again
//! where the redirection says, once. On a cluster, a primary that cannot be reached any
//! more (its new connections refused, or silent for `io_timeout`) is waited for like the
//! fill waits: up to `failover_timeout` for a replica to take over its slots, after which
//! its reads go to the slots' new primaries. A primary silent for [`ASK_REPLACED_AFTER`]
//! (paused, hung) is asked about once a second, as the fill does: once the other nodes say
//! a replica took over its slots, its reads go there without waiting out `io_timeout`. A server that stays silent, refuses the new
//! connection (standalone, or no replica took over), breaks the rules of RESP or whose
//! links keep breaking ends the check with one line naming it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Value;

use crate::dataset::Dataset;
use crate::plan::NodeAddr;
use crate::server::cluster::{Topology, discover, successor_topology};
use crate::server::connector::locked;
use crate::server::reconnecting::{ReadFailure, Reconnecting, Request};
use crate::server::value::{Detour, detour};
use crate::server::{Connector, ControlHandle};
use crate::slot::slot;

/// How long a read of a cluster primary may go unanswered before verify asks the other
/// nodes whether a replica took over its slots (then once a second): as the fill does.
const ASK_REPLACED_AFTER: Duration = Duration::from_secs(2);
/// How often a silent primary is asked about after that.
const ASK_REPLACED_EVERY: Duration = Duration::from_secs(1);

/// A target's primaries as verify reads them.
pub(super) struct Reader {
    /// For each slot, the index of its primary in `nodes`; `None` on a standalone target.
    slots: Option<Vec<usize>>,
    nodes: Vec<Reconnecting>,
    /// Nodes found through redirections, by address.
    redirected: Mutex<HashMap<NodeAddr, Arc<Reconnecting>>>,
    connector: Arc<Connector>,
    /// The target's `io_timeout`, the longest wait for one round trip.
    io_timeout: Duration,
    /// Primaries lost to a failover, and the slot map read once replicas took over.
    succession: Mutex<Succession>,
    /// One wait for a successor at a time (the reads of a lost primary all fail at once).
    waiting: tokio::sync::Mutex<()>,
    /// Primaries whose slots were read from their successors.
    failovers: AtomicU64,
}

/// What verify knows of failovers so far.
#[derive(Default)]
struct Succession {
    /// Indices (in the reader's nodes) of the primaries lost.
    lost: HashSet<usize>,
    /// The cluster's slot map read after the latest failover.
    topology: Option<Arc<Topology>>,
}

/// Where the cluster redirected replies, and the positions of the commands it redirected.
type Detours = HashMap<Detour, Vec<usize>>;

/// Notes the replies at `positions`, answered by `from`, that are redirections.
fn note_detours(
    replies: &[Value],
    positions: impl Iterator<Item = usize>,
    from: &NodeAddr,
    detours: &mut Detours,
) {
    for i in positions {
        if let Some(detour) = detour(&replies[i], from) {
            detours.entry(detour).or_default().push(i);
        }
    }
}

impl Reader {
    /// A reader of `nodes` (on a cluster, `slots` maps each slot to one of them).
    pub(super) fn new(
        slots: Option<Vec<usize>>,
        nodes: Vec<ControlHandle>,
        connector: &Arc<Connector>,
        io_timeout: Duration,
    ) -> Reader {
        Reader {
            slots,
            nodes: nodes
                .into_iter()
                .map(|handle| Reconnecting::new(handle, connector.clone()))
                .collect(),
            redirected: Mutex::new(HashMap::new()),
            connector: connector.clone(),
            io_timeout,
            succession: Mutex::new(Succession::default()),
            waiting: tokio::sync::Mutex::new(()),
            failovers: AtomicU64::new(0),
        }
    }

    /// Primaries whose slots were read from the replicas that took over, so far.
    pub(super) fn failovers(&self) -> u64 {
        self.failovers.load(Relaxed)
    }

    /// The server that holds `key`, as an index into the reader's nodes.
    fn node_for(&self, key: &[u8]) -> usize {
        self.slots
            .as_ref()
            .map_or(0, |slots| slots[usize::from(slot(key))])
    }

    /// New connections made so far, to all the target's primaries (and the nodes
    /// redirections named).
    pub(super) fn reconnects(&self) -> u64 {
        let redirected: u64 = locked(&self.redirected)
            .values()
            .map(|node| node.reconnects())
            .sum();
        self.nodes.iter().map(Reconnecting::reconnects).sum::<u64>() + redirected
    }

    /// The keys of `indices`, grouped by the server that holds them.
    pub(super) fn by_node(&self, indices: &[u64], dataset: &Dataset) -> Vec<Vec<(u64, Vec<u8>)>> {
        let mut groups = vec![Vec::new(); self.nodes.len()];
        for &index in indices {
            let key = dataset.key(index);
            groups[self.node_for(&key)].push((index, key));
        }
        groups
    }

    /// Sends `pipe` to `node` and reads its replies (again on a new connection when the
    /// link broke; from the new primaries of its slots once a replica took over from a lost
    /// one). Commands the cluster redirected are sent again where it said, each node's in
    /// one round trip, and their replies take the redirections' places; a command
    /// redirected a second time stops the check (the slots keep moving).
    pub(super) async fn query(
        &self,
        node: usize,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>, String> {
        let commands: Vec<&redis::Cmd> = pipe.cmd_iter().collect();
        let lost = locked(&self.succession).lost.contains(&node);
        let (mut replies, detours) = if lost {
            self.read_from_successors(&commands).await?
        } else {
            let asked = &self.nodes[node];
            let answer = tokio::select! {
                answer = asked.query::<Vec<Value>>(Request::Pipeline(pipe)) => Some(answer),
                () = self.replaced_while_silent(node), if self.slots.is_some() => None,
            };
            match answer {
                // Replaced while silent: the read in flight is dropped with its connection's
                // state (nothing is read from that primary any more) and read there instead.
                None => self.read_from_successors(&commands).await?,
                Some(Ok(replies)) => {
                    let mut detours = HashMap::new();
                    note_detours(&replies, 0..replies.len(), &asked.addr(), &mut detours);
                    (replies, detours)
                }
                Some(Err(failure)) if self.slots.is_some() && failure.unreachable() => {
                    self.await_successor(node, &failure).await?;
                    self.read_from_successors(&commands).await?
                }
                Some(Err(failure)) => return Err(self.read_failed(&failure)),
            }
        };
        for ((addr, asking), positions) in detours {
            let answers = self.send_to(&addr, asking, &positions, &commands).await?;
            for (i, answer) in positions.into_iter().zip(answers) {
                if let Some((next, _)) = detour(&answer, &addr) {
                    return Err(format!(
                        "{addr} redirected a read again, to {next}: the cluster's slots keep moving; run verify again once they are stable"
                    ));
                }
                replies[i] = answer;
            }
        }
        Ok(replies)
    }

    /// The commands at `positions` sent to `addr` in one round trip (each after `ASKING`
    /// when `asking`), and their replies in order.
    async fn send_to(
        &self,
        addr: &NodeAddr,
        asking: bool,
        positions: &[usize],
        commands: &[&redis::Cmd],
    ) -> Result<Vec<Value>, String> {
        let mut again = redis::pipe();
        again.ignore_errors();
        for &i in positions {
            if asking {
                again.cmd("ASKING").ignore();
            }
            again.add_command(commands[i].clone());
        }
        let there = self.node_at(addr).await?;
        let answers: Vec<Value> = there
            .query(Request::Pipeline(&again))
            .await
            .map_err(|failure| self.read_failed(&failure))?;
        if answers.len() != positions.len() {
            return Err(format!(
                "{addr} answered {} of {} reads",
                answers.len(),
                positions.len()
            ));
        }
        Ok(answers)
    }

    /// Every command sent to the primary that serves its key's slot in the slot map read
    /// after the latest failover: the replies in order, and where the cluster redirected
    /// some of them.
    async fn read_from_successors(
        &self,
        commands: &[&redis::Cmd],
    ) -> Result<(Vec<Value>, Detours), String> {
        let topology = locked(&self.succession)
            .topology
            .clone()
            .ok_or("no slot map was read after the failover")?;
        let mut groups: HashMap<NodeAddr, Vec<usize>> = HashMap::new();
        for (i, command) in commands.iter().enumerate() {
            let Some(redis::Arg::Simple(key)) = command.args_iter().nth(1) else {
                return Err("a read without a key".into());
            };
            let owner = topology.owner[usize::from(slot(key))]
                .map(|o| topology.primaries[o].addr.clone())
                .ok_or("a slot without a primary after the failover")?;
            groups.entry(owner).or_default().push(i);
        }
        let mut replies = vec![Value::Nil; commands.len()];
        let mut detours = HashMap::new();
        for (addr, positions) in groups {
            let answers = self.send_to(&addr, false, &positions, commands).await?;
            for (&i, answer) in positions.iter().zip(answers) {
                replies[i] = answer;
            }
            note_detours(&replies, positions.into_iter(), &addr, &mut detours);
        }
        Ok((replies, detours))
    }

    /// Waits, up to `failover_timeout`, for a replica to take over the slots of primary
    /// `node`, which cannot be reached (`failure`), and keeps the slot map read then. Once
    /// for all the reads that failed with it.
    async fn await_successor(&self, node: usize, failure: &ReadFailure) -> Result<(), String> {
        let _one_at_a_time = self.waiting.lock().await;
        if locked(&self.succession).lost.contains(&node) {
            return Ok(());
        }
        let addr = self.nodes[node].addr();
        let seeds = || self.seeds_without(node);
        let Some(topology) = successor_topology(&self.connector, &addr, seeds, || false).await
        else {
            return Err(format!(
                "{}, and no replica took over its slots within {} (failover_timeout)",
                self.read_failed(failure),
                humantime::format_duration(self.connector.failover_timeout)
            ));
        };
        self.succeeded(node, topology);
        Ok(())
    }

    /// Returns once primary `node`, silent on a read for [`ASK_REPLACED_AFTER`], is replaced:
    /// the other nodes say a replica took over all of its slots (asked once a second), or
    /// another read found so. Never returns for a primary that answers (the read wins).
    async fn replaced_while_silent(&self, node: usize) {
        tokio::time::sleep(ASK_REPLACED_AFTER).await;
        let addr = self.nodes[node].addr();
        loop {
            if locked(&self.succession).lost.contains(&node) {
                return;
            }
            if let Ok(topology) = discover(&self.connector, &self.seeds_without(node)).await
                && topology.replaced(&addr)
            {
                self.succeeded(node, topology);
                return;
            }
            tokio::time::sleep(ASK_REPLACED_EVERY).await;
        }
    }

    /// Every node known but `node` and the primaries lost: where to read the slot map.
    fn seeds_without(&self, node: usize) -> Vec<NodeAddr> {
        let addr = self.nodes[node].addr();
        let succession = locked(&self.succession);
        (0..self.nodes.len())
            .filter(|i| *i != node && !succession.lost.contains(i))
            .map(|i| self.nodes[i].addr())
            .chain(locked(&self.redirected).keys().cloned())
            .filter(|a| *a != addr)
            .collect()
    }

    /// Records that a replica took over primary `node`'s slots (`topology`: the slot map
    /// then); its reads go there from now on. Once per primary.
    fn succeeded(&self, node: usize, topology: Topology) {
        let mut succession = locked(&self.succession);
        if succession.lost.insert(node) {
            self.failovers.fetch_add(1, Relaxed);
        }
        succession.topology = Some(Arc::new(topology));
    }

    /// The connection for reads redirected to `addr`, made on the first (even to a node
    /// that is one of the primaries verify started with: redirections are rare).
    async fn node_at(&self, addr: &NodeAddr) -> Result<Arc<Reconnecting>, String> {
        if let Some(node) = locked(&self.redirected).get(addr) {
            return Ok(node.clone());
        }
        let control = self.connector.control(addr).await.map_err(|e| {
            format!("the cluster redirected a read to {addr}, which could not be reached: {e}")
        })?;
        let node = Arc::new(Reconnecting::new(control.handle(), self.connector.clone()));
        Ok(locked(&self.redirected)
            .entry(addr.clone())
            .or_insert(node)
            .clone())
    }

    /// Why a round trip failed, naming the server.
    fn read_failed(&self, failure: &ReadFailure) -> String {
        if failure.error.is_timeout() {
            format!(
                "{} sent no reply for {} (io_timeout)",
                failure.handle.addr,
                humantime::format_duration(self.io_timeout)
            )
        } else {
            format!(
                "reading back from {} failed: {}",
                failure.handle.addr,
                failure.describe()
            )
        }
    }
}
