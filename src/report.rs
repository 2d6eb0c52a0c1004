//! The JSON result of a run (docs/result.md): plain serde types, written atomically.

use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

/// The whole result file.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub cachefill_version: &'static str,
    /// "ok", "failed" or "interrupted".
    pub status: Status,
    /// One-line reason when the status is not ok.
    pub error: Option<String>,
    pub plan: PlanInfo,
    pub shard: ShardInfo,
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    pub targets: std::collections::BTreeMap<String, TargetReport>,
    pub stages: Vec<StageReport>,
}

/// Outcome of a run or a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Interrupted,
    /// A stage that never started because a stage it runs after did not finish.
    Skipped,
    /// A stage that was still waiting when the run ended.
    Pending,
}

/// The plan the run executed.
#[derive(Debug, Clone, Serialize)]
pub struct PlanInfo {
    pub name: String,
    pub path: String,
    pub sha256: String,
    /// The plan-wide seed in force (drawn at random when the plan has none).
    pub seed: u64,
}

/// Which part of the dataset this process wrote.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
}

/// One target after the run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub mode: &'static str,
    pub tls: bool,
    pub flushed: bool,
    /// True when cachefill started the server for this run.
    pub launched: bool,
    pub server_version: Option<String>,
    pub nodes: Vec<NodeReport>,
}

/// One server of a target.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub address: String,
    pub role: &'static str,
    /// Hash slots served (cluster); null on a standalone server.
    pub slots: Option<u32>,
    pub keys_before: Option<u64>,
    pub keys_after: Option<u64>,
    pub used_memory_before: Option<u64>,
    pub used_memory_after: Option<u64>,
}

/// One stage after the run.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: String,
    pub target: String,
    pub status: Status,
    pub seed: u64,
    /// The Redis type of the stage's keys.
    #[serde(rename = "type")]
    pub data_type: &'static str,
    pub keys_planned: u64,
    /// Entries the server acknowledged (typed keys: every command of the key).
    pub keys_written: u64,
    /// Elements of the keys written (strings: one value per key).
    pub elements_written: u64,
    /// Typed keys left with only some of their elements when the stage stopped.
    pub partial_keys: u64,
    /// Payload bytes (keys plus values) of the acknowledged entries.
    pub payload_bytes: u64,
    pub started_at: Option<String>,
    pub duration_s: f64,
    pub keys_per_s: f64,
    pub mb_per_s: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub redirects: Redirects,
    pub reconnects: u64,
    /// Cluster primaries replaced by a replica while the stage ran.
    pub failovers: u64,
    /// Entries found missing on a new primary after a failover and written again.
    pub rewritten: u64,
    /// For an `until_memory` stage: the goal and the `used_memory` reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_memory: Option<UntilMemoryReport>,
    pub per_node: Vec<NodeKeys>,
}

/// How an `until_memory` stage ended.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UntilMemoryReport {
    /// The goal, in bytes of `used_memory` (summed over primaries).
    pub goal_bytes: u64,
    /// `used_memory` (summed) when the stage ended.
    pub used_memory: Option<u64>,
}

/// Cluster redirections followed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Redirects {
    pub moved: u64,
    pub ask: u64,
}

/// Entries a stage wrote to one server.
#[derive(Debug, Clone, Serialize)]
pub struct NodeKeys {
    pub address: String,
    pub keys: u64,
}

/// `2026-11-26T07:00:00.123Z`: RFC 3339, UTC, milliseconds.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Writes `report` to `path` (`-`: standard output) through a temporary file and a rename,
/// so a reader never sees half a result.
pub fn write(report: &RunReport, path: &Path) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::output::write(&json, path)
}
