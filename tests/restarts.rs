//! Stages through a restart of a standalone server: the server is killed mid-stage and
//! started again, empty, on the same port (no persistence). Every entry the stage had
//! handed out is re-checked on the new process and written again when missing (a typed key
//! once: no list item twice), and the run ends with the dataset of an undisturbed fill,
//! each key counted once.

use crate::support;

use std::time::Duration;

use support::*;

/// The digest of the dataset `plan` writes to a fresh server, undisturbed.
fn undisturbed_digest(scratch: &Scratch, plan: impl Fn(&RedisServer) -> PlanBuilder) -> String {
    let fresh = RedisServer::start(&[]);
    let again = scratch.plan("again.toml", &plan(&fresh).build());
    let (output, _) = run_plan(scratch, &again, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    fresh.digest()
}

/// Waits for the run `child`, which went through one restart of a server that held `lost`
/// keys when it went down, and checks that its first stage ended `ok` with its `keys` keys
/// and `elements` elements, each counted once; returns the stage's result.
fn stage_after_one_restart(
    child: std::process::Child,
    result_path: &std::path::Path,
    lost: u64,
    (keys, elements): (u64, u64),
) -> serde_json::Value {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(result_path);
    let stage_result = &result["stages"][0];
    assert_eq!(stage_result["status"], "ok");
    assert_eq!(stage_result["restarts"], 1);
    assert_eq!(stage_result["keys_written"], keys, "each key counted once");
    assert_eq!(stage_result["elements_written"], elements);
    assert_eq!(stage_result["partial_keys"], 0);
    let rewritten = stage_result["rewritten"].as_u64().unwrap();
    // The new process is empty: every entry handed out before the restart is found
    // missing, at least every one the old process held when it went down.
    assert!(
        lost <= rewritten && rewritten <= keys,
        "the server lost {lost} keys; {rewritten} were written again"
    );
    stage_result.clone()
}

/// Fills `stage` into a server that restarts once it holds more than `held_at_least` keys;
/// the run must end `ok` with every key, and the dataset an undisturbed fill writes.
fn fill_through_a_restart(
    stage: StageBuilder,
    keys: u64,
    elements: u64,
    held_at_least: u64,
) -> serde_json::Value {
    let mut server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = |server: &RedisServer| {
        PlanBuilder::new()
            .seed(31)
            .target(server.target().flush(true))
            .stage(stage.clone())
    };
    let path = scratch.plan("plan.toml", &plan(&server).build());
    let (child, result_path) = spawn_plan(&scratch, &path);
    let lost = server.restart_mid_stage(held_at_least);
    let stage = stage_after_one_restart(child, &result_path, lost, (keys, elements));
    assert_eq!(server.dbsize(), keys);
    let digest = server.digest();
    assert_verified(&scratch, &path, keys);
    assert_eq!(undisturbed_digest(&scratch, plan), digest);
    stage
}

/// A stage of `keys` lists of `elements` items each, 32 commands in flight.
fn lists(keys: u64, elements: u64) -> StageBuilder {
    StageBuilder::new("l")
        .data_type("list")
        .keys(keys)
        .elements(elements, elements)
        .value_size(16)
        .pipeline(32)
}

/// A stage of `keys` hashes of `elements` 4000-byte fields (several commands each), with a
/// TTL.
fn large_hashes(keys: u64, elements: u64) -> StageBuilder {
    StageBuilder::new("h")
        .data_type("hash")
        .keys(keys)
        .elements(elements, elements)
        .value_size(4000)
        .set("field_size", 8i64)
        .ttl_range("1h", "2h")
        .pipeline(8)
}

#[test]
fn a_standalone_server_restarted_mid_fill_is_refilled_with_what_it_lost() {
    let keys = 300_000;
    let stage = StageBuilder::new("s")
        .keys(keys)
        .value_size(20)
        .connections(1);
    fill_through_a_restart(stage, keys, keys, 50_000);
}

/// Lists written as `RESTORE` payloads (the default): what a connection held when the
/// server went down is left to the re-check, which restores every key the new process
/// lacks.
#[test]
fn lists_are_rechecked_and_written_once_after_a_restart() {
    let (keys, elements) = (60_000, 20);
    let stage = lists(keys, elements).connections(4);
    let stage = fill_through_a_restart(stage, keys, keys * elements, 10_000);
    assert_eq!(stage["restored_keys"], keys, "every key a RESTORE wrote");
}

/// Hashes of several commands each (about 64 KiB per command), with a TTL: a key some of
/// whose commands the old process had acknowledged is written whole on the new one.
#[test]
fn hashes_of_several_commands_are_rewritten_whole_after_a_restart() {
    let (keys, elements) = (600, 40);
    let stage = large_hashes(keys, elements)
        .connections(3)
        .set("write", "commands");
    let stage = fill_through_a_restart(stage, keys, keys * elements, 100);
    assert_eq!(stage["restored_keys"], 0);
}

/// Refuses the count a re-check starts each list with, on a restarted server.
const NO_LLEN: [&str; 3] = ["--rename-command", "LLEN", ""];

/// Checks the result of a stage of `elements`-item lists whose re-check after a restart
/// could not finish (the restarted server refused `LLEN`), on a target that holds `held`
/// keys after the run and whose restarted server had held `lost` keys when it went down
/// (writes paused first), with `connections` connections of 32 commands in flight; returns
/// the stage's result.
fn check_unfinished_recheck(
    output: &std::process::Output,
    result_path: &std::path::Path,
    elements: u64,
    (held, lost, connections): (u64, u64, u64),
) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    let stage = read_result(result_path)["stages"][0].clone();
    assert_eq!(stage["status"], "failed");
    assert_eq!(stage["restarts"], 1);
    let first_error = stage["first_error"].as_str().unwrap();
    assert!(first_error.contains("LLEN"), "{first_error}");
    // The result keeps its promise: the target holds between `keys_written` and
    // `keys_written + unacknowledged` of the stage's keys, each written one whole.
    let written = stage["keys_written"].as_u64().unwrap();
    let doubt = stage["unacknowledged"].as_u64().unwrap();
    assert!(
        written <= held && held <= written + doubt,
        "the target holds {held} keys; the result says {written} written, {doubt} in doubt"
    );
    assert_eq!(stage["elements_written"], written * elements);
    // What the old process had acknowledged is in doubt now, not written: keys it held when
    // it went down, all but those whose replies were still on their way.
    assert!(
        doubt + connections * 32 >= lost,
        "the old process held {lost} keys; {doubt} in doubt"
    );
    stage
}

/// A re-check that cannot finish (the restarted server refuses to count lists): the stage
/// fails, and the keys it did not re-check no longer count as written, since the restarted
/// server may not hold them.
#[test]
fn keys_a_restart_left_unchecked_do_not_count_as_written() {
    let (keys, elements) = (60_000, 20);
    let mut server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(31)
        .target(server.target().flush(true))
        .stage(lists(keys, elements).connections(4))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let (child, result_path) = spawn_plan(&scratch, &path);
    let lost = server.restart_mid_stage_with(10_000, &NO_LLEN);
    let output = child.wait_with_output().unwrap();
    let stage =
        check_unfinished_recheck(&output, &result_path, elements, (server.dbsize(), lost, 4));
    let first_error = stage["first_error"].to_string();
    assert!(first_error.contains("server restart"), "{first_error}");
    let doubt = stage["unacknowledged"].as_u64().unwrap();
    assert!(doubt <= lost, "only keys the old process held are in doubt");
}

/// The same on a restarted cluster primary that kept its cluster config.
#[test]
fn keys_a_restarted_cluster_primary_left_unchecked_do_not_count_as_written() {
    let (keys, elements) = (30_000, 20);
    let mut cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(46)
        .target(cluster.target().flush(true))
        .stage(lists(keys, elements).connections(2))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let (child, result_path) = spawn_plan(&scratch, &path);
    let victim = cluster.a_primary();
    let lost = cluster.servers[victim].restart_node_mid_stage_with(2_000, &NO_LLEN);
    let output = wait_for_exit(child, Duration::from_secs(120));
    check_unfinished_recheck(
        &output,
        &result_path,
        elements,
        (cluster.total_keys(), lost, 3 * 2),
    );
}

/// Fills `stage` into a 3-primary cluster one of whose primaries is killed once it holds
/// more than `held_at_least` keys and restarted with its cluster config (its node id and
/// slots) but no data: the run must end `ok` with every key and the dataset a standalone
/// fill writes.
fn fill_through_a_node_restart(
    stage: StageBuilder,
    seed: u64,
    (keys, elements): (u64, u64),
    held_at_least: u64,
) {
    let mut cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new().seed(seed).stage(stage);
    let path = scratch.plan(
        "plan.toml",
        &plan.clone().target(cluster.target().flush(true)).build(),
    );
    let (child, result_path) = spawn_plan(&scratch, &path);
    let victim = cluster.a_primary();
    let lost = cluster.servers[victim].restart_node_mid_stage(held_at_least);
    let stage_result = stage_after_one_restart(child, &result_path, lost, (keys, elements));
    assert_eq!(stage_result["failovers"], 0);
    assert_eq!(cluster.total_keys(), keys);
    assert_verified(&scratch, &path, keys);
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, plan),
        "the same dataset as an undisturbed fill"
    );
}

/// A cluster primary killed mid-stage and restarted with its cluster config: every entry
/// routed to its slots is read back and written again when missing, as after a failover.
#[test]
fn a_cluster_primary_restarted_with_its_config_is_refilled_with_what_it_lost() {
    let keys = 200_000;
    let stage = StageBuilder::new("c")
        .keys(keys)
        .value_size(20)
        .connections(2);
    fill_through_a_node_restart(stage, 41, (keys, keys), 5_000);
}

/// Lists written with commands on a restarted cluster primary: every key routed to its
/// slots before the restart was found is resumed once there (its length, then the rest),
/// and the primary's other connections and its queue leave those keys to that re-check: no
/// list gets an item twice.
#[test]
fn lists_on_a_restarted_cluster_primary_are_rechecked_and_written_once() {
    let (keys, elements) = (60_000, 20);
    let stage = lists(keys, elements)
        .connections(3)
        .set("write", "commands");
    fill_through_a_node_restart(stage, 44, (keys, keys * elements), 3_000);
}

/// Hashes of several commands each, with a TTL, on a restarted cluster primary: a key some
/// of whose commands the old process had acknowledged is written whole on the new one.
#[test]
fn hashes_on_a_restarted_cluster_primary_are_rewritten_whole() {
    let (keys, elements) = (900, 40);
    let stage = large_hashes(keys, elements).connections(2);
    fill_through_a_node_restart(stage, 45, (keys, keys * elements), 60);
}

/// Streams on a restarted cluster primary: each entry is one `XADD` with its explicit ID,
/// so a stream routed there is resumed from its length (`XLEN`) on the new process, and no
/// entry is added twice (a second `XADD` of an ID would be refused, and fail the run).
#[test]
fn streams_on_a_restarted_cluster_primary_are_rechecked_and_written_once() {
    let (keys, elements) = (1_500, 20);
    let stage = StageBuilder::new("x")
        .data_type("stream")
        .keys(keys)
        .elements(elements, elements)
        .value_size(16)
        .pipeline(32)
        .connections(2);
    fill_through_a_node_restart(stage, 46, (keys, keys * elements), 150);
}

/// A cluster primary restarted without its cluster config comes back as a new node that
/// serves none of its slots: what it lost cannot be re-checked there, and the run says so.
#[test]
fn a_cluster_primary_restarted_without_its_config_fails_clearly() {
    let mut cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(42)
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("c").keys(50_000_000).value_size(10));
    let path = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &path);
    let victim = cluster.a_primary();
    cluster.servers[victim].restart_mid_stage(5_000);
    let output = wait_for_exit(child, Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let reason = the_reason(&err);
    assert!(
        reason.contains(&cluster.servers[victim].addr())
            && reason.contains("restarted (its run_id changed)")
            && reason.contains("came back without slot"),
        "{reason}"
    );
    let result = read_result(&result_path);
    assert_eq!(result["stages"][0]["status"], "failed");
    assert_eq!(result["stages"][0]["restarts"], 1);
}

/// Runs `plan` on `server`, which restarts (empty) once the first stage's `first` keys and
/// 20,000 more are written; the run must succeed. Returns the plan's path, the result and
/// how many keys the server lost.
fn run_through_restart(
    server: &mut RedisServer,
    scratch: &Scratch,
    plan: &PlanBuilder,
    first: u64,
) -> (std::path::PathBuf, serde_json::Value, u64) {
    let path = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(scratch, &path);
    let lost = server.restart_mid_stage(first + 20_000);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (path, read_result(&result_path), lost)
}

/// A restart during the second of two string stages: the first stage's entries, all gone
/// with the old process, are re-checked and written again too.
#[test]
fn earlier_string_stages_are_rechecked_after_a_restart() {
    let mut server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let (first, second) = (100_000, 300_000);
    let plan = |server: &RedisServer| {
        PlanBuilder::new()
            .seed(43)
            .target(server.target().flush(true))
            .stage(StageBuilder::new("first").keys(first).value_size(20))
            .stage(
                StageBuilder::new("second")
                    .keys(second)
                    .value_size(20)
                    .after(&["first"]),
            )
    };
    let planned = plan(&server);
    let (path, result, lost) = run_through_restart(&mut server, &scratch, &planned, first);
    let stages = &result["stages"];
    assert_eq!(stages[0]["status"], "ok");
    assert_eq!(stages[0]["keys_written"], first);
    assert_eq!(stages[0]["restarts"], 0, "it had ended");
    assert_eq!(stages[1]["status"], "ok");
    assert_eq!(stages[1]["keys_written"], second);
    assert_eq!(stages[1]["restarts"], 1);
    let rewritten = stages[1]["rewritten"].as_u64().unwrap();
    // All of the first stage, and of the second at least what the server held of it.
    assert!(
        lost <= rewritten && rewritten <= first + second,
        "the server lost {lost} keys; {rewritten} were written again"
    );
    assert_eq!(server.dbsize(), first + second);
    let digest = server.digest();
    let (verified, report) = verify(&scratch, &path, &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let report = report.unwrap();
    assert_eq!(report["stages"][0]["checked"], first);
    assert_eq!(report["stages"][1]["checked"], second);
    assert_eq!(undisturbed_digest(&scratch, plan), digest);
}

/// Two stages in parallel after a first one, through one restart: both find the restart,
/// and the first stage's entries (all lost with the old process) are re-checked by one of
/// them only, so that no entry is written again twice and `rewritten` counts each once.
#[test]
fn parallel_stages_recheck_an_earlier_stage_once_after_a_restart() {
    let mut server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let (first, each) = (100_000, 150_000);
    // Few entries in flight: what a stage had handed out but not yet seen acknowledged
    // when the server went down is at most 2 × 16 commands × 16 keys.
    let parallel = |name: &str| {
        StageBuilder::new(name)
            .keys(each)
            .value_size(20)
            .connections(2)
            .pipeline(16)
            .keys_per_command(16)
            .after(&["first"])
    };
    let plan = PlanBuilder::new()
        .seed(47)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("first").keys(first).value_size(20))
        .stage(parallel("second"))
        .stage(parallel("third"));
    let (path, result, lost) = run_through_restart(&mut server, &scratch, &plan, first);
    let stages = &result["stages"];
    let mut rewritten = 0;
    for (n, keys) in [(0, first), (1, each), (2, each)] {
        assert_eq!(stages[n]["status"], "ok", "{}", stages[n]);
        assert_eq!(stages[n]["keys_written"], keys);
        rewritten += stages[n]["rewritten"].as_u64().unwrap();
    }
    assert_eq!(stages[1]["restarts"], 1);
    assert_eq!(stages[2]["restarts"], 1);
    // Every key the old process held was written again, and besides them at most what
    // the two stages had in flight: the first stage's keys were not written twice.
    let in_flight = 2 * 2 * 16 * 16;
    assert!(
        lost <= rewritten && rewritten <= lost + in_flight,
        "the server lost {lost} keys ({first} of the first stage); {rewritten} were written again"
    );
    assert_eq!(server.dbsize(), first + 2 * each);
    let (verified, _) = verify(&scratch, &path, &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
}

/// A run right after a restart finds the server loading its dataset from disk (answering
/// `LOADING` to writes): it says so, waits for it (within `io_timeout`) and writes then, the
/// loaded keys kept and every new key written.
#[test]
fn a_run_against_a_server_loading_its_dataset_waits_for_it_then_writes() {
    let scratch = Scratch::new();
    let (mut server, dir) = saving_server(&scratch);
    let first = PlanBuilder::new()
        .seed(3)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("before").keys(20_000).value_size(30));
    let first = scratch.plan("first.toml", &first.build());
    run_ok(&scratch, &first, &[]);
    let port = server.port;
    let loading = server.restart_from_dump(&dir, 100);

    let then = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(false))
        .stage(StageBuilder::new("after").keys(5_000).value_size(30))
        .stage(
            StageBuilder::new("lists")
                .data_type("list")
                .keys(500)
                .elements(10, 10),
        );
    let then = scratch.plan("then.toml", &then.build());
    let (output, result) = run_plan(&scratch, &then, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "target main: 127.0.0.1:{port} is loading its dataset from disk; waiting for it"
        )),
        "{}",
        stderr(&output)
    );
    let result = result.unwrap();
    assert_eq!(result["stages"][0]["keys_written"], 5_000);
    assert_eq!(result["stages"][1]["elements_written"], 5_000);
    assert_eq!(result["targets"]["main"]["nodes"][0]["keys_before"], 20_000);
    assert_eq!(loading.ping(), Ok("PONG".to_string()));
    assert_eq!(loading.dbsize(), 25_500);
    assert_verified(&scratch, &first, 20_000);
}

/// A server with persistence restarted mid-fill loads its dataset back, answering `LOADING`
/// meanwhile: the stage's connections wait for it, re-check what they had handed out against
/// what it loaded, and write only what it lacks; the dataset is the undisturbed one.
#[test]
fn a_server_restarted_mid_fill_from_its_dump_is_waited_for_and_rechecked() {
    let scratch = Scratch::new();
    let (mut server, dir) = saving_server(&scratch);
    let keys = 300_000;
    let plan = |server: &RedisServer| {
        PlanBuilder::new()
            .seed(32)
            .target(server.target().flush(true))
            .stage(
                StageBuilder::new("s")
                    .keys(keys)
                    .value_size(20)
                    .connections(2),
            )
    };
    let path = scratch.plan("plan.toml", &plan(&server).build());
    let (child, result_path) = spawn_plan(&scratch, &path);
    // 20 µs per key: a second or two of loading.
    let (saved, loading) = server.restart_mid_stage_loading(50_000, &dir, 20);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["restarts"], 1);
    assert_eq!(stage["keys_written"], keys);
    // What the server loaded was not written again: only keys handed out and not saved.
    let rewritten = stage["rewritten"].as_u64().unwrap();
    assert!(
        rewritten + saved <= keys,
        "{saved} keys saved and loaded, {rewritten} written again"
    );
    assert_eq!(loading.dbsize(), keys);
    assert_verified(&scratch, &path, keys);
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut loading.connection())
        .unwrap();
    assert_eq!(undisturbed_digest(&scratch, plan), digest);
}
