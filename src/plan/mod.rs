//! Plans: the file people keep in their repositories, read, checked and resolved into the
//! typed [`Plan`] that the rest of the program works from.

pub(crate) mod fields;
pub(crate) mod key_format;
pub(crate) mod raw;
pub(crate) mod typed;
pub(crate) mod units;
mod validate;

pub(crate) use key_format::index_width;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub(crate) use fields::{MemoryGoal, Ttl, ValueSize};
pub(crate) use key_format::KeyFormat;
pub(crate) use typed::{DataType, Elemental, Elements, Score, WriteMode};

/// A validated plan: everything the executor needs, nothing it must check again.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `name`, or the file's stem.
    pub name: String,
    /// The plan file as given on the command line.
    pub path: PathBuf,
    /// SHA-256 of the plan file's bytes, hex.
    pub sha256: String,
    /// The plan-wide seed, when the plan sets one.
    pub seed: Option<u64>,
    /// Targets in name order.
    pub targets: Vec<Target>,
    /// Stages in file order.
    pub stages: Vec<Stage>,
}

/// How a target is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One server.
    Standalone,
    /// A Redis Cluster.
    Cluster,
}

impl Mode {
    /// The word used in plans and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Cluster => "cluster",
        }
    }
}

/// A server (or cluster) that stages write to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name under `[targets.NAME]`.
    pub name: String,
    /// Standalone or cluster.
    pub mode: Mode,
    /// Where the servers are.
    pub servers: Servers,
    /// ACL user and where its password comes from.
    pub auth: Auth,
    /// Database number (standalone).
    pub db: u32,
    /// FLUSHALL before the first stage writes here.
    pub flush: bool,
    /// Limit for establishing one connection.
    pub connect_timeout: Duration,
    /// How long a connection with commands in flight may stay silent before it is broken.
    pub io_timeout: Duration,
    /// Cluster: how long a lost primary may stay without a successor.
    pub failover_timeout: Duration,
    /// TLS settings, when the target speaks TLS.
    pub tls: Option<TlsSpec>,
    /// How stages write typed keys here, unless a stage says otherwise.
    pub write: WriteMode,
}

/// The `[tls]` table of a target, with paths resolved against the plan's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// PEM bundle of trusted CAs; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    /// Name for SNI and verification instead of each node's host.
    pub server_name: Option<String>,
    /// Skip certificate verification.
    pub insecure: bool,
}

/// Where a target's servers are.
#[derive(Debug, Clone)]
pub enum Servers {
    /// Existing servers: the standalone server, or a cluster's seed nodes.
    Nodes(Vec<NodeAddr>),
    /// Throwaway local servers started by cachefill: one for a standalone target, a formed
    /// cluster for a cluster target.
    Launch {
        /// The server binary, looked up on PATH.
        server_bin: String,
        /// Primaries of a launched cluster (1 for standalone).
        primaries: u32,
        /// Replicas per primary of a launched cluster.
        replicas: u32,
        /// `server_config`: settings every launched server starts with.
        server_config: Vec<ServerSetting>,
    },
}

/// One `server_config` setting of launched servers: a name as in redis.conf (lowercase) and
/// its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSetting {
    /// The setting's name, e.g. `maxmemory-policy`.
    pub name: String,
    /// Its value, e.g. `allkeys-lru`.
    pub value: String,
}

/// `host:port` of one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Parses `host:port`, `[ipv6]:port` or a bare host (then `default_port`).
    pub fn parse(text: &str, default_port: u16) -> Result<NodeAddr, String> {
        let bad = || {
            format!("`{text}` is not a node address: write host:port, [ipv6]:port or a bare host")
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(bad());
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => default_port,
                _ => after
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            };
            return Ok(NodeAddr {
                host: host.to_string(),
                port,
            });
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                let port = port.parse().map_err(|_| bad())?;
                if host.is_empty() {
                    return Err(bad());
                }
                Ok(NodeAddr {
                    host: host.to_string(),
                    port,
                })
            }
            // A bare IPv6 address without brackets and port.
            Some(_) if text.parse::<std::net::Ipv6Addr>().is_ok() => Ok(NodeAddr {
                host: text.to_string(),
                port: default_port,
            }),
            Some(_) => Err(bad()),
            None => Ok(NodeAddr {
                host: text.to_string(),
                port: default_port,
            }),
        }
    }

    /// True for `localhost` and loopback IP addresses.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// ACL credentials of a target. The password itself is read only when connecting.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// ACL user; `None` is the default user.
    pub username: Option<String>,
    /// Where the password comes from.
    pub password: Option<PasswordSource>,
}

/// Where a password is read from; plans never hold one.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// An environment variable's name.
    Env(String),
    /// A file whose first line is the password (resolved against the plan's directory).
    File(PathBuf),
}

/// How many entries a stage writes, as the plan said it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// `keys = N`.
    Keys,
    /// `size = "5GiB"` of payload (bytes).
    Size(u64),
    /// `until_memory`: write until the target's `used_memory` reaches the goal.
    UntilMemory(MemoryGoal),
}

/// The index range of an `until_memory` stage: never reached, it only fixes the index width
/// (12 digits), so the keys do not depend on the server the stage fills.
pub(crate) const UNTIL_MEMORY_KEYS: u64 = 1_000_000_000_000;

/// One stage of data, resolved.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Unique name.
    pub name: String,
    /// Index into [`Plan::targets`].
    pub target: usize,
    /// How the amount was given.
    pub amount: Amount,
    /// Entries the stage writes.
    pub keys: u64,
    /// Key and value shape.
    pub shape: Shape,
    /// Connections (per primary on a cluster).
    pub connections: u32,
    /// Most entries in flight per connection.
    pub pipeline: u32,
    /// Entries per write command (`MSET` when above 1 and the stage has no TTL); `None`:
    /// grouped by bytes (about 64 KiB per command).
    pub keys_per_command: Option<u32>,
    /// Indexes of stages that must finish first.
    pub after: Vec<usize>,
    /// The stage's own seed, when it sets one.
    pub seed: Option<u64>,
    /// How the stage writes typed keys: its own `write`, else its target's.
    pub write: WriteMode,
}

/// The shape of a stage's entries: what `dataset` needs besides seed and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// How keys are made.
    pub key: KeyShape,
    /// Value size range in bytes.
    pub value_size: ValueSize,
    /// TTL range, when entries expire.
    pub ttl: Option<Ttl>,
    /// The Redis type and the shape of its elements.
    pub elemental: Elemental,
}

impl Shape {
    /// Mean payload bytes of one entry (key plus its mean elements), rounded up.
    pub fn mean_entry_bytes(&self) -> u64 {
        let four = self.elemental.key_bytes_four_times(
            self.key.mean_len(),
            self.value_size.min,
            self.value_size.max,
        );
        u64::try_from(four.div_ceil(4)).unwrap_or(u64::MAX)
    }
}

/// How a stage's keys are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyShape {
    /// `key_prefix`, the index zero-padded to the digits of the largest, filler up to `size`.
    Sized {
        /// Key prefix bytes.
        prefix: String,
        /// Bytes per key, prefix included.
        size: u32,
    },
    /// `key_format`: every key is exactly the format with the index filled in.
    Format {
        /// The format.
        format: KeyFormat,
        /// Mean bytes of the stage's keys, rounded up (for estimates).
        mean_len: u32,
    },
}

impl KeyShape {
    /// Keys of `prefix`, index and filler, `size` bytes each.
    pub fn sized(prefix: &str, size: u32) -> KeyShape {
        KeyShape::Sized {
            prefix: prefix.to_string(),
            size,
        }
    }

    /// Mean bytes of one key, rounded up (every key's with `key_size`).
    pub fn mean_len(&self) -> u32 {
        match self {
            KeyShape::Sized { size, .. } => *size,
            KeyShape::Format { mean_len, .. } => *mean_len,
        }
    }
}

/// Default `key_size`.
pub(crate) const DEFAULT_KEY_SIZE: u32 = 32;
/// Default `value_size`.
pub(crate) const DEFAULT_VALUE_SIZE: u64 = 512;
/// Default `connections`.
pub(crate) const DEFAULT_CONNECTIONS: u32 = 4;
/// Default `pipeline`.
pub(crate) const DEFAULT_PIPELINE: u32 = 1024;
/// Primaries of `launch = true` on a cluster target.
pub(crate) const DEFAULT_LAUNCH_PRIMARIES: u32 = 3;
/// Default `failover_timeout`.
pub(crate) const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `io_timeout`.
pub(crate) const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `connect_timeout`.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An invalid plan: where, which field, what is wrong and what would be valid. One line:
/// control characters from the plan (a name holding a line break) are shown escaped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}: {}", escaped(location), escaped(field), escaped(message))]
pub struct PlanError {
    /// `file`, or `file:line:column`.
    pub location: String,
    /// Dotted path of the field, e.g. `stages[1].size`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// `text` with its control characters escaped (`\n`, `\u{0}` …).
fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(char::is_control) {
        return text.into();
    }
    text.chars()
        .flat_map(|c| {
            let escape = c.is_control().then(|| c.escape_default());
            escape
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect::<String>()
        .into()
}

/// Reads, parses and validates a plan file.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let bytes = std::fs::read(path).map_err(|e| PlanError {
        location: path.display().to_string(),
        field: "plan".into(),
        message: format!("cannot read the plan file: {e}"),
    })?;
    from_bytes(path, bytes)
}

/// Parses and validates `bytes`, the content of plan file `path`.
fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Plan, PlanError> {
    let text = String::from_utf8(bytes).map_err(|_| PlanError {
        location: path.display().to_string(),
        field: "plan".into(),
        message: "the plan file is not UTF-8 text".into(),
    })?;
    let sha256 = hex(&Sha256::digest(text.as_bytes()));
    validate::parse(path, &text, sha256)
}

/// Reads and validates the plan at `path` for a command that writes or reads its dataset
/// (`run`, `check`, `verify`, `export`): it needs a stage. (`profile` and `flush` only need
/// its targets.)
pub(crate) fn load_with_stages(path: &Path) -> Result<Plan, PlanError> {
    let plan = load(path)?;
    plan.with_stages()?;
    Ok(plan)
}

impl Plan {
    /// Parses and validates a plan from its TOML text (docs/plan-format.md). `origin` is
    /// the name errors give it (`fixture.toml:4:1: stages[0].keys: …`) and the file that
    /// relative paths in it (TLS files) are relative to.
    ///
    /// ```
    /// let plan = cachefill::Plan::parse(
    ///     "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n[[stages]]\nname = \"s\"\nkeys = 10\n",
    ///     "inline.toml",
    /// )
    /// .unwrap();
    /// assert_eq!(plan.name(), "inline");
    /// let error = cachefill::Plan::parse("[[stages]]\nname = \"s\"\n", "bad.toml").unwrap_err();
    /// assert!(error.to_string().starts_with("bad.toml"));
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<Plan, PlanError> {
        from_bytes(Path::new(origin), text.as_bytes().to_vec())
    }

    /// Reads, parses and validates the plan file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Plan, PlanError> {
        load(path.as_ref())
    }

    /// The plan's `name`, or its file's stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 of the plan's text (hex), as its results record it.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Refuses a plan without stages for what writes or reads its dataset.
    pub(crate) fn with_stages(&self) -> Result<(), PlanError> {
        if self.stages.is_empty() {
            return Err(PlanError {
                location: self.path.display().to_string(),
                field: "stages".into(),
                message: "the plan has no stages, so it would write nothing: add a [[stages]] table (docs/plan-format.md)".into(),
            });
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON Schema of the plan format, pretty-printed.
pub(crate) fn json_schema() -> String {
    let schema = schemars::schema_for!(raw::RawPlan);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod bad_plans;
#[cfg(test)]
mod mutation_tests;
#[cfg(test)]
mod tests;
