//! `cachefill profile`: a "production-like" server written by the test itself (pipelined
//! commands, no cachefill), profiled read-only within the rate cap; the plan it writes fills
//! a fresh server of the same shape, which profiles back to the same plan.

use crate::support;

use std::collections::BTreeMap;
use std::time::Instant;

use support::{
    Proxy, RedisCluster, RedisServer, Scratch, cachefill, on_a_terminal, require, stderr,
};

/// A string planted in the source's values: it must never reach a plan.
const PLANTED: &str = "PLANTED-secret-value-7f3c";

/// SplitMix64: the test's own deterministic draws.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `min..=max`.
    fn within(&mut self, min: u64, max: u64) -> u64 {
        min + self.next() % (max - min + 1)
    }

    /// Skewed: `share` percent from the large range, the rest from the small one.
    fn skewed(&mut self, small: (u64, u64), large: (u64, u64), share: u64) -> u64 {
        if self.next() % 100 < share {
            self.within(large.0, large.1)
        } else {
            self.within(small.0, small.1)
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A value of `len` bytes holding the planted string when it fits.
fn value(len: u64, draws: &mut Draws) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|_| b'a' + (draws.next() % 26) as u8).collect();
    if len as usize >= PLANTED.len() {
        bytes[..PLANTED.len()].copy_from_slice(PLANTED.as_bytes());
    }
    bytes
}

/// What the test wrote for one stage-to-be: keys, and the sums of what profile measures.
#[derive(Debug, Default, Clone)]
struct Truth {
    keys: u64,
    elements: u64,
    value_bytes: u64,
    values: u64,
}

impl Truth {
    fn mean_elements(&self) -> f64 {
        self.elements as f64 / self.keys as f64
    }
    fn mean_value(&self) -> f64 {
        self.value_bytes as f64 / self.values as f64
    }
}

/// One key's commands.
struct Written {
    key: Vec<u8>,
    commands: Vec<redis::Cmd>,
}

/// The production-like dataset, `keys_per_pattern` scaling its size: 7 patterns over the six
/// types, with and without TTLs, skewed sizes. Returns the commands and, per stage name the
/// profile will give, what was written.
fn production(units: u64) -> (Vec<Written>, BTreeMap<String, Truth>) {
    let mut draws = Draws(7);
    let mut out = Vec::new();
    let mut truth: BTreeMap<String, Truth> = BTreeMap::new();
    let mut add = |out: &mut Vec<Written>, stage: &str, key, commands, elements, values: &[u64]| {
        let t = truth.entry(stage.to_string()).or_default();
        t.keys += 1;
        t.elements += elements;
        t.value_bytes += values.iter().sum::<u64>();
        t.values += values.len() as u64;
        out.push(Written { key, commands });
    };
    // Hashes: user profiles, 3..12 fields, values mostly short, some long.
    for i in 0..8 * units {
        let key = format!("user:{}:profile", 100_000 + i * 7).into_bytes();
        let fields = draws.within(3, 12);
        let (hset, lens) = variadic("HSET", &key, fields, &mut draws, |hset, f, draws| {
            let len = draws.skewed((8, 24), (40, 60), 15);
            hset.arg(format!("field{f:02}")).arg(value(len, draws));
            len
        });
        add(
            &mut out,
            "user-profile-hash",
            key,
            vec![hset],
            fields,
            &lens,
        );
    }
    // Strings with TTL: sessions named by a hex id, values skewed.
    for i in 0..8 * units {
        let id = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let key = format!("session:{id:016x}").into_bytes();
        let len = draws.skewed((80, 200), (1000, 3000), 5);
        let (stage, commands) = string(&mut draws, &key, len, 100, "session-string");
        add(&mut out, &stage, key, commands, 1, &[len]);
    }
    // Sets in a hash tag, half of them expiring.
    for i in 0..3 * units {
        let key = format!("{{tenant:{i}}}:tags").into_bytes();
        let members = draws.within(2, 20);
        let (sadd, lens) = variadic("SADD", &key, members, &mut draws, |sadd, m, draws| {
            let len = draws.within(6, 16);
            sadd.arg(member(m, len, draws));
            len
        });
        let mut commands = vec![sadd];
        let stage = maybe_ttl(&mut draws, 50, &mut commands, &key, "tenant-tags-set");
        add(&mut out, &stage, key, commands, members, &lens);
    }
    // Sorted sets: leaderboards, members skewed in number (all stay listpack).
    for i in 0..units {
        let key = format!("leaderboard:{i}").into_bytes();
        let members = draws.skewed((5, 20), (60, 100), 20);
        let (zadd, lens) = variadic("ZADD", &key, members, &mut draws, |zadd, m, draws| {
            let len = draws.within(8, 14);
            zadd.arg(draws.within(0, 100_000))
                .arg(member(m, len, draws));
            len
        });
        add(
            &mut out,
            "leaderboard-zset",
            key,
            vec![zadd],
            members,
            &lens,
        );
    }
    // Lists: recent items, 30 % expiring.
    for i in 0..3 * units {
        let key = format!("feed:{i}:recent").into_bytes();
        let items = draws.within(5, 40);
        let (rpush, lens) = variadic("RPUSH", &key, items, &mut draws, |rpush, _, draws| {
            let len = draws.skewed((20, 60), (150, 250), 10);
            rpush.arg(value(len, draws));
            len
        });
        let mut commands = vec![rpush];
        let stage = maybe_ttl(&mut draws, 30, &mut commands, &key, "feed-recent-list");
        add(&mut out, &stage, key, commands, items, &lens);
    }
    // Streams: events, 3 fields per entry.
    for i in 0..units / 2 {
        let key = format!("events:{i}").into_bytes();
        let entries = draws.within(5, 30);
        let mut commands = Vec::new();
        let mut lens = Vec::new();
        for e in 0..entries {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(&key)
                .arg(format!("{}-0", 1_700_000_000_000u64 + e));
            for f in ["kind", "page", "user"] {
                let len = draws.within(4, 30);
                xadd.arg(f).arg(value(len, &mut draws));
                lens.push(len);
            }
            commands.push(xadd);
        }
        add(&mut out, "events-stream", key, commands, entries, &lens);
    }
    // Strings: a page cache, most without TTL.
    for i in 0..6 * units {
        let key = format!("cache:page:{i:06}").into_bytes();
        let len = draws.skewed((10, 50), (300, 600), 10);
        let (stage, commands) = string(&mut draws, &key, len, 20, "cache-page-string");
        add(&mut out, &stage, key, commands, 1, &[len]);
    }
    (out, truth)
}

/// `NAME key` and `count` elements, each added by `element` (given its index), which
/// returns the bytes profile measures of it.
fn variadic(
    name: &str,
    key: &[u8],
    count: u64,
    draws: &mut Draws,
    mut element: impl FnMut(&mut redis::Cmd, u64, &mut Draws) -> u64,
) -> (redis::Cmd, Vec<u64>) {
    let mut command = redis::cmd(name);
    command.arg(key);
    let lens = (0..count)
        .map(|j| element(&mut command, j, draws))
        .collect();
    (command, lens)
}

/// `SET key value` of `len` bytes, expiring in `ttl_percent` % of cases: its stage and
/// commands.
fn string(
    draws: &mut Draws,
    key: &[u8],
    len: u64,
    ttl_percent: u64,
    stage: &str,
) -> (String, Vec<redis::Cmd>) {
    let mut set = redis::cmd("SET");
    set.arg(key).arg(value(len, draws));
    let mut commands = vec![set];
    let stage = maybe_ttl(draws, ttl_percent, &mut commands, key, stage);
    (stage, commands)
}

/// A member of `len` bytes starting with its index (so unique in its key).
fn member(index: u64, len: u64, draws: &mut Draws) -> Vec<u8> {
    let mut member = format!("m{index:03}").into_bytes();
    member.extend(value(len - 4, draws));
    member
}

/// Expires the key in `percent` % of cases (a `PEXPIRE` of 1 to 2 hours after its
/// commands); the stage it belongs to: `stage`, with `-ttl` when it expires.
fn maybe_ttl(
    draws: &mut Draws,
    percent: u64,
    commands: &mut Vec<redis::Cmd>,
    key: &[u8],
    stage: &str,
) -> String {
    if !draws.chance(percent) {
        return stage.to_string();
    }
    let mut expire = redis::cmd("PEXPIRE");
    expire.arg(key).arg(draws.within(3_600_000, 7_200_000));
    commands.push(expire);
    format!("{stage}-ttl")
}

/// Writes the dataset to one server, pipelined.
fn write_standalone(server: &RedisServer, data: &[Written]) {
    let mut conn = server.connect();
    for chunk in data.chunks(500) {
        let mut pipe = redis::pipe();
        for written in chunk {
            for command in &written.commands {
                pipe.add_command(command.clone()).ignore();
            }
        }
        pipe.exec(&mut conn).unwrap();
    }
}

/// Writes the dataset to a cluster, each key to the primary of its slot.
fn write_cluster(cluster: &RedisCluster, data: &[Written]) {
    let mut routes = cluster.routes();
    for written in data {
        let mut pipe = redis::pipe();
        for command in &written.commands {
            pipe.add_command(command.clone()).ignore();
        }
        pipe.exec(routes.conn_for(&written.key)).unwrap();
    }
}

/// `INFO commandstats` as command → calls.
fn command_calls(server: &RedisServer) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.connect())
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

fn used_memory(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut server.connect())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs `profile` on `target` (a plan of that one target) with `extra` arguments; returns
/// the written plan and the standard error.
fn profile(
    scratch: &Scratch,
    target: support::TargetBuilder,
    out: &str,
    extra: &[&str],
) -> (String, String) {
    let plan = support::PlanBuilder::new().target(target).build();
    let plan = scratch.plan(&format!("{out}.source.toml"), &plan);
    let output = cachefill(scratch.dir.path())
        .arg("profile")
        .arg(&plan)
        .arg("-o")
        .arg(scratch.path(out))
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (
        std::fs::read_to_string(scratch.path(out)).unwrap(),
        stderr(&output),
    )
}

/// `profile` sampling every key, uncapped.
fn full_profile(
    scratch: &Scratch,
    target: support::TargetBuilder,
    out: &str,
    extra: &[&str],
) -> (String, String) {
    let mut args = vec!["--sample", "100000", "--max-ops", "0"];
    args.extend_from_slice(extra);
    profile(scratch, target, out, &args)
}

/// The plan's stages by name, as TOML tables.
fn stages(plan: &str) -> BTreeMap<String, toml::Table> {
    let plan: toml::Table = plan.parse().unwrap();
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let s = s.as_table().unwrap().clone();
            (s["name"].as_str().unwrap().to_string(), s)
        })
        .collect()
}

/// The mean of an integer or `{ min, max }` field (1 when absent).
fn mean(stage: &toml::Table, field: &str) -> f64 {
    match stage.get(field) {
        None => 1.0,
        Some(toml::Value::Integer(n)) => *n as f64,
        Some(toml::Value::Table(t)) => {
            (t["min"].as_integer().unwrap() + t["max"].as_integer().unwrap()) as f64 / 2.0
        }
        Some(other) => panic!("{field} = {other}"),
    }
}

fn keys(stage: &toml::Table) -> u64 {
    stage["keys"].as_integer().unwrap() as u64
}

fn within(what: &str, found: f64, expected: f64, tolerance: f64) {
    let off = (found - expected).abs() / expected;
    assert!(
        off <= tolerance,
        "{what}: {found} against {expected} ({:.1} % off, {:.0} % allowed)",
        off * 100.0,
        tolerance * 100.0
    );
}

/// The plan with its launched target replaced by `target` (an existing server).
fn aimed_at(plan: &str, nodes: &str) -> String {
    let launched = plan
        .lines()
        .find(|l| l.starts_with("launch = "))
        .expect("a launched target");
    plan.replacen(launched, &format!("nodes = [\"{nodes}\"]"), 1)
}

fn run_plan(scratch: &Scratch, name: &str, plan: &str) {
    let path = scratch.plan(name, plan);
    let output = cachefill(scratch.dir.path())
        .args(["run", "--quiet", "-o"])
        .arg(scratch.path(&format!("{name}.result.json")))
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

fn check_ok(scratch: &Scratch, name: &str, plan: &str) -> String {
    let path = scratch.plan(name, plan);
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What both profiles must agree on, and what the first must say of the truth.
fn assert_round_trip(truth: &BTreeMap<String, Truth>, first: &str, second: &str) {
    let first = stages(first);
    let second = stages(second);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "one stage per pattern, type and TTL"
    );
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (name, t) in truth {
        let (a, b) = (&first[name], &second[name]);
        assert_eq!(keys(a), t.keys, "{name}: keys of the first profile");
        within(
            &format!("{name}: keys again"),
            keys(b) as f64,
            t.keys as f64,
            0.02,
        );
        assert_eq!(a.get("type"), b.get("type"), "{name}");
        assert_eq!(a.contains_key("ttl"), b.contains_key("ttl"), "{name}");
        assert_eq!(a.contains_key("ttl"), name.ends_with("-ttl"), "{name}");
        if a.contains_key("type") {
            within(
                &format!("{name}: mean elements"),
                mean(a, "elements"),
                t.mean_elements(),
                0.10,
            );
            within(
                &format!("{name}: mean elements again"),
                mean(b, "elements"),
                t.mean_elements(),
                0.10,
            );
        }
        within(
            &format!("{name}: mean value size"),
            mean(a, "value_size"),
            t.mean_value(),
            0.10,
        );
        within(
            &format!("{name}: mean value size again"),
            mean(b, "value_size"),
            t.mean_value(),
            0.10,
        );
        for field in ["field_size", "entry_fields"] {
            if a.contains_key(field) {
                within(
                    &format!("{name}: {field} again"),
                    mean(b, field),
                    mean(a, field),
                    0.10,
                );
            }
        }
    }
}

/// The read commands profile may send (as `INFO commandstats` names them).
const READS: &[&str] = &[
    // The end of a control connection's login: the server answers before it counts.
    "ping",
    "dbsize",
    "scan",
    "type",
    "pttl",
    "memory|usage",
    "object|encoding",
    "strlen",
    "hlen",
    "scard",
    "zcard",
    "llen",
    "xlen",
    "hrandfield",
    "srandmember",
    "zrandmember",
    "lrange",
    "xrange",
];

/// A server holding the production-like dataset, its command statistics reset.
fn production_server(units: u64) -> (RedisServer, BTreeMap<String, Truth>) {
    let source = RedisServer::start(&[]);
    let (data, truth) = production(units);
    write_standalone(&source, &data);
    assert_eq!(source.dbsize(), truth.values().map(|t| t.keys).sum::<u64>());
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut source.connect())
        .unwrap();
    (source, truth)
}

#[test]
fn a_profiled_server_is_reproduced_by_the_plan_and_only_read() {
    require("redis-server");
    let scratch = Scratch::new();
    let (source, truth) = production_server(1000);
    let total: u64 = truth.values().map(|t| t.keys).sum();

    let (plan, said) = full_profile(&scratch, source.target(), "shape.toml", &[]);

    // Only reads, each counted: per key its type, TTL, memory and encoding, then its count
    // and a few elements.
    let calls = command_calls(&source);
    let unexpected: Vec<_> = calls
        .keys()
        .filter(|c| !READS.contains(&c.as_str()) && c.as_str() != "config|resetstat")
        .collect();
    assert!(unexpected.is_empty(), "not read commands: {unexpected:?}");
    for per_key in ["type", "pttl", "memory|usage", "object|encoding"] {
        assert_eq!(calls[per_key], total, "{per_key}");
    }
    let of = |prefix: &str| -> u64 {
        truth
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, t)| t.keys)
            .sum()
    };
    assert_eq!(calls["hlen"], of("user-profile"));
    assert_eq!(calls["hrandfield"], of("user-profile"));
    assert_eq!(calls["strlen"], of("session") + of("cache-page"));
    assert_eq!(calls["scard"], of("tenant-tags"));
    assert_eq!(calls["zrandmember"], of("leaderboard"));
    assert_eq!(calls["lrange"], of("feed-recent"));
    assert_eq!(calls["xrange"], of("events"));
    assert_eq!(calls["dbsize"], 1);
    // The login's PING is not one of profile's reads.
    let reads: u64 = calls
        .iter()
        .filter(|(c, _)| READS.contains(&c.as_str()) && c.as_str() != "ping")
        .map(|(_, n)| n)
        .sum();
    assert!(
        said.contains(&format!(
            "{total} of {total} keys sampled with {reads} read commands"
        )),
        "{said}"
    );

    // Nothing of a value's content.
    assert!(!plan.contains(PLANTED), "{plan}");
    assert!(plan.contains("seed = 1\n"), "{plan}");
    assert!(
        plan.contains("#   nodes = [\"127.0.0.1:"),
        "the profiled target kept as a comment: {plan}"
    );
    check_ok(&scratch, "shape.toml", &plan);

    // Fill a fresh server from the plan and profile it again.
    let copy = RedisServer::start(&[]);
    run_plan(&scratch, "copy.toml", &aimed_at(&plan, &copy.addr()));
    assert_eq!(
        copy.dbsize(),
        total,
        "at scale 1 and a full sample, every count is exact"
    );
    let (again, _) = full_profile(&scratch, copy.target(), "again.toml", &[]);
    assert_round_trip(&truth, &plan, &again);
    within(
        "used_memory",
        used_memory(&copy) as f64,
        used_memory(&source) as f64,
        0.15,
    );

    // A tenth of the keys, the same shape; and a plan sized to 1 GiB of payload.
    let (tenth, _) = profile(
        &scratch,
        source.target(),
        "tenth.toml",
        &["--sample", "100000", "--max-ops", "0", "--scale", "0.1"],
    );
    let tenth_stages = stages(&tenth);
    for (name, stage) in stages(&plan) {
        let expected = (keys(&stage) as f64 / 10.0).round().max(1.0);
        assert_eq!(keys(&tenth_stages[&name]) as f64, expected, "{name}");
        assert_eq!(
            mean(&tenth_stages[&name], "value_size"),
            mean(&stage, "value_size"),
            "{name}"
        );
    }
    let (sized, _) = profile(
        &scratch,
        source.target(),
        "sized.toml",
        &["--sample", "100000", "--max-ops", "0", "--size", "1GiB"],
    );
    let checked = check_ok(&scratch, "sized.toml", &sized);
    let total_line = checked.lines().find(|l| l.starts_with("total:")).unwrap();
    let gib: f64 = total_line
        .rsplit_once('~')
        .and_then(|(_, size)| size.strip_suffix(" GiB"))
        .unwrap_or_else(|| panic!("{total_line}"))
        .parse()
        .unwrap();
    within("payload of --size 1GiB", gib, 1.0, 0.05);
}

/// profile only reads, so a round trip cut by a reset link is sent again on a new
/// connection: through a link reset every 100 kB of requests, every key is still profiled,
/// into the stages (names, types, key counts, whether with a TTL) of a profile over a sound
/// link.
#[test]
fn a_link_reset_while_profiling_is_connected_again_and_every_key_profiled() {
    require("redis-server");
    let scratch = Scratch::new();
    let (source, truth) = production_server(1000);
    let proxy = Proxy::to(&source);
    let (sound, _) = full_profile(&scratch, proxy.target(), "sound.toml", &[]);
    proxy.reset_after(Some(100_000));
    let (cut, _) = full_profile(&scratch, proxy.target(), "cut.toml", &[]);
    let resets = proxy.resets();
    proxy.reset_after(None);
    assert!(resets >= 3, "only {resets} resets: the test did not test");
    let (sound, cut) = (stages(&sound), stages(&cut));
    assert_eq!(
        sound.keys().collect::<Vec<_>>(),
        cut.keys().collect::<Vec<_>>()
    );
    for (name, stage) in &sound {
        for field in ["type", "keys"] {
            assert_eq!(stage.get(field), cut[name].get(field), "{name}.{field}");
        }
        // TTLs run down between the two profiles: the same stages have one.
        assert_eq!(
            stage.contains_key("ttl"),
            cut[name].contains_key("ttl"),
            "{name}"
        );
    }
    let keys: i64 = cut.values().map(|s| s["keys"].as_integer().unwrap()).sum();
    assert_eq!(keys as u64, truth.values().map(|t| t.keys).sum::<u64>());
}

#[test]
fn a_cluster_is_profiled_on_every_primary_and_reproduced() {
    require("redis-server");
    let scratch = Scratch::new();
    let source = RedisCluster::start(3, 0);
    let (data, truth) = production(300);
    write_cluster(&source, &data);
    let total: u64 = truth.values().map(|t| t.keys).sum();
    assert_eq!(source.total_keys(), total);

    let (plan, said) = full_profile(&scratch, source.target(), "shape.toml", &[]);
    assert!(
        said.contains(&format!("{total} of {total} keys sampled")),
        "{said}"
    );
    assert!(
        plan.contains("launch = { primaries = 3, replicas = 0 }"),
        "{plan}"
    );
    assert!(!plan.contains(PLANTED));
    check_ok(&scratch, "shape.toml", &plan);

    let copy = RedisCluster::start(3, 0);
    run_plan(
        &scratch,
        "copy.toml",
        &aimed_at(&plan, &copy.servers[0].addr()),
    );
    assert_eq!(copy.total_keys(), total);
    let (again, _) = full_profile(&scratch, copy.target(), "again.toml", &[]);
    assert_round_trip(&truth, &plan, &again);
    let memory = |c: &RedisCluster| -> f64 {
        c.primaries()
            .iter()
            .map(|(s, _)| used_memory(s) as f64)
            .sum()
    };
    within("used_memory", memory(&copy), memory(&source), 0.15);
}

#[test]
fn the_rate_cap_bounds_the_commands_a_server_sees() {
    require("redis-server");
    let scratch = Scratch::new();
    let (source, _) = production_server(40);
    let started = Instant::now();
    let (plan, _) = profile(
        &scratch,
        source.target(),
        "shape.toml",
        &["--max-ops", "1000"],
    );
    let elapsed = started.elapsed().as_secs_f64();
    let reads: u64 = command_calls(&source)
        .iter()
        .filter(|(c, _)| READS.contains(&c.as_str()))
        .map(|(_, n)| n)
        .sum();
    // At most a burst (a tenth of a second's worth) plus the rate over the time it took.
    assert!(
        reads as f64 <= 100.0 + 1000.0 * elapsed,
        "{reads} commands in {elapsed:.2} s"
    );
    assert!(reads > 1000, "enough commands to be paced: {reads}");
    assert!(plan.contains("[[stages]]"));
}

#[test]
fn profile_names_what_is_wrong_in_one_line() {
    require("redis-server");
    let scratch = Scratch::new();
    let empty = RedisServer::start(&[]);
    let plan = support::PlanBuilder::new().target(empty.target()).build();
    let plan = scratch.plan("plan.toml", &plan);
    let run = |args: &[&str]| {
        cachefill(scratch.dir.path())
            .arg("profile")
            .arg(&plan)
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "cachefill: target \"main\": no keys in database 0 (DBSIZE 0 on every primary): nothing to profile"
    );
    let output = run(&["--target", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--target \"nope\" is not a target of"),
        "{}",
        stderr(&output)
    );
    let output = run(&["--scale", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--scale must be a number above 0"),
        "{}",
        stderr(&output)
    );
}

/// On a terminal, profile shows a bar of the keys sampled (of the sample it aims at, keys
/// per second, ETA), cleared before its closing line. `script` gives it a terminal.
#[test]
fn on_a_terminal_profile_shows_a_bar_of_the_keys_sampled() {
    let server = RedisServer::start(&[]);
    server.populate(20_000, 16);
    let scratch = Scratch::new();
    let plan = support::PlanBuilder::new().target(server.target()).build();
    let plan = scratch.plan("source.toml", &plan);
    let (ok, screen) = on_a_terminal(
        &scratch,
        &[
            "profile",
            plan.to_str().unwrap(),
            "--sample",
            "5000",
            "--max-ops",
            "0",
            "-o",
            "shape.toml",
        ],
    );
    assert!(ok, "{screen}");
    assert!(screen.contains("/5000 keys sampled · "), "{screen}");
    assert!(
        screen.contains("profiled target \"main\": 5000 of 20000 keys sampled with "),
        "{screen}"
    );
}

/// cachefill's own keys (prefix, zero-padded index, random filler up to `key_size`) profile
/// as one pattern per stage, every key counted, not as thousands of keys in `other`.
#[test]
fn cachefill_default_keys_profile_as_their_stages() {
    require("redis-server");
    let scratch = Scratch::new();
    let server = RedisServer::start(&[]);
    let plan = support::PlanBuilder::new()
        .target(server.target())
        .stage(
            support::StageBuilder::new("users")
                .keys(3000)
                .key_size(24)
                .value_size(40),
        )
        .stage(
            support::StageBuilder::new("carts")
                .keys(1200)
                .key_size(40)
                .value_size(200),
        )
        .build();
    run_plan(&scratch, "defaults.toml", &plan);
    assert_eq!(server.dbsize(), 4200);

    let (profiled, said) = full_profile(&scratch, server.target(), "defaults.profile.toml", &[]);
    let stages = stages(&profiled);
    let found: BTreeMap<&str, u64> = stages.iter().map(|(n, s)| (n.as_str(), keys(s))).collect();
    assert_eq!(
        found.values().copied().collect::<Vec<_>>(),
        vec![1200, 3000],
        "{said}\n{profiled}"
    );
    assert!(!found.keys().any(|n| n.contains("other")), "{profiled}");
    for (stage, size) in [(1200, 200.0), (3000, 40.0)] {
        let stage = stages.values().find(|s| keys(s) == stage).unwrap();
        assert_eq!(mean(stage, "value_size"), size);
    }
}

/// A cluster primary killed as soon as profile has read its `DBSIZE` (while its keys are
/// sampled, within a low rate cap): profile waits for its replica to take over, as the fill
/// does, samples the lost primary's keys again on it, from the start, and drops what it had
/// sampled there, so every key is counted once: with a sample of every key, the plan has
/// exactly the source's counts.
#[test]
fn profile_carries_on_through_a_failover_counting_each_key_once() {
    require("redis-server");
    let mut cluster = RedisCluster::start(3, 1);
    let scratch = Scratch::new();
    let source = support::PlanBuilder::new()
        .seed(5)
        .target(cluster.target().flush(true))
        .stage(
            support::StageBuilder::new("users")
                .keys(20_000)
                .value_size(40),
        )
        .stage(
            support::StageBuilder::new("carts")
                .data_type("hash")
                .keys(3_000)
                .elements(10, 10)
                .value_size(8),
        )
        .build();
    run_plan(&scratch, "source.toml", &source);
    let victim = cluster.a_primary();
    cluster.await_replica_of(victim);
    let before = cluster.servers[victim].calls("dbsize");
    let plan = support::PlanBuilder::new().target(cluster.target()).build();
    let plan = scratch.plan("profiled.source.toml", &plan);
    let child = cachefill(scratch.dir.path())
        .arg("profile")
        .arg(&plan)
        .args([
            "-o",
            "shape.toml",
            "--sample",
            "100000",
            "--max-ops",
            "3000",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_until(
        "profile has read the primary's DBSIZE",
        std::time::Duration::from_secs(30),
        || cluster.servers[victim].calls("dbsize") > before,
    );
    cluster.servers[victim].kill();
    let output = support::wait_for_exit(child, std::time::Duration::from_secs(180));
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("(sampled a lost primary's keys on the replica that took over)"),
        "{said}"
    );
    let profiled = std::fs::read_to_string(scratch.path("shape.toml")).unwrap();
    let mut counts: Vec<u64> = stages(&profiled).values().map(keys).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![3_000, 20_000], "{said}\n{profiled}");
}
