//! The bookkeeping of what a connection sent: spans of entries in flight, and which entries
//! the next reply answers. The encoding of a span and the matching of its replies live side
//! by side here, so the two always agree on how many replies a span takes.

use std::collections::VecDeque;
use std::ops::Range;

use crate::resp::EntryEncoder;
use crate::resp::typed::KeyForm;

/// Entries a connection sends together; the reader matches replies against them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Span {
    /// Consecutive entries (standalone stages).
    Range(Range<u64>),
    /// Entries routed to one cluster node, from `start` on.
    List { indices: Vec<u64>, start: usize },
    /// Entries routed to one cluster node in runs of one hash slot each, run `r` ending
    /// before `indices[ends[r]]`, from entry `start` (in run `run`) on: a run goes in `MSET`s
    /// of up to `group` entries (a lone entry: `SET`), as consecutive entries do on a
    /// standalone server.
    Slots {
        indices: Vec<u64>,
        ends: Vec<u32>,
        start: usize,
        run: usize,
    },
    /// One entry a cluster node told us to send elsewhere with `ASKING` first; `asked` once
    /// the reply to ASKING came back.
    Asking { index: u64, asked: bool },
    /// Commands of one typed key (hash, set, zset, list, stream), one reply each.
    Key(KeyCommands),
    /// A typed key to carry on from what the server holds: first its element count
    /// (`LLEN`, `XLEN` …), then the commands that complete it. Lists and streams resume so
    /// after a broken connection, since resending their commands would duplicate elements.
    Resume { index: u64 },
    /// A typed key to write again from its first element: first `DEL`, then all its
    /// commands. For a list or stream that may hold elements past a gap (a command refused,
    /// a later one applied), which carrying on from its length would not mend.
    Restart { index: u64 },
}

/// Commands `next..end` of the `total` that write one typed key, counted from element
/// `from` (0, or past what the server already held when the key was resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyCommands {
    /// The key's index in its stage.
    pub index: u64,
    /// Elements of the whole key (so that its replies are counted without drawing it again).
    pub elements: u64,
    /// Written as one `RESTORE` ([`crate::resp::EntryEncoder::form`]).
    pub restored: bool,
    /// First element these commands write.
    pub from: u64,
    /// Next command not yet answered.
    pub next: u64,
    /// End of this span's commands.
    pub end: u64,
    /// Commands of the whole key from `from` on: the reply to command `total - 1` completes it.
    pub total: u64,
}

impl KeyCommands {
    /// All the commands of key `index` (written as `key` says) from element `from`, of
    /// `total` in all.
    pub(super) fn whole(index: u64, key: KeyForm, from: u64, total: u64) -> KeyCommands {
        KeyCommands {
            index,
            elements: key.elements,
            restored: key.restored,
            from,
            next: 0,
            end: total,
            total,
        }
    }

    /// How the key is written.
    pub(super) fn form(&self) -> KeyForm {
        KeyForm {
            elements: self.elements,
            restored: self.restored,
        }
    }
}

impl Span {
    /// The list of `indices` without those `dropped` picks; `None` when none is left.
    pub(super) fn list_without(indices: &[u64], dropped: impl Fn(u64) -> bool) -> Option<Span> {
        let kept: Vec<u64> = indices.iter().copied().filter(|&i| !dropped(i)).collect();
        (!kept.is_empty()).then_some(Span::List {
            indices: kept,
            start: 0,
        })
    }

    /// Entries not yet answered.
    pub(super) fn len(&self) -> u64 {
        match self {
            Span::Range(r) => r.end - r.start,
            Span::List { indices, start } | Span::Slots { indices, start, .. } => {
                (indices.len() - start) as u64
            }
            Span::Asking { .. } | Span::Resume { .. } | Span::Restart { .. } => 1,
            Span::Key(key) => key.end - key.next,
        }
    }

    /// Splits off the first `max` entries when there are more.
    pub(super) fn split_front(self, max: u64) -> (Span, Option<Span>) {
        match self {
            Span::Range(r) if r.end - r.start > max => (
                Span::Range(r.start..r.start + max),
                Some(Span::Range(r.start + max..r.end)),
            ),
            Span::List { mut indices, start } if (indices.len() - start) as u64 > max => {
                let rest = indices.split_off(start + max as usize);
                (
                    Span::List { indices, start },
                    Some(Span::List {
                        indices: rest,
                        start: 0,
                    }),
                )
            }
            Span::Slots {
                indices,
                ends,
                start,
                run,
            } if (indices.len() - start) as u64 > max => {
                // The head is copied (a write's worth), the rest keeps the span's vectors. It
                // ends with a run when one ends within `max`: a slot's keys stay one command.
                let limit = start + max as usize;
                let whole = ends.partition_point(|&end| end as usize <= limit);
                let at = match whole.checked_sub(1).map(|last| ends[last] as usize) {
                    Some(end) if end > start => end,
                    _ => limit,
                };
                let max = (at - start) as u64;
                let cut = ends.partition_point(|&end| end as usize <= at);
                let mut head_ends: Vec<u32> = ends[run..cut]
                    .iter()
                    .map(|&end| end - start as u32)
                    .collect();
                if head_ends
                    .last()
                    .is_none_or(|&end| (end as usize) < max as usize)
                {
                    head_ends.push(max as u32);
                }
                (
                    Span::Slots {
                        indices: indices[start..at].to_vec(),
                        ends: head_ends,
                        start: 0,
                        run: 0,
                    },
                    Some(Span::Slots {
                        indices,
                        ends,
                        start: at,
                        run: cut,
                    }),
                )
            }
            Span::Key(key) if key.end - key.next > max => (
                Span::Key(KeyCommands {
                    end: key.next + max,
                    ..key
                }),
                Some(Span::Key(KeyCommands {
                    next: key.next + max,
                    ..key
                })),
            ),
            span => (span, None),
        }
    }

    /// The span to send again on a new connection (ASKING is sent again too).
    pub(super) fn resend(self) -> Span {
        match self {
            Span::Asking { index, .. } => Span::Asking {
                index,
                asked: false,
            },
            span => span,
        }
    }

    /// The entries not yet answered, one by one (to hand them to another connection).
    pub(super) fn into_indices(self) -> Vec<u64> {
        match self {
            Span::Range(range) => range.collect(),
            Span::List { indices, start } | Span::Slots { indices, start, .. } => {
                indices[start..].to_vec()
            }
            Span::Asking { index, .. } | Span::Resume { index } | Span::Restart { index } => {
                vec![index]
            }
            Span::Key(key) => vec![key.index],
        }
    }

    /// Encodes the span's commands: consecutive entries in commands of up to `group`
    /// entries (counted from the span's start, as [`take_answered`] counts the replies),
    /// routed ones one `SET` each, an asked one after `ASKING`.
    #[inline]
    pub(super) fn encode(&self, encoder: &EntryEncoder<'_>, group: u64, out: &mut Vec<u8>) {
        match self {
            Span::Range(range) => encoder.push_grouped(range.clone(), group, out),
            Span::List { indices, start } => {
                for &index in &indices[*start..] {
                    encoder.push_set(index, out);
                }
            }
            Span::Slots {
                indices,
                ends,
                start,
                run,
            } => {
                let mut at = *start;
                for &end in &ends[*run..] {
                    while at < end as usize {
                        let stop = (at + group as usize).min(end as usize);
                        encoder.push_listed(&indices[at..stop], out);
                        at = stop;
                    }
                }
            }
            Span::Asking { index, .. } => encoder.push_asking_set(*index, out),
            Span::Key(key) => {
                encoder.push_key_commands(key.index, key.restored, key.from, key.next..key.end, out)
            }
            Span::Resume { index } => encoder.push_element_count(*index, out),
            Span::Restart { index } => encoder.push_delete(*index, out),
        }
    }
}

/// What one reply answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answered {
    /// The reply to ASKING, which answers no entry.
    Asking,
    /// These entries (consecutive ones, or one routed entry).
    Range(Range<u64>),
    /// These entries of one hash slot (an `MSET` of a cluster node's run).
    Listed(Vec<u64>),
    /// Command `command` of a typed key (`last` when it completes the key).
    Command {
        /// The key's commands.
        key: KeyCommands,
        /// Which command, counted as in [`KeyCommands`].
        command: u64,
        /// The reply to this command completes the key.
        last: bool,
    },
    /// The element count of a typed key to resume.
    Resume(u64),
    /// The `DEL` of a typed key to write again from its first element.
    Restart(u64),
}

/// Takes the entries the next reply answers from the front of `queue`.
pub(super) fn take_answered(queue: &mut VecDeque<Span>, group: u64) -> Option<Answered> {
    while queue.front().is_some_and(|span| span.len() == 0) {
        queue.pop_front();
    }
    let span = queue.front_mut()?;
    let answered = match span {
        Span::Range(r) => {
            let first = r.start;
            r.start = (first + group).min(r.end);
            Answered::Range(first..r.start)
        }
        Span::List { indices, start } => {
            let index = indices[*start];
            *start += 1;
            Answered::Range(index..index + 1)
        }
        Span::Slots {
            indices,
            ends,
            start,
            run,
        } => {
            while ends[*run] as usize <= *start {
                *run += 1;
            }
            let end = ends[*run] as usize;
            let first = *start;
            *start = (first + group as usize).min(end);
            if *start == end {
                *run += 1;
            }
            match &indices[first..*start] {
                [index] => Answered::Range(*index..*index + 1),
                listed => Answered::Listed(listed.to_vec()),
            }
        }
        Span::Asking {
            asked: asked @ false,
            ..
        } => {
            *asked = true;
            return Some(Answered::Asking);
        }
        Span::Asking { index, .. } => Answered::Range(*index..*index + 1),
        Span::Key(key) => {
            let command = key.next;
            key.next += 1;
            Answered::Command {
                key: *key,
                command,
                last: command + 1 == key.total,
            }
        }
        Span::Resume { index } => {
            let index = *index;
            queue.pop_front();
            return Some(Answered::Resume(index));
        }
        Span::Restart { index } => {
            let index = *index;
            queue.pop_front();
            return Some(Answered::Restart(index));
        }
    };
    if span.len() == 0 || matches!(span, Span::Asking { asked: true, .. }) {
        queue.pop_front();
    }
    Some(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_to_grouped_ranges_answer_up_to_a_group_each() {
        let mut queue = VecDeque::from([Span::Range(0..5), Span::Range(10..11)]);
        let mut answered = Vec::new();
        while let Some(Answered::Range(r)) = take_answered(&mut queue, 2) {
            answered.push(r);
        }
        assert_eq!(answered, vec![0..2, 2..4, 4..5, 10..11]);
        assert!(queue.is_empty());
    }

    #[test]
    fn lists_answer_one_entry_per_reply_and_asking_takes_two_replies() {
        let mut queue = VecDeque::from([
            Span::List {
                indices: vec![7, 3],
                start: 0,
            },
            Span::Asking {
                index: 9,
                asked: false,
            },
        ]);
        assert!(matches!(take_answered(&mut queue, 16), Some(Answered::Range(r)) if r == (7..8)));
        assert!(matches!(take_answered(&mut queue, 16), Some(Answered::Range(r)) if r == (3..4)));
        assert!(matches!(
            take_answered(&mut queue, 16),
            Some(Answered::Asking)
        ));
        assert!(matches!(take_answered(&mut queue, 16), Some(Answered::Range(r)) if r == (9..10)));
        assert!(take_answered(&mut queue, 16).is_none());
    }

    #[test]
    fn resent_asking_spans_ask_again() {
        let span = Span::Asking {
            index: 4,
            asked: true,
        }
        .resend();
        assert_eq!(
            span,
            Span::Asking {
                index: 4,
                asked: false
            }
        );
    }

    #[test]
    fn split_front_keeps_order_and_entries() {
        let (head, rest) = Span::Range(0..10).split_front(4);
        assert_eq!((head, rest), (Span::Range(0..4), Some(Span::Range(4..10))));
        let (head, rest) = Span::List {
            indices: vec![5, 6, 7, 8],
            start: 1,
        }
        .split_front(2);
        assert_eq!(
            head,
            Span::List {
                indices: vec![5, 6, 7],
                start: 1
            }
        );
        assert_eq!(
            rest,
            Some(Span::List {
                indices: vec![8],
                start: 0
            })
        );
        assert_eq!(Span::Range(0..3).split_front(4), (Span::Range(0..3), None));
    }

    #[test]
    fn handed_back_spans_keep_only_unanswered_entries() {
        assert_eq!(Span::Range(3..6).into_indices(), vec![3, 4, 5]);
        let list = Span::List {
            indices: vec![9, 2, 7],
            start: 1,
        };
        assert_eq!(list.into_indices(), vec![2, 7]);
        let asking = Span::Asking {
            index: 4,
            asked: true,
        };
        assert_eq!(asking.into_indices(), vec![4]);
    }

    /// A string stage of `keys` 8-byte keys and 3-byte values.
    fn strings(keys: u64) -> crate::dataset::Dataset {
        use crate::plan::{Shape, ValueSize};
        let shape = Shape {
            key: crate::plan::KeyShape::sized("k:", 8),
            value_size: ValueSize { min: 3, max: 3 },
            ttl: None,
            elemental: crate::plan::Elemental::STRING,
        };
        crate::dataset::Dataset::new(1, "s", &shape, keys)
    }

    /// A span of slot runs, split anywhere and encoded in groups of any size, gets one
    /// answer per command, and the answers carry every entry once, each with its run.
    #[test]
    fn slot_runs_split_anywhere_answer_every_entry_once_within_its_run() {
        use crate::resp::parse_reply;
        let dataset = strings(1000);
        let encoder = EntryEncoder::new(&dataset);
        // Runs of 1, 5, 2 and 9 entries (their "slots" are their run numbers).
        let indices: Vec<u64> = (100..117).rev().collect();
        let ends = vec![1u32, 6, 8, 17];
        let run_of = |index: u64| {
            let at = indices.iter().position(|&i| i == index).unwrap() as u32;
            ends.iter().position(|&end| at < end).unwrap()
        };
        for group in [1u64, 2, 3, 64] {
            for cut in [1u64, 3, 6, 7, 16] {
                let span = Span::Slots {
                    indices: indices.clone(),
                    ends: ends.clone(),
                    start: 0,
                    run: 0,
                };
                let (head, rest) = span.split_front(cut);
                let mut queue = VecDeque::from([head]);
                queue.extend(rest);
                let mut out = Vec::new();
                for span in &queue {
                    span.encode(&encoder, group, &mut out);
                }
                let (mut commands, mut at) = (0, 0);
                while let Some((_, used)) = parse_reply(&out[at..]).unwrap() {
                    commands += 1;
                    at += used;
                }
                let mut seen = Vec::new();
                let mut answers = 0;
                while let Some(answer) = take_answered(&mut queue, group) {
                    let entries: Vec<u64> = match answer {
                        Answered::Range(r) => r.collect(),
                        Answered::Listed(listed) => listed,
                        other => panic!("{other:?}"),
                    };
                    assert!(entries.len() as u64 <= group);
                    let run = run_of(entries[0]);
                    assert!(entries.iter().all(|&i| run_of(i) == run), "one slot each");
                    seen.extend(entries);
                    answers += 1;
                }
                assert_eq!(answers, commands, "group {group}, cut {cut}");
                assert_eq!(seen, indices, "group {group}, cut {cut}");
            }
        }
    }

    #[test]
    fn every_encoded_command_gets_one_answer() {
        use crate::resp::{Reply, parse_reply};
        let dataset = strings(100);
        let encoder = EntryEncoder::new(&dataset);
        let spans = [
            Span::Range(0..7),
            Span::List {
                indices: vec![20, 11, 15],
                start: 1,
            },
            Span::Asking {
                index: 30,
                asked: false,
            },
            Span::Resume { index: 40 },
            Span::Restart { index: 41 },
        ];
        let mut out = Vec::new();
        for span in &spans {
            span.encode(&encoder, 3, &mut out);
        }
        // Count the commands: each is an array at the top level of the stream.
        let mut commands = 0;
        let mut at = 0;
        while let Some((reply, used)) = parse_reply(&out[at..]).unwrap() {
            assert_eq!(reply, Reply::Other);
            commands += 1;
            at += used;
        }
        assert_eq!(at, out.len());
        let mut queue = VecDeque::from(spans);
        let mut answers = 0;
        while take_answered(&mut queue, 3).is_some() {
            answers += 1;
        }
        // 0..7 in groups of 3: 3 commands; 2 routed SETs; ASKING + SET; a count; a DEL.
        assert_eq!((commands, answers), (9, 9));
    }
}
