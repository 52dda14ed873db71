//! Helpers shared by the broker tests.
#![allow(dead_code)]

use std::time::Duration;

use magi_bus::Inbound;
use magi_proto::{Call, NodeStatus, Object, Trigger};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a message may take to arrive on a loaded 2-core machine.
pub const ARRIVES: Duration = Duration::from_secs(10);
/// How long we watch for a message that must not arrive.
pub const QUIET: Duration = Duration::from_millis(500);

/// A call of `run`.
pub fn call(run: &str, method: &str) -> Call {
    Call {
        run: run.into(),
        seq: 1,
        dock: "a".into(),
        method: method.into(),
        args: Object::new(),
        trigger: None,
        nodes: None,
        sender: None,
    }
}

/// A trigger of `run` from `node`.
pub fn trigger(run: &str, event: &str, node: &str) -> Trigger {
    Trigger::from_node(run, event, node, Object::new())
}

/// The next item, or a panic after [`ARRIVES`].
pub async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    match tokio::time::timeout(ARRIVES, rx.recv()).await {
        Ok(Some(x)) => x,
        Ok(None) => panic!("the link ended"),
        Err(_) => panic!("nothing arrived within {ARRIVES:?}"),
    }
}

/// Assert nothing arrives for [`QUIET`].
pub async fn quiet<T: std::fmt::Debug>(rx: &mut UnboundedReceiver<T>) {
    if let Ok(Some(x)) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected: {x:?}");
    }
}

/// The next trigger on a run's inbound, skipping heartbeats.
pub async fn next_trigger(rx: &mut UnboundedReceiver<Inbound>) -> Trigger {
    loop {
        match next(rx).await {
            Inbound::Trigger(t) => return t,
            Inbound::Node(_) => continue,
            other => panic!("expected a trigger, got {other:?}"),
        }
    }
}

/// A node's status.
pub fn status(node: &str, alive: bool) -> NodeStatus {
    NodeStatus {
        node: node.into(),
        pid: 1,
        time: 0.0,
        heartbeat_ms: 1000,
        runs: vec![],
        alive,
    }
}
