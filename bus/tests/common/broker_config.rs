//! Support for `permissions.rs`: a throwaway vhost configured by `broker-config/apply.sh`,
//! and raw AMQP operations (each on a fresh channel, since a refusal closes it) whose
//! refusals the tests expect.
#![allow(dead_code)]

use std::process::Output;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use magi_bus::amqp::Names;
use magi_testkit::ctl;

pub const PASSWORD: &str = "pw-for-tests";

/// A throwaway vhost configured by apply.sh, with users named `t<id>-<role>`; deleted with
/// its users when dropped.
pub struct Vhost {
    pub vhost: String,
    pub id: String,
    pub users: Vec<String>,
    pub names: Names,
}

impl Vhost {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Vhost {
            vhost: format!("magi-test-{id}"),
            id,
            users: Vec::new(),
            names: Names::new("magi."),
        }
    }

    /// The user name of a role (also the node name of a node user).
    pub fn user(&self, role: &str) -> String {
        format!("t{}-{role}", self.id)
    }

    /// Runs apply.sh on this vhost with `args`: a role flag (`--orchestrator alice`) names
    /// the user of that role with the test password, and the user is deleted at the end;
    /// other flags are passed as they are.
    pub fn apply(&mut self, args: &[(&str, &str)]) -> Output {
        let mut script_args = Vec::new();
        for (flag, role) in args {
            if !["--orchestrator", "--node", "--tap"].contains(flag) {
                script_args.extend([flag.to_string(), role.to_string()]);
                continue;
            }
            let user = self.user(role);
            script_args.extend([flag.to_string(), format!("{user}:{PASSWORD}")]);
            self.users.push(user);
        }
        magi_testkit::apply_sh(&self.vhost, &script_args).expect("run apply.sh")
    }

    /// A scratch directory of this test, removed with the vhost.
    pub fn scratch(&self) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("magi-apply-{}", self.id));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    pub fn url(&self, user: &str) -> String {
        self.url_with(user, PASSWORD)
    }

    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:5672/{}", self.vhost)
    }

    pub async fn connect(&self, role: &str) -> Connection {
        Connection::connect(&self.url(&self.user(role)), ConnectionProperties::default())
            .await
            .expect("connect")
    }

    /// Messages in a queue of this vhost (`rabbitmqctl list_queues`).
    pub fn messages(&self, queue: &str) -> Option<u64> {
        let out = ctl(&["-q", "list_queues", "-p", &self.vhost, "name", "messages"])
            .expect("list_queues");
        out.lines().find_map(|l| {
            let (name, n) = l.split_once('\t')?;
            (name == queue).then(|| n.trim().parse().ok()).flatten()
        })
    }

    /// The operator policy the broker applies to each queue of this vhost. `list_queues`
    /// cannot show it in RabbitMQ 3.10, so this asks the broker itself (`eval`).
    pub fn operator_policies(&self) -> Vec<(String, String)> {
        let expr = format!(
            "[{{element(4, amqqueue:get_name(Q)), case amqqueue:get_operator_policy(Q) of \
             undefined -> none; P -> proplists:get_value(name, P) end}} \
             || Q <- rabbit_amqqueue:list(<<\"{}\">>)].",
            self.vhost
        );
        let out = ctl(&["-q", "eval", &expr]).expect("eval");
        let compact: String = out.chars().filter(|c| !c.is_whitespace()).collect();
        // [{<<"queue">>,<<"policy">>},{<<"queue">>,none}]
        compact
            .split("{<<\"")
            .skip(1)
            .filter_map(|piece| {
                let (name, rest) = piece.split_once("\">>,")?;
                let policy = match rest.strip_prefix("<<\"") {
                    Some(p) => p.split_once("\">>")?.0.to_string(),
                    None => "none".to_string(),
                };
                Some((name.to_string(), policy))
            })
            .collect()
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = ctl(&["-q", "delete_user", user]);
        }
        let _ = ctl(&["-q", "delete_vhost", &self.vhost]);
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join(format!("magi-apply-{}", self.id)));
    }
}

pub fn assert_applied(out: &Output) {
    assert!(
        out.status.success(),
        "apply.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Publish with confirms on a fresh channel; the broker's refusal, if any.
pub async fn publish(conn: &Connection, exchange: &str, key: &str) -> Result<(), lapin::Error> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"{}",
        BasicProperties::default(),
    )
    .await?
    .await?;
    let _ = ch.close(200, "OK".into()).await;
    Ok(())
}

/// Publish as `user` on a connection of its own.
pub async fn raw_publish(
    vh: &Vhost,
    user: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    let conn = Connection::connect(&vh.url(user), ConnectionProperties::default()).await?;
    let result = publish(&conn, exchange, key).await;
    let _ = conn.close(200, "OK".into()).await;
    result
}

/// Runs `op` on a fresh channel of `conn`.
pub async fn on_channel<T, F, Fut>(conn: &Connection, op: F) -> Result<T, lapin::Error>
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, lapin::Error>>,
{
    let ch = conn.create_channel().await?;
    op(ch).await
}

pub async fn declare_queue(conn: &Connection, name: &str) -> Result<String, lapin::Error> {
    let name = name.to_string();
    on_channel(conn, |ch| async move {
        let q = ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.name().to_string())
    })
    .await
}

pub async fn bind_queue(
    conn: &Connection,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    let (queue, exchange, key) = (queue.to_string(), exchange.to_string(), key.to_string());
    on_channel(conn, |ch| async move {
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await
}

pub async fn declare_exchange(
    conn: &Connection,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    let name = name.to_string();
    on_channel(conn, |ch| async move {
        ch.exchange_declare(
            name.as_str().into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
    })
    .await
}

pub fn is_access_refused<T>(r: &Result<T, lapin::Error>) -> bool {
    match r {
        Err(e) => {
            matches!(e.kind(), lapin::ErrorKind::ProtocolError(a) if *a.kind() == AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED))
        }
        Ok(_) => false,
    }
}

#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(r: Result<T, lapin::Error>, what: &str) {
    assert!(is_access_refused(&r), "{what}: not refused: {r:?}");
}
