//! Servers that stop answering without closing anything (a paused process, a hung machine):
//! a run never waits on them longer than `io_timeout`, says which server is silent, and
//! reports what it cannot know.

use crate::support;

use std::time::Duration;

use support::*;

#[test]
fn a_paused_server_ends_the_run_after_io_timeout_and_the_result_brackets_what_it_holds() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let (output, result) = silenced_fill(&scratch, &server, server.target(), 3, || {
        server.pause();
    });
    server.resume();

    let err = assert_failed_for_silence(&output, &server.addr());
    // Without a terminal, the stall was reported while the run waited.
    assert!(
        err.contains(&format!(
            "stage long: no reply from {} for 1s, still waiting",
            server.addr()
        )),
        "{err}"
    );
    assert!(
        result["stages"][0]["unacknowledged"].as_u64().unwrap() > 0,
        "entries were in flight when the server stopped"
    );
    // Once resumed, the server executes what sat in its socket buffers, then sees the
    // closed connections.
    assert_holds_what_the_result_brackets(&server, &result);
}

#[test]
fn a_pause_shorter_than_io_timeout_is_waited_out_and_the_fill_is_exact() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = assert_silence_waited_out(
        &scratch,
        &server,
        (server.target(), &server.addr()),
        4,
        || server.pause(),
        || server.resume(),
    );
    assert_verified(&scratch, &plan, WAITED_OUT_KEYS);
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
    assert_verified(&scratch, &plan, keys);
}

/// A cluster primary paused (SIGSTOP) mid-fill with an `io_timeout` far longer than the
/// test: its replica takes over after `cluster-node-timeout` (5 s here), and the fill
/// follows at once. Its silent connections ask the other nodes once a second whether the
/// cluster replaced the primary, instead of waiting out the 10 minutes (the test's bound,
/// 120 s, would fail first). Nothing is lost.
#[test]
fn a_paused_cluster_primary_replaced_by_its_replica_is_followed_before_io_timeout() {
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let keys = 1_000_000u64;
    let plan = PlanBuilder::new()
        .seed(12)
        .target(cluster.target().flush(true).set("io_timeout", "10m"))
        .stage(StageBuilder::new("s").keys(keys).value_size(16));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 50_000
    });
    let victim = cluster.a_primary();
    cluster.servers[victim].pause();
    let output = wait_for_exit(child, Duration::from_secs(120));
    cluster.servers[victim].kill();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["failovers"], 1, "{err}");
    assert_eq!(cluster.primaries().len(), 3, "a replica took over");
    assert_eq!(cluster.total_keys(), keys);
    assert_verified(&scratch, &plan, keys);
}
