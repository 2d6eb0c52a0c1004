//! Routing: every entry queued on the primary that owns its slot (strings without a TTL
//! a window at a time, sorted by slot into runs). Redirections: `redirects.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::node::NodeFeed;
use super::{QueuedWindow, Router};
use crate::dataset::Dataset;
use crate::fill::lock::{lock, read, write};
use crate::fill::span::Span;
use crate::plan::NodeAddr;
use crate::slot::slot;
use tokio::sync::TryAcquireError;

/// Entries the router hands a primary at once.
const ROUTE_BATCH: usize = 256;
/// Entries sorted by slot at once when strings are grouped: a million spreads tens of keys
/// over each of the 16,384 slots (about 14 MiB while they are sorted and queued).
const SLOT_WINDOW: u64 = 1 << 20;
/// Entries whose key filler is fetched ahead of making their key.
const KEYS_AHEAD: usize = 8;
/// Most entries in a span of slots queued on a primary.
const SPAN_ENTRIES: usize = 4096;

/// A window of entries being sorted by slot: the slot of each, by position in the window
/// (positions follow each other: entries are handed out in order).
#[derive(Default)]
struct SlotWindow {
    /// The stage position of the window's first entry.
    first: u64,
    slots: Vec<u16>,
    /// Scratch: entries per slot, then where each slot's entries start.
    starts: Vec<u32>,
    /// Scratch: the window's offsets sorted by slot.
    sorted: Vec<u32>,
}

impl SlotWindow {
    fn clear(&mut self, first: u64) {
        self.first = first;
        self.slots.clear();
    }

    fn push(&mut self, slot: u16) {
        self.slots.push(slot);
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Each primary's entries (`owners`: a slot's primary) in slot order, as spans of runs
    /// of one slot, at most [`SPAN_ENTRIES`] entries each; `index` gives a stage position's
    /// index.
    fn spans(
        &mut self,
        owners: &[usize],
        nodes: usize,
        index: impl Fn(u64) -> u64,
    ) -> Vec<VecDeque<Span>> {
        let slots = usize::from(crate::slot::SLOTS);
        self.starts.clear();
        self.starts.resize(slots + 1, 0);
        for &slot in &self.slots {
            self.starts[usize::from(slot) + 1] += 1;
        }
        for slot in 0..slots {
            self.starts[slot + 1] += self.starts[slot];
        }
        self.sorted.resize(self.slots.len(), 0);
        let mut next = self.starts.clone();
        for (offset, &slot) in self.slots.iter().enumerate() {
            let at = &mut next[usize::from(slot)];
            self.sorted[*at as usize] = offset as u32;
            *at += 1;
        }
        let mut spans: Vec<VecDeque<Span>> = (0..nodes).map(|_| VecDeque::new()).collect();
        let mut open: Vec<(Vec<u64>, Vec<u32>)> = (0..nodes).map(|_| Default::default()).collect();
        for slot in 0..slots {
            let run = &self.sorted[self.starts[slot] as usize..self.starts[slot + 1] as usize];
            let Some(node) = owners.get(slot).copied().filter(|&n| n < nodes) else {
                continue;
            };
            let (indices, ends) = &mut open[node];
            // A run starts a span when it would not fit in the open one: a slot's keys go
            // in one command where they can (a run longer than a span is cut).
            if indices.len() + run.len() > SPAN_ENTRIES && !indices.is_empty() {
                spans[node].push_back(Span::Slots {
                    indices: std::mem::take(indices),
                    ends: std::mem::take(ends),
                    start: 0,
                    run: 0,
                });
            }
            for &offset in run {
                indices.push(index(self.first + u64::from(offset)));
                if indices.len() == SPAN_ENTRIES {
                    ends.push(indices.len() as u32);
                    spans[node].push_back(Span::Slots {
                        indices: std::mem::take(indices),
                        ends: std::mem::take(ends),
                        start: 0,
                        run: 0,
                    });
                }
            }
            if !indices.is_empty() && ends.last() != Some(&(indices.len() as u32)) {
                ends.push(indices.len() as u32);
            }
        }
        for (node, (indices, ends)) in open.into_iter().enumerate() {
            if !indices.is_empty() {
                spans[node].push_back(Span::Slots {
                    indices,
                    ends,
                    start: 0,
                    run: 0,
                });
            }
        }
        spans
    }
}
impl Router {
    /// Walks this shard's part of the stage (entries handed out by the stage, see
    /// [`crate::shard`]) and queues every entry on its primary.
    pub(crate) async fn route(&self, dataset: &Dataset) {
        if self.by_slot && !self.stage.is_budgeted() {
            return self.route_by_slot(dataset).await;
        }
        let mut key = Vec::with_capacity(dataset.key_size());
        let mut pending: Vec<Vec<u64>> = Vec::new();
        while !self.stage.should_stop() {
            let mut full = Vec::new();
            // Entries are taken and mapped under one read of the slot map: a failover reads
            // how far the stage was handed out as it switches the map, so what it re-checks
            // is exactly what went by the old map (see `take_over`).
            let taken = {
                let slots = read(&self.slots);
                let range = self.stage.take(ROUTE_BATCH as u64);
                for index in range.clone().into_iter().flatten() {
                    key.clear();
                    dataset.push_key(&dataset.entry(index), &mut key);
                    let node = slots[usize::from(slot(&key))];
                    if pending.len() <= node {
                        pending.resize_with(node + 1, Vec::new);
                    }
                    pending[node].push(index);
                    if pending[node].len() == ROUTE_BATCH {
                        full.push(node);
                    }
                }
                range.is_some()
            };
            if !taken {
                // An until_memory stage hands out entries as memory allows.
                if self.stage.wait_for_budget().await {
                    continue;
                }
                break;
            }
            for node in full {
                let indices = std::mem::take(&mut pending[node]);
                self.queue(node, indices).await;
            }
            // Entries are routed in batches: a budgeted stage flushes them at once so memory
            // is measured on what was written.
            if self.stage.handed_out() >= self.stage.planned() || self.stage.is_budgeted() {
                for (node, indices) in pending.iter_mut().enumerate() {
                    if !indices.is_empty() {
                        let indices = std::mem::take(indices);
                        self.queue(node, indices).await;
                    }
                }
            }
        }
        for (node, indices) in pending.into_iter().enumerate() {
            if !indices.is_empty() {
                self.queue(node, indices).await;
            }
        }
        self.routed_all.store(true, Relaxed);
        self.wake_all();
    }

    /// [`Router::route`] for strings without a TTL: takes [`SLOT_WINDOW`] entries at a time
    /// (their keys mapped to primaries under one read of the slot map, as `route` does), sorts
    /// them by slot (counting sort: the window's order within a slot is kept), and queues each
    /// primary's share as [`Span::Slots`] of up to [`SPAN_ENTRIES`], whose runs of one slot its
    /// connections write as `MSET`s. The dataset is a pure function of the index, so the
    /// order entries are written in changes nothing; memory is bounded by the window.
    async fn route_by_slot(&self, dataset: &Dataset) {
        let mut key = Vec::with_capacity(dataset.key_size());
        let mut window = SlotWindow::default();
        while !self.stage.should_stop() {
            let owners = {
                let slots = read(&self.slots);
                window.clear(self.stage.handed_out());
                while (window.len() as u64) < SLOT_WINDOW {
                    let Some(range) = self.stage.take(SLOT_WINDOW - window.len() as u64) else {
                        break;
                    };
                    // Keys' fillers are cut from the pool at random offsets: each entry's
                    // is fetched a few entries ahead of making its key.
                    let mut ahead = range.clone().skip(KEYS_AHEAD);
                    for index in range {
                        if let Some(next) = ahead.next() {
                            dataset.prefetch_key(&dataset.entry(next));
                        }
                        key.clear();
                        dataset.push_key(&dataset.entry(index), &mut key);
                        window.push(slot(&key));
                    }
                }
                // Noted under the read of the map: a failover that switches it reads what
                // of this window went to which primary.
                *lock(&self.queued) = Some(QueuedWindow {
                    first: window.first,
                    len: window.len() as u64,
                    queued: Vec::new(),
                });
                slots.clone()
            };
            if window.len() == 0 {
                break;
            }
            let spans = window.spans(&owners, self.nodes().len(), |offset| {
                self.stage.global(offset)
            });
            if !self.queue_spans(spans).await {
                break;
            }
        }
        self.routed_all.store(true, Relaxed);
        self.wake_all();
    }

    /// Queues each primary's spans, in turn, as their queues make room (a primary whose
    /// queue is full does not hold up the others); false when the stage stops first.
    async fn queue_spans(&self, mut spans: Vec<VecDeque<Span>>) -> bool {
        loop {
            let room = self.room_made.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let (mut waiting, mut queued) = (false, false);
            let nodes = self.nodes();
            for (node, spans) in spans.iter_mut().enumerate() {
                let feed = &nodes[node];
                while let Some(span) = spans.front() {
                    let count = (span.len() as usize).min(self.capacity) as u32;
                    match feed.space.try_acquire_many(count) {
                        Ok(permits) => permits.forget(),
                        Err(TryAcquireError::NoPermits) => break,
                        // A replaced primary's queue is closed: `push_routed` sends its
                        // entries to the slots' new owners.
                        Err(TryAcquireError::Closed) if feed.is_retired() => {}
                        Err(TryAcquireError::Closed) => return false,
                    }
                    if let Some(span) = spans.pop_front() {
                        self.push_routed(node, feed, span);
                        queued = true;
                    }
                }
                waiting |= !spans.is_empty();
            }
            if !waiting {
                return true;
            }
            if !queued {
                room.await;
                if self.stage.should_stop() {
                    return false;
                }
            }
        }
    }

    /// Queues `span` on `feed` (primary `node`), or when its primary was replaced
    /// meanwhile, sends its entries to the slots' new owners.
    fn push_routed(&self, node: usize, feed: &NodeFeed, span: Span) {
        if feed.retired.load(Relaxed) {
            for index in span.into_indices() {
                self.reroute(index);
            }
            return;
        }
        if let Some(window) = lock(&self.queued).as_mut() {
            if window.queued.len() <= node {
                window.queued.resize(node + 1, 0);
            }
            window.queued[node] += span.len();
        }
        lock(&feed.queue).push_back(span);
        feed.work.notify_one();
    }

    async fn queue(&self, node: usize, indices: Vec<u64>) {
        let feed = self.nodes()[node].clone();
        // The queue is bounded: wait for room (this is where a slow primary holds the others).
        let count = indices.len().min(self.capacity) as u32;
        if let Ok(permits) = feed.space.acquire_many(count).await {
            permits.forget();
        }
        if feed.retired.load(Relaxed) {
            // Its slots moved to a successor while we waited for room. Typed keys are the
            // failover re-check's (they were handed out before it read how far to check):
            // it resumes them, and a second writer of a list would duplicate its items.
            if !self.dataset.is_typed() {
                for index in indices {
                    self.reroute(index);
                }
            }
            return;
        }
        lock(&feed.queue).push_back(Span::List { indices, start: 0 });
        feed.work.notify_one();
    }

    /// The feed of the primary at `addr`, created (and announced) when it is new.
    pub(in crate::fill) fn node_at(&self, addr: &NodeAddr) -> (usize, Arc<NodeFeed>) {
        let mut nodes = write(&self.nodes);
        if let Some(i) = nodes.iter().position(|n| &n.addr == addr) {
            return (i, nodes[i].clone());
        }
        let feed = Arc::new(NodeFeed::new(
            addr.clone(),
            self.capacity,
            self.room_made.clone(),
        ));
        nodes.push(feed.clone());
        let _ = self.new_nodes.send(feed.clone());
        (nodes.len() - 1, feed)
    }
}
