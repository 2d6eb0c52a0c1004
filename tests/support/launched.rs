//! A run in the background of a plan whose target cachefill launches, with `--keep`: the test
//! learns the servers' addresses from the run's "started … at" line, can pause the run
//! (`SIGSTOP`) to act on the servers mid-fill, and stops the kept servers when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use super::{Scratch, StderrLines, cachefill, read_result, wait_until};

/// `cachefill run PLAN -o result.json --keep` in the background, and what it launched.
pub struct LaunchedRun {
    child: Child,
    /// Its standard error.
    pub stderr: StderrLines,
    /// The launched servers' addresses, primaries first.
    pub addrs: Vec<String>,
    /// Where the run writes its result.
    pub result: PathBuf,
}

impl LaunchedRun {
    /// Starts the run and waits until it says where it started `target`'s servers.
    pub fn spawn(scratch: &Scratch, plan: &Path, target: &str) -> LaunchedRun {
        let result = scratch.path("result.json");
        let mut child = cachefill(scratch.dir.path())
            .arg("run")
            .arg(plan)
            .arg("-o")
            .arg(&result)
            .arg("--keep")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = StderrLines::of(&mut child);
        let mut run = LaunchedRun {
            child,
            stderr,
            addrs: Vec::new(),
            result,
        };
        let started = run.wait_for_line(&format!("target {target}: started "));
        let (_, addrs) = started
            .split_once(" at ")
            .unwrap_or_else(|| panic!("no addresses in {started:?}"));
        run.addrs = addrs.split(", ").map(|a| a.trim().to_string()).collect();
        run
    }

    /// Waits for the first line of standard error that contains `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        self.stderr.wait_for(needle)
    }

    /// Waits (at most 30 s) until every launched replica has applied what its primary had
    /// written when this was called: replication is asynchronous, so a replica read right
    /// after the run may still be catching up.
    pub fn await_replicas(&self) {
        let offset = |info: &str, name: &str| -> Option<u64> {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse().ok())
        };
        let info = |addr: &str| -> String {
            redis::cmd("INFO")
                .arg("replication")
                .query(&mut connect(addr))
                .unwrap()
        };
        let primaries: Vec<(u16, u64)> = self
            .addrs
            .iter()
            .map(|addr| (addr, info(addr)))
            .filter(|(_, info)| info.contains("role:master"))
            .map(|(addr, info)| {
                let port = addr.rsplit(':').next().unwrap().parse().unwrap();
                (port, offset(&info, "master_repl_offset").unwrap())
            })
            .collect();
        for addr in &self.addrs {
            wait_until(
                &format!("the replica at {addr} caught up with its primary"),
                Duration::from_secs(30),
                || {
                    let replica = info(addr);
                    let Some(port) = offset(&replica, "master_port") else {
                        return true; // a primary
                    };
                    let goal = primaries
                        .iter()
                        .find(|(p, _)| u64::from(*p) == port)
                        .map_or(0, |(_, offset)| *offset);
                    replica.contains("master_link_status:up")
                        && offset(&replica, "slave_repl_offset").unwrap_or(0) >= goal
                },
            );
        }
    }

    /// Keys in database 0 summed over the launched servers.
    pub fn total_keys(&self) -> u64 {
        self.addrs
            .iter()
            .map(|addr| -> u64 { redis::cmd("DBSIZE").query(&mut connect(addr)).unwrap() })
            .sum()
    }

    /// Stops the cachefill process where it is (`SIGSTOP`); the servers go on.
    pub fn pause(&self) {
        signal(self.child.id(), libc::SIGSTOP);
    }

    /// Lets a paused run go on (`SIGCONT`).
    pub fn resume(&self) {
        signal(self.child.id(), libc::SIGCONT);
    }

    /// Waits for the run to end; returns its exit status, its standard error and its result.
    pub fn finish(&mut self) -> (ExitStatus, String, serde_json::Value) {
        let status = self.child.wait().unwrap();
        let said = self.stderr.all();
        let result = read_result(&self.result);
        (status, said, result)
    }
}

impl Drop for LaunchedRun {
    fn drop(&mut self) {
        // A test that failed mid-run may leave the run paused: end it first.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            self.resume();
            let _ = self.child.wait();
        }
        for addr in &self.addrs {
            if let Ok(mut conn) = redis::Client::open(format!("redis://{addr}/"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            {
                let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").exec(&mut conn);
            }
            if let Some((_, port)) = addr.rsplit_once(':') {
                remove_kept_folders(port);
            }
        }
    }
}

/// A connection to the server at `addr`.
fn connect(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Removes the folders (`cachefill-PID-PORT` in the temp folder) `--keep` left for the
/// server on `port`.
pub fn remove_kept_folders(port: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("cachefill-") && name.ends_with(&format!("-{port}")) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a process this test started; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}
