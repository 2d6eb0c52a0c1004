//! What a run does beyond what its plan says, as the command line and the library set it.

use crate::progress::Display;
use crate::shard::Shard;

/// How a run goes beyond what its plan says: what it shows, which flushes it does, what
/// becomes of the servers it launched, which part of the dataset it writes.
/// `RunOptions::default()` is a quiet run of the whole plan, as a test fixture wants it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// What the run shows on standard error (default: nothing).
    pub display: Display,
    /// Whether targets not on a loopback address may be flushed (`--yes`).
    pub remote_flush: RemoteFlush,
    /// What becomes of the servers the run launched once it ends (`--keep`).
    pub launched: AfterRun,
    /// The part of every stage to write (`--shard`; default: all of it).
    pub shard: Shard,
    /// Which of the plan's flushes the run does (`--no-flush`, `cachefill flush`).
    pub flushes: Flushes,
}

/// Whether a run may flush a server that is not on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemoteFlush {
    /// Refuse before anything is written (the default).
    #[default]
    Refuse,
    /// The user confirmed it (`--yes`).
    Confirmed,
}

/// What becomes of the servers a run launched (`launch = true`) once it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterRun {
    /// Stopped, their folders removed (the default).
    #[default]
    Stop,
    /// Left running (`--keep`): the result's `targets.NAME.kept` says where, and their
    /// process ids (their folders go when they stop).
    Keep,
}

/// Which of the plan's flushes a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flushes {
    /// Flush the targets with `flush = true`, then fill (the default).
    #[default]
    AsPlanned,
    /// Flush nothing (`--no-flush`: the shards of a run flushed once before).
    Skip,
    /// Only flush, write no stage (`cachefill flush`).
    Only,
}
