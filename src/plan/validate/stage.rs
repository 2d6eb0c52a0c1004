//! One `[[stages]]` entry: its target, amount, key shape, type and element fields, order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::super::raw::{RawStage, RawTarget};
use super::super::typed::{self, TypedField};
use super::super::*;
use super::Source;
use crate::plan::units::human_bytes;

pub(super) fn is_valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_stage(
    source: &Source,
    index: usize,
    raw: &RawStage,
    span: Range<usize>,
    targets: &BTreeMap<String, toml::Spanned<RawTarget>>,
    target_index: &HashMap<&str, usize>,
    names: &HashMap<&str, usize>,
) -> Result<Stage, PlanError> {
    let field = |f: &str| format!("stages[{index}].{f}");
    let err = |f: &str, m: String| source.error(Some(span.clone()), field(f), m);
    let name = raw.name.clone();
    if !is_valid_stage_name(&name) {
        return Err(err(
            "name",
            format!("stage name \"{name}\" may only use letters, digits, '_', '.' and '-'"),
        ));
    }

    let target = match &raw.target {
        Some(t) => *target_index.get(t.as_str()).ok_or_else(|| {
            let known: Vec<&str> = targets.keys().map(String::as_str).collect();
            err("target", format!("stage \"{name}\" names target \"{t}\", which the plan does not define; targets: {}", list_or_none(&known)))
        })?,
        None if targets.len() == 1 => 0,
        None if targets.is_empty() => {
            return Err(err("target", "the plan has stages but no targets: add a [targets.NAME] table".into()));
        }
        None => {
            let known: Vec<&str> = targets.keys().map(String::as_str).collect();
            return Err(err("target", format!("the plan has several targets, so stage \"{name}\" must name one: {}", known.join(", "))));
        }
    };

    let value_size = raw.value_size.unwrap_or(ValueSize {
        min: DEFAULT_VALUE_SIZE,
        max: DEFAULT_VALUE_SIZE,
    });
    let ttl = raw.ttl;
    let format = resolve_key_format(raw).map_err(|(f, m)| err(f, m))?;
    let elemental = resolve_elemental(raw, &name, value_size).map_err(|(f, m)| err(f, m))?;
    let data_type = elemental.data_type;
    // Four times the payload of a key's elements (and value), on average.
    let elements_four_times = elemental.key_bytes_four_times(0, value_size.min, value_size.max);

    let (amount, keys) = match (raw.size, raw.keys, raw.until_memory) {
        (Some(size), None, None) => {
            let keys = match &format {
                Some(format) => keys_of_size(format, size.0, elements_four_times),
                None => {
                    let key_size = raw.key_size.map_or(DEFAULT_KEY_SIZE, |k| k.0);
                    let per_key_four_times = elements_four_times + 4 * u128::from(key_size);
                    let keys = (u128::from(size.0) * 4).div_ceil(per_key_four_times);
                    u64::try_from(keys).unwrap_or(u64::MAX)
                }
            };
            (Amount::Size(size.0), keys)
        }
        (None, Some(keys), None) => (Amount::Keys, keys),
        (None, None, Some(goal)) => (Amount::UntilMemory(goal), UNTIL_MEMORY_KEYS),
        (None, None, None) => {
            return Err(err(
                "size",
                format!(
                    "stage \"{name}\" needs exactly one of size, keys or until_memory; it has none"
                ),
            ));
        }
        _ => {
            return Err(err(
                "size",
                format!(
                    "stage \"{name}\" needs exactly one of size, keys or until_memory; it has several"
                ),
            ));
        }
    };

    // A bound no deployment comes near: a unit typed wrong (`5000TB`) is not a plan.
    if let Amount::Size(bytes) = amount
        && bytes > MAX_STAGE_BYTES
    {
        return Err(err(
            "size",
            format!(
                "{} is more than any Redis deployment holds (cachefill writes at most 1 PiB per stage); check the unit",
                human_bytes(bytes),
            ),
        ));
    }
    if keys > MAX_STAGE_KEYS && amount == Amount::Keys {
        return Err(err(
            "keys",
            format!(
                "{keys} keys are more than any Redis deployment holds (cachefill writes at most {MAX_STAGE_KEYS} per stage)"
            ),
        ));
    }

    let key = match format {
        Some(format) => {
            let mean = format.total_len(keys).div_ceil(u128::from(keys.max(1)));
            KeyShape::Format {
                mean_len: u32::try_from(mean).unwrap_or(u32::MAX),
                format,
            }
        }
        None => {
            let key_size = raw.key_size.map_or(DEFAULT_KEY_SIZE, |k| k.0);
            let prefix = raw.key_prefix.clone().unwrap_or_else(|| format!("{name}:"));
            let width = index_width(keys);
            let needed = prefix.len() as u64 + u64::from(width);
            if needed > u64::from(key_size) {
                return Err(err(
                    "key_size",
                    format!(
                        "key_size {key_size} is too short for the prefix \"{prefix}\" ({} bytes) and the largest index ({width} digits): use key_size = {needed} or more",
                        prefix.len()
                    ),
                ));
            }
            KeyShape::Sized {
                prefix,
                size: key_size,
            }
        }
    };
    let shape = Shape {
        key,
        value_size,
        ttl,
        elemental,
    };

    let mut after = Vec::new();
    for dependency in raw.after.iter().flatten() {
        match names.get(dependency.as_str()) {
            Some(&d) if d == index => {
                return Err(err(
                    "after",
                    format!("stage \"{name}\" cannot run after itself"),
                ));
            }
            Some(&d) => after.push(d),
            None => {
                return Err(err(
                    "after",
                    format!(
                        "stage \"{name}\" runs after \"{dependency}\", which is not a stage of this plan"
                    ),
                ));
            }
        }
    }

    Ok(Stage {
        name,
        target,
        amount,
        keys,
        shape,
        connections: raw.connections.map_or(DEFAULT_CONNECTIONS, |c| c.0),
        pipeline: raw.pipeline.map_or(DEFAULT_PIPELINE, |p| p.0),
        keys_per_command: raw.keys_per_command.map(|k| k.0),
        after,
        seed: raw.seed,
        write: resolve_write(raw, targets.values().nth(target), data_type)
            .map_err(|(f, m)| err(f, m))?,
    })
}

/// The stage's `write`: its own, else its target's. `"restore"` is refused as a string
/// stage's own (strings are written with `MSET`/`SET`, faster than `RESTORE`).
fn resolve_write(
    raw: &RawStage,
    target: Option<&toml::Spanned<RawTarget>>,
    data_type: DataType,
) -> Result<WriteMode, (&'static str, String)> {
    let target_write = target.and_then(|t| t.get_ref().write);
    let write = raw.write.or(target_write).unwrap_or_default();
    if write == WriteMode::Restore && data_type == DataType::String && raw.write.is_some() {
        return Err((
            "write",
            format!(
                "stage \"{}\" writes strings, which cachefill writes with MSET/SET in every mode (faster than RESTORE): remove write, or make the stage typed",
                raw.name
            ),
        ));
    }
    Ok(write)
}

/// `key_format`, parsed, when the stage has one; `key_prefix` and `key_size` are refused
/// beside it (the key is exactly the format).
fn resolve_key_format(raw: &RawStage) -> Result<Option<KeyFormat>, (&'static str, String)> {
    let Some(text) = &raw.key_format else {
        return Ok(None);
    };
    let format = KeyFormat::parse(text).map_err(|m| ("key_format", m))?;
    for (field, given) in [
        ("key_prefix", raw.key_prefix.is_some()),
        ("key_size", raw.key_size.is_some()),
    ] {
        if given {
            return Err((
                field,
                format!(
                    "{field} cannot be used with key_format \"{text}\": the key is exactly the format; remove {field} (write any prefix into key_format)"
                ),
            ));
        }
    }
    Ok(Some(format))
}

/// The keys of a `size` stage with a `key_format`: the fewest whose payload, the exact
/// length of their keys plus the mean payload of their elements, reaches `size`.
fn keys_of_size(format: &KeyFormat, size: u64, elements_four_times: u128) -> u64 {
    let reaches = |keys: u64| {
        4 * format.total_len(keys) + u128::from(keys) * elements_four_times >= 4 * u128::from(size)
    };
    // Every key is at least one byte, so `size` keys always reach it.
    let (mut low, mut high) = (0u64, size);
    while low < high {
        let mid = low + (high - low) / 2;
        if reaches(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// Most payload one stage may write: 1 PiB.
const MAX_STAGE_BYTES: u64 = 1 << 50;
/// Most keys one stage may write: 2^40, a thousand primaries of a billion keys.
const MAX_STAGE_KEYS: u64 = 1 << 40;

/// The stage's type and element fields: fields of other types refused, defaults filled in,
/// and sizes checked to leave room for the element index that keeps names unique in a key.
fn resolve_elemental(
    raw: &RawStage,
    name: &str,
    value_size: ValueSize,
) -> Result<Elemental, (&'static str, String)> {
    let data_type = raw.data_type.unwrap_or_default();
    let given = [
        (TypedField::Elements, raw.elements.is_some()),
        (TypedField::FieldSize, raw.field_size.is_some()),
        (TypedField::Score, raw.score.is_some()),
        (TypedField::EntryFields, raw.entry_fields.is_some()),
        (TypedField::KeysPerCommand, raw.keys_per_command.is_some()),
    ];
    for (field, present) in given {
        if present {
            field
                .check(data_type, name)
                .map_err(|message| (field.name(), message))?;
        }
    }
    if data_type == DataType::String {
        return Ok(Elemental::STRING);
    }
    let elemental = Elemental {
        data_type,
        elements: raw.elements.unwrap_or(Elements {
            min: typed::DEFAULT_ELEMENTS,
            max: typed::DEFAULT_ELEMENTS,
        }),
        field_size: raw.field_size.map_or(typed::DEFAULT_FIELD_SIZE, |f| f.0),
        score: raw.score.unwrap_or(typed::DEFAULT_SCORE),
        entry_fields: raw
            .entry_fields
            .map_or(typed::DEFAULT_ENTRY_FIELDS, |e| e.0),
    };
    let element_width = index_width(elemental.elements.max);
    let (field, size, width, what) = match data_type {
        DataType::Hash => (
            "field_size",
            u64::from(elemental.field_size),
            element_width,
            format!(
                "unique field names in keys of up to {} fields",
                elemental.elements.max
            ),
        ),
        DataType::Set | DataType::Zset => (
            "value_size",
            value_size.min,
            element_width,
            format!(
                "unique members in keys of up to {} members",
                elemental.elements.max
            ),
        ),
        DataType::Stream => (
            "field_size",
            u64::from(elemental.field_size),
            index_width(u64::from(elemental.entry_fields)),
            format!(
                "unique field names in entries of {} fields",
                elemental.entry_fields
            ),
        ),
        DataType::String | DataType::List => return Ok(elemental),
    };
    if size < u64::from(width) {
        let shown = if field == "value_size" {
            "value_size min"
        } else {
            field
        };
        return Err((
            field,
            format!(
                "{shown} {size} is too small for {what} (names start with the {width}-digit element index): use {field} = {width} or more"
            ),
        ));
    }
    Ok(elemental)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
