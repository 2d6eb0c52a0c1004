//! The plan a profile writes: a launched target (the profiled one kept as a comment), a
//! fixed seed, and one stage per group with its counts, `key_format`, ranges chosen to keep
//! the observed means, and a comment saying what was observed.

use std::fmt::Write as _;

use super::patterns;
use super::shape::{Group, Naming};
use super::statistics::{Summary, mean_preserving_range};
use crate::plan::{DataType, Elemental, Elements, Mode, Score};

/// The seed of every written plan: the same profile writes the same plan.
pub(crate) const SEED: u64 = 1;
/// Largest score a plan takes (exact as a double).
const MAX_SCORE: f64 = 9_007_199_254_740_992.0;
/// Largest element count a plan takes.
const MAX_ELEMENTS: u64 = 100_000_000;
/// Largest value size a plan takes (64 MiB).
const MAX_VALUE: u64 = 64 << 20;
/// Largest field size and most fields per stream entry a plan takes.
const MAX_FIELD_SIZE: u64 = 65_536;
const MAX_ENTRY_FIELDS: u64 = 1024;

/// What was profiled, for the plan's header.
pub(crate) struct Source {
    /// The plan file named on the command line.
    pub plan: String,
    /// The target's name.
    pub target: String,
    /// The target as the plan has it (TOML), kept as a comment.
    pub target_toml: String,
    /// Standalone or cluster.
    pub mode: Mode,
    /// Primaries sampled.
    pub primaries: usize,
    /// Keys on the target (`DBSIZE`, summed).
    pub keys: u64,
    /// Keys measured.
    pub sampled: u64,
    /// Read commands sent.
    pub commands: u64,
    /// Keys of types a plan cannot write, by type.
    pub unsupported: Vec<(String, u64)>,
}

/// How many keys the plan writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Amount {
    /// The source's counts times this factor.
    Scale(f64),
    /// About this much payload (keys plus elements) in all.
    Size(u64),
}

/// One stage as it will be written.
struct Stage<'a> {
    group: &'a Group,
    name: String,
    keys: u64,
    elemental: Elemental,
    values: (u64, u64),
    ttl_seconds: Option<(u64, u64)>,
    key_format: String,
}

/// The plan's text.
pub(crate) fn write(groups: &mut [Group], source: &Source, amount: Amount) -> String {
    let mut stages: Vec<Stage> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for group in groups.iter_mut() {
        let name = unique_name(&mut names, group);
        let (elemental, values) = elemental(group);
        let ttl_seconds = group.ttls.summary().map(|s| {
            let seconds = Summary {
                mean: s.mean / 1000.0,
                p5: s.p5 / 1000.0,
                p95: s.p95 / 1000.0,
                ..s
            };
            mean_preserving_range(&seconds, 1)
        });
        stages.push(Stage {
            group,
            name,
            keys: 0,
            elemental,
            values,
            ttl_seconds,
            key_format: String::new(),
        });
    }
    let scale = match amount {
        Amount::Scale(scale) => scale,
        Amount::Size(bytes) => {
            let at_one: f64 = stages
                .iter()
                .map(|s| s.group.estimated_keys * payload(s))
                .sum();
            bytes as f64 / at_one.max(1.0)
        }
    };
    for stage in &mut stages {
        stage.keys = ((stage.group.estimated_keys * scale).round() as u64).max(1);
    }
    key_formats(&mut stages);
    let mut out = header(source, amount, scale, &stages);
    for stage in &mut stages {
        write_stage(&mut out, stage);
    }
    out
}

/// The stages' `key_format`s. Stages of one pattern (another type, or with and without TTL)
/// would write the same keys: the first (the largest) keeps the pattern, the others get a
/// digit in front of the index ([`patterns::Apart`]).
fn key_formats(stages: &mut [Stage]) {
    // Per pattern: stages written so far, and the most digits the first one's index has.
    let mut written: std::collections::HashMap<String, (u32, u32)> = Default::default();
    for stage in stages.iter_mut() {
        let group = stage.group;
        let mut key_lengths = group.key_lengths.clone();
        let mean = key_lengths.summary().map_or(1.0, |s| s.mean);
        let type_name = group.data_type.as_str();
        let (identity, digits) = match &group.naming {
            Naming::Pattern(pattern, seen) => (
                group.label.clone(),
                patterns::first_index_digits(pattern, seen, stage.keys),
            ),
            Naming::Other { .. } => (
                format!("other:{type_name}:*"),
                patterns::other_index_digits(type_name, mean, stage.keys),
            ),
        };
        let apart = match written.get_mut(&identity) {
            None => {
                written.insert(identity, (1, digits));
                None
            }
            Some((n, width)) => {
                let digit = char::from_digit(*n % 36, 36).unwrap_or('z');
                *n += 1;
                Some(patterns::Apart {
                    digit,
                    width: *width,
                })
            }
        };
        stage.key_format = match &group.naming {
            Naming::Pattern(pattern, seen) => {
                patterns::key_format(pattern, seen, stage.keys, apart)
            }
            Naming::Other { .. } => patterns::other_format(type_name, mean, stage.keys, apart),
        };
    }
}

/// Mean payload of one key of the stage, as `cachefill check` counts it.
fn payload(stage: &Stage) -> f64 {
    let mut key_lengths = stage.group.key_lengths.clone();
    let key = key_lengths.summary().map_or(0.0, |s| s.mean);
    let (min, max) = stage.values;
    let elements_and_values = stage.elemental.key_bytes_four_times(0, min, max) as f64 / 4.0;
    key + elements_and_values
}

fn unique_name(names: &mut std::collections::HashSet<String>, group: &Group) -> String {
    let base = format!(
        "{}-{}{}",
        patterns::stage_name(&group.label),
        group.data_type,
        if group.with_ttl { "-ttl" } else { "" }
    );
    let mut name = base.clone();
    let mut n = 2;
    while !names.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The element shape and value size range of a group.
fn elemental(group: &mut Group) -> (Elemental, (u64, u64)) {
    let data_type = group.data_type;
    let elements = match group.elements.summary() {
        Some(s) if data_type != DataType::String => {
            let (min, max) = mean_preserving_range(&s, 1);
            Elements {
                min: min.min(MAX_ELEMENTS),
                max: max.min(MAX_ELEMENTS),
            }
        }
        _ => Elements { min: 1, max: 1 },
    };
    // Names and members start with the element's index: they need its digits.
    let index_digits = |n: u64| u64::from(n.saturating_sub(1).checked_ilog10().unwrap_or(0) + 1);
    let entry_fields = group
        .entry_fields
        .summary()
        .map_or(1, |s| (s.mean.round() as u64).clamp(1, MAX_ENTRY_FIELDS));
    let field_floor = match data_type {
        DataType::Hash => index_digits(elements.max),
        _ => index_digits(entry_fields),
    };
    let field_size = group
        .fields
        .summary()
        .map_or(field_floor, |s| s.mean.round() as u64)
        .clamp(field_floor, MAX_FIELD_SIZE);
    let value_floor = match data_type {
        DataType::Set | DataType::Zset => index_digits(elements.max),
        _ => 1,
    };
    let values = group
        .values
        .summary()
        .map_or((value_floor, value_floor), |s| {
            let (min, max) = mean_preserving_range(&s, value_floor);
            (min.min(MAX_VALUE), max.min(MAX_VALUE))
        });
    let score = group
        .scores
        .summary()
        .map_or(Score { min: 0, max: 0 }, |s| Score {
            min: s.p5.clamp(-MAX_SCORE, MAX_SCORE).floor() as i64,
            max: s.p95.clamp(-MAX_SCORE, MAX_SCORE).ceil() as i64,
        });
    let elemental = Elemental {
        data_type,
        elements,
        field_size: field_size as u32,
        score,
        entry_fields: entry_fields as u32,
    };
    (elemental, values)
}

fn header(source: &Source, amount: Amount, scale: f64, stages: &[Stage]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The shape of target \"{}\" of {}, measured by `cachefill profile`: {} keys ({} sampled \
         on {} primar{}, {} read commands).",
        source.target,
        source.plan,
        source.keys,
        source.sampled,
        source.primaries,
        if source.primaries == 1 { "y" } else { "ies" },
        source.commands
    );
    out.push_str(
        "# Only key patterns, types, counts, lengths, scores and TTLs were kept, never a value's\n\
         # content: this plan is safe to commit. `cachefill run` fills a server of the same shape.\n",
    );
    let written: u64 = stages.iter().map(|s| s.keys).sum();
    match amount {
        Amount::Scale(_) => {
            let _ = writeln!(
                out,
                "# Scale {scale}: {written} keys in {} stages.",
                stages.len()
            );
        }
        Amount::Size(bytes) => {
            let _ = writeln!(
                out,
                "# Sized to {bytes} bytes of payload (scale {scale:.6}): {written} keys in {} stages.",
                stages.len()
            );
        }
    }
    for (type_name, keys) in &source.unsupported {
        let _ = writeln!(
            out,
            "# Not reproduced: {keys} sampled keys of type {type_name}."
        );
    }
    out.push_str("#\n# The profiled target, kept for reference:\n");
    for line in source.target_toml.lines() {
        let _ = writeln!(out, "#   {line}");
    }
    let _ = writeln!(out, "\nseed = {SEED}\n\n[targets.shape]");
    match source.mode {
        Mode::Standalone => out.push_str("mode = \"standalone\"\nlaunch = true\n"),
        Mode::Cluster => {
            let primaries = source.primaries.clamp(1, 16);
            let _ = writeln!(
                out,
                "mode = \"cluster\"\nlaunch = {{ primaries = {primaries}, replicas = 0 }}"
            );
        }
    }
    out
}

fn write_stage(out: &mut String, stage: &mut Stage) {
    let group = &stage.group;
    let e = stage.elemental;
    let data_type = group.data_type;
    out.push('\n');
    let patterns = match group.naming {
        Naming::Other { patterns } => format!(" ({patterns} small patterns merged)"),
        Naming::Pattern(..) => String::new(),
    };
    let _ = writeln!(
        out,
        "# {}{patterns} ({data_type}, {}): {} keys sampled, about {:.0} on the server, {:.1}% of the sampled memory{}.",
        group.label,
        if group.with_ttl { "with TTL" } else { "no TTL" },
        group.sampled,
        group.estimated_keys,
        group.memory_share * 100.0,
        encodings(group)
    );
    let mut observed = Vec::new();
    let mut group_mut = (*group).clone();
    let mut seen = |what: &str, unit: &str, d: &mut super::statistics::Distribution| {
        if let Some(s) = d.summary() {
            observed.push(format!(
                "{what} mean {:.1}{unit}, p50 {}{unit}, p99 {}{unit}",
                s.mean, s.p50, s.p99
            ));
        }
    };
    if data_type != DataType::String {
        seen(data_type.elements_noun(), "", &mut group_mut.elements);
    }
    seen("field names", " B", &mut group_mut.fields);
    let values = match data_type {
        DataType::String | DataType::Hash | DataType::Stream => "values",
        DataType::Set | DataType::Zset => "members",
        DataType::List => "items",
    };
    seen(values, " B", &mut group_mut.values);
    if let Some(s) = group_mut.ttls.summary() {
        observed.push(format!(
            "TTL p50 {}s, p99 {}s",
            (s.p50 / 1000.0).round(),
            (s.p99 / 1000.0).round()
        ));
    }
    if group.pattern_share_without_ttl > 0.0 && group.pattern_share_without_ttl < 1.0 {
        observed.push(format!(
            "{:.1}% of these keys have no TTL",
            group.pattern_share_without_ttl * 100.0
        ));
    }
    if !observed.is_empty() {
        let _ = writeln!(out, "# Observed: {}.", observed.join("; "));
    }
    let _ = writeln!(out, "[[stages]]\nname = \"{}\"", stage.name);
    if data_type != DataType::String {
        let _ = writeln!(out, "type = \"{data_type}\"");
    }
    let _ = writeln!(out, "keys = {}", stage.keys);
    let _ = writeln!(out, "key_format = {}", quoted(&stage.key_format));
    if data_type != DataType::String {
        let _ = writeln!(out, "elements = {}", range(e.elements.min, e.elements.max));
    }
    if matches!(data_type, DataType::Hash | DataType::Stream) {
        let _ = writeln!(out, "field_size = {}", e.field_size);
    }
    if data_type == DataType::Stream {
        let _ = writeln!(out, "entry_fields = {}", e.entry_fields);
    }
    let _ = writeln!(
        out,
        "value_size = {}",
        range(stage.values.0, stage.values.1)
    );
    if data_type == DataType::Zset {
        let _ = writeln!(out, "score = {}", signed_range(e.score.min, e.score.max));
    }
    if let Some((min, max)) = stage.ttl_seconds {
        if min == max {
            let _ = writeln!(out, "ttl = \"{min}s\"");
        } else {
            let _ = writeln!(out, "ttl = {{ min = \"{min}s\", max = \"{max}s\" }}");
        }
    }
}

fn encodings(group: &Group) -> String {
    if group.encodings.is_empty() {
        return String::new();
    }
    let list: Vec<String> = group
        .encodings
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    format!("; encodings {}", list.join(", "))
}

fn range(min: u64, max: u64) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{{ min = {min}, max = {max} }}")
    }
}

fn signed_range(min: i64, max: i64) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{{ min = {min}, max = {max} }}")
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}
