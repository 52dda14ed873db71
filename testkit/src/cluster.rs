//! The local three-node RabbitMQ cluster of `scripts/cluster`, shared by every test that
//! needs one: started once (by the first test that asks, under a lock, so test binaries
//! running at once never race), then left running for the next ones.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{flock, KitError};

/// The cluster: three nodes `magi1..3@localhost` on 127.0.0.1, AMQP ports `base+1..base+3`
/// (`MAGI_CLUSTER_PORT`, default 5680, as `scripts/cluster` reads it).
pub struct Cluster;

/// The lock file behind [`ClusterGuard`].
pub const CLUSTER_LOCK_PATH: &str = "/tmp/magi-cluster.lock";
/// Held while `scripts/cluster start` runs.
const START_LOCK_PATH: &str = "/tmp/magi-cluster-start.lock";

impl Cluster {
    /// The first AMQP port less one.
    pub fn base_port() -> u16 {
        std::env::var("MAGI_CLUSTER_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(5680)
    }

    /// The AMQP port of node `n` (1-3).
    pub fn port(n: usize) -> u16 {
        Self::base_port() + n as u16
    }

    /// A broker list naming the nodes in this order (`[2, 3, 1]`: node 2 first), as
    /// several hosts in one URL.
    pub fn url(order: &[usize]) -> String {
        let hosts: Vec<String> = order
            .iter()
            .map(|n| format!("127.0.0.1:{}", Self::port(*n)))
            .collect();
        format!("amqp://guest:guest@{}/%2f", hosts.join(","))
    }

    /// Whether `url`'s first broker is a node of this cluster.
    pub fn serves(url: &str) -> bool {
        let Ok(brokers) = magi_bus::amqp::Brokers::parse(url) else {
            return false;
        };
        let first = &brokers.urls[0];
        (1..=3).any(|n| first.contains(&format!("127.0.0.1:{}/", Self::port(n))))
    }

    /// `scripts/cluster` of this workspace.
    pub fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
    }

    /// Starts the cluster unless it runs (once per process; a few seconds when it runs
    /// already, about 20 s from nothing). Its nodes stopped by a test that died are started
    /// again.
    pub async fn ensure() -> Result<(), KitError> {
        static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
        if let Some(done) = STARTED.get() {
            return done.clone().map_err(|reason| fail("start", reason));
        }
        let _lock = flock(START_LOCK_PATH, libc::LOCK_EX)
            .await
            .map_err(|e| fail("start", e.to_string()))?;
        let outcome = tokio::task::spawn_blocking(|| run(&["start"]).map(|_| ()))
            .await
            .map_err(|e| fail("start", e.to_string()))?
            .map_err(|e| e.to_string());
        STARTED.get_or_init(|| outcome.clone());
        outcome.map_err(|reason| fail("start", reason))
    }

    /// `rabbitmqctl` on node `n` (through `scripts/cluster ctl`, which knows its cookie).
    pub fn ctl(n: usize, args: &[&str]) -> Result<String, KitError> {
        let mut all = vec!["ctl".to_string(), n.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&all)
    }

    /// `rabbitmqctl` on the first node that answers.
    pub fn ctl_any(args: &[&str]) -> Result<String, KitError> {
        let mut last = None;
        for n in 1..=3 {
            match Self::ctl(n, args) {
                Ok(out) => return Ok(out),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three nodes were tried"))
    }
}

fn fail(args: &str, reason: String) -> KitError {
    KitError::Ctl {
        args: format!("scripts/cluster {args}"),
        reason,
    }
}

fn run(args: &[&str]) -> Result<String, KitError> {
    let out = Command::new(Cluster::script())
        .args(args)
        .output()
        .map_err(|e| fail(&args.join(" "), e.to_string()))?;
    if !out.status.success() {
        let mut reason = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if reason.is_empty() {
            reason = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(fail(&args.join(" "), reason));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A hold on the cluster across test processes: tests that merely use it hold it shared;
/// a test that stops and starts its nodes holds it exclusively.
pub struct ClusterGuard {
    _file: std::fs::File,
}

impl ClusterGuard {
    /// Wait for a shared hold.
    pub async fn shared() -> std::io::Result<ClusterGuard> {
        Ok(ClusterGuard {
            _file: flock(CLUSTER_LOCK_PATH, libc::LOCK_SH).await?,
        })
    }

    /// Wait for the exclusive hold.
    pub async fn exclusive() -> std::io::Result<ClusterGuard> {
        Ok(ClusterGuard {
            _file: flock(CLUSTER_LOCK_PATH, libc::LOCK_EX).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Cluster;

    #[test]
    fn cluster_urls_list_the_nodes_in_the_order_asked() {
        let base = Cluster::base_port();
        assert_eq!(
            Cluster::url(&[2, 1]),
            format!(
                "amqp://guest:guest@127.0.0.1:{},127.0.0.1:{}/%2f",
                base + 2,
                base + 1
            )
        );
        assert!(Cluster::serves(&Cluster::url(&[3, 1, 2])));
        assert!(!Cluster::serves("amqp://guest:guest@127.0.0.1:5672/%2f"));
    }
}
