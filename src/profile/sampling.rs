//! Sampling one server read-only: `DBSIZE`, then `SCAN` until the server's share of the
//! sample is found, and for each key its type, TTL, memory and encoding, its element count
//! and the lengths of a few of its elements. Only lengths, counts and scores are kept, never
//! a value's content. Every command passes the [`RateCap`].

use std::collections::{BTreeMap, HashSet};

use redis::Value;

use super::rate::RateCap;
pub(crate) use super::replies::KeyObservation;
use super::replies::{describe, read_second, scan_reply, second_commands};
use crate::error::Failure;
use crate::plan::DataType;
use crate::progress::Counter;
use crate::server::reconnecting::{ReadFailure, Reconnecting, Request};
use crate::server::value::{int, text};

/// Keys asked for per `SCAN`.
const SCAN_COUNT: u64 = 1000;
/// Most keys measured per round trip.
const BATCH_KEYS: u64 = 256;
/// Commands per key in the first round trip (type, TTL, memory, encoding).
const FIRST_COMMANDS: u64 = 4;

/// The sample of one server.
#[derive(Debug, Default)]
pub(crate) struct ServerSample {
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
pub(crate) struct Sampler {
    /// Its control connection, made again when its link breaks (profiling only reads).
    pub control: Reconnecting,
    /// The target's name, for messages.
    pub target: String,
    /// The cap on commands per second (`None`: none).
    pub max_ops: Option<u64>,
    /// Set when the server could not be reached any more (its link broke and new
    /// connections failed, or it stayed silent for `io_timeout`): on a cluster, a replica
    /// may take over.
    pub lost: bool,
}

impl Sampler {
    /// `DBSIZE` of the server (one command, within the cap).
    pub(crate) async fn dbsize(&mut self, cap: &mut RateCap) -> Result<u64, Failure> {
        cap.admit(1).await;
        let reply = self.query(&redis::cmd("DBSIZE"), "DBSIZE").await?;
        int(&reply)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| self.odd("DBSIZE", &reply))
    }

    /// Measures up to `quota` keys: the first ones `SCAN` returns (it visits keys in the
    /// order of their hashes, unrelated to their names, so these are a uniform sample).
    pub(crate) async fn sample(
        &mut self,
        quota: u64,
        dbsize: u64,
        mut cap: RateCap,
        counter: Counter,
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
                counter.add(batch as u64);
            }
            cursor = next;
            if cursor == "0" || seen.len() as u64 >= quota {
                break;
            }
        }
        if !pending.is_empty() {
            let keys = pending.len() as u64;
            self.measure(pending, &mut cap, &mut sample).await?;
            counter.add(keys);
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
            let commands = second_commands(&mut second, &key, data_type);
            let observation = KeyObservation {
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
            };
            measured.push((observation, commands));
        }
        if measured.is_empty() {
            return Ok(());
        }
        cap.admit(second.len() as u64).await;
        let replies = self
            .pipeline(&second, "the element counts and samples")
            .await?;
        let mut replies = replies.iter();
        for (mut key, commands) in measured {
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
        match self.control.query::<Value>(Request::Command(command)).await {
            Ok(Value::ServerError(e)) => Err(self.refused(name, &e.to_string())),
            Ok(value) => Ok(value),
            Err(failure) if crate::server::control::is_refusal(&failure.error) => {
                Err(self.refused(name, &failure.error.to_string()))
            }
            Err(failure) => {
                self.lost = failure.unreachable();
                Err(self.broken(name, &failure))
            }
        }
    }

    async fn pipeline(
        &mut self,
        pipe: &redis::Pipeline,
        what: &str,
    ) -> Result<Vec<Value>, Failure> {
        let mut pipe = pipe.clone();
        pipe.ignore_errors();
        match self
            .control
            .query::<Vec<Value>>(Request::Pipeline(&pipe))
            .await
        {
            Ok(replies) => Ok(replies),
            Err(failure) => {
                self.lost = failure.unreachable();
                Err(self.broken(what, &failure))
            }
        }
    }

    fn broken(&self, what: &str, failure: &ReadFailure) -> Failure {
        Failure::Failed(format!(
            "target \"{}\" ({}): {what} failed while profiling: {}; profiling only reads, so running it again is safe",
            self.target,
            self.control.addr(),
            failure.describe()
        ))
    }

    fn refused(&self, command: &str, error: &str) -> Failure {
        Failure::Failed(format!(
            "target \"{}\" ({}): the server refused {command} while profiling ({}); the user needs the read commands listed in docs/profile.md",
            self.target,
            self.control.addr(),
            error.trim()
        ))
    }

    fn odd(&self, command: &str, reply: &Value) -> Failure {
        Failure::Failed(format!(
            "target \"{}\" ({}): unexpected reply to {command} while profiling: {}",
            self.target,
            self.control.addr(),
            describe(reply)
        ))
    }
}
