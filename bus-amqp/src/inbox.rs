//! The receiving half of every link: a task that moves deliveries from a lapin consumer
//! into the link's channel.
//!
//! Each delivery is checked (size, JSON, run) and deduplicated by `message_id`; what fails
//! a check is logged and dropped, never passed on and never fatal. Every delivery is
//! acknowledged once handed over (or dropped), so the queue's prefetch bounds what the
//! broker has in flight to us. When lapin reports a connection failure the task waits for
//! lapin's recovery (which re-declares the queue, its bindings and the consumer) and goes
//! on with the same consumer.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::wire::{Dedupe, Dropped};

/// How many recent message ids each link remembers to drop repeats.
pub(crate) const DEDUPE_WINDOW: usize = 8192;

/// Start moving deliveries from `consumer` to `tx` through `handle`, until the receiver is
/// dropped, `stop` is notified, or the consumer ends for good.
pub(crate) fn spawn<T, F>(
    label: String,
    channel: Channel,
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
        loop {
            let next = tokio::select! {
                _ = tx.closed() => break,
                _ = stop.notified() => break,
                next = consumer.next() => next,
            };
            let delivery = match next {
                None => {
                    debug!(link = %label, "consumer ended");
                    break;
                }
                Some(Err(e)) => {
                    debug!(link = %label, error = %e, "consumer interrupted, waiting for recovery");
                    if let Err(e) = channel.wait_for_recovery(e).await {
                        warn!(link = %label, error = %e, "link lost and not recoverable");
                        break;
                    }
                    continue;
                }
                Some(Ok(d)) => d,
            };
            if dedupe.first_time(&delivery) {
                match handle(&delivery) {
                    Ok(item) => {
                        if tx.send(item).is_err() {
                            break;
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
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // After a recovery the old delivery tag is void; the broker redelivers the
                // message, and the dedupe window drops the repeat.
                debug!(link = %label, error = %e, "ack failed");
            }
        }
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    });
}
