//! Links changed during a run: the `link_up_down` module across the two-node testbed, and
//! its refusal where there is no testbed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::support::*;

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file)
}

/// `magi run` of `aal` (on testbed `bed` when given), its record in `dir/runs/RUN`.
fn run(aal: &Path, bed: Option<&Bed>, dir: &Path, name: &str) -> std::process::Output {
    let records = dir.join("runs");
    let mut args = vec![
        "run".to_string(),
        aal.to_string_lossy().into_owned(),
        "--no-color".into(),
        "--run".into(),
        name.into(),
        "--record-dir".into(),
        records.to_string_lossy().into_owned(),
    ];
    if let Some(bed) = bed {
        args.extend(["--testbed".to_string(), bed.name.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    magi(&args)
}

/// The records of `agent` in run `dir/runs/RUN`, oldest first.
fn records(dir: &Path, run: &str, agent: &str, filters: &[&str]) -> Vec<Value> {
    let record = dir.join("runs").join(run);
    let mut args = vec!["data", "query"];
    let record = record.to_string_lossy().into_owned();
    args.extend([record.as_str(), "--agent", agent, "--json"]);
    for f in filters {
        args.extend(["--where", f]);
    }
    let out = magi(&args);
    let mut found: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    found.sort_by(|a, b| {
        a["created"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["created"].as_f64().unwrap_or(0.0))
    });
    found
}

/// The interfaces of this machine and whether each is up.
fn host_links() -> Vec<(String, String)> {
    let out = std::process::Command::new("ip")
        .args(["-j", "link", "show"])
        .output()
        .expect("ip link");
    let links: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ip -j link");
    links
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap_or("").to_string(),
                l["operstate"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The original's `test_up_down.aal` (deter-project/magi-modules, `link_up_down/`,
/// stored unchanged as `tests/fixtures/test_up_down.aal`): clientnode takes its link to
/// servernode down, waits 10 s, brings it up.
#[test]
fn the_originals_test_up_down_runs_unchanged_across_the_two_node_testbed() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "updown");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(
        &fixture("test_up_down.aal"),
        Some(&bed),
        dir.path(),
        "updown",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events: Vec<String> = records(dir.path(), "updown", "link_modify_agent", &[])
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["data"]["linkEvent"], r["data"]["intfName"], r["data"]["peerNode"]
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            r#""down" "eth0" "servernode""#,
            r#""up" "eth0" "servernode""#
        ]
    );
    // The link is up again: servernode answers.
    let ping = bed.exec(
        "clientnode",
        &["ping", "-c1", "-W2", &bed.address("servernode")],
    );
    assert!(ping.status.success(), "{}", text(&ping));
}

#[test]
fn a_link_taken_down_mid_run_stops_the_traffic_until_it_is_brought_back() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "mid");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(
        &fixture("link_down_mid_run.aal"),
        Some(&bed),
        dir.path(),
        "mid",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let changes = records(dir.path(), "mid", "link_agent", &[]);
    let at = |event: &str| {
        changes
            .iter()
            .find(|r| r["data"]["linkEvent"] == event)
            .and_then(|r| r["created"].as_f64())
            .unwrap_or_else(|| panic!("no `{event}` recorded: {changes:?}"))
    };
    let (down, up) = (at("down"), at("up"));
    // Readings at whole seconds t, each the bytes of (t-1, t], from the server to the client.
    let readings: Vec<(f64, u64)> = records(
        dir.path(),
        "mid",
        "monitor_agent",
        &["peerNode=servernode", "trafficDirection=in"],
    )
    .iter()
    .filter_map(|r| Some((r["created"].as_f64()?, r["data"]["bytes"].as_u64()?)))
    .collect();
    eprintln!("link down at {down:.2}, up at {up:.2}; readings: {readings:?}");
    let sum = |keep: &dyn Fn(f64) -> bool| -> (usize, u64) {
        let picked: Vec<u64> = readings.iter().filter(|r| keep(r.0)).map(|r| r.1).collect();
        (picked.len(), picked.iter().sum())
    };
    let before = sum(&|t| t <= down - 0.1);
    let during = sum(&|t| t - 1.0 >= down + 0.3 && t <= up - 0.1);
    let after = sum(&|t| t - 1.0 >= up + 1.0);
    assert!(
        before.1 > 50_000,
        "traffic before the link went down: {before:?}"
    );
    assert!(
        during.0 >= 2 && during.1 == 0,
        "nothing arrives while the link is down: {during:?}"
    );
    assert!(
        after.1 > 50_000,
        "traffic resumed once the link came back: {after:?}"
    );
}

#[test]
fn modify_link_reshapes_the_link_and_a_delay_without_netem_fails_naming_the_module() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "modify");
    let dir = tempfile::tempdir().expect("temp dir");
    let aal = dir.path().join("modify.aal");
    std::fs::write(
        &aal,
        "groups: {g: [clientnode]}\n\
         agents: {link: {group: g, path: /share/magi/modules/link_up_down/link_up_down.tar.gz, execargs: []}}\n\
         streamstarts: [s]\n\
         eventstreams:\n  s:\n\
         \x20   - {type: event, agent: link, method: modify_link, args: {dest: servernode, bandwidth: 2Mb, loss: 0.25}, trigger: shaped}\n\
         \x20   - {type: trigger, triggers: [{event: shaped}]}\n\
         \x20   - {type: event, agent: link, method: modify_link, args: {linkName: link, delay: 10ms}, trigger: delayed}\n\
         \x20   - {type: trigger, triggers: [{event: delayed}]}\n",
    )
    .expect("write");
    let out = run(&aal, Some(&bed), dir.path(), "modify");
    let said = text(&out);
    // The first change took: the class is at 2 Mb/s, a quarter of what leaves is dropped.
    let class = text(&bed.exec("clientnode", &["tc", "class", "show", "dev", "eth0"]));
    assert!(class.contains("rate 2Mbit"), "{class}");
    let loss = text(&bed.exec(
        "clientnode",
        &["nft", "list", "table", "inet", "magi_testbed_loss"],
    ));
    assert!(
        loss.contains("oifname \"eth0\"") && loss.contains("< 250000 drop"),
        "{loss}"
    );
    if magi_testbed::up::netem_available() {
        assert_eq!(out.status.code(), Some(0), "{said}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains("link_up_down") && said.contains("sch_netem"),
            "{said}"
        );
    }
}

#[test]
fn link_up_down_refuses_without_a_testbed_and_leaves_the_hosts_interfaces_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let before = host_links();
    let out = run(&fixture("test_up_down.aal"), None, dir.path(), "nobed");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("loopback address") && said.contains("magi testbed up"),
        "{said}"
    );
    assert_eq!(host_links(), before, "the host's interfaces changed");
}
