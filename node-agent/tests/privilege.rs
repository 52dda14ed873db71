//! A root node runs agents as an unprivileged user, with only the capabilities their
//! manifest asks for and the node grants, and none of the node's environment: an allowed
//! orchestrator user is not trusted with the whole node.
//!
//! These tests need root (the node must be able to change user); as another user they say
//! so and pass, unless `MAGI_REQUIRE_SERVICES` is set (CI), where they fail.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::{call, next_trigger};

use magi_bus::memory::MemoryBus;
use magi_bus::{Bus, RunLink};
use magi_node::privilege;
use magi_node::NodeConfig;
use magi_proto::Trigger;
use serde_json::{json, Value};

/// An agent that reports who it is and what it may do, and tries to bind a port.
const PROBE: &str = r#"
import os, socket
from magi_agent import Agent, run

class Probe(Agent):
    def whoami(self):
        status = dict(l.split(":\t", 1) for l in open("/proc/self/status") if ":\t" in l)
        return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                "cap_eff": int(status["CapEff"].strip(), 16),
                "secret": os.environ.get("MAGI_PRIVILEGE_TEST_SECRET")}

    def bind(self, port):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", int(port)))
            return "bound"
        except OSError as e:
            return "refused: %s" % e
        finally:
            s.close()

    def handback(self, path):
        if path == "own":
            path = "/tmp/magi-privilege-test-%d" % os.getpid()
            with open(path, "w") as f:
                f.write("mine")
        self.hand_back(path)
        return True

run(Probe)
"#;

fn root_or_skip() -> bool {
    if privilege::is_root() {
        return true;
    }
    assert!(
        std::env::var_os("MAGI_REQUIRE_SERVICES").is_none(),
        "these tests need root, and MAGI_REQUIRE_SERVICES says every test must run"
    );
    eprintln!("skipped: confining agents needs root");
    false
}

/// A module directory (reachable by any user) whose manifest asks for `caps`.
fn probe_module(caps: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("probe.py"), PROBE).unwrap();
    let manifest =
        json!({"name": "probe", "command": ["python3", "probe.py"], "capabilities": caps});
    std::fs::write(dir.path().join("magi-agent.json"), manifest.to_string()).unwrap();
    dir
}

/// A node `n1` confined as `nobody` granting `grant`, with the run open, and the probe
/// module asking for `caps` loaded (or refused: the first trigger is returned).
async fn node_with_probe(
    run: &str,
    grant: &[&str],
    caps: &[&str],
) -> (MemoryBus, RunLink, Trigger, [tempfile::TempDir; 2]) {
    let bus = MemoryBus::new();
    let mut orch = bus.open_run(run).await.expect("open run");
    let link = bus.attach_node("n1").await.expect("attach");
    let state = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let grant: BTreeSet<String> = grant.iter().map(|c| c.to_string()).collect();
    let mut config = NodeConfig::new("n1", state.path().to_path_buf());
    config.sandbox =
        privilege::settle(Some("nobody"), grant, state.path(), None).expect("a sandbox for nobody");
    assert!(config.sandbox.is_some());
    tokio::spawn(magi_node::run(link, config, std::future::pending()));
    let module = probe_module(caps);
    let load = json!({"name": "probe", "path": module.path(), "execargs": {}});
    orch.port
        .publish_nodes(&["n1".into()], call(run, 1, "daemon", "loadAgent", load))
        .await
        .expect("load");
    let first = next_trigger(&mut orch).await;
    (bus, orch, first, [state, module])
}

async fn ask(orch: &mut RunLink, run: &str, seq: u64, method: &str, args: Value) -> Value {
    orch.port
        .publish_nodes(&["n1".into()], call(run, seq, "probe", method, args))
        .await
        .expect("call");
    let reply = next_trigger(orch).await;
    assert_eq!(reply.event, format!("{method}Done"), "{reply:?}");
    // A dict return becomes the trigger's arguments; anything else is its `retVal`.
    match reply.args.get("retVal") {
        Some(v) => v.clone(),
        None => Value::Object(reply.args),
    }
}

#[tokio::test]
async fn a_root_node_runs_an_agent_as_nobody_with_no_capabilities_and_none_of_its_environment() {
    if !root_or_skip() {
        return;
    }
    // The node's environment may hold broker credentials: the agent must not see it.
    std::env::set_var("MAGI_PRIVILEGE_TEST_SECRET", "amqp://node:pass@broker");
    const RUN: &str = "r-nobody";
    let (_bus, mut orch, loaded, _dirs) = node_with_probe(RUN, &[], &[]).await;
    assert_eq!(loaded.event, "AgentLoadDone", "{loaded:?}");
    let me = ask(&mut orch, RUN, 2, "whoami", json!({})).await;
    assert_eq!(me["uid"], json!(65534), "{me}");
    assert_eq!(me["gid"], json!(65534), "{me}");
    assert_eq!(me["groups"], json!([]), "{me}");
    assert_eq!(me["cap_eff"], json!(0), "no capability at all: {me}");
    assert_eq!(
        me["secret"],
        Value::Null,
        "the node's environment leaked: {me}"
    );
    let bound = ask(&mut orch, RUN, 3, "bind", json!({"port": 1023})).await;
    assert!(
        bound.as_str().unwrap_or_default().starts_with("refused"),
        "an unprivileged agent bound port 1023: {bound}"
    );
}

#[tokio::test]
async fn a_capability_the_manifest_asks_for_and_the_node_grants_is_the_only_one_the_agent_has() {
    if !root_or_skip() {
        return;
    }
    const RUN: &str = "r-granted";
    let (_bus, mut orch, loaded, _dirs) = node_with_probe(
        RUN,
        &["net_bind_service", "net_admin"],
        &["net_bind_service"],
    )
    .await;
    assert_eq!(loaded.event, "AgentLoadDone", "{loaded:?}");
    let me = ask(&mut orch, RUN, 2, "whoami", json!({})).await;
    assert_eq!(me["uid"], json!(65534), "{me}");
    assert_eq!(
        me["cap_eff"],
        json!(1u64 << 10),
        "exactly CAP_NET_BIND_SERVICE (bit 10), not the granted but unasked net_admin: {me}"
    );
    let bound = ask(&mut orch, RUN, 3, "bind", json!({"port": 1022})).await;
    assert_eq!(bound, json!("bound"));
}

#[tokio::test]
async fn an_agent_asking_for_a_capability_the_node_does_not_grant_is_not_loaded() {
    if !root_or_skip() {
        return;
    }
    let (_bus, _orch, refusal, _dirs) =
        node_with_probe("r-ungranted", &["net_raw"], &["net_admin"]).await;
    assert_eq!(refusal.event, "RuntimeException", "{refusal:?}");
    let error = refusal.args["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("net_admin") && error.contains("--grant net_admin"),
        "{error}"
    );
}

#[test]
fn a_state_directory_the_agent_user_cannot_reach_stops_the_node_at_start() {
    if !root_or_skip() {
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = outer.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let e = privilege::settle(Some("nobody"), BTreeSet::new(), &state, None).unwrap_err();
    assert!(e.contains("nobody") && e.contains("--state-dir"), "{e}");
    assert!(Path::new(&state).exists());
}

#[tokio::test]
async fn a_confined_agent_hands_back_its_own_files_but_not_roots() {
    if !root_or_skip() {
        return;
    }
    const RUN: &str = "r-files";
    let (_bus, mut orch, loaded, _dirs) = node_with_probe(RUN, &[], &[]).await;
    assert_eq!(loaded.event, "AgentLoadDone", "{loaded:?}");
    // /etc/shadow is root's: the node, which could read it, refuses to send it. The
    // refusal and the call's reply may come in either order.
    let shadow = call(RUN, 2, "probe", "handback", json!({"path": "/etc/shadow"}));
    orch.port
        .publish_nodes(&["n1".into()], shadow)
        .await
        .expect("call");
    let (a, b) = (next_trigger(&mut orch).await, next_trigger(&mut orch).await);
    let (refusal, reply) = if a.event == "RuntimeException" {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(reply.event, "handbackDone", "{reply:?}");
    assert_eq!(refusal.event, "RuntimeException", "{refusal:?}");
    assert_eq!(refusal.args["type"], json!("MagiWarning"));
    let error = refusal.args["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/etc/shadow") && error.contains("uid 0"),
        "{error}"
    );
    // A file the agent wrote itself comes back as a record chunk (before or after the
    // call's reply: both are awaited).
    let own = call(RUN, 3, "probe", "handback", json!({"path": "own"}));
    orch.port
        .publish_nodes(&["n1".into()], own)
        .await
        .expect("call");
    let (mut replied, mut chunk) = (false, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while !(replied && chunk.is_some()) {
            match orch.inbound.recv().await {
                Some(magi_bus::Inbound::Record(r)) => {
                    if let Some(c) = magi_proto::file::FileChunk::from_record(&r.data) {
                        chunk = Some(c.expect("a well-formed chunk"));
                    }
                }
                Some(magi_bus::Inbound::Trigger(t)) => {
                    assert_eq!(t.event, "handbackDone", "{t:?}");
                    replied = true;
                }
                Some(_) => {}
                None => panic!("the bus closed"),
            }
        }
    })
    .await
    .expect("the reply and the file within 30 s");
    let chunk = chunk.expect("a chunk");
    assert!(chunk.name.starts_with("magi-privilege-test-"), "{chunk:?}");
    assert_eq!(
        (chunk.offset, chunk.size, chunk.data.as_str()),
        (0, 4, "bWluZQ==")
    );
    let _ = std::fs::remove_file(Path::new("/tmp").join(&chunk.name));
}
