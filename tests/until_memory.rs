//! `until_memory`: fill until the server's used_memory reaches a goal, writing a prefix of the
//! index range that `verify --result` can check.

use crate::support;

use support::*;

/// |final used_memory - goal| within 1% of the goal or one window of entries.
fn assert_near_goal(result: &serde_json::Value, goal: u64) {
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok", "{stage}");
    let memory = &stage["until_memory"];
    assert_eq!(memory["goal_bytes"], goal);
    let used = memory["used_memory"].as_u64().unwrap();
    let window = 1024 * 4 * 1200; // pipeline × connections × largest entry with overhead
    let tolerance = (goal / 100).max(window);
    assert!(
        used.abs_diff(goal) <= tolerance,
        "used_memory {used} is not within {tolerance} of {goal}"
    );
    assert_eq!(stage["keys_written"], stage["keys_planned"]);
    assert!(stage["keys_written"].as_u64().unwrap() > 1000);
}

fn plan(target: TargetBuilder, goal: &str) -> String {
    PlanBuilder::new()
        .seed(3)
        .target(target.flush(true))
        .stage(
            StageBuilder::new("fill")
                .until_memory(goal)
                .value_range(100, 1000),
        )
        .build()
}

#[test]
fn an_absolute_goal_is_reached_and_the_prefix_verifies() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(server.target(), "200MiB"));
    let result = run_ok(&scratch, &path, &[]);
    assert_near_goal(&result, 200 << 20);
    assert_eq!(
        server.dbsize(),
        result["stages"][0]["keys_written"].as_u64().unwrap()
    );
    let verify = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&path)
        .args(["--result", scratch.path("result.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// A server holding 3,000,000 keys (about 400 MB) is flushed by an `until_memory` stage of
/// 100 MiB. A flush freed in the background (`FLUSHALL ASYNC`, or `lazyfree-lazy-user-flush
/// yes`, Valkey's default) empties the keyspace at once while `used_memory` still counts the
/// flushed dataset until a background thread has freed it. cachefill waits for that, so the
/// goal counts from the empty server: without the wait the first reading saw the memory
/// still to free and the stage ended `ok` with 0 keys. The prefix written verifies.
#[test]
fn a_goal_after_a_flush_freed_in_the_background_counts_from_the_empty_server() {
    let server = RedisServer::start(&["--lazyfree-lazy-user-flush", "yes"]);
    server.populate(3_000_000, 64);
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(server.target(), "100MiB"));
    let result = run_ok(&scratch, &path, &[]);
    assert_near_goal(&result, 100 << 20);
    let written = result["stages"][0]["keys_written"].as_u64().unwrap();
    assert_eq!(server.dbsize(), written);
    assert_verified_against_result(&scratch, &path, written);
}

#[test]
fn a_percentage_of_maxmemory_is_reached() {
    let server = RedisServer::start(&["--maxmemory", "400mb", "--maxmemory-policy", "noeviction"]);
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(server.target(), "50%"));
    let (output, result) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_near_goal(&result.unwrap(), 200 * 1024 * 1024);
    // Half of 400 MiB is the goal; the key count is an estimate, and says so.
    let err = stderr(&output);
    assert!(
        err.lines().any(
            |l| l.starts_with("stage fill → main: started, until 200.00 MiB in memory (about ")
        ),
        "{err}"
    );
}

#[test]
fn a_percentage_without_maxmemory_is_refused_before_writing() {
    let server = RedisServer::start(&[]);
    server.set("keep", "me");
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(server.target(), "80%"));
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("maxmemory") && err.contains("80%"), "{err}");
    assert_eq!(server.dbsize(), 1, "the flush or a write happened");
}

#[test]
fn a_cluster_fills_until_the_sum_of_its_primaries_reaches_the_goal() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(cluster.target(), "120MiB"));
    let result = run_ok(&scratch, &path, &[]);
    assert_near_goal(&result, 120 << 20);
    assert_eq!(
        cluster.total_keys(),
        result["stages"][0]["keys_written"].as_u64().unwrap()
    );
}

/// A hash stage fills until the goal too: keys are handed out as memory allows, each
/// written whole, and the prefix verifies field by field.
#[test]
fn a_hash_stage_reaches_its_goal_and_verifies() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(8)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("fill")
                .data_type("hash")
                .until_memory("64MiB")
                .elements(5, 40)
                .value_range(16, 64),
        )
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let result = run_ok(&scratch, &path, &[]);
    assert_near_goal(&result, 64 << 20);
    let used = result["stages"][0]["until_memory"]["used_memory"]
        .as_u64()
        .unwrap();
    assert!(
        used.abs_diff(64 << 20) <= (64 << 20) / 100,
        "used_memory {used} is not within 1% of 64 MiB"
    );
    let written = result["stages"][0]["keys_written"].as_u64().unwrap();
    assert_eq!(server.dbsize(), written);
    assert_eq!(result["stages"][0]["partial_keys"], 0);
    assert_verified_against_result(&scratch, &path, written);
}
