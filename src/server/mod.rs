//! Targets at run time: credentials, connections (a control connection through the `redis`
//! crate and raw data connections for the hot path), server facts, flushing, local servers.

pub mod cluster;
pub mod launch;
pub mod tls;

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::{Auth, NodeAddr, PasswordSource, Target};
use crate::resp::{self, Reply};
use tls::{Stream, Tls};

/// A password read at run time. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// ACL user and password of a target, resolved from the environment or a file.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// ACL user; `None` is the default user.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<Secret>,
}

impl Credentials {
    /// Reads the password a target names. Errors name the target and the variable or file.
    pub fn resolve(target: &str, auth: &Auth) -> Result<Credentials, String> {
        let password = match &auth.password {
            None => None,
            Some(PasswordSource::Env(var)) => match std::env::var(var) {
                Ok(value) => Some(Secret(value)),
                Err(_) => {
                    return Err(format!(
                        "targets.{target}.password_env: the environment variable {var} is not set; export it before running the plan"
                    ));
                }
            },
            Some(PasswordSource::File(path)) => match std::fs::read_to_string(path) {
                Ok(text) => Some(Secret(text.lines().next().unwrap_or("").to_string())),
                Err(e) => {
                    return Err(format!(
                        "targets.{target}.password_file: cannot read {}: {e}",
                        path.display()
                    ));
                }
            },
        };
        Ok(Credentials {
            username: auth.username.clone(),
            password,
        })
    }

    /// `, user "name"` for messages, or nothing for the default user.
    pub fn describe_user(&self) -> String {
        match &self.username {
            Some(user) => format!(", user \"{user}\""),
            None => String::new(),
        }
    }
}

/// How to reach the servers of one target; shared by every connection to it.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Target name from the plan.
    pub name: String,
    /// Credentials for every connection.
    pub credentials: Credentials,
    /// Database to select.
    pub db: u32,
    /// Limit for establishing one connection.
    pub connect_timeout: Duration,
    /// Cluster: how long a lost primary may stay without a successor.
    pub failover_timeout: Duration,
    /// TLS client, when the target speaks TLS.
    pub tls: Option<Tls>,
}

/// A failure to reach or use a server, already phrased for the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

impl Connector {
    /// Builds an connector from a plan target and its resolved credentials.
    /// Builds an connector (and its TLS client) from a plan target and its credentials.
    /// Errors name the target and the TLS file that is wrong.
    pub fn new(target: &Target, credentials: Credentials) -> Result<Connector, String> {
        let tls = match &target.tls {
            Some(spec) => {
                Some(Tls::new(spec).map_err(|e| format!("targets.{}.tls: {e}", target.name))?)
            }
            None => None,
        };
        Ok(Connector {
            name: target.name.clone(),
            credentials,
            db: target.db,
            connect_timeout: target.connect_timeout,
            failover_timeout: target.failover_timeout,
            tls,
        })
    }

    fn fail(&self, addr: &NodeAddr, what: impl fmt::Display) -> TargetError {
        TargetError(format!(
            "target \"{}\" ({addr}{}): {what}",
            self.name,
            self.credentials.describe_user()
        ))
    }

    /// Connects to `addr`: TCP, then TLS when the target has it, within `connect_timeout`.
    async fn connect(&self, addr: &NodeAddr) -> Result<Stream, TargetError> {
        let timeout = self.connect_timeout;
        let connecting = async {
            let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            match &self.tls {
                None => Ok::<Stream, String>(Stream::Plain(tcp)),
                Some(tls) => Ok(Stream::Tls(Box::new(tls.connect(&addr.host, tcp).await?))),
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(message)) => Err(self.fail(addr, message)),
            Err(_) => Err(self.fail(
                addr,
                format!(
                    "cannot connect within {} (connect_timeout)",
                    humantime::format_duration(timeout)
                ),
            )),
        }
    }

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

    /// Opens a data connection for the hot path: TCP (and TLS), AUTH, SELECT, nothing else.
    pub async fn data(&self, addr: &NodeAddr) -> Result<Stream, TargetError> {
        let mut stream = self.connect(addr).await?;
        let mut hello = Vec::new();
        let mut expected = 0;
        if let Some(password) = &self.credentials.password {
            match &self.credentials.username {
                Some(user) => resp::push_command(
                    &mut hello,
                    &[b"AUTH", user.as_bytes(), password.expose().as_bytes()],
                ),
                None => resp::push_command(&mut hello, &[b"AUTH", password.expose().as_bytes()]),
            }
            expected += 1;
        }
        if self.db != 0 {
            resp::push_command(&mut hello, &[b"SELECT", self.db.to_string().as_bytes()]);
            expected += 1;
        }
        if expected == 0 {
            return Ok(stream);
        }
        let handshake = async {
            stream.write_all(&hello).await?;
            let mut buf = Vec::with_capacity(256);
            let mut replies = Vec::new();
            while replies.len() < expected {
                let mut chunk = [0u8; 256];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some((reply, used)) =
                    resp::parse_reply(&buf).map_err(std::io::Error::other)?
                {
                    replies.push(match reply {
                        Reply::Error(line) => Some(String::from_utf8_lossy(line).into_owned()),
                        _ => None,
                    });
                    buf.drain(..used);
                }
            }
            Ok(replies)
        };
        let replies = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => {
                return Err(self.fail(addr, format!("connection failed during login: {e}")));
            }
            Err(_) => return Err(self.fail(addr, "the server did not answer the login in time")),
        };
        if let Some(error) = replies.into_iter().flatten().next() {
            return Err(self.fail(addr, describe_login_error(&error)));
        }
        Ok(stream)
    }
}

/// Time limit for reading a server's facts (INFO).
const FACTS_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit for one control command (FLUSHALL of a large server takes a while).
const CONTROL_REPLY_TIMEOUT: Duration = Duration::from_secs(300);

fn describe_login_error(error: &str) -> String {
    if error.starts_with("WRONGPASS")
        || error.contains("invalid password")
        || error.contains("invalid username-password")
    {
        format!("authentication failed ({error}); check the user and the password variable or file")
    } else if error.starts_with("NOAUTH") {
        format!("the server requires a password ({error}); set password_env or password_file")
    } else {
        format!("login refused: {error}")
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

/// Reads `used_memory` summed over a target's primaries, for `until_memory` stages.
#[derive(Clone)]
pub struct MemoryProbe {
    connections: Vec<MultiplexedConnection>,
}

impl MemoryProbe {
    /// A probe over these control connections.
    pub fn new(controls: &[Control]) -> MemoryProbe {
        MemoryProbe {
            connections: controls.iter().map(Control::connection).collect(),
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
            let used = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("INFO memory has no used_memory")?;
            total += used;
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
                self.connector
                    .fail(&self.addr, format!("FLUSHALL failed: {e}"))
            })
    }
}
