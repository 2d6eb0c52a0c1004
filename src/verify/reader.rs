//! Where verify reads a target's entries from: its primaries, which one serves each slot,
//! and one control connection to each, made again when a link breaks. Verify only reads,
//! so a round trip cut by a broken connection is sent again on a new one; a server that
//! stays silent for `io_timeout`, refuses the new login, or broke the rules of RESP ends
//! the check with one line naming it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::FromRedisValue;

use crate::dataset::Dataset;
use crate::server::{Connector, ControlHandle};
use crate::slot::slot;

/// New connections to one server per round trip, at most, before verify gives up on it.
const RECONNECTS_PER_TRIP: u32 = 3;

/// One primary's control connection, and how many times it was made again.
struct Node {
    handle: Mutex<(u64, ControlHandle)>,
    /// Held while a new connection is made, so round trips cut by the same break make one.
    reconnecting: tokio::sync::Mutex<()>,
}

/// A target's primaries as verify reads them.
pub(super) struct Reader {
    /// For each slot, the index of its primary in `nodes`; `None` on a standalone target.
    slots: Option<Vec<usize>>,
    nodes: Vec<Node>,
    connector: Arc<Connector>,
    /// The target's `io_timeout`, the longest wait for one round trip.
    io_timeout: Duration,
    /// New connections made since the start.
    reconnects: AtomicU64,
}

impl Reader {
    /// A reader of `nodes` (on a cluster, `slots` maps each slot to one of them).
    pub(super) fn new(
        slots: Option<Vec<usize>>,
        nodes: Vec<ControlHandle>,
        connector: Arc<Connector>,
        io_timeout: Duration,
    ) -> Reader {
        Reader {
            slots,
            nodes: nodes
                .into_iter()
                .map(|handle| Node {
                    handle: Mutex::new((0, handle)),
                    reconnecting: tokio::sync::Mutex::new(()),
                })
                .collect(),
            connector,
            io_timeout,
            reconnects: AtomicU64::new(0),
        }
    }

    /// The server that holds `key`, as an index into the reader's nodes.
    fn node_for(&self, key: &[u8]) -> usize {
        self.slots
            .as_ref()
            .map_or(0, |slots| slots[usize::from(slot(key))])
    }

    /// New connections made so far.
    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
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

    /// Sends `pipe` to `node` and reads its replies; a broken connection is made again and
    /// the pipeline sent again on it (reads only), up to [`RECONNECTS_PER_TRIP`] times.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        node: usize,
        pipe: &redis::Pipeline,
    ) -> Result<T, String> {
        let mut reconnects = 0;
        loop {
            let (generation, handle) = lock(&self.nodes[node].handle).clone();
            let mut connection = handle.connection.clone();
            let error = match pipe.query_async(&mut connection).await {
                Ok(replies) => return Ok(replies),
                Err(error) => error,
            };
            if !is_broken_link(&handle, &error) {
                return Err(self.read_failed(&handle, &error));
            }
            if reconnects == RECONNECTS_PER_TRIP {
                return Err(format!(
                    "{}, {reconnects} times in a row on new connections",
                    self.read_failed(&handle, &error)
                ));
            }
            reconnects += 1;
            self.reconnect(node, generation)
                .await
                .map_err(|again| format!("{}; {again}", self.read_failed(&handle, &error)))?;
        }
    }

    /// Makes `node`'s connection again, unless another round trip already replaced the
    /// broken one (`generation`).
    async fn reconnect(&self, node: usize, generation: u64) -> Result<(), String> {
        let _one_at_a_time = self.nodes[node].reconnecting.lock().await;
        let addr = {
            let current = lock(&self.nodes[node].handle);
            if current.0 != generation {
                return Ok(());
            }
            current.1.addr.clone()
        };
        let control = self
            .connector
            .control(&addr)
            .await
            .map_err(|e| format!("connecting again failed: {e}"))?;
        *lock(&self.nodes[node].handle) = (generation + 1, control.handle());
        self.reconnects.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Why a round trip on `handle` failed, naming the server.
    fn read_failed(&self, handle: &ControlHandle, error: &redis::RedisError) -> String {
        if error.is_timeout() {
            format!(
                "{} sent no reply for {} (io_timeout)",
                handle.addr,
                humantime::format_duration(self.io_timeout)
            )
        } else {
            format!(
                "reading back from {} failed: {}",
                handle.addr,
                handle.explain(error)
            )
        }
    }
}

/// Locks `mutex`, poisoned or not (what it holds is replaced whole, never half-written).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True when `error` is the link breaking (reset, closed), not a silent server (timeout) or
/// a reply that broke the rules of RESP (sending again would only read it again).
fn is_broken_link(handle: &ControlHandle, error: &redis::RedisError) -> bool {
    !error.is_timeout()
        && !handle.broke_on_bad_reply()
        && (error.is_io_error() || error.is_connection_dropped())
}
