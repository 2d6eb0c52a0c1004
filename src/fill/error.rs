//! Why a stage failed: the one line the user sees, and where it came from.

/// A stage's failure, phrased as the one line the result and the closing line carry; the
/// variant says which part of the fill gave up, so a caller can tell a lost server from a
/// refusal without reading the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum StageError {
    /// A server could not be reached again: reconnections used up, or a lost cluster
    /// primary that neither came back nor had a successor within `failover_timeout`.
    #[error("{0}")]
    Lost(String),
    /// A server answered what the stage cannot carry on from (an error reply, a reply that
    /// is not RESP, a refusal of the commands it needs).
    #[error("{0}")]
    Server(String),
    /// What a restarted server or a failover's successor may have lost could not be
    /// re-checked.
    #[error("{0}")]
    Recheck(String),
    /// The cluster's slot map leaves slots without a primary.
    #[error("{0}")]
    Topology(String),
    /// `until_memory`: the server's `used_memory` could not be read.
    #[error("{0}")]
    Memory(String),
}
