//! The re-check after a failover: replication is asynchronous, so what the lost primary
//! acknowledged may be missing on its successor. Strings are read back (`EXISTS`) and
//! written again when missing; typed keys are handed to their new owner as resumes, which
//! count what it holds and write the rest.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Router;
use super::node::NodeFeed;
use crate::fill::lock::read;
use crate::plan::NodeAddr;
use crate::resp::{EntryEncoder, Reply, parse_reply};
use crate::server::Control;
use crate::slot::slot;

/// Entries re-checked per round trip after a failover (typed keys: handed on between two
/// yields to the other tasks).
const RECHECK_BATCH: u64 = 1000;
/// How long the re-check waits for the replies to the entries it writes again.
const REWRITE_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Router {
    /// Reads back every entry below `upto` whose slot was lost, and writes again the ones
    /// that are missing (acknowledged by the lost primary, never replicated). Reads go
    /// through control connections; writes through data connections, encoded by the one
    /// [`EntryEncoder`].
    pub(super) async fn recheck(&self, lost: &[bool], upto: u64) -> Result<(), String> {
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
                let found: Vec<i64> = control
                    .pipeline(&exists)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
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

    /// Hands every typed key routed to lost primary `from` to its new owner as a resume:
    /// the keys of the `lost` slots below position `upto` (all that the router handed out
    /// before the slot map changed) and the `drained` ones that were waiting for it. Each
    /// key goes on once, whether the lost primary had acknowledged it whole, in part or
    /// not at all; a key it had acknowledged whole stops counting as written until it is
    /// complete on its new owner (see [`StageState::take_back`]).
    ///
    /// [`StageState::take_back`]: crate::fill::state::StageState::take_back
    pub(super) async fn hand_on(
        &self,
        from: &NodeFeed,
        lost: &[bool],
        upto: u64,
        mut drained: HashSet<u64>,
    ) {
        let mut taken_back = 0u64;
        let mut start = 0;
        while start < upto && !self.stage.should_stop() {
            let end = (start + RECHECK_BATCH).min(upto);
            taken_back += self.hand_on_positions(start..end, lost, &mut drained);
            start = end;
            tokio::task::yield_now().await;
        }
        for index in drained {
            taken_back += u64::from(self.take_back(index));
            self.owner_of(index).push_resume(index);
        }
        // They count again at their new owner.
        let _ = from
            .keys
            .fetch_update(Relaxed, Relaxed, |k| Some(k.saturating_sub(taken_back)));
    }

    /// Hands on the keys at `positions` that are in a `lost` slot or `drained`; returns how
    /// many had counted as written.
    fn hand_on_positions(
        &self,
        positions: Range<u64>,
        lost: &[bool],
        drained: &mut HashSet<u64>,
    ) -> u64 {
        let mut key = Vec::with_capacity(self.dataset.key_size());
        let mut taken_back = 0;
        let nodes = self.nodes();
        let slots = read(&self.slots);
        for position in positions {
            let index = self.stage.global(position);
            key.clear();
            self.dataset.push_key(&self.dataset.entry(index), &mut key);
            let slot = usize::from(slot(&key));
            let waiting = drained.remove(&index);
            if lost[slot] || waiting {
                taken_back += u64::from(self.take_back(index));
                nodes[slots[slot]].push_resume(index);
            }
        }
        taken_back
    }

    /// Takes back the count of typed key `index` before it is resumed on its new owner,
    /// remembering that it had counted; true when it had.
    fn take_back(&self, index: u64) -> bool {
        let counted = self.stage.take_back(&self.dataset, index);
        if counted {
            self.handed_on.insert(self.stage.position(index));
        }
        counted
    }

    /// The element count of typed key `index` came back, `short` of the dataset's: true
    /// when a failover had handed the key on after it counted as written. Such a key that
    /// comes back short lost elements with the primary and counts as rewritten.
    pub fn handed_on_counted(&self, index: u64, short: bool) -> bool {
        let handed_on = self.handed_on.remove(self.stage.position(index));
        if handed_on && short {
            self.rewritten.fetch_add(1, Relaxed);
        }
        handed_on
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
