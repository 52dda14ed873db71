//! # magi-bus: how orchestrators, node agents and taps meet
//!
//! The [`Bus`] trait is everything the rest of MAGI-rs knows about transport. Two
//! implementations exist: [`memory::MemoryBus`] (in-process, the embedded default and the
//! fast tests) and [`amqp::AmqpBus`] (RabbitMQ). The same node-agent and orchestrator code
//! runs on both.
//!
//! The model follows the original's addressing:
//! - a node agent attaches under its node name ([`Bus::attach_node`]) and receives
//!   [`Call`]s addressed to it by name or to a group of a run it has joined;
//! - an orchestrator opens a run ([`Bus::open_run`]), publishes calls to the run's groups
//!   or to named nodes, and receives the run's triggers and records, plus every node's
//!   heartbeat;
//! - a tap ([`Bus::tap`]) sees everything of one run or of all runs, without anyone's
//!   cooperation.
//!
//! Links are plain channels plus a shared "port" for sending, so that many tasks can send
//! while one task receives.

pub mod amqp;
pub mod memory;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use magi_proto::{Call, NodeStatus, Record, Trigger};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// When this process started: transports that cannot be cut off (the in-process one) have
/// been up since then.
static STARTED: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Why a message could not be sent: a call published, a trigger, record or status sent, a
/// group joined or left, a run closed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Nobody is subscribed where the message was sent: a group with no member, a node
    /// that is not attached.
    #[error("no node received it: {0}")]
    NoRoute(String),
    /// The broker refused the message (negative confirm, permission).
    #[error("the broker refused it: {0}")]
    Refused(String),
    /// The connection is gone and could not be restored.
    #[error("the bus is disconnected: {0}")]
    Disconnected(String),
}

/// Why a node agent could not attach, or a run or a tap could not open.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttachError {
    /// The name is taken: a node agent of that name, or an orchestrator of that run, is
    /// attached already (the second is refused, never shares the first one's messages).
    #[error("{0} is in use")]
    InUse(String),
    /// The broker refused it (permissions).
    #[error("the broker refused it: {0}")]
    Refused(String),
    /// The connection is gone and could not be restored.
    #[error("the bus is disconnected: {0}")]
    Disconnected(String),
}

impl From<SendError> for AttachError {
    /// What attaching declares and binds on the way can fail like a send; nothing is sent
    /// then, so no route is the broker refusing.
    fn from(e: SendError) -> Self {
        match e {
            SendError::NoRoute(s) | SendError::Refused(s) => AttachError::Refused(s),
            SendError::Disconnected(s) => AttachError::Disconnected(s),
        }
    }
}

/// Why a bus could not be opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not one the bus can use.
    #[error("{0}")]
    BadUrl(String),
    /// The broker was reached and refused (credentials, vhost, permissions).
    #[error("the broker refused it: {0}")]
    Refused(String),
    /// No broker answered.
    #[error("cannot reach the broker: {0}")]
    Unreachable(String),
}

impl From<SendError> for ConnectError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NoRoute(s) | SendError::Refused(s) => ConnectError::Refused(s),
            SendError::Disconnected(s) => ConnectError::Unreachable(s),
        }
    }
}

/// How far a published call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Number of node agents it reached, when the transport can tell (the in-process bus
    /// can; AMQP only knows "at least one").
    pub receivers: Option<usize>,
}

/// Everything an orchestrator receives for its run.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A trigger for this run.
    Trigger(Trigger),
    /// A data record of this run.
    Record(Record),
    /// A node agent's announcement or heartbeat (any node; filter by name).
    Node(NodeStatus),
    /// A trigger, record or status whose authenticated sender is not the node it speaks
    /// for: dropped by the bus, never counted, reported here so that the run can say so.
    Forged(Forgery),
}

/// What a forged message claimed, and who really sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forgery {
    /// `trigger`, `record` or `node`.
    pub kind: &'static str,
    /// The broker user that sent it (validated by the broker).
    pub sender: String,
    /// The node(s) it claimed to speak for.
    pub claimed: Vec<String>,
    /// The trigger's event, or the record's agent; empty for a status.
    pub what: String,
}

/// One message seen by a tap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapItem {
    /// `call`, `trigger`, `record` or `node`.
    pub kind: String,
    /// The run, if the message belongs to one.
    pub run: Option<String>,
    /// The group a call was published to (`None` for node-addressed calls).
    pub group: Option<String>,
    /// The nodes concerned: a call's named nodes, a trigger's or record's sender.
    pub nodes: Vec<String>,
    /// The message itself.
    pub body: serde_json::Value,
}

/// A node agent's sending side.
#[async_trait]
pub trait NodePort: Send + Sync {
    /// Subscribe to the calls of `group` in `run`.
    async fn join(&self, run: &str, group: &str) -> Result<(), SendError>;
    /// Unsubscribe from a group of a run.
    async fn leave(&self, run: &str, group: &str) -> Result<(), SendError>;
    /// Send a trigger to the run's orchestrator.
    async fn send_trigger(&self, trigger: Trigger) -> Result<(), SendError>;
    /// Send a data record to the run's collector.
    async fn send_record(&self, record: Record) -> Result<(), SendError>;
    /// Announce this node (start, heartbeat, shutdown).
    async fn announce(&self, status: NodeStatus) -> Result<(), SendError>;
    /// Since when the node has been connected without interruption (`None`: not now).
    /// Silence heard during an outage is nobody's fault: it counts only from then on.
    fn up_since(&self) -> Option<Instant> {
        Some(*STARTED)
    }
}

/// An attached node agent: its inbox and its port.
pub struct NodeLink {
    /// Calls for this node, in the order they were published.
    pub calls: mpsc::UnboundedReceiver<Call>,
    /// Sending side, shareable between tasks.
    pub port: Arc<dyn NodePort>,
}

/// An orchestrator's sending side for one run.
#[async_trait]
pub trait RunPort: Send + Sync {
    /// Publish a call to every member of a group of this run.
    async fn publish_group(&self, group: &str, call: Call) -> Result<Delivered, SendError>;
    /// Publish a call to each named node (whether or not it is in a group yet).
    async fn publish_nodes(&self, nodes: &[String], call: Call) -> Result<Delivered, SendError>;
    /// Forget the run's bus resources (its groups, its inbox).
    async fn close(&self) -> Result<(), SendError>;
    /// Since when the orchestrator has been connected without interruption (`None`: not
    /// now). Silence heard during an outage is nobody's fault: it counts only from then on.
    fn up_since(&self) -> Option<Instant> {
        Some(*STARTED)
    }
}

/// An orchestrator's link for one run.
pub struct RunLink {
    /// Triggers, records and heartbeats.
    pub inbound: mpsc::UnboundedReceiver<Inbound>,
    /// Sending side.
    pub port: Arc<dyn RunPort>,
}

/// A tap's stream.
pub struct TapLink {
    /// Everything seen, in arrival order.
    pub items: mpsc::UnboundedReceiver<TapItem>,
}

/// A transport.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Attach a node agent under its name.
    async fn attach_node(&self, node: &str) -> Result<NodeLink, AttachError>;
    /// Open the orchestrator's side of a run.
    async fn open_run(&self, run: &str) -> Result<RunLink, AttachError>;
    /// Watch one run (`Some`) or everything (`None`).
    async fn tap(&self, run: Option<&str>) -> Result<TapLink, AttachError>;
    /// Close the transport: every link of this bus ends.
    async fn close(&self);
}

/// The URL of the in-process bus, for [`connect`].
pub const EMBEDDED: &str = "embedded:";

/// Opens a bus: [`EMBEDDED`] is a fresh in-process bus (node agents then attach to it in
/// this process); `amqp://` and `amqps://` URLs are RabbitMQ, with `options`.
pub async fn connect(url: &str, options: amqp::BusOptions) -> Result<Arc<dyn Bus>, ConnectError> {
    if url == EMBEDDED {
        return Ok(Arc::new(memory::MemoryBus::new()));
    }
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(ConnectError::BadUrl(format!(
            "{}: a bus URL is amqp://..., amqps://... or {EMBEDDED}",
            magi_proto::redact_url(url)
        )));
    }
    Ok(Arc::new(amqp::AmqpBus::connect(url, options).await?))
}
