//! `magi check`, the real binary, over every AAL the original's users wrote
//! (`../shared/conformance/aal/`) and every case-study AAL (`../shared/casestudies/*.aal`):
//! each file's answer is pinned below (exit code, verdict, and the key diagnostic lines).

use crate::support::shared;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared test data beside the project.
fn magi_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magi"))
        .arg("check")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("magi runs")
}

struct Answer {
    file: &'static str,
    exit: i32,
    /// The last line of stderr.
    verdict: &'static str,
    /// Lines stderr must contain (diagnostic headers and their `-->` locations).
    lines: &'static [&'static str],
}

const VALID: &str = "magi check: the procedure is valid (0 warnings)";

/// Every shared AAL and what `magi check` says about it.
const ANSWERS: &[Answer] = &[
    // A trailing tab after a value (line 76): YAML 1.2 accepts it, the original's PyYAML
    // did not; accepted with a compatibility warning at the tab.
    Answer {
        file: "conformance/aal/magi__atscale_Attack_Files_a2m.aal",
        exit: 0,
        verdict: "magi check: the procedure is valid (1 warning)",
        lines: &[
            "warning: a tab character outside a value",
            "--> ../shared/conformance/aal/magi__atscale_Attack_Files_a2m.aal:76:31",
        ],
    },
    Answer {
        file: "conformance/aal/magi__atscale_Attack_Files_embeddedpnodea2m.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    // The original's pktCountersAgent had `setDefaults`; MAGI-rs's pktcounters does not
    // (its counters are set up by startCollection), so the call would fail: a warning from
    // the module's manifest.
    Answer {
        file: "conformance/aal/magi__atscale_Containerization_50client_procedure.aal",
        exit: 0,
        verdict: "magi check: the procedure is valid (1 warning)",
        lines: &[
            "warning: agent `pktcounter_agent` (module `pktcounters`) has no method `setDefaults`",
            "--> ../shared/conformance/aal/magi__atscale_Containerization_50client_procedure.aal:56:9",
        ],
    },
    // The original's pktCountersAgent had `setDefaults`; MAGI-rs's pktcounters does not
    // (its counters are set up by startCollection), so the call would fail: a warning from
    // the module's manifest.
    Answer {
        file: "conformance/aal/magi__atscale_Containerization_fiftyclientcont.aal",
        exit: 0,
        verdict: "magi check: the procedure is valid (1 warning)",
        lines: &[
            "warning: agent `pktcounter_agent` (module `pktcounters`) has no method `setDefaults`",
            "--> ../shared/conformance/aal/magi__atscale_Containerization_fiftyclientcont.aal:45:9",
        ],
    },
    // No trailing newline at the end: fine.
    Answer {
        file: "conformance/aal/magi__atscale_Containerization_iperf_agent.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    // The original's parser fixture jumps to a stream that does not exist (`sidestream`):
    // the original dropped the stream at run time; here it is an error. Its switch
    // triggers come from outside (a script), which is reported but allowed.
    Answer {
        file: "conformance/aal/magi__magi_tests_test.aal",
        exit: 2,
        verdict: "magi check: the procedure is not valid (1 error, 3 warnings)",
        lines: &[
            "error: unknown target `sidestream`",
            "--> ../shared/conformance/aal/magi__magi_tests_test.aal:28:71",
            "warning: nothing in the procedure emits the trigger `nevergethere`",
            "--> ../shared/conformance/aal/magi__magi_tests_test.aal:28:49",
            "warning: nothing in the procedure emits the trigger `gobranch1`",
            "--> ../shared/conformance/aal/magi__magi_tests_test.aal:36:30",
            "warning: nothing in the procedure emits the trigger `gobranch2`",
            "--> ../shared/conformance/aal/magi__magi_tests_test.aal:36:87",
        ],
    },
    // A trailing comma in a flow list: fine.
    Answer {
        file:
            "conformance/aal/magi__mininet_Bootstrap_case_studies_study10clients_cs_procedure10.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "conformance/aal/magi__mininet_Bootstrap_case_studies_study1_cs_procedure.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file:
            "conformance/aal/magi__mininet_Bootstrap_case_studies_study1_cs_procedure_monitor.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "conformance/aal/magi__mininet_cs_scripts-10-15-2014_cs_procedure.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "conformance/aal/magi__mininet_scripts_11_17_cs_procedure.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "conformance/aal/magi__mininet_scripts_11_17_cs_procedure_monitor.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "casestudies/casestudy_clientserver.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "casestudies/casestudy_clientserver55.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "casestudies/casestudy_clientserver55_monitor.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    Answer {
        file: "casestudies/casestudy_clientserver_monitor.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    // Self-loops, `timeout: 0` gotos, a three-way switch on `result`, a flow list over lines.
    Answer {
        file: "casestudies/casestudy_feedback.aal",
        exit: 0,
        verdict: VALID,
        lines: &[],
    },
    // `trigger:` indented deeper than `method:` continues the value `startServer`.
    Answer {
        file: "casestudies/seed_document_procedure.aal",
        exit: 2,
        verdict: "magi check: the procedure is not valid (1 error, 0 warnings)",
        lines: &[
            "error: YAML syntax error: mapping values are not allowed here",
            "--> ../shared/casestudies/seed_document_procedure.aal:27:16",
            "27 |         trigger: serverStarted",
            "   |                ^ `trigger:` is read as part of the value of `method:`",
            "= help: align `trigger:` with `method:` (indent it by 6 spaces, not 8)",
        ],
    },
];

/// Runs `magi check` from the workspace root so that paths print as `../shared/...`.
fn check_shared(file: &str) -> Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(env!("CARGO_BIN_EXE_magi"))
        .current_dir(root)
        .args(["check", &format!("../shared/{file}")])
        .env("NO_COLOR", "1")
        .output()
        .expect("magi runs")
}

#[test]
fn every_shared_aal_gets_its_pinned_answer() {
    let mut failures = Vec::new();
    for a in ANSWERS {
        let out = check_shared(a.file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        if code != Some(a.exit) {
            failures.push(format!(
                "{}: exit {code:?}, expected {}\n{stderr}",
                a.file, a.exit
            ));
        }
        if stderr.trim_end().lines().last() != Some(a.verdict) {
            failures.push(format!(
                "{}: verdict differs, expected {:?}\n{stderr}",
                a.file, a.verdict
            ));
        }
        for line in a.lines {
            if !stderr.lines().any(|l| l.trim_start() == line.trim_start()) {
                failures.push(format!("{}: missing line {line:?}\n{stderr}", a.file));
            }
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let plan_printed = stdout.contains("\nstream ");
        if plan_printed != (a.exit == 0) {
            failures.push(format!(
                "{}: plan printed: {plan_printed}\n{stdout}",
                a.file
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn no_shared_aal_is_left_without_an_answer() {
    let mut files: Vec<String> = Vec::new();
    for dir in ["conformance/aal", "casestudies"] {
        for entry in std::fs::read_dir(shared().join(dir))
            .expect("shared data beside the project")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".aal") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    let mut pinned: Vec<String> = ANSWERS.iter().map(|a| a.file.to_string()).collect();
    pinned.sort();
    assert_eq!(files, pinned);
}

/// The seed document with its line 27 aligned, in a temporary directory.
fn fixed_seed(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shared().join("casestudies/seed_document_procedure.aal"))
        .expect("seed");
    let fixed: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 26 {
                l.replacen("        trigger:", "      trigger:", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let path = dir.join("seed_fixed.aal");
    std::fs::write(&path, fixed.join("\n") + "\n").expect("write");
    path
}

#[test]
fn the_fixed_seed_reports_case_mistakes_and_the_stray_monitor_fragment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fixed_seed(dir.path());
    let out = magi_check(&[path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let expect = [
        "warning: nothing in the procedure emits the trigger `ClientStopped`",
        "seed_fixed.aal:31:27",
        "= help: did you mean `clientStopped`? (trigger names are case-sensitive; `clientStopped` is sent by client_agent.stopClient at line 54)",
        "warning: nothing in the procedure emits the trigger `ServerStarted`",
        "seed_fixed.aal:41:27",
        "= help: did you mean `serverStarted`? (trigger names are case-sensitive; `serverStarted` is sent by server_agent.startServer at line 27)",
        "warning: unknown top-level key `monitor_group` is ignored",
        "seed_fixed.aal:61:1",
        "= help: it looks like a group (a list of node names); move it under `groups:`",
        "warning: unknown top-level key `monitor_agent` is ignored",
        "seed_fixed.aal:63:1",
        "= help: it looks like an agent (it has `group`, `path` or `execargs`); move it under `agents:`",
        "warning: unknown top-level key `monitorstream` is ignored",
        "seed_fixed.aal:68:1",
        "= help: it looks like an event stream (a list of entries with `type:`); move it under `eventstreams:`",
        "magi check: the procedure is valid (5 warnings)",
    ];
    for line in expect {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn the_case_study_plan_says_what_goes_to_whom_and_what_each_wait_needs() {
    let path = shared().join("casestudies/casestudy_clientserver.aal");
    let out = magi_check(&[path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    let plan = String::from_utf8_lossy(&out.stdout);
    for line in [
        "  client_group [clientnode]",
        "  server_agent on server_group [servernode], dock server_agent, from path /share/magi/modules/apache/apache.tar.gz, execargs {}, load timeout 200000 ms",
        "after setup, start together: serverstream, clientstream, cleanupstream",
        "stream serverstream (line 21)",
        "  1. send server_agent.startServer({}) to server_group [servernode] (dock server_agent); each node reports `serverStarted`  [line 22]",
        "  2. wait for `clientStopped` from all of [clientnode] matching {\"retVal\":true}  [line 28]",
        "  3. wait for 60000 ms  [line 46]",
        "  1. wait for `serverStopped` from all of [servernode] matching {\"retVal\":true} -> exit  [line 58]",
    ] {
        assert!(plan.lines().any(|l| l == line), "missing {line:?} in:\n{plan}");
    }
}

#[test]
fn json_output_holds_diagnostics_and_the_resolved_plan() {
    let path = shared().join("casestudies/casestudy_clientserver55.aal");
    let out = magi_check(&["--json", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["diagnostics"], serde_json::json!([]));
    let streams = doc["plan"]["streams"].as_array().expect("streams");
    assert_eq!(streams[1]["name"], "clientstream");
    let wait = &streams[1]["entries"][0];
    assert_eq!(wait["type"], "wait");
    assert_eq!(wait["triggers"][0]["event"], "serverStarted");
    assert_eq!(wait["triggers"][0]["count"], 5, "every server must report");

    let seed = shared().join("casestudies/seed_document_procedure.aal");
    let out = magi_check(&["--json", seed.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["plan"], serde_json::Value::Null);
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (
            d["severity"].as_str(),
            d["line"].as_u64(),
            d["col"].as_u64()
        ),
        (Some("error"), Some(27), Some(16))
    );
}

#[test]
fn dot_output_draws_streams_cross_stream_edges_and_jumps() {
    let path = shared().join("casestudies/casestudy_feedback.aal");
    let out = magi_check(&["--dot", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph procedure {"), "{dot}");
    assert!(dot.contains("label=\"controlLoop\""));
    // serverStream's startServer (s0_0) releases noiseStream's first wait (s1_0).
    assert!(
        dot.contains("s0_0 -> s1_0 [style=dashed, label=\"serverStarted\"];"),
        "{dot}"
    );
    // noiseModifyStream jumps into modifyNoiseLoop, which loops on itself; durationStream
    // ends in exit.
    assert!(
        dot.contains("s2_0 -> s3_0 [label=\"jump\", penwidth=2, lhead=cluster_3];"),
        "{dot}"
    );
    assert!(
        dot.contains("s3_1 -> s3_0 [label=\"jump\", penwidth=2];"),
        "{dot}"
    );
    assert!(dot.contains("s9_3 -> exit"), "{dot}");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("graph.dot");
    let arg = format!("--dot={}", file.display());
    let out = magi_check(&[&arg, path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stream controlLoop"),
        "the plan still prints"
    );
    assert!(std::fs::read_to_string(&file)
        .expect("graph written")
        .starts_with("digraph"));
}

#[test]
fn several_files_are_read_in_order_and_a_replaced_key_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = dir.path().join("one.aal");
    let two = dir.path().join("two.aal");
    std::fs::copy(
        shared().join("casestudies/casestudy_clientserver.aal"),
        &one,
    )
    .expect("copy");
    std::fs::write(&two, "groups:\n  client_group: [c9]\n  server_group: [s9]").expect("write");
    let out = magi_check(&[one.to_str().expect("path"), two.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: `groups` in "), "{stderr}");
    assert!(
        stderr.contains("one.aal:14:1; top-level keys of several files are not merged"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("client_group [c9]"));
}

#[test]
fn an_unreadable_file_exits_2_with_a_clear_message() {
    let out = magi_check(&["/nonexistent/procedure.aal"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: cannot read `/nonexistent/procedure.aal`: No such file or directory (os error 2)"
    );
}

#[test]
fn no_colour_codes_when_not_on_a_terminal() {
    let seed = shared().join("casestudies/seed_document_procedure.aal");
    let out = Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(["check", seed.to_str().expect("path")])
        .env_remove("NO_COLOR")
        .output()
        .expect("magi runs");
    assert!(!out.stderr.contains(&0x1b));
}
