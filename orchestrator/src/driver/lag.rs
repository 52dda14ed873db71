//! How late the broker is delivering, told by the heartbeats that do arrive: each says
//! when it was made. A node's silence is then judged in the broker's time, not ours: at
//! N = 3000, with 4.2 GB of archives on their way, heartbeats arrived 6-9 s after they
//! were made, and nodes whose heartbeats were on time were declared lost.
//!
//! Clocks differ between machines, so a heartbeat's lateness is counted against its node's
//! quickest one (its clock offset plus the quickest delivery), and the broker's delay is
//! the median lateness of the heartbeats of the last two seconds: one node with a clock that
//! jumps does not move it. When none arrived in that span the last estimate stands.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Over how long the heartbeats' lateness is taken.
const SPAN: Duration = Duration::from_secs(2);
/// At most this many samples are kept (a few seconds of 10,000 nodes' heartbeats).
const SAMPLES: usize = 20_000;
/// No estimate beyond this (a clock that jumped, not a broker).
const MOST: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct Lag {
    /// Per node, the smallest (arrival - made) in seconds.
    floor: HashMap<String, f64>,
    /// (arrival, lateness beyond its node's floor in seconds) of the last heartbeats.
    recent: VecDeque<(Instant, f64)>,
    last: Duration,
}

impl Lag {
    /// A heartbeat of `node` made at `made` (epoch seconds, the node's clock) arrived at
    /// `now_epoch` (ours) and `now`.
    pub(super) fn heard(&mut self, node: &str, made: f64, now_epoch: f64, now: Instant) {
        let offset = now_epoch - made;
        if !offset.is_finite() {
            return;
        }
        let floor = self.floor.entry(node.to_string()).or_insert(offset);
        *floor = floor.min(offset);
        let late = offset - *floor;
        if self.recent.len() >= SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back((now, late));
    }

    /// How far behind the broker's deliveries are now.
    pub(super) fn delay(&mut self, now: Instant) -> Duration {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > SPAN)
        {
            self.recent.pop_front();
        }
        if self.recent.is_empty() {
            return self.last;
        }
        let mut late: Vec<f64> = self.recent.iter().map(|(_, l)| *l).collect();
        let mid = late.len() / 2;
        let (_, median, _) = late.select_nth_unstable_by(mid, f64::total_cmp);
        self.last = Duration::from_secs_f64(median.clamp(0.0, MOST.as_secs_f64()));
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_delay_is_the_median_lateness_of_the_last_heartbeats_each_against_its_node() {
        let mut lag = Lag::default();
        let t0 = Instant::now();
        // Three nodes whose clocks are 100 s ahead, 0 and 50 s behind, heard promptly.
        for (node, skew) in [("a", 100.0), ("b", 0.0), ("c", -50.0)] {
            lag.heard(node, 1000.0 + skew, 1000.0, t0);
        }
        assert_eq!(lag.delay(t0), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(3)).await;
        // Then 4 s late, and one node's clock jumps back an hour.
        let now = Instant::now();
        lag.heard("a", 1000.0 + 100.0, 1004.0, now);
        lag.heard("b", 1000.0, 1004.0, now);
        lag.heard("c", 1000.0 - 3600.0, 1004.0, now);
        assert_eq!(lag.delay(now), Duration::from_secs(4));
        // Nothing heard for longer than the span: the last estimate stands.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(lag.delay(Instant::now()), Duration::from_secs(4));
    }
}
