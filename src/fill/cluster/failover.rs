//! Failover: a lost primary's connections wait (once, together) for a replica to take
//! over; then the lost primary's pending entries move to the new owners, and every entry
//! routed to it is read back and written again when missing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Router;
use super::node::NodeFeed;
use crate::fill::lock::{lock, read, write};
use crate::plan::NodeAddr;
use crate::resp::{EntryEncoder, Reply, parse_reply};
use crate::server::Control;
use crate::server::cluster::{Topology, discover, ranges};
use crate::slot::{SLOTS, slot};

/// Pause between topology reads while waiting for a replica to take over.
const FAILOVER_POLL: Duration = Duration::from_millis(250);
/// Entries re-checked per round trip after a failover.
const RECHECK_BATCH: u64 = 1000;
/// How long the re-check waits for the replies to the entries it writes again.
const REWRITE_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Router {
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
        if self.dataset.data_type() != crate::plan::DataType::String {
            // Re-checking typed keys on a successor (element counts, lists resumed without
            // duplicates) is not built yet: stop rather than report what may not be there.
            let decided = Err(format!(
                "lost primary {} ({reason}); typed stages do not yet carry on through a failover: the keys it acknowledged may be incomplete",
                node.addr
            ));
            *outcome = Some(decided.clone());
            return decided;
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
        let lost: Vec<bool> = read(&self.slots)
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
        *write(&self.slots) = map;
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
    /// that are missing (acknowledged by the lost primary, never replicated). Reads go
    /// through control connections; writes through data connections, encoded by the one
    /// [`EntryEncoder`].
    async fn recheck(&self, lost: &[bool], upto: u64) -> Result<(), String> {
        let mut controls: HashMap<NodeAddr, Control> = HashMap::new();
        let mut writers = HashMap::new();
        let encoder = EntryEncoder::new(&self.dataset);
        let mut rewrite = Vec::new();
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
                let found: Vec<i64> = match control.pipeline(&exists).await {
                    Ok(found) => found,
                    Err(e) => {
                        return Err(format!("{addr}: EXISTS failed: {}", control.explain(&e)));
                    }
                };
                rewrite.clear();
                let mut missing = 0;
                for ((index, _), found) in entries.iter().zip(found) {
                    if found == 0 {
                        encoder.push_set(*index, &mut rewrite);
                        missing += 1;
                    }
                }
                if missing > 0 {
                    if !writers.contains_key(&addr) {
                        let stream = self.connector.data(&addr).await.map_err(|e| e.0)?;
                        writers.insert(addr.clone(), stream);
                    }
                    let Some(stream) = writers.get_mut(&addr) else {
                        continue;
                    };
                    write_acknowledged(stream, &rewrite, missing)
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?;
                    self.rewritten.fetch_add(missing, Relaxed);
                }
            }
            start = end;
        }
        Ok(())
    }
}

/// Sends `commands`, `count` encoded write commands, and waits until every one of them is
/// acknowledged; the first refusal is the error.
async fn write_acknowledged<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    commands: &[u8],
    count: u64,
) -> Result<(), String> {
    stream
        .write_all(commands)
        .await
        .map_err(|e| format!("writing missing entries failed: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut answered = 0;
    while answered < count {
        let n = match tokio::time::timeout(REWRITE_REPLY_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("the server closed the connection".into()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "no reply for {}s to the rewritten entries",
                    REWRITE_REPLY_TIMEOUT.as_secs()
                ));
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while answered < count
            && let Some((reply, used)) = parse_reply(&buf[at..]).map_err(|e| e.to_string())?
        {
            match reply {
                Reply::Ok => answered += 1,
                Reply::Error(line) => return Err(String::from_utf8_lossy(line).into_owned()),
                Reply::Other | Reply::Integer(_) => return Err("unexpected reply to SET".into()),
            }
            at += used;
        }
        buf.drain(..at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies handed over in pieces, as a socket may deliver them.
    async fn replies(bytes: &[u8], count: u64) -> Result<(), String> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let bytes = bytes.to_vec();
        let serve = async move {
            let mut sink = [0u8; 64];
            let _ = server.read(&mut sink).await;
            for piece in bytes.chunks(3) {
                server.write_all(piece).await.unwrap();
            }
        };
        let (result, ()) = tokio::join!(write_acknowledged(&mut client, b"*1\r\n", count), serve);
        result
    }

    #[tokio::test]
    async fn rewrites_wait_for_every_acknowledgement() {
        assert_eq!(replies(b"+OK\r\n+OK\r\n+OK\r\n", 3).await, Ok(()));
    }

    #[tokio::test]
    async fn a_refused_rewrite_is_an_error_naming_the_refusal() {
        assert_eq!(
            replies(b"+OK\r\n-OOM command not allowed\r\n", 2).await,
            Err("OOM command not allowed".into())
        );
        assert!(
            replies(b"+OK\r\n", 2).await.is_err(),
            "closed before the end"
        );
    }
}
