//! `magi-node`: the node agent daemon. It attaches to RabbitMQ under the node's name,
//! announces itself and heartbeats, and carries out the calls of every run that uses this
//! node (see `magi_node::node`). It ends on SIGTERM or SIGINT: every agent is stopped and
//! the node says goodbye (`alive: false`).
//!
//! With `--nodes N` or `--names a,b,c` one process hosts many node agents (for benchmarks
//! and simulations): each has its own name and queue and runs the same dispatcher; they
//! share one broker connection (or `--connections K`).

use magi_proto::redact_url as redact;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use magi_bus::amqp::{AmqpBus, BusOptions};
use magi_bus::Bus;
use magi_node::library::ModuleLibrary;
use magi_node::NodeConfig;
use magi_proto::Object;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Exit code: a clean shutdown (SIGTERM, SIGINT).
const EXIT_OK: u8 = 0;
/// Exit code: the broker connection was lost for good while running.
const EXIT_LOST: u8 = 1;
/// Exit code: bad command line or configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code: the broker could not be reached, or refused the node (name already in use).
const EXIT_BROKER: u8 = 3;

const AFTER_HELP: &str = "\
Settings come from the command line, then the environment (MAGI_NODE_NAME, MAGI_BROKER,
MAGI_NODE_CONFIG, MAGI_NODE_ADDRESS, MAGI_NODE_STATE_DIR, MAGI_MODULES), then the --config
file. The config file has one `key = value` per line (`#` starts a comment, values may be
quoted); the keys are the long option names: name, names, nodes, name-prefix, broker,
address, hosts, host (repeatable), state-dir, log-dir, modules (repeatable), heartbeat-ms,
dead-man-secs, connections, log. See scripts/magi-node.conf.example.

The hosts file (--hosts) maps node names to addresses for agents: `name = ip` lines,
/etc/hosts lines (`ip name [alias...]`) or a JSON object. Without a map agents resolve peer
names with the system resolver.

Exit codes: 0 clean shutdown; 1 the broker was lost for good; 2 bad configuration;
3 broker unreachable or the node name already attached elsewhere.";

/// The MAGI-rs node agent daemon.
#[derive(Parser, Debug, Default)]
#[command(name = "magi-node", version, about, after_help = AFTER_HELP)]
struct Args {
    /// The node's name, as procedures' `groups` name it (default: the host name up to its
    /// first dot).
    #[arg(long, env = "MAGI_NODE_NAME")]
    name: Option<String>,
    /// Host several node agents in this process, named by a comma-separated list (instead
    /// of --name).
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// Host N node agents in this process, named `<name-prefix>0` ... (benchmarks; instead
    /// of --name).
    #[arg(long)]
    nodes: Option<usize>,
    /// Name prefix of the `--nodes` agents (default `sim`).
    #[arg(long)]
    name_prefix: Option<String>,
    /// RabbitMQ URL, e.g. amqp://magi-node:PASS@broker:5672/%2fmagi?heartbeat=10.
    #[arg(long, env = "MAGI_BROKER")]
    broker: Option<String>,
    /// A `key = value` configuration file (see below).
    #[arg(long, env = "MAGI_NODE_CONFIG")]
    config: Option<PathBuf>,
    /// The node's own address given to agents (servers bind it, clients send from it);
    /// default: the node name resolved by the system, else 127.0.0.1.
    #[arg(long, env = "MAGI_NODE_ADDRESS")]
    address: Option<String>,
    /// A file mapping node names to addresses, given to agents.
    #[arg(long)]
    hosts: Option<PathBuf>,
    /// One `name=ip` entry of the agents' host map (repeatable).
    #[arg(long = "host", value_name = "NAME=IP")]
    host: Vec<String>,
    /// Where the agent cache, the Python helper and agents' logs live.
    #[arg(long, env = "MAGI_NODE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where agents' stderr goes (default: <state-dir>/logs).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Extra directories of agent modules, searched when an agent's path does not exist
    /// here (repeatable; also MAGI_MODULES, colon-separated).
    #[arg(long = "modules")]
    modules: Vec<PathBuf>,
    /// Heartbeat period in milliseconds (default 2000).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Stop a run's agents when its orchestrator has been silent this many seconds
    /// (default 10; 0 never).
    #[arg(long)]
    dead_man_secs: Option<u64>,
    /// Broker connections shared by the hosted node agents (default 1).
    #[arg(long)]
    connections: Option<usize>,
    /// Broker users (orchestrators) allowed to use this node: join its groups, load and
    /// call agents (repeatable or comma-separated; default: anyone who can reach it).
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// Log filter (tracing's EnvFilter syntax; RUST_LOG overrides; default `info`).
    #[arg(long)]
    log: Option<String>,
    /// Prefix of every broker object (tests use a unique one).
    #[arg(long, hide = true, env = "MAGI_BUS_PREFIX")]
    bus_prefix: Option<String>,
}

/// Settings after the command line, the environment and the file were merged and checked.
#[derive(Debug)]
struct Settings {
    names: Vec<String>,
    broker: String,
    address: Option<String>,
    hosts: Object,
    state_dir: PathBuf,
    log_dir: Option<PathBuf>,
    modules: Vec<PathBuf>,
    heartbeat: Duration,
    dead_man: Option<Duration>,
    connections: usize,
    prefix: String,
    policy: magi_node::Policy,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(path) = args.config.clone() {
        if let Err(e) = merge_config_file(&mut args, &path) {
            eprintln!("magi-node: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    init_logging(args.log.as_deref());
    let settings = match settle(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("magi-node: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("magi-node: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    ExitCode::from(runtime.block_on(serve(settings)))
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| filter.and_then(|f| EnvFilter::try_new(f).ok()))
        .unwrap_or_else(|| EnvFilter::new(format!("info,{}", magi_bus::amqp::LAPIN_LOG_FILTER)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(magi_proto::color_allowed(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            false,
        ))
        .with_writer(std::io::stderr)
        .init();
}

/// Reads a `key = value` file into the arguments the command line and the environment left unset.
fn merge_config_file(args: &mut Args, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
    apply_config(args, &path.display().to_string(), &text)
}

fn apply_config(args: &mut Args, file: &str, text: &str) -> Result<(), String> {
    let mut names = Vec::new();
    let mut hosts = Vec::new();
    let mut modules = Vec::new();
    let mut allow = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = || format!("{file}:{}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{}: expected `key = value`, found {line:?}", at()));
        };
        let key = key.trim().replace('_', "-");
        let value = unquote(value.trim());
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{}: {what} must be a whole number, not {value:?}", at()))
        };
        fn set<T>(slot: &mut Option<T>, v: T) {
            if slot.is_none() {
                *slot = Some(v);
            }
        }
        match key.as_str() {
            "name" => set(&mut args.name, value.to_string()),
            "names" => names.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "nodes" => set(&mut args.nodes, number("nodes")? as usize),
            "name-prefix" => set(&mut args.name_prefix, value.to_string()),
            "broker" => set(&mut args.broker, value.to_string()),
            "address" => set(&mut args.address, value.to_string()),
            "hosts" => set(&mut args.hosts, PathBuf::from(value)),
            "host" => hosts.push(value.to_string()),
            "state-dir" => set(&mut args.state_dir, PathBuf::from(value)),
            "log-dir" => set(&mut args.log_dir, PathBuf::from(value)),
            "modules" => modules.push(PathBuf::from(value)),
            "heartbeat-ms" => set(&mut args.heartbeat_ms, number("heartbeat-ms")?),
            "dead-man-secs" => set(&mut args.dead_man_secs, number("dead-man-secs")?),
            "connections" => set(&mut args.connections, number("connections")? as usize),
            "log" => set(&mut args.log, value.to_string()),
            "allow" => allow.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "bus-prefix" => set(&mut args.bus_prefix, value.to_string()),
            other => {
                return Err(format!(
                    "{}: unknown key {other:?} (keys are the long option names: name, broker, \
                     address, hosts, host, state-dir, log-dir, modules, heartbeat-ms, \
                     dead-man-secs, names, nodes, name-prefix, connections, log, allow)",
                    at()
                ))
            }
        }
    }
    // Lists from the file apply only when the command line gave none.
    if args.names.is_empty() && args.name.is_none() && args.nodes.is_none() {
        args.names = names;
    }
    if args.host.is_empty() {
        args.host = hosts;
    }
    if args.modules.is_empty() {
        args.modules = modules;
    }
    if args.allow.is_empty() {
        args.allow = allow;
    }
    Ok(())
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Checks the merged arguments and fills in the defaults.
fn settle(args: Args) -> Result<Settings, String> {
    let broker = args
        .broker
        .ok_or("no broker: give --broker amqp://..., MAGI_BROKER or `broker =` in --config")?;
    let names = match (args.nodes, args.names.is_empty()) {
        (Some(_), false) => return Err("--nodes and --names go separately".into()),
        (Some(0), _) => return Err("--nodes must be at least 1".into()),
        (Some(n), true) => {
            let prefix = args.name_prefix.unwrap_or_else(|| "sim".into());
            (0..n).map(|i| format!("{prefix}{i}")).collect()
        }
        (None, false) => args.names,
        (None, true) => vec![match args.name {
            Some(n) => n,
            None => short_hostname()
                .ok_or("no node name: give --name NODE (or MAGI_NODE_NAME, or `name =`)")?,
        }],
    };
    let mut seen = std::collections::BTreeSet::new();
    for n in &names {
        if n.trim().is_empty() {
            return Err("a node name is empty".into());
        }
        if !seen.insert(n) {
            return Err(format!("node name {n} is given twice"));
        }
    }
    let mut hosts = match &args.hosts {
        Some(path) => read_hosts_file(path)?,
        None => Object::new(),
    };
    for entry in &args.host {
        let (name, ip) = entry
            .split_once('=')
            .ok_or_else(|| format!("--host {entry:?}: expected NAME=IP"))?;
        let ip = parse_ip(ip.trim()).map_err(|e| format!("--host {entry:?}: {e}"))?;
        hosts.insert(name.trim().to_string(), json!(ip));
    }
    if let Some(a) = &args.address {
        parse_ip(a).map_err(|e| format!("--address: {e}"))?;
    }
    let heartbeat = Duration::from_millis(args.heartbeat_ms.unwrap_or(2000));
    if heartbeat < Duration::from_millis(100) {
        return Err("--heartbeat-ms must be at least 100".into());
    }
    let dead_man = match args.dead_man_secs.unwrap_or(10) {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let state_dir = args.state_dir.unwrap_or_else(default_state_dir);
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        format!(
            "cannot create the state directory {}: {e}",
            state_dir.display()
        )
    })?;
    Ok(Settings {
        names,
        broker,
        address: args.address,
        hosts,
        state_dir,
        log_dir: args.log_dir,
        modules: args.modules,
        heartbeat,
        dead_man,
        connections: args.connections.unwrap_or(1).max(1),
        prefix: args
            .bus_prefix
            .unwrap_or_else(|| BusOptions::default().prefix),
        policy: magi_node::Policy {
            allow: (!args.allow.is_empty()).then_some(args.allow),
        },
    })
}

fn parse_ip(s: &str) -> Result<String, String> {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("{s:?} is not an IP address"))
}

/// Reads a name → address map: `name = ip` lines, `/etc/hosts` lines, or a JSON object.
fn read_hosts_file(path: &Path) -> Result<Object, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the hosts file {}: {e}", path.display()))?;
    parse_hosts(&path.display().to_string(), &text)
}

fn parse_hosts(file: &str, text: &str) -> Result<Object, String> {
    let mut map = Object::new();
    if text.trim_start().starts_with('{') {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("{file}: not a JSON object: {e}"))?;
        for (name, ip) in v.as_object().into_iter().flatten() {
            let ip = ip
                .as_str()
                .ok_or_else(|| format!("{file}: the address of {name} is not a string"))?;
            map.insert(
                name.clone(),
                json!(parse_ip(ip).map_err(|e| format!("{file}: {name}: {e}"))?),
            );
        }
        return Ok(map);
    }
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        if let Some((name, ip)) = line.split_once('=') {
            let ip = parse_ip(unquote(ip.trim())).map_err(|e| format!("{at}: {e}"))?;
            map.insert(unquote(name.trim()).to_string(), json!(ip));
            continue;
        }
        let mut words = line.split_whitespace();
        let ip = words.next().unwrap_or_default();
        let ip = parse_ip(ip)
            .map_err(|e| format!("{at}: {e} (lines are `name = ip` or `ip name [alias...]`)"))?;
        let mut any = false;
        for name in words {
            map.insert(name.to_string(), json!(ip));
            any = true;
        }
        if !any {
            return Err(format!("{at}: an address without a name"));
        }
    }
    Ok(map)
}

fn short_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    let short = name.split('.').next().unwrap_or("").to_string();
    (!short.is_empty()).then_some(short)
}

fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/magi-node");
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("magi-node")
}

/// The address of a single node: the system's answer for its name (IPv4 first), else
/// loopback. Bounded in time: a resolver that does not answer must not hold the start.
async fn resolve_own_address(name: &str) -> String {
    let lookup = {
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let addrs: Vec<IpAddr> = (name.as_str(), 0)
                .to_socket_addrs()
                .map(|a| a.map(|sa| sa.ip()).collect())
                .unwrap_or_default();
            addrs
                .iter()
                .find(|ip| ip.is_ipv4())
                .or(addrs.first())
                .map(IpAddr::to_string)
        })
    };
    match tokio::time::timeout(Duration::from_secs(3), lookup).await {
        Ok(Ok(Some(ip))) => ip,
        _ => {
            tracing::info!(node = name, "the node name does not resolve: agents get 127.0.0.1 as its address (use --address)");
            "127.0.0.1".into()
        }
    }
}

async fn serve(s: Settings) -> u8 {
    let redacted = redact(&s.broker);
    let connections = s.connections.min(s.names.len());
    let mut buses = Vec::with_capacity(connections);
    for i in 0..connections {
        let opts = BusOptions {
            connection_name: Some(match connections {
                1 => format!("magi-node {}", s.names.join(",")),
                _ => format!("magi-node {} #{i}", s.names[0]),
            }),
            ..BusOptions::with_prefix(&s.prefix)
        };
        match AmqpBus::connect(&s.broker, opts).await {
            Ok(b) => buses.push(b),
            Err(e) => {
                tracing::error!("cannot connect to the broker at {redacted}: {e}");
                return EXIT_BROKER;
            }
        }
    }
    let address_for = |name: &str| {
        let fixed = s.address.clone();
        let single = s.names.len() == 1;
        let name = name.to_string();
        async move {
            match fixed {
                Some(a) => a,
                None if single => resolve_own_address(&name).await,
                None => "127.0.0.1".into(),
            }
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let library = ModuleLibrary::standard(&s.modules);
    for (i, name) in s.names.iter().enumerate() {
        let bus = &buses[i % buses.len()];
        let link = match bus.attach_node(name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(node = %name, "cannot attach to the broker: {e}");
                let _ = stop_tx.send(true);
                while tasks.join_next().await.is_some() {}
                for b in &buses {
                    b.close().await;
                }
                return EXIT_BROKER;
            }
        };
        let mut config = NodeConfig::new(name, s.state_dir.clone());
        config.address = address_for(name).await;
        config.hosts = s.hosts.clone();
        config.log_dir = s.log_dir.clone();
        config.library = library.clone();
        config.heartbeat = s.heartbeat;
        config.dead_man = s.dead_man;
        config.policy = s.policy.clone();
        if s.names.len() <= 10 {
            tracing::info!(node = %name, address = %config.address, hosts = config.hosts.len(), "node agent attached to {redacted} (prefix {})", s.prefix);
        }
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            magi_node::run(link, config, shutdown).await;
        });
    }
    if s.names.len() > 10 {
        tracing::info!(
            "{} node agents attached to {redacted} over {} connection(s) (prefix {}): {} ... {}",
            s.names.len(),
            buses.len(),
            s.prefix,
            s.names[0],
            s.names[s.names.len() - 1]
        );
    }
    if s.policy.allow.is_none() {
        tracing::warn!("no --allow: any user of this broker who can reach this node may run code on it (see docs/security.md)");
    }
    tracing::info!(
        state_dir = %s.state_dir.display(),
        heartbeat_ms = s.heartbeat.as_millis() as u64,
        dead_man_secs = s.dead_man.map(|d| d.as_secs()).unwrap_or(0),
        "ready"
    );

    let signals = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                tracing::error!("cannot watch SIGTERM/SIGINT; stop with SIGKILL");
                std::future::pending().await
            }
        }
    };
    let total = s.names.len();
    let mut ended = 0;
    let mut asked = false;
    tokio::pin!(signals);
    loop {
        tokio::select! {
            sig = &mut signals, if !asked => {
                tracing::info!("{sig}: stopping every agent and leaving the broker");
                asked = true;
                let _ = stop_tx.send(true);
            }
            done = tasks.join_next() => match done {
                None => break,
                Some(r) => {
                    ended += 1;
                    if let Err(e) = r {
                        tracing::error!("a node agent task failed: {e}");
                    }
                    if !asked {
                        tracing::error!("{ended} of {total} node agent(s) lost their link to the broker");
                    }
                }
            },
        }
    }
    for b in &buses {
        b.close().await;
    }
    if asked {
        tracing::info!("stopped");
        EXIT_OK
    } else {
        EXIT_LOST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_fills_what_the_command_line_left_unset() {
        let mut args = Args {
            name: Some("cli".into()),
            ..Args::default()
        };
        let text = "# comment\nname = filenode\nbroker = \"amqp://u:p@h/%2f\"\nheartbeat_ms = 500\nhost = a=10.0.0.1\nhost = b=10.0.0.2\nmodules = /opt/m\n";
        apply_config(&mut args, "f.conf", text).unwrap();
        assert_eq!(args.name.as_deref(), Some("cli"));
        assert_eq!(args.broker.as_deref(), Some("amqp://u:p@h/%2f"));
        assert_eq!(args.heartbeat_ms, Some(500));
        assert_eq!(args.host, vec!["a=10.0.0.1", "b=10.0.0.2"]);
        assert_eq!(args.modules, vec![PathBuf::from("/opt/m")]);
        let s = settle(Args {
            state_dir: Some(std::env::temp_dir()),
            ..args
        })
        .unwrap();
        assert_eq!(s.names, vec!["cli"]);
        assert_eq!(s.hosts.get("b"), Some(&json!("10.0.0.2")));
        assert_eq!(s.dead_man, Some(Duration::from_secs(10)));
    }

    #[test]
    fn config_mistakes_name_their_line() {
        let mut args = Args::default();
        let e = apply_config(&mut args, "f.conf", "\nbrokr = x\n").unwrap_err();
        assert!(e.starts_with("f.conf:2: unknown key \"brokr\""), "{e}");
        let e = apply_config(&mut args, "f.conf", "heartbeat-ms = soon\n").unwrap_err();
        assert!(
            e.contains("f.conf:1: heartbeat-ms must be a whole number"),
            "{e}"
        );
        let e = apply_config(&mut args, "f.conf", "just words\n").unwrap_err();
        assert!(e.contains("expected `key = value`"), "{e}");
    }

    #[test]
    fn hosts_files_come_in_three_spellings() {
        let m = parse_hosts(
            "h",
            "clientnode = 10.0.0.1\n10.0.0.2 servernode server # x\n",
        )
        .unwrap();
        assert_eq!(m.get("clientnode"), Some(&json!("10.0.0.1")));
        assert_eq!(m.get("server"), Some(&json!("10.0.0.2")));
        let m = parse_hosts("h", r#"{"a": "127.0.1.1"}"#).unwrap();
        assert_eq!(m.get("a"), Some(&json!("127.0.1.1")));
        assert!(parse_hosts("h", "a = nowhere\n")
            .unwrap_err()
            .starts_with("h:1:"));
        assert!(parse_hosts("h", "10.0.0.1\n")
            .unwrap_err()
            .contains("without a name"));
    }

    #[test]
    fn many_nodes_get_prefixed_names() {
        let s = settle(Args {
            nodes: Some(3),
            name_prefix: Some("n".into()),
            broker: Some("amqp://h".into()),
            state_dir: Some(std::env::temp_dir()),
            ..Args::default()
        })
        .unwrap();
        assert_eq!(s.names, vec!["n0", "n1", "n2"]);
        let e = settle(Args {
            names: vec!["a".into(), "a".into()],
            broker: Some("amqp://h".into()),
            ..Args::default()
        })
        .unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        assert!(settle(Args::default()).unwrap_err().contains("no broker"));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("amqp://u:secret@h/%2f"), "amqp://u:***@h/%2f");
    }
}
