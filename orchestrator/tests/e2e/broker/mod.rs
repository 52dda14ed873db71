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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use magi_testkit::{ctl, BrokerGuard, TestBroker};

use crate::support::{magi_bin, node_bin, workspace};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// The kit
// ---------------------------------------------------------------------------------------

/// The heartbeat the tests' node agents use: the orchestrator declares a node lost after
/// max(3 heartbeats, 3 s) of silence, and its pre-flight waits for one heartbeat.
const HEARTBEAT_MS: u64 = 500;

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

mod casestudy;
mod faults;
mod runs;
mod trust;
