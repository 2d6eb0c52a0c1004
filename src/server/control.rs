//! Control connections (through the `redis` crate, behind a [`Guarded`] stream): login,
//! INFO facts, and the memory probe of `until_memory` stages. The hot path uses
//! raw data connections instead.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};

use super::connector::{Connector, TargetError};
use super::guarded::{BreakReason, Guarded};
use super::value::{items, text};
use crate::plan::NodeAddr;

/// Time limit for reading a server's facts (INFO).
const FACTS_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause before asking a server that is loading its dataset again.
pub(crate) const LOADING_PAUSE: Duration = Duration::from_millis(100);

/// Why cachefill stopped waiting for a server loading its dataset from disk.
pub(crate) fn still_loading(io_timeout: Duration) -> String {
    format!(
        "the server was still loading its dataset from disk after {} (io_timeout); run again once it has loaded, or raise io_timeout",
        humantime::format_duration(io_timeout)
    )
}

impl Connector {
    /// Opens the control connection (INFO, FLUSHALL, topology) over the same kind of
    /// connection as the data plane, logged in by the `redis` crate.
    pub(crate) async fn control(&self, addr: &NodeAddr) -> Result<Control, TargetError> {
        let mut settings = RedisConnectionInfo::default()
            .set_db(i64::from(self.db))
            .set_skip_set_lib_name();
        if let Some(user) = &self.credentials.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.credentials.password {
            settings = settings.set_password(password.expose());
        }
        // The whole login (connection, TLS, AUTH and SELECT, then a PING that a server must
        // answer, even with an error) within connect_timeout: a stopped server accepts
        // connections and answers nothing.
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = Guarded::new(self.connect(addr).await?);
        let broken = stream.reason();
        let silent = |step: &str| {
            self.fail(
                addr,
                format!(
                    "the server accepted the connection but did not answer {step} within {} (connect_timeout)",
                    humantime::format_duration(self.connect_timeout)
                ),
            )
        };
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.io_timeout));
        let login = MultiplexedConnection::new_with_config(&settings, stream, config);
        let (mut connection, driver) = match tokio::time::timeout_at(deadline, login).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.fail(addr, describe_redis_error(&e, &broken))),
            Err(_) => return Err(silent(self.login_steps())),
        };
        tokio::spawn(driver);
        let ping_command = redis::cmd("PING");
        let ping = ping_command.query_async::<redis::Value>(&mut connection);
        match tokio::time::timeout_at(deadline, ping).await {
            // Any reply: `LOADING` from a server reading its dataset, `NOPERM` from a user
            // without PING, are answers.
            Ok(Ok(_)) => {}
            Ok(Err(e)) if is_refusal(&e) => {}
            Ok(Err(e)) => return Err(self.fail(addr, describe_redis_error(&e, &broken))),
            Err(_) => return Err(silent("PING")),
        }
        Ok(Control {
            handle: ControlHandle {
                addr: addr.clone(),
                connection,
                broken,
            },
            connector: self.clone(),
        })
    }
}

impl Connector {
    /// The commands the `redis` crate's login sends: `AUTH` with a password, `SELECT` for
    /// another database than 0.
    fn login_steps(&self) -> &'static str {
        match (self.credentials.password.is_some(), self.db != 0) {
            (true, true) => "AUTH and SELECT",
            (true, false) => "AUTH",
            (false, true) => "SELECT",
            (false, false) => "the login",
        }
    }
}

fn describe_redis_error(error: &redis::RedisError, broken: &BreakReason) -> String {
    let text = broken.explain(error);
    if error.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") {
        "authentication failed (wrong user or password); check the user and the password variable or file".into()
    } else if text.contains("NOAUTH") {
        "the server requires a password; set password_env or password_file".into()
    } else if error.is_timeout() {
        "cannot connect: timed out (connect_timeout)".into()
    } else {
        format!("login failed: {text}")
    }
}

/// True for an error reply of the server (a refusal such as `NOPERM` or an unknown
/// command), as opposed to a broken connection or a reply that is not RESP.
pub(crate) fn is_refusal(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    )
}

/// A control connection to one server.
pub(crate) struct Control {
    pub(super) handle: ControlHandle,
    pub(super) connector: Connector,
}

/// A control connection for concurrent use (verify's reads, the memory probe): the server,
/// the connection, and why it broke, so that errors name both.
#[derive(Clone)]
pub(crate) struct ControlHandle {
    /// The server.
    pub addr: NodeAddr,
    /// The connection (multiplexed: clones share it).
    pub connection: MultiplexedConnection,
    broken: BreakReason,
}

impl ControlHandle {
    /// What `error` of this connection means: the reply that broke the connection when one
    /// did (the `redis` crate says only "broken pipe" to the requests caught up in it).
    pub(crate) fn explain(&self, error: &redis::RedisError) -> String {
        self.broken.explain(error)
    }

    /// True when a reply that broke the rules of RESP closed this connection (a new one
    /// would read the same reply), not the link.
    pub(crate) fn broke_on_bad_reply(&self) -> bool {
        self.broken.bad_reply()
    }
}

/// Reads `INFO` figures summed over a target's primaries on their control connections: for
/// `until_memory` stages and the run's timeline.
#[derive(Clone)]
pub(crate) struct MemoryProbe {
    controls: Vec<ControlHandle>,
}

/// What the timeline reads from a target once a second, summed over its primaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InfoFigures {
    /// `used_memory`.
    pub used_memory: u64,
    /// `maxmemory` (0: no limit).
    pub maxmemory: u64,
    /// `evicted_keys`.
    pub evicted_keys: u64,
    /// `expired_keys`.
    pub expired_keys: u64,
}

impl InfoFigures {
    /// The figures of one server's `INFO` (default sections: memory and stats).
    fn parse(info: &str) -> Option<InfoFigures> {
        let number = |name| info_field(info, name)?.parse::<u64>().ok();
        Some(InfoFigures {
            used_memory: number("used_memory")?,
            maxmemory: number("maxmemory")?,
            evicted_keys: number("evicted_keys")?,
            expired_keys: number("expired_keys")?,
        })
    }

    fn add(self, other: InfoFigures) -> InfoFigures {
        InfoFigures {
            used_memory: self.used_memory.saturating_add(other.used_memory),
            maxmemory: self.maxmemory.saturating_add(other.maxmemory),
            evicted_keys: self.evicted_keys.saturating_add(other.evicted_keys),
            expired_keys: self.expired_keys.saturating_add(other.expired_keys),
        }
    }
}

impl MemoryProbe {
    /// A probe over these control connections.
    pub(crate) fn new(controls: &[Control]) -> MemoryProbe {
        MemoryProbe {
            controls: controls.iter().map(Control::handle).collect(),
        }
    }

    /// The sum of `used_memory` now. Errors name the server.
    pub(crate) async fn used(&mut self) -> Result<u64, TargetError> {
        let mut total = 0u64;
        for control in &mut self.controls {
            let addr = &control.addr;
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut control.connection)
                .await
                .map_err(|e| {
                    TargetError(format!(
                        "{addr}: INFO memory failed: {}",
                        control.explain(&e)
                    ))
                })?;
            let used = info_field(&info, "used_memory")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| TargetError(format!("{addr}: INFO memory has no used_memory")))?;
            total = total.saturating_add(used);
        }
        Ok(total)
    }

    /// `used_memory`, `maxmemory`, `evicted_keys` and `expired_keys` summed over the
    /// primaries: one `INFO` on each, all at once, each bounded by `limit`. `None` when a
    /// primary refuses `INFO` or does not answer in time (a paused primary, even one its
    /// replica replaced, must not hold up the caller for its `io_timeout`).
    pub(crate) async fn figures(&self, limit: Duration) -> Option<InfoFigures> {
        let mut readings = tokio::task::JoinSet::new();
        for control in &self.controls {
            let mut connection = control.connection.clone();
            let query = async move {
                redis::cmd("INFO")
                    .query_async::<String>(&mut connection)
                    .await
            };
            readings.spawn(tokio::time::timeout(limit, query));
        }
        let mut total = InfoFigures::default();
        while let Some(reading) = readings.join_next().await {
            // Dropping the set on a missing figure stops the other readings.
            let Ok(Ok(Ok(info))) = reading else {
                return None;
            };
            total = total.add(InfoFigures::parse(&info)?);
        }
        Some(total)
    }
}

/// The value of `name:` in the text of an `INFO` reply.
pub(super) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Facts about one server, read with INFO.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerFacts {
    /// `redis_version` (or the Valkey version).
    pub version: Option<String>,
    /// The server is Valkey (`valkey_version` in `INFO`): `version` is Valkey's.
    pub valkey: bool,
    /// Keys in the selected database.
    pub keys: Option<u64>,
    /// `used_memory` in bytes.
    pub used_memory: Option<u64>,
    /// `maxmemory` in bytes (0: no limit).
    pub maxmemory: Option<u64>,
    /// `maxmemory_policy`.
    pub maxmemory_policy: Option<String>,
    /// `loading:1`: the server is reading its dataset from disk (restarted) and answers
    /// `LOADING` to commands until it is done.
    pub loading: bool,
    /// `evicted_keys`: keys evicted under `maxmemory` since the server started (or its
    /// statistics were reset).
    pub evicted_keys: Option<u64>,
}

impl Control {
    /// Reads version, key count and memory; a user that may not run INFO (or a server that
    /// does not answer quickly) gets unknowns. A broken connection, or a reply that is not
    /// RESP or not text, is an error naming the server.
    pub(crate) async fn facts(&mut self) -> Result<ServerFacts, TargetError> {
        let mut command = redis::cmd("INFO");
        let query = command
            .arg("all")
            .query_async::<String>(&mut self.handle.connection);
        // Facts are nice to have: a server that does not answer quickly is recorded as unknown.
        let info = match tokio::time::timeout(FACTS_TIMEOUT, query).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) if is_refusal(&e) => return Ok(ServerFacts::default()),
            Ok(Err(e)) => return Err(self.failed("INFO", &e)),
            Err(_) => return Ok(ServerFacts::default()),
        };
        let field = |name: &str| info_field(&info, name).map(str::to_string);
        let db = format!("db{}", self.connector.db);
        let keys = field(&db)
            .and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("keys=")?.parse().ok())
            })
            .or(Some(0));
        Ok(ServerFacts {
            version: field("valkey_version").or_else(|| field("redis_version")),
            valkey: field("valkey_version").is_some(),
            keys,
            used_memory: field("used_memory").and_then(|v| v.parse().ok()),
            maxmemory: field("maxmemory").and_then(|v| v.parse().ok()),
            maxmemory_policy: field("maxmemory_policy"),
            loading: field("loading").as_deref() == Some("1"),
            evicted_keys: field("evicted_keys").and_then(|v| v.parse().ok()),
        })
    }

    /// The facts once the server has loaded its dataset: asked again every 100 ms while
    /// `INFO` says `loading:1`, for up to `io_timeout`, then an error naming the server.
    pub(crate) async fn facts_once_loaded(&mut self) -> Result<ServerFacts, TargetError> {
        let start = std::time::Instant::now();
        loop {
            let facts = self.facts().await?;
            if !facts.loading {
                return Ok(facts);
            }
            if start.elapsed() >= self.connector.io_timeout {
                return Err(self
                    .connector
                    .fail(&self.handle.addr, still_loading(self.connector.io_timeout)));
            }
            tokio::time::sleep(LOADING_PAUSE).await;
        }
    }

    /// Every setting (`CONFIG GET *`), name to value; `None` when the user may not run
    /// `CONFIG` (or it is renamed away). A broken connection is an error naming the server.
    pub(crate) async fn config(&mut self) -> Result<Option<HashMap<String, String>>, TargetError> {
        let mut command = redis::cmd("CONFIG");
        command.arg("GET").arg("*");
        let reply = match command
            .query_async::<redis::Value>(&mut self.handle.connection)
            .await
        {
            Ok(reply) => reply,
            Err(e) if is_refusal(&e) => return Ok(None),
            Err(e) => return Err(self.failed("CONFIG GET", &e)),
        };
        // A flat array of names and values (RESP2), or a map (RESP3); anything else reads
        // as no settings.
        let mut config = HashMap::new();
        match &reply {
            redis::Value::Map(pairs) => {
                for (name, value) in pairs {
                    if let (Some(name), Some(value)) = (text(name), text(value)) {
                        config.insert(name, value);
                    }
                }
            }
            reply => {
                for pair in items(reply).unwrap_or_default().chunks_exact(2) {
                    if let (Some(name), Some(value)) = (text(&pair[0]), text(&pair[1])) {
                        config.insert(name, value);
                    }
                }
            }
        }
        Ok(Some(config))
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> &NodeAddr {
        &self.handle.addr
    }

    /// A handle on the connection for concurrent pipelines (verify).
    pub(crate) fn connection(&self) -> MultiplexedConnection {
        self.handle.connection.clone()
    }

    /// The connection with its server, for concurrent users.
    pub(crate) fn handle(&self) -> ControlHandle {
        self.handle.clone()
    }

    /// What `error` of this connection means (see [`ControlHandle::explain`]).
    pub(crate) fn explain(&self, error: &redis::RedisError) -> String {
        self.handle.explain(error)
    }

    /// `target "…" (server): WHAT failed: why`, or for a reply that did not come, `WHAT got
    /// no reply within … (io_timeout)`.
    pub(super) fn failed(&self, what: &str, error: &redis::RedisError) -> TargetError {
        let why = if error.is_timeout() {
            format!(
                "{what} got no reply within {} (io_timeout): the server is stalled or overloaded",
                humantime::format_duration(self.connector.io_timeout)
            )
        } else {
            format!("{what} failed: {}", self.explain(error))
        };
        self.connector.fail(&self.handle.addr, why)
    }

    /// Runs any command and returns its reply.
    pub(crate) async fn query(&mut self, command: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        command.query_async(&mut self.handle.connection).await
    }

    /// Runs a pipeline and returns its replies.
    pub(crate) async fn pipeline<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        pipe.query_async(&mut self.handle.connection).await
    }
}
