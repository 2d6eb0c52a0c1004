//! The executor: from a validated plan to servers holding its data and a result that says
//! exactly what was written.

mod state;
mod writer;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;

use crate::dataset::Dataset;
use crate::error::Failure;
use crate::interrupt;
use crate::plan::units::human_bytes;
use crate::plan::{Amount, Endpoint as PlanEndpoint, NodeAddr, Plan, Stage};
use crate::progress::{Progress, StageProgress};
use crate::report::{
    self, NodeKeys, NodeReport, PlanInfo, Redirects, RunReport, ShardInfo, StageReport, Status,
    TargetReport,
};
use crate::target::launch::LocalServer;
use crate::target::{Control, Credentials, Endpoint};
use state::StageState;
use writer::{WriterConfig, connection_worker};

/// Options of `cachefill run` beyond the plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the JSON result goes (`-`: standard output).
    pub output: PathBuf,
    /// Confirms flushing targets that are not on loopback.
    pub yes: bool,
    /// No progress bars, only a line per stage start and end.
    pub quiet: bool,
    /// Leave launched servers running.
    pub keep: bool,
}

/// One target, ready to be written to.
struct LiveTarget {
    endpoint: Arc<Endpoint>,
    addr: NodeAddr,
    control: Control,
    launched: Option<LocalServer>,
}

/// Runs a plan: checks what needs the environment, connects, flushes, fills, and writes the
/// result file, also when the run fails or is interrupted.
pub async fn run(plan: &Plan, options: &RunOptions) -> Result<(), Failure> {
    let credentials = plan
        .targets
        .iter()
        .map(|t| Credentials::resolve(&t.name, &t.auth))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Invalid(format!("{}: {e}", plan.path.display())))?;
    check_flush_safety(plan, options.yes)?;

    let run_seed = plan
        .seed
        .unwrap_or_else(|| RandomState::new().hash_one(SystemTime::now()));
    let progress = Progress::new(options.quiet);
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let mut report = RunReport {
        cachefill_version: env!("CARGO_PKG_VERSION"),
        status: Status::Ok,
        error: None,
        plan: PlanInfo {
            name: plan.name.clone(),
            path: plan.path.display().to_string(),
            sha256: plan.sha256.clone(),
            seed: run_seed,
        },
        shard: ShardInfo { index: 0, count: 1 },
        started_at: report::timestamp(started_at),
        finished_at: String::new(),
        duration_s: 0.0,
        targets: BTreeMap::new(),
        stages: plan
            .stages
            .iter()
            .map(|s| pending_stage(plan, s, run_seed))
            .collect(),
    };

    let mut live = Vec::new();
    let outcome = execute(
        plan,
        credentials,
        run_seed,
        &progress,
        &mut report,
        &mut live,
    )
    .await;
    for target in &mut live {
        let facts = target.control.facts().await;
        if let Some(node) = report
            .targets
            .get_mut(&target.endpoint.name)
            .and_then(|t| t.nodes.first_mut())
        {
            node.keys_after = facts.keys;
            node.used_memory_after = facts.used_memory;
        }
    }
    for target in live {
        if let Some(server) = target.launched
            && options.keep
        {
            let addr = server.keep();
            progress.line(&format!(
                "target {} keeps running at {addr} (--keep)",
                target.endpoint.name
            ));
        }
    }

    let failure = outcome.err().or_else(|| stage_failure(plan, &report));
    report.status = match &failure {
        None => Status::Ok,
        Some(Failure::Interrupted(_)) => Status::Interrupted,
        Some(_) => Status::Failed,
    };
    report.error = failure.as_ref().map(ToString::to_string);
    report.finished_at = report::timestamp(SystemTime::now());
    report.duration_s = clock.elapsed().as_secs_f64();
    report::write(&report, &options.output).map_err(|e| {
        Failure::Failed(format!(
            "cannot write the result to {}: {e}",
            options.output.display()
        ))
    })?;
    if options.output.as_os_str() != "-" {
        progress.line(&format!("result written to {}", options.output.display()));
    }
    failure.map_or(Ok(()), Err)
}

/// Refuses to flush a server that is not on this machine unless `--yes` confirms it.
fn check_flush_safety(plan: &Plan, yes: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    for target in plan.targets.iter().filter(|t| t.flush) {
        if let PlanEndpoint::Nodes(nodes) = &target.endpoint
            && let Some(remote) = nodes.iter().find(|n| !n.is_loopback())
        {
            return Err(Failure::Invalid(format!(
                "target \"{}\" ({remote}) has flush = true and is not on a loopback address: nothing was written; run again with --yes to confirm the FLUSHALL",
                target.name
            )));
        }
    }
    Ok(())
}

fn stage_seed(stage: &Stage, run_seed: u64) -> u64 {
    stage.seed.unwrap_or(run_seed)
}

fn pending_stage(plan: &Plan, stage: &Stage, run_seed: u64) -> StageReport {
    StageReport {
        name: stage.name.clone(),
        target: plan.targets[stage.target].name.clone(),
        status: Status::Pending,
        seed: stage_seed(stage, run_seed),
        keys_planned: stage.keys,
        keys_written: 0,
        payload_bytes: 0,
        started_at: None,
        duration_s: 0.0,
        keys_per_s: 0.0,
        mb_per_s: 0.0,
        errors: 0,
        first_error: None,
        redirects: Redirects::default(),
        reconnects: 0,
        per_node: Vec::new(),
    }
}

/// The run's failure from its stages: the first stage that failed, or an interrupt.
fn stage_failure(plan: &Plan, report: &RunReport) -> Option<Failure> {
    if let Some(stage) = report.stages.iter().find(|s| s.status == Status::Failed) {
        let addr = stage
            .per_node
            .first()
            .map(|n| format!(" ({})", n.address))
            .unwrap_or_default();
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
        let written: u64 = report.stages.iter().map(|s| s.keys_written).sum();
        let planned: u64 = plan.stages.iter().map(|s| s.keys).sum();
        return Some(Failure::Interrupted(format!(
            "interrupted: {written} of {planned} keys written; the result file says how far each stage got"
        )));
    }
    None
}

async fn execute(
    plan: &Plan,
    credentials: Vec<Credentials>,
    run_seed: u64,
    progress: &Progress,
    report: &mut RunReport,
    live: &mut Vec<LiveTarget>,
) -> Result<(), Failure> {
    for (target, credentials) in plan.targets.iter().zip(credentials) {
        let (addr, launched) = match &target.endpoint {
            PlanEndpoint::Nodes(nodes) => (nodes[0].clone(), None),
            PlanEndpoint::Launch { server_bin } => {
                let bin = server_bin.clone();
                let name = target.name.clone();
                let server = tokio::task::spawn_blocking(move || LocalServer::start(&bin, &name))
                    .await
                    .map_err(|e| Failure::Failed(format!("target \"{}\": {e}", target.name)))?
                    .map_err(Failure::Failed)?;
                progress.line(&format!(
                    "target {}: started {server_bin} at {}",
                    target.name, server.addr
                ));
                (server.addr.clone(), Some(server))
            }
        };
        let endpoint = Arc::new(Endpoint::new(target, credentials));
        let mut control = endpoint
            .control(&addr)
            .await
            .map_err(|e| Failure::Failed(e.0))?;
        let facts = control.facts().await;
        if let (Some(max), Some(policy)) = (facts.maxmemory, &facts.maxmemory_policy)
            && max > 0
            && policy != "noeviction"
        {
            progress.line(&format!(
                "warning: target {} ({addr}) has maxmemory-policy {policy}: the server may evict entries this run writes",
                target.name
            ));
        }
        report.targets.insert(
            target.name.clone(),
            TargetReport {
                mode: target.mode.as_str(),
                tls: false,
                flushed: false,
                launched: launched.is_some(),
                server_version: facts.version.clone(),
                nodes: vec![NodeReport {
                    address: addr.to_string(),
                    role: "primary",
                    slots: None,
                    keys_before: facts.keys,
                    keys_after: None,
                    used_memory_before: facts.used_memory,
                    used_memory_after: None,
                }],
            },
        );
        live.push(LiveTarget {
            endpoint,
            addr,
            control,
            launched,
        });
        if interrupt::requested() {
            return Err(Failure::Interrupted(
                "interrupted before anything was written".into(),
            ));
        }
    }

    for (target, live) in plan.targets.iter().zip(live.iter_mut()) {
        if target.flush {
            live.control
                .flushall()
                .await
                .map_err(|e| Failure::Failed(e.0))?;
            if let Some(t) = report.targets.get_mut(&target.name) {
                t.flushed = true;
            }
            progress.line(&format!("target {}: flushed {}", target.name, live.addr));
        }
    }
    if interrupt::requested() {
        return Err(Failure::Interrupted(
            "interrupted before any stage started".into(),
        ));
    }

    schedule(plan, run_seed, progress, report, live).await;
    Ok(())
}

/// Starts every stage once the stages it runs `after` have finished, in parallel otherwise.
async fn schedule(
    plan: &Plan,
    run_seed: u64,
    progress: &Progress,
    report: &mut RunReport,
    live: &[LiveTarget],
) {
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
                let display =
                    progress.stage(&stage.name, &target_name, stage.keys, planned_bytes(stage));
                let run = StageRun {
                    stage: stage.clone(),
                    seed: stage_seed(stage, run_seed),
                    target_name,
                    endpoint: target.endpoint.clone(),
                    addr: target.addr.clone(),
                    display,
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

/// Everything one running stage needs.
struct StageRun {
    stage: Stage,
    seed: u64,
    target_name: String,
    endpoint: Arc<Endpoint>,
    addr: NodeAddr,
    display: StageProgress,
}

/// Payload bytes a stage is expected to write, for the display.
fn planned_bytes(stage: &Stage) -> u64 {
    match stage.amount {
        Amount::Size(bytes) => bytes,
        Amount::Keys => stage.keys.saturating_mul(stage.shape.mean_entry_bytes()),
    }
}

impl StageRun {
    async fn execute(self) -> StageReport {
        let stage = &self.stage;
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let dataset = Arc::new(Dataset::new(
            self.seed,
            &stage.name,
            &stage.shape,
            stage.keys,
        ));
        let state = Arc::new(StageState::new(stage.keys));
        let display = &self.display;
        let config = WriterConfig::new(
            stage.pipeline,
            stage.shape.mean_entry_bytes(),
            stage.keys_per_command,
            stage.shape.ttl.is_some(),
        );

        let mut workers = JoinSet::new();
        for _ in 0..stage.connections {
            workers.spawn(connection_worker(
                self.endpoint.clone(),
                self.addr.clone(),
                state.clone(),
                dataset.clone(),
                config,
            ));
        }
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                finished = workers.join_next() => match finished {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(message))) => state.record_failure(message),
                    Some(Err(e)) => state.record_failure(format!("internal error: {e}")),
                },
                _ = ticker.tick() => {
                    display.update(state.acked.load(Relaxed), state.bytes.load(Relaxed), clock.elapsed());
                }
            }
        }

        let elapsed = clock.elapsed();
        let keys_written = state.acked.load(Relaxed);
        let payload_bytes = state.bytes.load(Relaxed);
        let first_error = state.first_error();
        let status = if first_error.is_some() {
            Status::Failed
        } else if keys_written == stage.keys {
            Status::Ok
        } else if interrupt::requested() {
            Status::Interrupted
        } else {
            Status::Failed
        };
        let first_error = first_error.or_else(|| {
            (status == Status::Failed).then(|| {
                format!(
                    "only {keys_written} of {} entries were acknowledged",
                    stage.keys
                )
            })
        });
        display.update(keys_written, payload_bytes, elapsed);
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let summary = match status {
            Status::Ok => format!(
                "ok, {keys_written} keys, {} in {:.2}s ({:.1} MB/s, {:.0} keys/s)",
                human_bytes(payload_bytes),
                seconds,
                payload_bytes as f64 / 1e6 / seconds,
                keys_written as f64 / seconds
            ),
            _ => format!(
                "{}, {keys_written} of {} keys written: {}",
                if status == Status::Interrupted {
                    "interrupted"
                } else {
                    "failed"
                },
                stage.keys,
                first_error.as_deref().unwrap_or("interrupted")
            ),
        };
        display.finish(&summary);

        StageReport {
            name: stage.name.clone(),
            target: self.target_name.clone(),
            status,
            seed: self.seed,
            keys_planned: stage.keys,
            keys_written,
            payload_bytes,
            started_at: Some(report::timestamp(started_at)),
            duration_s: elapsed.as_secs_f64(),
            keys_per_s: keys_written as f64 / seconds,
            mb_per_s: payload_bytes as f64 / 1e6 / seconds,
            errors: state.errors.load(Relaxed),
            first_error,
            redirects: Redirects::default(),
            reconnects: state.reconnects.load(Relaxed),
            per_node: vec![NodeKeys {
                address: self.addr.to_string(),
                keys: keys_written,
            }],
        }
    }
}
