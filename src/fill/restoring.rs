//! Whether a stage writes its typed keys as `RESTORE` payloads (`write` in the plan): decided
//! once per stage from the plan, the stage's type and shape, and what its target's server
//! loads; a server that refuses the payloads later turns its target to commands
//! (`Connector::refuse_restore`).

use crate::dataset::Dataset;
use crate::plan::WriteMode;
use crate::rdb::{PayloadEncoder, ServerEncoding};
use crate::resp::typed::Chunking;

/// A stage that writes its typed keys as payloads for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Restoring {
    /// How the server encodes keys.
    pub server: ServerEncoding,
    /// `write = "restore"`: a refusal fails the stage instead of turning it to commands.
    pub required: bool,
}

/// How a stage writes its typed keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// As payloads.
    Restore(Restoring),
    /// With commands, as the plan says (or the stage writes strings).
    Commands,
    /// With commands, though the plan would have payloads: why not.
    Fallback(String),
}

/// How a stage of `dataset` with `write` writes its typed keys on a server that encodes as
/// `server` does (`None`: not known, e.g. the primaries of a cluster differ).
pub(super) fn decide(
    write: WriteMode,
    dataset: &Dataset,
    server: Option<ServerEncoding>,
) -> Decision {
    if write == WriteMode::Commands || !dataset.is_typed() {
        return Decision::Commands;
    }
    let required = write == WriteMode::Restore;
    let Some(server) = server else {
        return Decision::Fallback(
            "the target's primaries differ in their versions or encoding limits (CONFIG GET), so no one payload fits them all".into(),
        );
    };
    match PayloadEncoder::new(dataset, server, Chunking::of(dataset).per_command) {
        Ok(_) => Decision::Restore(Restoring { server, required }),
        Err(why) => Decision::Fallback(why.0),
    }
}
