//! `magi check` on a generated procedure of 10,000 events: the real binary, timed from
//! spawn to exit, several runs.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::{ms, Figure};

/// A procedure of `streams × per_stream` events over 50 groups of 20 nodes, one agent per
/// group, a wait after every tenth event (each on a trigger its event emits).
pub fn procedure(streams: usize, per_stream: usize) -> String {
    let groups = 50;
    let mut out = String::from("groups:\n");
    for g in 0..groups {
        let nodes: Vec<String> = (0..20).map(|i| format!("n{g}_{i}")).collect();
        let _ = writeln!(out, "  g{g}: [{}]", nodes.join(", "));
    }
    out.push_str("agents:\n");
    for g in 0..groups {
        let _ = writeln!(out, "  a{g}:\n    group: g{g}\n    path: /share/magi/modules/a{g}/a{g}.tar.gz\n    execargs: {{k: {g}}}");
    }
    let names: Vec<String> = (0..streams).map(|s| format!("s{s}")).collect();
    let _ = writeln!(out, "streamstarts: [{}]\neventstreams:", names.join(", "));
    for s in 0..streams {
        let _ = writeln!(out, "  s{s}:");
        for i in 0..per_stream {
            let waits = i % 10 == 9;
            let _ = writeln!(
                out,
                "    - type: event\n      agent: a{}\n      method: m{i}",
                s % groups
            );
            if waits {
                let _ = writeln!(out, "      trigger: t{s}_{i}");
            }
            let _ = writeln!(out, "      args: {{x: {i}, y: 'v{i}'}}");
            if waits {
                let _ = writeln!(out, "    - type: trigger\n      triggers: [ {{event: t{s}_{i}}}, {{timeout: 5000, target: exit}} ]");
            }
        }
    }
    out
}

/// Best and median wall time of `runs` runs of `magi check FILE` (output discarded).
pub fn time_check(magi: &Path, file: &Path, runs: usize) -> Result<(Duration, Duration)> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let status = std::process::Command::new(magi)
            .arg("check")
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", magi.display()))?;
        times.push(start.elapsed());
        if !status.success() {
            bail!("`magi check` rejected the generated procedure ({status})");
        }
    }
    times.sort();
    Ok((times[0], times[times.len() / 2]))
}

/// The `magi check` figures of the real binary (`bin_dir`'s, or `--magi`); whether they
/// could be taken.
pub fn figures(
    cli: &crate::Cli,
    bin_dir: &Path,
    work: &Path,
    check_runs: usize,
) -> Result<(Vec<Figure>, bool)> {
    let mut figures = Vec::new();
    let mut complete = true;
    let magi = cli.magi.clone().unwrap_or_else(|| bin_dir.join("magi"));
    if magi.is_file() {
        eprintln!("magi-bench: magi check, 10,000 events ...");
        let file = work.join("check-10000.aal");
        std::fs::write(&file, procedure(100, 100))?;
        match time_check(&magi, &file, check_runs) {
            Ok((best, median)) => {
                figures.push(
                    Figure::new("check_10k_best", 10_000, ms(best), "ms")
                        .at_most(100.0)
                        .note(format!("best of {check_runs} runs of the real binary")),
                );
                figures.push(Figure::new("check_10k_median", 10_000, ms(median), "ms"));
            }
            Err(e) => {
                eprintln!("magi-bench: magi check: {e:#}");
                complete = false;
            }
        }
    } else {
        eprintln!("magi-bench: {} not built: no `magi check` figure (build it: cargo build --release -p magi)", magi.display());
        complete = false;
    }
    Ok((figures, complete))
}
