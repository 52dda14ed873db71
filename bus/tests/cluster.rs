//! The bus on the local three-node RabbitMQ cluster (`scripts/cluster`, started by the
//! first test that needs it and shared by all): the contract on quorum queues, a client
//! whose first broker is down, and a stream of triggers across the loss of the broker node
//! each client is connected to.

mod common;
mod contract;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use magi_bus::amqp::{AmqpBus, QueueKind};
use magi_bus::{Bus, Inbound};
use magi_testkit::{skip, Cluster, ClusterGuard, TestBroker};

/// A bus under the kit's prefix that tries the cluster's nodes in `order`.
async fn bus_via(kit: &TestBroker, order: &[usize]) -> AmqpBus {
    AmqpBus::connect(&Cluster::url(order), kit.options())
        .await
        .expect("connect to the cluster")
}

/// Run `body` with a fresh kit on the cluster under a hold (`shared` or `exclusive`), then
/// clean up (also when the body panics) and check that nothing of the test's is left.
macro_rules! cluster_test {
    ($name:ident, $hold:ident, |$kit:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            use futures_util::FutureExt;
            if let Err(e) = Cluster::ensure().await {
                skip(stringify!($name), &format!("no local cluster: {e}"));
                return;
            }
            let _hold = ClusterGuard::$hold().await.expect("cluster lock");
            let $kit = TestBroker::on_cluster(&Cluster::url(&[1, 2, 3]));
            let outcome = std::panic::AssertUnwindSafe(async { $body })
                .catch_unwind()
                .await;
            let left = $kit.cleanup().await.expect("cleanup");
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
            assert!(left.is_empty(), "left on the cluster: {left:?}");
        }
    };
}

cluster_test!(
    a_group_call_reaches_exactly_the_members_of_that_run_on_quorum_queues,
    shared,
    |kit| {
        let bus = bus_via(&kit, &[1, 2, 3]).await;
        assert_eq!(bus.queue_kind(), QueueKind::Quorum);
        let traits = contract::Traits {
            counts_group_receivers: false,
        };
        contract::a_group_call_reaches_exactly_the_members_of_that_run(Arc::new(bus), traits).await;
        let types = Cluster::ctl_any(&["list_queues", "-q", "name", "type"]).unwrap();
        let node_queue = format!("{}node.n1", kit.prefix);
        assert!(
            types
                .lines()
                .any(|l| l.split_whitespace().eq([node_queue.as_str(), "quorum"])),
            "{node_queue} is not a quorum queue:\n{types}"
        );
    }
);

cluster_test!(
    a_second_consumer_of_a_node_or_run_is_refused_from_another_broker_node,
    shared,
    |kit| {
        // Quorum queues accept a second "exclusive" consumer: the lock queue refuses it.
        let bus: Arc<dyn Bus> = Arc::new(bus_via(&kit, &[1, 2, 3]).await);
        let other: Arc<dyn Bus> = Arc::new(bus_via(&kit, &[2, 3, 1]).await);
        contract::a_node_name_or_run_cannot_be_attached_twice(bus, other).await;
    }
);

cluster_test!(
    the_last_heartbeat_detaches_the_node_and_releases_its_lock,
    shared,
    |kit| {
        let bus = bus_via(&kit, &[3, 1, 2]).await;
        contract::heartbeats_reach_every_run_and_the_last_one_detaches_the_node(Arc::new(
            bus.clone(),
        ))
        .await;
        // The node's name is free again, from another connection.
        let other = bus_via(&kit, &[2, 3, 1]).await;
        let again = other.attach_node("n1").await.expect("attach after detach");
        again.port.announce(status("n1", false)).await.unwrap();
        bus.close().await;
        other.close().await;
    }
);

cluster_test!(
    a_client_whose_first_broker_is_down_connects_to_the_next,
    shared,
    |kit| {
        // Nothing listens on the base port: the first broker of the list is down.
        let url = format!(
            "amqp://guest:guest@127.0.0.1:{},127.0.0.1:{}/%2f",
            Cluster::base_port(),
            Cluster::port(2)
        );
        let started = Instant::now();
        let bus = AmqpBus::connect(&url, kit.options()).await.unwrap();
        let took = started.elapsed();
        eprintln!(
            "first broker down: connected in {took:?} to {}",
            bus.broker()
        );
        assert!(bus.broker().contains(&format!(":{}/", Cluster::port(2))));
        assert!(took < Duration::from_secs(10), "{took:?}");
        let mut node = bus.attach_node("n1").await.unwrap();
        let mut run = bus.open_run("r1").await.unwrap();
        node.port.join("r1", "g").await.unwrap();
        run.port.publish_group("g", call("r1", "m")).await.unwrap();
        assert_eq!(next(&mut node.calls).await.method, "m");
        node.port
            .send_trigger(trigger("r1", "t", "n1"))
            .await
            .unwrap();
        assert_eq!(next_trigger(&mut run.inbound).await.event, "t");
        run.port.close().await.unwrap();
        node.port.announce(status("n1", false)).await.unwrap();
        bus.close().await;
    }
);

/// Starts a cluster node's app again when dropped, whatever happened.
struct StartAppOnDrop(usize);

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        if let Err(e) = Cluster::ctl(self.0, &["start_app"]) {
            eprintln!("could not start node {} again: {e}", self.0);
        }
    }
}

/// Stops node `n`'s app (the broker closes its connections); the guard starts it again.
async fn stop_node(n: usize) -> StartAppOnDrop {
    tokio::task::spawn_blocking(move || Cluster::ctl(n, &["stop_app"]))
        .await
        .unwrap()
        .expect("stop_app");
    StartAppOnDrop(n)
}

async fn start_node(guard: StartAppOnDrop) {
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
}

cluster_test!(
    every_trigger_survives_stopping_the_broker_node_each_client_is_connected_to,
    exclusive,
    |kit| {
        // The orchestrator on node 1, the node agent on node 2.
        let orch = bus_via(&kit, &[1, 2, 3]).await;
        let node_bus = bus_via(&kit, &[2, 3, 1]).await;
        let mut node = node_bus.attach_node("n1").await.unwrap();
        let mut run = orch.open_run("r1").await.unwrap();
        node.port.join("r1", "g").await.unwrap();

        // The node agent sends a trigger every 10 ms until told to stop: through both
        // outages, and 100 more after the second node is back.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let port = node.port.clone();
        let stopping = stop.clone();
        let mut sender = Some(tokio::spawn(async move {
            let (mut sent, mut slowest) = (0u64, Duration::ZERO);
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                let tr = trigger("r1", "tick", "n1").with("seq", sent);
                let t = Instant::now();
                port.send_trigger(tr).await.expect("a trigger was given up");
                slowest = slowest.max(t.elapsed());
                sent += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (sent, slowest)
        }));

        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        // (which node was stopped, when stop_app returned)
        let mut outages: Vec<(usize, Instant)> = Vec::new();
        let mut arrivals: Vec<Instant> = Vec::new();
        let mut restarts: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let mut sent: Option<(u64, Duration)> = None;
        let mut back_at: Option<usize> = None;
        while sent.is_none_or(|(n, _)| seen.len() < n as usize) {
            assert!(
                Instant::now() < deadline,
                "only {} triggers arrived; outages: {}",
                seen.len(),
                outages.len()
            );
            if sent.is_none() && back_at.is_some_and(|b| seen.len() >= b + 100) {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                let handle = sender.take().expect("the sender runs");
                sent = Some(handle.await.unwrap());
                continue;
            }
            let Ok(Some(item)) =
                tokio::time::timeout(Duration::from_secs(1), run.inbound.recv()).await
            else {
                continue;
            };
            let Inbound::Trigger(t) = item else { continue };
            let seq = t.args.get("seq").and_then(|s| s.as_u64()).expect("seq");
            *seen.entry(seq).or_default() += 1;
            arrivals.push(Instant::now());
            let restarted = |i: usize| restarts.get(i).is_some_and(|r| r.is_finished());
            if back_at.is_none() && restarted(1) {
                back_at = Some(seen.len());
            }
            // After 50 triggers: the orchestrator's node; once it is back and 50 more have
            // arrived: the node agent's. Each is stopped for 2 s, then started again.
            let victim = if outages.is_empty() && seen.len() >= 50 {
                1
            } else if outages.len() == 1 && restarted(0) && seen.len() >= 100 {
                2
            } else {
                continue;
            };
            // Stopped from a task, so that triggers are read meanwhile; `stopped` is when
            // stop_app returned (the node's connections are closed by then).
            let guard = stop_node(victim).await;
            outages.push((victim, Instant::now()));
            restarts.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                start_node(guard).await;
            }));
        }
        for restart in restarts {
            restart.await.unwrap();
        }
        let (n, slowest) = sent.expect("the sender stopped");
        let repeats: usize = seen.values().map(|n| n - 1).sum();
        // The time to recover: the longest pause in the stream of triggers (one every
        // 10 ms) after a node was stopped, until the next was (at most 20 s).
        for (i, (victim, stopped)) in outages.iter().enumerate() {
            let whose = if *victim == 1 {
                "orchestrator"
            } else {
                "node agent"
            };
            let mut until = *stopped + Duration::from_secs(20);
            if let Some((_, next_stop)) = outages.get(i + 1) {
                until = until.min(*next_stop);
            }
            let pause = arrivals
                .windows(2)
                .filter(|w| w[1] > *stopped && w[1] < until)
                .map(|w| w[1] - w[0])
                .max();
            eprintln!(
                "cluster failover: node {victim} ({whose}'s) stopped: the triggers paused for {pause:?} at most"
            );
        }
        eprintln!(
            "cluster failover: {} of {n} triggers, {repeats} repeats, slowest send {slowest:?}; orchestrator now on {}, node agent on {}",
            seen.len(),
            orch.broker(),
            node_bus.broker()
        );
        assert_eq!(seen.len(), n as usize);
        assert_eq!(repeats, 0, "repeats reached the orchestrator");
        assert_eq!(outages.len(), 2);

        // Everything still works afterwards: the group, the node's inbox.
        run.port
            .publish_group("g", call("r1", "after"))
            .await
            .unwrap();
        assert_eq!(next(&mut node.calls).await.method, "after");
        run.port.close().await.unwrap();
        node.port.announce(status("n1", false)).await.unwrap();
        orch.close().await;
        node_bus.close().await;
    }
);

/// Sets the cluster's memory high watermark back to RabbitMQ's default when dropped,
/// whatever happened.
struct WatermarkOnDrop;

impl Drop for WatermarkOnDrop {
    fn drop(&mut self) {
        for n in 1..=3 {
            if let Err(e) = Cluster::ctl(n, &["set_vm_memory_high_watermark", "0.4"]) {
                eprintln!("could not reset node {n}'s memory watermark: {e}");
            }
        }
    }
}

cluster_test!(
    closing_a_run_fails_in_time_with_a_clear_error_when_the_broker_stops_answering,
    exclusive,
    |kit| {
        // A memory alarm (watermark 0: it goes off at once, on every node of the cluster)
        // makes the broker stop reading from a connection once it publishes: every later
        // request on it (opening a channel, deleting a queue) is never answered, as when
        // a node's file handles ran out and the deletion of a run's lock queue waited for
        // ever. `close` must give up after `reply_timeout` and say why.
        let reply_timeout = Duration::from_secs(3);
        let opts = magi_bus::amqp::BusOptions {
            reply_timeout,
            ..kit.options()
        };
        let bus = AmqpBus::connect(&Cluster::url(&[1, 2, 3]), opts)
            .await
            .expect("connect to the cluster");
        let run = bus.open_run("r1").await.unwrap();
        let alarm = WatermarkOnDrop;
        tokio::task::spawn_blocking(|| {
            Cluster::ctl(1, &["set_vm_memory_high_watermark", "0"]).expect("set the alarm")
        })
        .await
        .unwrap();
        // The publish that gets the connection blocked (it waits for its confirm).
        let port = run.port.clone();
        let blocked = tokio::spawn(async move { port.publish_group("g", call("r1", "m")).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(60), run.port.close())
            .await
            .expect("close waited for ever: no bound on the broker's answer");
        let took = started.elapsed();
        eprintln!("close on a connection the broker no longer reads: {closed:?} after {took:?}");
        match closed {
            Err(magi_bus::SendError::Disconnected(why)) => {
                assert!(why.contains("did not answer"), "{why}")
            }
            other => panic!("close should fail as Disconnected, got {other:?}"),
        }
        assert!(took >= reply_timeout, "{took:?}");
        assert!(took < reply_timeout * 4, "{took:?}");
        // The alarm cleared, the connection is read again: the blocked publish ends.
        tokio::task::spawn_blocking(move || drop(alarm))
            .await
            .unwrap();
        let published = tokio::time::timeout(Duration::from_secs(60), blocked)
            .await
            .expect("the blocked publish ended after the alarm")
            .unwrap();
        assert!(
            matches!(published, Err(magi_bus::SendError::NoRoute(_))),
            "{published:?}"
        );
        bus.close().await;
    }
);
