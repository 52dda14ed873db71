//! For tests against a real RabbitMQ: a unique name prefix per test, and cleanup that
//! deletes everything declared under it.
//!
//! RabbitMQ is shared by everyone's tests on a machine, so each test works under its own
//! prefix (`magi.test.<uuid>.`) and [`TestBroker::cleanup`] deletes every exchange and
//! queue whose name starts with it, then lists the broker again and returns what is left
//! (it should be nothing). Listing uses `rabbitmqctl`, which must be on the `PATH`.

use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

use magi_bus::amqp::{AmqpBus, BusOptions};

mod cluster;
pub use cluster::{Cluster, ClusterGuard};

/// The broker the tests use unless `MAGI_TEST_AMQP_URL` says otherwise.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Why the test kit failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// `rabbitmqctl` could not be run or failed.
    #[error("rabbitmqctl {args}: {reason}")]
    Ctl {
        /// Its arguments.
        args: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker could not be reached.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    /// The bus could not connect.
    #[error("bus: {0}")]
    Bus(#[from] magi_bus::ConnectError),
}

/// One test's corner of the broker.
pub struct TestBroker {
    /// The broker URL.
    pub url: String,
    /// The vhost the URL points at, for `rabbitmqctl -p`.
    pub vhost: String,
    /// This test's unique prefix.
    pub prefix: String,
}

impl TestBroker {
    /// A fresh prefix on the test broker.
    pub fn new() -> Self {
        let url = std::env::var("MAGI_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
        let vhost = vhost_of(&url);
        let prefix = format!("magi.test.{}.", uuid::Uuid::new_v4().simple());
        TestBroker { url, vhost, prefix }
    }

    /// Options for a bus under this test's prefix.
    pub fn options(&self) -> BusOptions {
        BusOptions {
            connection_name: Some(format!("{}test", self.prefix)),
            ..BusOptions::with_prefix(&self.prefix)
        }
    }

    /// A bus under this test's prefix.
    pub async fn bus(&self) -> Result<AmqpBus, KitError> {
        Ok(AmqpBus::connect(&self.url, self.options()).await?)
    }

    /// A plain lapin connection to the same broker (for publishing what a bus never would);
    /// the first broker that answers when the URL names several.
    pub async fn raw(&self) -> Result<Connection, KitError> {
        let brokers = magi_bus::amqp::Brokers::parse(&self.url)?;
        let mut last = None;
        for url in &brokers.urls {
            match Connection::connect(url, ConnectionProperties::default()).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("a broker list is never empty").into())
    }

    /// A fresh prefix on the local three-node cluster (`scripts/cluster`), reached through
    /// the broker list `url` (see [`Cluster::url`]); the cluster must be running
    /// ([`Cluster::ensure`]).
    pub fn on_cluster(url: &str) -> Self {
        TestBroker {
            url: url.to_string(),
            vhost: "/".into(),
            prefix: format!("magi.test.{}.", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Exchanges and queues on the broker whose names start with this test's prefix.
    pub fn leftovers(&self) -> Result<Vec<String>, KitError> {
        let mut found = Vec::new();
        for what in ["list_exchanges", "list_queues"] {
            let args = [what, "-q", "-p", &self.vhost, "name"];
            let out = if Cluster::serves(&self.url) {
                Cluster::ctl_any(&args)?
            } else {
                ctl(&args)?
            };
            let names = out
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with(&self.prefix));
            found.extend(names.map(|n| format!("{}: {n}", &what[5..what.len() - 1])));
        }
        Ok(found)
    }

    /// Delete every exchange and queue under this prefix; return what is still there after.
    pub async fn cleanup(&self) -> Result<Vec<String>, KitError> {
        let conn = self.raw().await?;
        for _round in 0..3 {
            let left = self.leftovers()?;
            if left.is_empty() {
                break;
            }
            for entry in left {
                // A fresh channel per delete: an error closes only that channel.
                let ch = conn.create_channel().await?;
                if let Some(name) = entry.strip_prefix("exchange: ") {
                    let _ = ch
                        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
                        .await;
                } else if let Some(name) = entry.strip_prefix("queue: ") {
                    let _ = ch
                        .queue_delete(name.into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = ch.close(200, "OK".into()).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = conn.close(200, "OK".into()).await;
        self.leftovers()
    }
}

impl Default for TestBroker {
    fn default() -> Self {
        Self::new()
    }
}

/// Run `rabbitmqctl` with `args`; its standard output.
pub fn ctl(args: &[&str]) -> Result<String, KitError> {
    let fail = |reason: String| KitError::Ctl {
        args: args.join(" "),
        reason,
    };
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Publishes `body` as the user of `url`, on a connection of its own, the way a hand-made
/// client would: JSON of kind `kind`, persistent, confirmed, with the connection's user as
/// `user_id` (RabbitMQ accepts no other) and a fresh message id. `Err` is the broker's
/// refusal (or an unreachable broker).
pub async fn publish_as(
    url: &str,
    exchange: &str,
    key: &str,
    kind: &str,
    body: &[u8],
) -> Result<(), lapin::Error> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let user = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once(':'))
        .map(|(user, _)| user.to_string())
        .unwrap_or_default();
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let result = async {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let properties = lapin::BasicProperties::default()
            .with_content_type("application/json".into())
            .with_user_id(user.into())
            .with_type(kind.into())
            .with_message_id(uuid::Uuid::now_v7().to_string().into())
            .with_delivery_mode(2);
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?
        .await?;
        Ok(())
    }
    .await;
    let _ = conn.close(200, "OK".into()).await;
    result
}

/// The vhost an AMQP URL points at (`/` when it names none).
pub fn vhost_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() {
        return "/".into();
    }
    percent_decode(path)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A hold on the broker across test processes: tests that merely use the broker hold it
/// shared, a test that stops and starts the broker holds it exclusively, so a restart
/// never happens under another of these tests, even from another test binary.
pub struct BrokerGuard {
    _file: std::fs::File,
}

/// The lock file behind [`BrokerGuard`].
pub const LOCK_PATH: &str = "/tmp/magi-bus-amqp-broker.lock";

impl BrokerGuard {
    /// Wait for a shared hold (many at once).
    pub async fn shared() -> std::io::Result<BrokerGuard> {
        Self::take(libc::LOCK_SH).await
    }

    /// Wait for the exclusive hold (no other holder).
    pub async fn exclusive() -> std::io::Result<BrokerGuard> {
        Self::take(libc::LOCK_EX).await
    }

    async fn take(op: libc::c_int) -> std::io::Result<BrokerGuard> {
        Ok(BrokerGuard {
            _file: flock(LOCK_PATH, op).await?,
        })
    }
}

/// `path` opened (created if missing) and locked with `flock(op)`, waiting for the lock
/// in a blocking thread; released when the file is closed.
pub(crate) async fn flock(path: &'static str, op: libc::c_int) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a file descriptor we own; it is released when the file closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Whether every service the tests use must be there: `CI` or `MAGI_REQUIRE_SERVICES` is
/// set (as `scripts/test` does). There a test that cannot reach one fails instead of
/// skipping.
pub fn services_required() -> bool {
    ["CI", "MAGI_REQUIRE_SERVICES"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Skips a test that cannot run on this machine (saying so on stderr), or fails it where
/// services are required ([`services_required`]).
pub fn skip(test: &str, why: &str) {
    assert!(
        !services_required(),
        "{test} cannot run here ({why}), and CI or MAGI_REQUIRE_SERVICES is set"
    );
    // Straight to stderr, past the test harness's capture, so the skip shows in every run.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Runs this source tree's `broker-config/apply.sh` on `vhost` with `args`.
pub fn apply_sh(vhost: &str, args: &[String]) -> std::io::Result<std::process::Output> {
    std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../broker-config/apply.sh"
        ))
        .args(["--vhost", vhost])
        .args(args)
        .output()
}

/// A vhost and broker users that exist for one test: created with full permissions on
/// the vhost (so a test checks what the bus itself enforces), deleted when dropped, even
/// when the test fails.
pub struct Throwaway {
    /// The vhost.
    pub vhost: String,
    /// The users, all with [`Throwaway::PASSWORD`].
    pub users: Vec<String>,
}

impl Throwaway {
    /// The password of every throwaway user.
    pub const PASSWORD: &'static str = "pw-for-tests";

    /// A fresh vhost `magi-test-<id>` with these users.
    pub fn new(users: &[&str]) -> Result<Throwaway, KitError> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let made = Throwaway {
            vhost: format!("magi-test-{id}"),
            users: users.iter().map(|u| u.to_string()).collect(),
        };
        ctl(&["-q", "add_vhost", &made.vhost])?;
        for user in &made.users {
            ctl(&["-q", "add_user", user, Self::PASSWORD])?;
            ctl(&[
                "-q",
                "set_permissions",
                "-p",
                &made.vhost,
                user,
                ".*",
                ".*",
                ".*",
            ])?;
        }
        Ok(made)
    }

    /// A fresh vhost configured as an operator would, by `broker-config/apply.sh` under
    /// `prefix`: these orchestrator, node and tap users (all with
    /// [`Throwaway::PASSWORD`]) with exactly the permissions, topic permissions and queue
    /// policies their roles get on a shared testbed.
    pub fn configured(
        prefix: &str,
        orchestrators: &[&str],
        nodes: &[&str],
        taps: &[&str],
    ) -> Result<Throwaway, KitError> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let made = Throwaway {
            vhost: format!("magi-test-{id}"),
            users: [orchestrators, nodes, taps]
                .concat()
                .iter()
                .map(|u| u.to_string())
                .collect(),
        };
        let mut args = vec!["--prefix".to_string(), prefix.to_string()];
        for (flag, users) in [
            ("--orchestrator", orchestrators),
            ("--node", nodes),
            ("--tap", taps),
        ] {
            for user in users {
                args.extend([flag.to_string(), format!("{user}:{}", Self::PASSWORD)]);
            }
        }
        let out = apply_sh(&made.vhost, &args).map_err(|e| KitError::Ctl {
            args: "apply.sh".into(),
            reason: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(KitError::Ctl {
                args: "apply.sh".into(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(made)
    }

    /// The broker URL of `user` on this vhost.
    pub fn url(&self, user: &str) -> String {
        format!(
            "amqp://{user}:{}@127.0.0.1:5672/{}",
            Self::PASSWORD,
            self.vhost
        )
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = ctl(&["-q", "delete_user", user]);
        }
        let _ = ctl(&["-q", "delete_vhost", &self.vhost]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vhosts_come_out_of_urls() {
        assert_eq!(super::vhost_of("amqp://g:g@h:5672/%2f"), "/");
        assert_eq!(
            super::vhost_of("amqp://g:g@h:5672/%2fmagi?heartbeat=10"),
            "/magi"
        );
        assert_eq!(super::vhost_of("amqp://h"), "/");
        assert_eq!(super::vhost_of("amqp://h/"), "/");
    }
}
