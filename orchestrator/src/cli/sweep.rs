//! `magi sweep`: run a procedure over a grid of parameter values × replicates as a study
//! (see [`crate::study`]): resumable, with progress and time left, a table and plots.

use std::path::PathBuf;

use clap::Args;

use crate::study::{self, table, Order, Plan, SweepEnd};

const AFTER_HELP: &str = "\
Each cell is a normal `magi run` (a child process) with its own record under
<study>/runs/. Running the same command again resumes: cells already done are skipped, an
interrupted one is run again. `magi sweep --study DIR` alone resumes DIR's plan.

Exit codes: 0 every cell succeeded; 1 a cell failed; 2 invalid procedure, values or flags;
3 the study directory cannot be used; 130 interrupted (resume by running it again).";

/// Arguments of `magi sweep`.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct SweepArgs {
    /// AAL files, read in order (omit them to resume the study's own plan).
    pub files: Vec<PathBuf>,
    /// The study directory.
    #[arg(long)]
    pub study: PathBuf,
    /// A swept parameter and its values, `NAME=V1,V2,...` (repeatable: the grid is every
    /// combination).
    #[arg(long = "grid", value_name = "NAME=V1,V2")]
    pub grid: Vec<String>,
    /// A parameter value for every cell, `NAME=VALUE` (repeatable), as `magi run -D`.
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,
    /// Runs per grid point.
    #[arg(long, default_value_t = 1)]
    pub replicates: usize,
    /// Run the cells in a random order (reproducible with --seed) instead of the grid's.
    #[arg(long)]
    pub random_order: bool,
    /// Seed of the random order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop at the first failed cell.
    #[arg(long)]
    pub fail_fast: bool,
    /// A summary figure of each cell's data for the table, `NAME=FUNC(FIELD) [KEY=VALUE...]`
    /// (FUNC: mean, sum, min, max, count, last, rate), e.g.
    /// `in_bps=rate(bytes) agent=monitor_agent trafficDirection=in intfName=total`.
    #[arg(long = "figure", value_name = "SPEC")]
    pub figures: Vec<String>,
    /// A plot of a figure against a parameter, `FIGURE:PARAMETER` (default: every figure
    /// against the first swept parameter).
    #[arg(long = "plot", value_name = "FIGURE:PARAMETER")]
    pub plots: Vec<String>,
    /// Only print the simulated time of every cell and of the whole study.
    #[arg(long)]
    pub estimate: bool,
    /// Start every cell's run name with this (over a broker whose permissions want runs
    /// named `<user>.`: `--run-prefix alice.`).
    #[arg(long, default_value = "")]
    pub run_prefix: String,
    /// An argument for every `magi run` (repeatable), e.g. `--run-arg=--broker=amqp://...`.
    #[arg(long = "run-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub run_args: Vec<String>,
}

fn plan_of(args: &SweepArgs) -> Result<Plan, (i32, String)> {
    let invalid = |e: String| (2, e);
    let existing = Plan::load(&args.study).map_err(|e| (3, e))?;
    let mut plan = if args.files.is_empty() {
        existing.clone().ok_or_else(|| {
            invalid(format!(
                "{} holds no study yet: give the procedure's files",
                args.study.display()
            ))
        })?
    } else {
        let files = args
            .files
            .iter()
            .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
            .collect();
        let order = if args.random_order {
            Order::Random { seed: args.seed }
        } else {
            Order::Given
        };
        let fresh = Plan::new(files, &args.defines, &args.grid, args.replicates, order)
            .and_then(|p| p.with_run_prefix(&args.run_prefix))
            .map_err(invalid)?;
        match &existing {
            Some(old) if !old.same_cells(&fresh) => {
                return Err(invalid(format!(
                    "{} holds another study (other files, grid, replicates or -D values); use another --study",
                    args.study.display()
                )))
            }
            // The stored order is kept: resuming must not reshuffle.
            Some(old) => old.clone(),
            None => fresh,
        }
    };
    if !args.figures.is_empty() {
        plan.figures = args.figures.clone();
    }
    if !args.plots.is_empty() {
        plan.plots = args.plots.clone();
    }
    if !args.run_args.is_empty() {
        plan.run_args = args.run_args.clone();
    }
    let mut figures = Vec::new();
    for f in &plan.figures {
        figures.push(study::figures::Figure::parse(f).map_err(invalid)?.name);
    }
    for p in &plan.plots {
        let known = p
            .split_once(':')
            .is_some_and(|(f, param)| figures.iter().any(|n| n == f) && !param.is_empty());
        if !known {
            return Err(invalid(format!(
                "`--plot {p}`: write FIGURE:PARAMETER with a figure of --figure ({})",
                figures.join(", ")
            )));
        }
    }
    // Every distinct set of values must make a valid procedure before anything runs.
    let mut seen = std::collections::BTreeSet::new();
    for cell in &plan.cells {
        if seen.insert(cell.defines.clone())
            && super::check::load_valid(&plan.files, &cell.defines).is_none()
        {
            return Err(invalid(format!(
                "the procedure is not valid with {}",
                cell.defines.join(" ")
            )));
        }
    }
    Ok(plan)
}

/// Runs `magi sweep`; returns the exit code.
pub fn run(args: SweepArgs) -> i32 {
    let plan = match plan_of(&args) {
        Ok(p) => p,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    if args.estimate {
        let estimates = study::estimate(&plan);
        for (cell, e) in plan.cells.iter().zip(&estimates) {
            match e {
                Some(s) => println!("{}: {s:.1} s", cell.name),
                None => println!("{}: not valid", cell.name),
            }
        }
        let total: f64 = estimates.iter().flatten().sum();
        println!(
            "study: {} cells, about {total:.1} s (simulated)",
            plan.cells.len()
        );
        return 0;
    }
    if let Err(e) = plan.save(&args.study) {
        eprintln!("error: {e}");
        return 3;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the magi binary to run cells: {e}");
            return 3;
        }
    };
    let end = match study::run(&plan, &args.study, &exe, args.fail_fast) {
        Ok(end) => end,
        Err(e) => {
            eprintln!("error: {e}");
            return 3;
        }
    };
    match table::write(&plan, &args.study) {
        Ok((written, problems)) => {
            for p in problems {
                eprintln!("magi sweep: no plot {p}");
            }
            eprintln!(
                "magi sweep: wrote {} in {}",
                written.join(", "),
                args.study.display()
            );
        }
        Err(e) => eprintln!("error: {e}"),
    }
    match end {
        SweepEnd::AllSucceeded => 0,
        SweepEnd::SomeFailed | SweepEnd::StoppedAtFailure => 1,
        SweepEnd::Interrupted => {
            eprintln!("magi sweep: interrupted; run the same command again to resume");
            crate::cli::run::EXIT_INTERRUPTED
        }
    }
}
