//! A node agent's heartbeats do not wait for its dispatcher: a broker slow to answer a join
//! (at N = 3000 joins held dispatchers up for 19 s) does not silence the node. On the
//! in-process bus and tokio's paused clock.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::call;

use async_trait::async_trait;
use magi_bus::memory::MemoryBus;
use magi_bus::{Bus, Inbound, NodeLink, NodePort, SendError};
use magi_node::NodeConfig;
use magi_proto::{NodeStatus, Record, Trigger};
use serde_json::json;
use tokio::time::Instant;

const PERIOD: Duration = Duration::from_millis(500);
const JOIN_TAKES: Duration = Duration::from_secs(10);

/// A node port whose broker takes [`JOIN_TAKES`] to answer a join.
struct SlowJoin(Arc<dyn NodePort>);

#[async_trait]
impl NodePort for SlowJoin {
    async fn join(&self, run: &str, group: &str) -> Result<(), SendError> {
        tokio::time::sleep(JOIN_TAKES).await;
        self.0.join(run, group).await
    }
    async fn leave(&self, run: &str, group: &str) -> Result<(), SendError> {
        self.0.leave(run, group).await
    }
    async fn send_trigger(&self, trigger: Trigger) -> Result<(), SendError> {
        self.0.send_trigger(trigger).await
    }
    async fn send_record(&self, record: Record) -> Result<(), SendError> {
        self.0.send_record(record).await
    }
    async fn announce(&self, status: NodeStatus) -> Result<(), SendError> {
        self.0.announce(status).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_heartbeats_every_period_while_its_dispatcher_waits_on_a_slow_join() {
    let bus = MemoryBus::new();
    let mut run = bus.open_run("r-beat").await.expect("open run");
    let NodeLink { calls, port } = bus.attach_node("n1").await.expect("attach");
    let link = NodeLink {
        calls,
        port: Arc::new(SlowJoin(port)),
    };
    let state = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig::new("n1", state.path().to_path_buf());
    config.heartbeat = PERIOD;
    tokio::spawn(magi_node::run(link, config, std::future::pending()));
    let join = call("r-beat", 1, "daemon", "joinGroup", json!({"group": "g"}));
    run.port
        .publish_nodes(&["n1".into()], join)
        .await
        .expect("join");
    let sent = Instant::now();
    // Every heartbeat heard until the join's answer, and the longest silence between them.
    let (mut beats, mut last, mut longest) = (0, sent, Duration::ZERO);
    let answer = loop {
        match run.inbound.recv().await.expect("the bus is open") {
            Inbound::Node(s) if s.node == "n1" && s.alive => {
                beats += 1;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            Inbound::Trigger(t) => break t,
            _ => {}
        }
    };
    assert_eq!(answer.event, "GroupBuildDone", "{answer:?}");
    assert!(sent.elapsed() >= JOIN_TAKES, "answered after {:?}", sent.elapsed());
    assert!(beats >= 19, "{beats} heartbeats during a join of {JOIN_TAKES:?}");
    assert!(longest <= PERIOD + Duration::from_millis(10), "silent for {longest:?}");
    // The heartbeats then tell the group joined.
    let shown = loop {
        if let Inbound::Node(s) = run.inbound.recv().await.expect("open") {
            break s;
        }
    };
    assert_eq!(shown.runs.len(), 1, "{shown:?}");
    assert_eq!(shown.runs[0].groups, ["g"], "{shown:?}");
}
