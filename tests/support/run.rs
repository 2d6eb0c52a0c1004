//! Runs of the `cachefill` binary in a scratch directory, and what they leave behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{PlanBuilder, RedisServer};

/// A scratch directory for plans, results and reports; removed when dropped.
pub struct Scratch {
    /// The directory.
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A new, empty scratch directory.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a plan file `name` holding `text` and returns its path.
    pub fn plan(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The cachefill binary, run in `cwd` without a terminal.
pub fn cachefill(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefill"));
    command.current_dir(cwd).stdin(Stdio::null());
    command
}

/// Runs `SUBCOMMAND… PLAN -o FILE` with `extra` arguments; returns the output and the parsed
/// JSON file, when one was written.
fn run_writing(
    scratch: &Scratch,
    subcommand: &[&str],
    plan: &Path,
    file: &str,
    extra: &[&str],
) -> (Output, Option<serde_json::Value>) {
    let file = scratch.path(file);
    let _ = std::fs::remove_file(&file);
    let output = cachefill(scratch.dir.path())
        .args(subcommand)
        .arg(plan)
        .arg("-o")
        .arg(&file)
        .args(extra)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(&file)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("the written file is JSON"));
    (output, json)
}

/// Runs a plan with `run --quiet -o result.json` and returns the output and the parsed result.
pub fn run_plan(
    scratch: &Scratch,
    plan: &Path,
    extra: &[&str],
) -> (Output, Option<serde_json::Value>) {
    run_writing(scratch, &["run", "--quiet"], plan, "result.json", extra)
}

/// Runs a plan that must succeed and returns its result.
pub fn run_ok(scratch: &Scratch, plan: &Path, extra: &[&str]) -> serde_json::Value {
    let (output, result) = run_plan(scratch, plan, extra);
    assert!(output.status.success(), "{}", stderr(&output));
    result.expect("a successful run writes its result")
}

/// Runs `verify PLAN -o verify.json` and returns the output and the parsed report.
pub fn verify(
    scratch: &Scratch,
    plan: &Path,
    extra: &[&str],
) -> (Output, Option<serde_json::Value>) {
    run_writing(scratch, &["verify"], plan, "verify.json", extra)
}

/// Runs `verify PLAN` and asserts that it passes, having checked `keys` keys of the first
/// stage.
pub fn assert_verified(scratch: &Scratch, plan: &Path, keys: u64) {
    let (verified, report) = verify(scratch, plan, &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(report.unwrap()["stages"][0]["checked"], keys);
}

/// Runs `verify PLAN --result result.json` (the run's result in the scratch folder) and
/// asserts that it passes, having checked `keys` keys of the first stage.
pub fn assert_verified_against_result(scratch: &Scratch, plan: &Path, keys: u64) {
    let result = scratch.path("result.json");
    let (verified, report) = verify(scratch, plan, &["--result", result.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(report.unwrap()["stages"][0]["checked"], keys);
}

/// Runs `verify PLAN` and asserts that it passes with nothing wrong in any stage, having
/// checked `checked[i]` keys of stage `i`; returns its standard error and its report.
pub fn assert_verified_stages(
    scratch: &Scratch,
    plan: &Path,
    checked: &[u64],
) -> (String, serde_json::Value) {
    let (verified, report) = verify(scratch, plan, &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let report = report.unwrap();
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), checked.len(), "{report}");
    for (stage, &keys) in stages.iter().zip(checked) {
        assert_eq!(stage["checked"], keys, "{stage}");
        for problems in ["missing", "wrong_type", "wrong_value", "ttl_problems"] {
            assert_eq!(stage[problems], 0, "{stage}");
        }
    }
    (stderr(&verified), report)
}

/// Runs `flush --yes PLAN -o flush.json` and returns the output and the parsed result.
pub fn flush(
    scratch: &Scratch,
    plan: &Path,
    extra: &[&str],
) -> (Output, Option<serde_json::Value>) {
    run_writing(scratch, &["flush", "--yes"], plan, "flush.json", extra)
}

/// Starts `run PLAN -o result.json` in the background (for tests that act during the run).
pub fn spawn_plan(scratch: &Scratch, plan: &Path) -> (Child, PathBuf) {
    let result = scratch.path("result.json");
    let child = cachefill(scratch.dir.path())
        .arg("run")
        .arg(plan)
        .arg("-o")
        .arg(&result)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, result)
}

/// Waits for a background run with a bound, so a hang fails the test instead of blocking it.
pub fn wait_for_exit(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "cachefill was still running {limit:?} after the fault: {}",
                stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one line a failed run ends with (`cachefill: …`); panics unless there is exactly one.
pub fn the_reason(err: &str) -> &str {
    let reasons: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cachefill: "))
        .collect();
    assert_eq!(reasons.len(), 1, "{err}");
    reasons[0]
}

/// The `DEBUG DIGEST` of `plan` (with no target yet) run on a standalone server instead.
pub fn standalone_digest(scratch: &Scratch, plan: PlanBuilder) -> String {
    let server = RedisServer::start(&[]);
    let plan = scratch.plan(
        "standalone.toml",
        &plan.target(server.target().flush(true)).build(),
    );
    let (output, _) = run_plan(scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    server.digest()
}

/// The JSON result file at `path`.
pub fn read_result(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the result file exists"))
        .expect("the result is JSON")
}

/// Standard error of a finished run, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one line of a failed command that says why (`cachefill: …`); panics unless there is
/// exactly one.
pub fn reason_line(output: &Output) -> String {
    the_reason(&stderr(output)).to_string()
}

/// The throwaway CA certificate of the servers of `target` kept with `--keep`, as the
/// result records it (`targets.NAME.kept.ca_file`).
pub fn kept_ca_file(result: &serde_json::Value, target: &str) -> String {
    result["targets"][target]["kept"]["ca_file"]
        .as_str()
        .unwrap_or_else(|| panic!("no kept CA file for {target} in {result}"))
        .to_string()
}

/// The port of node `index` of target `target` in a result.
pub fn node_port(result: &serde_json::Value, target: &str, index: usize) -> u16 {
    let address = result["targets"][target]["nodes"][index]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no node {index} of {target} in the result"));
    address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Runs `cachefill ARGS…` on a terminal (through `script`, which gives it one) in the
/// scratch folder; whether it succeeded, and what the terminal showed.
pub fn on_a_terminal(scratch: &Scratch, args: &[&str]) -> (bool, String) {
    super::require("script");
    let command = std::iter::once(env!("CARGO_BIN_EXE_cachefill"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
