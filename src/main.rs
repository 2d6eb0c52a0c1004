//! cachefill: fills Redis and Redis-compatible servers with synthetic data from a plan.

mod check;
mod cli;
mod dataset;
mod error;
mod fill;
mod interrupt;
mod merge;
mod plan;
mod progress;
mod report;
mod resp;
mod shard;
mod slot;
mod target;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) if e.use_stderr() => {
            // One line, like every other error; --help has the details.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            eprintln!(
                "cachefill: {}; see cachefill --help",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cachefill: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Schema => print_stdout(&format!("{}\n", plan::json_schema())),
        Command::Check {
            plan,
            shards,
            no_flush,
        } => {
            let plan = plan::load(&plan)?;
            if let Some(count) = shards {
                let shard = shard::Shard::new(0, count)
                    .map_err(|e| Failure::Invalid(format!("the command line: {e}")))?;
                fill::check_sharding(&plan, shard, no_flush)?;
            }
            check::print(&plan)
        }
        Command::Merge { results, output } => merge::merge(&results, output.as_deref()),
        Command::Verify {
            plan,
            result,
            sample,
            output,
        } => {
            let plan = plan::load(&plan)?;
            let options = verify::VerifyOptions {
                result,
                sample,
                output,
            };
            runtime()?.block_on(verify::verify(&plan, &options))
        }
        Command::Run {
            plan,
            output,
            yes,
            quiet,
            keep,
            shard,
            shards,
            no_flush,
        } => {
            let plan = plan::load(&plan)?;
            let output =
                output.unwrap_or_else(|| PathBuf::from(format!("{}.result.json", plan.name)));
            let shard = resolve_shard(shard.as_deref(), shards)?;
            let options = fill::RunOptions {
                output,
                yes,
                quiet,
                keep,
                shard,
                no_flush,
                flush_only: false,
            };
            execute_run(&plan, &options)
        }
        Command::Flush { plan, output, yes } => {
            let plan = plan::load(&plan)?;
            let output =
                output.unwrap_or_else(|| PathBuf::from(format!("{}.flush.json", plan.name)));
            let options = fill::RunOptions {
                output,
                yes,
                quiet: true,
                keep: false,
                shard: shard::Shard::WHOLE,
                no_flush: false,
                flush_only: true,
            };
            execute_run(&plan, &options)
        }
    }
}

fn execute_run(plan: &plan::Plan, options: &fill::RunOptions) -> Result<(), Failure> {
    runtime()?.block_on(async {
        interrupt::install()
            .map_err(|e| Failure::Failed(format!("cannot install signal handlers: {e}")))?;
        fill::run(plan, options).await
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start the async runtime: {e}")))
}

/// `--shard I/N`, or `--shards N` with the index from `JOB_COMPLETION_INDEX`, or the whole.
fn resolve_shard(shard: Option<&str>, shards: Option<u64>) -> Result<shard::Shard, Failure> {
    let invalid = |m: String| Failure::Invalid(format!("the command line: {m}"));
    match (shard, shards) {
        (Some(text), count) => {
            let shard = shard::Shard::parse(text).map_err(invalid)?;
            if count.is_some_and(|n| n != u64::from(shard.count)) {
                return Err(invalid(format!(
                    "--shard {text} and --shards {} disagree",
                    count.unwrap_or(0)
                )));
            }
            Ok(shard)
        }
        (None, Some(count)) => {
            let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
                invalid(format!(
                    "--shards {count} needs --shard I/{count} or the JOB_COMPLETION_INDEX variable"
                ))
            })?;
            let index = index
                .trim()
                .parse()
                .map_err(|_| invalid(format!("JOB_COMPLETION_INDEX `{index}` is not a number")))?;
            shard::Shard::new(index, count).map_err(invalid)
        }
        (None, None) => Ok(shard::Shard::WHOLE),
    }
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
pub fn print_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Failed(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}
