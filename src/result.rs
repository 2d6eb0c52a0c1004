//! The JSON result of a run (docs/cli-and-result.md): plain serde types, written atomically
//! and read back the same way by `merge` and `verify --result`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::plan::DataType;

/// The whole result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Version of the binary that wrote the result.
    pub cachefill_version: String,
    /// "ok", "failed" or "interrupted".
    pub status: Status,
    /// One-line reason when the status is not ok.
    pub error: Option<String>,
    /// The plan the run executed.
    pub plan: PlanInfo,
    /// Which part of the dataset this process wrote.
    pub shard: ShardInfo,
    /// When the run started.
    pub started_at: String,
    /// When the run ended.
    pub finished_at: String,
    /// Seconds from start to end.
    pub duration_s: f64,
    /// The most memory the cachefill process held (its peak resident set), in bytes.
    #[serde(default)]
    pub client_peak_rss_bytes: Option<u64>,
    /// Each target by name.
    pub targets: BTreeMap<String, TargetReport>,
    /// Each stage, in plan order.
    pub stages: Vec<StageReport>,
    /// The run over time; null when no stage ran (`cachefill flush`, a run stopped before
    /// its stages, a merged result, a result of an older cachefill).
    #[serde(default)]
    pub timeline: Option<Timeline>,
    /// In a merged result: each shard's timeline, by shard index (shards without one left
    /// out); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_timelines: Vec<ShardTimeline>,
}

/// Outcome of a run or a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything planned was written and acknowledged.
    Ok,
    /// A server failed it, or a stage did not finish; `error` says why.
    Failed,
    /// SIGINT or SIGTERM stopped it.
    Interrupted,
    /// A stage that never started because a stage it runs after did not finish.
    Skipped,
    /// A stage that was still waiting when the run ended.
    Pending,
}

/// The plan the run executed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInfo {
    /// The plan's name.
    pub name: String,
    /// The plan file as given.
    pub path: String,
    /// SHA-256 of the plan file.
    pub sha256: String,
    /// The plan-wide seed in force (drawn at random when the plan has none).
    pub seed: u64,
}

/// Which part of the dataset this process wrote.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShardInfo {
    /// This process's part; null in a merged result.
    pub index: Option<u32>,
    /// Parts of the whole run.
    pub count: u32,
    /// In a merged result: how many shard results it combines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<u32>,
}

/// One target after the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    /// "standalone" or "cluster".
    pub mode: String,
    /// True when the target speaks TLS.
    pub tls: bool,
    /// True when the run flushed the target.
    pub flushed: bool,
    /// True when cachefill started the server for this run.
    pub launched: bool,
    /// Version the servers report; null when INFO is not allowed.
    pub server_version: Option<String>,
    /// Its primaries.
    pub nodes: Vec<NodeReport>,
    /// True when the user was refused `MSET` and entries went one `SET` each.
    #[serde(default)]
    pub mset_refused: bool,
    /// Why the servers refused `RESTORE` payloads, when they did: typed keys went as
    /// commands from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_refused: Option<String>,
    /// Launched servers left running with `--keep`: where they are and the CA to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<KeptServers>,
}

/// Servers cachefill launched and left running (`--keep`), for the tools that use them next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptServers {
    /// Every server's client address (a cluster's primaries first, then replicas).
    pub addresses: Vec<String>,
    /// Their process ids, in the same order (`kill` stops them; their folders go then).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// The throwaway CA certificate of launched TLS servers; null without TLS.
    pub ca_file: Option<String>,
}

impl KeptServers {
    /// Stops the kept servers (SIGTERM to each process id; their folders go once they
    /// have stopped). A server that already stopped is not an error.
    pub fn stop(&self) -> std::io::Result<()> {
        for &pid in &self.pids {
            let pid = libc::pid_t::try_from(pid)
                .map_err(|_| std::io::Error::other(format!("no such process id {pid}")))?;
            // SAFETY: kill(2) with a process id and a signal number has no memory effects.
            if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::ESRCH) {
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// One server of a target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    /// `host:port`.
    pub address: String,
    /// "primary".
    pub role: String,
    /// Hash slots served (cluster); null on a standalone server.
    pub slots: Option<u32>,
    /// Keys in the database before the run.
    pub keys_before: Option<u64>,
    /// Keys in the database after the run.
    pub keys_after: Option<u64>,
    /// `used_memory` before the run.
    pub used_memory_before: Option<u64>,
    /// `used_memory` after the run.
    pub used_memory_after: Option<u64>,
    /// Keys the server evicted during the run (`evicted_keys` of `INFO stats`, after less
    /// before): written and acknowledged, then dropped by the server's `maxmemory-policy`;
    /// null when unknown.
    #[serde(default)]
    pub evicted_keys: Option<u64>,
}

/// One stage after the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Target name.
    pub target: String,
    /// How the stage ended.
    pub status: Status,
    /// Seed of its dataset.
    pub seed: u64,
    /// The Redis type of the stage's keys.
    #[serde(rename = "type", default)]
    pub data_type: DataType,
    /// Entries this process was to write.
    pub keys_planned: u64,
    /// Entries the server acknowledged (typed keys: every command of the key).
    pub keys_written: u64,
    /// Elements of the keys written (strings: one value per key).
    #[serde(default)]
    pub elements_written: u64,
    /// Typed keys left with only some of their elements when the stage stopped.
    #[serde(default)]
    pub partial_keys: u64,
    /// Typed keys a `RESTORE` of their payload wrote, in the server's own encoding (the
    /// others went as commands: `write = "commands"`, a key too large for a payload, or a
    /// server that refused payloads).
    #[serde(default)]
    pub restored_keys: u64,
    /// Payload bytes (keys plus values) of the acknowledged entries.
    pub payload_bytes: u64,
    /// When it started; null when it never did.
    pub started_at: Option<String>,
    /// Seconds it ran.
    pub duration_s: f64,
    /// Acknowledged entries per second.
    pub keys_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Entries refused by an error reply.
    pub errors: u64,
    /// The first error, as one line.
    pub first_error: Option<String>,
    /// Cluster redirections followed.
    pub redirects: Redirects,
    /// Connections re-established.
    pub reconnects: u64,
    /// Entries (typed stages: keys) sent but never acknowledged, on connections the stage
    /// gave up on: the server may or may not hold them.
    #[serde(default)]
    pub unacknowledged: u64,
    /// Cluster primaries replaced by a replica while the stage ran.
    pub failovers: u64,
    /// Entries found missing after a failover (on the new primary) or a restart (on the
    /// restarted server) and written again.
    pub rewritten: u64,
    /// Standalone servers found restarted (a new `run_id`) while the stage ran.
    #[serde(default)]
    pub restarts: u64,
    /// For an `until_memory` stage: the goal and the `used_memory` reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_memory: Option<UntilMemoryReport>,
    /// What a key of the stage costs the server (sampled after the stage); null when the
    /// user may not run `MEMORY USAGE` / `OBJECT ENCODING` or nothing was written.
    #[serde(default)]
    pub memory: Option<KeyCost>,
    /// Entries written per server.
    pub per_node: Vec<NodeKeys>,
}

/// Bytes per key and encodings of up to 100 sampled keys of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCost {
    /// Keys sampled (`MEMORY USAGE … SAMPLES 4096`, `OBJECT ENCODING`).
    pub sampled_keys: u64,
    /// Mean bytes per key.
    pub mean_bytes: u64,
    /// Smallest key.
    pub min_bytes: u64,
    /// Largest key.
    pub max_bytes: u64,
    /// Sampled keys per encoding, e.g. `{"listpack": 80, "hashtable": 20}`.
    pub encodings: BTreeMap<String, u64>,
}

impl KeyCost {
    /// The encoding most sampled keys have.
    pub fn dominant_encoding(&self) -> Option<&str> {
        self.encodings
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|(name, _)| name.as_str())
    }
}

/// How an `until_memory` stage ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct UntilMemoryReport {
    /// The goal, in bytes of `used_memory` (summed over primaries).
    pub goal_bytes: u64,
    /// `used_memory` (summed) when the stage ended.
    pub used_memory: Option<u64>,
}

/// Cluster redirections followed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Redirects {
    /// MOVED replies.
    pub moved: u64,
    /// ASK replies.
    pub ask: u64,
}

/// Entries a stage wrote to one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeKeys {
    /// `host:port`.
    pub address: String,
    /// Entries acknowledged by it.
    pub keys: u64,
}

/// The run over time: a sample once a second and at each stage's start and end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The wall-clock time of offset 0: when the run started.
    pub started_at: String,
    /// Samples in time order.
    pub samples: Vec<TimelineSample>,
}

/// One shard's timeline in a merged result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardTimeline {
    /// The shard's index.
    pub shard: u32,
    /// Its timeline.
    #[serde(flatten)]
    pub timeline: Timeline,
}

/// What the stages had written and what the targets held at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSample {
    /// Seconds since the timeline's `started_at`.
    pub offset_s: f64,
    /// What the sample marks: `{"start": STAGE}` or `{"end": STAGE}`; null for the
    /// once-a-second samples.
    pub event: Option<StageEvent>,
    /// Every stage started so far, by name: what the servers acknowledged up to now.
    pub stages: BTreeMap<String, StageSample>,
    /// Every target, by name: its primaries' figures, read just after `offset_s`.
    pub targets: BTreeMap<String, TargetSample>,
}

/// A stage starting or ending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageEvent {
    /// The stage starts: its counts are zero.
    Start(String),
    /// The stage ended: its counts are the stage's final ones.
    End(String),
}

/// A stage's counts so far, as its report counts them at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSample {
    /// Keys acknowledged (typed keys: every command of the key).
    pub keys_written: u64,
    /// Elements of those keys (strings: one per key).
    pub elements_written: u64,
    /// Payload bytes (keys plus values) of those keys.
    pub payload_bytes: u64,
}

/// A target's `INFO` figures, summed over its primaries; null when a primary refused
/// `INFO` or did not answer within the target's `io_timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSample {
    /// `used_memory` in bytes.
    pub used_memory: Option<u64>,
    /// `maxmemory` in bytes (0: no limit).
    pub maxmemory: Option<u64>,
    /// `evicted_keys` since the server started.
    pub evicted_keys: Option<u64>,
    /// `expired_keys` since the server started.
    pub expired_keys: Option<u64>,
}

/// Reads a result file back; errors are one line naming the file and what is wrong (for a
/// result of another format, the field that is missing or malformed).
pub(crate) fn read(path: &Path) -> Result<RunResult, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the result file: {e}", path.display()))?;
    let mut json = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!("{at}: ")
        };
        format!(
            "{}: not a cachefill result (or one of another version): {at}{}",
            path.display(),
            e.inner()
        )
    })
}

/// `2026-11-26T07:00:00.123Z`: RFC 3339, UTC, milliseconds.
pub(crate) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// The peak resident set of this process so far, in bytes: `VmHWM` of /proc/self/status,
/// the high-water mark of this program's own memory. (`getrusage`'s `ru_maxrss`, the
/// fallback, also counts the memory of the process that started it: Linux carries the
/// spawning process's peak across `exec`, so a large test harness inflated it.)
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let high_water = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok());
    if let Some(kib) = high_water {
        return Some(kib * 1024);
    }
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage for the call to fill in.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so it initialised `usage`.
    let usage = unsafe { usage.assume_init() };
    // Linux reports ru_maxrss in KiB.
    u64::try_from(usage.ru_maxrss).ok().map(|kib| kib * 1024)
}

/// Writes `report` to `path` (`-`: standard output) through a temporary file and a rename,
/// so a reader never sees half a result.
pub(crate) fn write(report: &RunResult, path: &Path) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::output::write(&json, path)
}
