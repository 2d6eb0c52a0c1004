//! `cachefill verify`: regenerates each stage's dataset with the function `run` used and
//! reads it back (pipelined, routed like the writes), reporting what is missing, what holds
//! another value, and which TTLs are missing or out of range.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::dataset::Dataset;
use crate::error::Failure;
use crate::plan::{Amount, NodeAddr, Plan, Servers, Stage};
use crate::progress::{Display, Progress};
use crate::result::{self, RunResult};
use crate::server::Credentials;
use crate::server::target::{self, Route};

mod reader;
mod report;
mod typed;

use reader::Reader;
use report::SHOWN;
pub use report::{StageCheck, VerifyReport, VerifyStatus};

/// Entries read back per round trip.
const BATCH: u64 = 1000;
/// Round trips in flight at once.
const IN_FLIGHT: usize = 8;

/// How `verify` reads a plan's dataset back. `VerifyOptions::default()` checks every key of
/// every stage with the plan's own seeds and counts, silently.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The result of the run to check (`--result`): its seeds, counts and the addresses of
    /// the servers it launched and kept. It must be a result of the same plan.
    pub result: Option<RunResult>,
    /// Check this many entries spread evenly over each stage instead of all (`--sample`).
    pub sample: Option<u64>,
    /// What verify shows on standard error (default: nothing).
    pub display: Display,
}

/// What verify needs from a run's result: seeds, counts, and where launched servers are.
struct RecordedRun {
    seeds: HashMap<String, u64>,
    counts: HashMap<String, u64>,
    /// Per target: seed addresses, and the throwaway CA of a launched TLS server.
    servers: HashMap<String, (Vec<NodeAddr>, Option<PathBuf>)>,
}

/// The result file `path` of a run, which must be of `plan` (`--result`).
pub(crate) fn read_result(path: &Path, plan: &Plan) -> Result<RunResult, Failure> {
    let report = result::read(path).map_err(Failure::Invalid)?;
    same_plan(&report, plan)
        .map_err(|why| Failure::Invalid(format!("{}: {why}", path.display())))?;
    Ok(report)
}

/// Refuses the result of another plan (another plan file: its SHA-256 as the result
/// records it).
fn same_plan(report: &RunResult, plan: &Plan) -> Result<(), String> {
    if report.plan.sha256 == plan.sha256 {
        return Ok(());
    }
    Err(format!(
        "the result is of another plan than {} (it records plan \"{}\" from {}, whose file's SHA-256 differs): pass the result of a run of this plan file as it is now",
        plan.path.display(),
        report.plan.name,
        report.plan.path,
    ))
}

/// What verify needs of a run's result.
fn recorded(report: &RunResult, plan: &Plan) -> Result<RecordedRun, Failure> {
    same_plan(report, plan).map_err(Failure::Invalid)?;
    let report = report.clone();
    let mut recorded = RecordedRun {
        seeds: HashMap::new(),
        counts: HashMap::new(),
        servers: HashMap::new(),
    };
    for stage in report.stages {
        recorded.seeds.insert(stage.name.clone(), stage.seed);
        recorded.counts.insert(stage.name, stage.keys_planned);
    }
    for (name, target) in report.targets {
        // Servers kept with --keep are listed whole; older results only name the primaries.
        let (addresses, ca_file) = match target.kept {
            Some(kept) => (kept.addresses, kept.ca_file.map(PathBuf::from)),
            None => (target.nodes.into_iter().map(|n| n.address).collect(), None),
        };
        let addrs = addresses
            .iter()
            .filter_map(|a| NodeAddr::parse(a, 6379).ok())
            .collect();
        recorded.servers.insert(name, (addrs, ca_file));
    }
    Ok(recorded)
}

/// Reads the plan's dataset back and says what differs; a verify that found problems is
/// still `Ok` (see [`VerifyReport::status`]).
pub(crate) async fn verify(plan: &Plan, options: &VerifyOptions) -> Result<VerifyReport, Failure> {
    let recorded = options
        .result
        .as_ref()
        .map(|report| recorded(report, plan))
        .transpose()?;
    let mut readers = Vec::new();
    for target in &plan.targets {
        let credentials = Credentials::resolve(&target.name, &target.auth)
            .map_err(|e| Failure::Invalid(format!("{}: {e}", plan.path.display())))?;
        let (seeds, ca_file) = match (&target.servers, &recorded) {
            (Servers::Nodes(nodes), _) => (nodes.clone(), None),
            (Servers::Launch { .. }, Some(run)) => {
                run.servers.get(&target.name).cloned().unwrap_or_default()
            }
            (Servers::Launch { .. }, None) => {
                return Err(Failure::Invalid(format!(
                    "target \"{}\" is launched by the plan: run it with --keep and pass its result with --result FILE",
                    target.name
                )));
            }
        };
        if seeds.is_empty() {
            return Err(Failure::Invalid(format!(
                "target \"{}\": the result file names no server",
                target.name
            )));
        }
        let connector = target::connector(target, credentials, ca_file.as_deref())?;
        let connected = target::connect(connector, target.mode, &seeds).await?;
        let nodes = connected
            .primaries
            .iter()
            .map(|p| p.control.handle())
            .collect();
        let slots = match connected.route {
            Route::Standalone(_) => None,
            Route::Cluster(topology) => {
                Some(topology.owner.iter().map(|o| o.unwrap_or(0)).collect())
            }
        };
        let reader = Reader::new(slots, nodes, &connected.connector, target.io_timeout);
        readers.push(Arc::new(reader));
    }

    let progress = Progress::new(options.display);
    let mut checks = Vec::new();
    for stage in &plan.stages {
        let seed = stage_seed(plan, stage, recorded.as_ref())?;
        let recorded_count = recorded
            .as_ref()
            .and_then(|r| r.counts.get(&stage.name).copied());
        let count = match (stage.amount, recorded_count) {
            (_, Some(count)) => count,
            (Amount::UntilMemory(_), None) => {
                return Err(Failure::Invalid(format!(
                    "stage \"{}\" fills until_memory: pass the run's result with --result FILE so verify knows how many entries it wrote",
                    stage.name
                )));
            }
            (_, None) => stage.keys,
        };
        let check = check_stage(
            plan,
            stage,
            seed,
            count,
            readers[stage.target].clone(),
            options.sample,
            &progress,
        )
        .await?;
        let mut reconnected = match check.reconnects {
            0 => String::new(),
            n => format!(" (connected again {n} times after a link broke)"),
        };
        if check.failovers > 0 {
            let lost = match check.failovers {
                1 => "a lost primary".to_string(),
                n => format!("{n} lost primaries"),
            };
            reconnected.push_str(&format!(
                " (read the slots of {lost} from the replicas that took over)"
            ));
        }
        progress.line(&format!(
            "stage {}: checked {}, missing {}, wrong type {}, wrong value {}, TTL problems {}{reconnected}",
            check.name,
            check.checked,
            check.missing,
            check.wrong_type,
            check.wrong_value,
            check.ttl_problems
        ));
        checks.push(check);
    }

    let status = if checks.iter().all(|c| c.problems() == 0) {
        VerifyStatus::Ok
    } else {
        VerifyStatus::Failed
    };
    Ok(VerifyReport {
        cachefill_version: env!("CARGO_PKG_VERSION").to_string(),
        status,
        plan: plan.name.clone(),
        stages: checks,
    })
}

fn stage_seed(plan: &Plan, stage: &Stage, recorded: Option<&RecordedRun>) -> Result<u64, Failure> {
    if let Some(seed) = recorded.and_then(|r| r.seeds.get(&stage.name)) {
        return Ok(*seed);
    }
    stage.seed.or(plan.seed).ok_or_else(|| {
        Failure::Invalid(format!(
            "stage \"{}\" has no seed in the plan: pass the run's result with --result FILE",
            stage.name
        ))
    })
}

/// The indexes to check: all, or `sample` spread evenly over the range.
fn indices(keys: u64, sample: Option<u64>) -> Vec<u64> {
    match sample {
        Some(n) if n < keys => (0..n)
            .map(|k| (u128::from(k) * u128::from(keys) / u128::from(n)) as u64)
            .collect(),
        _ => (0..keys).collect(),
    }
}

async fn check_stage(
    plan: &Plan,
    stage: &Stage,
    seed: u64,
    keys: u64,
    reader: Arc<Reader>,
    sample: Option<u64>,
    progress: &Progress,
) -> Result<StageCheck, Failure> {
    // The index width comes from the plan's count, as when the stage was written.
    let dataset = Arc::new(Dataset::new(seed, &stage.name, &stage.shape, stage.keys));
    let ttl = stage.shape.ttl.map(|t| t.max_ms);
    let all = indices(keys, sample);
    let display = progress.counting(&stage.name, all.len() as u64, "checked");
    let mut check = StageCheck {
        name: stage.name.clone(),
        target: plan.targets[stage.target].name.clone(),
        seed,
        keys,
        ..StageCheck::default()
    };
    let (reconnects_before, failovers_before) = (reader.reconnects(), reader.failovers());
    let mut tasks: JoinSet<Result<StageCheck, String>> = JoinSet::new();
    let merge = |part: StageCheck, check: &mut StageCheck| {
        check.checked += part.checked;
        check.missing += part.missing;
        check.wrong_type += part.wrong_type;
        check.wrong_value += part.wrong_value;
        check.ttl_problems += part.ttl_problems;
        for (to, from) in [
            (&mut check.missing_keys, part.missing_keys),
            (&mut check.wrong_type_keys, part.wrong_type_keys),
            (&mut check.wrong_value_keys, part.wrong_value_keys),
            (&mut check.ttl_problem_keys, part.ttl_problem_keys),
        ] {
            to.extend(from.into_iter().take(SHOWN.saturating_sub(to.len())));
        }
    };
    for chunk in all.chunks(BATCH as usize) {
        if tasks.len() >= IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            let part = joined(done, &check)?;
            display.add(part.checked);
            merge(part, &mut check);
        }
        let (chunk, dataset, reader) = (chunk.to_vec(), dataset.clone(), reader.clone());
        tasks.spawn(async move {
            if dataset.is_typed() {
                typed::check_batch(&chunk, &dataset, &reader, ttl).await
            } else {
                check_batch(&chunk, &dataset, &reader, ttl).await
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        let part = joined(done, &check)?;
        display.add(part.checked);
        merge(part, &mut check);
    }
    check.reconnects = reader.reconnects() - reconnects_before;
    check.failovers = reader.failovers() - failovers_before;
    Ok(check)
}

/// A batch's findings; a batch that could not be read ends the check of the stage.
fn joined(
    done: Result<Result<StageCheck, String>, tokio::task::JoinError>,
    stage: &StageCheck,
) -> Result<StageCheck, Failure> {
    done.map_err(|e| Failure::Failed(format!("internal error: {e}")))?
        .map_err(|reason| {
            Failure::Failed(format!(
                "verify of stage \"{}\" on target \"{}\" stopped: {reason}; run verify again once the server answers",
                stage.name, stage.target
            ))
        })
}

/// Counts a TTL problem when `pttl` is not a TTL within `(0, max]`.
fn check_ttl(part: &mut StageCheck, key: &[u8], pttl: Option<&redis::Value>, max: u64) {
    if let Some(redis::Value::Int(pttl)) = pttl
        && (*pttl <= 0 || *pttl as u64 > max)
    {
        part.add_ttl_problem(key);
    }
}

/// Reads back one batch: GET (and PTTL when the stage has TTLs), grouped by server.
async fn check_batch(
    indices: &[u64],
    dataset: &Dataset,
    reader: &Reader,
    ttl_max: Option<u64>,
) -> Result<StageCheck, String> {
    let mut part = StageCheck::default();
    let groups = reader.by_node(indices, dataset);
    for (node, entries) in groups
        .into_iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
    {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, key) in &entries {
            pipe.cmd("GET").arg(key);
            if ttl_max.is_some() {
                pipe.cmd("PTTL").arg(key);
            }
        }
        let replies: Vec<redis::Value> = reader.query(node, &pipe).await?;
        let step = if ttl_max.is_some() { 2 } else { 1 };
        for ((index, key), reply) in entries.iter().zip(replies.chunks(step)) {
            part.checked += 1;
            match &reply[0] {
                redis::Value::Nil => {
                    part.add_missing(key);
                    continue;
                }
                redis::Value::BulkString(value) if *value == dataset.value(*index) => {}
                redis::Value::ServerError(e) if e.code() == "WRONGTYPE" => {
                    part.add_wrong_type(key, "key of another type");
                }
                _ => part.add_wrong_value(key, String::new),
            }
            if let Some(max) = ttl_max {
                check_ttl(&mut part, key, reply.get(1), max);
            }
        }
    }
    Ok(part)
}
