//! `--permissions`: MAGI-rs measured as a shared testbed runs it. A throwaway vhost made by
//! the operator's own `broker-config/apply.sh` (global exchanges, queue limits, resource and
//! topic permissions), one broker user per node with its own password, each node agent on
//! its own connection as that user (as `magi-node` on a machine of its own), one
//! orchestrator user whose runs are `<user>.<anything>`, nodes that admit only it. Every
//! publish carries a `user_id` the broker checks against the connection's user.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The vhost and users of one benchmark, removed by [`Permissions::remove`].
pub struct Permissions {
    /// The vhost (no leading slash: it goes into URLs as is).
    pub vhost: String,
    /// The orchestrator's broker user.
    pub orchestrator: String,
    password: String,
    /// Node names (and their users) are `<node_prefix><i>`.
    pub node_prefix: String,
    /// `<dir>/<node>.cred` holds `node:password`, as apply.sh writes them.
    pub cred_dir: PathBuf,
    users: Vec<String>,
    /// `host:port` of the broker.
    host: String,
}

/// The apply.sh of this source tree.
fn apply_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker-config/apply.sh")
}

/// `host:port` of a single-broker `amqp://[user:pw@]host:port/vhost` URL.
fn host_of(url: &str) -> Result<String> {
    let Some(rest) = url.strip_prefix("amqp://") else {
        bail!("--permissions needs one amqp:// broker URL, not {url}");
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || host.contains(',') {
        bail!("--permissions needs one amqp:// broker URL with a host, not {url}");
    }
    Ok(host.to_string())
}

/// `amqp://user:password@host/vhost`.
pub fn url_as(host: &str, vhost: &str, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@{host}/{vhost}")
}

/// The URL node `name` connects with: `url` (the orchestrator's: same broker, vhost and
/// options) with the node's credentials from `cred_dir` in place of its own.
pub fn node_url(url: &str, cred_dir: &Path, name: &str) -> Result<String> {
    let file = cred_dir.join(format!("{name}.cred"));
    let line = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the credentials of {name} ({})", file.display()))?;
    let (user, password) = line
        .trim()
        .split_once(':')
        .with_context(|| format!("{}: expected one line name:password", file.display()))?;
    host_of(url)?;
    let rest = &url["amqp://".len()..];
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    Ok(format!("amqp://{user}:{password}@{rest}"))
}

/// Refuses `n` node connections that the local broker cannot take: past its sockets limit
/// (90 % of its open-file limit) it refuses connections and, on RabbitMQ 3.10, its memory
/// monitor dies for want of a file descriptor, leaving the broker unable to declare queues
/// until it is restarted (seen here at N = 1000 with the default limit of 1024). A broker
/// whose status cannot be read (remote) is not checked.
pub fn check_sockets(n: usize) -> Result<()> {
    let Ok(out) = Command::new("rabbitmq-diagnostics")
        .args(["-q", "status", "--formatter", "json"])
        .output()
    else {
        return Ok(());
    };
    let status: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(_) => return Ok(()),
    };
    let fd = &status["file_descriptors"];
    let (Some(limit), used) = (fd["sockets_limit"].as_u64(), fd["sockets_used"].as_u64()) else {
        return Ok(());
    };
    // The node connections, the orchestrator's, the bare reference's and a margin.
    let needed = n as u64 + used.unwrap_or(0) + 100;
    if needed > limit {
        bail!(
            "the broker accepts {limit} connections (90 % of its open-file limit) and {} are in use; \
             --permissions at N = {n} opens one per node: raise RabbitMQ's open-file limit \
             (LimitNOFILE in its systemd unit, or `ulimit -n` where it is started; scripts/bench \
             does this when it starts the broker itself)",
            used.unwrap_or(0)
        );
    }
    Ok(())
}

impl Permissions {
    /// Makes the vhost `magi-bench-<id>` and its users with apply.sh (`prefix`: the
    /// benchmark's object prefix): the orchestrator `mb<id>o` and `n` nodes `mb<id>n<i>`
    /// (broker users are global, so the names are the benchmark's own).
    pub fn create(url: &str, prefix: &str, id: &str, n: usize, work: &Path) -> Result<Self> {
        let host = host_of(url)?;
        check_sockets(n)?;
        let node_prefix = format!("mb{id}n");
        let nodes = crate::fleet::node_names(&node_prefix, n);
        let vhost = format!("magi-bench-{id}");
        let orchestrator = format!("mb{id}o");
        let password = uuid::Uuid::new_v4().simple().to_string();
        let cred_dir = work.join("credentials");
        let list = work.join("node-list");
        std::fs::write(&list, nodes.join("\n") + "\n")?;
        let made = Permissions {
            vhost,
            orchestrator,
            password,
            node_prefix,
            cred_dir,
            users: std::iter::once(format!("mb{id}o"))
                .chain(nodes.iter().cloned())
                .collect(),
            host,
        };
        // Known before apply.sh makes anything, so that an interrupt removes it too.
        live().push((made.vhost.clone(), made.users.clone()));
        let out = Command::new("bash")
            .arg(apply_sh())
            .args(["--vhost", &made.vhost, "--prefix", prefix])
            .arg("--orchestrator")
            .arg(format!("{}:{}", made.orchestrator, made.password))
            .arg("--nodes-from")
            .arg(&list)
            .arg("--cred-dir")
            .arg(&made.cred_dir)
            .output()
            .context("running broker-config/apply.sh")?;
        if !out.status.success() {
            let _ = made.remove();
            bail!(
                "broker-config/apply.sh failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(made)
    }

    /// The orchestrator's broker URL.
    pub fn orchestrator_url(&self) -> String {
        url_as(&self.host, &self.vhost, &self.orchestrator, &self.password)
    }

    /// Deletes the users and the vhost (see [`delete`]).
    pub fn remove(&self) -> Result<()> {
        live().retain(|(v, _)| v != &self.vhost);
        delete(&self.vhost, &self.users)
    }
}

/// The vhosts and users made and not removed yet, for [`remove_live`].
fn live() -> std::sync::MutexGuard<'static, Vec<(String, Vec<String>)>> {
    static LIVE: std::sync::Mutex<Vec<(String, Vec<String>)>> = std::sync::Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every vhost and user this process made and has not removed (the benchmark was
/// interrupted).
pub fn remove_live() {
    let made: Vec<(String, Vec<String>)> = live().drain(..).collect();
    for (vhost, users) in made {
        if let Err(e) = delete(&vhost, &users) {
            eprintln!("magi-bench: {e:#}");
        }
    }
}

/// Deletes `users` (in one `rabbitmqctl eval`: one command per user takes about half a
/// second each) and `vhost`, with everything in it.
fn delete(vhost: &str, users: &[String]) -> Result<()> {
    let list: Vec<String> = users.iter().map(|u| format!("<<\"{u}\">>")).collect();
    let expr = format!(
        "[catch rabbit_auth_backend_internal:delete_user(U, <<\"magi-bench\">>) || U <- [{}]], ok.",
        list.join(",")
    );
    let users_gone = Command::new("rabbitmqctl")
        .args(["-q", "eval", &expr])
        .output();
    let vhost_gone = Command::new("rabbitmqctl")
        .args(["-q", "delete_vhost", vhost])
        .output();
    match (users_gone, vhost_gone) {
        (Ok(u), Ok(v)) if u.status.success() && v.status.success() => Ok(()),
        _ => bail!(
            "could not delete vhost {vhost} and its {} users (delete them with rabbitmqctl)",
            users.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_url_keeps_the_broker_and_vhost_and_takes_the_node_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n1.cred"), "n1:secret\n").unwrap();
        let url = node_url(
            "amqp://orch:pw@127.0.0.1:5672/magi-bench-x",
            dir.path(),
            "n1",
        )
        .unwrap();
        assert_eq!(url, "amqp://n1:secret@127.0.0.1:5672/magi-bench-x");
        assert!(node_url("amqp://o:p@h:1/v", dir.path(), "n2").is_err());
    }

    #[test]
    fn permissions_need_one_plain_broker_url() {
        assert_eq!(host_of("amqp://g:g@h:5672/%2f").unwrap(), "h:5672");
        assert!(host_of("amqp://h:1,amqp://h:2").is_err());
        assert!(host_of("amqps://h/").is_err());
    }
}
