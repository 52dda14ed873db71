//! Procedures across a testbed with `magi run --testbed`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

/// The shared procedure `file` with only its 60 s of traffic shortened to `ms`.
fn shortened(dir: &Path, file: &str, ms: u32) -> PathBuf {
    let original = std::fs::read_to_string(shared(file)).expect("the case study");
    assert!(original.contains("timeout: 60000"));
    let aal = dir.join(file);
    let short = original.replace("timeout: 60000", &format!("timeout: {ms}"));
    std::fs::write(&aal, short).expect("write");
    aal
}

pub fn short_case_study(dir: &Path) -> PathBuf {
    shortened(dir, "casestudy_clientserver_monitor.aal", 6000)
}

#[test]
fn the_55_node_procedure_runs_unchanged_across_the_55_node_topology() {
    let _serial = serial();
    let bed = Bed::up(&shared("cs55_topology.tcl"), "run55");
    let dir = tempfile::tempdir().expect("temp dir");
    let aal = shortened(dir.path(), "casestudy_clientserver55.aal", 7000);
    let records = dir.path().join("runs");
    let out = magi(&[
        "run",
        &aal.to_string_lossy(),
        "--no-color",
        "--run",
        "cs55",
        "--testbed",
        &bed.name,
        "--record-dir",
        &records.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Every client's fetch crossed the router from one LAN to the other.
    let fetched = magi(&[
        "data",
        "query",
        &records.join("cs55").to_string_lossy(),
        "--agent",
        "client_agent",
        "--json",
    ]);
    let fetches: Vec<serde_json::Value> = String::from_utf8_lossy(&fetched.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let clients: std::collections::BTreeSet<&str> =
        fetches.iter().filter_map(|r| r["host"].as_str()).collect();
    assert!(clients.len() >= 40, "{} clients fetched", clients.len());
    assert!(
        fetches.iter().all(|r| r["data"]["http_code"] == 200),
        "{}",
        String::from_utf8_lossy(&fetched.stdout)
    );
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
    assert!(counted_in(&run, "clientnode") > 0, "no traffic counted");
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
