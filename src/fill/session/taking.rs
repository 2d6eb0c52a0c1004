//! What the writing half sends next: keys to resume first, then the rest of a key, then
//! what the connection holds again (`retry`), then the feed. A typed stage sends key by key,
//! each key as the span of its commands, so that its replies are counted per key.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use super::{Job, Session};
use crate::fill::batching::WRITE_BATCH_BYTES;
use crate::fill::lock::lock;
use crate::fill::span::{KeyCommands, Span};
use crate::resp::EntryEncoder;

/// What one write carries: the spans encoded into it, the units they count against the
/// window, and the permits taken for it but not yet used.
#[derive(Default)]
pub(super) struct Write {
    pub(super) spans: Vec<Span>,
    pub(super) units: u64,
    pub(super) held: u32,
}

impl Session<'_> {
    /// Takes the next span of at most `write.held` units (`batch` of them: the permits it
    /// holds), encodes it into `buf` and adds it to `write`. False when there is nothing
    /// to send right now.
    pub(super) fn take_and_encode(
        &self,
        encoder: &EntryEncoder<'_>,
        retry: &mut VecDeque<Span>,
        write: &mut Write,
        buf: &mut Vec<u8>,
    ) -> bool {
        let Job {
            stage,
            config,
            feed,
            ..
        } = *self.job;
        loop {
            // The rest of a key goes before anything else: a key's commands are never
            // interleaved with another key's, so its replies all come before the next key's.
            let next = if matches!(retry.front(), Some(Span::Key(key)) if key.next > 0) {
                retry.pop_front()
            } else {
                lock(&self.resumed)
                    .pop_front()
                    .or_else(|| retry.pop_front())
                    .or_else(|| feed.next(stage, config.batch))
            };
            let Some(span) = next else {
                return false;
            };
            if self.is_abandoned(&span) {
                continue;
            }
            let span = match span {
                Span::Range(range) if config.typed && range.end - range.start > 1 => {
                    self.take_keys(range, encoder, retry, write, buf);
                    return true;
                }
                span => span,
            };
            let span = if config.typed {
                first_key(span, encoder, retry)
            } else {
                span
            };
            let (span, rest) = span.split_front(u64::from(write.held));
            if let Some(rest) = rest {
                retry.push_front(rest);
            }
            let count = span.len();
            if count == 0 {
                return true;
            }
            if matches!(span, Span::Resume { .. } | Span::Restart { .. }) {
                self.resuming.fetch_add(1, Relaxed);
            }
            span.encode(encoder, config.group, buf);
            write.spans.push(span);
            write.held -= count as u32;
            write.units += count;
            return true;
        }
    }

    /// The keys of `range` (of a typed stage), each as the span of its commands, into the
    /// same write while the permits and the write's bytes allow; what is left goes back to
    /// the front of `retry` (the rest of a key first). The loop of
    /// [`Session::take_and_encode`] for one key at a time, without the queues in between.
    fn take_keys(
        &self,
        mut range: std::ops::Range<u64>,
        encoder: &EntryEncoder<'_>,
        retry: &mut VecDeque<Span>,
        write: &mut Write,
        buf: &mut Vec<u8>,
    ) {
        let mut rest_of_key = None;
        while !range.is_empty() && write.held > 0 && (buf.len() as u64) < WRITE_BATCH_BYTES {
            let entry = encoder.entry(range.start);
            range.start += 1;
            let form = encoder.form(&entry);
            let key = KeyCommands::whole(entry.index, form, 0, encoder.commands(0, form));
            // As many of its commands as the permits allow (`Span::split_front`).
            let sent = KeyCommands {
                end: key.total.min(u64::from(write.held)),
                ..key
            };
            encoder.push_entry_commands(&entry, form.restored, 0, sent.next..sent.end, buf);
            write.spans.push(Span::Key(sent));
            write.held -= sent.end as u32;
            write.units += sent.end;
            if sent.end < key.total {
                rest_of_key = Some(Span::Key(KeyCommands {
                    next: sent.end,
                    ..key
                }));
                break;
            }
        }
        if !range.is_empty() {
            retry.push_front(Span::Range(range));
        }
        if let Some(rest) = rest_of_key {
            retry.push_front(rest);
        }
    }
}

/// A typed stage writes key by key: the first key of a span of keys becomes the span of its
/// commands, and the other keys go back to the front of `retry`.
fn first_key(span: Span, encoder: &EntryEncoder<'_>, retry: &mut VecDeque<Span>) -> Span {
    let index = match span {
        Span::Range(range) if !range.is_empty() => {
            if range.end - range.start > 1 {
                retry.push_front(Span::Range(range.start + 1..range.end));
            }
            range.start
        }
        Span::List { indices, start } if start < indices.len() => {
            let index = indices[start];
            if start + 1 < indices.len() {
                retry.push_front(Span::List {
                    indices,
                    start: start + 1,
                });
            }
            index
        }
        // A cluster hands typed keys to resume through its `ASKING` queue.
        Span::Asking { index, .. } => return Span::Resume { index },
        span => return span,
    };
    let form = encoder.form(&encoder.entry(index));
    Span::Key(KeyCommands::whole(
        index,
        form,
        0,
        encoder.commands(0, form),
    ))
}
