//! Why a target's servers could not be set up ([`SetupError`]) or reached or used
//! (`TargetError`), phrased for the user.

/// A failure to reach or use a server, already phrased for the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TargetError(pub String);

/// A failure to prepare what a target's connections need, already phrased for the user:
/// the variant says which part (a failure to reach or use a server is a `TargetError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A password the plan names cannot be read (an unset variable, an unreadable file).
    #[error("{0}")]
    Credentials(String),
    /// TLS: a certificate file that is missing or wrong, a throwaway CA that cannot be made.
    #[error("{0}")]
    Tls(String),
    /// A server cachefill launches: no free port, a binary that does not start, a setting
    /// it refuses, a cluster it cannot form.
    #[error("{0}")]
    Launch(String),
}
