//! The login of a raw data connection: AUTH and SELECT, then `INFO server` to learn which
//! server process answered (its `run_id`: a restart shows as a new one) and `PING`, which a
//! server reading its dataset from disk answers `LOADING`. Such a connection is handed out
//! only once the server has loaded (asked again every [`LOADING_PAUSE`], for up to
//! `io_timeout`), so a restarted server with persistence is written to, and re-checked,
//! with its data back.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connector::{Connector, TargetError};
use super::control::{LOADING_PAUSE, still_loading};
use super::tls::Stream;
use crate::plan::NodeAddr;
use crate::resp::{self, ErrorReply, Reply};

impl Connector {
    /// Opens a data connection for the hot path: TCP (and TLS), AUTH, SELECT, nothing else
    /// the writer sees. See [`Connector::data_identified`].
    pub(crate) async fn data(&self, addr: &NodeAddr) -> Result<Stream, TargetError> {
        self.data_identified(addr).await.map(|(stream, _)| stream)
    }

    /// Opens a data connection and tells which server process answered: its `run_id`
    /// (`None` when the user may not run `INFO`). The login ends with `INFO server`, so a
    /// connection is only handed out once the server has answered on it (a stopped server
    /// accepts TCP connections but answers nothing): any reply, even a refusal, proves the
    /// server alive within `connect_timeout`.
    pub(crate) async fn data_identified(
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
        // Answered `LOADING` by a server reading its dataset from disk (INFO is not).
        resp::push_command(&mut hello, &[b"PING"]);
        let expected =
            usize::from(self.credentials.password.is_some()) + usize::from(self.db != 0) + 2;
        let handshake = async {
            stream.write_all(&hello).await?;
            read_replies(&mut stream, expected).await
        };
        let mut replies = match tokio::time::timeout(self.connect_timeout, handshake).await {
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
        // The login's own refusals are errors; a refused INFO only hides the run_id, and a
        // refused PING (a user without it) says nothing.
        if let Some(error) = replies[..expected - 2]
            .iter()
            .find_map(|r| r.error.as_ref())
        {
            return Err(self.fail(addr, describe_login_error(error)));
        }
        if replies[expected - 1].is_loading() {
            self.wait_loaded(&mut stream, addr).await?;
        }
        let run_id = replies[expected - 2].run_id.take();
        Ok((stream, run_id))
    }

    /// Waits until the server on `stream` has loaded its dataset: `PING` every
    /// [`LOADING_PAUSE`] until it answers anything but `LOADING`, for up to `io_timeout`.
    async fn wait_loaded(&self, stream: &mut Stream, addr: &NodeAddr) -> Result<(), TargetError> {
        let start = Instant::now();
        let mut ping = Vec::new();
        resp::push_command(&mut ping, &[b"PING"]);
        while start.elapsed() < self.io_timeout {
            tokio::time::sleep(LOADING_PAUSE).await;
            let answer = async {
                stream.write_all(&ping).await?;
                read_replies(stream, 1).await
            };
            match tokio::time::timeout(self.io_timeout, answer).await {
                Ok(Ok(replies)) if replies[0].is_loading() => {}
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => {
                    return Err(self.fail(
                        addr,
                        format!("connection failed while the server loaded its dataset: {e}"),
                    ));
                }
                Err(_) => break,
            }
        }
        Err(self.fail(addr, still_loading(self.io_timeout)))
    }
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

/// One reply of the login: its error line, if it is an error, and the `run_id` it names,
/// if it is the reply to `INFO server`.
struct LoginReply {
    error: Option<String>,
    run_id: Option<String>,
}

impl LoginReply {
    /// True when the server is reading its dataset from disk.
    fn is_loading(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|error| matches!(ErrorReply::parse(error.as_bytes()), ErrorReply::Loading))
    }
}

/// Reads `count` replies from `stream`.
async fn read_replies(stream: &mut Stream, count: usize) -> std::io::Result<Vec<LoginReply>> {
    let mut buf = Vec::with_capacity(4096);
    let mut replies = Vec::new();
    while replies.len() < count {
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
        while let Some((reply, used)) = resp::parse_reply(&buf).map_err(std::io::Error::other)? {
            replies.push(match reply {
                Reply::Error(line) => LoginReply {
                    error: Some(String::from_utf8_lossy(line).into_owned()),
                    run_id: None,
                },
                _ => LoginReply {
                    error: None,
                    run_id: info_field(&buf[..used], b"run_id:"),
                },
            });
            buf.drain(..used);
        }
    }
    Ok(replies)
}
