//! Original-style agents (an `.idl` and Python 3 written against the original's API), run
//! by the real `magi run` on the embedded bus: the original module repository's own
//! procedures, unchanged (`tests/fixtures/magi-modules/`, origin in its README), against
//! the tutorial agents of `agents/modules/`; an agent shipped as a tarball whose records
//! are plotted; and a Python 2 agent refused with the line to fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use magi_data::{Query, Store};

use crate::support::text;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn magi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_magi"));
    c.env("NO_COLOR", "1").env(
        "MAGI_STATE_DIR",
        std::env::temp_dir().join("magi-test-state"),
    );
    c
}

/// Runs `procedure` as run `name` in a fresh record directory; returns the output and the
/// run's record directory.
fn magi_run(name: &str, procedure: &Path) -> (Output, PathBuf) {
    let records = tempfile::tempdir().expect("temp dir").keep();
    let out = magi()
        .current_dir(repo())
        .arg("run")
        .arg(procedure)
        .args(["--no-color", "--run", name, "--record-dir"])
        .arg(&records)
        .output()
        .expect("run magi");
    (out, records.join(name))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/magi-modules")
        .join(name)
}

/// The data of every record of the run, as (agent, host, data).
fn records(run: &Path) -> Vec<(String, String, serde_json::Value)> {
    let mut store =
        Store::open_existing(&run.join("data.sqlite").to_string_lossy()).expect("the run's store");
    store
        .query(&Query::default())
        .expect("query")
        .into_iter()
        .map(|r| {
            let data = serde_json::Value::Object(r.record.data);
            (r.record.agent, r.record.host, data)
        })
        .collect()
}

/// Asserts that `text` contains each of `lines`.
fn contains_all(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}

fn succeeds(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
}

#[test]
fn agent101s_own_procedure_runs_unchanged_and_records_test_void() {
    let (out, run) = magi_run("agent101", &fixture("agent101_procedure.aal"));
    succeeds(&out);
    let console = text(&out);
    contains_all(
        &console,
        &[
            "using module agent101",
            "trigger completed: charDone: {\"retVal\":\"helloworld\"}",
            "trigger completed: intDone: {\"retVal\":105}",
            "trigger completed: voidDone",
        ],
    );
    let data = records(&run);
    assert_eq!(
        data,
        [(
            "testagent".to_string(),
            "testa".to_string(),
            serde_json::json!({"function": "testVoid"})
        )]
    );
}

#[test]
fn cagents_procedure_and_math_run_unchanged_with_their_records() {
    let (out, run) = magi_run("cagent", &fixture("cagent_procedure.aal"));
    succeeds(&out);
    assert!(
        text(&out).contains("intDone: {\"retVal\":75}"),
        "{}",
        text(&out)
    );
    assert_eq!(
        records(&run)[0].2,
        serde_json::json!({"function": "testVoid"})
    );

    let (out, run) = magi_run("cagent-math", &fixture("cagent_math.aal"));
    succeeds(&out);
    let data: Vec<_> = records(&run).into_iter().map(|r| r.2).collect();
    assert_eq!(
        data,
        [
            serde_json::json!({"addResult": 75}),
            serde_json::json!({"subResult": 25})
        ]
    );
}

/// The procedure waits 30 s between the client's start and stop, as written.
#[test]
fn simple_server_and_client_test_runs_unchanged_over_real_tcp() {
    let (out, run) = magi_run("simple", &fixture("simple_server_test.aal"));
    succeeds(&out);
    let data = records(&run);
    let found = |agent: &str, host: &str, want: serde_json::Value| {
        data.iter()
            .any(|(a, h, d)| a == agent && h == host && *d == want)
    };
    assert!(
        found(
            "server_agent",
            "node-30",
            serde_json::json!({"client": "node-13", "text": "hello server"})
        ),
        "{data:?}"
    );
    assert!(
        found(
            "client_agent",
            "node-13",
            serde_json::json!({"server_text": "Hello Client node-13 from the server"})
        ),
        "{data:?}"
    );
}

/// The acceptance test of issue 12: an agent written the original's way (`DispatchAgent`,
/// `@agentmethod()`, `getAgent()`, `database.getCollection`), shipped as an `.idl` + `.py`
/// tarball, runs a procedure; what it recorded is plotted.
#[test]
fn an_original_style_agent_shipped_as_a_tarball_runs_and_its_records_plot() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tarball = tmp.path().join("original_counter.tar.gz");
    let tar = Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(repo().join("examples/original_counter"))
        .args(["counter.idl", "counter.py"])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "{}", text(&tar));
    let procedure = tmp.path().join("count.aal");
    std::fs::write(
        &procedure,
        format!(
            "groups: {{counters: [node1]}}
agents:
  counter_agent: {{group: counters, path: {}, execargs: {{interval: 0.02, limit: 40}}}}
streamstarts: [main]
eventstreams:
  main:
    - {{type: event, agent: counter_agent, method: startCounting, args: {{start: 2}}, trigger: counting}}
    - {{type: trigger, triggers: [{{event: counting}}]}}
    - {{type: trigger, triggers: [{{event: countingDone, value: 40}}, {{timeout: 20000, target: exit}}]}}
    - {{type: event, agent: counter_agent, method: stopCounting, args: {{}}, trigger: stopped}}
    - {{type: trigger, triggers: [{{event: stopped, stoppedAt: 40, target: exit}}]}}
",
            tarball.display()
        ),
    )
    .expect("write procedure");
    let (out, run) = magi_run("tarball", &procedure);
    succeeds(&out);
    assert!(
        text(&out).contains("trigger completed: stopped: {\"stoppedAt\":40}"),
        "{}",
        text(&out)
    );
    let values: Vec<_> = records(&run)
        .into_iter()
        .map(|r| r.2["value"].clone())
        .collect();
    assert_eq!(
        values,
        (2..40).map(|v| serde_json::json!(v)).collect::<Vec<_>>()
    );

    let conf = tmp.path().join("graph.conf");
    std::fs::write(
        &conf,
        "graph: {type: line, xLabel: Time(sec), yLabel: Value, title: Counter}\n\
         db: {agent: counter_agent, filter: {host: node1}, xValue: created, yValue: value}\n",
    )
    .expect("write graph conf");
    let png = tmp.path().join("counter.png");
    let graph = magi()
        .args([
            "graph",
            "-c",
            &conf.to_string_lossy(),
            "--run",
            &run.to_string_lossy(),
            "-o",
            &png.to_string_lossy(),
        ])
        .output()
        .expect("magi graph");
    assert!(graph.status.success(), "{}", text(&graph));
    let ink = magi_data::graph::png_ink(&png, magi_data::graph::PLOT_REGION).expect("read png");
    assert!(ink.ink > 500, "plot area nearly empty: {ink:?}");
}

#[test]
fn a_python_2_agent_is_refused_at_load_with_the_file_line_and_fix() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let module = tmp.path().join("oldagent");
    std::fs::create_dir(&module).expect("module dir");
    std::fs::write(
        module.join("old.idl"),
        "execute: thread\nmainfile: old.py\n",
    )
    .expect("idl");
    std::fs::write(
        module.join("old.py"),
        "from magi.util.agent import DispatchAgent\nimport helper\n\ndef getAgent(**kw):\n    return DispatchAgent()\n",
    )
    .expect("py");
    std::fs::write(
        module.join("helper.py"),
        "def f(x):\n    try:\n        return x\n    except ValueError, e:\n        print \"bad\"\n",
    )
    .expect("helper");
    let procedure = tmp.path().join("old.aal");
    std::fs::write(
        &procedure,
        format!(
            "groups: {{g: [n1]}}\nagents:\n  old: {{group: g, path: {}, execargs: {{}}}}\n\
             streamstarts: [s]\neventstreams:\n  s:\n    - {{type: event, agent: old, method: go, args: {{}}}}\n",
            module.display()
        ),
    )
    .expect("procedure");
    let (out, _) = magi_run("old", &procedure);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let console = text(&out);
    assert!(
        console.contains(
            "helper.py:4: `except E, e:` is Python 2 (except ValueError, e:): write `except E as e:`; \
             the same kind of Python 2 line is also at line(s) 5"
        ),
        "{console}"
    );
    assert!(!console.contains("Traceback"), "{console}");
}

/// `magi check` on `procedure`, with `modules` as an extra module directory.
fn check(procedure: &str, modules: &Path) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.aal");
    std::fs::write(&path, procedure).expect("write procedure");
    let out = magi()
        .arg("check")
        .arg(&path)
        .arg("--modules")
        .arg(modules)
        .output()
        .expect("magi check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_agent(path: &str, events: &str) -> String {
    format!(
        "groups: {{g: [n1]}}\nagents:\n  a: {{group: g, path: {path}, execargs: {{}}}}\n\
         streamstarts: [s]\neventstreams:\n  s:\n{events}"
    )
}

#[test]
fn check_warns_of_methods_and_arguments_a_manifest_does_not_list() {
    let procedure = one_agent(
        "/share/magi/modules/http_client/http_client.tar.gz",
        "    - {type: event, agent: a, method: startClent, args: {}}\n\
         \x20   - {type: event, agent: a, method: increaseTraffic, args: {stepsze: 5}}\n\
         \x20   - {type: event, agent: a, method: setConfiguration, args: {interval: '2'}}\n",
    );
    let (code, stderr) = check(&procedure, Path::new("/nonexistent"));
    assert_eq!(code, Some(0), "{stderr}");
    contains_all(
        &stderr,
        &[
            "warning: agent `a` (module `http_client`) has no method `startClent`; did you mean `startClient`?",
            "p.aal:7:7",
            "warning: method `increaseTraffic` of agent `a` (module `http_client`) takes no argument `stepsze`; did you mean `stepsize`?",
            "p.aal:8:7",
            "magi check: the procedure is valid (2 warnings)",
        ],
    );
}

#[test]
fn check_warns_of_methods_and_arguments_an_idl_does_not_list() {
    let procedure = one_agent(
        "/proj/montage/magi-modules/agent101/",
        "    - {type: event, agent: a, method: testInt, args: {a: 1, c: 2}}\n\
         \x20   - {type: event, agent: a, method: testFloat, args: {}}\n\
         \x20   - {type: event, agent: a, method: setConfiguration, args: {anything: 1}}\n",
    );
    let (code, stderr) = check(&procedure, Path::new("/nonexistent"));
    assert_eq!(code, Some(0), "{stderr}");
    contains_all(
        &stderr,
        &[
            "warning: method `testInt` of agent `a` (module `agent101`) takes no argument `c`",
            "= note: `testInt` takes a, b",
            "warning: agent `a` (module `agent101`) has no method `testFloat`",
            "magi check: the procedure is valid (2 warnings)",
        ],
    );
}

#[test]
fn check_says_nothing_of_modules_it_cannot_find_or_that_list_no_methods() {
    let modules = tempfile::tempdir().expect("temp dir");
    let quiet = modules.path().join("quiet");
    std::fs::create_dir(&quiet).expect("module");
    std::fs::write(quiet.join("q.idl"), "execute: thread\nmainfile: q.py\n").expect("idl");
    std::fs::write(quiet.join("q.py"), "").expect("py");
    for path in [
        "/share/magi/modules/nosuchmodule/x.tar.gz",
        "/proj/x/quiet/",
    ] {
        let procedure = one_agent(
            path,
            "    - {type: event, agent: a, method: anything, args: {b: 1}}\n",
        );
        let (code, stderr) = check(&procedure, modules.path());
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains("magi check: the procedure is valid (0 warnings)"),
            "{path}: {stderr}"
        );
    }
}

#[test]
fn the_original_style_example_runs_like_the_native_one() {
    let (out, run) = magi_run(
        "original-counter",
        Path::new("examples/original_counter/counter.aal"),
    );
    succeeds(&out);
    assert!(
        text(&out).contains("trigger completed: stopped"),
        "{}",
        text(&out)
    );
    let hosts: std::collections::BTreeSet<String> =
        records(&run).into_iter().map(|r| r.1).collect();
    assert_eq!(hosts.into_iter().collect::<Vec<_>>(), ["node1", "node2"]);
}
