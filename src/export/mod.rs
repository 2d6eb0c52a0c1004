//! `cachefill export`: the exact dataset of a plan, without touching a server, as keys (one
//! per line), as the RESP commands that write it (`| redis-cli --pipe` reproduces the fill),
//! as JSON lines, or as an RDB file a server starts on.

mod jsonl;
mod rdb;

use std::io::{BufWriter, ErrorKind, Write};
use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dataset::Dataset;
use crate::error::Failure;
use crate::plan::{Amount, Mode, Plan, Stage, WriteMode};
use crate::rdb::{PayloadEncoder, ServerEncoding};
use crate::resp::EntryEncoder;
use crate::resp::typed::Chunking;
use crate::shard::Shard;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One key per line.
    Keys,
    /// The write commands, as RESP: `SET key value [PX ms]` per string entry, a typed
    /// key's `HSET`/`SADD`/`ZADD`/`RPUSH`/`XADD` chunks and `PEXPIRE`.
    Resp,
    /// One JSON object per key: stage, key, type, TTL in ms, and the value or elements.
    Jsonl,
    /// An RDB file of one target's keys (`--rdb-version`, `--base-time`, `--slots`): start a
    /// server on it (`--dir`, `--dbfilename`) to hold the dataset.
    Rdb,
}

/// Options of `cachefill export`.
#[derive(Debug, Clone)]
pub(crate) struct ExportOptions {
    /// Only this stage.
    pub stage: Option<String>,
    /// Keys or commands.
    pub format: Format,
    /// The part of every stage to export.
    pub shard: Shard,
    /// Typed keys as `run` writes them to a server of this RDB version (see
    /// `ServerEncoding::of_rdb_version`): RESTORE payloads where the plan's `write` says so.
    pub rdb_version: Option<u16>,
    /// `rdb`: only the stages of this target.
    pub target: Option<String>,
    /// `rdb`: Unix milliseconds that TTLs count from (`None`: now).
    pub base_ms: Option<u64>,
    /// `rdb`: only the keys of these hash slots.
    pub slots: Option<RangeInclusive<u16>>,
}

/// Bytes gathered before each write.
const CHUNK: usize = 256 << 10;

/// An export checked against its plan, ready to write: nothing is opened before it is, so
/// an export the plan or the options make invalid writes nothing.
pub(crate) struct Export<'a> {
    plan: &'a Plan,
    options: &'a ExportOptions,
    stages: Vec<&'a Stage>,
}

/// Checks what `cachefill export` is asked for against the plan.
pub(crate) fn prepare<'a>(
    plan: &'a Plan,
    options: &'a ExportOptions,
) -> Result<Export<'a>, Failure> {
    let target = match &options.target {
        Some(name) => Some(
            plan.targets
                .iter()
                .position(|t| &t.name == name)
                .ok_or_else(|| {
                    Failure::Invalid(format!(
                        "the command line: --target {name}: the plan has no such target"
                    ))
                })?,
        ),
        None => None,
    };
    let stages: Vec<_> = plan
        .stages
        .iter()
        .filter(|s| options.stage.as_ref().is_none_or(|name| &s.name == name))
        .filter(|s| target.is_none_or(|t| s.target == t))
        .collect();
    if let Some(name) = &options.stage
        && stages.is_empty()
    {
        return Err(Failure::Invalid(format!(
            "the command line: --stage {name}: the plan has no such stage"
        )));
    }
    for stage in &stages {
        if matches!(stage.amount, Amount::UntilMemory(_)) {
            return Err(Failure::Invalid(format!(
                "stage \"{}\" fills until_memory: how many entries it writes depends on the server, so it cannot be exported",
                stage.name
            )));
        }
        if stage.seed.or(plan.seed).is_none() {
            return Err(Failure::Invalid(format!(
                "stage \"{}\" has no seed: export needs `seed` in the plan (or the stage) to know the dataset",
                stage.name
            )));
        }
    }
    if options.format == Format::Rdb {
        check_rdb(plan, &stages, target)?;
    }
    Ok(Export {
        plan,
        options,
        stages,
    })
}

impl Export<'_> {
    /// Writes the export into `out`; a reader that went away (`| head`) is not an error.
    pub(crate) fn write_to(&self, out: impl Write) -> Result<(), Failure> {
        let (plan, options, stages) = (self.plan, self.options, &self.stages);
        let mut out = BufWriter::with_capacity(CHUNK, out);
        let written = if options.format == Format::Rdb {
            write_rdb(plan, stages, options, &mut out)
        } else {
            stages.iter().try_for_each(|stage| {
                let seed = stage.seed.or(plan.seed).unwrap_or_default();
                let dataset = Dataset::new(seed, &stage.name, &stage.shape, stage.keys);
                let server = options.rdb_version.map(ServerEncoding::of_rdb_version);
                let encoder = match server.filter(|_| stage.write != WriteMode::Commands) {
                    Some(server)
                        if PayloadEncoder::new(
                            &dataset,
                            server,
                            Chunking::of(&dataset).per_command,
                        )
                        .is_ok() =>
                    {
                        EntryEncoder::restoring(&dataset, server)
                    }
                    _ => EntryEncoder::new(&dataset),
                };
                write_stage(
                    &dataset,
                    &encoder,
                    &stage.name,
                    stage.keys,
                    options,
                    &mut out,
                )
            })
        };
        match written.and_then(|()| out.flush()) {
            // A reader that went away (`| head`) is not an error.
            Err(e) if e.kind() != ErrorKind::BrokenPipe => {
                Err(Failure::Failed(format!("cannot write the export: {e}")))
            }
            _ => Ok(()),
        }
    }
}

/// Writes this shard's part of one stage.
fn write_stage(
    dataset: &Dataset,
    encoder: &EntryEncoder<'_>,
    stage: &str,
    keys: u64,
    options: &ExportOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK * 2);
    for position in 0..options.shard.len(keys) {
        let index = options.shard.global(position);
        match options.format {
            Format::Keys => {
                dataset.push_key(&dataset.entry(index), &mut buf);
                buf.push(b'\n');
            }
            Format::Resp if dataset.is_typed() => {
                encoder.push_whole_key(index, &mut buf);
            }
            Format::Resp => encoder.push_set(index, &mut buf),
            Format::Jsonl => jsonl::push_entry(dataset, stage, index, &mut buf),
            Format::Rdb => unreachable!("an RDB file is written by write_rdb"),
        }
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

/// An RDB file holds one server's keys: the stages of one target (named with `--target`
/// when the plan has several).
fn check_rdb(plan: &Plan, stages: &[&Stage], target: Option<usize>) -> Result<(), Failure> {
    let targets: std::collections::BTreeSet<usize> = stages.iter().map(|s| s.target).collect();
    if target.is_none() && targets.len() > 1 {
        let names: Vec<&str> = targets
            .iter()
            .map(|&t| plan.targets[t].name.as_str())
            .collect();
        return Err(Failure::Invalid(format!(
            "the command line: --format rdb: the stages write to several targets ({}), and an RDB file holds one server's keys: name one with --target",
            names.join(", ")
        )));
    }
    Ok(())
}

/// Writes the RDB file of `stages` (of one target).
fn write_rdb(
    plan: &Plan,
    stages: &[&Stage],
    options: &ExportOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let target = stages.first().map(|s| &plan.targets[s.target]);
    let server = ServerEncoding::of_rdb_version(options.rdb_version.unwrap_or(10));
    let base_ms = options.base_ms.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    let file = rdb::RdbFile {
        server,
        db: target
            .filter(|t| t.mode == Mode::Standalone)
            .map_or(0, |t| t.db),
        base_ms,
        slots: options.slots.clone(),
        shard: options.shard,
    };
    let stages: Vec<rdb::FileStage<'_>> = stages
        .iter()
        .map(|stage| rdb::FileStage {
            stage,
            dataset: Dataset::new(
                stage.seed.or(plan.seed).unwrap_or_default(),
                &stage.name,
                &stage.shape,
                stage.keys,
            ),
        })
        .collect();
    file.write(&stages, out)
}

/// `--base-time`: RFC 3339 (`2026-12-07T08:00:00Z`) or Unix milliseconds.
pub(crate) fn parse_base_time(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.trim().parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text.trim())
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map(|since| since.as_millis() as u64)
        .ok_or_else(|| {
            format!(
                "--base-time {text}: give a time as RFC 3339 (2026-12-07T08:00:00Z) or Unix milliseconds"
            )
        })
}

/// `--slots A-B` (or one slot `A`): hash slots from 0 to 16383.
pub(crate) fn parse_slots(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("--slots {text}: give a range of hash slots such as 0-5460 (0 to 16383)");
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if low > high || high >= crate::slot::SLOTS {
        return Err(bad());
    }
    Ok(low..=high)
}
