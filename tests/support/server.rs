//! Single servers for one test, started with the crate's launcher and stopped when dropped.

use std::time::Duration;

use cachefill::__private::LocalServer;

use super::loading::LoadingServer;
use super::server_kind::ServerKind;
use super::tls::TestCerts;
use super::{TargetBuilder, wait_until};

/// The name launcher messages use for test servers.
const TEST_TARGET: &str = "test";

/// A plaintext server (debug command on, no persistence); killed when dropped.
pub struct RedisServer {
    server: Option<LocalServer>,
    args: Vec<String>,
    /// The port it listens on.
    pub port: u16,
}

impl RedisServer {
    /// Starts the system's redis-server with `extra` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        RedisServer::of(ServerKind::Redis7, extra)
    }

    /// Starts a server of `kind` with `extra` arguments.
    pub fn of(kind: ServerKind, extra: &[&str]) -> RedisServer {
        // DEBUG DIGEST compares datasets; the launcher leaves the debug command off.
        let mut args = kind.debug_args().to_vec();
        args.extend_from_slice(extra);
        let server = LocalServer::start_with(&kind.server_bin(), TEST_TARGET, &args, None)
            .unwrap_or_else(|e| panic!("{e}"));
        RedisServer {
            port: server.addr.port,
            server: Some(server),
            args: args.iter().map(ToString::to_string).collect(),
        }
    }

    /// Starts a server that requires `password` of the default user.
    pub fn with_password(password: &str) -> RedisServer {
        // Set after the start: the launcher waits for a PONG, which a password would refuse.
        let server = RedisServer::start(&[]);
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(password)
            .exec(&mut server.connect())
            .unwrap();
        server
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A standalone target `main` on this server for a plan.
    pub fn target(&self) -> TargetBuilder {
        TargetBuilder::standalone("main", &self.addr())
    }

    /// A connection as the default user.
    pub fn connect(&self) -> redis::Connection {
        self.connect_with(None)
    }

    /// A connection as the default user, with `password` when the server needs one.
    pub fn connect_with(&self, password: Option<&str>) -> redis::Connection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        };
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    /// Keys in database 0.
    pub fn dbsize(&self) -> u64 {
        redis::cmd("DBSIZE").query(&mut self.connect()).unwrap()
    }

    /// `DEBUG DIGEST`: equal digests, equal datasets.
    pub fn digest(&self) -> String {
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut self.connect())
            .unwrap()
    }

    /// `DEBUG POPULATE keys pre: value_size`: `keys` strings made by the server itself.
    pub fn populate(&self, keys: u64, value_size: u32) {
        redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(keys)
            .arg("pre")
            .arg(value_size)
            .exec(&mut self.connect())
            .unwrap();
        assert_eq!(self.dbsize(), keys);
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &str) {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .exec(&mut self.connect())
            .unwrap();
    }

    /// Stops the server process (SIGSTOP): it keeps its sockets and accepts connections,
    /// but answers nothing, like a hung machine.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self
            .server
            .as_ref()
            .and_then(LocalServer::pid)
            .expect("the server is running");
        // SAFETY: kill(2) on a child process this test started and has not reaped.
        let done = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(done, 0, "kill({pid}, {signal}) failed");
    }

    /// `ACL SETUSER name on >password ~* rules…`: a user of all keys with these rules.
    pub fn acl_user(&self, name: &str, password: &str, rules: &[&str]) {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg(rules)
            .exec(&mut self.connect())
            .unwrap();
    }

    /// Calls of `command` the server has served (`INFO commandstats`; lowercase, `config|get`
    /// for a subcommand).
    pub fn calls(&self, command: &str) -> u64 {
        self.counted("commandstats", &format!("cmdstat_{command}:calls="))
    }

    /// Error replies of `kind` (`CLUSTERDOWN`, `MOVED` …) the server has sent
    /// (`INFO errorstats`).
    pub fn errors(&self, kind: &str) -> u64 {
        self.counted("errorstats", &format!("errorstat_{kind}:count="))
    }

    /// The number after `prefix` in `INFO section` (up to a comma), 0 when absent.
    fn counted(&self, section: &str, prefix: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connect())
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(prefix)?.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Clients connected now (`CLIENT LIST`), this connection included.
    pub fn clients(&self) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.connect())
            .unwrap();
        list.lines().count()
    }

    /// Kills the server (SIGKILL) and starts a new, empty one on the same port with the same
    /// arguments, as a crash and a restart without persistence would.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills a cluster node (SIGKILL) and keeps its cluster config (`nodes.conf`) for
    /// [`Self::start_in_place`]: started again, it is the same node (id, slots, epoch) with
    /// an empty dataset, as a crash restarted by its supervisor without persistence.
    pub fn crash_keeping_cluster_config(&mut self) -> (std::path::PathBuf, Vec<u8>) {
        let dir = self.server.as_ref().expect("running").dir().to_path_buf();
        let conf = std::fs::read(dir.join("nodes.conf")).expect("a cluster node's nodes.conf");
        self.kill();
        (dir, conf)
    }

    /// Starts a node killed by [`Self::crash_keeping_cluster_config`] again where it was,
    /// with its cluster config.
    pub fn start_in_place(&mut self, (dir, conf): &(std::path::PathBuf, Vec<u8>)) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("nodes.conf"), conf).unwrap();
        self.start_again();
    }

    /// Starts the server again, after [`Self::kill`], on its port with its arguments.
    fn start_again(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let server = LocalServer::start_on_port("redis-server", TEST_TARGET, self.port, &args)
            .unwrap_or_else(|e| panic!("{e}"));
        self.server = Some(server);
    }

    /// Once the server holds more than `held_at_least` keys (a fill is writing to it),
    /// pauses its writes, kills it and starts it again, empty, on the same port; returns how
    /// many keys it held when it went down.
    pub fn restart_mid_stage(&mut self, held_at_least: u64) -> u64 {
        let held = self.pause_writes_once_holding(held_at_least);
        self.restart();
        held
    }

    /// [`Self::restart_mid_stage`], the new process started with `extra` arguments as well.
    pub fn restart_mid_stage_with(&mut self, held_at_least: u64, extra: &[&str]) -> u64 {
        let held = self.pause_writes_once_holding(held_at_least);
        self.kill();
        self.args.extend(extra.iter().map(ToString::to_string));
        self.start_again();
        held
    }

    /// Once the server holds more than `held_at_least` keys, pauses its writes and
    /// [restarts it from its dump](Self::restart_from_dump); returns how many keys it saved
    /// and the loading server.
    pub fn restart_mid_stage_loading(
        &mut self,
        held_at_least: u64,
        dir: &str,
        micros_per_key: u32,
    ) -> (u64, LoadingServer) {
        let held = self.pause_writes_once_holding(held_at_least);
        (held, self.restart_from_dump(dir, micros_per_key))
    }

    /// Saves the dataset to its dump file in `dir` (the server must have been started with
    /// `--dir DIR --dbfilename dump.rdb`, as [`super::saving_server`] does), kills the server
    /// and starts it again from that file, loading it at `micros_per_key`.
    pub fn restart_from_dump(&mut self, dir: &str, micros_per_key: u32) -> LoadingServer {
        redis::cmd("SAVE").exec(&mut self.connect()).unwrap();
        self.kill();
        LoadingServer::start(self.port, dir, micros_per_key)
    }

    /// [`Self::restart_mid_stage`] for a cluster node that keeps its cluster config
    /// (`nodes.conf`) across the restart, as one with its config on disk does: it comes back
    /// with its node id and its slots, and empty.
    pub fn restart_node_mid_stage(&mut self, held_at_least: u64) -> u64 {
        self.restart_node_mid_stage_with(held_at_least, &[])
    }

    /// [`Self::restart_node_mid_stage`], the new process started with `extra` arguments as
    /// well.
    pub fn restart_node_mid_stage_with(&mut self, held_at_least: u64, extra: &[&str]) -> u64 {
        let held = self.pause_writes_once_holding(held_at_least);
        let mut conn = self.connect();
        redis::cmd("CLUSTER")
            .arg("SAVECONFIG")
            .exec(&mut conn)
            .unwrap();
        let (_, dir): (String, String) = redis::cmd("CONFIG")
            .arg(&["GET", "dir"])
            .query(&mut conn)
            .unwrap();
        let config_file = std::path::Path::new(&dir).join("nodes.conf");
        let config = std::fs::read(&config_file).unwrap();
        self.kill();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&config_file, config).unwrap();
        self.args.extend(extra.iter().map(ToString::to_string));
        self.start_again();
        held
    }

    /// Waits until the server holds more than `held_at_least` keys, then pauses its writes
    /// (what it holds then is what a kill loses); returns what it holds.
    fn pause_writes_once_holding(&self, held_at_least: u64) -> u64 {
        wait_until("the fill has started", Duration::from_secs(30), || {
            self.dbsize() > held_at_least
        });
        redis::cmd("CLIENT")
            .arg(&["PAUSE", "60000", "WRITE"])
            .exec(&mut self.connect())
            .unwrap();
        self.dbsize()
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        drop(self.server.take());
    }
}

/// A TLS-only redis-server with the test certificates; killed when dropped.
pub struct TlsServer {
    _server: LocalServer,
    /// Its TLS port.
    pub port: u16,
}

impl TlsServer {
    /// Starts a TLS-only server; with `auth_clients` it demands a client certificate.
    pub fn start(certs: &TestCerts, auth_clients: bool) -> TlsServer {
        // A later argument wins: this overrides the launcher's `--tls-auth-clients no`.
        let extra: &[&str] = if auth_clients {
            &["--tls-auth-clients", "yes"]
        } else {
            &[]
        };
        let server = LocalServer::start_with(
            "redis-server",
            TEST_TARGET,
            extra,
            Some(&certs.files(false)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        TlsServer {
            port: server.addr.port,
            _server: server,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
