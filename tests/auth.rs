//! ACL users and databases on standalone targets.

use crate::support;

use support::*;

#[test]
fn an_acl_user_fills_its_key_pattern_and_db_selects_the_database() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "filler",
            "on",
            ">filler-secret-77",
            "~acl:*",
            "+set",
            "+mset",
            "+select",
            "+info",
            "+ping",
        ])
        .query::<()>(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().user("filler", "FILLER_PW").set("db", 3))
        .stage(StageBuilder::new("s").keys(5000).key_prefix("acl:"));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-q", "-o", "result.json"])
        .env("FILLER_PW", "filler-secret-77")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    redis::cmd("SELECT").arg(3).query::<()>(&mut admin).unwrap();
    let in_db3: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    assert_eq!(in_db3, 5000);
    redis::cmd("SELECT").arg(0).query::<()>(&mut admin).unwrap();
    let in_db0: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    assert_eq!(in_db0, 0);
    let result = std::fs::read_to_string(scratch.path("result.json")).unwrap();
    assert!(!result.contains("filler-secret-77"));
}

#[test]
fn an_acl_user_writing_outside_its_pattern_fails_with_the_refusal() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER", "filler", "on", ">pw-1234", "~acl:*", "+set", "+mset", "+info", "+ping",
        ])
        .query::<()>(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().user("filler", "FILLER_PW"))
        .stage(StageBuilder::new("s").keys(100).key_prefix("other:"));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-q", "-o", "result.json"])
        .env("FILLER_PW", "pw-1234")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("NOPERM") && err.contains("other:"), "{err}");
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn a_user_without_info_is_recorded_as_unknown_and_a_refused_flushall_is_named() {
    let server = RedisServer::start(&[]);
    server.acl_user("writer", "writer-pw", &["+set", "+mset", "+ping"]);
    let scratch = Scratch::new();
    let plan = |flush: bool| {
        PlanBuilder::new()
            .seed(1)
            .target(server.target().user("writer", "WRITER_PW").flush(flush))
            .stage(StageBuilder::new("s").keys(2000))
            .build()
    };
    let path = scratch.plan("plan.toml", &plan(false));
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&path)
        .args(["-q", "-o", "result.json"])
        .env("WRITER_PW", "writer-pw")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&scratch.path("result.json"));
    let node = &result["targets"]["main"]["nodes"][0];
    assert!(
        node["keys_before"].is_null()
            && node["used_memory_after"].is_null()
            && node["evicted_keys"].is_null(),
        "{node}"
    );
    assert_eq!(result["stages"][0]["keys_written"], 2000);

    let path = scratch.plan("plan.toml", &plan(true));
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&path)
        .args(["-q", "-o", "result.json"])
        .env("WRITER_PW", "writer-pw")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("FLUSHALL failed") && err.contains("no permissions"),
        "{err}"
    );
    assert_eq!(server.dbsize(), 2000, "nothing was written or flushed");
}

#[test]
fn a_user_allowed_set_but_not_mset_fills_exactly_with_single_sets_and_is_told_once() {
    let server = RedisServer::start(&[]);
    // The least a string fill needs: SET. No MSET, INFO, PING or anything else.
    server.acl_user("least", "least-pw", &["+set"]);
    // What verify needs for strings: GET, and PTTL when a stage has TTLs.
    server.acl_user("reader", "reader-pw", &["+get", "+pttl"]);
    let scratch = Scratch::new();
    let plan = |user: &str| {
        PlanBuilder::new()
            .seed(5)
            .target(server.target().user(user, "PW"))
            .stage(StageBuilder::new("first").keys(20_000).value_size(100))
            .stage(
                StageBuilder::new("second")
                    .keys(5_000)
                    .value_size(20)
                    .key_prefix("second:")
                    .after(&["first"]),
            )
            .build()
    };
    let path = scratch.plan("plan.toml", &plan("least"));
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&path)
        .args(["-o", "result.json"])
        .env("PW", "least-pw")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert_eq!(
        err.matches("the user may not run MSET; writing one SET per entry")
            .count(),
        1,
        "{err}"
    );
    let result = read_result(&scratch.path("result.json"));
    assert_eq!(result["targets"]["main"]["mset_refused"], true);
    assert_eq!(result["stages"][0]["keys_written"], 20_000);
    assert_eq!(result["stages"][1]["keys_written"], 5_000);
    assert_eq!(result["stages"][0]["errors"], 0);
    assert_eq!(server.dbsize(), 25_000);

    let path = scratch.plan("verify.toml", &plan("reader"));
    let verified = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&path)
        .args(["-o", "verify.json"])
        .env("PW", "reader-pw")
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", stderr(&verified));
    let report = read_result(&scratch.path("verify.json"));
    assert_eq!(report["stages"][0]["checked"], 20_000);
    assert_eq!(report["stages"][1]["checked"], 5_000);

    // The same fill by a user who may run MSET groups entries and says nothing about it.
    redis::cmd("FLUSHALL").exec(&mut server.connect()).unwrap();
    server.acl_user("grouping", "grouping-pw", &["+set", "+mset"]);
    let path = scratch.plan("plan.toml", &plan("grouping"));
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&path)
        .args(["-o", "result.json"])
        .env("PW", "grouping-pw")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("MSET"), "{}", stderr(&output));
    let result = read_result(&scratch.path("result.json"));
    assert_eq!(result["targets"]["main"]["mset_refused"], false);
    assert_eq!(server.dbsize(), 25_000);
}

#[test]
fn a_user_with_the_documented_rules_for_flush_and_until_memory_and_nothing_more_fills() {
    let server = RedisServer::start(&[]);
    // Something to flush.
    server.set("left:over", "x");
    // docs/plan-format.md, "The least an ACL user needs": SET for strings, FLUSHALL for
    // flush = true, INFO for until_memory. No MSET, no PING, nothing else.
    server.acl_user("exact", "exact-pw", &["+set", "+flushall", "+info"]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(6)
        .target(server.target().user("exact", "PW").flush(true))
        .stage(StageBuilder::new("fixed").keys(5_000).value_size(100))
        .stage(
            StageBuilder::new("budget")
                .until_memory("12mb")
                .value_size(200)
                .key_prefix("budget:")
                .after(&["fixed"]),
        );
    let path = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&path)
        .args(["-q", "-o", "result.json"])
        .env("PW", "exact-pw")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&scratch.path("result.json"));
    assert_eq!(result["targets"]["main"]["flushed"], true);
    assert_eq!(result["targets"]["main"]["mset_refused"], true);
    let fixed = result["stages"][0]["keys_written"].as_u64().unwrap();
    let budget = result["stages"][1]["keys_written"].as_u64().unwrap();
    assert_eq!(fixed, 5_000);
    assert!(budget > 0, "the until_memory stage wrote");
    assert_eq!(
        server.dbsize(),
        fixed + budget,
        "flushed first, then exactly what the stages acknowledged"
    );
    let reached = &result["stages"][1]["until_memory"];
    let (used, goal) = (
        reached["used_memory"].as_u64().unwrap() as f64,
        reached["goal_bytes"].as_u64().unwrap() as f64,
    );
    assert!(
        (used - goal).abs() <= goal * 0.02,
        "INFO read the memory: {used} of {goal}"
    );
}
