//! Archives shipped with `loadAgent` (base64 in the call, as `magi run` sends them): node
//! agents of one process sharing a cache unpack the same archive once, and a broken
//! archive is reported as a load error. Runs on the in-process bus with the test agent.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use magi_bus::memory::MemoryBus;
use magi_bus::{Bus, Inbound, RunLink};
use magi_node::NodeConfig;
use magi_proto::{Call, Trigger};
use serde_json::json;

fn load(run: &str, nodes: &[&str], args: serde_json::Value) -> (Vec<String>, Call) {
    let call = Call {
        run: run.into(),
        seq: 1,
        dock: "daemon".into(),
        method: "loadAgent".into(),
        args: args.as_object().cloned().unwrap_or_default(),
        trigger: None,
        nodes: None,
        sender: None,
    };
    (nodes.iter().map(|n| n.to_string()).collect(), call)
}

/// The next `count` triggers of the run.
async fn triggers(orch: &mut RunLink, count: usize) -> Vec<Trigger> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut got = Vec::new();
        while got.len() < count {
            match orch.inbound.recv().await {
                Some(Inbound::Trigger(t)) => got.push(t),
                Some(_) => {}
                None => panic!("the run link closed"),
            }
        }
        got
    })
    .await
    .expect("the nodes answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_cache_unpack_a_shipped_archive_once() {
    let bus = MemoryBus::new();
    let mut orch = bus.open_run("r").await.expect("open run");
    let state = tempfile::tempdir().expect("temp dir");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let names = ["n1", "n2", "n3", "n4"];
    let mut nodes = Vec::new();
    for name in names {
        let link = bus.attach_node(name).await.expect("attach");
        let config = NodeConfig::new(name, state.path().to_path_buf());
        let mut rx = stopped.clone();
        nodes.push(tokio::spawn(magi_node::run(link, config, async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
    }
    let packed = magi_node::pack::pack(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent"))
        .expect("pack the test agent");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&packed.bytes);
    let (to, call) = load(
        "r",
        &names,
        json!({"name": "a", "execargs": {}, "archive": b64, "sha256": packed.sha256}),
    );
    orch.port.publish_nodes(&to, call).await.expect("publish");
    let got = triggers(&mut orch, names.len()).await;
    assert!(
        got.iter().all(|t| t.event == "AgentLoadDone"),
        "every node loaded the agent: {got:?}"
    );
    let entries: Vec<_> = std::fs::read_dir(state.path().join("agent-cache"))
        .expect("the cache exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    assert_eq!(
        entries,
        vec![packed.sha256.clone()],
        "one cache entry, named by the archive's hash"
    );

    let (to, call) = load(
        "r2",
        &["n1"],
        json!({"name": "b", "execargs": {}, "archive": "not base64!"}),
    );
    let mut orch2 = bus.open_run("r2").await.expect("open run");
    orch2.port.publish_nodes(&to, call).await.expect("publish");
    let got = triggers(&mut orch2, 1).await;
    assert_eq!(got[0].event, "RuntimeException");
    let error = got[0]
        .args
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    assert!(error.contains("not valid base64"), "{error}");

    let _ = stop.send(true);
    for n in nodes {
        let _ = n.await;
    }
}
