//! `broker-config/apply.sh` in a throwaway vhost with throwaway users: the three roles can
//! do their work, and the broker refuses a tap's publish and one user's publish into
//! another user's run. Vhost and users are deleted afterwards, even on failure.

mod common;

use std::process::Command;

use common::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use magi_bus::amqp::{AmqpBus, BusOptions, Names};
use magi_bus::{Bus, BusError};
use magi_testkit::{ctl, BrokerGuard};

const PASSWORD: &str = "pw-for-tests";

/// Deletes the throwaway vhost and users when dropped.
struct Throwaway {
    vhost: String,
    users: Vec<String>,
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = ctl(&["-q", "delete_user", user]);
        }
        let _ = ctl(&["-q", "delete_vhost", &self.vhost]);
    }
}

fn url(user: &str, vhost: &str) -> String {
    format!("amqp://{user}:{PASSWORD}@127.0.0.1:5672/{vhost}")
}

/// Publish with confirms as `user`; the broker's refusal, if any.
async fn raw_publish(
    user: &str,
    vhost: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    let conn = Connection::connect(&url(user, vhost), ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let result = async {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await?
        .await
    }
    .await;
    let _ = conn.close(200, "OK".into()).await;
    result.map(|_| ())
}

fn is_access_refused(r: &Result<(), lapin::Error>) -> bool {
    match r {
        Err(e) => {
            matches!(e.kind(), lapin::ErrorKind::ProtocolError(a) if *a.kind() == AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED))
        }
        Ok(()) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_enforces_the_three_roles_and_run_ownership() {
    let _hold = BrokerGuard::shared().await.expect("broker lock");
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let vhost = format!("magi-test-{id}");
    let [alice, bob, node, tap] = ["alice", "bob", "node", "tap"].map(|r| format!("t{id}-{r}"));
    let _throwaway = Throwaway {
        vhost: vhost.clone(),
        users: vec![alice.clone(), bob.clone(), node.clone(), tap.clone()],
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../broker-config/apply.sh");
    let pair = |u: &str| format!("{u}:{PASSWORD}");
    let args = [
        "--vhost".to_string(),
        vhost.clone(),
        "--orchestrator".into(),
        pair(&alice),
        "--orchestrator".into(),
        pair(&bob),
        "--node".into(),
        pair(&node),
        "--tap".into(),
        pair(&tap),
    ];
    let out = Command::new("bash")
        .arg(script)
        .args(&args)
        .output()
        .expect("run apply.sh");
    assert!(
        out.status.success(),
        "apply.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The roles at work: no role may configure the global exchanges; the buses only check them.
    let connect = |user: String| {
        let vhost = vhost.clone();
        async move { AmqpBus::connect(&url(&user, &vhost), BusOptions::default()).await }
    };
    let (orch, node_bus, tap_bus) = (
        connect(alice.clone()).await.unwrap(),
        connect(node.clone()).await.unwrap(),
        connect(tap.clone()).await.unwrap(),
    );
    let mut watch = tap_bus.tap(None).await.unwrap();
    let mut n = node_bus.attach_node("n1").await.unwrap();
    let run_name = format!("{alice}.run1");
    let mut run = orch.open_run(&run_name).await.unwrap();
    n.port.join(&run_name, "g").await.unwrap();
    run.port
        .publish_group("g", call(&run_name, "start"))
        .await
        .unwrap();
    assert_eq!(next(&mut n.calls).await.method, "start");
    run.port
        .publish_nodes(&["n1".into()], call(&run_name, "direct"))
        .await
        .unwrap();
    assert_eq!(next(&mut n.calls).await.method, "direct");
    n.port
        .send_trigger(trigger(&run_name, "started", "n1"))
        .await
        .unwrap();
    assert_eq!(next_trigger(&mut run.inbound).await.event, "started");
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(next(&mut watch.items).await.kind);
    }
    assert_eq!(kinds, ["call", "call", "trigger"]);

    // Alice cannot open Bob's run, nor publish into it.
    let err = orch
        .open_run(&format!("{bob}.run1"))
        .await
        .err()
        .expect("alice opened bob's run");
    assert!(matches!(err, BusError::Refused(_)), "{err:?}");
    let names = Names::new("magi.");
    let bobs = names.group_key(&format!("{bob}.run1"), "g");
    assert!(is_access_refused(
        &raw_publish(&alice, &vhost, &names.calls_exchange(), &bobs).await
    ));
    let bobs_node = names.node_key(&format!("{bob}.run1"), "n1");
    assert!(is_access_refused(
        &raw_publish(&alice, &vhost, &names.nodes_exchange(), &bobs_node).await
    ));
    // ... while the same publish into her own run is accepted.
    let own = names.group_key(&run_name, "g");
    raw_publish(&alice, &vhost, &names.calls_exchange(), &own)
        .await
        .expect("alice publishes into her own run");

    // A tap publishes nowhere; a node cannot forge calls in the tap stream.
    for exchange in [
        names.watch_exchange(),
        names.calls_exchange(),
        names.status_exchange(),
        String::new(),
    ] {
        assert!(
            is_access_refused(&raw_publish(&tap, &vhost, &exchange, "x").await),
            "tap published to {exchange:?}"
        );
    }
    let fake = names.watch_key(&run_name, "call");
    assert!(is_access_refused(
        &raw_publish(&node, &vhost, &names.watch_exchange(), &fake).await
    ));

    // apply.sh is idempotent.
    let again = Command::new("bash")
        .arg(script)
        .args(&args)
        .output()
        .expect("run apply.sh");
    assert!(
        again.status.success(),
        "apply.sh failed the second time: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    run.port.close().await.unwrap();
    for bus in [orch, node_bus, tap_bus] {
        bus.close().await;
    }
}
