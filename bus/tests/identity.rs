//! Identities the broker proves: every publish carries the AMQP `user_id` (which RabbitMQ
//! checks against the connection's user), an orchestrator accepts a trigger, record or
//! status only from the node it speaks for, and calls reach a node with their sender.
//! Each test runs in a throwaway vhost with throwaway users.

mod common;

use common::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use magi_bus::amqp::{AmqpBus, BusOptions, Names};
use magi_bus::{Bus, Forgery, Inbound};
use magi_proto::{NodeStatus, Record};
use magi_testkit::{BrokerGuard, Throwaway};

/// The next message on a run's inbound that is not a heartbeat.
async fn next_message(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Inbound>) -> Inbound {
    loop {
        match next(rx).await {
            Inbound::Node(s) if s.alive && s.runs.is_empty() => continue,
            other => return other,
        }
    }
}

fn forged(what: Inbound) -> Forgery {
    match what {
        Inbound::Forged(f) => f,
        other => panic!("expected the bus to report a forgery, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaks_only_for_itself_and_forgeries_are_dropped_and_reported() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let [alice, n1, n2] = ["alice", "n1", "n2"].map(|u| format!("{u}{id}"));
    let world = Throwaway::new(&[&alice, &n1, &n2]).expect("vhost and users");
    let bus = |user: &str| {
        let url = world.url(user);
        async move { AmqpBus::connect(&url, BusOptions::default()).await }
    };
    let (orch, honest, forger) = (
        bus(&alice).await.unwrap(),
        bus(&n1).await.unwrap(),
        bus(&n2).await.unwrap(),
    );
    let run = format!("{alice}.r1");
    let mut inbox = orch.open_run(&run).await.unwrap();
    let good = honest.attach_node(&n1).await.unwrap();
    let bad = forger.attach_node(&n2).await.unwrap();

    // n2 claims to be n1: a trigger, a record and a status.
    bad.port
        .send_trigger(trigger(&run, "clientStopped", &n1))
        .await
        .unwrap();
    let f = forged(next_message(&mut inbox.inbound).await);
    assert_eq!(
        (
            f.kind,
            f.sender.as_str(),
            f.claimed.clone(),
            f.what.as_str()
        ),
        ("trigger", n2.as_str(), vec![n1.clone()], "clientStopped")
    );
    let record = Record {
        run: run.clone(),
        agent: "monitor_agent".into(),
        host: n1.clone(),
        created: 0.0,
        data: Default::default(),
    };
    bad.port.send_record(record.clone()).await.unwrap();
    assert_eq!(
        forged(next_message(&mut inbox.inbound).await).kind,
        "record"
    );
    let status = NodeStatus {
        node: n1.clone(),
        pid: 1,
        time: 0.0,
        heartbeat_ms: 1000,
        runs: vec![],
        alive: false,
    };
    bad.port.announce(status).await.unwrap();
    assert_eq!(forged(next_message(&mut inbox.inbound).await).kind, "node");

    // n1 speaking for itself is heard; so is n2 for itself.
    good.port
        .send_trigger(trigger(&run, "serverStarted", &n1))
        .await
        .unwrap();
    match next_message(&mut inbox.inbound).await {
        Inbound::Trigger(t) => assert_eq!(
            (t.event.as_str(), t.nodes),
            ("serverStarted", vec![n1.clone()])
        ),
        other => panic!("{other:?}"),
    }
    good.port.send_record(record).await.unwrap();
    assert!(matches!(
        next_message(&mut inbox.inbound).await,
        Inbound::Record(_)
    ));
    let _ = inbox.port.close().await;
    for b in [orch, honest, forger] {
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_a_borrowed_user_id_and_the_bus_drops_a_message_without_one() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let [alice, n1, n2] = ["alice", "n1", "n2"].map(|u| format!("{u}{id}"));
    let world = Throwaway::new(&[&alice, &n1, &n2]).expect("vhost and users");
    let orch = AmqpBus::connect(&world.url(&alice), BusOptions::default())
        .await
        .unwrap();
    let run = format!("{alice}.r2");
    let mut inbox = orch.open_run(&run).await.unwrap();
    let names = Names::new(&BusOptions::default().prefix);
    let body = serde_json::to_vec(&trigger(&run, "clientStopped", &n1)).unwrap();
    let key = format!("{}.trigger.{n1}", magi_bus::amqp::names::word(&run));

    let raw = Connection::connect(&world.url(&n2), ConnectionProperties::default())
        .await
        .unwrap();
    let publish = |props: BasicProperties| {
        let (ch, body, key, exchange) = (&raw, &body, &key, names.triggers_exchange());
        async move {
            let ch = ch.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            ch.basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                body,
                props.with_type("trigger".into()),
            )
            .await?
            .await
        }
    };
    // n2 borrowing n1's name in user_id: the broker closes the channel.
    let borrowed = publish(BasicProperties::default().with_user_id(n1.clone().into())).await;
    assert!(
        borrowed.is_err(),
        "the broker accepted user_id {n1} from {n2}"
    );
    // No user_id at all: the broker routes it, the bus drops it (nobody vouches for it).
    publish(BasicProperties::default()).await.unwrap();
    loop {
        match tokio::time::timeout(QUIET, inbox.inbound.recv()).await {
            Ok(Some(Inbound::Node(_))) => continue,
            Ok(Some(other)) => panic!("an anonymous trigger reached the run: {other:?}"),
            _ => break,
        }
    }
    let _ = raw.close(200, "OK".into()).await;
    let _ = inbox.port.close().await;
    orch.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_the_node_with_its_authenticated_sender() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let [alice, n1] = ["alice", "n1"].map(|u| format!("{u}{id}"));
    let world = Throwaway::new(&[&alice, &n1]).expect("vhost and users");
    let orch = AmqpBus::connect(&world.url(&alice), BusOptions::default())
        .await
        .unwrap();
    let node = AmqpBus::connect(&world.url(&n1), BusOptions::default())
        .await
        .unwrap();
    let mut link = node.attach_node(&n1).await.unwrap();
    let run = format!("{alice}.r3");
    let inbox = orch.open_run(&run).await.unwrap();
    let mut c = call(&run, "start");
    c.sender = Some("mallory".into()); // never sent: the receiver learns it from the broker
    inbox
        .port
        .publish_nodes(std::slice::from_ref(&n1), c)
        .await
        .unwrap();
    let got = next(&mut link.calls).await;
    assert_eq!(got.sender.as_deref(), Some(alice.as_str()));
    let _ = inbox.port.close().await;
    orch.close().await;
    node.close().await;
}
