//! A broker restart in the middle of a run: the one slow test. It takes the broker lock
//! exclusively, so no other test of this crate (from any test binary) uses the broker
//! while it is down, and it always starts the broker again, even when it fails.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use magi_bus::{Bus, Inbound};
use magi_testkit::{ctl, BrokerGuard, TestBroker};

/// Starts the broker's app again when dropped, whatever happened.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        if let Err(e) = ctl(&["start_app"]) {
            eprintln!("could not start the broker again: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_of_a_stream_survives_a_broker_restart() {
    let _hold = BrokerGuard::exclusive().await.expect("broker lock");
    let kit = TestBroker::new();
    let orch = kit.bus().await.unwrap();
    let node_bus = kit.bus().await.unwrap();
    let mut node = node_bus.attach_node("n1").await.unwrap();
    // A node whose broker operations may wait only 1 s for an answer: its join, asked for
    // during the outage, must not count the outage as the broker's silence.
    let quick_bus = magi_bus::amqp::AmqpBus::connect(
        &kit.url,
        magi_bus::amqp::BusOptions {
            reply_timeout: Duration::from_secs(1),
            ..kit.options()
        },
    )
    .await
    .unwrap();
    let quick = quick_bus.attach_node("n2").await.unwrap();
    let mut run = orch.open_run("r1").await.unwrap();
    let mut tap = orch.tap(Some("r1")).await.unwrap();
    node.port.join("r1", "g").await.unwrap();

    const N: u64 = 300;
    let port = node.port.clone();
    let sender = tokio::spawn(async move {
        let mut sends = Vec::new();
        for seq in 0..N {
            let t = Instant::now();
            let tr = trigger("r1", "tick", "n1").with("seq", seq);
            port.send_trigger(tr).await.expect("a trigger was given up");
            sends.push((t, Instant::now()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sends
    });

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut restarted: Option<(Instant, Instant)> = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut guard = None;
    let mut join_during_outage = None;
    while seen.len() < N as usize {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} triggers arrived",
            seen.len()
        );
        let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(1), run.inbound.recv()).await
        else {
            continue;
        };
        let Inbound::Trigger(t) = item else { continue };
        let seq = t.args.get("seq").and_then(|s| s.as_u64()).expect("seq");
        *seen.entry(seq).or_default() += 1;
        if seen.len() == 50 && guard.is_none() {
            guard = Some(StartOnDrop);
            let stopped = Instant::now();
            tokio::task::spawn_blocking(|| ctl(&["stop_app"]))
                .await
                .unwrap()
                .expect("stop_app");
            let port = quick.port.clone();
            join_during_outage = Some(tokio::spawn(async move { port.join("r1", "g").await }));
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::task::spawn_blocking(|| ctl(&["start_app"]))
                .await
                .unwrap()
                .expect("start_app");
            restarted = Some((stopped, Instant::now()));
        }
    }
    drop(guard); // start_app again: harmless when running
    let sends = sender.await.unwrap();
    let (stopped, started) = restarted.expect("the broker was restarted");
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    // The reconnect time: from start_app's return to the completion of the send that was
    // blocked by the outage (it completes once the node's connection is recovered and the
    // broker has confirmed it).
    let blocked_done = sends
        .iter()
        .filter(|(s, e)| *s < started && *e > started)
        .map(|(_, e)| *e - started)
        .max();
    let slowest = sends.iter().map(|(s, e)| *e - *s).max();
    eprintln!(
        "restart: broker down {:?}; blocked send confirmed {:?} after start_app returned; slowest send {:?}; {} of {N} triggers, {repeats} repeats",
        started - stopped,
        blocked_done,
        slowest,
        seen.len()
    );
    assert_eq!(seen.len(), N as usize);
    assert_eq!(repeats, 0, "repeats reached the orchestrator");
    let joined = join_during_outage
        .expect("a join was asked for")
        .await
        .unwrap();
    assert!(
        joined.is_ok(),
        "a join asked for during an outage longer than its reply bound failed: {joined:?}"
    );

    // Everything still works afterwards: the group, the node's inbox, the tap.
    run.port
        .publish_group("g", call("r1", "after"))
        .await
        .unwrap();
    assert_eq!(next(&mut node.calls).await.method, "after");
    let late = tokio::time::timeout(ARRIVES, async {
        loop {
            match tap.items.recv().await {
                Some(item) if item.kind == "call" => return item,
                Some(_) => continue,
                None => panic!("the tap ended"),
            }
        }
    })
    .await
    .expect("the tap saw nothing after the restart");
    assert_eq!(late.body["method"], "after");

    drop((node, quick, run, tap));
    orch.close().await;
    node_bus.close().await;
    quick_bus.close().await;
    let left = kit.cleanup().await.expect("cleanup");
    assert!(left.is_empty(), "left on the broker: {left:?}");
}
