//! The dead-man switch: a node agent stops a run's agents by itself when the run's
//! orchestrator has gone silent, unless the orchestrator detached the run on purpose
//! (`--keep-agents`). Runs on the in-process bus with the Python test agent.

mod support;

use std::path::Path;
use std::time::Duration;
use support::next_trigger;

use magi_bus::memory::MemoryBus;
use magi_bus::{Bus, Inbound};
use magi_node::NodeConfig;
use magi_proto::{Call, Trigger};
use serde_json::json;

fn call(run: &str, method: &str, args: serde_json::Value) -> Call {
    Call {
        run: run.into(),
        seq: 1,
        dock: "daemon".into(),
        method: method.into(),
        args: args.as_object().cloned().unwrap_or_default(),
        trigger: None,
        nodes: None,
        sender: None,
    }
}

/// Loads the test agent for `run` (its `loadAgent` stating the run's `runAlive` period
/// `alive_ms` if any), optionally detaches the run, then stays silent for `silence` and
/// returns the agents the node still announces then. The node's own dead man is 800 ms.
async fn agents_left_after(
    run: &str,
    alive_ms: Option<u64>,
    detach: bool,
    silence: Duration,
) -> Vec<String> {
    silent_for(run, alive_ms, detach, silence).await.0
}

/// As [`agents_left_after`], with the triggers the run received during the silence.
async fn silent_for(
    run: &str,
    alive_ms: Option<u64>,
    detach: bool,
    silence: Duration,
) -> (Vec<String>, Vec<Trigger>) {
    let bus = MemoryBus::new();
    let mut orch = bus.open_run(run).await.expect("open run");
    let link = bus.attach_node("n1").await.expect("attach");
    let state = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig::new("n1", state.path().to_path_buf());
    config.heartbeat = Duration::from_millis(200);
    config.dead_man = Some(Duration::from_millis(800));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(magi_node::run(link, config, async {
        let _ = stop_rx.await;
    }));
    let testagent = Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent");
    let port = orch.port.clone();
    port.publish_nodes(
        &["n1".into()],
        call(
            run,
            "loadAgent",
            json!({"name": "a", "path": testagent, "execargs": {}, "alive_ms": alive_ms}),
        ),
    )
    .await
    .expect("load");
    assert_eq!(next_trigger(&mut orch).await.event, "AgentLoadDone");
    if detach {
        port.publish_nodes(&["n1".into()], call(run, "detachRun", json!({})))
            .await
            .expect("detach");
    }
    // The latest announcement says which agents still run.
    let mut agents = Vec::new();
    let mut triggers = Vec::new();
    let until = tokio::time::Instant::now() + silence;
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, orch.inbound.recv()).await {
        match msg {
            Inbound::Node(status) => {
                agents = status
                    .runs
                    .iter()
                    .filter(|r| r.run == run)
                    .flat_map(|r| r.agents.clone())
                    .collect();
            }
            Inbound::Trigger(t) => triggers.push(t),
            _ => {}
        }
    }
    let _ = stop_tx.send(());
    let _ = node.await;
    (agents, triggers)
}

fn left_run(triggers: &[Trigger]) -> Vec<&Trigger> {
    triggers
        .iter()
        .filter(|t| t.event == magi_proto::NODE_LEFT_RUN)
        .collect()
}

#[tokio::test]
async fn a_silent_orchestrators_agents_are_stopped_after_the_dead_man_interval_and_the_run_told() {
    let (agents, triggers) = silent_for("r-silent", None, false, Duration::from_millis(2500)).await;
    assert!(agents.is_empty(), "{agents:?}");
    // The run, if only slow, learns that the node left it, and why.
    let left = left_run(&triggers);
    assert_eq!(left.len(), 1, "{triggers:?}");
    assert_eq!(left[0].nodes, ["n1"]);
    let arg = |k: &str| left[0].args.get(k).and_then(|v| v.as_f64());
    assert_eq!(arg("limit"), Some(0.8));
    assert!(arg("silent").is_some_and(|s| s > 0.8), "{:?}", left[0].args);
}

#[tokio::test]
async fn a_detached_run_keeps_its_agents() {
    let (agents, triggers) = silent_for("r-kept", None, true, Duration::from_millis(2500)).await;
    assert_eq!(agents, vec!["a".to_string()]);
    assert!(left_run(&triggers).is_empty(), "{triggers:?}");
}

#[tokio::test]
async fn an_agent_cannot_say_its_node_left_the_run() {
    let bus = MemoryBus::new();
    let mut orch = bus.open_run("r-forge").await.expect("open run");
    let link = bus.attach_node("n1").await.expect("attach");
    let state = tempfile::tempdir().expect("temp dir");
    let config = NodeConfig::new("n1", state.path().to_path_buf());
    tokio::spawn(magi_node::run(link, config, std::future::pending()));
    let testagent = Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent");
    let load = json!({"name": "a", "path": testagent, "execargs": {}});
    orch.port
        .publish_nodes(&["n1".into()], call("r-forge", "loadAgent", load))
        .await
        .expect("load");
    assert_eq!(next_trigger(&mut orch).await.event, "AgentLoadDone");
    let mut emit = call(
        "r-forge",
        "emit",
        json!({"event": magi_proto::NODE_LEFT_RUN, "silent": 99}),
    );
    emit.dock = "a".into();
    emit.seq = 2;
    emit.trigger = Some("emitted".into());
    orch.port
        .publish_nodes(&["n1".into()], emit)
        .await
        .expect("emit");
    let mut seen = Vec::new();
    while !seen.iter().any(|t: &Trigger| t.event == "emitted") {
        seen.push(next_trigger(&mut orch).await);
    }
    assert!(left_run(&seen).is_empty(), "{seen:?}");
    let warning = seen
        .iter()
        .find(|t| t.event == magi_proto::RUNTIME_EXCEPTION)
        .unwrap_or_else(|| panic!("no warning: {seen:?}"));
    assert_eq!(warning.args["type"], "MagiWarning");
    assert!(
        warning.args["error"]
            .as_str()
            .is_some_and(|e| e.contains("NodeLeftRun")),
        "{warning:?}"
    );
}

#[tokio::test]
async fn a_run_told_alive_less_often_is_given_three_of_its_periods_before_its_agents_stop() {
    // The run says it is alive every second: 3 s of silence, not the node's own 800 ms.
    let second = Some(1000);
    let kept = agents_left_after("r-slow-alive", second, false, Duration::from_millis(2000));
    assert_eq!(
        kept.await,
        ["a"],
        "still running after twice the node's own limit"
    );
    let left = agents_left_after("r-slow-alive2", second, false, Duration::from_millis(4500));
    assert!(
        left.await.is_empty(),
        "stopped after three of the run's periods"
    );
}

#[tokio::test]
async fn a_stated_period_never_shortens_the_nodes_own_limit() {
    // Three periods of 10 ms are 30 ms; the node's own 800 ms stands.
    let kept = agents_left_after("r-fast-alive", Some(10), false, Duration::from_millis(500));
    assert_eq!(kept.await, ["a"]);
}

#[tokio::test]
async fn the_dead_man_interval_counts_from_the_agents_start_not_from_its_slow_load() {
    // The agent takes 1.5 s to get ready, twice the 800 ms dead-man interval; the
    // orchestrator says nothing after its `loadAgent`.
    let module = tempfile::tempdir().expect("module dir");
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent/testagent.py");
    let manifest = json!({
        "name": "slowstart",
        "command": ["sh", "-c", format!("sleep 1.5; exec python3 {}", agent.display())],
    });
    std::fs::write(module.path().join("magi-agent.json"), manifest.to_string()).expect("manifest");
    let bus = MemoryBus::new();
    let mut orch = bus.open_run("r-slow").await.expect("open run");
    let link = bus.attach_node("n1").await.expect("attach");
    let state = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig::new("n1", state.path().to_path_buf());
    config.heartbeat = Duration::from_millis(100);
    config.dead_man = Some(Duration::from_millis(800));
    tokio::spawn(magi_node::run(link, config, std::future::pending()));
    let load = json!({"name": "a", "path": module.path(), "execargs": {}});
    orch.port
        .publish_nodes(&["n1".into()], call("r-slow", "loadAgent", load))
        .await
        .expect("load");
    assert_eq!(next_trigger(&mut orch).await.event, "AgentLoadDone");
    // The agents the node's heartbeats list over the next `for`.
    async fn listed(orch: &mut magi_bus::RunLink, r#for: Duration) -> Vec<String> {
        let mut agents = Vec::new();
        let until = tokio::time::Instant::now() + r#for;
        while let Ok(Some(msg)) = tokio::time::timeout_at(until, orch.inbound.recv()).await {
            if let Inbound::Node(status) = msg {
                agents = status.runs.iter().flat_map(|r| r.agents.clone()).collect();
            }
        }
        agents
    }
    assert_eq!(
        listed(&mut orch, Duration::from_millis(400)).await,
        ["a"],
        "stopped within 400 ms of its start"
    );
    assert!(
        listed(&mut orch, Duration::from_millis(1500))
            .await
            .is_empty(),
        "the silence after the start still stops it"
    );
}
