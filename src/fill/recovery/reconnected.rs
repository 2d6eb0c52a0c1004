//! What a connection does when it meets a restarted server: it notes the new process
//! (`restart_seen`), then re-checks what the old one acknowledged before it writes anything
//! new (`after_restart`), the stages written before included (`recheck_earlier_stages`).

use std::sync::atomic::Ordering::Relaxed;

use super::recheck;
use crate::dataset::Dataset;
use crate::fill::error::StageError;
use crate::fill::feed::Feed;
use crate::fill::state::StageState;
use crate::plan::NodeAddr;
use crate::server::Connector;
use crate::server::tls::Stream;

/// True when the server at `addr` answers as another process than the one this stage (or,
/// for its first connection, the target) knew: it restarted, and may have lost what it
/// acknowledged. A typed stage then notes which keys the re-check resumes (a standalone
/// one through its feed, a cluster one on the restarted primary).
pub(in crate::fill) fn restart_seen(
    connector: &Connector,
    stage: &StageState,
    dataset: &Dataset,
    feed: &Feed,
    addr: &NodeAddr,
    run_id: &str,
) -> bool {
    let target_knew = connector.note_run_id(addr, run_id);
    match feed {
        Feed::Stage => stage.note_run_id(addr, run_id, target_knew, dataset.is_typed()),
        Feed::Node { node, router } => {
            stage.note_node_run_id(addr, run_id, target_knew, || router.note_restart(node))
        }
    }
}

/// After a restart: reads back every entry the stage handed out so far and writes again
/// what the server lost, before the connection goes on. Where that cannot be done, the
/// error says why (the stage must not report entries the server no longer holds).
pub(in crate::fill) async fn after_restart(
    connector: &Connector,
    stage: &StageState,
    dataset: &Dataset,
    feed: &Feed,
    process: (&NodeAddr, &str),
    stream: &mut Stream,
) -> Result<(), StageError> {
    recheck_earlier_stages(connector, stage, feed, process, stream).await?;
    if let Feed::Node { node, router } = feed {
        return router.recheck_restarted(node, stream).await;
    }
    if dataset.is_typed() {
        // Every key handed out so far is resumed once, before anything new, by whichever
        // connection asks for work (see `StageState::next_recheck`).
        return Ok(());
    }
    let handed_out = stage.handed_out();
    let indices = (0..handed_out).map(|position| stage.global(position));
    let rewritten =
        recheck::rewrite_missing(stream, dataset, indices, connector.io_timeout).await?;
    stage.rewritten.fetch_add(rewritten, Relaxed);
    Ok(())
}

/// After a standalone server restarted (as `process`: its address and new run_id): every
/// entry of the string stages that wrote to it before this one (and ended `ok`: their
/// entries are a known range) is looked for and written again when missing, counted in this
/// stage's `rewritten`, by the first stage that finds the restart (stages running in
/// parallel leave it to that one). Stages whose entries cannot be re-checked that way
/// (typed ones, failed ones, any on a cluster) are named in the error.
async fn recheck_earlier_stages(
    connector: &Connector,
    stage: &StageState,
    feed: &Feed,
    (addr, run_id): (&NodeAddr, &str),
    stream: &mut Stream,
) -> Result<(), StageError> {
    let earlier = connector.written_stages();
    let cannot: Vec<&str> = earlier
        .iter()
        .filter(|written| written.entries.is_none() || matches!(feed, Feed::Node { .. }))
        .map(|written| written.name.as_str())
        .collect();
    if !cannot.is_empty() {
        return Err(StageError::Recheck(format!(
            "stages written before it ({}) are not re-checked (only string stages that ended ok, on a standalone server, are); run the plan again",
            cannot.join(", ")
        )));
    }
    if earlier.is_empty() || !connector.claim_earlier_recheck(addr, run_id) {
        return Ok(());
    }
    for written in &earlier {
        let Some((dataset, shard, count)) = &written.entries else {
            continue;
        };
        let indices = (0..*count).map(|position| shard.global(position));
        let rewritten = recheck::rewrite_missing(stream, dataset, indices, connector.io_timeout)
            .await
            .map_err(|e| {
                StageError::Recheck(format!("re-checking stage \"{}\": {e}", written.name))
            })?;
        stage.rewritten.fetch_add(rewritten, Relaxed);
    }
    Ok(())
}
