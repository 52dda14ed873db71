//! The bus contract: what every transport does, run against each (`tests/memory.rs` on
//! the in-process bus, `tests/amqp.rs` on RabbitMQ). Each check takes the bus under test
//! and a second client of the same transport (another connection, for RabbitMQ).
#![allow(dead_code)]

use std::sync::Arc;

use magi_bus::{AttachError, Bus, Inbound, SendError};

use crate::common::*;

/// What a transport can tell that another cannot.
pub struct Traits {
    /// Whether a group call knows how many nodes it reached (the in-process bus does;
    /// RabbitMQ only knows "at least one").
    pub counts_group_receivers: bool,
}

/// A group call reaches exactly the members of that group of that run.
pub async fn a_group_call_reaches_exactly_the_members_of_that_run(bus: Arc<dyn Bus>, t: Traits) {
    let mut n1 = bus.attach_node("n1").await.unwrap();
    let mut n2 = bus.attach_node("n2").await.unwrap();
    let run = bus.open_run("r1").await.unwrap();
    n1.port.join("r1", "g").await.unwrap();
    n2.port.join("r2", "g").await.unwrap(); // same group name, other run
    let d = run.port.publish_group("g", call("r1", "m")).await.unwrap();
    let expected = t.counts_group_receivers.then_some(1);
    assert_eq!(d.receivers, expected);
    assert_eq!(next(&mut n1.calls).await.method, "m");
    quiet(&mut n2.calls).await;
}

/// A call nobody receives is `NoRoute`, never silently lost: an empty group, a group whose
/// last member left (also while a tap watches); a node can join again afterwards.
pub async fn a_call_to_an_empty_group_is_reported_not_lost(bus: Arc<dyn Bus>) {
    let run = bus.open_run("r1").await.unwrap();
    let err = run
        .port
        .publish_group("nobody", call("r1", "m"))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::NoRoute("group nobody".into()));
    let _tap = bus.tap(Some("r1")).await.unwrap();
    let n = bus.attach_node("n1").await.unwrap();
    n.port.join("r1", "g").await.unwrap();
    run.port.publish_group("g", call("r1", "m")).await.unwrap();
    n.port.leave("r1", "g").await.unwrap();
    let err = run
        .port
        .publish_group("g", call("r1", "m"))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::NoRoute("group g".into()));
    n.port.join("r1", "g").await.unwrap();
    run.port.publish_group("g", call("r1", "m")).await.unwrap();
}

/// A trigger reaches its run's orchestrator and that run's taps, no other run; a trigger
/// for a run nobody orchestrates is reported.
pub async fn triggers_reach_only_their_runs_orchestrator_and_every_tap(bus: Arc<dyn Bus>) {
    let n = bus.attach_node("n1").await.unwrap();
    let mut r1 = bus.open_run("r1").await.unwrap();
    let mut r2 = bus.open_run("r2").await.unwrap();
    let mut tap = bus.tap(Some("r1")).await.unwrap();
    n.port.send_trigger(trigger("r1", "x", "n1")).await.unwrap();
    assert_eq!(next_trigger(&mut r1.inbound).await.event, "x");
    let item = next(&mut tap.items).await;
    assert_eq!(
        (item.kind.as_str(), item.run.as_deref(), item.nodes.clone()),
        ("trigger", Some("r1"), vec!["n1".to_string()])
    );
    quiet(&mut r2.inbound).await;
    let err = n
        .port
        .send_trigger(trigger("r3", "x", "n1"))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::NoRoute("run r3 has no orchestrator".into()));
}

/// A second node agent under the same name, or a second orchestrator of the same run, is
/// refused while the first is attached.
pub async fn a_node_name_or_run_cannot_be_attached_twice(bus: Arc<dyn Bus>, other: Arc<dyn Bus>) {
    let _n = bus.attach_node("n1").await.unwrap();
    let err = other
        .attach_node("n1")
        .await
        .err()
        .expect("second attach refused");
    assert!(matches!(err, AttachError::InUse(_)), "{err:?}");
    let _r = bus.open_run("r1").await.unwrap();
    let err = other
        .open_run("r1")
        .await
        .err()
        .expect("second open refused");
    assert!(matches!(err, AttachError::InUse(_)), "{err:?}");
}

/// Every run hears every node's heartbeat; a node's last word (`alive: false`) detaches
/// it: its groups reach nobody and its port refuses further work.
pub async fn heartbeats_reach_every_run_and_the_last_one_detaches_the_node(bus: Arc<dyn Bus>) {
    let n = bus.attach_node("n1").await.unwrap();
    let mut r1 = bus.open_run("r1").await.unwrap();
    let mut r2 = bus.open_run("r2").await.unwrap();
    n.port.join("r1", "g").await.unwrap();
    n.port.announce(status("n1", true)).await.unwrap();
    for r in [&mut r1, &mut r2] {
        assert!(
            matches!(next(&mut r.inbound).await, Inbound::Node(s) if s.node == "n1" && s.alive)
        );
    }
    n.port.announce(status("n1", false)).await.unwrap();
    assert!(matches!(next(&mut r1.inbound).await, Inbound::Node(s) if !s.alive));
    let err = r1
        .port
        .publish_group("g", call("r1", "m"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::NoRoute(_)), "{err:?}");
    let err = n.port.join("r1", "g").await.unwrap_err();
    assert!(matches!(err, SendError::Disconnected(_)), "{err:?}");
}
