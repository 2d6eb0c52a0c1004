//! Sampling one server read-only: `DBSIZE`, then `SCAN` until the server's share of the
//! sample is found, and for each key its type, TTL, memory and encoding, its element count
//! and the lengths of a few of its elements. Only lengths, counts and scores are kept, never
//! a value's content. Every command passes the [`RateCap`].

use std::collections::{BTreeMap, HashSet};

use redis::Value;

use super::rate::RateCap;
use crate::error::Failure;
use crate::plan::DataType;
use crate::server::ControlHandle;

/// Elements read per key to measure element sizes (`HRANDFIELD`, `SRANDMEMBER`,
/// `ZRANDMEMBER`, `LRANGE`, `XRANGE` with this count).
pub const ELEMENT_SAMPLE: usize = 5;
/// Keys asked for per `SCAN`.
const SCAN_COUNT: u64 = 1000;
/// Most keys measured per round trip.
const BATCH_KEYS: u64 = 256;
/// Commands per key in the first round trip (type, TTL, memory, encoding).
const FIRST_COMMANDS: u64 = 4;

/// What was seen of one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyObservation {
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

/// The sample of one server.
#[derive(Debug, Default)]
pub struct ServerSample {
    /// Its `DBSIZE` at the start.
    pub dbsize: u64,
    /// The keys measured.
    pub keys: Vec<KeyObservation>,
    /// Keys of types a plan cannot write (modules), by type.
    pub unsupported: BTreeMap<String, u64>,
    /// Commands sent.
    pub commands: u64,
}

/// A server to sample and how.
pub struct Sampler {
    /// Its control connection.
    pub control: ControlHandle,
    /// The target's name, for messages.
    pub target: String,
    /// The cap on commands per second (`None`: none).
    pub max_ops: Option<u64>,
}

impl Sampler {
    /// `DBSIZE` of the server (one command, within the cap).
    pub async fn dbsize(&mut self, cap: &mut RateCap) -> Result<u64, Failure> {
        cap.admit(1).await;
        let reply = self.query(&redis::cmd("DBSIZE"), "DBSIZE").await?;
        int(&reply)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| self.odd("DBSIZE", &reply))
    }

    /// Measures up to `quota` keys: the first ones `SCAN` returns (it visits keys in the
    /// order of their hashes, unrelated to their names, so these are a uniform sample).
    pub async fn sample(
        mut self,
        quota: u64,
        dbsize: u64,
        mut cap: RateCap,
    ) -> Result<ServerSample, Failure> {
        let mut sample = ServerSample {
            dbsize,
            ..ServerSample::default()
        };
        let batch = (cap.batch(BATCH_KEYS * FIRST_COMMANDS) / FIRST_COMMANDS).max(1) as usize;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut cursor = "0".to_string();
        loop {
            cap.admit(1).await;
            let mut scan = redis::cmd("SCAN");
            scan.arg(&cursor).arg("COUNT").arg(SCAN_COUNT);
            let reply = self.query(&scan, "SCAN").await?;
            let (next, keys) = scan_reply(&reply).ok_or_else(|| self.odd("SCAN", &reply))?;
            for key in keys {
                if (seen.len() as u64) < quota && seen.insert(key.clone()) {
                    pending.push(key);
                }
            }
            while pending.len() >= batch {
                let rest = pending.split_off(batch);
                self.measure(std::mem::replace(&mut pending, rest), &mut cap, &mut sample)
                    .await?;
            }
            cursor = next;
            if cursor == "0" || seen.len() as u64 >= quota {
                break;
            }
        }
        if !pending.is_empty() {
            self.measure(pending, &mut cap, &mut sample).await?;
        }
        sample.commands = cap.sent();
        Ok(sample)
    }

    /// Two round trips for a batch of keys: type, TTL, memory and encoding; then the element
    /// count and a few elements, by type.
    async fn measure(
        &mut self,
        keys: Vec<Vec<u8>>,
        cap: &mut RateCap,
        sample: &mut ServerSample,
    ) -> Result<(), Failure> {
        let mut first = redis::pipe();
        for key in &keys {
            first.cmd("TYPE").arg(key);
            first.cmd("PTTL").arg(key);
            first.cmd("MEMORY").arg("USAGE").arg(key);
            first.cmd("OBJECT").arg("ENCODING").arg(key);
        }
        cap.admit(first.len() as u64).await;
        let replies = self
            .pipeline(&first, "TYPE, PTTL, MEMORY USAGE and OBJECT ENCODING")
            .await?;
        let mut measured = Vec::with_capacity(keys.len());
        let mut second = redis::pipe();
        for (key, replies) in keys
            .into_iter()
            .zip(replies.chunks(FIRST_COMMANDS as usize))
        {
            let type_name = match &replies[0] {
                Value::ServerError(e) => return Err(self.refused("TYPE", &e.to_string())),
                other => text(other).ok_or_else(|| self.odd("TYPE", other))?,
            };
            let data_type = match type_name.as_str() {
                "none" => continue,
                "string" => DataType::String,
                "hash" => DataType::Hash,
                "set" => DataType::Set,
                "zset" => DataType::Zset,
                "list" => DataType::List,
                "stream" => DataType::Stream,
                _ => {
                    *sample.unsupported.entry(type_name).or_default() += 1;
                    continue;
                }
            };
            let ttl_ms = match &replies[1] {
                Value::ServerError(e) => return Err(self.refused("PTTL", &e.to_string())),
                other => int(other).ok_or_else(|| self.odd("PTTL", other))?,
            };
            if ttl_ms == -2 {
                continue; // gone since SCAN
            }
            second_commands(&mut second, &key, data_type);
            measured.push(KeyObservation {
                key,
                data_type,
                ttl_ms: u64::try_from(ttl_ms).ok(),
                memory: int(&replies[2]).and_then(|m| u64::try_from(m).ok()),
                encoding: text(&replies[3]),
                elements: 1,
                values: Vec::new(),
                fields: Vec::new(),
                scores: Vec::new(),
                entry_fields: Vec::new(),
            });
        }
        if measured.is_empty() {
            return Ok(());
        }
        cap.admit(second.len() as u64).await;
        let replies = self
            .pipeline(&second, "the element counts and samples")
            .await?;
        let mut replies = replies.iter();
        for mut key in measured {
            let commands = second_command_names(key.data_type);
            let mut gone = false;
            for name in commands {
                let reply = replies.next().ok_or_else(|| self.odd(name, &Value::Nil))?;
                if let Value::ServerError(e) = reply {
                    // A key replaced by another type since TYPE: skipped; a refusal: an error.
                    if e.to_string().contains("WRONGTYPE") {
                        gone = true;
                        continue;
                    }
                    return Err(self.refused(name, &e.to_string()));
                }
                read_second(&mut key, name, reply).ok_or_else(|| self.odd(name, reply))?;
            }
            if !gone && key.elements > 0 {
                sample.keys.push(key);
            }
        }
        Ok(())
    }

    async fn query(&mut self, command: &redis::Cmd, name: &str) -> Result<Value, Failure> {
        match command
            .query_async::<Value>(&mut self.control.connection)
            .await
        {
            Ok(Value::ServerError(e)) => Err(self.refused(name, &e.to_string())),
            Ok(value) => Ok(value),
            Err(e) if crate::server::control::is_refusal(&e) => {
                Err(self.refused(name, &e.to_string()))
            }
            Err(e) => Err(self.broken(name, &e)),
        }
    }

    async fn pipeline(
        &mut self,
        pipe: &redis::Pipeline,
        what: &str,
    ) -> Result<Vec<Value>, Failure> {
        let mut pipe = pipe.clone();
        pipe.ignore_errors();
        pipe.query_async::<Vec<Value>>(&mut self.control.connection)
            .await
            .map_err(|e| self.broken(what, &e))
    }

    fn broken(&self, what: &str, error: &redis::RedisError) -> Failure {
        Failure::Failed(format!(
            "target \"{}\" ({}): {what} failed while profiling: {}; profiling only reads, so running it again is safe",
            self.target,
            self.control.addr,
            self.control.explain(error)
        ))
    }

    fn refused(&self, command: &str, error: &str) -> Failure {
        Failure::Failed(format!(
            "target \"{}\" ({}): the server refused {command} while profiling ({}); the user needs the read commands listed in docs/profile.md",
            self.target,
            self.control.addr,
            error.trim()
        ))
    }

    fn odd(&self, command: &str, reply: &Value) -> Failure {
        Failure::Failed(format!(
            "target \"{}\" ({}): unexpected reply to {command} while profiling: {}",
            self.target,
            self.control.addr,
            describe(reply)
        ))
    }
}

/// The kind of a reply, without its content (values never reach messages).
fn describe(reply: &Value) -> &'static str {
    match reply {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::Array(_) | Value::Set(_) | Value::Map(_) => "an array",
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => "a string",
        Value::Okay => "OK",
        _ => "another kind of reply",
    }
}

/// The commands of the second round trip for a key of `data_type`.
fn second_commands(pipe: &mut redis::Pipeline, key: &[u8], data_type: DataType) {
    let n = ELEMENT_SAMPLE;
    match data_type {
        DataType::String => {
            pipe.cmd("STRLEN").arg(key);
        }
        DataType::Hash => {
            pipe.cmd("HLEN").arg(key);
            pipe.cmd("HRANDFIELD").arg(key).arg(n).arg("WITHVALUES");
        }
        DataType::Set => {
            pipe.cmd("SCARD").arg(key);
            pipe.cmd("SRANDMEMBER").arg(key).arg(n);
        }
        DataType::Zset => {
            pipe.cmd("ZCARD").arg(key);
            pipe.cmd("ZRANDMEMBER").arg(key).arg(n).arg("WITHSCORES");
        }
        DataType::List => {
            pipe.cmd("LLEN").arg(key);
            pipe.cmd("LRANGE").arg(key).arg(0).arg(n - 1);
        }
        DataType::Stream => {
            pipe.cmd("XLEN").arg(key);
            pipe.cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(n);
        }
    }
}

fn second_command_names(data_type: DataType) -> &'static [&'static str] {
    match data_type {
        DataType::String => &["STRLEN"],
        DataType::Hash => &["HLEN", "HRANDFIELD"],
        DataType::Set => &["SCARD", "SRANDMEMBER"],
        DataType::Zset => &["ZCARD", "ZRANDMEMBER"],
        DataType::List => &["LLEN", "LRANGE"],
        DataType::Stream => &["XLEN", "XRANGE"],
    }
}

/// Notes what a reply of the second round trip says; `None` when it is not what the
/// command answers.
fn read_second(key: &mut KeyObservation, command: &str, reply: &Value) -> Option<()> {
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

fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

/// A reply of pairs, flat (RESP2) or as an array of pairs (RESP3), made flat.
fn flat(value: &Value) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for item in items(value)? {
        match item {
            Value::Array(pair) => out.extend(pair.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Some(out)
}

fn len(value: &Value) -> Option<u64> {
    match value {
        Value::BulkString(bytes) => Some(bytes.len() as u64),
        Value::SimpleString(s) => Some(s.len() as u64),
        Value::Int(i) => Some(i.to_string().len() as u64),
        _ => None,
    }
}

fn score(value: &Value) -> Option<f64> {
    match value {
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        other => text(other)?.parse().ok(),
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::SimpleString(s) => Some(s.clone()),
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// The next cursor and the keys of a `SCAN` reply.
fn scan_reply(reply: &Value) -> Option<(String, Vec<Vec<u8>>)> {
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
