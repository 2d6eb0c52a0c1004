//! cachefill fills Redis and Redis-compatible servers (Valkey), standalone or cluster, with
//! a synthetic dataset described by a plan: the same plan and seed always write the same
//! keys, values, elements and TTLs. This crate is the `cachefill` command line and the
//! library behind it, for a Rust test suite that wants "a server in this exact state".
//!
//! A plan is TOML (the format: `docs/plan-format.md`); [`run`] writes it and returns the
//! [`RunResult`] the command line writes as JSON; [`verify`] reads it back.
//!
//! ```no_run
//! # async fn fixture() -> Result<(), Box<dyn std::error::Error>> {
//! use cachefill::{AfterRun, Plan, RunOptions, Status};
//!
//! let plan = Plan::parse(
//!     r#"
//!     seed = 7
//!     [targets.cache]
//!     mode = "standalone"
//!     launch = true            # a throwaway redis-server on a free loopback port
//!
//!     [[stages]]
//!     name = "sessions"
//!     keys = 10000
//!     value_size = { min = 100, max = 400 }
//!     ttl = "1h"
//!     "#,
//!     "fixture.toml",
//! )?;
//! let mut options = RunOptions::default(); // quiet: no bars, no lines
//! options.launched = AfterRun::Keep; // keep the server for the test
//! let result = cachefill::run(&plan, &options).await?;
//! assert_eq!(result.status, Status::Ok);
//! assert_eq!(result.stages[0].keys_written, 10000);
//! let kept = result.targets["cache"].kept.as_ref().expect("kept");
//! println!("a server with the dataset at {}", kept.addresses[0]);
//! kept.stop()?; // stop it when the test is done
//! # Ok(())
//! # }
//! ```
//!
//! The calls are async and need a tokio runtime (either flavour). Nothing is printed unless
//! [`RunOptions::display`] asks for it.
//!
//! The flow inside (docs/architecture.md): `plan` parses and validates a plan into typed
//! values; `fill` runs its stages against the targets that `server` connects to, writing
//! the entries `dataset` produces as `resp` commands or `rdb` payloads; [`result`] is the
//! JSON result; `verify` reads a dataset back; `commands` ties each subcommand of `cli` to
//! them.

#![warn(missing_docs, unreachable_pub)]

pub(crate) mod check;
pub(crate) mod cli;
pub(crate) mod commands;
pub(crate) mod dataset;
pub(crate) mod decimal;
pub(crate) mod error;
pub(crate) mod export;
pub(crate) mod fill;
pub(crate) mod interrupt;
pub(crate) mod merge;
pub(crate) mod mix;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod profile;
pub(crate) mod progress;
pub(crate) mod rdb;
pub(crate) mod report;
pub(crate) mod resp;
pub mod result;
pub(crate) mod run_error;
pub(crate) mod server;
pub(crate) mod shard;
pub(crate) mod slot;
pub(crate) mod verify;

pub use fill::{AfterRun, Flushes, RemoteFlush, RunOptions};
pub use plan::{Plan, PlanError};
pub use progress::Display;
pub use result::{RunResult, Status};
pub use run_error::{ErrorKind, RunError};
pub use shard::Shard;
pub use verify::{StageCheck, VerifyOptions, VerifyReport, VerifyStatus};

/// Runs `plan`: checks what needs the environment (password variables, a flush of a remote
/// server), launches or connects to its targets, flushes them, writes its stages and
/// returns what was written. A run that fails or is interrupted once it has begun returns
/// an error that holds its result ([`RunError::result`]); an error without one means
/// nothing was written.
pub async fn run(plan: &Plan, options: &RunOptions) -> Result<RunResult, RunError> {
    if options.flushes != Flushes::Only {
        plan.with_stages()
            .map_err(|e| RunError::new(e.into(), None))?;
    }
    fill::run(plan, options)
        .await
        .map_err(|(failure, result)| RunError::new(failure, result))
}

/// Reads `plan`'s dataset back from its targets (the targets of a run's result for
/// launched ones, [`VerifyOptions::result`]) and says what is missing, of the wrong type,
/// holds another value or has a wrong TTL. Finding problems is not an error: see
/// [`VerifyReport::status`] and [`VerifyReport::problem`].
pub async fn verify(plan: &Plan, options: &VerifyOptions) -> Result<VerifyReport, RunError> {
    plan.with_stages()
        .map_err(|e| RunError::new(e.into(), None))?;
    verify::verify(plan, options)
        .await
        .map_err(|failure| RunError::new(failure, None))
}

/// What the `cachefill` binary and the project's own tests use; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cli::{Cli, SUBCOMMANDS, exit_on_parse_error};
    pub use crate::commands::execute;
    pub use crate::dataset::{Dataset, STREAM_BASE_MS};
    pub use crate::mix::mix64;
    pub use crate::plan::load;
    pub use crate::plan::units::human_bytes;
    pub use crate::rdb::{PayloadEncoder, ServerEncoding};
    pub use crate::resp::typed::Chunking;
    pub use crate::server::errors::SetupError;
    pub use crate::server::launch::{LocalCluster, LocalServer, free_port};
    pub use crate::server::local_tls::TlsFiles;
    pub use crate::slot::slot;
}
