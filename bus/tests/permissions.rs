//! `broker-config/apply.sh` in a throwaway vhost with throwaway users: the three roles can
//! do their work, and the broker refuses what the trust model says they may not do (one
//! test per row of `docs/security.md` that the broker enforces). Vhost and users are
//! deleted afterwards, even on failure.

#[path = "common/broker_config.rs"]
mod broker_config;
mod common;

use broker_config::*;
use common::*;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeBindOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use magi_bus::amqp::{AmqpBus, BusOptions};
use magi_bus::{AttachError, Bus};
use magi_testkit::BrokerGuard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_enforces_the_three_roles_and_run_ownership() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let mut vh = Vhost::new();
    let args = [
        ("--orchestrator", "alice"),
        ("--orchestrator", "bob"),
        ("--node", "n1"),
        ("--tap", "tap"),
    ];
    assert_applied(&vh.apply(&args));
    let [alice, bob, node, tap] = ["alice", "bob", "n1", "tap"].map(|r| vh.user(r));

    // The roles at work: no role may configure the global exchanges; the buses only check them.
    let connect = |user: String| {
        let url = vh.url(&user);
        async move { AmqpBus::connect(&url, BusOptions::default()).await }
    };
    let (orch, node_bus, tap_bus) = (
        connect(alice.clone()).await.unwrap(),
        connect(node.clone()).await.unwrap(),
        connect(tap.clone()).await.unwrap(),
    );
    let mut watch = tap_bus.tap(None).await.unwrap();
    // A node's broker user is its node name.
    let mut n = node_bus.attach_node(&node).await.unwrap();
    let run_name = format!("{alice}.run1");
    let mut run = orch.open_run(&run_name).await.unwrap();
    n.port.join(&run_name, "g").await.unwrap();
    run.port
        .publish_group("g", call(&run_name, "start"))
        .await
        .unwrap();
    assert_eq!(next(&mut n.calls).await.method, "start");
    run.port
        .publish_nodes(std::slice::from_ref(&node), call(&run_name, "direct"))
        .await
        .unwrap();
    assert_eq!(next(&mut n.calls).await.method, "direct");
    n.port
        .send_trigger(trigger(&run_name, "started", &node))
        .await
        .unwrap();
    assert_eq!(next_trigger(&mut run.inbound).await.event, "started");
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(next(&mut watch.items).await.kind);
    }
    assert_eq!(kinds, ["call", "call", "trigger"]);

    // Alice cannot open Bob's run, nor publish into it.
    let err = orch
        .open_run(&format!("{bob}.run1"))
        .await
        .err()
        .expect("alice opened bob's run");
    assert!(matches!(err, AttachError::Refused(_)), "{err:?}");
    let names = &vh.names;
    let bobs = names.group_key(&format!("{bob}.run1"), "g");
    assert!(is_access_refused(
        &raw_publish(&vh, &alice, &names.calls_exchange(), &bobs).await
    ));
    let bobs_node = names.node_key(&format!("{bob}.run1"), &node);
    assert!(is_access_refused(
        &raw_publish(&vh, &alice, &names.nodes_exchange(), &bobs_node).await
    ));
    // ... while the same publish into her own run is accepted.
    let own = names.group_key(&run_name, "g");
    raw_publish(&vh, &alice, &names.calls_exchange(), &own)
        .await
        .expect("alice publishes into her own run");

    // Nor bind her run queue to Bob's triggers, nor forge a trigger in her own run.
    let conn = vh.connect("alice").await;
    let bobs_triggers = names.run_binding(&format!("{bob}.run1"));
    assert_refused(
        bind_queue(
            &conn,
            &names.run_queue(&run_name),
            &names.triggers_exchange(),
            &bobs_triggers,
        )
        .await,
        "alice binding to bob's triggers",
    );
    let forged = names.inbound_key(&run_name, "trigger", &node);
    assert_refused(
        publish(&conn, &names.triggers_exchange(), &forged).await,
        "alice forging a trigger",
    );
    let _ = conn.close(200, "OK".into()).await;

    // A node cannot forge calls in the tap stream.
    let fake = names.watch_key(&run_name, "call");
    assert!(is_access_refused(
        &raw_publish(&vh, &node, &names.watch_exchange(), &fake).await
    ));

    // apply.sh is idempotent.
    assert_applied(&vh.apply(&args));
    run.port.close().await.unwrap();
    for bus in [orch, node_bus, tap_bus] {
        bus.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaks_only_as_itself_and_reads_only_its_own_queue() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let mut vh = Vhost::new();
    assert_applied(&vh.apply(&[("--node", "n1"), ("--node", "n2"), ("--tap", "tap")]));
    let (n1, n2) = (vh.user("n1"), vh.user("n2"));
    let names = vh.names.clone();
    let run = "alice.r1";
    let conn = vh.connect("n1").await;

    // Its own triggers, records and status are accepted ...
    for kind in ["trigger", "record"] {
        publish(
            &conn,
            &names.triggers_exchange(),
            &names.inbound_key(run, kind, &n1),
        )
        .await
        .unwrap_or_else(|e| panic!("n1's own {kind}: {e}"));
    }
    publish(&conn, &names.status_exchange(), &names.status_key(&n1))
        .await
        .expect("n1's own status");
    // ... under another node's name they are refused by the broker.
    for kind in ["trigger", "record"] {
        let key = names.inbound_key(run, kind, &n2);
        assert_refused(
            publish(&conn, &names.triggers_exchange(), &key).await,
            &format!("n1 publishing {key}"),
        );
    }
    assert_refused(
        publish(&conn, &names.status_exchange(), &names.status_key(&n2)).await,
        "n1 publishing n2's status",
    );
    // Nor can a tap speak for any node.
    let tap = vh.user("tap");
    let key = names.inbound_key(run, "trigger", &n1);
    assert_refused(
        raw_publish(&vh, &tap, &names.triggers_exchange(), &key).await,
        "tap publishing a trigger",
    );

    // n2's queue exists; n1 can neither consume it nor bind it anywhere.
    let conn2 = vh.connect("n2").await;
    let q2 = declare_queue(&conn2, &names.node_queue(&n2)).await.unwrap();
    let consumed = on_channel(&conn, |ch| {
        let q2 = q2.clone();
        async move {
            ch.basic_consume(
                q2.as_str().into(),
                "spy".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(drop)
        }
    })
    .await;
    assert_refused(consumed, "n1 consuming n2's queue");
    assert_refused(
        bind_queue(
            &conn,
            &q2,
            &names.nodes_exchange(),
            &names.node_binding(&n1),
        )
        .await,
        "n1 binding n2's queue",
    );
    // Its own queue it declares, binds to its own node calls and consumes.
    let q1 = declare_queue(&conn, &names.node_queue(&n1)).await.unwrap();
    bind_queue(
        &conn,
        &q1,
        &names.nodes_exchange(),
        &names.node_binding(&n1),
    )
    .await
    .expect("n1 binding its queue to its calls");
    // But not to another node's calls.
    assert_refused(
        bind_queue(
            &conn,
            &q1,
            &names.nodes_exchange(),
            &names.node_binding(&n2),
        )
        .await,
        "n1 binding to n2's calls",
    );
    for c in [conn, conn2] {
        let _ = c.close(200, "OK".into()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_spy_on_calls_with_wildcard_bindings_or_queues_of_its_own() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let mut vh = Vhost::new();
    assert_applied(&vh.apply(&[("--node", "n1")]));
    let n1 = vh.user("n1");
    let names = vh.names.clone();
    let conn = vh.connect("n1").await;
    let q1 = declare_queue(&conn, &names.node_queue(&n1)).await.unwrap();
    for key in ["#", "*.*", "alice:r1.*", "*.clients", "alice:r1.#"] {
        assert_refused(
            bind_queue(&conn, &q1, &names.calls_exchange(), key).await,
            &format!("n1 binding its queue to calls with {key}"),
        );
    }
    for key in ["#", "*.*"] {
        assert_refused(
            bind_queue(&conn, &q1, &names.nodes_exchange(), key).await,
            &format!("n1 binding its queue to nodes with {key}"),
        );
    }
    // A group exchange hung off calls with a wildcard is refused too; with <run>.<group>,
    // as joining does, it is allowed.
    let group = names.group_exchange("alice.r1", "clients");
    declare_exchange(&conn, &group, ExchangeKind::Fanout)
        .await
        .expect("a node declares a group exchange");
    let e2e = |key: &'static str| {
        let (group, calls) = (group.clone(), names.calls_exchange());
        on_channel(&conn, move |ch| async move {
            ch.exchange_bind(
                group.as_str().into(),
                calls.as_str().into(),
                key.into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
    };
    assert_refused(e2e("#").await, "group exchange bound to calls with #");
    e2e("alice:r1.clients").await.expect("joining's binding");
    // No spy queue of another name, nor a server-named one.
    assert_refused(
        declare_queue(&conn, &format!("{}-spy", names.node_queue(&n1))).await,
        "n1 declaring a spy queue",
    );
    assert_refused(
        declare_queue(&conn, "").await,
        "n1 declaring a server-named queue",
    );
    let _ = conn.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_declares_no_exchange_and_publishes_nowhere() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let mut vh = Vhost::new();
    assert_applied(&vh.apply(&[("--tap", "tap")]));
    let names = vh.names.clone();
    let conn = vh.connect("tap").await;
    for exchange in ["magi.mine", "magi.tap.x", "amq.gen-mine", "x"] {
        assert_refused(
            declare_exchange(&conn, exchange, ExchangeKind::Topic).await,
            &format!("tap declaring exchange {exchange}"),
        );
    }
    // Its own server-named queue it may declare (that is how it taps) ...
    let queue = declare_queue(&conn, "")
        .await
        .expect("a server-named queue");
    assert!(queue.starts_with("amq.gen-"), "{queue}");
    bind_queue(&conn, &queue, &names.watch_exchange(), "#")
        .await
        .expect("tap binding to watch");
    // ... but publish into nothing, not even its own queue.
    for (exchange, key) in [
        (names.watch_exchange(), "alice:r1.call".to_string()),
        (names.calls_exchange(), "alice:r1.g".into()),
        (names.triggers_exchange(), "alice:r1.trigger.n1".into()),
        (names.status_exchange(), "n1".into()),
        (String::new(), queue.clone()),
        ("amq.topic".into(), "x".into()),
    ] {
        assert_refused(
            publish(&conn, &exchange, &key).await,
            &format!("tap publishing to {exchange:?}"),
        );
    }
    let _ = conn.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_a_role_can_declare_is_bounded_by_an_operator_policy() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let mut vh = Vhost::new();
    assert_applied(&vh.apply(&[
        ("--orchestrator", "alice"),
        ("--node", "n1"),
        ("--tap", "tap"),
    ]));
    let (alice, n1) = (vh.user("alice"), vh.user("n1"));
    let names = vh.names.clone();
    let (node, orch, tap) = (
        vh.connect("n1").await,
        vh.connect("alice").await,
        vh.connect("tap").await,
    );
    // The queues each role can make, declared with no limits of their own.
    let node_q = declare_queue(&node, &names.node_queue(&n1)).await.unwrap();
    let run_q = declare_queue(&orch, &names.run_queue(&format!("{alice}.r1")))
        .await
        .unwrap();
    let odd_q = declare_queue(&orch, &names.group_exchange(&format!("{alice}.r1"), "g"))
        .await
        .unwrap();
    let tap_q = declare_queue(&tap, "").await.unwrap();
    let policies = vh.operator_policies();
    let policy_of = |queue: &str| {
        policies
            .iter()
            .find(|(n, _)| n == queue)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| panic!("queue {queue} not in {policies:?}"))
    };
    assert_eq!(policy_of(&node_q), "magi.node-limits");
    assert_eq!(policy_of(&run_q), "magi.run-limits");
    assert_eq!(policy_of(&tap_q), "magi.tap-limits");
    assert_eq!(policy_of(&odd_q), "magi.other-limits");

    // A node's own queue used as a spy (bound to a group exchange it publishes into) holds
    // at most 10,000 messages, whatever is sent.
    let group = names.group_exchange(&format!("{alice}.r1"), "spy");
    declare_exchange(&node, &group, ExchangeKind::Fanout)
        .await
        .unwrap();
    bind_queue(&node, &node_q, &group, "").await.unwrap();
    let ch = node.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for _ in 0..10_100 {
        confirms.push(
            ch.basic_publish(
                group.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        c.await.unwrap();
    }
    assert_eq!(
        vh.messages(&node_q),
        Some(10_000),
        "the node queue's length is capped"
    );
    for c in [node, orch, tap] {
        let _ = c.close(200, "OK".into()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_from_a_file_get_their_own_users_and_generated_credentials() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let mut vh = Vhost::new();
    let dir = vh.scratch();
    let (a, b) = (vh.user("fa"), vh.user("fb"));
    let list = dir.join("nodes.txt");
    std::fs::write(
        &list,
        format!("# testbed nodes\n{a}\n\n{b}:{PASSWORD}  # given\n"),
    )
    .unwrap();
    let creds = dir.join("creds");
    vh.users.extend([a.clone(), b.clone()]);
    let args = [
        ("--nodes-from", list.to_str().unwrap()),
        ("--cred-dir", creds.to_str().unwrap()),
    ];
    assert_applied(&vh.apply(&args));
    // `a` had no password: one was generated and written for it alone, mode 0600.
    let cred = creds.join(format!("{a}.cred"));
    let text = std::fs::read_to_string(&cred).expect("a's credentials");
    let (user, password) = text.trim().split_once(':').expect("name:password");
    assert_eq!(user, a);
    assert_eq!(password.len(), 32);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cred).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !creds.join(format!("{b}.cred")).exists(),
        "b's password was given"
    );
    // Both log in and act as themselves; a second apply keeps a's password.
    assert_applied(&vh.apply(&args));
    assert_eq!(std::fs::read_to_string(&cred).unwrap(), text);
    let bus = AmqpBus::connect(&vh.url_with(&a, password), BusOptions::default())
        .await
        .expect("a logs in with its generated password");
    let link = bus.attach_node(&a).await.expect("a attaches as itself");
    drop(link);
    bus.close().await;
    raw_publish(&vh, &b, &vh.names.status_exchange(), &b)
        .await
        .expect("b publishes its status");

    // A bad name in the file changes nothing and says which line.
    std::fs::write(&list, "ok-name\nbad.name\n").unwrap();
    let out = vh.apply(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes.txt:2: node name 'bad.name' must match"),
        "{err}"
    );
    assert!(!creds.join("ok-name.cred").exists());
}
