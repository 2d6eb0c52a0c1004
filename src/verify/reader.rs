//! Where verify reads a target's entries from: its primaries, which one serves each slot,
//! and one control connection to each, made again when a link breaks
//! ([`Reconnecting`]). A read the cluster redirects (`MOVED`: its slot moved since verify
//! read the slot map; `ASK`: its slot is migrating and the key already went) is sent again
//! where the redirection says, once. A server that stays silent for `io_timeout`, refuses
//! the new connection, breaks the rules of RESP or whose links keep breaking ends the check
//! with one line naming it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Value;

use crate::dataset::Dataset;
use crate::plan::NodeAddr;
use crate::server::connector::locked;
use crate::server::reconnecting::{ReadFailure, Reconnecting, Request};
use crate::server::value::{Detour, detour};
use crate::server::{Connector, ControlHandle};
use crate::slot::slot;

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
        }
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
    /// link broke). Commands the cluster redirected are sent again where it said, each
    /// node's in one round trip, and their replies take the redirections' places; a command
    /// redirected a second time stops the check (the slots keep moving).
    pub(super) async fn query(
        &self,
        node: usize,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>, String> {
        let answered = &self.nodes[node];
        let mut replies: Vec<Value> = answered
            .query(Request::Pipeline(pipe))
            .await
            .map_err(|failure| self.read_failed(&failure))?;
        let from = answered.addr();
        let mut detours: HashMap<Detour, Vec<usize>> = HashMap::new();
        for (i, reply) in replies.iter().enumerate() {
            if let Some(detour) = detour(reply, &from) {
                detours.entry(detour).or_default().push(i);
            }
        }
        if detours.is_empty() {
            return Ok(replies);
        }
        let commands: Vec<&redis::Cmd> = pipe.cmd_iter().collect();
        for ((addr, asking), positions) in detours {
            let mut again = redis::pipe();
            again.ignore_errors();
            for &i in &positions {
                if asking {
                    again.cmd("ASKING").ignore();
                }
                again.add_command(commands[i].clone());
            }
            let there = self.node_at(&addr).await?;
            let answers: Vec<Value> = there
                .query(Request::Pipeline(&again))
                .await
                .map_err(|failure| self.read_failed(&failure))?;
            if answers.len() != positions.len() {
                return Err(format!(
                    "{addr} answered {} of {} redirected reads",
                    answers.len(),
                    positions.len()
                ));
            }
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
