//! The benchmark's smallest configuration (`magi-bench --quick`: N = 1, a few rounds), so
//! that it cannot rot. It needs RabbitMQ (`MAGI_BENCH_AMQP_URL`, default the local guest
//! broker), as the bus tests do. Nothing here is timed: it checks that every measurement
//! was taken and written.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_quick_benchmark_runs_and_writes_every_figure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("figures.json");
    let exe = env!("CARGO_BIN_EXE_magi-bench");
    let siblings = std::path::Path::new(exe)
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let output = Command::new(exe)
        .args([
            "--quick",
            "--rounds",
            "5",
            "--warmup",
            "1",
            "--check-runs",
            "1",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run magi-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Exit 1 only says a measurement could not be taken: `magi` or `magi-node` not built
    // next to it (`cargo test -p magi-bench` alone does not build them).
    let others_built = siblings.join("magi").is_file() && siblings.join("magi-node").is_file();
    match output.status.code() {
        Some(0) => {}
        Some(1) if !others_built => {}
        _ => panic!("magi-bench failed ({}):\n{stderr}\n{stdout}", output.status),
    }
    assert!(
        stdout.contains("roundtrip_p50"),
        "the table is printed:\n{stdout}"
    );

    let figures: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&out).expect("the figures file")).expect("JSON");
    let find = |name: &str| figures.iter().find(|f| f["name"] == name && f["n"] == 1);
    for f in &figures {
        for key in ["name", "n", "value", "unit"] {
            assert!(!f[key].is_null(), "{key} missing in {f}");
        }
    }
    for name in [
        "roundtrip_p50",
        "roundtrip_p99",
        "orchestrator_cpu_per_trigger",
        "setup",
    ] {
        let f = find(name).unwrap_or_else(|| panic!("no {name} for N = 1 in {figures:?}"));
        assert!(f["value"].as_f64().is_some_and(|v| v > 0.0), "{f}");
        assert!(
            f["baseline"].as_f64().is_some_and(|v| v > 0.0),
            "{name} has its bare-lapin baseline: {f}"
        );
        assert!(f["ratio"].as_f64().is_some(), "{f}");
    }
    // The routed reference (bare lapin on MAGI-rs's exchanges, keys and properties) and
    // MAGI-rs against it.
    for name in ["roundtrip_p50_over_routed", "routed_p50_over_bare"] {
        let f = find(name).unwrap_or_else(|| panic!("no {name} for N = 1 in {figures:?}"));
        assert!(
            f["baseline"].as_f64().is_some_and(|v| v > 0.0) && f["ratio"].as_f64().is_some(),
            "{f}"
        );
    }
    for name in ["teardown", "magi_node_rss_idle", "magi_node_rss_running"] {
        assert!(find(name).is_some(), "no {name} in {figures:?}");
    }
    if others_built {
        assert!(
            figures.iter().any(|f| f["name"] == "check_10k_best"),
            "no check figure in {figures:?}"
        );
    }
}

#[test]
fn the_benchmark_runs_with_permissions_on_and_removes_its_vhost_and_users() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("figures.json");
    let output = Command::new(env!("CARGO_BIN_EXE_magi-bench"))
        .args([
            "--permissions",
            "--sizes",
            "3",
            "--rounds",
            "5",
            "--warmup",
            "1",
        ])
        .args(["--no-bare", "--no-floor", "--check-runs", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run magi-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "magi-bench --permissions failed ({}):\n{stderr}",
        output.status
    );
    // The vhost and users it made, named in its log line `permissions on: vhost V, ...,
    // orchestrator O`.
    let line = stderr
        .lines()
        .find(|l| l.contains("permissions on: vhost"))
        .unwrap_or_else(|| panic!("no permissions line in:\n{stderr}"));
    let vhost = line
        .split("vhost ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("vhost named");
    let figures: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&out).expect("the figures file")).expect("JSON");
    let p50 = figures
        .iter()
        .find(|f| f["name"] == "roundtrip_p50" && f["n"] == 3)
        .unwrap_or_else(|| panic!("no round trip at N = 3 in {figures:?}\n{stderr}"));
    assert!(p50["value"].as_f64().is_some_and(|v| v > 0.0), "{p50}");
    assert!(
        p50["note"]
            .as_str()
            .is_some_and(|n| n.contains("permissions on")),
        "{p50}"
    );
    let ctl = |args: &[&str]| {
        let o = Command::new("rabbitmqctl")
            .args(args)
            .output()
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(
        !ctl(&["-q", "list_vhosts", "name"])
            .lines()
            .any(|l| l == vhost),
        "vhost {vhost} left behind"
    );
    let user_prefix = format!("mb{}", &vhost["magi-bench-".len()..]);
    let users = ctl(&["-q", "list_users"]);
    assert!(
        !users.lines().any(|l| l.starts_with(&user_prefix)),
        "users {user_prefix}* left behind:\n{users}"
    );
}
