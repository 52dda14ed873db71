//! The reference: the same traffic pattern over a bare lapin client. One message is
//! published (confirmed, mandatory, persistent) to a fanout exchange bound to N durable
//! queues; each of N consumers (in the fleet child, as the node agents are) acks it and
//! answers on one reply queue; the publisher waits for the N answers.
//!
//! It has the delivery guarantees of the MAGI bus (confirms, manual acks, persistent
//! messages in durable queues) and none of its work (JSON, tap copies, checks,
//! deduplication, the engine, the node agent, the agent process).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

use crate::fleet::{expiring, Fleet, FleetArgs};
use crate::sys::cpu_seconds;

/// What one bare run measured.
pub struct BareRun {
    /// One duration per measured round (publish → N answers).
    pub rounds: Vec<Duration>,
    /// This process's CPU seconds over the measured rounds, per answer received.
    pub cpu_per_answer: f64,
}

/// Runs `warmup + rounds` rounds with `n` consumers.
pub async fn run(fleet_args: &FleetArgs, warmup: usize, rounds: usize) -> Result<BareRun> {
    let p = &fleet_args.prefix;
    let n = fleet_args.nodes;
    let (ex, reply) = (format!("{p}bare.x"), format!("{p}bare.reply"));
    let props = ConnectionProperties::default()
        .with_connection_name(format!("{p}bare-orchestrator").into());
    let conn = Connection::connect(&fleet_args.url, props)
        .await
        .context("bare: connecting")?;
    let result = async {
        let out = conn.create_channel().await?;
        out.confirm_select(ConfirmSelectOptions::default()).await?;
        let ex_opts = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        out.exchange_declare(
            ex.clone().into(),
            ExchangeKind::Fanout,
            ex_opts,
            FieldTable::default(),
        )
        .await?;
        out.queue_declare(
            reply.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            expiring(),
        )
        .await?;
        let inbox = conn.create_channel().await?;
        inbox.basic_qos(256, BasicQosOptions::default()).await?;
        let mut answers = inbox
            .basic_consume(
                reply.clone().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let args = FleetArgs {
            bare_exchange: Some(ex.clone()),
            bare_reply: Some(reply.clone()),
            ..fleet_args.clone()
        };
        let fleet = Fleet::start(&args, Duration::from_secs(300)).await?;
        let mut samples = Vec::with_capacity(rounds);
        let mut cpu_start = 0.0;
        let rounds_result = async {
            for seq in 0..(warmup + rounds) as u64 {
                if seq == warmup as u64 {
                    cpu_start = cpu_seconds();
                }
                let body = seq.to_be_bytes();
                let t = Instant::now();
                let opts = BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                };
                let props = BasicProperties::default().with_delivery_mode(2);
                out.basic_publish(ex.clone().into(), "".into(), opts, &body, props)
                    .await?
                    .await?;
                let mut got = 0;
                while got < n {
                    let d = tokio::time::timeout(Duration::from_secs(60), answers.next())
                        .await
                        .context("bare: no answer within 60 s")?;
                    let Some(d) = d else {
                        bail!("bare: the answers stopped")
                    };
                    let d = d?;
                    d.ack(BasicAckOptions::default()).await?;
                    if d.data == body {
                        got += 1;
                    }
                }
                if seq >= warmup as u64 {
                    samples.push(t.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let cpu = cpu_seconds() - cpu_start;
        let _ = fleet.stop().await;
        rounds_result?;
        let _ = out
            .queue_delete(reply.clone().into(), QueueDeleteOptions::default())
            .await;
        let _ = out
            .exchange_delete(ex.clone().into(), ExchangeDeleteOptions::default())
            .await;
        Ok::<_, anyhow::Error>(BareRun {
            cpu_per_answer: cpu / (rounds * n).max(1) as f64,
            rounds: samples,
        })
    }
    .await;
    let _ = conn.close(200, "bye".into()).await;
    result
}
