//! End to end on the local three-node RabbitMQ cluster (`scripts/cluster`, started by the
//! first test that needs it): the real `magi run` and two real `magi-node` processes, given
//! the cluster as a broker list, while the broker node the orchestrator is connected to,
//! then the one the node agents are connected to, is stopped and started again. The run
//! must exit 0 with every trigger received exactly once.
//!
//! Binaries as in `tests/broker.rs`: `magi` is this package's, `magi-node` is built once by
//! the first test unless `MAGI_TEST_NO_BUILD` is set.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use magi_testkit::{skip, Cluster, ClusterGuard, TestBroker};

use crate::support::{node_bin, workspace};
use serde_json::Value;

/// Kills a child still running when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a cluster node's app again when dropped, whatever happened.
struct StartAppOnDrop(usize);

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        if let Err(e) = Cluster::ctl(self.0, &["start_app"]) {
            eprintln!("could not start node {} again: {e}", self.0);
        }
    }
}

/// Stops node `n` for two seconds (from a blocking thread), then starts it again; returns
/// when it is started.
async fn bounce(n: usize) -> Instant {
    tokio::task::spawn_blocking(move || {
        Cluster::ctl(n, &["stop_app"]).expect("stop_app");
        let guard = StartAppOnDrop(n);
        let stopped = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        drop(guard);
        stopped
    })
    .await
    .unwrap()
}

fn events_of(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn pinged(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["dir"] == "recv" && e["kind"] == "trigger" && e["body"]["event"] == "pinged")
        .collect()
}

/// Waits until the run has received `n` `pinged` triggers; a run that stalls fails with
/// the logs of `magi run` and the node agents kept in `logs`.
async fn until_pinged(record: &Path, n: usize, deadline: Instant, logs: &Path) {
    while pinged(&events_of(record)).len() < n {
        if Instant::now() >= deadline {
            let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
            let tail = |f: &str| {
                let text = read(f);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            let events = events_of(record);
            let last: Vec<String> = events[events.len().saturating_sub(10)..]
                .iter()
                .map(Value::to_string)
                .collect();
            panic!(
                "the run stalled before {n} triggers ({} received)\nlast events:\n{}\n\
                 magi.err:\n{}\nn1.log:\n{}\nn2.log:\n{}",
                pinged(&events).len(),
                last.join("\n"),
                tail("magi.err"),
                tail("n1.log"),
                tail("n2.log")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rounds` of: call `ping` on both nodes (each answers `pinged`), wait for both, 100 ms.
fn procedure(rounds: usize) -> String {
    let agent = workspace()
        .join("node-agent/testagent")
        .canonicalize()
        .expect("node-agent/testagent");
    let mut s = format!(
        "groups:\n  pingers: [n1, n2]\nagents:\n  pinger: {{group: pingers, path: {}, execargs: {{}}}}\nstreamstarts: [main]\neventstreams:\n  main:\n",
        serde_json::to_string(&agent.to_string_lossy()).unwrap()
    );
    for _ in 0..rounds {
        s.push_str("    - {type: event, agent: pinger, method: ping, trigger: pinged, args: {}}\n");
        s.push_str("    - {type: trigger, triggers: [{event: pinged}]}\n");
        s.push_str("    - {type: trigger, triggers: [{timeout: 100}]}\n");
    }
    s
}

/// `magi-node --name NAME` on the cluster through `url` (a broker list), heartbeating every
/// 500 ms, its state under `dir` and its log in `dir/NAME.log`.
fn node_on_cluster(node_bin: &Path, name: &str, url: &str, dir: &Path, prefix: &str) -> Command {
    let mut c = Command::new(node_bin);
    c.args(["--name", name, "--broker", url, "--heartbeat-ms", "500"])
        .arg("--state-dir")
        .arg(dir.join(format!("state-{name}")))
        .env("MAGI_BUS_PREFIX", prefix)
        .env("RUST_LOG", "info,lapin=off")
        .env_remove("MAGI_NODE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("{name}.log"))).unwrap());
    c
}

/// `magi run AAL --run RUN` on the whole cluster (nodes 1, 2, 3: its broker is node 1),
/// records under `records`, its output in `dir/magi.out` and `dir/magi.err`.
fn run_on_cluster(aal: &Path, run: &str, records: &Path, dir: &Path, prefix: &str) -> Command {
    let mut c = crate::support::magi();
    c.arg("run")
        .arg(aal)
        .args([
            "--no-color",
            "--run",
            run,
            "--broker",
            &Cluster::url(&[1, 2, 3]),
        ])
        .args(["--preflight", "30", "--record-dir"])
        .arg(records)
        .env("MAGI_BUS_PREFIX", prefix)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("magi.out")).unwrap())
        .stderr(File::create(dir.join("magi.err")).unwrap());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_stopping_the_broker_nodes_of_its_orchestrator_and_of_its_node_agents() {
    if let Err(e) = Cluster::ensure().await {
        skip("cluster run", &format!("no local cluster: {e}"));
        return;
    }
    let node_bin = node_bin();
    let _hold = ClusterGuard::exclusive().await.expect("cluster lock");
    let kit = TestBroker::on_cluster(&Cluster::url(&[1, 2, 3]));
    let dir = tempfile::tempdir().unwrap();
    const ROUNDS: usize = 80;
    let aal = dir.path().join("ping.aal");
    std::fs::write(&aal, procedure(ROUNDS)).unwrap();
    let records = dir.path().join("runs");
    let run = format!(
        "guest.cluster-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );

    // The node agents list node 2 first, the orchestrator node 1.
    let node_url = Cluster::url(&[2, 3, 1]);
    let mut nodes = Vec::new();
    for name in ["n1", "n2"] {
        let child = node_on_cluster(&node_bin, name, &node_url, dir.path(), &kit.prefix)
            .spawn()
            .expect("start magi-node");
        nodes.push(Proc(child));
    }
    let started = Instant::now();
    let mut magi = Proc(
        run_on_cluster(&aal, &run, &records, dir.path(), &kit.prefix)
            .spawn()
            .expect("start magi run"),
    );
    let record = records.join(&run);
    let deadline = Instant::now() + Duration::from_secs(240);
    until_pinged(&record, 20, deadline, dir.path()).await;
    let orch_stop = bounce(1).await;
    let at = pinged(&events_of(&record)).len();
    until_pinged(&record, at + 20, deadline, dir.path()).await;
    let nodes_stop = bounce(2).await;

    let status = loop {
        if let Some(s) = magi.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "magi run did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    let events = events_of(&record);
    let got = pinged(&events);
    // Every round's trigger from each node exactly once.
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for t in &got {
        *per_node.entry(t["body"]["nodes"].to_string()).or_default() += 1;
    }
    // Recovery: the longest pause between two consecutive triggers after each stop (the
    // run's own pace is one round every ~100 ms).
    let times: Vec<f64> = got.iter().filter_map(|e| e["time"].as_f64()).collect();
    let now_epoch = magi_proto::epoch_now();
    let pause_after = |stop: Instant, until: Option<Instant>| {
        let from = now_epoch - stop.elapsed().as_secs_f64();
        let to = until.map_or(f64::MAX, |u| now_epoch - u.elapsed().as_secs_f64());
        times
            .windows(2)
            .filter(|w| w[1] > from && w[1] < to)
            .map(|w| w[1] - w[0])
            .fold(0.0, f64::max)
    };
    eprintln!(
        "cluster run: {took:?} for {ROUNDS} rounds; longest pause between triggers after the orchestrator's node stopped {:.2} s, after the node agents' {:.2} s; triggers per node {per_node:?}",
        pause_after(orch_stop, Some(nodes_stop)),
        pause_after(nodes_stop, None),
    );
    assert!(
        status.success(),
        "magi run: {status:?}\n{}\n{}\nn1: {}\nn2: {}",
        read("magi.out"),
        read("magi.err"),
        read("n1.log"),
        read("n2.log")
    );
    assert_eq!(got.len(), 2 * ROUNDS, "{per_node:?}");
    // The stops did hit them: each node agent moved to another broker node.
    for name in ["n1", "n2"] {
        let log = read(&format!("{name}.log"));
        assert!(log.contains("reconnected to the broker"), "{name}:\n{log}");
    }
    assert!(per_node.values().all(|n| *n == ROUNDS), "{per_node:?}");

    for n in &nodes {
        // SAFETY: kill on a pid of a child we own and have not reaped.
        unsafe { libc::kill(n.0.id() as libc::pid_t, libc::SIGTERM) };
    }
    // They leave cleanly (goodbye, queue and lock deleted) on SIGTERM.
    for (i, mut n) in nodes.into_iter().enumerate() {
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = n.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < until,
                "magi-node n{} did not stop on SIGTERM",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "magi-node n{}: {status:?}", i + 1);
    }
    drop(magi);
    let left = kit.cleanup().await.expect("cleanup");
    assert!(left.is_empty(), "left on the cluster: {left:?}");
}

// ---------------------------------------------------------------------------------------
// The case study for real across the failover of the orchestrator's and a node agent's
// broker node
// ---------------------------------------------------------------------------------------

/// Seconds since the epoch of a tracing line's RFC 3339 UTC timestamp
/// (`2026-12-02T12:27:52.096346Z ...`), on the day of `reference` (epoch seconds).
fn log_time(line: &str, reference: f64) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let clock = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    let midnight = (reference / 86_400.0).floor() * 86_400.0;
    Some(midnight + h * 3600.0 + m * 60.0 + s)
}

/// The first time (epoch seconds) after `since` that `log` says `what`.
fn first_after(log: &str, what: &str, since: f64) -> Option<f64> {
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| log_time(l, since))
        .find(|t| *t >= since)
}

/// Stops node `n`'s app (from a blocking thread), waits two seconds, starts it again;
/// when `stop_app` was invoked (epoch seconds), once the node is started again.
async fn bounce_at(n: usize) -> f64 {
    tokio::task::spawn_blocking(move || {
        let invoked = magi_proto::epoch_now();
        Cluster::ctl(n, &["stop_app"]).expect("stop_app");
        let guard = StartAppOnDrop(n);
        std::thread::sleep(Duration::from_secs(2));
        drop(guard);
        invoked
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_study_survives_stopping_the_broker_nodes_of_its_orchestrator_and_of_a_node_agent()
{
    let _host = crate::support::host_agents();
    if let Err(e) = Cluster::ensure().await {
        skip("cluster case study", &format!("no local cluster: {e}"));
        return;
    }
    let node_bin = node_bin();
    let _hold = ClusterGuard::exclusive().await.expect("cluster lock");
    let kit = TestBroker::on_cluster(&Cluster::url(&[1, 2, 3]));
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(
        crate::support::shared().join("casestudies/casestudy_clientserver_monitor.aal"),
    )
    .expect("the case study");
    assert!(original.contains("timeout: 60000"));
    // Long enough for both outages to fall in the traffic (each is a stop_app, 2 s, a
    // start_app: several seconds on a loaded machine).
    let aal = dir.path().join("casestudy_failover.aal");
    std::fs::write(&aal, original.replace("timeout: 60000", "timeout: 30000")).unwrap();
    let records = dir.path().join("runs");
    let run = format!(
        "guest.cs-failover-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );

    // Each client's first broker is known from its list: the orchestrator node 1, the
    // client's node agent node 2, the server's node 3.
    let hosts = [
        "--host",
        "clientnode=127.0.1.1",
        "--host",
        "servernode=127.0.1.2",
    ];
    let mut nodes = Vec::new();
    for (name, address, order) in [
        ("clientnode", "127.0.1.1", [2, 3, 1]),
        ("servernode", "127.0.1.2", [3, 1, 2]),
    ] {
        let child = node_on_cluster(
            &node_bin,
            name,
            &Cluster::url(&order),
            dir.path(),
            &kit.prefix,
        )
        .args(["--address", address])
        // apache binds port 80 and pktcounters counts with nftables; as root,
        // magi-node runs them as nobody with only these.
        .args(["--grant", "net_admin,net_bind_service"])
        .args(hosts)
        .spawn()
        .expect("start magi-node");
        nodes.push(Proc(child));
    }
    let mut magi = Proc(
        run_on_cluster(&aal, &run, &records, dir.path(), &kit.prefix)
            .env("MAGI_STATE_DIR", dir.path().join("embedded-state"))
            .env("RUST_LOG", "info,lapin=off")
            .spawn()
            .expect("start magi run"),
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    let record = records.join(&run);
    let deadline = Instant::now() + Duration::from_secs(240);

    // Once the client makes requests: the orchestrator's node, then the client's.
    let sent = |method: &str| {
        events_of(&record).iter().any(|e| {
            e["dir"] == "sent" && e["kind"] == "call" && e["body"]["call"]["method"] == method
        })
    };
    while !sent("startClient") {
        assert!(
            Instant::now() < deadline && magi.0.try_wait().unwrap().is_none(),
            "the run never started the client\n{}\n{}",
            read("magi.out"),
            read("magi.err")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let orch_stop = bounce_at(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client_stop = bounce_at(2).await;
    let both_back = magi_proto::epoch_now();
    assert!(
        !sent("stopClient"),
        "the traffic ended before both outages were over: they did not fall mid-run"
    );

    let status = loop {
        if let Some(s) = magi.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "magi run did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (out, err) = (read("magi.out"), read("magi.err"));
    let logs = format!(
        "{out}\n{err}\nclientnode: {}\nservernode: {}",
        read("clientnode.log"),
        read("servernode.log")
    );
    assert_eq!(status.code(), Some(0), "magi run: {status:?}\n{logs}");

    // Time to recover: from the stop to the moved client consuming again on another node.
    let orch_back = first_after(&err, "consuming again", orch_stop);
    let client_back = first_after(&read("clientnode.log"), "consuming again", client_stop);
    eprintln!(
        "cluster case study: the orchestrator consumed again {:.2} s after its node was stopped, the client's node agent {:.2} s after its node was; both nodes back {:.1} s after the first stop",
        orch_back.map_or(f64::NAN, |t| t - orch_stop),
        client_back.map_or(f64::NAN, |t| t - client_stop),
        both_back - orch_stop,
    );
    // The stops did hit them: each moved to another broker node and consumed again there.
    assert!(
        err.contains("reconnected to the broker") && orch_back.is_some(),
        "the orchestrator did not fail over:\n{logs}"
    );
    assert!(
        client_back.is_some(),
        "the client's node agent did not fail over:\n{logs}"
    );

    // Every trigger once: none lost (the case study's four), none repeated.
    let events = events_of(&record);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for e in events
        .iter()
        .filter(|e| e["dir"] == "recv" && e["kind"] == "trigger")
    {
        let mut body = e["body"].as_object().cloned().unwrap_or_default();
        body.remove("run");
        *seen.entry(Value::Object(body).to_string()).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "triggers received twice: {repeated:?}");
    for event in [
        "serverStarted",
        "collectionServer",
        "clientStopped",
        "serverStopped",
    ] {
        let n = events
            .iter()
            .filter(|e| e["dir"] == "recv" && e["kind"] == "trigger")
            .filter(|e| e["body"]["event"] == event)
            .count();
        assert_eq!(n, 1, "trigger {event} received {n} times\n{logs}");
    }

    // The traffic happened and was counted, across the outages.
    let store = record.join("data.sqlite");
    let requests =
        crate::support::data_query(crate::support::magi(), &store, &["--agent", "client_agent"]);
    assert!(requests.len() >= 10, "{requests:?}");
    assert!(
        requests.iter().all(|r| r["host"] == "clientnode"
            && r["data"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://servernode/getsize.py?length="))),
        "{requests:?}"
    );
    let counted = crate::support::data_query(
        crate::support::magi(),
        &store,
        &[
            "--agent",
            "monitor_agent",
            "--host",
            "servernode",
            "--where",
            "peerNode=clientnode",
            "--where",
            "trafficDirection=out",
        ],
    );
    assert!(counted.len() >= 10, "{counted:?}");
    crate::support::assert_counted_covers_requests(&counted, &requests);
    // Requests went on through the outages: one made during each (the client's agent
    // records one a second; they reach the orchestrator once its broker is back).
    for (who, stop) in [("orchestrator", orch_stop), ("client", client_stop)] {
        assert!(
            requests
                .iter()
                .filter_map(|r| r["created"].as_f64())
                .any(|t| t > stop && t < stop + 4.0),
            "no request recorded in the 4 s after the {who}'s node was stopped"
        );
    }

    for n in &nodes {
        // SAFETY: kill on a pid of a child we own and have not reaped.
        unsafe { libc::kill(n.0.id() as libc::pid_t, libc::SIGTERM) };
    }
    for (i, mut n) in nodes.into_iter().enumerate() {
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = n.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < until,
                "magi-node {i} did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "magi-node {i}: {status:?}");
    }
    drop(magi);
    let left = kit.cleanup().await.expect("cleanup");
    assert!(left.is_empty(), "left on the cluster: {left:?}");
}
