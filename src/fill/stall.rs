//! Connections of a stage that wait for replies that do not come: which server, and for how
//! long, so the progress display can say so long before `io_timeout` breaks them.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::lock::lock;
use crate::plan::NodeAddr;

/// How long a connection waits for a reply before it is listed as stalled.
pub(super) const STALL_AFTER: Duration = Duration::from_secs(1);

/// How long a cluster primary may stay silent with writes in flight before its connections
/// ask, once a second, whether the cluster replaced it (`Router::replaced`): a replica
/// promoted while it was paused or cut off is followed without waiting for `io_timeout`.
pub(super) const ASK_REPLACED_AFTER: Duration = Duration::from_secs(2);

/// The stalled connections of a stage.
#[derive(Debug, Default)]
pub(super) struct Stalls {
    next_token: AtomicU64,
    waiting: Mutex<Vec<(u64, NodeAddr, Instant)>>,
}

/// One connection's entry in [`Stalls`], removed by [`Stalls::end`].
#[derive(Debug)]
pub(super) struct StallToken(u64);

impl Stalls {
    /// Lists a connection to `addr` as silent since `since`.
    pub(super) fn begin(&self, addr: &NodeAddr, since: Instant) -> StallToken {
        let token = self.next_token.fetch_add(1, Relaxed);
        lock(&self.waiting).push((token, addr.clone(), since));
        StallToken(token)
    }

    /// The connection answered again (or gave up waiting).
    pub(super) fn end(&self, token: StallToken) {
        lock(&self.waiting).retain(|(t, ..)| *t != token.0);
    }

    /// The server silent the longest, and for how long.
    pub(super) fn longest(&self) -> Option<(NodeAddr, Duration)> {
        lock(&self.waiting)
            .iter()
            .min_by_key(|(_, _, since)| *since)
            .map(|(_, addr, since)| (addr.clone(), since.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_silence_is_reported_until_it_ends() {
        let stalls = Stalls::default();
        let a = NodeAddr {
            host: "127.0.0.1".into(),
            port: 7000,
        };
        let b = NodeAddr {
            host: "127.0.0.1".into(),
            port: 7001,
        };
        assert!(stalls.longest().is_none());
        let now = Instant::now();
        let first = stalls.begin(&a, now - Duration::from_secs(5));
        let second = stalls.begin(&b, now - Duration::from_secs(2));
        let (addr, silent) = stalls.longest().unwrap();
        assert_eq!((addr, silent >= Duration::from_secs(5)), (a, true));
        stalls.end(first);
        assert_eq!(stalls.longest().unwrap().0, b);
        stalls.end(second);
        assert!(stalls.longest().is_none());
    }
}
