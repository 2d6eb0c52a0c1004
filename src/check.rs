//! `cachefill check`: what a valid plan would write, without touching the network.

use crate::error::Failure;
use crate::plan::units::human_bytes;
use crate::plan::{Amount, MemoryGoal, Mode, Plan, Servers};

/// Appends a line to the text being built.
macro_rules! out {
    ($text:ident, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($text, $($arg)*);
    }};
}

/// Prints the plan's targets and stages (stdout) in the order they would run.
pub fn print(plan: &Plan) -> Result<(), Failure> {
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
            Servers::Launch { server_bin, .. } if target.mode == Mode::Standalone => {
                format!("launched locally ({server_bin})")
            }
            Servers::Launch {
                server_bin,
                primaries,
                replicas,
            } => format!(
                "launched locally ({server_bin}, {primaries} primaries × {replicas} replicas)"
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
        let value = if stage.shape.value_size.min == stage.shape.value_size.max {
            format!("{} B", stage.shape.value_size.min)
        } else {
            format!(
                "{}..{} B",
                stage.shape.value_size.min, stage.shape.value_size.max
            )
        };
        let seed = stage
            .seed
            .or(plan.seed)
            .map_or("run seed".to_string(), |s| s.to_string());
        out!(
            text,
            "stage {}: target {}, {amount} (key {} B, value {value}), {} connections{} × pipeline {}, seed {seed}, {order}",
            stage.name,
            plan.targets[stage.target].name,
            stage.shape.key_size,
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
