//! Command-line parsing and dispatch to one module per command.
use clap::{Parser, Subcommand};

pub mod check;
pub mod data;
pub mod diff;
pub mod exit;
pub mod export;
pub mod graph;
pub mod parse;
pub mod replay;
pub mod run;
pub mod runs;
pub mod simulate;
pub mod status;
pub mod sweep;
pub mod tap;
pub mod testbed;
pub mod web;

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
    /// Run a procedure: on the embedded bus, or over RabbitMQ with --broker.
    Run(run::RunArgs),
    /// Import and query recorded data (`magi data import`, `magi data query`).
    Data(data::DataArgs),
    /// Plot recorded data to a PNG with the original's graph configuration.
    Graph(graph::GraphArgs),
    /// Serve a live traffic page that plots records as they arrive.
    Web(web::WebArgs),
    /// Show which node agents are alive on a broker, their groups, agents and runs.
    Status(status::StatusArgs),
    /// Print everything on the bus (calls, triggers, records, node announcements), filtered.
    Tap(tap::TapArgs),
    /// Build, remove or show a testbed of network namespaces from a .tcl or YAML topology.
    Testbed(testbed::TestbedArgs),
    /// List run records (name, start, duration, outcome, procedure hash, parameters).
    Runs(runs::RunsArgs),
    /// Print a recorded run's console again, at its pace or faster.
    Replay(replay::ReplayArgs),
    /// Say what differs between two runs.
    Diff(diff::DiffArgs),
    /// Dry-run a procedure on virtual time: predicted duration, timeline, dead waits.
    Simulate(simulate::SimulateArgs),
    /// Run a procedure over a grid of parameter values × replicates, as a resumable study.
    Sweep(sweep::SweepArgs),
    /// Pack a run or a study into one .tar.gz with an RO-Crate description.
    Export(export::ExportArgs),
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Run(args) => run::run(args),
        Command::Data(args) => data::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Web(args) => web::run(args),
        Command::Status(args) => status::run(args),
        Command::Tap(args) => tap::run(args),
        Command::Testbed(args) => testbed::run(args),
        Command::Runs(args) => runs::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Export(args) => export::run(args),
    }
}

/// Runs a command's async body on a fresh runtime and returns its exit code; exit 3 (an
/// infrastructure error) when no runtime can be started.
pub(crate) fn block_on(body: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(body),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            3
        }
    }
}
