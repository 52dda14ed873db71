//! A quiet start, and a node's policy and forged triggers across two users.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_starting_before_any_orchestrator_logs_no_error() {
    // Under a fresh prefix no global exchange exists yet: the node agent's passive checks
    // fail with 404 and it declares them. That is a clean start: nothing may say ERROR.
    let mut w = World::new().await;
    w.node_log = None;
    let i = w.start_node(&format!("quiet{}", tag()), &[]);
    let log = &w.nodes[i].log;
    let until = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(Instant::now() < until, "the node agent never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = w.nodes[i].log_text();
    assert!(!text.contains("ERROR"), "a clean start said ERROR:\n{text}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_nobody_taps_leaves_no_warning_in_the_logs() {
    // With no tap bound, the broker returns the first tap copy of every call and trigger
    // (that is how a sender learns to stop copying): an expected answer, which the bus
    // handles. Neither `magi run` nor `magi-node` may log it, on their default filters or
    // on one given with `--log`.
    let mut w = World::new().await;
    w.node_log = None;
    w.start_node("clientnode", &[]);
    w.start_node("servernode", &["--log", "info"]);
    let aal = w.write("cs.aal", &case_study_shape(500));
    let mut run = w.run_cmd(&aal, &format!("quiet{}", tag()), &[]);
    run.env_remove("RUST_LOG");
    let done = Running::start(run, w.dir.path(), "magi")
        .finish(Duration::from_secs(120))
        .await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    assert!(!done.stderr.contains("WARN"), "{}", done.show());
    for node in &w.nodes {
        let text = node.log_text();
        assert!(
            !text.contains("returned"),
            "magi-node {}:\n{text}",
            node.name
        );
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_only_the_users_its_policy_names_and_forged_triggers_end_no_run() {
    // On a vhost configured by broker-config/apply.sh, as a shared testbed is: orchestrators
    // alice and bob, nodes clientnode and servernode (each its own broker user), no guest.
    // The nodes allow alice only.
    let mut w = World::new().await;
    let id = tag();
    let (alice, bob) = (format!("alice{id}"), format!("bob{id}"));
    // Broker users are global: node names unique to this test.
    let (client, server) = (format!("clientnode{id}"), format!("servernode{id}"));
    let vhost = magi_testkit::Throwaway::configured(
        &w.broker.prefix,
        &[&alice, &bob],
        &[&client, &server],
        &[],
    )
    .expect("apply.sh on a throwaway vhost");
    for node in [&client, &server] {
        w.start_node_at(&vhost.url(node), node, &["--allow", &alice]);
    }
    let aal = w.write(
        "cs.aal",
        &case_study_shape(6_000)
            .replace("clientnode", &client)
            .replace("servernode", &server),
    );

    // Bob's run on alice's nodes: his loadAgent is refused, nothing of his runs.
    let bobs = w
        .run_cmd_at(&vhost.url(&bob), &aal, &format!("{bob}.try"), &[])
        .output()
        .expect("run magi");
    let out = String::from_utf8_lossy(&bobs.stdout);
    assert_eq!(bobs.status.code(), Some(1), "{out}");
    assert!(
        out.contains("refuses the call") && out.contains(&bob),
        "{out}"
    );

    // Alice's run, while servernode's user forges clientStopped for clientnode, both ways a
    // node can: under clientnode's routing key (the broker refuses it), and under its own
    // key with clientnode in the body (the bus drops it and says so). The run ends when
    // its own client stops (6 s), with exit 0.
    let run = format!("{alice}.cs");
    let mut r = Running::start(
        w.run_cmd_at(&vhost.url(&alice), &aal, &run, &[]),
        w.dir.path(),
        "alice",
    );
    r.wait_for("startClient", Duration::from_secs(60)).await;
    let names = magi_bus::amqp::Names::new(&w.broker.prefix);
    let forged = magi_proto::Trigger::from_node(&run, "clientStopped", &client, Default::default());
    let body = serde_json::to_vec(&forged).expect("json");
    let forge = |key: String| {
        let (url, exchange, body) = (vhost.url(&server), names.triggers_exchange(), body.clone());
        async move { magi_testkit::publish_as(&url, &exchange, &key, "trigger", &body).await }
    };
    let as_client = forge(names.inbound_key(&run, "trigger", &client)).await;
    assert!(
        matches!(&as_client, Err(e) if e.to_string().contains("ACCESS_REFUSED")),
        "the broker let servernode publish under clientnode's key: {as_client:?}"
    );
    forge(names.inbound_key(&run, "trigger", &server))
        .await
        .expect("the broker routes servernode's own key");
    let done = r.finish(Duration::from_secs(60)).await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    assert!(
        done.took >= Duration::from_secs(6),
        "the run ended early: {}",
        done.show()
    );
    assert!(
        done.stderr.contains(&format!(
            "dropped a trigger (clientStopped) from broker user {server} claiming to be {client}"
        )),
        "{}",
        done.show()
    );
    let events = events_of(&w.records().join(&run));
    let stopped: Vec<&Value> = events
        .iter()
        .filter(|e| e["dir"] == "recv" && e["body"]["event"] == "clientStopped")
        .collect();
    assert_eq!(stopped.len(), 1, "only the real clientStopped: {stopped:?}");
    w.finish().await; // the nodes stop while their vhost still exists
    drop(vhost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_agent_under_a_name_in_use_is_refused_and_says_so() {
    let mut w = World::new().await;
    w.start_node("n1", &[]);
    // The first one has attached once it heartbeats; then a second of the same name.
    let out = w
        .magi()
        .args([
            "status",
            "--broker",
            &w.broker.url,
            "--wait",
            "20",
            "--expect",
            "n1",
        ])
        .output()
        .expect("magi status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let second = w.start_node("n1", &[]);
    let status = w.nodes[second].wait(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(3),
        "{}",
        w.nodes[second].log_text()
    );
    let log = w.nodes[second].log_text();
    assert!(
        log.contains("node n1 is attached already"),
        "the refusal does not say why: {log}"
    );
    w.nodes.remove(second);
    w.finish().await;
}
