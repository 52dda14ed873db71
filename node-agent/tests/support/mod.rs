//! What the node agent's tests share: calls as an orchestrator sends them, and waiting for
//! the next trigger of a run.

#![allow(dead_code)] // each test binary uses its part

use std::path::Path;
use std::time::Duration;

use magi_bus::{Inbound, RunLink};
use magi_proto::{Call, Trigger};
use serde_json::{json, Value};

/// A call of `run`, firing `<method>Done`.
pub fn call(run: &str, seq: u64, dock: &str, method: &str, args: Value) -> Call {
    Call {
        run: run.into(),
        seq,
        dock: dock.into(),
        method: method.into(),
        args: args.as_object().cloned().unwrap_or_default(),
        trigger: Some(format!("{method}Done")),
        nodes: None,
        sender: None,
    }
}

/// `loadAgent` of the Python test agent as `a`.
pub fn load_test_agent(run: &str) -> Call {
    let testagent = Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent");
    let load = json!({"name": "a", "path": testagent, "execargs": {}});
    Call {
        trigger: None,
        ..call(run, 1, "daemon", "loadAgent", load)
    }
}

/// The run's next trigger (heartbeats and records are skipped), within 30 s.
pub async fn next_trigger(run: &mut RunLink) -> Trigger {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(Inbound::Trigger(t)) = run.inbound.recv().await {
                return t;
            }
        }
    })
    .await
    .expect("a trigger within 30 s")
}
