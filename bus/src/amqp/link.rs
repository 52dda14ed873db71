//! The connection to the broker, kept up by the bus itself.
//!
//! lapin's own auto-recovery is not used: a broker restart could leave a connection that
//! never reconnects while publisher confirms on it are never answered, and its replay of
//! the channels stops at the first step that fails (see `docs/bus.md`, "Recovery"). Instead, a supervisor task watches the
//! connection; when it fails, it opens a new one (backoff `reconnect_min_delay` →
//! `reconnect_max_delay`, at most `reconnect_attempts` attempts) and publishes it as a new
//! *generation*. Everyone who uses the connection asks [`Link::current`] for the present
//! generation and rebuilds what it needs on it: the publisher its confirm channel, each
//! link's inbox its channel, queue, bindings, memberships and consumer.
//!
//! A broker option can name several brokers (the nodes of a cluster, `brokers`): the link
//! connects to the first that answers and, when its connection fails, tries the next ones
//! in turn (the one that failed last), so every kind of link fails over in this one place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::SendError;
use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, ConnectionState, ErrorKind, Event};
use magi_proto::redact_url as redact;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::amqp::brokers::Brokers;
use crate::amqp::lane::Lane;
use crate::amqp::BusOptions;

/// Where the connection stands.
#[derive(Clone)]
enum State {
    /// Generation `n` is up (as far as we know).
    Up(u64, Arc<Connection>),
    /// The last generation failed; a new one is being opened.
    Down,
    /// Closed by the application, or given up: why.
    Closed(String),
}

/// The bus's connection, replaced by a new one whenever it fails.
pub(crate) struct Link {
    /// The brokers to try, in order (one URL each).
    urls: Vec<String>,
    /// Index in `urls` of the broker of the present (or last) connection.
    using: AtomicUsize,
    name: String,
    opts: BusOptions,
    state: watch::Sender<State>,
    /// The broker user of the URL: what RabbitMQ proves about everything this link
    /// publishes (the `user_id` property must equal it).
    user: String,
    /// When the present connection came up.
    up_since: std::sync::Mutex<Instant>,
    /// Channels kept for short operations, and when the broker last answered one.
    lane: Lane,
}

impl Link {
    /// Connect, and start watching the connection.
    /// Connect to the first of `brokers` that answers, and start watching the connection.
    pub(crate) async fn connect(
        brokers: &Brokers,
        name: String,
        opts: BusOptions,
    ) -> Result<Arc<Link>, SendError> {
        let mut failures = Vec::new();
        let mut opened = None;
        for (i, url) in brokers.urls.iter().enumerate() {
            match open(url, &name, &opts).await {
                Ok(conn) => {
                    opened = Some((i, conn));
                    break;
                }
                Err(e) => {
                    if i + 1 < brokers.urls.len() {
                        warn!(broker = %redact(url), error = %e, "broker unavailable, trying the next");
                    }
                    failures.push(e)
                }
            }
        }
        let Some((index, conn)) = opened else {
            let last = failures.pop().expect("at least one broker");
            return Err(if failures.is_empty() {
                last
            } else {
                SendError::Disconnected(format!(
                    "none of the {} brokers answered; the last: {last}",
                    brokers.urls.len()
                ))
            });
        };
        let (state, _) = watch::channel(State::Up(1, Arc::new(conn)));
        let link = Arc::new(Link {
            urls: brokers.urls.clone(),
            using: AtomicUsize::new(index),
            name,
            opts,
            state,
            user: brokers.user.clone(),
            up_since: std::sync::Mutex::new(Instant::now()),
            lane: Lane::default(),
        });
        tokio::spawn(supervise(Arc::downgrade(&link)));
        Ok(link)
    }

    /// The present connection and its generation, waiting until `deadline` for one while
    /// the broker is unreachable.
    pub(crate) async fn current(
        &self,
        deadline: Instant,
    ) -> Result<(u64, Arc<Connection>), SendError> {
        let mut rx = self.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                State::Up(n, conn) => return Ok((*n, conn.clone())),
                State::Closed(why) => return Err(SendError::Disconnected(why.clone())),
                State::Down => {}
            }
            match tokio::time::timeout_at(deadline.into(), rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(SendError::Disconnected("the bus is closed".into())),
                Err(_) => {
                    return Err(SendError::Disconnected(
                        "the broker stayed unreachable".into(),
                    ))
                }
            }
        }
    }

    /// Like [`Link::current`], as a lapin error (for code that maps lapin errors).
    pub(crate) async fn current_lapin(
        &self,
        deadline: Instant,
    ) -> Result<(u64, Arc<Connection>), lapin::Error> {
        self.current(deadline).await.map_err(|e| {
            debug!(error = %e, "no connection");
            lapin::Error::from(ErrorKind::InvalidConnectionState(ConnectionState::Closed))
        })
    }

    /// The channels and answer clock of this link's short operations.
    pub(crate) fn lane(&self) -> &Lane {
        &self.lane
    }

    /// The broker of the present (or last) connection, its password hidden.
    pub(crate) fn broker(&self) -> String {
        redact(&self.urls[self.using.load(Ordering::SeqCst) % self.urls.len()])
    }

    /// The broker user this link publishes as.
    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    /// Since when the present connection has been up; `None` during an outage (as far as
    /// the supervisor, or the connection itself, knows).
    pub(crate) fn up_since(&self) -> Option<Instant> {
        match &*self.state.borrow() {
            State::Up(_, conn) if conn.status().connected() => {
                Some(*self.up_since.lock().unwrap_or_else(|p| p.into_inner()))
            }
            _ => None,
        }
    }

    /// True once the bus is closed or has given up reconnecting.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(*self.state.borrow(), State::Closed(_))
    }

    /// Close the connection for good; every link of the bus ends.
    pub(crate) async fn close(&self) {
        let old = self
            .state
            .send_replace(State::Closed("the bus is closed".into()));
        if let State::Up(_, conn) = old {
            // A broker that never answers the close (a blocked connection) must not hold
            // the application: past `reply_timeout` the connection is dropped unclosed.
            let limit = self.opts.reply_timeout;
            if tokio::time::timeout(limit, conn.close(200, "bye".into()))
                .await
                .is_err()
            {
                warn!(
                    broker = %self.broker(),
                    limit_s = limit.as_secs_f64(),
                    "the broker did not answer the connection's close; dropped it unclosed"
                );
            }
        }
    }
}

/// Open one connection: a TCP probe first (a broker that is not even listening is reported
/// at once), then the AMQP handshake, both bounded by `connect_timeout`.
pub(crate) async fn open(
    url: &str,
    name: &str,
    opts: &BusOptions,
) -> Result<Connection, SendError> {
    // No lapin auto-recovery (the supervisor replaces failed connections), and no retry
    // of the first connection inside lapin either: the caller retries.
    let props = ConnectionProperties::default()
        .with_connection_name(name.to_string().into())
        .configure_backoff(|b| b.with_max_times(1));
    let uri: lapin::uri::AMQPUri = url
        .parse()
        .map_err(|e| SendError::Refused(format!("invalid broker URL {}: {e}", redact(url))))?;
    let addr = (uri.authority.host.clone(), uri.authority.port);
    match tokio::time::timeout(opts.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_probe)) => {}
        Ok(Err(e)) => {
            return Err(SendError::Disconnected(format!(
                "cannot reach {}: {e}",
                redact(url)
            )))
        }
        Err(_) => {
            return Err(SendError::Disconnected(format!(
                "no answer from {}",
                redact(url)
            )))
        }
    }
    tokio::time::timeout(opts.connect_timeout, Connection::connect(url, props))
        .await
        .map_err(|_| SendError::Disconnected(format!("no answer from {}", redact(url))))?
        .map_err(|e| crate::amqp::error::to_bus(&format!("connecting to {}", redact(url)), &e))
}

/// Watch the present connection; when it fails, open a new one with backoff and publish it.
/// Ends when the bus is closed or dropped, or when the attempts are exhausted.
async fn supervise(link: Weak<Link>) {
    loop {
        let (n, conn, mut rx) = {
            let Some(l) = link.upgrade() else { return };
            let mut rx = l.state.subscribe();
            let State::Up(n, conn) = rx.borrow_and_update().clone() else {
                return;
            };
            (n, conn, rx)
        };
        let mut events = Box::pin(conn.events_listener());
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // Why the connection ended, as lapin reported it (a broker's close, a missed
        // heartbeat, an I/O error), for the warning below.
        let mut why = None;
        loop {
            if !conn.status().connected() {
                break;
            }
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Error(e)) => {
                        debug!(error = %e, "connection error event");
                        why = Some(e.to_string());
                    }
                    Some(_) => {}
                    None => {
                        // No more events: the connection is gone; the status tells.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = tick.tick() => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return; // the bus was dropped
                    }
                    if matches!(*rx.borrow(), State::Closed(_)) {
                        return;
                    }
                }
            }
        }
        drop(events);
        drop(conn);
        let Some(l) = link.upgrade() else { return };
        if l.is_closed() {
            // Closed by the application (its close ended the connection before the state
            // change woke us): not a loss.
            return;
        }
        warn!(
            generation = n,
            broker = %l.broker(),
            error = why.as_deref().unwrap_or("none reported"),
            "connection to the broker lost, reconnecting"
        );
        let replaced = l.state.send_if_modified(|s| match s {
            State::Up(m, _) if *m == n => {
                *s = State::Down;
                true
            }
            _ => false,
        });
        if !replaced {
            return; // closed meanwhile
        }
        let (min, max, attempts) = (
            l.opts.reconnect_min_delay,
            l.opts.reconnect_max_delay,
            l.opts.reconnect_attempts.max(1),
        );
        // The brokers in turn, starting with the one after the broker that failed (which
        // is tried last: with one broker, it is the only one); the delay doubles after
        // each round.
        let (failed, count) = (l.using.load(Ordering::SeqCst), l.urls.len());
        drop(l);
        let mut delay = min;
        let mut tries = 0;
        loop {
            tokio::time::sleep(delay).await;
            let Some(l) = link.upgrade() else { return };
            if matches!(*l.state.borrow(), State::Closed(_)) {
                return;
            }
            tries += 1;
            let index = (failed + tries) % count;
            match open(&l.urls[index], &l.name, &l.opts).await {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    let installed = l.state.send_if_modified(|s| match s {
                        State::Down => {
                            *l.up_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                            l.using.store(index, Ordering::SeqCst);
                            *s = State::Up(n + 1, conn.clone());
                            true
                        }
                        _ => false,
                    });
                    if !installed {
                        let _ = conn.close(200, "bye".into()).await;
                        return;
                    }
                    info!(
                        generation = n + 1,
                        tries,
                        broker = %l.broker(),
                        "reconnected to the broker"
                    );
                    break;
                }
                Err(e) => {
                    debug!(error = %e, tries, broker = %redact(&l.urls[index]), "reconnection failed");
                    if tries >= attempts {
                        warn!(error = %e, tries, "giving up reconnecting to the broker");
                        l.state.send_replace(State::Closed(format!(
                            "the broker stayed unreachable after {tries} attempts: {e}"
                        )));
                        return;
                    }
                    if tries % count == 0 {
                        delay = (delay * 2).min(max);
                    }
                }
            }
        }
    }
}
