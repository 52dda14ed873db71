//! `magi run --broker URL --testbed NAME`: one `magi-node` process in each node's
//! namespace, reaching the broker over the testbed's control network
//! (`magi testbed up --control`), for the length of the run.
//!
//! Each `magi-node` is started through `ip netns exec NAME.node`, so it and the agents it
//! starts live in the node's namespace, with the node's experiment address (`--address`)
//! and the testbed's node names (`--hosts`). It reaches the broker at the host's address on
//! the control network: a relay that `magi run` keeps there for the run carries each
//! connection to the broker's own address (a broker on this machine usually listens on
//! loopback only, and the namespaces cannot reach the host's loopback). Each node logs in
//! as its own broker user when `--node-credentials DIR` names `broker-config/apply.sh`'s
//! credential files (`DIR/<node>.cred`, `name:password`); otherwise as the orchestrator's
//! user; either way it serves only the orchestrator's user (`--allow`). At the end of the run every `magi-node` gets SIGTERM (it stops its agents and says
//! goodbye); `magi testbed down` kills any left by an orchestrator that was killed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use magi_testbed::Lab;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Options every `magi-node` of a testbed gets besides its name, broker, address and files:
/// the one place to change them for all nodes.
pub const NODE_OPTIONS: &[&str] = &[
    "--heartbeat-ms",
    "2000",
    "--log",
    "warn",
    // As root, magi-node runs agents as nobody with only the capabilities granted here:
    // the case studies' server binds port 80; the counters and link_up_down need net_admin.
    "--grant",
    "net_admin,net_bind_service",
];

/// How long the nodes have to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the nodes of a run across a testbed are started with.
#[derive(Debug, Clone)]
pub struct NodeLaunch {
    /// The orchestrator's broker URL (its vhost, and its user for nodes without their own).
    pub broker: String,
    /// `apply.sh`'s credential directory (`<node>.cred`), if nodes log in as themselves.
    pub credentials: Option<PathBuf>,
    /// Where each node keeps its agent cache (`<dir>/<testbed>.<node>`).
    pub state_dir: PathBuf,
    /// Where agents' logs and each node's own log (`magi-node-<node>.log`) go.
    pub log_dir: PathBuf,
    /// Extra module directories.
    pub modules: Vec<PathBuf>,
}

/// The `magi-node` processes of a run and the relay they reach the broker by.
pub struct TestbedNodes {
    children: Vec<(String, Child)>,
    relay: JoinHandle<()>,
}

/// The broker's `host:port` in an `amqp://` URL.
pub fn broker_address(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("amqp://").ok_or_else(|| {
        format!(
            "--testbed over a broker needs an amqp:// URL, not {}",
            magi_proto::redact_url(url)
        )
    })?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host_port.is_empty() {
        return Err(format!(
            "the broker URL {} names no host",
            magi_proto::redact_url(url)
        ));
    }
    Ok(if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5672")
    })
}

/// `url` with its host and port replaced by `at`, and its user by `login` when given.
pub fn node_url(url: &str, login: Option<(&str, &str)>, at: SocketAddr) -> Result<String, String> {
    broker_address(url)?;
    let rest = &url["amqp://".len()..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = match (login, authority.rsplit_once('@')) {
        (Some((user, password)), _) => format!("{user}:{password}@"),
        (None, Some((info, _))) => format!("{info}@"),
        (None, None) => String::new(),
    };
    Ok(format!("amqp://{userinfo}{at}{tail}"))
}

/// Reads node `node`'s credential file `dir/<node>.cred` (`name:password`, apply.sh's).
pub fn read_credentials(dir: &Path, node: &str) -> Result<(String, String), String> {
    let path = dir.join(format!("{node}.cred"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "node {node}: cannot read {} ({e}); make it with broker-config/apply.sh --nodes-from FILE --cred-dir {}",
            path.display(),
            dir.display()
        )
    })?;
    let line = text.lines().next().unwrap_or("").trim();
    match line.split_once(':') {
        Some((user, password)) if user == node && !password.is_empty() => {
            Ok((user.into(), password.into()))
        }
        _ => Err(format!(
            "{}: expected one line `{node}:PASSWORD`",
            path.display()
        )),
    }
}

/// The `magi-node` program: `MAGI_NODE_BIN`, else the one next to this `magi`.
fn magi_node_program() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MAGI_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let here = std::env::current_exe().map_err(|e| format!("cannot find magi-node: {e}"))?;
    let program = here.with_file_name("magi-node");
    if program.is_file() {
        Ok(program)
    } else {
        Err(format!(
            "{} is missing: build it (cargo build -p magi-node -p magi-agents --bins) or set MAGI_NODE_BIN",
            program.display()
        ))
    }
}

/// Carries every connection made to `listener` to the broker at `broker`.
async fn relay(listener: TcpListener, broker: String) {
    loop {
        let mut inbound = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::warn!("relay to the broker: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&broker).await {
                Ok(mut outbound) => {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::warn!("relay to the broker at {broker}: {e}"),
            }
        });
    }
}

impl TestbedNodes {
    /// Starts a `magi-node` for each of `nodes` (all in `lab`) in its namespace.
    pub async fn start(lab: &Lab, nodes: &[String], launch: &NodeLaunch) -> Result<Self, String> {
        let control = lab.control.as_ref().ok_or_else(|| {
            format!(
                "testbed {0} has no control network for magi-node processes to reach the broker by: \
                 bring it up with `magi testbed up --control` (or drop --broker to run on the embedded bus)",
                lab.name
            )
        })?;
        let program = magi_node_program()?;
        let broker = broker_address(&launch.broker)?;
        let listener = TcpListener::bind((control.host_address, 0))
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on the control network at {}: {e}",
                    control.host_address
                )
            })?;
        let at = listener.local_addr().map_err(|e| e.to_string())?;
        let relay = tokio::spawn(relay(listener, broker));
        let mut started = TestbedNodes {
            children: Vec::new(),
            relay,
        };
        std::fs::create_dir_all(&launch.log_dir)
            .map_err(|e| format!("{}: {e}", launch.log_dir.display()))?;
        let hosts = launch.log_dir.join("testbed-hosts");
        let text: String = (0..lab.topology.nodes.len())
            .filter_map(|i| {
                Some(format!(
                    "{} {}\n",
                    lab.address(i)?,
                    lab.topology.nodes[i].name
                ))
            })
            .collect();
        std::fs::write(&hosts, text).map_err(|e| format!("{}: {e}", hosts.display()))?;
        for name in nodes {
            match started.spawn(lab, name, launch, &program, &hosts, at) {
                Ok(child) => started.children.push((name.clone(), child)),
                Err(e) => {
                    started.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    fn spawn(
        &self,
        lab: &Lab,
        name: &str,
        launch: &NodeLaunch,
        program: &Path,
        hosts: &Path,
        at: SocketAddr,
    ) -> Result<Child, String> {
        let i = lab
            .topology
            .node_index(name)
            .ok_or_else(|| format!("testbed {} has no node {name}", lab.name))?;
        let login = match &launch.credentials {
            Some(dir) => Some(read_credentials(dir, name)?),
            None => None,
        };
        let url = node_url(
            &launch.broker,
            login.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            at,
        )?;
        let address = lab.address(i).unwrap_or(Ipv4Addr::LOCALHOST);
        let log = launch.log_dir.join(format!("magi-node-{name}.log"));
        let log = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &lab.namespace(i)])
            .arg(program)
            .args(["--name", name, "--address", &address.to_string()])
            .arg("--hosts")
            .arg(hosts)
            .arg("--state-dir")
            .arg(launch.state_dir.join(lab.namespace(i)))
            .arg("--log-dir")
            .arg(&launch.log_dir)
            .args(NODE_OPTIONS);
        // The node serves the orchestrator's broker user only.
        if let Some(user) = crate::cli::run::broker_user(&launch.broker) {
            command.args(["--allow", &user]);
        }
        for m in &launch.modules {
            command.arg("--modules").arg(m);
        }
        // In the environment, not the arguments: `ps` shows arguments to everyone.
        command
            .env("MAGI_BROKER", url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        command
            .spawn()
            .map_err(|e| format!("cannot start magi-node for {name} (ip netns exec): {e}"))
    }

    /// Asks every node to stop (SIGTERM), waits for them (killing those that do not stop
    /// within 10 s), and closes the relay.
    pub async fn stop(mut self) {
        for (_, child) in &self.children {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on our own child's pid; at worst it has exited already.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for (name, child) in &mut self.children {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "magi-node {name} did not stop within {} s: killed",
                    STOP_GRACE.as_secs()
                );
                let _ = child.kill().await;
            }
        }
        self.relay.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_reach_the_broker_through_the_relay_with_their_own_login() {
        let at: SocketAddr = "198.19.224.1:40000".parse().unwrap();
        let url = "amqp://alice:pw@127.0.0.1:5672/magi-test?heartbeat=10";
        assert_eq!(broker_address(url).unwrap(), "127.0.0.1:5672");
        assert_eq!(broker_address("amqp://broker/%2f").unwrap(), "broker:5672");
        assert_eq!(
            node_url(url, Some(("clientnode", "secret")), at).unwrap(),
            "amqp://clientnode:secret@198.19.224.1:40000/magi-test?heartbeat=10"
        );
        assert_eq!(
            node_url(url, None, at).unwrap(),
            "amqp://alice:pw@198.19.224.1:40000/magi-test?heartbeat=10"
        );
        assert!(broker_address("amqps://h/")
            .unwrap_err()
            .contains("amqp://"));
    }

    #[test]
    fn credential_files_are_apply_sh_s_and_must_name_their_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.cred"), "a:pw\n").unwrap();
        std::fs::write(dir.path().join("b.cred"), "c:pw\n").unwrap();
        assert_eq!(
            read_credentials(dir.path(), "a").unwrap(),
            ("a".into(), "pw".into())
        );
        assert!(read_credentials(dir.path(), "b")
            .unwrap_err()
            .contains("`b:PASSWORD`"));
        assert!(read_credentials(dir.path(), "z")
            .unwrap_err()
            .contains("apply.sh"));
    }
}
