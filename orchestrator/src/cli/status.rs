//! `magi status`: which node agents are alive on a broker, their groups, agents and runs.
//!
//! It listens to the nodes' announcements and heartbeats through an all-runs tap (a queue
//! of its own, bounded and expiring), so it needs nothing from any orchestrator and only
//! read access to the broker. Also home of what `status` and `tap` share: finding the
//! broker and the bus options.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clap::Args;
use magi_bus::amqp::{AmqpBus, BusOptions};
use magi_bus::Bus;
use magi_proto::NodeStatus;
use serde_json::{json, Value};

use magi_proto::redact_url as redact;

use super::exit::{EXIT_FAILED as EXIT_MISSING, EXIT_INFRA, EXIT_INVALID, EXIT_OK};

/// Where the broker is, shared by `magi status` and `magi tap`.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// RabbitMQ URL (amqp://user:pass@host:port/vhost).
    #[arg(long, env = "MAGI_BROKER")]
    pub broker: Option<String>,
    /// Experiment name: finds the broker in the experiment's configuration file.
    #[arg(short = 'e', long)]
    pub experiment: Option<String>,
    /// Project name (with --experiment).
    #[arg(short = 'p', long)]
    pub project: Option<String>,
    /// Prefix of every broker object (tests use a unique one).
    #[arg(long, hide = true, env = "MAGI_BUS_PREFIX")]
    pub bus_prefix: Option<String>,
}

impl BrokerArgs {
    /// The broker URL: `--broker`, or the experiment's configuration file.
    pub fn url(&self) -> Result<String, String> {
        if let Some(b) = &self.broker {
            return Ok(b.clone());
        }
        match (&self.experiment, &self.project) {
            (Some(e), Some(p)) => crate::experiment::broker_of(p, e),
            (None, None) => Err(
                "no broker: give --broker amqp://... (or MAGI_BROKER), or -e EXPERIMENT -p PROJECT"
                    .into(),
            ),
            _ => Err("--experiment and --project go together".into()),
        }
    }

    /// Connects to the broker, reporting failures as `magi` exit codes.
    pub async fn connect(&self, what: &str) -> Result<(AmqpBus, String), i32> {
        let url = self.url().map_err(|e| {
            eprintln!("error: {e}");
            EXIT_INVALID
        })?;
        let mut opts = bus_options(self.bus_prefix.as_deref());
        opts.connection_name = Some(format!("magi {what}"));
        opts.connect_timeout = Duration::from_secs(10);
        match AmqpBus::connect(&url, opts).await {
            Ok(bus) => Ok((bus, redact(&url))),
            Err(e) => {
                eprintln!("error: cannot reach the broker at {}: {e}", redact(&url));
                Err(EXIT_INFRA)
            }
        }
    }
}

/// Bus options of the command line: the production prefix, or the one given (`--bus-prefix`)
/// or in `MAGI_BUS_PREFIX` (tests work under a unique prefix).
pub fn bus_options(prefix: Option<&str>) -> BusOptions {
    let env = std::env::var("MAGI_BUS_PREFIX")
        .ok()
        .filter(|p| !p.is_empty());
    match prefix.map(str::to_string).or(env) {
        Some(p) => BusOptions::with_prefix(&p),
        None => BusOptions::default(),
    }
}

/// Arguments of `magi status`.
#[derive(Args, Debug)]
#[command(after_help = "\
Listens to the node agents' heartbeats for --wait seconds (a node heartbeats every 2 s by
default) and prints each node agent heard: alive or stopped, its pid, its heartbeat period,
when it was last heard, and per run the groups it joined and the agents it runs.

Exit codes: 0 node agents found (and every --expect'ed one); 1 none found, or an expected
node is missing; 2 command-line error; 3 the broker cannot be reached.")]
pub struct StatusArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// How long to listen, in seconds (at least two heartbeat periods).
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = super::parse::seconds)]
    pub wait: Duration,
    /// Wait (at most --wait) until these nodes are heard, then stop; fail naming the missing
    /// ones (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub expect: Vec<String>,
    /// One JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What was heard of one node.
struct Heard {
    status: NodeStatus,
    at: Instant,
    beats: usize,
}

/// Runs `magi status`; returns the exit code.
pub fn run(args: StatusArgs) -> i32 {
    super::block_on(status(args))
}

async fn status(args: StatusArgs) -> i32 {
    let (bus, shown) = match args.broker.connect("status").await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut tap = match bus.tap(None).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot listen on the broker at {shown}: {e}");
            bus.close().await;
            return EXIT_INFRA;
        }
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.wait;
    let expected: BTreeSet<&str> = args.expect.iter().map(String::as_str).collect();
    let mut heard: BTreeMap<String, Heard> = BTreeMap::new();
    let mut lost_link = false;
    loop {
        if !expected.is_empty()
            && expected
                .iter()
                .all(|n| heard.get(*n).is_some_and(|h| h.status.alive))
        {
            break;
        }
        match tokio::time::timeout_at(deadline, tap.items.recv()).await {
            Err(_) => break,
            Ok(None) => {
                lost_link = true;
                break;
            }
            Ok(Some(item)) if item.kind == "node" => {
                let Ok(s) = serde_json::from_value::<NodeStatus>(item.body) else {
                    continue;
                };
                let beats = heard.get(&s.node).map_or(0, |h| h.beats) + 1;
                heard.insert(
                    s.node.clone(),
                    Heard {
                        status: s,
                        at: Instant::now(),
                        beats,
                    },
                );
            }
            Ok(Some(_)) => {}
        }
    }
    let waited = started.elapsed();
    bus.close().await;
    if lost_link {
        eprintln!("error: the connection to {shown} was lost while listening");
        return EXIT_INFRA;
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|n| !heard.get(**n).is_some_and(|h| h.status.alive))
        .copied()
        .collect();
    let any_alive = heard.values().any(|h| h.status.alive);
    if args.json {
        let nodes: Vec<Value> = heard
            .values()
            .map(|h| {
                json!({
                    "node": h.status.node,
                    "alive": h.status.alive,
                    "pid": h.status.pid,
                    "heartbeat_ms": h.status.heartbeat_ms,
                    "last_heard_s": h.at.elapsed().as_secs_f64(),
                    "time": h.status.time,
                    "heard": h.beats,
                    "runs": h.status.runs,
                })
            })
            .collect();
        println!(
            "{}",
            json!({"broker": shown, "listened_s": waited.as_secs_f64(), "nodes": nodes, "runs": runs_view(&heard), "missing": missing})
        );
    } else {
        print_table(&heard, &shown, waited);
        if !missing.is_empty() {
            eprintln!("missing: {}", missing.join(", "));
        }
    }
    if any_alive && missing.is_empty() {
        EXIT_OK
    } else {
        EXIT_MISSING
    }
}

/// Run → its nodes, groups and agents, as the nodes report them.
fn runs_view(heard: &BTreeMap<String, Heard>) -> Value {
    /// Nodes, groups and agents of one run.
    type Sets<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>, BTreeSet<&'a str>);
    let mut runs: BTreeMap<&str, Sets> = BTreeMap::new();
    for h in heard.values().filter(|h| h.status.alive) {
        for m in &h.status.runs {
            let e = runs.entry(&m.run).or_default();
            e.0.insert(&h.status.node);
            e.1.extend(m.groups.iter().map(String::as_str));
            e.2.extend(m.agents.iter().map(String::as_str));
        }
    }
    runs.into_iter().map(|(run, (nodes, groups, agents))| json!({"run": run, "nodes": nodes, "groups": groups, "agents": agents})).collect()
}

fn print_table(heard: &BTreeMap<String, Heard>, broker: &str, waited: Duration) {
    if heard.is_empty() {
        println!(
            "no node agent heard on {broker} within {:.1} s",
            waited.as_secs_f64()
        );
        return;
    }
    let width = heard
        .keys()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<7}  {:>8}  {:>9}  {:>10}  RUNS",
        "NODE", "STATE", "PID", "HEARTBEAT", "LAST HEARD"
    );
    for h in heard.values() {
        let s = &h.status;
        let runs = if s.runs.is_empty() {
            "-".to_string()
        } else {
            s.runs
                .iter()
                .map(|m| {
                    format!(
                        "{} (groups: {}; agents: {})",
                        m.run,
                        list(&m.groups),
                        list(&m.agents)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<width$}  {:<7}  {:>8}  {:>8.1}s  {:>6.1}s ago  {runs}",
            s.node,
            if s.alive { "alive" } else { "stopped" },
            s.pid,
            s.heartbeat_ms as f64 / 1000.0,
            h.at.elapsed().as_secs_f64(),
        );
    }
    let runs = runs_view(heard);
    if let Some(runs) = runs.as_array().filter(|r| !r.is_empty()) {
        println!();
        println!("RUNS");
        for r in runs {
            let names = |k: &str| {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            println!(
                "{}: nodes {}; groups {}; agents {}",
                r["run"].as_str().unwrap_or("?"),
                names("nodes"),
                or_dash(names("groups")),
                or_dash(names("agents"))
            );
        }
    }
}

fn list(items: &[String]) -> String {
    or_dash(items.join(" "))
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magi_proto::RunMembership;

    fn heard(node: &str, alive: bool, runs: Vec<RunMembership>) -> Heard {
        Heard {
            status: NodeStatus {
                node: node.into(),
                pid: 1,
                time: 0.0,
                heartbeat_ms: 2000,
                runs,
                alive,
            },
            at: Instant::now(),
            beats: 1,
        }
    }

    #[test]
    fn runs_are_gathered_from_the_alive_nodes() {
        let m = |run: &str, g: &str, a: &str| RunMembership {
            run: run.into(),
            groups: vec![g.into()],
            agents: vec![a.into()],
        };
        let mut all = BTreeMap::new();
        all.insert(
            "a".to_string(),
            heard("a", true, vec![m("r1", "g1", "x"), m("r2", "g2", "y")]),
        );
        all.insert("b".to_string(), heard("b", true, vec![m("r1", "g3", "z")]));
        all.insert("c".to_string(), heard("c", false, vec![m("r3", "g", "w")]));
        let v = runs_view(&all);
        assert_eq!(
            v,
            json!([
                {"run": "r1", "nodes": ["a", "b"], "groups": ["g1", "g3"], "agents": ["x", "z"]},
                {"run": "r2", "nodes": ["a"], "groups": ["g2"], "agents": ["y"]},
            ])
        );
    }

    #[test]
    fn the_prefix_comes_from_the_option_then_the_environment() {
        assert_eq!(bus_options(Some("magi.test.x.")).prefix, "magi.test.x.");
    }
}
