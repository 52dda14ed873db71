//! The fleet child's bare-lapin side: N consumers on a few connections, each answering
//! every message of the bare reference (or the floor) on the reply queue.

use anyhow::{Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::bare::{routed_answer_key, routed_exchanges, Kind};
use crate::fleet::{bare_queue_args, connect_first, FleetArgs};

/// The bare-lapin side: per consumer a channel, a durable queue bound to the exchange,
/// manual acks with prefetch 32; each answers every message on the reply queue with a
/// confirmed, mandatory, persistent publish on its connection's shared confirm channel
/// (routed: through the answers' topic exchange, under its own key).
pub async fn consumers(
    args: &FleetArgs,
    exchange: &str,
    reply: &str,
    stop: watch::Receiver<bool>,
) -> Result<Vec<(Connection, Vec<String>)>> {
    let conns = args.nodes.div_ceil(args.per_conn.max(1)).max(1);
    // The connections declare and consume at once (quorum queues take a Raft round each).
    let made = futures_util::future::join_all(
        (0..conns).map(|c| connection(args, c, conns, exchange, reply, stop.clone())),
    )
    .await;
    made.into_iter().collect()
}

/// Connection `c` of `conns` of the bare consumers: its queues and their consumers (tasks
/// that end when `stop` says so or the channel closes).
async fn connection(
    args: &FleetArgs,
    c: usize,
    conns: usize,
    exchange: &str,
    reply: &str,
    stop: watch::Receiver<bool>,
) -> Result<(Connection, Vec<String>)> {
    {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{}bare-fleet#{c}", args.prefix).into());
        let conn = connect_first(&args.url_for(args.first / args.per_conn.max(1) + c), props)
            .await
            .context("bare fleet: connecting")?;
        let out_ch = conn.create_channel().await?;
        let kind = args.bare_kind;
        if kind.guarantees() {
            out_ch
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        let user = crate::bare::user_of(&args.url)?;
        let mut queues = Vec::new();
        for i in (args.first + c..args.first + args.nodes).step_by(conns) {
            let q = format!("{}{}.q.{i}", args.prefix, kind.word());
            queues.push(q.clone());
            // Where the answers go: the reply queue, or the routed pattern's exchange.
            let (answers, key) = match kind {
                Kind::Routed => (routed_exchanges(exchange)[1].clone(), routed_answer_key(i)),
                _ => (String::new(), reply.to_string()),
            };
            let (conn_ref, ex, out_ch, stop, user) = (
                &conn,
                exchange.to_string(),
                out_ch.clone(),
                stop.clone(),
                user.clone(),
            );
            let ch = conn_ref.create_channel().await?;
            ch.basic_qos(32, BasicQosOptions::default()).await?;
            ch.queue_declare(
                q.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                bare_queue_args(&args.url, kind),
            )
            .await?;
            ch.queue_bind(
                q.clone().into(),
                ex.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            let mut deliveries = ch
                .basic_consume(
                    q.into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: !kind.guarantees(),
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            tokio::spawn(async move {
                let mut stop = stop;
                loop {
                    let d = tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        d = deliveries.next() => d,
                    };
                    let Some(Ok(d)) = d else { break };
                    if kind.guarantees() {
                        let _ = d.ack(BasicAckOptions::default()).await;
                    }
                    let opts = BasicPublishOptions {
                        mandatory: kind.guarantees(),
                        ..Default::default()
                    };
                    let props = kind.properties("trigger", &user);
                    // The answer starts with the message's first 8 bytes (its sequence
                    // number).
                    let answer = kind.body(&d.data[..d.data.len().min(8)], 0);
                    match out_ch
                        .basic_publish(
                            answers.clone().into(),
                            key.clone().into(),
                            opts,
                            &answer,
                            props,
                        )
                        .await
                    {
                        Ok(confirm) => {
                            let _ = confirm.await;
                        }
                        Err(_) => break,
                    }
                }
                let _ = ch.close(200, "bye".into()).await;
            });
        }
        Ok((conn, queues))
    }
}
