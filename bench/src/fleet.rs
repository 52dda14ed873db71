//! The simulated testbed: a child process (`magi-bench fleet ...`) hosting N node agents,
//! or N bare-lapin consumers, on a few broker connections. Keeping the nodes out of the
//! benchmark's own process means the orchestrator's CPU time is its own.
//!
//! The child prints `ready <ms>` once everything is attached, then waits for a line on its
//! stdin (or its end), stops everything, prints `stopped <ms>` and exits.
//!
//! The child's bare-lapin consumers are `bare_fleet.rs`; the bare publisher that drives
//! them is `bare.rs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use lapin::options::QueueDeleteOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use magi_bus::amqp::{AmqpBus, BusOptions};
use magi_bus::Bus;
use magi_node::NodeConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

/// Arguments of the `fleet` subcommand (internal: the benchmark starts it).
#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// Broker URL.
    #[arg(long)]
    pub url: String,
    /// Prefix of every broker object.
    #[arg(long)]
    pub prefix: String,
    /// How many nodes (or consumers).
    #[arg(long)]
    pub nodes: usize,
    /// Nodes per broker connection.
    #[arg(long, default_value_t = 100)]
    pub per_conn: usize,
    /// Node names are `<name-prefix><i>`.
    #[arg(long, default_value = "n")]
    pub name_prefix: String,
    /// This process hosts nodes `first .. first + nodes` of a fleet of `total` (several
    /// processes share one fleet); `total` 0 means `nodes`.
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Size of the whole fleet (the width of node numbers).
    #[arg(long, default_value_t = 0)]
    pub total: usize,
    /// Where the nodes keep their state (agent cache, logs): one directory shared by all,
    /// as `magi-node --nodes N` does, or `<dir>/<name>` each with `--separate-caches`.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// One state directory (agent cache) per node, as on separate machines.
    #[arg(long)]
    pub separate_caches: bool,
    /// Largest bus message.
    #[arg(long)]
    pub max_message: usize,
    /// Node agents' heartbeat period in ms (the daemon's default is 2000).
    #[arg(long, default_value_t = 2000)]
    pub heartbeat_ms: u64,
    /// Node agents' dead-man switch in seconds (as `magi-node --dead-man-secs`); default
    /// 10, or 60 in fleets of 1000 nodes and more; 0 never.
    #[arg(long)]
    pub dead_man_secs: Option<u64>,
    /// Bare-lapin consumers instead of node agents: the exchange their queues bind.
    #[arg(long)]
    pub bare_exchange: Option<String>,
    /// Bare-lapin consumers: the queue they answer on.
    #[arg(long)]
    pub bare_reply: Option<String>,
    /// Which bare-lapin pattern the consumers follow.
    #[arg(long, value_enum, default_value = "bare")]
    pub bare_kind: crate::bare::Kind,
    /// With permissions (`--permissions`): `<dir>/<node>.cred` holds each node's broker
    /// credentials (as apply.sh writes them), and every node has a connection of its own as
    /// that user, as `magi-node` does (`--url` gives the broker and vhost).
    #[arg(long)]
    pub cred_dir: Option<PathBuf>,
    /// The broker user the nodes admit (`magi-node --allow`); default: everyone.
    #[arg(long)]
    pub allow: Option<String>,
    /// (parent side) How many processes the fleet is spread over.
    #[arg(skip = 1usize)]
    pub processes: usize,
}

impl FleetArgs {
    /// The names of the nodes this process hosts.
    pub fn names(&self) -> Vec<String> {
        let total = if self.total == 0 {
            self.nodes
        } else {
            self.total
        };
        let all = node_names(&self.name_prefix, total);
        all[self.first.min(total)..(self.first + self.nodes).min(total)].to_vec()
    }

    /// The URL connection `i` uses: the broker list turned so that connections spread
    /// over a cluster's nodes (each still fails over to the others).
    pub fn url_for(&self, i: usize) -> String {
        spread(&self.url, i)
    }
}

/// A broker option with its brokers turned by `i` (unchanged for one broker).
pub fn spread(url: &str, i: usize) -> String {
    match magi_bus::amqp::Brokers::parse(url) {
        Ok(b) if b.urls.len() > 1 => {
            let mut urls = b.urls.clone();
            urls.rotate_left(i % b.urls.len());
            urls.join(",")
        }
        _ => url.to_string(),
    }
}

/// The queue arguments of the bare reference: quorum queues where the bus uses them (a
/// broker list), so that both sides keep the same guarantees; classic for the floor.
pub fn bare_queue_args(url: &str, kind: crate::bare::Kind) -> FieldTable {
    let mut args = expiring();
    let quorum = magi_bus::amqp::Brokers::parse(url)
        .is_ok_and(|b| b.queues == magi_bus::amqp::QueueKind::Quorum);
    if quorum && kind.guarantees() {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    args
}

/// Node names of a fleet.
pub fn node_names(prefix: &str, n: usize) -> Vec<String> {
    let width = n.saturating_sub(1).to_string().len();
    (0..n).map(|i| format!("{prefix}{i:0width$}")).collect()
}

/// The bus options every side of the benchmark uses.
pub fn bus_options(prefix: &str, max_message: usize, name: String) -> BusOptions {
    BusOptions {
        connection_name: Some(name),
        max_message_bytes: max_message,
        ..BusOptions::with_prefix(prefix)
    }
}

/// Runs the child side.
pub async fn serve(args: FleetArgs) -> Result<()> {
    // If the machine runs out of memory, the kernel should take a fleet, not the broker
    // (at N = 10,000 it once chose RabbitMQ, which then took minutes to recover its queues).
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let finish: Box<dyn FnOnce() -> tokio::task::JoinHandle<()>> =
        match (&args.bare_exchange, &args.bare_reply) {
            (Some(ex), Some(reply)) => {
                let conns = crate::bare_fleet::consumers(&args, ex, reply, stop_rx).await?;
                Box::new(move || {
                    tokio::spawn(async move {
                        for (conn, queues) in conns {
                            if let Ok(ch) = conn.create_channel().await {
                                for q in queues {
                                    let _ = ch
                                        .queue_delete(q.into(), QueueDeleteOptions::default())
                                        .await;
                                }
                            }
                            let _ = conn.close(200, "bye".into()).await;
                        }
                    })
                })
            }
            _ => {
                let (buses, fleet) = node_agents(&args).await?;
                Box::new(move || {
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(120), fleet.shutdown()).await;
                        for b in buses {
                            b.close().await;
                        }
                    })
                })
            }
        };
    println!("ready {}", started.elapsed().as_millis());
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    let stopping = Instant::now();
    let _ = stop_tx.send(true);
    // The end of stdin without a line: the benchmark is gone (interrupted), and may have
    // deleted the broker objects (with --permissions, the vhost) under the nodes, whose
    // goodbyes would then wait for a broker that refuses them. Stop at once, best effort.
    let patience = match line.is_empty() {
        true => Duration::from_secs(10),
        false => Duration::from_secs(600),
    };
    let _ = tokio::time::timeout(patience, finish()).await;
    // Not println!: with the benchmark gone, stdout is a broken pipe and println! panics.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stdout(),
        "stopped {}",
        stopping.elapsed().as_millis()
    );
    Ok(())
}

/// Connects the buses and attaches every node agent, a few at a time per connection.
async fn node_agents(args: &FleetArgs) -> Result<(Vec<AmqpBus>, magi_node::Fleet)> {
    let names = args.names();
    let (buses, links) = match &args.cred_dir {
        Some(dir) => own_connections(args, &names, dir).await?,
        None => shared_connections(args, &names).await?,
    };
    let mut fleet = magi_node::Fleet::new();
    for (name, link) in links {
        let state = match args.separate_caches {
            true => args.state_dir.join(&name),
            false => args.state_dir.clone(),
        };
        let mut config = NodeConfig::new(&name, state);
        // As the magi-node daemon: stop a run's agents after 10 s of orchestrator silence;
        // 60 s in fleets of 1000 nodes and more, whose node agents share a connection per
        // 100: a node's `runAlive` waits behind the other 99 nodes' 1.4 MB `loadAgent`s on
        // it (more than 10 s at N = 3000, and at 1000 on the cluster; a testbed node has a
        // connection of its own).
        let default = if args.total.max(args.nodes) >= 1000 {
            60
        } else {
            10
        };
        let quiet = args.dead_man_secs.unwrap_or(default);
        config.dead_man = (quiet > 0).then(|| Duration::from_secs(quiet));
        config.heartbeat = Duration::from_millis(args.heartbeat_ms);
        if let Some(user) = &args.allow {
            config.policy.allow = Some(vec![user.clone()]);
        }
        fleet.spawn(link, config);
    }
    Ok((buses, fleet))
}

type Attached = (Vec<AmqpBus>, Vec<(String, magi_bus::NodeLink)>);

/// Every node on a connection of its own, as its own broker user (64 connecting at once).
async fn own_connections(args: &FleetArgs, names: &[String], cred_dir: &Path) -> Result<Attached> {
    let mut attaching = tokio::task::JoinSet::new();
    let (mut buses, mut links) = (Vec::new(), Vec::new());
    for name in names {
        if attaching.len() >= 64 {
            if let Some(r) = attaching.join_next().await {
                let (bus, link) = r??;
                buses.push(bus);
                links.push(link);
            }
        }
        let url = crate::permissions::node_url(&args.url, cred_dir, name)?;
        let opts = bus_options(
            &args.prefix,
            args.max_message,
            format!("{}{name}", args.prefix),
        );
        let name = name.clone();
        attaching.spawn(async move {
            let bus = AmqpBus::connect(&url, opts)
                .await
                .with_context(|| format!("connecting {name}"))?;
            let link = bus
                .attach_node(&name)
                .await
                .with_context(|| format!("attaching {name}"))?;
            Ok::<_, anyhow::Error>((bus, (name, link)))
        });
    }
    while let Some(r) = attaching.join_next().await {
        let (bus, link) = r??;
        buses.push(bus);
        links.push(link);
    }
    Ok((buses, links))
}

/// `per_conn` nodes on each connection, as the benchmark's default user.
async fn shared_connections(args: &FleetArgs, names: &[String]) -> Result<Attached> {
    let conns = args.nodes.div_ceil(args.per_conn.max(1)).max(1);
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..conns {
        let opts = bus_options(
            &args.prefix,
            args.max_message,
            format!("{}fleet#{i}", args.prefix),
        );
        let url = args.url_for(args.first / args.per_conn.max(1) + i);
        connecting.spawn(async move { (i, AmqpBus::connect(&url, opts).await) });
    }
    let mut buses: Vec<Option<AmqpBus>> = vec![None; conns];
    while let Some(r) = connecting.join_next().await {
        let (i, bus) = r?;
        buses[i] = Some(bus.context("fleet: connecting")?);
    }
    let buses: Vec<AmqpBus> = buses.into_iter().flatten().collect();
    // Attach concurrently (each attach is a few broker round trips), bounded.
    let mut attaching = tokio::task::JoinSet::new();
    let mut links = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if attaching.len() >= 64 {
            if let Some(r) = attaching.join_next().await {
                links.push(r??);
            }
        }
        let bus = buses[i % buses.len()].clone();
        let name = name.clone();
        attaching.spawn(async move {
            let link = bus
                .attach_node(&name)
                .await
                .with_context(|| format!("attaching {name}"))?;
            Ok::<_, anyhow::Error>((name, link))
        });
    }
    while let Some(r) = attaching.join_next().await {
        links.push(r??);
    }
    Ok((buses, links))
}

/// A lapin connection to the first broker of `url` (a broker option) that answers.
pub async fn connect_first(url: &str, props: ConnectionProperties) -> Result<Connection> {
    let brokers = magi_bus::amqp::Brokers::parse(url)?;
    let mut last = None;
    for u in &brokers.urls {
        match Connection::connect(u, props.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("no broker")))
}

/// Queue arguments of the bare side: gone 10 minutes after its last use, whatever happens.
pub fn expiring() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongInt(600_000));
    args
}

/// The parent's handle on a fleet child.
pub struct Fleet {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    /// How long the child took to attach everything.
    pub ready_after: Duration,
}

impl Fleet {
    /// Starts `magi-bench fleet` with `args` and waits (at most `patience`) until it is ready.
    pub async fn start(args: &FleetArgs, patience: Duration) -> Result<Fleet> {
        let exe = std::env::current_exe().context("own executable")?;
        let mut cmd = Command::new(exe);
        crate::sys::die_with_parent(&mut cmd);
        cmd.arg("fleet")
            .args(["--url", &args.url, "--prefix", &args.prefix])
            .args([
                "--nodes",
                &args.nodes.to_string(),
                "--per-conn",
                &args.per_conn.to_string(),
            ])
            .args(["--name-prefix", &args.name_prefix])
            .args(["--first", &args.first.to_string()])
            .args(["--total", &args.total.to_string()])
            .arg("--state-dir")
            .arg(&args.state_dir)
            .args(["--max-message", &args.max_message.to_string()])
            .args(["--heartbeat-ms", &args.heartbeat_ms.to_string()]);
        if let Some(secs) = args.dead_man_secs {
            cmd.args(["--dead-man-secs", &secs.to_string()]);
        }
        if args.separate_caches {
            cmd.arg("--separate-caches");
        }
        if let Some(dir) = &args.cred_dir {
            cmd.arg("--cred-dir").arg(dir);
        }
        if let Some(user) = &args.allow {
            cmd.args(["--allow", user]);
        }
        if let (Some(ex), Some(reply)) = (&args.bare_exchange, &args.bare_reply) {
            cmd.args(["--bare-exchange", ex, "--bare-reply", reply]);
        }
        cmd.args(["--bare-kind", args.bare_kind.word()]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting the fleet")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("fleet stdout")?).lines();
        let mut fleet = Fleet {
            child,
            stdin,
            stdout,
            ready_after: Duration::ZERO,
        };
        let line = fleet.expect("ready", patience).await?;
        fleet.ready_after = Duration::from_millis(line.parse().unwrap_or(0));
        Ok(fleet)
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn expect(&mut self, word: &str, patience: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let line = tokio::time::timeout_at(deadline, self.stdout.next_line())
                .await
                .with_context(|| format!("the fleet did not say `{word}` within {patience:?}"))??;
            let Some(line) = line else {
                bail!("the fleet ended before saying `{word}`")
            };
            if let Some(rest) = line.strip_prefix(word) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    /// Tells the child to stop and waits for it; how long its nodes took to stop.
    pub async fn stop(mut self) -> Result<Duration> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
        }
        let took = self.expect("stopped", Duration::from_secs(180)).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.start_kill();
        Ok(Duration::from_millis(took?.parse().unwrap_or(0)))
    }
}

/// A fleet spread over `args.processes` child processes, started and stopped together.
pub struct Fleets {
    parts: Vec<Fleet>,
    /// How long the slowest child took to attach everything.
    pub ready_after: Duration,
}

impl Fleets {
    /// Starts the children (at once), each with its share of the nodes, and waits until all
    /// are ready.
    pub async fn start(args: &FleetArgs, patience: Duration) -> Result<Fleets> {
        let processes = args.processes.clamp(1, args.nodes.max(1));
        let share = args.nodes.div_ceil(processes);
        let total = if args.total == 0 {
            args.nodes
        } else {
            args.total
        };
        let shares: Vec<FleetArgs> = (0..processes)
            .map(|k| FleetArgs {
                first: args.first + k * share,
                nodes: share.min(args.nodes.saturating_sub(k * share)),
                total,
                state_dir: if processes > 1 {
                    args.state_dir.join(format!("p{k}"))
                } else {
                    args.state_dir.clone()
                },
                ..args.clone()
            })
            .filter(|a| a.nodes > 0)
            .collect();
        let started =
            futures_util::future::join_all(shares.iter().map(|a| Fleet::start(a, patience))).await;
        let mut parts = Vec::new();
        let mut failed = None;
        for r in started {
            match r {
                Ok(f) => parts.push(f),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            futures_util::future::join_all(parts.into_iter().map(Fleet::stop)).await;
            return Err(e);
        }
        let ready_after = parts
            .iter()
            .map(|f| f.ready_after)
            .max()
            .unwrap_or_default();
        Ok(Fleets { parts, ready_after })
    }

    /// The children's pids.
    pub fn pids(&self) -> Vec<u32> {
        self.parts.iter().filter_map(Fleet::pid).collect()
    }

    /// Stops every child; how long the slowest took to stop its nodes.
    pub async fn stop(self) -> Result<Duration> {
        let mut longest = Duration::ZERO;
        for r in futures_util::future::join_all(self.parts.into_iter().map(Fleet::stop)).await {
            longest = longest.max(r?);
        }
        Ok(longest)
    }
}
