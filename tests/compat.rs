//! The compatibility matrix: the system's Redis (7.0 on Debian 12), Valkey 9 and Redis 6.2
//! (both fetched by `scripts/fetch-servers`). On each, a standalone server filled with every
//! type of stage verifies exactly, and a cluster cachefill launches (6.2 lacks `CLUSTER
//! ADDSLOTSRANGE`) is filled while 1000 slots move to another primary, and verifies. A
//! server that refuses an option at start (6.2 has no TLS here) says why in one line.

use crate::support;

use std::time::Duration;

use support::*;

const TYPES: [&str; 5] = ["hash", "set", "zset", "list", "stream"];

/// Strings with TTLs, then 300 keys of each type, with small elements.
fn every_type(plan: PlanBuilder) -> PlanBuilder {
    let strings = StageBuilder::new("strings")
        .keys(20_000)
        .value_range(10, 200)
        .ttl_range("1h", "2h");
    TYPES.iter().fold(plan.stage(strings), |plan, data_type| {
        let stage = StageBuilder::new(data_type)
            .data_type(data_type)
            .keys(300)
            .elements(1, 40)
            .value_range(4, 40);
        plan.stage(match *data_type {
            "hash" => stage.set("field_size", 6i64),
            _ => stage,
        })
    })
}

/// What the server calls a small hash: Redis 7.0 renamed ziplist to listpack.
fn small_hash_encoding(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Redis62 => "ziplist",
        ServerKind::Redis7 | ServerKind::Valkey9 => "listpack",
    }
}

fn a_standalone_server_is_filled_with_every_type_and_verifies(kind: ServerKind) {
    let server = RedisServer::of(kind, &[]);
    let scratch = Scratch::new();
    let plan = every_type(
        PlanBuilder::new()
            .seed(21)
            .target(server.target().flush(true)),
    );
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let version = result["targets"]["main"]["server_version"]
        .as_str()
        .unwrap();
    assert!(
        version.starts_with(kind.version_prefix()),
        "{kind:?}: {version}"
    );
    assert_eq!(server.dbsize(), 20_000 + 5 * 300);
    let stages = result["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6);
    for stage in stages {
        assert_eq!(stage["status"], "ok", "{stage}");
        assert_eq!(stage["keys_written"], stage["keys_planned"], "{stage}");
        assert_eq!(stage["errors"], 0, "{stage}");
        assert_eq!(stage["memory"]["sampled_keys"], 100, "{stage}");
    }
    let hashes = &stages[1]["memory"]["encodings"];
    assert_eq!(hashes[small_hash_encoding(kind)], 100, "{hashes}");
    // Typed keys go as RESTORE payloads where the server has listpacks (7.0+); the dataset
    // is the one commands write.
    let restored: Vec<u64> = stages
        .iter()
        .map(|s| s["restored_keys"].as_u64().unwrap())
        .collect();
    let payloads = if kind == ServerKind::Redis62 { 0 } else { 300 };
    assert_eq!(
        restored,
        [0, payloads, payloads, payloads, payloads, payloads],
        "{kind:?}"
    );
    let digest = server.digest();
    let commands = every_type(
        PlanBuilder::new()
            .seed(21)
            .target(server.target().flush(true).set("write", "commands")),
    );
    let commands = scratch.plan("commands.toml", &commands.build());
    run_ok(&scratch, &commands, &[]);
    assert_eq!(
        server.digest(),
        digest,
        "{kind:?}: RESTORE against commands"
    );
    run_ok(&scratch, &plan, &[]);

    let (output, report) = verify(&scratch, &plan, &[]);
    assert!(output.status.success(), "{kind:?}: {}", stderr(&output));
    let report = report.unwrap();
    let checked: Vec<u64> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["checked"].as_u64().unwrap())
        .collect();
    assert_eq!(checked, [20_000, 300, 300, 300, 300, 300]);
}

fn a_launched_cluster_is_filled_through_a_resharding_and_verifies(kind: ServerKind) {
    let scratch = Scratch::new();
    let (strings, hashes) = (100_000u64, 2000u64);
    let plan = PlanBuilder::new()
        .seed(8)
        .target(TargetBuilder::launch_cluster("grid", 3, 0).set("server_bin", kind.server_bin()))
        .stage(
            StageBuilder::new("strings")
                .keys(strings)
                .value_size(32)
                .connections(1)
                .pipeline(64),
        )
        .stage(
            StageBuilder::new("hashes")
                .data_type("hash")
                .keys(hashes)
                .elements(1, 40)
                .connections(1),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let mut run = LaunchedRun::spawn(&scratch, &plan, "grid");
    assert_eq!(run.addrs.len(), 3, "{:?}", run.stderr.seen);
    // Early: strings go in slot order per window, so the slots that move (the source's
    // first 1000) must not be written yet when the run is paused.
    wait_until("the fill has started", Duration::from_secs(60), || {
        run.total_keys() >= 1_000
    });
    // Paused mid-fill, the run keeps its connections and its view of the slots; the slots
    // move under it, so the rest of the fill meets their new owner.
    run.pause();
    let paused_at = run.total_keys();
    assert!(
        paused_at < strings,
        "the fill ended before it could be paused ({paused_at} keys)"
    );
    reshard(&run.addrs[0], &run.addrs[0], &run.addrs[1], 1000);
    run.resume();
    let (status, err, result) = run.finish();
    assert!(status.success(), "{kind:?}: {err}");
    let version = result["targets"]["grid"]["server_version"]
        .as_str()
        .unwrap();
    assert!(
        version.starts_with(kind.version_prefix()),
        "{kind:?}: {version}"
    );
    let stages = result["stages"].as_array().unwrap();
    for (stage, keys) in stages.iter().zip([strings, hashes]) {
        assert_eq!(stage["status"], "ok", "{stage}");
        assert_eq!(stage["keys_written"], keys, "{stage}");
        assert_eq!(stage["partial_keys"], 0, "{stage}");
        // The key-cost sample reads keys whose slot moved where they went.
        assert_eq!(stage["memory"]["sampled_keys"], 100, "{stage}");
    }
    let moved = stages[0]["redirects"]["moved"].as_u64().unwrap();
    assert!(
        moved > 0,
        "the rest of the fill met no moved slot: {}",
        stages[0]
    );
    assert_eq!(run.total_keys(), strings + hashes);

    let verified = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&plan)
        .arg("--result")
        .arg(&run.result)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{kind:?}: {}", stderr(&verified));
}

#[test]
fn redis_7_standalone_every_type_verifies() {
    a_standalone_server_is_filled_with_every_type_and_verifies(ServerKind::Redis7);
}

#[test]
fn valkey_9_standalone_every_type_verifies() {
    a_standalone_server_is_filled_with_every_type_and_verifies(ServerKind::Valkey9);
}

#[test]
fn redis_6_2_standalone_every_type_verifies() {
    a_standalone_server_is_filled_with_every_type_and_verifies(ServerKind::Redis62);
}

#[test]
fn redis_7_launched_cluster_through_a_resharding_verifies() {
    a_launched_cluster_is_filled_through_a_resharding_and_verifies(ServerKind::Redis7);
}

#[test]
fn valkey_9_launched_cluster_through_a_resharding_verifies() {
    a_launched_cluster_is_filled_through_a_resharding_and_verifies(ServerKind::Valkey9);
}

#[test]
fn redis_6_2_launched_cluster_through_a_resharding_verifies() {
    a_launched_cluster_is_filled_through_a_resharding_and_verifies(ServerKind::Redis62);
}

#[test]
fn a_server_without_tls_launched_with_tls_says_why_in_one_line() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(
            TargetBuilder::launch_standalone("local")
                .set("server_bin", ServerKind::Redis62.server_bin())
                .tls(None),
        )
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let reason = err.lines().last().unwrap();
    assert!(
        reason.starts_with("cachefill: target \"local\"")
            && reason.contains("'tls-port")
            && reason.contains("Bad directive")
            && reason.contains("needs a server_bin built with TLS"),
        "{err}"
    );
}
