//! A node decides who may use it: over RabbitMQ, with the identities the broker proves,
//! a call from a broker user its policy does not name is refused (a RuntimeException that
//! says so) and nothing runs; the allowed user's calls go through.

mod support;

use std::time::Duration;
use support::{load_test_agent, next_trigger};

use magi_bus::amqp::{AmqpBus, BusOptions};
use magi_bus::{Bus, Inbound};
use magi_node::{NodeConfig, Policy};
use magi_testkit::{BrokerGuard, Throwaway};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_a_user_the_policy_does_not_name_is_refused_and_runs_nothing() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let [alice, bob, n1] = ["alice", "bob", "n1"].map(|u| format!("{u}{id}"));
    let world = Throwaway::new(&[&alice, &bob, &n1]).expect("vhost and users");
    let connect = |user: &str| {
        let url = world.url(user);
        async move { AmqpBus::connect(&url, BusOptions::default()).await }
    };
    let node_bus = connect(&n1).await.unwrap();
    let link = node_bus.attach_node(&n1).await.unwrap();
    let state = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig::new(&n1, state.path().to_path_buf());
    config.policy = Policy {
        allow: Some(vec![alice.clone()]),
        ..Policy::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(magi_node::run(link, config, async {
        let _ = stopped.await;
    }));

    let bob_bus = connect(&bob).await.unwrap();
    let bob_run = format!("{bob}.r");
    let mut bobs = bob_bus.open_run(&bob_run).await.unwrap();
    bobs.port
        .publish_nodes(std::slice::from_ref(&n1), load_test_agent(&bob_run))
        .await
        .unwrap();
    let refusal = next_trigger(&mut bobs).await;
    assert_eq!(refusal.event, "RuntimeException", "{refusal:?}");
    let error = refusal.args["error"].as_str().unwrap_or_default();
    assert!(error.contains(&bob) && error.contains("refuses"), "{error}");
    // Bob's run keeps saying it is alive; those calls expect no answer and get none (the
    // refusal was said once), then his next real call is refused again.
    let mut alive = load_test_agent(&bob_run);
    (alive.method, alive.args) = magi_proto::DaemonCall::RunAlive(Default::default()).to_wire();
    for _ in 0..3 {
        bobs.port
            .publish_nodes(std::slice::from_ref(&n1), alive.clone())
            .await
            .unwrap();
    }
    bobs.port
        .publish_nodes(std::slice::from_ref(&n1), load_test_agent(&bob_run))
        .await
        .unwrap();
    let next = next_trigger(&mut bobs).await;
    assert_eq!(next.event, "RuntimeException", "{next:?}");
    assert_eq!(next.args["func_name"], json!("loadAgent"), "{next:?}");

    let alice_bus = connect(&alice).await.unwrap();
    let alice_run = format!("{alice}.r");
    let mut alices = alice_bus.open_run(&alice_run).await.unwrap();
    alices
        .port
        .publish_nodes(std::slice::from_ref(&n1), load_test_agent(&alice_run))
        .await
        .unwrap();
    assert_eq!(next_trigger(&mut alices).await.event, "AgentLoadDone");

    // The node announces only alice's agent: bob's load never ran.
    let runs = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Inbound::Node(s)) = alices.inbound.recv().await {
                if s.node == n1 && s.runs.iter().any(|r| !r.agents.is_empty()) {
                    return s.runs;
                }
            }
        }
    })
    .await
    .expect("a heartbeat with the loaded agent");
    let with_agents: Vec<&str> = runs
        .iter()
        .filter(|r| !r.agents.is_empty())
        .map(|r| r.run.as_str())
        .collect();
    assert_eq!(with_agents, vec![alice_run.as_str()]);

    let _ = stop.send(());
    let _ = node.await;
    for port in [bobs.port, alices.port] {
        let _ = port.close().await;
    }
    for b in [node_bus, bob_bus, alice_bus] {
        b.close().await;
    }
}
