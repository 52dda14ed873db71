//! `magi replay RUN`: the run's console printed again from its record, line for line as it
//! was shown (same times, same layout), at the run's own pace, faster, or at once.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::console::{Console, Mode};
use crate::recorded::RecordedRun;

/// Arguments of `magi replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The run: its name under --record-dir, or its record directory.
    pub run: String,
    /// Where run records are.
    #[arg(long, default_value = "magi-runs", env = "MAGI_RECORD_DIR")]
    pub record_dir: PathBuf,
    /// Play this many times faster than the run went (2 = twice as fast).
    #[arg(long, default_value_t = 1.0, conflicts_with = "fast")]
    pub speed: f64,
    /// Print every line at once.
    #[arg(long)]
    pub fast: bool,
    /// One JSON record per line, as `magi run --json` prints them.
    #[arg(long)]
    pub json: bool,
    /// No colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long)]
    pub no_color: bool,
}

/// Runs `magi replay`; returns the exit code (0, or 2 when the record cannot be read).
pub fn run(args: ReplayArgs) -> i32 {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        eprintln!(
            "error: `--speed {}`: a positive number, e.g. 10",
            args.speed
        );
        return 2;
    }
    let lines = match RecordedRun::find(&args.run, &args.record_dir).and_then(|r| r.console()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mode = match Mode::detect(args.json, args.no_color) {
        // The live line belongs to a run in progress, not to a replay.
        Mode::Text { color, .. } => Mode::Text { color, live: false },
        json => json,
    };
    let mut console = Console::new(mode);
    let mut previous: Option<f64> = None;
    for l in &lines {
        if let (Some(p), false) = (previous, args.fast) {
            let gap = ((l.time - p) / args.speed).max(0.0);
            if gap > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(gap));
            }
        }
        previous = Some(l.time);
        console.line(&l.line, l.time);
    }
    0
}
