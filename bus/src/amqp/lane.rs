//! The channels that a link's short broker operations (declarations, bindings, deletions)
//! run on, and the bound on waiting for the broker's answers.
//!
//! **Channels kept.** Each operation used to open a channel, run and close it: three round
//! trips, and a channel's processes started and stopped on the broker, for one binding.
//! A lane keeps the channels whose operation ended well and hands them to the next
//! operation; one the broker closed (a 404, a 403) is dropped. While it runs, an operation
//! has its channel to itself: an error closes the channel it is met on, and must not fail
//! another operation pipelined behind it. At most [`WIDTH`] operations of a link are at the
//! broker at once, so that a burst (a fleet's hundred joins on one connection) reuses a few
//! channels instead of opening one each.
//!
//! **Progress, not age.** An operation fails when the broker has answered *nothing* on
//! this link for `reply_timeout`, counted from the later of its request (or its retry on a
//! new connection) and the link's last answer. A busy broker answers a burst of 10,000
//! joins in order, the last ones minutes after they were sent, and each answer proves it
//! is working; a stuck one answers none, and every operation waiting on it fails
//! `reply_timeout` after the last answer.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use lapin::Channel;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Operations of one link at the broker at once.
pub(crate) const WIDTH: usize = 16;

/// A link's kept channels and its clock of answers.
pub(crate) struct Lane {
    /// Channels that ended their last operation well, with their connection's generation.
    idle: Mutex<Vec<(u64, Channel)>>,
    permits: Semaphore,
    /// When the broker last answered an operation of this link.
    last_answer: Mutex<Instant>,
}

impl Default for Lane {
    fn default() -> Self {
        Lane {
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(WIDTH),
            last_answer: Mutex::new(Instant::now()),
        }
    }
}

impl Lane {
    /// A turn at the broker; `None` if the lane is closed (it never is).
    pub(crate) async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        self.permits.acquire().await.ok()
    }

    /// A kept channel of connection generation `generation` that is still open.
    pub(crate) fn take(&self, generation: u64) -> Option<Channel> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((g, ch)) = idle.pop() {
            if g == generation && ch.status().connected() {
                return Some(ch);
            }
        }
        None
    }

    /// Keep `ch` for the next operation. It is given back if the lane holds enough or it
    /// is closed: the caller closes or drops it.
    pub(crate) fn keep(&self, generation: u64, ch: Channel) -> Option<Channel> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= WIDTH || !ch.status().connected() {
            return Some(ch);
        }
        idle.push((generation, ch));
        None
    }

    /// The broker answered an operation of this link.
    pub(crate) fn answered(&self) {
        *self.last_answer.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn quiet_until(&self, requested: Instant, limit: Duration) -> Instant {
        let last = *self.last_answer.lock().unwrap_or_else(|p| p.into_inner());
        last.max(requested) + limit
    }

    /// Wait for `fut` while the broker keeps answering: `None` once it has answered
    /// nothing on this link for `limit` since `requested` or since its last answer.
    pub(crate) async fn bounded<T>(
        &self,
        requested: Instant,
        limit: Duration,
        fut: impl Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let until = self.quiet_until(requested, limit);
            tokio::select! {
                v = &mut fut => return Some(v),
                _ = tokio::time::sleep_until(until) => {
                    if self.quiet_until(requested, limit) <= Instant::now() {
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_operation_waits_while_others_are_answered_and_fails_once_nothing_is() {
        let lane = std::sync::Arc::new(Lane::default());
        let limit = Duration::from_secs(10);
        let requested = Instant::now();
        // Answers every 6 s for 30 s: the operation outlives its own 10 s.
        let ticker = {
            let lane = lane.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    lane.answered();
                }
            })
        };
        let never = std::future::pending::<()>();
        let started = Instant::now();
        assert!(lane.bounded(requested, limit, never).await.is_none());
        let waited = started.elapsed();
        // Last answer at 30 s, then 10 s of silence.
        assert!(waited >= Duration::from_secs(40), "{waited:?}");
        assert!(waited < Duration::from_secs(41), "{waited:?}");
        ticker.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_requested_long_after_the_last_answer_gets_its_whole_bound() {
        let lane = Lane::default();
        tokio::time::sleep(Duration::from_secs(100)).await;
        let started = Instant::now();
        let r = lane
            .bounded(
                Instant::now(),
                Duration::from_secs(10),
                std::future::pending::<()>(),
            )
            .await;
        assert!(r.is_none());
        assert_eq!(started.elapsed().as_secs(), 10);
    }

    /// Over the real broker: a burst of operations on one link shares a few channels, and
    /// an operation the broker refuses (its channel closed) fails alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_operations_shares_a_few_channels_and_a_refusal_fails_only_its_own() {
        use crate::amqp::error::is_not_found;
        use crate::amqp::topology::on_channel;
        use lapin::options::ExchangeDeclareOptions;
        use std::collections::HashSet;

        let _hold = magi_testkit::BrokerGuard::shared()
            .await
            .expect("broker lock");
        let url = magi_testkit::TestBroker::new().url;
        let opts = crate::amqp::BusOptions::with_prefix("magi.test.lane.");
        let brokers = crate::amqp::Brokers::parse(&url).expect("url");
        let link = crate::amqp::link::Link::connect(&brokers, "lane test".into(), opts.clone())
            .await
            .expect("connect");
        // amq.direct exists on every vhost: a passive declaration of it needs no right and
        // leaves nothing behind; one of a missing exchange is refused with 404.
        let declare = |name: &'static str| {
            let (link, opts) = (link.clone(), opts.clone());
            async move {
                on_channel(&link, &opts, "checking an exchange", |ch| async move {
                    let id = ch.id();
                    ch.exchange_declare(
                        name.into(),
                        lapin::ExchangeKind::Direct,
                        ExchangeDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        Default::default(),
                    )
                    .await
                    .map(|()| id)
                })
                .await
            }
        };
        let mut burst = Vec::new();
        for i in 0..200 {
            let name = if i % 50 == 7 {
                "magi.test.lane.missing"
            } else {
                "amq.direct"
            };
            burst.push(tokio::spawn(declare(name)));
        }
        let (mut ids, mut refused) = (HashSet::new(), 0);
        for op in burst {
            match op.await.expect("task") {
                Ok(id) => {
                    ids.insert(id);
                }
                Err(e) if is_not_found(&e) => refused += 1,
                Err(e) => panic!("an operation failed with another's refusal: {e}"),
            }
        }
        assert_eq!(refused, 4);
        // Without the lane every operation opened a channel of its own (196 counted here:
        // all but the refused four); with it at most WIDTH (16) are open at once, and each
        // refusal costs its channel: 19 here.
        assert!(ids.len() <= 20, "{} channels for 200 operations", ids.len());
        link.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_operation_returns_its_value() {
        let lane = Lane::default();
        let r = lane
            .bounded(Instant::now(), Duration::from_secs(10), async { 7 })
            .await;
        assert_eq!(r, Some(7));
    }
}
