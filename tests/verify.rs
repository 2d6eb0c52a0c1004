//! `cachefill verify`: the dataset read back and compared with what the plan says.

use crate::support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use cachefill::__private::Dataset;
use cachefill::__private::mix64;
use support::*;

/// The dataset of the plan's first stage, as `run` writes it with the plan's seed.
fn first_stage(plan: &Path) -> Dataset {
    let plan = cachefill::__private::load(plan).unwrap();
    let stage = &plan.stages[0];
    let seed = stage.seed.or(plan.seed).expect("the plan is seeded");
    Dataset::new(seed, &stage.name, &stage.shape, stage.keys)
}

#[test]
fn verify_passes_after_a_fill_and_counts_exactly_what_was_broken() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("s")
                .keys(20_000)
                .value_range(10, 100)
                .ttl_range("1h", "2h"),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (output, report) = verify(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(report.unwrap()["stages"][0]["checked"], 20_000);

    let mut conn = server.connect();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("s:*").query(&mut conn).unwrap();
    keys.sort();
    for key in &keys[..10] {
        redis::cmd("DEL").arg(key).query::<()>(&mut conn).unwrap();
    }
    for key in &keys[100..105] {
        redis::cmd("SET")
            .arg(key)
            .arg("tampered")
            .arg("KEEPTTL")
            .query::<()>(&mut conn)
            .unwrap();
    }
    redis::cmd("PERSIST")
        .arg(&keys[200])
        .query::<()>(&mut conn)
        .unwrap();
    let (output, report) = verify(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stage = &report.unwrap()["stages"][0];
    assert_eq!(stage["missing"], 10);
    assert_eq!(stage["wrong_value"], 5);
    assert_eq!(stage["ttl_problems"], 1);
    let named = stage["missing_keys"][0].as_str().unwrap();
    assert!(keys[..10].iter().any(|k| k == named), "{named}");
    let err = stderr(&output);
    assert!(
        err.contains("10 missing") && err.contains("5 wrong values"),
        "{err}"
    );
}

#[test]
fn a_sample_finds_exactly_the_sampled_entries_that_are_gone() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let keys = 50_000u64;
    let plan = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(keys));
    let plan = scratch.plan("plan.toml", &plan.build());
    run_ok(&scratch, &plan, &[]);

    // A tenth of the entries, picked by a hash of the index: scattered, yet known exactly.
    let gone = |index: u64| mix64(index).is_multiple_of(10);
    let dataset = first_stage(&plan);
    let mut deleted = HashSet::new();
    let mut pipe = redis::pipe();
    for index in (0..keys).filter(|i| gone(*i)) {
        let key = dataset.key(index);
        pipe.cmd("DEL").arg(&key).ignore();
        deleted.insert(String::from_utf8(key).unwrap());
    }
    pipe.exec(&mut server.connect()).unwrap();
    assert_eq!(server.dbsize(), keys - deleted.len() as u64);

    // `--sample N` checks the N indexes k × keys / N (docs/cli-and-result.md: spread evenly).
    let sample = 1000u64;
    let expected = (0..sample).filter(|k| gone(k * keys / sample)).count() as u64;
    assert!(
        (50..=150).contains(&expected),
        "a tenth of 1000 is {expected}?"
    );
    let (output, report) = verify(&scratch, &plan, &["--sample", &sample.to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stage = &report.unwrap()["stages"][0];
    assert_eq!(stage["checked"], sample);
    assert_eq!(stage["missing"], expected);
    assert_eq!(stage["wrong_value"], 0);
    for key in stage["missing_keys"].as_array().unwrap() {
        assert!(deleted.contains(key.as_str().unwrap()), "{key}");
    }
}

#[test]
fn an_unseeded_plan_is_verified_with_the_seed_from_the_result() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(3000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (output, _) = verify(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--result"), "{}", stderr(&output));
    let result = scratch.path("result.json");
    let (output, report) = verify(&scratch, &plan, &["--result", result.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(report.unwrap()["stages"][0]["missing"], 0);
    // The result of another plan file (another seed would check other keys) is refused,
    // and so is a sample of nothing.
    let other = PlanBuilder::new()
        .name("other")
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(3000));
    let other = scratch.plan("other.toml", &other.build());
    let (output, report) = verify(&scratch, &other, &["--result", result.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        reason_line(&output),
        format!(
            "cachefill: {}: the result is of another plan than {} (it records plan \"plan\" from {}, whose file's SHA-256 differs): pass the result of a run of this plan file as it is now",
            result.display(),
            other.display(),
            plan.display()
        )
    );
    assert!(report.is_none(), "a refused verify writes no report");
    let (output, _) = verify(&scratch, &plan, &["--sample", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: invalid value '0' for '--sample <N>': 0 is not in 1.."),
        "{}",
        stderr(&output)
    );
}

#[test]
fn verify_reads_a_cluster_routed_like_the_writes_and_counts_what_was_broken() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let keys = 30_000u64;
    let plan = PlanBuilder::new()
        .seed(8)
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("s").keys(keys));
    let plan = scratch.plan("plan.toml", &plan.build());
    run_ok(&scratch, &plan, &[]);
    let (output, report) = verify(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(report.unwrap()["stages"][0]["checked"], keys);

    // Every 1000th entry deleted, every 1000th from 500 on changed: spread over the slots.
    let dataset = first_stage(&plan);
    let mut routes = cluster.routes();
    let mut broken_on = HashSet::new();
    for index in (0..keys).step_by(1000) {
        let key = dataset.key(index);
        broken_on.insert(routes.server_for(&key).port);
        redis::cmd("DEL")
            .arg(&key)
            .exec(routes.conn_for(&key))
            .unwrap();
        let key = dataset.key(index + 500);
        broken_on.insert(routes.server_for(&key).port);
        redis::cmd("SET")
            .arg(&key)
            .arg("tampered")
            .exec(routes.conn_for(&key))
            .unwrap();
    }
    assert_eq!(broken_on.len(), 3, "every primary has a broken entry");
    assert_eq!(cluster.total_keys(), keys - 30);

    let (output, report) = verify(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stage = &report.unwrap()["stages"][0];
    assert_eq!(stage["checked"], keys);
    assert_eq!(stage["missing"], 30);
    assert_eq!(stage["wrong_value"], 30);
    assert_eq!(stage["ttl_problems"], 0);
    let err = stderr(&output);
    assert!(
        err.contains("30 missing") && err.contains("30 wrong values"),
        "{err}"
    );
}

/// Right after a restart a server reads its dataset from disk and answers `LOADING` to
/// every read: verify asks again until it has loaded (within `io_timeout`) instead of
/// counting every key it reads meanwhile as wrong.
#[test]
fn verify_right_after_a_restart_waits_until_the_server_has_loaded_its_dataset() {
    let scratch = Scratch::new();
    let (mut server, dir) = saving_server(&scratch);
    let plan = PlanBuilder::new()
        .seed(8)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(20_000).value_size(30))
        .stage(
            StageBuilder::new("h")
                .data_type("hash")
                .keys(2_000)
                .elements(1, 20)
                .value_size(10),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    run_ok(&scratch, &plan, &[]);
    // 100 µs per key: about 2 s of loading the 22,000 keys.
    let loading = server.restart_from_dump(&dir, 100);

    assert_verified_stages(&scratch, &plan, &[20_000, 2_000]);
    assert_eq!(loading.ping(), Ok("PONG".to_string()));
}

/// Runs `verify PLAN -o verify.json` and kills (SIGKILL) `cluster.servers[victim]` as soon
/// as verify has connected to it; verify's output.
fn verify_while_a_primary_dies(
    scratch: &Scratch,
    path: &Path,
    cluster: &mut RedisCluster,
    victim: usize,
) -> std::process::Output {
    verify_with_a_fault(scratch, path, cluster, victim, RedisServer::kill)
}

/// Runs `verify PLAN -o verify.json` and does `fault` to `cluster.servers[victim]` as soon
/// as verify has connected to it; verify's output (within 120 s).
fn verify_with_a_fault(
    scratch: &Scratch,
    path: &Path,
    cluster: &mut RedisCluster,
    victim: usize,
    fault: impl FnOnce(&mut RedisServer),
) -> std::process::Output {
    let before = cluster.servers[victim].calls("ping");
    let child = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(path)
        .arg("-o")
        .arg(scratch.path("verify.json"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Logged in: its control connection's login ends with a PING the server answers.
    wait_until(
        "verify has connected to the primary",
        Duration::from_secs(30),
        || cluster.servers[victim].calls("ping") > before,
    );
    fault(&mut cluster.servers[victim]);
    wait_for_exit(child, Duration::from_secs(120))
}

/// A primary of a cluster (with a replica) is killed as soon as verify has connected to
/// it: its reads fail (the link breaks, new connections are refused), verify waits for the
/// replica to take over (as the fill does, up to `failover_timeout`) and reads the lost
/// primary's slots there. Every key of both stages is checked and found, and the report
/// says one failover was seen (0 without the wait: verify stopped at the refused
/// connection).
#[test]
fn verify_reads_a_lost_primarys_slots_from_the_replica_that_took_over() {
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(41)
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("strings").keys(200_000).value_size(32))
        .stage(
            StageBuilder::new("carts")
                .data_type("hash")
                .keys(5_000)
                .elements(20, 20)
                .value_size(16),
        )
        .build();
    let path = scratch.plan("plan.toml", &plan);
    run_ok(&scratch, &path, &[]);
    let victim = cluster.a_primary();
    cluster.await_replica_of(victim);
    let output = verify_while_a_primary_dies(&scratch, &path, &mut cluster, victim);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let report = read_result(&scratch.path("verify.json"));
    let stages = report["stages"].as_array().unwrap();
    for (stage, keys) in stages.iter().zip([200_000, 5_000]) {
        assert_eq!(stage["checked"], keys, "{stage}");
        assert_eq!(stage["missing"], 0, "{stage}");
        assert_eq!(stage["wrong_value"], 0, "{stage}");
    }
    assert_eq!(stages[0]["failovers"], 1, "{err}");
    assert_eq!(stages[1]["failovers"], 0, "{err}");
    assert!(
        err.contains("(read the slots of a lost primary from the replicas that took over)"),
        "{err}"
    );
}
/// A primary paused (SIGSTOP) as soon as verify has connected to it, with an `io_timeout`
/// of 10 minutes: its replica takes over after `cluster-node-timeout` (5 s here), and
/// verify, asking the other nodes once its reads have gone unanswered for 2 s, reads the
/// paused primary's slots there instead of waiting out the 10 minutes (the test's bound,
/// 120 s, would fail first). Every key is checked and found.
#[test]
fn verify_leaves_a_paused_primary_once_its_replica_took_over() {
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let keys = 300_000u64;
    let plan = PlanBuilder::new()
        .seed(43)
        .target(cluster.target().flush(true).set("io_timeout", "10m"))
        .stage(StageBuilder::new("strings").keys(keys).value_size(32))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    run_ok(&scratch, &path, &[]);
    let victim = cluster.a_primary();
    cluster.await_replica_of(victim);
    let output = verify_with_a_fault(&scratch, &path, &mut cluster, victim, |s| s.pause());
    cluster.servers[victim].kill();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let report = read_result(&scratch.path("verify.json"));
    let stage = &report["stages"][0];
    assert_eq!(stage["checked"], keys, "{stage}");
    assert_eq!(stage["missing"], 0, "{stage}");
    assert_eq!(stage["wrong_value"], 0, "{stage}");
    assert_eq!(stage["failovers"], 1, "{err}");
}

/// A slot migrating while verify reads it: its owner answers `ASK` for the keys that already
/// went, and verify reads them where they went (after `ASKING`), so it checks every key,
/// strings and hashes, and finds nothing wrong.
#[test]
fn verify_reads_the_keys_of_a_migrating_slot_where_they_went() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(9)
        .target(cluster.target().flush(true))
        .stage(
            StageBuilder::new("s")
                .keys(200)
                .value_size(20)
                .set("key_format", "{{moving}}:s:{i}"),
        )
        .stage(
            StageBuilder::new("h")
                .data_type("hash")
                .keys(50)
                .elements(5, 30)
                .set("key_format", "{{moving}}:h:{i}"),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    run_ok(&scratch, &plan, &[]);

    // Every key is in the slot of `{moving}`: half of them go to another primary, and the
    // slot stays migrating.
    let slot = cachefill::__private::slot(b"{moving}");
    let routes = cluster.routes();
    let source = routes.server_for(b"{moving}");
    let (target, _) = *cluster
        .primaries()
        .iter()
        .find(|(server, _)| server.port != source.port)
        .unwrap();
    let id = |server: &RedisServer| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut server.connect())
            .unwrap()
    };
    redis::cmd("CLUSTER")
        .arg(&["SETSLOT", &slot.to_string(), "IMPORTING", &id(source)])
        .exec(&mut target.connect())
        .unwrap();
    let mut from = source.connect();
    redis::cmd("CLUSTER")
        .arg(&["SETSLOT", &slot.to_string(), "MIGRATING", &id(target)])
        .exec(&mut from)
        .unwrap();
    let keys: Vec<String> = redis::cmd("CLUSTER")
        .arg(&["GETKEYSINSLOT", &slot.to_string(), "1000"])
        .query(&mut from)
        .unwrap();
    assert_eq!(keys.len(), 250);
    redis::cmd("MIGRATE")
        .arg(&[
            "127.0.0.1",
            &target.port.to_string(),
            "",
            "0",
            "5000",
            "KEYS",
        ])
        .arg(&keys[..125])
        .exec(&mut from)
        .unwrap();
    let left: u64 = redis::cmd("CLUSTER")
        .arg(&["COUNTKEYSINSLOT", &slot.to_string()])
        .query(&mut from)
        .unwrap();
    assert_eq!(left, 125, "half of the slot's keys moved");

    assert_verified_stages(&scratch, &plan, &[200, 50]);
}

/// A primary without a replica dies while verify reads: verify waits `failover_timeout` for
/// a successor that never comes, then stops with one line naming the server, what failed
/// and how long it waited (exit 1, no report).
#[test]
fn verify_without_a_successor_for_a_lost_primary_says_so_in_one_line() {
    let mut cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(42)
        .target(cluster.target().flush(true).failover_timeout("2s"))
        .stage(StageBuilder::new("strings").keys(100_000).value_size(32))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    run_ok(&scratch, &path, &[]);
    let victim = cluster.a_primary();
    let addr = cluster.servers[victim].addr();
    let output = verify_while_a_primary_dies(&scratch, &path, &mut cluster, victim);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let reason = the_reason(&err);
    assert!(
        reason.starts_with("cachefill: verify of stage \"strings\" on target \"main\" stopped: ")
            && reason.contains(&format!("reading back from {addr} failed: "))
            && reason.ends_with(
                ", and no replica took over its slots within 2s (failover_timeout); run verify again once the server answers"
            ),
        "{reason}"
    );
    assert!(!scratch.path("verify.json").exists());
}

/// On a terminal, verify shows a bar per stage (keys checked of the total, keys per second,
/// ETA), cleared before the stage's line. `script` gives it a terminal.
#[test]
fn on_a_terminal_verify_shows_a_bar_of_the_keys_checked() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(5)
        .target(server.target())
        .stage(StageBuilder::new("strings").keys(300_000).value_size(16))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    run_ok(&scratch, &path, &[]);
    let (ok, screen) = on_a_terminal(&scratch, &["verify", path.to_str().unwrap()]);
    assert!(ok, "{screen}");
    assert!(screen.contains("/300000 keys checked · "), "{screen}");
    assert!(
        screen.contains(
            "stage strings: checked 300000, missing 0, wrong type 0, wrong value 0, TTL problems 0"
        ),
        "{screen}"
    );
}
