//! Two `magi-node` processes running the case study's shape as the embedded bus does, taps
//! that see it all, and two orchestrators sharing three node agents.

use super::*;

// ---------------------------------------------------------------------------------------
// (a) + (c) + status: two magi-node processes, the embedded run's console, taps
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_agents_run_the_case_study_shape_as_the_embedded_bus_does_and_taps_see_it_all() {
    let mut w = World::new().await;
    w.start_node("clientnode", &[]);
    w.start_node("servernode", &[]);
    let aal = w.write("cs_shape.aal", &case_study_shape(1000));

    // Status finds both node agents without any orchestrator.
    let out = w
        .magi()
        .args([
            "status",
            "--broker",
            &w.broker.url,
            "--wait",
            "20",
            "--expect",
            "clientnode,servernode",
            "--json",
        ])
        .output()
        .expect("magi status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let alive: Vec<&str> = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["alive"] == true)
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(alive, ["clientnode", "servernode"], "{status}");

    // Taps opened before the run: one JSON tap of the run, one filtered text tap of
    // everything, one of node announcements only.
    let run = format!("cs-{}", tag());
    let mut tap_json = Running::start(
        {
            let mut c = w.magi();
            c.args(["tap", "--broker", &w.broker.url, "--run", &run, "--json"]);
            c
        },
        w.dir.path(),
        "tap-json",
    );
    let mut tap_text = Running::start(
        {
            let mut c = w.magi();
            c.args(["tap", "--broker", &w.broker.url, "--event", "serverStarted"]);
            c
        },
        w.dir.path(),
        "tap-text",
    );
    let mut tap_nodes = Running::start(
        {
            let mut c = w.magi();
            c.args([
                "tap",
                "--broker",
                &w.broker.url,
                "--kind",
                "node",
                "--node",
                "servernode",
                "--count",
                "2",
                "--json",
            ]);
            c
        },
        w.dir.path(),
        "tap-nodes",
    );
    for t in [&mut tap_json, &mut tap_text, &mut tap_nodes] {
        t.wait_for("magi tap: watching", Duration::from_secs(20))
            .await;
    }

    let broker_run = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run")
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(broker_run.code, Some(0), "{}", broker_run.show());

    let mut embedded = w.magi();
    embedded
        .arg("run")
        .arg(&aal)
        .args([
            "--no-color",
            "--run",
            &format!("{run}-embedded"),
            "--record-dir",
        ])
        .arg(w.records());
    let embedded = Running::start(embedded, w.dir.path(), "embedded")
        .finish(Duration::from_secs(60))
        .await;
    assert_eq!(embedded.code, Some(0), "{}", embedded.show());
    assert_eq!(
        timeless(&broker_run.stdout),
        timeless(&embedded.stdout),
        "the console over RabbitMQ differs from the embedded one\n{}\n{}",
        broker_run.show(),
        embedded.show()
    );
    assert!(
        broker_run.stdout.lines().count() >= 30,
        "{}",
        broker_run.show()
    );

    let record = w.records().join(&run);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("run.json")).expect("run.json"))
            .expect("run.json");
    assert_eq!(
        (summary["transport"].as_str(), summary["exit_code"].as_i64()),
        (Some("amqp"), Some(0)),
        "{summary}"
    );

    // (c) The run's tap printed every call the run sent and every trigger it received.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in [&tap_json, &tap_text] {
        t.signal(libc::SIGINT);
    }
    let tap_json = tap_json.finish(Duration::from_secs(10)).await;
    let tap_text = tap_text.finish(Duration::from_secs(10)).await;
    let tap_nodes = tap_nodes.finish(Duration::from_secs(20)).await;
    assert_eq!(tap_json.code, Some(0), "{}", tap_json.show());
    let seen: Vec<Value> = tap_json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("tap line {l:?}: {e}")))
        .collect();
    assert!(
        seen.iter().all(|i| i["run"] == run.as_str()),
        "a run's tap shows that run only"
    );
    let events = events_of(&record);
    let sent: BTreeMap<u64, String> = events
        .iter()
        .filter(|e| e["dir"] == "sent")
        .map(|e| {
            (
                e["body"]["call"]["seq"].as_u64().expect("seq"),
                e["body"]["call"]["method"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let tapped: BTreeMap<u64, String> = seen
        .iter()
        .filter(|i| i["kind"] == "call" && i["body"]["method"] != "runAlive")
        .map(|i| {
            (
                i["body"]["seq"].as_u64().expect("seq"),
                i["body"]["method"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(tapped, sent, "calls: tap vs run record");
    assert!(sent.len() >= 18, "{sent:?}");
    let mut tapped_triggers: Vec<String> = seen
        .iter()
        .filter(|i| i["kind"] == "trigger")
        .map(|i| trigger_key(&i["body"]))
        .collect();
    tapped_triggers.sort();
    assert_eq!(
        tapped_triggers,
        received_triggers(&events),
        "triggers: tap vs run record"
    );
    assert!(tapped_triggers.len() >= 16, "{tapped_triggers:?}");

    // The filtered text tap: the call expecting serverStarted and the trigger itself.
    let lines: Vec<&str> = tap_text
        .stdout
        .lines()
        .filter(|l| l.contains(&run))
        .collect();
    assert_eq!(lines.len(), 2, "{}", tap_text.show());
    assert!(
        lines[0].contains(&format!(
            " call    {run}  -> group server_group  server_agent.startServer() => serverStarted #"
        )),
        "{lines:?}"
    );
    let seq = lines[0].rsplit('#').next().unwrap_or_default();
    assert!(lines[1].contains(&format!(" trigger {run}  <- servernode  serverStarted {{\"retVal\":true,\"agent\":\"server_agent\"}} (answers #{seq})")), "{lines:?}");
    // The node-announcement tap stopped by itself after two heartbeats of servernode.
    assert_eq!(tap_nodes.code, Some(0), "{}", tap_nodes.show());
    let beats: Vec<Value> = tap_nodes
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(beats.len(), 2, "{}", tap_nodes.show());
    assert!(
        beats
            .iter()
            .all(|b| b["kind"] == "node" && b["body"]["node"] == "servernode"),
        "{beats:?}"
    );
    w.finish().await;
}

// ---------------------------------------------------------------------------------------
// (b) two orchestrators, two runs at once on the same three node agents
// ---------------------------------------------------------------------------------------

/// Two clocks fire `T` and `T2` (the test agent returns `retVal: true` for every method)
/// after `d1` and `d2` ms; two watchers wait for them. Every name (group, agent, methods,
/// triggers) is the same in both runs. In a run, the watcher of `T` can only complete after
/// its own clock sent `mark1`: if a trigger of the other run (whose clocks run in the
/// opposite order) satisfied a wait, a watcher would complete before its clock.
fn crossing(d1: u64, d2: u64) -> String {
    format!(
        r#"agents:
  a: {{group: g, path: {ta}, execargs: {{}}}}
groups:
  g: [n1, n2, n3]
streamstarts: [clock1, clock2, watch1, watch2]
eventstreams:
  clock1:
    - {{type: trigger, triggers: [{{timeout: {d1}}}]}}
    - {{type: event, agent: a, method: mark1, trigger: T, args: {{}}}}
  clock2:
    - {{type: trigger, triggers: [{{timeout: {d2}}}]}}
    - {{type: event, agent: a, method: mark2, trigger: T2, args: {{}}}}
  watch1:
    - {{type: trigger, triggers: [{{event: T}}]}}
    - {{type: event, agent: a, method: seen1, args: {{}}}}
  watch2:
    - {{type: trigger, triggers: [{{event: T2}}]}}
    - {{type: event, agent: a, method: seen2, args: {{}}}}
"#,
        ta = testagent()
    )
}

/// Index of the first console line of `stream` with `tag` containing `text`.
fn line_of(stdout: &str, stream: &str, tag: &str, text: &str) -> usize {
    stdout
        .lines()
        .position(|l| l.starts_with(&format!("stream {stream:<14} : {tag} :")) && l.contains(text))
        .unwrap_or_else(|| panic!("no `{stream} {tag} {text}` line in\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orchestrators_share_three_node_agents_and_never_see_each_others_triggers() {
    let mut w = World::new().await;
    for n in ["n1", "n2", "n3"] {
        w.start_node(n, &[]);
    }
    // Run A marks T early and T2 late; run B the other way round.
    let a_aal = w.write("a.aal", &crossing(500, 4000));
    let b_aal = w.write("b.aal", &crossing(3000, 1000));
    let (ra, rb) = (format!("a-{}", tag()), format!("b-{}", tag()));
    let mut a = Running::start(w.run_cmd(&a_aal, &ra, &[]), w.dir.path(), "run-a");
    let b = Running::start(w.run_cmd(&b_aal, &rb, &[]), w.dir.path(), "run-b");

    // While both run, every node agent hosts both runs, each with its own group g and agent a.
    a.wait_for("mark1(None)", Duration::from_secs(30)).await;
    let out = w
        .magi()
        .args([
            "status",
            "--broker",
            &w.broker.url,
            "--wait",
            "1.5",
            "--json",
        ])
        .output()
        .expect("magi status");
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    for n in status["nodes"].as_array().expect("nodes") {
        let runs: BTreeSet<(String, String, String)> = n["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|m| {
                (
                    m["run"].as_str().unwrap_or("").to_string(),
                    m["groups"].to_string(),
                    m["agents"].to_string(),
                )
            })
            .collect();
        let want: BTreeSet<_> = [&ra, &rb]
            .iter()
            .map(|r| (r.to_string(), "[\"g\"]".to_string(), "[\"a\"]".to_string()))
            .collect();
        assert!(want.is_subset(&runs), "{} hosts {runs:?}", n["node"]);
    }

    let a = a.finish(Duration::from_secs(60)).await;
    let b = b.finish(Duration::from_secs(60)).await;
    for (run, done) in [(&ra, &a), (&rb, &b)] {
        assert_eq!(done.code, Some(0), "{run}: {}", done.show());
        // Each watcher completed after its own clock fired.
        assert!(
            line_of(&done.stdout, "watch1", "trig", "T")
                > line_of(&done.stdout, "clock1", "sent", "mark1"),
            "{run}: {}",
            done.show()
        );
        assert!(
            line_of(&done.stdout, "watch2", "trig", "T2")
                > line_of(&done.stdout, "clock2", "sent", "mark2"),
            "{run}: {}",
            done.show()
        );
        // Exactly one T and one T2 per node reached each run, all of that run.
        let events = events_of(&w.records().join(run));
        for name in ["T", "T2"] {
            let got: Vec<&Value> = events
                .iter()
                .filter(|e| e["dir"] == "recv" && e["body"]["event"] == name)
                .collect();
            assert_eq!(got.len(), 3, "{run} received {name}: {got:?}");
            assert!(
                got.iter().all(|e| e["body"]["run"] == run.as_str()),
                "{got:?}"
            );
            let nodes: BTreeSet<&str> = got
                .iter()
                .filter_map(|e| e["body"]["nodes"][0].as_str())
                .collect();
            assert_eq!(nodes, BTreeSet::from(["n1", "n2", "n3"]));
        }
    }
    // The runs overlapped in time.
    let span = |run: &str| {
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(w.records().join(run).join("run.json")).expect("run.json"),
        )
        .expect("run.json");
        (
            s["started"].as_f64().expect("started"),
            s["ended"].as_f64().expect("ended"),
        )
    };
    let ((a0, a1), (b0, b1)) = (span(&ra), span(&rb));
    assert!(
        a0 < b1 && b0 < a1,
        "the runs did not overlap: {a0}..{a1} and {b0}..{b1}"
    );
    w.finish().await;
}
