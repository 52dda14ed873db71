//! `magi runs`: list the run records of a record directory (or a study), filtered.

use std::path::PathBuf;

use clap::Args;

use crate::console::date_time;
use crate::recorded::{self, parameters_text, value_text, RecordedRun};

/// Arguments of `magi runs`.
#[derive(Args, Debug)]
pub struct RunsArgs {
    /// Where run records are (a study directory lists its cells' records).
    #[arg(long, default_value = "magi-runs", env = "MAGI_RECORD_DIR")]
    pub record_dir: PathBuf,
    /// Only runs whose name contains this.
    #[arg(long)]
    pub name: Option<String>,
    /// Only runs with this outcome: success, failed, interrupted or unfinished.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only runs of the procedure whose SHA-256 starts with this.
    #[arg(long)]
    pub procedure: Option<String>,
    /// Only runs with this parameter value, `NAME=VALUE` (repeatable; all must match).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// One JSON object per run instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `magi runs`; returns the exit code (0, or 2 for a bad filter or record directory).
pub fn run(args: RunsArgs) -> i32 {
    let mut wanted = Vec::new();
    for p in &args.params {
        match p.split_once('=') {
            Some((k, v)) => wanted.push((k.to_string(), v.to_string())),
            None => {
                eprintln!("error: `--param {p}`: write NAME=VALUE");
                return 2;
            }
        }
    }
    if let Some(o) = &args.outcome {
        if !["success", "failed", "interrupted", "unfinished"].contains(&o.as_str()) {
            eprintln!("error: `--outcome {o}`: one of success, failed, interrupted, unfinished");
            return 2;
        }
    }
    if !args.record_dir.is_dir() {
        eprintln!(
            "error: {} is not a directory of run records (see --record-dir)",
            args.record_dir.display()
        );
        return 2;
    }
    let (runs, errors) = recorded::list(&args.record_dir);
    for e in &errors {
        eprintln!("warning: {e}");
    }
    let shown: Vec<&RecordedRun> = runs
        .iter()
        .filter(|r| {
            args.name
                .as_ref()
                .is_none_or(|n| r.name().contains(n.as_str()))
        })
        .filter(|r| args.outcome.as_ref().is_none_or(|o| r.outcome() == o))
        .filter(|r| {
            args.procedure
                .as_ref()
                .is_none_or(|p| r.procedure_hash().starts_with(p.as_str()))
        })
        .filter(|r| {
            let params = r.parameters();
            wanted
                .iter()
                .all(|(k, v)| params.get(k).is_some_and(|x| value_text(x) == *v))
        })
        .collect();
    if args.json {
        for r in &shown {
            let line = serde_json::json!({
                "run": r.name(), "record": r.dir, "started": r.started(),
                "duration": r.duration(), "outcome": r.outcome(), "exit_code": r.exit_code(),
                "procedure": r.procedure_hash(), "parameters": r.parameters(),
            });
            println!("{line}");
        }
        return 0;
    }
    if shown.is_empty() {
        eprintln!(
            "no run records{} in {}",
            if runs.is_empty() { "" } else { " match" },
            args.record_dir.display()
        );
        return 0;
    }
    let rows: Vec<[String; 6]> = shown
        .iter()
        .map(|r| {
            [
                r.name().to_string(),
                r.started().map(date_time).unwrap_or_default(),
                r.duration()
                    .map(|d| format!("{d:.1} s"))
                    .unwrap_or_else(|| "-".into()),
                r.outcome().to_string(),
                r.procedure_hash().chars().take(12).collect(),
                parameters_text(&r.parameters()),
            ]
        })
        .collect();
    let header = [
        "RUN",
        "STARTED",
        "DURATION",
        "OUTCOME",
        "PROCEDURE",
        "PARAMETERS",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let print = |cells: &[String]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(&header.map(String::from));
    rows.iter().for_each(|r| print(r));
    0
}
