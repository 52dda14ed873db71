//! A tap: its own bounded, expiring queue on the tap copies of one run (or all runs) and,
//! for an all-runs tap, on every node's status.

use std::sync::Arc;
use std::time::Instant;

use crate::{AttachError, TapItem, TapLink};
use lapin::options::QueueDeclareOptions;
use magi_proto::NodeStatus;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::Notify;

use crate::amqp::brokers::QueueKind;
use crate::amqp::error::to_attach;
use crate::amqp::names::{first_word, word};
use crate::amqp::topology::{check_len, queue_args};
use crate::amqp::wire::{decode, Dropped};
use crate::amqp::{inbox, Shared};

/// Open a tap. Its queue is exclusive and auto-deleted (it goes with the tap's connection),
/// bounded (`x-max-length`, oldest dropped first) and expiring (`x-expires`), so an
/// abandoned or slow tap can never fill the broker.
///
/// The queue is server-named (`amq.gen-...`, declared with an empty name): clients cannot
/// declare anything else starting with `amq.`, so a tap role whose configure and write
/// permissions cover only `^amq\.gen-` can make its own queues and nothing else: no
/// exchange, no publish (see `broker-config/`).
pub(crate) async fn open(shared: Arc<Shared>, run: Option<&str>) -> Result<TapLink, AttachError> {
    let names = &shared.names;
    if let Some(run) = run {
        check_len("routing key", &names.run_binding(run))?;
    }
    let mut bindings = vec![(
        names.watch_exchange(),
        run.map(|r| names.run_binding(r))
            .unwrap_or_else(|| "#".into()),
    )];
    if run.is_none() {
        // A run's tap, like the in-process bus's, sees that run only; node statuses belong
        // to no run.
        bindings.push((names.status_exchange(), "#".into()));
    }
    // After a reconnection the queue is declared again (an exclusive queue goes with its
    // connection): what was published meanwhile is not seen, as taps are best effort.
    let setup = inbox::Inbox {
        queue: String::new(),
        options: QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        // Always classic: an exclusive queue cannot be a quorum queue.
        args: queue_args(
            QueueKind::Classic,
            shared.opts.tap_queue_expires,
            Some(shared.opts.tap_max_length),
            None,
        ),
        prefetch: shared.opts.tap_prefetch,
        bindings,
        consumer_tag: "magi-tap".into(),
        exclusive: false,
        lock: None,
    }
    .setup();
    let deadline = Instant::now() + shared.opts.patience;
    let (ch, consumer) =
        inbox::establish(&shared.link, &setup, deadline, shared.opts.reply_timeout)
            .await
            .map_err(|e| to_attach("a tap", &e))?;
    let (tx, rx) = unbounded_channel();
    let (watch_ex, status_ex) = (names.watch_exchange(), names.status_exchange());
    let limit = shared.opts.max_message_bytes.saturating_mul(2);
    inbox::spawn(
        "tap".into(),
        shared.link.clone(),
        setup,
        ch,
        consumer,
        tx,
        Arc::new(Notify::new()),
        move |d| {
            let exchange = d.exchange.as_str();
            if exchange == status_ex {
                let status: NodeStatus = decode("node status", d, limit)?;
                return Ok(TapItem {
                    kind: "node".into(),
                    run: None,
                    group: None,
                    nodes: vec![status.node.clone()],
                    body: serde_json::to_value(&status).unwrap_or_default(),
                });
            }
            if exchange != watch_ex {
                return Err(Dropped::Misrouted(format!(
                    "a tap's messages must come through {watch_ex} or {status_ex}"
                )));
            }
            let item: TapItem = decode("tap item", d, limit)?;
            let key_run = first_word(d.routing_key.as_str());
            if item.run.as_deref().map(word).as_deref() != Some(key_run) {
                return Err(Dropped::Misrouted(format!(
                    "a tap copy of run {:?} sent under another run's key",
                    item.run
                )));
            }
            Ok(item)
        },
    );
    Ok(TapLink { items: rx })
}
