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
    assert!(
        sent.elapsed() >= JOIN_TAKES,
        "answered after {:?}",
        sent.elapsed()
    );
    assert!(
        beats >= 19,
        "{beats} heartbeats during a join of {JOIN_TAKES:?}"
    );
    assert!(
        longest <= PERIOD + Duration::from_millis(10),
        "silent for {longest:?}"
    );
    // The heartbeats then tell the group joined.
    let shown = loop {
        if let Inbound::Node(s) = run.inbound.recv().await.expect("open") {
            break s;
        }
    };
    assert_eq!(shown.runs.len(), 1, "{shown:?}");
    assert_eq!(shown.runs[0].groups, ["g"], "{shown:?}");
}

#[test]
fn heartbeats_keep_their_period_while_the_node_agents_runtime_is_saturated() {
    const BEAT: Duration = Duration::from_millis(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = tempfile::tempdir().expect("temp dir");
    let (bus, mut run) = rt.block_on(async {
        let bus = MemoryBus::new();
        let run = bus.open_run("r-busy").await.expect("open run");
        let link = bus.attach_node("n1").await.expect("attach");
        let mut config = NodeConfig::new("n1", state.path().to_path_buf());
        config.heartbeat = BEAT;
        tokio::spawn(magi_node::run(link, config, std::future::pending()));
        (bus, run)
    });
    // Heard on a thread of its own, so that the listener is not starved either.
    let listener = std::thread::spawn(move || {
        let mut heard = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            match run.inbound.try_recv() {
                Ok(Inbound::Node(s)) if s.node == "n1" => heard.push(std::time::Instant::now()),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        heard
    });
    // Eight tasks that each hold a worker for 300 ms at a time, for 2.5 s: a node agent's
    // runtime with a backlog of work.
    let busy_until = std::time::Instant::now() + Duration::from_millis(2500);
    for _ in 0..8 {
        rt.spawn(async move {
            while std::time::Instant::now() < busy_until {
                std::thread::sleep(Duration::from_millis(300));
                tokio::task::yield_now().await;
            }
        });
    }
    let heard = listener.join().expect("listener");
    let longest = heard
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(heard.len() >= 20, "{} heartbeats in 3 s", heard.len());
    assert!(longest < BEAT * 3, "silent for {longest:?}");
    drop(bus);
    rt.shutdown_background();
}

#[tokio::test(start_paused = true)]
async fn node_agents_started_together_spread_their_heartbeats_over_the_period() {
    // Forty node agents started at one instant, as `magi-node --nodes 40` starts them:
    // their heartbeats fall all over the period, not in one burst, and each still comes
    // once a period.
    const NODES: usize = 40;
    let bus = MemoryBus::new();
    let mut run = bus.open_run("r-spread").await.expect("open run");
    let state = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    for i in 0..NODES {
        let name = format!("node{i}");
        let link = bus.attach_node(&name).await.expect("attach");
        let mut config = NodeConfig::new(&name, state.path().join(&name));
        config.heartbeat = PERIOD;
        tokio::spawn(magi_node::run(link, config, std::future::pending()));
    }
    // Heartbeats of the third to fifth periods (the first is the announcement at start).
    let (from, to) = (start + PERIOD * 2, start + PERIOD * 5);
    let mut at: std::collections::HashMap<String, Vec<Duration>> = Default::default();
    while Instant::now() < to {
        let Ok(Some(Inbound::Node(s))) = tokio::time::timeout(PERIOD, run.inbound.recv()).await
        else {
            continue;
        };
        if s.alive && (from..to).contains(&Instant::now()) {
            at.entry(s.node).or_default().push(Instant::now() - start);
        }
    }
    assert_eq!(at.len(), NODES, "every node heartbeats: {at:?}");
    // Where in the period each node's heartbeats fall, in tenths of it.
    let mut tenths = std::collections::BTreeSet::new();
    for (node, times) in &at {
        assert_eq!(times.len(), 3, "{node} beats once a period: {times:?}");
        let phase = times[0].as_millis() % PERIOD.as_millis();
        tenths.insert(phase * 10 / PERIOD.as_millis());
    }
    assert!(
        tenths.len() >= 8,
        "the heartbeats fall in {} tenths of the period: {tenths:?}",
        tenths.len()
    );
}
