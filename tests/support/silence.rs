//! Fills that a test silences mid-way (a paused server, a partitioned link): for longer
//! than `io_timeout` (a stage too long to finish, with short timeouts, the one line the run
//! ends with, and the check that the failed stage's counts bracket what the server holds),
//! or for a while within it (the run waits and ends exact).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use super::{
    PlanBuilder, RedisServer, Scratch, StageBuilder, TargetBuilder, read_result, spawn_plan,
    stderr, the_reason, wait_for_exit, wait_until,
};

/// Entries of the fill [`assert_silence_waited_out`] runs.
pub const WAITED_OUT_KEYS: u64 = 1_000_000;

/// Runs stage `long` (50,000,000 small entries over two connections) on `target`, with
/// `io_timeout = "2s"` and `connect_timeout = "1s"`; once `server` holds 10,000 keys,
/// `silence` stops the server or the link. Returns the run's output and result.
pub fn silenced_fill(
    scratch: &Scratch,
    server: &RedisServer,
    target: TargetBuilder,
    seed: u64,
    silence: impl FnOnce(),
) -> (Output, serde_json::Value) {
    let plan = PlanBuilder::new()
        .seed(seed)
        .target(
            target
                .flush(true)
                .set("io_timeout", "2s")
                .set("connect_timeout", "1s"),
        )
        .stage(
            StageBuilder::new("long")
                .keys(50_000_000)
                .value_size(10)
                .connections(2),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    silence();
    // io_timeout, then three reconnections that each wait connect_timeout for the login,
    // plus their back-off: about 6 s. The bound only turns a hang into a failure.
    let output = wait_for_exit(child, Duration::from_secs(60));
    (output, read_result(&result_path))
}

/// Asserts that a silenced fill failed with one line naming `addr`, the stage and the
/// silence; returns its standard error.
pub fn assert_failed_for_silence(output: &Output, addr: &str) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let reason = the_reason(&err);
    assert!(
        reason.contains(addr)
            && reason.contains("no reply for 2s")
            && reason.contains("io_timeout")
            && reason.contains("stage \"long\""),
        "{reason}"
    );
    err
}

/// Once only the test's own connection is left on `server` (it has executed what reached
/// it and seen the closed connections), asserts it holds between the failed stage's
/// `keys_written` and `keys_written + unacknowledged` keys.
pub fn assert_holds_what_the_result_brackets(server: &RedisServer, result: &serde_json::Value) {
    assert_eq!(result["status"], "failed");
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "failed");
    let written = stage["keys_written"].as_u64().unwrap();
    let unacknowledged = stage["unacknowledged"].as_u64().unwrap();
    wait_until(
        "the server has read its closed connections",
        Duration::from_secs(30),
        || server.clients() == 1,
    );
    let held = server.dbsize();
    assert!(
        written <= held && held <= written + unacknowledged,
        "the server holds {held} keys; the result says {written} acknowledged and {unacknowledged} in doubt"
    );
}

/// Runs stage `s` ([`WAITED_OUT_KEYS`] entries of 10 B) on `target` with `io_timeout =
/// "20s"`; once `server` holds 10,000 keys, `silence` stops the server or the link for 6 s,
/// then `resume` lets it go on. Asserts that the run waited (its stall line names `addr`)
/// and ended exact without reconnecting; returns the plan's path.
pub fn assert_silence_waited_out(
    scratch: &Scratch,
    server: &RedisServer,
    (target, addr): (TargetBuilder, &str),
    seed: u64,
    silence: impl FnOnce(),
    resume: impl FnOnce(),
) -> PathBuf {
    let keys = WAITED_OUT_KEYS;
    let plan = PlanBuilder::new()
        .seed(seed)
        .target(target.flush(true).set("io_timeout", "20s"))
        .stage(StageBuilder::new("s").keys(keys).value_size(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    silence();
    // The fault itself: silent for 6 s, under a third of io_timeout (long enough for the
    // run to report the stall, which shows it was waiting).
    std::thread::sleep(Duration::from_secs(6));
    resume();
    let output = wait_for_exit(child, Duration::from_secs(120));
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains(&format!("stage s: no reply from {addr} for")),
        "the run never waited on {addr}: {err}"
    );
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["reconnects"], 0);
    assert_eq!(stage["unacknowledged"], 0);
    assert_eq!(server.dbsize(), keys);
    plan
}
