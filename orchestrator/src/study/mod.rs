//! A study: one procedure run over a grid of parameter values × replicates, each cell a
//! normal `magi run` with its own record, under one directory:
//!
//! ```text
//! <study>/
//!   study.json      the plan: procedure files, grid, replicates, order, cells, figures
//!   runs/<cell>/    each cell's run record
//!   logs/<cell>.log each cell's console and messages
//!   cells.csv       the table: parameters, outcome, duration, figures, one row per cell
//!   cells.json      the same as JSON
//!   <figure>-vs-<parameter>.png
//! ```
//!
//! Cells run as child `magi run` processes (not the library's run function in this
//! process): a cell that crashes, hangs in teardown or leaks cannot take the study down,
//! every cell starts with fresh embedded nodes and runtime, and Ctrl-C goes through
//! `magi run`'s own teardown. A cell is done when its record has an outcome other than
//! `interrupted`; running the same command again skips done cells (resume).

pub mod figures;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::recorded::RecordedRun;

/// Cells run in the grid's order, or shuffled with a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "order")]
pub enum Order {
    /// The grid's order: the first parameter varies slowest, replicates fastest.
    Given,
    /// Shuffled (the same seed gives the same order).
    Random {
        /// The shuffle's seed.
        seed: u64,
    },
}

/// One run of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Its run name (and record directory name).
    pub name: String,
    /// Its parameter values, `NAME=VALUE` as given to `-D` (the fixed ones, then the
    /// swept ones).
    pub defines: Vec<String>,
    /// Its replicate, from 1.
    pub replicate: usize,
}

/// What a study runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The procedure's files.
    pub files: Vec<PathBuf>,
    /// Each swept parameter and its values, as written.
    pub grid: Vec<(String, Vec<String>)>,
    /// Runs per grid point.
    pub replicates: usize,
    /// The order of the cells.
    pub order: Order,
    /// More arguments for every `magi run` (e.g. `--broker URL`).
    pub run_args: Vec<String>,
    /// The summary figures of the table (`NAME=FUNC(FIELD) KEY=VALUE...`).
    pub figures: Vec<String>,
    /// The plots, `FIGURE:PARAMETER`.
    pub plots: Vec<String>,
    /// The cells, in the order they run.
    pub cells: Vec<Cell>,
}

/// A run name part from a value: letters, digits, `.`, `-` and `_` kept.
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Plan {
    /// The plan of a grid × replicates; `--grid NAME=V1,V2` values are split on commas.
    pub fn new(
        files: Vec<PathBuf>,
        fixed: &[String],
        grid: &[String],
        replicates: usize,
        order: Order,
    ) -> Result<Plan, String> {
        if replicates == 0 {
            return Err("--replicates must be at least 1".into());
        }
        let mut axes: Vec<(String, Vec<String>)> = Vec::new();
        for g in grid {
            let (name, values) = g
                .split_once('=')
                .ok_or_else(|| format!("`--grid {g}`: write NAME=V1,V2,..."))?;
            let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
            if name.is_empty() || values.iter().any(String::is_empty) {
                return Err(format!(
                    "`--grid {g}`: write NAME=V1,V2,... with no empty value"
                ));
            }
            if axes.iter().any(|(n, _)| n == name) {
                return Err(format!("`--grid {g}`: `{name}` is swept twice"));
            }
            axes.push((name.to_string(), values));
        }
        let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (name, values) in &axes {
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push((name.clone(), v.clone()));
                        q
                    })
                })
                .collect();
        }
        let mut cells = Vec::new();
        for (i, point) in points.iter().enumerate() {
            for r in 1..=replicates {
                let mut name = format!("c{:03}", i + 1);
                for (k, v) in point {
                    name += &format!("-{}={}", name_part(k), name_part(v));
                }
                name += &format!("-r{r}");
                let swept = point.iter().map(|(k, v)| format!("{k}={v}"));
                cells.push(Cell {
                    name,
                    defines: fixed.iter().cloned().chain(swept).collect(),
                    replicate: r,
                });
            }
        }
        if let Order::Random { seed } = order {
            shuffle(&mut cells, seed);
        }
        Ok(Plan {
            files,
            grid: axes,
            replicates,
            order,
            run_args: Vec::new(),
            figures: Vec::new(),
            plots: Vec::new(),
            cells,
        })
    }

    /// Starts every cell's run name with `prefix` (over a broker whose permissions want
    /// `<user>.` runs: `--run-prefix alice.`).
    pub fn with_run_prefix(mut self, prefix: &str) -> Result<Plan, String> {
        if name_part(prefix) != prefix {
            return Err(format!(
                "`--run-prefix {prefix}`: letters, digits, `.`, `-` and `_` only"
            ));
        }
        for c in &mut self.cells {
            c.name = format!("{prefix}{}", c.name);
        }
        Ok(self)
    }

    /// Reads `<study>/study.json`, if there is one.
    pub fn load(study: &Path) -> Result<Option<Plan>, String> {
        let path = study.join("study.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{} is not a study plan: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes `<study>/study.json`.
    pub fn save(&self, study: &Path) -> Result<(), String> {
        std::fs::create_dir_all(study.join("runs"))
            .map_err(|e| format!("cannot create {}: {e}", study.display()))?;
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(study.join("study.json"), text)
            .map_err(|e| format!("cannot write {}/study.json: {e}", study.display()))
    }

    /// Whether another plan runs the same cells with the same values (the order, figures
    /// and plots may differ).
    pub fn same_cells(&self, other: &Plan) -> bool {
        let cells = |p: &Plan| {
            let mut c: Vec<(String, Vec<String>)> = p
                .cells
                .iter()
                .map(|c| (c.name.clone(), c.defines.clone()))
                .collect();
            c.sort();
            c
        };
        self.files == other.files && self.grid == other.grid && cells(self) == cells(other)
    }

    /// The names of the swept parameters.
    pub fn parameters(&self) -> Vec<String> {
        self.grid.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// Fisher-Yates with the simulator's seeded draws.
fn shuffle(cells: &mut [Cell], seed: u64) {
    let mut draws = crate::simulate::Draws::new(seed);
    for i in (1..cells.len()).rev() {
        let j = (draws.next_unit() * (i + 1) as f64) as usize;
        cells.swap(i, j.min(i));
    }
}

/// A cell's record, when it is done (finished, and not interrupted).
pub fn done(study: &Path, cell: &Cell) -> Option<RecordedRun> {
    RecordedRun::read(&study.join("runs").join(&cell.name))
        .ok()
        .filter(|r| r.is_finished() && r.outcome() != "interrupted")
}

/// The simulated duration of each cell, in seconds (`None` for a cell whose procedure
/// is not valid with its values).
pub fn estimate(plan: &Plan) -> Vec<Option<f64>> {
    plan.cells
        .iter()
        .map(|c| {
            let checked = magi_aal::load_with(&plan.files, &c.defines).ok()?;
            let procedure = std::sync::Arc::new(checked.procedure?);
            let sim = crate::simulate::simulate(procedure, &crate::simulate::SimConfig::default());
            Some(sim.end_ms as f64 / 1000.0)
        })
        .collect()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set a flag: the running cell is told to stop (it tears down and
/// records `interrupted`), and the study stops after it.
fn watch_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// How a sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepEnd {
    /// Every cell is done and succeeded.
    AllSucceeded,
    /// Every cell is done; some failed.
    SomeFailed,
    /// `--fail-fast` stopped at a failed cell.
    StoppedAtFailure,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

fn seconds(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.0} min {:02.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Runs the cells that are not done, one after the other, with `magi` (`exe`) as a child.
pub fn run(plan: &Plan, study: &Path, exe: &Path, fail_fast: bool) -> Result<SweepEnd, String> {
    watch_signals();
    std::fs::create_dir_all(study.join("logs"))
        .map_err(|e| format!("cannot create {}/logs: {e}", study.display()))?;
    let total = plan.cells.len();
    let estimates = estimate(plan);
    let todo: Vec<usize> = (0..total)
        .filter(|&i| done(study, &plan.cells[i]).is_none())
        .collect();
    let predicted: f64 = todo.iter().filter_map(|&i| estimates[i]).sum();
    eprintln!(
        "magi sweep: {total} cells, {} done, {} to run; about {} (simulated)",
        total - todo.len(),
        todo.len(),
        seconds(predicted)
    );
    warn_if_changed(plan, study);
    let (mut measured, mut simulated) = (0.0, 0.0);
    let mut failed = 0;
    for (k, &i) in todo.iter().enumerate() {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(SweepEnd::Interrupted);
        }
        let cell = &plan.cells[i];
        let started = Instant::now();
        let code = run_cell(plan, study, exe, cell)?;
        let took = started.elapsed().as_secs_f64();
        measured += took;
        simulated += estimates[i].unwrap_or(took);
        let outcome = RecordedRun::read(&study.join("runs").join(&cell.name))
            .map(|r| r.outcome().to_string())
            .unwrap_or_else(|_| format!("no record (exit {code})"));
        // Time left: the remaining cells' simulated time, scaled by how real runs have
        // compared with their simulation so far.
        let scale = if simulated > 0.0 {
            measured / simulated
        } else {
            1.0
        };
        let left: f64 = todo[k + 1..]
            .iter()
            .map(|&j| estimates[j].unwrap_or(took) * scale)
            .sum::<f64>()
            .max(0.0);
        let done_now = total - todo.len() + k + 1;
        let bar_len = 20 * done_now / total.max(1);
        eprintln!(
            "[{}{}] {done_now}/{total} {}: {outcome} in {}; {} left",
            "#".repeat(bar_len),
            ".".repeat(20 - bar_len),
            cell.name,
            seconds(took),
            seconds(left)
        );
        if INTERRUPTED.load(Ordering::SeqCst) || code == crate::cli::run::EXIT_INTERRUPTED {
            return Ok(SweepEnd::Interrupted);
        }
        if outcome != "success" {
            failed += 1;
            if fail_fast {
                return Ok(SweepEnd::StoppedAtFailure);
            }
        }
    }
    let failed_before = plan
        .cells
        .iter()
        .filter_map(|c| done(study, c))
        .filter(|r| r.outcome() != "success")
        .count();
    Ok(if failed + failed_before > 0 {
        SweepEnd::SomeFailed
    } else {
        SweepEnd::AllSucceeded
    })
}

/// Warns when the procedure's text is not the one the cells already done ran.
fn warn_if_changed(plan: &Plan, study: &Path) {
    let Ok(files) = magi_aal::read_sources(&plan.files) else {
        return;
    };
    let text: String = files.iter().map(|f| f.text.as_str()).collect();
    let now = crate::record::sha256_hex(text.as_bytes());
    let changed: Vec<String> = plan
        .cells
        .iter()
        .filter_map(|c| done(study, c))
        .filter(|r| r.procedure_hash() != now)
        .map(|r| r.name().to_string())
        .collect();
    if let Some(first) = changed.first() {
        eprintln!(
            "magi sweep: warning: the procedure changed since {} cell(s) ran (e.g. {first}); `magi diff` shows how",
            changed.len()
        );
    }
}

/// Runs one cell as `magi run ... -D ... --run <cell> --record-dir <study>/runs`, its
/// output in `logs/<cell>.log`; returns its exit code.
fn run_cell(plan: &Plan, study: &Path, exe: &Path, cell: &Cell) -> Result<i32, String> {
    let record = study.join("runs").join(&cell.name);
    if record.exists() {
        // An interrupted or unfinished attempt: start the cell afresh.
        std::fs::remove_dir_all(&record)
            .map_err(|e| format!("cannot remove the unfinished {}: {e}", record.display()))?;
    }
    let log_path = study.join("logs").join(format!("{}.log", cell.name));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run").args(&plan.files);
    for d in &cell.defines {
        cmd.arg("-D").arg(d);
    }
    cmd.args(["--no-color", "--run", &cell.name, "--record-dir"])
        .arg(study.join("runs"))
        .args(&plan.run_args)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut told = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(status.code().unwrap_or(crate::cli::run::EXIT_INTERRUPTED))
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for cell {}: {e}", cell.name)),
        }
        if INTERRUPTED.load(Ordering::SeqCst) && !told {
            told = true;
            // SIGTERM makes `magi run` tear down and record `interrupted`.
            // SAFETY: kill with a pid we spawned and a valid signal number.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(plan: &Plan) -> Vec<&str> {
        plan.cells.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn the_grid_is_every_combination_times_the_replicates_first_parameter_slowest() {
        let grid = ["a=1,2".to_string(), "b=x,y".to_string()];
        let plan = Plan::new(vec![], &["d=5".into()], &grid, 2, Order::Given).unwrap();
        assert_eq!(plan.cells.len(), 8);
        assert_eq!(
            &names(&plan)[..3],
            ["c001-a=1-b=x-r1", "c001-a=1-b=x-r2", "c002-a=1-b=y-r1"]
        );
        assert_eq!(plan.cells[7].defines, ["d=5", "a=2", "b=y"]);
    }

    #[test]
    fn a_random_order_is_a_reproducible_permutation_of_the_same_cells() {
        let grid = ["a=1,2,3,4,5".to_string()];
        let given = Plan::new(vec![], &[], &grid, 2, Order::Given).unwrap();
        let shuffled = |seed| Plan::new(vec![], &[], &grid, 2, Order::Random { seed }).unwrap();
        let (one, again, other) = (shuffled(7), shuffled(7), shuffled(8));
        assert_eq!(names(&one), names(&again));
        assert_ne!(names(&one), names(&given));
        assert_ne!(names(&one), names(&other));
        let mut sorted = names(&one);
        sorted.sort();
        assert_eq!(sorted, names(&given));
    }

    #[test]
    fn a_bad_grid_is_refused_with_how_to_write_it() {
        for bad in ["a", "a=", "a=1,,2"] {
            let e = Plan::new(vec![], &[], &[bad.to_string()], 1, Order::Given).unwrap_err();
            assert!(e.contains("NAME=V1,V2"), "{e}");
        }
        let twice = ["a=1".to_string(), "a=2".to_string()];
        assert!(Plan::new(vec![], &[], &twice, 1, Order::Given).is_err());
        assert!(Plan::new(vec![], &[], &[], 0, Order::Given).is_err());
    }

    #[test]
    fn a_plan_with_other_fixed_values_is_another_study() {
        let grid = ["a=1,2".to_string()];
        let one = Plan::new(vec![], &["d=1".into()], &grid, 1, Order::Given).unwrap();
        let two = Plan::new(vec![], &["d=2".into()], &grid, 1, Order::Given).unwrap();
        let shuffled =
            Plan::new(vec![], &["d=1".into()], &grid, 1, Order::Random { seed: 3 }).unwrap();
        assert!(!one.same_cells(&two));
        assert!(one.same_cells(&shuffled));
    }

    #[test]
    fn a_run_prefix_starts_every_cell_name_and_must_be_a_name() {
        let plan = Plan::new(vec![], &[], &["a=1".to_string()], 1, Order::Given).unwrap();
        let named = plan.clone().with_run_prefix("alice.").unwrap();
        assert_eq!(names(&named), ["alice.c001-a=1-r1"]);
        assert!(plan.with_run_prefix("../x").is_err());
    }

    #[test]
    fn an_interrupted_cell_is_not_done() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = Plan::new(vec![], &[], &["a=1,2".to_string()], 1, Order::Given).unwrap();
        let write = |cell: &Cell, outcome: &str| {
            let dir = tmp.path().join("runs").join(&cell.name);
            std::fs::create_dir_all(&dir).unwrap();
            let summary = serde_json::json!({"run": cell.name, "outcome": {"outcome": outcome}});
            std::fs::write(dir.join("run.json"), summary.to_string()).unwrap();
        };
        write(&plan.cells[0], "failed");
        write(&plan.cells[1], "interrupted");
        assert!(done(tmp.path(), &plan.cells[0]).is_some());
        assert!(done(tmp.path(), &plan.cells[1]).is_none());
    }
}
