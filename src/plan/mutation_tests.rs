//! Thousands of mutated plans through validation, in-process: lines deleted, duplicated and
//! swapped, fields set to odd values, huge numbers, deep tables, random and non-UTF-8 bytes,
//! all starting from the plans of `plans/`, `examples/` and the docs. Each is a valid plan or
//! exactly one error line naming the file; none panics. Deterministic: the same seeds every
//! run, and a failure names the seed and shows the plan.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use super::*;
use crate::mix::mix64;

/// The plan file the mutated plans pretend to be.
const FILE: &str = "dir/mutated.toml";

/// The plans mutations start from: the repository's plans and the docs' examples.
fn seeds() -> Vec<String> {
    let mut seeds: Vec<String> = [
        include_str!("../../plans/quickstart.toml"),
        include_str!("../../plans/shop.toml"),
        include_str!("../../plans/cluster-5g.toml"),
        include_str!("../../plans/local-cluster.toml"),
        include_str!("../../examples/ci-fixture.toml"),
        include_str!("../../plans/eviction-drill.toml"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for doc in [
        include_str!("../../docs/plan-format.md"),
        include_str!("../../README.md"),
    ] {
        for block in doc.split("```toml").skip(1) {
            seeds.extend(block.split("```").next().map(str::to_string));
        }
    }
    seeds
}

/// SplitMix64, seeded per case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Field names of the plan format, to set where they do not belong too.
const FIELDS: &[&str] = &[
    "version",
    "name",
    "seed",
    "mode",
    "nodes",
    "launch",
    "server_bin",
    "username",
    "password_env",
    "password_file",
    "db",
    "flush",
    "connect_timeout",
    "failover_timeout",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "insecure",
    "target",
    "size",
    "keys",
    "until_memory",
    "key_size",
    "value_size",
    "key_prefix",
    "ttl",
    "connections",
    "pipeline",
    "keys_per_command",
    "after",
    "type",
    "elements",
    "score",
    "field_size",
    "entry_fields",
    "primaries",
    "replicas",
    "min",
    "max",
];

/// Values of every type and edge, valid somewhere or nowhere.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "1024",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e308",
    "-0.0",
    "nan",
    "inf",
    "0.5",
    "true",
    "\"\"",
    "\"x\"",
    "\"0B\"",
    "\"1B\"",
    "\"64MiB\"",
    "\"65MiB\"",
    "\"18446744073709551615B\"",
    "\"99999999999999999999GiB\"",
    "\"16EiB\"",
    "\"100%\"",
    "\"0%\"",
    "\"1e-9%\"",
    "\"NaN%\"",
    "\"1h\"",
    "\"0s\"",
    "\"100y\"",
    "\"584942417355y\"",
    "\"99999999999999999999s\"",
    "\"standalone\"",
    "\"cluster\"",
    "\"hash\"",
    "\"stream\"",
    "\"127.0.0.1:0\"",
    "\"[::1]:65536\"",
    "\"../../etc/passwd\"",
    "\"a\\nb\"",
    "\"\\u0000\"",
    "\"\\r\\n\"",
    "\"ünïcödé\"",
    "[]",
    "[\"s\"]",
    "[\"a\", \"a\"]",
    "[1, \"x\"]",
    "{}",
    "{ min = 1, max = 0 }",
    "{ min = 0, max = 18446744073709551615 }",
    "{ min = \"1s\", max = \"100y\" }",
    "{ min = -9007199254740993, max = 9007199254740993 }",
    "{ primaries = 0, replicas = 99999 }",
    "{ primaries = 4294967296 }",
    "1979-05-27T07:32:00Z",
];

/// Bytes that break things: non-UTF-8, NUL, quotes, brackets, line ends.
const BYTES: &[u8] = b"\xff\xfe\xc3\x00\"'[]{}=.,#\\\n\r\t ";

/// Applies one random mutation to `plan`.
fn mutate(rng: &mut Rng, plan: &mut Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = plan.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let at = rng.below(lines.len());
    match rng.below(12) {
        0 => {
            lines.remove(at);
        }
        1 => {
            let line = lines[at].clone();
            let to = rng.below(lines.len() + 1);
            lines.insert(to, line);
        }
        2 => {
            let other = rng.below(lines.len());
            lines.swap(at, other);
        }
        // A field set to an odd value, where it belongs or not.
        3..=5 => {
            let line = format!("{} = {}", rng.pick(FIELDS), rng.pick(VALUES));
            lines.insert(at, line.into_bytes());
        }
        // The value of an existing `field = value` line replaced.
        6 | 7 => {
            let text = String::from_utf8_lossy(&lines[at]).into_owned();
            if let Some((field, _)) = text.split_once('=') {
                lines[at] = format!("{field}= {}", rng.pick(VALUES)).into_bytes();
            }
        }
        // Deep tables: nested arrays, inline tables, or a long dotted header.
        8 => {
            let depth = 1 + rng.below(300);
            let deep = match rng.below(3) {
                0 => format!("deep = {}1{}", "[".repeat(depth), "]".repeat(depth)),
                1 => format!("deep = {}1{}", "{ a = ".repeat(depth), " }".repeat(depth)),
                _ => format!("[{}]", vec!["t"; depth].join(".")),
            };
            lines.insert(at, deep.into_bytes());
        }
        // Random bytes somewhere.
        9 | 10 => {
            let line = &mut lines[at];
            for _ in 0..1 + rng.below(4) {
                let byte = BYTES[rng.below(BYTES.len())];
                let to = rng.below(line.len() + 1);
                line.insert(to, byte);
            }
        }
        // Cut short, possibly inside a character.
        _ => {
            let joined = lines.join(&b'\n');
            let cut = rng.below(joined.len() + 1);
            *plan = joined[..cut].to_vec();
            return;
        }
    }
    *plan = lines.join(&b'\n');
}

#[test]
fn mutated_plans_are_valid_or_refused_in_one_line_naming_the_file() {
    let seeds = seeds();
    assert!(seeds.len() >= 8, "the plans and the docs' examples");
    let (mut valid, mut refused) = (0, 0);
    for case in 0..5000u64 {
        let mut rng = Rng(case);
        let mut plan = seeds[rng.below(seeds.len())].clone().into_bytes();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut plan);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            from_bytes(Path::new(FILE), plan.clone())
        }));
        let shown = String::from_utf8_lossy(&plan);
        match outcome {
            Err(_) => panic!("case {case}: validation panicked on:\n{shown}"),
            Ok(Ok(_)) => valid += 1,
            Ok(Err(error)) => {
                refused += 1;
                let line = error.to_string();
                assert!(
                    !line.contains(['\n', '\r']),
                    "case {case}: {line:?} is not one line, for:\n{shown}"
                );
                assert!(
                    line.starts_with(FILE),
                    "case {case}: {line:?} does not name the file, for:\n{shown}"
                );
            }
        }
    }
    // Both outcomes are exercised, not just one.
    assert!(
        valid > 100 && refused > 1000,
        "{valid} valid, {refused} refused"
    );
}
