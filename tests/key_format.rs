//! `key_format`: keys written exactly as the plan says, on a standalone server and a cluster
//! (a hash tag puts two stages' keys in one slot), verified, exported, sharded, sized, and
//! read by redis-benchmark without a miss.

use crate::support;

use std::collections::BTreeSet;
use std::process::Command;

use support::*;

/// Every key `conn`'s server holds, by `SCAN`.
fn scanned_keys(conn: &mut redis::Connection) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// The keys `cachefill export --format keys` lists for `plan`.
fn exported_keys(scratch: &Scratch, plan: &std::path::Path) -> Vec<Vec<u8>> {
    let export = cachefill(scratch.dir.path())
        .args(["export", "--format", "keys"])
        .arg(plan)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    export
        .stdout
        .split(|&b| b == b'\n')
        .filter(|k| !k.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// A user's profile (a string) and cart (a hash) under one hash tag.
fn user_stages(plan: PlanBuilder, users: u64) -> PlanBuilder {
    plan.stage(
        StageBuilder::new("profiles")
            .keys(users)
            .value_size(100)
            .set("key_format", "{{user:{i}}}:profile"),
    )
    .stage(
        StageBuilder::new("carts")
            .data_type("hash")
            .keys(users)
            .elements(1, 20)
            .set("key_format", "{{user:{i}}}:cart"),
    )
}

#[test]
fn formatted_keys_are_written_verified_and_exported_exactly() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = user_stages(
        PlanBuilder::new()
            .seed(5)
            .target(server.target().flush(true)),
        1500,
    );
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(server.dbsize(), 3000);
    assert_eq!(result["stages"][0]["keys_written"], 1500);
    assert_eq!(result["stages"][1]["keys_written"], 1500);
    // "{user:" + index + "}:profile": 15 B + the index's digits, plus 100 B of value.
    let digits = 10 + 90 * 2 + 900 * 3 + 500 * 4;
    assert_eq!(
        result["stages"][0]["payload_bytes"],
        1500 * 15 + digits + 1500 * 100
    );

    let mut conn = server.connect();
    let value: Vec<u8> = redis::cmd("GET")
        .arg("{user:0}:profile")
        .query(&mut conn)
        .unwrap();
    assert_eq!(value.len(), 100);
    let kind: String = redis::cmd("TYPE")
        .arg("{user:1499}:cart")
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "hash");

    let exported = exported_keys(&scratch, &plan);
    assert_eq!(exported.len(), 3000);
    assert_eq!(exported[0], b"{user:0}:profile");
    assert_eq!(exported[1500], b"{user:0}:cart");
    let exported: BTreeSet<Vec<u8>> = exported.into_iter().collect();
    assert_eq!(exported, scanned_keys(&mut conn));

    assert_verified(&scratch, &plan, 1500);
    let check = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let printed = String::from_utf8_lossy(&check.stdout).into_owned() + &stderr(&check);
    assert!(
        printed.contains("key \"{{user:{i}}}:cart\" (mean 16 B)"),
        "{printed}"
    );
}

#[test]
fn a_hash_tag_puts_both_stages_keys_of_a_user_in_one_slot_of_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let users = 400;
    let plan = user_stages(PlanBuilder::new().seed(9).target(cluster.target()), users);
    let result = run_ok(&scratch, &scratch.plan("plan.toml", &plan.build()), &[]);
    assert_eq!(result["stages"][0]["keys_written"], users);
    assert_eq!(result["stages"][1]["keys_written"], users);
    assert_eq!(cluster.total_keys(), 2 * users);

    let mut any = cluster.servers[0].connect();
    let slot_of = |conn: &mut redis::Connection, key: &str| -> u64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(conn)
            .unwrap()
    };
    let slots: Vec<u64> = (0..users)
        .map(|i| slot_of(&mut any, &format!("user:{i}")))
        .collect();
    let mut routes = cluster.routes();
    for user in [0u64, 7, 399] {
        let slot = slots[user as usize];
        assert_eq!(slot_of(&mut any, &format!("{{user:{user}}}:cart")), slot);
        assert_eq!(slot_of(&mut any, &format!("{{user:{user}}}:profile")), slot);
        // Every user whose tag falls in this slot has a cart and a profile there.
        let sharing = slots.iter().filter(|&&s| s == slot).count() as u64;
        let owner = routes.conn_for(format!("{{user:{user}}}:cart").as_bytes());
        let held: u64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(owner)
            .unwrap();
        assert_eq!(held, 2 * sharing, "slot {slot}");
    }

    let plan = scratch.plan(
        "plan.toml",
        &user_stages(PlanBuilder::new().seed(9).target(cluster.target()), users).build(),
    );
    assert_verified(&scratch, &plan, users);
    let exported: BTreeSet<Vec<u8>> = exported_keys(&scratch, &plan).into_iter().collect();
    let mut on_cluster = BTreeSet::new();
    for (server, _) in cluster.primaries() {
        on_cluster.extend(scanned_keys(&mut server.connect()));
    }
    assert_eq!(exported.len() as u64, 2 * users);
    assert_eq!(exported, on_cluster);
    let standalone = standalone_digest(&scratch, user_stages(PlanBuilder::new().seed(9), users));
    assert_eq!(cluster.digest_xor(), standalone);
}

#[test]
fn two_shards_of_a_formatted_stage_write_what_one_run_writes() {
    let single = RedisServer::start(&[]);
    let sharded = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let stage = StageBuilder::new("bench")
        .keys(5000)
        .value_range(1, 200)
        .set("key_format", "key:{i:012}");
    let plan = |server: &RedisServer| {
        PlanBuilder::new()
            .seed(3)
            .target(server.target())
            .stage(stage.clone())
            .build()
    };
    run_ok(&scratch, &scratch.plan("single.toml", &plan(&single)), &[]);
    let sharded_plan = scratch.plan("sharded.toml", &plan(&sharded));
    let mut written = 0;
    for (index, shard) in ["0/2", "1/2"].into_iter().enumerate() {
        let result = scratch.path(&format!("shard{index}.json"));
        let output = cachefill(scratch.dir.path())
            .args(["run", "--quiet", "--shard", shard])
            .arg(&sharded_plan)
            .arg("-o")
            .arg(&result)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        written += read_result(&result)["stages"][0]["keys_written"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(written, 5000);
    assert_eq!(single.dbsize(), 5000);
    assert_eq!(sharded.dbsize(), 5000);
    assert_eq!(sharded.digest(), single.digest());
}

#[test]
fn a_size_lands_on_the_key_count_the_docs_give() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("sized")
                .size("1MB")
                .value_size(100)
                .set("key_format", "k{i}"),
        );
    let result = run_ok(&scratch, &scratch.plan("plan.toml", &plan.build()), &[]);
    // docs/plan-format.md: 10 × 102 + 90 × 103 + 900 × 104 + 8535 × 105 = 1,000,065 B.
    assert_eq!(server.dbsize(), 9535);
    assert_eq!(result["stages"][0]["keys_written"], 9535);
    assert_eq!(result["stages"][0]["payload_bytes"], 1_000_065);
}

#[test]
fn redis_benchmark_reads_every_key_of_its_format_without_a_miss() {
    require("redis-benchmark");
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(2)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("bench")
                .keys(1000)
                .value_size(3)
                .set("key_format", "key:{i:012}"),
        )
        .stage(
            StageBuilder::new("memtier")
                .keys(1000)
                .value_size(3)
                .set("key_format", "memtier-{i}"),
        );
    run_ok(&scratch, &scratch.plan("plan.toml", &plan.build()), &[]);
    assert_eq!(server.dbsize(), 2000);
    let mut conn = server.connect();
    let held: u64 = redis::cmd("EXISTS")
        .arg("key:000000000000")
        .arg("key:000000000999")
        .arg("memtier-0")
        .arg("memtier-999")
        .query(&mut conn)
        .unwrap();
    assert_eq!(held, 4);

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut conn)
        .unwrap();
    let port = server.addr().rsplit_once(':').unwrap().1.to_string();
    let bench = Command::new("redis-benchmark")
        .args(["-p", &port, "-t", "get", "-r", "1000", "-n", "5000", "-q"])
        .output()
        .unwrap();
    assert!(bench.status.success(), "{}", stderr(&bench));
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(stat("keyspace_misses"), 0);
    assert_eq!(stat("keyspace_hits"), 5000);
}

#[test]
fn an_until_memory_stage_with_a_format_writes_a_prefix_of_its_keys() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(4)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("fill")
                .until_memory("16MiB")
                .value_range(50, 500)
                .set("key_format", "fill:{i}"),
        )
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let result = run_ok(&scratch, &path, &[]);
    let written = result["stages"][0]["keys_written"].as_u64().unwrap();
    assert_eq!(server.dbsize(), written);
    // The entries written are 0..written: the last one exists, the next does not.
    let mut conn = server.connect();
    let held: (u64, u64) = redis::pipe()
        .cmd("EXISTS")
        .arg(format!("fill:{}", written - 1))
        .cmd("EXISTS")
        .arg(format!("fill:{written}"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(held, (1, 0));
    assert_verified_against_result(&scratch, &path, written);
}
