//! The result's timeline: samples at each stage's start and end with the stage's exact
//! counts, in time order, with the targets' INFO figures (null when INFO is refused); how
//! `merge` keeps the shards' timelines; and results without one still read.

use crate::support;

use serde_json::Value;
use support::*;

/// The samples of a result's timeline.
fn samples(result: &Value) -> &Vec<Value> {
    result["timeline"]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline samples in {result}"))
}

/// The samples marking `event` ("start" or "end") of `stage`.
fn marks<'a>(result: &'a Value, event: &str, stage: &str) -> Vec<&'a Value> {
    samples(result)
        .iter()
        .filter(|s| s["event"][event] == stage)
        .collect()
}

/// Samples are in time order, and no stage's count ever goes down.
fn assert_ordered(result: &Value) {
    let samples = samples(result);
    for pair in samples.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            before["offset_s"].as_f64().unwrap() <= after["offset_s"].as_f64().unwrap(),
            "out of order: {before} then {after}"
        );
        for (stage, counts) in before["stages"].as_object().unwrap() {
            for field in ["keys_written", "elements_written", "payload_bytes"] {
                assert!(
                    counts[field].as_u64().unwrap()
                        <= after["stages"][stage][field].as_u64().unwrap(),
                    "{stage}.{field} went down: {before} then {after}"
                );
            }
        }
    }
}

#[test]
fn each_stage_has_a_start_sample_at_zero_and_an_end_sample_with_its_final_counts() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("strings")
                .keys(30_000)
                .value_range(10, 200),
        )
        .stage(
            StageBuilder::new("hashes")
                .data_type("hash")
                .keys(2_000)
                .elements(1, 20)
                .value_range(8, 32),
        )
        .stage(
            StageBuilder::new("later")
                .keys(5_000)
                .value_size(50)
                .after(&["strings"]),
        )
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let result = run_ok(&scratch, &path, &[]);

    assert_eq!(result["timeline"]["started_at"], result["started_at"]);
    assert_ordered(&result);
    for stage in result["stages"].as_array().unwrap() {
        let name = stage["name"].as_str().unwrap();
        let starts = marks(&result, "start", name);
        assert_eq!(starts.len(), 1, "{name}: {starts:?}");
        assert_eq!(
            starts[0]["stages"][name],
            serde_json::json!({"keys_written": 0, "elements_written": 0, "payload_bytes": 0}),
            "{name}"
        );
        let ends = marks(&result, "end", name);
        assert_eq!(ends.len(), 1, "{name}: {ends:?}");
        let end = &ends[0]["stages"][name];
        for field in ["keys_written", "elements_written", "payload_bytes"] {
            assert_eq!(end[field], stage[field], "{name}.{field}");
        }
        // Every sample after the end still shows the final counts.
        let last = samples(&result).last().unwrap();
        assert_eq!(&last["stages"][name], end, "{name}");
    }
    assert_eq!(result["stages"][0]["keys_written"], 30_000);
    assert_eq!(result["stages"][1]["keys_written"], 2_000);
    assert_eq!(result["stages"][2]["keys_written"], 5_000);

    // "later" runs after "strings": it is in no sample before its start.
    let start_of_later = samples(&result)
        .iter()
        .position(|s| s["event"]["start"] == "later")
        .unwrap();
    for sample in &samples(&result)[..start_of_later] {
        assert!(sample["stages"].get("later").is_none(), "{sample}");
    }
    let strings_end = marks(&result, "end", "strings")[0]["offset_s"]
        .as_f64()
        .unwrap();
    let later_start = samples(&result)[start_of_later]["offset_s"]
        .as_f64()
        .unwrap();
    assert!(strings_end <= later_start);

    // The target's figures are in every sample: a server without maxmemory says 0.
    for sample in samples(&result) {
        let target = &sample["targets"]["main"];
        assert_eq!(target["maxmemory"], 0, "{sample}");
        assert_eq!(target["evicted_keys"], 0, "{sample}");
        assert!(target["used_memory"].is_u64(), "{sample}");
    }
    let keys_after = result["targets"]["main"]["nodes"][0]["keys_after"]
        .as_u64()
        .unwrap();
    assert_eq!(keys_after, 37_000);
    assert_eq!(server.dbsize(), keys_after);
}

#[test]
fn a_user_who_may_not_run_info_gets_null_figures_and_exact_counts() {
    let server = RedisServer::start(&[]);
    server.acl_user("writer", "writer-pw", &["+set", "+mset"]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(6)
        .target(server.target().user("writer", "PW"))
        .stage(StageBuilder::new("s").keys(10_000).value_size(64))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&path)
        .args(["--quiet", "-o", "result.json"])
        .env("PW", "writer-pw")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&scratch.path("result.json"));
    assert_ordered(&result);
    for sample in samples(&result) {
        assert_eq!(
            sample["targets"]["main"],
            serde_json::json!({"used_memory": null, "maxmemory": null, "evicted_keys": null, "expired_keys": null}),
            "{sample}"
        );
    }
    let end = marks(&result, "end", "s")[0];
    assert_eq!(end["stages"]["s"]["keys_written"], 10_000);
    assert_eq!(
        end["stages"]["s"]["payload_bytes"],
        result["stages"][0]["payload_bytes"]
    );
}

#[test]
fn merge_keeps_each_shards_timeline_in_shard_order() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(9)
        .target(server.target())
        .stage(StageBuilder::new("a").keys(20_000).value_size(32))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    for i in 0..2 {
        let output = cachefill(scratch.dir.path())
            .arg("run")
            .arg(&path)
            .args(["--quiet", "--shard", &format!("{i}/2")])
            .args(["-o", &format!("shard{i}.json")])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let output = cachefill(scratch.dir.path())
        .args(["merge", "shard1.json", "shard0.json", "-o", "merged.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let merged = read_result(&scratch.path("merged.json"));
    assert_eq!(merged["timeline"], Value::Null);
    let timelines = merged["shard_timelines"].as_array().unwrap();
    assert_eq!(timelines.len(), 2);
    for (i, timeline) in timelines.iter().enumerate() {
        assert_eq!(timeline["shard"], i);
        let shard = read_result(&scratch.path(&format!("shard{i}.json")));
        assert_eq!(timeline["started_at"], shard["timeline"]["started_at"]);
        assert_eq!(timeline["samples"], shard["timeline"]["samples"]);
        let end = timeline["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["event"]["end"] == "a")
            .unwrap();
        assert_eq!(
            end["stages"]["a"]["keys_written"],
            shard["stages"][0]["keys_written"]
        );
    }
    assert_eq!(merged["stages"][0]["keys_written"], 20_000);
}

#[test]
fn a_result_without_a_timeline_still_reads_in_merge_and_verify() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(12)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(3_000).value_size(40))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let mut result = run_ok(&scratch, &path, &[]);
    // As a cachefill before the timeline wrote it.
    result.as_object_mut().unwrap().remove("timeline");
    std::fs::write(
        scratch.path("old.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();

    let (verified, report) = verify(&scratch, &path, &["--result", "old.json"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(report.unwrap()["stages"][0]["checked"], 3_000);

    let output = cachefill(scratch.dir.path())
        .args(["merge", "old.json", "-o", "merged.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let merged = read_result(&scratch.path("merged.json"));
    assert_eq!(merged["timeline"], Value::Null);
    assert!(merged.get("shard_timelines").is_none(), "{merged}");
    assert_eq!(merged["stages"][0]["keys_written"], 3_000);
}

/// `DBSIZE` and the `INFO stats` counters of the server at `addr`, read in one transaction so
/// nothing expires in between.
fn keys_evicted_expired(addr: &str) -> (u64, u64, u64) {
    let mut conn = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let (keys, info): (u64, String) = redis::pipe()
        .atomic()
        .cmd("DBSIZE")
        .cmd("INFO")
        .arg("stats")
        .query(&mut conn)
        .unwrap();
    let stat = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (keys, stat("evicted_keys"), stat("expired_keys"))
}

#[test]
fn the_eviction_drill_holds_used_memory_at_maxmemory_while_keys_are_evicted() {
    let scratch = Scratch::new();
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/eviction-drill.toml");
    // --keep, to account for every key on the server afterwards.
    let mut run = LaunchedRun::spawn(&scratch, &plan, "drill");
    let (status, err, result) = run.finish();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("has maxmemory-policy allkeys-lru: the server may evict entries"),
        "{err}"
    );
    assert_ordered(&result);
    let maxmemory = 64 * 1024 * 1024;
    for sample in samples(&result) {
        assert_eq!(
            sample["targets"]["drill"]["maxmemory"], maxmemory,
            "{sample}"
        );
    }
    for pair in samples(&result).windows(2) {
        let evicted = |s: &Value| s["targets"]["drill"]["evicted_keys"].as_u64().unwrap();
        assert!(evicted(&pair[0]) <= evicted(&pair[1]), "{pair:?}");
    }
    let last = &samples(&result).last().unwrap()["targets"]["drill"];
    assert!(last["evicted_keys"].as_u64().unwrap() > 0, "{last}");
    let used = last["used_memory"].as_u64().unwrap();
    assert!(
        used <= maxmemory + maxmemory / 100,
        "used_memory {used} is over maxmemory {maxmemory} by more than 1%"
    );

    // Every key acknowledged is on the server, evicted or expired.
    let written: u64 = result["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "ok", "{s}");
            assert_eq!(s["keys_written"], s["keys_planned"], "{s}");
            s["keys_written"].as_u64().unwrap()
        })
        .sum();
    let (keys, evicted, expired) = keys_evicted_expired(&run.addrs[0]);
    assert_eq!(keys + evicted + expired, written);
    assert!(evicted >= last["evicted_keys"].as_u64().unwrap());
    // The result and the end of the run say exactly how many written keys were evicted
    // (the server was launched for the run: none before; none since, nothing writes).
    let node = &result["targets"]["drill"]["nodes"][0];
    assert_eq!(node["evicted_keys"], evicted, "{node}");
    let said = format!(
        "warning: target drill: servers evicted keys during the run under their maxmemory-policy: {} ({evicted}, allkeys-lru);",
        run.addrs[0]
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with(&said)).count(),
        1,
        "{err}"
    );
}
