//! End-to-end: the real `magi run` binary on the embedded bus, with the Python test agent
//! (and, for the case study, the standard agents) as real processes.

use crate::support::fixtures;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn magi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_magi"));
    c.env_remove("NO_COLOR").env(
        "MAGI_STATE_DIR",
        std::env::temp_dir().join("magi-test-state"),
    );
    c
}

/// Writes a procedure next to the fixtures (so relative agent paths resolve) and runs it.
fn run_procedure(name: &str, text: &str, extra: &[&str]) -> (Output, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let path = fixtures().join(format!("{name}.generated.aal"));
    std::fs::write(&path, text).expect("write procedure");
    let out = magi()
        .arg("run")
        .arg(&path)
        .args(["--no-color", "--run", name, "--record-dir"])
        .arg(&dir)
        .args(extra)
        .output()
        .expect("run magi");
    let _ = std::fs::remove_file(&path);
    (out, dir.join(name))
}

fn three_streams() -> String {
    // Agent paths relative to the fixture file's directory.
    std::fs::read_to_string(fixtures().join("three_streams.aal"))
        .expect("fixture")
        .replace(
            "../../../node-agent/testagent",
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../node-agent/testagent")
                .to_string_lossy(),
        )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// (stream, tag) of each console line, checking the original's layout on the way.
fn stream_tags(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            // stream <name:14> : <tag> : (HH:MM:SS) <text>
            assert!(l.starts_with("stream "), "not a console line: {l:?}");
            let name = &l[7..21];
            let rest = &l[21..];
            let parts: Vec<&str> = rest.splitn(4, " : ").collect();
            assert_eq!(parts[0], "", "name column is 14 wide: {l:?}");
            let tag = parts[1];
            assert!(
                ["sent", "trig", "DONE", "jump", "exit", "warn", "wait"].contains(&tag),
                "{l:?}"
            );
            let time = &parts[2][..10];
            assert!(
                time.starts_with('(')
                    && time.ends_with(')')
                    && time.as_bytes()[3] == b':'
                    && time.as_bytes()[6] == b':',
                "{l:?}"
            );
            (name.trim_end().to_string(), tag.to_string())
        })
        .collect()
}

#[test]
fn a_three_stream_procedure_shaped_like_the_case_study_exits_0_with_the_original_console() {
    let (out, record) = run_procedure("three_ok", &three_streams(), &[]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags = stream_tags(&text);
    let expect: Vec<(&str, &str)> = vec![
        ("initialization", "sent"),
        ("initialization", "sent"),
        ("initialization", "trig"),
        ("initialization", "trig"),
        ("initialization", "sent"),
        ("initialization", "sent"),
        ("initialization", "trig"),
        ("initialization", "trig"),
        ("initialization", "DONE"),
        ("serverstream", "sent"),
        ("clientstream", "trig"),
        ("clientstream", "sent"),
        ("clientstream", "trig"),
        ("clientstream", "sent"),
        ("clientstream", "DONE"),
        ("serverstream", "trig"),
        ("serverstream", "sent"),
        ("serverstream", "DONE"),
        ("cleanupstream", "trig"),
        ("cleanupstream", "jump"),
        ("exit", "sent"),
        ("exit", "sent"),
        ("exit", "trig"),
        ("exit", "trig"),
        ("exit", "sent"),
        ("exit", "sent"),
        ("exit", "trig"),
        ("exit", "trig"),
        ("exit", "DONE"),
    ];
    let got: Vec<(&str, &str)> = tags.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expect, "{text}");
    assert!(text.contains("startServer(None) --> server_group  (fires trigger: serverStarted)"));
    assert!(text.contains("Execution path of stream has jumped to target: exit."));
    assert!(!text.contains('\x1b'), "no colour when not a terminal");

    // The run record: procedure and hash, archives, every event and trigger.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(
        summary["procedure"]["sha256"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(summary["archives"].as_array().map(Vec::len), Some(2));
    let events = std::fs::read_to_string(record.join("events.jsonl")).expect("events");
    let sent = events
        .lines()
        .filter(|l| l.contains(r#""dir":"sent""#))
        .count();
    let recv = events
        .lines()
        .filter(|l| l.contains(r#""dir":"recv""#))
        .count();
    assert_eq!(
        sent, 12,
        "2 joins, 2 loads, 4 user events, 2 unloads, 2 leaves"
    );
    assert_eq!(recv, 11, "8 lifecycle triggers and 3 user triggers");
}

#[test]
fn an_agent_returning_false_ends_the_run_after_teardown_and_names_agent_node_and_method() {
    let text = three_streams().replacen("execargs: {}", "execargs: {fail_on: [stopClient]}", 1);
    let (out, _) = run_procedure("three_false", &text, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let exit_line = text
        .lines()
        .find(|l| l.contains(" : exit : "))
        .expect("an exit line");
    for needle in ["client_agent", "clientnode", "stopClient", "False"] {
        assert!(
            exit_line.contains(needle),
            "{needle} missing from {exit_line}"
        );
    }
    let after: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains(" : exit : "))
        .collect();
    assert!(
        after.iter().any(|l| l.contains("unloadAgent client_agent")),
        "teardown follows: {text}"
    );
    assert!(
        after
            .last()
            .is_some_and(|l| l.starts_with("stream exit           : DONE")),
        "{text}"
    );
    assert!(
        !text.contains("stopServer"),
        "the server stream never got its trigger"
    );
}

#[test]
fn an_agent_that_crashes_mid_run_is_reported_with_agent_node_and_method() {
    let text = three_streams().replacen("execargs: {}", "execargs: {crash_on: [stopClient]}", 1);
    let (out, _) = run_procedure("three_crash", &text, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let exit_line = text
        .lines()
        .find(|l| l.contains(" : exit : "))
        .expect("an exit line");
    for needle in [
        "client_agent",
        "clientnode",
        "stopClient",
        "exited with code 3",
    ] {
        assert!(
            exit_line.contains(needle),
            "{needle} missing from {exit_line}"
        );
    }
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("stream exit           : DONE")),
        "{text}"
    );
}

#[test]
fn keep_going_runs_on_after_a_false_return() {
    let text = three_streams()
        .replacen("execargs: {}", "execargs: {fail_on: [stopClient]}", 1)
        .replace(
            "{type: trigger, triggers: [{event: clientStopped}]}",
            "{type: trigger, triggers: [{event: clientStopped}, {timeout: 1500}]}",
        );
    let (out, _) = run_procedure("three_keep_going", &text, &["--keep-going"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("stopServer(None)"), "{text}");
}

#[test]
fn an_invalid_procedure_exits_2_and_says_where() {
    let (out, _) = run_procedure(
        "invalid",
        "groups: {g: [n]}\nagents: {}\nstreamstarts: [nope]\neventstreams: {}\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains(":3:"), "{err}");
}

#[test]
fn json_mode_prints_one_record_per_line() {
    let (out, _) = run_procedure("three_json", &three_streams(), &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(records
        .iter()
        .any(|r| r["tag"] == "jump" && r["stream"] == "cleanupstream"));
    assert_eq!(
        records.last().map(|r| r["exit_code"].clone()),
        Some(serde_json::json!(0))
    );
}

#[test]
fn the_readme_example_agent_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let records = tempfile::tempdir().expect("temp dir");
    let out = magi()
        .current_dir(&root)
        .args([
            "run",
            "examples/counter/counter.aal",
            "--no-color",
            "--run",
            "counter",
            "--record-dir",
        ])
        .arg(records.path())
        .output()
        .expect("run magi");
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("stream main           : trig")
            && text.contains("trigger completed: stopped"),
        "{text}"
    );
}

#[test]
fn the_first_ctrl_c_shows_the_waits_and_a_second_tears_down_and_exits_130() {
    let text = three_streams().replace("{timeout: 1000}", "{timeout: 600000}");
    let path = fixtures().join("three_interrupt.generated.aal");
    std::fs::write(&path, text).expect("write");
    let records = tempfile::tempdir().expect("temp dir");
    let child = magi()
        .arg("run")
        .arg(&path)
        .args(["--no-color", "--run", "interrupted", "--record-dir"])
        .arg(records.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn magi");
    let interrupt = |pid: u32| {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    };
    // Wait until the client stream is in its long wait.
    let events = records.path().join("interrupted/events.jsonl");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains("startClient")
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the run never reached startClient"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    interrupt(child.id());
    std::thread::sleep(std::time::Duration::from_millis(500));
    interrupt(child.id());
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_file(&path);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(
        text.contains(" : wait : ") && text.contains("timeout trigger will complete in"),
        "the waits were shown: {text}"
    );
    assert!(text.contains("Cleaning up and exiting"), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("stream exit           : DONE")),
        "{text}"
    );
}

#[test]
fn a_late_reply_to_an_earlier_call_does_not_satisfy_the_wait_of_a_later_one() {
    // `first` gives up on its call after 0.5 s and hands over to `second`, whose call fires
    // the same trigger. The first call's reply (at 1.5 s) answers the wrong call: `second`
    // must go on waiting for its own (2.5 s after it was sent).
    let testagent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node-agent/testagent");
    let text = format!(
        r#"
groups: {{g: [n1]}}
agents: {{a: {{group: g, path: {}, execargs: {{}}}}}}
streamstarts: [first]
eventstreams:
  first:
    - {{type: event, agent: a, method: sleep, trigger: slept, args: {{ms: 1500}}}}
    - {{type: trigger, triggers: [{{event: slept, target: exit}}, {{timeout: 500, target: second}}]}}
  second:
    - {{type: event, agent: a, method: sleep, trigger: slept, args: {{ms: 2500}}}}
    - {{type: trigger, triggers: [{{event: slept, target: exit}}]}}
"#,
        testagent.display()
    );
    let (out, _) = run_procedure("late_reply", &text, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let time = |stream: &str, tag: &str| {
        records
            .iter()
            .find(|r| r["stream"] == stream && r["tag"] == tag)
            .and_then(|r| r["time"].as_f64())
            .unwrap_or_else(|| panic!("no {tag} line of {stream}: {records:?}"))
    };
    let waited = time("second", "trig") - time("second", "sent");
    assert!(
        waited >= 2.0,
        "second's wait ended {waited:.2} s after its call: a stale reply counted"
    );
}

/// Runs `magi run` on a pseudo-terminal (so colour would be on) and returns all it printed.
fn run_on_a_terminal(name: &str, env_no_color: bool, flag: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let aal = dir.path().join("p.aal");
    // The agent cannot load: the node agent logs a warning on stderr, the console says why.
    std::fs::write(
        &aal,
        "groups: {g: [n1]}\nagents: {a: {group: g, path: /nonexistent/agent, execargs: {}}}\nstreamstarts: [s]\neventstreams:\n  s:\n    - {type: event, agent: a, method: m, args: {}}\n",
    )
    .expect("write");
    let command = format!(
        "{} run {} --run {name} --record-dir {} {}",
        env!("CARGO_BIN_EXE_magi"),
        aal.display(),
        dir.path().display(),
        if flag { "--no-color" } else { "" }
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .env("RUST_LOG", "info");
    if env_no_color {
        script.env("NO_COLOR", "1");
    } else {
        script.env_remove("NO_COLOR");
    }
    let out = script.output().expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_and_the_no_color_flag_cover_every_line_log_lines_included() {
    // An SGR sequence (`ESC [ ... m`) sets colours; erase-line (`ESC [ K`) is not colour.
    let sgr = |text: &str| {
        text.split('\x1b').skip(1).any(|rest| {
            rest.strip_prefix('[').is_some_and(|r| {
                r.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';')
                    .starts_with('m')
            })
        })
    };
    let coloured = run_on_a_terminal("colour_on", false, false);
    assert!(sgr(&coloured), "a terminal gets colour: {coloured}");
    let log = " WARN\x1b[0m cannot load agent"; // the node agent's log line, coloured
    assert!(coloured.contains(log), "{coloured:?}");
    for (env, flag) in [(true, false), (false, true)] {
        let plain = run_on_a_terminal("colour_off", env, flag);
        assert!(plain.contains("WARN cannot load agent"), "{plain:?}");
        assert!(
            !sgr(&plain),
            "NO_COLOR={env} --no-color={flag} still printed colour: {plain:?}"
        );
    }
}
