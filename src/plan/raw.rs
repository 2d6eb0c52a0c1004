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

use super::typed::{DataType, Elements, Score};
use super::units::{ByteSize, HumanDuration};

/// Longest TTL: 100 years (the server refuses expiry times it cannot represent).
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Largest value a stage may write: 64 MiB.
pub const MAX_VALUE_SIZE: u64 = 64 << 20;

/// The whole plan file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "cachefill plan",
    description = "A cachefill plan (format version 1)."
)]
pub struct RawPlan {
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
pub enum RawMode {
    /// One server (or a primary with replicas behind one address).
    Standalone,
    /// A Redis Cluster reached through one or more seed nodes.
    Cluster,
}

/// One server or cluster to write to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
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
}

/// TLS settings of a target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
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
pub enum RawLaunch {
    /// `launch = true` / `false`.
    Enabled(bool),
    /// A local cluster of this shape.
    Cluster(RawLaunchCluster),
}

/// The shape of a launched local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLaunchCluster {
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
pub struct RawSetting(pub String);

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
pub struct RawStage {
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
}

/// `until_memory`: an absolute size or a percentage of `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryGoal {
    /// Bytes of `used_memory`.
    Bytes(u64),
    /// Percent of `maxmemory`.
    Percent(f64),
}

impl<'de> Deserialize<'de> for MemoryGoal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Bytes(u64),
            Text(String),
        }
        match Text::deserialize(deserializer)? {
            Text::Bytes(bytes) => Ok(MemoryGoal::Bytes(bytes)),
            Text::Text(text) => match text.trim().strip_suffix('%') {
                Some(percent) => match percent.trim().parse::<f64>() {
                    Ok(p) if p > 0.0 && p <= 100.0 => Ok(MemoryGoal::Percent(p)),
                    _ => Err(de::Error::custom(format!(
                        "until_memory `{text}` is not a percentage between 0 and 100"
                    ))),
                },
                None => ByteSize::parse(&text)
                    .map(|s| MemoryGoal::Bytes(s.0))
                    .map_err(|e| {
                        de::Error::custom(format!(
                            "until_memory: {e}, or a percentage like \"80%\""
                        ))
                    }),
            },
        }
    }
}

/// Declares an integer field with an allowed range, checked while the plan is read.
macro_rules! bounded_integer {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub u32);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = i64::deserialize(deserializer)?;
                if !($min..=$max).contains(&value) {
                    return Err(de::Error::custom(format!(
                        "{} must be between {} and {}, not {value}",
                        $field, $min, $max
                    )));
                }
                Ok($name(value as u32))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "integer", "minimum": $min, "maximum": $max })
            }
        }
    };
}

bounded_integer!(
    /// Bytes per key, prefix included.
    KeySize, "key_size", 1, 65536
);
bounded_integer!(
    /// Connections of a stage (per primary on a cluster).
    Connections, "connections", 1, 1024
);
bounded_integer!(
    /// Entries per write command.
    KeysPerCommand,
    "keys_per_command",
    1,
    1024
);
bounded_integer!(
    /// Field/value pairs per stream entry.
    EntryFields,
    "entry_fields",
    1,
    1024
);
bounded_integer!(
    /// Most commands in flight on one connection.
    Pipeline, "pipeline", 1, 65536
);

/// Value size: fixed, or drawn per entry from `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// Smallest value in bytes.
    pub min: u64,
    /// Largest value in bytes.
    pub max: u64,
}

fn check_value_bytes<E: de::Error>(size: ByteSize) -> Result<u64, E> {
    if size.0 == 0 || size.0 > MAX_VALUE_SIZE {
        return Err(E::custom(format!(
            "value_size must be between 1 B and 64 MiB, not {} bytes",
            size.0
        )));
    }
    Ok(size.0)
}

impl<'de> Deserialize<'de> for ValueSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Range {
            min: ByteSize,
            max: ByteSize,
        }
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = ValueSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 512 or \"4KiB\", or a table { min = 64, max = 4096 }")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ValueSize, E> {
                let bytes = u64::try_from(v).map_err(|_| {
                    E::custom(format!(
                        "value_size must be between 1 B and 64 MiB, not {v}"
                    ))
                })?;
                self.visit_u64(bytes)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueSize, E> {
                let bytes = check_value_bytes(ByteSize(v))?;
                Ok(ValueSize {
                    min: bytes,
                    max: bytes,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueSize, E> {
                let size = ByteSize::parse(v).map_err(|e| E::custom(format!("value_size: {e}")))?;
                self.visit_u64(size.0)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ValueSize, A::Error> {
                let range = Range::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let min = check_value_bytes(range.min)?;
                let max = check_value_bytes(range.max)?;
                if min > max {
                    return Err(de::Error::custom(format!(
                        "value_size: min ({min}) is larger than max ({max})"
                    )));
                }
                Ok(ValueSize { min, max })
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl JsonSchema for ValueSize {
    fn schema_name() -> Cow<'static, str> {
        "ValueSize".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let size = generator.subschema_for::<ByteSize>();
        json_schema!({
            "description": "bytes per value: a size, or { min, max } for sizes drawn per entry",
            "anyOf": [size, {
                "type": "object",
                "properties": { "min": size, "max": size },
                "required": ["min", "max"],
                "additionalProperties": false
            }]
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "bytes, or a string with a unit: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9_]*\\.?[0-9]+\\s*([KkMmGgTt][Ii]?)?[Bb]?\\s*$" }
            ]
        })
    }
}

/// Time to live: fixed, or drawn per entry from `[min, max]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// Shortest TTL in milliseconds.
    pub min_ms: u64,
    /// Longest TTL in milliseconds.
    pub max_ms: u64,
}

fn ttl_millis<E: de::Error>(d: HumanDuration) -> Result<u64, E> {
    let ms = u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX);
    if ms < 1000 {
        return Err(E::custom(format!(
            "ttl must be at least 1s, not {}",
            humantime::format_duration(d.0)
        )));
    }
    if ms > MAX_TTL_MS {
        return Err(E::custom(format!(
            "ttl must be at most 100 years, not {}",
            humantime::format_duration(d.0)
        )));
    }
    Ok(ms)
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Range {
            min: HumanDuration,
            max: HumanDuration,
        }
        struct TtlVisitor;
        impl<'de> Visitor<'de> for TtlVisitor {
            type Value = Ttl;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"1h\", or a table { min = \"10m\", max = \"2h\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ttl, E> {
                let d = HumanDuration::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                let ms = ttl_millis(d)?;
                Ok(Ttl {
                    min_ms: ms,
                    max_ms: ms,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ttl, A::Error> {
                let range = Range::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let (min_ms, max_ms) = (ttl_millis(range.min)?, ttl_millis(range.max)?);
                if min_ms > max_ms {
                    return Err(de::Error::custom("ttl: min is longer than max"));
                }
                Ok(Ttl { min_ms, max_ms })
            }
        }
        deserializer.deserialize_any(TtlVisitor)
    }
}

impl JsonSchema for Ttl {
    fn schema_name() -> Cow<'static, str> {
        "Ttl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a duration of at least 1s such as \"1h\", or { min, max } for TTLs drawn per entry",
            "anyOf": [{ "type": "string" }, {
                "type": "object",
                "properties": { "min": { "type": "string" }, "max": { "type": "string" } },
                "required": ["min", "max"],
                "additionalProperties": false
            }]
        })
    }
}
