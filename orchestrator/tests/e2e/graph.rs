//! `magi data import` + `magi data query` + `magi graph`, as a user runs them on the
//! original case study's exported records and graph configurations.
use crate::support::{shared, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn casestudies() -> PathBuf {
    let dir = shared().join("casestudies");
    assert!(
        dir.is_dir(),
        "the case-study data is missing: {} (set MAGI_SHARED to the shared/ folder)",
        dir.display()
    );
    dir
}

fn magi(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(args)
        .current_dir(cwd)
        .env_remove("MAGI_STORE")
        .env("MAGI_DATA_DIR", cwd.join("data-root"))
        .output()
        .expect("run magi")
}

#[test]
fn import_query_and_plot_the_case_study() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cs = casestudies();
    let export = cs.join("magi_cs_experiment_data.json");
    let o = magi(
        &[
            "data",
            "import",
            export.to_str().expect("utf-8"),
            "--into",
            "run1",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("imported 238 records"), "{}", text(&o));
    assert!(tmp.path().join("run1/data.sqlite").is_file());

    let o = magi(
        &[
            "data",
            "query",
            "run1",
            "--agent",
            "monitor_agent",
            "--host",
            "servernode",
            "--where",
            "peerNode=clientnode",
            "--where",
            "trafficDirection=out",
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    assert_eq!(lines.len(), 60);
    let times: Vec<f64> = lines
        .iter()
        .map(|l| l["created"].as_f64().expect("created"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by created");
    assert_eq!(lines[1]["data"]["bytes"], 5896);

    // Time range and a numeric field.
    let o = magi(
        &[
            "data",
            "query",
            "run1",
            "--where",
            "bytes=6911",
            "--from",
            "1408740702",
            "--to",
            "2014-08-22T20:51:43Z",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        2,
        "{}",
        text(&o)
    );

    // The case study's own config: its typo is reported at its line.
    let conf = cs.join("cs_magi_graph.conf");
    let o = magi(
        &[
            "graph",
            "-c",
            conf.to_str().expect("utf-8"),
            "-o",
            "plot.png",
            "--run",
            "run1",
        ],
        tmp.path(),
    );
    assert!(!o.status.success());
    let err = text(&o);
    assert!(err.contains("cs_magi_graph.conf:7:"), "{err}");
    assert!(err.contains("write `agent: monitor_agent`"), "{err}");
    assert!(!tmp.path().join("plot.png").exists());

    // Fixed, it draws the original's traffic plot.
    let fixed = tmp.path().join("graph.conf");
    std::fs::write(
        &fixed,
        std::fs::read_to_string(&conf)
            .expect("read")
            .replace("agent:monitor_agent", "agent: monitor_agent"),
    )
    .expect("write");
    let o = magi(&["graph", "-c", "graph.conf", "--run", "run1"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let png = tmp.path().join("graph.png"); // the original's default output name
    let ink = magi_data::graph::png_ink(&png, magi_data::graph::PLOT_REGION).expect("read png");
    assert_eq!((ink.width, ink.height), (800, 600));
    assert!(ink.ink > 3000, "plot area nearly empty: {ink:?}");

    // The current format with two series, through a store path.
    let viz = cs.join("viz_clientserver_graph.conf");
    let o = magi(
        &[
            "graph",
            "-c",
            viz.to_str().expect("utf-8"),
            "-o",
            "viz.png",
            "--store",
            "run1/data.sqlite",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Out: 60 points, In: 60 points"),
        "{}",
        text(&o)
    );
}

#[test]
fn experiment_and_project_name_a_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cs = casestudies();
    let export = cs.join("magi_cs55_experiment_data.json");
    let o = magi(
        &[
            "data",
            "import",
            export.to_str().expect("utf-8"),
            "-e",
            "cs55",
            "-p",
            "montage",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(tmp
        .path()
        .join("data-root/montage/cs55/data.sqlite")
        .is_file());
    let conf = cs.join("casestudy_clientserver55_magi_graph.conf");
    let o = magi(
        &[
            "graph",
            "-c",
            conf.to_str().expect("utf-8"),
            "-o",
            "cs55.png",
            "-e",
            "cs55",
            "-p",
            "montage",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let ink =
        magi_data::graph::png_ink(&tmp.path().join("cs55.png"), magi_data::graph::PLOT_REGION)
            .expect("png");
    assert!(ink.ink > 3000, "{ink:?}");

    // Errors: no store named, a store that does not exist, a bad time.
    let o = magi(&["graph", "-c", conf.to_str().expect("utf-8")], tmp.path());
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--store PATH|URL, --run DIR, or -e"),
        "{}",
        text(&o)
    );
    let o = magi(
        &["graph", "-c", conf.to_str().expect("utf-8"), "-e", "nope"],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no record store"), "{}", text(&o));
    let o = magi(
        &[
            "data",
            "query",
            "data-root/montage/cs55",
            "--from",
            "yesterday",
        ],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("RFC 3339"), "{}", text(&o));
}

#[test]
fn invalid_export_lines_are_reported_and_nothing_is_imported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("bad.json"),
        "{\"host\": \"h\", \"agent\": \"a\", \"created\": 1, \"bytes\": 3}\n{\"host\": \"h\", \"created\": 2}\nnot json\n",
    )
    .expect("write");
    let o = magi(
        &["data", "import", "bad.json", "--into", "s.sqlite"],
        tmp.path(),
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.json:line 2: no `agent` field") && t.contains("bad.json:line 3: not JSON"),
        "{t}"
    );
    assert!(!tmp.path().join("s.sqlite").exists());
    let o = magi(
        &[
            "data",
            "import",
            "bad.json",
            "--into",
            "s.sqlite",
            "--skip-invalid",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("imported 1 records") && text(&o).contains("2 skipped"),
        "{}",
        text(&o)
    );
}
