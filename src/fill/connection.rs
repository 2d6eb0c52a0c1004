//! One data connection of a stage, across reconnections: every entry is acknowledged,
//! counted as refused, redirected (cluster) or resent after a reconnection; none is lost
//! silently.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::batching::WriterConfig;
use super::feed::Feed;
use super::session::{Job, Session, SessionEnd};
use super::socket::ReplyThreshold;
use super::span::{KeyCommands, Span};
use super::state::StageState;
use crate::dataset::Dataset;
use crate::interrupt;
use crate::plan::{DataType, NodeAddr};
use crate::server::Connector;

/// Reconnection attempts in a row, without progress in between, before a stage gives up.
const MAX_RECONNECTS: u32 = 3;

/// Writes entries from the stage's index range over one connection (reconnecting when it
/// breaks) until the range is used up or the stage stops. `Err` is the stage's failure.
pub async fn connection_worker(
    connector: Arc<Connector>,
    addr: NodeAddr,
    stage: Arc<StageState>,
    dataset: Arc<Dataset>,
    config: WriterConfig,
    feed: Feed,
) -> Result<(), String> {
    let mut retry: VecDeque<Span> = VecDeque::new();
    let mut failures = 0u32;
    let mut open_key = None;
    let acked_here = AtomicU64::new(0);
    let job = Job {
        stage: &stage,
        dataset: &dataset,
        config,
        feed: &feed,
        acked_here: &acked_here,
    };
    loop {
        if let Feed::Node { node, .. } = &feed
            && node.is_retired()
        {
            // A replica took over this primary: what this connection still held (typed keys
            // to resume) is the failover re-check's, which hands each key on once.
            return Ok(());
        }
        let acked_before = acked_here.load(Relaxed);
        let outcome = match connector.data(&addr).await {
            Ok(mut stream) => {
                let wake_at = ReplyThreshold::for_socket(stream.tcp());
                let session = Session::new(&job);
                let result = session.run(&mut stream, wake_at, &mut retry).await;
                open_key = session.open_key();
                // What was sent comes before what was still to send (the rest of a key).
                retry = session.into_unanswered(std::mem::take(&mut retry));
                if result.is_err() && resumes_from_count(&dataset) {
                    retry = to_resumes(retry);
                }
                result
            }
            Err(e) => Err(SessionEnd::Lost(e.0)),
        };
        let stopped = outcome.is_ok() || interrupt::requested() || stage.should_stop();
        if stopped && open_key.is_some() {
            // The stage stopped with a typed key half written: it is not counted as written.
            stage.partial_keys.fetch_add(1, Relaxed);
            open_key = None;
        }
        match outcome {
            Ok(()) => return Ok(()),
            Err(SessionEnd::Fatal(message)) => return Err(format!("{addr}: {message}")),
            Err(SessionEnd::Lost(reason)) => {
                if let Feed::Node { node, router } = &feed
                    && !dataset.is_typed()
                {
                    // Whoever serves this primary next (a new connection, or a replica that
                    // takes over) finds these entries in its feed.
                    router.hand_back(node, retry.drain(..));
                }
                if acked_here.load(Relaxed) > acked_before {
                    failures = 0;
                }
                failures += 1;
                if interrupt::requested() {
                    // Interrupted: the run reports that; a broken connection is no failure.
                    return Ok(());
                }
                if failures > MAX_RECONNECTS || stage.should_stop() {
                    if let Feed::Node { node, router } = &feed {
                        return router.node_unreachable(node, &reason).await;
                    }
                    return Err(format!(
                        "lost the connection to {addr} and could not restore it ({MAX_RECONNECTS} attempts): {reason}"
                    ));
                }
                stage.reconnects.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100 << failures)).await;
            }
        }
    }
}

/// Lists and streams are resumed from their length after a broken connection: an
/// unanswered `RPUSH` or `XADD` may or may not have been applied.
fn resumes_from_count(dataset: &Dataset) -> bool {
    matches!(dataset.data_type(), DataType::List | DataType::Stream)
}

/// The spans to send on a new connection, with every list or stream key that was in flight
/// turned into one resume of that key (a restart when it was to be written again from its
/// first element).
fn to_resumes(spans: VecDeque<Span>) -> VecDeque<Span> {
    let mut out: VecDeque<Span> = VecDeque::with_capacity(spans.len());
    // One resume per key, however its commands were split: two would both read the same
    // length and both write the rest.
    let mut resumed = HashMap::new();
    for span in spans {
        let (index, restart) = match span {
            Span::Key(KeyCommands { index, .. }) | Span::Resume { index } => (index, false),
            Span::Restart { index } => (index, true),
            span => {
                out.push_back(span);
                continue;
            }
        };
        match resumed.get(&index) {
            None => {
                resumed.insert(index, out.len());
                out.push_back(if restart {
                    Span::Restart { index }
                } else {
                    Span::Resume { index }
                });
            }
            Some(&at) if restart => out[at] = Span::Restart { index },
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_in_flight_is_resumed_once_and_other_spans_stay() {
        let key = |index, next, end| {
            Span::Key(KeyCommands {
                index,
                from: 0,
                next,
                end,
                total: 10,
            })
        };
        let spans = VecDeque::from([
            key(7, 2, 5),
            Span::Resume { index: 3 },
            key(8, 0, 10),
            key(7, 5, 10),
            Span::Range(20..30),
            Span::Resume { index: 3 },
            Span::Resume { index: 5 },
            Span::Restart { index: 5 },
            Span::Restart { index: 6 },
            key(6, 0, 10),
        ]);
        let resumed: Vec<Span> = to_resumes(spans).into();
        assert_eq!(
            resumed,
            vec![
                Span::Resume { index: 7 },
                Span::Resume { index: 3 },
                Span::Resume { index: 8 },
                Span::Range(20..30),
                Span::Restart { index: 5 },
                Span::Restart { index: 6 },
            ],
            "a key to restart is restarted, once"
        );
    }
}
