//! How to reach a target's servers: TCP (and TLS) within the connect timeout, and the raw
//! data connections of the hot path, logged in with AUTH and SELECT.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::credentials::Credentials;
use super::tls::{Stream, Tls};
use crate::dataset::Dataset;
use crate::plan::{NodeAddr, Target};
use crate::resp::{self, Reply};
use crate::shard::Shard;

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
    /// How long a connection with commands in flight may go without a reply byte.
    pub io_timeout: Duration,
    /// Cluster: how long a lost primary may stay without a successor.
    pub failover_timeout: Duration,
    /// TLS client, when the target speaks TLS.
    pub tls: Option<Tls>,
    /// Set once the user was refused `MSET`: entries go one `SET` each from then on.
    mset_refused: Arc<AtomicBool>,
    /// Set once that was said to the user.
    mset_warned: Arc<AtomicBool>,
    /// The `run_id` each server answered the latest data connection with.
    run_ids: Arc<Mutex<HashMap<NodeAddr, String>>>,
    /// Stages that wrote to this target, in the order they ended.
    written_stages: Arc<Mutex<Vec<WrittenStage>>>,
    /// The process each server was last seen restarted as, whose stages written before
    /// were (or are being) re-checked: one re-check per restart, however many stages
    /// running in parallel find it.
    earlier_rechecks: Arc<Mutex<HashMap<NodeAddr, String>>>,
}

/// A stage that ended having written to a target: what a restart of the target's server
/// may have taken from it.
#[derive(Debug, Clone)]
pub struct WrittenStage {
    /// The stage's name.
    pub name: String,
    /// Its entries; `None` when they cannot be re-checked (a typed stage, or one that did
    /// not end `ok`, whose written entries are not a known range).
    pub entries: Option<(Arc<Dataset>, Shard, u64)>,
}

/// A failure to reach or use a server, already phrased for the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

impl Connector {
    /// Builds a connector (and its TLS client) from a plan target and its credentials.
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
            io_timeout: target.io_timeout,
            failover_timeout: target.failover_timeout,
            tls,
            mset_refused: Arc::default(),
            mset_warned: Arc::default(),
            run_ids: Arc::default(),
            written_stages: Arc::default(),
            earlier_rechecks: Arc::default(),
        })
    }

    /// Records that `addr` answered as process `run_id`; returns the process it answered as
    /// before, if any.
    pub fn note_run_id(&self, addr: &NodeAddr, run_id: &str) -> Option<String> {
        locked(&self.run_ids).insert(addr.clone(), run_id.to_string())
    }

    /// Records that `stage` ended having written to this target.
    pub fn stage_written(&self, stage: WrittenStage) {
        locked(&self.written_stages).push(stage);
    }

    /// The stages that ended having written to this target so far.
    pub fn written_stages(&self) -> Vec<WrittenStage> {
        locked(&self.written_stages).clone()
    }

    /// True for the first caller after the server at `addr` restarted as process `run_id`:
    /// that one re-checks the stages written before the restart, the others leave them to
    /// it (two stages re-checking them at once would both write a lost entry again).
    pub fn claim_earlier_recheck(&self, addr: &NodeAddr, run_id: &str) -> bool {
        let mut claims = locked(&self.earlier_rechecks);
        if claims.get(addr).is_some_and(|claimed| claimed == run_id) {
            return false;
        }
        claims.insert(addr.clone(), run_id.to_string());
        true
    }

    /// Records that the server refused `MSET` to this user (`NOPERM`).
    pub fn refuse_mset(&self) {
        self.mset_refused.store(true, Relaxed);
    }

    /// True once `MSET` was refused on this target: write one `SET` per entry.
    pub fn mset_refused(&self) -> bool {
        self.mset_refused.load(Relaxed)
    }

    /// True the first time it is asked after `MSET` was refused: the one time to warn.
    pub fn mset_warning_due(&self) -> bool {
        self.mset_refused() && !self.mset_warned.swap(true, Relaxed)
    }

    /// An error about `addr`, naming the target and the user.
    pub(super) fn fail(&self, addr: &NodeAddr, what: impl fmt::Display) -> TargetError {
        TargetError(format!(
            "target \"{}\" ({addr}{}): {what}",
            self.name,
            self.credentials.describe_user()
        ))
    }

    /// Connects to `addr`: TCP, then TLS when the target has it, within `connect_timeout`.
    pub(super) async fn connect(&self, addr: &NodeAddr) -> Result<Stream, TargetError> {
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

    /// Opens a data connection for the hot path: TCP (and TLS), AUTH, SELECT, nothing else
    /// the writer sees. See [`Connector::data_identified`].
    pub async fn data(&self, addr: &NodeAddr) -> Result<Stream, TargetError> {
        self.data_identified(addr).await.map(|(stream, _)| stream)
    }

    /// Opens a data connection and tells which server process answered: its `run_id`
    /// (`None` when the user may not run `INFO`). The login ends with `INFO server`, so a
    /// connection is only handed out once the server has answered on it (a stopped server
    /// accepts TCP connections but answers nothing): any reply, even a refusal, proves the
    /// server alive within `connect_timeout`.
    pub async fn data_identified(
        &self,
        addr: &NodeAddr,
    ) -> Result<(Stream, Option<String>), TargetError> {
        let mut stream = self.connect(addr).await?;
        let mut hello = Vec::new();
        if let Some(password) = &self.credentials.password {
            match &self.credentials.username {
                Some(user) => resp::push_command(
                    &mut hello,
                    &[b"AUTH", user.as_bytes(), password.expose().as_bytes()],
                ),
                None => resp::push_command(&mut hello, &[b"AUTH", password.expose().as_bytes()]),
            }
        }
        if self.db != 0 {
            resp::push_command(&mut hello, &[b"SELECT", self.db.to_string().as_bytes()]);
        }
        resp::push_command(&mut hello, &[b"INFO", b"server"]);
        let expected =
            usize::from(self.credentials.password.is_some()) + usize::from(self.db != 0) + 1;
        let handshake = async {
            stream.write_all(&hello).await?;
            let mut buf = Vec::with_capacity(4096);
            let mut replies = Vec::new();
            let mut run_id = None;
            while replies.len() < expected {
                if buf.len() > MAX_LOGIN_REPLY_BYTES {
                    return Err(std::io::Error::other(
                        "the login replies are too long; is this a Redis server?",
                    ));
                }
                let mut chunk = [0u8; 4096];
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
                    let error = match reply {
                        Reply::Error(line) => Some(String::from_utf8_lossy(line).into_owned()),
                        _ => None,
                    };
                    if replies.len() + 1 == expected && error.is_none() {
                        run_id = info_field(&buf[..used], b"run_id:");
                    }
                    replies.push(error);
                    buf.drain(..used);
                }
            }
            Ok((replies, run_id))
        };
        let (replies, run_id) = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => {
                return Err(self.fail(addr, format!("connection failed during login: {e}")));
            }
            Err(_) => {
                return Err(self.fail(
                    addr,
                    format!(
                        "the server accepted the connection but did not answer within {} (connect_timeout)",
                        humantime::format_duration(self.connect_timeout)
                    ),
                ));
            }
        };
        // The login's own refusals are errors; a refused INFO only hides the run_id.
        if let Some(error) = replies[..expected - 1].iter().flatten().next() {
            return Err(self.fail(addr, describe_login_error(error)));
        }
        Ok((stream, run_id))
    }
}

/// The data behind `mutex`, even if a panic poisoned it (every update is one statement).
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Largest login reply accepted (`INFO server` is about 1.5 KB).
const MAX_LOGIN_REPLY_BYTES: usize = 64 << 10;

/// The value of an `INFO` line starting with `name` in a raw reply.
fn info_field(reply: &[u8], name: &[u8]) -> Option<String> {
    reply
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(name))
        .map(|value| String::from_utf8_lossy(value.trim_ascii()).into_owned())
        .filter(|value| !value.is_empty())
}

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
