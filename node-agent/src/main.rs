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
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use magi_bus::amqp::BusOptions;
use magi_node::config::{
    merge_config_file, settle, Args, Settings, EXIT_BROKER, EXIT_CONFIG, EXIT_LOST, EXIT_OK,
};
use magi_node::library::ModuleLibrary;
use magi_node::NodeConfig;

fn main() -> ExitCode {
    magi_node::release_large_blocks();
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
    let runtime = match magi_node::runtime_for(settings.names.len()) {
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
        .or_else(|| filter.and_then(|f| EnvFilter::try_new(magi_bus::amqp::log_filter(f)).ok()))
        .unwrap_or_else(|| EnvFilter::new(magi_bus::amqp::log_filter("info")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(magi_proto::color_allowed(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            false,
        ))
        .with_writer(std::io::stderr)
        .init();
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
        match magi_bus::connect(&s.broker, opts).await {
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
    let mut fleet = magi_node::Fleet::new();
    let library = ModuleLibrary::standard(&s.modules);
    for (i, name) in s.names.iter().enumerate() {
        let bus = &buses[i % buses.len()];
        let link = match bus.attach_node(name).await {
            Ok(l) => l,
            Err(e) => {
                match e {
                    magi_bus::AttachError::InUse(_) => {
                        tracing::error!(node = %name, "node {name} is attached already: another magi-node of this name is running on this broker")
                    }
                    e => tracing::error!(node = %name, "cannot attach to the broker: {e}"),
                }
                fleet.shutdown().await;
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
        config.cache_quota = s.cache_quota;
        config.sandbox = s.sandbox.clone();
        config.restore = true;
        if s.names.len() <= 10 {
            tracing::info!(node = %name, address = %config.address, hosts = config.hosts.len(), "node agent attached to {redacted} (prefix {})", s.prefix);
        }
        fleet.spawn(link, config);
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
    match &s.sandbox {
        Some(sb) => tracing::info!(
            "agents run as {} (uid {}) with {}",
            sb.user.name,
            sb.user.uid,
            match sb.grant.is_empty() {
                true => "no capabilities (grant some with --grant)".to_string(),
                false => format!("at most the capabilities {}", sb.grant.iter().cloned().collect::<Vec<_>>().join(", ")),
            }
        ),
        None if magi_node::privilege::is_root() => tracing::warn!(
            "--agent-user root: agents run as root, with the whole node in their hands (see docs/security.md)"
        ),
        None => {}
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
                fleet.stop();
            }
            done = fleet.join_next() => match done {
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
