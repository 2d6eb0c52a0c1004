//! One data connection of a stage, across reconnections: every entry is acknowledged,
//! counted as refused, redirected (cluster) or resent after a reconnection; none is lost
//! silently.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::batching::WriterConfig;
use super::error::StageError;
use super::feed::Feed;
use super::recovery::AfterLoss;
use super::recovery::reconnected::{after_restart, restart_seen};
use super::restoring::Restoring;
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
pub(super) async fn connection_worker(
    connector: Arc<Connector>,
    addr: NodeAddr,
    stage: Arc<StageState>,
    dataset: Arc<Dataset>,
    config: WriterConfig,
    feed: Feed,
    restore: Option<Restoring>,
) -> Result<(), StageError> {
    let mut retry: VecDeque<Span> = VecDeque::new();
    let mut failures = 0u32;
    let mut open_key = None;
    // Spans sent and never answered, as of the last session that sent anything: the server
    // may or may not have applied them. Counted as `unacknowledged` if the stage gives up.
    let mut in_doubt: Vec<Span> = Vec::new();
    // Why the connection first broke, in the current run of failed reconnections.
    let mut broke_because: Option<String> = None;
    // The returns of a cluster primary restarted in place this connection reconnected for.
    let mut seen_returns = 0u64;
    let acked_here = AtomicU64::new(0);
    // The server process this connection's last session wrote to.
    let mut last_run_id: Option<String> = None;
    let mut config = config;
    loop {
        if let Feed::Node { node, .. } = &feed
            && node.is_retired()
        {
            // A replica took over this primary: what this connection still held (typed keys
            // to resume) is the failover re-check's, which hands each key on once.
            return Ok(());
        }
        if connector.mset_refused() {
            config.group = 1;
        }
        let restore = restore.filter(|_| connector.restore_refused().is_none());
        let job = Job {
            stage: &stage,
            dataset: &dataset,
            config,
            feed: &feed,
            acked_here: &acked_here,
            addr: &addr,
            io_timeout: connector.io_timeout,
            restore,
        };
        let acked_before = acked_here.load(Relaxed);
        let outcome = match connector.data_identified(&addr).await {
            Ok((mut stream, run_id)) => {
                if let Some(run_id) = run_id {
                    if restart_seen(&connector, &stage, &dataset, &feed, &addr, &run_id) {
                        stage.restarts.fetch_add(1, Relaxed);
                        let repaired = after_restart(
                            &connector,
                            &stage,
                            &dataset,
                            &feed,
                            (&addr, &run_id),
                            &mut stream,
                        );
                        if let Err(failure) = repaired.await {
                            return Err(StageError::Recheck(format!(
                                "{addr} restarted (its run_id changed) and may have lost acknowledged writes: {failure}"
                            )));
                        }
                    }
                    if dataset.is_typed()
                        && last_run_id.as_ref().is_some_and(|before| *before != run_id)
                    {
                        // What this connection held went down with the old process.
                        retry = left_after_restart(&stage, &feed, std::mem::take(&mut retry));
                    }
                    last_run_id = Some(run_id);
                }
                let wake_at = ReplyThreshold::for_socket(stream.tcp());
                let session = Session::new(&job);
                let result = session.run(&mut stream, wake_at, &mut retry).await;
                open_key = session.open_key();
                // What was sent comes before what was still to send (the rest of a key).
                let sent_any = session.sent_any();
                let still_to_send = retry.len();
                retry = session.into_unanswered(std::mem::take(&mut retry));
                if sent_any {
                    let answered_never = retry.len().saturating_sub(still_to_send);
                    in_doubt = retry.iter().take(answered_never).cloned().collect();
                }
                let refused = matches!(result, Err(SessionEnd::RestoreRefused(_)));
                if result.is_err() && (resumes_from_count(&dataset) || refused) {
                    // A key refused as a payload goes again as commands from what the server
                    // holds of it (nothing: a refused RESTORE leaves nothing).
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
        if outcome.is_ok() {
            in_doubt.clear();
        }
        match outcome {
            Ok(()) => return Ok(()),
            Err(SessionEnd::Fatal(message)) => {
                return Err(StageError::Server(format!("{addr}: {message}")));
            }
            Err(SessionEnd::MsetRefused) => connector.refuse_mset(),
            Err(SessionEnd::RestoreRefused(why)) => connector.refuse_restore(&why),
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
                    broke_because = None;
                }
                failures += 1;
                let first_reason = broke_because.get_or_insert_with(|| reason.clone());
                let doubt = unacknowledged(&dataset, &in_doubt);
                if interrupt::requested() {
                    // Interrupted: the run reports that; a broken connection is no failure.
                    stage.unacknowledged.fetch_add(doubt, Relaxed);
                    return Ok(());
                }
                let replaced = matches!(&feed, Feed::Node { node, .. } if node.is_replaced());
                if failures > MAX_RECONNECTS || stage.should_stop() || replaced {
                    if let Feed::Node { node, router } = &feed {
                        match router
                            .node_unreachable(node, &reason, &mut seen_returns)
                            .await
                        {
                            Ok(AfterLoss::Done) => return Ok(()),
                            Ok(AfterLoss::Stopping) => {
                                stage.unacknowledged.fetch_add(doubt, Relaxed);
                                return Ok(());
                            }
                            Ok(AfterLoss::Reconnect) => {
                                // Restarted in place: the new process's run_id starts the
                                // re-check of what it acknowledged.
                                failures = 0;
                                broke_because = None;
                                stage.reconnects.fetch_add(1, Relaxed);
                                continue;
                            }
                            Err(failure) => {
                                stage.unacknowledged.fetch_add(doubt, Relaxed);
                                return Err(failure);
                            }
                        }
                    }
                    stage.unacknowledged.fetch_add(doubt, Relaxed);
                    if stage.should_stop() && failures <= MAX_RECONNECTS {
                        // Another connection's failure stopped the stage: that one is reported.
                        return Ok(());
                    }
                    let last = if *first_reason == reason {
                        String::new()
                    } else {
                        format!("; then: {reason}")
                    };
                    return Err(StageError::Lost(format!(
                        "lost the connection to {addr} ({first_reason}) and could not restore it in {MAX_RECONNECTS} attempts{last}"
                    )));
                }
                stage.reconnects.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100 << failures)).await;
            }
        }
    }
}

/// What a typed stage's connection still holds when it reconnects to a restarted server:
/// the keys handed out before the restart (on a cluster: routed to the restarted primary's
/// slots) are the re-check's (dropped here, so that no key has two writers), and the others
/// are resumed from what the new process holds. A re-check resume the connection took
/// itself (on the old process, before it found the restart) is kept: the re-check handed
/// that key to it alone.
fn left_after_restart(stage: &StageState, feed: &Feed, spans: VecDeque<Span>) -> VecDeque<Span> {
    let upto = stage.recheck_upto();
    let rechecked = |index: u64| match feed {
        Feed::Stage => stage.position(index) < upto,
        Feed::Node { node, router } => router.rechecks(node, index),
    };
    let own_resume = |index: u64| matches!(feed, Feed::Stage) && stage.is_recheck_resume(index);
    let mut kept = VecDeque::with_capacity(spans.len());
    for span in spans {
        match span {
            Span::Range(range) => {
                // Keys taken but never sent, within one chunk of the shard.
                let first = stage.position(range.start);
                let skip = upto.saturating_sub(first).min(range.end - range.start);
                if range.start + skip < range.end {
                    kept.push_back(Span::Range(range.start + skip..range.end));
                }
            }
            Span::Resume { index } if own_resume(index) => kept.push_back(span),
            Span::Key(KeyCommands { index, .. })
            | Span::Resume { index }
            | Span::Restart { index } => {
                if !rechecked(index) {
                    kept.push_back(span);
                }
            }
            Span::List { indices, start } => {
                // Routed to a cluster primary and not sent yet.
                kept.extend(Span::list_without(&indices[start..], rechecked));
            }
            // Not a typed stage's.
            span => kept.push_back(span),
        }
    }
    to_resumes(kept)
}

/// What `spans` leave in doubt: entries of a string stage; keys of a typed stage.
fn unacknowledged(dataset: &Dataset, spans: &[Span]) -> u64 {
    if dataset.is_typed() {
        let keys: HashSet<u64> = spans
            .iter()
            .flat_map(|span| span.clone().into_indices())
            .collect();
        keys.len() as u64
    } else {
        spans.iter().map(Span::len).sum()
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
    use crate::resp::typed::KeyForm;
    use crate::shard::Shard;

    /// A typed stage of 100 keys whose server restarted once 10 keys were handed out.
    fn restarted_after_ten_keys() -> StageState {
        let stage = StageState::new(100, Shard::new(0, 1).unwrap(), false);
        let addr = NodeAddr {
            host: "127.0.0.1".into(),
            port: 6379,
        };
        assert!(!stage.note_run_id(&addr, "old", None, true));
        assert_eq!(stage.take(10), Some(0..10));
        assert!(stage.note_run_id(&addr, "new", None, true));
        stage
    }

    #[test]
    fn after_a_restart_a_connection_leaves_the_keys_handed_out_before_it_to_the_recheck() {
        let stage = restarted_after_ten_keys();
        // Taken by a connection still writing to the old process, after the restart.
        assert_eq!(stage.take(10), Some(10..20));
        let key = |index| Span::Key(KeyCommands::whole(index, KeyForm::commands(4), 0, 2));
        let spans = VecDeque::from([
            key(3),
            Span::Range(5..15),
            key(12),
            Span::Resume { index: 2 },
            Span::Restart { index: 11 },
            Span::Range(16..20),
        ]);
        let kept: Vec<Span> = left_after_restart(&stage, &Feed::Stage, spans).into();
        assert_eq!(
            kept,
            vec![
                Span::Range(10..15),
                Span::Resume { index: 12 },
                Span::Restart { index: 11 },
                Span::Range(16..20),
            ]
        );
        let rechecked: Vec<u64> = std::iter::from_fn(|| stage.next_recheck()).collect();
        assert_eq!(rechecked, (0..10).collect::<Vec<u64>>(), "each key once");
    }

    /// A connection still on the old process that took a re-check resume before it found
    /// the restart keeps it: the re-check handed that key out once, to it.
    #[test]
    fn a_recheck_resume_taken_on_the_old_process_is_kept() {
        let stage = restarted_after_ten_keys();
        assert_eq!(stage.next_recheck(), Some(0));
        assert_eq!(stage.next_recheck(), Some(1));
        let spans = VecDeque::from([
            Span::Resume { index: 0 },
            Span::Key(KeyCommands::whole(1, KeyForm::commands(4), 0, 2)),
            Span::Resume { index: 2 },
        ]);
        let kept: Vec<Span> = left_after_restart(&stage, &Feed::Stage, spans).into();
        assert_eq!(
            kept,
            vec![Span::Resume { index: 0 }],
            "its own, and only that"
        );
        let rest: Vec<u64> = std::iter::from_fn(|| stage.next_recheck()).collect();
        assert_eq!(rest, (2..10).collect::<Vec<u64>>());
    }

    #[test]
    fn every_key_in_flight_is_resumed_once_and_other_spans_stay() {
        let key = |index, next, end| {
            Span::Key(KeyCommands {
                index,
                elements: 10,
                restored: false,
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
