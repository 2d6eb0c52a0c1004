//! Redirections and refusals of a cluster stage: `MOVED` (the slot map updated), `ASK`,
//! and `TRYAGAIN`/`CLUSTERDOWN`/`LOADING` sent again after a pause, within a bound.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::Router;
use super::node::NodeFeed;
use crate::fill::lock::{lock, read, write};
use crate::fill::span::Span;
use crate::resp::{ErrorReply, Redirect};
use crate::slot::slot;

/// How long a cluster may answer TRYAGAIN, CLUSTERDOWN or LOADING before the stage gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(30);
/// Pause before resending an entry the cluster asked to try again.
const BUSY_PAUSE: Duration = Duration::from_millis(100);

impl Router {
    /// Handles an error reply to entry `index` sent to `from`: true when it was a
    /// redirection (the entry is on its way elsewhere), false for a real error.
    pub(crate) fn redirect(&self, index: u64, reply: ErrorReply<'_>, from: &Arc<NodeFeed>) -> bool {
        match reply {
            ErrorReply::Moved(to) => {
                self.follow_moved(&to, from).push_moved(index);
                true
            }
            ErrorReply::Ask(to) => {
                let (_, feed) = self.node_at(&to.addr(&from.addr));
                self.ask.fetch_add(1, Relaxed);
                feed.push_asked(index);
                true
            }
            reply if reply.is_transient() => self.later(from, move |feed| feed.push_moved(index)),
            _ => false,
        }
    }

    /// Handles an error reply to the `MSET` of `indices` (keys of one slot) sent to `from`:
    /// true when it was a redirection (they are on their way, one `SET` each), false for a
    /// real error. `MOVED` sends them to the new owner; `ASK` (the slot is being migrated: a
    /// multi-key command whose keys are split between two nodes is refused) sends each once
    /// with `ASKING` to where the slot goes; a busy cluster gets them again after a pause.
    pub(crate) fn redirect_listed(
        &self,
        indices: &[u64],
        reply: ErrorReply<'_>,
        from: &Arc<NodeFeed>,
    ) -> bool {
        match reply {
            ErrorReply::Moved(to) => {
                let feed = self.follow_moved(&to, from);
                for &index in indices {
                    feed.push_moved(index);
                }
                true
            }
            ErrorReply::Ask(to) => {
                let (_, feed) = self.node_at(&to.addr(&from.addr));
                self.ask.fetch_add(1, Relaxed);
                for &index in indices {
                    feed.push_asked(index);
                }
                true
            }
            reply if reply.is_transient() => {
                let indices = indices.to_vec();
                self.later(from, move |feed| {
                    for index in indices {
                        feed.push_moved(index);
                    }
                })
            }
            _ => false,
        }
    }

    /// Handles an error reply to typed key `index` sent to `from`: to one of its commands
    /// (`in_flight`: more of them may follow on the same connection) or to the count or
    /// `DEL` that resumes it. The key is resumed from what its owner holds (a list or stream
    /// must not get its elements twice): at once at the new owner after `MOVED`; after a
    /// pause at the same node after `ASK` (the key is in a slot being migrated, which
    /// answers `MOVED` once done). After a transient refusal of one of its commands it is
    /// resumed on the same connection, once its commands in flight are answered (the
    /// refusal may clear before the next one is read); after a transient refusal of its
    /// count, after a pause.
    pub(crate) fn redirect_key(
        &self,
        index: u64,
        reply: ErrorReply<'_>,
        from: &Arc<NodeFeed>,
        in_flight: bool,
    ) -> KeyRefused {
        let goes_on =
            matches!(reply, ErrorReply::Moved(_) | ErrorReply::Ask(_)) || reply.is_transient();
        if goes_on && from.is_retired() {
            // A replica took over `from`: the failover re-check resumes its keys, once.
            return KeyRefused::HandedOn;
        }
        let handed_on = match reply {
            ErrorReply::Moved(to) => {
                self.follow_moved(&to, from).push_resume(index);
                true
            }
            ErrorReply::Ask(_) => {
                self.ask.fetch_add(1, Relaxed);
                self.later(from, move |feed| feed.push_resume(index))
            }
            reply if reply.is_transient() && in_flight => {
                return if self.still_patient() {
                    KeyRefused::ResumeHere
                } else {
                    KeyRefused::Failed
                };
            }
            reply if reply.is_transient() => self.later(from, move |feed| feed.push_resume(index)),
            _ => false,
        };
        if handed_on {
            KeyRefused::HandedOn
        } else {
            KeyRefused::Failed
        }
    }

    /// Typed key `index` may hold elements past a gap: one of its commands was refused and
    /// a later one applied (or may have been). Its next resume writes it again from its
    /// first element.
    pub(crate) fn restart_key(&self, index: u64) {
        self.restarts.insert(self.stage.position(index));
    }

    /// True (once) when typed key `index` is to be written again from its first element.
    pub(crate) fn take_restart(&self, index: u64) -> bool {
        self.restarts.remove(self.stage.position(index))
    }

    /// Updates the slot map after `MOVED` and gives the feed of the new owner.
    fn follow_moved(&self, to: &Redirect<'_>, from: &NodeFeed) -> Arc<NodeFeed> {
        let (node, feed) = self.node_at(&to.addr(&from.addr));
        self.moved.fetch_add(1, Relaxed);
        if let Some(owner) = write(&self.slots).get_mut(usize::from(to.slot)) {
            *owner = node;
        }
        feed
    }

    /// Notes that the cluster answered busy; false once it has been busy for longer than
    /// [`BUSY_LIMIT`].
    fn still_patient(&self) -> bool {
        let now = Instant::now();
        let since = *lock(&self.busy_since).get_or_insert(now);
        now.duration_since(since) <= BUSY_LIMIT
    }

    /// Sends again to `from` after a pause, while the cluster has been busy for less than
    /// [`BUSY_LIMIT`]; false once it has been busy for longer.
    fn later(&self, from: &Arc<NodeFeed>, send: impl FnOnce(&NodeFeed) + Send + 'static) -> bool {
        if !self.still_patient() {
            return false;
        }
        let feed = from.clone();
        tokio::spawn(async move {
            tokio::time::sleep(BUSY_PAUSE).await;
            send(&feed);
        });
        true
    }

    /// The feed of the primary that owns `index`'s slot now.
    pub(in crate::fill) fn owner_of(&self, index: u64) -> Arc<NodeFeed> {
        let node = read(&self.slots)[usize::from(self.slot_of(index))];
        self.nodes()[node].clone()
    }

    /// The cluster slot of entry `index`'s key (off the hot path: the key is made anew).
    pub(in crate::fill) fn slot_of(&self, index: u64) -> u16 {
        let mut key = Vec::with_capacity(self.dataset.key_size());
        self.dataset.push_key(&self.dataset.entry(index), &mut key);
        slot(&key)
    }

    /// Sends `index` to the primary that owns its slot now.
    pub(in crate::fill) fn reroute(&self, index: u64) {
        self.owner_of(index).push_moved(index);
    }

    /// Entries a connection of `node` had sent without seeing their replies: back to the
    /// node's feed, or to the new owners when the node has been replaced.
    pub(crate) fn hand_back(&self, node: &NodeFeed, spans: impl IntoIterator<Item = Span>) {
        for span in spans {
            for index in span.into_indices() {
                if node.retired.load(Relaxed) {
                    self.reroute(index);
                } else {
                    lock(&node.moved_here).push_back(index);
                }
            }
        }
        node.work.notify_one();
    }
}

/// What becomes of a typed key after an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRefused {
    /// It is on its way elsewhere, or back to the same node after a pause.
    HandedOn,
    /// The cluster refused it for a moment: resume it on this connection, after its
    /// commands in flight.
    ResumeHere,
    /// A real error: the stage fails.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NodeAddr;

    #[test]
    fn redirections_lead_to_the_named_node_or_the_one_that_answered() {
        let from = NodeAddr {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        let to = |line: &'static [u8]| match ErrorReply::parse(line) {
            ErrorReply::Moved(to) | ErrorReply::Ask(to) => to.addr(&from),
            other => panic!("not a redirection: {other:?}"),
        };
        let addr = |host: &str, port| NodeAddr {
            host: host.into(),
            port,
        };
        assert_eq!(to(b"MOVED 1 127.0.0.1:7001"), addr("127.0.0.1", 7001));
        assert_eq!(to(b"ASK 1 :7002"), addr("10.0.0.1", 7002));
        assert_eq!(to(b"MOVED 1 ::1:7003"), addr("::1", 7003));
        assert_eq!(
            to(b"MOVED 12182 redis-2.example:6379"),
            addr("redis-2.example", 6379)
        );
    }
}
