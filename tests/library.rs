//! The library API as a Rust test suite uses it: `Plan::parse`, `run`, `verify`, and
//! `examples/fixture.rs` (built by `cargo test` with the other examples) run whole.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use cachefill::{
    AfterRun, ErrorKind, Flushes, Plan, RemoteFlush, RunOptions, Status, VerifyOptions,
    VerifyStatus,
};
use support::*;

/// The example binary cargo built beside this test's (`target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

fn alive(pid: u32) -> bool {
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn the_fixture_example_fills_checks_and_stops_its_server() {
    require("redis-server");
    let output = std::process::Command::new(example("fixture"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}{}", stderr(&output));
    // Quiet by default: nothing on standard error.
    assert_eq!(stderr(&output), "");
    let words: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(
        (words[0], words[1], words[5], words[6]),
        ("filled", "5200", "verified", "5200,"),
        "{said}"
    );
    let address = words[4].trim_end_matches(',');
    let pid: u32 = words[words.len() - 1].parse().unwrap();
    wait_until("the kept server stopped", Duration::from_secs(10), || {
        !alive(pid)
    });
    assert!(std::net::TcpStream::connect(address).is_err());
}

fn plan_on(server: &RedisServer, stages: &str) -> Plan {
    let text = format!(
        "seed = 11\n[targets.main]\nmode = \"standalone\"\nnodes = [\"{}\"]\nflush = true\n{stages}",
        server.addr()
    );
    Plan::parse(&text, "inline.toml").unwrap()
}

#[tokio::test]
async fn run_returns_the_result_and_verify_the_report_without_printing() {
    require("redis-server");
    let server = RedisServer::start(&[]);
    server.set("old", "1");
    let plan = plan_on(
        &server,
        "[[stages]]\nname = \"s\"\nkeys = 3000\nvalue_size = 20\n\
         [[stages]]\nname = \"z\"\ntype = \"zset\"\nkeys = 100\nelements = 50\nvalue_size = 8\n",
    );
    assert_eq!(plan.name(), "inline");
    let result = cachefill::run(&plan, &RunOptions::default()).await.unwrap();
    assert_eq!(result.status, Status::Ok);
    assert_eq!(result.plan.sha256, plan.sha256());
    let written: Vec<(u64, u64)> = result
        .stages
        .iter()
        .map(|s| (s.keys_written, s.keys_planned))
        .collect();
    assert_eq!(written, [(3000, 3000), (100, 100)]);
    assert_eq!(server.dbsize(), 3100, "flushed, then filled");

    // The same JSON the command line writes, both ways.
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["stages"][1]["keys_written"], 100);
    assert_eq!(json["status"], "ok");

    let mut options = VerifyOptions::default();
    options.result = Some(result);
    let report = cachefill::verify(&plan, &options).await.unwrap();
    assert_eq!(report.status, VerifyStatus::Ok);
    assert_eq!(report.problem(), None);
    let checked: Vec<u64> = report.stages.iter().map(|s| s.checked).collect();
    assert_eq!(checked, [3000, 100]);

    // A key gone is found and named, and is no error of the call.
    let mut connection = server.connect();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("s:0042*")
        .query(&mut connection)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis::cmd("DEL")
        .arg(&keys[0])
        .exec(&mut connection)
        .unwrap();
    let report = cachefill::verify(&plan, &options).await.unwrap();
    assert_eq!(report.status, VerifyStatus::Failed);
    assert_eq!(report.stages[0].missing, 1);
    assert_eq!(report.stages[0].missing_keys.len(), 1);
    assert_eq!(report.stages[0].missing_keys, keys);
}

#[tokio::test]
async fn errors_say_their_kind_and_whether_anything_was_written() {
    require("redis-server");
    let server = RedisServer::start(&[]);
    server.set("kept", "1");

    let bad = Plan::parse("[[stages]]\nname = \"s\"\nkeys = 1\n", "bad.toml").unwrap_err();
    assert!(bad.to_string().starts_with("bad.toml"), "{bad}");

    // No stages: refused before anything.
    let empty = plan_on(&server, "");
    let error = cachefill::run(&empty, &RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(error.result().is_none());
    assert!(
        error.to_string().contains("the plan has no stages"),
        "{error}"
    );
    // …but a flush needs none.
    let mut flush = RunOptions::default();
    flush.flushes = Flushes::Only;
    flush.remote_flush = RemoteFlush::Refuse;
    let result = cachefill::run(&empty, &flush).await.unwrap();
    assert_eq!((result.status, result.stages.len()), (Status::Ok, 0));
    assert_eq!(server.dbsize(), 0);

    // A plan that cannot fit: refused once connected, before the flush; the result says
    // nothing was written.
    server.set("kept", "1");
    let config = |name: &str, value: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .exec(&mut server.connect())
            .unwrap();
    };
    config("maxmemory", "1");
    let plan = plan_on(&server, "[[stages]]\nname = \"s\"\nkeys = 1000\n");
    let error = cachefill::run(&plan, &RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    let result = error.result().expect("connected, so a result");
    assert_eq!(
        (result.status, result.stages[0].keys_written),
        (Status::Failed, 0)
    );
    assert_eq!(server.dbsize(), 1);

    // A server that refuses the writes: the run failed, and its result says what it wrote.
    config("maxmemory", "0");
    config("min-replicas-to-write", "1");
    let mut options = RunOptions::default();
    options.flushes = Flushes::Skip;
    options.launched = AfterRun::Stop;
    let error = cachefill::run(&plan, &options).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Failed, "{error}");
    let result = error.result().expect("the result of a run that began");
    assert_eq!(result.status, Status::Failed);
    assert_eq!(result.stages[0].keys_written, 0);
    assert_eq!(server.dbsize(), 1);
}
