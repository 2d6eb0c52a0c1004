//! Everything cachefill launched and must remove when it ends: server processes and their
//! temp folders. Dropping a local server removes it; this registry is for the exit that
//! skips drops (a second Ctrl-C), so that exit still stops what the run started.

use super::errors::SetupError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One launched thing: a server process and its folder, or a folder alone (TLS files).
struct Launched {
    pid: Option<u32>,
    dir: PathBuf,
}

struct Registry {
    launched: Vec<Launched>,
    /// Set by [`stop_all`]: whatever registers afterwards is removed at once.
    closed: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    launched: Vec::new(),
    closed: false,
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves a plain list behind, still fine to use.
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    fn track(&mut self, entry: Launched) -> Result<(), Launched> {
        if self.closed {
            return Err(entry);
        }
        self.launched.push(entry);
        Ok(())
    }

    fn close(&mut self) -> Vec<Launched> {
        self.closed = true;
        std::mem::take(&mut self.launched)
    }
}

/// Records a launched server (`pid`) or folder (`dir`) so [`stop_all`] can remove it.
/// Errors when the process is already exiting: the thing is then removed at once.
pub(crate) fn track(pid: Option<u32>, dir: &Path) -> Result<(), SetupError> {
    let entry = Launched {
        pid,
        dir: dir.to_path_buf(),
    };
    // The lock is released before removing: waiting for a process must not block others.
    let refused = registry().track(entry);
    refused.map_err(|entry| {
        SetupError::Launch({
            remove(&entry);
            "cachefill is exiting (interrupted)".to_string()
        })
    })
}

/// Forgets `dir`: it was removed, or it stays on purpose (`--keep`).
pub(crate) fn untrack(dir: &Path) {
    registry().launched.retain(|l| l.dir != dir);
}

/// Stops every tracked server and removes every tracked folder; later registrations are
/// removed at once. Called on the way out when drops will not run.
pub(crate) fn stop_all() {
    let launched = registry().close();
    for entry in &launched {
        remove(entry);
    }
}

fn remove(entry: &Launched) {
    if let Some(pid) = entry.pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: two system calls that touch no memory of ours (the status pointer is null).
        // The pid is a child this process spawned; a stopping server is untracked before it
        // is reaped, so the pid cannot have passed to another process by now.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let _ = std::fs::remove_dir_all(&entry.dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(dir: &str) -> Launched {
        Launched {
            pid: None,
            dir: PathBuf::from(dir),
        }
    }

    #[test]
    fn closing_hands_over_everything_tracked_and_refuses_what_comes_later() {
        let mut registry = Registry {
            launched: Vec::new(),
            closed: false,
        };
        assert!(registry.track(folder("/a")).is_ok());
        assert!(registry.track(folder("/b")).is_ok());
        let dirs: Vec<PathBuf> = registry.close().into_iter().map(|l| l.dir).collect();
        assert_eq!(dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(registry.track(folder("/c")).is_err());
        assert!(registry.launched.is_empty());
    }
}
