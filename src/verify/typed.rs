//! Reading typed keys back: each key's type, element count and TTL first, then its elements
//! in bounded chunks (`HMGET`, `SMISMEMBER`, `ZMSCORE`, `LRANGE`, `XRANGE … COUNT`), compared
//! with the dataset. A count equal to the dataset's and every expected element present with
//! its value means the key holds exactly its elements, with nothing extra.

use redis::Value;

use super::{Reader, StageCheck, check_ttl};
use crate::dataset::{Dataset, Element, Entry};
use crate::plan::DataType;
use crate::resp::typed::count_command;

/// Elements read per command, at most.
const CHUNK: u64 = 1000;
/// Payload bytes read per command, about: large elements are read fewer at a time, so a
/// reply stays well within the control connection's bound (`MAX_CONTROL_REPLY_BYTES`).
const CHUNK_BYTES: u64 = 64 << 20;
/// Commands per round trip when reading elements.
const COMMANDS_PER_TRIP: usize = 64;

/// Checks one batch of typed keys, grouped by server.
pub(super) async fn check_batch(
    indices: &[u64],
    dataset: &Dataset,
    reader: &Reader,
    ttl_max: Option<u64>,
) -> Result<StageCheck, String> {
    let mut part = StageCheck::default();
    let groups = reader.by_node(indices, dataset);
    let data_type = dataset.data_type();
    for (node, keys) in groups.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, key) in &keys {
            pipe.cmd("TYPE").arg(key);
            pipe.cmd(std::str::from_utf8(count_command(data_type)).unwrap_or("EXISTS"))
                .arg(key);
            pipe.cmd("PTTL").arg(key);
        }
        let replies: Vec<Value> = reader.query(node, &pipe).await?;
        let mut whole = Vec::new();
        for ((index, key), reply) in keys.into_iter().zip(replies.chunks(3)) {
            part.checked += 1;
            let found = match &reply[0] {
                Value::SimpleString(t) => t.as_str(),
                _ => "unknown",
            };
            if found == "none" {
                part.add_missing(&key);
                continue;
            }
            if found != data_type.as_str() {
                part.add_wrong_type(&key, found);
                continue;
            }
            let entry = dataset.entry(index);
            let count = match reply.get(1) {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            if let Some(max) = ttl_max {
                check_ttl(&mut part, &key, reply.get(2), max);
            }
            if count != entry.elements {
                part.add_wrong_value(&key, || {
                    format!(
                        "{count} {} instead of {}",
                        data_type.elements_noun(),
                        entry.elements
                    )
                });
                continue;
            }
            whole.push((entry, key));
        }
        check_elements(&whole, dataset, reader, node, &mut part).await?;
    }
    Ok(part)
}

/// One chunk of a key's elements to read: which key, and elements `start..end`.
struct Chunk {
    key: usize,
    start: u64,
    end: u64,
}

/// Reads the elements of keys whose count is right and compares them with the dataset;
/// a key counts once however many of its elements differ.
async fn check_elements(
    keys: &[(Entry, Vec<u8>)],
    dataset: &Dataset,
    reader: &Reader,
    node: usize,
    part: &mut StageCheck,
) -> Result<(), String> {
    let per_read = (CHUNK_BYTES / dataset.mean_element_bytes().max(1)).clamp(1, CHUNK);
    let chunks: Vec<Chunk> = keys
        .iter()
        .enumerate()
        .flat_map(|(key, (entry, _))| {
            (0..entry.elements.div_ceil(per_read)).map(move |c| Chunk {
                key,
                start: c * per_read,
                end: ((c + 1) * per_read).min(entry.elements),
            })
        })
        .collect();
    let mut wrong = vec![false; keys.len()];
    for trip in chunks.chunks(COMMANDS_PER_TRIP) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for chunk in trip {
            let (entry, key) = &keys[chunk.key];
            push_read(&mut pipe, dataset, entry, key, chunk.start..chunk.end);
        }
        let replies: Vec<Value> = reader.query(node, &pipe).await?;
        for (chunk, reply) in trip.iter().zip(replies) {
            if wrong[chunk.key] {
                continue;
            }
            let (entry, key) = &keys[chunk.key];
            if let Some(what) = compare(dataset, entry, chunk.start..chunk.end, &reply) {
                wrong[chunk.key] = true;
                part.add_wrong_value(key, || what);
            }
        }
    }
    Ok(())
}

/// The element names a read asks about: hash field names, or set/zset members.
fn names(dataset: &Dataset, entry: &Entry, range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range
        .map(|j| {
            let mut name = Vec::new();
            match dataset.data_type() {
                DataType::Hash => dataset.push_field_name(j, &mut name),
                _ => dataset.push_member(&dataset.element(entry, j), &mut name),
            }
            name
        })
        .collect()
}

/// Adds the command that reads elements `range` of a key.
fn push_read(
    pipe: &mut redis::Pipeline,
    dataset: &Dataset,
    entry: &Entry,
    key: &[u8],
    range: std::ops::Range<u64>,
) {
    match dataset.data_type() {
        DataType::Hash => {
            pipe.cmd("HMGET").arg(key).arg(names(dataset, entry, range));
        }
        DataType::Set => {
            pipe.cmd("SMISMEMBER")
                .arg(key)
                .arg(names(dataset, entry, range));
        }
        DataType::Zset => {
            pipe.cmd("ZMSCORE")
                .arg(key)
                .arg(names(dataset, entry, range));
        }
        DataType::List => {
            pipe.cmd("LRANGE")
                .arg(key)
                .arg(range.start)
                .arg(range.end - 1);
        }
        DataType::Stream | DataType::String => {
            let first = dataset.stream_id_ms(&dataset.element(entry, range.start));
            let last = dataset.stream_id_ms(&dataset.element(entry, range.end - 1));
            pipe.cmd("XRANGE")
                .arg(key)
                .arg(format!("{first}-0"))
                .arg(format!("{last}-0"))
                .arg("COUNT")
                .arg(range.end - range.start);
        }
    }
}

/// What differs between a read and the dataset, or `None` when they agree.
fn compare(
    dataset: &Dataset,
    entry: &Entry,
    range: std::ops::Range<u64>,
    reply: &Value,
) -> Option<String> {
    let Value::Array(items) = reply else {
        return Some(format!("unexpected reply {reply:?}"));
    };
    let noun = dataset.data_type().elements_noun();
    if dataset.data_type() == DataType::Stream && items.len() as u64 != range.end - range.start {
        return Some(format!(
            "{} of {} {noun} from {} found",
            items.len(),
            range.end - range.start,
            range.start
        ));
    }
    for (j, item) in range.clone().zip(items) {
        let element = dataset.element(entry, j);
        if let Some(what) = compare_element(dataset, &element, item) {
            return Some(format!("element {j}: {what}"));
        }
    }
    None
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// What differs in one element, or `None`.
fn compare_element(dataset: &Dataset, element: &Element, item: &Value) -> Option<String> {
    let mut expected = Vec::new();
    match dataset.data_type() {
        DataType::Hash | DataType::List => {
            dataset.push_element_value(element, &mut expected);
            match bytes(item) {
                None => Some("missing".into()),
                Some(found) if found != expected.as_slice() => Some("another value".into()),
                Some(_) => None,
            }
        }
        DataType::Set => match item {
            Value::Int(1) => None,
            _ => Some("member missing".into()),
        },
        DataType::Zset => {
            let score = dataset.score(element);
            match bytes(item).and_then(|b| std::str::from_utf8(b).ok()) {
                None => Some("member missing".into()),
                Some(found) if found.parse::<f64>().ok() != Some(score as f64) => {
                    Some(format!("score {found} instead of {score}"))
                }
                Some(_) => None,
            }
        }
        DataType::Stream | DataType::String => compare_stream_entry(dataset, element, item),
    }
}

/// Compares one `XRANGE` entry (`[id, [field, value, …]]`) with the dataset's.
fn compare_stream_entry(dataset: &Dataset, element: &Element, item: &Value) -> Option<String> {
    let Value::Array(parts) = item else {
        return Some("not a stream entry".into());
    };
    let id = format!("{}-0", dataset.stream_id_ms(element));
    if parts.first().and_then(bytes) != Some(id.as_bytes()) {
        return Some(format!("entry {id} missing"));
    }
    let Some(Value::Array(fields)) = parts.get(1) else {
        return Some(format!("entry {id} has no fields"));
    };
    if fields.len() != 2 * dataset.entry_fields() as usize {
        return Some(format!("entry {id} has {} fields", fields.len() / 2));
    }
    for (k, pair) in fields.chunks(2).enumerate() {
        let (mut name, mut value) = (Vec::new(), Vec::new());
        dataset.push_field_name(k as u64, &mut name);
        dataset.push_stream_value(&dataset.stream_value(element, k as u32), &mut value);
        if bytes(&pair[0]) != Some(name.as_slice()) || bytes(&pair[1]) != Some(value.as_slice()) {
            return Some(format!("entry {id} field {k} differs"));
        }
    }
    None
}
