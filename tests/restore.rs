//! Typed keys written as `RESTORE` payloads: the payloads cachefill encodes are the objects
//! the server's own commands make, key for key (the same value, the same encoding, the same
//! bytes in memory), on Redis 7.0 and Valkey 9, at and around every limit of the compact
//! encodings.

use crate::support;

use std::collections::HashMap;
use std::path::Path;

use cachefill::__private::Chunking;
use cachefill::__private::Dataset;
use cachefill::__private::{PayloadEncoder, ServerEncoding};
use support::*;

/// The dataset of the plan's first stage, as the crate computes it.
fn dataset_of(plan: &Path, result: &serde_json::Value) -> Dataset {
    let plan = cachefill::__private::load(plan).unwrap();
    let stage = &plan.stages[0];
    let seed = result["stages"][0]["seed"].as_u64().unwrap();
    Dataset::new(seed, &stage.name, &stage.shape, stage.keys)
}

/// The server's encoding as cachefill learns it: its version and `CONFIG GET`.
fn encoding_of(server: &RedisServer) -> ServerEncoding {
    let mut conn = server.connect();
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let valkey = field("valkey_version");
    let version = valkey.clone().or_else(|| field("redis_version"));
    let config: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut conn)
        .unwrap();
    ServerEncoding::new(version.as_deref(), valkey.is_some(), &config)
}

/// What the comparison of one stage's keys found.
#[derive(Debug, Default)]
struct Compared {
    /// Keys in a compact encoding whose restored object was byte for byte the one commands
    /// made (their `DUMP`s equal, and their memory).
    same_object: u64,
    /// Of those, keys whose payload was the server's own `DUMP` (its encoding, not a plain
    /// type the server turned into it).
    native: u64,
    /// Keys in a table encoding (hashtable, skiplist), compared by value and encoding.
    by_value: u64,
    /// Encodings seen, with their keys.
    encodings: HashMap<String, u64>,
    /// Keys the stage writes with commands all the same.
    commands: u64,
    /// Restored keys whose items, not their element count, decided that they could be
    /// (lists of 7.2 and later).
    by_items: u64,
    /// Keys written with commands because their items showed that a payload would load
    /// as another object; each one's payload was restored beside it and its `DUMP`
    /// differed.
    not_reloadable: u64,
}

impl Compared {
    /// Keys seen in `encoding`.
    fn of(&self, encoding: &str) -> u64 {
        self.encodings.get(encoding).copied().unwrap_or(0)
    }
}

/// Fills `keys` keys of `stage` with commands on `server`, then for every key restores
/// cachefill's payload beside it and asserts that it holds the same value
/// (`DEBUG DIGEST-VALUE`) in the same encoding; compact encodings must also take the same
/// memory and be byte for byte what the server's `DUMP` gives.
fn compare_with_commands(server: &RedisServer, stage: StageBuilder, keys: u64) -> Compared {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(11)
        .target(server.target().flush(true))
        .stage(stage.keys(keys).set("write", "commands"));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(result["stages"][0]["keys_written"], keys);
    let dataset = dataset_of(&plan, &result);
    let encoding = encoding_of(server);
    let encoder =
        PayloadEncoder::new(&dataset, encoding, Chunking::of(&dataset).per_command).unwrap();
    let chunking = Chunking::restoring(&dataset, &encoding);
    let mut conn = server.connect();
    let mut copies = server.connect();
    redis::cmd("SELECT").arg(1).exec(&mut copies).unwrap();
    let mut compared = Compared::default();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    let jemalloc = info.contains("mem_allocator:jemalloc");
    let dump = |conn: &mut redis::Connection, key: &[u8]| -> Vec<u8> {
        redis::cmd("DUMP").arg(key).query(conn).unwrap()
    };
    for i in 0..keys {
        let entry = dataset.entry(i);
        let by_items = chunking.restore.by_count(entry.elements).is_none();
        let key = dataset.key(i);
        let mut payload = Vec::new();
        if !chunking.form(&dataset, &entry).restored {
            compared.commands += 1;
            if by_items {
                // Its payload, laid out as the commands laid the key out, loads as
                // another object: the server re-encodes it.
                encoder.push_payload(&entry, &mut payload);
                redis::cmd("RESTORE")
                    .arg(&key)
                    .arg(0)
                    .arg(&payload)
                    .arg("REPLACE")
                    .exec(&mut copies)
                    .unwrap_or_else(|e| panic!("key {i}: RESTORE refused the payload: {e}"));
                // (A listpack list dumps as a quicklist of one node: the encodings tell.)
                let object = |conn: &mut redis::Connection| {
                    let encoding: String = redis::cmd("OBJECT")
                        .arg("ENCODING")
                        .arg(&key)
                        .query(conn)
                        .unwrap();
                    (encoding, dump(conn, &key))
                };
                assert!(
                    object(&mut conn) != object(&mut copies),
                    "key {i}: a payload would have made the same object"
                );
                compared.not_reloadable += 1;
            }
            continue;
        }
        compared.by_items += u64::from(by_items);
        encoder.push_payload(&entry, &mut payload);
        // The copy has the same name, in database 1: the same key, so the same memory; and
        // the same TTL, which DEBUG DIGEST-VALUE notes.
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        redis::cmd("RESTORE")
            .arg(&key)
            .arg(ttl.max(0))
            .arg(&payload)
            .arg("REPLACE")
            .exec(&mut copies)
            .unwrap_or_else(|e| panic!("key {i}: RESTORE refused the payload: {e}"));
        let digest = |conn: &mut redis::Connection| -> String {
            redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(&key)
                .query::<Vec<String>>(conn)
                .unwrap()
                .remove(0)
        };
        assert_eq!(digest(&mut conn), digest(&mut copies), "key {i}");
        let encoding = |conn: &mut redis::Connection| -> String {
            redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(&key)
                .query(conn)
                .unwrap()
        };
        let theirs = encoding(&mut conn);
        assert_eq!(theirs, encoding(&mut copies), "encoding of key {i}");
        *compared.encodings.entry(theirs.clone()).or_default() += 1;
        if matches!(theirs.as_str(), "hashtable" | "skiplist") {
            compared.by_value += 1;
            continue;
        }
        let (theirs_dump, ours_dump) = (dump(&mut conn, &key), dump(&mut copies, &key));
        assert!(
            theirs_dump == ours_dump,
            "key {i} ({theirs}): the restored object differs from the one commands made\n ours: {:?}\nDUMP: {:?}",
            String::from_utf8_lossy(&payload),
            String::from_utf8_lossy(&theirs_dump)
        );
        // The footer differs: a DUMP carries the server's own RDB version, a payload the
        // lowest that has its encoding.
        if theirs_dump[..theirs_dump.len() - 10] == payload[..payload.len() - 10] {
            compared.native += 1;
        }
        let memory = |conn: &mut redis::Connection| -> u64 {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .query(conn)
                .unwrap()
        };
        let (theirs_memory, ours) = (memory(&mut conn), memory(&mut copies));
        if theirs == "stream" {
            // XADD leaves a node's listpack with room to grow (allocated 4 KiB ahead, then
            // grown by the allocator's steps), a load allocates it at its size: the same
            // entries, other memory (the server's own DUMP and RESTORE differ alike).
        } else if jemalloc {
            assert_eq!(theirs_memory, ours, "memory of key {i}");
        } else {
            // glibc's malloc_usable_size of a block grown by realloc (commands) or copied
            // (a plain list node) can differ from that of one allocated at its size (a load)
            // by up to two alignment units: per node of a list, and for the rest.
            let blocks = if theirs == "quicklist" {
                quicklist_nodes(&mut conn, &key)
            } else {
                1
            };
            assert!(
                theirs_memory.abs_diff(ours) <= 32 * blocks,
                "memory of key {i}: {theirs_memory} B by commands, {ours} B restored"
            );
        }
        compared.same_object += 1;
    }
    compared
}

/// The nodes of the quicklist at `key` (`DEBUG OBJECT`'s `ql_nodes`).
fn quicklist_nodes(conn: &mut redis::Connection, key: &[u8]) -> u64 {
    let object: String = redis::cmd("DEBUG")
        .arg("OBJECT")
        .arg(key)
        .query(conn)
        .unwrap();
    object
        .split(' ')
        .find_map(|f| f.strip_prefix("ql_nodes:"))
        .and_then(|n| n.parse().ok())
        .expect("DEBUG OBJECT of a quicklist gives ql_nodes")
}

/// A typed stage of `data_type` with `elements` and `values` ranges.
fn stage(data_type: &str, elements: (u64, u64), values: (u64, u64)) -> StageBuilder {
    StageBuilder::new("t")
        .data_type(data_type)
        .elements(elements.0, elements.1)
        .value_range(values.0, values.1)
}

/// `DUMP`s of a server without compression are the payloads' bytes (`rdbcompression yes`
/// compresses strings longer than 20 bytes with LZF, which cachefill does not).
const NO_COMPRESSION: &[&str] = &["--rdbcompression", "no"];

#[test]
fn hashes_are_the_objects_hset_makes_at_every_limit() {
    let server = RedisServer::start(NO_COMPRESSION);
    // 511, 512 and 513 fields (hash-max-listpack-entries is 512 by default).
    let found = compare_with_commands(&server, stage("hash", (511, 513), (10, 20)), 30);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
    // A server configured otherwise: 127, 128 and 129 fields against 128.
    let small =
        RedisServer::start(&[NO_COMPRESSION, &["--hash-max-listpack-entries", "128"]].concat());
    let found = compare_with_commands(&small, stage("hash", (127, 129), (50, 64)), 60);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
    // Values of 64 and 65 bytes.
    let found = compare_with_commands(&server, stage("hash", (1, 3), (63, 65)), 60);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
    // Short values that read as integers.
    let found = compare_with_commands(&server, stage("hash", (1, 20), (1, 3)), 200);
    assert_eq!(found.same_object, 200, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
}

#[test]
fn sorted_sets_are_the_objects_zadd_makes_at_every_limit() {
    let server = RedisServer::start(NO_COMPRESSION);
    let scores = |stage: StageBuilder| {
        let mut range = toml::Table::new();
        range.insert("min".into(), (-5000i64).into());
        range.insert("max".into(), 5000i64.into());
        stage.set("score", range)
    };
    let found = compare_with_commands(&server, scores(stage("zset", (127, 129), (50, 64))), 60);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
    let found = compare_with_commands(&server, scores(stage("zset", (1, 3), (63, 65))), 60);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
    // Scores equal within a key: ordered by member.
    let narrow = stage("zset", (50, 60), (8, 8)).set("score", {
        let mut range = toml::Table::new();
        range.insert("min".into(), 0i64.into());
        range.insert("max".into(), 3i64.into());
        range
    });
    let found = compare_with_commands(&server, narrow, 30);
    assert_eq!(found.same_object, 30, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
}

#[test]
fn sets_are_the_objects_sadd_makes_at_every_limit() {
    let server = RedisServer::start(NO_COMPRESSION);
    let found = compare_with_commands(&server, stage("set", (100, 129), (50, 64)), 60);
    assert_eq!(found.by_value, 60, "7.0 has no listpack sets: {found:?}");
    // Ten members of one digit: intsets.
    let found = compare_with_commands(&server, stage("set", (1, 10), (1, 1)), 50);
    assert_eq!(found.of("intset"), 50, "{found:?}");
    // An intset first, then a member that is no integer: a table.
    let found = compare_with_commands(&server, stage("set", (2, 10), (1, 2)), 200);
    assert!(found.of("intset") > 0 && found.by_value > 0, "{found:?}");
}

#[test]
fn streams_are_the_objects_xadd_makes_at_every_node_size() {
    let server = RedisServer::start(NO_COMPRESSION);
    // Nodes of up to 100 entries (stream-node-max-entries), or 4096 bytes.
    let found = compare_with_commands(
        &server,
        stage("stream", (1, 450), (1, 40)).set("entry_fields", 2i64),
        60,
    );
    assert_eq!(found.native, 60, "{found:?}");
    let found = compare_with_commands(&server, stage("stream", (1, 20), (100, 900)), 60);
    assert_eq!(found.native, 60, "{found:?}");
}

#[test]
fn lists_are_the_objects_rpush_makes_at_every_node_size() {
    let server = RedisServer::start(NO_COMPRESSION);
    let found = compare_with_commands(&server, stage("list", (1, 400), (1, 100)), 100);
    assert_eq!(found.same_object, 100, "{found:?}");
    // Items of 299 bytes: a node of 26 is 7,885 bytes, and the 27th takes it to exactly
    // the limit (7,885 + 299 + 8 = 8,192), which still admits it.
    let found = compare_with_commands(&server, stage("list", (26, 60), (299, 299)), 40);
    assert_eq!(found.native, 40, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
}

/// Valkey 9 (Redis 7.2's encodings: listpack sets, small lists as one listpack).
#[test]
fn valkey_objects_are_the_ones_its_commands_make() {
    let server = RedisServer::of(ServerKind::Valkey9, NO_COMPRESSION);
    let found = compare_with_commands(&server, stage("set", (127, 129), (10, 64)), 60);
    assert!(
        found.of("listpack") > 0 && found.of("hashtable") > 0,
        "{found:?}"
    );
    let found = compare_with_commands(&server, stage("set", (1, 3), (63, 65)), 60);
    assert!(
        found.of("listpack") > 0 && found.of("hashtable") > 0,
        "{found:?}"
    );
    let found = compare_with_commands(&server, stage("set", (1, 10), (1, 1)), 50);
    assert_eq!(found.of("intset"), 50, "{found:?}");
    // Members "0", "7", "3x", "42" …: an intset first, then a listpack of its integers
    // sorted, then the rest in order.
    let found = compare_with_commands(&server, stage("set", (2, 10), (1, 2)), 200);
    assert!(
        found.of("intset") > 0 && found.of("listpack") > 0,
        "{found:?}"
    );
    assert!(
        found.native < found.same_object,
        "the plain type loaded as SADD builds: {found:?}"
    );
    // 27 items of 299 bytes are one listpack of 8,188 bytes, 28 a quicklist whose first
    // node is exactly at the limit.
    let found = compare_with_commands(&server, stage("list", (26, 60), (299, 299)), 40);
    assert!(
        found.of("listpack") > 0 && found.of("quicklist") > 0 && found.commands == 0,
        "{found:?}"
    );
    // Items longer than a node: plain nodes of their own (Valkey 8+, Redis 7.4+).
    // Which of one or two items stay one listpack their lengths tell.
    let found = compare_with_commands(&server, stage("list", (1, 12), (8000, 8400)), 40);
    assert!(
        found.same_object == 40 && found.of("quicklist") > 0 && found.by_items > 0,
        "{found:?}"
    );
    // Lists of one listpack, of several nodes, and between, where the items tell (and
    // where they show that no payload loads as the object the commands made).
    let found = compare_with_commands(&server, stage("list", (1, 400), (30, 100)), 150);
    assert!(
        found.of("listpack") > 0 && found.of("quicklist") > 0 && found.by_items > 0,
        "{found:?}"
    );
    assert_eq!(found.same_object + found.commands, 150, "{found:?}");
    assert_eq!(found.commands, found.not_reloadable, "{found:?}");
    // Items of 10 bytes (12 in a listpack) in one command each: 683 to 818 of them pass
    // RPUSH's check of their raw bytes but make a listpack over 8 KiB, which a load would
    // split; from 819 on, a quicklist from the first item.
    let found = compare_with_commands(&server, stage("list", (650, 900), (10, 10)), 60);
    assert!(
        found.not_reloadable > 0 && found.by_items > 0 && found.of("listpack") > 0,
        "{found:?}"
    );
    assert_eq!(found.commands, found.not_reloadable, "{found:?}");
    let found = compare_with_commands(&server, stage("hash", (1, 600), (1, 70)), 60);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    assert_eq!(
        found.native, found.same_object,
        "our own listpacks: {found:?}"
    );
    let found = compare_with_commands(&server, stage("zset", (1, 200), (4, 70)), 60);
    assert!(found.same_object > 0 && found.by_value > 0, "{found:?}");
    // Streams: the same entries and nodes (Valkey writes the type of RDB 11, a payload the
    // lowest that has them).
    let found = compare_with_commands(
        &server,
        stage("stream", (1, 450), (1, 40)).set("entry_fields", 2i64),
        60,
    );
    assert_eq!(found.same_object, 60, "{found:?}");
}

/// On Valkey, lists of 600 to 1,000 items of 10 to 12 bytes, each in one `RPUSH`: their
/// items decide whether the commands leave one listpack over the node limit (which no
/// payload loads as: written with commands) or a quicklist (restored). A run restores
/// exactly the keys cachefill's layout says, and leaves the dataset and every key's
/// encoding the commands leave.
#[test]
fn lists_whose_items_decide_are_restored_where_a_load_keeps_their_object() {
    let server = RedisServer::of(ServerKind::Valkey9, &[]);
    let scratch = Scratch::new();
    let plan = |write: &str| {
        let plan = PlanBuilder::new()
            .seed(8)
            .target(server.target().flush(true).set("write", write))
            .stage(stage("list", (600, 1000), (10, 12)).keys(300));
        scratch.plan(&format!("{write}.toml"), &plan.build())
    };
    let result = run_ok(&scratch, &plan("commands"), &[]);
    assert_eq!(restored(&result), [0]);
    let (digest, by_commands) = (server.digest(), encodings(&mut [&mut server.connect()]));
    let result = run_ok(&scratch, &plan("auto"), &[]);
    let dataset = dataset_of(&plan("auto"), &result);
    let chunking = Chunking::restoring(&dataset, &encoding_of(&server));
    let restorable = (0..300)
        .filter(|&i| chunking.form(&dataset, &dataset.entry(i)).restored)
        .count() as u64;
    assert!(
        (1..300).contains(&restorable),
        "some lists restore, some cannot: {restorable}"
    );
    assert!(
        (0..300).all(|i| chunking
            .restore
            .by_count(dataset.entry(i).elements)
            .is_none()),
        "every key's items decide"
    );
    assert_eq!(restored(&result), [restorable]);
    assert_eq!(server.dbsize(), 300);
    assert_eq!(server.digest(), digest, "the same dataset");
    let by_payloads = encodings(&mut [&mut server.connect()]);
    let differ = by_payloads
        .iter()
        .filter(|(key, encoding)| by_commands.get(*key) != Some(encoding))
        .count();
    assert_eq!(differ, 0, "keys in another encoding than the commands'");
    // What went with commands is what no load keeps: one listpack over the node limit.
    let mut conn = server.connect();
    for i in (0..300).filter(|&i| !chunking.form(&dataset, &dataset.entry(i)).restored) {
        let key = dataset.key(i);
        assert_eq!(by_payloads[&key], "listpack", "key {i}");
        let object: String = redis::cmd("DEBUG")
            .arg("OBJECT")
            .arg(&key)
            .query(&mut conn)
            .unwrap();
        let bytes: u64 = object
            .split(' ')
            .find_map(|f| f.strip_prefix("serializedlength:"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(bytes > 8192, "key {i}: {object}");
    }
}

/// A stage of every type but strings, `keys` keys each, half of them with a TTL.
fn every_typed_stage(plan: PlanBuilder, keys: u64) -> PlanBuilder {
    ["hash", "set", "zset", "list", "stream"]
        .iter()
        .enumerate()
        .fold(plan, |plan, (n, data_type)| {
            let stage = |name: String| {
                StageBuilder::new(&name)
                    .data_type(data_type)
                    .keys(keys)
                    .elements(1, 150)
                    .value_range(4, 70)
            };
            let plan = plan.stage(stage(format!("{data_type}{n}")));
            plan.stage(stage(format!("{data_type}{n}ttl")).ttl_range("1h", "2h"))
        })
}

/// Every key's encoding, by key.
fn encodings(conns: &mut [&mut redis::Connection]) -> HashMap<Vec<u8>, String> {
    let mut found = HashMap::new();
    for conn in conns {
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(*conn).unwrap();
        for key in keys {
            let encoding: String = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(&key)
                .query(*conn)
                .unwrap();
            found.insert(key, encoding);
        }
    }
    found
}

/// The result's `restored_keys` of every stage.
fn restored(result: &serde_json::Value) -> Vec<u64> {
    result["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["restored_keys"].as_u64().unwrap())
        .collect()
}

/// What every typed stage restored: all its keys.
const ALL: [u64; 10] = [400; 10];

#[test]
fn every_type_restores_the_dataset_its_commands_write() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = |write: &str| {
        let plan = PlanBuilder::new()
            .seed(5)
            .target(server.target().flush(true).set("write", write));
        scratch.plan(
            &format!("{write}.toml"),
            &every_typed_stage(plan, 400).build(),
        )
    };
    let result = run_ok(&scratch, &plan("commands"), &[]);
    assert_eq!(restored(&result), [0; 10]);
    let (digest, by_commands) = (server.digest(), encodings(&mut [&mut server.connect()]));
    let (output, result) = run_plan(&scratch, &plan("auto"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    assert_eq!(restored(&result), ALL);
    assert_eq!(server.dbsize(), 4000);
    assert_eq!(server.digest(), digest, "the same dataset");
    assert_eq!(
        encodings(&mut [&mut server.connect()]),
        by_commands,
        "the same encoding, key for key"
    );
    // The TTL rides with the RESTORE: every key of a TTL stage expires within its range.
    let mut conn = server.connect();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*ttl:*").query(&mut conn).unwrap();
    assert_eq!(keys.len(), 2000);
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!((3_500_000..=7_200_000).contains(&ttl), "{ttl} ms");
    }
    // The stage's end line says so.
    let line = String::from_utf8_lossy(&output.stderr);
    assert!(line.contains("stage hash0: ok, 400 keys (hash, "), "{line}");
    assert!(line.contains(" fields, restored)"), "{line}");
    assert_verified_stages(&scratch, &plan("auto"), &[400; 10]);
}

#[test]
fn a_cluster_restores_the_dataset_its_commands_write() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = |write: &str| {
        let plan = PlanBuilder::new()
            .seed(6)
            .target(cluster.target().flush(true).set("write", write));
        scratch.plan(
            &format!("{write}.toml"),
            &every_typed_stage(plan, 400).build(),
        )
    };
    run_ok(&scratch, &plan("commands"), &[]);
    let digest = cluster.digest_xor();
    let mut conns: Vec<redis::Connection> = cluster
        .primaries()
        .iter()
        .map(|(s, _)| s.connect())
        .collect();
    let by_commands = encodings(&mut conns.iter_mut().collect::<Vec<_>>());
    for conn in &mut conns {
        redis::cmd("CONFIG").arg("RESETSTAT").exec(conn).unwrap();
    }
    let result = run_ok(&scratch, &plan("auto"), &[]);
    assert_eq!(restored(&result), ALL);
    assert_eq!(cluster.total_keys(), 4000);
    assert_eq!(cluster.digest_xor(), digest, "the same dataset");
    assert_eq!(
        encodings(&mut conns.iter_mut().collect::<Vec<_>>()),
        by_commands
    );
    // Each primary restored its share: RESTORE calls summed over the primaries.
    let calls: u64 = conns
        .iter_mut()
        .map(|conn| {
            let stats: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
            let line = stats
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_restore:calls="))
                .expect("every primary ran RESTORE");
            line.split(',').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(calls, 4000);
}

/// Payloads deep-checked by the server (`sanitize-dump-payload yes`) are all accepted.
#[test]
fn a_server_that_deep_checks_every_payload_accepts_them_all() {
    let server = RedisServer::start(&["--sanitize-dump-payload", "yes"]);
    let scratch = Scratch::new();
    let plan = every_typed_stage(
        PlanBuilder::new()
            .seed(7)
            .target(server.target().flush(true)),
        300,
    );
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(restored(&result), [300; 10]);
    let mut conn = server.connect();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let sanitized: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("dump_payload_sanitizations:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The server deep-checks every listpack and intset it loads: one per compact key, one
    // per node of a list.
    let mut listpacks = 0u64;
    for (key, encoding) in encodings(&mut [&mut conn]) {
        listpacks += match encoding.as_str() {
            "listpack" | "intset" => 1,
            "quicklist" => quicklist_nodes(&mut conn, &key),
            // One per node of its radix tree.
            "stream" => {
                let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(&key)
                    .query(&mut conn)
                    .unwrap();
                match info["radix-tree-keys"] {
                    redis::Value::Int(nodes) => nodes as u64,
                    ref other => panic!("radix-tree-keys: {other:?}"),
                }
            }
            _ => 0,
        };
    }
    assert_eq!(sanitized, listpacks, "payloads deep-checked");
    assert_verified_stages(&scratch, &plan, &[300; 10]);
}

/// A user who may not run `RESTORE` gets the same dataset, written with commands, and is
/// told so once; with `write = "restore"` the stage fails instead, saying why.
#[test]
fn a_user_without_restore_fills_with_commands() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    redis::cmd("ACL")
        .arg(&["SETUSER", "filler", "on", ">pw", "~*", "+@all", "-restore"])
        .exec(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = |write: &str| {
        let target = server
            .target()
            .flush(true)
            .user("filler", "FILLER_PASSWORD");
        let plan = PlanBuilder::new().seed(8).target(target).stage(
            StageBuilder::new("h")
                .data_type("hash")
                .keys(5000)
                .elements(1, 50)
                .set("write", write),
        );
        scratch.plan(&format!("{write}.toml"), &plan.build())
    };
    let run = |write: &str| {
        let output = cachefill(scratch.dir.path())
            .env("FILLER_PASSWORD", "pw")
            .args(["run", "-o", "result.json"])
            .arg(plan(write))
            .output()
            .unwrap();
        (output, read_result(&scratch.path("result.json")))
    };
    let (output, result) = run("commands");
    assert!(output.status.success(), "{}", stderr(&output));
    let digest = server.digest();

    let (output, result_auto) = run("auto");
    assert!(output.status.success(), "{}", stderr(&output));
    let stage = &result_auto["stages"][0];
    assert_eq!(stage["keys_written"], 5000);
    assert_eq!(stage["restored_keys"], 0);
    assert_eq!(server.digest(), digest, "the same dataset");
    let refused = result_auto["targets"]["main"]["restore_refused"]
        .as_str()
        .unwrap();
    assert!(refused.starts_with("NOPERM"), "{refused}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        said.matches("refused a RESTORE payload").count(),
        1,
        "told once: {said}"
    );
    assert!(result["targets"]["main"].get("restore_refused").is_none());

    let _: () = redis::cmd("FLUSHALL").query(&mut admin).unwrap();
    let (output, result) = run("restore");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "failed");
    assert_eq!(stage["restored_keys"], 0);
    let error = stage["first_error"].as_str().unwrap();
    assert!(
        error.contains("RESTORE") && error.contains("NOPERM") && error.contains("write = \"auto\""),
        "{error}"
    );
}

/// Redis 6.2 predates listpacks: `auto` writes commands there, `restore` refuses to start.
#[test]
fn write_restore_on_a_server_before_listpacks_fails_before_writing() {
    let server = RedisServer::of(ServerKind::Redis62, &[]);
    server.set("before", "the run");
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(9)
        .target(server.target().flush(true))
        .stage(
            StageBuilder::new("z")
                .data_type("zset")
                .keys(100)
                .set("write", "restore"),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        the_reason(&stderr(&output)),
        "cachefill: stage \"z\" has write = \"restore\", but its keys cannot be RESTORE payloads on target \"main\" (version 6.2.5): the server predates Redis 7.0's listpacks (RDB 10), the encodings cachefill writes; nothing was written. Set write = \"auto\" to write them with commands there"
    );
    assert_eq!(server.dbsize(), 1, "not even flushed");
    assert_eq!(result.unwrap()["stages"][0]["status"], "pending");

    // `auto` writes commands there, and says so once for the target.
    let plan = every_typed_stage(
        PlanBuilder::new()
            .seed(9)
            .target(server.target().flush(true)),
        100,
    );
    let plan = scratch.plan("auto.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(restored(&result.unwrap()), [0; 10]);
    assert_eq!(server.dbsize(), 1000);
    let said = stderr(&output);
    assert_eq!(
        said.matches("target \"main\": typed keys are written with commands, not as RESTORE payloads: the server predates Redis 7.0's listpacks (RDB 10), the encodings cachefill writes").count(),
        1,
        "{said}"
    );
}

/// Random shapes (a seeded draw of type, element counts, sizes, field names, scores, entry
/// fields), each filled with commands and compared key for key with its payloads, on
/// servers that deep-check every payload they load (`sanitize-dump-payload yes`): a payload
/// a server would not load as the object commands make fails here, not on a user's server.
#[test]
fn random_shapes_restore_as_the_objects_commands_make() {
    let mut draw = {
        // Another draw by hand: CACHEFILL_SHAPES_SEED=N cargo test --test restore random
        let mut state = std::env::var("CACHEFILL_SHAPES_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(0x5EED_u64);
        move |below: u64| {
            state = cachefill::__private::mix64(state.wrapping_add(0x9E37_79B9_7F4A_7C15));
            state % below
        }
    };
    let mut seen = HashMap::new();
    for kind in [ServerKind::Redis7, ServerKind::Valkey9] {
        let server = RedisServer::of(
            kind,
            &[NO_COMPRESSION, &["--sanitize-dump-payload", "yes"]].concat(),
        );
        for _ in 0..12 {
            let data_type = ["hash", "set", "zset", "list", "stream"][draw(5) as usize];
            let bound = [10, 140, 600][draw(3) as usize];
            let max = 1 + draw(bound);
            let min = 1 + draw(max);
            let width = max.saturating_sub(1).to_string().len() as u64;
            let value_max: u64 = [2, 70, 300, 9000][draw(4) as usize];
            let value_min = match data_type {
                "set" | "zset" => {
                    let room = value_max.max(width + 1) - width;
                    width + draw(room)
                }
                _ => 1 + draw(value_max),
            }
            .min(value_max.max(width));
            let mut stage = stage(data_type, (min, max), (value_min, value_max.max(value_min)));
            match data_type {
                "hash" => {
                    let extra = draw(20);
                    stage = stage.set("field_size", (width + extra) as i64);
                }
                "stream" => {
                    let pairs = 1 + draw(4);
                    let width = (pairs - 1).to_string().len() as u64;
                    let extra = draw(12);
                    stage = stage
                        .set("entry_fields", pairs as i64)
                        .set("field_size", (width + extra) as i64);
                }
                "zset" => {
                    let which = draw(3) as usize;
                    let reach = [10i64, 5_000_000, 1 << 53][which];
                    let mut range = toml::Table::new();
                    range.insert("min".into(), (-reach).into());
                    range.insert("max".into(), reach.into());
                    stage = stage.set("score", range);
                }
                _ => {}
            }
            if draw(3) == 0 {
                stage = stage.ttl_range("1h", "2h");
            }
            eprintln!(
                "{kind:?}: {data_type}, elements {min}..={max}, values {value_min}..={value_max}, {:?}",
                stage.write()
            );
            let found = compare_with_commands(&server, stage, 40);
            assert_eq!(found.same_object + found.by_value + found.commands, 40);
            *seen.entry(data_type).or_insert(0) += found.same_object + found.by_value;
        }
    }
    assert!(seen.len() >= 4, "the draw covered most types: {seen:?}");
}

/// A server whose `RESTORE` is renamed away refuses the first payload (`unknown command`):
/// the target turns to commands and the dataset is the same.
#[test]
fn a_server_without_restore_gets_commands_and_the_same_dataset() {
    let server = RedisServer::start(&["--rename-command", "RESTORE", ""]);
    let scratch = Scratch::new();
    let plan = |write: &str| {
        let plan = PlanBuilder::new()
            .seed(12)
            .target(server.target().flush(true).set("write", write));
        scratch.plan(
            &format!("{write}.toml"),
            &every_typed_stage(plan, 200).build(),
        )
    };
    run_ok(&scratch, &plan("commands"), &[]);
    let digest = server.digest();
    let (output, result) = run_plan(&scratch, &plan("auto"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    assert_eq!(restored(&result), [0; 10]);
    assert_eq!(server.dbsize(), 2000);
    assert_eq!(server.digest(), digest, "the same dataset");
    let refused = result["targets"]["main"]["restore_refused"]
        .as_str()
        .unwrap();
    assert!(refused.contains("unknown command"), "{refused}");
}

/// Without `CONFIG GET` the servers' default limits are assumed, and said: on a server at
/// its defaults, the payloads are its own objects all the same.
#[test]
fn a_user_without_config_is_told_the_defaults_are_assumed() {
    let server = RedisServer::start(&[]);
    redis::cmd("ACL")
        .arg(&["SETUSER", "filler", "on", ">pw", "~*", "+@all", "-config"])
        .exec(&mut server.connect())
        .unwrap();
    let scratch = Scratch::new();
    let commands = every_typed_stage(
        PlanBuilder::new()
            .seed(13)
            .target(server.target().flush(true).set("write", "commands")),
        200,
    );
    run_ok(
        &scratch,
        &scratch.plan("commands.toml", &commands.build()),
        &[],
    );
    let digest = server.digest();
    let plan = every_typed_stage(
        PlanBuilder::new().seed(13).target(
            server
                .target()
                .flush(true)
                .user("filler", "FILLER_PASSWORD"),
        ),
        200,
    );
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .env("FILLER_PASSWORD", "pw")
        .args(["run", "-o", "result.json"])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stderr(&output);
    assert_eq!(
        said.matches(
            "may not run CONFIG GET, so cachefill assumes the servers' default encoding limits"
        )
        .count(),
        1,
        "{said}"
    );
    let result = read_result(&scratch.path("result.json"));
    assert_eq!(restored(&result), [200; 10]);
    assert_eq!(server.digest(), digest, "the same dataset");
}
