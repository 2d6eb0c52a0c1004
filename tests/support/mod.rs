//! What the integration tests share: real servers on loopback ([`server`], [`cluster`],
//! [`launched`] by a run, of each [`server_kind`]), a fault-injecting TCP proxy in front of
//! a server ([`proxy`]), a fake server that answers garbage ([`hostile`]), certificates
//! ([`tls`]), plans ([`plan`]), runs of the `cachefill` binary ([`run`]) and fills silenced
//! mid-way ([`silence`]).
//! Servers are started through the crate's own launcher, so tests and `launch = true` pick
//! ports and start servers the same way.

pub mod cluster;
pub mod hostile;
pub mod launched;
pub mod lines;
pub mod loading;
pub mod plan;
pub mod proxy;
pub mod run;
pub mod server;
pub mod server_kind;
pub mod silence;
pub mod tls;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use cluster::{RedisCluster, own_slots, replication_offset, reshard, reshard_nodes};
pub use hostile::{Garbage, HostileServer};
pub use launched::{LaunchedRun, remove_kept_folders};
pub use lines::StderrLines;
pub use loading::saving_server;
pub use plan::{PlanBuilder, StageBuilder, TargetBuilder};
pub use proxy::Proxy;
pub use run::*;
pub use server::{RedisServer, TlsServer};
pub use server_kind::ServerKind;
pub use silence::{
    WAITED_OUT_KEYS, assert_failed_for_silence, assert_holds_what_the_result_brackets,
    assert_silence_waited_out, silenced_fill,
};
pub use tls::TestCerts;

/// Panics with how to install `binary` when it is not on PATH.
pub fn require(binary: &str) {
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

/// Waits, polling, until `condition` holds; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
