//! A redis-server started again from its dump file that takes its time loading it, as a big
//! dataset would: it answers `LOADING` to commands meanwhile. Started by hand, since the
//! launcher waits for `PONG`; killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::server_kind::ServerKind;
use super::{RedisServer, Scratch, require, wait_until};

/// A server that saves to `dump.rdb` in a folder of `scratch`, and that folder, for a
/// [`LoadingServer`] to load from.
pub fn saving_server(scratch: &Scratch) -> (RedisServer, String) {
    let dir = scratch.path("data");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_str().unwrap().to_string();
    let server = RedisServer::start(&["--dir", &dir, "--dbfilename", "dump.rdb"]);
    (server, dir)
}

/// A server loading its dataset.
pub struct LoadingServer {
    child: Child,
    port: u16,
}

impl LoadingServer {
    /// Starts redis-server on `port`, loading `dir/dump.rdb` at `micros_per_key` and
    /// answering clients between every 1 kB it reads (Redis's default is 2 MB); returns once
    /// it accepts connections, having checked that it answers `LOADING`.
    pub fn start(port: u16, dir: &str, micros_per_key: u32) -> LoadingServer {
        require("redis-server");
        let server = LoadingServer {
            child: Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--dir", dir, "--dbfilename", "dump.rdb", "--save", ""])
                .args(ServerKind::Redis7.debug_args())
                .args(["--key-load-delay", &micros_per_key.to_string()])
                .args(["--loading-process-events-interval-bytes", "1024"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server starts"),
            port,
        };
        wait_until(
            "the restarted server accepts connections",
            Duration::from_secs(10),
            || server.connect().is_ok(),
        );
        assert_eq!(
            server.ping(),
            Err("LOADING".to_string()),
            "not loading: the test would not test"
        );
        server
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?.get_connection()
    }

    /// A connection to it.
    pub fn connection(&self) -> redis::Connection {
        self.connect().unwrap()
    }

    /// Keys it holds (once loaded).
    pub fn dbsize(&self) -> u64 {
        redis::cmd("DBSIZE")
            .query(&mut self.connect().unwrap())
            .unwrap()
    }

    /// The server's answer to `PING`: `PONG`, or the code of its error.
    pub fn ping(&self) -> Result<String, String> {
        redis::cmd("PING")
            .query::<String>(&mut self.connect().unwrap())
            .map_err(|e| e.code().unwrap_or_default().to_string())
    }
}

impl Drop for LoadingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
