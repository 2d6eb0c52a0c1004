//! The executor: from a validated plan to servers holding its data and a result that says
//! exactly what was written.

mod batching;
mod checks;
mod cluster;
mod connection;
mod error;
mod feed;
mod key_bits;
mod key_cost;
mod lock;
mod options;
mod recovery;
mod restoring;
mod session;
mod socket;
mod span;
mod stage;
mod stall;
mod state;
mod targets;
mod timeline;
mod until_memory;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::task::JoinSet;

use crate::dataset;
use crate::error::Failure;
use crate::interrupt;
use crate::plan::{Amount, MemoryGoal, Plan, Stage, WriteMode};
use crate::progress::Progress;
use crate::result::{self, PlanInfo, Redirects, RunResult, ShardInfo, StageReport, Status};
use crate::server::Credentials;
use crate::shard::Shard;
pub(crate) use checks::{cannot_fit, check_sharding, planned_payload};
use checks::{check_flush_safety, flushes, remote_flush_refused};
pub use options::{AfterRun, Flushes, RemoteFlush, RunOptions};
use stage::StageRun;
use targets::LiveTarget;
use timeline::{Recorder, Sampler};

/// Runs a plan: checks what needs the environment, connects, flushes, fills, and returns
/// the result, also when the run fails or is interrupted (inside the error then). An error
/// without a result means nothing was written.
pub(crate) async fn run(
    plan: &Plan,
    options: &RunOptions,
) -> Result<RunResult, (Failure, Option<RunResult>)> {
    let nothing_written = |failure| (failure, None);
    let credentials = plan
        .targets
        .iter()
        .map(|t| Credentials::resolve(&t.name, &t.auth))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| nothing_written(Failure::Invalid(format!("{}: {e}", plan.path.display()))))?;
    check_flush_safety(plan, options).map_err(nothing_written)?;

    let run_seed = plan
        .seed
        .unwrap_or_else(|| RandomState::new().hash_one(SystemTime::now()));
    let progress = Progress::new(options.display);
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let mut report = RunResult {
        cachefill_version: env!("CARGO_PKG_VERSION").to_string(),
        status: Status::Ok,
        error: None,
        plan: PlanInfo {
            name: plan.name.clone(),
            path: plan.path.display().to_string(),
            sha256: plan.sha256.clone(),
            seed: run_seed,
        },
        shard: ShardInfo {
            index: Some(options.shard.index),
            count: options.shard.count,
            merged: None,
        },
        started_at: result::timestamp(started_at),
        finished_at: String::new(),
        duration_s: 0.0,
        client_peak_rss_bytes: None,
        targets: BTreeMap::new(),
        stages: if options.flushes == Flushes::Only {
            Vec::new()
        } else {
            plan.stages
                .iter()
                .map(|s| pending_stage(plan, s, run_seed, options.shard))
                .collect()
        },
        timeline: None,
        shard_timelines: Vec::new(),
    };

    let mut live = Vec::new();
    let context = RunContext {
        plan,
        options,
        progress: &progress,
        run_seed,
        started_at,
        clock,
    };
    let outcome = execute(&context, credentials, &mut report, &mut live).await;
    for (target, live) in plan.targets.iter().zip(&mut live) {
        if let Some(target_report) = report.targets.get_mut(&target.name) {
            live.record_after(target_report, &progress).await;
        }
    }
    for (target, live) in plan.targets.iter().zip(live) {
        let kept = live.finish(options.launched == AfterRun::Keep, &progress);
        if let Some(target_report) = report.targets.get_mut(&target.name) {
            target_report.kept = kept;
        }
    }

    let failure = outcome.err().or_else(|| stage_failure(plan, &report));
    report.status = match &failure {
        None => Status::Ok,
        Some(Failure::Interrupted(_)) => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    report.error = failure.as_ref().map(ToString::to_string);
    report.finished_at = result::timestamp(SystemTime::now());
    report.duration_s = clock.elapsed().as_secs_f64();
    report.client_peak_rss_bytes = result::peak_rss_bytes();
    match failure {
        None => Ok(report),
        Some(failure) => Err((failure, Some(report))),
    }
}

/// What every step of one run reads: the plan, the options, the display, the run's seed,
/// and when it started.
struct RunContext<'a> {
    plan: &'a Plan,
    options: &'a RunOptions,
    progress: &'a Progress,
    run_seed: u64,
    started_at: SystemTime,
    clock: Instant,
}

fn stage_seed(stage: &Stage, run_seed: u64) -> u64 {
    stage.seed.unwrap_or(run_seed)
}

fn pending_stage(plan: &Plan, stage: &Stage, run_seed: u64, shard: Shard) -> StageReport {
    StageReport {
        name: stage.name.clone(),
        target: plan.targets[stage.target].name.clone(),
        status: Status::Pending,
        seed: stage_seed(stage, run_seed),
        data_type: stage.shape.elemental.data_type,
        keys_planned: shard.len(stage.keys),
        keys_written: 0,
        elements_written: 0,
        partial_keys: 0,
        restored_keys: 0,
        payload_bytes: 0,
        started_at: None,
        duration_s: 0.0,
        keys_per_s: 0.0,
        mb_per_s: 0.0,
        errors: 0,
        first_error: None,
        redirects: Redirects::default(),
        reconnects: 0,
        unacknowledged: 0,
        failovers: 0,
        rewritten: 0,
        restarts: 0,
        until_memory: None,
        memory: None,
        per_node: Vec::new(),
    }
}

/// The run's failure from its stages: the first stage that failed, or an interrupt.
fn stage_failure(plan: &Plan, report: &RunResult) -> Option<Failure> {
    if let Some(stage) = report.stages.iter().find(|s| s.status == Status::Failed) {
        let addr = match stage.per_node.as_slice() {
            [node] => format!(" ({})", node.address),
            _ => String::new(),
        };
        return Some(Failure::Failed(format!(
            "stage \"{}\" on target \"{}\"{addr} failed after {} of {} keys: {}",
            stage.name,
            stage.target,
            stage.keys_written,
            stage.keys_planned,
            stage.first_error.as_deref().unwrap_or("unknown error")
        )));
    }
    if interrupt::requested()
        || report
            .stages
            .iter()
            .any(|s| s.status == Status::Interrupted)
    {
        let written = report
            .stages
            .iter()
            .fold(0u64, |t, s| t.saturating_add(s.keys_written));
        let planned = plan
            .stages
            .iter()
            .fold(0u64, |t, s| t.saturating_add(s.keys));
        return Some(Failure::Interrupted(format!(
            "interrupted: {written} of {planned} keys written; the result file says how far each stage got"
        )));
    }
    None
}

async fn execute(
    context: &RunContext<'_>,
    credentials: Vec<Credentials>,
    report: &mut RunResult,
    live: &mut Vec<LiveTarget>,
) -> Result<(), Failure> {
    let RunContext {
        plan,
        options,
        progress,
        ..
    } = *context;
    for (i, (target, credentials)) in plan.targets.iter().zip(credentials).enumerate() {
        let stages: Vec<&Stage> = plan.stages.iter().filter(|s| s.target == i).collect();
        let (connected, target_report) =
            LiveTarget::connect(target, &stages, credentials, progress).await?;
        report.targets.insert(target.name.clone(), target_report);
        live.push(connected);
        if interrupt::requested() {
            return Err(Failure::Interrupted(
                "interrupted before anything was written".into(),
            ));
        }
    }
    // A cluster reached through a loopback seed can still have remote primaries.
    if options.remote_flush == RemoteFlush::Refuse {
        for (target, live) in plan.targets.iter().zip(live.iter()) {
            if let Some(remote) = live.remote_node().filter(|_| flushes(target, options)) {
                return Err(remote_flush_refused(&target.name, remote));
            }
        }
    }
    // write = "restore" where the target cannot take this stage's payloads: said before
    // anything is written.
    for stage in &plan.stages {
        if stage.write != WriteMode::Restore {
            continue;
        }
        let dataset = dataset::Dataset::new(0, &stage.name, &stage.shape, stage.keys);
        if let restoring::Decision::Fallback(why) =
            restoring::decide(stage.write, &dataset, live[stage.target].encoding)
        {
            let target = &plan.targets[stage.target].name;
            let version = report
                .targets
                .get(target)
                .and_then(|t| t.server_version.clone())
                .map_or(String::new(), |v| format!(" (version {v})"));
            return Err(Failure::Failed(format!(
                "stage \"{}\" has write = \"restore\", but its keys cannot be RESTORE payloads on target \"{target}\"{version}: {why}; nothing was written. Set write = \"auto\" to write them with commands there",
                stage.name
            )));
        }
    }
    // A plan that cannot fit: more payload than a target that refuses writes once full
    // (noeviction) can hold, even empty. Payload is less than the memory it takes.
    for (i, (target, live)) in plan.targets.iter().zip(live.iter_mut()).enumerate() {
        let payload = planned_payload(plan, i);
        if payload > 0
            && let Some(max) = live.refusing_limit().await?
            && payload > max
        {
            return Err(Failure::Invalid(format!(
                "{}; nothing was written",
                cannot_fit(&target.name, payload, max)
            )));
        }
    }
    // until_memory goals in bytes, known before anything is written.
    let mut goals = Vec::new();
    for stage in &plan.stages {
        goals.push(match stage.amount {
            Amount::UntilMemory(MemoryGoal::Bytes(bytes)) => Some(bytes),
            Amount::UntilMemory(MemoryGoal::Percent(percent)) => {
                let target = &plan.targets[stage.target];
                let Some(max) = live[stage.target].maxmemory().await? else {
                    return Err(Failure::Invalid(format!(
                        "stage \"{}\": until_memory = \"{percent}%\" needs maxmemory, and a primary of target \"{}\" has none (maxmemory 0, or INFO is not allowed): set maxmemory on the server or give an absolute size such as \"4GiB\"; nothing was written",
                        stage.name, target.name
                    )));
                };
                Some((max as f64 * percent / 100.0) as u64)
            }
            _ => None,
        });
    }
    for (target, live) in plan.targets.iter().zip(live.iter_mut()) {
        if flushes(target, options) {
            live.flush(progress).await?;
            if let Some(t) = report.targets.get_mut(&target.name) {
                t.flushed = true;
            }
        }
    }
    if interrupt::requested() {
        return Err(Failure::Interrupted(
            "interrupted before any stage started".into(),
        ));
    }

    if options.flushes == Flushes::Only {
        return Ok(());
    }
    let sampler = Sampler::start(
        context.started_at,
        context.clock,
        plan.targets
            .iter()
            .zip(live.iter())
            .map(|(target, live)| (target.name.clone(), live.memory_probe()))
            .collect(),
    );
    schedule(context, report, live, &goals, &sampler.recorder()).await;
    report.timeline = Some(sampler.finish().await);
    Ok(())
}

/// Starts every stage once the stages it runs `after` have finished, in parallel otherwise.
async fn schedule(
    context: &RunContext<'_>,
    report: &mut RunResult,
    live: &[LiveTarget],
    goals: &[Option<u64>],
    timeline: &Arc<Recorder>,
) {
    let RunContext {
        plan,
        progress,
        run_seed,
        ..
    } = *context;
    let shard = context.options.shard;
    let mut running = JoinSet::new();
    let mut started = vec![false; plan.stages.len()];
    let mut tasks = std::collections::HashMap::new();
    loop {
        for (i, stage) in plan.stages.iter().enumerate() {
            if started[i] || report.stages[i].status != Status::Pending {
                continue;
            }
            if interrupt::requested() {
                report.stages[i].status = Status::Skipped;
                report.stages[i].first_error = Some("not started: the run was interrupted".into());
                continue;
            }
            let blocked_by = stage
                .after
                .iter()
                .find(|&&d| !matches!(report.stages[d].status, Status::Ok | Status::Pending));
            if let Some(&d) = blocked_by {
                report.stages[i].status = Status::Skipped;
                report.stages[i].first_error = Some(format!(
                    "not started: stage \"{}\" did not finish",
                    plan.stages[d].name
                ));
                continue;
            }
            if stage
                .after
                .iter()
                .all(|&d| report.stages[d].status == Status::Ok)
            {
                started[i] = true;
                let target = &live[stage.target];
                let target_name = plan.targets[stage.target].name.clone();
                // The display is made here, so bars appear in plan order.
                let (keys, bytes) = match goals[i] {
                    // until_memory: an estimate, from the goal and a typical per-key overhead.
                    Some(goal) => (goal / (stage.shape.mean_entry_bytes() + 100), goal),
                    None => (shard.len(stage.keys), planned_bytes(stage, shard)),
                };
                let display =
                    progress.stage(&stage.name, &target_name, (keys, bytes), goals[i].is_some());
                let run = StageRun {
                    stage: stage.clone(),
                    seed: stage_seed(stage, run_seed),
                    target_name,
                    connector: target.connector.clone(),
                    route: target.route.clone(),
                    display,
                    shard,
                    memory: goals[i].map(|bytes| (bytes, target.memory_probe())),
                    timeline: timeline.clone(),
                    server: target.encoding,
                    restore: None,
                };
                let task = running.spawn(run.execute());
                tasks.insert(task.id(), i);
            }
        }
        match running.join_next_with_id().await {
            Some(Ok((id, stage_report))) => report.stages[tasks[&id]] = stage_report,
            Some(Err(e)) => {
                let stage = &mut report.stages[tasks[&e.id()]];
                stage.status = Status::Failed;
                stage.first_error = Some(format!("internal error: {e}"));
            }
            None => break,
        }
    }
}

/// Payload bytes this shard of a stage is expected to write, for the display.
fn planned_bytes(stage: &Stage, shard: Shard) -> u64 {
    let whole = match stage.amount {
        Amount::Size(bytes) => bytes,
        Amount::Keys => stage.keys.saturating_mul(stage.shape.mean_entry_bytes()),
        Amount::UntilMemory(_) => return 0,
    };
    let part =
        u128::from(whole) * u128::from(shard.len(stage.keys)) / u128::from(stage.keys.max(1));
    u64::try_from(part).unwrap_or(u64::MAX)
}
