//! Typed stages through a cluster failover, against real clusters on loopback: a primary
//! with a replica is killed (SIGKILL) while lists or hashes are being written; the run
//! carries on at the replica that takes over and ends with every key complete, exactly once
//! (no list item twice), and every key counted once.

use crate::support;

use std::time::Duration;

use support::*;

/// Commands in flight per connection in these tests.
const PIPELINE: u64 = 16;

/// Applies `damage` (a command without its key) to `key` on the replicas of `primary`
/// only: what asynchronous replication loses when a primary dies. The damage replicates;
/// the primary then puts the key back whole without replicating that.
fn damage_on_replica(primary: &RedisServer, key: &[u8], damage: &[Vec<u8>]) {
    const SCRIPT: &str = "local dump = redis.call('DUMP', KEYS[1]) \
        redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2)) \
        redis.set_repl(redis.REPL_NONE) \
        redis.call('DEL', KEYS[1]) \
        redis.call('RESTORE', KEYS[1], 0, dump) \
        return 1";
    let _: i64 = redis::cmd("EVAL")
        .arg(SCRIPT)
        .arg(1)
        .arg(key)
        .arg(damage)
        .query(&mut primary.connect())
        .unwrap();
}

/// `count` keys of `primary` that hold all their `elements` (`length` is `LLEN`, `HLEN` …).
fn complete_keys(primary: &RedisServer, length: &str, elements: u64, count: usize) -> Vec<Vec<u8>> {
    let mut conn = primary.connect();
    let mut found = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query(&mut conn)
            .unwrap();
        for key in keys {
            let len: u64 = redis::cmd(length).arg(&key).query(&mut conn).unwrap();
            if len == elements && found.len() < count {
                found.push(key);
            }
        }
        if next == 0 || found.len() == count {
            return found;
        }
        cursor = next;
    }
}

/// The indexes of the keys of the plan's first stage that no primary holds.
fn missing_keys(cluster: &RedisCluster, plan: &std::path::Path) -> Vec<u64> {
    let plan = cachefill::__private::load(plan).unwrap();
    let stage = &plan.stages[0];
    let seed = plan.seed.unwrap();
    let dataset = cachefill::__private::Dataset::new(seed, &stage.name, &stage.shape, stage.keys);
    let mut routes = cluster.routes();
    (0..stage.keys)
        .filter(|&i| {
            let key = dataset.key(i);
            let found: u64 = redis::cmd("EXISTS")
                .arg(&key)
                .query(routes.conn_for(&key))
                .unwrap();
            found == 0
        })
        .collect()
}

/// Fills `stage` (`keys` keys of `elements` elements, `length` counting them) into a
/// 3-primary cluster with one replica per primary. Once the run has written, keys it has
/// counted lose elements on the replica only (`damage` gives the command for each), writes
/// on the primary are paused until the replica holds everything the primary
/// acknowledged, and the primary is killed. The run must end `ok` with the same dataset as
/// a standalone server holds, each key counted once and every damaged key rewritten.
fn fill_through_a_failover(
    stage: StageBuilder,
    (keys, elements, length): (u64, u64, &str),
    seed: u64,
    damage: impl Fn(&mut redis::Connection, &[u8], usize) -> Vec<Vec<u8>>,
) {
    const DAMAGED: usize = 6;
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    // One connection per primary: a key is counted once more than a window of commands
    // after it has been answered (see below).
    let stage = stage.connections(1).pipeline(PIPELINE as u32);
    let plan = PlanBuilder::new()
        .seed(seed)
        .target(cluster.target().flush(true))
        .stage(stage.clone());
    let plan = scratch.plan("plan.toml", &plan.build());
    let (child, result_path) = spawn_plan(&scratch, &plan);
    // The cluster starts empty: keys on it mean the run has flushed and is writing.
    wait_until("the fill has started", Duration::from_secs(60), || {
        cluster.total_keys() > 100
    });
    let victim = cluster.a_primary();
    let replica = cluster.replica_of(victim);
    let mut expected_primaries: Vec<u16> =
        cluster.primaries().iter().map(|(s, _)| s.port).collect();
    expected_primaries.retain(|&p| p != cluster.servers[victim].port);
    expected_primaries.push(cluster.servers[replica].port);
    expected_primaries.sort_unstable();
    let primary = &cluster.servers[victim];
    let mut complete = Vec::new();
    wait_until("keys are complete", Duration::from_secs(60), || {
        complete = complete_keys(primary, length, elements, DAMAGED);
        complete.len() == DAMAGED
    });
    // More than a window of commands answered since: the run has read their replies.
    let seen = primary.dbsize();
    wait_until("a window more is written", Duration::from_secs(60), || {
        primary.dbsize() > seen + PIPELINE
    });
    let mut conn = primary.connect();
    for (i, key) in complete.iter().enumerate() {
        let command = damage(&mut conn, key, i);
        damage_on_replica(primary, key, &command);
    }
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "600000", "WRITE"])
        .query(&mut conn)
        .unwrap();
    wait_until(
        "the replica holds what the primary acknowledged",
        Duration::from_secs(30),
        || {
            let sent = replication_offset(primary, "master_repl_offset");
            sent.is_some()
                && sent == replication_offset(&cluster.servers[replica], "slave_repl_offset")
        },
    );
    cluster.servers[victim].kill();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let result = read_result(&result_path);
    let stage_result = &result["stages"][0];
    assert_eq!(stage_result["status"], "ok");
    assert_eq!(
        stage_result["failovers"], 1,
        "the run saw the failover (it was still writing when the primary died)"
    );
    assert_eq!(
        stage_result["rewritten"], DAMAGED,
        "exactly the keys the successor held incomplete were written again"
    );
    assert_eq!(stage_result["keys_written"], keys, "each key counted once");
    assert_eq!(stage_result["elements_written"], keys * elements);
    let commands = stage.write() == Some("commands");
    assert_eq!(
        stage_result["restored_keys"],
        if commands { 0 } else { keys },
        "every key a RESTORE wrote, or none"
    );
    assert_eq!(stage_result["partial_keys"], 0);
    let per_node: u64 = stage_result["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_node, keys,
        "keys handed on count at their new owner only"
    );

    let mut primaries: Vec<u16> = cluster.primaries().iter().map(|(s, _)| s.port).collect();
    primaries.sort_unstable();
    assert_eq!(
        primaries, expected_primaries,
        "only the lost primary's replica took over (another failover means a primary missed \
         pings for cluster-node-timeout: an overloaded machine, and writes lost that no client \
         could see)"
    );
    assert_eq!(
        cluster.total_keys(),
        keys,
        "missing: {:?}; {stage_result}",
        missing_keys(&cluster, &plan)
    );
    let (verified, report) = verify(&scratch, &plan, &[]);
    let report = report.expect("verify writes its report");
    assert!(
        verified.status.success(),
        "verify: {}; {report}",
        stderr(&verified)
    );
    assert_eq!(report["stages"][0]["checked"], keys);
    assert_eq!(
        cluster.digest_xor(),
        standalone_digest(&scratch, PlanBuilder::new().seed(seed).stage(stage)),
        "a key is missing, incomplete or has an element twice"
    );
}

/// The words of a command.
fn command(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// Lists written with commands are the hard case: an `RPUSH` sent twice duplicates its
/// items, so every list of the lost primary (acknowledged, half written or in flight) is
/// resumed on its successor from the length that successor holds, once. Lists of 2100
/// items take three `RPUSH`es.
#[test]
fn lists_carry_on_through_a_failover_without_a_lost_or_doubled_item() {
    let (keys, items) = (1200, 2100);
    let stage = StageBuilder::new("l")
        .data_type("list")
        .keys(keys)
        .elements(items, items)
        .value_size(8)
        .set("write", "commands");
    fill_through_a_failover(stage, (keys, items, "LLEN"), 31, |_, _, i| {
        if i % 2 == 0 {
            command(&["DEL"])
        } else {
            command(&["LTRIM", "0", "9"])
        }
    });
}

/// Hashes, written as `RESTORE` payloads (the default), are restored whole when their
/// successor holds fewer fields than planned.
#[test]
fn hashes_carry_on_through_a_failover() {
    let (keys, fields) = (1200, 1500);
    let stage = StageBuilder::new("h")
        .data_type("hash")
        .keys(keys)
        .elements(fields, fields)
        .value_size(8)
        .set("field_size", 8i64);
    fill_through_a_failover(stage, (keys, fields, "HLEN"), 32, |conn, key, i| {
        if i % 2 == 0 {
            return command(&["DEL"]);
        }
        let (_, fields): (u64, Vec<Vec<u8>>) =
            redis::cmd("HSCAN").arg(key).arg(0).query(conn).unwrap();
        vec![b"HDEL".to_vec(), fields[0].clone()]
    });
}
