//! `--failover orchestrator|nodes` (with `--cluster`): during the measured rounds, the
//! broker node that the orchestrator's connection uses, or the one the fleet's connections
//! use, is stopped (`rabbitmqctl stop_app`) for [`DOWN`] and started again. The run must
//! complete; the figures come from its record's `events.jsonl`:
//!
//! - `failover_recovery`: the longest gap between two consecutive triggers received from
//!   the stop until 30 s after the restart (the time to recover, as the stream of triggers
//!   sees it);
//! - `failover_round`: the longest round that overlapped the outage;
//! - `failover_triggers_once`: 1 when every round got exactly one trigger from each of the
//!   N nodes (none missing, none twice), else 0 (the note says how many were missing or
//!   repeated).
//!
//! The orchestrator's broker list is turned by one ([`orchestrator_url`]) so that it starts
//! on another node than the fleet's first connection, and stopping one side's node does
//! not hit the other (checked before the stop, from `rabbitmqctl list_connections`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use magi_bus::amqp::AmqpBus;
use magi_testkit::Cluster;
use serde_json::Value;

use crate::report::Figure;
use crate::sys::epoch;

/// How long the broker node stays stopped.
pub const DOWN: Duration = Duration::from_secs(3);

/// Whose broker node is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Victim {
    /// The node the orchestrator (the driver's bus) is connected to.
    Orchestrator,
    /// The node most of the fleet's connections (the node agents) are connected to.
    Nodes,
}

impl Victim {
    /// "the orchestrator's", "the node agents'".
    fn whose(self) -> &'static str {
        match self {
            Victim::Orchestrator => "the orchestrator's",
            Victim::Nodes => "the node agents'",
        }
    }
}

/// The orchestrator's broker list: the cluster's turned by one, so that it starts on
/// another node than the fleet's first connection (which takes the list as it is).
pub fn orchestrator_url(url: &str) -> String {
    crate::fleet::spread(url, 1)
}

/// One outage: which node, when it was stopped and started again (epoch seconds).
#[derive(Debug, Clone)]
pub struct Outage {
    pub victim: Victim,
    pub node: usize,
    pub stopped: f64,
    pub started: f64,
}

/// The outage, planned: it waits for its round, then stops and starts the node.
pub struct Bounce {
    over: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Option<Outage>>>,
}

impl Bounce {
    /// Waits (polling the run record's `events_path`) until `at_ping` pings have been sent,
    /// then stops the victim's broker node for [`DOWN`] and starts it again. `bus` is the
    /// orchestrator's; `prefix` names the fleet's connections (`<prefix>fleet#i`).
    pub fn start(
        victim: Victim,
        bus: AmqpBus,
        events_path: PathBuf,
        at_ping: usize,
        prefix: String,
    ) -> Bounce {
        let over = Arc::new(AtomicBool::new(false));
        let run_over = over.clone();
        let task = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(900);
            while sent_pings(&events_path) < at_ping {
                if run_over.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                if Instant::now() > deadline {
                    bail!("failover: ping {at_ping} was not sent within 15 minutes");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let orch = node_of_url(&bus.broker())
                .with_context(|| format!("failover: the orchestrator's broker {}", bus.broker()))?;
            let node = match victim {
                Victim::Orchestrator => orch,
                Victim::Nodes => {
                    let fleet = tokio::task::spawn_blocking(move || fleet_nodes(&prefix)).await??;
                    let Some((&node, _)) = fleet
                        .iter()
                        .filter(|(n, _)| **n != orch)
                        .max_by_key(|(_, count)| **count)
                    else {
                        bail!(
                            "failover: every fleet connection is on node {orch}, the orchestrator's ({fleet:?}): stopping it would hit both"
                        );
                    };
                    node
                }
            };
            eprintln!(
                "magi-bench: failover: stopping node {node} ({}; the orchestrator is on node {orch}) for {} s",
                victim.whose(),
                DOWN.as_secs_f64()
            );
            let (stopped, started) = tokio::task::spawn_blocking(move || bounce(node)).await??;
            eprintln!("magi-bench: failover: node {node} started again");
            Ok(Some(Outage {
                victim,
                node,
                stopped,
                started,
            }))
        });
        Bounce { over, task }
    }

    /// The run is over: the outage, once it is done (an error when the run ended before it
    /// came).
    pub async fn finish(self) -> Result<Outage> {
        self.over.store(true, Ordering::SeqCst);
        match self.task.await.context("failover task")?? {
            Some(o) => Ok(o),
            None => bail!("failover: the run ended before the outage's round"),
        }
    }
}

/// Stops node `n`'s app, waits [`DOWN`], starts it again (also when something in between
/// fails); (stopped, started) as epoch seconds, each when `rabbitmqctl` returned.
fn bounce(n: usize) -> Result<(f64, f64)> {
    struct StartAgain(usize);
    impl Drop for StartAgain {
        fn drop(&mut self) {
            if let Err(e) = Cluster::ctl(self.0, &["start_app"]) {
                eprintln!(
                    "magi-bench: failover: could not start node {} again: {e}",
                    self.0
                );
            }
        }
    }
    Cluster::ctl(n, &["stop_app"]).with_context(|| format!("stopping node {n}"))?;
    let guard = StartAgain(n);
    let stopped = epoch();
    std::thread::sleep(DOWN);
    drop(guard);
    Ok((stopped, epoch()))
}

/// The cluster node (1-3) a broker URL names, by its port.
fn node_of_url(url: &str) -> Option<usize> {
    let port: u16 = url
        .split('@')
        .next_back()?
        .split(['/', ','])
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()?;
    (1..=3).find(|n| Cluster::port(*n) == port)
}

/// Node → how many of the fleet's connections (named `<prefix>fleet#i`) it holds.
fn fleet_nodes(prefix: &str) -> Result<BTreeMap<usize, usize>> {
    let out = Cluster::ctl_any(&["list_connections", "name", "client_properties"])
        .context("rabbitmqctl list_connections")?;
    let mut nodes = BTreeMap::new();
    let tag = format!("{prefix}fleet#");
    for line in out.lines().filter(|l| l.contains(&tag)) {
        // `name` is "127.0.0.1:51234 -> 127.0.0.1:5681".
        let node = line
            .split("->")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
            .and_then(|port| (1..=3).find(|n| Cluster::port(*n) == port));
        if let Some(node) = node {
            *nodes.entry(node).or_default() += 1;
        }
    }
    if nodes.is_empty() {
        bail!("no connection named {tag}… on the cluster");
    }
    Ok(nodes)
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Pings sent so far, by the run record (flushed by the driver every 500 ms).
fn sent_pings(path: &Path) -> usize {
    events(path).iter().filter(|e| is_ping(e)).count()
}

fn is_ping(e: &Value) -> bool {
    e["dir"] == "sent" && e["kind"] == "call" && e["body"]["call"]["method"] == "ping"
}

/// What the run record says about the rounds around an outage.
#[derive(Debug, Clone)]
pub struct Measured {
    pub figures: Vec<Figure>,
    /// Every round got exactly one trigger from each node.
    pub once: bool,
}

/// The failover figures of a run of `n` nodes and `pings` rounds (warm-up included).
pub fn measure(n: usize, events_path: &Path, outage: &Outage, pings: usize) -> Result<Measured> {
    let all = events(events_path);
    // Ping calls: (seq, time sent).
    let sent: Vec<(u64, f64)> = all
        .iter()
        .filter(|e| is_ping(e))
        .filter_map(|e| Some((e["body"]["call"]["seq"].as_u64()?, e["time"].as_f64()?)))
        .collect();
    if sent.len() != pings {
        bail!(
            "failover: {} pings in the record, {pings} expected",
            sent.len()
        );
    }
    let seqs: BTreeSet<u64> = sent.iter().map(|(s, _)| *s).collect();
    // Their triggers: (call seq, node) → how many; and every arrival time.
    let mut got: BTreeMap<(u64, String), usize> = BTreeMap::new();
    let mut times = Vec::new();
    for e in &all {
        if e["dir"] != "recv" || e["kind"] != "trigger" || e["body"]["event"] != "pinged" {
            continue;
        }
        let Some(seq) = e["body"]["call"].as_u64().filter(|s| seqs.contains(s)) else {
            continue;
        };
        for node in e["body"]["nodes"].as_array().into_iter().flatten() {
            *got.entry((seq, node.as_str().unwrap_or("").to_string()))
                .or_default() += 1;
        }
        if let Some(t) = e["time"].as_f64() {
            times.push(t);
        }
    }
    let names = crate::fleet::node_names("n", n);
    let (mut missing, mut repeated) = (0usize, 0usize);
    for seq in &seqs {
        for name in &names {
            match got.get(&(*seq, name.clone())).copied().unwrap_or(0) {
                0 => missing += 1,
                1 => {}
                k => repeated += k - 1,
            }
        }
    }
    let strangers = got.keys().filter(|(_, node)| !names.contains(node)).count();
    let once = missing == 0 && repeated == 0 && strangers == 0;

    times.sort_by(f64::total_cmp);
    let until = outage.started + 30.0;
    let gap = times
        .windows(2)
        .filter(|w| w[1] > outage.stopped && w[0] < until)
        .map(|w| w[1] - w[0])
        .fold(0.0, f64::max);
    // Rounds: ping i sent → ping i+1 sent (the last: → its last trigger).
    let last_trigger = times.last().copied().unwrap_or(0.0);
    let round = sent
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (*t, sent.get(i + 1).map_or(last_trigger, |(_, u)| *u)))
        .filter(|(a, b)| *b > outage.stopped && *a < outage.started)
        .map(|(a, b)| b - a)
        .fold(0.0, f64::max);
    let what = format!(
        "node {} ({}) down {:.1} s (stop_app returned → start_app returned)",
        outage.node,
        outage.victim.whose(),
        outage.started - outage.stopped
    );
    let figures = vec![
        Figure::new("failover_recovery", n, gap, "s").note(format!(
            "{what}: longest gap between two triggers from the stop until 30 s after the restart"
        )),
        Figure::new("failover_round", n, round, "s")
            .note(format!("{what}: longest round overlapping the outage")),
        Figure::new("failover_triggers_once", n, if once { 1.0 } else { 0.0 }, "").note(format!(
            "{} rounds x {n} nodes: {missing} missing, {repeated} repeated, {strangers} from unknown nodes",
            seqs.len()
        )),
    ];
    Ok(Measured { figures, once })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[Value]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let text: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
        std::fs::write(f.path(), text.join("\n")).unwrap();
        f
    }

    fn ping(seq: u64, t: f64) -> Value {
        serde_json::json!({"time": t, "dir": "sent", "kind": "call",
            "body": {"call": {"seq": seq, "method": "ping"}}})
    }

    fn pinged(seq: u64, node: &str, t: f64) -> Value {
        serde_json::json!({"time": t, "dir": "recv", "kind": "trigger",
            "body": {"event": "pinged", "nodes": [node], "call": seq}})
    }

    fn outage() -> Outage {
        Outage {
            victim: Victim::Nodes,
            node: 1,
            stopped: 10.5,
            started: 13.5,
        }
    }

    #[test]
    fn a_run_with_every_trigger_once_measures_the_gap_and_the_round_across_the_outage() {
        let f = write(&[
            ping(1, 9.0),
            pinged(1, "n0", 9.1),
            pinged(1, "n1", 9.2),
            ping(2, 10.0),
            pinged(2, "n0", 10.1),
            pinged(2, "n1", 14.6),
            ping(3, 14.7),
            pinged(3, "n1", 14.8),
            pinged(3, "n0", 14.9),
        ]);
        let m = measure(2, f.path(), &outage(), 3).unwrap();
        assert!(m.once);
        let value = |name: &str| m.figures.iter().find(|f| f.name == name).unwrap().value;
        assert!((value("failover_recovery") - 4.5).abs() < 1e-9);
        assert!((value("failover_round") - 4.7).abs() < 1e-9);
        assert_eq!(value("failover_triggers_once"), 1.0);
    }

    #[test]
    fn a_repeated_or_missing_trigger_is_not_once() {
        let repeated = write(&[
            ping(1, 9.0),
            pinged(1, "n0", 9.1),
            pinged(1, "n1", 9.2),
            pinged(1, "n1", 12.0),
        ]);
        let m = measure(2, repeated.path(), &outage(), 1).unwrap();
        assert!(!m.once);
        assert!(m.figures[2]
            .note
            .as_deref()
            .unwrap()
            .contains("0 missing, 1 repeated"));
        let missing = write(&[ping(1, 9.0), pinged(1, "n0", 9.1)]);
        let m = measure(2, missing.path(), &outage(), 1).unwrap();
        assert!(!m.once);
        assert!(m.figures[2]
            .note
            .as_deref()
            .unwrap()
            .contains("1 missing, 0 repeated"));
    }

    #[test]
    fn broker_urls_name_their_cluster_node_by_port() {
        let url = format!("amqp://guest:***@127.0.0.1:{}/%2f", Cluster::port(2));
        assert_eq!(node_of_url(&url), Some(2));
        assert_eq!(node_of_url("amqp://guest:***@127.0.0.1:5672/%2f"), None);
    }
}
