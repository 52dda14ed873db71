//! The receiving half of every link: a task that moves deliveries from a lapin consumer
//! into the link's channel, and rebuilds the consumer whenever the connection fails.
//!
//! Each delivery is checked (size, JSON, run) and deduplicated by `message_id`; what fails
//! a check is logged and dropped, never passed on and never fatal. Every delivery is
//! acknowledged once handed over (or dropped), so the queue's prefetch bounds what the
//! broker has in flight to us. Deliveries that arrive together are acknowledged together,
//! with one `multiple` ack when none is waiting any more (or after [`ACK_BATCH`]): an
//! orchestrator takes a thousand triggers in a burst at N = 1000, and one ack each was a
//! thousand frames for the broker and a thousand waits on the connection's I/O thread. When the consumer fails (connection lost, channel closed,
//! consumer cancelled), the task waits for the bus's next connection and runs the link's
//! `setup` on it again (channel, QoS, queue, bindings, memberships, consumer), retrying with
//! backoff while the broker refuses (an exclusive consumer of the old connection that the
//! broker has not dropped yet), and goes on with the same dedupe window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::amqp::link::Link;
use crate::amqp::wire::{Dedupe, Dropped};

/// How many recent message ids each link remembers to drop repeats.
pub(crate) const DEDUPE_WINDOW: usize = 8192;

/// Deliveries handled at most before they are acknowledged, while more keep arriving.
const ACK_BATCH: usize = 32;

/// Builds a link's consumer on a connection: its channel, QoS, queue, bindings, and
/// anything else the link needs re-applied after a reconnection.
pub(crate) type Setup = Arc<
    dyn Fn(Arc<Connection>) -> BoxFuture<'static, Result<(Channel, Consumer), lapin::Error>>
        + Send
        + Sync,
>;

/// The queue a link consumes and how it is bound: what node, run and tap links differ in.
pub(crate) struct Inbox {
    /// The queue's name; empty for a server-named one (`amq.gen-…`, taps).
    pub(crate) queue: String,
    /// How it is declared.
    pub(crate) options: QueueDeclareOptions,
    /// Its arguments (expiry, length limit).
    pub(crate) args: FieldTable,
    /// Unacknowledged deliveries the link may hold.
    pub(crate) prefetch: u16,
    /// (exchange, routing key) pairs it is bound to.
    pub(crate) bindings: Vec<(String, String)>,
    /// The consumer tag (shown by `rabbitmqctl list_consumers`).
    pub(crate) consumer_tag: String,
    /// Whether the consumer is exclusive (a second node agent or orchestrator under the
    /// same name is refused).
    pub(crate) exclusive: bool,
    /// An exclusive queue declared before consuming, refused (`RESOURCE_LOCKED`) while
    /// another connection holds it: what keeps a second consumer off a quorum queue.
    pub(crate) lock: Option<String>,
}

impl Inbox {
    /// The link's [`Setup`]: this inbox, opened again on every new connection.
    pub(crate) fn setup(self) -> Setup {
        let spec = Arc::new(self);
        Arc::new(move |conn: Arc<Connection>| {
            let spec = spec.clone();
            Box::pin(async move {
                spec.open(&conn)
                    .await
                    .map(|(ch, consumer, _)| (ch, consumer))
            })
        })
    }

    /// On a fresh channel of `conn`: QoS, the queue, its bindings and the consumer. Returns
    /// them with the queue's name (the server's, for a server-named queue).
    pub(crate) async fn open(
        &self,
        conn: &Connection,
    ) -> Result<(Channel, Consumer, String), lapin::Error> {
        let ch = conn.create_channel().await?;
        if let Some(lock) = &self.lock {
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            };
            ch.queue_declare(lock.as_str().into(), exclusive, FieldTable::default())
                .await?;
        }
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let queue = ch
            .queue_declare(self.queue.as_str().into(), self.options, self.args.clone())
            .await?
            .name()
            .to_string();
        for (exchange, key) in &self.bindings {
            ch.queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let consumer = ch
            .basic_consume(
                queue.as_str().into(),
                self.consumer_tag.as_str().into(),
                BasicConsumeOptions {
                    exclusive: self.exclusive,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((ch, consumer, queue))
    }
}

/// Run `setup` on the present connection (waiting until `deadline` for one); a broker
/// that does not answer the setup within `reply_timeout` is an error
/// ([`crate::amqp::topology::no_answer`]).
pub(crate) async fn establish(
    link: &Link,
    setup: &Setup,
    deadline: Instant,
    reply_timeout: Duration,
) -> Result<(Channel, Consumer), lapin::Error> {
    let (_, conn) = link.current_lapin(deadline).await?;
    match tokio::time::timeout(reply_timeout, setup(conn)).await {
        Ok(r) => r,
        Err(_) => Err(crate::amqp::topology::no_answer(
            "declaring and consuming an inbox",
            reply_timeout,
        )),
    }
}

/// Start moving deliveries from `consumer` to `tx` through `handle`, until the receiver is
/// dropped, `stop` is notified, or the bus is closed; the consumer is rebuilt with `setup`
/// whenever it fails.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn<T, F>(
    label: String,
    link: Arc<Link>,
    setup: Setup,
    mut channel: Channel,
    mut consumer: Consumer,
    tx: UnboundedSender<T>,
    stop: Arc<Notify>,
    mut handle: F,
) where
    T: Send + 'static,
    F: FnMut(&Delivery) -> Result<T, Dropped> + Send + 'static,
{
    tokio::spawn(async move {
        let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
        let mut unacked = Unacked::default();
        'link: loop {
            loop {
                // Another delivery already here is taken at once; otherwise what was
                // handled is acknowledged before waiting.
                let ready = if unacked.count > 0 && unacked.count < ACK_BATCH {
                    consumer.next().now_or_never()
                } else {
                    None
                };
                let next = match ready {
                    Some(next) => next,
                    None => {
                        unacked.ack(&channel, &label).await;
                        tokio::select! {
                            biased;
                            _ = stop.notified() => break 'link,
                            _ = tx.closed() => break 'link,
                            next = consumer.next() => next,
                        }
                    }
                };
                let delivery = match next {
                    None => {
                        debug!(link = %label, "consumer ended");
                        break;
                    }
                    Some(Err(e)) => {
                        debug!(link = %label, error = %e, "consumer interrupted");
                        break;
                    }
                    Some(Ok(d)) => d,
                };
                if dedupe.first_time(&delivery.properties) {
                    match handle(&delivery) {
                        Ok(item) => {
                            if tx.send(item).is_err() {
                                break 'link;
                            }
                        }
                        Err(why) => warn!(
                            link = %label,
                            exchange = %delivery.exchange,
                            routing_key = %delivery.routing_key,
                            reason = %why,
                            "dropped a message"
                        ),
                    }
                } else {
                    debug!(link = %label, "dropped a repeated message");
                }
                unacked.add(delivery.delivery_tag);
            }
            // Deliveries of a failed channel cannot be acknowledged any more: the broker
            // delivers them again, and the dedupe window drops the repeats.
            unacked = Unacked::default();
            // The consumer is gone: build it again on the present (or next) connection.
            if channel.status().connected() {
                let _ = channel.close(200, "OK".into()).await;
            }
            let mut delay = Duration::from_millis(100);
            loop {
                let far = Instant::now() + Duration::from_secs(3600);
                let attempt = tokio::select! {
                    biased;
                    _ = stop.notified() => break 'link,
                    _ = tx.closed() => break 'link,
                    r = tokio::time::timeout(Duration::from_secs(30), establish(&link, &setup, far, Duration::from_secs(30))) => r,
                };
                match attempt {
                    Ok(Ok((ch, c))) => {
                        info!(link = %label, "consuming again");
                        (channel, consumer) = (ch, c);
                        continue 'link;
                    }
                    Ok(Err(e)) => {
                        if link.is_closed() {
                            debug!(link = %label, "the bus is closed");
                            break 'link;
                        }
                        debug!(link = %label, error = %e, "could not consume again yet");
                    }
                    Err(_) => debug!(link = %label, "consuming again timed out"),
                }
                tokio::select! {
                    biased;
                    _ = stop.notified() => break 'link,
                    _ = tx.closed() => break 'link,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        unacked.ack(&channel, &label).await;
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    });
}

/// Deliveries handled but not acknowledged yet: the tag of the last one, whose `multiple`
/// ack covers every earlier one of its channel.
#[derive(Default)]
struct Unacked {
    last: Option<u64>,
    count: usize,
}

impl Unacked {
    fn add(&mut self, delivery_tag: u64) {
        self.last = Some(delivery_tag);
        self.count += 1;
    }

    /// Acknowledges on the channel itself: a delivery's own `ack` goes through a task of
    /// lapin's, which spawns another to send it (two more wakes per ack).
    async fn ack(&mut self, channel: &Channel, label: &str) {
        self.count = 0;
        let Some(last) = self.last.take() else { return };
        let multiple = BasicAckOptions { multiple: true };
        if let Err(e) = channel.basic_ack(last, multiple).await {
            // After a reconnection the old delivery tags are void; the broker delivers the
            // messages again, and the dedupe window drops the repeats.
            debug!(link = %label, error = %e, "ack failed");
        }
    }
}
