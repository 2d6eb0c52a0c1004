//! Throwaway local servers for `launch = true`: started on a free loopback port without
//! persistence, stopped when the run ends (unless `--keep`).

use super::errors::SetupError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cleanup;
use super::local_tls::TlsFiles;
use super::slot_assignment;
use crate::plan::NodeAddr;

/// A `redis-server` started by cachefill. Dropping it stops the server.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    /// Where it listens (plaintext; the TLS port when it serves TLS only).
    pub addr: NodeAddr,
    /// Its TLS port, when it serves TLS beside plaintext (launched TLS clusters).
    pub tls_port: Option<u16>,
    dir: PathBuf,
}

/// How long a launched server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalServer {
    /// Starts `server_bin` on a free loopback port (TLS-only with `tls`) with `extra`
    /// arguments, and waits until it is ready.
    pub fn start_with(
        server_bin: &str,
        target: &str,
        extra: &[&str],
        tls: Option<&TlsFiles>,
    ) -> Result<LocalServer, SetupError> {
        let mut last_error = String::new();
        // A port found free can be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            let cluster = extra.contains(&"--cluster-enabled");
            let port = if cluster {
                free_cluster_port()
            } else {
                free_port()
            }
            .map_err(|e| {
                SetupError::Launch(format!(
                    "target \"{target}\": cannot find a free loopback port: {e}"
                ))
            })?;
            match Self::start_on(server_bin, target, port, extra, tls) {
                Ok(server) => return Ok(server),
                Err(StartError::Fatal(message)) => return Err(SetupError::Launch(message)),
                Err(StartError::Retry(message)) => last_error = message,
            }
        }
        Err(SetupError::Launch(last_error))
    }

    /// Starts `server_bin` on `port` (plaintext) with `extra` arguments, and waits until it
    /// answers; for a server restarted where another one was.
    pub fn start_on_port(
        server_bin: &str,
        target: &str,
        port: u16,
        extra: &[&str],
    ) -> Result<LocalServer, SetupError> {
        Self::start_on(server_bin, target, port, extra, None).map_err(|e| {
            SetupError::Launch(match e {
                StartError::Fatal(message) | StartError::Retry(message) => message,
            })
        })
    }

    fn start_on(
        server_bin: &str,
        target: &str,
        port: u16,
        extra: &[&str],
        tls: Option<&TlsFiles>,
    ) -> Result<LocalServer, StartError> {
        let dir = std::env::temp_dir().join(format!("cachefill-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            StartError::Fatal(format!(
                "target \"{target}\": cannot create {}: {e}",
                dir.display()
            ))
        })?;
        let log = dir.join("server.log");
        // A TLS cluster node keeps a plaintext port on loopback too, to be formed through it.
        let tls_port = match tls {
            Some(files) if files.plain_port_too => Some(
                free_cluster_port()
                    .map_err(|e| StartError::Fatal(format!("target \"{target}\": {e}")))?,
            ),
            _ => None,
        };
        let ports: Vec<String> = match tls {
            None => vec!["--port".into(), port.to_string()],
            Some(tls) => {
                let mut args: Vec<String> = match tls_port {
                    Some(tls_port) => vec![
                        "--port".into(),
                        port.to_string(),
                        "--tls-port".into(),
                        tls_port.to_string(),
                        "--tls-cluster".into(),
                        "yes".into(),
                        "--tls-replication".into(),
                        "yes".into(),
                    ],
                    None => vec![
                        "--port".into(),
                        "0".into(),
                        "--tls-port".into(),
                        port.to_string(),
                    ],
                };
                for (flag, path) in [
                    ("--tls-cert-file", &tls.cert_file),
                    ("--tls-key-file", &tls.key_file),
                    ("--tls-ca-cert-file", &tls.ca_file),
                ] {
                    args.push(flag.into());
                    args.push(path.to_string_lossy().into_owned());
                }
                args.extend(["--tls-auth-clients".into(), "no".into()]);
                args
            }
        };
        let spawned = Command::new(server_bin)
            .args(&ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // What it says before its log file is open: a refused option, for one.
            .stderr(match std::fs::File::create(dir.join(STARTUP_ERRORS)) {
                Ok(file) => Stdio::from(file),
                Err(_) => Stdio::null(),
            })
            // Its own process group: Ctrl-C on cachefill must not kill a server kept with --keep.
            .process_group(0)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(StartError::Fatal(format!(
                    "target \"{target}\": `{server_bin}` was not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server, macOS: brew install redis) or name another binary with server_bin"
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(StartError::Fatal(format!(
                    "target \"{target}\": cannot start `{server_bin}`: {e}"
                )));
            }
        };
        // Tracked so that an exit that skips drops (a second Ctrl-C) still stops it.
        cleanup::track(Some(child.id()), &dir)
            .map_err(|e| StartError::Fatal(format!("target \"{target}\": {e}")))?;
        let mut server = LocalServer {
            child: Some(child),
            addr: NodeAddr {
                host: "127.0.0.1".into(),
                port,
            },
            tls_port,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let why = why_it_exited(&log, &server.dir.join(STARTUP_ERRORS));
                // Only a refusal of a TLS option says the build lacks TLS (not, say, a
                // server_config value the server refused).
                let hint = match tls {
                    Some(_) if why.contains("'tls-") => {
                        "; a launch with TLS needs a server_bin built with TLS"
                    }
                    _ => "",
                };
                return Err(StartError::Retry(format!(
                    "target \"{target}\": `{server_bin}` exited at start ({status}): {why}{hint}"
                )));
            }
            // A TLS server is ready once it listens; a plaintext one must answer PING.
            let ready = match tls {
                Some(_) if tls_port.is_none() => TcpStream::connect(("127.0.0.1", port)).is_ok(),
                _ => answers_ping(port),
            };
            if ready {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(StartError::Fatal(format!(
                    "target \"{target}\": `{server_bin}` on port {port} did not answer PING within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address clients use: the TLS port when the server has one beside plaintext.
    pub fn client_addr(&self) -> NodeAddr {
        NodeAddr {
            host: self.addr.host.clone(),
            port: self.tls_port.unwrap_or(self.addr.port),
        }
    }

    /// The server's folder (`--dir`: its log, a cluster node's `nodes.conf`); removed when
    /// the server is dropped.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id, while cachefill owns it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Leaves the server running after cachefill exits; returns its address, process id and
    /// folder (which [`watch_kept`] removes once it stops).
    pub fn keep(mut self) -> Kept {
        cleanup::untrack(&self.dir);
        let pid = self.child.take().map(|child| {
            let pid = child.id();
            std::mem::forget(child);
            pid
        });
        Kept {
            addr: self.client_addr(),
            pid,
            dir: self.dir.clone(),
        }
    }
}

/// A launched server left running with `--keep`.
pub struct Kept {
    /// Its client address.
    pub addr: NodeAddr,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its folder (log, cluster configuration).
    pub dir: PathBuf,
}

/// Removes `dirs` once every process of `pids` has exited (polled each second by a small
/// shell process of its own, which outlives cachefill): the folders of servers kept with
/// `--keep`, and their throwaway CA, go when the servers stop.
pub(crate) fn watch_kept(pids: &[u32], dirs: &[PathBuf]) -> std::io::Result<()> {
    const WATCH: &str = r#"for p in $1; do while kill -0 "$p" 2>/dev/null; do sleep 1; done; done; shift; rm -rf -- "$@""#;
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    Command::new("sh")
        .arg("-c")
        .arg(WATCH)
        .arg("cachefill-keep")
        .arg(pids.join(" "))
        .args(dirs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}

/// The file in a launched server's folder that holds its standard error.
const STARTUP_ERRORS: &str = "stderr.log";

/// Why a server exited at start, in one line: the last line of its log, or when it stopped
/// before opening its log (an option it does not know, e.g. `tls-port` on a build without
/// TLS or `enable-debug-command` before Redis 7.0), what it printed on standard error.
fn why_it_exited(log: &Path, stderr: &Path) -> String {
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    if let Some(last) = logged.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        return last.to_string();
    }
    let printed = std::fs::read_to_string(stderr).unwrap_or_default();
    let lines: Vec<&str> = printed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .collect();
    // Redis names the refused option and the reason on its last two lines.
    lines[lines.len().saturating_sub(2)..].join(" ")
}

enum StartError {
    Fatal(String),
    Retry(String),
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Killed before it is untracked, so an exit in between cannot leave it running;
            // untracked before it is reaped, so the registry never holds a reused pid.
            let _ = child.kill();
            cleanup::untrack(&self.dir);
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port on 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free port for a cluster node: its bus port (port + 10000) must be free too, and so at
/// most 55535, which ports the system picks do not respect.
fn free_cluster_port() -> std::io::Result<u16> {
    let mut state = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..1000 {
        state = crate::mix::mix64(state.wrapping_add(0x9E37_79B9_7F4A_7C15));
        let port = 20000 + (state % (55535 - 20000)) as u16;
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            drop(listener);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port pair below 55536",
    ))
}

/// True when a server on `port` answers `PING` with `+PONG`.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// How long a launched cluster may take to agree on its shape.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of local servers started and formed by cachefill.
#[derive(Debug)]
pub struct LocalCluster {
    /// Primaries first, then replicas.
    pub servers: Vec<LocalServer>,
}

impl LocalCluster {
    /// Starts `primaries × (1 + replicas)` servers with `extra` arguments, spreads the 16384
    /// slots evenly over the primaries, attaches the replicas, and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start(
        server_bin: &str,
        target: &str,
        primaries: u32,
        replicas: u32,
        extra: &[&str],
        tls: Option<&TlsFiles>,
    ) -> Result<LocalCluster, SetupError> {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--cluster-require-full-coverage",
            "yes",
            // Replicas sync at once, so they can take over from the start.
            "--repl-diskless-sync-delay",
            "0",
        ];
        args.extend_from_slice(extra);
        let total = primaries * (1 + replicas);
        let mut servers = Vec::new();
        for _ in 0..total {
            servers.push(LocalServer::start_with(server_bin, target, &args, tls)?);
        }
        let cluster = LocalCluster { servers };
        cluster.form(primaries as usize).map_err(|e| {
            SetupError::Launch(format!(
                "target \"{target}\": cannot form the local cluster: {e}"
            ))
        })?;
        Ok(cluster)
    }

    fn form(&self, primaries: usize) -> redis::RedisResult<()> {
        let mut connections = Vec::new();
        for server in &self.servers {
            let client = redis::Client::open(format!("redis://{}/", server.addr))?;
            connections.push(client.get_connection_with_timeout(START_TIMEOUT)?);
        }
        for (i, conn) in connections.iter_mut().take(primaries).enumerate() {
            let start = i * usize::from(crate::slot::SLOTS) / primaries;
            let end = (i + 1) * usize::from(crate::slot::SLOTS) / primaries - 1;
            // Below 16384, so they fit.
            slot_assignment::assign(conn, start as u16, end as u16)?;
        }
        // The cluster bus runs beside the TLS port when the nodes speak TLS.
        let first = self.servers[0].client_addr();
        for conn in connections.iter_mut().skip(1) {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg(&first.host)
                .arg(first.port)
                .exec(conn)?;
        }
        let ids: Vec<String> = connections
            .iter_mut()
            .map(|c| redis::cmd("CLUSTER").arg("MYID").query(c))
            .collect::<Result<_, _>>()?;
        let deadline = Instant::now() + FORM_TIMEOUT;
        let wait = |what: &str, done: &mut dyn FnMut() -> redis::RedisResult<bool>| {
            while !done()? {
                if Instant::now() > deadline {
                    return Err(redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{what} within {}s", FORM_TIMEOUT.as_secs()),
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        };
        let count = self.servers.len();
        wait("the nodes did not all meet", &mut || {
            for conn in connections.iter_mut() {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(conn)?;
                if nodes.lines().filter(|l| !l.contains("handshake")).count() < count {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        for (i, conn) in connections.iter_mut().enumerate().skip(primaries) {
            let primary = &ids[(i - primaries) % primaries];
            redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(primary)
                .exec(conn)?;
        }
        wait("the cluster did not report cluster_state:ok", &mut || {
            for conn in connections.iter_mut() {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(conn)?;
                if !info.contains("cluster_state:ok") {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        wait("the replicas did not finish their first sync", &mut || {
            for conn in connections.iter_mut().skip(primaries) {
                let info: String = redis::cmd("INFO").arg("replication").query(conn)?;
                if !info.contains("master_link_status:up") {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// The addresses of all nodes, primaries first.
    pub fn addrs(&self) -> Vec<NodeAddr> {
        self.servers.iter().map(LocalServer::client_addr).collect()
    }

    /// Leaves the servers running after cachefill exits (see [`LocalServer::keep`]).
    pub fn keep(self) -> Vec<Kept> {
        self.servers.into_iter().map(LocalServer::keep).collect()
    }
}
