//! The reference: the same traffic pattern over a bare lapin client. One message is
//! published (confirmed, mandatory, persistent) to a fanout exchange bound to N durable
//! queues; each of N consumers (in the fleet child, as the node agents are) acks it and
//! answers on one reply queue; the publisher waits for the N answers.
//!
//! It has the delivery guarantees of the MAGI bus (confirms, manual acks, persistent
//! messages in durable queues) and none of its work (JSON, tap copies, checks,
//! deduplication, the engine, the node agent, the agent process).
//!
//! Two variants measure what lies on either side of it ([`Kind`]): the same pattern over
//! MAGI-rs's routing and message properties, and the floor, with no guarantee.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use crate::fleet::{bare_queue_args, connect_first, FleetArgs, Fleets};
use crate::sys::{cpu_of, find_brokers};

/// Which bare-lapin pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The reference: the bus's guarantees over the simplest routing (a fanout exchange;
    /// answers straight into the reply queue through the default exchange), 8-byte
    /// messages with no property but persistence.
    Bare,
    /// The reference over MAGI-rs's routing and properties, so that what is left between
    /// it and MAGI-rs is MAGI-rs's own work. Each call goes to a topic exchange under
    /// `<run>.<group>`, bound to the fanout exchange (as `calls` is to a group exchange);
    /// each answer to a topic exchange under `<run>.trigger.<node>`, bound by the reply
    /// queue with `<run>.#` (as `triggers` is by a run queue). Every message carries the
    /// bus's properties (content type, kind, a UUIDv7 message id, the broker-validated user
    /// id) and is [`ROUTED_SIZE`] bytes, the size of a ping call and its trigger.
    Routed,
    /// The floor: transient messages, no confirms, no `mandatory`, automatic
    /// acknowledgements, classic queues.
    Floor,
}

/// Bytes of a call and of an answer of [`Kind::Routed`]: the JSON of the benchmark's ping
/// call is 96 bytes and that of its trigger about as many.
pub const ROUTED_SIZE: usize = 100;

impl Kind {
    /// Its word in broker object names and on the fleet's command line.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Routed => "routed",
            Kind::Floor => "floor",
        }
    }

    /// Confirms, `mandatory`, persistence and manual acknowledgements.
    pub fn guarantees(self) -> bool {
        self != Kind::Floor
    }

    /// The properties of a message (`what`: `call` or `trigger`) sent as broker user `user`.
    pub fn properties(self, what: &str, user: &str) -> BasicProperties {
        let props =
            BasicProperties::default().with_delivery_mode(if self.guarantees() { 2 } else { 1 });
        match self {
            Kind::Routed => props
                .with_content_type("application/json".into())
                .with_user_id(user.into())
                .with_type(what.into())
                .with_message_id(uuid::Uuid::now_v7().to_string().into()),
            _ => props,
        }
    }

    /// A message of at least `size` bytes that starts with `seq`.
    pub fn body(self, seq: &[u8], size: usize) -> Vec<u8> {
        let floor = if self == Kind::Routed { ROUTED_SIZE } else { 8 };
        let mut body = seq.to_vec();
        body.resize(size.max(floor), b'x');
        body
    }
}

/// The routed pattern's exchanges under `base` (the fanout exchange's name): calls go to the
/// first under [`ROUTED_CALL_KEY`], answers to the second.
pub fn routed_exchanges(base: &str) -> [String; 2] {
    [format!("{base}.calls"), format!("{base}.triggers")]
}

/// The routed pattern's key of a call (`<run>.<group>`).
pub const ROUTED_CALL_KEY: &str = "run.group";

/// The routed pattern's key of consumer `node`'s answer (`<run>.trigger.<node>`).
pub fn routed_answer_key(node: usize) -> String {
    format!("run.trigger.n{node}")
}

/// The routed pattern's binding of the reply queue (`<run>.#`).
const ROUTED_REPLY_BINDING: &str = "run.#";

/// The broker user of `url` (its first broker's), which a routed message names in
/// `user_id` (the broker refuses any other).
pub fn user_of(url: &str) -> Result<String> {
    let brokers = magi_bus::amqp::Brokers::parse(url)?;
    let first = brokers.urls.first().context("no broker in the URL")?;
    let uri: lapin::uri::AMQPUri = first
        .parse()
        .map_err(|e| anyhow::anyhow!("broker URL {first}: {e}"))?;
    Ok(uri.authority.userinfo.username)
}

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
    /// The fanout exchange bound by the N queues.
    exchange: String,
    n: usize,
    kind: Kind,
    /// The broker user of the connection.
    user: String,
}

impl Publisher {
    /// One round: publish `size` bytes starting with `seq`, wait for the N answers.
    async fn round(&mut self, seq: u64, size: usize) -> Result<Duration> {
        let body = self.kind.body(&seq.to_be_bytes(), size);
        let t = Instant::now();
        let opts = BasicPublishOptions {
            mandatory: self.kind.guarantees(),
            ..Default::default()
        };
        let props = self.kind.properties("call", &self.user);
        let (exchange, key) = match self.kind {
            Kind::Routed => (routed_exchanges(&self.exchange)[0].clone(), ROUTED_CALL_KEY),
            _ => (self.exchange.clone(), ""),
        };
        // Without confirm mode (the floor) the confirmation is `NotRequested` at once.
        self.out
            .basic_publish(exchange.into(), key.into(), opts, &body, props)
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
            if self.kind.guarantees() {
                d.ack(BasicAckOptions::default()).await?;
            }
            if d.data.get(..8) == Some(&body[..8]) {
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
    /// Declares the exchanges and the reply queue, starts `fleet_args.nodes` consumers of
    /// pattern `kind`.
    pub async fn start(fleet_args: &FleetArgs, kind: Kind) -> Result<Session> {
        let p = &fleet_args.prefix;
        let n = fleet_args.nodes;
        let word = kind.word();
        let (ex, reply) = (format!("{p}{word}.x"), format!("{p}{word}.reply"));
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{p}{word}-orchestrator").into());
        let conn = connect_first(&fleet_args.url, props)
            .await
            .context("bare: connecting")?;
        let setup = async {
            let user = user_of(&fleet_args.url)?;
            let out = conn.create_channel().await?;
            if kind.guarantees() {
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
                bare_queue_args(&fleet_args.url, kind),
            )
            .await?;
            if kind == Kind::Routed {
                let [calls, triggers] = routed_exchanges(&ex);
                for topic in [&calls, &triggers] {
                    out.exchange_declare(
                        topic.clone().into(),
                        ExchangeKind::Topic,
                        ex_opts,
                        FieldTable::default(),
                    )
                    .await?;
                }
                out.exchange_bind(
                    ex.clone().into(),
                    calls.into(),
                    ROUTED_CALL_KEY.into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
                out.queue_bind(
                    reply.clone().into(),
                    triggers.into(),
                    ROUTED_REPLY_BINDING.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
            let inbox = conn.create_channel().await?;
            inbox.basic_qos(256, BasicQosOptions::default()).await?;
            let answers = inbox
                .basic_consume(
                    reply.clone().into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: !kind.guarantees(),
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let args = FleetArgs {
                bare_exchange: Some(ex.clone()),
                bare_reply: Some(reply.clone()),
                bare_kind: kind,
                ..fleet_args.clone()
            };
            let fleet = Fleets::start(&args, Duration::from_secs(600)).await?;
            Ok::<_, anyhow::Error>((out, answers, fleet, user))
        }
        .await;
        let (out, answers, fleet, user) = match setup {
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
                kind,
                user,
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
        let base = &self.publisher.exchange;
        let mut exchanges = vec![base.clone()];
        if self.publisher.kind == Kind::Routed {
            exchanges.extend(routed_exchanges(base));
        }
        for ex in exchanges {
            let _ = out
                .exchange_delete(ex.into(), ExchangeDeleteOptions::default())
                .await;
        }
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
