//! # amqp: the MAGI-rs bus over RabbitMQ
//!
//! [`AmqpBus`] implements [`crate::Bus`] with lapin, with the same behaviour as the
//! in-process `MemoryBus`: a group call reaches exactly the members of that group of that
//! run, a call nobody receives is [`SendError::NoRoute`], triggers reach only their run's
//! orchestrator, and taps see everything without anyone's cooperation.
//!
//! Layout of the crate:
//! - [`names`]: every exchange, queue and routing key (the topology is in `docs/bus.md`);
//! - `wire`: JSON bodies, properties, inbound checks, duplicate suppression;
//! - `brokers`: the broker option (one broker, or several: a cluster) and the queue kind;
//! - `link`: the connection, replaced by a new one (on the next broker) whenever it fails;
//! - `publisher`: confirms + `mandatory`, retried through outages;
//! - `copier`: the tap copies, made only while some tap may want them;
//! - `topology`: declarations and short-lived channels;
//! - `inbox`: the consumer task shared by node, run and tap links;
//! - `node`, `run`, `tap`: the three kinds of link;

pub mod brokers;
pub mod names;

mod copier;
mod error;
mod inbox;
mod lane;
mod link;
mod node;
mod publisher;
mod run;
mod tap;
mod topology;
mod wire;

#[cfg(test)]
use magi_proto::redact_url as redact;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{AttachError, Bus, ConnectError, NodeLink, RunLink, SendError, TapItem, TapLink};
use async_trait::async_trait;
use tracing::warn;

pub use brokers::{Brokers, QueueKind};
pub use names::Names;
pub use wire::DEFAULT_MAX_MESSAGE;

use publisher::{Outcome, Outgoing, Publisher};

/// The log filter for lapin that binaries add to their own: lapin's warnings, but neither
/// its ERROR line for every channel the broker closes nor its WARN line (with the whole
/// message) for every `mandatory` message the broker returns. The bus reports each of
/// those to its caller in its own words, and most are expected: the passive check of an
/// exchange that does not exist yet (a node agent starting before any orchestrator declared
/// the global exchanges) closes its channel with 404, and the first tap copy of a call or
/// trigger that no tap wants comes back (`copier.rs`). `RUST_LOG=lapin=debug` shows them all.
pub const LAPIN_LOG_FILTER: &str = "lapin=warn,lapin::channel=off,lapin::returned_messages=off";

/// A binary's log filter: `given` (`info`, `warn,magi_node=debug` ...) with
/// [`LAPIN_LOG_FILTER`] added, unless `given` says itself what lapin should log.
pub fn log_filter(given: &str) -> String {
    if given.split(',').any(|d| d.trim().starts_with("lapin")) {
        given.to_string()
    } else {
        format!("{given},{LAPIN_LOG_FILTER}")
    }
}

/// How a bus names things and how patient, bounded and forgiving it is.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Prefix of every exchange and queue (`magi.`; tests use a unique one).
    pub prefix: String,
    /// Connection name shown by `rabbitmqctl list_connections` (default: the program name).
    pub connection_name: Option<String>,
    /// A node queue left without consumer this long is deleted by the broker, with its
    /// memberships.
    pub node_queue_expires: Duration,
    /// A run queue left without consumer this long is deleted by the broker.
    pub run_queue_expires: Duration,
    /// An abandoned tap queue is deleted after this long.
    pub tap_queue_expires: Duration,
    /// A tap queue holds at most this many messages; the oldest are dropped first.
    pub tap_max_length: u32,
    /// A sender whose copy of a run's calls, triggers or records no tap took makes no
    /// such copy for this long; a tap opened meanwhile sees them after at most this.
    pub tap_quiet: Duration,
    /// A run's status queue holds at most this many node statuses; the oldest are dropped
    /// first (a node's newest heartbeat says all its older ones did).
    pub status_max_length: u32,
    /// Unacknowledged calls a node agent may hold.
    pub node_prefetch: u16,
    /// Unacknowledged triggers, records and heartbeats an orchestrator may hold.
    pub run_prefetch: u16,
    /// Unacknowledged messages a tap may hold.
    pub tap_prefetch: u16,
    /// Largest message sent or accepted; larger inbound messages are logged and dropped.
    pub max_message_bytes: usize,
    /// How long `connect` waits for a broker that does not answer.
    pub connect_timeout: Duration,
    /// How long an operation keeps retrying through a broker outage before it fails with
    /// [`SendError::Disconnected`].
    pub patience: Duration,
    /// How long one broker operation (a declaration, a deletion, a binding, a channel
    /// opened or closed, the connection closed) may wait for the broker's answer. A broker
    /// that has accepted the request but never answers (a connection it has blocked, a
    /// cluster node stuck on a queue's Raft group) would otherwise hold the caller for
    /// ever; past this the operation fails with [`SendError::Disconnected`] naming it.
    pub reply_timeout: Duration,
    /// How long a publish waits for the broker's confirm before it asks whether the
    /// connection still answers (it is sent again only if not: a busy broker is waited for).
    pub confirm_wait: Duration,
    /// Calls not consumed by a node within this time are discarded (none by default).
    pub call_ttl: Option<Duration>,
    /// First delay between reconnection attempts (doubles up to `reconnect_max_delay`).
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// Broker users an orchestrator accepts triggers, records and statuses from whatever
    /// node they name, besides its own user (which is how an open broker, where everyone
    /// is `guest`, keeps working). Anyone else speaks only for the node of its own name.
    pub trusted_senders: Vec<String>,
    /// Failed reconnection attempts in a row before the connection is given up.
    pub reconnect_attempts: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            prefix: "magi.".into(),
            connection_name: None,
            node_queue_expires: Duration::from_secs(600),
            run_queue_expires: Duration::from_secs(600),
            tap_queue_expires: Duration::from_secs(60),
            tap_max_length: 10_000,
            tap_quiet: Duration::from_secs(5),
            status_max_length: 100_000,
            node_prefetch: 32,
            run_prefetch: 256,
            tap_prefetch: 1000,
            max_message_bytes: DEFAULT_MAX_MESSAGE,
            connect_timeout: Duration::from_secs(30),
            patience: Duration::from_secs(300),
            reply_timeout: Duration::from_secs(120),
            confirm_wait: Duration::from_secs(15),
            call_ttl: None,
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(2),
            reconnect_attempts: 200,
            trusted_senders: Vec::new(),
        }
    }
}

impl BusOptions {
    /// Default options under another name prefix.
    pub fn with_prefix(prefix: &str) -> Self {
        BusOptions {
            prefix: prefix.to_string(),
            ..Self::default()
        }
    }
}

/// What every link of one bus shares: the connection, the names, the options, the publisher.
pub(crate) struct Shared {
    pub(crate) link: Arc<link::Link>,
    pub(crate) names: Names,
    pub(crate) opts: BusOptions,
    pub(crate) publisher: Publisher,
    /// The kind of the node and run queues.
    pub(crate) queues: QueueKind,
    /// Tap copies (see `copier`).
    pub(crate) copier: copier::Copier,
    /// Group exchanges this bus has declared and hung off the calls exchange (see
    /// `node::bind_group`): set once per group, by whichever of its nodes joins first.
    pub(crate) groups: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
}

impl Shared {
    /// Queue the copy of a message of `run` that taps see, made by `item` only if some tap
    /// may want it (`copier`). Taps are observers: a copy that cannot be sent is logged,
    /// never reported to the sender.
    pub(crate) fn watch_copy(&self, run: &str, kind: &str, item: impl FnOnce() -> TapItem) {
        let limit = self.opts.max_message_bytes.saturating_mul(2);
        self.copier
            .offer(self.names.watch_key(run, kind), kind, || {
                wire::encode("tap copy", &item(), limit)
                    .inspect_err(|e| warn!(error = %e, "tap copy not sent"))
                    .ok()
            });
    }

    /// How a node's or run's inbox is declared and consumed: its queue's arguments, and
    /// whether a second consumer is kept out by an exclusive consumer (classic queues) or
    /// by an exclusive lock queue held by the consuming connection (quorum queues accept
    /// a second "exclusive" consumer: checked on RabbitMQ 3.10).
    pub(crate) fn inbox_kind(
        &self,
        queue: &str,
        expires: std::time::Duration,
    ) -> (lapin::types::FieldTable, Option<String>) {
        let args = topology::queue_args(self.queues, expires, None, None);
        let lock = (self.queues == QueueKind::Quorum).then(|| self.names.lock_queue(queue));
        (args, lock)
    }

    /// Deletes a node's or run's inbox queue (and so its bindings), then its lock queue.
    pub(crate) async fn delete_inbox(&self, queue: &str, why: &str) -> Result<(), SendError> {
        topology::delete_queue(&self.link, &self.opts, queue, why).await?;
        if self.queues == QueueKind::Quorum {
            let lock = self.names.lock_queue(queue);
            topology::delete_queue(&self.link, &self.opts, &lock, why).await?;
        }
        Ok(())
    }

    /// Publish a message that must arrive: persistent, mandatory, confirmed.
    pub(crate) async fn publish_sure(
        &self,
        exchange: &str,
        key: &str,
        kind: &str,
        body: &[u8],
    ) -> Result<Outcome, SendError> {
        self.publish_confirmed(exchange, key, kind, body, None)
            .await
    }

    /// [`Shared::publish_sure`], or, with `fleeting`, a message worth nothing after that
    /// long: transient (no disk write in any queue) and expiring there. A node's `runAlive`
    /// is one: a newer one follows every period, and while the broker writes an agent
    /// archive into a thousand queues a persistent one waited seconds behind it (nodes'
    /// dead-man switches fired).
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        key: &str,
        kind: &str,
        body: &[u8],
        fleeting: Option<std::time::Duration>,
    ) -> Result<Outcome, SendError> {
        let mut properties = wire::properties(kind, fleeting.is_none(), self.link.user());
        let ttl = fleeting.or(self.opts.call_ttl.filter(|_| kind == "call"));
        if let Some(ttl) = ttl {
            properties = properties.with_expiration(ttl.as_millis().to_string().into());
        }
        let msg = Outgoing {
            exchange,
            key,
            body,
            properties,
            mandatory: true,
        };
        self.publisher.publish(&msg).await
    }
}

/// The bus over RabbitMQ. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct AmqpBus {
    shared: Arc<Shared>,
}

impl AmqpBus {
    /// Connect to the broker at `url` (`amqp://user:pass@host:5672/vhost`; `%2f` is `/`;
    /// `?heartbeat=10` is advised), or to the first that answers of several brokers
    /// ([`Brokers`]: `amqp://u:p@b1,b2,b3/vhost`, or URLs separated by commas), and make
    /// sure the global exchanges exist.
    pub async fn connect(url: &str, options: BusOptions) -> Result<AmqpBus, ConnectError> {
        let name = options
            .connection_name
            .clone()
            .unwrap_or_else(|| std::env::args().next().unwrap_or_else(|| "magi".into()));
        let mut brokers = Brokers::parse(url)?;
        for u in &mut brokers.urls {
            *u = with_frame_max(u);
        }
        let conn = link::Link::connect(&brokers, name, options.clone()).await?;
        let names = Names::new(&options.prefix);
        topology::ensure_globals(&conn, &names, &options).await?;
        let publisher = Publisher::new(conn.clone(), options.patience, options.confirm_wait);
        let copier = copier::Copier::spawn(conn.clone(), names.watch_exchange(), options.tap_quiet);
        Ok(AmqpBus {
            shared: Arc::new(Shared {
                link: conn,
                names,
                opts: options,
                publisher,
                queues: brokers.queues,
                copier,
                groups: Default::default(),
            }),
        })
    }

    /// The broker this bus is connected to now (or was last), its password hidden.
    pub fn broker(&self) -> String {
        self.shared.link.broker()
    }

    /// The kind of this bus's node and run queues.
    pub fn queue_kind(&self) -> QueueKind {
        self.shared.queues
    }

    /// The names this bus uses.
    pub fn names(&self) -> &Names {
        &self.shared.names
    }

    /// The options this bus was made with.
    pub fn options(&self) -> &BusOptions {
        &self.shared.opts
    }
}

/// The URL with `frame_max=131072` unless it names one. Without it lapin sizes its two
/// socket buffers before the broker's frame_max is known, then grows and zero-fills them:
/// 2 × 4 MiB resident in every node agent (measured by magi-bench: 14.5 → 7.1 MiB idle).
pub fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&frame_max=131072")
    } else {
        format!("{url}?frame_max=131072")
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn attach_node(&self, node: &str) -> Result<NodeLink, AttachError> {
        node::attach(self.shared.clone(), node).await
    }

    async fn open_run(&self, run: &str) -> Result<RunLink, AttachError> {
        run::open(self.shared.clone(), run).await
    }

    async fn tap(&self, run: Option<&str>) -> Result<TapLink, AttachError> {
        tap::open(self.shared.clone(), run).await
    }

    async fn close(&self) {
        self.shared.link.close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("amqp://bob:secret@h:5672/%2f"),
            "amqp://bob:***@h:5672/%2f"
        );
        assert_eq!(super::redact("amqp://h"), "amqp://h");
    }

    #[test]
    fn a_given_log_filter_keeps_lapin_quiet_unless_it_names_lapin() {
        let f = super::log_filter("warn");
        assert!(
            f.starts_with("warn,") && f.contains("lapin::returned_messages=off"),
            "{f}"
        );
        assert_eq!(super::log_filter("info,lapin=debug"), "info,lapin=debug");
        assert_eq!(
            super::log_filter("info, lapin::channel=info"),
            "info, lapin::channel=info"
        );
    }
}
