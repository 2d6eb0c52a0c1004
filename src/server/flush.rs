//! Emptying a server: `FLUSHALL ASYNC`, then waiting until the server has freed what it
//! flushed.
//!
//! A flush freed in the background (`FLUSHALL ASYNC`, or any `FLUSHALL` where
//! `lazyfree-lazy-user-flush` is on, Valkey's default) empties the keyspace at once but
//! leaves the memory to a background thread. Until it is freed, `used_memory` still counts
//! it: an `until_memory` stage would see its goal reached before writing anything, and a
//! server with `maxmemory` would evict the new keys. So the fill starts only once
//! `INFO memory` says the flush is freed: `lazyfreed_objects` has grown by what was pending
//! right after the flush (so lazy frees other clients start meanwhile are not waited for),
//! or, on a server without that counter, `lazyfree_pending_objects:0`. The wait is bounded
//! by progress, not by size: it goes on while the server frees (pending objects or `used_memory` fall) and
//! stops with one line when nothing was freed for `io_timeout`. Sending `ASYNC` always
//! keeps the server answering while it frees, so no single reply has to outlast a large
//! server's flush.

use std::time::{Duration, Instant};

use super::connector::TargetError;
use super::control::{Control, info_field, is_refusal};

/// The pause between two readings of a flush being freed.
const FREE_PAUSE: Duration = Duration::from_millis(20);

/// How long a wait lasts before cachefill says it is waiting.
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// What `INFO memory` says of a flush being freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Freeing {
    /// `lazyfree_pending_objects`.
    pending: u64,
    /// `used_memory`.
    used_memory: u64,
    /// `lazyfreed_objects` (Redis 6.2 and later, Valkey): objects freed lazily so far.
    freed: Option<u64>,
}

impl Freeing {
    /// The reading in an `INFO memory` reply; `None` when the server does not report
    /// lazily freed objects (nothing to wait for).
    fn parse(info: &str) -> Option<Freeing> {
        let number = |name| info_field(info, name)?.parse::<u64>().ok();
        Some(Freeing {
            pending: number("lazyfree_pending_objects")?,
            used_memory: number("used_memory").unwrap_or(0),
            freed: number("lazyfreed_objects"),
        })
    }
}

/// What the readings so far say.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing is left to free.
    Freed,
    /// The server is freeing; ask again.
    Freeing,
    /// The server freed nothing for the whole limit.
    Stuck,
}

/// Follows the readings of one server's flush. It is freed once `lazyfreed_objects` has
/// grown by the objects pending at the first reading (or nothing is pending). Progress is
/// objects freed, or a new low of pending objects or of `used_memory` (the objects of one
/// database count only when all of it is freed, the memory falls as it goes).
struct Watch {
    least: Freeing,
    /// The `lazyfreed_objects` that means the flush is freed.
    goal: Option<u64>,
    progressed_at: Instant,
}

impl Watch {
    fn new(first: Freeing, now: Instant) -> Watch {
        Watch {
            least: first,
            goal: first.freed.map(|freed| freed.saturating_add(first.pending)),
            progressed_at: now,
        }
    }

    fn observe(&mut self, reading: Freeing, now: Instant, limit: Duration) -> Verdict {
        let freed = reading.freed.unwrap_or(0);
        if reading.pending == 0 || self.goal.is_some_and(|goal| freed >= goal) {
            return Verdict::Freed;
        }
        if reading.pending < self.least.pending
            || reading.used_memory < self.least.used_memory
            || freed > self.least.freed.unwrap_or(0)
        {
            self.least.pending = self.least.pending.min(reading.pending);
            self.least.used_memory = self.least.used_memory.min(reading.used_memory);
            self.least.freed = reading.freed;
            self.progressed_at = now;
        }
        if now.duration_since(self.progressed_at) >= limit {
            Verdict::Stuck
        } else {
            Verdict::Freeing
        }
    }
}

impl Control {
    /// `FLUSHALL ASYNC`: empties every database of the server at once and frees their
    /// memory in the background (see [`Control::wait_freed`]).
    pub(crate) async fn flushall(&mut self) -> Result<(), TargetError> {
        let flushed = redis::cmd("FLUSHALL")
            .arg("ASYNC")
            .query_async::<()>(&mut self.handle.connection)
            .await;
        flushed.map_err(|e| self.failed("FLUSHALL", &e))
    }

    /// Waits until the server has freed the memory of its flush, for as long as it makes
    /// progress: an error naming the server once it freed nothing for `io_timeout`.
    /// `waiting` hears the pending objects once, when the wait has lasted a second. A user
    /// that may not run `INFO`, or a server that does not report lazily freed objects,
    /// leaves nothing to wait for.
    pub(crate) async fn wait_freed(
        &mut self,
        mut waiting: impl FnMut(u64),
    ) -> Result<(), TargetError> {
        let start = Instant::now();
        let Some(first) = self.freeing().await? else {
            return Ok(());
        };
        let mut watch = Watch::new(first, start);
        let mut reading = first;
        let mut reported = false;
        loop {
            let now = Instant::now();
            match watch.observe(reading, now, self.connector.io_timeout) {
                Verdict::Freed => return Ok(()),
                Verdict::Stuck => {
                    return Err(self.connector.fail(
                        &self.handle.addr,
                        format!(
                            "the server freed nothing of its flushed dataset for {} (io_timeout), {} objects still pending: it is stalled or overloaded; run again once it has freed them, or raise io_timeout",
                            humantime::format_duration(self.connector.io_timeout),
                            reading.pending
                        ),
                    ))
                }
                Verdict::Freeing => {}
            }
            if !reported && now.duration_since(start) >= REPORT_AFTER {
                reported = true;
                waiting(reading.pending);
            }
            tokio::time::sleep(FREE_PAUSE).await;
            reading = match self.freeing().await? {
                Some(reading) => reading,
                None => return Ok(()),
            };
        }
    }

    /// One reading of `INFO memory`; `None` when it is refused or says nothing of lazily
    /// freed objects.
    async fn freeing(&mut self) -> Result<Option<Freeing>, TargetError> {
        let info = redis::cmd("INFO")
            .arg("memory")
            .query_async::<String>(&mut self.handle.connection)
            .await;
        match info {
            Ok(info) => Ok(Freeing::parse(&info)),
            Err(e) if is_refusal(&e) => Ok(None),
            Err(e) => Err(self.failed("INFO memory", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pending: u64, used_memory: u64) -> Freeing {
        Freeing {
            pending,
            used_memory,
            freed: None,
        }
    }

    fn freed(pending: u64, freed: u64) -> Freeing {
        Freeing {
            pending,
            used_memory: 1000,
            freed: Some(freed),
        }
    }

    const LIMIT: Duration = Duration::from_secs(30);

    #[test]
    fn a_reading_parses_pending_objects_and_memory() {
        let info = "# Memory\r\nused_memory:2468439536\r\nused_memory_human:2.30G\r\nlazyfree_pending_objects:20880842\r\n";
        assert_eq!(Freeing::parse(info), Some(at(20_880_842, 2_468_439_536)));
        let info = "used_memory:7\r\nlazyfree_pending_objects:3\r\nlazyfreed_objects:40000000\r\n";
        assert_eq!(
            Freeing::parse(info),
            Some(Freeing {
                pending: 3,
                used_memory: 7,
                freed: Some(40_000_000)
            })
        );
        assert_eq!(Freeing::parse("# Memory\r\nused_memory:1\r\n"), None);
    }

    #[test]
    fn nothing_pending_is_freed() {
        let t0 = Instant::now();
        let mut watch = Watch::new(at(5, 100), t0);
        assert_eq!(watch.observe(at(0, 100), t0, LIMIT), Verdict::Freed);
    }

    #[test]
    fn falling_memory_is_progress_while_the_pending_count_stands_still() {
        let t0 = Instant::now();
        let mut watch = Watch::new(at(5, 1000), t0);
        // Memory falls every 20 s: never a whole limit without progress.
        for step in 1..10u64 {
            let now = t0 + Duration::from_secs(20 * step);
            assert_eq!(
                watch.observe(at(5, 1000 - step), now, LIMIT),
                Verdict::Freeing
            );
        }
    }

    #[test]
    fn a_whole_limit_without_a_new_low_is_stuck() {
        let t0 = Instant::now();
        let mut watch = Watch::new(at(5, 1000), t0);
        assert_eq!(
            watch.observe(at(5, 900), t0 + Duration::from_secs(10), LIMIT),
            Verdict::Freeing
        );
        // Memory rising again (new writes) is no progress; the clock runs from the low.
        assert_eq!(
            watch.observe(at(5, 950), t0 + Duration::from_secs(39), LIMIT),
            Verdict::Freeing
        );
        assert_eq!(
            watch.observe(at(5, 950), t0 + Duration::from_secs(40), LIMIT),
            Verdict::Stuck
        );
    }

    #[test]
    fn the_flush_is_freed_once_its_own_objects_are_whatever_others_free_meanwhile() {
        let t0 = Instant::now();
        // 5 pending right after the flush, 100 freed before it.
        let mut watch = Watch::new(freed(5, 100), t0);
        // Another client's lazy frees keep objects pending: the flush's 5 are freed.
        assert_eq!(watch.observe(freed(8, 103), t0, LIMIT), Verdict::Freeing);
        assert_eq!(watch.observe(freed(9, 105), t0, LIMIT), Verdict::Freed);
    }

    #[test]
    fn objects_freed_are_progress() {
        let t0 = Instant::now();
        let mut watch = Watch::new(freed(50, 0), t0);
        for step in 1..10u64 {
            let now = t0 + Duration::from_secs(20 * step);
            assert_eq!(watch.observe(freed(50, step), now, LIMIT), Verdict::Freeing);
        }
        let later = t0 + Duration::from_secs(20 * 9 + 30);
        assert_eq!(watch.observe(freed(50, 9), later, LIMIT), Verdict::Stuck);
    }
}
