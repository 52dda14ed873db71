//! End to end over the real RabbitMQ: the real `magi` and `magi-node` binaries as separate
//! processes that meet only on the broker, as on a testbed.
//!
//! Every test works under a unique bus prefix (`MAGI_BUS_PREFIX`, `magi.test.<uuid>.`) with
//! unique run names, and checks with `rabbitmqctl` that nothing under its prefix is left.
//! Tests hold the broker lock of `magi-testkit` shared; the broker-restart test
//! holds it exclusively (and always starts the broker again).
//!
//! Binaries: `magi` is this package's; `magi-node` and the standard agents
//! (`magi-http-server` ...) come from other packages of the workspace. `cargo test
//! --workspace` builds them all; otherwise the first test builds them with
//! `cargo build -p magi-node -p magi-agents --bins` (set `MAGI_TEST_NO_BUILD=1` to skip that
//! and use what is in the target directory).
//!
//! Broker: `MAGI_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`);
//! PostgreSQL for the case-study variant: `MAGI_TEST_POSTGRES` (default
//! `postgres://root@127.0.0.1:5432/test`).

use crate::support::host_agents;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use magi_testkit::{ctl, BrokerGuard, TestBroker};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// The kit
// ---------------------------------------------------------------------------------------

/// The heartbeat the tests' node agents use: the orchestrator declares a node lost after
/// max(3 heartbeats, 3 s) of silence, and its pre-flight waits for one heartbeat.
const HEARTBEAT_MS: u64 = 500;

fn magi_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_magi"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `magi-node`, next to `magi` in the target directory; built (with the standard agents)
/// once per test binary unless `MAGI_TEST_NO_BUILD` is set.
fn node_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = magi_bin().parent().expect("target dir").to_path_buf();
            let bin = dir.join("magi-node");
            if std::env::var_os("MAGI_TEST_NO_BUILD").is_none() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-p", "magi-node", "-p", "magi-agents", "--bins"])
                    .current_dir(workspace())
                    .status()
                    .expect("running cargo build");
                assert!(
                    status.success(),
                    "cargo build -p magi-node -p magi-agents failed"
                );
            }
            assert!(
                bin.is_file(),
                "{} is missing: run `cargo build -p magi-node -p magi-agents`",
                bin.display()
            );
            bin
        })
        .clone()
}

/// A short unique tag for run names.
fn tag() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_string()
}

/// A `magi-node` process.
struct NodeProc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl NodeProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill on a pid of a child we own and have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits for the process to end, at most `within`.
    fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One test's world: its prefix on the broker, its directory, its node agents. Dropping it
/// kills what is still running and deletes everything under the prefix.
struct World {
    broker: TestBroker,
    dir: tempfile::TempDir,
    nodes: Vec<NodeProc>,
    /// Set by [`World::finish`], which cleaned up already.
    clean: bool,
    /// `RUST_LOG` of the node agents started from now on (`None`: their default).
    node_log: Option<&'static str>,
    _hold: BrokerGuard,
}

impl World {
    async fn new() -> World {
        Self::with_hold(BrokerGuard::shared().await.expect("broker lock")).await
    }

    async fn with_hold(hold: BrokerGuard) -> World {
        node_bin();
        World {
            broker: TestBroker::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: Vec::new(),
            clean: false,
            node_log: Some("info,lapin=off"),
            _hold: hold,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn records(&self) -> PathBuf {
        self.path("runs")
    }

    /// Starts `magi-node --name NAME` with extra arguments.
    fn start_node(&mut self, name: &str, extra: &[&str]) -> usize {
        let url = self.broker.url.clone();
        self.start_node_at(&url, name, extra)
    }

    /// Starts `magi-node --name NAME` on the broker at `url` (another vhost or user).
    fn start_node_at(&mut self, url: &str, name: &str, extra: &[&str]) -> usize {
        let log = self.path(&format!("{name}.log"));
        let mut node = Command::new(node_bin());
        match self.node_log {
            Some(filter) => node.env("RUST_LOG", filter),
            None => node.env_remove("RUST_LOG"),
        };
        let child = node
            .args([
                "--name",
                name,
                "--broker",
                url,
                "--heartbeat-ms",
                &HEARTBEAT_MS.to_string(),
                // The case study's apache binds port 80 and pktcounters counts with
                // nftables; as root, magi-node runs them as nobody with only these.
                "--grant",
                "net_admin,net_bind_service",
            ])
            .arg("--state-dir")
            .arg(self.path(&format!("state-{name}")))
            .args(extra)
            .env("MAGI_BUS_PREFIX", &self.broker.prefix)
            .env_remove("MAGI_NODE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("node log"))
            .spawn()
            .expect("start magi-node");
        self.nodes.push(NodeProc {
            name: name.to_string(),
            child,
            log,
        });
        self.nodes.len() - 1
    }

    /// `magi` with this world's prefix, no colours, no inherited broker.
    fn magi(&self) -> Command {
        let mut c = Command::new(magi_bin());
        c.env("MAGI_BUS_PREFIX", &self.broker.prefix)
            .env("NO_COLOR", "1")
            .env_remove("MAGI_BROKER")
            .env_remove("MAGI_RECORD_DIR")
            .env("MAGI_STATE_DIR", self.path("embedded-state"))
            .stdin(Stdio::null());
        c
    }

    /// `magi run --broker` of a procedure file.
    fn run_cmd(&self, aal: &Path, run: &str, extra: &[&str]) -> Command {
        self.run_cmd_at(&self.broker.url, aal, run, extra)
    }

    /// `magi run --broker URL` of a procedure file (another vhost or user).
    fn run_cmd_at(&self, url: &str, aal: &Path, run: &str, extra: &[&str]) -> Command {
        let mut c = self.magi();
        c.arg("run")
            .arg(aal)
            .args([
                "--no-color",
                "--run",
                run,
                "--broker",
                url,
                "--preflight",
                "20",
                "--record-dir",
            ])
            .arg(self.records())
            .args(extra);
        c
    }

    /// Writes a file into the world's directory.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Stops every node agent cleanly, checks that only the global exchanges are left
    /// under the prefix (nothing a run, a node or a tap declared), then deletes them and
    /// checks that nothing at all is left.
    async fn finish(self) {
        self.finish_allowing(&[]).await
    }

    /// [`World::finish`], with leftovers that a killed process leaves by design.
    async fn finish_allowing(mut self, allowed: &[String]) {
        for n in &self.nodes {
            n.signal(libc::SIGTERM);
        }
        for n in &mut self.nodes {
            let status = n.wait(Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "magi-node {} did not stop cleanly on SIGTERM: {status:?}\n{}",
                n.name,
                n.log_text()
            );
        }
        let mut globals: BTreeSet<String> = ["calls", "nodes", "triggers", "status", "watch"]
            .iter()
            .map(|g| format!("exchange: {}{g}", self.broker.prefix))
            .collect();
        globals.extend(allowed.iter().cloned());
        let mut left: BTreeSet<String> = BTreeSet::new();
        // The broker takes a moment to drop exclusive queues of closed connections.
        for _ in 0..20 {
            left = self
                .broker
                .leftovers()
                .expect("rabbitmqctl")
                .into_iter()
                .collect();
            if left.is_subset(&globals) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            left.is_subset(&globals),
            "left on the broker after a clean end: {:?}",
            left.difference(&globals).collect::<Vec<_>>()
        );
        let after = self.broker.cleanup().await.expect("cleanup");
        assert!(after.is_empty(), "left after cleanup: {after:?}");
        self.clean = true;
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Ok(None) = n.child.try_wait() {
                let _ = n.child.kill();
                let _ = n.child.wait();
            }
        }
        if self.clean {
            return;
        }
        // The broker cleanup is async; run it on a thread of its own so that it also works
        // while a test's runtime is unwinding.
        let (url, prefix) = (self.broker.url.clone(), self.broker.prefix.clone());
        let _ = std::thread::spawn(move || {
            let kit = TestBroker {
                vhost: magi_testkit::vhost_of(&url),
                url,
                prefix,
            };
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                match rt.block_on(kit.cleanup()) {
                    Ok(left) if left.is_empty() => {}
                    other => eprintln!("broker cleanup under {}: {other:?}", kit.prefix),
                }
            }
        })
        .join();
    }
}

/// What a finished `magi` process said.
struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Done {
    fn show(&self) -> String {
        format!(
            "exit {:?} after {:.1} s\n--- stdout\n{}--- stderr\n{}",
            self.code,
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// A started `magi` process whose output goes to files.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Running {
    fn start(mut cmd: Command, dir: &Path, label: &str) -> Running {
        let out = dir.join(format!("{label}.stdout"));
        let err = dir.join(format!("{label}.stderr"));
        let child = cmd
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start magi");
        Running {
            child,
            out,
            err,
            started: Instant::now(),
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until stdout (or stderr) contains `text`, at most `within`.
    async fn wait_for(&mut self, text: &str, within: Duration) {
        let until = Instant::now() + within;
        while !(self.stdout().contains(text) || self.stderr().contains(text)) {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!(
                    "magi ended ({s}) before printing {text:?}\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < until,
                "no {text:?} within {within:?}\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill on a pid of a child we own and have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Waits for the end, at most `within` (then kills it and fails).
    async fn finish(mut self, within: Duration) -> Done {
        let until = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Done {
                    code: status.code(),
                    stdout: self.stdout(),
                    stderr: self.stderr(),
                    took: self.started.elapsed(),
                };
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "magi did not end within {within:?}\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Console lines without their `(HH:MM:SS)`.
fn timeless(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match (l.find(" : ("), l.find(") ")) {
            (Some(a), Some(b)) if b > a => format!("{}{}", &l[..a + 3], &l[b + 1..]),
            _ => l.to_string(),
        })
        .collect()
}

/// The JSON lines of a run record's `events.jsonl`.
fn events_of(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The triggers a run received: (event, nodes, other args) as sortable text.
fn received_triggers(events: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .filter(|e| e["dir"] == "recv" && e["kind"] == "trigger")
        .map(|e| trigger_key(&e["body"]))
        .collect();
    v.sort();
    v
}

fn trigger_key(t: &Value) -> String {
    let mut args = t.as_object().cloned().unwrap_or_default();
    args.remove("run");
    let event = args.remove("event").unwrap_or(Value::Null);
    let nodes = args.remove("nodes").unwrap_or(Value::Null);
    format!("{event} {nodes} {}", Value::Object(args))
}

fn testagent() -> String {
    workspace()
        .join("node-agent/testagent")
        .canonicalize()
        .expect("node-agent/testagent")
        .to_string_lossy()
        .into_owned()
}

/// A procedure shaped like the case study (server, client and monitor streams and a cleanup
/// stream that exits), on the Python test agent: every method returns `retVal: true`.
fn case_study_shape(wait_ms: u64) -> String {
    format!(
        r#"agents:
  client_agent: {{group: client_group, path: {ta}, execargs: {{}}}}
  server_agent: {{group: server_group, path: {ta}, execargs: {{}}}}
  monitor_agent: {{group: monitor_group, path: {ta}, execargs: {{}}}}
groups:
  client_group: [clientnode]
  server_group: [servernode]
  monitor_group: [servernode]
streamstarts: [serverstream, clientstream, monitorstream, cleanupstream]
eventstreams:
  serverstream:
    - {{type: event, agent: server_agent, method: startServer, trigger: serverStarted, args: {{}}}}
    - {{type: trigger, triggers: [{{event: clientStopped}}]}}
    - {{type: event, agent: server_agent, method: stopServer, trigger: serverStopped, args: {{}}}}
  clientstream:
    - {{type: trigger, triggers: [{{event: serverStarted}}]}}
    - {{type: event, agent: client_agent, method: startClient, args: {{}}}}
    - {{type: trigger, triggers: [{{timeout: {wait_ms}}}]}}
    - {{type: event, agent: client_agent, method: stopClient, trigger: clientStopped, args: {{}}}}
  monitorstream:
    - {{type: trigger, triggers: [{{event: serverStarted}}]}}
    - {{type: event, agent: monitor_agent, method: startCollection, trigger: collectionServer, args: {{}}}}
    - {{type: trigger, triggers: [{{event: clientStopped}}]}}
    - {{type: event, agent: monitor_agent, method: stopCollection, args: {{}}}}
  cleanupstream:
    - {{type: trigger, triggers: [{{event: serverStopped, target: exit}}]}}
"#,
        ta = testagent()
    )
}

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
    eprintln!("orchestrator killed → agent and its child gone after {:.2} s (dead man 3 s, heartbeat {HEARTBEAT_MS} ms)", killed.elapsed().as_secs_f64());
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
    // The dead orchestrator's run queue stays until it expires (10 min); the rest was cleaned.
    let prefix = w.broker.prefix.clone();
    w.finish_allowing(&[format!("queue: {prefix}run.{run}")])
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

// ---------------------------------------------------------------------------------------
// (e) the case study for real over RabbitMQ, SQLite and PostgreSQL
// ---------------------------------------------------------------------------------------

fn shared() -> PathBuf {
    std::env::var_os("MAGI_SHARED")
        .map(Into::into)
        .unwrap_or_else(|| workspace().join("../shared"))
}

/// `magi data query STORE ARGS --json`, one JSON value per record.
fn query(w: &World, store: &str, args: &[&str]) -> Vec<Value> {
    let out = w
        .magi()
        .args(["data", "query", store])
        .args(args)
        .arg("--json")
        .output()
        .expect("magi data query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Real HTTP requests from clientnode to servernode, and bytes counted towards that peer.
fn check_traffic(w: &World, store: &str, run: &str) {
    let requests = query(w, store, &["--run-name", run, "--agent", "client_agent"]);
    assert!(requests.len() >= 3, "{store}: {requests:?}");
    assert!(
        requests.iter().all(|r| r["host"] == "clientnode"
            && r["data"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://servernode/getsize.py?length="))),
        "{requests:?}"
    );
    let counted = query(
        w,
        store,
        &[
            "--run-name",
            run,
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
    assert!(counted.len() >= 3, "{store}: {counted:?}");
    let bytes: u64 = counted
        .iter()
        .filter_map(|r| r["data"]["bytes"].as_u64())
        .sum();
    // Samples are per-interval deltas; bodies sent after the last sample are not in any.
    // Records are stamped when they reach the node agent, a little after the fact, hence
    // the margin.
    let last_sample = counted
        .iter()
        .filter_map(|r| r["created"].as_f64())
        .fold(0.0, f64::max);
    let asked: u64 = requests
        .iter()
        .filter(|r| r["created"].as_f64().is_some_and(|t| t < last_sample - 0.1))
        .filter_map(|r| r["data"]["size_download"].as_u64())
        .sum();
    assert!(
        bytes >= asked && asked > 0,
        "the server sent at least the bodies of the requests before the last sample: counted {bytes}, bodies {asked}"
    );
}

/// Drops a PostgreSQL table when the test ends, however it ends.
struct PgTable {
    base: String,
    table: String,
}

impl Drop for PgTable {
    fn drop(&mut self) {
        let out = Command::new("psql")
            .arg(&self.base)
            .args(["-q", "-c", &format!("DROP TABLE IF EXISTS {}", self.table)])
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("could not drop {} in {}: {out:?}", self.table, self.base);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_study_runs_over_rabbitmq_into_sqlite_and_postgresql() {
    let _host = host_agents();
    let original =
        std::fs::read_to_string(shared().join("casestudies/casestudy_clientserver_monitor.aal"))
            .expect("the case study");
    assert!(original.contains("timeout: 60000"));
    let mut w = World::new().await;
    let hosts = [
        "--host",
        "clientnode=127.0.1.1",
        "--host",
        "servernode=127.0.1.2",
    ];
    w.start_node(
        "clientnode",
        &[&["--address", "127.0.1.1"][..], &hosts].concat(),
    );
    w.start_node(
        "servernode",
        &[&["--address", "127.0.1.2"][..], &hosts].concat(),
    );
    let aal = w.write(
        "casestudy_short.aal",
        &original.replace("timeout: 60000", "timeout: 4000"),
    );

    // Default store: data.sqlite in the run's record.
    let run = format!("cs-sqlite-{}", tag());
    let done = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run-sqlite")
        .finish(Duration::from_secs(90))
        .await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    assert!(
        done.stdout.contains("startCollection(None)"),
        "{}",
        done.stdout
    );
    let store = w
        .records()
        .join(&run)
        .join("data.sqlite")
        .to_string_lossy()
        .into_owned();
    check_traffic(&w, &store, &run);

    // PostgreSQL, in a table of this test's own.
    let base = std::env::var("MAGI_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let probe = Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", "select 1"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            !magi_testkit::services_required(),
            "PostgreSQL at {base} is not reachable: {probe:?}"
        );
        eprintln!("skipping the PostgreSQL variant: {base} is not reachable");
        w.finish().await;
        return;
    }
    let pg = PgTable {
        base: base.clone(),
        table: format!("magi_broker_test_{}", tag()),
    };
    let url = format!("{base}?table={}", pg.table);
    let run = format!("cs-pg-{}", tag());
    let done = Running::start(
        w.run_cmd(&aal, &run, &["--store", &url]),
        w.dir.path(),
        "run-pg",
    )
    .finish(Duration::from_secs(90))
    .await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    check_traffic(&w, &url, &run);
    assert!(
        !w.records().join(&run).join("data.sqlite").exists(),
        "records went to PostgreSQL, not SQLite"
    );
    drop(pg);
    w.finish().await;
}

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
async fn a_node_serves_only_the_users_its_policy_names_and_forged_triggers_end_no_run() {
    // Broker users: orchestrators alice and bob, nodes clientnode and servernode (each its
    // own user, as apply.sh makes them). The nodes allow alice only.
    let mut w = World::new().await;
    let id = tag();
    let (alice, bob) = (format!("alice{id}"), format!("bob{id}"));
    // Broker users are global: node names unique to this test.
    let (client, server) = (format!("clientnode{id}"), format!("servernode{id}"));
    let vhost =
        magi_testkit::Throwaway::new(&[&alice, &bob, &client, &server]).expect("vhost and users");
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

    // Alice's run, while servernode's user forges clientStopped for clientnode: the bus
    // drops it and says so; the run ends when its own client stops (6 s), with exit 0.
    let run = format!("{alice}.cs");
    let mut r = Running::start(
        w.run_cmd_at(&vhost.url(&alice), &aal, &run, &[]),
        w.dir.path(),
        "alice",
    );
    r.wait_for("startClient", Duration::from_secs(60)).await;
    let forger = magi_bus::amqp::AmqpBus::connect(
        &vhost.url(&server),
        magi_bus::amqp::BusOptions::with_prefix(&w.broker.prefix),
    )
    .await
    .expect("connect as servernode");
    let port = magi_bus::Bus::attach_node(&forger, &format!("spy{id}"))
        .await
        .expect("attach")
        .port;
    let forged = magi_proto::Trigger::from_node(&run, "clientStopped", &client, Default::default());
    port.send_trigger(forged)
        .await
        .expect("the broker routes it");
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
    magi_bus::Bus::close(&forger).await;
    w.finish().await; // the nodes stop while their vhost still exists
    drop(vhost);
}
