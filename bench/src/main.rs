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
mod check;
mod failover;
mod figures;
mod fleet;
mod interrupt;
mod memory;
mod ours;
mod permissions;
mod report;
mod sys;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use magi_testkit::{vhost_of, BrokerGuard, Cluster, ClusterGuard, TestBroker};

use crate::figures::{floor_figures, size_figures};
use crate::fleet::FleetArgs;
use crate::report::{ms, Figure};

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
    /// Keep the work directory (records, consoles, node states) and print where it is.
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("MAGI_BENCH_BLOCKING")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.max_blocking_threads(n);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
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
    if let Some(figure) = open_files_figure(&cli.url, largest, queues) {
        figures.push(figure);
    }
    let load_at_start = sys::load_average();
    for &n in &sizes {
        interrupt::halt_if_interrupted().await;
        if let Err(e) = sys::check_memory(n, shipped) {
            eprintln!("magi-bench: N = {n}: not run: {e:#}");
            complete = false;
            continue;
        }
        let args = FleetArgs {
            url: cli.url.clone(),
            prefix: kit.prefix.clone(),
            nodes: n,
            per_conn: cli.per_conn,
            name_prefix: "n".into(),
            state_dir: work.path().join(format!("nodes-{n}")),
            max_message,
            heartbeat_ms: cli.heartbeat_ms,
            dead_man_secs: cli.dead_man_secs,
            separate_caches: cli.separate_caches,
            bare_exchange: None,
            bare_reply: None,
            bare_floor: false,
            cred_dir: None,
            allow: None,
            first: 0,
            total: n,
            processes: cli.processes.unwrap_or(n.div_ceil(1000)).max(1),
        };
        // Bare lapin: half of its rounds before MAGI-rs's run, half after, with the same
        // consumers, so that both see the same drift of the machine's load.
        let mut session = None;
        if !cli.no_bare {
            eprintln!("magi-bench: N = {n}: bare lapin ...");
            let started = async {
                let mut s = bare::Session::start(&args, false).await?;
                s.rounds(warmup, rounds.div_ceil(2)).await?;
                Ok::<_, anyhow::Error>(s)
            };
            match started.await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    eprintln!("magi-bench: N = {n}: bare lapin failed: {e:#}");
                    complete = false;
                }
            }
        }
        eprintln!("magi-bench: N = {n}: MAGI-rs ...");
        let permissions = match cli.permissions {
            false => None,
            true => {
                // Broker users are global: names unique to this benchmark.
                let id = &kit.prefix["magi.bench.".len()..][..8];
                let dir = work.path().join(format!("permissions-{n}"));
                std::fs::create_dir_all(&dir)?;
                let made = permissions::Permissions::create(&cli.url, &kit.prefix, id, n, &dir)
                    .context("--permissions")?;
                eprintln!(
                    "magi-bench: N = {n}: permissions on: vhost {}, {n} node users, orchestrator {}",
                    made.vhost, made.orchestrator
                );
                Some(made)
            }
        };
        let ours_args = match &permissions {
            None => args.clone(),
            Some(p) => FleetArgs {
                url: p.orchestrator_url(),
                name_prefix: p.node_prefix.clone(),
                cred_dir: Some(p.cred_dir.clone()),
                allow: Some(p.orchestrator.clone()),
                ..args.clone()
            },
        };
        let alive = match cli.alive_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(magi::driver::default_alive_every(n)),
        };
        let ours = ours::run(
            &ours_args,
            alive,
            cli.watch_heartbeats,
            &module,
            warmup,
            rounds,
            work.path(),
            cli.failover,
        )
        .await;
        if let Some(p) = &permissions {
            if let Err(e) = p.remove() {
                eprintln!("magi-bench: {e:#}");
                complete = false;
            }
        }
        let ours = match ours {
            Ok(o) => {
                if let Some(f) = &o.failover {
                    complete &= f.once;
                    figures.extend(f.figures.iter().cloned());
                }
                Some(o)
            }
            Err(e) => {
                eprintln!("magi-bench: N = {n}: MAGI-rs failed: {e:#}");
                complete = false;
                None
            }
        };
        interrupt::halt_if_interrupted().await;
        let bare = match session {
            None => None,
            Some(mut s) => {
                eprintln!("magi-bench: N = {n}: bare lapin, second half ...");
                let big = if cli.quick { 1 } else { 3 };
                let rest = async {
                    s.rounds(warmup.min(3), rounds / 2).await?;
                    s.big_rounds(big, shipped).await
                };
                let result = rest.await;
                let run = s.finish().await;
                match result {
                    Ok(()) => Some(run),
                    Err(e) => {
                        eprintln!("magi-bench: N = {n}: bare lapin failed: {e:#}");
                        complete = false;
                        None
                    }
                }
            }
        };
        // The floor, after both: the same fan-out with none of the guarantees.
        interrupt::halt_if_interrupted().await;
        let floor = if cli.no_floor {
            None
        } else {
            eprintln!("magi-bench: N = {n}: the floor (bare lapin, transient, no confirms) ...");
            let measured = async {
                let mut s = bare::Session::start(&args, true).await?;
                let r = s.rounds(warmup.min(3), rounds).await;
                let run = s.finish().await;
                r.map(|()| run)
            };
            match measured.await {
                Ok(run) => Some(run),
                Err(e) => {
                    eprintln!("magi-bench: N = {n}: the floor failed: {e:#}");
                    complete = false;
                    None
                }
            }
        };
        let _ = std::fs::remove_dir_all(&args.state_dir);
        let mut these = size_figures(n, ours.as_ref(), bare.as_ref(), &module);
        if cli.permissions {
            for f in these.iter_mut().filter(|f| f.name.starts_with("roundtrip")) {
                f.note = Some("permissions on: a broker user and connection per node".into());
            }
        }
        figures.extend(these);
        figures.extend(floor_figures(
            n,
            ours.as_ref(),
            bare.as_ref(),
            floor.as_ref(),
        ));
    }
    let magi_node = cli
        .magi_node
        .clone()
        .unwrap_or_else(|| bin_dir.join("magi-node"));
    let state = work.path().join("magi-node-state");
    let (subject, what) = if magi_node.is_file() {
        (
            memory::Subject::daemon(&magi_node, &cli.url, &kit.prefix, &state),
            "VmRSS of a real magi-node process",
        )
    } else {
        eprintln!(
            "magi-bench: {} is not built: measuring this program's fleet mode hosting one node agent instead (build it: cargo build --release -p magi-node)",
            magi_node.display()
        );
        complete = false;
        (
            memory::Subject::fleet(&cli.url, &kit.prefix, &state, max_message)?,
            "NOT magi-node: magi-bench's fleet mode with one node agent (magi-node not built)",
        )
    };
    interrupt::halt_if_interrupted().await;
    eprintln!("magi-bench: node agent resident memory ...");
    match memory::measure(&subject, &cli.url, &kit.prefix, &module.dir).await {
        Ok(rss) => {
            let mib = |kb: u64| kb as f64 / 1024.0;
            figures.push(
                Figure::new("magi_node_rss_idle", 1, mib(rss.idle_kb), "MiB")
                    .at_most(10.0)
                    .note(what),
            );
            figures.push(
                Figure::new("magi_node_rss_running", 1, mib(rss.running_kb), "MiB")
                    .note("agent (1 MiB module) loaded and called 20 times"),
            );
            figures.push(
                Figure::new("magi_node_rss_peak", 1, mib(rss.peak_kb), "MiB")
                    .note("VmHWM at the end"),
            );
        }
        Err(e) => {
            eprintln!("magi-bench: node agent memory: {e:#}");
            complete = false;
        }
    }
    // lapin sizes its two socket buffers (32 frames each) before the broker's frame_max is
    // known, then grows them and zero-fills the growth: 2 × 4 MiB resident. A frame_max in
    // the URL sizes them at once, untouched. Same daemon, same broker, URL with frame_max:
    if magi_node.is_file() {
        let url = magi_bus::amqp::with_frame_max(&cli.url);
        let subject = memory::Subject::daemon(&magi_node, &url, &kit.prefix, &state);
        match memory::measure(&subject, &url, &kit.prefix, &module.dir).await {
            Ok(rss) => {
                let mib = |kb: u64| kb as f64 / 1024.0;
                figures.push(
                    Figure::new("magi_node_rss_idle_frame_max", 1, mib(rss.idle_kb), "MiB")
                        .at_most(10.0)
                        .note("the same, broker URL with ?frame_max=131072"),
                );
                figures.push(
                    Figure::new(
                        "magi_node_rss_running_frame_max",
                        1,
                        mib(rss.running_kb),
                        "MiB",
                    )
                    .note("the same, broker URL with ?frame_max=131072"),
                );
            }
            Err(e) => {
                eprintln!("magi-bench: node agent memory (frame_max): {e:#}");
                complete = false;
            }
        }
    }

    interrupt::halt_if_interrupted().await;
    let magi = cli.magi.clone().unwrap_or_else(|| bin_dir.join("magi"));
    if magi.is_file() {
        eprintln!("magi-bench: magi check, 10,000 events ...");
        let file = work.path().join("check-10000.aal");
        std::fs::write(&file, check::procedure(100, 100))?;
        match check::time_check(&magi, &file, check_runs) {
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
    if cli.keep {
        let kept = work.keep();
        eprintln!("magi-bench: work directory kept: {}", kept.display());
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

/// The brokers' open-file limit (the lowest, for a cluster), warned about when it is below
/// two per queue at the largest N (`queues`): RabbitMQ's file handle cache then closes and
/// reopens queue files all the time. On a broker started with Debian's 1,024 a round at N = 3000
/// took 77 s instead of 1.5 s, the cache's process busy with its bookkeeping
/// (docs/benchmarks.md, "The broker's open-file limit").
fn open_files_figure(url: &str, largest: usize, queues: usize) -> Option<Figure> {
    let limit = sys::find_brokers(url)
        .into_iter()
        .filter_map(sys::open_files_limit)
        .min()?;
    let wanted = 2 * queues as u64;
    if limit < wanted {
        eprintln!(
            "magi-bench: warning: the broker may open {limit} files, fewer than two per queue for the \
             {queues} queues at N = {largest}: its figures will show its file handle cache, not MAGI-rs \
             (restart it with a higher limit: docs/deploy.md)"
        );
    }
    Some(
        Figure::new("broker_open_files", largest, limit as f64, "").note(format!(
            "the broker's open-file limit; below {wanted} (two per queue) it thrashes"
        )),
    )
}
