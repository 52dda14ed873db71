//! What the end-to-end tests share.

#![allow(dead_code)] // not every module uses every helper

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The real `magi` binary.
pub fn magi_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_magi"))
}

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `magi-node`, next to `magi` in the target directory; built (with the standard agents)
/// once per test binary unless `MAGI_TEST_NO_BUILD` is set.
pub fn node_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = magi_bin().parent().expect("target dir").to_path_buf();
            let bin = dir.join("magi-node");
            if std::env::var_os("MAGI_TEST_NO_BUILD").is_none() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-p", "magi-node", "-p", "magi-agents", "--bins"])
                    .current_dir(workspace())
                    .status()
                    .expect("running cargo build");
                assert!(
                    status.success(),
                    "cargo build -p magi-node -p magi-agents failed"
                );
            }
            assert!(
                bin.is_file(),
                "{} is missing: run `cargo build -p magi-node -p magi-agents`",
                bin.display()
            );
            bin
        })
        .clone()
}

/// `magi` with no colours and no broker or record directory inherited.
pub fn magi() -> Command {
    let mut c = Command::new(magi_bin());
    c.env("NO_COLOR", "1")
        .env_remove("MAGI_BROKER")
        .env_remove("MAGI_RECORD_DIR");
    c
}

/// `magi data query STORE ARGS --json` run by `magi` (a [`magi()`], or one with a test's
/// environment), one JSON value per record; the query must succeed.
pub fn data_query(
    mut magi: Command,
    store: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> Vec<serde_json::Value> {
    let out = magi
        .args(["data", "query"])
        .arg(store)
        .args(args)
        .arg("--json")
        .output()
        .expect("magi data query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect()
}

/// The shared folder of the product (`../shared`, or `MAGI_SHARED`).
pub fn shared() -> PathBuf {
    std::env::var_os("MAGI_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// This crate's test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Stdout and stderr together, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

static HOST_AGENTS: Mutex<()> = Mutex::new(());

/// Held by every test that runs the case study's agents on this host's own addresses (two
/// of them at once would both bind port 80 and count with the same nftables tables), and by
/// those that flood, capture or measure loopback (a flood would fill another's capture).
pub fn host_agents() -> MutexGuard<'static, ()> {
    HOST_AGENTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The case study's packet counter (`counted`: the server's outgoing records towards the
/// client) saw at least the bodies of the client's requests (`requests`) made before its
/// last sample.
pub fn assert_counted_covers_requests(
    counted: &[serde_json::Value],
    requests: &[serde_json::Value],
) {
    let bytes: u64 = counted
        .iter()
        .filter_map(|r| r["data"]["bytes"].as_u64())
        .sum();
    // Samples are per-interval deltas; bodies sent after the last sample are not in any.
    // Records are stamped when they reach the node agent, a little after the fact, hence
    // the margin.
    let last_sample = counted
        .iter()
        .filter_map(|r| r["created"].as_f64())
        .fold(0.0, f64::max);
    let asked: u64 = requests
        .iter()
        .filter(|r| r["created"].as_f64().is_some_and(|t| t < last_sample - 0.1))
        .filter_map(|r| r["data"]["size_download"].as_u64())
        .sum();
    assert!(
        bytes >= asked && asked > 0,
        "the server sent at least the bodies of the requests before the last sample: counted {bytes}, bodies {asked}"
    );
}
