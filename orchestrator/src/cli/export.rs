//! `magi export RUN|STUDY`: one `.tar.gz` to reproduce and re-plot a run or a study, with
//! an RO-Crate description (see [`crate::export`]).

use std::path::PathBuf;

use clap::Args;

use crate::recorded::RecordedRun;

/// Arguments of `magi export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run (its name under --record-dir, or its record directory) or a study directory.
    pub source: String,
    /// The archive to write (default: `<name>.tar.gz` here).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Where run records are.
    #[arg(long, default_value = "magi-runs", env = "MAGI_RECORD_DIR")]
    pub record_dir: PathBuf,
}

/// Runs `magi export`; returns 0, or 2 when the source is not a run or a study, 3 when
/// the archive cannot be written.
pub fn run(args: ExportArgs) -> i32 {
    let as_path = PathBuf::from(&args.source);
    let source = if as_path.join("study.json").is_file() {
        as_path
    } else {
        match RecordedRun::find(&args.source, &args.record_dir) {
            Ok(r) => r.dir,
            Err(e) => {
                eprintln!("error: {e} (nor a study directory with a study.json)");
                return 2;
            }
        }
    };
    let name = std::fs::canonicalize(&source)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "export".into());
    let out = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{name}.tar.gz")));
    match crate::export::export(&source, &out) {
        Ok(n) => {
            eprintln!("magi export: {n} files in {}", out.display());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            3
        }
    }
}
