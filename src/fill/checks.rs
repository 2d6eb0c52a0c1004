//! What a run refuses before it writes: a flush of a server not on this machine without
//! `--yes`, a sharded run that could not write one dataset, a plan larger than a target that
//! refuses writes once full.

use super::options::{Flushes, RemoteFlush, RunOptions};
use crate::error::Failure;
use crate::plan::units::human_bytes;
use crate::plan::{Amount, NodeAddr, Plan, Servers, Target};
use crate::shard::Shard;

/// The refusal to flush a server that is not on this machine without `--yes`.
pub(super) fn remote_flush_refused(target: &str, remote: &NodeAddr) -> Failure {
    Failure::Invalid(format!(
        "target \"{target}\" has flush = true and its server {remote} is not on a loopback address: nothing was written; run again with --yes to confirm the FLUSHALL"
    ))
}

/// True when this run flushes `target`.
pub(super) fn flushes(target: &Target, options: &RunOptions) -> bool {
    target.flush && options.flushes != Flushes::Skip
}

/// Refuses a sharded run that could not write one dataset: a flush that could erase what
/// other shards already wrote, or a stage without a seed (each shard would draw its own).
pub(crate) fn check_sharding(plan: &Plan, shard: Shard, no_flush: bool) -> Result<(), Failure> {
    if shard.count <= 1 {
        return Ok(());
    }
    if let Some(stage) = plan
        .stages
        .iter()
        .find(|s| matches!(s.amount, Amount::UntilMemory(_)))
    {
        return Err(Failure::Invalid(format!(
            "{}: stage \"{}\" fills until_memory, which one process must measure and stop: run it without --shard",
            plan.path.display(),
            stage.name
        )));
    }
    if let Some(stage) = plan.stages.iter().find(|s| s.seed.or(plan.seed).is_none()) {
        return Err(Failure::Invalid(format!(
            "{}: stage \"{}\" has no seed, and every shard would draw its own: add seed = … to the plan so the shards write one dataset",
            plan.path.display(),
            stage.name
        )));
    }
    if let Some(target) = plan.targets.iter().find(|t| t.flush && !no_flush) {
        return Err(Failure::Invalid(format!(
            "target \"{}\" has flush = true, and a shard could erase what other shards already wrote: flush once with `cachefill flush {}` before starting the shards, and run the shards with --no-flush",
            target.name,
            plan.path.display()
        )));
    }
    Ok(())
}

/// Refuses what could write a wrong dataset or flush the wrong server, before connecting.
pub(super) fn check_flush_safety(plan: &Plan, options: &RunOptions) -> Result<(), Failure> {
    check_sharding(plan, options.shard, options.flushes == Flushes::Skip)?;
    if options.remote_flush == RemoteFlush::Confirmed {
        return Ok(());
    }
    for target in plan.targets.iter().filter(|t| flushes(t, options)) {
        if let Servers::Nodes(nodes) = &target.servers
            && let Some(remote) = nodes.iter().find(|n| !n.is_loopback())
        {
            return Err(remote_flush_refused(&target.name, remote));
        }
    }
    Ok(())
}

/// Why a plan cannot fit target `name`, whose primaries refuse writes once they hold `max`
/// bytes in all: its stages write `payload`.
pub(crate) fn cannot_fit(name: &str, payload: u64, max: u64) -> String {
    format!(
        "target \"{name}\": its stages write ~{} of payload, more than its maxmemory of {} (maxmemory-policy noeviction): the server would refuse writes once full. Lower the stages' size or keys, raise maxmemory, or fill with until_memory",
        human_bytes(payload),
        human_bytes(max)
    )
}

/// Payload the stages of target `target` write, about (`until_memory` stages not counted).
pub(crate) fn planned_payload(plan: &Plan, target: usize) -> u64 {
    plan.stages
        .iter()
        .filter(|s| s.target == target && !matches!(s.amount, Amount::UntilMemory(_)))
        .map(|s| s.keys.saturating_mul(s.shape.mean_entry_bytes()))
        .fold(0, u64::saturating_add)
}
