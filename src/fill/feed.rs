//! Where a connection's entries come from: the stage's index range, or a cluster
//! primary's feed of routed entries.

use std::sync::Arc;

use super::cluster::{NodeFeed, Router};
use super::span::Span;
use super::state::StageState;

/// Where a connection's entries come from.
#[derive(Clone)]
pub(super) enum Feed {
    /// A standalone stage: ranges handed out by the stage (after a restart, the typed keys
    /// to re-check first, one resume each).
    Stage,
    /// A cluster stage: the entries routed to one primary.
    Node {
        node: Arc<NodeFeed>,
        router: Arc<Router>,
    },
}

impl Feed {
    /// Up to `max` entries to send now; `None` when there is nothing right now.
    pub(super) fn next(&self, stage: &StageState, max: u64) -> Option<Span> {
        match self {
            Feed::Stage => match stage.next_recheck() {
                Some(index) => Some(Span::Resume { index }),
                None => stage.take(max).map(Span::Range),
            },
            Feed::Node { node, router } => router.next_for(node, max),
        }
    }

    /// Waits for more entries; false when this feed will never have any again.
    pub(super) async fn wait(&self, stage: &StageState) -> bool {
        match self {
            Feed::Stage => stage.recheck_pending() || stage.wait_for_budget().await,
            Feed::Node { node, router } => node.wait(|| router.finished()).await,
        }
    }
}
