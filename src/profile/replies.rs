//! The replies `profile` reads, and the per-type commands of its second round trip: each
//! reply is reduced to lengths, counts and scores here (a [`KeyObservation`]), so a value's
//! content goes no further.

use redis::Value;

use crate::plan::DataType;
use crate::server::value::{int, items, text};

/// Elements read per key to measure element sizes (`HRANDFIELD`, `SRANDMEMBER`,
/// `ZRANDMEMBER`, `LRANGE`, `XRANGE` with this count).
pub(crate) const ELEMENT_SAMPLE: usize = 5;
/// What was seen of one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyObservation {
    /// The key (kept only to find its pattern).
    pub key: Vec<u8>,
    /// Its type.
    pub data_type: DataType,
    /// Its remaining time to live, when it expires.
    pub ttl_ms: Option<u64>,
    /// `MEMORY USAGE`, when the server answers it.
    pub memory: Option<u64>,
    /// `OBJECT ENCODING`, when the server answers it.
    pub encoding: Option<String>,
    /// Element count (hash fields, members, items, stream entries); 1 for a string.
    pub elements: u64,
    /// Lengths of the value (string), hash values, members, items or stream values read.
    pub values: Vec<u64>,
    /// Lengths of the hash fields or stream field names read.
    pub fields: Vec<u64>,
    /// Scores of the sorted-set members read.
    pub scores: Vec<f64>,
    /// Field/value pairs of each stream entry read.
    pub entry_fields: Vec<u64>,
}

/// The kind of a reply, without its content (values never reach messages).
pub(super) fn describe(reply: &Value) -> &'static str {
    match reply {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::Array(_) | Value::Set(_) | Value::Map(_) => "an array",
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => "a string",
        Value::Okay => "OK",
        _ => "another kind of reply",
    }
}

/// Adds the commands of the second round trip for a key of `data_type` to `pipe`; returns
/// their names, in order, to read their replies with [`read_second`].
pub(super) fn second_commands(
    pipe: &mut redis::Pipeline,
    key: &[u8],
    data_type: DataType,
) -> &'static [&'static str] {
    let n = ELEMENT_SAMPLE;
    match data_type {
        DataType::String => {
            pipe.cmd("STRLEN").arg(key);
            &["STRLEN"]
        }
        DataType::Hash => {
            pipe.cmd("HLEN").arg(key);
            pipe.cmd("HRANDFIELD").arg(key).arg(n).arg("WITHVALUES");
            &["HLEN", "HRANDFIELD"]
        }
        DataType::Set => {
            pipe.cmd("SCARD").arg(key);
            pipe.cmd("SRANDMEMBER").arg(key).arg(n);
            &["SCARD", "SRANDMEMBER"]
        }
        DataType::Zset => {
            pipe.cmd("ZCARD").arg(key);
            pipe.cmd("ZRANDMEMBER").arg(key).arg(n).arg("WITHSCORES");
            &["ZCARD", "ZRANDMEMBER"]
        }
        DataType::List => {
            pipe.cmd("LLEN").arg(key);
            pipe.cmd("LRANGE").arg(key).arg(0).arg(n - 1);
            &["LLEN", "LRANGE"]
        }
        DataType::Stream => {
            pipe.cmd("XLEN").arg(key);
            pipe.cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(n);
            &["XLEN", "XRANGE"]
        }
    }
}

/// Notes what a reply of the second round trip says; `None` when it is not what the
/// command answers.
pub(super) fn read_second(key: &mut KeyObservation, command: &str, reply: &Value) -> Option<()> {
    match command {
        "STRLEN" => {
            let len = u64::try_from(int(reply)?).ok()?;
            key.values.push(len);
        }
        "HLEN" | "SCARD" | "ZCARD" | "LLEN" | "XLEN" => {
            key.elements = u64::try_from(int(reply)?).ok()?;
        }
        "HRANDFIELD" => {
            for pair in flat(reply)?.chunks(2) {
                key.fields.push(len(&pair[0])?);
                key.values.push(len(pair.get(1)?)?);
            }
        }
        "ZRANDMEMBER" => {
            for pair in flat(reply)?.chunks(2) {
                key.values.push(len(&pair[0])?);
                key.scores.push(score(pair.get(1)?)?);
            }
        }
        "SRANDMEMBER" | "LRANGE" => {
            for item in items(reply)? {
                key.values.push(len(item)?);
            }
        }
        "XRANGE" => {
            for entry in items(reply)? {
                let fields = items(items(entry)?.get(1)?)?;
                key.entry_fields.push(fields.len() as u64 / 2);
                for pair in fields.chunks(2) {
                    key.fields.push(len(&pair[0])?);
                    key.values.push(len(pair.get(1)?)?);
                }
            }
        }
        _ => return None,
    }
    Some(())
}

/// A reply of pairs, flat (RESP2) or as an array of pairs (RESP3), made flat.
pub(super) fn flat(value: &Value) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for item in items(value)? {
        match item {
            Value::Array(pair) => out.extend(pair.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Some(out)
}

pub(super) fn len(value: &Value) -> Option<u64> {
    match value {
        Value::BulkString(bytes) => Some(bytes.len() as u64),
        Value::SimpleString(s) => Some(s.len() as u64),
        Value::Int(i) => Some(i.to_string().len() as u64),
        _ => None,
    }
}

pub(super) fn score(value: &Value) -> Option<f64> {
    match value {
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        other => text(other)?.parse().ok(),
    }
}

/// The next cursor and the keys of a `SCAN` reply.
pub(super) fn scan_reply(reply: &Value) -> Option<(String, Vec<Vec<u8>>)> {
    let [cursor, keys] = items(reply)? else {
        return None;
    };
    let keys = items(keys)?
        .iter()
        .map(|k| match k {
            Value::BulkString(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((text(cursor)?, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn observed(data_type: DataType) -> KeyObservation {
        KeyObservation {
            key: b"k".to_vec(),
            data_type,
            ttl_ms: None,
            memory: None,
            encoding: None,
            elements: 1,
            values: Vec::new(),
            fields: Vec::new(),
            scores: Vec::new(),
            entry_fields: Vec::new(),
        }
    }

    #[test]
    fn element_samples_keep_only_lengths_and_scores() {
        let mut key = observed(DataType::Zset);
        read_second(&mut key, "ZCARD", &Value::Int(7)).unwrap();
        let reply = Value::Array(vec![bulk("alice"), bulk("12.5"), bulk("bo"), bulk("-3")]);
        read_second(&mut key, "ZRANDMEMBER", &reply).unwrap();
        assert_eq!(
            (key.elements, key.values, key.scores),
            (7, vec![5, 2], vec![12.5, -3.0])
        );

        let mut key = observed(DataType::Stream);
        let entry = |fields: &[&str]| {
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let reply = Value::Array(vec![
            entry(&["f", "value", "gg", "v"]),
            entry(&["f", "xyz"]),
        ]);
        read_second(&mut key, "XRANGE", &reply).unwrap();
        assert_eq!(key.entry_fields, vec![2, 1]);
        assert_eq!(key.fields, vec![1, 2, 1]);
        assert_eq!(key.values, vec![5, 1, 3]);
    }

    #[test]
    fn resp3_pairs_are_read_like_resp2() {
        let mut key = observed(DataType::Hash);
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("name"), bulk("value1")]),
            Value::Array(vec![bulk("n"), bulk("v")]),
        ]);
        read_second(&mut key, "HRANDFIELD", &reply).unwrap();
        assert_eq!((key.fields, key.values), (vec![4, 1], vec![6, 1]));
    }

    #[test]
    fn a_scan_reply_gives_the_cursor_and_keys() {
        let reply = Value::Array(vec![bulk("17"), Value::Array(vec![bulk("a"), bulk("b")])]);
        assert_eq!(
            scan_reply(&reply),
            Some(("17".into(), vec![b"a".to_vec(), b"b".to_vec()]))
        );
        assert_eq!(scan_reply(&Value::Int(3)), None);
    }
}
