//! The Redis type of a stage's keys and the fields that shape its elements: which fields
//! belong to which type, their defaults, and what each type's key costs in payload bytes.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The Redis type a stage writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// `SET key value` (the default).
    #[default]
    String,
    /// `HSET key field value …`.
    Hash,
    /// `SADD key member …`.
    Set,
    /// `ZADD key score member …`.
    Zset,
    /// `RPUSH key item …`.
    List,
    /// `XADD key id field value …`, one entry per command.
    Stream,
}

impl DataType {
    /// The name used in plans and in `TYPE` replies.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Hash => "hash",
            DataType::Set => "set",
            DataType::Zset => "zset",
            DataType::List => "list",
            DataType::Stream => "stream",
        }
    }

    /// What the elements of this type are called in messages.
    pub fn elements_noun(self) -> &'static str {
        match self {
            DataType::String => "values",
            DataType::Hash => "fields",
            DataType::Set | DataType::Zset => "members",
            DataType::List => "items",
            DataType::Stream => "entries",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stage writes its typed keys (`write` on a target, or on a stage to override it).
/// Strings are written with `MSET`/`SET` in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// `RESTORE` payloads in the server's own encodings where cachefill measured them faster
    /// and the server accepts them; commands otherwise (the default).
    #[default]
    Auto,
    /// `RESTORE` for every key that fits in a payload, or the run fails saying why.
    Restore,
    /// Commands only (`HSET`, `SADD`, `ZADD`, `RPUSH`, `XADD`).
    Commands,
}

impl WriteMode {
    /// The word used in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Auto => "auto",
            WriteMode::Restore => "restore",
            WriteMode::Commands => "commands",
        }
    }
}

/// A stage field that only some types take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypedField {
    /// `elements`.
    Elements,
    /// `field_size`.
    FieldSize,
    /// `score`.
    Score,
    /// `entry_fields`.
    EntryFields,
    /// `keys_per_command` (grouping strings into `MSET`).
    KeysPerCommand,
}

impl TypedField {
    /// The field's name in the plan.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TypedField::Elements => "elements",
            TypedField::FieldSize => "field_size",
            TypedField::Score => "score",
            TypedField::EntryFields => "entry_fields",
            TypedField::KeysPerCommand => "keys_per_command",
        }
    }

    /// The types the field belongs to.
    pub(crate) fn types(self) -> &'static [DataType] {
        use DataType::*;
        match self {
            TypedField::Elements => &[Hash, Set, Zset, List, Stream],
            TypedField::FieldSize => &[Hash, Stream],
            TypedField::Score => &[Zset],
            TypedField::EntryFields => &[Stream],
            TypedField::KeysPerCommand => &[String],
        }
    }

    /// `Err` with the one-line reason when `data_type` does not take this field.
    pub(crate) fn check(self, data_type: DataType, stage: &str) -> Result<(), String> {
        let types = self.types();
        if types.contains(&data_type) {
            return Ok(());
        }
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        let belongs = match names.as_slice() {
            [one] => format!("{one} stages"),
            [init @ .., last] => format!("{} and {last} stages", init.join(", ")),
            [] => "no stage".into(),
        };
        Err(format!(
            "{} applies to {belongs} only; stage \"{stage}\" is of type {data_type}: remove it or change the type",
            self.name()
        ))
    }
}

/// Default `elements` per key.
pub(crate) const DEFAULT_ELEMENTS: u64 = 10;
/// Default `field_size`.
pub(crate) const DEFAULT_FIELD_SIZE: u32 = 8;
/// Default `score` range.
pub(crate) const DEFAULT_SCORE: Score = Score {
    min: 0,
    max: 1_000_000,
};
/// Default `entry_fields`.
pub(crate) const DEFAULT_ENTRY_FIELDS: u32 = 1;
/// Most elements one key may have.
pub(crate) const MAX_ELEMENTS: u64 = 100_000_000;
/// Largest magnitude of a score: integers up to 2^53 are exact as doubles.
pub(crate) const MAX_SCORE: i64 = 1 << 53;
/// Payload bytes a sorted-set member's score counts for.
pub(crate) const SCORE_BYTES: u64 = 8;
/// Payload bytes a stream entry's ID counts for.
pub(crate) const STREAM_ID_BYTES: u64 = 16;

/// Elements per key: fixed, or drawn per key from `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elements {
    /// Fewest elements of a key.
    pub min: u64,
    /// Most elements of a key.
    pub max: u64,
}

/// Integer scores of a sorted set's members, drawn from `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Lowest score.
    pub min: i64,
    /// Highest score.
    pub max: i64,
}

impl Score {
    /// How many scores the range holds.
    pub fn span(&self) -> u64 {
        self.max.abs_diff(self.min) + 1
    }
}

/// Reads an integer or a `{ min, max }` table of integers, each checked by `check`.
fn integer_range<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &'static str,
    check: fn(i64) -> Result<i64, String>,
) -> Result<(i64, i64), D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Range {
        min: i64,
        max: i64,
    }
    struct RangeVisitor {
        field: &'static str,
        check: fn(i64) -> Result<i64, String>,
    }
    impl<'de> Visitor<'de> for RangeVisitor {
        type Value = (i64, i64);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "an integer, or a table {{ min = …, max = … }} for {}",
                self.field
            )
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<(i64, i64), E> {
            let v = (self.check)(v).map_err(E::custom)?;
            Ok((v, v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<(i64, i64), E> {
            let v = i64::try_from(v)
                .map_err(|_| E::custom(format!("{} {v} is too large", self.field)))?;
            self.visit_i64(v)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(i64, i64), A::Error> {
            let range = Range::deserialize(de::value::MapAccessDeserializer::new(map))?;
            let min = (self.check)(range.min).map_err(de::Error::custom)?;
            let max = (self.check)(range.max).map_err(de::Error::custom)?;
            if min > max {
                return Err(de::Error::custom(format!(
                    "{}: min ({min}) is larger than max ({max})",
                    self.field
                )));
            }
            Ok((min, max))
        }
    }
    deserializer.deserialize_any(RangeVisitor { field, check })
}

fn range_schema(description: &str, minimum: i64, maximum: i64) -> Schema {
    json_schema!({
        "description": description,
        "anyOf": [
            { "type": "integer", "minimum": minimum, "maximum": maximum },
            {
                "type": "object",
                "properties": {
                    "min": { "type": "integer", "minimum": minimum, "maximum": maximum },
                    "max": { "type": "integer", "minimum": minimum, "maximum": maximum }
                },
                "required": ["min", "max"],
                "additionalProperties": false
            }
        ]
    })
}

impl<'de> Deserialize<'de> for Elements {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (min, max) = integer_range(deserializer, "elements", |v| {
            if (1..=MAX_ELEMENTS as i64).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "elements must be between 1 and {MAX_ELEMENTS} per key, not {v}"
                ))
            }
        })?;
        Ok(Elements {
            min: min as u64,
            max: max as u64,
        })
    }
}

impl JsonSchema for Elements {
    fn schema_name() -> Cow<'static, str> {
        "Elements".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        range_schema(
            "elements per key (hash fields, set/zset members, list items, stream entries): a count, or { min, max }",
            1,
            MAX_ELEMENTS as i64,
        )
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (min, max) = integer_range(deserializer, "score", |v| {
            if (-MAX_SCORE..=MAX_SCORE).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "score must be between -{MAX_SCORE} and {MAX_SCORE} (exact as a double), not {v}"
                ))
            }
        })?;
        Ok(Score { min, max })
    }
}

impl JsonSchema for Score {
    fn schema_name() -> Cow<'static, str> {
        "Score".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        range_schema(
            "integer scores of sorted-set members: a score, or { min, max }",
            -MAX_SCORE,
            MAX_SCORE,
        )
    }
}

/// What a stage's keys hold beyond the key itself, resolved with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elemental {
    /// The Redis type.
    pub data_type: DataType,
    /// Elements per key (1..=1 for strings).
    pub elements: Elements,
    /// Bytes of a hash field name or a stream field name.
    pub field_size: u32,
    /// Scores of sorted-set members.
    pub score: Score,
    /// Field/value pairs per stream entry.
    pub entry_fields: u32,
}

impl Elemental {
    /// The shape of a string stage: one value per key.
    pub const STRING: Elemental = Elemental {
        data_type: DataType::String,
        elements: Elements { min: 1, max: 1 },
        field_size: DEFAULT_FIELD_SIZE,
        score: DEFAULT_SCORE,
        entry_fields: DEFAULT_ENTRY_FIELDS,
    };

    /// Twice the mean payload of one element, given the value size range (exact in integers).
    pub fn element_bytes_twice(&self, value_min: u64, value_max: u64) -> u64 {
        let value_twice = value_min + value_max;
        let field_twice = 2 * u64::from(self.field_size);
        match self.data_type {
            DataType::String | DataType::Set | DataType::List => value_twice,
            DataType::Hash => field_twice + value_twice,
            DataType::Zset => value_twice + 2 * SCORE_BYTES,
            DataType::Stream => {
                u64::from(self.entry_fields) * (field_twice + value_twice) + 2 * STREAM_ID_BYTES
            }
        }
    }

    /// Four times the mean payload of one key (key plus elements), exact in integers.
    pub fn key_bytes_four_times(&self, key_size: u32, value_min: u64, value_max: u64) -> u128 {
        4 * u128::from(key_size)
            + u128::from(self.elements.min + self.elements.max)
                * u128::from(self.element_bytes_twice(value_min, value_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_the_types_they_belong_to() {
        assert!(TypedField::Score.check(DataType::Zset, "board").is_ok());
        assert_eq!(
            TypedField::FieldSize
                .check(DataType::List, "views")
                .unwrap_err(),
            "field_size applies to hash and stream stages only; stage \"views\" is of type list: remove it or change the type"
        );
        assert!(
            TypedField::Elements
                .check(DataType::String, "s")
                .unwrap_err()
                .starts_with("elements applies to hash, set, zset, list and stream stages only")
        );
        assert!(
            TypedField::EntryFields
                .check(DataType::Set, "tags")
                .unwrap_err()
                .starts_with("entry_fields applies to stream stages only")
        );
    }

    #[test]
    fn payload_per_key_follows_the_documented_rule() {
        let mut shape = Elemental {
            data_type: DataType::Hash,
            elements: Elements { min: 10, max: 10 },
            field_size: 8,
            ..Elemental::STRING
        };
        // 32 B key + 10 × (8 B field + 32 B value) = 432 B.
        assert_eq!(shape.key_bytes_four_times(32, 32, 32), 4 * 432);
        shape.data_type = DataType::Zset;
        // 32 + 10 × (16 + 8) = 272.
        assert_eq!(shape.key_bytes_four_times(32, 16, 16), 4 * 272);
        shape.data_type = DataType::Stream;
        shape.entry_fields = 3;
        // 32 + 10 × (3 × (8 + 10) + 16) = 732.
        assert_eq!(shape.key_bytes_four_times(32, 10, 10), 4 * 732);
        // Strings: key plus mean value, as before.
        assert_eq!(
            Elemental::STRING.key_bytes_four_times(32, 100, 201),
            4 * 32 + 2 * 301
        );
    }

    #[test]
    fn ranges_read_integers_and_tables() {
        #[derive(Deserialize)]
        struct Probe {
            elements: Elements,
            score: Option<Score>,
        }
        let probe: Probe = toml::from_str("elements = { min = 1, max = 30 }\nscore = -5").unwrap();
        assert_eq!(probe.elements, Elements { min: 1, max: 30 });
        assert_eq!(probe.score, Some(Score { min: -5, max: -5 }));
        let zero = toml::from_str::<Probe>("elements = 0").err().unwrap();
        assert!(
            zero.to_string().contains("elements must be between 1 and"),
            "{zero}"
        );
        let inverted = toml::from_str::<Probe>("elements = { min = 5, max = 2 }")
            .err()
            .unwrap();
        assert!(
            inverted
                .to_string()
                .contains("min (5) is larger than max (2)"),
            "{inverted}"
        );
    }
}
