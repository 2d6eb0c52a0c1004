//! `cachefill verify`: regenerates each stage's dataset with the function `run` used and
//! reads it back (pipelined, routed like the writes), reporting what is missing, what holds
//! another value, and which TTLs are missing or out of range.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::dataset::Dataset;
use crate::error::Failure;
use crate::plan::{Amount, Mode, NodeAddr, Plan, Servers, Stage};
use crate::server::cluster::discover;
use crate::server::{Connector, Credentials};
use crate::slot::slot;

/// Entries read back per round trip.
const BATCH: u64 = 1000;
/// Round trips in flight at once.
const IN_FLIGHT: usize = 8;
/// Offending keys listed per kind of problem.
const SHOWN: usize = 5;

/// Options of `cachefill verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The result of the run to check: seeds, counts and the addresses of launched servers.
    pub result: Option<PathBuf>,
    /// Check this many entries spread over each stage instead of all.
    pub sample: Option<u64>,
    /// Where the JSON report goes.
    pub output: Option<PathBuf>,
}

/// What verify found for one stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageCheck {
    pub name: String,
    pub target: String,
    pub seed: u64,
    pub keys: u64,
    pub checked: u64,
    pub missing: u64,
    pub wrong_value: u64,
    pub ttl_problems: u64,
    pub missing_keys: Vec<String>,
    pub wrong_value_keys: Vec<String>,
    pub ttl_problem_keys: Vec<String>,
}

impl StageCheck {
    fn problems(&self) -> u64 {
        self.missing + self.wrong_value + self.ttl_problems
    }
}

/// The JSON report of `verify -o`.
#[derive(Debug, Serialize)]
struct VerifyReport {
    cachefill_version: &'static str,
    status: &'static str,
    plan: String,
    stages: Vec<StageCheck>,
}

/// Seeds, counts and launched addresses recorded by a run.
struct RecordedRun {
    seeds: HashMap<String, u64>,
    counts: HashMap<String, u64>,
    addresses: HashMap<String, Vec<NodeAddr>>,
}

fn read_result(path: &PathBuf) -> Result<RecordedRun, Failure> {
    let invalid = |m: String| Failure::Invalid(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read the result file: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not a cachefill result: {e}")))?;
    let mut recorded = RecordedRun {
        seeds: HashMap::new(),
        counts: HashMap::new(),
        addresses: HashMap::new(),
    };
    for stage in json["stages"]
        .as_array()
        .ok_or_else(|| invalid("no stages in the result".into()))?
    {
        let name = stage["name"].as_str().unwrap_or_default().to_string();
        if let Some(seed) = stage["seed"].as_u64() {
            recorded.seeds.insert(name.clone(), seed);
        }
        if let Some(count) = stage["keys_planned"].as_u64() {
            recorded.counts.insert(name, count);
        }
    }
    if let Some(targets) = json["targets"].as_object() {
        for (name, target) in targets {
            let nodes = target["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let addrs = nodes
                .iter()
                .filter_map(|n| n["address"].as_str())
                .filter_map(|a| NodeAddr::parse(a, 6379).ok())
                .collect();
            recorded.addresses.insert(name.clone(), addrs);
        }
    }
    Ok(recorded)
}

/// Where a target's entries are read from.
enum Reader {
    Standalone(MultiplexedConnection),
    Cluster {
        slots: Vec<usize>,
        nodes: Vec<MultiplexedConnection>,
    },
}

impl Reader {
    /// The server that holds `key`, as an index into [`Reader::connection`].
    fn node_for(&self, key: &[u8]) -> usize {
        match self {
            Reader::Standalone(_) => 0,
            Reader::Cluster { slots, .. } => slots[usize::from(slot(key))],
        }
    }

    fn nodes(&self) -> usize {
        match self {
            Reader::Standalone(_) => 1,
            Reader::Cluster { nodes, .. } => nodes.len(),
        }
    }

    fn connection(&self, node: usize) -> MultiplexedConnection {
        match self {
            Reader::Standalone(c) => c.clone(),
            Reader::Cluster { nodes, .. } => nodes[node].clone(),
        }
    }
}

/// Runs `cachefill verify`.
pub async fn verify(plan: &Plan, options: &VerifyOptions) -> Result<(), Failure> {
    let recorded = options.result.as_ref().map(read_result).transpose()?;
    let mut readers = Vec::new();
    for target in &plan.targets {
        let credentials = Credentials::resolve(&target.name, &target.auth)
            .map_err(|e| Failure::Invalid(format!("{}: {e}", plan.path.display())))?;
        let seeds = match (&target.servers, &recorded) {
            (Servers::Nodes(nodes), _) => nodes.clone(),
            (Servers::Launch { .. }, Some(run)) => {
                run.addresses.get(&target.name).cloned().unwrap_or_default()
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
        let connector = Connector::new(target, credentials).map_err(Failure::Invalid)?;
        let reader = match target.mode {
            Mode::Standalone => Reader::Standalone(
                connector
                    .control(&seeds[0])
                    .await
                    .map_err(|e| Failure::Failed(e.0))?
                    .connection(),
            ),
            Mode::Cluster => {
                let topology = discover(&connector, &seeds)
                    .await
                    .map_err(|e| Failure::Failed(e.0))?;
                let mut nodes = Vec::new();
                for primary in &topology.primaries {
                    nodes.push(
                        connector
                            .control(&primary.addr)
                            .await
                            .map_err(|e| Failure::Failed(e.0))?
                            .connection(),
                    );
                }
                let slots = topology.owner.iter().map(|o| o.unwrap_or(0)).collect();
                Reader::Cluster { slots, nodes }
            }
        };
        readers.push(Arc::new(reader));
    }

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
        )
        .await?;
        eprintln!(
            "stage {}: checked {}, missing {}, wrong value {}, TTL problems {}",
            check.name, check.checked, check.missing, check.wrong_value, check.ttl_problems
        );
        checks.push(check);
    }

    let bad: Vec<&StageCheck> = checks.iter().filter(|c| c.problems() > 0).collect();
    if let Some(path) = &options.output {
        let report = VerifyReport {
            cachefill_version: env!("CARGO_PKG_VERSION"),
            status: if bad.is_empty() { "ok" } else { "failed" },
            plan: plan.name.clone(),
            stages: checks.clone(),
        };
        let json =
            serde_json::to_vec_pretty(&report).map_err(|e| Failure::Failed(e.to_string()))?;
        std::fs::write(path, json).map_err(|e| {
            Failure::Failed(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
    }
    match bad.first() {
        None => Ok(()),
        Some(first) => {
            let example = first
                .missing_keys
                .first()
                .map(|k| format!("missing {k}"))
                .or_else(|| {
                    first
                        .wrong_value_keys
                        .first()
                        .map(|k| format!("wrong value at {k}"))
                })
                .or_else(|| {
                    first
                        .ttl_problem_keys
                        .first()
                        .map(|k| format!("TTL problem at {k}"))
                })
                .unwrap_or_default();
            Err(Failure::Failed(format!(
                "verify found problems in {} stage(s); stage \"{}\": {} missing, {} wrong values, {} TTL problems (e.g. {example})",
                bad.len(),
                first.name,
                first.missing,
                first.wrong_value,
                first.ttl_problems
            )))
        }
    }
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
) -> Result<StageCheck, Failure> {
    // The index width comes from the plan's count, as when the stage was written.
    let dataset = Arc::new(Dataset::new(seed, &stage.name, &stage.shape, stage.keys));
    let ttl = stage.shape.ttl.map(|t| t.max_ms);
    let all = indices(keys, sample);
    let mut check = StageCheck {
        name: stage.name.clone(),
        target: plan.targets[stage.target].name.clone(),
        seed,
        keys,
        ..StageCheck::default()
    };
    let mut tasks: JoinSet<Result<StageCheck, String>> = JoinSet::new();
    let merge = |part: StageCheck, check: &mut StageCheck| {
        check.checked += part.checked;
        check.missing += part.missing;
        check.wrong_value += part.wrong_value;
        check.ttl_problems += part.ttl_problems;
        for (to, from) in [
            (&mut check.missing_keys, part.missing_keys),
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
            merge(joined(done)?, &mut check);
        }
        let (chunk, dataset, reader) = (chunk.to_vec(), dataset.clone(), reader.clone());
        tasks.spawn(async move { check_batch(&chunk, &dataset, &reader, ttl).await });
    }
    while let Some(done) = tasks.join_next().await {
        merge(joined(done)?, &mut check);
    }
    Ok(check)
}

fn joined(
    done: Result<Result<StageCheck, String>, tokio::task::JoinError>,
) -> Result<StageCheck, Failure> {
    done.map_err(|e| Failure::Failed(format!("internal error: {e}")))?
        .map_err(Failure::Failed)
}

/// Reads back one batch: GET (and PTTL when the stage has TTLs), grouped by server.
async fn check_batch(
    indices: &[u64],
    dataset: &Dataset,
    reader: &Reader,
    ttl_max: Option<u64>,
) -> Result<StageCheck, String> {
    let mut part = StageCheck::default();
    let mut groups: Vec<Vec<(u64, Vec<u8>)>> = vec![Vec::new(); reader.nodes()];
    for &index in indices {
        let key = dataset.key(index);
        groups[reader.node_for(&key)].push((index, key));
    }
    for (node, entries) in groups
        .into_iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
    {
        let mut connection = reader.connection(node);
        let mut pipe = redis::pipe();
        for (_, key) in &entries {
            pipe.cmd("GET").arg(key);
            if ttl_max.is_some() {
                pipe.cmd("PTTL").arg(key);
            }
        }
        let replies: Vec<redis::Value> = pipe
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("reading back failed: {e}"))?;
        let step = if ttl_max.is_some() { 2 } else { 1 };
        for ((index, key), reply) in entries.iter().zip(replies.chunks(step)) {
            part.checked += 1;
            let shown = || String::from_utf8_lossy(key).into_owned();
            match &reply[0] {
                redis::Value::Nil => {
                    part.missing += 1;
                    if part.missing_keys.len() < SHOWN {
                        part.missing_keys.push(shown());
                    }
                    continue;
                }
                redis::Value::BulkString(value) if *value == dataset.value(*index) => {}
                _ => {
                    part.wrong_value += 1;
                    if part.wrong_value_keys.len() < SHOWN {
                        part.wrong_value_keys.push(shown());
                    }
                }
            }
            if let (Some(max), Some(redis::Value::Int(pttl))) = (ttl_max, reply.get(1))
                && (*pttl <= 0 || *pttl as u64 > max)
            {
                part.ttl_problems += 1;
                if part.ttl_problem_keys.len() < SHOWN {
                    part.ttl_problem_keys.push(shown());
                }
            }
        }
    }
    Ok(part)
}
