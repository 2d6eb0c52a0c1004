//! Sharded runs: N processes write disjoint parts whose union is the one-process dataset.

use crate::support;

use std::process::Stdio;

use support::*;

fn plan_text(server: &RedisServer, flush: bool) -> String {
    PlanBuilder::new()
        .seed(11)
        .target(server.target().flush(flush))
        .stage(StageBuilder::new("a").keys(50_000).value_range(8, 64))
        .stage(StageBuilder::new("b").keys(12_345).key_size(40))
        .build()
}

#[test]
fn four_concurrent_shards_write_exactly_the_single_run_dataset() {
    let single = RedisServer::start(&[]);
    let sharded = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan("single.toml", &plan_text(&single, true));
    let single_result = run_ok(&scratch, &plan, &[]);

    let plan = scratch.plan("sharded.toml", &plan_text(&sharded, true));
    let children: Vec<_> = (0..4)
        .map(|i| {
            cachefill(scratch.dir.path())
                .arg("run")
                .arg(&plan)
                .args([
                    "--quiet",
                    "--no-flush",
                    "--shard",
                    &format!("{i}/4"),
                    "-o",
                    &format!("shard{i}.json"),
                ])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_eq!(
        sharded.digest(),
        single.digest(),
        "the shards wrote another dataset"
    );
    assert_eq!(sharded.dbsize(), 50_000 + 12_345);

    let shard_results: Vec<serde_json::Value> = (0..4)
        .map(|i| read_result(&scratch.path(&format!("shard{i}.json"))))
        .collect();
    for (s, name) in [(0, "a"), (1, "b")] {
        let planned: u64 = shard_results
            .iter()
            .map(|r| r["stages"][s]["keys_planned"].as_u64().unwrap())
            .sum();
        let written: u64 = shard_results
            .iter()
            .map(|r| r["stages"][s]["keys_written"].as_u64().unwrap())
            .sum();
        assert_eq!(
            planned,
            single_result["stages"][s]["keys_planned"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(written, planned, "{name}");
    }
    assert_eq!(shard_results[2]["shard"]["index"], 2);
    assert_eq!(shard_results[2]["shard"]["count"], 4);

    let output = cachefill(scratch.dir.path())
        .arg("merge")
        .args((0..4).map(|i| format!("shard{i}.json")))
        .args(["-o", "merged.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let merged = read_result(&scratch.path("merged.json"));
    for s in 0..2 {
        for field in ["keys_planned", "keys_written", "payload_bytes", "errors"] {
            assert_eq!(
                merged["stages"][s][field], single_result["stages"][s][field],
                "stage {s} {field}"
            );
        }
    }
    assert_eq!(merged["status"], "ok");
    assert_eq!(merged["shard"]["count"], 4);

    let verify = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&plan)
        .args(["--result", "merged.json"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn job_completion_index_selects_the_shard() {
    let by_env = RedisServer::start(&[]);
    let by_flag = RedisServer::start(&[]);
    let scratch = Scratch::new();
    for (server, args, env) in [
        (&by_env, vec!["--shards", "4"], Some("2")),
        (&by_flag, vec!["--shard", "2/4"], None),
    ] {
        let plan = scratch.plan("plan.toml", &plan_text(server, false));
        let mut command = cachefill(scratch.dir.path());
        command
            .arg("run")
            .arg(&plan)
            .args(["--quiet", "-o", "r.json"])
            .args(&args);
        if let Some(index) = env {
            command.env("JOB_COMPLETION_INDEX", index);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_eq!(by_env.digest(), by_flag.digest());
    assert!(by_env.dbsize() > 0 && by_env.dbsize() < 50_000 + 12_345);
}

#[test]
fn a_sharded_run_of_a_flushing_plan_is_refused() {
    let server = RedisServer::start(&[]);
    server.set("keep", "me");
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &plan_text(&server, true));
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["--shard", "1/4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("flush") && err.contains("cachefill flush") && err.contains("--no-flush"),
        "{err}"
    );
    assert_eq!(server.dbsize(), 1);

    // `check --shards` says so before anything runs; with --no-flush the plan passes.
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .args(["--shards", "4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cachefill flush"),
        "{}",
        stderr(&output)
    );
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .args(["--shards", "4", "--no-flush"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    // The designed way: flush once, then the shards with --no-flush.
    let output = cachefill(scratch.dir.path())
        .arg("flush")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn a_sharded_run_needs_a_seed() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(TargetBuilder::standalone("main", "127.0.0.1:1"))
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["--shard", "0/2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no seed"), "{}", stderr(&output));
}

#[test]
fn merge_refuses_incomplete_or_foreign_shards() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &plan_text(&server, false));
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-q", "--shard", "0/2", "-o", "s0.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cachefill(scratch.dir.path())
        .args(["merge", "s0.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("shards 1 of 2 are missing"),
        "{}",
        stderr(&output)
    );
}
