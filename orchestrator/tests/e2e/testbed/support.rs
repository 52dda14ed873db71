//! What the testbed tests share: the one lock, the real `magi`, a testbed that brings
//! itself down, what is left of one, and a measured TCP transfer.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use magi_testbed::Lab;

static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    assert!(
        magi_testbed::system::is_root(),
        "the testbed tests need root (network namespaces)"
    );
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn shared(file: &str) -> PathBuf {
    std::env::var_os("MAGI_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("casestudies")
        .join(file)
}

pub fn magi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(args)
        .output()
        .expect("magi runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A testbed brought up by `magi testbed up`, brought down when dropped (also on panic).
pub struct Bed {
    pub name: String,
    pub lab: Lab,
}

impl Bed {
    pub fn up(topology: &Path, tag: &str) -> Bed {
        Bed::up_with(topology, tag, &[])
    }

    /// `magi testbed up` with more options (`--control`).
    pub fn up_with(topology: &Path, tag: &str, options: &[&str]) -> Bed {
        let name = format!("t{}-{tag}", std::process::id());
        let topology = topology.to_string_lossy();
        let mut args = vec!["testbed", "up", &topology, "--name", &name];
        args.extend(options);
        let out = magi(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let lab = Lab::load(&name).expect("state file");
        Bed { name, lab }
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}.{node}", self.name)
    }

    pub fn address(&self, node: &str) -> String {
        let i = self.lab.topology.node_index(node).expect("node");
        self.lab.address(i).expect("address").to_string()
    }

    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
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

/// The bytes a run's `monitor_agent` counted from `peer` into its node, checking each
/// record was counted on `eth0` (the namespace's interface, not the host's).
pub fn counted_in(run: &Path, peer: &str) -> u64 {
    let counted = magi(&[
        "data",
        "query",
        &run.to_string_lossy(),
        "--agent",
        "monitor_agent",
        "--json",
        "--where",
        &format!("peerNode={peer}"),
        "--where",
        "trafficDirection=in",
    ]);
    String::from_utf8_lossy(&counted.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .inspect(|r| assert_eq!(r["data"]["intfName"], "eth0", "{r}"))
        .filter_map(|r| r["data"]["bytes"].as_u64())
        .sum()
}

/// What is left of testbed `name`: namespaces, /etc/netns entries, its state file.
pub fn leftovers(name: &str) -> Vec<String> {
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

/// Asserts that the link from `from` to `to` carries `configured` bits per second, within
/// 10 %. A link's capacity is the best it carries: a transfer that a loaded machine starves
/// of CPU (other tests run beside this one on two cores) says less about the shaping than
/// one that is not starved, so up to three transfers are measured and the best one counts.
/// The upper bound still fails at once: no amount of load makes a link carry more.
pub fn assert_link_carries(bed: &Bed, from: &str, to: &str, configured: f64) {
    let mut best: f64 = 0.0;
    for attempt in 1..=3 {
        let measured = tcp_rate(bed, from, to, 4.0);
        eprintln!(
            "shaped rate, transfer {attempt}: measured {:.2} Mb/s of {:.0} Mb/s ({:.1} %)",
            measured / 1e6,
            configured / 1e6,
            measured / configured * 100.0
        );
        best = best.max(measured);
        if best / configured >= 0.9 {
            break;
        }
    }
    let ratio = best / configured;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "measured at best {:.2} Mb/s for a {:.2} Mb/s link ({:.1} %)",
        best / 1e6,
        configured / 1e6,
        ratio * 100.0
    );
}
