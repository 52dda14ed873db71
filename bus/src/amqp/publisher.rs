//! Publishing with publisher confirms, `mandatory`, and retries through outages.
//!
//! One confirm-mode channel per connection carries every publish. A publish is done when
//! the broker confirms it: routed to at least one queue ([`Outcome::Routed`]) or returned
//! as unroutable ([`Outcome::Returned`]). Until then it is retried:
//! - when the connection fails (broker restart, dropped TCP), the publish waits for the
//!   bus's next connection (`link`) and goes again on a new channel, so nothing sent during
//!   an outage is lost;
//! - when its confirm has not come within `confirm_wait`, the connection is probed (a
//!   channel opened and closed on it): if the broker answers, it is alive and merely busy
//!   (a persistent message to 10,000 queues is confirmed once every queue has it), and the
//!   publish waits on; only a connection that answers nothing gets the message sent again,
//!   on a new channel. Sending again to a busy broker would add a whole fan-out to its work
//!   every `confirm_wait` and keep it from ever catching up;
//! - when the broker closed the channel (a refused publish closes the channel and fails
//!   every publish in flight on it, guilty or not), a new channel is opened and the publish
//!   goes again, at most [`SOFT_RETRIES`] times, so that only the guilty one is reported.
//!
//! A publish can thus reach its queue twice (its first attempt was routed but the confirm
//! was lost); every message carries a `message_id` and receivers drop repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::SendError;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::amqp::error::{is_channel_error, is_not_found, to_bus};
use crate::amqp::link::Link;

/// How many times a publish is retried after the broker closed its channel.
pub(crate) const SOFT_RETRIES: usize = 3;

/// How long opening a channel (the confirm channel, or the probe of a connection: see the
/// module) waits for the broker's answer.
const PROBE_WAIT: Duration = Duration::from_secs(15);

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

/// An attempt's confirm did not come, and the connection did not answer a probe either
/// (or the bus's patience ran out).
struct Unanswered;

/// The publishing side of one bus.
pub(crate) struct Publisher {
    link: Arc<Link>,
    /// The confirm channel and the connection generation it belongs to.
    channel: Mutex<Option<(u64, Channel)>>,
    /// How long a publish keeps trying through an outage before `Disconnected`.
    patience: Duration,
    /// How long an attempt waits for its confirm before the connection is probed.
    confirm_wait: Duration,
}

impl Publisher {
    /// A publisher on `link`; its channel is opened on first use.
    pub(crate) fn new(link: Arc<Link>, patience: Duration, confirm_wait: Duration) -> Self {
        Publisher {
            link,
            channel: Mutex::new(None),
            patience,
            confirm_wait,
        }
    }

    /// The current confirm channel, or a new one (on the present connection) if the last
    /// one is closed or belongs to a connection that failed.
    async fn channel(
        &self,
        deadline: Instant,
    ) -> Result<Result<(u64, Channel), lapin::Error>, SendError> {
        let (generation, conn) = self.link.current(deadline).await?;
        let mut slot = self.channel.lock().await;
        if let Some((g, ch)) = slot.as_ref() {
            if *g == generation && ch.status().connected() {
                return Ok(Ok((generation, ch.clone())));
            }
        }
        *slot = None;
        Ok(confirm_channel(&conn, PROBE_WAIT).await.map(|ch| {
            *slot = Some((generation, ch.clone()));
            (generation, ch)
        }))
    }

    /// Forget `ch` as the confirm channel (it failed or hangs), so the next attempt opens
    /// a new one.
    async fn discard(&self, ch: &Channel) {
        let mut slot = self.channel.lock().await;
        if slot.as_ref().is_some_and(|(_, c)| c.id() == ch.id()) {
            if let Some((_, old)) = slot.take() {
                if old.status().connected() {
                    let closing = old.clone();
                    tokio::spawn(async move {
                        let _ = closing.close(200, "OK".into()).await;
                    });
                }
            }
        }
    }

    /// Publish one message and wait for the broker's answer, retrying as the module says.
    pub(crate) async fn publish(&self, msg: &Outgoing<'_>) -> Result<Outcome, SendError> {
        let deadline = Instant::now() + self.patience;
        let mut soft_failures = 0;
        let mut last: Option<SendError> = None;
        loop {
            if Instant::now() >= deadline {
                return Err(
                    last.unwrap_or_else(|| SendError::Disconnected("publish timed out".into()))
                );
            }
            let (generation, ch) = match self.channel(deadline).await {
                Ok(Ok(open)) => open,
                Ok(Err(e)) => {
                    // The connection is failing: its replacement comes soon.
                    debug!(error = %e, "no channel to publish on yet");
                    last = Some(to_bus("opening a channel", &e));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(last.unwrap_or(e)),
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
            let answered = self.confirmed(attempt, generation, deadline).await;
            let err = match answered {
                Ok(Ok(Confirmation::Ack(returned))) => {
                    return Ok(if returned.is_some() {
                        Outcome::Returned
                    } else {
                        Outcome::Routed
                    });
                }
                Ok(Ok(Confirmation::NotRequested)) => return Ok(Outcome::Routed),
                Ok(Ok(Confirmation::Nack(_))) => {
                    return Err(SendError::Refused(format!(
                        "the broker nacked a message to {}",
                        msg.exchange
                    )));
                }
                Ok(Err(e)) => e,
                Err(Unanswered) => {
                    debug!(
                        exchange = msg.exchange,
                        "no confirm and the connection does not answer, publishing again"
                    );
                    self.discard(&ch).await;
                    continue;
                }
            };
            if is_channel_error(&err) {
                soft_failures += 1;
                let mapped = if is_not_found(&err) {
                    SendError::Refused(format!("exchange {} does not exist", msg.exchange))
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
            // A connection-level failure: the link opens a new connection; go again on it.
            debug!(error = %err, "publish interrupted, publishing again");
            last = Some(to_bus("publishing", &err));
            self.discard(&ch).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait for an attempt's confirm while its connection (`generation`) answers: every
    /// `confirm_wait` without the confirm, the connection is probed; [`Unanswered`] once
    /// a probe gets no answer, or the link has moved to another connection, or at
    /// `deadline`.
    async fn confirmed<T>(
        &self,
        attempt: impl std::future::Future<Output = T>,
        generation: u64,
        deadline: Instant,
    ) -> Result<T, Unanswered> {
        tokio::pin!(attempt);
        loop {
            let wait = self
                .confirm_wait
                .min(deadline.saturating_duration_since(Instant::now()));
            if let Ok(done) = tokio::time::timeout(wait, &mut attempt).await {
                return Ok(done);
            }
            if Instant::now() >= deadline || !self.connection_answers(generation).await {
                return Err(Unanswered);
            }
            debug!("no confirm yet; the broker answers, so it is busy: waiting on");
        }
    }

    /// Whether connection `generation` is still the link's and answers: a channel opened
    /// (and closed) on it within [`PROBE_WAIT`]. The broker's connection and channel
    /// processes answer this even while its queues are far behind.
    async fn connection_answers(&self, generation: u64) -> bool {
        match self.link.current(Instant::now()).await {
            Ok((g, conn)) if g == generation => probe(&conn).await,
            _ => false,
        }
    }
}

/// A new channel on `conn` in confirm mode (a returned `mandatory` message comes with its
/// confirm), opened `within` that time: a broker that accepted the connection may never
/// answer (then the error is lapin's invalid connection state).
pub(crate) async fn confirm_channel(
    conn: &lapin::Connection,
    within: Duration,
) -> lapin::Result<Channel> {
    let open = async {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(ch)
    };
    match tokio::time::timeout(within, open).await {
        Ok(opened) => opened,
        Err(_) => Err(lapin::Error::from(
            lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Error),
        )),
    }
}

/// Open a channel on `conn` within [`PROBE_WAIT`], and close it again.
async fn probe(conn: &lapin::Connection) -> bool {
    match tokio::time::timeout(PROBE_WAIT, conn.create_channel()).await {
        Ok(Ok(probe)) => {
            tokio::spawn(async move {
                let _ = probe.close(200, "OK".into()).await;
            });
            true
        }
        _ => false,
    }
}
