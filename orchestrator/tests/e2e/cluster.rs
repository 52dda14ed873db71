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

use crate::support::{magi_bin, node_bin, workspace};
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

/// Waits until the run has received `n` `pinged` triggers.
async fn until_pinged(record: &Path, n: usize, deadline: Instant) {
    while pinged(&events_of(record)).len() < n {
        assert!(
            Instant::now() < deadline,
            "the run stalled before {n} triggers"
        );
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
        let child = Command::new(&node_bin)
            .args([
                "--name",
                name,
                "--broker",
                &node_url,
                "--heartbeat-ms",
                "500",
            ])
            .arg("--state-dir")
            .arg(dir.path().join(format!("state-{name}")))
            .env("MAGI_BUS_PREFIX", &kit.prefix)
            .env("RUST_LOG", "info,lapin=off")
            .env_remove("MAGI_NODE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .expect("start magi-node");
        nodes.push(Proc(child));
    }
    let started = Instant::now();
    let mut magi = Proc(
        Command::new(magi_bin())
            .arg("run")
            .arg(&aal)
            .args([
                "--no-color",
                "--run",
                &run,
                "--broker",
                &Cluster::url(&[1, 2, 3]),
            ])
            .args(["--preflight", "30", "--record-dir"])
            .arg(&records)
            .env("MAGI_BUS_PREFIX", &kit.prefix)
            .env("NO_COLOR", "1")
            .env_remove("MAGI_BROKER")
            .env_remove("MAGI_RECORD_DIR")
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("magi.out")).unwrap())
            .stderr(File::create(dir.path().join("magi.err")).unwrap())
            .spawn()
            .expect("start magi run"),
    );
    let record = records.join(&run);
    let deadline = Instant::now() + Duration::from_secs(240);
    until_pinged(&record, 20, deadline).await;
    let orch_stop = bounce(1).await;
    let at = pinged(&events_of(&record)).len();
    until_pinged(&record, at + 20, deadline).await;
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
