//! Publishing with publisher confirms, `mandatory`, and retries through outages.
//!
//! One confirm-mode channel per connection carries every publish. A publish is done when
//! the broker confirms it: routed to at least one queue ([`Outcome::Routed`]) or returned
//! as unroutable ([`Outcome::Returned`]). Until then it is retried:
//! - while lapin recovers the connection (broker restart, dropped TCP), the publish waits
//!   for the recovery and goes again, so nothing sent during an outage is lost;
//! - when the broker closed the channel (a refused publish closes the channel and fails
//!   every publish in flight on it, guilty or not), a new channel is opened and the publish
//!   goes again, at most [`SOFT_RETRIES`] times, so that only the guilty one is reported.
//!
//! A publish can thus reach its queue twice (its first attempt was routed but the confirm
//! was lost); every message carries a `message_id` and receivers drop repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use magi_bus::BusError;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::error::{is_channel_error, is_not_found, to_bus};

/// How many times a publish is retried after the broker closed its channel.
pub(crate) const SOFT_RETRIES: usize = 3;

/// What the broker did with a confirmed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// At least one queue has it.
    Routed,
    /// No queue is bound where it was sent (only for `mandatory` publishes).
    Returned,
}

/// One message to publish.
pub(crate) struct Outgoing<'a> {
    /// Exchange.
    pub exchange: &'a str,
    /// Routing key.
    pub key: &'a str,
    /// Body.
    pub body: &'a [u8],
    /// Properties (the same `message_id` on every attempt).
    pub properties: BasicProperties,
    /// Report an unroutable message instead of dropping it.
    pub mandatory: bool,
}

/// The publishing side of one connection.
pub(crate) struct Publisher {
    conn: Arc<Connection>,
    channel: Mutex<Option<Channel>>,
    /// How long a publish keeps trying through an outage before `Disconnected`.
    patience: Duration,
}

impl Publisher {
    /// A publisher on `conn`; its channel is opened on first use.
    pub(crate) fn new(conn: Arc<Connection>, patience: Duration) -> Self {
        Publisher {
            conn,
            channel: Mutex::new(None),
            patience,
        }
    }

    /// The current confirm channel, or a new one if the broker closed the last one.
    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut slot = self.channel.lock().await;
        if let Some(ch) = slot.as_ref() {
            let st = ch.status();
            if st.connected() || st.reconnecting() {
                return Ok(ch.clone());
            }
        }
        let ch = self.conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *slot = Some(ch.clone());
        Ok(ch)
    }

    /// Publish one message and wait for the broker's answer, retrying as the module says.
    pub(crate) async fn publish(&self, msg: &Outgoing<'_>) -> Result<Outcome, BusError> {
        let deadline = Instant::now() + self.patience;
        let mut soft_failures = 0;
        let mut last: Option<BusError> = None;
        loop {
            if Instant::now() >= deadline {
                return Err(
                    last.unwrap_or_else(|| BusError::Disconnected("publish timed out".into()))
                );
            }
            let ch = match self.channel().await {
                Ok(ch) => ch,
                Err(e) => {
                    // The connection is down or recovering: wait a little and look again.
                    debug!(error = %e, "no channel to publish on yet");
                    last = Some(to_bus("opening a channel", &e));
                    if self.conn.status().closed() || self.conn.status().errored() {
                        return Err(BusError::Disconnected(format!(
                            "the connection is closed: {e}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let attempt = async {
                let opts = BasicPublishOptions {
                    mandatory: msg.mandatory,
                    ..Default::default()
                };
                ch.basic_publish(
                    msg.exchange.into(),
                    msg.key.into(),
                    opts,
                    msg.body,
                    msg.properties.clone(),
                )
                .await?
                .await
            };
            let err = match attempt.await {
                Ok(Confirmation::Ack(returned)) => {
                    return Ok(if returned.is_some() {
                        Outcome::Returned
                    } else {
                        Outcome::Routed
                    });
                }
                Ok(Confirmation::NotRequested) => return Ok(Outcome::Routed),
                Ok(Confirmation::Nack(_)) => {
                    return Err(BusError::Refused(format!(
                        "the broker nacked a message to {}",
                        msg.exchange
                    )));
                }
                Err(e) => e,
            };
            if is_channel_error(&err) {
                soft_failures += 1;
                let mapped = if is_not_found(&err) {
                    BusError::Refused(format!("exchange {} does not exist", msg.exchange))
                } else {
                    to_bus(&format!("publishing to {}", msg.exchange), &err)
                };
                if soft_failures >= SOFT_RETRIES {
                    warn!(exchange = msg.exchange, key = msg.key, error = %mapped, "publish refused");
                    return Err(mapped);
                }
                last = Some(mapped);
                continue;
            }
            // A connection-level failure: wait for lapin's recovery, then publish again.
            debug!(error = %err, "publish interrupted, waiting for recovery");
            last = Some(to_bus("publishing", &err));
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, ch.wait_for_recovery(err)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if self.conn.status().closed() || self.conn.status().errored() {
                        return Err(BusError::Disconnected(format!(
                            "the connection is closed: {e}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {}
            }
        }
    }
}

/// One tap copy waiting to be published.
pub(crate) struct Copy {
    /// Routing key on the watch exchange.
    pub key: String,
    /// The encoded tap item.
    pub body: Vec<u8>,
    /// Its kind (`type` property).
    pub kind: String,
}

/// Publishes tap copies in order, on their own channel, without confirms: a copy never
/// delays or fails the message it copies. Taps are observers, and a copy published while
/// the broker is unreachable is dropped after one retry (taps are also bounded and drop
/// their oldest messages when full, so they are lossy by design).
pub(crate) fn spawn_copier(
    conn: Arc<Connection>,
    exchange: String,
) -> tokio::sync::mpsc::UnboundedSender<Copy> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Copy>();
    tokio::spawn(async move {
        let mut channel: Option<Channel> = None;
        while let Some(copy) = rx.recv().await {
            let mut sent = false;
            for _attempt in 0..2 {
                let ch = match channel
                    .as_ref()
                    .filter(|c| c.status().connected() || c.status().reconnecting())
                {
                    Some(ch) => ch.clone(),
                    None => match conn.create_channel().await {
                        Ok(ch) => {
                            channel = Some(ch.clone());
                            ch
                        }
                        Err(e) => {
                            debug!(error = %e, "no channel for tap copies");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let props = crate::wire::properties(&copy.kind, false);
                match ch
                    .basic_publish(
                        exchange.as_str().into(),
                        copy.key.as_str().into(),
                        Default::default(),
                        &copy.body,
                        props,
                    )
                    .await
                {
                    Ok(_) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, "tap copy interrupted");
                        if ch.wait_for_recovery(e).await.is_err() {
                            channel = None;
                        }
                    }
                }
            }
            if !sent {
                warn!(key = %copy.key, "tap copy dropped");
            }
        }
        if let Some(ch) = channel {
            let _ = ch.close(200, "OK".into()).await;
        }
    });
    tx
}
