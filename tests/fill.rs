//! The standalone fill against real redis-server processes: counts, determinism, shapes,
//! flushing and stage ordering.

use crate::support;

use std::time::{Duration, SystemTime};

use support::*;

fn stage_times(result: &serde_json::Value, index: usize) -> (SystemTime, SystemTime) {
    let stage = &result["stages"][index];
    let start = humantime::parse_rfc3339(stage["started_at"].as_str().unwrap()).unwrap();
    let end = start + Duration::from_secs_f64(stage["duration_s"].as_f64().unwrap());
    (start, end)
}

#[test]
fn hundred_thousand_entries_land_exactly() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(100_000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(server.dbsize(), 100_000);
    assert_eq!(result["stages"][0]["keys_written"], 100_000);
    assert_eq!(result["stages"][0]["status"], "ok");
    assert_eq!(result["status"], "ok");
    assert_eq!(result["targets"]["main"]["nodes"][0]["keys_after"], 100_000);
}

#[test]
fn dataset_is_the_same_for_any_connections_and_pipeline() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let stage = StageBuilder::new("s").keys(20_000).value_range(10, 300);
    let mut digests = Vec::new();
    for (stage, seed) in [
        (stage.clone().connections(1).pipeline(1), 5),
        (stage.clone().connections(8).pipeline(1024), 5),
        (
            stage.clone().connections(3).pipeline(7).keys_per_command(1),
            5,
        ),
        (
            stage
                .clone()
                .connections(2)
                .pipeline(100)
                .keys_per_command(16),
            5,
        ),
        (stage.connections(8).pipeline(1024), 6),
    ] {
        let plan = PlanBuilder::new()
            .seed(seed)
            .target(server.target().flush(true))
            .stage(stage);
        let plan = scratch.plan("plan.toml", &plan.build());
        let (output, _) = run_plan(&scratch, &plan, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(server.dbsize(), 20_000);
        digests.push(server.digest());
    }
    assert_eq!(
        digests[0], digests[1],
        "connections/pipeline changed the data"
    );
    assert_eq!(digests[0], digests[2], "keys_per_command changed the data");
    assert_eq!(
        digests[0], digests[3],
        "MSETs cut across batches changed the data"
    );
    assert_ne!(digests[0], digests[4], "another seed gave the same data");
}

#[test]
fn an_unseeded_run_records_a_seed_that_reproduces_it() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let unseeded = PlanBuilder::new()
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(5000));
    let plan = scratch.plan("plan.toml", &unseeded.build());
    let result = run_ok(&scratch, &plan, &[]);
    let seed = result["stages"][0]["seed"]
        .as_u64()
        .expect("the stage seed is recorded");
    assert_eq!(result["plan"]["seed"].as_u64(), Some(seed));
    let first = server.digest();

    let plan = scratch.plan("plan.toml", &unseeded.seed(seed).build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.digest(), first);
}

#[test]
fn size_gives_the_ceiling_of_payload_over_entry_bytes() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("s")
                .size("64MiB")
                .key_size(32)
                .value_size(512),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = (64u64 << 20).div_ceil(544);
    assert_eq!(server.dbsize(), expected);
    let result = result.unwrap();
    assert_eq!(result["stages"][0]["keys_planned"], expected);
    assert_eq!(result["stages"][0]["payload_bytes"], expected * 544);
}

#[test]
fn value_sizes_and_ttls_fall_in_their_ranges() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(3)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("v")
                .keys(2000)
                .key_prefix("v:")
                .value_range(64, 4096)
                .ttl_range("10m", "2h"),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut conn = server.connect();
    let keys: Vec<String> = redis::cmd("KEYS").arg("v:*").query(&mut conn).unwrap();
    assert_eq!(keys.len(), 2000);
    let mut lengths = std::collections::HashSet::new();
    for key in &keys {
        let len: u64 = redis::cmd("STRLEN").arg(key).query(&mut conn).unwrap();
        assert!((64..=4096).contains(&len), "{key}: {len}");
        lengths.insert(len);
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 2 * 3600 * 1000, "{key}: ttl {ttl}");
        assert!(
            ttl >= 10 * 60 * 1000 - 60_000,
            "{key}: ttl {ttl} below the minimum"
        );
    }
    assert!(
        lengths.len() > 100,
        "value sizes do not vary: {} distinct",
        lengths.len()
    );
}

#[test]
fn flush_true_removes_existing_keys_and_false_keeps_them() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = |flush: bool| {
        let plan = PlanBuilder::new()
            .target(server.target().flush(flush))
            .stage(StageBuilder::new("s").keys(1000));
        scratch.plan("plan.toml", &plan.build())
    };
    server.set("before", "1");
    let (output, result) = run_plan(&scratch, &plan(false), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.dbsize(), 1001);
    assert_eq!(result.unwrap()["targets"]["main"]["flushed"], false);

    let (output, result) = run_plan(&scratch, &plan(true), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.dbsize(), 1000);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("before")
        .query(&mut server.connect())
        .unwrap();
    assert_eq!(exists, 0);
    let result = result.unwrap();
    assert_eq!(result["targets"]["main"]["flushed"], true);
    assert_eq!(result["targets"]["main"]["nodes"][0]["keys_before"], 1001);
}

#[test]
fn stages_without_after_overlap_and_with_after_run_in_order() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let stage = |name: &str| {
        StageBuilder::new(name)
            .keys(300_000)
            .value_size(100)
            .connections(1)
    };
    let base = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(stage("a"));
    let parallel = base.clone().stage(stage("b"));
    let plan = scratch.plan("plan.toml", &parallel.build());
    let result = run_ok(&scratch, &plan, &[]);
    let (a_start, a_end) = stage_times(&result, 0);
    let (b_start, b_end) = stage_times(&result, 1);
    assert!(
        b_start < a_end && a_start < b_end,
        "parallel stages did not overlap"
    );
    assert_eq!(server.dbsize(), 600_000);

    let ordered = base.stage(stage("b").after(&["a"]));
    let plan = scratch.plan("plan.toml", &ordered.build());
    let result = run_ok(&scratch, &plan, &[]);
    let (_, a_end) = stage_times(&result, 0);
    let (b_start, _) = stage_times(&result, 1);
    // started_at has millisecond resolution: allow for the truncation.
    assert!(
        b_start + Duration::from_millis(2) >= a_end,
        "stage b started before a finished"
    );
}

#[test]
fn result_file_has_every_documented_field() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(42)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("sessions").keys(1000));
    let plan = scratch.plan("cluster-5g.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let r = result.unwrap();
    assert_eq!(r["cachefill_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["status"], "ok");
    assert!(r["error"].is_null());
    assert_eq!(r["plan"]["name"], "cluster-5g");
    assert!(
        r["plan"]["path"]
            .as_str()
            .unwrap()
            .ends_with("cluster-5g.toml")
    );
    assert_eq!(r["plan"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["plan"]["seed"], 42);
    assert_eq!(r["shard"]["index"], 0);
    assert_eq!(r["shard"]["count"], 1);
    for field in ["started_at", "finished_at"] {
        humantime::parse_rfc3339(r[field].as_str().unwrap()).unwrap();
    }
    assert!(r["duration_s"].as_f64().unwrap() > 0.0);
    let t = &r["targets"]["main"];
    assert_eq!(t["mode"], "standalone");
    assert_eq!(t["tls"], false);
    assert_eq!(t["flushed"], true);
    assert!(
        t["server_version"]
            .as_str()
            .unwrap()
            .starts_with(|c: char| c.is_ascii_digit())
    );
    let node = &t["nodes"][0];
    assert_eq!(node["address"], server.addr());
    assert_eq!(node["role"], "primary");
    assert!(node["slots"].is_null(), "a standalone server has no slots");
    assert_eq!(t["launched"], false);
    assert_eq!(node["keys_before"], 0);
    assert_eq!(node["keys_after"], 1000);
    assert_eq!(node["evicted_keys"], 0);
    assert!(node["used_memory_before"].as_u64().unwrap() > 0);
    assert!(
        node["used_memory_after"].as_u64().unwrap() > node["used_memory_before"].as_u64().unwrap()
    );
    let s = &r["stages"][0];
    assert_eq!(s["name"], "sessions");
    assert_eq!(s["target"], "main");
    assert_eq!(s["status"], "ok");
    assert_eq!(s["seed"], 42);
    assert_eq!(s["keys_planned"], 1000);
    assert_eq!(s["keys_written"], 1000);
    assert_eq!(s["payload_bytes"], 1000 * (32 + 512));
    humantime::parse_rfc3339(s["started_at"].as_str().unwrap()).unwrap();
    for field in ["duration_s", "keys_per_s", "mb_per_s"] {
        assert!(s[field].as_f64().unwrap() > 0.0, "{field}");
    }
    assert_eq!(s["errors"], 0);
    assert!(s["first_error"].is_null());
    assert_eq!(s["redirects"]["moved"], 0);
    assert_eq!(s["redirects"]["ask"], 0);
    assert_eq!(s["reconnects"], 0);
    assert_eq!(s["per_node"][0]["address"], server.addr());
    assert_eq!(s["per_node"][0]["keys"], 1000);
}

#[test]
fn result_goes_to_stdout_with_dash_and_nothing_else_does() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-o", "-"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is only the JSON result");
    assert_eq!(json["stages"][0]["keys_written"], 10);
}

/// `run -o - | head -c0`: the reader is gone before the result is written, which is no
/// failure of the run (as `check | head` is none), and the servers still hold everything.
#[test]
fn result_to_a_closed_pipe_is_not_an_error() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(1000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let mut child = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-o", "-", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("cannot write"),
        "{}",
        stderr(&output)
    );
    assert_eq!(server.dbsize(), 1000);
}

#[test]
fn default_result_path_is_plan_name_in_the_current_directory() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("nightly.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(scratch.path("nightly.result.json").exists());
    let err = stderr(&output);
    assert!(
        err.lines().any(|l| l.starts_with("stage s: ok, 10 keys, ")),
        "{err}"
    );
    // The start line gives the plan's bytes, and says they are the plan's.
    assert!(
        err.lines()
            .any(|l| l.starts_with("stage s → main: started, 10 keys, ") && l.ends_with(" planned")),
        "{err}"
    );
}
