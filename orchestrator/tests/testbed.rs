//! The testbed for real: the shared `.tcl` topologies built as network namespaces by the
//! real `magi testbed`, checked from inside (addresses, routes, a ping across the router,
//! the shaped rate of a TCP transfer, loss), brought down (also after kill -9), and the
//! case study run across the two-node topology on the embedded bus.
//!
//! Needs root. Every test holds one lock (namespace tests run one at a time) and uses a
//! testbed name made unique by this process's id; addresses come from 198.18.0.0/15 and no
//! route leads out of the lab.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use magi_testbed::Lab;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    assert!(
        magi_testbed::system::is_root(),
        "the testbed tests need root (network namespaces)"
    );
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn shared(file: &str) -> PathBuf {
    std::env::var_os("MAGI_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("casestudies")
        .join(file)
}

fn magi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(args)
        .output()
        .expect("magi runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A testbed brought up by `magi testbed up`, brought down when dropped (also on panic).
struct Bed {
    name: String,
    lab: Lab,
}

impl Bed {
    fn up(topology: &Path, tag: &str) -> Bed {
        let name = format!("t{}-{tag}", std::process::id());
        let out = magi(&[
            "testbed",
            "up",
            &topology.to_string_lossy(),
            "--name",
            &name,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let lab = Lab::load(&name).expect("state file");
        Bed { name, lab }
    }

    fn ns(&self, node: &str) -> String {
        format!("{}.{node}", self.name)
    }

    fn address(&self, node: &str) -> String {
        let i = self.lab.topology.node_index(node).expect("node");
        self.lab.address(i).expect("address").to_string()
    }

    fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = magi_testbed::down(&self.name);
    }
}

/// What is left of testbed `name`: namespaces, /etc/netns entries, its state file.
fn leftovers(name: &str) -> Vec<String> {
    let prefix = format!("{name}.");
    let mut left = Vec::new();
    for dir in [
        magi_testbed::system::NETNS_DIR,
        magi_testbed::lab::NETNS_ETC,
    ] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            left.extend(
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .map(|n| format!("{dir}/{n}")),
            );
        }
    }
    if Lab::state_path(name).exists() {
        left.push(Lab::state_path(name).display().to_string());
    }
    left
}

const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001))
s.listen(1)
print("ready", flush=True)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(20)
total, start, mark = 0, None, None
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    now = time.monotonic()
    start = start or now
    if mark is None and now - start >= 1.0:
        mark = (now, total)
    total += len(d)
end = time.monotonic()
print((total - mark[1]) * 8 / (end - mark[0]))
"#;

const SENDER: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 5001), timeout=10)
buf = b"x" * 65536
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.sendall(buf)
s.close()
"#;

/// The goodput of a TCP transfer of `seconds` from `from` to `to`, bits per second,
/// measured by the receiver after its first second.
fn tcp_rate(bed: &Bed, from: &str, to: &str, seconds: f64) -> f64 {
    let to_address = bed.address(to);
    let mut receiver = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.ns(to),
            "python3",
            "-c",
            RECEIVER,
            &to_address,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("receiver");
    let mut lines = BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("ready"));
    let sent = bed.exec(from, &["python3", "-c", SENDER, to, &seconds.to_string()]);
    assert!(sent.status.success(), "sender: {}", text(&sent));
    let rate = lines
        .next()
        .and_then(|l| l.ok())
        .expect("the receiver's figure");
    let _ = receiver.wait();
    rate.trim().parse().expect("a number")
}

fn assert_within_10_percent(measured: f64, configured: f64) {
    let ratio = measured / configured;
    eprintln!(
        "shaped rate: measured {:.2} Mb/s of {:.0} Mb/s ({:.1} %)",
        measured / 1e6,
        configured / 1e6,
        ratio * 100.0
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "measured {:.2} Mb/s for a {:.2} Mb/s link ({:.1} %)",
        measured / 1e6,
        configured / 1e6,
        ratio * 100.0
    );
}

#[test]
fn the_two_node_topology_is_a_100_mb_link_that_carries_100_mb() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "cs");
    let addr = bed.exec(
        "clientnode",
        &["ip", "-o", "-4", "addr", "show", "dev", "eth0"],
    );
    assert!(
        text(&addr).contains("inet 198.18.0.1/30"),
        "{}",
        text(&addr)
    );
    let hosts = std::fs::read_to_string(format!("/etc/netns/{}/hosts", bed.ns("clientnode")))
        .expect("hosts file");
    assert!(hosts.contains("198.18.0.2\tservernode\n"), "{hosts}");
    // Names resolve through the namespace's hosts file.
    let ping = bed.exec("clientnode", &["ping", "-c", "1", "-W", "2", "servernode"]);
    assert!(ping.status.success(), "{}", text(&ping));
    // Nothing leads out of the lab (asked of the routing table: no packet is sent).
    let out = bed.exec("clientnode", &["ip", "route", "get", "192.0.2.1"]);
    assert!(!out.status.success(), "a route out: {}", text(&out));
    assert_within_10_percent(tcp_rate(&bed, "clientnode", "servernode", 4.0), 100e6);
}

#[test]
fn the_55_node_topology_routes_clients_through_the_router_at_10_mb() {
    let _serial = serial();
    let bed = Bed::up(&shared("cs55_topology.tcl"), "cs55");
    assert_eq!(
        bed.lab.namespaces().len(),
        57,
        "56 nodes and the LANs' namespace"
    );
    let routes = bed.exec("clientnode-17", &["ip", "-4", "route"]);
    let router_on_c = bed.address("router");
    assert!(
        text(&routes).contains(&format!("198.18.0.64/29 via {router_on_c} dev eth0")),
        "{}",
        text(&routes)
    );
    let forwarding = bed.exec("router", &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(text(&forwarding).trim(), "1");
    let ping = bed.exec(
        "clientnode-17",
        &["ping", "-c", "1", "-W", "2", "servernode-3"],
    );
    assert!(ping.status.success(), "across the router: {}", text(&ping));
    // Bridges live in the LANs' own namespace, not on the host.
    let bridges = Command::new("ip")
        .args([
            "-n",
            &format!("{}._lan", bed.name),
            "-o",
            "link",
            "show",
            "type",
            "bridge",
        ])
        .output()
        .expect("ip");
    assert_eq!(text(&bridges).lines().count(), 2, "{}", text(&bridges));
    assert_within_10_percent(tcp_rate(&bed, "clientnode-1", "servernode-1", 4.0), 10e6);
}

#[test]
fn the_feedback_topology_reaches_from_leaf_to_leaf_across_both_routers() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_feedback.tcl"), "fb");
    let ping = bed.exec("uc-49", &["ping", "-c", "1", "-W", "2", "s-9"]);
    assert!(ping.status.success(), "{}", text(&ping));
    let status = magi(&["testbed", "status", &bed.name]);
    assert!(
        text(&status).contains("63 nodes, 62 links, 0 LANs, 63/63 namespaces"),
        "{}",
        text(&status)
    );
}

#[test]
fn loss_drops_packets_at_random_and_delay_is_refused_without_netem() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let lossy = dir.path().join("lossy.yaml");
    std::fs::write(
        &lossy,
        "nodes: [a, b]\nlinks:\n  - {name: l, nodes: [a, b], bandwidth: 10Mb, loss: 0.2}\n",
    )
    .expect("write");
    let bed = Bed::up(&lossy, "loss");
    let ping = bed.exec(
        "a",
        &["ping", "-q", "-c", "200", "-i", "0.005", "-W", "1", "b"],
    );
    let summary = text(&ping);
    let received: f64 = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    // 20 % each way: about 64 % of the pings come back.
    assert!((0.48..=0.80).contains(&(received / 200.0)), "{summary}");
    drop(bed);

    let delayed = dir.path().join("delayed.tcl");
    std::fs::write(
        &delayed,
        "set ns [new Simulator]\nsource tb_compat.tcl\nset a [$ns node]\nset b [$ns node]\n\
         set l [$ns duplex-link $a $b 10Mb 10ms DropTail]\n",
    )
    .expect("write");
    let name = format!("t{}-delay", std::process::id());
    let out = magi(&["testbed", "up", &delayed.to_string_lossy(), "--name", &name]);
    if !magi_testbed::up::netem_available() {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("sch_netem"), "{}", text(&out));
        assert!(
            text(&out).contains("delayed.tcl:5: link `l`"),
            "{}",
            text(&out)
        );
        assert!(leftovers(&name).is_empty());
    } else {
        let _ = magi_testbed::down(&name);
    }
}

#[test]
fn down_leaves_nothing_after_the_builder_is_killed_half_way() {
    let _serial = serial();
    let name = format!("t{}-kill", std::process::id());
    let mut up = Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(["testbed", "up"])
        .arg(shared("cs55_topology.tcl"))
        .args(["--name", &name])
        .stdout(Stdio::null())
        .spawn()
        .expect("magi testbed up");
    // Kill it once some namespaces exist (or when it is done, on a fast machine).
    let started = Instant::now();
    while leftovers(&name).len() < 3 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = up.kill();
    let _ = up.wait();
    assert!(
        !leftovers(&name).is_empty(),
        "the builder had made something"
    );
    let down = magi(&["testbed", "down", &name]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    let again = magi(&["testbed", "down", &name]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("no testbed named"),
        "{}",
        text(&again)
    );
}

#[test]
fn testbed_commands_say_plainly_that_they_need_root() {
    let _serial = serial();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_magi"))
        .args(["testbed", "down", "whatever"])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("needs root"), "{}", text(&out));
}

fn short_case_study(dir: &Path) -> PathBuf {
    let original = std::fs::read_to_string(shared("casestudy_clientserver_monitor.aal"))
        .expect("the case study");
    assert!(original.contains("timeout: 60000"));
    let aal = dir.join("casestudy_short.aal");
    std::fs::write(&aal, original.replace("timeout: 60000", "timeout: 6000")).expect("write");
    aal
}

#[test]
fn the_case_study_runs_across_the_two_node_testbed_and_counts_its_link() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "run");
    let dir = tempfile::tempdir().expect("temp dir");
    let aal = short_case_study(dir.path());
    let records = dir.path().join("runs");
    let out = Command::new(env!("CARGO_BIN_EXE_magi"))
        .arg("run")
        .arg(&aal)
        .args([
            "--no-color",
            "--run",
            "cs",
            "--testbed",
            &bed.name,
            "--record-dir",
        ])
        .arg(&records)
        .env(
            "MAGI_STATE_DIR",
            std::env::temp_dir().join("magi-test-state"),
        )
        .output()
        .expect("magi run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The server's counter saw the client by its experiment address on eth0, the
    // namespace's interface; the client fetched from servernode's experiment address.
    let run = records.join("cs");
    let counted = magi(&[
        "data",
        "query",
        &run.to_string_lossy(),
        "--agent",
        "monitor_agent",
        "--json",
        "--where",
        "peerNode=clientnode",
        "--where",
        "trafficDirection=in",
    ]);
    let bytes: u64 = String::from_utf8_lossy(&counted.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .inspect(|r| assert_eq!(r["data"]["intfName"], "eth0", "{r}"))
        .filter_map(|r| r["data"]["bytes"].as_u64())
        .sum();
    assert!(bytes > 0, "no traffic counted: {}", text(&counted));
    let logs = std::fs::read_dir(run.join("logs")).expect("logs").count();
    assert!(logs > 0);
}

#[test]
fn a_run_killed_mid_way_leaves_agents_that_down_removes_with_the_namespaces() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "k9");
    let dir = tempfile::tempdir().expect("temp dir");
    let aal = short_case_study(dir.path());
    let mut run = Command::new(env!("CARGO_BIN_EXE_magi"))
        .arg("run")
        .arg(&aal)
        .args([
            "--no-color",
            "--run",
            "k9",
            "--testbed",
            &bed.name,
            "--record-dir",
        ])
        .arg(dir.path().join("runs"))
        .env(
            "MAGI_STATE_DIR",
            std::env::temp_dir().join("magi-test-state"),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("magi run");
    // Once the client is sending, kill the orchestrator: its agents stay in the namespaces.
    let mut lines = BufReader::new(run.stdout.take().expect("stdout")).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("startClient"));
    assert!(started, "the run never started its client");
    let _ = run.kill();
    let _ = run.wait();
    // Whatever the agents do about their orphaning, a process left in a namespace is
    // killed by `down`: one is planted here.
    let mut planted = Command::new("ip")
        .args(["netns", "exec", &bed.ns("servernode"), "sleep", "600"])
        .spawn()
        .expect("sleep");
    let in_namespace = || {
        let pids = Command::new("ip")
            .args(["netns", "pids", &bed.ns("servernode")])
            .output()
            .expect("ip netns pids");
        !pids.stdout.is_empty()
    };
    let started = Instant::now();
    while !in_namespace() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let down = magi(&["testbed", "down", &bed.name]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert!(
        planted.wait().is_ok_and(|s| !s.success()),
        "the planted process was killed"
    );
    assert!(
        !text(&down).contains(" 0 processes killed"),
        "{}",
        text(&down)
    );
    assert_eq!(leftovers(&bed.name), Vec::<String>::new());
}

#[test]
fn a_run_on_a_testbed_that_lacks_the_procedures_nodes_is_refused_by_name() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "lack");
    let dir = tempfile::tempdir().expect("temp dir");
    let records = dir.path().join("runs");
    let out = magi(&[
        "run",
        &shared("casestudy_clientserver55.aal").to_string_lossy(),
        "--no-color",
        "--testbed",
        &bed.name,
        "--record-dir",
        &records.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("clientnode-1, clientnode-2"),
        "{}",
        text(&out)
    );
    let out = magi(&[
        "run",
        &shared("casestudy_clientserver.aal").to_string_lossy(),
        "--testbed",
        "nosuchbed",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no testbed named `nosuchbed`"),
        "{}",
        text(&out)
    );
}

#[test]
fn what_the_receiving_counter_records_is_limited_to_the_links_rate() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = dir.path().join("slow.yaml");
    std::fs::write(
        &topology,
        "nodes: [clientnode, servernode]\nlinks:\n  - {name: link, nodes: [clientnode, servernode], bandwidth: 1Mb}\n",
    )
    .expect("write");
    let bed = Bed::up(&topology, "slow");
    // The case study with a client asking for 2 Mb/s (250 kB a second) over a 1 Mb/s link,
    // counted where the traffic arrives.
    let original = std::fs::read_to_string(shared("casestudy_clientserver_monitor.aal"))
        .expect("the case study");
    let greedy = original
        .replace("timeout: 60000", "timeout: 6000")
        .replace("minmax(1000,10000)", "250000")
        .replace("monitor_group: [servernode]", "monitor_group: [clientnode]");
    assert!(greedy.contains("sizes: '250000'") && greedy.contains("[clientnode]\n"));
    let aal = dir.path().join("greedy.aal");
    std::fs::write(&aal, greedy).expect("write");
    let records = dir.path().join("runs");
    let out = magi(&[
        "run",
        &aal.to_string_lossy(),
        "--no-color",
        "--run",
        "greedy",
        "--testbed",
        &bed.name,
        "--record-dir",
        &records.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let counted = magi(&[
        "data",
        "query",
        &records.join("greedy").to_string_lossy(),
        "--agent",
        "monitor_agent",
        "--json",
        "--where",
        "peerNode=servernode",
        "--where",
        "trafficDirection=in",
    ]);
    // (time of the reading, bytes since the previous reading), in time order.
    let mut readings: Vec<(f64, f64)> = String::from_utf8_lossy(&counted.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| Some((r["created"].as_f64()?, r["data"]["bytes"].as_f64()?)))
        .collect();
    readings.sort_by(|a, b| a.0.total_cmp(&b.0));
    eprintln!("readings over a 1 Mb/s link (time, bytes): {readings:?}");
    // From the first reading that saw traffic to the last: the bytes of the readings after
    // it over the time between (the intervals themselves wander with the machine's load).
    let first = readings
        .iter()
        .position(|r| r.1 > 0.0)
        .expect("traffic counted");
    let window = &readings[first..];
    assert!(window.len() >= 3, "{readings:?}");
    let bytes: f64 = window[1..].iter().map(|r| r.1).sum();
    let rate = bytes / (window[window.len() - 1].0 - window[0].0);
    let link = 1e6 / 8.0;
    assert!(rate <= link * 1.05, "{rate} B/s over a {link} B/s link");
    assert!(rate >= link * 0.7, "the link was not saturated: {rate} B/s");
}
