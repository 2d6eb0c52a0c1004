//! The reading half's bookkeeping: each reply matched to what it answers (a group of
//! entries, a command of a typed key, the element count of a key to resume, the `DEL` of
//! one to write again) and counted as acknowledged, refused or (cluster) redirected.

use std::sync::atomic::Ordering::Relaxed;

use super::{Job, NO_KEY, Session, SessionEnd};
use crate::fill::cluster::KeyRefused;
use crate::fill::feed::Feed;
use crate::fill::lock::lock;
use crate::fill::span::{Answered, KeyCommands, Span, take_answered};
use crate::resp::typed::{self, KeyForm};
use crate::resp::{self, ErrorReply, Reply};

impl Session<'_> {
    /// Matches the complete replies in `buf` to the entries in flight, in order: each reply
    /// answers the next command, which carries up to `group` entries of the front span.
    /// Returns the bytes used and the number of entries answered.
    pub(super) fn consume_replies(&self, buf: &[u8]) -> Result<(usize, u64), SessionEnd> {
        let Job {
            stage,
            dataset,
            config,
            feed,
            acked_here,
            ..
        } = *self.job;
        let mut queue = lock(&self.inflight);
        let (mut at, mut answered) = (0usize, 0u64);
        let mut tally = Tally::default();
        let mut refused = false;
        // Acknowledgements parsed before a malformed reply still count: `end` keeps the error.
        let end = loop {
            let (reply, used) = match resp::parse_reply(&buf[at..]) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break Ok(()),
                Err(e) => break Err(SessionEnd::Fatal(e.to_string())),
            };
            at += used;
            let entries = match take_answered(&mut queue, config.group) {
                None => {
                    break Err(SessionEnd::Fatal(
                        "the server sent a reply to a command that was never sent".into(),
                    ));
                }
                Some(Answered::Asking) => continue,
                Some(Answered::Range(entries)) => entries,
                Some(Answered::Listed(indices)) => {
                    if let Reply::Error(line) = reply
                        && refuses_mset_itself(line)
                    {
                        queue.push_front(Span::List { indices, start: 0 });
                        break Err(SessionEnd::MsetRefused);
                    }
                    answered += indices.len() as u64;
                    refused |= self.listed_answered(reply, &indices, &mut tally);
                    continue;
                }
                Some(Answered::Command { key, command, last }) => {
                    if let Reply::Error(line) = reply
                        && self.restore_refused_for_commands(key, line)
                    {
                        // Not applied: the key goes again, as commands, with what follows.
                        queue.push_front(Span::Key(KeyCommands { next: 0, ..key }));
                        break Err(SessionEnd::RestoreRefused(
                            String::from_utf8_lossy(line).into_owned(),
                        ));
                    }
                    answered += 1;
                    refused |= self.key_command_answered(reply, key, command, last, &mut tally);
                    continue;
                }
                Some(Answered::Resume(index)) => {
                    answered += 1;
                    tally.commands += 1;
                    refused |= self.resume_answered(reply, index, &mut tally);
                    continue;
                }
                Some(Answered::Restart(index)) => {
                    answered += 1;
                    tally.commands += 1;
                    refused |= self.restart_answered(reply, index, &mut tally);
                    continue;
                }
            };
            if let Reply::Error(line) = reply
                && entries.end - entries.start > 1
                && refuses_mset_itself(line)
            {
                // A user allowed SET but not MSET (MSET is cachefill's own grouping): these
                // entries and everything after them go again as single SETs.
                queue.push_front(Span::Range(entries));
                break Err(SessionEnd::MsetRefused);
            }
            answered += entries.end - entries.start;
            match reply {
                Reply::Ok => {
                    tally.keys += entries.end - entries.start;
                    tally.bytes += entries.map(|i| dataset.payload_bytes(i)).sum::<u64>();
                }
                Reply::Error(line) => {
                    let redirected = match feed {
                        Feed::Node { node, router } => {
                            router.redirect(entries.start, ErrorReply::parse(line), node)
                        }
                        Feed::Stage => false,
                    };
                    if !redirected {
                        stage.record_error(dataset, entries, &String::from_utf8_lossy(line));
                        refused = true;
                    }
                }
                Reply::Other | Reply::Integer(_) => {
                    stage.record_error(dataset, entries, "unexpected reply");
                    refused = true;
                }
            }
        };
        drop(queue);
        if tally.bytes > 0 {
            stage.bytes.fetch_add(tally.bytes, Relaxed);
        }
        if tally.elements > 0 {
            stage.elements.fetch_add(tally.elements, Relaxed);
        }
        if tally.commands > tally.keys {
            // Progress inside large keys keeps a connection's reconnect budget fresh.
            acked_here.fetch_add(tally.commands - tally.keys, Relaxed);
        }
        if tally.keys > 0 {
            stage.acked.fetch_add(tally.keys, Relaxed);
            acked_here.fetch_add(tally.keys, Relaxed);
            if let Feed::Node { node, router } = feed {
                node.keys.fetch_add(tally.keys, Relaxed);
                router.acknowledged();
            }
        }
        if refused && let Feed::Node { router, .. } = feed {
            // The stage stops: wake the connections idle on their feeds so they end too.
            router.wake_all();
        }
        end.map(|()| (at, answered))
    }

    /// Counts the reply to the `MSET` of `indices`, keys of one cluster slot; true when it
    /// was refused. A redirection sends them all on (`MOVED`: to the new owner; `ASK` and a
    /// busy cluster: one `SET` each, as a slot being migrated takes them).
    fn listed_answered(&self, reply: Reply<'_>, indices: &[u64], tally: &mut Tally) -> bool {
        let Job {
            stage,
            dataset,
            feed,
            ..
        } = *self.job;
        let message = match reply {
            Reply::Ok => {
                tally.keys += indices.len() as u64;
                tally.bytes += indices
                    .iter()
                    .map(|&index| dataset.payload_bytes(index))
                    .sum::<u64>();
                return false;
            }
            Reply::Error(line) => {
                if let Feed::Node { node, router } = feed
                    && router.redirect_listed(indices, ErrorReply::parse(line), node)
                {
                    return false;
                }
                String::from_utf8_lossy(line)
            }
            Reply::Other | Reply::Integer(_) => "unexpected reply".into(),
        };
        stage.record_listed_error(dataset, indices, &message);
        true
    }

    /// Counts the reply to command `command` of a typed key; true when it was refused.
    fn key_command_answered(
        &self,
        reply: Reply<'_>,
        key: KeyCommands,
        command: u64,
        last: bool,
        tally: &mut Tally,
    ) -> bool {
        let dataset = self.job.dataset;
        if self.abandoned.load(Relaxed) == key.index {
            if !matches!(reply, Reply::Error(_))
                && let Feed::Node { router, .. } = self.job.feed
            {
                // Applied after an earlier command of the key was refused: the key may
                // hold elements past a gap, which carrying on from its length would keep.
                router.restart_key(key.index);
            }
            return false;
        }
        let elements = self.chunking.elements_of(key.from, key.form(), command);
        let Reply::Error(line) = reply else {
            // +OK, an integer (HSET, SADD, RPUSH …) or an ID (XADD): written.
            if let Some(range) = elements {
                tally.bytes += dataset.key_elements_payload(key.index, range);
            }
            tally.commands += 1;
            if last {
                if key.restored {
                    self.job.stage.count_restored(key.index);
                }
                if self.job.stage.count_key(key.index) {
                    tally.keys += 1;
                    tally.elements += key.elements;
                }
                tally.bytes += dataset.key_len(key.index) as u64;
                self.open_key.store(NO_KEY, Relaxed);
            } else {
                self.open_key.store(key.index, Relaxed);
            }
            return false;
        };
        if let Feed::Node { node, router } = self.job.feed {
            let after = router.redirect_key(key.index, ErrorReply::parse(line), node, true);
            if after != KeyRefused::Failed {
                // The key is resumed from what its owner holds, elsewhere or here after its
                // commands in flight; their replies are passed over.
                self.abandoned.store(key.index, Relaxed);
                let _ = self
                    .open_key
                    .compare_exchange(key.index, NO_KEY, Relaxed, Relaxed);
                if after == KeyRefused::ResumeHere {
                    lock(&self.resumed).push_back(Span::Resume { index: key.index });
                    self.wake_writer.notify_one();
                }
                return false;
            }
        }
        let restored = key.restored;
        let name = match elements {
            Some(_) if restored => "RESTORE".into(),
            Some(_) => String::from_utf8_lossy(typed::write_command(dataset.data_type())),
            None => "PEXPIRE".into(),
        };
        let mut message = String::from_utf8_lossy(line).into_owned();
        if restored && refuses_restore_itself(line) {
            message.push_str(
                "; the stage has write = \"restore\": set write = \"auto\" to write with commands where the server refuses payloads",
            );
        }
        self.refuse_key(key.index, command > 0 || key.from > 0, &name, &message);
        true
    }

    /// True when `line` refuses the `RESTORE` of `key` itself (not its key or the server's
    /// memory) and the stage may turn to commands: the session ends so that its target
    /// does.
    fn restore_refused_for_commands(&self, key: KeyCommands, line: &[u8]) -> bool {
        key.restored
            && self.job.restore.is_some_and(|restore| !restore.required)
            && refuses_restore_itself(line)
    }

    /// Turns the element count of a key to resume into the commands that complete it;
    /// true when the count was refused.
    fn resume_answered(&self, reply: Reply<'_>, index: u64, tally: &mut Tally) -> bool {
        let dataset = self.job.dataset;
        let count = match self.settled(reply, index) {
            Ok(count) => count,
            Err(Some(line)) => {
                let name = String::from_utf8_lossy(typed::count_command(dataset.data_type()));
                let message = format!(
                    "{}; after a broken connection or a server restart cachefill counts a typed key's elements to carry on without duplicates",
                    String::from_utf8_lossy(line)
                );
                self.refuse_key(index, true, &name, &message);
                return true;
            }
            Err(None) => return false,
        };
        let key = self.chunking.form(dataset, &dataset.entry(index));
        let elements = key.elements;
        let restart = match self.job.feed {
            Feed::Node { router, .. } => router.take_restart(index),
            Feed::Stage => false,
        };
        let from = self
            .chunking
            .resume_from(dataset.data_type(), count, key, restart);
        // A key a failover handed on after the lost primary had acknowledged it whole: its
        // payload counted then.
        let handed_on = match self.job.feed {
            Feed::Node { router, .. } => router.handed_on_counted(index, from < elements),
            Feed::Stage => self
                .job
                .stage
                .rechecked_counted(dataset, index, from < elements),
        };
        if restart {
            lock(&self.resumed).push_back(Span::Restart { index });
            self.wake_writer.notify_one();
        } else {
            self.carry_on(index, key, from, handed_on, tally);
        }
        false
    }

    /// After the `DEL` of a key to write again from its first element, writes it; true when
    /// the `DEL` was refused.
    fn restart_answered(&self, reply: Reply<'_>, index: u64, tally: &mut Tally) -> bool {
        match self.settled(reply, index) {
            Ok(_) => {
                let dataset = self.job.dataset;
                let key = self.chunking.form(dataset, &dataset.entry(index));
                self.carry_on(index, key, 0, false, tally);
            }
            Err(Some(line)) => {
                self.refuse_key(index, true, "DEL", &String::from_utf8_lossy(line));
                return true;
            }
            Err(None) => {
                // On its way elsewhere: it still starts from its first element there.
                if let Feed::Node { router, .. } = self.job.feed {
                    router.restart_key(index);
                }
            }
        }
        false
    }

    /// The reply to the count or `DEL` of typed key `index`, after which every earlier
    /// command of the key on this connection has been answered: the integer, or
    /// `Err(None)` when the key went on elsewhere, `Err(Some(line))` for a refusal.
    fn settled<'r>(&self, reply: Reply<'r>, index: u64) -> Result<u64, Option<&'r [u8]>> {
        self.resuming.fetch_sub(1, Relaxed);
        // The writer may be waiting for this key, or (after a refusal) for nothing more.
        self.wake_writer.notify_one();
        let _ = self
            .abandoned
            .compare_exchange(index, NO_KEY, Relaxed, Relaxed);
        match reply {
            Reply::Integer(count) => Ok(u64::try_from(count).unwrap_or(0)),
            Reply::Error(line) => match self.job.feed {
                Feed::Node { node, router }
                    if router.redirect_key(index, ErrorReply::parse(line), node, false)
                        == KeyRefused::HandedOn =>
                {
                    Err(None)
                }
                _ => Err(Some(line)),
            },
            Reply::Ok | Reply::Other => Err(Some(b"unexpected reply")),
        }
    }

    /// Writes typed key `index` (written as `key` says) from element `from` on (it counts
    /// at once when the server holds it whole).
    fn carry_on(&self, index: u64, key: KeyForm, from: u64, handed_on: bool, tally: &mut Tally) {
        let dataset = self.job.dataset;
        let total = self.chunking.commands(from, key);
        if total == 0 {
            if key.restored {
                // Held whole where a RESTORE of it was sent: its reply was lost, not it.
                self.job.stage.count_restored(index);
            }
            if self.job.stage.count_key(index) {
                tally.keys += 1;
                tally.elements += key.elements;
            }
            if !handed_on {
                tally.bytes += dataset.payload_bytes(index);
            }
        } else {
            lock(&self.resumed).push_back(Span::Key(KeyCommands::whole(index, key, from, total)));
            self.wake_writer.notify_one();
        }
    }

    /// Records the refusal of a typed key's command; the key's other replies are passed over.
    fn refuse_key(&self, index: u64, partly_written: bool, command: &str, message: &str) {
        let stage = self.job.stage;
        stage.record_refusal(self.job.dataset, index..index + 1, command, message);
        if partly_written {
            stage.partial_keys.fetch_add(1, Relaxed);
        }
        self.abandoned.store(index, Relaxed);
        if self.open_key.load(Relaxed) == index {
            self.open_key.store(NO_KEY, Relaxed);
        }
    }
}

/// What the replies read at once acknowledged.
#[derive(Default)]
struct Tally {
    /// Entries (strings) or keys (typed) written whole.
    keys: u64,
    /// Elements of the typed keys written whole.
    elements: u64,
    /// Payload bytes written.
    bytes: u64,
    /// Commands of typed keys acknowledged (progress, even inside one large key).
    commands: u64,
}

/// True for the refusal of the `MSET` command to the user (not of the keys it names):
/// `NOPERM … no permissions to run the 'mset' command`.
fn refuses_mset_itself(line: &[u8]) -> bool {
    ErrorReply::parse(line) == ErrorReply::NoPermission
        && line.windows(6).any(|w| w.eq_ignore_ascii_case(b"'mset'"))
}

/// True for a refusal of `RESTORE` itself or of its payload: the user may not run it
/// (`NOPERM … 'restore' command`), the command is renamed away (`unknown command`), or the
/// server does not load the payload (`DUMP payload version or checksum are wrong`, `Bad
/// data format`). Commands would be written; resending the payload would not.
fn refuses_restore_itself(line: &[u8]) -> bool {
    let has = |needle: &[u8]| {
        line.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    match ErrorReply::parse(line) {
        ErrorReply::NoPermission => has(b"'restore'"),
        _ => {
            has(b"payload version or checksum")
                || has(b"bad data format")
                || has(b"unknown command 'restore'")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{refuses_mset_itself, refuses_restore_itself};

    #[test]
    fn refusals_of_the_payload_or_the_command_turn_to_commands() {
        for refusal in [
            "NOPERM User filler has no permissions to run the 'restore' command",
            "ERR DUMP payload version or checksum are wrong",
            "ERR Bad data format",
            "ERR unknown command 'RESTORE', with args beginning with: 'k' '0'",
        ] {
            assert!(refuses_restore_itself(refusal.as_bytes()), "{refusal}");
        }
        for other in [
            "NOPERM this user has no permissions to access one of the keys used as arguments",
            "OOM command not allowed when used memory > 'maxmemory'.",
            "MOVED 3999 127.0.0.1:6381",
            "BUSYKEY Target key name already exists.",
        ] {
            assert!(!refuses_restore_itself(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn only_the_refusal_of_the_mset_command_falls_back_to_set() {
        assert!(refuses_mset_itself(
            b"NOPERM User least has no permissions to run the 'mset' command"
        ));
        assert!(refuses_mset_itself(
            b"NOPERM this user has no permissions to run the 'MSET' command"
        ));
        // Keys outside the user's patterns: SET would be refused just the same.
        assert!(!refuses_mset_itself(
            b"NOPERM this user has no permissions to access one of the keys used as arguments"
        ));
        assert!(!refuses_mset_itself(
            b"ERR unknown command 'mset', with args beginning with:"
        ));
    }
}
