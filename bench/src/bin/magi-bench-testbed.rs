//! `magi-bench-testbed`: how long `magi testbed up` and `down` take, with the real `magi`
//! binary, for the 56-node case-study topology (`cs55_topology.tcl`: 50 clients and 5
//! servers on two LANs joined by a router) and for a generated one-LAN topology of
//! 1,000 nodes. Needs root; each testbed gets a unique name and is brought down at the end.
//! `scripts/bench-testbed` builds and runs it; `docs/benchmarks.md` has the figures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Times `magi testbed up` and `down`.
#[derive(Parser, Debug)]
#[command(name = "magi-bench-testbed", version, about)]
struct Args {
    /// Runs per topology.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Nodes of the generated LAN (0: skip it).
    #[arg(long, default_value_t = 1000)]
    lan: usize,
    /// The 56-node topology.
    #[arg(long, default_value = "../shared/casestudies/cs55_topology.tcl")]
    cs55: PathBuf,
    /// The `magi` binary (default: next to this program).
    #[arg(long)]
    magi: Option<PathBuf>,
    /// Also time each topology with a control network (`up --control`: one more veth per
    /// node, for a `magi-node` per namespace over RabbitMQ).
    #[arg(long)]
    control: bool,
}

/// The targets, seconds: (up, down) for the 56-node topology and the 1,000-node LAN.
const TARGET_CS55: (f64, f64) = (3.0, 2.0);
const TARGET_LAN: (f64, f64) = (60.0, 60.0);

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("magi-bench-testbed: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let magi = match args.magi {
        Some(m) => m,
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("magi"),
    };
    let dir = tempfile::tempdir()?;
    let mut cases: Vec<(String, PathBuf, (f64, f64))> = vec![(
        "cs55_topology.tcl (56 nodes, 2 LANs)".to_string(),
        args.cs55.clone(),
        TARGET_CS55,
    )];
    if args.lan > 0 {
        let lan = dir.path().join("lan.yaml");
        std::fs::write(&lan, lan_topology(args.lan))?;
        cases.push((format!("one LAN of {} nodes", args.lan), lan, TARGET_LAN));
    }
    if args.control {
        let with: Vec<_> = cases
            .iter()
            .map(|(label, file, target)| (format!("{label} + control"), file.clone(), *target))
            .collect();
        cases.extend(with);
    }
    println!(
        "{:<48} {:>9} {:>9} {:>9} {:>9}  target (up/down)",
        "topology", "up best", "up p50", "down best", "down p50"
    );
    for (label, file, (up_target, down_target)) in cases {
        let mut ups = Vec::new();
        let mut downs = Vec::new();
        for i in 0..args.runs.max(1) {
            let name = format!("bench{}-{i}", std::process::id());
            let file = file.to_string_lossy();
            let mut up_args = vec!["testbed", "up", &file, "--name", &name];
            if label.ends_with("+ control") {
                up_args.push("--control");
            }
            let up = timed(&magi, &up_args);
            let down = timed(&magi, &["testbed", "down", &name]);
            ups.push(up?);
            downs.push(down?);
        }
        let (up_best, up_mid) = best_median(&mut ups);
        let (down_best, down_mid) = best_median(&mut downs);
        let met = |v: f64, t: f64| if v < t { "met" } else { "NOT met" };
        println!(
            "{label:<48} {up_best:>8.2}s {up_mid:>8.2}s {down_best:>8.2}s {down_mid:>8.2}s  <{up_target}s {} / <{down_target}s {}",
            met(up_mid, up_target),
            met(down_mid, down_target)
        );
    }
    Ok(())
}

/// One LAN of `n` nodes at 100 Mb/s.
fn lan_topology(n: usize) -> String {
    let nodes: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    format!(
        "nodes: [{0}]\nlans:\n  - {{name: lan, nodes: [{0}], bandwidth: 100Mb}}\n",
        nodes.join(", ")
    )
}

/// Wall time of the real command, which must succeed.
fn timed(magi: &Path, args: &[&str]) -> Result<f64> {
    let start = Instant::now();
    let out = Command::new(magi)
        .args(args)
        .output()
        .with_context(|| format!("running {}", magi.display()))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "magi {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Duration::as_secs_f64(&elapsed))
}

fn best_median(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[0], values[values.len() / 2])
}
