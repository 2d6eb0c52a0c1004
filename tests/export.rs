//! `cachefill export`: the plan's dataset without a server, as keys or as the RESP commands
//! that write it.

use crate::support;

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

/// Every kind of stage, strings and typed keys with and without TTLs.
fn every_kind(plan: PlanBuilder) -> PlanBuilder {
    ["hash", "set", "zset", "list", "stream"].iter().fold(
        plan.stage(
            StageBuilder::new("strings")
                .keys(5000)
                .value_range(1, 300)
                .ttl_range("1h", "2h"),
        ),
        |plan, data_type| {
            plan.stage(
                StageBuilder::new(data_type)
                    .data_type(data_type)
                    .keys(400)
                    .elements(1, 300)
                    .value_range(4, 80)
                    .ttl_range("30m", "1h"),
            )
        },
    )
}

/// `redis-check-rdb FILE` says the file is sound.
fn assert_check_rdb_accepts(file: &std::path::Path, keys: u64) {
    require("redis-check-rdb");
    let checked = Command::new("redis-check-rdb").arg(file).output().unwrap();
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{said}");
    assert!(said.contains("RDB looks OK"), "{said}");
    assert!(said.contains(&format!("{keys} keys read")), "{said}");
}

/// An RDB file of the plan: `redis-check-rdb` accepts it, and a server started on it holds
/// the dataset a run writes (the same `DEBUG DIGEST`), its keys expiring at the base time
/// plus their TTL; on Valkey 9 from an RDB 11 file too.
#[test]
fn a_server_started_on_the_rdb_export_holds_the_dataset_a_run_writes() {
    for (kind, version) in [(ServerKind::Redis7, "10"), (ServerKind::Valkey9, "11")] {
        let server = RedisServer::of(kind, &[]);
        let scratch = Scratch::new();
        let plan = every_kind(
            PlanBuilder::new()
                .seed(23)
                .target(server.target().flush(true)),
        );
        let plan = scratch.plan("plan.toml", &plan.build());
        run_ok(&scratch, &plan, &[]);
        assert_eq!(server.dbsize(), 7000);
        let by_run = server.digest();

        // TTLs count from an hour from now: every key of a stage with TTLs expires then
        // plus its TTL.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let base = now_ms + 3_600_000;
        let export = cachefill(scratch.dir.path())
            .args([
                "export",
                "--format",
                "rdb",
                "--rdb-version",
                version,
                "-o",
                "dump.rdb",
            ])
            .args(["--base-time", &base.to_string()])
            .arg(&plan)
            .output()
            .unwrap();
        assert!(export.status.success(), "{}", stderr(&export));
        let file = scratch.path("dump.rdb");
        if kind == ServerKind::Redis7 {
            assert_check_rdb_accepts(&file, 7000);
        }
        let dir = scratch.dir.path().to_str().unwrap();
        let loaded = RedisServer::of(kind, &["--dir", dir, "--dbfilename", "dump.rdb"]);
        assert_eq!(loaded.dbsize(), 7000, "{kind:?}");
        assert_eq!(loaded.digest(), by_run, "{kind:?}: the same dataset");
        let mut conn = loaded.connect();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("hash:*").query(&mut conn).unwrap();
        assert_eq!(keys.len(), 400);
        for key in keys {
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            // Base + 30 to 60 minutes, less the moments since `now_ms`.
            assert!(
                (3_600_000 + 1_700_000..=3_600_000 + 3_600_000).contains(&ttl),
                "{kind:?}: {ttl} ms"
            );
        }
    }
}

/// A cluster node's file holds the keys of its slots (`--slots`): three files of
/// the three ranges of a 3-primary cluster hold every key once.
#[test]
fn rdb_files_of_slot_ranges_split_the_keys_between_them() {
    // A cluster node tells slots (CLUSTER KEYSLOT), slots assigned or not.
    let server = RedisServer::start(&["--cluster-enabled", "yes"]);
    let scratch = Scratch::new();
    let plan = every_kind(PlanBuilder::new().seed(24).target(server.target()));
    let plan = scratch.plan("plan.toml", &plan.build());
    let mut total = 0;
    for (n, slots) in ["0-5460", "5461-10922", "10923-16383"].iter().enumerate() {
        let name = format!("node{n}.rdb");
        let export = cachefill(scratch.dir.path())
            .args(["export", "--format", "rdb", "--slots", slots, "-o", &name])
            .arg(&plan)
            .output()
            .unwrap();
        assert!(export.status.success(), "{}", stderr(&export));
        let dir = scratch.dir.path().to_str().unwrap();
        let loaded = RedisServer::start(&["--dir", dir, "--dbfilename", &name]);
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut loaded.connect())
            .unwrap();
        let (low, high) = slots.split_once('-').unwrap();
        let range = low.parse::<u16>().unwrap()..=high.parse::<u16>().unwrap();
        for key in &keys {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query(&mut server.connect())
                .unwrap();
            assert!(range.contains(&slot), "{slot} not in {slots}");
        }
        assert!(keys.len() > 2000, "{slots}: {}", keys.len());
        total += keys.len();
    }
    assert_eq!(total, 7000, "every key in exactly one file");
}

/// An RDB file holds one server's keys: a plan with several targets needs `--target`.
#[test]
fn an_rdb_export_of_several_targets_asks_for_one() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::standalone("a", "127.0.0.1:1"))
        .target(TargetBuilder::standalone("b", "127.0.0.1:2"))
        .stage(StageBuilder::new("x").keys(10).set("target", "a"))
        .stage(StageBuilder::new("y").keys(10).set("target", "b"));
    let plan = scratch.plan("plan.toml", &plan.build());
    let export = cachefill(scratch.dir.path())
        .args(["export", "--format", "rdb", "-o", "dump.rdb"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(export.status.code(), Some(2));
    assert_eq!(
        reason_line(&export),
        "cachefill: the command line: --format rdb: the stages write to several targets (a, b), and an RDB file holds one server's keys: name one with --target"
    );
    assert!(!scratch.path("dump.rdb").exists(), "nothing written");
    let export = cachefill(scratch.dir.path())
        .args([
            "export", "--format", "rdb", "--target", "b", "-o", "dump.rdb",
        ])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    assert_check_rdb_accepts(&scratch.path("dump.rdb"), 10);
}
