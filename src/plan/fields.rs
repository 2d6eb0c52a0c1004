//! The values of single plan fields that are checked while the plan is read, so TOML can
//! point at them: `until_memory`, the bounded integers (`key_size`, `connections`,
//! `keys_per_command`, `entry_fields`, `pipeline`), `value_size` and `ttl`; each with its
//! JSON Schema. The tables that hold them are in `raw.rs`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::units::{ByteSize, HumanDuration};

/// Longest TTL: 100 years (the server refuses expiry times it cannot represent).
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Largest value a stage may write: 64 MiB.
pub(crate) const MAX_VALUE_SIZE: u64 = 64 << 20;

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
        pub(crate) struct $name(pub(crate) u32);

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
