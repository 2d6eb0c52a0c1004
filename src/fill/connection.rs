//! One data connection of a stage, across reconnections: every entry is acknowledged,
//! counted as refused, redirected (cluster) or resent after a reconnection; none is lost
//! silently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::batching::WriterConfig;
use super::feed::Feed;
use super::session::{Job, Session, SessionEnd};
use super::socket::ReplyThreshold;
use super::span::Span;
use super::state::StageState;
use crate::dataset::Dataset;
use crate::interrupt;
use crate::plan::NodeAddr;
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
    let acked_here = AtomicU64::new(0);
    let job = Job {
        stage: &stage,
        dataset: &dataset,
        config,
        feed: &feed,
        acked_here: &acked_here,
    };
    loop {
        let acked_before = acked_here.load(Relaxed);
        let outcome = match connector.data(&addr).await {
            Ok(mut stream) => {
                let wake_at = ReplyThreshold::for_socket(stream.tcp());
                let session = Session::new(&job);
                let result = session.run(&mut stream, wake_at, &mut retry).await;
                retry.extend(session.into_unanswered().into_iter().map(Span::resend));
                result
            }
            Err(e) => Err(SessionEnd::Lost(e.0)),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(SessionEnd::Fatal(message)) => return Err(format!("{addr}: {message}")),
            Err(SessionEnd::Lost(reason)) => {
                if let Feed::Node { node, router } = &feed {
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
