//! Servers at run time: credentials, connections (a control connection through the `redis`
//! crate and raw data connections for the hot path), the one connect path of run, flush and
//! verify, cluster topology, and local servers cachefill launches.

pub mod cleanup;
pub mod cluster;
pub mod connect;
pub mod connector;
pub mod control;
pub mod credentials;
pub mod flush;
pub mod guarded;
pub mod launch;
pub mod launch_settings;
pub mod local_tls;
pub mod login;
pub mod reconnecting;
pub mod slot_assignment;
pub mod tls;
pub mod value;

pub use connector::{Connector, TargetError, WrittenStage};
pub use control::{Control, ControlHandle, InfoFigures, MemoryProbe, ServerFacts};
pub use credentials::{Credentials, Secret};
