//! Cluster targets against real clusters on loopback: exact counts, balance, the same data
//! as standalone, redirections during resharding, flushing, lost primaries.

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use cachefill::__private::free_port;
use support::*;

#[test]
fn three_primaries_get_their_slot_share_with_no_redirects() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("s").keys(300_000).value_size(64));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(cluster.total_keys(), 300_000);
    for (server, slots) in cluster.primaries() {
        let share = 300_000.0 * slots as f64 / 16384.0;
        let keys = server.dbsize() as f64;
        assert!(
            (keys - share).abs() <= share * 0.02,
            "{}: {keys} keys for a share of {share}",
            server.addr()
        );
    }
    let stage = &result["stages"][0];
    assert_eq!(stage["keys_written"], 300_000);
    assert_eq!(stage["redirects"]["moved"], 0);
    assert_eq!(stage["redirects"]["ask"], 0);
    let per_node: u64 = stage["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(per_node, 300_000);
    let nodes = result["targets"]["main"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        nodes
            .iter()
            .map(|n| n["slots"].as_u64().unwrap())
            .sum::<u64>(),
        16384
    );
    assert_eq!(
        nodes
            .iter()
            .map(|n| n["keys_after"].as_u64().unwrap())
            .sum::<u64>(),
        300_000
    );
}

#[test]
fn a_cluster_holds_the_same_data_as_a_standalone_server() {
    let cluster = RedisCluster::start(3, 0);
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let stage = StageBuilder::new("same").keys(50_000).value_range(10, 200);
    for target in [cluster.target(), server.target()] {
        let plan = PlanBuilder::new()
            .seed(77)
            .target(target.flush(true))
            .stage(stage.clone());
        let plan = scratch.plan("plan.toml", &plan.build());
        let (output, _) = run_plan(&scratch, &plan, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_eq!(cluster.total_keys(), 50_000);
    assert_eq!(server.dbsize(), 50_000);
    let mut conn = server.connect();
    assert_eq!(cluster.digest_xor(), server.digest(), "the datasets differ");
    // The keys of a slot went in one MSET (a lone one in a SET): one command per slot.
    let plan = cachefill::__private::load(&scratch.path("plan.toml")).unwrap();
    let stage = &plan.stages[0];
    let dataset = cachefill::__private::Dataset::new(77, &stage.name, &stage.shape, stage.keys);
    let mut per_slot = vec![0u32; 16384];
    for i in 0..50_000 {
        per_slot[usize::from(cachefill::__private::slot(&dataset.key(i)))] += 1;
    }
    let expected_msets = per_slot.iter().filter(|&&n| n > 1).count() as u64;
    let expected_sets = per_slot.iter().filter(|&&n| n == 1).count() as u64;
    let (mut msets, mut sets) = (0, 0);
    for (server, _) in cluster.primaries() {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut server.connect())
            .unwrap();
        let calls = |name: &str| -> u64 {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
                .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
        };
        msets += calls("mset");
        sets += calls("set");
    }
    assert_eq!((msets, sets), (expected_msets, expected_sets));
    let mut routes = cluster.routes();
    for _ in 0..10_000 {
        let key: Vec<u8> = redis::cmd("RANDOMKEY").query(&mut conn).unwrap();
        let value: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(
            routes.get(&key).as_deref(),
            Some(&value[..]),
            "{}",
            String::from_utf8_lossy(&key)
        );
    }
}

#[test]
fn resharding_during_the_fill_loses_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    // More than two windows of the router (a million entries sorted by slot each): every
    // window writes every slot again, so slots move under the fill's feet.
    let keys = 2_200_000u64;
    let fill = StageBuilder::new("moving").keys(keys).value_size(32);
    let plan = PlanBuilder::new()
        .seed(5)
        .target(cluster.target().flush(true))
        .stage(fill.clone().connections(1).pipeline(64));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 20_000
    });
    cluster.reshard(0, 1, 1500);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    let redirects =
        stage["redirects"]["moved"].as_u64().unwrap() + stage["redirects"]["ask"].as_u64().unwrap();
    assert!(
        redirects > 0,
        "the fill saw no redirection; the resharding finished too early"
    );
    assert_eq!(cluster.total_keys(), keys);
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, PlanBuilder::new().seed(5).stage(fill)),
        "an entry is missing or wrong"
    );
    let verify = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify after resharding: {}",
        stderr(&verify)
    );
}

#[test]
fn flush_empties_every_primary() {
    let cluster = RedisCluster::start(3, 0);
    for (server, _) in cluster.primaries() {
        let mut conn = server.connect();
        // A key in a slot this node serves: find one by trial.
        for i in 0.. {
            let key = format!("old:{i}");
            if redis::cmd("SET")
                .arg(&key)
                .arg("x")
                .query::<()>(&mut conn)
                .is_ok()
            {
                break;
            }
        }
    }
    assert_eq!(cluster.total_keys(), 3);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("s").keys(1000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(cluster.total_keys(), 1000);
    assert_eq!(result.unwrap()["targets"]["main"]["flushed"], true);
}

#[test]
fn a_lost_primary_without_replica_fails_naming_the_node_and_its_slots() {
    let mut cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(cluster.target().flush(true).failover_timeout("3s"))
        .stage(StageBuilder::new("s").keys(30_000_000).value_size(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 30_000
    });
    let victim = cluster.servers[2].addr();
    cluster.servers[2].kill();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let reason = err.lines().last().unwrap();
    assert!(
        reason.contains(&victim)
            && reason.contains("slots")
            && reason.contains("no replica took over"),
        "{reason}"
    );
    let result = read_result(&result_path);
    assert_eq!(result["status"], "failed");
}

#[test]
fn a_launched_cluster_is_formed_filled_and_stopped() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::launch_cluster("local", 3, 0))
        .stage(StageBuilder::new("s").keys(30_000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let nodes = result["targets"]["local"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        nodes
            .iter()
            .map(|n| n["keys_after"].as_u64().unwrap())
            .sum::<u64>(),
        30_000
    );
    for node in nodes {
        let address = node["address"].as_str().unwrap();
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "{address} still runs"
        );
    }
}

#[test]
fn a_failover_during_the_fill_loses_nothing() {
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let keys = 2_000_000u64;
    let fill = StageBuilder::new("s").keys(keys).value_size(16);
    let plan = PlanBuilder::new()
        .seed(9)
        .target(cluster.target().flush(true))
        .stage(fill.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 50_000
    });
    cluster.kill_a_primary();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["failovers"], 1);
    // The key-cost sample is read where the keys are now, the successor included.
    assert_eq!(stage["memory"]["sampled_keys"], 100, "{}", stage["memory"]);
    assert_eq!(cluster.primaries().len(), 3, "a replica took over");
    // Only what went to the lost primary is re-checked: what it acknowledged, and at most a
    // window of commands in flight on each of its 4 connections; not the entries the router
    // had not queued for it yet (up to a million of them).
    let primaries: Vec<String> = cluster.primaries().iter().map(|(s, _)| s.addr()).collect();
    let lost = stage["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| !primaries.contains(&n["address"].as_str().unwrap().to_string()))
        .expect("the lost primary in per_node");
    let rewritten = stage["rewritten"].as_u64().unwrap();
    assert!(
        rewritten <= lost["keys"].as_u64().unwrap() + 4 * 1024,
        "{rewritten} rewritten; {lost}"
    );
    assert_eq!(
        cluster.total_keys(),
        keys,
        "every entry is on the primaries after the failover"
    );
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, PlanBuilder::new().seed(9).stage(fill)),
        "an entry is missing or wrong"
    );
}

/// A primary killed and started again in place (same address, node id and slots, empty:
/// no persistence) before the cluster failed it over, as a supervisor restarts a crashed
/// process within seconds: the run waits for it as for a successor, re-checks what it had
/// acknowledged, writes what it lost and ends `ok` with every key there. Before, the run
/// waited only for a replica, failed after `failover_timeout`, and the primary stayed empty.
#[test]
fn a_primary_restarted_in_place_gets_back_what_it_lost() {
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let keys = 2_000_000u64;
    let fill = StageBuilder::new("s").keys(keys).value_size(16);
    let plan = PlanBuilder::new()
        .seed(21)
        .target(cluster.target().flush(true).failover_timeout("30s"))
        .stage(fill.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (mut child, result_path) = spawn_plan(&scratch, &plan);
    let mut said = StderrLines::of(&mut child);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 100_000
    });
    let victim = cluster.a_primary();
    let addr = cluster.servers[victim].addr();
    let config = cluster.servers[victim].crash_keeping_cluster_config();
    // Started again once the run has given up reconnecting and waits: the case that failed.
    let waiting = said.wait_for(&format!("primary {addr} is unreachable"));
    assert!(
        waiting.contains("waiting up to 30s (failover_timeout) for it to answer again"),
        "{waiting}"
    );
    cluster.servers[victim].start_in_place(&config);
    let output = wait_for_exit(child, Duration::from_secs(120));
    let err = said.all();
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains(&format!("primary {addr} answers again")),
        "{err}"
    );
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok", "{err}");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["failovers"], 0, "no replica took over");
    assert_eq!(stage["restarts"], 1);
    assert!(
        stage["rewritten"].as_u64().unwrap() > 0,
        "the restarted primary was empty"
    );
    let primaries: Vec<String> = cluster.primaries().iter().map(|(s, _)| s.addr()).collect();
    assert!(primaries.contains(&addr), "{primaries:?}");
    assert_eq!(cluster.total_keys(), keys, "every key is on the primaries");
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, PlanBuilder::new().seed(21).stage(fill)),
        "an entry is missing or wrong"
    );
}

/// A primary's slots unassigned mid-fill (`CLUSTER DELSLOTSRANGE`): the cluster answers
/// `CLUSTERDOWN` for them, and cachefill sends those entries again after a pause (for up to
/// 30 s) until the slots are served again (`ADDSLOTSRANGE`, once a `CLUSTERDOWN` was sent):
/// the run ends `ok` with every key, the same dataset as a standalone fill.
#[test]
fn slots_unassigned_mid_fill_are_waited_for_until_they_are_served_again() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let keys = 1_000_000u64;
    let fill = StageBuilder::new("s").keys(keys).value_size(16);
    let plan = PlanBuilder::new()
        .seed(31)
        .target(cluster.target().flush(true))
        .stage(fill.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 100_000
    });
    let victim = &cluster.servers[cluster.a_primary()];
    let mut conn = victim.connect();
    let ranges = own_slots(&mut conn).expect("the primary's slots");
    let slots_command = |command: &str, conn: &mut redis::Connection| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg(command);
        for (first, last) in &ranges {
            cmd.arg(first).arg(last);
        }
        cmd.exec(conn).unwrap();
    };
    slots_command("DELSLOTSRANGE", &mut conn);
    wait_until("the fill met CLUSTERDOWN", Duration::from_secs(30), || {
        victim.errors("CLUSTERDOWN") > 0
    });
    slots_command("ADDSLOTSRANGE", &mut conn);
    let output = wait_for_exit(child, Duration::from_secs(120));
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok", "{err}");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["failovers"], 0);
    assert_eq!(cluster.total_keys(), keys);
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, PlanBuilder::new().seed(31).stage(fill)),
        "an entry is missing or wrong"
    );
}

/// An `MSET` group for a slot that is migrating, some of whose keys are still on the source
/// and some not: the source answers `TRYAGAIN` (a multi-key command while the slot is
/// split), and cachefill sends the group's entries one `SET` each, on the source for the keys
/// it holds and after `ASKING` on the target for the others. The run ends `ok` with every key
/// once and the standalone dataset.
#[test]
fn a_group_split_by_a_migrating_slot_is_written_one_key_at_a_time() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let keys = 200_000u64;
    let fill = StageBuilder::new("s").keys(keys).value_size(16);
    let plan = PlanBuilder::new()
        .seed(37)
        .target(cluster.target().flush(false))
        .stage(fill.clone());
    let path = scratch.plan("plan.toml", &plan.build());
    let listed = cachefill(scratch.dir.path())
        .args(["export", "--format", "keys"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let all: Vec<Vec<u8>> = listed
        .stdout
        .split(|b| *b == b'\n')
        .filter(|k| !k.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let slot = cachefill::__private::slot(&all[0]);
    let in_slot: Vec<&Vec<u8>> = all
        .iter()
        .filter(|k| cachefill::__private::slot(k) == slot)
        .collect();
    assert!(in_slot.len() >= 4, "{} keys in slot {slot}", in_slot.len());
    let primaries = cluster.primaries();
    let owns = |server: &RedisServer| {
        own_slots(&mut server.connect())
            .unwrap_or_default()
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&slot))
    };
    let source = primaries.iter().find(|(s, _)| owns(s)).unwrap().0;
    let target = primaries.iter().find(|(s, _)| !owns(s)).unwrap().0;
    let id = |server: &RedisServer| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut server.connect())
            .unwrap()
    };
    // Half the slot's keys are on the source (with a value the fill must replace).
    for key in in_slot.iter().step_by(2) {
        redis::cmd("SET")
            .arg(key.as_slice())
            .arg("old")
            .exec(&mut source.connect())
            .unwrap();
    }
    for (server, state, other) in [(target, "IMPORTING", source), (source, "MIGRATING", target)] {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(id(other))
            .exec(&mut server.connect())
            .unwrap();
    }
    let result = run_ok(&scratch, &path, &[]);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    assert!(source.errors("TRYAGAIN") > 0, "the group met no TRYAGAIN");
    assert_eq!(cluster.total_keys(), keys, "every key once");
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, PlanBuilder::new().seed(37).stage(fill)),
        "an entry is missing or wrong"
    );
}

#[test]
fn error_replies_on_a_cluster_end_the_run_instead_of_hanging() {
    let cluster = RedisCluster::start(3, 0);
    for (server, _) in cluster.primaries() {
        redis::cmd("ACL")
            .arg(&[
                "SETUSER",
                "filler",
                "on",
                ">pw-77",
                "~allowed:*",
                "+set",
                "+info",
                "+ping",
                "+cluster",
                "+flushall",
            ])
            .query::<()>(&mut server.connect())
            .unwrap();
    }
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(cluster.target().user("filler", "FILLER_PW"))
        .stage(StageBuilder::new("s").keys(1000).key_prefix("other:"));
    let plan = scratch.plan("plan.toml", &plan.build());
    let mut child = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-q", "-o", "result.json"])
        .env("FILLER_PW", "pw-77")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until("the refused run ends", Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(1));
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert!(err.contains("NOPERM") && err.contains("other:"), "{err}");
    assert_eq!(cluster.total_keys(), 0);
}

#[test]
fn a_seed_node_that_is_down_is_skipped() {
    let cluster = RedisCluster::start(3, 0);
    let dead = format!("127.0.0.1:{}", free_port().unwrap());
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::cluster(
            "main",
            &[dead, cluster.servers[1].addr()],
        ))
        .stage(StageBuilder::new("s").keys(1000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(cluster.total_keys(), 1000);
}

#[test]
fn nodes_are_reached_at_the_endpoint_they_announce() {
    let cluster = RedisCluster::start(3, 0);
    for server in &cluster.servers {
        let mut conn = server.connect();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-announce-hostname")
            .arg("localhost")
            .query::<()>(&mut conn)
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-preferred-endpoint-type")
            .arg("hostname")
            .query::<()>(&mut conn)
            .unwrap();
    }
    wait_until(
        "every node announces its hostname",
        Duration::from_secs(30),
        // In every node's view: cachefill may learn the topology from any of them.
        || {
            cluster.servers.iter().all(|server| {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut server.connect())
                    .unwrap();
                nodes.lines().all(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| a.ends_with(",localhost"))
                })
            })
        },
    );
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("s").keys(3000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    for node in result["stages"][0]["per_node"].as_array().unwrap() {
        assert!(
            node["address"].as_str().unwrap().starts_with("localhost:"),
            "{node}"
        );
    }
    assert_eq!(cluster.total_keys(), 3000);
}

#[test]
fn sigint_during_a_cluster_stage_records_what_each_primary_acknowledged() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(cluster.target().flush(true))
        .stage(StageBuilder::new("long").keys(30_000_000).value_size(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    wait_until("the fill has started", Duration::from_secs(30), || {
        cluster.total_keys() > 30_000
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let result = read_result(&result_path);
    assert_eq!(result["status"], "interrupted");
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "interrupted");
    let written = stage["keys_written"].as_u64().unwrap();
    assert_eq!(
        cluster.total_keys(),
        written,
        "every acknowledged entry is counted, and only those"
    );
    let per_node: u64 = stage["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(per_node, written);
}
