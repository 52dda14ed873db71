//! The run loop: carries out what the engine asks (calls on the bus, console lines,
//! records) and feeds it what happens (triggers, time, lost nodes, Ctrl-C). It knows the
//! bus only through [`magi_bus::RunLink`], so the embedded and the RabbitMQ runs share it.
//!
//! Its clock is tokio's, so tests run it on a paused clock against a scripted node
//! ([`tests`]): a minute of procedure takes no time, and the timing rules (lost nodes,
//! `runAlive`) are pinned exactly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use magi_aal::Procedure;
use magi_bus::{Inbound, RunLink};
use magi_engine::steps::Dest;
use magi_engine::{Engine, Outcome, Output};
use magi_proto::daemon::Alive;
use magi_proto::{method, Call, DaemonCall, Trigger, DAEMON_DOCK};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

use crate::console::Console;
use crate::record::RunRecord;

mod lag;
mod sender;
use sender::{Outgoing, Sender};

/// An agent archive shipped with `loadAgent`.
#[derive(Debug, Clone)]
pub struct Shipment {
    /// Base64 of the archive bytes.
    pub archive_b64: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
}

/// How the loop runs.
pub struct DriverConfig {
    /// The engine's options.
    pub engine: magi_engine::Options,
    /// How long to wait for every node to announce itself before setup.
    pub preflight: Duration,
    /// How often to tell the nodes this run is alive (their dead-man switch), if at all.
    pub alive_every: Option<Duration>,
    /// Archives to ship, by agent name.
    pub shipments: HashMap<String, Shipment>,
}

/// How often a run of `nodes` nodes tells them it is alive when not told otherwise: every
/// 2 s, and one second per thousand nodes in larger runs, so that the telling stays under
/// a thousand deliveries a second. (At 10,000 nodes on a two-core broker, every 2 s kept it
/// so busy that half the nodes had not answered the first call after two minutes; every
/// 10 s the run completed: `docs/benchmarks.md`.) Nodes give the run three such periods,
/// or their own limit if longer, before their dead man stops its agents.
pub fn default_alive_every(nodes: usize) -> Duration {
    Duration::from_secs(2).max(Duration::from_millis(nodes as u64))
}

/// Why a run could not be carried out at all.
#[derive(Debug, Clone, PartialEq)]
pub enum Infra {
    /// Nodes did not announce themselves in time.
    MissingNodes(Vec<String>),
    /// The bus went away.
    BusLost(String),
}

/// Everything the loop needs, borrowed for the run.
pub struct Driver<'a> {
    procedure: Arc<Procedure>,
    link: RunLink,
    config: DriverConfig,
    console: &'a mut Console,
    record: &'a mut RunRecord,
    writer: Option<&'a magi_data::Writer>,
    engine: Engine,
    started: Instant,
    started_epoch: f64,
    /// The run's name.
    run: String,
    /// Every node of the procedure.
    nodes: HashSet<String>,
    /// Node → (last heartbeat, heartbeat period).
    seen: HashMap<String, (Instant, Duration)>,
    /// Set once the engine has started (triggers before that have nothing to do).
    running: bool,
    outcome: Option<Outcome>,
    /// The `runAlive` publishes still waiting for the broker's confirm.
    alive: Vec<tokio::task::JoinHandle<()>>,
    /// Where the engine's calls go out, in order, without holding this loop up.
    sender: Sender,
    /// Shipped archives still on their way to nodes.
    shipping: Vec<Shipping>,
    /// How late the broker delivers heartbeats.
    lag: lag::Lag,
}

/// An agent's archive shipped with a `loadAgent`: the nodes that still owe its answer
/// (`AgentLoadDone`, or a `RuntimeException` naming the agent), and when the last answer
/// came in.
struct Shipping {
    agent: String,
    owed: HashSet<String>,
    progress: Instant,
}

impl<'a> Driver<'a> {
    /// Prepares a run.
    pub fn new(
        procedure: Arc<Procedure>,
        run: &str,
        link: RunLink,
        config: DriverConfig,
        console: &'a mut Console,
        record: &'a mut RunRecord,
        writer: Option<&'a magi_data::Writer>,
    ) -> Self {
        let engine = Engine::new(procedure.clone(), config.engine.clone(), run);
        let link_port = link.port.clone();
        let nodes = procedure.all_nodes().into_iter().collect();
        Driver {
            run: run.to_string(),
            nodes,
            running: false,
            procedure,
            link,
            config,
            console,
            record,
            writer,
            engine,
            started: Instant::now(),
            started_epoch: magi_proto::epoch_now(),
            seen: HashMap::new(),
            outcome: None,
            alive: Vec::new(),
            sender: Sender::start(link_port),
            shipping: Vec::new(),
            lag: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn epoch_at(&self, ms: u64) -> f64 {
        self.started_epoch + ms as f64 / 1000.0
    }

    /// Waits until every node of the procedure has announced itself.
    ///
    /// The nodes still missing are kept as a set that each announcement updates: at
    /// N = 10,000, listing them anew for every message (10,000 names for each of the 5,000
    /// heartbeats a second) held the run in pre-flight while the broker's backlog grew by
    /// gigabytes.
    async fn preflight(&mut self) -> Result<(), Infra> {
        let mut missing: HashSet<String> = self
            .nodes
            .iter()
            .filter(|n| !self.seen.contains_key(*n))
            .cloned()
            .collect();
        let sorted = |missing: &HashSet<String>| {
            let mut names: Vec<String> = missing.iter().cloned().collect();
            names.sort();
            names
        };
        let deadline = Instant::now() + self.config.preflight;
        let mut told = false;
        while !missing.is_empty() {
            if !told && self.config.alive_every.is_some() {
                self.console.note(&format!(
                    "waiting up to {} s for node agents: {}",
                    self.config.preflight.as_secs(),
                    crate::console::some_names(&sorted(&missing), 10)
                ));
                told = true;
            }
            let msg = match tokio::time::timeout_at(deadline, self.link.inbound.recv()).await {
                Err(_) => return Err(Infra::MissingNodes(sorted(&missing))),
                Ok(None) => return Err(Infra::BusLost("the bus closed during pre-flight".into())),
                Ok(Some(msg)) => msg,
            };
            let node = match &msg {
                Inbound::Node(status) if self.nodes.contains(&status.node) => {
                    Some(status.node.clone())
                }
                _ => None,
            };
            self.on_inbound(msg).await;
            // A node that said goodbye is missing again.
            if let Some(node) = node {
                if self.seen.contains_key(&node) {
                    missing.remove(&node);
                } else {
                    missing.insert(node);
                }
            }
        }
        Ok(())
    }

    /// Runs the procedure to its end.
    pub async fn run(mut self) -> Result<Outcome, Infra> {
        self.preflight().await?;
        self.started = Instant::now();
        self.started_epoch = magi_proto::epoch_now();
        self.running = true;
        let outs = self.engine.start(0);
        self.carry_out(outs);
        let mut interrupts = signal(SignalKind::interrupt())
            .map_err(|e| Infra::BusLost(format!("cannot watch Ctrl-C: {e}")))?;
        let mut terms = signal(SignalKind::terminate())
            .map_err(|e| Infra::BusLost(format!("cannot watch SIGTERM: {e}")))?;
        let mut last_interrupt: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last_alive = Instant::now();
        while self.outcome.is_none() {
            let iteration = Instant::now();
            let deadline = self
                .engine
                .next_deadline()
                .map(|ms| self.started + Duration::from_millis(ms));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.link.inbound.recv() => match msg {
                    Some(msg) => self.on_inbound(msg).await,
                    None => return Err(Infra::BusLost("the bus closed during the run".into())),
                },
                Some(u) = self.sender.undelivered.recv() => {
                    tracing::warn!("{}: {}", u.what, u.error);
                    // "reached no node" only when that is what happened: a call lost with
                    // the connection once read so (3,000 nodes on the cluster).
                    let why = match &u.error {
                        magi_bus::SendError::NoRoute(_) => "reached no node".to_string(),
                        e => format!("was not delivered: {e}"),
                    };
                    let now = self.now_ms();
                    let outs =
                        self.engine
                            .on_undeliverable(now, &u.stream, &u.what, &why, &u.dest);
                    self.carry_out(outs);
                }
                _ = sleep => {
                    let now = self.now_ms();
                    let outs = self.engine.on_time(now);
                    self.carry_out(outs);
                }
                _ = tick.tick() => {
                    self.check_heartbeats();
                    if let Some(every) = self.config.alive_every {
                        if last_alive.elapsed() >= every {
                            last_alive = Instant::now();
                            self.run_alive(every);
                        }
                    }
                    let waits = self.engine.waits(self.now_ms());
                    self.console.live(&waits);
                    self.record.flush();
                }
                _ = interrupts.recv() => {
                    let now = self.now_ms();
                    if last_interrupt.is_some_and(|t| t.elapsed() <= Duration::from_secs(2)) {
                        let outs = self.engine.interrupt(now);
                        self.carry_out(outs);
                    } else {
                        last_interrupt = Some(Instant::now());
                        let waits = self.engine.waits(now);
                        self.console.waits(&waits, self.epoch_at(now));
                        self.console.note("Send SIGINT signal (ctrl+c) again within next 2 seconds to quit");
                    }
                }
                _ = terms.recv() => {
                    let now = self.now_ms();
                    let outs = self.engine.interrupt(now);
                    self.carry_out(outs);
                }
            }
            // Silence while this loop was held up (calls go out from the sender, so only
            // its own work, e.g. the record, can; the tick bounds a quiet wait to 500 ms) is
            // not the nodes' fault.
            if iteration.elapsed() > Duration::from_secs(2) {
                self.seen
                    .values_mut()
                    .for_each(|(last, _)| *last = Instant::now());
            }
        }
        // The last calls (teardown) go out before the run ends.
        for u in self.sender.finish().await {
            tracing::warn!("{}: {}", u.what, u.error);
        }
        if !self.config.engine.teardown && self.config.alive_every.is_some() {
            // --keep-agents: tell the nodes the silence that follows is on purpose, so
            // their dead-man switch does not stop the kept agents.
            self.daemon_call_to_all(DaemonCall::DetachRun {}).await;
        }
        self.console.finish();
        Ok(self.outcome.unwrap_or(Outcome::Success))
    }

    async fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Trigger(t) => {
                self.record.event(
                    "recv",
                    "trigger",
                    serde_json::to_value(&t).unwrap_or(Value::Null),
                );
                if t.event == magi_proto::RUNTIME_EXCEPTION
                    && matches!(
                        t.args.get("type").and_then(Value::as_str),
                        Some("MagiWarning")
                    )
                {
                    let text = t
                        .args
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("warning");
                    let agent = t
                        .args
                        .get("agent")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    self.console.note(&format!(
                        "warning from agent {agent} on {}: {text}",
                        t.nodes.join(", ")
                    ));
                }
                // A node that speaks is alive (the bus proved who it is), whether or not
                // its heartbeat made it through a busy broker.
                let now = Instant::now();
                for node in &t.nodes {
                    if let Some((last, _)) = self.seen.get_mut(node) {
                        *last = now;
                    }
                }
                self.shipped_answer(&t);
                if self.outcome.is_none() && self.running {
                    let now = self.now_ms();
                    let outs = match t.call {
                        Some(seq) => self.engine.on_reply(now, seq, &t.event, &t.nodes, &t.args),
                        None => self.engine.on_trigger(now, &t.event, &t.nodes, &t.args),
                    };
                    self.carry_out(outs);
                }
            }
            Inbound::Forged(f) => {
                let text = format!(
                    "dropped a {} {}from broker user {} claiming to be {}: a node speaks only for itself",
                    f.kind,
                    if f.what.is_empty() { String::new() } else { format!("({}) ", f.what) },
                    f.sender,
                    f.claimed.join(", ")
                );
                self.console.note(&format!("warning: {text}"));
                self.record.event(
                    "dropped",
                    f.kind,
                    json!({"sender": f.sender, "claimed": f.claimed, "what": f.what}),
                );
            }
            Inbound::Record(r) => {
                if let Some(chunk) = magi_proto::file::FileChunk::from_record(&r.data) {
                    let written = chunk.and_then(|c| self.record.file_chunk(&r.host, &r.agent, &c));
                    match written {
                        Ok(Some(path)) => self.record.event(
                            "recv",
                            "file",
                            json!({"node": r.host, "agent": r.agent, "path": path}),
                        ),
                        Ok(None) => {}
                        Err(e) => self.console.note(&format!(
                            "warning: a file from agent {} on {} is not recorded: {e}",
                            r.agent, r.host
                        )),
                    }
                    return;
                }
                if let Some(w) = self.writer {
                    if let Err(e) = w.send(r) {
                        tracing::warn!("record not stored: {e}");
                    }
                }
            }
            Inbound::Node(status) => {
                if !self.nodes.contains(&status.node) {
                    return;
                }
                if !status.alive {
                    self.seen.remove(&status.node);
                    if self.running {
                        let now = self.now_ms();
                        let outs =
                            self.engine
                                .on_node_lost(now, &status.node, "its node agent shut down");
                        self.carry_out(outs);
                    }
                    return;
                }
                let period = Duration::from_millis(status.heartbeat_ms.max(100));
                let arrived = self.epoch_at(self.now_ms());
                self.lag
                    .heard(&status.node, status.time, arrived, Instant::now());
                self.seen.insert(status.node, (Instant::now(), period));
            }
        }
    }

    /// A node is lost when it missed three heartbeats (at least 3 s) while this
    /// orchestrator was connected: during an outage of our own link, silence counts for
    /// no one, and after it every node gets a full period again.
    ///
    /// Nor does silence count while the broker has held one of our calls for over a
    /// second: it is overloaded (e.g. writing a 1 MiB agent into a thousand queues) and the
    /// nodes' heartbeats wait in it too; nor while a shipped archive is still reaching the
    /// nodes, its answers coming in (at N = 3000, 4.2 GB on their way through the broker
    /// made heartbeats 6 s late). Afterwards every node gets a full window again; a
    /// shipment whose answers stop coming for a window no longer counts. Every window is
    /// stretched by how late the broker is delivering heartbeats now (`lag.rs`).
    fn check_heartbeats(&mut self) {
        let Some(up) = self.link.port.up_since() else {
            return;
        };
        let late = self.lag.delay(Instant::now());
        let window = |period: Duration| (period * 3).max(Duration::from_secs(3)) + late;
        let widest = self.seen.values().map(|(_, p)| window(*p)).max();
        self.shipping
            .retain(|s| widest.is_some_and(|w| s.progress.elapsed() <= w));
        if self.sender.stalled(Duration::from_secs(1)) || !self.shipping.is_empty() {
            let now = Instant::now();
            self.seen.values_mut().for_each(|(last, _)| *last = now);
            return;
        }
        let up = Instant::from_std(up);
        self.seen
            .values_mut()
            .for_each(|(last, _)| *last = (*last).max(up));
        let lost: Vec<(String, Duration)> = self
            .seen
            .iter()
            .filter(|(_, (last, period))| last.elapsed() > window(*period))
            .map(|(n, (last, _))| (n.clone(), last.elapsed()))
            .collect();
        for (node, silent) in lost {
            self.seen.remove(&node);
            let now = self.now_ms();
            let outs = self.engine.on_node_lost(
                now,
                &node,
                &format!("no heartbeat for {:.1} s", silent.as_secs_f64()),
            );
            self.carry_out(outs);
        }
    }

    /// Tells the nodes this run is alive (their dead-man switch): one `runAlive` per group
    /// (a node with agents of this run is in a group) that had no call delivered within the
    /// last `period` nor one going out for less than that (`Sender::called_within`; any
    /// call of the run tells its nodes as much: at N = 1000 the skipped `runAlive`s were
    /// 500 deliveries a second of the round trip's broker time), published
    /// from a task of its own so that the loop goes on taking triggers in while the broker
    /// confirms. One message per node, awaited here, held the loop up at N = 1000 and made
    /// the round trip's tail (docs/benchmarks.md). A group with no member yet (before setup)
    /// is no failure. A confirm can take seconds while the broker writes a large agent to
    /// every queue, and the message is delivered before it is confirmed: the next period's
    /// goes out anyway (a few at most wait at once), or the nodes would hear nothing for
    /// their dead-man interval (seen at N = 1000 with one in flight at a time).
    fn run_alive(&mut self, period: Duration) {
        const IN_FLIGHT: usize = 8;
        self.alive.retain(|t| !t.is_finished());
        if self.alive.len() >= IN_FLIGHT {
            return;
        }
        let call = self.daemon_call(DaemonCall::RunAlive(Alive {
            alive_ms: Some(period.as_millis() as u64),
        }));
        let groups: Vec<String> = self
            .procedure
            .groups
            .iter()
            .map(|g| g.name.clone())
            .filter(|g| !self.sender.called_within(g, period))
            .collect();
        if groups.is_empty() {
            return;
        }
        let port = self.link.port.clone();
        self.alive.push(tokio::spawn(async move {
            for group in groups {
                let _ = port.publish_group(&group, call.clone()).await;
            }
        }));
    }

    /// A node-agent method without answer, sent to every node of the run (`detachRun`).
    async fn daemon_call_to_all(&mut self, daemon: DaemonCall) {
        let call = self.daemon_call(daemon);
        let nodes: Vec<String> = self.nodes.iter().cloned().collect();
        let _ = self.link.port.publish_nodes(&nodes, call).await;
    }

    /// A node-agent method of this run that expects no answer.
    fn daemon_call(&self, daemon: DaemonCall) -> Call {
        daemon.call(&self.run)
    }

    /// Carries out the engine's outputs: console lines and records here, calls handed to
    /// the sender (what it cannot deliver comes back to the run loop).
    fn carry_out(&mut self, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Line(line) => {
                    let epoch = self.epoch_at(line.at_ms);
                    self.console.line(&line, epoch);
                    self.record.console(&line, epoch);
                }
                Output::Finished(outcome) => self.outcome = Some(outcome),
                Output::Send {
                    stream,
                    dest,
                    mut call,
                } => {
                    self.record.event(
                        "sent",
                        "call",
                        json!({"dest": sender::describe(&dest), "call": call}),
                    );
                    if call.dock == DAEMON_DOCK && call.method == method::LOAD_AGENT {
                        self.ship(&mut call, &dest);
                    }
                    self.sender.send(Outgoing { stream, dest, call });
                }
            }
        }
    }

    /// Completes a `loadAgent` call to `dest`: the run's `runAlive` period (for the nodes'
    /// dead man) and, when the agent is shipped, its archive, noting the shipment.
    fn ship(&mut self, call: &mut Call, dest: &Dest) {
        let Ok(DaemonCall::LoadAgent(mut load)) = DaemonCall::from_call(call) else {
            return;
        };
        load.alive_ms = self.config.alive_every.map(|d| d.as_millis() as u64);
        if let Some(s) = self.config.shipments.get(&load.name) {
            load.archive = Some(s.archive_b64.clone());
            load.sha256 = Some(s.sha256.clone());
            let owed = match dest {
                Dest::Group(g) => self.procedure.nodes_of(g),
                Dest::Nodes(n) => n.clone(),
            };
            self.shipping.push(Shipping {
                agent: load.name.clone(),
                owed: owed.into_iter().collect(),
                progress: Instant::now(),
            });
        }
        (call.method, call.args) = DaemonCall::LoadAgent(load).to_wire();
    }

    /// A node's answer to a shipped archive (loaded, or failed naming the agent).
    fn shipped_answer(&mut self, t: &Trigger) {
        if self.shipping.is_empty()
            || !(t.event == magi_proto::AGENT_LOAD_DONE || t.event == magi_proto::RUNTIME_EXCEPTION)
        {
            return;
        }
        let Some(agent) = t.args.get("agent").and_then(Value::as_str) else {
            return;
        };
        for s in self.shipping.iter_mut().filter(|s| s.agent == agent) {
            for node in &t.nodes {
                if s.owed.remove(node) {
                    s.progress = Instant::now();
                }
            }
        }
        self.shipping.retain(|s| !s.owed.is_empty());
    }
}

#[cfg(test)]
mod tests;
