//! How to reach a target's servers: TCP (and TLS) within the connect timeout, the run ids
//! they answered with, and the claims on re-checks after a restart. The raw data
//! connections of the hot path log in through `login.rs`.

use super::errors::SetupError;
pub(crate) use super::errors::TargetError;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::credentials::Credentials;
use super::tls::{Stream, Tls};
use crate::dataset::Dataset;
use crate::plan::{NodeAddr, Target};
use crate::shard::Shard;

/// How to reach the servers of one target; shared by every connection to it.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
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
    /// Why the server refused a `RESTORE` payload (`NOPERM`, a payload it does not load),
    /// once it did: typed keys go as commands from then on.
    restore_refused: Arc<Mutex<Option<String>>>,
    /// Set once that was said to the user.
    restore_warned: Arc<AtomicBool>,
    /// What was said once about this target.
    said: Arc<Mutex<std::collections::HashSet<String>>>,
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
pub(crate) struct WrittenStage {
    /// The stage's name.
    pub name: String,
    /// Its entries; `None` when they cannot be re-checked (a typed stage, or one that did
    /// not end `ok`, whose written entries are not a known range).
    pub entries: Option<(Arc<Dataset>, Shard, u64)>,
}

impl Connector {
    /// Builds a connector (and its TLS client) from a plan target and its credentials.
    /// Errors name the target and the TLS file that is wrong.
    pub(crate) fn new(target: &Target, credentials: Credentials) -> Result<Connector, SetupError> {
        let tls = match &target.tls {
            Some(spec) => Some(
                Tls::new(spec)
                    .map_err(|e| SetupError::Tls(format!("targets.{}.tls: {e}", target.name)))?,
            ),
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
            restore_refused: Arc::default(),
            restore_warned: Arc::default(),
            said: Arc::default(),
            run_ids: Arc::default(),
            written_stages: Arc::default(),
            earlier_rechecks: Arc::default(),
        })
    }

    /// Records that `addr` answered as process `run_id`; returns the process it answered as
    /// before, if any.
    pub(crate) fn note_run_id(&self, addr: &NodeAddr, run_id: &str) -> Option<String> {
        locked(&self.run_ids).insert(addr.clone(), run_id.to_string())
    }

    /// The process `addr` answered the latest data connection as, if any did.
    pub(crate) fn known_run_id(&self, addr: &NodeAddr) -> Option<String> {
        locked(&self.run_ids).get(addr).cloned()
    }

    /// Records that `stage` ended having written to this target.
    pub(crate) fn stage_written(&self, stage: WrittenStage) {
        locked(&self.written_stages).push(stage);
    }

    /// The stages that ended having written to this target so far.
    pub(crate) fn written_stages(&self) -> Vec<WrittenStage> {
        locked(&self.written_stages).clone()
    }

    /// True for the first caller after the server at `addr` restarted as process `run_id`:
    /// that one re-checks the stages written before the restart, the others leave them to
    /// it (two stages re-checking them at once would both write a lost entry again).
    pub(crate) fn claim_earlier_recheck(&self, addr: &NodeAddr, run_id: &str) -> bool {
        let mut claims = locked(&self.earlier_rechecks);
        if claims.get(addr).is_some_and(|claimed| claimed == run_id) {
            return false;
        }
        claims.insert(addr.clone(), run_id.to_string());
        true
    }

    /// Records that the server refused `MSET` to this user (`NOPERM`).
    pub(crate) fn refuse_mset(&self) {
        self.mset_refused.store(true, Relaxed);
    }

    /// True once `MSET` was refused on this target: write one `SET` per entry.
    pub(crate) fn mset_refused(&self) -> bool {
        self.mset_refused.load(Relaxed)
    }

    /// True the first time it is asked after `MSET` was refused: the one time to warn.
    pub(crate) fn mset_warning_due(&self) -> bool {
        self.mset_refused() && !self.mset_warned.swap(true, Relaxed)
    }

    /// Records that the server refused a `RESTORE` payload, and why (the first reason is
    /// kept).
    pub(crate) fn refuse_restore(&self, why: &str) {
        locked(&self.restore_refused).get_or_insert_with(|| why.to_string());
    }

    /// Why the server refused `RESTORE` on this target, once it did: write commands.
    pub(crate) fn restore_refused(&self) -> Option<String> {
        locked(&self.restore_refused).clone()
    }

    /// The refusal the first time it is asked after `RESTORE` was refused: the one time to
    /// say so.
    pub(crate) fn restore_warning_due(&self) -> Option<String> {
        self.restore_refused()
            .filter(|_| !self.restore_warned.swap(true, Relaxed))
    }

    /// True the first time `note` is asked about on this target: the one time to say it.
    pub(crate) fn first_time(&self, note: &str) -> bool {
        locked(&self.said).insert(note.to_string())
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
                Some(tls) => Ok(Stream::Tls(Box::new(
                    tls.connect(&addr.host, tcp).await.map_err(|e| e.0)?,
                ))),
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
}

/// The data behind `mutex`, even if a panic poisoned it (every update is one statement).
pub(crate) fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
