//! cachefill: fills Redis and Redis-compatible servers with synthetic data from a plan.
//!
//! The flow (docs/architecture.md): [`plan`] parses and validates a plan file into typed
//! values; [`fill`] runs its stages against the targets that [`server`] connects to, writing
//! the entries [`dataset`] produces as [`resp`] commands; [`report`] is the JSON result;
//! [`verify`] reads a dataset back; [`commands`] ties each subcommand of [`cli`] to them.

pub mod check;
pub mod cli;
pub mod commands;
pub mod dataset;
pub mod decimal;
pub mod error;
pub mod export;
pub mod fill;
pub mod interrupt;
pub mod merge;
pub mod mix;
pub mod output;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod rdb;
pub mod report;
pub mod resp;
pub mod result;
pub mod server;
pub mod shard;
pub mod slot;
pub mod verify;
