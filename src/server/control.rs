//! Control connections (through the `redis` crate): login, INFO facts, FLUSHALL, and the
//! memory probe of `until_memory` stages. The hot path uses raw data connections instead.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};

use super::connector::{Connector, TargetError};
use crate::plan::NodeAddr;

/// Time limit for reading a server's facts (INFO).
const FACTS_TIMEOUT: Duration = Duration::from_secs(10);

impl Connector {
    /// Opens the control connection (INFO, FLUSHALL, topology) over the same kind of
    /// connection as the data plane, logged in by the `redis` crate.
    pub async fn control(&self, addr: &NodeAddr) -> Result<Control, TargetError> {
        let mut settings = RedisConnectionInfo::default()
            .set_db(i64::from(self.db))
            .set_skip_set_lib_name();
        if let Some(user) = &self.credentials.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.credentials.password {
            settings = settings.set_password(password.expose());
        }
        let stream = self.connect(addr).await?;
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.io_timeout));
        let login = MultiplexedConnection::new_with_config(&settings, stream, config);
        let (connection, driver) = match tokio::time::timeout(self.connect_timeout, login).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.fail(addr, describe_redis_error(&e))),
            Err(_) => return Err(self.fail(addr, "the server did not answer the login in time")),
        };
        tokio::spawn(driver);
        Ok(Control {
            connection,
            addr: addr.clone(),
            connector: self.clone(),
        })
    }
}

fn describe_redis_error(error: &redis::RedisError) -> String {
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed || text.contains("WRONGPASS") {
        "authentication failed (wrong user or password); check the user and the password variable or file".into()
    } else if text.contains("NOAUTH") {
        "the server requires a password; set password_env or password_file".into()
    } else if error.is_timeout() {
        "cannot connect: timed out (connect_timeout)".into()
    } else {
        format!("cannot connect: {text}")
    }
}

/// A control connection to one server.
pub struct Control {
    connection: MultiplexedConnection,
    addr: NodeAddr,
    connector: Connector,
}

/// Reads `INFO` figures summed over a target's primaries on their control connections: for
/// `until_memory` stages and the run's timeline.
#[derive(Clone)]
pub struct MemoryProbe {
    connections: Vec<MultiplexedConnection>,
    /// The target's `io_timeout`: the longest one `INFO` may take.
    timeout: Duration,
}

/// What the timeline reads from a target once a second, summed over its primaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InfoFigures {
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
    pub fn new(controls: &[Control]) -> MemoryProbe {
        MemoryProbe {
            connections: controls.iter().map(Control::connection).collect(),
            timeout: controls
                .iter()
                .map(|c| c.connector.io_timeout)
                .max()
                .unwrap_or(FACTS_TIMEOUT),
        }
    }

    /// The sum of `used_memory` now.
    pub async fn used(&mut self) -> Result<u64, String> {
        let mut total = 0u64;
        for connection in &mut self.connections {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(connection)
                .await
                .map_err(|e| format!("INFO memory failed: {e}"))?;
            let used = info_field(&info, "used_memory")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or("INFO memory has no used_memory")?;
            total += used;
        }
        Ok(total)
    }

    /// `used_memory`, `maxmemory`, `evicted_keys` and `expired_keys` summed over the
    /// primaries: one `INFO` on each, all at once, each bounded by the `io_timeout`. `None`
    /// when a primary refuses `INFO` or does not answer in time.
    pub async fn figures(&self) -> Option<InfoFigures> {
        let mut readings = tokio::task::JoinSet::new();
        for connection in &self.connections {
            let mut connection = connection.clone();
            let query = async move {
                redis::cmd("INFO")
                    .query_async::<String>(&mut connection)
                    .await
            };
            readings.spawn(tokio::time::timeout(self.timeout, query));
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
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Facts about one server, read with INFO.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    /// `redis_version` (or the Valkey version).
    pub version: Option<String>,
    /// Keys in the selected database.
    pub keys: Option<u64>,
    /// `used_memory` in bytes.
    pub used_memory: Option<u64>,
    /// `maxmemory` in bytes (0: no limit).
    pub maxmemory: Option<u64>,
    /// `maxmemory_policy`.
    pub maxmemory_policy: Option<String>,
}

impl Control {
    /// Reads version, key count and memory; a user that may not run INFO gets unknowns.
    pub async fn facts(&mut self) -> ServerFacts {
        let mut command = redis::cmd("INFO");
        let query = command
            .arg("all")
            .query_async::<String>(&mut self.connection);
        // Facts are nice to have: a server that does not answer quickly is recorded as unknown.
        let Ok(Ok(info)) = tokio::time::timeout(FACTS_TIMEOUT, query).await else {
            return ServerFacts::default();
        };
        let field = |name: &str| info_field(&info, name).map(str::to_string);
        let db = format!("db{}", self.connector.db);
        let keys = field(&db)
            .and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("keys=")?.parse().ok())
            })
            .or(Some(0));
        ServerFacts {
            version: field("valkey_version").or_else(|| field("redis_version")),
            keys,
            used_memory: field("used_memory").and_then(|v| v.parse().ok()),
            maxmemory: field("maxmemory").and_then(|v| v.parse().ok()),
            maxmemory_policy: field("maxmemory_policy"),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// A handle on the connection for concurrent pipelines (verify).
    pub fn connection(&self) -> MultiplexedConnection {
        self.connection.clone()
    }

    /// Runs any command and returns its reply.
    pub async fn query(&mut self, command: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        command.query_async(&mut self.connection).await
    }

    /// Runs a pipeline and returns its replies.
    pub async fn pipeline<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        pipe.query_async(&mut self.connection).await
    }

    /// FLUSHALL: empties every database of the server.
    pub async fn flushall(&mut self) -> Result<(), TargetError> {
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut self.connection)
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    format!(
                        "FLUSHALL got no reply within {} (io_timeout): the server is stalled, or so large that emptying it takes longer; raise io_timeout for such a server",
                        humantime::format_duration(self.connector.io_timeout)
                    )
                } else {
                    format!("FLUSHALL failed: {e}")
                };
                self.connector.fail(&self.addr, why)
            })
    }
}
