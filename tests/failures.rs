//! How runs fail: error replies, dead servers, interrupts, bad credentials. Each ends with
//! the right exit code, one line of why, and a result file that says what was written.

use crate::support;

use std::time::Duration;

use cachefill::__private::free_port;
use support::*;

/// A stage far too long to finish: the tests stop it, or its server, while it writes.
fn long_stage() -> StageBuilder {
    StageBuilder::new("long").keys(50_000_000).value_size(10)
}

/// A payload that fits `maxmemory` (16.8 MB of 20 MiB) but whose keys take more memory than
/// that (each key's table entry and allocations): the server refuses writes mid-stage.
/// A plan whose payload alone is more than a noeviction server holds is refused before the
/// flush, naming the target, the payload and the limit.
#[test]
fn a_plan_that_cannot_fit_a_noeviction_server_is_refused_before_anything_is_written() {
    let server = RedisServer::start(&["--maxmemory", "20mb", "--maxmemory-policy", "noeviction"]);
    server.set("keep", "me");
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("big").keys(100_000).value_size(1000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        reason_line(&output),
        "cachefill: target \"main\": its stages write ~98.42 MiB of payload, more than its maxmemory of 20.00 MiB (maxmemory-policy noeviction): the server would refuse writes once full. Lower the stages' size or keys, raise maxmemory, or fill with until_memory; nothing was written"
    );
    assert_eq!(server.dbsize(), 1, "the flush or a write happened");
    let result = result.expect("a refused run writes its result");
    assert_eq!(result["status"], "failed");
    assert_eq!(result["stages"][0]["keys_written"], 0);
}

#[test]
fn out_of_memory_fails_the_stage_and_counts_only_what_the_server_holds() {
    let server = RedisServer::start(&["--maxmemory", "20mb", "--maxmemory-policy", "noeviction"]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("big").keys(400_000).value_size(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.starts_with("cachefill: "), "{err}");
    assert!(
        last.contains("stage \"big\"") && last.contains(&server.addr()) && last.contains("OOM"),
        "{last}"
    );
    let result = result.expect("a failed run writes its result");
    assert_eq!(result["status"], "failed");
    assert!(result["error"].as_str().unwrap().contains("OOM"));
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "failed");
    assert!(stage["errors"].as_u64().unwrap() > 0);
    assert!(stage["first_error"].as_str().unwrap().contains("OOM"));
    let written = stage["keys_written"].as_u64().unwrap();
    assert!(written > 0 && written < 400_000);
    assert_eq!(
        server.dbsize(),
        written,
        "keys_written must equal what the server holds"
    );
}

#[test]
fn wrong_password_fails_before_any_write_and_never_shows_the_password() {
    let server = RedisServer::with_password("right-password");
    let scratch = Scratch::new();
    let secret = "Wr0ng-Pa55-d1st1nct1ve";
    let target = server.target().flush(true);
    let stage = StageBuilder::new("s").keys(1000);
    let plan = PlanBuilder::new()
        .target(
            target
                .clone()
                .set("password_env", "CACHEFILL_TEST_PASSWORD"),
        )
        .stage(stage.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let result_path = scratch.path("result.json");
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .arg("-o")
        .arg(&result_path)
        .env("CACHEFILL_TEST_PASSWORD", secret)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let reason = the_reason(&err);
    assert!(
        reason.contains(&server.addr()) && reason.contains("authentication failed"),
        "{err}"
    );
    let result = std::fs::read_to_string(&result_path).unwrap();
    for text in [
        &err,
        &String::from_utf8_lossy(&output.stdout).into_owned(),
        &result,
    ] {
        assert!(!text.contains(secret), "the password leaked: {text}");
    }
    let mut conn = server.connect_with(Some("right-password"));
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 0);

    // The right password through password_file works, and also stays out of the output.
    std::fs::write(scratch.path("pw"), "right-password\n").unwrap();
    let plan = PlanBuilder::new()
        .target(target.set("password_file", "pw"))
        .stage(stage);
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !serde_json::to_string(&result)
            .unwrap()
            .contains("right-password")
    );
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 1000);
}

#[test]
fn refused_connection_names_the_address() {
    let scratch = Scratch::new();
    let port = free_port().unwrap();
    let plan = PlanBuilder::new()
        .target(TargetBuilder::standalone(
            "main",
            &format!("127.0.0.1:{port}"),
        ))
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("main"),
        "{err}"
    );
    assert_eq!(result.unwrap()["status"], "failed");
}

#[test]
fn a_server_that_dies_mid_run_ends_the_run_with_exit_1_and_a_result() {
    let mut server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(long_stage().connections(2));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    // Writes wait while the server is paused, unanswered: what it holds now is exactly what
    // it acknowledged before it dies.
    redis::cmd("CLIENT")
        .arg(&["PAUSE", "60000", "WRITE"])
        .exec(&mut server.connect())
        .unwrap();
    let held = server.dbsize();
    server.kill();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("long") && err.contains(&server.addr()),
        "{err}"
    );
    let result = read_result(&result_path);
    assert_eq!(result["status"], "failed");
    assert_eq!(result["stages"][0]["status"], "failed");
    // Writes left unanswered when the server died are not counted: only acknowledged entries.
    assert_eq!(result["stages"][0]["keys_written"], held);
}

#[test]
fn sigint_stops_writing_and_records_how_far_each_stage_got() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(long_stage())
        .stage(StageBuilder::new("later").keys(10).after(&["long"]));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("interrupted"),
        "{}",
        stderr(&output)
    );
    let result = read_result(&result_path);
    assert_eq!(result["status"], "interrupted");
    assert_eq!(result["stages"][0]["status"], "interrupted");
    assert_eq!(result["stages"][1]["status"], "skipped");
    let written = result["stages"][0]["keys_written"].as_u64().unwrap();
    assert!(written < 50_000_000);
    assert_eq!(
        server.dbsize(),
        written,
        "every acknowledged entry is counted, and only those"
    );
}

#[test]
fn sigterm_is_an_interrupt_too() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(long_stage());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let result = read_result(&result_path);
    assert_eq!(result["status"], "interrupted");
    assert_eq!(
        server.dbsize(),
        result["stages"][0]["keys_written"].as_u64().unwrap()
    );
}

#[test]
fn connections_killed_mid_stage_are_restored_and_nothing_is_lost() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let keys = 3_000_000u64;
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("s")
                .keys(keys)
                .value_size(10)
                .connections(2),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    let mut conn = server.connect();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut conn)
        .unwrap();
    assert!(killed >= 2, "killed {killed} connections");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&result_path);
    assert_eq!(result["stages"][0]["status"], "ok");
    assert_eq!(result["stages"][0]["keys_written"], keys);
    assert!(result["stages"][0]["reconnects"].as_u64().unwrap() >= 2);
    assert_eq!(server.dbsize(), keys);
}

/// May write and tell the server's identity, but not look for what it lost.
const WRITER_RULES: &[&str] = &["+set", "+mset", "+info"];

#[test]
fn a_restart_that_cannot_be_rechecked_fails_instead_of_counting_lost_entries() {
    let mut server = RedisServer::start(&[]);
    server.acl_user("writer", "writer-pw", WRITER_RULES);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(22)
        .target(server.target().user("writer", "WRITER_PW"))
        .stage(long_stage().connections(1));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result_path = scratch.path("result.json");
    let child = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .arg("-o")
        .arg(&result_path)
        .env("WRITER_PW", "writer-pw")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    server.restart_mid_stage(10_000);
    // The restarted server knows the user no more: give it back, so the login works and
    // only the re-check is refused.
    server.acl_user("writer", "writer-pw", WRITER_RULES);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let reason = err.lines().rfind(|l| l.starts_with("cachefill: ")).unwrap();
    assert!(
        reason.contains(&server.addr())
            && reason.contains("restarted (its run_id changed)")
            && reason.contains("EXISTS was refused"),
        "{reason}"
    );
    let result = read_result(&result_path);
    assert_eq!(result["stages"][0]["status"], "failed");
    assert_eq!(result["stages"][0]["restarts"], 1);
}
