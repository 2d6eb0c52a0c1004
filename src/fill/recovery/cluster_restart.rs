//! A primary that restarted (a new `run_id`) and came back owning its slots (a node that
//! kept its cluster config) may have lost what it acknowledged. String entries routed to
//! its slots are read back and written again when missing, as after a failover. Typed keys
//! routed there before the restart was found are resumed, each once, by the connection that
//! found it (its element count, then what is missing): the primary's other connections and
//! its queue leave those keys to that re-check, since two writers of one list would both
//! append its rest.

use crate::fill::error::StageError;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::recheck::exchange;
use crate::fill::cluster::Router;
use crate::fill::cluster::node::{NodeFeed, RestartScope};
use crate::fill::lock::{lock, write};
use crate::fill::span::Span;
use crate::plan::NodeAddr;
use crate::resp::typed::{KeyForm, count_command, resume_from};
use crate::resp::{EntryEncoder, Reply};
use crate::server::cluster::discover;

/// Pause between readings of a restarted primary's cluster state.
const REJOIN_POLL: Duration = Duration::from_millis(100);

/// Typed keys whose element counts are asked in one round trip.
const COUNT_BATCH: u64 = 1000;

/// Bytes of commands sent at once when typed keys are written again.
const WRITE_BYTES: usize = 1 << 20;

impl Router {
    /// Called as a connection of `node` finds it restarted, under the lock of that note (so
    /// that every connection of the node reconnecting later sees it): on a typed stage,
    /// records which keys the re-check resumes, those of the node's slots handed out so far.
    /// Read under the slot map's write lock: every entry handed out so far has been mapped.
    pub(crate) fn note_restart(&self, node: &Arc<NodeFeed>) {
        if !self.dataset.is_typed() {
            return;
        }
        *lock(&node.restarted) = Some(Arc::new(self.scope_now(node)));
    }

    /// `node`'s slots now and how far the stage was handed out, read under the slot map's
    /// write lock: every entry handed out so far has been mapped, so those of the node's
    /// slots are below `upto`.
    fn scope_now(&self, node: &Arc<NodeFeed>) -> RestartScope {
        let index = self.nodes().iter().position(|n| Arc::ptr_eq(n, node));
        let slots = write(&self.slots);
        RestartScope {
            lost: slots.iter().map(|&o| Some(o) == index).collect(),
            upto: self.stage.handed_out(),
        }
    }

    /// True when typed key `index` is the re-check's after `node` restarted: the node's
    /// connections do not write it.
    pub(crate) fn rechecks(&self, node: &NodeFeed, index: u64) -> bool {
        let scope = lock(&node.restarted).clone();
        scope.is_some_and(|scope| self.covers(&scope, index))
    }

    /// The key's slot is computed only for keys handed out before the restart: every key
    /// handed out after it is its node's to write, without a look at its key.
    fn covers(&self, scope: &RestartScope, index: u64) -> bool {
        let position = self.stage.position(index);
        position < scope.upto && scope.covers(position, self.slot_of(index))
    }

    /// Up to `max` entries for a connection of `node`, without the keys its restart
    /// re-check resumes (routed before the restart was found, queued after it).
    pub(crate) fn next_for(&self, node: &NodeFeed, max: u64) -> Option<Span> {
        let scope = lock(&node.restarted).clone();
        loop {
            let span = node.next(max)?;
            let Some(scope) = &scope else {
                return Some(span);
            };
            match span {
                Span::List { indices, start }
                    if indices[start..]
                        .iter()
                        .any(|&index| self.covers(scope, index)) =>
                {
                    let kept =
                        Span::list_without(&indices[start..], |index| self.covers(scope, index));
                    if kept.is_some() {
                        return kept;
                    }
                }
                Span::Asking { index, .. } if self.covers(scope, index) => {}
                span => return Some(span),
            }
        }
    }

    /// The re-check after `node` restarted, once it serves its slots again: strings
    /// routed to its slots are read back and written again when missing; typed keys routed
    /// there before the restart was found are resumed over `stream`, a connection to it.
    pub(crate) async fn recheck_restarted<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        node: &Arc<NodeFeed>,
        stream: &mut S,
    ) -> Result<(), StageError> {
        // Its own view: a node that lost its cluster config comes back as a new node that
        // serves no slot (the cluster fails it over, or its slots stay down).
        let lost_config = "a node that lost its cluster config (nodes.conf) comes back as a new one, so what it held cannot be re-checked there; run the plan again";
        let seen = discover(&self.connector, std::slice::from_ref(&node.addr))
            .await
            .map_err(|e| {
                StageError::Recheck(format!("it came back without slots ({e}): {lost_config}"))
            })?;
        let scope = match lock(&node.restarted).clone() {
            Some(scope) => scope,
            None => Arc::new(self.scope_now(node)),
        };
        let serves = |slot: usize| {
            seen.owner[slot].is_some_and(|owner| seen.primaries[owner].addr == node.addr)
        };
        if let Some(slot) = (0..scope.lost.len()).find(|&slot| scope.lost[slot] && !serves(slot)) {
            return Err(StageError::Recheck(format!(
                "it came back without slot {slot}: {lost_config}"
            )));
        }
        self.wait_until_serving(&node.addr).await?;
        if self.dataset.is_typed() {
            self.resume_restarted(node, &scope, stream).await
        } else {
            self.recheck(&scope.lost, scope.upto, &HashSet::new()).await
        }
    }

    /// Waits until the restarted primary at `addr` says its cluster is ok (a primary that
    /// rejoins after a restart refuses commands for up to `cluster-node-timeout`), for at
    /// most `failover_timeout`.
    async fn wait_until_serving(&self, addr: &NodeAddr) -> Result<(), StageError> {
        let timeout = self.connector.failover_timeout;
        let deadline = Instant::now() + timeout;
        let mut control = self
            .connector
            .control(addr)
            .await
            .map_err(|e| StageError::Recheck(e.0))?;
        loop {
            let info = control.query(redis::cmd("CLUSTER").arg("INFO")).await;
            let state = match info.and_then(|v| Ok(redis::from_redis_value::<String>(v)?)) {
                Ok(info) => info,
                Err(e) => {
                    return Err(StageError::Recheck(format!(
                        "CLUSTER INFO failed: {}",
                        control.explain(&e)
                    )));
                }
            };
            if state.lines().any(|line| line.trim() == "cluster_state:ok") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StageError::Recheck(format!(
                    "its cluster was not ok again within {} (failover_timeout), so what it lost cannot be re-checked",
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(REJOIN_POLL).await;
        }
    }

    /// Resumes on restarted primary `node`, over `stream`, every typed key `scope` covers:
    /// its element count first, then what is missing (a list or stream from its length, or
    /// from its first element after `DEL` when it may hold elements past a gap; another
    /// type whole unless complete). A key counts as written once, when it had not counted
    /// yet; one found short is `rewritten`. When the re-check stops before it is through
    /// (a refusal, a broken connection, the stage stopping), the keys it did not get to no
    /// longer count as written: the restarted primary may hold them or not.
    async fn resume_restarted<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        node: &NodeFeed,
        scope: &RestartScope,
        stream: &mut S,
    ) -> Result<(), StageError> {
        let mut confirmed = 0;
        let result = self.resume_each(node, scope, stream, &mut confirmed).await;
        if confirmed < scope.upto {
            self.give_up_restarted(node, scope, confirmed);
        }
        result
    }

    /// The keys of [`Router::resume_restarted`], in batches; every key `scope` covers below
    /// position `confirmed` was acknowledged whole on the restarted primary.
    async fn resume_each<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        node: &NodeFeed,
        scope: &RestartScope,
        stream: &mut S,
        confirmed: &mut u64,
    ) -> Result<(), StageError> {
        let dataset = &self.dataset;
        let encoder = EntryEncoder::new(dataset);
        let io_timeout = self.connector.io_timeout;
        let count_name = String::from_utf8_lossy(count_command(dataset.data_type())).into_owned();
        let mut commands = Vec::new();
        let mut writes = Writes::default();
        let mut start = 0;
        while start < scope.upto && !self.stage.should_stop() {
            let end = (start + COUNT_BATCH).min(scope.upto);
            let keys: Vec<(u64, u64)> = (start..end)
                .map(|position| (position, self.stage.global(position)))
                .filter(|&(_, index)| self.covers(scope, index))
                .collect();
            start = end;
            commands.clear();
            for &(_, index) in &keys {
                encoder.push_element_count(index, &mut commands);
            }
            let mut counts = Vec::with_capacity(keys.len());
            exchange(
                stream,
                &commands,
                keys.len(),
                io_timeout,
                |reply| match reply {
                    Reply::Integer(count) => {
                        counts.push(u64::try_from(count).unwrap_or(0));
                        Ok(())
                    }
                    Reply::Error(line) => Err(StageError::Recheck(format!(
                        "{count_name} was refused ({}), so what it lost cannot be found",
                        String::from_utf8_lossy(line)
                    ))),
                    Reply::Ok | Reply::Other => Err(StageError::Recheck(format!(
                        "unexpected reply to {count_name}"
                    ))),
                },
            )
            .await?;
            for ((position, index), count) in keys.into_iter().zip(counts) {
                let elements = dataset.entry(index).elements;
                let restart = self.take_restart(index);
                let from = resume_from(dataset.data_type(), count, elements, restart);
                if restart {
                    encoder.push_delete(index, &mut writes.commands);
                    writes.replies += 1;
                }
                // With commands (`encoder` restores nothing), from where the key stopped.
                let total = encoder.commands(from, KeyForm::commands(elements));
                encoder.push_key_commands(index, false, from, 0..total, &mut writes.commands);
                writes.replies += total;
                writes.keys.push((index, from < elements));
                if writes.commands.len() >= WRITE_BYTES {
                    self.write_resumed(node, &mut writes, stream).await?;
                    *confirmed = position + 1;
                }
            }
        }
        self.write_resumed(node, &mut writes, stream).await?;
        *confirmed = start;
        Ok(())
    }

    /// Takes back the count of every key `scope` covers from position `from` on that had
    /// counted as written (before the restart): they are `unacknowledged` instead.
    fn give_up_restarted(&self, node: &NodeFeed, scope: &RestartScope, from: u64) {
        let mut keys = 0;
        for position in from..scope.upto {
            let index = self.stage.global(position);
            if self.covers(scope, index) && self.stage.in_doubt(&self.dataset, index) {
                keys += 1;
            }
        }
        node.keys.fetch_sub(keys, Relaxed);
        self.stage.unacknowledged.fetch_add(keys, Relaxed);
    }

    /// Sends `writes` and counts their keys once every command is acknowledged.
    async fn write_resumed<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        node: &NodeFeed,
        writes: &mut Writes,
        stream: &mut S,
    ) -> Result<(), StageError> {
        let dataset = &self.dataset;
        if writes.replies > 0 {
            let replies = usize::try_from(writes.replies).unwrap_or(usize::MAX);
            exchange(
                stream,
                &writes.commands,
                replies,
                self.connector.io_timeout,
                |reply| match reply {
                    Reply::Error(line) => Err(StageError::Recheck(format!(
                        "writing a lost key again was refused: {}",
                        String::from_utf8_lossy(line)
                    ))),
                    _ => Ok(()),
                },
            )
            .await?;
        }
        let (mut keys, mut elements, mut bytes) = (0, 0, 0);
        for (index, short) in writes.keys.drain(..) {
            if short {
                self.stage.rewritten.fetch_add(1, Relaxed);
            }
            if self.stage.count_key(index) {
                keys += 1;
                elements += dataset.entry(index).elements;
                bytes += dataset.payload_bytes(index);
            }
        }
        writes.commands.clear();
        writes.replies = 0;
        if keys > 0 {
            self.stage.bytes.fetch_add(bytes, Relaxed);
            self.stage.elements.fetch_add(elements, Relaxed);
            self.stage.acked.fetch_add(keys, Relaxed);
            node.keys.fetch_add(keys, Relaxed);
            self.acknowledged();
        }
        Ok(())
    }
}

/// Typed keys resumed after a restart, written together.
#[derive(Default)]
struct Writes {
    commands: Vec<u8>,
    /// Replies the commands take.
    replies: u64,
    /// Each key, and whether the server held it short.
    keys: Vec<(u64, bool)>,
}
