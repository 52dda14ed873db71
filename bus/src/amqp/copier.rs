//! Tap copies: every sender publishes a copy of each call, trigger and record to the watch
//! exchange (`docs/bus.md`, "Taps get copies"), on a channel of its own, in order, never
//! delaying or failing the message it copies.
//!
//! A copy that no tap wants is work for nothing, on the sender and on the broker: at
//! N = 100 they were about a fifth of the node agents' CPU per trigger and 0.1 of the round
//! trip's ratio to bare lapin. So a copy is sent `mandatory`, confirmed in the background:
//! when the broker returns it (no tap is bound for its run and kind), the sender makes no
//! copy for that key ([`Names::watch_key`](crate::amqp::names::Names::watch_key)) for
//! [`BusOptions::tap_quiet`](crate::amqp::BusOptions::tap_quiet); the first copy after that
//! asks again. A tap opened while a run goes on therefore sees each sender's copies within
//! that time. A copy larger than [`PROBE_MAX`] is never a question (a returned copy comes
//! back whole): it goes without `mandatory`, as every copy did before, and is dropped by
//! the broker if nobody taps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Confirmation};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::{debug, warn};

use crate::amqp::link::Link;
use crate::amqp::publisher::confirm_channel;

/// How long a tap copy waits for the broker to come back before it is dropped.
const COPY_WAIT: Duration = Duration::from_secs(10);

/// Copies larger than this are sent without asking whether anyone taps.
const PROBE_MAX: usize = 64 * 1024;

/// Keys remembered as untapped before expired ones are swept out.
const QUIET_KEYS: usize = 1024;

/// Copies waiting to be published, at most. A broker that takes the copies more slowly than
/// they come (a resource alarm blocks publishers; a connection whose broker stopped
/// answering) would otherwise make them pile up in this process: past this, new copies are
/// dropped, as a full tap queue drops its oldest (taps are lossy by design).
const COPY_QUEUE: usize = 4096;

/// One tap copy waiting to be published.
struct Copy {
    /// Routing key on the watch exchange.
    key: String,
    /// The encoded tap item.
    body: Vec<u8>,
    /// Its kind (`type` property).
    kind: String,
}

/// Keys for which no tap was bound at the last copy, and until when no copy is made.
type Quiet = Arc<Mutex<HashMap<String, Instant>>>;

/// The tap copies of one bus: a task publishing them, and what it learned about taps.
pub(crate) struct Copier {
    tx: mpsc::Sender<Copy>,
    quiet: Quiet,
    /// Copies handed to the broker (read by tests).
    #[cfg_attr(not(test), allow(dead_code))]
    published: Arc<AtomicU64>,
    /// Copies dropped because [`COPY_QUEUE`] were waiting.
    dropped: AtomicU64,
}

impl Copier {
    /// Starts the copier of `link`, publishing to `exchange`; a key found untapped is left
    /// alone for `quiet_for`.
    pub(crate) fn spawn(link: Arc<Link>, exchange: String, quiet_for: Duration) -> Copier {
        let (copier, rx) = Copier::unstarted();
        tokio::spawn(publish_copies(
            link,
            exchange,
            rx,
            copier.quiet.clone(),
            quiet_for,
            copier.published.clone(),
        ));
        copier
    }

    /// A copier and the queue its task takes the copies from.
    fn unstarted() -> (Copier, mpsc::Receiver<Copy>) {
        let (tx, rx) = mpsc::channel(COPY_QUEUE);
        let copier = Copier {
            tx,
            quiet: Arc::default(),
            published: Arc::new(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
        };
        (copier, rx)
    }

    /// Whether a copy for `key` may be wanted: false while the broker's last answer for it
    /// said that nobody taps it.
    fn wanted(&self, key: &str) -> bool {
        let quiet = self.quiet.lock().unwrap_or_else(|p| p.into_inner());
        quiet.get(key).is_none_or(|until| Instant::now() >= *until)
    }

    /// Queues a copy under `key`, unless nobody taps it: `body` is only made when wanted
    /// (it may be the JSON of a whole call). `None` from `body` sends nothing.
    pub(crate) fn offer(&self, key: String, kind: &str, body: impl FnOnce() -> Option<Vec<u8>>) {
        if !self.wanted(&key) {
            return;
        }
        let Some(body) = body() else { return };
        let copy = Copy {
            key,
            body,
            kind: kind.to_string(),
        };
        match self.tx.try_send(copy) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // One warning per thousand, not one per copy.
                if self
                    .dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    warn!(
                        kind,
                        waiting = COPY_QUEUE,
                        "tap copies dropped: the broker takes them too slowly"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {
                warn!(kind, "tap copy not sent: the bus is closing")
            }
        }
    }

    /// Copies handed to the broker so far.
    #[cfg(test)]
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

/// Notes the broker's answer to a copy that asked: a returned copy makes its key quiet.
fn note(quiet: &Quiet, key: String, answer: lapin::Result<Confirmation>, quiet_for: Duration) {
    let returned = matches!(answer, Ok(Confirmation::Ack(Some(_))));
    let mut quiet = quiet.lock().unwrap_or_else(|p| p.into_inner());
    if returned {
        if quiet.len() >= QUIET_KEYS {
            let now = Instant::now();
            quiet.retain(|_, until| *until > now);
        }
        quiet.insert(key, Instant::now() + quiet_for);
    } else if answer.is_ok() {
        quiet.remove(&key);
    }
}

/// Publishes copies in order on a confirm channel of their own; a copy published while the
/// broker is unreachable is dropped after one retry (taps are also bounded and drop their
/// oldest messages when full: they are lossy by design). Confirms are awaited beside the
/// queue, never in its way.
async fn publish_copies(
    link: Arc<Link>,
    exchange: String,
    mut rx: mpsc::Receiver<Copy>,
    quiet: Quiet,
    quiet_for: Duration,
    published: Arc<AtomicU64>,
) {
    let mut channel: Option<(u64, Channel)> = None;
    let mut answers = FuturesUnordered::new();
    loop {
        let copy = tokio::select! {
            copy = rx.recv() => match copy {
                Some(copy) => copy,
                None => break,
            },
            Some((key, answer)) = answers.next(), if !answers.is_empty() => {
                note(&quiet, key, answer, quiet_for);
                continue;
            }
        };
        let mandatory = copy.body.len() <= PROBE_MAX;
        let mut sent = false;
        for _attempt in 0..2 {
            let Ok((generation, conn)) = link.current(Instant::now() + COPY_WAIT).await else {
                break;
            };
            let ch = match channel
                .as_ref()
                .filter(|(g, c)| *g == generation && c.status().connected())
            {
                Some((_, ch)) => ch.clone(),
                None => match confirm_channel(&conn, COPY_WAIT).await {
                    Ok(ch) => {
                        channel = Some((generation, ch.clone()));
                        ch
                    }
                    Err(e) => {
                        debug!(error = %e, "no channel for tap copies");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let props = crate::amqp::wire::properties(&copy.kind, false, link.user());
            let opts = BasicPublishOptions {
                mandatory,
                ..Default::default()
            };
            match ch
                .basic_publish(
                    exchange.as_str().into(),
                    copy.key.as_str().into(),
                    opts,
                    &copy.body,
                    props,
                )
                .await
            {
                Ok(confirm) => {
                    published.fetch_add(1, Ordering::Relaxed);
                    if mandatory {
                        let key = copy.key.clone();
                        answers.push(async move { (key, confirm.await) });
                    }
                    sent = true;
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "tap copy interrupted");
                    channel = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if !sent {
            warn!(key = %copy.key, "tap copy dropped");
        }
    }
    if let Some((_, ch)) = channel.filter(|(_, c)| c.status().connected()) {
        let _ = ch.close(200, "OK".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::options::{
        BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions,
    };
    use lapin::ExchangeKind;

    const QUIET: Duration = Duration::from_millis(600);

    /// A copier over the real broker on a watch exchange of its own, and a channel to look.
    async fn copier(name: &str) -> (Copier, Channel, String, magi_testkit::BrokerGuard) {
        let hold = magi_testkit::BrokerGuard::shared()
            .await
            .expect("broker lock");
        let url = magi_testkit::TestBroker::new().url;
        let opts = crate::amqp::BusOptions::with_prefix("magi.test.copier.");
        let brokers = crate::amqp::Brokers::parse(&url).expect("url");
        let link = Link::connect(&brokers, name.into(), opts)
            .await
            .expect("connect");
        let exchange = format!("magi.test.copier.{}", uuid::Uuid::new_v4().simple());
        let (_, conn) = link.current(Instant::now() + COPY_WAIT).await.expect("up");
        let ch = conn.create_channel().await.expect("channel");
        let auto = ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        };
        ch.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            auto,
            Default::default(),
        )
        .await
        .expect("exchange");
        let copier = Copier::spawn(link, exchange.clone(), QUIET);
        (copier, ch, exchange, hold)
    }

    /// Polls until `cond` holds, for at most 5 s.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "{what}: not within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn body() -> Option<Vec<u8>> {
        Some(b"{}".to_vec())
    }

    #[test]
    fn copies_the_broker_does_not_take_wait_in_a_bounded_queue_and_the_rest_are_dropped() {
        // No task takes the copies, as when a resource alarm blocks the broker's publishers:
        // the queue stops at its bound, and what comes after is dropped and counted.
        let (copier, rx) = Copier::unstarted();
        for _ in 0..COPY_QUEUE + 500 {
            copier.offer("r1.trigger".into(), "trigger", body);
        }
        assert_eq!(rx.len(), COPY_QUEUE);
        assert_eq!(copier.dropped.load(Ordering::Relaxed), 500);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_nobody_taps_silences_its_key_and_only_it_until_the_quiet_time_ends() {
        let (copier, ch, exchange, _hold) = copier("copier quiet test").await;
        let asked = Instant::now();
        copier.offer("r1.trigger".into(), "trigger", body);
        until("the first copy returned", || !copier.wanted("r1.trigger")).await;
        let went_quiet = Instant::now();
        assert_eq!(copier.published(), 1);

        // While quiet, nothing is made or sent for that key, and another key is not quiet.
        let made = AtomicU64::new(0);
        for _ in 0..50 {
            copier.offer("r1.trigger".into(), "trigger", || {
                made.fetch_add(1, Ordering::Relaxed);
                body()
            });
        }
        assert_eq!(
            made.load(Ordering::Relaxed),
            0,
            "a quiet key's copy was made"
        );
        copier.offer("r1.call".into(), "call", body);
        until("the other key's copy sent", || copier.published() == 2).await;
        assert!(asked.elapsed() < QUIET, "the test was too slow to tell");

        // After the quiet time the next copy asks again.
        tokio::time::sleep(QUIET.saturating_sub(went_quiet.elapsed())).await;
        assert!(copier.wanted("r1.trigger"));
        copier.offer("r1.trigger".into(), "trigger", body);
        until("a copy sent after the quiet time", || {
            copier.published() == 3
        })
        .await;
        let _ = ch
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tap_bound_while_its_key_is_quiet_gets_every_copy_once_the_quiet_time_ends() {
        let (copier, ch, exchange, _hold) = copier("copier tap test").await;
        copier.offer("r1.trigger".into(), "trigger", body);
        until("the first copy returned", || !copier.wanted("r1.trigger")).await;

        // A tap binds now: within the quiet time plus a little, copies reach it, and from
        // then on every one (none is returned, so the key never goes quiet again).
        let opts = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let queue = ch
            .queue_declare("".into(), opts, Default::default())
            .await
            .expect("tap queue");
        let queue = queue.name().to_string();
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "r1.#".into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .expect("bind");
        let mut deliveries = ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("consume");
        let bound = Instant::now();
        let first = loop {
            copier.offer("r1.trigger".into(), "trigger", body);
            let got = tokio::time::timeout(Duration::from_millis(50), deliveries.next()).await;
            if let Ok(Some(Ok(_))) = got {
                break bound.elapsed();
            }
            assert!(
                bound.elapsed() < QUIET + Duration::from_secs(3),
                "the tap got nothing"
            );
        };
        assert!(first < QUIET + Duration::from_secs(2), "{first:?}");
        let before = copier.published();
        for _ in 0..20 {
            copier.offer("r1.trigger".into(), "trigger", body);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        until("twenty more copies sent", || {
            copier.published() >= before + 20
        })
        .await;
        // Every copy since the first (returned) one reaches the tap.
        let expected = copier.published() - 1;
        for i in 1..expected {
            let got = tokio::time::timeout(Duration::from_secs(5), deliveries.next()).await;
            assert!(
                matches!(got, Ok(Some(Ok(_)))),
                "copy {i} of {expected} did not reach the tap"
            );
        }
        let _ = ch
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}
