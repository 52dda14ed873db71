//! `magi-bench`: MAGI-rs's speed, memory and scale figures, next to the same traffic over a
//! bare lapin client on the same broker in the same run. `scripts/bench` builds and runs
//! it; `docs/benchmarks.md` says what each figure means.
//!
//! For each N (nodes): the event → every node's trigger round trip through the real driver,
//! engine, bus and node agents (with the agent as a process), against bare lapin; setup and
//! teardown with a 1 MiB agent; the orchestrator's CPU per trigger. Then a real `magi-node`
//! process's resident memory, and `magi check` on 10,000 events. Everything is declared
//! under a unique name prefix on the broker and deleted at the end.

mod bare;
mod bare_fleet;
mod broker;
mod check;
mod failover;
mod figures;
mod fleet;
mod interrupt;
mod memory;
mod ours;
mod permissions;
mod report;
mod sizes;
mod sys;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use magi_testkit::{vhost_of, BrokerGuard, Cluster, ClusterGuard, TestBroker};

use crate::fleet::FleetArgs;
use crate::report::Figure;

/// MAGI-rs benchmarks against RabbitMQ.
#[derive(Parser, Debug)]
#[command(name = "magi-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,
    /// The smallest configuration: N = 1, 20 rounds, 3 runs of `magi check`.
    #[arg(long)]
    quick: bool,
    /// Where the figures go (JSON, one object per measurement).
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// RabbitMQ URL.
    #[arg(long, env = "MAGI_BENCH_AMQP_URL", default_value = magi_testkit::DEFAULT_URL)]
    url: String,
    /// Node counts (default 1,10,100,1000; --quick: 1).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Measured rounds per N (default 100; --quick: 20).
    #[arg(long)]
    rounds: Option<usize>,
    /// Unmeasured rounds first (default 10; --quick: 3).
    #[arg(long)]
    warmup: Option<usize>,
    /// Nodes (or bare consumers) per broker connection.
    #[arg(long, default_value_t = 100)]
    per_conn: usize,
    /// Size of the agent module's random file, in KiB.
    #[arg(long, default_value_t = 1024)]
    agent_kib: usize,
    /// The `magi` binary timed by the check figure (default: next to this program).
    #[arg(long)]
    magi: Option<PathBuf>,
    /// The `magi-node` binary whose memory is measured (default: next to this program).
    #[arg(long)]
    magi_node: Option<PathBuf>,
    /// Runs of `magi check` (default 9; --quick: 3).
    #[arg(long)]
    check_runs: Option<usize>,
    /// Node agents' heartbeat period in ms (as `magi-node --heartbeat-ms`).
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
    /// Node agents' dead-man switch in seconds (as `magi-node --dead-man-secs`; default 10,
    /// or 60 in fleets of 1000 nodes and more, whose calls wait behind other nodes' on
    /// shared connections; 0 never). Give it with `--alive-ms` where the broker is slow to
    /// deliver.
    #[arg(long)]
    dead_man_secs: Option<u64>,
    /// How often the orchestrator tells the nodes its run is alive, in ms; 0 never (default
    /// as `magi run` over a broker: 2000, or one second per thousand nodes above 2000).
    #[arg(long)]
    alive_ms: Option<u64>,
    /// Give every simulated node its own agent cache (default: one shared cache per fleet
    /// process, as `magi-node --nodes N` has).
    #[arg(long)]
    separate_caches: bool,
    /// Diagnostics: record every heartbeat (made, received) in the work directory.
    #[arg(long, hide = true)]
    watch_heartbeats: bool,
    /// Skip the bare-lapin reference.
    #[arg(long)]
    no_bare: bool,
    /// Skip the routed reference (bare lapin over MAGI-rs's exchanges, routing keys and
    /// message properties).
    #[arg(long)]
    no_routed: bool,
    /// Skip the floor (the same fan-out over bare lapin, transient, without confirms).
    #[arg(long)]
    no_floor: bool,
    /// Fleet processes per N (default: one per 1000 nodes, at least one).
    #[arg(long)]
    processes: Option<usize>,
    /// On the local three-node cluster (`scripts/cluster`, started if it is not running)
    /// instead of `--url`: every client gets the three nodes as its broker list, turned so
    /// that connections spread over them; inbox queues are quorum queues.
    #[arg(long)]
    cluster: bool,
    /// MAGI-rs with permissions on, as on a shared testbed: a throwaway vhost made by
    /// broker-config/apply.sh, one broker user per node on a connection of its own, an
    /// orchestrator user the nodes admit alone (the bare reference and the floor keep
    /// `--url`). Not with `--cluster`.
    #[arg(long, conflicts_with = "cluster")]
    permissions: bool,
    /// With --cluster: during the measured rounds, stop the broker node the orchestrator's
    /// connection uses (or the fleet's), for 3 s, then start it again; the run must
    /// complete; figures failover_recovery, failover_round, failover_triggers_once.
    #[arg(long, value_enum, requires = "cluster")]
    failover: Option<failover::Victim>,
    /// Where the work directory (node states, run records) is made (default: the system's
    /// temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (records, consoles, node states) and print where it is
    /// (kept anyway when a measurement failed).
    #[arg(long)]
    keep: bool,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// (internal) A fleet of simulated nodes, started by the benchmark itself.
    #[command(hide = true)]
    Fleet(Box<FleetArgs>),
    /// Delete every broker object under a prefix a benchmark left behind (it was killed).
    Cleanup {
        /// The prefix, e.g. `magi.bench.0123abcd.` (printed when the benchmark starts).
        prefix: String,
    },
}

fn main() {
    // The fleet's node agents, as `magi-node` does.
    magi_node::release_large_blocks();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // A fleet process's runtime is the one `magi-node` picks for as many node agents
    // (the bare consumers' fleet too, so that both sides of a ratio run alike).
    let runtime = match &cli.internal {
        Some(Internal::Fleet(args)) => magi_node::runtime_for(args.nodes),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    let code = runtime.block_on(async move {
        match cli.internal {
            Some(Internal::Fleet(args)) => match fleet::serve(*args).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("magi-bench fleet: {e:#}");
                    1
                }
            },
            Some(Internal::Cleanup { prefix }) => {
                let kit = TestBroker {
                    vhost: vhost_of(&cli.url),
                    url: cli.url.clone(),
                    prefix,
                };
                match cleanup(&kit).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("magi-bench cleanup: {e:#}");
                        1
                    }
                }
            }
            None => match bench(cli).await {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("magi-bench: {e:#}");
                    2
                }
            },
        }
    });
    std::process::exit(code);
}

/// Runs every measurement; true when all of them could be taken.
async fn bench(cli: Cli) -> Result<bool> {
    let sizes = match (cli.sizes.is_empty(), cli.quick) {
        (false, _) => cli.sizes.clone(),
        (true, true) => vec![1],
        (true, false) => vec![1, 10, 100, 1000],
    };
    let rounds = cli.rounds.unwrap_or(if cli.quick { 20 } else { 100 });
    let warmup = cli.warmup.unwrap_or(if cli.quick { 3 } else { 10 });
    let check_runs = cli.check_runs.unwrap_or(if cli.quick { 3 } else { 9 });
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("own directory")?.to_path_buf();
    let work = match &cli.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("magi-bench.")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("magi-bench.").tempdir()?,
    };
    let mut cli = cli;
    if cli.cluster {
        Cluster::ensure()
            .await
            .context("starting the local cluster")?;
        cli.url = Cluster::url(&[1, 2, 3]);
    }
    let kit = TestBroker {
        url: cli.url.clone(),
        vhost: vhost_of(&cli.url),
        prefix: format!("magi.bench.{}.", uuid::Uuid::new_v4().simple()),
    };
    // Tests that restart the broker (or stop cluster nodes) take these locks exclusively:
    // never measure across one. On the cluster the single broker is not used; a failover
    // run stops cluster nodes itself, so it holds the cluster alone.
    let (_hold, _cluster_hold) = match (cli.cluster, cli.failover.is_some()) {
        (false, _) => (
            Some(BrokerGuard::shared().await.context("the broker lock")?),
            None,
        ),
        (true, false) => (
            None,
            Some(ClusterGuard::shared().await.context("the cluster lock")?),
        ),
        (true, true) => (
            None,
            Some(
                ClusterGuard::exclusive()
                    .await
                    .context("the cluster lock")?,
            ),
        ),
    };
    interrupt::watch_signals(kit.prefix.clone(), kit.url.clone());
    let agent_program = bin_dir.join("magi-bench-agent");
    if !agent_program.is_file() {
        anyhow::bail!(
            "{} is missing (build the magi-bench package: it has two binaries)",
            agent_program.display()
        );
    }
    let module = ours::Module::create(
        &work.path().join("module"),
        &agent_program,
        cli.agent_kib * 1024,
    )?;
    // The shipped archive travels as base64 in a JSON call: room for it and its envelope.
    let shipped = module.packed.bytes.len().div_ceil(3) * 4;
    let max_message =
        (module.packed.bytes.len() * 4 / 3 + (64 << 10)).max(magi_bus::amqp::DEFAULT_MAX_MESSAGE);
    eprintln!(
        "magi-bench: broker {}, prefix {}, sizes {sizes:?}, {rounds} rounds (+{warmup} warm-up), agent archive {} KiB",
        magi_proto::redact_url(&cli.url),
        kit.prefix,
        module.packed.bytes.len() / 1024
    );

    let mut figures = Vec::new();
    let mut complete = true;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    // The bare reference's queues live through MAGI-rs's run (its rounds come before and
    // after), so the broker holds two queues per node then.
    let queues = largest * if cli.no_bare { 1 } else { 2 };
    figures.extend(broker::open_files_figure(&cli.url, largest, queues));
    figures.extend(broker::idle_cpu_figure(&cli.url).await);
    let load_at_start = sys::load_average();
    let plan = sizes::Plan {
        cli: &cli,
        kit: &kit,
        module: &module,
        work: work.path(),
        rounds,
        warmup,
        shipped,
        max_message,
    };
    for &n in &sizes {
        interrupt::halt_if_interrupted().await;
        if let Err(e) = sys::check_memory(n, shipped) {
            eprintln!("magi-bench: N = {n}: not run: {e:#}");
            complete = false;
            continue;
        }
        let (these, all) = sizes::measure(&plan, n).await?;
        figures.extend(these);
        complete &= all;
    }
    let (these, all) =
        memory::figures(&cli, &kit, &module, work.path(), &bin_dir, max_message).await?;
    figures.extend(these);
    complete &= all;
    interrupt::halt_if_interrupted().await;
    let (these, all) = check::figures(&cli, &bin_dir, work.path(), check_runs)?;
    figures.extend(these);
    complete &= all;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    for (name, load) in [
        ("load_average_start", load_at_start),
        ("load_average_end", sys::load_average()),
    ] {
        if let Some(load) = load {
            figures
                .push(Figure::new(name, cores, load, "").note("1-minute load average; n = cores"));
        }
    }
    if let Err(e) = cleanup(&kit).await {
        eprintln!("magi-bench: {e:#}");
        complete = false;
    }
    print!("{}", report::table(&figures));
    std::fs::write(&cli.out, serde_json::to_string_pretty(&figures)? + "\n")
        .with_context(|| format!("writing {}", cli.out.display()))?;
    eprintln!("magi-bench: figures written to {}", cli.out.display());
    // A measurement that failed leaves its records and consoles for the diagnosis.
    if cli.keep || !complete {
        let kept = work.keep();
        let why = if cli.keep {
            ""
        } else {
            " (a measurement failed)"
        };
        eprintln!("magi-bench: work directory kept{why}: {}", kept.display());
    }
    Ok(complete)
}

/// Deletes everything under the kit's prefix, waiting (up to a minute) for a broker that is
/// being restarted by someone's test.
async fn cleanup(kit: &TestBroker) -> Result<()> {
    let mut last = None;
    for _ in 0..12 {
        match kit.cleanup().await {
            Ok(left) if left.is_empty() => return Ok(()),
            Ok(left) => last = Some(format!("left on the broker: {left:?}")),
            Err(e) => last = Some(format!("cleanup: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    anyhow::bail!("{}", last.unwrap_or_default())
}
