//! cachefill's command line: parse the arguments, run the command, exit with its code.

use std::process::ExitCode;

use cachefill::__private::{Cli, execute, exit_on_parse_error};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit_on_parse_error(&e),
    };
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cachefill: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
