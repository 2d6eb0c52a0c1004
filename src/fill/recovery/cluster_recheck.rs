//! The re-check after a failover: replication is asynchronous, so what the lost primary
//! acknowledged may be missing on its successor. Strings are read back (`EXISTS`) and
//! written again when missing; typed keys are handed to their new owner as resumes, which
//! count what it holds and write the rest. (After a primary's restart: `cluster_restart.rs`.)

use crate::fill::error::StageError;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;

use super::recheck::write_acknowledged;
use crate::fill::cluster::node::NodeFeed;
use crate::fill::cluster::{QueuedWindow, Router};
use crate::fill::lock::read;
use crate::plan::NodeAddr;
use crate::resp::EntryEncoder;
use crate::server::Control;
use crate::slot::slot;

/// Entries re-checked per round trip after a failover (typed keys: handed on between two
/// yields to the other tasks).
const RECHECK_BATCH: u64 = 1000;

impl Router {
    /// Reads back every entry below `upto` whose slot was lost, and writes again the ones
    /// that are missing (acknowledged by the lost primary, never replicated). Reads go
    /// through control connections; writes through data connections, encoded by the one
    /// [`EntryEncoder`].
    pub(in crate::fill) async fn recheck(
        &self,
        lost: &[bool],
        upto: u64,
        skip: &HashSet<u64>,
    ) -> Result<(), StageError> {
        let mut controls: HashMap<NodeAddr, Control> = HashMap::new();
        let mut writers = HashMap::new();
        let encoder = EntryEncoder::new(&self.dataset);
        let mut rewrite = Vec::new();
        let mut key = Vec::with_capacity(self.dataset.key_size());
        let mut start = 0;
        while start < upto && !self.stage.should_stop() {
            let end = (start + RECHECK_BATCH).min(upto);
            let mut by_owner: HashMap<NodeAddr, Vec<(u64, Vec<u8>)>> = HashMap::new();
            for position in start..end {
                let index = self.stage.global(position);
                if skip.contains(&index) {
                    continue;
                }
                key.clear();
                self.dataset.push_key(&self.dataset.entry(index), &mut key);
                if lost[usize::from(slot(&key))] {
                    let owner = self.owner_of(index).addr.clone();
                    by_owner
                        .entry(owner)
                        .or_default()
                        .push((index, key.clone()));
                }
            }
            for (addr, entries) in by_owner {
                if !controls.contains_key(&addr) {
                    let control = self
                        .connector
                        .control(&addr)
                        .await
                        .map_err(|e| StageError::Recheck(e.0))?;
                    controls.insert(addr.clone(), control);
                }
                let Some(control) = controls.get_mut(&addr) else {
                    continue;
                };
                let mut exists = redis::pipe();
                for (_, key) in &entries {
                    exists.cmd("EXISTS").arg(key);
                }
                let found: Vec<i64> = match control.pipeline(&exists).await {
                    Ok(found) => found,
                    Err(e) => {
                        return Err(StageError::Recheck(format!(
                            "{addr}: EXISTS failed: {}",
                            control.explain(&e)
                        )));
                    }
                };
                rewrite.clear();
                let mut missing = 0;
                for ((index, _), found) in entries.iter().zip(found) {
                    if found == 0 {
                        encoder.push_set(*index, &mut rewrite);
                        missing += 1;
                    }
                }
                if missing > 0 {
                    if !writers.contains_key(&addr) {
                        let stream = self
                            .connector
                            .data(&addr)
                            .await
                            .map_err(|e| StageError::Recheck(e.0))?;
                        writers.insert(addr.clone(), stream);
                    }
                    let Some(stream) = writers.get_mut(&addr) else {
                        continue;
                    };
                    write_acknowledged(
                        stream,
                        &rewrite,
                        missing as usize,
                        self.connector.io_timeout,
                    )
                    .await
                    .map_err(|e| StageError::Recheck(format!("{addr}: {e}")))?;
                    self.rewritten.fetch_add(missing, Relaxed);
                }
            }
            start = end;
        }
        Ok(())
    }

    /// The entries of `window` in the `lost` slots that never went to the lost primary's
    /// queue: its share of the window went there in slot order, the first `queued` of it.
    pub(in crate::fill) fn not_queued_to(
        &self,
        lost: &[bool],
        window: &QueuedWindow,
        queued: u64,
    ) -> HashSet<u64> {
        let mut key = Vec::with_capacity(self.dataset.key_size());
        let mut share: Vec<(u16, u64)> = (window.first..window.first + window.len)
            .filter_map(|position| {
                let index = self.stage.global(position);
                key.clear();
                self.dataset.push_key(&self.dataset.entry(index), &mut key);
                let slot = slot(&key);
                lost[usize::from(slot)].then_some((slot, index))
            })
            .collect();
        // In slot order, and within a slot in the window's order, as the router queued it.
        share.sort_by_key(|&(slot, _)| slot);
        share
            .into_iter()
            .skip(queued as usize)
            .map(|(_, index)| index)
            .collect()
    }

    /// Hands every typed key routed to lost primary `from` to its new owner as a resume:
    /// the keys of the `lost` slots below position `upto` (all that the router handed out
    /// before the slot map changed) and the `drained` ones that were waiting for it. Each
    /// key goes on once, whether the lost primary had acknowledged it whole, in part or
    /// not at all; a key it had acknowledged whole stops counting as written until it is
    /// complete on its new owner (see [`StageState::take_back`]).
    ///
    /// [`StageState::take_back`]: crate::fill::state::StageState::take_back
    pub(in crate::fill) async fn hand_on(
        &self,
        from: &NodeFeed,
        lost: &[bool],
        upto: u64,
        mut drained: HashSet<u64>,
    ) {
        let mut taken_back = 0u64;
        let mut start = 0;
        while start < upto && !self.stage.should_stop() {
            let end = (start + RECHECK_BATCH).min(upto);
            taken_back += self.hand_on_positions(start..end, lost, &mut drained);
            start = end;
            tokio::task::yield_now().await;
        }
        for index in drained {
            taken_back += u64::from(self.take_back(index));
            self.owner_of(index).push_resume(index);
        }
        // They count again at their new owner.
        let _ = from
            .keys
            .fetch_update(Relaxed, Relaxed, |k| Some(k.saturating_sub(taken_back)));
    }

    /// Hands on the keys at `positions` that are in a `lost` slot or `drained`; returns how
    /// many had counted as written.
    fn hand_on_positions(
        &self,
        positions: Range<u64>,
        lost: &[bool],
        drained: &mut HashSet<u64>,
    ) -> u64 {
        let mut key = Vec::with_capacity(self.dataset.key_size());
        let mut taken_back = 0;
        let nodes = self.nodes();
        let slots = read(&self.slots);
        for position in positions {
            let index = self.stage.global(position);
            key.clear();
            self.dataset.push_key(&self.dataset.entry(index), &mut key);
            let slot = usize::from(slot(&key));
            let waiting = drained.remove(&index);
            if lost[slot] || waiting {
                taken_back += u64::from(self.take_back(index));
                nodes[slots[slot]].push_resume(index);
            }
        }
        taken_back
    }

    /// Takes back the count of typed key `index` before it is resumed on its new owner,
    /// remembering that it had counted; true when it had.
    fn take_back(&self, index: u64) -> bool {
        let counted = self.stage.take_back(&self.dataset, index);
        if counted {
            self.handed_on.insert(self.stage.position(index));
        }
        counted
    }

    /// The element count of typed key `index` came back, `short` of the dataset's: true
    /// when a failover had handed the key on after it counted as written. Such a key that
    /// comes back short lost elements with the primary and counts as rewritten.
    pub(crate) fn handed_on_counted(&self, index: u64, short: bool) -> bool {
        let handed_on = self.handed_on.remove(self.stage.position(index));
        if handed_on && short {
            self.rewritten.fetch_add(1, Relaxed);
        }
        handed_on
    }
}
