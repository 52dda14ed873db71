//! MAGI-rs itself: the real `Driver` (the run loop of `magi run`, with its engine, console
//! and run record) over the AMQP bus, driving N real node agents (`magi_node::run`, in the
//! fleet child) that each run the benchmark's agent as a process.
//!
//! The procedure is generated: one group of the N nodes, one agent (a module directory with
//! a 1 MiB random file, shipped with `loadAgent` as `magi run` ships it), and one stream of
//! `warmup + rounds` pairs: an event `ping` with `trigger: pinged` to the group, then a wait
//! for `pinged` from every node. Figures come from the run record's `events.jsonl` (every
//! call sent and trigger received, stamped when the driver handled it):
//! - setup: first `joinGroup` sent → first `ping` sent (groups built, agent loaded);
//! - round i: `ping` i sent → `ping` i+1 sent (the last one: → `unloadAgent` sent), i.e.
//!   the event out, every node's trigger back, the wait completed;
//! - teardown: `unloadAgent` sent → the driver returned and the run's bus objects closed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use magi::console::{Console, Mode};
use magi::driver::{Driver, DriverConfig, Shipment};
use magi::record::RunRecord;
use magi_bus::amqp::AmqpBus;
use magi_bus::Bus;
use magi_engine::Outcome;
use magi_node::pack::Packed;
use serde_json::Value;

use crate::fleet::{bus_options, node_names, FleetArgs, Fleets};
use crate::sys::{cpu_between, epoch, CpuSampler, StdoutTo};

/// The agent module every node loads.
pub struct Module {
    /// Its directory.
    pub dir: PathBuf,
    /// The packed archive, as `magi run` ships it.
    pub packed: Packed,
}

impl Module {
    /// Writes a module directory: a manifest running the benchmark's agent program, and
    /// `payload.bin` of `payload` random bytes.
    pub fn create(dir: &Path, agent_program: &Path, payload: usize) -> Result<Module> {
        std::fs::create_dir_all(dir)?;
        let manifest = serde_json::json!({
            "name": "bench_pinger",
            "description": "answers every call with true (magi-bench)",
            "command": [agent_program],
            "methods": [{"name": "ping", "help": "returns true", "args": []}],
        });
        std::fs::write(
            dir.join("magi-agent.json"),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        std::fs::write(dir.join("payload.bin"), random_bytes(payload))?;
        let packed = magi_node::pack::pack(dir).context("packing the agent module")?;
        Ok(Module {
            dir: dir.to_path_buf(),
            packed,
        })
    }
}

/// Pseudo-random bytes (xorshift; incompressible enough for an archive's size to stay).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The generated procedure.
pub fn procedure_text(nodes: &[String], module_dir: &Path, pairs: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "groups:\n  pingers: [{}]", nodes.join(", "));
    let _ = writeln!(
        s,
        "agents:\n  pinger:\n    group: pingers\n    path: {}\n    execargs: {{}}\n    loadTimeout: 300000",
        serde_json::to_string(&module_dir.to_string_lossy()).unwrap_or_default()
    );
    s.push_str("streamstarts: [main]\neventstreams:\n  main:\n");
    for _ in 0..pairs {
        s.push_str(
            "    - type: event\n      agent: pinger\n      method: ping\n      trigger: pinged\n      args: {}\n",
        );
        s.push_str("    - type: trigger\n      triggers: [ {event: pinged}, {timeout: 120000, target: exit} ]\n");
    }
    s
}

/// What one run measured.
pub struct OursRun {
    /// Measured rounds.
    pub rounds: Vec<Duration>,
    /// Pre-flight: driver started → every node announced (not part of setup).
    pub preflight: Duration,
    /// Groups built and agent loaded everywhere.
    pub setup: Duration,
    /// Agents unloaded, groups left, run closed.
    pub teardown: Duration,
    /// This process's (the orchestrator's) CPU seconds per trigger over the measured rounds.
    pub cpu_per_trigger: f64,
    /// The broker's CPU seconds per trigger over the measured rounds.
    pub broker_cpu_per_trigger: Option<f64>,
    /// The node agents' (fleet process's) CPU seconds per trigger over the measured rounds.
    pub nodes_cpu_per_trigger: Option<f64>,
    /// How long the fleet took to start its node agents.
    pub fleet_ready: Duration,
    /// How long the fleet took to stop them.
    pub fleet_stop: Duration,
    /// The fleet processes' peak resident memory (their VmHWM summed), in KiB.
    pub fleet_peak_kib: u64,
    /// With `--failover`: the outage's figures.
    pub failover: Option<crate::failover::Measured>,
}

/// Runs the procedure on a fleet of `fleet_args.nodes` node agents (with `failover`, a
/// broker node stopped and started during the measured rounds: `failover.rs`).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    fleet_args: &FleetArgs,
    alive_every: Option<Duration>,
    watch_heartbeats: bool,
    module: &Module,
    warmup: usize,
    rounds: usize,
    work: &Path,
    failover: Option<crate::failover::Victim>,
) -> Result<OursRun> {
    let n = fleet_args.nodes;
    let names = node_names(&fleet_args.name_prefix, n);
    let text = procedure_text(&names, &module.dir, warmup + rounds);
    let checked = magi_aal::check_str("bench.aal", &text);
    let Some(procedure) = checked.procedure.clone() else {
        bail!(
            "the generated procedure is invalid:\n{}",
            checked.render(false)
        );
    };
    let procedure = Arc::new(procedure);
    let opts = bus_options(
        &fleet_args.prefix,
        fleet_args.max_message,
        format!("{}orchestrator", fleet_args.prefix),
    );
    let url = match failover {
        Some(_) => crate::failover::orchestrator_url(&fleet_args.url),
        None => fleet_args.url.clone(),
    };
    let bus = AmqpBus::connect(&url, opts)
        .await
        .context("orchestrator: connecting")?;
    let mut run = format!(
        "bench-n{n}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // With permissions the nodes admit one broker user, whose runs are `<user>.<anything>`.
    if let Some(user) = &fleet_args.allow {
        run = format!("{user}.{run}");
    }
    let link = bus.open_run(&run).await.context("opening the run")?;
    let port = link.port.clone();

    // Diagnostics: a second run link that sees every heartbeat, to tell late-made ones
    // (the node was busy) from late-delivered ones (the broker or the transport was).
    let watcher = if watch_heartbeats {
        let mut link = bus.open_run(&format!("{run}-watch")).await?;
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, f64, f64)>::new()));
        let (port, sink) = (link.port.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Some(m) = link.inbound.recv().await {
                if let magi_bus::Inbound::Node(st) = m {
                    if let Ok(mut v) = sink.lock() {
                        v.push((st.node, st.time, epoch()));
                    }
                }
            }
        });
        Some((port, task, seen))
    } else {
        None
    };
    let fleet = match Fleets::start(fleet_args, Duration::from_secs(600)).await {
        Ok(f) => f,
        Err(e) => {
            let _ = port.close().await;
            bus.close().await;
            return Err(e);
        }
    };
    let fleet_ready = fleet.ready_after;

    let mut shipments = HashMap::new();
    shipments.insert(
        "pinger".to_string(),
        Shipment {
            archive_b64: base64::engine::general_purpose::STANDARD.encode(&module.packed.bytes),
            sha256: module.packed.sha256.clone(),
        },
    );
    let config = DriverConfig {
        engine: magi_engine::Options {
            group_timeout_ms: 300_000,
            abort_on_failure: true,
            teardown: true,
        },
        preflight: Duration::from_secs(120),
        // As `magi run` over a broker: tell the nodes every 2 s that the run is alive.
        alive_every,
        shipments,
    };
    let mut record = RunRecord::create(&work.join("records"), &run, &procedure.files, "amqp")?;
    let mut console = Console::new(Mode::Text {
        color: false,
        live: false,
    });
    let brokers = crate::sys::find_brokers(&fleet_args.url);
    let fleet_pids = fleet.pids();
    let others: Vec<u32> = brokers.iter().chain(&fleet_pids).copied().collect();
    let bounce = failover.map(|victim| {
        let events = record.dir().join("events.jsonl");
        let at = warmup + rounds / 3;
        crate::failover::Bounce::start(victim, bus.clone(), events, at, fleet_args.prefix.clone())
    });
    let sampler = CpuSampler::start(Duration::from_millis(5), &others);
    let started = epoch();
    let outcome = {
        let _quiet = StdoutTo::file(&work.join(format!("console-n{n}.log")))?;
        let driver = Driver::new(
            procedure.clone(),
            &run,
            link,
            config,
            &mut console,
            &mut record,
            None,
        );
        let limit = Duration::from_secs(900);
        tokio::time::timeout(limit, driver.run()).await
    };
    let _ = port.close().await;
    let closed = epoch();
    let outage = match bounce {
        Some(b) => Some(b.finish().await),
        None => None,
    };
    let samples = sampler.finish();
    let _ = record.finish(&serde_json::json!({"outcome": "bench"}), 0);
    let fleet_peak_kib = fleet_pids
        .iter()
        .filter_map(|&pid| crate::sys::status_kb(pid, "VmHWM"))
        .sum();
    let fleet_stop = fleet.stop().await.unwrap_or_default();
    if let Some((port, task, seen)) = watcher {
        let _ = port.close().await;
        task.abort();
        let mut text = String::from("node\tmade\treceived\n");
        for (node, made, got) in seen.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = writeln!(text, "{node}\t{made:.3}\t{got:.3}");
        }
        let _ = std::fs::write(work.join(format!("heartbeats-n{n}.tsv")), text);
    }
    bus.close().await;
    match outcome {
        Err(_) => bail!("the run of {n} nodes did not finish within 15 minutes"),
        Ok(Err(infra)) => bail!("the run of {n} nodes failed: {infra:?}"),
        Ok(Ok(Outcome::Success)) => {}
        Ok(Ok(other)) => bail!(
            "the run of {n} nodes ended with {other:?} (console: {})",
            work.join(format!("console-n{n}.log")).display()
        ),
    }

    let events = record.dir().join("events.jsonl");
    let failover = match outage {
        Some(o) => Some(crate::failover::measure(n, &events, &o?, warmup + rounds)?),
        None => None,
    };
    let sent = sent_calls(&events)?;
    let first = |m: &str| sent.iter().find(|(_, method)| method == m).map(|(t, _)| *t);
    let pings: Vec<f64> = sent
        .iter()
        .filter(|(_, m)| m == "ping")
        .map(|(t, _)| *t)
        .collect();
    let (Some(join), Some(unload)) = (first("joinGroup"), first("unloadAgent")) else {
        bail!("the run record lacks joinGroup or unloadAgent");
    };
    if pings.len() != warmup + rounds {
        bail!(
            "{} pings sent, {} expected (a wait timed out?)",
            pings.len(),
            warmup + rounds
        );
    }
    let mut ends = pings[1..].to_vec();
    ends.push(unload);
    let all: Vec<Duration> = pings.iter().zip(&ends).map(|(a, b)| secs(b - a)).collect();
    let measured_from = pings[warmup];
    let triggers = (rounds * n).max(1) as f64;
    // CPU seconds per trigger of the processes sampled at indices `range` (summed).
    let per_trigger = |range: std::ops::Range<usize>| {
        if range.is_empty() {
            return None;
        }
        let total: f64 = samples[range]
            .iter()
            .map(|s| cpu_between(s, measured_from, unload))
            .sum();
        Some(total / triggers).filter(|v| v.is_finite())
    };
    let (b, f) = (brokers.len(), fleet_pids.len());
    Ok(OursRun {
        rounds: all[warmup..].to_vec(),
        preflight: secs(join - started),
        setup: secs(pings[0] - join),
        teardown: secs(closed - unload),
        cpu_per_trigger: per_trigger(0..1).unwrap_or(0.0),
        broker_cpu_per_trigger: per_trigger(1..1 + b),
        nodes_cpu_per_trigger: per_trigger(1 + b..1 + b + f),
        fleet_ready,
        fleet_stop,
        fleet_peak_kib,
        failover,
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// (time, method) of every call the driver sent, in order.
fn sent_calls(path: &Path) -> Result<Vec<(f64, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        if v["dir"] == "sent" && v["kind"] == "call" {
            let t = v["time"].as_f64().unwrap_or(0.0);
            let m = v["body"]["call"]["method"]
                .as_str()
                .unwrap_or("")
                .to_string();
            out.push((t, m));
        }
    }
    Ok(out)
}
