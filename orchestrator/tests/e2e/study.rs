//! End-to-end: from one run to a study, with the real `magi` binary on the embedded bus
//! and the standard agents (the packet counter needs root for nftables; tests run as root
//! here): parameters, `sweep` (interrupted and resumed), `runs`, `replay`, `diff`,
//! `simulate` against real runs, and `export`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{host_agents, shared, text};
use serde_json::Value;

fn magi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_magi"));
    c.env_remove("NO_COLOR").env_remove("MAGI_RECORD_DIR").env(
        "MAGI_STATE_DIR",
        std::env::temp_dir().join("magi-test-state"),
    );
    c
}

fn study_procedure() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clientserver_study.aal")
}

const FIGURE: &str = "in_bps=rate(bytes) agent=monitor_agent trafficDirection=in intfName=total";

fn sweep_args(study: &Path) -> Vec<String> {
    vec![
        "sweep".into(),
        study_procedure().to_string_lossy().into_owned(),
        "--study".into(),
        study.to_string_lossy().into_owned(),
        "-D".into(),
        "duration=3000".into(),
        "--grid".into(),
        "interval=0.2,1".into(),
        "--replicates".into(),
        "3".into(),
        "--figure".into(),
        FIGURE.into(),
    ]
}

fn finished_records(study: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(study.join("runs")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("run.json")).ok())
        .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|v| v["outcome"].is_object())
        .collect()
}

#[test]
fn a_sweep_interrupted_after_two_cells_resumes_to_six_records_and_bytes_per_s_falls_as_the_interval_grows(
) {
    let _host = host_agents();
    let dir = tempfile::tempdir().expect("temp dir");
    let study = dir.path().join("study");
    let mut first = magi()
        .args(sweep_args(&study))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("magi sweep");
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished_records(&study).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "two cells did not finish in 2 min"
        );
        assert!(
            first.try_wait().expect("wait").is_none(),
            "the sweep ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: a signal to the child we started.
    unsafe { libc::kill(first.id() as libc::pid_t, libc::SIGTERM) };
    let status = first.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "an interrupted sweep exits 130");
    let after_interrupt = finished_records(&study);
    assert!(
        (2..6).contains(&after_interrupt.len()),
        "{} records after the interrupt",
        after_interrupt.len()
    );

    let out = magi().args(sweep_args(&study)).output().expect("resume");
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("done"), "{log}");
    let records = finished_records(&study);
    assert_eq!(records.len(), 6, "{log}");
    assert!(records.iter().all(|r| r["outcome"]["outcome"] == "success"));
    // The cells done before the interrupt were not run again.
    for r in after_interrupt
        .iter()
        .filter(|r| r["outcome"]["outcome"] == "success")
    {
        let again = records
            .iter()
            .find(|x| x["run"] == r["run"])
            .expect("still there");
        assert_eq!(again["started"], r["started"], "{} was run twice", r["run"]);
    }

    let table: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(study.join("cells.json")).expect("table"))
            .expect("json");
    assert_eq!(table.len(), 6);
    let mean = |interval: &str| {
        let v: Vec<f64> = table
            .iter()
            .filter(|r| r["parameters"]["interval"].to_string().trim_matches('"') == interval)
            .map(|r| {
                r["in_bps"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no in_bps in {r}"))
            })
            .collect();
        assert_eq!(v.len(), 3, "three replicates of interval {interval}");
        v.iter().sum::<f64>() / 3.0
    };
    let (fast, slow) = (mean("0.2"), mean("1"));
    assert!(fast > slow * 2.0, "bytes/s {fast} at 0.2 s, {slow} at 1 s");
    let csv = std::fs::read_to_string(study.join("cells.csv")).expect("csv");
    assert!(
        csv.starts_with(
            "cell,replicate,interval,duration,sizes,outcome,exit_code,duration_s,in_bps\n"
        ),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 7);
    let png = std::fs::metadata(study.join("in_bps-vs-interval.png")).expect("plot");
    assert!(png.len() > 1000);

    // The study lists, replays and exports.
    let out = magi()
        .args(["runs", "--record-dir"])
        .arg(&study)
        .args(["--param", "interval=0.2"])
        .output()
        .expect("runs");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(listing
        .lines()
        .skip(1)
        .all(|l| l.contains("interval=0.2") && l.contains("success")));

    let cell = records[0]["run"].as_str().expect("name");
    let logged =
        std::fs::read_to_string(study.join("logs").join(format!("{cell}.log"))).expect("log");
    let shown: Vec<&str> = logged
        .lines()
        .filter(|l| l.starts_with("stream "))
        .collect();
    let out = magi()
        .args(["replay", "--fast", "--no-color", "--record-dir"])
        .arg(study.join("runs"))
        .arg(cell)
        .output()
        .expect("replay");
    let replayed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        replayed.lines().collect::<Vec<_>>(),
        shown,
        "replay differs from the console"
    );
    // At 20 times the run's pace, a run of about 3 s takes about 0.15 s to replay.
    let started = Instant::now();
    let out = magi()
        .args(["replay", "--speed", "20", "--no-color", "--record-dir"])
        .arg(study.join("runs"))
        .arg(cell)
        .output()
        .expect("replay");
    let took = started.elapsed();
    assert_eq!(String::from_utf8_lossy(&out.stdout), replayed);
    assert!(
        took >= Duration::from_millis(120),
        "replayed at its pace / 20 in {took:?}"
    );

    let archive = dir.path().join("study.tar.gz");
    let out = magi()
        .arg("export")
        .arg(&study)
        .arg("-o")
        .arg(&archive)
        .output()
        .expect("export");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&archive)
        .output()
        .expect("tar");
    let names = String::from_utf8_lossy(&listing.stdout);
    for part in [
        "study/ro-crate-metadata.json",
        "study/cells.csv",
        "study/in_bps-vs-interval.png",
        "study/procedure/00-clientserver_study.aal",
        "study/nodes.json",
        "study/parameters.json",
        &format!("study/runs/{cell}/data.sqlite"),
    ] {
        assert!(
            names.lines().any(|l| l == part),
            "{part} not in the archive:\n{names}"
        );
    }
    let crate_text = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .args(["-O", "study/ro-crate-metadata.json"])
        .output()
        .expect("tar");
    let meta: Value = serde_json::from_slice(&crate_text.stdout).expect("RO-Crate is JSON");
    let graph = meta["@graph"].as_array().expect("@graph");
    assert_eq!(graph[0]["@id"], "ro-crate-metadata.json");
    assert_eq!(
        graph
            .iter()
            .filter(|e| e["@type"] == "CreateAction")
            .count(),
        6
    );
}

/// Runs the study procedure once with these parameters; returns its record directory.
fn run_once(records: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let _host = host_agents();
    let mut cmd = magi();
    cmd.arg("run").arg(study_procedure());
    for d in defines {
        cmd.args(["-D", d]);
    }
    let out = cmd
        .args(["--no-color", "--run", name, "--record-dir"])
        .arg(records)
        .output()
        .expect("magi run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    records.join(name)
}

#[test]
fn diff_of_two_runs_with_different_parameters_names_exactly_those_parameters_and_the_changed_steps()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let a = run_once(dir.path(), "short", &["duration=1000"]);
    let b = run_once(dir.path(), "long", &["duration=3000", "sizes=1000"]);
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(run["parameters"]["duration"], 3000);
    assert_eq!(run["parameters"]["sizes"], "1000");

    let out = magi()
        .args(["diff", "--json"])
        .arg(&a)
        .arg(&b)
        .output()
        .expect("diff");
    assert_eq!(
        out.status.code(),
        Some(1),
        "runs that differ: exit 1\n{}",
        text(&out)
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("json");
    let params: Vec<&str> = d["parameters"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["what"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(params, ["duration", "sizes"]);
    assert!(d["procedure"].is_null(), "same procedure text");
    let steps = d["steps"].as_array().expect("steps");
    let timeout = steps
        .iter()
        .find(|s| s["stream"] == "clientstream" && s["tag"] == "trig")
        .expect("the client's timeout step is named");
    let longer =
        timeout["secs_b"].as_f64().unwrap_or(0.0) - timeout["secs_a"].as_f64().unwrap_or(0.0);
    assert!((1.5..2.5).contains(&longer), "{longer}");
    for s in steps {
        let stream = s["stream"].as_str().unwrap_or("");
        assert!(
            ["clientstream", "serverstream", "monitorstream"].contains(&stream),
            "only the streams that wait for the client changed: {s}"
        );
    }

    let out = magi()
        .args(["diff"])
        .arg(&a)
        .arg(&a)
        .output()
        .expect("diff");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a run does not differ from itself\n{}",
        text(&out)
    );
}

#[test]
fn check_rejects_an_unknown_or_ill_typed_parameter_at_its_line() {
    let out = magi()
        .arg("check")
        .arg(study_procedure())
        .args(["-D", "intervl=2"])
        .output()
        .expect("check");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("no parameter `intervl`; did you mean `interval`?"),
        "{t}"
    );
    assert!(t.contains("clientserver_study.aal:4:1"), "{t}");
    let out = magi()
        .arg("check")
        .arg(study_procedure())
        .args(["-D", "duration=soon"])
        .output()
        .expect("check");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("`duration` is a number"), "{t}");
    let out = magi()
        .arg("check")
        .arg(study_procedure())
        .args(["-D", "duration=1500"])
        .output()
        .expect("check");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("duration = 1500 (set by -D)") && t.contains("interval = 1 (default)"),
        "{t}"
    );
}

/// The simulated and the real duration of a procedure's run.
fn simulated_and_real(aal: &Path, records: &Path, name: &str) -> (f64, f64) {
    let _host = host_agents();
    let out = magi()
        .args(["simulate", "--json"])
        .arg(aal)
        .output()
        .expect("simulate");
    let sim: Value = serde_json::from_slice(&out.stdout).expect("json");
    let simulated = sim["duration_ms"].as_f64().expect("duration") / 1000.0;
    let out = magi()
        .arg("run")
        .arg(aal)
        .args(["--no-color", "--run", name, "--record-dir"])
        .arg(records)
        .output()
        .expect("magi run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run: Value = serde_json::from_str(
        &std::fs::read_to_string(records.join(name).join("run.json")).expect("run.json"),
    )
    .expect("json");
    let real = run["ended"].as_f64().unwrap_or(0.0) - run["started"].as_f64().unwrap_or(0.0);
    (simulated, real)
}

#[test]
fn simulate_predicts_a_shortened_case_study_within_5_percent_of_the_real_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original =
        std::fs::read_to_string(shared().join("casestudies/casestudy_clientserver_monitor.aal"))
            .expect("the case study");
    let aal = dir.path().join("short.aal");
    std::fs::write(&aal, original.replace("timeout: 60000", "timeout: 8000")).expect("write");
    let (simulated, real) = simulated_and_real(&aal, &dir.path().join("runs"), "short");
    assert!(
        (simulated - real).abs() <= 0.05 * real,
        "simulated {simulated} s, real {real} s"
    );
}

/// Every case study for real (about 9 minutes): `cargo test --test study -- --ignored`.
#[test]
#[ignore]
fn simulate_predicts_every_case_study_within_5_percent_of_the_real_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut checked = 0;
    for entry in std::fs::read_dir(shared().join("casestudies"))
        .expect("case studies")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "aal") {
            continue;
        }
        let valid = magi().arg("check").arg(&path).output().expect("check");
        if valid.status.code() != Some(0) {
            continue; // the seed document's procedure is invalid on purpose
        }
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (simulated, real) = simulated_and_real(&path, &dir.path().join("runs"), &name);
        eprintln!("{name}: simulated {simulated:.3} s, real {real:.3} s");
        assert!(
            (simulated - real).abs() <= 0.05 * real,
            "{name}: simulated {simulated} s, real {real} s"
        );
        checked += 1;
    }
    assert!(checked >= 5, "{checked} case studies");
}

#[test]
fn simulate_names_the_unreachable_waits_and_the_stream_that_never_runs() {
    let aal = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unreachable_waits.aal");
    let out = magi()
        .args(["simulate", "--no-timeline"])
        .arg(&aal)
        .output()
        .expect("simulate");
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run that never ends exits 1\n{t}"
    );
    assert!(t.contains("the run never ends"), "{t}");
    assert!(
        t.contains("wait never completes: stream serverstream at")
            && t.contains("nothing in the procedure emits `ClientStopped`"),
        "{t}"
    );
    assert!(
        t.contains("wait never completes: stream cleanupstream at")
            && t.contains("which never ran"),
        "{t}"
    );
    assert!(t.contains("stream never runs: monitorstream"), "{t}");
    assert!(
        !t.contains("stream clientstream at"),
        "the client's stream completes\n{t}"
    );
}

#[test]
fn a_failed_cell_is_recorded_and_the_study_goes_on_unless_fail_fast() {
    let _host = host_agents();
    let dir = tempfile::tempdir().expect("temp dir");
    let sweep = |study: &Path, extra: &[&str]| {
        magi()
            .arg("sweep")
            .arg(study_procedure())
            .arg("--study")
            .arg(study)
            .args(["-D", "duration=500", "--grid", "sizes=nonsense(,1000"])
            .args(extra)
            .output()
            .expect("magi sweep")
    };
    let study = dir.path().join("goes-on");
    let out = sweep(&study, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let table: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(study.join("cells.json")).expect("table"))
            .expect("json");
    let outcomes: Vec<&str> = table
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["failed", "success"]);

    let study = dir.path().join("stops");
    let out = sweep(&study, &["--fail-fast"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        finished_records(&study).len(),
        1,
        "--fail-fast stops after the failed cell"
    );
    let csv = std::fs::read_to_string(study.join("cells.csv")).expect("csv");
    assert!(csv.contains(",not run,"), "{csv}");
}
