//! The standard library's agents (`agents/modules/`: runshell, runcmd, iperf, tcpdump,
//! nodeStats, hping) driven by the original modules' own procedures, unchanged, through the
//! real `magi run` on the embedded bus, with the real tools; and the data each leaves in
//! the run's store. The procedures are in `tests/fixtures/stdlib/` (see ORIGIN.md there).
//!
//! `tcpdump.aal` and `hping.aal` name a node outside their groups (`node2`, `servernode`),
//! which DETER's /etc/hosts resolved; their tests give `magi run` such an /etc/hosts in a
//! mount namespace of its own (root only), as a testbed would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::host_agents;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stdlib")
        .join(name)
}

/// `magi run` arguments for `procedure`, recording into `records/<run>`.
fn run_args(procedure: &Path, run: &str, records: &Path) -> Vec<String> {
    [
        "run",
        &procedure.to_string_lossy(),
        "--no-color",
        "--run",
        run,
        "--record-dir",
        &records.to_string_lossy(),
    ]
    .map(String::from)
    .to_vec()
}

fn magi_state() -> PathBuf {
    std::env::temp_dir().join("magi-test-state")
}

/// Runs a procedure on the embedded bus; returns the output and the run's record directory.
fn run(procedure: &Path, run: &str, records: &Path) -> (Output, PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(run_args(procedure, run, records))
        .env("MAGI_STATE_DIR", magi_state())
        .output()
        .expect("magi run");
    (out, records.join(run))
}

/// Like [`run`], with `names` resolving to a local address through an /etc/hosts bound in
/// a mount namespace of the run's own, and at a lower priority (`hping.aal` floods for a
/// minute, beside other tests). `None` when this machine cannot (not root, no `unshare`):
/// the caller skips.
fn run_with_hosts(
    procedure: &Path,
    run: &str,
    records: &Path,
    names: &[&str],
) -> Option<(Output, PathBuf)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let hosts = records.join("hosts");
    let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    text.push_str(&format!("\n127.0.1.250 {}\n", names.join(" ")));
    std::fs::write(&hosts, text).expect("write hosts");
    let script = r#"mount --bind "$0" /etc/hosts && exec nice -n 10 "$@""#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(&hosts)
        .arg(env!("CARGO_BIN_EXE_magi"))
        .args(run_args(procedure, run, records))
        .env("MAGI_STATE_DIR", magi_state())
        .output()
        .ok()?;
    Some((out, records.join(run)))
}

fn assert_exit(out: &Output, code: i32) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The run's records of `agent`, as `magi data query --json` prints them.
fn records(record: &Path, agent: &str) -> Vec<Value> {
    crate::support::data_query(
        crate::support::magi(),
        record.join("data.sqlite"),
        &["--agent", agent],
    )
}

#[test]
fn the_original_runshell_procedure_runs_unchanged_and_records_each_scripts_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let (out, record) = run(&fixture("runshell.aal"), "runshell", dir.path());
    let text = assert_exit(&out, 0);
    assert!(
        text.contains("trigger completed: execDoneAgainAndAgain"),
        "{text}"
    );
    let rows = records(&record, "script1");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows[..2] {
        assert_eq!(row["host"], "node1");
        assert_eq!(row["data"]["exitStatus"], 0);
        assert!(
            row["data"]["stdout"]
                .as_str()
                .unwrap()
                .starts_with("test.sh on "),
            "{row}"
        );
    }
    // After setConfiguration(path: .../iter.sh), the other script.
    assert_eq!(
        rows[2]["data"]["stdout"],
        "iteration 1\niteration 2\niteration 3\n"
    );
}

#[test]
fn the_original_iperf_procedure_runs_unchanged_and_records_client_and_server_reports() {
    // Floods, captures or measures loopback: alone, or the others' traffic is in it.
    let _host = host_agents();
    let dir = tempfile::tempdir().unwrap();
    let (out, record) = run(&fixture("iperf.aal"), "iperf", dir.path());
    let text = assert_exit(&out, 0);
    assert!(text.contains("trigger completed: serverStopped"), "{text}");
    let client = records(&record, "client_agent");
    let server = records(&record, "server_agent");
    assert_eq!(
        (client.len(), server.len()),
        (1, 1),
        "{client:?} {server:?}"
    );
    let (c, s) = (&client[0]["data"], &server[0]["data"]);
    assert_eq!(
        (c["role"].as_str(), s["role"].as_str()),
        (Some("client"), Some("server"))
    );
    assert_eq!(
        (c["port"].as_u64(), s["port"].as_u64()),
        (Some(38888), Some(38888))
    );
    // The procedure's default: 10 s at iperf's 1 Mbit/s, received on loopback (this test
    // runs beside hping.aal's flood, so at most 1 % may be lost).
    let bytes = c["bytes"].as_u64().unwrap();
    assert!(bytes > 1_000_000, "{c}");
    let (total, lost) = (s["total"].as_u64().unwrap(), s["lost"].as_u64().unwrap());
    assert!(total > 800 && lost * 100 <= total, "{s}");
    assert!(s["bytes"].as_u64().unwrap() <= bytes, "{s}");
}

#[test]
fn the_original_nodestats_procedure_samples_its_six_nodes_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (out, record) = run(&fixture("nodeStats.aal"), "nodestats", dir.path());
    let text = assert_exit(&out, 0);
    assert!(
        text.contains("startCollection(None) --> allnodes"),
        "{text}"
    );
    let rows = records(&record, "nodeStats");
    for node in ["chapel", "control", "feast", "mine", "moat", "witch"] {
        let of = |kind: &str| {
            rows.iter()
                .filter(|r| r["host"] == node && r["data"]["type"] == kind)
                .collect::<Vec<_>>()
        };
        let info = of("nodeinfo");
        assert_eq!(info.len(), 1, "{node}");
        assert_eq!(
            info[0]["data"]["experimentDescription"],
            "This is a test about nothing."
        );
        // 30 s at the procedure's interval of 5 s: a sample at 0, 5, ... 25 (and perhaps 30).
        let samples = of("node");
        assert!(
            (6..=7).contains(&samples.len()),
            "{node}: {}",
            samples.len()
        );
        for s in &samples {
            let cpu = s["data"]["cpu_usage"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&cpu), "{s}");
            assert!(s["data"]["load_average_1"].is_number(), "{s}");
        }
        assert_eq!(of("memory").len(), samples.len(), "{node}");
        assert!(of("memory")[0]["data"]["mem_total"].as_u64().unwrap() > 0);
        assert!(
            of("interface").iter().any(|r| r["data"]["name"] == "lo"),
            "{node}"
        );
        assert!(
            !of("process").is_empty(),
            "{node}: the node agent's processes"
        );
    }
}

#[test]
fn the_original_tcpdump_procedure_captures_to_a_file_of_the_run_and_records_it() {
    // Floods, captures or measures loopback: alone, or the others' traffic is in it.
    let _host = host_agents();
    let dir = tempfile::tempdir().unwrap();
    let Some((out, record)) =
        run_with_hosts(&fixture("tcpdump.aal"), "tcpdump", dir.path(), &["node2"])
    else {
        return magi_testkit::skip("tcpdump.aal", "needs root for its /etc/hosts naming node2");
    };
    let text = assert_exit(&out, 0);
    assert!(
        text.contains("trigger completed: collectionStopped"),
        "{text}"
    );
    let rows = records(&record, "tcpdump_agent");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let d = &rows[0]["data"];
    assert_eq!(
        (d["dest"].as_str(), d["interface"].as_str()),
        (Some("node2"), Some("lo"))
    );
    let file = Path::new(d["file"].as_str().unwrap());
    assert!(
        file.to_string_lossy().contains("/magi-tcpdump/tcpdump/"),
        "{d}"
    );
    // A pcap file: its magic number, and the size recorded.
    let bytes = std::fs::read(file).expect("the capture file");
    assert_eq!(d["bytes"].as_u64(), Some(bytes.len() as u64));
    assert!(
        bytes.starts_with(&[0xd4, 0xc3, 0xb2, 0xa1])
            || bytes.starts_with(&[0xa1, 0xb2, 0xc3, 0xd4]),
        "not a pcap file"
    );
    assert!(d["packets"].is_u64(), "{d}");
    // The capture was fetched into the run record: files/<node>/<agent>/<its name>.
    let host = rows[0]["host"].as_str().expect("host");
    let fetched = record
        .join("files")
        .join(host)
        .join("tcpdump_agent")
        .join(file.file_name().expect("a file name"));
    let got = std::fs::read(&fetched).unwrap_or_default();
    assert!(
        got == bytes,
        "{} holds {} of {} bytes\n{text}",
        fetched.display(),
        got.len(),
        bytes.len()
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn the_original_hping_procedure_floods_for_its_minute_and_records_the_statistics() {
    // Floods, captures or measures loopback: alone, or the others' traffic is in it.
    let _host = host_agents();
    let dir = tempfile::tempdir().unwrap();
    let Some((out, record)) =
        run_with_hosts(&fixture("hping.aal"), "hping", dir.path(), &["servernode"])
    else {
        return magi_testkit::skip(
            "hping.aal",
            "needs root for its /etc/hosts naming servernode",
        );
    };
    let text = assert_exit(&out, 0);
    assert!(text.contains("trigger completed: hpingStopped"), "{text}");
    let rows = records(&record, "client_agent");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let d = &rows[0]["data"];
    assert_eq!(d["dest"], "servernode");
    assert_eq!(d["address"], "127.0.1.250");
    assert_eq!(d["flood"], true);
    assert!(d["duration"].as_f64().unwrap() >= 59.0, "{d}");
    assert!(d["packetsSent"].as_u64().unwrap() > 1000, "a flood: {d}");
}

#[test]
fn the_original_runcmd_procedure_has_no_streamstarts_and_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (out, record) = run(&fixture("runcmd.aal"), "runcmd", dir.path());
    let text = assert_exit(&out, 2);
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("streamstarts"), "{all}");
    assert!(!record.join("data.sqlite").exists(), "nothing ran");
}

/// runcmd with a procedure of ours: a command whose words a shell would have taken apart
/// (`;`, `$HOME`) runs as written, without a shell, split into words as a shell would
/// (quotes); its status and output reach the `isDown` trigger (the waits match on them)
/// and the store; a second command fails with its own status.
#[test]
fn runcmd_runs_a_command_without_a_shell_and_reports_its_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let procedure = dir.path().join("runcmd_ours.aal");
    std::fs::write(
        &procedure,
        r#"
groups: {g: [node1]}
agents:
  cmd: {group: g, path: /share/magi/modules/runcmd/runcmd.tar.gz, execargs: {}}
streamstarts: [main]
eventstreams:
  main:
  - {type: event, agent: cmd, method: setConfiguration, trigger: configured,
     args: {cmdstring: "printf '%s|' a;b $HOME \"two words\""}}
  - {type: trigger, triggers: [{event: configured}]}
  - {type: event, agent: cmd, method: start, trigger: started, args: {}}
  - {type: trigger, triggers: [{event: started}]}
  - {type: event, agent: cmd, method: isDown, trigger: down, args: {}}
  - {type: trigger, triggers: [{event: down, exitStatus: 0, stdout: "a;b|$HOME|two words|"}]}
  - {type: event, agent: cmd, method: setConfiguration, trigger: configured2,
     args: {cmdstring: ls /magi-no-such-file}}
  - {type: trigger, triggers: [{event: configured2}]}
  - {type: event, agent: cmd, method: start, trigger: started2, args: {}}
  - {type: trigger, triggers: [{event: started2}]}
  - {type: event, agent: cmd, method: isDown, trigger: down2, args: {}}
  - {type: trigger, triggers: [{event: down2, exitStatus: 2, target: exit}, {timeout: 20000}]}
  - {type: event, agent: cmd, method: unreachable, args: {}}
"#,
    )
    .unwrap();
    let (out, record) = run(&procedure, "runcmd_ours", dir.path());
    let text = assert_exit(&out, 0);
    assert!(
        text.contains("jumped to target: exit"),
        "the wait on exitStatus 2 matched: {text}"
    );
    assert!(!text.contains("unreachable("), "{text}");
    let rows = records(&record, "cmd");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (first, second) = (&rows[0]["data"], &rows[1]["data"]);
    assert_eq!(first["stdout"], "a;b|$HOME|two words|");
    assert_eq!(first["command"], "printf '%s|' 'a;b' '$HOME' 'two words'");
    assert_eq!(second["exitStatus"], 2);
    assert!(
        second["stderr"]
            .as_str()
            .unwrap()
            .contains("magi-no-such-file"),
        "{second}"
    );
}
