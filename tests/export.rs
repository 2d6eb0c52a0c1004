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

/// What the server holds for `key`, in the shape of a JSON-lines export entry.
fn held_as_json(conn: &mut redis::Connection, key: &str, data_type: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    let (name, content): (&str, Value) = match data_type {
        "string" => {
            let value: String = redis::cmd("GET").arg(key).query(conn).unwrap();
            ("value", json!(value))
        }
        "hash" => {
            let fields: std::collections::BTreeMap<String, String> =
                redis::cmd("HGETALL").arg(key).query(conn).unwrap();
            ("fields", json!(fields))
        }
        "list" => {
            let items: Vec<String> = redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query(conn)
                .unwrap();
            ("items", json!(items))
        }
        other => panic!("unexpected type {other}"),
    };
    let ttl: i64 = redis::cmd("PTTL").arg(key).query(conn).unwrap();
    json!({"type": data_type, "has_ttl": ttl > 0, name: content})
}

/// The JSON-lines export has one line per key the run writes, with the same content.
#[test]
fn the_jsonl_export_describes_every_key_the_run_writes() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = mixed_plan(&server).stage(
        StageBuilder::new("sessions")
            .keys(200)
            .value_size(16)
            .ttl_range("1h", "2h"),
    );
    let plan = scratch.plan("plan.toml", &plan.build());
    run_ok(&scratch, &plan, &[]);
    let export = cachefill(scratch.dir.path())
        .args(["export", "--format", "jsonl"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    let text = String::from_utf8(export.stdout).unwrap();
    assert_eq!(text.lines().count() as u64, server.dbsize());
    assert_eq!(server.dbsize(), 4000);
    let mut conn = server.connect();
    let mut compared = std::collections::BTreeMap::<String, u64>::new();
    for line in text.lines() {
        let mut entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = entry["key"].as_str().unwrap().to_string();
        let data_type = entry["type"].as_str().unwrap().to_string();
        let held = held_as_json(&mut conn, &key, &data_type);
        let ttl_ms = entry["ttl_ms"].as_u64();
        if let Some(ttl_ms) = ttl_ms {
            let left: u64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            assert!(
                left <= ttl_ms && ttl_ms <= 2 * 3_600_000,
                "{key}: {left} ms left of {ttl_ms}"
            );
        }
        let object = entry.as_object_mut().unwrap();
        let stage = object.remove("stage").unwrap();
        object.remove("key");
        object.remove("ttl_ms");
        object.insert("has_ttl".into(), serde_json::json!(ttl_ms.is_some()));
        assert_eq!(entry, held, "{key}");
        *compared
            .entry(stage.as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, u64> = [
        ("carts", 500),
        ("sessions", 200),
        ("strings", 3000),
        ("views", 300),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(compared, expected);
}
