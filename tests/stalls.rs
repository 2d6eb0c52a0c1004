//! Servers that stop answering without closing anything (a paused process, a hung machine):
//! a run never waits on them longer than `io_timeout`, says which server is silent, and
//! reports what it cannot know.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Waits for a child with a bound, so a hang fails the test instead of blocking it.
fn wait_for_exit(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "cachefill was still running {limit:?} after the server stopped answering: {}",
                stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_paused_server_ends_the_run_after_io_timeout_and_the_result_brackets_what_it_holds() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(3)
        .target(
            server
                .target()
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
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    server.pause();
    // io_timeout, then three reconnections that each wait connect_timeout for the login,
    // plus their back-off: about 6 s. The bound only turns a hang into a failure.
    let output = wait_for_exit(child, Duration::from_secs(60));
    server.resume();

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let reasons: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cachefill: "))
        .collect();
    assert_eq!(reasons.len(), 1, "{err}");
    let reason = reasons[0];
    assert!(
        reason.contains(&server.addr())
            && reason.contains("no reply for 2s")
            && reason.contains("io_timeout")
            && reason.contains("stage \"long\""),
        "{reason}"
    );
    // Without a terminal, the stall was reported while the run waited.
    assert!(
        err.contains(&format!(
            "stage long: no reply from {} for 1s, still waiting",
            server.addr()
        )),
        "{err}"
    );

    let result = read_result(&result_path);
    assert_eq!(result["status"], "failed");
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "failed");
    let written = stage["keys_written"].as_u64().unwrap();
    let unacknowledged = stage["unacknowledged"].as_u64().unwrap();
    assert!(
        unacknowledged > 0,
        "entries were in flight when the server stopped"
    );
    // Once resumed, the server executes what sat in its socket buffers, then sees the
    // closed connections: wait until only this test's connection is left.
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

#[test]
fn a_pause_shorter_than_io_timeout_is_waited_out_and_the_fill_is_exact() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let keys = 1_000_000u64;
    let stage = StageBuilder::new("s").keys(keys).value_size(10);
    let plan = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(true).set("io_timeout", "20s"))
        .stage(stage.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 10_000
    });
    server.pause();
    // The fault itself: a server that stays silent for 6 s, a third of io_timeout (long
    // enough for the run to report the stall, which shows the run was waiting on it).
    std::thread::sleep(Duration::from_secs(6));
    server.resume();
    let output = wait_for_exit(child, Duration::from_secs(120));
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("stage s: no reply from {} for", server.addr())),
        "the run never waited on the paused server: {err}"
    );
    let result = read_result(&result_path);
    let stage_result = &result["stages"][0];
    assert_eq!(stage_result["status"], "ok");
    assert_eq!(stage_result["keys_written"], keys);
    assert_eq!(stage_result["reconnects"], 0);
    assert_eq!(stage_result["unacknowledged"], 0);
    assert_eq!(server.dbsize(), keys);
    let (verified, report) = verify(&scratch, &plan, &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(report.unwrap()["stages"][0]["checked"], keys);
}

#[test]
fn a_paused_cluster_primary_is_replaced_by_its_replica_and_nothing_is_lost() {
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let keys = 1_000_000u64;
    let fill = StageBuilder::new("s").keys(keys).value_size(16);
    let plan = PlanBuilder::new()
        .seed(11)
        .target(
            cluster
                .target()
                .flush(true)
                .set("io_timeout", "2s")
                .set("connect_timeout", "1s"),
        )
        .stage(fill.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 50_000
    });
    let primaries: Vec<u16> = cluster.primaries().iter().map(|(s, _)| s.port).collect();
    let victim = cluster
        .servers
        .iter()
        .position(|s| s.port != cluster.servers[0].port && primaries.contains(&s.port))
        .unwrap();
    cluster.servers[victim].pause();
    let output = wait_for_exit(child, Duration::from_secs(120));
    // What the paused primary never answered is not on the cluster any more: it is gone
    // for good (and would hang this test's own queries).
    cluster.servers[victim].kill();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["failovers"], 1);
    assert_eq!(cluster.primaries().len(), 3, "a replica took over");
    assert_eq!(cluster.total_keys(), keys);
    let (verified, report) = verify(&scratch, &plan, &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(report.unwrap()["stages"][0]["checked"], keys);
}
