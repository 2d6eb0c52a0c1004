//! `cachefill export`: the plan's dataset without a server, as keys or as the RESP commands
//! that write it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

fn mixed_plan(server: &RedisServer) -> PlanBuilder {
    PlanBuilder::new()
        .seed(17)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("strings").keys(3000).value_range(10, 300))
        .stage(
            StageBuilder::new("carts")
                .data_type("hash")
                .keys(500)
                .elements(1, 30),
        )
        .stage(
            StageBuilder::new("views")
                .data_type("list")
                .keys(300)
                .elements(1, 2000)
                .value_size(12),
        )
}

/// The RESP export piped into `redis-cli --pipe` writes exactly what `cachefill run` writes.
#[test]
fn the_resp_export_through_redis_cli_is_the_same_dataset_as_a_run() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &mixed_plan(&server).build());
    run_ok(&scratch, &plan, &[]);
    assert_eq!(server.dbsize(), 3800);
    let by_run = server.digest();

    let _: () = redis::cmd("FLUSHALL").query(&mut server.connect()).unwrap();
    let export = cachefill(scratch.dir.path())
        .args(["export", "--format", "resp"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    let port = server.addr().rsplit_once(':').unwrap().1.to_string();
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &port, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pipe.stdin
        .take()
        .unwrap()
        .write_all(&export.stdout)
        .unwrap();
    let piped = pipe.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&piped.stdout);
    assert!(piped.status.success(), "{report}");
    assert!(report.contains("errors: 0"), "{report}");
    assert_eq!(server.dbsize(), 3800);
    assert_eq!(server.digest(), by_run);
}

/// `--format keys` lists exactly the keys a run writes, and `--stage` and `--shard` cut it.
#[test]
fn the_keys_export_lists_exactly_the_keys_on_the_server() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &mixed_plan(&server).build());
    run_ok(&scratch, &plan, &[]);
    let export = cachefill(scratch.dir.path())
        .args(["export", "--format", "keys"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    let keys: Vec<&[u8]> = export
        .stdout
        .split(|&b| b == b'\n')
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(keys.len() as u64, server.dbsize());
    let mut conn = server.connect();
    let mut cmd = redis::cmd("EXISTS");
    for key in &keys {
        cmd.arg(*key);
    }
    let existing: u64 = cmd.query(&mut conn).unwrap();
    assert_eq!(existing, 3800);

    let mut parts = 0;
    for shard in ["0/2", "1/2"] {
        let part = cachefill(scratch.dir.path())
            .args([
                "export", "--format", "keys", "--stage", "strings", "--shard", shard,
            ])
            .arg(&plan)
            .output()
            .unwrap();
        assert!(part.status.success(), "{}", stderr(&part));
        parts += part.stdout.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(parts, 3000);
}

#[test]
fn an_unseeded_plan_cannot_be_exported() {
    let scratch = Scratch::new();
    let server = RedisServer::start(&[]);
    let plan = PlanBuilder::new()
        .target(server.target())
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let export = cachefill(scratch.dir.path())
        .arg("export")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(export.status.code(), Some(2));
    let err = stderr(&export);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("stage \"s\" has no seed"), "{err}");
    assert!(export.stdout.is_empty());
}
