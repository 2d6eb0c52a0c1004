//! Where verify reads a target's entries from: its primaries, which one serves each slot,
//! and one control connection to each, made again when a link breaks
//! ([`Reconnecting`]). A server that stays silent for `io_timeout`, refuses the new
//! connection, breaks the rules of RESP or whose links keep breaking ends the check with
//! one line naming it.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use crate::dataset::Dataset;
use crate::server::reconnecting::{ReadFailure, Reconnecting, Request};
use crate::server::{Connector, ControlHandle};
use crate::slot::slot;

/// A target's primaries as verify reads them.
pub(super) struct Reader {
    /// For each slot, the index of its primary in `nodes`; `None` on a standalone target.
    slots: Option<Vec<usize>>,
    nodes: Vec<Reconnecting>,
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
            io_timeout,
        }
    }

    /// The server that holds `key`, as an index into the reader's nodes.
    fn node_for(&self, key: &[u8]) -> usize {
        self.slots
            .as_ref()
            .map_or(0, |slots| slots[usize::from(slot(key))])
    }

    /// New connections made so far, to all the target's primaries.
    pub(super) fn reconnects(&self) -> u64 {
        self.nodes.iter().map(Reconnecting::reconnects).sum()
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
    /// link broke). A redirection means the cluster's slots moved since verify read them:
    /// the keys are elsewhere, not wrong, so the check stops and says so.
    pub(super) async fn query(
        &self,
        node: usize,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>, String> {
        let replies: Vec<Value> = self.nodes[node]
            .query(Request::Pipeline(pipe))
            .await
            .map_err(|failure| self.read_failed(&failure))?;
        match redirection(&replies) {
            Some(redirect) => Err(format!(
                "{} answered {redirect}: the cluster's slots moved since verify read them (a resharding or a failover); run verify again once they are stable",
                self.nodes[node].addr()
            )),
            None => Ok(replies),
        }
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

/// The first `MOVED` or `ASK` among `replies`, as the server said it.
fn redirection(replies: &[Value]) -> Option<String> {
    replies.iter().find_map(|reply| match reply {
        Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK") => {
            Some(format!("{} {}", e.code(), e.details().unwrap_or_default()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_reply(line: &str) -> Value {
        let mut parser = redis::Parser::new();
        parser
            .parse_value(format!("-{line}\r\n").as_bytes())
            .unwrap()
    }

    #[test]
    fn a_redirection_among_the_replies_is_named_as_the_server_said_it() {
        let replies = vec![
            Value::BulkString(b"v".to_vec()),
            Value::Nil,
            error_reply("WRONGTYPE Operation against a key holding the wrong kind of value"),
            error_reply("MOVED 3999 127.0.0.1:6381"),
            error_reply("ASK 12 127.0.0.1:6382"),
        ];
        assert_eq!(
            redirection(&replies).as_deref(),
            Some("MOVED 3999 127.0.0.1:6381")
        );
        assert_eq!(
            redirection(&replies[4..]).as_deref(),
            Some("ASK 12 127.0.0.1:6382")
        );
        assert_eq!(redirection(&replies[..3]), None);
    }
}
