//! An orchestrator's link for one run: the run's inbox queue and the calls it publishes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{AttachError, Delivered, Forgery, Inbound, RunLink, RunPort, SendError, TapItem};
use async_trait::async_trait;
use lapin::options::ExchangeDeleteOptions;
use magi_proto::{method, Call, DaemonCall, NodeStatus, Record, Trigger, DAEMON_DOCK};
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::Notify;
use tracing::warn;

use crate::amqp::error::{to_attach, to_bus};
use crate::amqp::names::word;
use crate::amqp::publisher::Outcome;
use crate::amqp::topology::{check_len, delete_queue, inbox_options, on_channel, queue_args};
use crate::amqp::wire::{self, decode, Dropped};
use crate::amqp::{inbox, Shared};

/// Open a run: declare its two queues, one for the run's triggers and records, one for
/// every node's status, and consume both exclusively (a second orchestrator of the same run
/// is refused). Statuses have a queue of their own so that triggers never wait behind them:
/// at N = 10,000 nodes the heartbeats alone are 5,000 messages a second, and in one queue
/// the nodes' `AgentLoadDone`s waited behind 1.45 million of them.
pub(crate) async fn open(shared: Arc<Shared>, run: &str) -> Result<RunLink, AttachError> {
    let names = &shared.names;
    let queue = names.run_queue(run);
    let status_queue = names.run_status_queue(run);
    check_len("run queue", &status_queue)?;
    let expires = shared.opts.run_queue_expires;
    let (args, lock) = shared.inbox_kind(&queue, expires);
    let tag = word(run);
    let setup = inbox::Inbox {
        queue: queue.clone(),
        options: inbox_options(),
        args,
        prefetch: shared.opts.run_prefetch,
        bindings: vec![(names.triggers_exchange(), names.run_binding(run))],
        consumer_tag: format!("magi-run.{tag}"),
        exclusive: true,
        lock,
    }
    .setup();
    // Bounded, oldest dropped first; no lock of its own: the run queue's consumer (or
    // lock) is what keeps a second orchestrator out, and it is taken first.
    let status_setup = inbox::Inbox {
        queue: status_queue.clone(),
        options: inbox_options(),
        args: queue_args(
            shared.queues,
            expires,
            Some(shared.opts.status_max_length),
            None,
        ),
        prefetch: shared.opts.run_prefetch,
        bindings: vec![(names.status_exchange(), "#".to_string())],
        consumer_tag: format!("magi-run-status.{tag}"),
        exclusive: true,
        lock: None,
    }
    .setup();
    let deadline = Instant::now() + shared.opts.patience;
    let opened = |setup| {
        let shared = shared.clone();
        async move {
            inbox::establish(&shared.link, &setup, deadline, shared.opts.reply_timeout)
                .await
                .map_err(|e| to_attach(&format!("run {run}"), &e))
        }
    };
    let (ch, consumer) = opened(setup.clone()).await?;
    let (status_ch, status_consumer) = match opened(status_setup.clone()).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ch.close(200, "OK".into()).await;
            return Err(e);
        }
    };

    let (tx, rx) = unbounded_channel();
    let (triggers_ex, status_ex) = (names.triggers_exchange(), names.status_exchange());
    let limit = shared.opts.max_message_bytes;
    let me = run.to_string();
    let mut trusted = shared.opts.trusted_senders.clone();
    trusted.push(shared.link.user().to_string());
    let stops = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    let vouched = trusted.clone();
    inbox::spawn(
        format!("run {run} (statuses)"),
        shared.link.clone(),
        status_setup,
        status_ch,
        status_consumer,
        tx.clone(),
        stops[1].clone(),
        move |d| {
            let sender = wire::sender(d)?;
            if d.exchange.as_str() != status_ex {
                return Err(Dropped::Misrouted(format!(
                    "a run's statuses must come through {status_ex}"
                )));
            }
            let status: NodeStatus = decode("node status", d, limit)?;
            Ok(vouch(
                &vouched,
                &sender,
                "node",
                std::slice::from_ref(&status.node),
                "",
            )
            .unwrap_or(Inbound::Node(status)))
        },
    );
    inbox::spawn(
        format!("run {run}"),
        shared.link.clone(),
        setup,
        ch,
        consumer,
        tx,
        stops[0].clone(),
        move |d| {
            let sender = wire::sender(d)?;
            if d.exchange.as_str() != triggers_ex {
                return Err(Dropped::Misrouted(format!(
                    "a run's messages must come through {triggers_ex}"
                )));
            }
            let mut parts = d.routing_key.as_str().split('.');
            let (key_run, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (inbound, its_run) = match kind {
                "trigger" => {
                    let mut t: Trigger = decode("trigger", d, limit)?;
                    // As in the original, a trigger that names no node is its sender's.
                    if t.nodes.is_empty() {
                        t.nodes.push(sender.clone());
                    }
                    let r = t.run.clone();
                    let forged = vouch(&trusted, &sender, "trigger", &t.nodes, &t.event);
                    (forged.unwrap_or(Inbound::Trigger(t)), r)
                }
                "record" => {
                    let r: Record = decode("record", d, limit)?;
                    let run = r.run.clone();
                    let forged = vouch(
                        &trusted,
                        &sender,
                        "record",
                        std::slice::from_ref(&r.host),
                        &r.agent,
                    );
                    (forged.unwrap_or(Inbound::Record(r)), run)
                }
                other => {
                    return Err(Dropped::Misrouted(format!(
                        "unknown message kind {other:?}"
                    )))
                }
            };
            if its_run != me || key_run != word(&me) {
                return Err(Dropped::Misrouted(format!(
                    "a message of run {its_run} in the queue of run {me}"
                )));
            }
            Ok(inbound)
        },
    );
    let side = RunSide {
        shared,
        run: run.to_string(),
        queue,
        status_queue,
        groups: Mutex::new(BTreeSet::new()),
        stops,
    };
    Ok(RunLink {
        inbound: rx,
        port: Arc::new(side),
    })
}

/// The sending side of an open run.
struct RunSide {
    shared: Arc<Shared>,
    run: String,
    queue: String,
    /// Its status queue.
    status_queue: String,
    /// Groups this run published to or told nodes to join, deleted by `close`.
    groups: Mutex<BTreeSet<String>>,
    /// Stop the two inboxes' tasks (triggers and records, statuses).
    stops: [Arc<Notify>; 2],
}

impl RunSide {
    fn check_call(&self, call: &Call) -> Result<Vec<u8>, SendError> {
        if call.run != self.run {
            return Err(SendError::Refused(format!(
                "a call of run {} cannot be published in run {}",
                call.run, self.run
            )));
        }
        wire::encode("call", call, self.shared.opts.max_message_bytes)
    }

    /// Nodes declare the groups they join; remember the groups a `joinGroup` call names so
    /// that `close` finds them.
    fn note_join(&self, call: &Call) {
        if call.dock != DAEMON_DOCK || call.method != method::JOIN_GROUP {
            return;
        }
        if let Ok(DaemonCall::JoinGroup(g)) = DaemonCall::from_call(call) {
            self.groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(g.group);
        }
    }

    fn copy(&self, group: Option<&str>, nodes: &[String], call: &Call) -> TapItem {
        TapItem {
            kind: "call".into(),
            run: Some(self.run.clone()),
            group: group.map(str::to_string),
            nodes: nodes.to_vec(),
            body: serde_json::to_value(call).unwrap_or_default(),
        }
    }
}

/// How long a call is worth anything, if not for ever: `runAlive` only until the node's
/// dead-man switch would have fired without it (10 s by default, or three of the periods
/// the call states, up to the 60 s a node takes; see `Shared::publish_confirmed`).
fn fleeting(call: &Call) -> Option<std::time::Duration> {
    use std::time::Duration;
    if call.dock != DAEMON_DOCK || call.method != method::RUN_ALIVE {
        return None;
    }
    let stated = match DaemonCall::from_call(call) {
        Ok(DaemonCall::RunAlive(alive)) => alive.alive_ms.unwrap_or(0),
        _ => 0,
    };
    Some(Duration::from_secs(10).max(Duration::from_millis(stated.min(60_000) * 3)))
}

#[async_trait]
impl RunPort for RunSide {
    async fn publish_group(&self, group: &str, call: Call) -> Result<Delivered, SendError> {
        let body = self.check_call(&call)?;
        self.note_join(&call);
        let names = &self.shared.names;
        check_len("group exchange", &names.group_exchange(&self.run, group))?;
        let key = names.group_key(&self.run, group);
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string());
        let exchange = names.calls_exchange();
        self.shared
            .watch_copy(&self.run, "call", || self.copy(Some(group), &[], &call));
        match self
            .shared
            .publish_confirmed(&exchange, &key, "call", &body, fleeting(&call))
            .await?
        {
            // AMQP only tells "at least one queue".
            Outcome::Routed => Ok(Delivered { receivers: None }),
            Outcome::Returned => Err(SendError::NoRoute(format!("group {group}"))),
        }
    }

    async fn publish_nodes(&self, nodes: &[String], call: Call) -> Result<Delivered, SendError> {
        let body = self.check_call(&call)?;
        self.note_join(&call);
        let names = &self.shared.names;
        let exchange = names.nodes_exchange();
        let keys: Vec<String> = nodes.iter().map(|n| names.node_key(&self.run, n)).collect();
        for key in &keys {
            check_len("routing key", key)?;
        }
        let lifetime = fleeting(&call);
        let sends = futures_util::future::join_all(keys.iter().map(|k| {
            self.shared
                .publish_confirmed(&exchange, k, "call", &body, lifetime)
        }));
        self.shared
            .watch_copy(&self.run, "call", || self.copy(None, nodes, &call));
        let outcomes = sends.await;
        let mut receivers = 0;
        for outcome in outcomes {
            if outcome? == Outcome::Routed {
                receivers += 1;
            }
        }
        if receivers == 0 {
            let named = magi_proto::some_names(nodes, 10);
            return Err(SendError::NoRoute(format!("nodes {named}")));
        }
        Ok(Delivered {
            receivers: Some(receivers),
        })
    }

    fn up_since(&self) -> Option<std::time::Instant> {
        self.shared.link.up_since()
    }

    async fn close(&self) -> Result<(), SendError> {
        self.stops.iter().for_each(|s| s.notify_one());
        let shared = &self.shared;
        let why = format!("closing run {}", self.run);
        shared.delete_inbox(&self.queue, &why).await?;
        delete_queue(&shared.link, &shared.opts, &self.status_queue, &why).await?;
        let groups: Vec<String> = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for group in groups {
            let exchange = shared.names.group_exchange(&self.run, &group);
            on_channel(&shared.link, &shared.opts, "deleting a group", |ch| {
                let exchange = exchange.clone();
                async move {
                    ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                        .await
                }
            })
            .await
            .map_err(|e| to_bus(&format!("deleting group {group} of run {}", self.run), &e))?;
        }
        Ok(())
    }
}

/// `None` when `sender` may speak for every node of `claimed` (it is that node, or a
/// trusted user); otherwise the forgery, logged, to be reported instead of the message.
fn vouch(
    trusted: &[String],
    sender: &str,
    kind: &'static str,
    claimed: &[String],
    what: &str,
) -> Option<Inbound> {
    if trusted.iter().any(|t| t == sender) || claimed.iter().all(|n| n == sender) {
        return None;
    }
    warn!(
        sender,
        ?claimed,
        kind,
        what,
        "dropped: broker user {sender} may speak only for node {sender}"
    );
    Some(Inbound::Forged(Forgery {
        kind,
        sender: sender.to_string(),
        claimed: claimed.to_vec(),
        what: what.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use magi_proto::daemon::Alive;
    use std::time::Duration;

    #[test]
    fn a_run_alive_expires_when_the_nodes_dead_man_would_have_fired_without_it() {
        let alive = |alive_ms| DaemonCall::RunAlive(Alive { alive_ms }).call("r");
        assert_eq!(fleeting(&alive(None)), Some(Duration::from_secs(10)));
        assert_eq!(fleeting(&alive(Some(2000))), Some(Duration::from_secs(10)));
        assert_eq!(
            fleeting(&alive(Some(10_000))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            fleeting(&alive(Some(u64::MAX))),
            Some(Duration::from_secs(180))
        );
        assert_eq!(
            fleeting(&DaemonCall::EndRun {}.call("r")),
            None,
            "other calls last"
        );
    }
}
