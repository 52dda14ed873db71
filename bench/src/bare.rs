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

use crate::fleet::{bare_queue_args, connect_first, FleetArgs, Fleets};
use crate::sys::{cpu_of, find_brokers};

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
    /// The floor: transient, no confirm, no `mandatory`, automatic acknowledgements.
    floor: bool,
}

impl Publisher {
    /// One round: publish `size` bytes starting with `seq`, wait for the N answers.
    async fn round(&mut self, seq: u64, size: usize) -> Result<Duration> {
        let mut body = seq.to_be_bytes().to_vec();
        body.resize(size.max(8), b'x');
        let t = Instant::now();
        let opts = BasicPublishOptions {
            mandatory: !self.floor,
            ..Default::default()
        };
        let props = BasicProperties::default().with_delivery_mode(if self.floor { 1 } else { 2 });
        // Without confirm mode (the floor) the confirmation is `NotRequested` at once.
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
            if !self.floor {
                d.ack(BasicAckOptions::default()).await?;
            }
            if d.data == body[..8] {
                got += 1;
            }
        }
        Ok(t.elapsed())
    }
}

/// A bare-lapin session: its connection, publisher and consumers (the fleet child), kept
/// across several blocks of rounds so that they can surround MAGI-rs's own run (the
/// machine's load drifts; both then see the same drift).
pub struct Session {
    conn: Connection,
    publisher: Publisher,
    fleet: Option<Fleets>,
    reply: String,
    n: usize,
    seq: u64,
    samples: Vec<Duration>,
    big_samples: Vec<Duration>,
    /// Processes whose CPU is counted: this one (`None`), the brokers, the consumers.
    pids: [Vec<Option<u32>>; 3],
    /// CPU seconds of each over the measured rounds.
    cpu: [f64; 3],
}

impl Session {
    /// Declares the exchange and the reply queue, starts `fleet_args.nodes` consumers; the
    /// floor (`floor`: transient, unconfirmed, auto-acked, classic queues) or the
    /// reference with the bus's guarantees.
    pub async fn start(fleet_args: &FleetArgs, floor: bool) -> Result<Session> {
        let p = &fleet_args.prefix;
        let n = fleet_args.nodes;
        let kind = if floor { "floor" } else { "bare" };
        let (ex, reply) = (format!("{p}{kind}.x"), format!("{p}{kind}.reply"));
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{p}{kind}-orchestrator").into());
        let conn = connect_first(&fleet_args.url, props)
            .await
            .context("bare: connecting")?;
        let setup = async {
            let out = conn.create_channel().await?;
            if !floor {
                out.confirm_select(ConfirmSelectOptions::default()).await?;
            }
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
            out.queue_declare(
                reply.clone().into(),
                q_opts,
                bare_queue_args(&fleet_args.url, floor),
            )
            .await?;
            let inbox = conn.create_channel().await?;
            inbox.basic_qos(256, BasicQosOptions::default()).await?;
            let answers = inbox
                .basic_consume(
                    reply.clone().into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: floor,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let args = FleetArgs {
                bare_exchange: Some(ex.clone()),
                bare_reply: Some(reply.clone()),
                bare_floor: floor,
                ..fleet_args.clone()
            };
            let fleet = Fleets::start(&args, Duration::from_secs(600)).await?;
            Ok::<_, anyhow::Error>((out, answers, fleet))
        }
        .await;
        let (out, answers, fleet) = match setup {
            Ok(s) => s,
            Err(e) => {
                let _ = conn.close(200, "bye".into()).await;
                return Err(e);
            }
        };
        let some = |v: Vec<u32>| v.into_iter().map(Some).collect::<Vec<_>>();
        let pids = [
            vec![None],
            some(find_brokers(&fleet_args.url)),
            some(fleet.pids()),
        ];
        Ok(Session {
            publisher: Publisher {
                out,
                answers,
                exchange: ex,
                n,
                floor,
            },
            conn,
            fleet: Some(fleet),
            reply,
            n,
            seq: 0,
            samples: Vec::new(),
            big_samples: Vec::new(),
            pids,
            cpu: [0.0; 3],
        })
    }

    /// CPU seconds of this process, of the brokers (summed), of the consumers (summed);
    /// NaN for a group with no process found.
    fn cpu_now(&self) -> [f64; 3] {
        [0, 1, 2].map(|i| {
            let group = &self.pids[i];
            if group.is_empty() {
                f64::NAN
            } else {
                group.iter().map(|p| cpu_of(*p)).sum()
            }
        })
    }

    /// `warmup` unmeasured rounds, then `rounds` measured ones (CPU counted over those).
    pub async fn rounds(&mut self, warmup: usize, rounds: usize) -> Result<()> {
        for _ in 0..warmup {
            self.seq += 1;
            self.publisher.round(self.seq, 8).await?;
        }
        let before = self.cpu_now();
        for _ in 0..rounds {
            self.seq += 1;
            let took = self.publisher.round(self.seq, 8).await?;
            self.samples.push(took);
        }
        let after = self.cpu_now();
        for i in 0..3 {
            self.cpu[i] += after[i] - before[i];
        }
        Ok(())
    }

    /// `count` rounds with a message of `size` bytes (the floor of shipping an agent).
    pub async fn big_rounds(&mut self, count: usize, size: usize) -> Result<()> {
        for _ in 0..count {
            self.seq += 1;
            let took = self.publisher.round(self.seq, size).await?;
            self.big_samples.push(took);
        }
        Ok(())
    }

    /// Stops the consumers, deletes the exchange and the reply queue; the figures.
    pub async fn finish(mut self) -> BareRun {
        if let Some(fleet) = self.fleet.take() {
            let _ = fleet.stop().await;
        }
        let out = &self.publisher.out;
        let _ = out
            .queue_delete(self.reply.clone().into(), QueueDeleteOptions::default())
            .await;
        let _ = out
            .exchange_delete(
                self.publisher.exchange.clone().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.conn.close(200, "bye".into()).await;
        let answers = (self.samples.len() * self.n).max(1) as f64;
        let per = |i: usize| Some(self.cpu[i] / answers).filter(|v| v.is_finite());
        BareRun {
            cpu_per_answer: per(0).unwrap_or(0.0),
            broker_cpu_per_answer: per(1),
            nodes_cpu_per_answer: per(2),
            rounds: self.samples.clone(),
            big_rounds: self.big_samples.clone(),
        }
    }
}
