//! Control connections (through the `redis` crate, behind a [`Guarded`] stream): login,
//! INFO facts, FLUSHALL, and the memory probe of `until_memory` stages. The hot path uses
//! raw data connections instead.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};

use super::connector::{Connector, TargetError};
use super::guarded::Guarded;
use crate::plan::NodeAddr;

/// Time limit for reading a server's facts (INFO).
const FACTS_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit for one control command (FLUSHALL of a large server takes a while).
const CONTROL_REPLY_TIMEOUT: Duration = Duration::from_secs(300);

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
        let stream = Guarded::new(self.connect(addr).await?);
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(CONTROL_REPLY_TIMEOUT));
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
        format!("login failed: {text}")
    }
}

/// True for an error reply of the server (a refusal such as `NOPERM` or an unknown
/// command), as opposed to a broken connection or a reply that is not RESP.
pub fn is_refusal(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    )
}

/// A control connection to one server.
pub struct Control {
    connection: MultiplexedConnection,
    addr: NodeAddr,
    connector: Connector,
}

/// Reads `used_memory` summed over a target's primaries, for `until_memory` stages.
#[derive(Clone)]
pub struct MemoryProbe {
    connections: Vec<(NodeAddr, MultiplexedConnection)>,
}

impl MemoryProbe {
    /// A probe over these control connections.
    pub fn new(controls: &[Control]) -> MemoryProbe {
        MemoryProbe {
            connections: controls
                .iter()
                .map(|c| (c.addr.clone(), c.connection()))
                .collect(),
        }
    }

    /// The sum of `used_memory` now. Errors name the server.
    pub async fn used(&mut self) -> Result<u64, String> {
        let mut total = 0u64;
        for (addr, connection) in &mut self.connections {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(connection)
                .await
                .map_err(|e| format!("{addr}: INFO memory failed: {e}"))?;
            let used = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("{addr}: INFO memory has no used_memory"))?;
            total = total.saturating_add(used);
        }
        Ok(total)
    }
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
    /// Reads version, key count and memory; a user that may not run INFO (or a server that
    /// does not answer quickly) gets unknowns. A broken connection, or a reply that is not
    /// RESP or not text, is an error naming the server.
    pub async fn facts(&mut self) -> Result<ServerFacts, TargetError> {
        let mut command = redis::cmd("INFO");
        let query = command
            .arg("all")
            .query_async::<String>(&mut self.connection);
        // Facts are nice to have: a server that does not answer quickly is recorded as unknown.
        let info = match tokio::time::timeout(FACTS_TIMEOUT, query).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) if is_refusal(&e) => return Ok(ServerFacts::default()),
            Ok(Err(e)) => {
                return Err(self.connector.fail(&self.addr, format!("INFO failed: {e}")));
            }
            Err(_) => return Ok(ServerFacts::default()),
        };
        let field = |name: &str| {
            info.lines().find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(':')
                    .map(|v| v.trim().to_string())
            })
        };
        let db = format!("db{}", self.connector.db);
        let keys = field(&db)
            .and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("keys=")?.parse().ok())
            })
            .or(Some(0));
        Ok(ServerFacts {
            version: field("valkey_version").or_else(|| field("redis_version")),
            keys,
            used_memory: field("used_memory").and_then(|v| v.parse().ok()),
            maxmemory: field("maxmemory").and_then(|v| v.parse().ok()),
            maxmemory_policy: field("maxmemory_policy"),
        })
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
                self.connector
                    .fail(&self.addr, format!("FLUSHALL failed: {e}"))
            })
    }
}
