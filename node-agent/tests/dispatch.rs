//! The dispatcher's rules, on the in-process bus with the Python test agent: calls reach
//! an agent by its dock, replies name the call they answer, malformed node-agent calls are
//! refused with a RuntimeException that says why.

mod support;

use std::path::Path;
use support::{call, next_trigger};

use magi_bus::memory::MemoryBus;
use magi_bus::{Bus, RunLink};
use magi_node::NodeConfig;
use serde_json::json;

/// A node `n1` on a fresh bus, with the run `run` open; the node stops when the bus drops.
async fn node(run: &str) -> (MemoryBus, RunLink, tempfile::TempDir) {
    let bus = MemoryBus::new();
    let orch = bus.open_run(run).await.expect("open run");
    let link = bus.attach_node("n1").await.expect("attach");
    let state = tempfile::tempdir().expect("temp dir");
    let config = NodeConfig::new("n1", state.path().to_path_buf());
    tokio::spawn(magi_node::run(link, config, std::future::pending()));
    (bus, orch, state)
}

#[tokio::test]
async fn an_agent_whose_dock_differs_from_its_name_is_called_by_its_dock() {
    let (_bus, mut orch, _state) = node("r-dock").await;
    let testagent = Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent");
    let port = orch.port.clone();
    let load = json!({"name": "a", "dock": "a_dock", "path": testagent, "execargs": {}});
    port.publish_nodes(
        &["n1".into()],
        call("r-dock", 1, "daemon", "loadAgent", load),
    )
    .await
    .expect("load");
    assert_eq!(next_trigger(&mut orch).await.event, "AgentLoadDone");
    port.publish_nodes(
        &["n1".into()],
        call("r-dock", 2, "a_dock", "ret", json!({"value": 7})),
    )
    .await
    .expect("call");
    let reply = next_trigger(&mut orch).await;
    assert_eq!(reply.event, "retDone", "{reply:?}");
    assert_eq!(reply.args.get("retVal"), Some(&json!(7)));
    assert_eq!(reply.args.get("agent"), Some(&json!("a")));
    assert_eq!(reply.call, Some(2), "the reply names the call it answers");
}

#[tokio::test]
async fn a_failed_call_names_the_call_and_a_spontaneous_trigger_names_none() {
    let (_bus, mut orch, _state) = node("r-ids").await;
    let testagent = Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent");
    let port = orch.port.clone();
    let load = json!({"name": "a", "path": testagent, "execargs": {}});
    port.publish_nodes(
        &["n1".into()],
        call("r-ids", 1, "daemon", "loadAgent", load),
    )
    .await
    .expect("load");
    assert_eq!(next_trigger(&mut orch).await.event, "AgentLoadDone");
    port.publish_nodes(&["n1".into()], call("r-ids", 5, "a", "fail", json!({})))
        .await
        .expect("call");
    let failure = next_trigger(&mut orch).await;
    assert_eq!(failure.event, "RuntimeException");
    assert_eq!(failure.call, Some(5));
    let mut emit = call("r-ids", 6, "a", "emit", json!({"event": "hello"}));
    emit.trigger = None;
    port.publish_nodes(&["n1".into()], emit)
        .await
        .expect("call");
    let own = next_trigger(&mut orch).await;
    assert_eq!(own.event, "hello");
    assert_eq!(own.call, None, "an agent's own trigger answers no call");
}

#[tokio::test]
async fn a_join_without_a_group_is_refused_and_says_why() {
    let (_bus, mut orch, _state) = node("r-bad").await;
    let port = orch.port.clone();
    port.publish_nodes(
        &["n1".into()],
        call("r-bad", 1, "daemon", "joinGroup", json!({"nodes": ["n1"]})),
    )
    .await
    .expect("call");
    let refusal = next_trigger(&mut orch).await;
    assert_eq!(refusal.event, "RuntimeException");
    let error = refusal.args["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("joinGroup") && error.contains("group"),
        "{error}"
    );
}
