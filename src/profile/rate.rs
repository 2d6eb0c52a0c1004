//! The rate cap of `profile`: at most `--max-ops` commands per second to each server, so a
//! profile of a production server stays a small, steady load.

use std::time::Duration;

use tokio::time::Instant;

/// Paces the commands sent to one server: by any moment `t` seconds after the start, at most
/// `burst + rate × t` commands have been sent, where the burst is a tenth of a second's
/// worth (at least 1).
#[derive(Debug)]
pub(crate) struct RateCap {
    per_second: Option<u64>,
    start: Instant,
    sent: u64,
}

impl RateCap {
    /// A cap of `per_second` commands per second; `None` sends as fast as the server answers.
    pub(crate) fn new(per_second: Option<u64>) -> RateCap {
        RateCap {
            per_second,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Commands that may be sent at once without waiting.
    fn burst(per_second: u64) -> u64 {
        (per_second / 10).max(1)
    }

    /// The most commands worth sending together: a burst, or `unlimited` without a cap.
    pub(crate) fn batch(&self, unlimited: u64) -> u64 {
        self.per_second
            .map_or(unlimited, |rate| Self::burst(rate).min(unlimited))
    }

    /// Waits until `commands` more stay within the cap, then counts them as sent.
    pub(crate) async fn admit(&mut self, commands: u64) {
        if let Some(rate) = self.per_second {
            tokio::time::sleep_until(self.start + earliest(self.sent + commands, rate)).await;
        }
        self.sent += commands;
    }

    /// Commands counted so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }
}

/// How long after the start `total` commands may have been sent at `rate` per second.
fn earliest(total: u64, rate: u64) -> Duration {
    let beyond_burst = total.saturating_sub(RateCap::burst(rate));
    Duration::from_secs_f64(beyond_burst as f64 / rate as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_beyond_a_burst_wait_for_the_rate() {
        assert_eq!(earliest(100, 1000), Duration::ZERO);
        assert_eq!(earliest(2000, 1000), Duration::from_millis(1900));
        assert_eq!(earliest(3, 5), Duration::from_millis(400));
        assert_eq!(RateCap::burst(5), 1);
    }

    #[test]
    fn a_batch_is_at_most_a_burst() {
        assert_eq!(RateCap::new(Some(1000)).batch(500), 100);
        assert_eq!(RateCap::new(None).batch(500), 500);
    }
}
