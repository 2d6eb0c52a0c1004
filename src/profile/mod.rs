//! `cachefill profile`: measures the shape of a live server read-only (key patterns, types,
//! sizes, element counts, TTLs; never a value's content) and writes a plan that fills a
//! server of the same shape. `sampling.rs` reads the servers within `rate.rs`'s cap (the
//! per-type commands and what their replies say: `replies.rs`),
//! `patterns.rs` turns keys into patterns, `shape.rs` groups the sample, `statistics.rs`
//! summarises each measure, `writer.rs` writes the plan.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::error::Failure;
use crate::plan::NodeAddr;
use crate::plan::{Plan, Servers, Target};
use crate::progress::Counter;
use crate::progress::Progress;
use crate::server::Connector;
use crate::server::Credentials;
use crate::server::cluster::{Topology, successor_topology};
use crate::server::reconnecting::Reconnecting;
use crate::server::target::{self, Route};

pub(crate) mod patterns;
pub(crate) mod rate;
mod replies;
pub(crate) mod sampling;
pub(crate) mod shape;
pub(crate) mod statistics;
pub(crate) mod writer;

pub(crate) use writer::Amount;

/// Keys sampled when `--sample` is not given.
pub(crate) const DEFAULT_SAMPLE: u64 = 10_000;
/// Commands per second per server when `--max-ops` is not given.
pub(crate) const DEFAULT_MAX_OPS: u64 = 5_000;

/// Options of `cachefill profile`.
#[derive(Debug, Clone)]
pub(crate) struct ProfileOptions {
    /// The target to profile (may be omitted when the plan has one).
    pub target: Option<String>,
    /// Keys to sample in all.
    pub sample: u64,
    /// How many keys the written plan has.
    pub amount: Amount,
    /// Commands per second per server; `None`: no cap.
    pub max_ops: Option<u64>,
}

/// What `profile` made: the plan's text and what it measured.
pub(crate) struct Profiled {
    /// The plan of the keyspace's shape (TOML, commented).
    pub text: String,
    /// The target profiled.
    pub target: String,
    /// Keys sampled, of the total.
    pub sampled: u64,
    /// Keys in the keyspace.
    pub total: u64,
    /// Read commands sent.
    pub commands: u64,
    /// Stages in the plan.
    pub stages: usize,
    /// Primaries lost while sampled whose slots were sampled on the replica that took over.
    pub failovers: u64,
}

/// Where a cluster primary's keys are sampled when it is lost while sampled: the slot map
/// profile started with, the primary's place in it, and how to connect.
struct Succession {
    topology: Arc<Topology>,
    index: usize,
    connector: Arc<Connector>,
}

/// Samples one primary (`quota` of its `dbsize` keys). On a cluster, a primary lost while
/// sampled (its link broke and new connections failed, or it stayed silent for
/// `io_timeout`) is waited for as the fill waits, up to `failover_timeout` for a replica to
/// take over its slots; then its keys are sampled again, from the start, on that replica,
/// and what was sampled of it before is dropped, so no key counts twice. The sample, and 1
/// when a replica took over.
async fn sample_primary(
    mut sampler: sampling::Sampler,
    (quota, dbsize): (u64, u64),
    cap: rate::RateCap,
    counter: Counter,
    succession: Option<Succession>,
) -> Result<(sampling::ServerSample, u64), Failure> {
    let failure = match sampler.sample(quota, dbsize, cap, counter.clone()).await {
        Ok(sample) => return Ok((sample, 0)),
        Err(failure) => failure,
    };
    let Some(succession) = succession.filter(|_| sampler.lost) else {
        return Err(failure);
    };
    let lost = sampler.control.addr();
    let first = &succession.topology;
    let seeds: Vec<NodeAddr> = first
        .primaries
        .iter()
        .chain(&first.replicas)
        .map(|n| n.addr.clone())
        .filter(|a| *a != lost)
        .collect();
    let connector = &succession.connector;
    let Some(now) = successor_topology(connector, &lost, || seeds.clone(), || false).await else {
        return Err(Failure::Failed(format!(
            "{failure}; no replica took over its slots within {} (failover_timeout)",
            humantime::format_duration(connector.failover_timeout)
        )));
    };
    let successor = first
        .owner
        .iter()
        .position(|o| *o == Some(succession.index))
        .and_then(|slot| now.owner[slot])
        .map(|owner| now.primaries[owner].addr.clone())
        .filter(|addr| !first.primaries.iter().any(|p| p.addr == *addr));
    let Some(successor) = successor else {
        return Err(Failure::Failed(format!(
            "{failure}; its slots went to a primary that is sampled already: run profile again"
        )));
    };
    let control = connector
        .control(&successor)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let mut sampler = sampling::Sampler {
        control: Reconnecting::new(control.handle(), connector.clone()),
        target: sampler.target.clone(),
        max_ops: sampler.max_ops,
        lost: false,
    };
    let mut cap = rate::RateCap::new(sampler.max_ops);
    let dbsize = sampler.dbsize(&mut cap).await?;
    let sample = sampler
        .sample(quota.min(dbsize), dbsize, cap, counter)
        .await?;
    Ok((sample, 1))
}

/// Measures the target's keyspace read-only and writes a plan of its shape.
pub(crate) async fn profile(plan: &Plan, options: &ProfileOptions) -> Result<Profiled, Failure> {
    let target = pick_target(plan, options.target.as_deref())?;
    let Servers::Nodes(seeds) = &target.servers else {
        return Err(Failure::Invalid(format!(
            "target \"{}\" is launched by the plan, so it holds nothing yet: profile a target with `nodes`",
            target.name
        )));
    };
    let credentials = Credentials::resolve(&target.name, &target.auth)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", plan.path.display())))?;
    let connector = target::connector(target, credentials, None)?;
    let connected = target::connect(connector, target.mode, seeds).await?;

    let mut servers = Vec::new();
    for primary in &connected.primaries {
        let mut sampler = sampling::Sampler {
            control: Reconnecting::new(primary.control.handle(), connected.connector.clone()),
            target: target.name.clone(),
            max_ops: options.max_ops,
            lost: false,
        };
        let mut cap = rate::RateCap::new(sampler.max_ops);
        let dbsize = sampler.dbsize(&mut cap).await?;
        servers.push((sampler, cap, dbsize));
    }
    let total: u64 = servers.iter().map(|(_, _, d)| d).sum();
    if total == 0 {
        return Err(Failure::Failed(format!(
            "target \"{}\": no keys in database {} (DBSIZE 0 on every primary): nothing to profile",
            target.name, target.db
        )));
    }
    // Each primary's share of the sample follows its share of the keys.
    let quotas: Vec<u64> = servers
        .iter()
        .map(|(_, _, dbsize)| {
            let quota =
                (u128::from(options.sample) * u128::from(*dbsize)).div_ceil(u128::from(total));
            u64::try_from(quota).unwrap_or(u64::MAX).min(*dbsize)
        })
        .collect();
    let display = Progress::new(crate::progress::Display::Bars).counting(
        &target.name,
        quotas.iter().sum(),
        "sampled",
    );
    let mut tasks = JoinSet::new();
    for (index, ((sampler, cap, dbsize), quota)) in servers.into_iter().zip(quotas).enumerate() {
        let succession = match &connected.route {
            Route::Cluster(topology) => Some(Succession {
                topology: topology.clone(),
                index,
                connector: connected.connector.clone(),
            }),
            Route::Standalone(_) => None,
        };
        tasks.spawn(sample_primary(
            sampler,
            (quota, dbsize),
            cap,
            display.counter(),
            succession,
        ));
    }
    let mut sample = Vec::new();
    let (mut commands, mut sampled, mut failovers) = (0, 0, 0);
    let mut unsupported = std::collections::BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (server, took_over) =
            done.map_err(|e| Failure::Failed(format!("profiling stopped: {e}")))??;
        failovers += took_over;
        commands += server.commands;
        let types: u64 = server.unsupported.values().sum();
        let measured = server.keys.len() as u64 + types;
        let weight = server.dbsize as f64 / measured.max(1) as f64;
        sampled += measured;
        for (name, n) in server.unsupported {
            *unsupported.entry(name).or_insert(0) += n;
        }
        sample.extend(
            server
                .keys
                .into_iter()
                .map(|key| shape::Weighted { key, weight }),
        );
    }
    if sample.is_empty() {
        return Err(Failure::Failed(format!(
            "target \"{}\": none of the {sampled} keys sampled is of a type a plan can write (string, hash, set, zset, list, stream)",
            target.name
        )));
    }
    drop(display);
    let mut groups = shape::groups(&sample);
    let source = writer::Source {
        plan: plan.path.display().to_string(),
        target: target.name.clone(),
        target_toml: target_toml(&plan.path, &target.name),
        mode: target.mode,
        primaries: connected.primaries.len(),
        keys: total,
        sampled,
        commands,
        unsupported: unsupported.into_iter().collect(),
    };
    let text = writer::write(&mut groups, &source, options.amount);
    Ok(Profiled {
        text,
        target: target.name.clone(),
        sampled,
        total,
        commands,
        stages: groups.len(),
        failovers,
    })
}

fn pick_target<'a>(plan: &'a Plan, name: Option<&str>) -> Result<&'a Target, Failure> {
    let names = || {
        plan.targets
            .iter()
            .map(|t| format!("\"{}\"", t.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (name, plan.targets.as_slice()) {
        (None, [only]) => Ok(only),
        (None, _) => Err(Failure::Invalid(format!(
            "the command line: the plan has several targets ({}); name one with --target NAME",
            names()
        ))),
        (Some(name), targets) => targets.iter().find(|t| t.name == name).ok_or_else(|| {
            Failure::Invalid(format!(
                "the command line: --target \"{name}\" is not a target of {} (it has {})",
                plan.path.display(),
                names()
            ))
        }),
    }
}

/// The target's table as the plan file has it, for the written plan's comment.
fn target_toml(path: &Path, name: &str) -> String {
    let table = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|plan| plan.get("targets")?.get(name).cloned());
    let Some(table) = table else {
        return format!("[targets.{name}]");
    };
    let mut targets = toml::Table::new();
    targets.insert(name.to_string(), table);
    let mut root = toml::Table::new();
    root.insert("targets".into(), toml::Value::Table(targets));
    toml::to_string(&root).unwrap_or_else(|_| format!("[targets.{name}]"))
}
