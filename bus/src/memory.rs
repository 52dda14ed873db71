//! The in-process transport: node agents, orchestrators and taps in one process.
//!
//! Its behaviour is the bus contract (`tests/contract/`), which the RabbitMQ transport keeps too.
//!
//! A router behind a mutex holds each attached node's inbox and group memberships, each
//! open run's inbox, and the taps. Channels are unbounded so that no sender ever blocks
//! on a slow receiver and nothing is dropped; the volumes are those of a control plane.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use magi_proto::{Call, NodeStatus, Record, Trigger};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::{
    AttachError, Bus, Delivered, Inbound, NodeLink, NodePort, RunLink, RunPort, SendError, TapItem,
    TapLink,
};

/// The in-process bus. Cheap to clone; clones share the router.
#[derive(Clone, Default)]
pub struct MemoryBus {
    router: Arc<Mutex<Router>>,
}

#[derive(Default)]
struct Router {
    nodes: HashMap<String, NodeEntry>,
    runs: HashMap<String, UnboundedSender<Inbound>>,
    taps: Vec<(Option<String>, UnboundedSender<TapItem>)>,
}

struct NodeEntry {
    inbox: UnboundedSender<Call>,
    /// (run, group) pairs joined.
    groups: BTreeSet<(String, String)>,
}

impl Router {
    fn tap(&mut self, item: TapItem) {
        self.taps.retain(|(run, tx)| {
            if run.is_some() && run.as_deref() != item.run.as_deref() {
                return !tx.is_closed();
            }
            tx.send(item.clone()).is_ok()
        });
    }
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        // A panic while holding the lock cannot leave the router half-updated in a way
        // that matters (each operation is a single insert or send), so poisoning is ignored.
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn attach_node(&self, node: &str) -> Result<NodeLink, AttachError> {
        let (tx, rx) = unbounded_channel();
        let mut router = self.lock();
        // As over RabbitMQ: one node agent per name while it is attached.
        if router.nodes.get(node).is_some_and(|e| !e.inbox.is_closed()) {
            return Err(AttachError::InUse(format!("node {node}")));
        }
        router.nodes.insert(
            node.to_string(),
            NodeEntry {
                inbox: tx,
                groups: BTreeSet::new(),
            },
        );
        drop(router);
        let port = Arc::new(MemoryNodePort {
            bus: self.clone(),
            node: node.to_string(),
        });
        Ok(NodeLink { calls: rx, port })
    }

    async fn open_run(&self, run: &str) -> Result<RunLink, AttachError> {
        let (tx, rx) = unbounded_channel();
        let mut router = self.lock();
        // As over RabbitMQ: one orchestrator per run while it is open.
        if router.runs.get(run).is_some_and(|inbox| !inbox.is_closed()) {
            return Err(AttachError::InUse(format!("run {run}")));
        }
        router.runs.insert(run.to_string(), tx);
        drop(router);
        let port = Arc::new(MemoryRunPort {
            bus: self.clone(),
            run: run.to_string(),
        });
        Ok(RunLink { inbound: rx, port })
    }

    async fn tap(&self, run: Option<&str>) -> Result<TapLink, AttachError> {
        let (tx, rx) = unbounded_channel();
        self.lock().taps.push((run.map(str::to_string), tx));
        Ok(TapLink { items: rx })
    }

    /// Nothing to close: the bus lives as long as its clones.
    async fn close(&self) {}
}

struct MemoryNodePort {
    bus: MemoryBus,
    node: String,
}

impl MemoryNodePort {
    fn set_membership(&self, run: &str, group: &str, member: bool) -> Result<(), SendError> {
        let mut router = self.bus.lock();
        let entry = router
            .nodes
            .get_mut(&self.node)
            .ok_or_else(|| SendError::Disconnected(format!("node {} is detached", self.node)))?;
        let key = (run.to_string(), group.to_string());
        if member {
            entry.groups.insert(key);
        } else {
            entry.groups.remove(&key);
        }
        Ok(())
    }

    fn to_run(
        &self,
        run: &str,
        kind: &str,
        msg: Inbound,
        body: serde_json::Value,
    ) -> Result<(), SendError> {
        let mut router = self.bus.lock();
        router.tap(TapItem {
            kind: kind.to_string(),
            run: Some(run.to_string()),
            group: None,
            nodes: vec![self.node.clone()],
            body,
        });
        match router.runs.get(run) {
            Some(tx) if tx.send(msg).is_ok() => Ok(()),
            _ => Err(SendError::NoRoute(format!("run {run} has no orchestrator"))),
        }
    }
}

#[async_trait]
impl NodePort for MemoryNodePort {
    async fn join(&self, run: &str, group: &str) -> Result<(), SendError> {
        self.set_membership(run, group, true)
    }

    async fn leave(&self, run: &str, group: &str) -> Result<(), SendError> {
        self.set_membership(run, group, false)
    }

    async fn send_trigger(&self, trigger: Trigger) -> Result<(), SendError> {
        let body = serde_json::to_value(&trigger).unwrap_or_default();
        let run = trigger.run.clone();
        self.to_run(&run, "trigger", Inbound::Trigger(trigger), body)
    }

    async fn send_record(&self, record: Record) -> Result<(), SendError> {
        let body = serde_json::to_value(&record).unwrap_or_default();
        let run = record.run.clone();
        self.to_run(&run, "record", Inbound::Record(record), body)
    }

    async fn announce(&self, status: NodeStatus) -> Result<(), SendError> {
        let mut router = self.bus.lock();
        router.tap(TapItem {
            kind: "node".into(),
            run: None,
            group: None,
            nodes: vec![self.node.clone()],
            body: serde_json::to_value(&status).unwrap_or_default(),
        });
        router
            .runs
            .retain(|_, tx| tx.send(Inbound::Node(status.clone())).is_ok());
        if !status.alive {
            router.nodes.remove(&self.node);
        }
        Ok(())
    }
}

struct MemoryRunPort {
    bus: MemoryBus,
    run: String,
}

impl MemoryRunPort {
    fn deliver(
        &self,
        group: Option<&str>,
        nodes: &[String],
        call: Call,
    ) -> Result<Delivered, SendError> {
        let mut router = self.bus.lock();
        let key = group.map(|g| (self.run.clone(), g.to_string()));
        let mut receivers = 0;
        for (name, entry) in &router.nodes {
            let addressed = match &key {
                Some(k) => entry.groups.contains(k),
                None => nodes.contains(name),
            };
            if addressed && entry.inbox.send(call.clone()).is_ok() {
                receivers += 1;
            }
        }
        router.tap(TapItem {
            kind: "call".into(),
            run: Some(self.run.clone()),
            group: group.map(str::to_string),
            nodes: nodes.to_vec(),
            body: serde_json::to_value(&call).unwrap_or_default(),
        });
        if receivers == 0 {
            let what = group
                .map(|g| format!("group {g}"))
                .unwrap_or_else(|| format!("nodes {}", nodes.join(",")));
            return Err(SendError::NoRoute(what));
        }
        Ok(Delivered {
            receivers: Some(receivers),
        })
    }
}

#[async_trait]
impl RunPort for MemoryRunPort {
    async fn publish_group(&self, group: &str, call: Call) -> Result<Delivered, SendError> {
        self.deliver(Some(group), &[], call)
    }

    async fn publish_nodes(&self, nodes: &[String], call: Call) -> Result<Delivered, SendError> {
        self.deliver(None, nodes, call)
    }

    async fn close(&self) -> Result<(), SendError> {
        let mut router = self.bus.lock();
        router.runs.remove(&self.run);
        for entry in router.nodes.values_mut() {
            entry.groups.retain(|(run, _)| run != &self.run);
        }
        Ok(())
    }
}
