//! Faults: a broker outage, killed node agents (lost, or restarted and restored), a killed
//! orchestrator, garbage and oversized messages.

use super::*;

// ---------------------------------------------------------------------------------------
// (d) faults
// ---------------------------------------------------------------------------------------

/// Children of a process (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// True when the process no longer runs (absent, or a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X"),
    }
}

/// Waits until every pid is gone; how long that took, or `None` after `within`.
async fn all_gone(pids: &[u32], within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if pids.iter().all(|p| gone(*p)) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Starts the broker's app again when dropped, whatever happened.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        if let Err(e) = ctl(&["start_app"]) {
            eprintln!("could not start the broker again: {e}");
        }
    }
}

/// Ten steps, each an event on both nodes whose trigger the stream waits for, 400 ms apart.
fn steps(n: usize) -> String {
    let mut s = format!(
        "agents:\n  a: {{group: g, path: {}, execargs: {{}}}}\ngroups:\n  g: [n1, n2]\nstreamstarts: [s]\neventstreams:\n  s:\n",
        testagent()
    );
    for i in 1..=n {
        s.push_str(&format!(
            "    - {{type: event, agent: a, method: step{i}, trigger: S{i}, args: {{}}}}\n    - {{type: trigger, triggers: [{{event: S{i}}}]}}\n    - {{type: trigger, triggers: [{{timeout: 400}}]}}\n"
        ));
    }
    s
}

/// How long the broker is down in the outage test: longer than the nodes' dead-man
/// interval (10 s) and the orchestrator's lost-node limit (3 heartbeats), as in the
/// trust issue's 60 s outage.
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_of_a_minute_mid_run_is_not_a_death_and_every_trigger_arrives_once() {
    let mut w = World::with_hold(BrokerGuard::exclusive().await.expect("broker lock")).await;
    w.start_node("n1", &[]);
    w.start_node("n2", &[]);
    let aal = w.write("steps.aal", &steps(10));
    let run = format!("restart-{}", tag());
    let mut r = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run");
    r.wait_for("step3(None)", Duration::from_secs(30)).await;
    let guard = StartOnDrop;
    let down = Instant::now();
    tokio::task::spawn_blocking(|| ctl(&["stop_app"]))
        .await
        .expect("join")
        .expect("stop_app");
    tokio::time::sleep(OUTAGE).await;
    tokio::task::spawn_blocking(|| ctl(&["start_app"]))
        .await
        .expect("join")
        .expect("start_app");
    let outage = down.elapsed();
    let back = magi_proto::epoch_now();
    std::mem::forget(guard);
    let done = r.finish(Duration::from_secs(180)).await;
    eprintln!(
        "broker outage {:.1} s (stop_app, sleep, start_app); run took {:.1} s",
        outage.as_secs_f64(),
        done.took.as_secs_f64()
    );
    assert_eq!(done.code, Some(0), "{}", done.show());
    let events = events_of(&w.records().join(&run));
    let first_after = events
        .iter()
        .filter(|e| e["dir"] == "recv")
        .filter_map(|e| e["time"].as_f64())
        .find(|t| *t > back);
    eprintln!(
        "first trigger {:.2} s after start_app returned",
        first_after.map_or(f64::NAN, |t| t - back)
    );
    for i in 1..=10 {
        let got: Vec<String> = events
            .iter()
            .filter(|e| e["dir"] == "recv" && e["body"]["event"] == format!("S{i}"))
            .map(|e| e["body"]["nodes"].to_string())
            .collect();
        assert_eq!(got.len(), 2, "S{i}: {got:?}");
    }
    let triggers = received_triggers(&events);
    let unique: BTreeSet<&String> = triggers.iter().collect();
    assert_eq!(
        unique.len(),
        triggers.len(),
        "a trigger arrived twice: {triggers:?}"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_agent_is_reported_lost_by_name_and_the_run_exits_3() {
    let mut w = World::new().await;
    w.start_node("clientnode", &[]);
    w.start_node("servernode", &[]);
    let aal = w.write("cs_long.aal", &case_study_shape(60_000));
    let run = format!("kill-node-{}", tag());
    let mut r = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run");
    r.wait_for("startClient(None)", Duration::from_secs(30))
        .await;
    let server = w
        .nodes
        .iter()
        .find(|n| n.name == "servernode")
        .expect("servernode");
    let client = w
        .nodes
        .iter()
        .find(|n| n.name == "clientnode")
        .expect("clientnode");
    let server_agents = children_of(server.pid());
    let client_agents = children_of(client.pid());
    assert_eq!(
        (server_agents.len(), client_agents.len()),
        (2, 1),
        "agent processes"
    );
    let killed = Instant::now();
    server.signal(libc::SIGKILL);
    let done = r.finish(Duration::from_secs(60)).await;
    let detected = killed.elapsed();
    eprintln!(
        "node killed → magi ended in {:.2} s (heartbeat {HEARTBEAT_MS} ms)",
        detected.as_secs_f64()
    );
    assert_eq!(done.code, Some(3), "{}", done.show());
    let said = format!("{}{}", done.stdout, done.stderr);
    assert!(
        said.lines()
            .any(|l| l.contains("servernode") && l.contains("lost")),
        "the node is not named as lost:\n{}",
        done.show()
    );
    assert!(detected < Duration::from_secs(15), "took {detected:?}");
    let summary =
        std::fs::read_to_string(w.records().join(&run).join("run.json")).expect("run.json");
    assert!(summary.contains("servernode"), "{summary}");
    // The surviving node's agent was unloaded by the teardown; the dead node's agents saw
    // their input close and ended.
    let took = all_gone(&client_agents, Duration::from_secs(10)).await;
    assert!(took.is_some(), "clientnode's agent still runs");
    let took = all_gone(&server_agents, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "the killed node's agents still run: {server_agents:?}"
    );
    // The killed node's queue stays until it expires (10 min); the rest was cleaned.
    w.nodes.retain(|n| n.name != "servernode");
    let prefix = w.broker.prefix.clone();
    w.finish_allowing(&[format!("queue: {prefix}node.servernode")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_tells_its_nodes_it_is_alive_as_often_as_alive_every_says() {
    // A node whose dead man is 3 s, and a procedure quiet for 6 s between two calls: told
    // every second, the node keeps the agent; never told, it stops it, leaves its groups
    // and says so: the run names it lost at once (exit 3), before its second call, and
    // teardown does not wait for answers that cannot come (it once waited 200 s).
    let mut w = World::new().await;
    w.start_node("n1", &["--dead-man-secs", "3"]);
    let aal = w.write(
        "quiet.aal",
        &format!(
            "agents:\n  a: {{group: g, path: {}, execargs: {{}}}}\ngroups:\n  g: [n1]\nstreamstarts: [s]\neventstreams:\n  s:\n    - {{type: event, agent: a, method: ret, trigger: first, args: {{value: true}}}}\n    - {{type: trigger, triggers: [{{event: first}}]}}\n    - {{type: trigger, triggers: [{{timeout: 6000}}]}}\n    - {{type: event, agent: a, method: ret, trigger: second, args: {{value: true}}}}\n    - {{type: trigger, triggers: [{{event: second, target: exit}}]}}\n",
            testagent()
        ),
    );
    let told = Running::start(
        w.run_cmd(&aal, &format!("told-{}", tag()), &["--alive-every", "1"]),
        w.dir.path(),
        "told",
    )
    .finish(Duration::from_secs(60))
    .await;
    assert_eq!(told.code, Some(0), "{}", told.show());
    let untold = format!("untold-{}", tag());
    let never = Running::start(
        w.run_cmd(&aal, &untold, &["--alive-every", "0"]),
        w.dir.path(),
        "untold",
    )
    .finish(Duration::from_secs(30))
    .await;
    assert_eq!(never.code, Some(3), "{}", never.show());
    assert!(
        never.stdout.lines().any(|l| l.contains("node n1 lost")
            && l.contains("dead-man switch heard nothing from this run")),
        "{}",
        never.show()
    );
    let calls: Vec<Value> = events_of(&w.records().join(&untold))
        .into_iter()
        .filter(|e| e["dir"] == "sent" && e["body"]["call"]["method"] == "ret")
        .collect();
    assert_eq!(calls.len(), 1, "the second call went out: {calls:?}");
    assert!(
        w.nodes[0].log_text().contains("has been silent"),
        "{}",
        w.nodes[0].log_text()
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_killed_and_restarted_mid_run_restores_its_agents_and_the_run_passes() {
    let mut w = World::new().await;
    w.start_node("n1", &[]);
    let aal = w.write(
        "restart.aal",
        &format!(
            r#"agents:
  a: {{group: g, path: {ta}, execargs: {{}}}}
groups:
  g: [n1]
streamstarts: [main]
eventstreams:
  main:
    - {{type: event, agent: a, method: ret, trigger: first, args: {{value: true}}}}
    - {{type: trigger, triggers: [{{event: first}}]}}
    - {{type: trigger, triggers: [{{timeout: 4000}}]}}
    - {{type: event, agent: a, method: ret, trigger: second, args: {{value: true}}}}
    - {{type: trigger, triggers: [{{event: second, target: exit}}]}}
"#,
            ta = testagent()
        ),
    );
    let run = format!("restart-{}", tag());
    let mut r = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run");
    r.wait_for("trigger completed: first", Duration::from_secs(30))
        .await;
    let old = w.nodes.remove(0);
    let old_agents = children_of(old.pid());
    assert_eq!(old_agents.len(), 1, "the test agent runs under n1");
    old.signal(libc::SIGKILL);
    let log = old.log.clone();
    drop(old);
    // The same node, started again at once, as systemd's Restart= would.
    let new = w.start_node("n1", &[]);
    let done = r.finish(Duration::from_secs(60)).await;
    assert_eq!(
        done.code,
        Some(0),
        "{}\nnode log after the restart:\n{}",
        done.show(),
        w.nodes[new].log_text()
    );
    assert!(
        done.stdout.contains("trigger completed: second"),
        "{}",
        done.show()
    );
    let restarted = w.nodes[new].log_text();
    assert!(
        restarted.contains("restoring a run this node served before it restarted"),
        "{restarted}"
    );
    assert!(
        all_gone(&old_agents, Duration::from_secs(10))
            .await
            .is_some(),
        "the killed node's agent still runs: {old_agents:?} (first log: {})",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_orchestrator_leaves_no_agent_running_after_the_dead_man_interval() {
    let mut w = World::new().await;
    w.start_node("n1", &["--dead-man-secs", "3"]);
    let aal = w.write(
        "sleeper.aal",
        &format!(
            "agents:\n  a: {{group: g, path: {}, execargs: {{}}}}\ngroups:\n  g: [n1]\nstreamstarts: [s]\neventstreams:\n  s:\n    - {{type: event, agent: a, method: spawn_sleeper, trigger: slept, args: {{seconds: 1000}}}}\n    - {{type: trigger, triggers: [{{timeout: 60000}}]}}\n",
            testagent()
        ),
    );
    let run = format!("kill-orch-{}", tag());
    let mut r = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run");
    r.wait_for("spawn_sleeper(", Duration::from_secs(30)).await;
    // The sleeper's pid, from the trigger in the run record (flushed every 500 ms). Its
    // return is a dict, merged into the trigger (no `retVal: true`), so no wait uses it.
    let record = w.records().join(&run);
    let mut sleeper = None;
    for _ in 0..100 {
        sleeper = events_of(&record)
            .iter()
            .find(|e| e["body"]["event"] == "slept")
            .and_then(|e| e["body"]["pid"].as_u64());
        if sleeper.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sleeper = sleeper.expect("the slept trigger carries the sleeper's pid") as u32;
    let agents = children_of(w.nodes[0].pid());
    assert_eq!(agents.len(), 1, "one agent process");
    assert!(!gone(sleeper) && !gone(agents[0]));
    let killed = Instant::now();
    r.signal(libc::SIGKILL);
    let _ = r.finish(Duration::from_secs(10)).await;
    let took = all_gone(&[sleeper, agents[0]], Duration::from_secs(30)).await;
    eprintln!("orchestrator killed → agent and its child gone after {:.2} s (dead man 3 s, or three runAlive periods of 2 s; heartbeat {HEARTBEAT_MS} ms)", killed.elapsed().as_secs_f64());
    let took = took.unwrap_or_else(|| {
        panic!(
            "the agent still runs 30 s after its orchestrator died\n{}",
            w.nodes[0].log_text()
        )
    });
    // The interval counts from the orchestrator's last message (a `runAlive` every 2 s).
    assert!(
        took >= Duration::from_secs(1),
        "stopped before the dead-man interval: {took:?}"
    );
    assert!(
        w.nodes[0].log_text().contains("has been silent"),
        "{}",
        w.nodes[0].log_text()
    );
    // The node agent itself goes on.
    let out = w
        .magi()
        .args([
            "status",
            "--broker",
            &w.broker.url,
            "--wait",
            "10",
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
    // The dead orchestrator's run queue and status queue stay until they expire (10 min);
    // the rest was cleaned.
    let prefix = w.broker.prefix.clone();
    w.finish_allowing(&[
        format!("queue: {prefix}run.{run}"),
        format!("queue: {prefix}run.{run}.status"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_are_dropped_and_nothing_crashes() {
    let mut w = World::new().await;
    w.start_node("clientnode", &[]);
    w.start_node("servernode", &[]);
    let aal = w.write("cs.aal", &case_study_shape(2000));
    let run = format!("garbage-{}", tag());
    let mut tap = Running::start(
        {
            let mut c = w.magi();
            c.args(["tap", "--broker", &w.broker.url, "--json"]);
            c
        },
        w.dir.path(),
        "tap",
    );
    tap.wait_for("magi tap: watching", Duration::from_secs(20))
        .await;
    let mut r = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run");
    r.wait_for("startClient(None)", Duration::from_secs(30))
        .await;

    let p = w.broker.prefix.clone();
    let big = vec![b'x'; magi_bus::amqp::DEFAULT_MAX_MESSAGE + (1 << 20)];
    let call_like =
        format!(r#"{{"run":"{run}","seq":99,"dock":"daemon","method":"endRun","args":{{}}}}"#);
    let trigger_like = format!(
        r#"{{"run":"{run}","event":"clientStopped","nodes":["clientnode"],"retVal":true}}"#
    );
    let sends: Vec<(String, String, Vec<u8>)> = vec![
        (
            format!("{p}nodes"),
            format!("{run}.clientnode"),
            b"not json at all".to_vec(),
        ),
        (
            format!("{p}nodes"),
            format!("{run}.clientnode"),
            big.clone(),
        ),
        (
            format!("{p}nodes"),
            format!("{run}.clientnode"),
            br#"{"type":"call"}"#.to_vec(),
        ),
        (
            format!("{p}calls"),
            format!("{run}.client_group"),
            b"\xff\xfe garbage".to_vec(),
        ),
        // A well-formed endRun under another run's key, and one straight into the queue.
        (
            format!("{p}nodes"),
            "other.clientnode".to_string(),
            call_like.clone().into_bytes(),
        ),
        (
            String::new(),
            format!("{p}node.clientnode"),
            call_like.into_bytes(),
        ),
        (
            format!("{p}triggers"),
            format!("{run}.trigger.clientnode"),
            b"[1,2,3]".to_vec(),
        ),
        (
            format!("{p}triggers"),
            format!("{run}.trigger.clientnode"),
            big.clone(),
        ),
        // A forged early clientStopped straight into the run queue: not through its exchange.
        (
            String::new(),
            format!("{p}run.{run}"),
            trigger_like.into_bytes(),
        ),
        (
            format!("{p}status"),
            "clientnode".into(),
            b"{\"node\": 5}".to_vec(),
        ),
        (format!("{p}status"), "clientnode".into(), big.clone()),
        (
            format!("{p}watch"),
            format!("{run}.trigger"),
            b"nonsense".to_vec(),
        ),
        (format!("{p}watch"), format!("{run}.trigger"), big),
    ];
    let conn = w.broker.raw().await.expect("raw connection");
    let ch = conn.create_channel().await.expect("channel");
    for (exchange, key, body) in &sends {
        ch.basic_publish(
            exchange.as_str().into(),
            key.as_str().into(),
            Default::default(),
            body,
            Default::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let _ = conn.close(200, "OK".into()).await;

    let done = r.finish(Duration::from_secs(60)).await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    // The forged clientStopped did not cut the client's 2 s short.
    let console = timeless(&done.stdout);
    let at = |needle: &str| {
        console
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{}", done.stdout))
    };
    assert!(
        at("trigger completed: timeout") < at("trigger completed: clientStopped"),
        "{}",
        done.stdout
    );
    // Nodes and the tap lived through it and logged what they dropped.
    let out = w
        .magi()
        .args([
            "status",
            "--broker",
            &w.broker.url,
            "--wait",
            "10",
            "--expect",
            "clientnode,servernode",
        ])
        .output()
        .expect("magi status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let client_log = w.nodes[0].log_text();
    // Six messages reached clientnode's queue: four malformed, two misrouted.
    assert_eq!(
        client_log.matches("dropped a message").count(),
        6,
        "{client_log}"
    );
    tap.signal(libc::SIGINT);
    let tap = tap.finish(Duration::from_secs(10)).await;
    assert_eq!(tap.code, Some(0), "{}", tap.show());
    assert!(
        tap.stdout.lines().any(|l| l.contains("\"serverStopped\"")),
        "the tap went on after the garbage"
    );
    assert!(tap
        .stdout
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    w.finish().await;
}
