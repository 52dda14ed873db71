//! The in-process bus's behaviour, over the real RabbitMQ (amqp://127.0.0.1:5672 unless
//! `MAGI_TEST_AMQP_URL` says otherwise). Each test has its own name prefix and checks
//! that nothing of it is left on the broker afterwards.

mod common;
mod contract;

use std::sync::Arc;

use common::*;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use magi_bus::{Bus, Inbound, SendError};
use magi_proto::{Object, Record};
use magi_testkit::{BrokerGuard, TestBroker};

/// Run `body` with a fresh kit under a shared hold on the broker, then clean up (also when
/// the body panics) and check that the broker holds nothing of the test's.
macro_rules! broker_test {
    ($name:ident, |$kit:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            use futures_util::FutureExt;
            let _hold = BrokerGuard::shared().await.expect("broker lock");
            let $kit = TestBroker::new();
            let outcome = std::panic::AssertUnwindSafe(async { $body })
                .catch_unwind()
                .await;
            let left = $kit.cleanup().await.expect("cleanup");
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
            assert!(left.is_empty(), "left on the broker: {left:?}");
        }
    };
}

/// The contract every transport keeps (`tests/contract/`), on RabbitMQ.
macro_rules! contract_test {
    ($name:ident) => {
        broker_test!($name, |kit| {
            let bus: Arc<dyn Bus> = Arc::new(kit.bus().await.unwrap());
            contract::$name(bus).await
        });
    };
    ($name:ident, traits) => {
        broker_test!($name, |kit| {
            let bus: Arc<dyn Bus> = Arc::new(kit.bus().await.unwrap());
            let traits = contract::Traits {
                counts_group_receivers: false,
            };
            contract::$name(bus, traits).await
        });
    };
    ($name:ident, other) => {
        broker_test!($name, |kit| {
            let bus: Arc<dyn Bus> = Arc::new(kit.bus().await.unwrap());
            let other: Arc<dyn Bus> = Arc::new(kit.bus().await.unwrap());
            contract::$name(bus, other).await
        });
    };
}

contract_test!(a_group_call_reaches_exactly_the_members_of_that_run, traits);
contract_test!(a_call_to_an_empty_group_is_reported_not_lost);
contract_test!(triggers_reach_only_their_runs_orchestrator_and_every_tap);
contract_test!(a_node_name_or_run_cannot_be_attached_twice, other);
contract_test!(heartbeats_reach_every_run_and_the_last_one_detaches_the_node);

broker_test!(
    two_runs_with_identical_group_and_trigger_names_stay_apart,
    |kit| {
        // Two orchestrators (two connections), one node agent serving both runs.
        let orch_a = kit.bus().await.unwrap();
        let orch_b = kit.bus().await.unwrap();
        let node_bus = kit.bus().await.unwrap();
        let mut node = node_bus.attach_node("n1").await.unwrap();
        let mut a = orch_a.open_run("alice.1").await.unwrap();
        let mut b = orch_b.open_run("bob.1").await.unwrap();
        node.port.join("alice.1", "servers").await.unwrap();
        node.port.join("bob.1", "servers").await.unwrap();

        a.port
            .publish_group("servers", call("alice.1", "startServer"))
            .await
            .unwrap();
        let got = next(&mut node.calls).await;
        assert_eq!(got.run, "alice.1");
        quiet(&mut node.calls).await;

        node.port
            .send_trigger(trigger("alice.1", "serverStarted", "n1"))
            .await
            .unwrap();
        assert_eq!(next_trigger(&mut a.inbound).await.run, "alice.1");
        quiet(&mut b.inbound).await;
        node.port
            .send_trigger(trigger("bob.1", "serverStarted", "n1"))
            .await
            .unwrap();
        assert_eq!(next_trigger(&mut b.inbound).await.run, "bob.1");
        quiet(&mut a.inbound).await;

        // A run whose name is another's plus a dot-suffix shares nothing with it either.
        let mut c = orch_b.open_run("alice.1.x").await.unwrap();
        node.port
            .send_trigger(trigger("alice.1", "serverStarted", "n1"))
            .await
            .unwrap();
        next_trigger(&mut a.inbound).await;
        quiet(&mut c.inbound).await;
        // Closing one run touches only its own groups.
        b.port
            .publish_group("servers", call("bob.1", "stopServer"))
            .await
            .unwrap();
        next(&mut node.calls).await;
        b.port.close().await.unwrap();
        a.port
            .publish_group("servers", call("alice.1", "stopServer"))
            .await
            .unwrap();
        assert_eq!(next(&mut node.calls).await.method, "stopServer");
        let err = orch_b
            .open_run("bob.1")
            .await
            .unwrap()
            .port
            .publish_group("servers", call("bob.1", "m"))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::NoRoute(_)), "{err:?}");
    }
);

broker_test!(a_tap_sees_calls_and_triggers_of_its_run_only, |kit| {
    let bus = kit.bus().await.unwrap();
    let mut tap = bus.tap(Some("r1")).await.unwrap();
    let mut all = bus.tap(None).await.unwrap();
    let n = bus.attach_node("n1").await.unwrap();
    let r1 = bus.open_run("r1").await.unwrap();
    let r2 = bus.open_run("r2").await.unwrap();
    n.port.join("r1", "g").await.unwrap();
    n.port.join("r2", "g").await.unwrap();
    r2.port
        .publish_group("g", call("r2", "other"))
        .await
        .unwrap();
    r1.port.publish_group("g", call("r1", "m")).await.unwrap();
    r1.port
        .publish_nodes(&["n1".into()], call("r1", "direct"))
        .await
        .unwrap();
    n.port
        .send_trigger(trigger("r1", "done", "n1"))
        .await
        .unwrap();
    let rec = Record {
        run: "r1".into(),
        agent: "a".into(),
        host: "n1".into(),
        created: 1.0,
        data: Object::new(),
    };
    n.port.send_record(rec).await.unwrap();

    let first = next(&mut tap.items).await;
    assert_eq!(
        (first.kind.as_str(), first.group.as_deref()),
        ("call", Some("g"))
    );
    assert_eq!(first.body["method"], "m");
    let second = next(&mut tap.items).await;
    assert_eq!(
        (second.kind.as_str(), second.group, second.nodes),
        ("call", None, vec!["n1".to_string()])
    );
    assert_eq!(next(&mut tap.items).await.kind, "trigger");
    assert_eq!(next(&mut tap.items).await.kind, "record");
    quiet(&mut tap.items).await;

    // The all-runs tap sees the other run's call too, and node statuses.
    n.port.announce(status("n1", true)).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let item = next(&mut all.items).await;
        kinds.push(format!("{}:{}", item.kind, item.run.unwrap_or_default()));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "call:r1",
            "call:r1",
            "call:r2",
            "node:",
            "record:r1",
            "trigger:r1"
        ]
    );
});

broker_test!(calls_to_named_nodes_count_who_received_them, |kit| {
    let bus = kit.bus().await.unwrap();
    let mut n1 = bus.attach_node("n1").await.unwrap();
    let mut n2 = bus.attach_node("n2.example.net").await.unwrap();
    let run = bus.open_run("r1").await.unwrap();
    let nodes = [
        "n1".to_string(),
        "n2.example.net".to_string(),
        "ghost".to_string(),
    ];
    let d = run
        .port
        .publish_nodes(&nodes, call("r1", "joinGroup"))
        .await
        .unwrap();
    assert_eq!(d.receivers, Some(2));
    assert_eq!(next(&mut n1.calls).await.method, "joinGroup");
    assert_eq!(next(&mut n2.calls).await.method, "joinGroup");
    let err = run
        .port
        .publish_nodes(&["ghost".into()], call("r1", "m"))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::NoRoute("nodes ghost".into()));
    // A call of another run is refused before it reaches anyone.
    let err = run
        .port
        .publish_nodes(&["n1".into()], call("r2", "m"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused(_)), "{err:?}");
});

broker_test!(
    closing_a_run_ends_its_inbound_and_removes_its_groups,
    |kit| {
        let bus = kit.bus().await.unwrap();
        let n = bus.attach_node("n1").await.unwrap();
        let mut run = bus.open_run("r1").await.unwrap();
        n.port.join("r1", "g").await.unwrap();
        run.port.publish_group("g", call("r1", "m")).await.unwrap();
        // A group the run only told a node to join is found by `close` too.
        let mut join = call("r1", "joinGroup");
        join.dock = magi_proto::DAEMON_DOCK.into();
        join.args.insert("group".into(), "g2".into());
        run.port.publish_nodes(&["n1".into()], join).await.unwrap();
        n.port.join("r1", "g2").await.unwrap();
        run.port.close().await.unwrap();
        for g in ["g", "g2"] {
            let err = run
                .port
                .publish_group(g, call("r1", "m"))
                .await
                .unwrap_err();
            assert!(matches!(err, SendError::NoRoute(_)), "{err:?}");
        }
        let end = tokio::time::timeout(ARRIVES, async {
            while let Some(x) = run.inbound.recv().await {
                assert!(matches!(x, Inbound::Node(_)), "{x:?}");
            }
        })
        .await;
        assert!(end.is_ok(), "inbound did not end");
        let err = n
            .port
            .send_trigger(trigger("r1", "x", "n1"))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::NoRoute(_)), "{err:?}");
    }
);

/// What a misbehaving or foreign publisher can put on the bus.
async fn publish_raw(kit: &TestBroker, exchange: &str, key: &str, body: &[u8]) {
    let conn = kit.raw().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    conn.close(200, "OK".into()).await.unwrap();
}

broker_test!(
    garbage_in_a_node_queue_or_run_queue_is_dropped_and_the_link_goes_on,
    |kit| {
        let bus = kit.bus().await.unwrap();
        let names = bus.names().clone();
        let mut n = bus.attach_node("n1").await.unwrap();
        let mut run = bus.open_run("r1").await.unwrap();
        n.port.join("r1", "g").await.unwrap();
        let node_key = names.node_key("r1", "n1");
        let inbound_key = names.inbound_key("r1", "trigger", "n1");
        // Not JSON, JSON of the wrong shape, a call of another run under this run's key, and
        // a well-formed call straight into the queue (not through the bus's exchanges).
        publish_raw(
            &kit,
            &names.nodes_exchange(),
            &node_key,
            b"\xff\x00 not json",
        )
        .await;
        publish_raw(&kit, &names.nodes_exchange(), &node_key, b"{\"hello\": 1}").await;
        let foreign = serde_json::to_vec(&call("r2", "evil")).unwrap();
        publish_raw(&kit, &names.nodes_exchange(), &node_key, &foreign).await;
        publish_raw(
            &kit,
            "",
            &names.node_queue("n1"),
            &serde_json::to_vec(&call("r1", "direct")).unwrap(),
        )
        .await;
        publish_raw(&kit, &names.triggers_exchange(), &inbound_key, b"[1,2,3").await;
        publish_raw(
            &kit,
            &names.triggers_exchange(),
            &inbound_key,
            &serde_json::to_vec(&trigger("r9", "x", "n1")).unwrap(),
        )
        .await;
        publish_raw(&kit, "", &names.run_queue("r1"), b"garbage").await;

        run.port.publish_group("g", call("r1", "ok")).await.unwrap();
        assert_eq!(next(&mut n.calls).await.method, "ok");
        n.port
            .send_trigger(trigger("r1", "fine", "n1"))
            .await
            .unwrap();
        assert_eq!(next_trigger(&mut run.inbound).await.event, "fine");
        quiet(&mut n.calls).await;
    }
);

broker_test!(
    oversized_messages_are_dropped_inbound_and_refused_outbound,
    |kit| {
        let bus = kit.bus().await.unwrap();
        let names = bus.names().clone();
        let mut n = bus.attach_node("n1").await.unwrap();
        let run = bus.open_run("r1").await.unwrap();
        let mut big = call("r1", "big");
        big.args.insert(
            "blob".into(),
            "x".repeat(magi_bus::amqp::DEFAULT_MAX_MESSAGE + 10).into(),
        );
        let body = serde_json::to_vec(&big).unwrap();
        publish_raw(
            &kit,
            &names.nodes_exchange(),
            &names.node_key("r1", "n1"),
            &body,
        )
        .await;
        let err = run
            .port
            .publish_nodes(&["n1".into()], big)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Refused(_)), "{err:?}");
        run.port
            .publish_nodes(&["n1".into()], call("r1", "small"))
            .await
            .unwrap();
        assert_eq!(next(&mut n.calls).await.method, "small");
    }
);

broker_test!(
    a_bound_tap_would_hide_an_empty_group_which_is_why_taps_get_copies,
    |kit| {
        // The broker counts any queue as a route: a tap queue bound where calls pass would
        // make `mandatory` useless. This is the reason behind the watch exchange.
        let conn = kit.raw().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        let (ex, q) = (
            format!("{}probe", kit.prefix),
            format!("{}probe.q", kit.prefix),
        );
        ch.exchange_declare(
            ex.clone().into(),
            lapin::ExchangeKind::Topic,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        ch.queue_declare(q.clone().into(), Default::default(), Default::default())
            .await
            .unwrap();
        ch.queue_bind(
            q.into(),
            ex.clone().into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = ch
            .basic_publish(
                ex.into(),
                "r.nobody".into(),
                opts,
                b"{}",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            confirm.take_message().is_none(),
            "a tap-like binding swallowed the return"
        );
        conn.close(200, "OK".into()).await.unwrap();
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_at_once() {
    let kit = TestBroker::new();
    let url = kit.url.replacen("guest:guest@", "guest:wrong@", 1);
    let t = std::time::Instant::now();
    let err = magi_bus::amqp::AmqpBus::connect(&url, kit.options())
        .await
        .err()
        .expect("connected with a wrong password");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the password leaked: {err}"
    );
    eprintln!("{err:?} after {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_within_the_connect_timeout() {
    let kit = TestBroker::new();
    let opts = magi_bus::amqp::BusOptions {
        connect_timeout: std::time::Duration::from_secs(3),
        ..kit.options()
    };
    let t = std::time::Instant::now();
    let err = magi_bus::amqp::AmqpBus::connect("amqp://guest:guest@127.0.0.1:1/%2f", opts)
        .await
        .err()
        .expect("connected to nothing");
    assert!(
        matches!(err, magi_bus::ConnectError::Unreachable(_)),
        "{err:?}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

broker_test!(
    a_run_takes_its_triggers_in_although_a_backlog_of_node_statuses_waits,
    |kit| {
        // The run's queues exist and its orchestrator is away (its connection dropped, as
        // after a crash or while it is too busy to keep up): 10,000 heartbeats, then a
        // trigger, wait on the broker. Statuses have a queue of their own, so the trigger
        // comes in at once when the orchestrator consumes again; in one queue it came after
        // every heartbeat before it (at N = 10,000 nodes, 1.45 million of them).
        let away = kit.bus().await.unwrap();
        let run = away.open_run("r1").await.unwrap();
        drop(run);
        away.close().await;
        let nodes = kit.bus().await.unwrap();
        let n = nodes.attach_node("n1").await.unwrap();
        for _ in 0..20 {
            let beats = (0..500).map(|_| n.port.announce(status("n1", true)));
            for sent in futures_util::future::join_all(beats).await {
                sent.unwrap();
            }
        }
        n.port
            .send_trigger(trigger("r1", "late", "n1"))
            .await
            .unwrap();
        let back = kit.bus().await.unwrap();
        let mut run = back.open_run("r1").await.unwrap();
        let mut statuses_first = 0;
        loop {
            match next(&mut run.inbound).await {
                Inbound::Trigger(t) => {
                    assert_eq!(t.event, "late");
                    break;
                }
                Inbound::Node(_) => statuses_first += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            statuses_first < 2_000,
            "the trigger waited behind {statuses_first} statuses"
        );
        run.port.close().await.unwrap();
        n.port.announce(status("n1", false)).await.unwrap();
    }
);

broker_test!(
    a_busy_broker_is_waited_for_not_sent_the_message_again,
    |kit| {
        // A persistent call to hundreds of durable queues is confirmed once every queue has
        // it. A bus that sent it again whenever the confirm was slower than `confirm_wait`
        // (it once did, after 15 s) multiplied a busy broker's work; with 10,000 node
        // queues the broker never caught up. With a 1 ms wait, every queue here must still
        // hold exactly one copy.
        let options = magi_bus::amqp::BusOptions {
            confirm_wait: std::time::Duration::from_millis(1),
            // (Sending again every millisecond, the publish is never confirmed.)
            patience: std::time::Duration::from_secs(30),
            ..kit.options()
        };
        let bus = magi_bus::amqp::AmqpBus::connect(&kit.url, options)
            .await
            .unwrap();
        let names = bus.names().clone();
        let mut n = bus.attach_node("n1").await.unwrap();
        let run = bus.open_run("r1").await.unwrap();
        n.port.join("r1", "g").await.unwrap();
        // Queues that nobody consumes, bound where the group's calls go.
        let conn = kit.raw().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let queues: Vec<String> = (0..300)
            .map(|i| format!("{}copies.{i}", kit.prefix))
            .collect();
        for q in &queues {
            let durable = lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(q.as_str().into(), durable, Default::default())
                .await
                .unwrap();
            ch.queue_bind(
                q.as_str().into(),
                names.group_exchange("r1", "g").into(),
                "#".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        }
        let started = std::time::Instant::now();
        run.port
            .publish_group("g", call("r1", "everywhere"))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(next(&mut n.calls).await.method, "everywhere");
        quiet(&mut n.calls).await;
        assert!(
            took > std::time::Duration::from_millis(5),
            "the confirm came in {took:?}: too soon for this test to show anything"
        );
        for q in &queues {
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let held = ch
                .queue_declare(q.as_str().into(), passive, Default::default())
                .await
                .unwrap()
                .message_count();
            assert_eq!(held, 1, "{q} holds {held} copies (confirm after {took:?})");
        }
        conn.close(200, "OK".into()).await.unwrap();
    }
);

broker_test!(
    bursts_beyond_the_prefetch_arrive_whole_and_leave_nothing_unacknowledged,
    |kit| {
        // Deliveries that arrive together are acknowledged together (one `multiple` ack):
        // a burst of several prefetches' worth must still all arrive, and the queues must
        // hold nothing unacknowledged afterwards.
        let bus = kit.bus().await.unwrap();
        let names = bus.names().clone();
        let mut n = bus.attach_node("n1").await.unwrap();
        let mut run = bus.open_run("r1").await.unwrap();
        let triggers = 4 * usize::from(bus.options().run_prefetch);
        let sends = (0..triggers).map(|i| {
            let mut t = trigger("r1", "burst", "n1");
            t.args.insert("i".into(), i.into());
            n.port.send_trigger(t)
        });
        for sent in futures_util::future::join_all(sends).await {
            sent.unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < triggers {
            let t = next_trigger(&mut run.inbound).await;
            seen.insert(t.args["i"].as_u64().unwrap());
        }
        let calls = 4 * usize::from(bus.options().node_prefetch);
        let to = ["n1".to_string()];
        let publishes = (0..calls).map(|_| run.port.publish_nodes(&to, call("r1", "burst")));
        for sent in futures_util::future::join_all(publishes).await {
            sent.unwrap();
        }
        for _ in 0..calls {
            assert_eq!(next(&mut n.calls).await.method, "burst");
        }
        quiet(&mut n.calls).await;
        // The last ack goes out once the link has nothing more to take.
        let queues = [names.run_queue("r1"), names.node_queue("n1")];
        let deadline = std::time::Instant::now() + ARRIVES;
        loop {
            let out = magi_testkit::ctl(&[
                "list_queues",
                "-q",
                "-p",
                &kit.vhost,
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .unwrap();
            let lines: Vec<Vec<&str>> = out
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .filter(|l| queues.iter().any(|q| l.first() == Some(&q.as_str())))
                .collect();
            assert_eq!(lines.len(), 2, "queues not listed: {out}");
            let held: Vec<_> = lines.iter().filter(|l| l[1..] != ["0", "0"]).collect();
            if held.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still held (name, ready, unacknowledged): {held:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
);
