//! `cachefill export`: the exact dataset of a plan, without touching a server, as keys (one
//! per line), as the RESP commands that write it (`| redis-cli --pipe` reproduces the fill),
//! or as JSON lines.

mod jsonl;

use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::Failure;
use crate::plan::{Amount, Plan, WriteMode};
use crate::rdb::{PayloadEncoder, ServerEncoding};
use crate::resp::EntryEncoder;
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
}

/// Options of `cachefill export`.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Only this stage.
    pub stage: Option<String>,
    /// Keys or commands.
    pub format: Format,
    /// The part of every stage to export.
    pub shard: Shard,
    /// Typed keys as `run` writes them to a server of this RDB version (see
    /// `ServerEncoding::of_rdb_version`): RESTORE payloads where the plan's `write` says so.
    pub rdb_version: Option<u16>,
    /// Where to write (`None` or `-`: standard output).
    pub output: Option<PathBuf>,
}

/// Bytes gathered before each write.
const CHUNK: usize = 256 << 10;

/// Runs `cachefill export`.
pub fn export(plan: &Plan, options: &ExportOptions) -> Result<(), Failure> {
    let stages: Vec<_> = plan
        .stages
        .iter()
        .filter(|s| options.stage.as_ref().is_none_or(|name| &s.name == name))
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
    let out: Box<dyn Write> = match options.output.as_deref() {
        None => Box::new(std::io::stdout().lock()),
        Some(path) if path == Path::new("-") => Box::new(std::io::stdout().lock()),
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", path.display())))?,
        ),
    };
    let mut out = BufWriter::with_capacity(CHUNK, out);
    let written = stages.iter().try_for_each(|stage| {
        let seed = stage.seed.or(plan.seed).unwrap_or_default();
        let dataset = Dataset::new(seed, &stage.name, &stage.shape, stage.keys);
        let server = options.rdb_version.map(ServerEncoding::of_rdb_version);
        let encoder = match server.filter(|_| stage.write != WriteMode::Commands) {
            Some(server) if PayloadEncoder::new(&dataset, server).is_ok() => {
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
    });
    match written.and_then(|()| out.flush()) {
        // A reader that went away (`| head`) is not an error.
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(Failure::Failed(format!("cannot write the export: {e}")))
        }
        _ => Ok(()),
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
                encoder.push_key_commands(index, 0, 0..encoder.commands_of(index, 0), &mut buf);
            }
            Format::Resp => encoder.push_set(index, &mut buf),
            Format::Jsonl => jsonl::push_entry(dataset, stage, index, &mut buf),
        }
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}
