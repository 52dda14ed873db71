//! The product owner's case study, for real, on the embedded default: a web server, a
//! client generating traffic, a packet counter on the server, the data recorded and a
//! plot drawn. The procedure is the original file with its 60 s of traffic shortened.

use crate::support::{host_agents, shared};
use std::path::Path;
use std::process::Command;

#[test]
fn the_monitor_case_study_runs_for_real_and_its_traffic_is_recorded_and_plotted() {
    let _host = host_agents();
    let original =
        std::fs::read_to_string(shared().join("casestudies/casestudy_clientserver_monitor.aal"))
            .expect("the case study");
    assert!(original.contains("timeout: 60000"));
    let dir = tempfile::tempdir().expect("temp dir");
    let aal = dir.path().join("casestudy_short.aal");
    std::fs::write(&aal, original.replace("timeout: 60000", "timeout: 5000")).expect("write");
    let records = dir.path().join("runs");
    let out = Command::new(env!("CARGO_BIN_EXE_magi"))
        .arg("run")
        .arg(&aal)
        .args(["--no-color", "--run", "cs", "--record-dir"])
        .arg(&records)
        .env(
            "MAGI_STATE_DIR",
            std::env::temp_dir().join("magi-test-state"),
        )
        .output()
        .expect("magi run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("stream monitorstream  : sent") && text.contains("startCollection(None)"),
        "{text}"
    );

    let run = records.join("cs");
    let store = run.join("data.sqlite");
    let query = |args: &[&str]| crate::support::data_query(crate::support::magi(), &store, args);
    // Real HTTP requests from clientnode to servernode, one per second.
    let requests = query(&["--agent", "client_agent"]);
    assert!(requests.len() >= 3, "{requests:?}");
    assert!(
        requests.iter().all(|r| r["data"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://servernode/getsize.py?length="))),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r["data"]["size_download"]
            .as_u64()
            .is_some_and(|n| n >= 1000)),
        "{requests:?}"
    );
    // The counter saw bytes per second towards that peer, counted per peer address.
    let counted = query(&[
        "--agent",
        "monitor_agent",
        "--where",
        "peerNode=clientnode",
        "--where",
        "trafficDirection=out",
    ]);
    assert!(counted.len() >= 4, "{counted:?}");
    crate::support::assert_counted_covers_requests(&counted, &requests);

    let png = dir.path().join("traffic.png");
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/traffic_graph.conf");
    let out = Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(["graph", "-c"])
        .arg(&conf)
        .arg("--run")
        .arg(&run)
        .arg("-o")
        .arg(&png)
        .output()
        .expect("graph");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0) > 5_000);
}
