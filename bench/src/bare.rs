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
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use crate::fleet::{expiring, Fleet, FleetArgs};
use crate::sys::{cpu_of, find_broker};

/// What one bare run measured.
pub struct BareRun {
    /// One duration per measured round (publish → N answers).
    pub rounds: Vec<Duration>,
    /// Rounds with a message the size of the shipped agent (the floor of loading it).
    pub big_rounds: Vec<Duration>,
    /// This process's CPU seconds over the measured rounds, per answer received.
    pub cpu_per_answer: f64,
    /// The broker's CPU seconds over the measured rounds, per answer.
    pub broker_cpu_per_answer: Option<f64>,
    /// The consumers' (fleet process's) CPU seconds over the measured rounds, per answer.
    pub nodes_cpu_per_answer: Option<f64>,
}

/// The publishing side of the bare pattern.
struct Publisher {
    out: Channel,
    answers: Consumer,
    exchange: String,
    n: usize,
}

impl Publisher {
    /// One round: publish `size` bytes starting with `seq`, wait for the N answers.
    async fn round(&mut self, seq: u64, size: usize) -> Result<Duration> {
        let mut body = seq.to_be_bytes().to_vec();
        body.resize(size.max(8), b'x');
        let t = Instant::now();
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let props = BasicProperties::default().with_delivery_mode(2);
        self.out
            .basic_publish(self.exchange.clone().into(), "".into(), opts, &body, props)
            .await?
            .await?;
        let mut got = 0;
        while got < self.n {
            let d = tokio::time::timeout(Duration::from_secs(120), self.answers.next())
                .await
                .context("bare: no answer within 120 s")?;
            let Some(d) = d else {
                bail!("bare: the answers stopped")
            };
            let d = d?;
            d.ack(BasicAckOptions::default()).await?;
            if d.data == body[..8] {
                got += 1;
            }
        }
        Ok(t.elapsed())
    }
}

/// Runs `warmup + rounds` rounds with `n` consumers, then `big` rounds with a message of
/// `big_size` bytes.
pub async fn run(
    fleet_args: &FleetArgs,
    warmup: usize,
    rounds: usize,
    big: usize,
    big_size: usize,
) -> Result<BareRun> {
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
        let q_opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        out.queue_declare(reply.clone().into(), q_opts, expiring())
            .await?;
        let inbox = conn.create_channel().await?;
        inbox.basic_qos(256, BasicQosOptions::default()).await?;
        let answers = inbox
            .basic_consume(
                reply.clone().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut publisher = Publisher {
            out: out.clone(),
            answers,
            exchange: ex.clone(),
            n,
        };

        let args = FleetArgs {
            bare_exchange: Some(ex.clone()),
            bare_reply: Some(reply.clone()),
            ..fleet_args.clone()
        };
        let fleet = Fleet::start(&args, Duration::from_secs(300)).await?;
        let mut samples = Vec::with_capacity(rounds);
        let mut big_samples = Vec::with_capacity(big);
        // CPU of this process, the broker and the consumers, at the start and end of the rounds.
        let pids = [None, find_broker(), fleet.pid()];
        let read = || pids.map(|p| p.map_or(f64::NAN, |p| cpu_of(Some(p))));
        let (mut cpu_start, mut cpu_end) = ([0.0; 3], [0.0; 3]);
        let rounds_result = async {
            for seq in 0..(warmup + rounds) as u64 {
                if seq == warmup as u64 {
                    cpu_start = [cpu_of(None), read()[1], read()[2]];
                }
                let took = publisher.round(seq, 8).await?;
                if seq >= warmup as u64 {
                    samples.push(took);
                }
            }
            cpu_end = [cpu_of(None), read()[1], read()[2]];
            for i in 0..big as u64 {
                let seq = (warmup + rounds) as u64 + i;
                big_samples.push(publisher.round(seq, big_size).await?);
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let _ = fleet.stop().await;
        rounds_result?;
        let _ = out
            .queue_delete(reply.clone().into(), QueueDeleteOptions::default())
            .await;
        let _ = out
            .exchange_delete(ex.clone().into(), ExchangeDeleteOptions::default())
            .await;
        let answers = (rounds * n).max(1) as f64;
        let per = |i: usize| Some((cpu_end[i] - cpu_start[i]) / answers).filter(|v| v.is_finite());
        Ok::<_, anyhow::Error>(BareRun {
            cpu_per_answer: per(0).unwrap_or(0.0),
            broker_cpu_per_answer: per(1),
            nodes_cpu_per_answer: per(2),
            rounds: samples,
            big_rounds: big_samples,
        })
    }
    .await;
    let _ = conn.close(200, "bye".into()).await;
    result
}
