//! A fake server that is not Redis: it speaks just enough RESP to take cachefill through the
//! login, INFO, the cluster topology, FLUSHALL, writes and reads, and answers one chosen
//! command with garbage of one kind. Plain threads on a free loopback port; stopped when
//! dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::TargetBuilder;

/// What the fake server sends instead of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// A type byte RESP does not have.
    UnknownType,
    /// A bulk length below -1.
    NegativeLength,
    /// An integer that is not a number.
    BadNumber,
    /// A simple string that never ends: bytes without CRLF until the client goes away.
    EndlessLine,
    /// A bulk string announcing `i64::MAX` bytes.
    HugeBulk,
    /// Arrays nested a hundred deep.
    DeepNesting,
    /// The start of a bulk string, then the connection closes.
    CloseMidReply,
}

impl Garbage {
    /// Every kind, for tests that try them all.
    pub const ALL: [Garbage; 7] = [
        Garbage::UnknownType,
        Garbage::NegativeLength,
        Garbage::BadNumber,
        Garbage::EndlessLine,
        Garbage::HugeBulk,
        Garbage::DeepNesting,
        Garbage::CloseMidReply,
    ];

    /// Sends the garbage; false when the connection is to end.
    fn send(self, stream: &mut TcpStream) -> bool {
        let bytes: Vec<u8> = match self {
            Garbage::UnknownType => b"?what is this\r\n".to_vec(),
            Garbage::NegativeLength => b"$-5\r\n".to_vec(),
            Garbage::BadNumber => b":12x\r\n".to_vec(),
            Garbage::HugeBulk => b"$9223372036854775807\r\n".to_vec(),
            Garbage::DeepNesting => {
                let mut deep = b"*1\r\n".repeat(100);
                deep.extend_from_slice(b":1\r\n");
                deep
            }
            Garbage::CloseMidReply => {
                let _ = stream.write_all(b"$10\r\nabc");
                let _ = stream.shutdown(Shutdown::Both);
                return false;
            }
            Garbage::EndlessLine => {
                let _ = stream.write_all(b"+");
                let chunk = vec![b'x'; 64 << 10];
                // Until the client closes the connection (or the test ends).
                while stream.write_all(&chunk).is_ok() {}
                return false;
            }
        };
        stream.write_all(&bytes).is_ok()
    }
}

/// The fake server; see the module documentation.
pub struct HostileServer {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// What the fake server does: which command gets garbage, from which time on.
struct Rule {
    garbage: Garbage,
    /// `NAME` or `NAME SUBCOMMAND`, upper case.
    command: String,
    /// Times the command is answered properly before the garbage starts.
    spared: usize,
    seen: AtomicUsize,
}

impl HostileServer {
    /// A server that answers `command` (`"INFO"`, `"CLUSTER SHARDS"`, `"MSET"` …) with
    /// `garbage`, after answering it properly `spared` times (counted over all connections).
    pub fn start(garbage: Garbage, command: &str, spared: usize) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let rule = Arc::new(Rule {
            garbage,
            command: command.to_ascii_uppercase(),
            spared,
            seen: AtomicUsize::new(0),
        });
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let rule = rule.clone();
                std::thread::spawn(move || serve(stream, &rule, port));
            }
        });
        HostileServer {
            port,
            stop,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A standalone target `main` on this server.
    pub fn target(&self) -> TargetBuilder {
        TargetBuilder::standalone("main", &self.addr())
    }

    /// A cluster target `main` seeded with this server (which claims every slot).
    pub fn cluster_target(&self) -> TargetBuilder {
        TargetBuilder::cluster("main", &[self.addr()])
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Answers the commands of one connection until it closes or the garbage ends it.
fn serve(stream: TcpStream, rule: &Rule, port: u16) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(args) = read_command(&mut reader) {
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        let sub = args
            .get(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        if (rule.command == name || rule.command == format!("{name} {sub}"))
            && rule.seen.fetch_add(1, Ordering::Relaxed) >= rule.spared
        {
            if !rule.garbage.send(&mut writer) {
                return;
            }
            continue;
        }
        if writer.write_all(&answer(&name, &sub, port)).is_err() {
            return;
        }
    }
}

/// One command (an array of bulk strings), or `None` when the client is gone.
fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let count: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn bulk(text: &str) -> String {
    format!("${}\r\n{text}\r\n", text.len())
}

/// What a real server would answer, near enough for cachefill to carry on.
fn answer(name: &str, sub: &str, port: u16) -> Vec<u8> {
    match (name, sub) {
        ("PING", _) => b"+PONG\r\n".to_vec(),
        ("INFO", _) => bulk(
            "# Server\r\nredis_version:7.0.0\r\n# Memory\r\nused_memory:1000000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n",
        )
        .into_bytes(),
        ("CLUSTER", "SHARDS") => {
            let node = format!(
                "*12\r\n{}{}{}:{port}\r\n{}{}{}{}{}{}{}{}",
                bulk("id"),
                bulk("0123456789012345678901234567890123456789"),
                bulk("port"),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("endpoint"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk("master"),
                bulk("health"),
                bulk("online"),
            );
            format!(
                "*1\r\n*4\r\n{}*2\r\n:0\r\n:16383\r\n{}*1\r\n{node}",
                bulk("slots"),
                bulk("nodes")
            )
            .into_bytes()
        }
        ("GET", _) => b"$-1\r\n".to_vec(),
        ("EXISTS" | "DBSIZE", _) => b":0\r\n".to_vec(),
        ("MEMORY", _) => b":100\r\n".to_vec(),
        ("OBJECT", _) => bulk("embstr").into_bytes(),
        ("AUTH" | "SELECT" | "FLUSHALL" | "SET" | "MSET", _) => b"+OK\r\n".to_vec(),
        _ => format!("-ERR unknown command '{name}'\r\n").into_bytes(),
    }
}
