//! `cachefill merge`: one result from the results of the shards of a run, as if one process
//! had written everything: totals per stage and per node, the earliest start, the latest end,
//! and each shard's timeline as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::Failure;
use crate::result::{self, NodeKeys, RunResult, ShardInfo, ShardTimeline, StageReport, Status};

fn invalid(path: &Path, message: impl std::fmt::Display) -> Failure {
    Failure::Invalid(format!("{}: {message}", path.display()))
}

fn time(stamp: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(stamp).ok()
}

/// How bad a status is, to keep the worst one.
fn rank(status: Status) -> u8 {
    match status {
        Status::Failed => 4,
        Status::Interrupted => 3,
        Status::Skipped => 2,
        Status::Pending => 1,
        Status::Ok => 0,
    }
}

/// Reads shard results, checks they belong together, and merges them into one result.
pub(crate) fn merge(files: &[PathBuf]) -> Result<RunResult, Failure> {
    let mut results = Vec::new();
    for path in files {
        results.push((path.clone(), result::read(path).map_err(Failure::Invalid)?));
    }
    let Some((first_path, first)) = results.first() else {
        return Err(Failure::Invalid(
            "merge needs at least one result file".into(),
        ));
    };
    let count = first.shard.count;
    check_complete(&results, first_path, first)?;

    let mut merged = first.clone();
    let start = results
        .iter()
        .filter_map(|(_, r)| time(&r.started_at))
        .min();
    let end = results
        .iter()
        .filter_map(|(_, r)| time(&r.finished_at))
        .max();
    if let (Some(start), Some(end)) = (start, end) {
        merged.started_at = result::timestamp(start);
        merged.finished_at = result::timestamp(end);
        merged.duration_s = end.duration_since(start).unwrap_or_default().as_secs_f64();
    }
    // The largest of the shards' processes (each ran on its own machine).
    merged.client_peak_rss_bytes = results
        .iter()
        .filter_map(|(_, r)| r.client_peak_rss_bytes)
        .max();
    merged.shard = ShardInfo {
        index: None,
        count,
        merged: Some(count),
    };
    merged.status = results
        .iter()
        .map(|(_, r)| r.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Ok);
    merged.error = results.iter().find_map(|(_, r)| r.error.clone());
    (merged.timeline, merged.shard_timelines) = (None, shard_timelines(&results));

    // Targets: flushed by any shard; the last shard to finish saw the final keys and memory.
    let latest = results
        .iter()
        .max_by_key(|(_, r)| time(&r.finished_at))
        .map(|(_, r)| r);
    for (name, target) in &mut merged.targets {
        target.flushed = results
            .iter()
            .any(|(_, r)| r.targets.get(name).is_some_and(|t| t.flushed));
        target.restore_refused = results
            .iter()
            .find_map(|(_, r)| r.targets.get(name)?.restore_refused.clone());
        if let Some(nodes) = latest.and_then(|r| r.targets.get(name)).map(|t| &t.nodes) {
            target.nodes = nodes.clone();
        }
    }

    merged.stages = first
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| merge_stage(i, stage, &results))
        .collect::<Result<_, _>>()?;

    Ok(merged)
}

/// Each shard's timeline, in shard order whatever the order of the files: the shards' samples
/// were taken at their own moments and cannot be added up. Shards without one (results of an
/// older cachefill) are left out.
fn shard_timelines(results: &[(PathBuf, RunResult)]) -> Vec<ShardTimeline> {
    let mut timelines: Vec<ShardTimeline> = results
        .iter()
        .filter_map(|(_, r)| {
            Some(ShardTimeline {
                shard: r.shard.index?,
                timeline: r.timeline.clone()?,
            })
        })
        .collect();
    timelines.sort_by_key(|t| t.shard);
    timelines
}

/// Refuses results of other plan files, of another shard count, or with a shard given twice
/// or missing.
fn check_complete(
    results: &[(PathBuf, RunResult)],
    first_path: &Path,
    first: &RunResult,
) -> Result<(), Failure> {
    let count = first.shard.count;
    let mut seen = vec![false; count as usize];
    for (path, result) in results {
        if result.plan.sha256 != first.plan.sha256 {
            return Err(invalid(
                path,
                format!("comes from another plan file than {}", first_path.display()),
            ));
        }
        if result.shard.count != count {
            return Err(invalid(
                path,
                format!("is a shard of {} parts, not {count}", result.shard.count),
            ));
        }
        let Some(index) = result.shard.index else {
            return Err(invalid(path, "is a merged result, not a shard's"));
        };
        match seen.get_mut(index as usize) {
            Some(slot) if !*slot => *slot = true,
            Some(_) => return Err(invalid(path, format!("shard {index} is given twice"))),
            None => {
                return Err(invalid(
                    path,
                    format!("shard index {index} is out of range"),
                ));
            }
        }
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Failure::Invalid(format!(
            "shards {} of {count} are missing: give every shard's result",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Stage `i` over all shards: sums of the counters, the worst status, the first error,
/// entries per node, and the rates over the span from the first start to the last end.
fn merge_stage(
    i: usize,
    stage: &StageReport,
    results: &[(PathBuf, RunResult)],
) -> Result<StageReport, Failure> {
    let mut total = stage.clone();
    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    let (mut begin, mut finish) = (None::<SystemTime>, None::<SystemTime>);
    for (n, (_, result)) in results.iter().enumerate() {
        let part = match result.stages.get(i) {
            Some(part) if part.name == stage.name => part,
            _ => {
                return Err(Failure::Invalid(format!(
                    "the results list different stages at position {i}"
                )));
            }
        };
        if part.seed != stage.seed {
            return Err(Failure::Invalid(format!(
                "stage \"{}\" was written with different seeds by different shards",
                stage.name
            )));
        }
        if n > 0 {
            for (sum, add) in [
                (&mut total.keys_planned, part.keys_planned),
                (&mut total.keys_written, part.keys_written),
                (&mut total.elements_written, part.elements_written),
                (&mut total.partial_keys, part.partial_keys),
                (&mut total.restored_keys, part.restored_keys),
                (&mut total.payload_bytes, part.payload_bytes),
                (&mut total.errors, part.errors),
                (&mut total.reconnects, part.reconnects),
                (&mut total.unacknowledged, part.unacknowledged),
                (&mut total.failovers, part.failovers),
                (&mut total.rewritten, part.rewritten),
                (&mut total.restarts, part.restarts),
                (&mut total.redirects.moved, part.redirects.moved),
                (&mut total.redirects.ask, part.redirects.ask),
            ] {
                *sum = sum.saturating_add(add);
            }
            if rank(part.status) > rank(total.status) {
                total.status = part.status;
            }
            if total.first_error.is_none() {
                total.first_error.clone_from(&part.first_error);
            }
        }
        for node in &part.per_node {
            let keys = per_node.entry(node.address.clone()).or_default();
            *keys = keys.saturating_add(node.keys);
        }
        if let Some(started) = part.started_at.as_deref().and_then(time) {
            let done = started + Duration::try_from_secs_f64(part.duration_s).unwrap_or_default();
            begin = Some(begin.map_or(started, |b| b.min(started)));
            finish = Some(finish.map_or(done, |f| f.max(done)));
        }
    }
    total.per_node = per_node
        .into_iter()
        .map(|(address, keys)| NodeKeys { address, keys })
        .collect();
    if let (Some(begin), Some(finish)) = (begin, finish) {
        let seconds = finish
            .duration_since(begin)
            .unwrap_or_default()
            .as_secs_f64();
        total.started_at = Some(result::timestamp(begin));
        total.duration_s = seconds;
        let seconds = seconds.max(1e-9);
        total.keys_per_s = total.keys_written as f64 / seconds;
        total.mb_per_s = total.payload_bytes as f64 / 1e6 / seconds;
    }
    Ok(total)
}
