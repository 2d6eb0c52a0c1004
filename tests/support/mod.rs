//! Real `redis-server` processes for the integration tests, on free loopback ports, and a
//! way to run the `cachefill` binary against them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A redis-server started for one test; killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn require(binary: &str) {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if found.is_err() {
        panic!(
            "`{binary}` is not installed: install it (Debian: apt-get install redis-server redis-tools) to run these tests"
        );
    }
}

impl RedisServer {
    /// Starts a server with the debug command enabled, no persistence, and `extra` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        let (child, port, dir) =
            spawn_server(extra, |port| vec!["--port".into(), port.to_string()], ping);
        RedisServer { child, port, dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A connection as the default user (with `password` when the server needs one).
    pub fn connect(&self) -> redis::Connection {
        self.connect_with(None)
    }

    pub fn connect_with(&self, password: Option<&str>) -> redis::Connection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        };
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    pub fn dbsize(&self) -> u64 {
        redis::cmd("DBSIZE").query(&mut self.connect()).unwrap()
    }

    pub fn digest(&self) -> String {
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut self.connect())
            .unwrap()
    }

    pub fn flushall(&self) {
        redis::cmd("FLUSHALL")
            .query::<()>(&mut self.connect())
            .unwrap();
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts redis-server (debug command on, no persistence) on a free loopback port with
/// `ports(port)` and `extra`, and waits until `ready(port)`; retries when the port was taken.
fn spawn_server(
    extra: &[&str],
    ports: impl Fn(u16) -> Vec<String>,
    ready: impl Fn(u16) -> bool,
) -> (Child, u16, tempfile::TempDir) {
    require("redis-server");
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port > 55535 && extra.contains(&"--cluster-enabled") {
            continue; // a cluster node's bus port (port + 10000) must fit too
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("redis-server")
            .args(ports(port))
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // port taken by someone else meanwhile: try another
            }
            if ready(port) {
                return (child, port, dir);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("could not start redis-server on a free port");
}

/// True when something on `port` answers PING (an auth error counts: the server is up).
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply).is_ok() && (reply[0] == b'+' || reply[0] == b'-')
}

/// A scratch directory holding a plan file.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `plan.toml` (or another name) and returns its path.
    pub fn plan(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The cachefill binary, run in `cwd` without a terminal.
pub fn cachefill(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefill"));
    command.current_dir(cwd).stdin(Stdio::null());
    command
}

/// Runs a plan with `run --quiet -o result.json` and returns the output and the parsed result.
pub fn run_plan(
    scratch: &Scratch,
    plan: &Path,
    extra: &[&str],
) -> (Output, Option<serde_json::Value>) {
    let result = scratch.path("result.json");
    let _ = std::fs::remove_file(&result);
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(plan)
        .args(["--quiet", "-o"])
        .arg(&result)
        .args(extra)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(&result)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("result is JSON"));
    (output, json)
}

/// Starts `run PLAN -o result.json` in the background (for tests that act during the run).
pub fn spawn_plan(scratch: &Scratch, plan: &Path) -> (std::process::Child, PathBuf) {
    let result = scratch.path("result.json");
    let child = cachefill(scratch.dir.path())
        .arg("run")
        .arg(plan)
        .arg("-o")
        .arg(&result)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, result)
}

/// The JSON result file at `path`.
pub fn read_result(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the result file exists"))
        .expect("the result is JSON")
}

/// Runs a plan that must succeed and returns its result.
pub fn run_ok(scratch: &Scratch, plan: &Path, extra: &[&str]) -> serde_json::Value {
    let (output, result) = run_plan(scratch, plan, extra);
    assert!(output.status.success(), "{}", stderr(&output));
    result.expect("a successful run writes its result")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A standalone target table for `server`.
pub fn target(server: &RedisServer, flush: bool) -> String {
    format!(
        "[targets.main]\nmode = \"standalone\"\nnodes = [\"{}\"]\nflush = {flush}\n",
        server.addr()
    )
}

/// Waits, polling, until `condition` holds; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A Redis Cluster of real servers, formed with `redis-cli --cluster create`.
pub struct RedisCluster {
    /// Primaries first (as created), then replicas.
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        require("redis-cli");
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            // No diskless-sync delay: replicas are in sync (and able to take over) at once.
            "--repl-diskless-sync-delay",
            "0",
        ];
        let servers: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::start(&args))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(servers.iter().map(|s| s.addr()))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { servers };
        wait_until(
            "the cluster is ok on every node",
            Duration::from_secs(30),
            || {
                cluster.servers.iter().all(|s| {
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut s.connect())
                        .unwrap_or_default();
                    info.contains("cluster_state:ok")
                })
            },
        );
        wait_until("every replica is in sync", Duration::from_secs(30), || {
            cluster.servers.iter().all(|s| {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut s.connect())
                    .unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
        cluster
    }

    /// `nodes = [...]` for a plan: only the first node, as a seed.
    pub fn target(&self, flush: bool) -> String {
        format!(
            "[targets.main]\nmode = \"cluster\"\nnodes = [\"{}\"]\nflush = {flush}\n",
            self.servers[0].addr()
        )
    }

    /// The servers that are primaries now, with their slot counts.
    pub fn primaries(&self) -> Vec<(&RedisServer, u64)> {
        self.servers
            .iter()
            .filter_map(|s| {
                let mut conn = redis::Client::open(format!("redis://{}/", s.addr()))
                    .ok()?
                    .get_connection()
                    .ok()?;
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
                if !matches!(&role[0], redis::Value::BulkString(b) if b == b"master") {
                    return None;
                }
                let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut conn).ok()?;
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
                let line = nodes.lines().find(|l| l.starts_with(&id))?;
                let slots = line
                    .split_whitespace()
                    .skip(8)
                    .filter(|r| !r.starts_with('['))
                    .map(|r| match r.split_once('-') {
                        Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
                        None => 1,
                    })
                    .sum();
                Some((s, slots))
            })
            .collect()
    }

    /// The XOR of the primaries' `DEBUG DIGEST`s. Redis XORs the digests of the keys into a
    /// server's digest (after mixing in the database number), so with an odd number of
    /// primaries this equals the digest of one server holding the same keys and values.
    pub fn digest_xor(&self) -> String {
        let primaries = self.primaries();
        assert!(
            primaries.len() % 2 == 1,
            "digest_xor needs an odd number of primaries"
        );
        let mut xor = [0u8; 20];
        for (server, _) in primaries {
            let digest = server.digest();
            for (i, byte) in xor.iter_mut().enumerate() {
                *byte ^= u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap();
            }
        }
        xor.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sum of DBSIZE over the primaries.
    pub fn total_keys(&self) -> u64 {
        self.primaries().iter().map(|(s, _)| s.dbsize()).sum()
    }

    /// A connection to the node serving `key` (follows one MOVED).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut conn = self.servers[0].connect();
        match redis::cmd("GET")
            .arg(key)
            .query::<Option<Vec<u8>>>(&mut conn)
        {
            Ok(value) => value,
            Err(e) => {
                let detail = e.to_string();
                let addr = detail
                    .split_whitespace()
                    .find(|w| {
                        w.contains(':') && w.chars().next().is_some_and(|c| c.is_ascii_digit())
                    })?
                    .to_string();
                let mut conn = redis::Client::open(format!("redis://{addr}/"))
                    .ok()?
                    .get_connection()
                    .ok()?;
                redis::cmd("GET").arg(key).query(&mut conn).ok()?
            }
        }
    }
}

/// A test CA, a server certificate for localhost / 127.0.0.1 / redis.test, a client
/// certificate, and a second CA that signed nothing, as PEM files.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn new() -> TestCerts {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let authority = ca("cachefill test CA");
        write("ca.crt", authority.pem());
        write("other-ca.crt", ca("another CA").pem());
        for (name, sans) in [
            ("server", vec!["localhost", "127.0.0.1", "redis.test"]),
            ("client", vec!["cachefill-client"]),
        ] {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(sans.into_iter().map(String::from).collect::<Vec<_>>())
                    .unwrap();
            let cert = params.signed_by(&key, &authority).unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        TestCerts { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// redis-server arguments for a TLS-only server on `port`.
    pub fn server_args(&self, port: u16, auth_clients: bool) -> Vec<String> {
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            self.path("server.crt"),
            "--tls-key-file".into(),
            self.path("server.key"),
            "--tls-ca-cert-file".into(),
            self.path("ca.crt"),
            "--tls-auth-clients".into(),
            if auth_clients { "yes" } else { "no" }.into(),
        ]
    }

    /// Runs redis-cli over TLS (with the client certificate) against `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                &self.path("ca.crt"),
                "--cert",
                &self.path("client.crt"),
                "--key",
                &self.path("client.key"),
            ])
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

/// A TLS-only redis-server; killed when dropped.
pub struct TlsServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    pub fn start(certs: &TestCerts, auth_clients: bool, extra: &[&str]) -> TlsServer {
        let (child, port, dir) = spawn_server(
            extra,
            |port| certs.server_args(port, auth_clients),
            |port| certs.cli(port, &["PING"]) == "PONG",
        );
        TlsServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
