//! Servers at run time: credentials, connections (a control connection through the `redis`
//! crate and raw data connections for the hot path), the one connect path of run, flush and
//! verify, cluster topology, and local servers cachefill launches.

pub(crate) mod cleanup;
pub(crate) mod cluster;
pub(crate) mod connector;
pub(crate) mod control;
pub(crate) mod credentials;
pub(crate) mod errors;
pub(crate) mod flush;
pub(crate) mod guarded;
pub(crate) mod launch;
pub(crate) mod launch_settings;
pub(crate) mod local_tls;
pub(crate) mod login;
pub(crate) mod reconnecting;
pub(crate) mod slot_assignment;
pub(crate) mod target;
pub(crate) mod tls;
pub(crate) mod value;

pub(crate) use connector::{Connector, TargetError, WrittenStage};
pub(crate) use control::{Control, ControlHandle, InfoFigures, MemoryProbe, ServerFacts};
pub(crate) use credentials::Credentials;
