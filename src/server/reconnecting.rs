//! A control connection for callers that only read (`verify`, `profile`): a request cut by
//! a broken link (reset, closed) is sent again on a new connection to the same server, up
//! to [`RECONNECTS_PER_REQUEST`] new connections for one request (one that is refused is
//! tried again after a pause: a restarting server). Reads change nothing, so
//! sending one twice is safe. A server that answers `LOADING` (restarted, reading its
//! dataset from disk), `CLUSTERDOWN` or `TRYAGAIN` (a failover, a migration) is asked again
//! every [`LOADING_PAUSE`] for up to `io_timeout`, so a
//! read right after a restart waits for the data instead of finding it wrong. A silent
//! server (`io_timeout`), a refusal and a reply that broke the rules of RESP are not the
//! link: they fail the request at once.

use super::connector::TargetError;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, Value};

use super::connector::locked;
use super::control::{LOADING_PAUSE, is_refusal};
use super::{Connector, ControlHandle};
use crate::plan::NodeAddr;
use crate::resp::ErrorReply;

/// New connections one request may make or try, at most, before it fails.
pub(crate) const RECONNECTS_PER_REQUEST: u32 = 3;

/// The pause after a new connection failed, doubled each time (100 ms, then 200 ms …).
const PAUSE: Duration = Duration::from_millis(50);

/// What is sent: one command or a pipeline.
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    /// One command.
    Command(&'a redis::Cmd),
    /// A pipeline of commands, one round trip.
    Pipeline(&'a redis::Pipeline),
}

/// Why a request failed.
pub(crate) struct ReadFailure {
    /// The connection its last attempt went over.
    pub handle: ControlHandle,
    /// The last attempt's error.
    pub error: redis::RedisError,
    /// New connections it had made or tried, the made ones broken too.
    pub reconnects: u32,
    /// Why making a new connection failed, when that ended it.
    pub reconnect_failed: Option<String>,
    /// How long the server had answered `LOADING`, `CLUSTERDOWN` or `TRYAGAIN`, when it
    /// still did at the end.
    pub busy_for: Option<Duration>,
}

impl ReadFailure {
    /// A failure of the request over `handle` with `error`, after `reconnects` new
    /// connections.
    fn new(handle: ControlHandle, error: redis::RedisError, reconnects: u32) -> ReadFailure {
        ReadFailure {
            handle,
            error,
            reconnects,
            reconnect_failed: None,
            busy_for: None,
        }
    }

    /// True when the server could not be reached any more: new connections to it failed,
    /// or it stayed silent for `io_timeout` (on a cluster, a failover may follow).
    pub(crate) fn unreachable(&self) -> bool {
        self.reconnect_failed.is_some() || self.error.is_timeout()
    }

    /// The failure in words: what broke, and how often the link broke again.
    pub(crate) fn describe(&self) -> String {
        let mut text = self.handle.explain(&self.error);
        if let Some(waited) = self.busy_for {
            text.push_str(&format!(
                " (still so after {}, the target's io_timeout)",
                humantime::format_duration(waited)
            ));
        }
        match &self.reconnect_failed {
            Some(failed) => text.push_str(&format!(
                "; connecting again failed ({} tries): {failed}",
                self.reconnects
            )),
            None if self.reconnects > 0 => text.push_str(&format!(
                ", {} times in a row on new connections",
                self.reconnects
            )),
            None => {}
        }
        text
    }
}

/// A control connection made again when its link breaks.
pub(crate) struct Reconnecting {
    /// The connection now, and how many times it was made again (its generation).
    current: Mutex<(u64, ControlHandle)>,
    /// Held while a new connection is made, so requests cut by one break make one.
    reconnecting: tokio::sync::Mutex<()>,
    connector: Arc<Connector>,
    /// New connections made so far.
    reconnects: AtomicU64,
}

impl Reconnecting {
    /// Reads over `handle`, made again through `connector` when its link breaks.
    pub(crate) fn new(handle: ControlHandle, connector: Arc<Connector>) -> Reconnecting {
        Reconnecting {
            current: Mutex::new((0, handle)),
            reconnecting: tokio::sync::Mutex::new(()),
            connector,
            reconnects: AtomicU64::new(0),
        }
    }

    /// The server.
    pub(crate) fn addr(&self) -> NodeAddr {
        locked(&self.current).1.addr.clone()
    }

    /// New connections made so far.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
    }

    /// Sends `request` and reads its replies, on a new connection when the link broke.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        request: Request<'_>,
    ) -> Result<T, ReadFailure> {
        let mut reconnects = 0;
        let mut busy_since: Option<Instant> = None;
        loop {
            let (generation, handle) = locked(&self.current).clone();
            let mut connection = handle.connection.clone();
            let sent = match request {
                Request::Command(command) => command.query_async::<Value>(&mut connection).await,
                Request::Pipeline(pipe) => pipe.query_async::<Value>(&mut connection).await,
            };
            let error = match sent.and_then(busy) {
                Ok(replies) => {
                    return redis::from_redis_value(replies)
                        .map_err(|e| ReadFailure::new(handle, e.into(), reconnects));
                }
                Err(error) => error,
            };
            if error.code().is_some_and(is_busy) {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() < self.connector.io_timeout {
                    tokio::time::sleep(LOADING_PAUSE).await;
                    continue;
                }
                return Err(ReadFailure {
                    busy_for: Some(self.connector.io_timeout),
                    ..ReadFailure::new(handle, error, reconnects)
                });
            }
            if !is_broken_link(&handle, &error) || reconnects == RECONNECTS_PER_REQUEST {
                return Err(ReadFailure::new(handle, error, reconnects));
            }
            // A new connection; a server restarting refuses it for a moment, so a failed
            // one is tried again after a pause, within the request's budget.
            loop {
                reconnects += 1;
                match self.reconnect(generation).await {
                    Ok(()) => break,
                    Err(failed) if reconnects == RECONNECTS_PER_REQUEST => {
                        return Err(ReadFailure {
                            reconnect_failed: Some(failed.0),
                            ..ReadFailure::new(handle, error, reconnects)
                        });
                    }
                    Err(_) => tokio::time::sleep(PAUSE * (1 << reconnects)).await,
                }
            }
        }
    }

    /// Makes the connection again, unless another request already replaced the broken one
    /// (`generation`).
    async fn reconnect(&self, generation: u64) -> Result<(), TargetError> {
        let _one_at_a_time = self.reconnecting.lock().await;
        let addr = {
            let current = locked(&self.current);
            if current.0 != generation {
                return Ok(());
            }
            current.1.addr.clone()
        };
        let control = self
            .connector
            .control(&addr)
            .await
            .map_err(|e| TargetError(e.to_string()))?;
        // Made means answered: without a login to send, a connection the server closed as
        // it accepted it would only fail on the request sent again. A refusal is an answer
        // (a least-privilege user may not run PING).
        let handle = control.handle();
        match redis::cmd("PING")
            .query_async::<()>(&mut handle.connection.clone())
            .await
        {
            Err(e) if !is_refusal(&e) => {
                return Err(TargetError(format!("{addr}: {}", handle.explain(&e))));
            }
            _ => {}
        }
        *locked(&self.current) = (generation + 1, handle);
        self.reconnects.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// True for the codes of a server that is busy for a moment: loading its dataset, its
/// cluster down (a failover), a slot migrating.
fn is_busy(code: &str) -> bool {
    ErrorReply::parse(code.as_bytes()).is_transient()
}

/// The first busy reply among `replies` (one reply, or a pipeline's, errors kept) as an
/// error; else `replies`.
fn busy(replies: Value) -> redis::RedisResult<Value> {
    let is_busy_reply = |reply: &Value| matches!(reply, Value::ServerError(e) if is_busy(e.code()));
    let found = match &replies {
        Value::Array(items) => items.iter().find(|item| is_busy_reply(item)),
        reply => Some(reply).filter(|reply| is_busy_reply(reply)),
    };
    match found {
        Some(Value::ServerError(e)) => Err(e.clone().into()),
        _ => Ok(replies),
    }
}

/// True when `error` is the link breaking (reset, closed), not a silent server (timeout) or
/// a reply that broke the rules of RESP (sending again would only read it again).
fn is_broken_link(handle: &ControlHandle, error: &redis::RedisError) -> bool {
    !error.is_timeout()
        && !handle.broke_on_bad_reply()
        && (error.is_io_error() || error.is_connection_dropped())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_reply(line: &str) -> Value {
        redis::Parser::new()
            .parse_value(format!("-{line}\r\n").as_bytes())
            .unwrap()
    }

    #[test]
    fn a_loading_cluster_down_or_try_again_reply_makes_the_request_wait() {
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            let replies = Value::Array(vec![Value::Nil, error_reply(line)]);
            let code = line.split(' ').next();
            assert_eq!(busy(replies).unwrap_err().code(), code, "{line}");
            assert_eq!(busy(error_reply(line)).unwrap_err().code(), code, "{line}");
        }
        let refused = Value::Array(vec![error_reply("WRONGTYPE Operation against a key")]);
        assert_eq!(busy(refused.clone()).unwrap(), refused);
        assert_eq!(busy(Value::Okay).unwrap(), Value::Okay);
    }
}
