//! Call → trigger round trip over the AMQP bus, against the same pattern over bare lapin
//! on the same broker in the same run. `cargo bench -p magi-bus --bench roundtrip`
//! (ROUNDS=n to change the count). Prints p50/p90/p99 of each and their ratio.
//!
//! The pattern: the orchestrator publishes one call to a group with one member; the node
//! receives it and sends a trigger back; the orchestrator receives the trigger. Bare lapin
//! does the same with one topic exchange, one node queue, one reply queue, publisher
//! confirms on the publishing channels, manual acks and the same prefetches, but none of
//! the bus's work (JSON envelopes, tap copies, checks, deduplication, retries).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use magi_bus::{Bus, Inbound};
use magi_proto::{Call, Object, Trigger};
use magi_testkit::{BrokerGuard, TestBroker};

fn percentiles(mut v: Vec<Duration>) -> [Duration; 3] {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    [at(0.50), at(0.90), at(0.99)]
}

async fn over_bus(kit: &TestBroker, rounds: usize) -> Vec<Duration> {
    let orch = kit.bus().await.expect("bus");
    let node_bus = kit.bus().await.expect("bus");
    let mut node = node_bus.attach_node("n1").await.expect("attach");
    let mut run = orch.open_run("bench").await.expect("open");
    node.port.join("bench", "g").await.expect("join");
    let port = node.port.clone();
    tokio::spawn(async move {
        while let Some(call) = node.calls.recv().await {
            let t =
                Trigger::from_node(&call.run, "done", "n1", Object::new()).with("seq", call.seq);
            if port.send_trigger(t).await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::with_capacity(rounds);
    for seq in 0..rounds as u64 {
        let call = Call {
            run: "bench".into(),
            seq,
            dock: "a".into(),
            method: "m".into(),
            args: Object::new(),
            trigger: Some("done".into()),
            nodes: None,
            sender: None,
        };
        let t = Instant::now();
        run.port.publish_group("g", call).await.expect("publish");
        loop {
            match run.inbound.recv().await {
                Some(Inbound::Trigger(tr))
                    if tr.args.get("seq").and_then(|s| s.as_u64()) == Some(seq) =>
                {
                    break
                }
                Some(_) => continue,
                None => panic!("inbound ended"),
            }
        }
        out.push(t.elapsed());
    }
    orch.close().await;
    node_bus.close().await;
    out
}

async fn over_lapin(kit: &TestBroker, rounds: usize) -> Vec<Duration> {
    let p = &kit.prefix;
    let (ex, nq, rq) = (
        format!("{p}bare.x"),
        format!("{p}bare.node"),
        format!("{p}bare.reply"),
    );
    let orch = Connection::connect(&kit.url, ConnectionProperties::default())
        .await
        .expect("connect");
    let nodec = Connection::connect(&kit.url, ConnectionProperties::default())
        .await
        .expect("connect");
    let pub_ch = orch.create_channel().await.unwrap();
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    pub_ch
        .exchange_declare(
            ex.clone().into(),
            ExchangeKind::Topic,
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for q in [&nq, &rq] {
        pub_ch
            .queue_declare(q.clone().into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
    }
    pub_ch
        .queue_bind(
            nq.clone().into(),
            ex.clone().into(),
            "g".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let node_in = nodec.create_channel().await.unwrap();
    node_in
        .basic_qos(32, BasicQosOptions::default())
        .await
        .unwrap();
    let mut calls = node_in
        .basic_consume(
            nq.clone().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let node_out = nodec.create_channel().await.unwrap();
    node_out
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let reply = rq.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = calls.next().await {
            let _ = d.ack(BasicAckOptions::default()).await;
            let opts = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            let Ok(confirm) = node_out
                .basic_publish(
                    "".into(),
                    reply.clone().into(),
                    opts,
                    &d.data,
                    BasicProperties::default(),
                )
                .await
            else {
                break;
            };
            let _ = confirm.await;
        }
    });
    let orch_in = orch.create_channel().await.unwrap();
    orch_in
        .basic_qos(256, BasicQosOptions::default())
        .await
        .unwrap();
    let mut replies = orch_in
        .basic_consume(
            rq.clone().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::with_capacity(rounds);
    for seq in 0..rounds as u64 {
        let body = seq.to_be_bytes();
        let t = Instant::now();
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        pub_ch
            .basic_publish(
                ex.clone().into(),
                "g".into(),
                opts,
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let d = replies.next().await.expect("reply").expect("reply");
        d.ack(BasicAckOptions::default()).await.unwrap();
        assert_eq!(d.data, body);
        out.push(t.elapsed());
    }
    let _ = orch.close(200, "OK".into()).await;
    let _ = nodec.close(200, "OK".into()).await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let kit = TestBroker::new();
    // Warm both paths, then measure them in turn, twice, to spread the machine's noise.
    over_bus(&kit, 100).await;
    over_lapin(&kit, 100).await;
    let (mut bus, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        bus.extend(over_bus(&kit, rounds / 2).await);
        bare.extend(over_lapin(&kit, rounds / 2).await);
    }
    let [b50, b90, b99] = percentiles(bus);
    let [l50, l90, l99] = percentiles(bare);
    println!("call -> trigger round trip, {rounds} rounds each (publish confirmed, then the reply received)");
    println!("  magi-bus      : p50 {b50:>10.1?}  p90 {b90:>10.1?}  p99 {b99:>10.1?}");
    println!("  bare lapin    : p50 {l50:>10.1?}  p90 {l90:>10.1?}  p99 {l99:>10.1?}");
    println!(
        "  ratio         : p50 {:.2}x  p99 {:.2}x",
        b50.as_secs_f64() / l50.as_secs_f64(),
        b99.as_secs_f64() / l99.as_secs_f64()
    );
    match kit.cleanup().await {
        Ok(left) if left.is_empty() => {}
        other => eprintln!("cleanup: {other:?}"),
    }
}
