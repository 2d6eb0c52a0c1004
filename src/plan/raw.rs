//! The plan file as written: serde types that mirror the TOML one to one.
//!
//! Single values are checked while they are read (so TOML can point at them); rules that
//! span several fields are checked in `validate`. The JSON Schema printed by
//! `cachefill schema` is derived from these types, so it can never drift from the parser.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use toml::Spanned;

use super::fields::{
    Connections, EntryFields, KeySize, KeysPerCommand, MemoryGoal, Pipeline, Ttl, ValueSize,
};
use super::typed::{DataType, Elements, Score, WriteMode};
use super::units::{ByteSize, HumanDuration};

/// The whole plan file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "cachefill plan",
    description = "A cachefill plan (format version 1)."
)]
pub(crate) struct RawPlan {
    /// Plan format version; only 1 exists.
    #[schemars(with = "Option<i64>")]
    pub version: Option<Spanned<i64>>,
    /// Name of the plan; default: the file's stem.
    pub name: Option<String>,
    /// Seed of every stage that has none of its own; absent: drawn at random and recorded.
    pub seed: Option<u64>,
    /// The servers to fill, by name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawTarget>")]
    pub targets: BTreeMap<String, Spanned<RawTarget>>,
    /// The data to write.
    #[serde(default)]
    #[schemars(with = "Vec<RawStage>")]
    pub stages: Vec<Spanned<RawStage>>,
}

/// Standalone server or Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawMode {
    /// One server (or a primary with replicas behind one address).
    Standalone,
    /// A Redis Cluster reached through one or more seed nodes.
    Cluster,
}

/// One server or cluster to write to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    /// "standalone" or "cluster".
    pub mode: RawMode,
    /// host:port, [ipv6]:port or a bare host; standalone: exactly one, cluster: seed nodes.
    pub nodes: Option<Vec<String>>,
    /// Start a throwaway local server instead of naming `nodes`.
    pub launch: Option<RawLaunch>,
    /// Server binary for `launch` (default `redis-server`, e.g. `valkey-server`).
    pub server_bin: Option<String>,
    /// Settings of every launched server, as in redis.conf, e.g. `{ maxmemory = "256mb",
    /// "maxmemory-policy" = "allkeys-lru" }`; only with `launch`.
    pub server_config: Option<BTreeMap<String, RawSetting>>,
    /// ACL user name; default: the default user.
    pub username: Option<String>,
    /// Name of an environment variable that holds the password.
    pub password_env: Option<String>,
    /// File whose first line is the password (relative to the plan file).
    pub password_file: Option<String>,
    /// Refused: plans must not hold secrets.
    #[schemars(skip)]
    pub password: Option<IgnoredAny>,
    /// Database number (standalone only).
    pub db: Option<u32>,
    /// FLUSHALL before any stage writes here.
    pub flush: Option<bool>,
    /// How long to wait for a connection, e.g. "5s".
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<HumanDuration>,
    /// How long a connection with commands in flight may go without a reply byte before it
    /// counts as broken, e.g. "30s".
    #[schemars(with = "Option<String>")]
    pub io_timeout: Option<HumanDuration>,
    /// Cluster: how long to wait for a replica to take over from a lost primary, e.g. "30s".
    #[schemars(with = "Option<String>")]
    pub failover_timeout: Option<HumanDuration>,
    /// TLS settings; the table's presence turns TLS on.
    pub tls: Option<RawTls>,
    /// How typed keys are written: "auto" (default: RESTORE payloads in the server's own
    /// encodings where faster, commands otherwise), "restore" (RESTORE or fail), "commands".
    pub write: Option<WriteMode>,
}

/// TLS settings of a target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM bundle of trusted CAs; default: the system's roots.
    pub ca_file: Option<String>,
    /// Client certificate for mutual TLS; needs `key_file`.
    pub cert_file: Option<String>,
    /// Private key of the client certificate.
    pub key_file: Option<String>,
    /// Name for SNI and verification; default: each node's host.
    pub server_name: Option<String>,
    /// Skip certificate verification (warned about on every run).
    pub insecure: Option<bool>,
}

/// `launch = true`, or for a cluster `launch = { primaries = 3, replicas = 0 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawLaunch {
    /// `launch = true` / `false`.
    Enabled(bool),
    /// A local cluster of this shape.
    Cluster(RawLaunchCluster),
}

/// The shape of a launched local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLaunchCluster {
    /// Number of primaries.
    pub primaries: Option<u32>,
    /// Replicas per primary.
    pub replicas: Option<u32>,
    /// Serve TLS with a throwaway certificate.
    pub tls: Option<bool>,
}

impl<'de> Deserialize<'de> for RawLaunch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LaunchVisitor;
        impl<'de> Visitor<'de> for LaunchVisitor {
            type Value = RawLaunch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, or a table such as { primaries = 3, replicas = 0 }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawLaunch, E> {
                Ok(RawLaunch::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawLaunch, A::Error> {
                RawLaunchCluster::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawLaunch::Cluster)
            }
        }
        deserializer.deserialize_any(LaunchVisitor)
    }
}

impl JsonSchema for RawLaunch {
    fn schema_name() -> Cow<'static, str> {
        "Launch".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let cluster = generator.subschema_for::<RawLaunchCluster>();
        json_schema!({
            "description": "true to start a local server, or the shape of a local cluster",
            "anyOf": [{ "type": "boolean" }, cluster]
        })
    }
}

/// The value of one `server_config` setting: a string or an integer, as in redis.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSetting(pub String);

impl<'de> Deserialize<'de> for RawSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SettingVisitor;
        impl Visitor<'_> for SettingVisitor {
            type Value = RawSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string or an integer, as in redis.conf (e.g. \"256mb\", 16, \"yes\")",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSetting, E> {
                Ok(RawSetting(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSetting, E> {
                Ok(RawSetting(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSetting, E> {
                Ok(RawSetting(v.to_string()))
            }
        }
        deserializer.deserialize_any(SettingVisitor)
    }
}

impl JsonSchema for RawSetting {
    fn schema_name() -> Cow<'static, str> {
        "ServerSetting".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a setting's value as in redis.conf: a string or an integer",
            "type": ["string", "integer"]
        })
    }
}

/// One stage of data.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    /// Unique name, [A-Za-z0-9_.-]+.
    pub name: String,
    /// Target name; required when the plan has more than one target.
    pub target: Option<String>,
    /// The Redis type of the stage's keys: string (default), hash, set, zset, list, stream.
    #[serde(rename = "type")]
    pub data_type: Option<DataType>,
    /// Elements per key (hash fields, set/zset members, list items, stream entries), or
    /// { min, max }; default 10. Not for strings.
    pub elements: Option<Elements>,
    /// Bytes of each hash field name or stream field name (default 8).
    pub field_size: Option<KeySize>,
    /// Sorted sets: integer scores drawn from { min, max } (default 0..=1000000).
    pub score: Option<Score>,
    /// Streams: field/value pairs per entry (1..=1024, default 1).
    pub entry_fields: Option<EntryFields>,
    /// Payload to write (keys + values), e.g. "5GiB".
    pub size: Option<ByteSize>,
    /// Number of entries to write.
    pub keys: Option<u64>,
    /// Write until the target's used_memory reaches this size or percentage of maxmemory.
    #[schemars(with = "Option<String>")]
    pub until_memory: Option<MemoryGoal>,
    /// Bytes per key, prefix included (1..=65536, default 32).
    pub key_size: Option<KeySize>,
    /// Bytes per value (default 512), or { min, max }: each string value, hash value,
    /// set/zset member, list item and stream value.
    pub value_size: Option<ValueSize>,
    /// Key prefix; default "<stage name>:".
    pub key_prefix: Option<String>,
    /// The whole key, e.g. "{{user:{i}}}:cart" or "key:{i:012}": {i} is the entry index,
    /// {i:0N} the index zero-padded to N digits (1..=20), {{ and }} literal braces. Instead
    /// of key_prefix and key_size.
    pub key_format: Option<String>,
    /// Time to live, e.g. "1h", or { min, max }; absent: no expiry.
    pub ttl: Option<Ttl>,
    /// Standalone: connections in all; cluster: per primary (1..=1024).
    pub connections: Option<Connections>,
    /// Most commands in flight on one connection (1..=65536).
    pub pipeline: Option<Pipeline>,
    /// Entries per write command (1..=1024; default: about 64 KiB of entries per command,
    /// at most 1024 and `pipeline`): above 1, entries without a TTL are written
    /// with MSET; 1 writes one SET per entry.
    pub keys_per_command: Option<KeysPerCommand>,
    /// Start only after these stages finished.
    pub after: Option<Vec<String>>,
    /// This stage's seed instead of the plan's.
    pub seed: Option<u64>,
    /// How this stage writes typed keys, instead of its target's `write`: "auto",
    /// "restore" or "commands".
    pub write: Option<WriteMode>,
}
