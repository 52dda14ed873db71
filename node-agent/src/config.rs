//! `magi-node`'s configuration: the command line, the environment and a `key = value`
//! file merged into checked [`Settings`], and the agents' host map (`name = ip` lines,
//! `/etc/hosts` lines or JSON).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use magi_bus::amqp::BusOptions;
use magi_proto::Object;
use serde_json::{json, Value};

/// Exit code: a clean shutdown (SIGTERM, SIGINT).
pub const EXIT_OK: u8 = 0;
/// Exit code: the broker connection was lost for good while running.
pub const EXIT_LOST: u8 = 1;
/// Exit code: bad command line or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: the broker could not be reached, or refused the node (name already in use).
pub const EXIT_BROKER: u8 = 3;

pub const AFTER_HELP: &str = "\
Settings come from the command line, then the environment (MAGI_NODE_NAME, MAGI_BROKER,
MAGI_NODE_CONFIG, MAGI_NODE_ADDRESS, MAGI_NODE_STATE_DIR, MAGI_MODULES), then the --config
file. The config file has one `key = value` per line (`#` starts a comment, values may be
quoted); the keys are the long option names: name, names, nodes, name-prefix, broker,
address, hosts, host (repeatable), state-dir, log-dir, modules (repeatable), heartbeat-ms,
dead-man-secs, connections, log, allow, user-group, grant, agent-user, cache-quota. See
scripts/magi-node.conf.example.

Run as root, magi-node starts agents as --agent-user (default nobody) with no capabilities
but those an agent's manifest asks for and --grant allows (e.g. net_bind_service to bind
port 80, net_admin for the packet counters, net_raw for raw sockets); other loads are
refused. `--agent-user root` keeps agents as root (not recommended).

The hosts file (--hosts) maps node names to addresses for agents: `name = ip` lines,
/etc/hosts lines (`ip name [alias...]`) or a JSON object. Without a map agents resolve peer
names with the system resolver.

Exit codes: 0 clean shutdown; 1 the broker was lost for good; 2 bad configuration;
3 broker unreachable or the node name already attached elsewhere.";

/// The MAGI-rs node agent daemon.
#[derive(Parser, Debug, Default)]
#[command(name = "magi-node", version, about, after_help = AFTER_HELP)]
pub struct Args {
    /// The node's name, as procedures' `groups` name it (default: the host name up to its
    /// first dot).
    #[arg(long, env = "MAGI_NODE_NAME")]
    pub name: Option<String>,
    /// Host several node agents in this process, named by a comma-separated list (instead
    /// of --name).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// Host N node agents in this process, named `<name-prefix>0` ... (benchmarks; instead
    /// of --name).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Name prefix of the `--nodes` agents (default `sim`).
    #[arg(long)]
    pub name_prefix: Option<String>,
    /// RabbitMQ URL, e.g. amqp://magi-node:PASS@broker:5672/%2fmagi?heartbeat=10.
    #[arg(long, env = "MAGI_BROKER")]
    pub broker: Option<String>,
    /// A `key = value` configuration file (see below).
    #[arg(long, env = "MAGI_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The node's own address given to agents (servers bind it, clients send from it);
    /// default: the node name resolved by the system, else 127.0.0.1.
    #[arg(long, env = "MAGI_NODE_ADDRESS")]
    pub address: Option<String>,
    /// A file mapping node names to addresses, given to agents.
    #[arg(long)]
    pub hosts: Option<PathBuf>,
    /// One `name=ip` entry of the agents' host map (repeatable).
    #[arg(long = "host", value_name = "NAME=IP")]
    pub host: Vec<String>,
    /// Where the agent cache, the Python helper and agents' logs live.
    #[arg(long, env = "MAGI_NODE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where agents' stderr goes (default: <state-dir>/logs).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Extra directories of agent modules, searched when an agent's path does not exist
    /// here (repeatable; also MAGI_MODULES, colon-separated).
    #[arg(long = "modules")]
    pub modules: Vec<PathBuf>,
    /// Heartbeat period in milliseconds (default 2000).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Stop a run's agents when its orchestrator has been silent this many seconds
    /// (default 10; 0 never).
    #[arg(long)]
    pub dead_man_secs: Option<u64>,
    /// Broker connections shared by the hosted node agents (default 1).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Largest size of the unpacked agent cache (`2G`, `500M`, bytes; default 2G): modules
    /// no running agent uses are evicted to stay under it.
    #[arg(long, value_parser = crate::archive::parse_quota)]
    pub cache_quota: Option<u64>,
    /// Broker users (orchestrators) allowed to use this node: join its groups, load and
    /// call agents (repeatable or comma-separated; default: anyone who can reach it).
    #[arg(long, value_delimiter = ',')]
    pub allow: Vec<String>,
    /// A group of users that --allow names as `@NAME` (repeatable): NAME=USER,USER.
    #[arg(long = "user-group", value_name = "NAME=USER,...")]
    pub user_group: Vec<String>,
    /// Capabilities agents may have when their manifest asks (comma-separated Linux
    /// capability names: net_admin, net_bind_service, net_raw ...; default none).
    #[arg(long, value_delimiter = ',', value_parser = crate::privilege::parse_capability)]
    pub grant: Vec<String>,
    /// The user agents run as when magi-node runs as root (default `nobody`).
    #[arg(long)]
    pub agent_user: Option<String>,
    /// Log filter (tracing's EnvFilter syntax; RUST_LOG overrides; default `info`).
    #[arg(long)]
    pub log: Option<String>,
    /// Prefix of every broker object (tests use a unique one).
    #[arg(long, hide = true, env = "MAGI_BUS_PREFIX")]
    pub bus_prefix: Option<String>,
}

/// Settings after the command line, the environment and the file were merged and checked.
#[derive(Debug)]
pub struct Settings {
    pub names: Vec<String>,
    pub broker: String,
    pub address: Option<String>,
    pub hosts: Object,
    pub state_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub modules: Vec<PathBuf>,
    pub heartbeat: Duration,
    pub dead_man: Option<Duration>,
    pub connections: usize,
    pub prefix: String,
    pub policy: crate::Policy,
    pub cache_quota: u64,
    /// How agents are confined (`None`: they run as magi-node's own user).
    pub sandbox: Option<crate::privilege::Sandbox>,
}

/// Reads a `key = value` file into the arguments the command line and the environment left unset.
pub fn merge_config_file(args: &mut Args, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
    apply_config(args, &path.display().to_string(), &text)
}

pub fn apply_config(args: &mut Args, file: &str, text: &str) -> Result<(), String> {
    let mut names = Vec::new();
    let mut hosts = Vec::new();
    let mut modules = Vec::new();
    let mut allow = Vec::new();
    let mut grant = Vec::new();
    let mut user_groups = Vec::new();
    let list = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
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
            "names" => names.extend(list(value)),
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
            "cache-quota" => set(
                &mut args.cache_quota,
                crate::archive::parse_quota(value).map_err(|e| format!("{}: {e}", at()))?,
            ),
            "allow" => allow.extend(list(value)),
            "grant" => {
                for cap in list(value) {
                    grant.push(
                        crate::privilege::parse_capability(&cap)
                            .map_err(|e| format!("{}: grant: {e}", at()))?,
                    );
                }
            }
            "agent-user" => set(&mut args.agent_user, value.to_string()),
            "user-group" => user_groups.push(value.to_string()),
            "bus-prefix" => set(&mut args.bus_prefix, value.to_string()),
            other => {
                return Err(format!(
                    "{}: unknown key {other:?} (keys are the long option names: name, broker, \
                     address, hosts, host, state-dir, log-dir, modules, heartbeat-ms, \
                     dead-man-secs, names, nodes, name-prefix, connections, log, allow, grant, \
                     agent-user, user-group, cache-quota)",
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
    if args.grant.is_empty() {
        args.grant = grant;
    }
    if args.user_group.is_empty() {
        args.user_group = user_groups;
    }
    Ok(())
}

pub fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Checks the merged arguments and fills in the defaults.
pub fn settle(args: Args) -> Result<Settings, String> {
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
    let policy = crate::Policy {
        allow: (!args.allow.is_empty()).then_some(args.allow),
        groups: parse_user_groups(&args.user_group)?,
    };
    policy.check()?;
    let sandbox = crate::privilege::settle(
        args.agent_user.as_deref(),
        args.grant.into_iter().collect(),
        &state_dir,
        args.log_dir.as_deref(),
    )?;
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
        policy,
        cache_quota: args.cache_quota.unwrap_or(crate::archive::DEFAULT_QUOTA),
        sandbox,
    })
}

/// `NAME=USER,USER` entries into groups (a name given twice gets the members of both).
fn parse_user_groups(
    entries: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    let mut groups = std::collections::BTreeMap::<String, Vec<String>>::new();
    for entry in entries {
        let (name, users) = entry
            .split_once('=')
            .ok_or_else(|| format!("--user-group {entry:?}: expected NAME=USER,USER"))?;
        let name = name.trim().trim_start_matches('@');
        if name.is_empty() {
            return Err(format!("--user-group {entry:?}: the group has no name"));
        }
        let members = groups.entry(name.to_string()).or_default();
        members.extend(
            users
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from),
        );
    }
    Ok(groups)
}

pub fn parse_ip(s: &str) -> Result<String, String> {
    s.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("{s:?} is not an IP address"))
}

/// Reads a name → address map: `name = ip` lines, `/etc/hosts` lines, or a JSON object.
pub fn read_hosts_file(path: &Path) -> Result<Object, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the hosts file {}: {e}", path.display()))?;
    parse_hosts(&path.display().to_string(), &text)
}

pub fn parse_hosts(file: &str, text: &str) -> Result<Object, String> {
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

pub fn short_hostname() -> Option<String> {
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

pub fn default_state_dir() -> PathBuf {
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
        let state = tempfile::tempdir().unwrap();
        let s = settle(Args {
            state_dir: Some(state.path().to_path_buf()),
            ..args
        })
        .unwrap();
        assert_eq!(s.names, vec!["cli"]);
        assert_eq!(s.hosts.get("b"), Some(&json!("10.0.0.2")));
        assert_eq!(s.dead_man, Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_user_group_named_in_allow_admits_its_members_and_no_one_else() {
        let mut args = Args {
            name: Some("n".into()),
            broker: Some("amqp://h".into()),
            allow: vec!["alice".into(), "@students".into()],
            ..Args::default()
        };
        apply_config(&mut args, "f.conf", "user-group = students=bob, carol\n").unwrap();
        let state = tempfile::tempdir().unwrap();
        let s = settle(Args {
            state_dir: Some(state.path().to_path_buf()),
            ..args
        })
        .unwrap();
        for user in ["alice", "bob", "carol"] {
            s.policy.admits(Some(user)).unwrap();
        }
        let e = s.policy.admits(Some("mallory")).unwrap_err();
        assert!(e.contains("mallory") && e.contains("@students"), "{e}");
        // A group is not a user: a broker user named "students" or "@students" is no member.
        assert!(s.policy.admits(Some("students")).is_err());
        assert!(s.policy.admits(Some("@students")).is_err());
    }

    #[test]
    fn allowing_an_undefined_user_group_is_a_configuration_error() {
        let state = tempfile::tempdir().unwrap();
        let e = settle(Args {
            name: Some("n".into()),
            broker: Some("amqp://h".into()),
            allow: vec!["@staff".into()],
            user_group: vec!["students=bob".into()],
            state_dir: Some(state.path().to_path_buf()),
            ..Args::default()
        })
        .unwrap_err();
        assert!(
            e.contains("@staff") && e.contains("--user-group staff="),
            "{e}"
        );
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
        let state = tempfile::tempdir().unwrap();
        let s = settle(Args {
            nodes: Some(3),
            name_prefix: Some("n".into()),
            broker: Some("amqp://h".into()),
            state_dir: Some(state.path().to_path_buf()),
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
        assert_eq!(
            magi_proto::redact_url("amqp://u:secret@h/%2f"),
            "amqp://u:***@h/%2f"
        );
    }
}
