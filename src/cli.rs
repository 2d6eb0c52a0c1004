//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Fill Redis and Redis-compatible servers with synthetic data from a declarative plan.
#[derive(Debug, Parser)]
#[command(name = "cachefill", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand and its arguments.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the plan, connect, flush, run the stages and write the JSON result.
    #[command(after_help = "Examples:
  cachefill run plans/quickstart.toml              fill; the result goes to quickstart.result.json
  cachefill run plans/cluster-5g.toml --yes        confirm flushing servers not on loopback
  cachefill run plan.toml --keep -o -              leave launched servers up, result on stdout
  cachefill run plan.toml --shard 2/8 --no-flush   the third of eight parallel parts")]
    Run {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Where the JSON result goes; `-` for standard output [default: <plan name>.result.json].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Confirm flushing targets that are not on a loopback address.
        #[arg(long)]
        yes: bool,
        /// No progress bars: one line per stage start and end.
        #[arg(short, long)]
        quiet: bool,
        /// Leave servers started with `launch` running and print their addresses.
        #[arg(long)]
        keep: bool,
        /// Write only the I-th of N disjoint parts of every stage (0 <= I < N).
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Shard count, with the index taken from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs).
        #[arg(long, value_name = "N")]
        shards: Option<u64>,
        /// Skip the plan's flushes: they were done once with `cachefill flush` before the shards.
        #[arg(long)]
        no_flush: bool,
    },
    /// Only flush the plan's targets that have `flush = true` (before starting sharded runs).
    #[command(after_help = "Example:
  cachefill flush plan.toml --yes && for i in 0 1 2 3; do cachefill run plan.toml --shard $i/4 --no-flush & done")]
    Flush {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Where the JSON result goes; `-` for standard output [default: <plan name>.flush.json].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Confirm flushing targets that are not on a loopback address.
        #[arg(long)]
        yes: bool,
    },
    /// Validate the plan without touching the network and show what it would write.
    #[command(after_help = "Examples:
  cachefill check plans/shop.toml                  what each stage writes, no network
  cachefill check plans/*.toml                     every plan in the folder
  cachefill check plan.toml --shards 8 --no-flush  the plan can run as eight shards")]
    Check {
        /// The plan files (TOML): each is checked; exit 2 when any is invalid.
        #[arg(required = true, value_name = "PLAN")]
        plans: Vec<PathBuf>,
        /// Also check that the plan can run as N shards (seeded, no flush in the shards).
        #[arg(long, value_name = "N")]
        shards: Option<u64>,
        /// With --shards: the shards will run with --no-flush.
        #[arg(long)]
        no_flush: bool,
    },
    /// Read the plan's dataset back from the servers and report what is missing or wrong.
    #[command(after_help = "Examples:
  cachefill verify plan.toml --result plan.result.json     every key of the run, read back
  cachefill verify plan.toml --sample 10000 -o check.json  10,000 keys per stage")]
    Verify {
        /// The plan file (TOML).
        plan: PathBuf,
        /// The result of the run to check (seeds, counts, addresses of launched servers).
        #[arg(long, value_name = "FILE")]
        result: Option<PathBuf>,
        /// Check N entries spread over each stage instead of all of them.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        sample: Option<u64>,
        /// Write a JSON report here.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Combine the results of a sharded run into one result.
    #[command(after_help = "Example:
  cachefill merge shard-*.json -o plan.result.json")]
    Merge {
        /// The shards' result files.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Where the merged result goes [default: <plan name>.result.json].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write the plan's dataset without touching a server: keys, or the RESP commands that
    /// write it (`| redis-cli --pipe` reproduces the fill).
    #[command(after_help = "Examples:
  cachefill export plan.toml | redis-cli --pipe         the same fill, by redis-cli
  cachefill export plan.toml --rdb-version 10 | redis-cli --pipe
                                                        typed keys as RESTORE payloads
  cachefill export plan.toml --format rdb -o dump.rdb   a file to start a server on
  cachefill export plan.toml --format keys --stage carts > carts.keys")]
    Export {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Only this stage.
        #[arg(long, value_name = "NAME")]
        stage: Option<String>,
        /// What to write.
        #[arg(long, value_enum, default_value = "resp")]
        format: crate::export::Format,
        /// Only the I-th of N disjoint parts of every stage, as `run --shard` writes it.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Write typed keys as `run` would to a server of this RDB version with the default
        /// encoding limits: 10 for Redis 7.0, 11 for Redis 7.2 and later and Valkey. `resp`:
        /// the plan's `write` decides (RESTORE payloads, or commands); without it `resp`
        /// writes commands. `rdb`: the file's version [default: 10].
        #[arg(long, value_name = "VERSION", value_parser = clap::value_parser!(u16).range(10..=11))]
        rdb_version: Option<u16>,
        /// `rdb`: only the stages of this target (needed when the plan has several).
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// `rdb`: when TTLs count from, as RFC 3339 (`2026-12-07T08:00:00Z`) or Unix
        /// milliseconds: a key expires at this time plus its TTL [default: now].
        #[arg(long, value_name = "TIME")]
        base_time: Option<String>,
        /// `rdb`: only the keys of these hash slots, e.g. `0-5460` (a cluster node's file).
        #[arg(long, value_name = "A-B")]
        slots: Option<String>,
        /// Where to write [default: standard output].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Draw a run's result as one self-contained HTML page: the stages, throughput over
    /// time, memory against maxmemory with evictions, and a cluster's keys per primary.
    #[command(after_help = "Examples:
  cachefill report plan.result.json                   writes plan.result.html
  cachefill report plan.result.json -o drill.html")]
    Report {
        /// The result file of `cachefill run` (or `merge`).
        result: PathBuf,
        /// Where the page goes; `-` for standard output [default: the result's name with .html].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Measure the shape of a live server read-only (key patterns, types, sizes, element
    /// counts, TTLs; never a value's content) and write a plan that fills a server like it.
    #[command(after_help = "Examples:
  cachefill profile prod.toml --target main -o shape.toml    then: cachefill run shape.toml
  cachefill profile prod.toml --sample 100000 --scale 0.1    a tenth of the keys, same shape
  cachefill profile prod.toml --size 1GiB --max-ops 1000     1 GiB of payload, gentler reads")]
    Profile {
        /// The plan file (TOML) whose target section says how to connect.
        plan: PathBuf,
        /// The target to profile (needed when the plan has several).
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// Keys to sample in all (spread over a cluster's primaries by their key counts).
        #[arg(long, value_name = "N", default_value_t = crate::profile::DEFAULT_SAMPLE,
              value_parser = clap::value_parser!(u64).range(1..))]
        sample: u64,
        /// Write this fraction of the server's keys (1: as many as it has).
        #[arg(long, value_name = "F", conflicts_with = "size")]
        scale: Option<f64>,
        /// Write about this much payload (keys plus values) in all, e.g. 1GiB.
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Most commands per second sent to each server; 0 lifts the cap.
        #[arg(long, value_name = "N", default_value_t = crate::profile::DEFAULT_MAX_OPS)]
        max_ops: u64,
        /// Where the plan goes; `-` for standard output [default: <plan name>.shape.toml].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the JSON Schema of the plan format (for editors and CI linters).
    #[command(after_help = "Example:
  cachefill schema > docs/cachefill.schema.json    (plans name it with #:schema)")]
    Schema,
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  cachefill completions bash > ~/.local/share/bash-completion/completions/cachefill
  cachefill completions zsh > ~/.zfunc/_cachefill
  cachefill completions fish > ~/.config/fish/completions/cachefill.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): cachefill(1), or a subcommand's; or write them all.
    #[command(after_help = "Examples:
  cachefill man --dir ~/.local/share/man/man1 && man cachefill-run
  cachefill man > cachefill.1                      the overview page alone
  cachefill man run | man -l -                     one subcommand's page")]
    Man {
        /// The subcommand whose page to print (cachefill-run(1) …) instead of cachefill(1).
        #[arg(value_name = "SUBCOMMAND", value_parser = clap::builder::PossibleValuesParser::new(SUBCOMMANDS))]
        subcommand: Option<String>,
        /// Write every page (cachefill.1, cachefill-run.1 …) into this folder instead.
        #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
        dir: Option<PathBuf>,
    },
}

/// Every subcommand's name, in the order of `cachefill --help`.
pub const SUBCOMMANDS: [&str; 11] = [
    "run",
    "flush",
    "check",
    "verify",
    "merge",
    "export",
    "report",
    "profile",
    "schema",
    "completions",
    "man",
];

/// Prints a command-line error as clap renders it (the argument, the valid values, a
/// suggestion, the usage and where the help is) and gives the exit code: 2 for a bad
/// command line, 0 for `--help` and `--version`.
pub fn exit_on_parse_error(error: &clap::Error) -> std::process::ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn subcommands_names_every_subcommand() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, SUBCOMMANDS);
    }
}
