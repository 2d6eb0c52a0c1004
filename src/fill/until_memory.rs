//! `until_memory`: entries handed out as the target's memory allows, until `used_memory`
//! reaches the goal.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::error::StageError;
use super::state::StageState;
use crate::server::MemoryProbe;

/// How often an until_memory stage reads `used_memory`.
const MEMORY_POLL: Duration = Duration::from_millis(5);

/// Hands out entries of an until_memory stage as memory allows, and closes the stage when
/// `used_memory` reaches the goal. The entries written are always a prefix of the index
/// range; the overshoot is what was in flight, at most about one window.
pub(super) async fn monitor(
    state: Arc<StageState>,
    mut probe: MemoryProbe,
    goal: u64,
    entry_bytes: u64,
) -> Result<(), StageError> {
    let start = probe
        .used()
        .await
        .map_err(|e| StageError::Memory(e.to_string()))?;
    loop {
        if state.should_stop() {
            state.close();
            return Ok(());
        }
        let used = probe
            .used()
            .await
            .map_err(|e| StageError::Memory(e.to_string()))?;
        if used >= goal {
            state.close();
            return Ok(());
        }
        let acked = state.acked.load(Relaxed);
        let grown = used.saturating_sub(start);
        // Memory per entry: measured once enough is written, but never below the payload
        // plus a typical per-key overhead (an estimate that is too small overshoots).
        let typical = entry_bytes + 100;
        let per_entry = if acked >= 1000 {
            (grown / acked).max(typical)
        } else {
            typical
        };
        // Half of what seems to fit, and at most 5 % of the goal per reading: the estimate
        // errs and readings come late on a busy machine; the rest follows next time.
        let step = ((goal - used) / per_entry / 2).min(goal / 20 / per_entry);
        let mut allow = acked + step;
        if state.handed_out() == acked {
            allow = allow.max(acked + 1); // less than one entry to go: write one more
        }
        state.raise_limit(allow);
        tokio::time::sleep(MEMORY_POLL).await;
    }
}
