//! Command-line parsing and dispatch to one module per command.
use clap::{Parser, Subcommand};

pub mod check;

/// MAGI-rs: run AAL experiment procedures on testbed nodes.
#[derive(Parser, Debug)]
#[command(name = "magi", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a procedure and print its plan.
    Check(check::CheckArgs),
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
    }
}
