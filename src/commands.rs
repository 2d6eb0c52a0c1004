//! Each subcommand of the command line, from parsed arguments to its outcome.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::error::Failure;
use crate::fill::{AfterRun, Flushes, RemoteFlush};
use crate::output::print_stdout;
use crate::progress::Display;
use crate::shard::{self, Shard};
use crate::{check, export, fill, interrupt, merge, output, plan, profile, report, result, verify};

/// Runs one subcommand; `Err` is the one line the user sees and the exit code.
pub fn execute(command: Command) -> Result<(), Failure> {
    match command {
        Command::Schema => print_stdout(&format!("{}\n", plan::json_schema())),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cachefill", &mut script);
            print_stdout(&String::from_utf8_lossy(&script))
        }
        Command::Man { subcommand, dir } => man(subcommand.as_deref(), dir.as_deref()),
        Command::Export {
            plan,
            stage,
            format,
            shard,
            rdb_version,
            target,
            base_time,
            slots,
            output,
        } => {
            let plan = plan::load_with_stages(&plan)?;
            if let Some(path) = &output {
                output::check_writable(path, "the export")?;
            }
            let shard = shard::resolve(shard.as_deref(), None, None).map_err(command_line)?;
            let options = export::ExportOptions {
                stage,
                format,
                shard,
                rdb_version,
                target,
                base_ms: base_time
                    .as_deref()
                    .map(export::parse_base_time)
                    .transpose()
                    .map_err(command_line)?,
                slots: slots
                    .as_deref()
                    .map(export::parse_slots)
                    .transpose()
                    .map_err(command_line)?,
            };
            let export = export::prepare(&plan, &options)?;
            match output.as_deref().filter(|path| *path != Path::new("-")) {
                None => export.write_to(std::io::stdout().lock()),
                Some(path) => export.write_to(std::fs::File::create(path).map_err(|e| {
                    Failure::Failed(format!("cannot create {}: {e}", path.display()))
                })?),
            }
        }
        Command::Check {
            plans,
            shards,
            no_flush,
        } => check_plans(&plans, shards, no_flush),
        Command::Merge { results, output } => {
            if let Some(path) = &output {
                output::check_writable(path, "the merged result")?;
            }
            let merged = merge::merge(&results)?;
            let named = output.is_some();
            let path = output_or(output, &merged.plan.name, "result");
            if !named {
                // The default name comes from the results: checked once it is known.
                output::check_writable(&path, "the merged result")?;
            }
            result::write(&merged, &path).map_err(|e| {
                Failure::Failed(format!(
                    "cannot write the merged result to {}: {e}",
                    path.display()
                ))
            })?;
            if path.as_os_str() != "-" {
                eprintln!(
                    "merged {} shard results into {}",
                    results.len(),
                    path.display()
                );
            }
            Ok(())
        }
        Command::Report { result, output } => {
            let path = output.unwrap_or_else(|| result.with_extension("html"));
            output::check_writable(&path, "the report")?;
            let run = result::read(&result).map_err(Failure::Invalid)?;
            let page = report::render(&run).map_err(Failure::Failed)?;
            output::write(page.as_bytes(), &path)
                .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))
        }
        Command::Verify {
            plan,
            result,
            sample,
            output,
        } => {
            let plan = plan::load_with_stages(&plan)?;
            if let Some(path) = &output {
                output::check_writable(path, "the verify report")?;
            }
            let options = verify::VerifyOptions {
                result: result
                    .as_deref()
                    .map(|path| verify::read_result(path, &plan))
                    .transpose()?,
                sample,
                display: Display::Bars,
            };
            let report = runtime()?.block_on(verify::verify(&plan, &options))?;
            if let Some(path) = &output {
                let json = serde_json::to_vec_pretty(&report)
                    .map_err(|e| Failure::Failed(e.to_string()))?;
                output::write(&json, path).map_err(|e| {
                    Failure::Failed(format!(
                        "cannot write the report to {}: {e}",
                        path.display()
                    ))
                })?;
            }
            report
                .problem()
                .map_or(Ok(()), |problem| Err(Failure::Failed(problem)))
        }
        Command::Profile {
            plan,
            target,
            sample,
            scale,
            size,
            max_ops,
            output,
        } => {
            let plan = plan::load(&plan)?;
            let output =
                output.unwrap_or_else(|| PathBuf::from(format!("{}.shape.toml", plan.name)));
            output::check_writable(&output, "the profiled plan")?;
            let options = profile::ProfileOptions {
                target,
                sample: sample.max(1),
                amount: profile_amount(scale, size.as_deref())?,
                max_ops: (max_ops > 0).then_some(max_ops),
            };
            let profiled = runtime()?.block_on(profile::profile(&plan, &options))?;
            output::write(profiled.text.as_bytes(), &output)
                .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", output.display())))?;
            let failovers = match profiled.failovers {
                0 => String::new(),
                1 => " (sampled a lost primary's keys on the replica that took over)".into(),
                n => format!(" (sampled {n} lost primaries' keys on the replicas that took over)"),
            };
            eprintln!(
                "profiled target \"{}\": {} of {} keys sampled with {} read commands{failovers}; {} stages written to {}",
                profiled.target,
                profiled.sampled,
                profiled.total,
                profiled.commands,
                profiled.stages,
                output.display()
            );
            Ok(())
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
            let plan = plan::load_with_stages(&plan)?;
            let job_index = std::env::var(shard::JOB_INDEX_VARIABLE).ok();
            let shard = shard::resolve(shard.as_deref(), shards, job_index.as_deref())
                .map_err(command_line)?;
            let options = fill::RunOptions {
                display: if quiet { Display::Lines } else { Display::Bars },
                remote_flush: confirmed(yes),
                launched: if keep { AfterRun::Keep } else { AfterRun::Stop },
                shard,
                flushes: if no_flush {
                    Flushes::Skip
                } else {
                    Flushes::AsPlanned
                },
            };
            fill_run(&plan, &options, &output_or(output, &plan.name, "result"))
        }
        Command::Flush { plan, output, yes } => {
            let plan = plan::load(&plan)?;
            let options = fill::RunOptions {
                display: Display::Lines,
                remote_flush: confirmed(yes),
                flushes: Flushes::Only,
                ..fill::RunOptions::default()
            };
            fill_run(&plan, &options, &output_or(output, &plan.name, "flush"))
        }
    }
}

/// `cachefill man`: cachefill(1) or `subcommand`'s page on standard output, or every page
/// written into `dir` (the pages cachefill(1) refers to, cachefill-run(1) …).
fn man(subcommand: Option<&str>, dir: Option<&Path>) -> Result<(), Failure> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let page = |command: clap::Command| {
        clap_mangen::Man::new(command)
            .source(format!("cachefill {}", env!("CARGO_PKG_VERSION")))
            .manual("cachefill manual")
    };
    if let Some(dir) = dir {
        let mut pages: Vec<clap::Command> = cli.get_subcommands().cloned().collect();
        pages.insert(0, cli);
        for command in pages {
            page(command).generate_to(dir).map_err(|e| {
                Failure::Failed(format!(
                    "cannot write the manual pages into {}: {e}",
                    dir.display()
                ))
            })?;
        }
        eprintln!(
            "cachefill: wrote cachefill.1 and a page per subcommand into {}",
            dir.display()
        );
        return Ok(());
    }
    let command = match subcommand {
        Some(name) => cli
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| Failure::Invalid(format!("no subcommand {name}")))?,
        None => cli,
    };
    let mut text = Vec::new();
    page(command)
        .render(&mut text)
        .map_err(|e| Failure::Failed(format!("cannot render the manual page: {e}")))?;
    print_stdout(&String::from_utf8_lossy(&text))
}

/// `cachefill check` of each plan in turn: what a valid one writes on standard output, why
/// an invalid one is invalid on standard error (one line each); with several plans, the
/// count of invalid ones ends it.
fn check_plans(plans: &[PathBuf], shards: Option<u64>, no_flush: bool) -> Result<(), Failure> {
    let shard = shards
        .map(|count| Shard::new(0, count))
        .transpose()
        .map_err(command_line)?;
    let check = |path: &PathBuf| -> Result<(), Failure> {
        let plan = plan::load_with_stages(path)?;
        if let Some(shard) = shard {
            fill::check_sharding(&plan, shard, no_flush)?;
        }
        check::print(&plan)
    };
    if let [path] = plans {
        return check(path);
    }
    let mut invalid = 0;
    for path in plans {
        match check(path) {
            Ok(()) => {}
            Err(failure @ Failure::Invalid(_)) => {
                eprintln!("cachefill: {failure}");
                invalid += 1;
            }
            Err(failure) => return Err(failure),
        }
    }
    match invalid {
        0 => Ok(()),
        n => Err(Failure::Invalid(format!(
            "{n} of {} plans are invalid",
            plans.len()
        ))),
    }
}

fn command_line(message: String) -> Failure {
    Failure::Invalid(format!("the command line: {message}"))
}

/// How many keys `profile` writes: `--scale F` (default 1) or `--size SIZE`.
fn profile_amount(scale: Option<f64>, size: Option<&str>) -> Result<profile::Amount, Failure> {
    match (scale, size) {
        (_, Some(size)) => {
            let bytes = plan::units::ByteSize::parse(size)
                .map_err(|e| command_line(format!("--size: {e}")))?;
            if bytes.0 == 0 {
                return Err(command_line("--size must be more than 0 bytes".into()));
            }
            Ok(profile::Amount::Size(bytes.0))
        }
        (Some(scale), None) if !(scale > 0.0 && scale.is_finite()) => Err(command_line(format!(
            "--scale must be a number above 0 (0.1 for a tenth of the keys), not {scale}"
        ))),
        (scale, None) => Ok(profile::Amount::Scale(scale.unwrap_or(1.0))),
    }
}

/// `-o FILE`, or `<plan name>.<what>.json` in the current directory.
fn output_or(output: Option<PathBuf>, plan_name: &str, what: &str) -> PathBuf {
    output.unwrap_or_else(|| Path::new(&format!("{plan_name}.{what}.json")).to_path_buf())
}

fn confirmed(yes: bool) -> RemoteFlush {
    if yes {
        RemoteFlush::Confirmed
    } else {
        RemoteFlush::Refuse
    }
}

/// Runs the plan, then writes its result to `path` (also a failed or interrupted run's)
/// and says where.
fn fill_run(plan: &plan::Plan, options: &fill::RunOptions, path: &Path) -> Result<(), Failure> {
    output::check_writable(path, "the result")?;
    let (result, failure) = runtime()?.block_on(async {
        interrupt::install()
            .map_err(|e| Failure::Failed(format!("cannot install signal handlers: {e}")))?;
        Ok::<_, Failure>(match fill::run(plan, options).await {
            Ok(result) => (Some(result), None),
            Err((failure, result)) => (result, Some(failure)),
        })
    })?;
    if let Some(result) = result {
        result::write(&result, path).map_err(|e| {
            Failure::Failed(format!(
                "cannot write the result to {}: {e}",
                path.display()
            ))
        })?;
        if path.as_os_str() != "-" {
            eprintln!("result written to {}", path.display());
        }
    }
    failure.map_or(Ok(()), Err)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start the async runtime: {e}")))
}
