//! Typed stages (hashes, sets, sorted sets, lists, streams) against real redis-server
//! processes: the exact dataset whatever the connections and pipelining, every key of the
//! right type with exactly its element count, TTLs, lists and streams resumed without
//! duplicates after broken connections, and the same dataset on a cluster.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cachefill::__private::Dataset;
use redis::Value;
use support::*;

const TYPES: [&str; 5] = ["hash", "set", "zset", "list", "stream"];

/// A small stage of `data_type` with varied element counts and sizes.
fn typed_stage(data_type: &str, keys: u64) -> StageBuilder {
    let stage = StageBuilder::new("t")
        .data_type(data_type)
        .keys(keys)
        .elements(1, 40)
        .value_range(4, 40);
    match data_type {
        "hash" => stage.set("field_size", 6i64),
        "stream" => stage.set("field_size", 5i64).set("entry_fields", 2i64),
        "zset" => stage.set("score", {
            let mut range = toml::Table::new();
            range.insert("min".into(), (-1000i64).into());
            range.insert("max".into(), 1000i64.into());
            range
        }),
        _ => stage,
    }
}

/// The dataset the plan's first stage wrote, as the crate computes it.
fn dataset_of(plan: &Path, result: &serde_json::Value) -> Dataset {
    let plan = cachefill::__private::load(plan).unwrap();
    let stage = &plan.stages[0];
    let seed = result["stages"][0]["seed"].as_u64().unwrap();
    Dataset::new(seed, &stage.name, &stage.shape, stage.keys)
}

/// The element count of `key` on the server, by its type.
fn element_count(conn: &mut redis::Connection, data_type: &str, key: &[u8]) -> u64 {
    let command = match data_type {
        "hash" => "HLEN",
        "set" => "SCARD",
        "zset" => "ZCARD",
        "list" => "LLEN",
        "stream" => "XLEN",
        other => panic!("not a typed stage: {other}"),
    };
    redis::cmd(command).arg(key).query(conn).unwrap()
}

/// Every key of the stage has the stage's type and exactly its element count; returns the
/// total element count.
fn assert_exact_keys(server: &RedisServer, dataset: &Dataset, keys: u64, data_type: &str) -> u64 {
    let mut conn = server.connect();
    let mut total = 0;
    for i in 0..keys {
        let key = dataset.key(i);
        let found: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        assert_eq!(found, data_type, "type of key {i}");
        let expected = dataset.entry(i).elements;
        assert_eq!(
            element_count(&mut conn, data_type, &key),
            expected,
            "elements of key {i}"
        );
        total += expected;
    }
    total
}

#[test]
fn every_type_writes_the_same_dataset_whatever_the_connections_and_pipeline() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    for data_type in TYPES {
        let mut digests = Vec::new();
        for (connections, pipeline, seed) in [(1, 1, 5), (8, 1024, 5), (3, 7, 5), (8, 1024, 6)] {
            let plan = PlanBuilder::new()
                .seed(seed)
                .target(server.target().flush(true))
                .stage(
                    typed_stage(data_type, 300)
                        .connections(connections)
                        .pipeline(pipeline),
                );
            let plan = scratch.plan("plan.toml", &plan.build());
            let result = run_ok(&scratch, &plan, &[]);
            let stage = &result["stages"][0];
            assert_eq!(server.dbsize(), 300, "{data_type}");
            assert_eq!(stage["keys_written"], 300, "{data_type}");
            assert_eq!(stage["type"], data_type);
            assert_eq!(stage["partial_keys"], 0);
            let dataset = dataset_of(&plan, &result);
            let elements = assert_exact_keys(&server, &dataset, 300, data_type);
            assert_eq!(stage["elements_written"], elements, "{data_type}");
            // What a key costs: 100 keys sampled, each costing more than its payload.
            let memory = &stage["memory"];
            assert_eq!(memory["sampled_keys"], 100, "{memory}");
            let payload = stage["payload_bytes"].as_u64().unwrap() / 300;
            assert!(memory["mean_bytes"].as_u64().unwrap() > payload, "{memory}");
            let encodings: u64 = memory["encodings"]
                .as_object()
                .unwrap()
                .values()
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert_eq!(encodings, 100, "{memory}");
            digests.push(server.digest());
        }
        assert_eq!(digests[0], digests[1], "{data_type}: 1×1 against 8×1024");
        assert_eq!(digests[0], digests[2], "{data_type}: 1×1 against 3×7");
        assert_ne!(digests[0], digests[3], "{data_type}: another seed");
    }
}

#[test]
fn elements_hold_the_dataset_values() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(11)
        .target(server.target().flush(true))
        .stage(typed_stage("zset", 50));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let dataset = dataset_of(&plan, &result);
    let mut conn = server.connect();
    for i in [0, 17, 49] {
        let entry = dataset.entry(i);
        for j in 0..entry.elements {
            let element = dataset.element(&entry, j);
            let mut member = Vec::new();
            dataset.push_member(&element, &mut member);
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(dataset.key(i))
                .arg(&member)
                .query(&mut conn)
                .unwrap();
            assert_eq!(
                score,
                Some(dataset.score(&element) as f64),
                "key {i} member {j}"
            );
            assert!((-1000..=1000).contains(&dataset.score(&element)));
        }
    }
}

#[test]
fn ttl_is_set_on_every_key_after_its_last_element() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(3)
        .target(server.target().flush(true))
        .stage(typed_stage("hash", 500).ttl_range("1h", "2h"));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let dataset = dataset_of(&plan, &result);
    let mut conn = server.connect();
    for i in 0..500 {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(dataset.key(i))
            .query(&mut conn)
            .unwrap();
        let planned = dataset.entry(i).ttl_ms.unwrap() as i64;
        assert!(
            pttl > planned - 60_000 && pttl <= planned,
            "key {i}: PTTL {pttl}, planned {planned}"
        );
    }
    assert_exact_keys(&server, &dataset, 500, "hash");
}

/// Kills cachefill's connections again and again while a list or stream stage runs: every
/// key must end with exactly its elements (an unacknowledged RPUSH or XADD resent blindly
/// would duplicate some), and the dataset must equal an undisturbed fill.
#[test]
fn lists_and_streams_resume_without_duplicates_after_broken_connections() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    for (data_type, keys, elements) in [("list", 3000, 400), ("stream", 600, 300)] {
        // Commands: a RESTORE sent twice leaves the same key, an RPUSH does not.
        let stage = StageBuilder::new("r")
            .data_type(data_type)
            .keys(keys)
            .elements(elements, elements)
            .value_size(16)
            .connections(2)
            .pipeline(64)
            .set("write", "commands");
        let plan = PlanBuilder::new()
            .seed(9)
            .target(server.target().flush(true))
            .stage(stage);
        let plan = scratch.plan("plan.toml", &plan.build());

        let quiet = run_ok(&scratch, &plan, &[]);
        assert_eq!(quiet["stages"][0]["reconnects"], 0);
        let undisturbed = server.digest();

        // Empty, so that keys on the server mean this run has flushed and started writing
        // (breaking its control connection during the flush is not what is tested here).
        let _: () = redis::cmd("FLUSHALL").query(&mut server.connect()).unwrap();
        let (child, result) = spawn_plan(&scratch, &plan);
        let finished = AtomicBool::new(false);
        let mut kills = 0u32;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let output = child.wait_with_output().unwrap();
                finished.store(true, Ordering::Relaxed);
                assert!(
                    output.status.success(),
                    "{data_type}: the disturbed run ends ok: {}",
                    stderr(&output)
                );
            });
            let mut conn = server.connect();
            wait_until("the fill has started", Duration::from_secs(30), || {
                finished.load(Ordering::Relaxed) || server.dbsize() > 0
            });
            // Bounded: at most 12 kills, 500 ms apart (cachefill gives up after 3 broken
            // connections in a row without progress, which a busy test machine must not
            // turn into a failure), while the run lasts.
            while !finished.load(Ordering::Relaxed) && kills < 12 {
                let killed: u64 = redis::cmd("CLIENT")
                    .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
                    .query(&mut conn)
                    .unwrap();
                kills += u32::from(killed > 0);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let result = read_result(&result);
        let stage = &result["stages"][0];
        assert!(
            stage["reconnects"].as_u64().unwrap() > 0,
            "{data_type}: the test broke no connection (kills: {kills})"
        );
        assert_eq!(stage["status"], "ok");
        assert_eq!(stage["keys_written"], keys);
        assert_eq!(stage["elements_written"], keys * elements);
        let dataset = dataset_of(&plan, &result);
        assert_eq!(
            assert_exact_keys(&server, &dataset, keys, data_type),
            keys * elements
        );
        assert_eq!(server.digest(), undisturbed, "{data_type}: same dataset");
    }
}

#[test]
fn a_cluster_holds_the_same_typed_dataset_as_one_server() {
    let cluster = RedisCluster::start(3, 0);
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    for data_type in ["hash", "list"] {
        let stage = typed_stage(data_type, 2000);
        let single = PlanBuilder::new()
            .seed(21)
            .target(server.target().flush(true))
            .stage(stage.clone());
        let single = scratch.plan("single.toml", &single.build());
        run_ok(&scratch, &single, &[]);
        let clustered = PlanBuilder::new()
            .seed(21)
            .target(cluster.target().flush(true))
            .stage(stage);
        let clustered = scratch.plan("cluster.toml", &clustered.build());
        let result = run_ok(&scratch, &clustered, &[]);
        assert_eq!(result["stages"][0]["keys_written"], 2000);
        assert_eq!(cluster.total_keys(), 2000);
        let per_node: u64 = result["stages"][0]["per_node"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["keys"].as_u64().unwrap())
            .sum();
        assert_eq!(per_node, 2000);
        assert_eq!(cluster.digest_xor(), server.digest(), "{data_type}");
    }
}

/// An ACL user that may write but not count: a broken connection during a list stage can't
/// be resumed safely, so the stage fails and says why instead of guessing.
#[test]
fn a_list_that_cannot_be_counted_after_a_break_fails_clearly() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    let _: Value = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "filler",
            "on",
            ">secret-pw",
            "~*",
            "+@all",
            "-llen",
        ])
        .query(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(2)
        .target(server.target().user("filler", "FILLER_PASSWORD"))
        .stage(
            StageBuilder::new("l")
                .data_type("list")
                .keys(5000)
                .elements(300, 300)
                .value_size(16)
                .connections(1)
                .pipeline(64),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let child = cachefill(scratch.dir.path())
        .env("FILLER_PASSWORD", "secret-pw")
        .args(["run", "--quiet", "-o", "result.json"])
        .arg(&plan)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the fill has started", Duration::from_secs(30), || {
        server.dbsize() > 0
    });
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "filler"])
        .query(&mut admin)
        .unwrap();
    assert!(killed > 0, "the run was still connected");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("LLEN"), "{err}");
    assert!(last.contains("without duplicates"), "{err}");
    let result = read_result(&scratch.path("result.json"));
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "failed");
    // Keys the run counts are complete on the server; the one it could not resume is not
    // counted.
    // Every key the run counts is complete on the server, and every key that holds anything
    // is counted or reported as partial (in flight when the connection broke).
    let dataset = dataset_of(&plan, &result);
    let written = stage["keys_written"].as_u64().unwrap();
    let partial = stage["partial_keys"].as_u64().unwrap();
    assert!(partial >= 1, "{stage}");
    let (mut complete, mut existing) = (0, 0);
    for i in 0..5000 {
        let count = element_count(&mut admin, "list", &dataset.key(i));
        complete += u64::from(count == 300);
        existing += u64::from(count > 0);
    }
    assert!(
        written <= complete,
        "{written} counted, {complete} complete"
    );
    assert!(
        existing <= written + partial,
        "{existing} keys exist, {written} counted, {partial} partial"
    );
}

/// `verify` reads every type back and finds exactly what was broken after the fill.
#[test]
fn verify_finds_exactly_what_was_broken_in_typed_keys() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let mut plan = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(true));
    for data_type in TYPES {
        let stage = typed_stage(data_type, 100)
            .set("name", data_type)
            .elements(2, 1500);
        plan = plan.stage(stage);
    }
    let path = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &path, &[]);
    let (output, report) = verify(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = report.unwrap();
    for stage in report["stages"].as_array().unwrap() {
        assert_eq!(stage["checked"], 100);
        assert_eq!(stage["wrong_value"], 0, "{stage}");
    }

    let plan = cachefill::__private::load(&path).unwrap();
    let dataset = |i: usize| {
        let stage = &plan.stages[i];
        let seed = result["stages"][i]["seed"].as_u64().unwrap();
        Dataset::new(seed, &stage.name, &stage.shape, stage.keys)
    };
    let mut conn = server.connect();
    let mut run = |args: &[&[u8]]| {
        let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let _: Value = cmd.query(&mut conn).unwrap();
    };
    // One field deleted from 5 hashes.
    let hashes = dataset(0);
    for i in 0..5 {
        let mut field = Vec::new();
        hashes.push_field_name(0, &mut field);
        run(&[b"HDEL", &hashes.key(i), &field]);
    }
    // A changed score in 3 sorted sets.
    let zsets = dataset(2);
    for i in 10..13 {
        let entry = zsets.entry(i);
        let element = zsets.element(&entry, 1);
        let mut member = Vec::new();
        zsets.push_member(&element, &mut member);
        let score = (zsets.score(&element) + 1).to_string();
        run(&[b"ZADD", &zsets.key(i), b"XX", score.as_bytes(), &member]);
    }
    // 4 lists truncated by their last item.
    let lists = dataset(3);
    for i in 20..24 {
        run(&[b"LTRIM", &lists.key(i), b"0", b"-2"]);
    }
    // 2 stream entries deleted.
    let streams = dataset(4);
    for i in 30..32 {
        let id = format!("{}-0", cachefill::__private::STREAM_BASE_MS + 1);
        run(&[b"XDEL", &streams.key(i), id.as_bytes()]);
    }
    // 1 set replaced by a string.
    let sets = dataset(1);
    run(&[b"DEL", &sets.key(40)]);
    run(&[b"SET", &sets.key(40), b"not a set"]);

    let (output, report) = verify(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = report.unwrap();
    let counts: Vec<(String, u64, u64, u64)> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["missing"].as_u64().unwrap(),
                s["wrong_type"].as_u64().unwrap(),
                s["wrong_value"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("hash", 0, 0, 5),
        ("set", 0, 1, 0),
        ("zset", 0, 0, 3),
        ("list", 0, 0, 4),
        ("stream", 0, 0, 2),
    ]
    .map(|(n, m, t, v)| (n.to_string(), m, t, v));
    assert_eq!(counts, expected);
    let zset = &report["stages"][2]["wrong_value_keys"][0];
    assert!(zset.as_str().unwrap().contains("score"), "{zset}");
}

/// Moves 1000 slots between primaries while typed keys of 1000 elements are written (hashes
/// as `RESTORE` payloads, lists with commands): every key ends complete where it lives now
/// (lists without a duplicate item), the same dataset as on one server, and `verify` agrees.
#[test]
fn resharding_during_a_typed_stage_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    for (round, (data_type, write)) in [("hash", "auto"), ("list", "commands")]
        .into_iter()
        .enumerate()
    {
        let keys = 2000u64;
        let stage = StageBuilder::new("big")
            .data_type(data_type)
            .keys(keys)
            .elements(1000, 1000)
            .value_size(8)
            .connections(1)
            .pipeline(16)
            .set("write", write);
        let stage = if data_type == "hash" {
            stage.set("field_size", 8i64)
        } else {
            stage
        };
        let single = PlanBuilder::new()
            .seed(13)
            .target(server.target().flush(true))
            .stage(stage.clone());
        let single = scratch.plan("single.toml", &single.build());
        run_ok(&scratch, &single, &[]);

        let plan = PlanBuilder::new()
            .seed(13)
            .target(cluster.target().flush(true))
            .stage(stage);
        let plan = scratch.plan("plan.toml", &plan.build());
        // The last round's keys would count as this fill having started, and a resharding
        // begun before the run's own flush could move one of them past it.
        cluster.flush();
        let (child, result_path) = spawn_plan(&scratch, &plan);
        wait_until("the fill has started", Duration::from_secs(30), || {
            cluster.total_keys() > 200
        });
        cluster.reshard(round, round + 1, 1000);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{data_type}: {}", stderr(&output));
        let result = read_result(&result_path);
        let stage = &result["stages"][0];
        assert_eq!(stage["status"], "ok");
        assert_eq!(stage["keys_written"], keys);
        assert_eq!(stage["elements_written"], keys * 1000);
        assert_eq!(
            stage["restored_keys"],
            if write == "auto" { keys } else { 0 }
        );
        let redirects = stage["redirects"]["moved"].as_u64().unwrap()
            + stage["redirects"]["ask"].as_u64().unwrap();
        assert!(
            redirects > 0,
            "{data_type}: the fill saw no redirection; the resharding finished too early"
        );
        assert_eq!(cluster.total_keys(), keys);
        assert_eq!(
            cluster.digest_xor(),
            server.digest(),
            "{data_type}: same dataset"
        );
        let (verified, report) = verify(&scratch, &plan, &[]);
        assert!(verified.status.success(), "{}", stderr(&verified));
        assert_eq!(report.unwrap()["stages"][0]["checked"], keys);
    }
}

/// A sorted set of a million members is written in bounded commands: the client's memory
/// stays flat (its peak resident set well under 64 MiB) and the key ends complete.
#[test]
fn a_million_member_sorted_set_keeps_client_memory_flat() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("board")
                .data_type("zset")
                .keys(1)
                .elements(1_000_000, 1_000_000)
                .value_size(16),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let stage = &result["stages"][0];
    assert_eq!(stage["keys_written"], 1);
    assert_eq!(stage["elements_written"], 1_000_000);
    let dataset = dataset_of(&plan, &result);
    let mut conn = server.connect();
    assert_eq!(element_count(&mut conn, "zset", &dataset.key(0)), 1_000_000);
    let rss = result["client_peak_rss_bytes"].as_u64().unwrap();
    assert!(rss < 64 << 20, "client peak RSS {rss} bytes");
    assert_eq!(stage["memory"]["encodings"]["skiplist"], 1);
    // Measured from 4096 of its members (a walk of all of them holds the server for a
    // quarter of a second), within 1 % of the whole walk.
    let exact: u64 = redis::cmd("MEMORY")
        .arg(&["USAGE".as_bytes(), &dataset.key(0), b"SAMPLES", b"0"])
        .query(&mut conn)
        .unwrap();
    let estimated = stage["memory"]["max_bytes"].as_u64().unwrap();
    assert!(
        estimated.abs_diff(exact) * 100 < exact,
        "estimated {estimated} bytes, whole walk {exact}"
    );
    assert_ne!(estimated, exact, "the key's whole walk was sampled");
}

/// Keys of up to 4096 elements, each type in its large encoding, are measured exactly: the
/// record equals what a walk of every element (`SAMPLES 0`) gives, key by key.
#[test]
fn the_key_cost_of_keys_up_to_4096_elements_is_exact() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    for data_type in TYPES {
        let plan = PlanBuilder::new()
            .seed(9)
            .target(server.target().flush(true))
            .stage(
                StageBuilder::new("t")
                    .data_type(data_type)
                    .keys(12)
                    .elements(2000, 4096)
                    .value_range(8, 100),
            );
        let plan = scratch.plan("plan.toml", &plan.build());
        let result = run_ok(&scratch, &plan, &[]);
        let memory = &result["stages"][0]["memory"];
        let dataset = dataset_of(&plan, &result);
        let mut conn = server.connect();
        let exact: Vec<u64> = (0..12)
            .map(|i| {
                redis::cmd("MEMORY")
                    .arg(&["USAGE".as_bytes(), &dataset.key(i), b"SAMPLES", b"0"])
                    .query(&mut conn)
                    .unwrap()
            })
            .collect();
        assert_eq!(memory["sampled_keys"], 12, "{data_type}: {memory}");
        assert_eq!(
            memory["mean_bytes"],
            exact.iter().sum::<u64>() / 12,
            "{data_type}"
        );
        assert_eq!(
            memory["min_bytes"],
            *exact.iter().min().unwrap(),
            "{data_type}"
        );
        assert_eq!(
            memory["max_bytes"],
            *exact.iter().max().unwrap(),
            "{data_type}"
        );
        let encoding = match data_type {
            "hash" | "set" => "hashtable",
            "zset" => "skiplist",
            "list" => "quicklist",
            _ => "stream",
        };
        assert_eq!(memory["encodings"][encoding], 12, "{data_type}: {memory}");
    }
}

/// A user who may write but not run `MEMORY USAGE` gets a run that succeeds with the key
/// cost recorded as unknown (`null`), never a guess.
#[test]
fn without_the_memory_command_the_key_cost_is_null() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    let _: Value = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "writer",
            "on",
            ">pw-for-writer",
            "~*",
            "+@all",
            "-memory",
        ])
        .query(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(5)
        .target(server.target().user("writer", "WRITER_PASSWORD"))
        .stage(typed_stage("set", 200));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .env("WRITER_PASSWORD", "pw-for-writer")
        .args(["run", "--quiet", "-o", "result.json"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&scratch.path("result.json"));
    let stage = &result["stages"][0];
    assert_eq!(stage["keys_written"], 200);
    assert_eq!(server.dbsize(), 200);
    assert!(stage["memory"].is_null(), "{stage}");
}
