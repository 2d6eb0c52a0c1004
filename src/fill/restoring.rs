//! Whether a stage writes its typed keys as `RESTORE` payloads (`write` in the plan): decided
//! once per stage from the plan, the stage's type and shape, and what its target's server
//! loads; a server that refuses the payloads later turns its target to commands
//! (`Connector::refuse_restore`).

use crate::dataset::Dataset;
use crate::plan::WriteMode;
use crate::rdb::{PayloadEncoder, ServerEncoding};

/// A stage that writes its typed keys as payloads for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restoring {
    /// How the server encodes keys.
    pub server: ServerEncoding,
    /// `write = "restore"`: a refusal fails the stage instead of turning it to commands.
    pub required: bool,
}

/// How a stage of `dataset` with `write` writes its typed keys on a server that encodes as
/// `server` does (`None`: not known, e.g. the primaries of a cluster differ): `Ok(None)` is
/// commands; `Err` says why `write = "restore"` cannot be honoured.
pub fn decide(
    write: WriteMode,
    dataset: &Dataset,
    server: Option<ServerEncoding>,
) -> Result<Option<Restoring>, String> {
    if write == WriteMode::Commands || !dataset.is_typed() {
        return Ok(None);
    }
    let required = write == WriteMode::Restore;
    let Some(server) = server else {
        return if required {
            Err("the target's primaries differ in their versions or encoding limits (CONFIG GET), so no one payload fits them all".into())
        } else {
            Ok(None)
        };
    };
    match PayloadEncoder::new(dataset, server) {
        Ok(_) => Ok(Some(Restoring { server, required })),
        Err(why) if required => Err(why.0),
        Err(_) => Ok(None),
    }
}
