//! Declaring things on the broker: the global exchanges, the queue arguments, and the
//! short operations that membership changes and deletions are.
//!
//! A link's own queue, its bindings to global exchanges and its consumer are declared on
//! the link's consuming channel, and declared again by the link after a reconnection
//! (`inbox`). Group membership changes and deletions run on the link's lane (`lane`): a
//! channel of their own while they run, since a group exchange may be auto-deleted
//! concurrently and the broker's 404 closes the channel it was met on. The node link
//! re-applies its memberships itself after a reconnection.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::SendError;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use tracing::{debug, warn};

use crate::amqp::brokers::QueueKind;
use crate::amqp::error::{is_channel_error, is_not_found, to_bus};
use crate::amqp::link::Link;
use crate::amqp::names::Names;
use crate::amqp::BusOptions;

/// Kind of each global exchange: all topic, so that topic permissions apply to them.
pub(crate) fn global_kind() -> ExchangeKind {
    ExchangeKind::Topic
}

/// Options of the global exchanges: durable (they outlive broker restarts and runs).
pub(crate) fn global_options(passive: bool) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        passive,
        ..Default::default()
    }
}

/// Options of a group exchange: durable, and deleted by the broker when its last member
/// leaves (or its last member's queue expires).
pub(crate) fn group_options() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    }
}

/// Options of a node or run queue: durable and not exclusive, so that it and its messages
/// outlive a dropped connection and a broker restart; it expires once unused.
pub(crate) fn inbox_options() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Arguments of a queue: its kind, expiry, and optionally a length bound and a message TTL.
pub(crate) fn queue_args(
    kind: QueueKind,
    expires: Duration,
    max_length: Option<u32>,
    message_ttl: Option<Duration>,
) -> FieldTable {
    let mut args = FieldTable::default();
    if kind == QueueKind::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    args.insert("x-expires".into(), AMQPValue::LongInt(millis(expires)));
    if let Some(n) = max_length {
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongInt(i32::try_from(n).unwrap_or(i32::MAX)),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
    }
    if let Some(ttl) = message_ttl {
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(millis(ttl)));
    }
    args
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1)
}

/// Refuse names that AMQP cannot carry (over 255 bytes).
pub(crate) fn check_len(what: &str, name: &str) -> Result<(), SendError> {
    if name.len() > crate::amqp::names::MAX_NAME {
        return Err(SendError::Refused(format!(
            "{what} {name:?} is longer than AMQP's 255 bytes"
        )));
    }
    Ok(())
}

/// Deletes a link's queue (and so its bindings); `why` names the
/// operation in the error (`closing run r1`).
pub(crate) async fn delete_queue(
    link: &Link,
    opts: &BusOptions,
    queue: &str,
    why: &str,
) -> Result<(), crate::SendError> {
    on_channel(link, opts, "deleting a queue", |ch| {
        let queue = queue.to_string();
        async move {
            ch.queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
                .await
        }
    })
    .await
    .map(|_| ())
    .map_err(|e| crate::amqp::error::to_bus(why, &e))
}

/// The error of a broker operation that got no answer within `limit`: an I/O time-out, so
/// that it maps to [`SendError::Disconnected`] with this text.
pub(crate) fn no_answer(what: &str, limit: Duration) -> lapin::Error {
    lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the broker did not answer ({what}) within {:.1} s",
                limit.as_secs_f64()
            ),
        ),
    )))
}

/// Run `op` on a channel of the present connection, one the link kept from an earlier
/// operation or a new one (`lane`). While the broker is unreachable the op is retried (on
/// the next connection) until `opts.patience` runs out; a channel error (refused, not
/// found) is returned at once, since the broker has answered. The op fails with
/// [`no_answer`] once the broker has answered nothing on this link for
/// `opts.reply_timeout` (its turn, the channel opened, the op): the connection is up but
/// stuck, and another attempt on it would wait the same way.
pub(crate) async fn on_channel<F, Fut, T>(
    link: &Link,
    opts: &BusOptions,
    what: &str,
    mut op: F,
) -> Result<T, lapin::Error>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, lapin::Error>>,
{
    let deadline = Instant::now() + opts.patience;
    let lane = link.lane();
    loop {
        let (generation, conn) = link.current_lapin(deadline).await?;
        // Counted from each attempt: time spent without a connection is not the broker's
        // silence on one.
        let requested = tokio::time::Instant::now();
        let attempt = async {
            let _turn = lane.turn().await;
            let ch = match lane.take(generation) {
                Some(ch) => ch,
                None => {
                    let ch = conn.create_channel().await?;
                    lane.answered();
                    ch
                }
            };
            let r = op(ch.clone()).await;
            if r.as_ref().map_or_else(is_channel_error, |_| true) {
                lane.answered();
            }
            if r.is_ok() {
                if let Some(ch) = lane.keep(generation, ch) {
                    if ch.status().connected() {
                        let _ = ch.close(200, "OK".into()).await;
                    }
                }
            }
            r
        };
        let Some(result) = lane.bounded(requested, opts.reply_timeout, attempt).await else {
            warn!(
                what,
                broker = %link.broker(),
                limit_s = opts.reply_timeout.as_secs_f64(),
                "the broker did not answer"
            );
            return Err(no_answer(what, opts.reply_timeout));
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if is_channel_error(&e) => return Err(e),
            Err(e) => {
                if Instant::now() >= deadline || link.is_closed() {
                    return Err(e);
                }
                debug!(error = %e, what, "broker unavailable, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Make sure the global exchanges exist: a passive check first (which needs no permission,
/// so that an operator can pre-declare them and give clients no configure right on them),
/// then a declaration for those missing.
pub(crate) async fn ensure_globals(
    conn: &Link,
    names: &Names,
    opts: &BusOptions,
) -> Result<(), SendError> {
    for name in names.global_exchanges() {
        let exists = on_channel(conn, opts, "checking an exchange", |ch| {
            let name = name.clone();
            async move {
                ch.exchange_declare(
                    name.into(),
                    global_kind(),
                    global_options(true),
                    FieldTable::default(),
                )
                .await
            }
        })
        .await;
        match exists {
            Ok(()) => continue,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(to_bus(&format!("checking exchange {name}"), &e)),
        }
        on_channel(conn, opts, "declaring an exchange", |ch| {
            let name = name.clone();
            async move {
                ch.exchange_declare(
                    name.into(),
                    global_kind(),
                    global_options(false),
                    FieldTable::default(),
                )
                .await
            }
        })
        .await
        .map_err(|e| to_bus(&format!("declaring exchange {name}"), &e))?;
    }
    Ok(())
}
