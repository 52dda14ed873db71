//! A node agent's link: its inbox queue, its group memberships, and what it sends.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{AttachError, NodeLink, NodePort, SendError, TapItem};
use async_trait::async_trait;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};
use magi_proto::{Call, NodeStatus, Record, Trigger};
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::Notify;
use tracing::warn;

use crate::amqp::error::{is_not_found, to_attach, to_bus};
use crate::amqp::names::{first_word, word};
use crate::amqp::publisher::{Outcome, Outgoing};
use crate::amqp::topology::{check_len, group_options, inbox_options, on_channel};
use crate::amqp::wire::{self, decode, Dropped};
use crate::amqp::{inbox, Shared};

/// Attach a node agent: declare its queue, bind it for node-addressed calls, consume it
/// exclusively (a second agent with the same name is refused). After a reconnection all of
/// this is done again, and the node's group memberships are applied again.
pub(crate) async fn attach(shared: Arc<Shared>, node: &str) -> Result<NodeLink, AttachError> {
    let names = &shared.names;
    let queue = names.node_queue(node);
    check_len("node queue", &queue)?;
    let memberships: Memberships = Arc::new(Mutex::new(BTreeSet::new()));
    let (args, lock_queue) = shared.inbox_kind(&queue, shared.opts.node_queue_expires);
    let spec = Arc::new(inbox::Inbox {
        queue: queue.clone(),
        options: inbox_options(),
        args,
        prefetch: shared.opts.node_prefetch,
        bindings: vec![(names.nodes_exchange(), names.node_binding(node))],
        consumer_tag: format!("magi-node.{}", word(node)),
        exclusive: true,
        lock: lock_queue,
    });
    let setup: inbox::Setup = {
        let (shared, node, memberships) = (shared.clone(), node.to_string(), memberships.clone());
        Arc::new(move |conn: Arc<Connection>| {
            let (shared, spec, node, memberships) = (
                shared.clone(),
                spec.clone(),
                node.clone(),
                memberships.clone(),
            );
            Box::pin(async move {
                let (ch, consumer, queue) = spec.open(&conn).await?;
                // Memberships normally survive (everything is durable); this repairs the
                // case where the queue expired during a long outage.
                let groups: Vec<(String, String)> = lock(&memberships).iter().cloned().collect();
                for (run, group) in groups {
                    if let Err(e) = bind_group(&shared, &queue, &run, &group).await {
                        warn!(node, run, group, error = %e, "could not re-join a group after reconnecting");
                    }
                }
                Ok((ch, consumer))
            })
        })
    };
    let deadline = Instant::now() + shared.opts.patience;
    let (ch, consumer) =
        inbox::establish(&shared.link, &setup, deadline, shared.opts.reply_timeout)
            .await
            .map_err(|e| to_attach(&format!("node {node}"), &e))?;

    let side = Arc::new(NodeSide {
        shared: shared.clone(),
        node: node.to_string(),
        queue,
        memberships,
        detached: AtomicBool::new(false),
        stop: Arc::new(Notify::new()),
    });
    let (tx, rx) = unbounded_channel();
    let (calls_ex, nodes_ex) = (names.calls_exchange(), names.nodes_exchange());
    let limit = shared.opts.max_message_bytes;
    inbox::spawn(
        format!("node {node}"),
        shared.link.clone(),
        setup,
        ch,
        consumer,
        tx,
        side.stop.clone(),
        move |d| {
            let sender = wire::sender(d)?;
            let mut call: Call = decode("call", d, limit)?;
            call.sender = Some(sender);
            let exchange = d.exchange.as_str();
            if exchange != calls_ex && exchange != nodes_ex {
                return Err(Dropped::Misrouted(format!(
                    "a call must come through {calls_ex} or {nodes_ex}"
                )));
            }
            if first_word(d.routing_key.as_str()) != word(&call.run) {
                return Err(Dropped::Misrouted(format!(
                    "a call of run {} sent under another run's key",
                    call.run
                )));
            }
            Ok(call)
        },
    );
    Ok(NodeLink {
        calls: rx,
        port: side,
    })
}

/// (run, group) pairs a node joined, re-applied after a reconnection.
type Memberships = Arc<Mutex<BTreeSet<(String, String)>>>;

fn lock(m: &Memberships) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
    // A panic elsewhere cannot leave the set half-updated (single inserts and removes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Declare the group's exchange, hang it off the calls exchange, bind `queue` to it. The
/// first two are done once per group by this bus (its other nodes wait for the first and
/// then only bind their queue: at N = 3000 the repeats were two of the five broker
/// operations of every join, and the broker's backlog made heartbeats 7 s late). A
/// concurrent last member leaving can auto-delete the exchange at any time; the broker
/// then answers 404 and the whole sequence runs again.
async fn bind_group(shared: &Shared, queue: &str, run: &str, group: &str) -> Result<(), SendError> {
    let names = &shared.names;
    let exchange = names.group_exchange(run, group);
    check_len("group exchange", &exchange)?;
    let key = names.group_key(run, group);
    let mut tries = 0;
    loop {
        tries += 1;
        let made = made_group(shared, &exchange);
        let result = async {
            made.get_or_try_init(|| make_group(shared, &exchange, &key))
                .await?;
            on_channel(&shared.link, &shared.opts, "joining a group", |ch| {
                let (queue, exchange) = (queue.to_string(), exchange.clone());
                async move {
                    ch.queue_bind(
                        queue.into(),
                        exchange.into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                }
            })
            .await
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if is_not_found(&e) => {
                forget_group(shared, &exchange, &made);
                if tries >= 3 {
                    return Err(to_bus(&format!("joining group {group} of run {run}"), &e));
                }
            }
            Err(e) => return Err(to_bus(&format!("joining group {group} of run {run}"), &e)),
        }
    }
}

/// The once-per-bus declaration of a group exchange.
fn made_group(shared: &Shared, exchange: &str) -> Arc<tokio::sync::OnceCell<()>> {
    let mut groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
    if groups.len() >= 1024 && !groups.contains_key(exchange) {
        // Only a cache: a long-lived node agent's runs come and go.
        groups.clear();
    }
    groups.entry(exchange.to_string()).or_default().clone()
}

/// The group exchange is gone (its last member left): the next join declares it again.
fn forget_group(shared: &Shared, exchange: &str, made: &Arc<tokio::sync::OnceCell<()>>) {
    let mut groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
    if groups.get(exchange).is_some_and(|m| Arc::ptr_eq(m, made)) {
        groups.remove(exchange);
    }
}

/// Declares a group's exchange and hangs it off the calls exchange under the group's key.
async fn make_group(shared: &Shared, exchange: &str, key: &str) -> Result<(), lapin::Error> {
    on_channel(&shared.link, &shared.opts, "joining a group", |ch| {
        let (exchange, key, calls) = (
            exchange.to_string(),
            key.to_string(),
            shared.names.calls_exchange(),
        );
        async move {
            ch.exchange_declare(
                exchange.clone().into(),
                ExchangeKind::Fanout,
                group_options(),
                FieldTable::default(),
            )
            .await?;
            ch.exchange_bind(
                exchange.into(),
                calls.into(),
                key.into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
        }
    })
    .await
}

/// The sending side of an attached node.
struct NodeSide {
    shared: Arc<Shared>,
    node: String,
    queue: String,
    /// (run, group) pairs joined, re-applied after a reconnect.
    memberships: Memberships,
    /// Set by the last announcement (`alive: false`).
    detached: AtomicBool,
    /// Stops the inbox task.
    stop: Arc<Notify>,
}

impl NodeSide {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        lock(&self.memberships)
    }

    fn check_attached(&self) -> Result<(), SendError> {
        if self.detached.load(Ordering::SeqCst) {
            return Err(SendError::Disconnected(format!(
                "node {} is detached",
                self.node
            )));
        }
        Ok(())
    }

    /// Send a trigger or record to its run's orchestrator, and its copy to taps.
    async fn to_run(
        &self,
        run: &str,
        kind: &str,
        body: Vec<u8>,
        value: impl FnOnce() -> serde_json::Value,
    ) -> Result<(), SendError> {
        self.check_attached()?;
        let names = &self.shared.names;
        let key = names.inbound_key(run, kind, &self.node);
        check_len("routing key", &key)?;
        let exchange = names.triggers_exchange();
        self.shared.watch_copy(run, kind, || TapItem {
            kind: kind.to_string(),
            run: Some(run.to_string()),
            group: None,
            nodes: vec![self.node.clone()],
            body: value(),
        });
        match self
            .shared
            .publish_sure(&exchange, &key, kind, &body)
            .await?
        {
            Outcome::Routed => Ok(()),
            Outcome::Returned => Err(SendError::NoRoute(format!("run {run} has no orchestrator"))),
        }
    }
}

#[async_trait]
impl NodePort for NodeSide {
    async fn join(&self, run: &str, group: &str) -> Result<(), SendError> {
        self.check_attached()?;
        bind_group(&self.shared, &self.queue, run, group).await?;
        self.lock().insert((run.to_string(), group.to_string()));
        Ok(())
    }

    async fn leave(&self, run: &str, group: &str) -> Result<(), SendError> {
        self.check_attached()?;
        let exchange = self.shared.names.group_exchange(run, group);
        check_len("group exchange", &exchange)?;
        // Unbinding from an exchange that is already gone succeeds on RabbitMQ.
        on_channel(
            &self.shared.link,
            &self.shared.opts,
            "leaving a group",
            |ch| {
                let (queue, exchange) = (self.queue.clone(), exchange.clone());
                async move {
                    ch.queue_unbind(
                        queue.into(),
                        exchange.into(),
                        "".into(),
                        FieldTable::default(),
                    )
                    .await
                }
            },
        )
        .await
        .map_err(|e| to_bus(&format!("leaving group {group} of run {run}"), &e))?;
        self.lock().remove(&(run.to_string(), group.to_string()));
        Ok(())
    }

    async fn send_trigger(&self, trigger: Trigger) -> Result<(), SendError> {
        let body = wire::encode("trigger", &trigger, self.shared.opts.max_message_bytes)?;
        let value = || serde_json::to_value(&trigger).unwrap_or_default();
        self.to_run(&trigger.run, "trigger", body, value).await
    }

    async fn send_record(&self, record: Record) -> Result<(), SendError> {
        let body = wire::encode("record", &record, self.shared.opts.max_message_bytes)?;
        let value = || serde_json::to_value(&record).unwrap_or_default();
        self.to_run(&record.run, "record", body, value).await
    }

    fn up_since(&self) -> Option<std::time::Instant> {
        self.shared.link.up_since()
    }

    async fn announce(&self, status: NodeStatus) -> Result<(), SendError> {
        self.check_attached()?;
        let names = &self.shared.names;
        let body = wire::encode("node status", &status, self.shared.opts.max_message_bytes)?;
        let key = names.status_key(&self.node);
        let msg = Outgoing {
            exchange: &names.status_exchange(),
            key: &key,
            body: &body,
            properties: wire::properties("node", false, self.shared.link.user()),
            mandatory: false,
        };
        self.shared.publisher.publish(&msg).await?;
        if !status.alive {
            // The last word of a node that stops: it leaves everything, its inbox goes.
            self.detached.store(true, Ordering::SeqCst);
            self.lock().clear();
            self.stop.notify_one();
            let why = format!("detaching node {}", self.node);
            self.shared.delete_inbox(&self.queue, &why).await?;
        }
        Ok(())
    }
}
