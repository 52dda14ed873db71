//! `magi check`.
use clap::Args;

/// Arguments of `magi check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// AAL files, read in order (a later file's top-level key replaces an earlier one's).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

/// Runs `magi check`; returns the exit code.
pub fn run(_args: CheckArgs) -> i32 {
    0
}
