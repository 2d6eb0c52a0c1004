//! cachefill's integration tests, one binary (linked once): a module per area, each
//! starting real servers on loopback through [`support`].

mod support;

mod auth;
mod cli;
mod cluster;
mod compat;
mod connect;
mod export;
mod failures;
mod fill;
mod hostile;
mod interrupt;
mod key_format;
mod launch;
mod library;
mod links;
mod profile;
mod report;
mod restarts;
mod restore;
mod security;
mod shards;
mod stalls;
mod timeline;
mod tls;
mod typed;
mod typed_failover;
mod until_memory;
mod validation;
mod verify;
