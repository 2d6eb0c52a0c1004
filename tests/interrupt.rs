//! Ctrl-C: a second signal exits at once, and still stops the servers cachefill launched.

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// The children of `parent` named `name`, from /proc.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if comm == name && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.contains("(redis-server)") && !stat.contains(") Z "))
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a pid this test started; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A launched server and its folder, removed should cachefill have left them behind.
struct Leftover(u32, PathBuf);

impl Drop for Leftover {
    fn drop(&mut self) {
        if is_running(self.0) {
            signal(self.0, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn a_second_ctrl_c_still_stops_the_launched_server_and_removes_its_folder() {
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        "seed = 1\n[targets.local]\nmode = \"standalone\"\nlaunch = true\n[[stages]]\nname = \"long\"\nkeys = 500_000_000\n",
    );
    let (mut child, _) = spawn_plan(&scratch, &plan);
    let cachefill = child.id();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut port = None;
    let mut seen = Vec::new();
    loop {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the stage never started: {seen:?}"));
        if let Some((_, addr)) = line.split_once("started redis-server at ") {
            port = addr
                .trim()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
        }
        let started = line.starts_with("stage long");
        seen.push(line);
        if started {
            break;
        }
    }
    let port = port.unwrap_or_else(|| panic!("no launched address in {seen:?}"));
    let servers = children_named(cachefill, "redis-server");
    assert_eq!(servers.len(), 1, "launched servers: {servers:?}");
    let folder = std::env::temp_dir().join(format!("cachefill-{cachefill}-{port}"));
    let server = Leftover(servers[0], folder.clone());
    assert!(folder.is_dir(), "{} is missing", folder.display());

    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    wait_until(
        "the launched server holds entries",
        Duration::from_secs(20),
        || redis::cmd("DBSIZE").query::<u64>(&mut conn).unwrap_or(0) > 0,
    );
    drop(conn);
    // A server that does not answer keeps the first, orderly stop waiting for its replies,
    // so the second signal surely arrives while the run is still stopping.
    signal(server.0, libc::SIGSTOP);
    signal(cachefill, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    signal(cachefill, libc::SIGINT);

    let exited = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < exited,
            "cachefill did not exit after a second Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        !is_running(server.0),
        "the launched redis-server is still running"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still listens on the launched port {port}"
    );
    assert!(!folder.exists(), "{} was left behind", folder.display());
    let rest: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("cachefill-{cachefill}-"))
            })
        })
        .collect();
    assert!(rest.is_empty(), "left behind: {rest:?}");
}
