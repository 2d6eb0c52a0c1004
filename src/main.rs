//! cachefill: fills Redis and Redis-compatible servers with synthetic data from a plan.

mod check;
mod cli;
mod dataset;
mod error;
mod fill;
mod interrupt;
mod plan;
mod progress;
mod report;
mod resp;
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
        Command::Schema => {
            println!("{}", plan::json_schema());
            Ok(())
        }
        Command::Check { plan } => check::print(&plan::load(&plan)?),
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
        } => {
            let plan = plan::load(&plan)?;
            let output =
                output.unwrap_or_else(|| PathBuf::from(format!("{}.result.json", plan.name)));
            let options = fill::RunOptions {
                output,
                yes,
                quiet,
                keep,
            };
            runtime()?.block_on(async {
                interrupt::install()
                    .map_err(|e| Failure::Failed(format!("cannot install signal handlers: {e}")))?;
                fill::run(&plan, &options).await
            })
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start the async runtime: {e}")))
}
