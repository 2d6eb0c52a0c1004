//! `cachefill check`: what a valid plan would write, without touching the network.

use crate::error::Failure;
use crate::plan::units::human_bytes;
use crate::plan::{
    Amount, DataType, KeyShape, MemoryGoal, Mode, Plan, ServerSetting, Servers, Shape,
};

/// Appends a line to the text being built.
macro_rules! out {
    ($text:ident, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($text, $($arg)*);
    }};
}

/// Prints the plan's targets and stages (stdout) in the order they would run; refuses a
/// plan whose payload cannot fit a launched target's `maxmemory` (noeviction).
pub(crate) fn print(plan: &Plan) -> Result<(), Failure> {
    for (i, target) in plan.targets.iter().enumerate() {
        let payload = crate::fill::planned_payload(plan, i);
        if let Some(max) = launched_limit(target)
            && payload > max
        {
            return Err(Failure::Invalid(crate::fill::cannot_fit(
                &target.name,
                payload,
                max,
            )));
        }
    }
    let mut text = String::new();
    out!(text, "plan {} ({}): valid", plan.name, plan.path.display());
    match plan.seed {
        Some(seed) => out!(text, "seed: {seed}"),
        None => out!(
            text,
            "seed: drawn at random for each run and recorded in the result"
        ),
    }
    for target in &plan.targets {
        let place = match &target.servers {
            Servers::Nodes(nodes) => nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Servers::Launch {
                server_bin,
                server_config,
                ..
            } if target.mode == Mode::Standalone => {
                format!(
                    "launched locally ({server_bin}{})",
                    describe_settings(server_config)
                )
            }
            Servers::Launch {
                server_bin,
                primaries,
                replicas,
                server_config,
            } => format!(
                "launched locally ({server_bin}, {primaries} primaries × {replicas} replicas{})",
                describe_settings(server_config)
            ),
        };
        let flush = if target.flush { ", flushed first" } else { "" };
        out!(
            text,
            "target {}: {} {place}{flush}",
            target.name,
            target.mode.as_str()
        );
    }
    let mut total_keys = 0u64;
    let mut total_bytes = 0u64;
    for stage in &plan.stages {
        let amount = match stage.amount {
            Amount::UntilMemory(MemoryGoal::Bytes(goal)) => {
                format!("until used_memory reaches {}", human_bytes(goal))
            }
            Amount::UntilMemory(MemoryGoal::Percent(percent)) => {
                format!("until used_memory reaches {percent}% of maxmemory")
            }
            _ => {
                let bytes = stage.keys.saturating_mul(stage.shape.mean_entry_bytes());
                total_keys = total_keys.saturating_add(stage.keys);
                total_bytes = total_bytes.saturating_add(bytes);
                format!("{} keys, ~{} payload", stage.keys, human_bytes(bytes))
            }
        };
        let order = if stage.after.is_empty() {
            "starts at once".to_string()
        } else {
            let names: Vec<&str> = stage
                .after
                .iter()
                .map(|&d| plan.stages[d].name.as_str())
                .collect();
            format!("after {}", names.join(", "))
        };
        let seed = stage
            .seed
            .or(plan.seed)
            .map_or("run seed".to_string(), |s| s.to_string());
        out!(
            text,
            "stage {}: target {}, {amount} ({}), {} connections{} × pipeline {}, seed {seed}, {order}",
            stage.name,
            plan.targets[stage.target].name,
            describe_shape(&stage.shape),
            stage.connections,
            if plan.targets[stage.target].mode == Mode::Cluster {
                " per primary"
            } else {
                ""
            },
            stage.pipeline,
        );
    }
    out!(
        text,
        "total: {total_keys} keys, ~{}",
        human_bytes(total_bytes)
    );
    crate::output::print_stdout(&text)
}

/// `maxmemory` of all the primaries a target launches, when they refuse writes once full
/// (`maxmemory-policy noeviction`, the servers' default).
fn launched_limit(target: &crate::plan::Target) -> Option<u64> {
    let Servers::Launch {
        primaries,
        server_config,
        ..
    } = &target.servers
    else {
        return None;
    };
    let setting = |name: &str| {
        server_config
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value.as_str())
    };
    let max = redis_bytes(setting("maxmemory")?)?;
    let policy = setting("maxmemory-policy").unwrap_or("noeviction");
    let primaries = if target.mode == Mode::Standalone {
        1
    } else {
        u64::from(*primaries)
    };
    (max > 0 && policy.eq_ignore_ascii_case("noeviction")).then(|| max.saturating_mul(primaries))
}

/// A memory size as `redis.conf` reads it: a number with an optional unit, `k` 1000 and `kb`
/// 1024 (and `m`, `mb`, `g`, `gb` likewise), any case.
fn redis_bytes(value: &str) -> Option<u64> {
    let value = value.trim().to_ascii_lowercase();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number: u64 = value[..digits].parse().ok()?;
    let unit = match &value[digits..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1000 * 1000,
        "mb" => 1 << 20,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// `, with maxmemory 64mb, maxmemory-policy allkeys-lru`, or nothing without settings.
fn describe_settings(settings: &[ServerSetting]) -> String {
    if settings.is_empty() {
        return String::new();
    }
    let settings: Vec<String> = settings
        .iter()
        .map(|s| format!("{} {}", s.name, s.value))
        .collect();
    format!(", with {}", settings.join(", "))
}

/// `a B` or `a..b B`.
fn range(min: u64, max: u64, unit: &str) -> String {
    if min == max {
        format!("{min}{unit}")
    } else {
        format!("{min}..{max}{unit}")
    }
}

/// What one key of the stage holds, e.g. `hash, key 32 B, 1..30 fields of 10 B + 8..64 B`.
fn describe_shape(shape: &Shape) -> String {
    let key = match &shape.key {
        KeyShape::Sized { size, .. } => format!("{size} B"),
        KeyShape::Format { format, mean_len } => format!("\"{format}\" (mean {mean_len} B)"),
    };
    let value = range(shape.value_size.min, shape.value_size.max, " B");
    let typed = shape.elemental;
    let count = range(typed.elements.min, typed.elements.max, "");
    let field = typed.field_size;
    match typed.data_type {
        DataType::String => format!("key {key}, value {value}"),
        DataType::Hash => format!("hash, key {key}, {count} fields of {field} B + {value}"),
        DataType::Set => format!("set, key {key}, {count} members of {value}"),
        DataType::Zset => format!(
            "zset, key {key}, {count} members of {value}, scores {}",
            range_i64(typed.score.min, typed.score.max)
        ),
        DataType::List => format!("list, key {key}, {count} items of {value}"),
        DataType::Stream => format!(
            "stream, key {key}, {count} entries of {} × ({field} B + {value})",
            typed.entry_fields
        ),
    }
}

fn range_i64(min: i64, max: i64) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min}..{max}")
    }
}
