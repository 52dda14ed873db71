//! The driver on the in-process bus against a scripted node, on tokio's paused clock: the
//! timing rules run in virtual time (a minute of procedure takes no time) and are pinned
//! to the millisecond where the rule says so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use magi_bus::memory::MemoryBus;
use magi_bus::{Bus, Delivered, NodeLink, RunLink, RunPort, SendError};
use magi_engine::{FailureKind, Outcome};
use magi_proto::{Call, DaemonCall, NodeStatus, Object, Trigger, DAEMON_DOCK};
use serde_json::json;
use tokio::time::Instant;

use super::{Driver, DriverConfig, Infra};
use crate::console::{Console, Mode};
use crate::record::RunRecord;

const RUN: &str = "r";

/// A daemon method and the `runAlive` period it stated.
type Stated = (&'static str, Option<u64>);

/// How the scripted node behaves.
#[derive(Clone)]
struct Script {
    /// Heartbeat period announced and kept.
    heartbeat: Duration,
    /// Stop heartbeating (silently: no goodbye) after this long.
    silent_after: Option<Duration>,
    /// No heartbeat between these two instants (from the node's start).
    pause: Option<(Duration, Duration)>,
    /// `runAlive` calls received.
    alive: Arc<AtomicUsize>,
    /// The `runAlive` period that each `loadAgent` and `runAlive` stated, in order.
    periods: Arc<std::sync::Mutex<Vec<Stated>>>,
    /// How long it takes to answer a `loadAgent`.
    load_takes: Duration,
    /// When its first heartbeat goes out (after the first announcement).
    phase: Duration,
    /// A broker falling behind: heartbeats made from `.0` on arrive late by `.1` seconds
    /// per second since then, at most `.2`; `.3`: they say when they arrived, not when they
    /// were made (the lateness hidden).
    late: Option<(Duration, f64, Duration, bool)>,
}

impl Script {
    fn new() -> Script {
        Script {
            heartbeat: Duration::from_millis(500),
            silent_after: None,
            pause: None,
            alive: Arc::new(AtomicUsize::new(0)),
            periods: Default::default(),
            load_takes: Duration::ZERO,
            phase: Duration::ZERO,
            late: None,
        }
    }
}

fn args(v: serde_json::Value) -> Object {
    v.as_object().cloned().unwrap_or_default()
}

/// A node `name` that answers the node-agent methods as a real one does, returns `true`
/// from every agent method that fires a trigger, and heartbeats as scripted.
fn scripted_node(link: NodeLink, script: Script, name: &'static str) {
    let NodeLink { mut calls, port } = link;
    let beat = port.clone();
    let s = script.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        // Its clock: the epoch, advancing with tokio's (paused) one.
        let epoch = magi_proto::epoch_now();
        loop {
            if s.silent_after.is_some_and(|d| started.elapsed() >= d) {
                return;
            }
            let paused = s
                .pause
                .is_some_and(|(from, to)| (from..to).contains(&started.elapsed()));
            if paused {
                tokio::time::sleep(s.heartbeat).await;
                continue;
            }
            let made = started.elapsed();
            let late = s.late.map_or(Duration::ZERO, |(from, rise, most, _)| {
                made.saturating_sub(from).mul_f64(rise).min(most)
            });
            let hidden = s.late.is_some_and(|l| l.3);
            let status = NodeStatus {
                node: name.into(),
                pid: 1,
                time: epoch + (made + if hidden { late } else { Duration::ZERO }).as_secs_f64(),
                heartbeat_ms: s.heartbeat.as_millis() as u64,
                runs: Vec::new(),
                alive: true,
            };
            if late.is_zero() {
                let _ = beat.announce(status).await;
            } else {
                let beat = beat.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(late).await;
                    let _ = beat.announce(status).await;
                });
            }
            if made.is_zero() {
                tokio::time::sleep(s.phase).await;
            }
            tokio::time::sleep(s.heartbeat).await;
        }
    });
    tokio::spawn(async move {
        while let Some(call) = calls.recv().await {
            let reply = |event: &str, a: Object| Trigger::from_node(RUN, event, name, a);
            let trigger = if call.dock == DAEMON_DOCK {
                match DaemonCall::from_call(&call).expect("a well-formed daemon call") {
                    DaemonCall::JoinGroup(g) => {
                        port.join(RUN, &g.group).await.expect("join");
                        Some(reply(
                            magi_proto::GROUP_BUILD_DONE,
                            args(json!({"group": g.group})),
                        ))
                    }
                    DaemonCall::LeaveGroup(g) => {
                        let _ = port.leave(RUN, &g.group).await;
                        Some(reply(
                            magi_proto::GROUP_TEARDOWN_DONE,
                            args(json!({"group": g.group})),
                        ))
                    }
                    DaemonCall::LoadAgent(l) => {
                        let said = ("loadAgent", l.alive_ms);
                        script.periods.lock().unwrap().push(said);
                        tokio::time::sleep(script.load_takes).await;
                        Some(reply(
                            magi_proto::AGENT_LOAD_DONE,
                            args(json!({"agent": l.name})),
                        ))
                    }
                    DaemonCall::UnloadAgent(a) => Some(reply(
                        magi_proto::AGENT_UNLOAD_DONE,
                        args(json!({"agent": a.name})),
                    )),
                    DaemonCall::RunAlive(a) => {
                        script
                            .periods
                            .lock()
                            .unwrap()
                            .push(("runAlive", a.alive_ms));
                        script.alive.fetch_add(1, Ordering::SeqCst);
                        None
                    }
                    DaemonCall::EndRun {} | DaemonCall::DetachRun {} => None,
                }
            } else {
                call.trigger.as_deref().map(|t| {
                    reply(t, args(json!({"retVal": true, "agent": call.dock}))).answering(call.seq)
                })
            };
            if let Some(t) = trigger {
                port.send_trigger(t).await.expect("trigger");
            }
        }
    });
}

/// What the broker does to the calls of one method.
#[derive(Clone, Copy)]
enum Meddle {
    /// Delivers them at once but confirms them only after this long (as a broker busy
    /// writing a large message does).
    Late(Duration),
    /// Loses them with the connection.
    Cut,
}

/// A run port whose broker meddles with the calls of one method (the others pass).
struct Meddling {
    inner: Arc<dyn RunPort>,
    method: &'static str,
    how: Meddle,
}

#[async_trait::async_trait]
impl RunPort for Meddling {
    async fn publish_group(&self, group: &str, call: Call) -> Result<Delivered, SendError> {
        if call.method != self.method {
            return self.inner.publish_group(group, call).await;
        }
        match self.how {
            Meddle::Late(delay) => {
                let result = self.inner.publish_group(group, call).await;
                tokio::time::sleep(delay).await;
                result
            }
            Meddle::Cut => Err(SendError::Disconnected("connection reset by peer".into())),
        }
    }
    async fn publish_nodes(&self, nodes: &[String], call: Call) -> Result<Delivered, SendError> {
        self.inner.publish_nodes(nodes, call).await
    }
    async fn close(&self) -> Result<(), SendError> {
        self.inner.close().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_lost_with_the_connection_says_so_rather_than_that_it_reached_no_node() {
    let (result, _) = drive_meddled(
        &procedure(1000),
        Some(Script::new()),
        None,
        Duration::from_secs(10),
        Some(("go", Meddle::Cut)),
    )
    .await;
    let Ok(Outcome::Failed { kind, message }) = result else {
        panic!("the run should fail")
    };
    assert_eq!(kind, FailureKind::Delivery);
    assert!(
        message.contains("go to group g (sent by stream main) was not delivered: the bus is disconnected: connection reset by peer"),
        "{message}"
    );
    assert!(!message.contains("reached no node"), "{message}");
}

/// Runs `aal` against the scripted node (none: no node at all); the driver's result and
/// how much (virtual) time it took.
async fn drive_with(
    aal: &str,
    script: Option<Script>,
    alive_every: Option<Duration>,
    preflight: Duration,
) -> (Result<Outcome, Infra>, Duration) {
    drive_meddled(aal, script, alive_every, preflight, None).await
}

/// [`drive_with`], the broker meddling with the calls of method `meddle.0` as `meddle.1`.
async fn drive_meddled(
    aal: &str,
    script: Option<Script>,
    alive_every: Option<Duration>,
    preflight: Duration,
    meddle: Option<(&'static str, Meddle)>,
) -> (Result<Outcome, Infra>, Duration) {
    let checked = magi_aal::check_str("t.aal", aal);
    let bus = MemoryBus::new();
    let mut link = bus.open_run(RUN).await.expect("open run");
    if let Some((method, how)) = meddle {
        link.port = Arc::new(Meddling {
            inner: link.port,
            method,
            how,
        });
    }
    if let Some(script) = script {
        scripted_node(bus.attach_node("n1").await.expect("attach"), script, "n1");
    }
    let started = Instant::now();
    let result = run_driver(&checked, link, preflight, alive_every, Default::default()).await;
    (result, started.elapsed())
}

/// [`drive_with`] a scripted node that is there, expecting the run to be carried out.
async fn drive(aal: &str, script: Script, alive_every: Option<Duration>) -> (Outcome, Duration) {
    let (result, took) = drive_with(aal, Some(script), alive_every, Duration::from_secs(10)).await;
    (result.expect("no infrastructure failure"), took)
}

fn procedure(wait_ms: u64) -> String {
    format!(
        "agents:\n  a: {{group: g, path: /nonexistent, execargs: {{}}}}\ngroups:\n  g: [n1]\n\
         streamstarts: [main]\neventstreams:\n  main:\n\
         \x20   - {{type: event, agent: a, method: go, trigger: went, args: {{}}}}\n\
         \x20   - {{type: trigger, triggers: [{{event: went}}]}}\n\
         \x20   - {{type: trigger, triggers: [{{timeout: {wait_ms}}}]}}\n\
         \x20   - {{type: event, agent: a, method: stop, trigger: stopped, args: {{}}}}\n\
         \x20   - {{type: trigger, triggers: [{{event: stopped}}]}}\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_minute_long_procedure_runs_to_success_in_virtual_time() {
    let wall = std::time::Instant::now();
    let (outcome, took) = drive(&procedure(60_000), Script::new(), None).await;
    assert_eq!(outcome, Outcome::Success);
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(61),
        "the run took {took:?} of virtual time"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(10),
        "{:?} of real time",
        wall.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_silent_for_three_heartbeats_but_at_least_three_seconds_is_lost() {
    let script = Script {
        silent_after: Some(Duration::from_secs(5)),
        ..Script::new()
    };
    let (outcome, took) = drive(&procedure(60_000), script, None).await;
    let Outcome::Failed { kind, message } = outcome else {
        panic!("the run did not fail: {outcome:?}");
    };
    assert_eq!(kind, FailureKind::Node, "{message}");
    assert!(message.contains("n1"), "{message}");
    // Last heartbeat at 4.5 s; three periods of 500 ms are less than the 3 s floor, so the
    // node is lost after 3 s of silence, seen at the next 500 ms check: 7.5 to 8.0 s.
    assert!(
        took > Duration::from_millis(7_500) && took <= Duration::from_millis(8_100),
        "lost after {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn run_alive_reaches_the_nodes_every_period_while_the_run_lives() {
    let script = Script::new();
    let (alive, periods) = (script.alive.clone(), script.periods.clone());
    let (outcome, took) = drive(&procedure(20_000), script, Some(Duration::from_secs(2))).await;
    assert_eq!(outcome, Outcome::Success);
    let sent = alive.load(Ordering::SeqCst);
    let expected = (took.as_secs_f64() / 2.0).floor() as usize;
    assert!(
        sent.abs_diff(expected) <= 1,
        "{sent} runAlive in {took:?}, expected about {expected}"
    );
    // Each says how often they come, and so does the `loadAgent` before them: the node
    // sizes the run's dead man from it (node agent: `RunState::dead_man`).
    let periods = periods.lock().unwrap().clone();
    assert_eq!(
        periods.first(),
        Some(&("loadAgent", Some(2000))),
        "{periods:?}"
    );
    assert_eq!(periods.len(), sent + 1, "{periods:?}");
    assert!(
        periods.iter().all(|(_, ms)| *ms == Some(2000)),
        "{periods:?}"
    );
}

/// A procedure that calls group g every 500 ms for about 10 s, then waits 10 s.
fn busy_then_quiet() -> String {
    let mut aal = String::from(
        "agents:\n  a: {group: g, path: /nonexistent, execargs: {}}\ngroups:\n  g: [n1]\n\
         streamstarts: [main]\neventstreams:\n  main:\n",
    );
    for _ in 0..20 {
        aal.push_str("    - {type: event, agent: a, method: go, trigger: went, args: {}}\n");
        aal.push_str("    - {type: trigger, triggers: [{event: went}]}\n");
        aal.push_str("    - {type: trigger, triggers: [{timeout: 500}]}\n");
    }
    aal.push_str("    - {type: trigger, triggers: [{timeout: 10000}]}\n");
    aal
}

#[tokio::test(start_paused = true)]
async fn run_alive_is_left_out_for_a_group_the_run_has_just_called() {
    let script = Script::new();
    let alive = script.alive.clone();
    let (outcome, took) = drive(&busy_then_quiet(), script, Some(Duration::from_secs(2))).await;
    assert_eq!(outcome, Outcome::Success);
    // Only the quiet 10 s (and the setup before the first call) need a `runAlive`.
    let sent = alive.load(Ordering::SeqCst);
    assert!(took >= Duration::from_secs(20), "{took:?}");
    assert!((4..=6).contains(&sent), "{sent} runAlive in {took:?}");
}

/// Runs `aal` (group g of n1..n4) against four scripted nodes, node i (from 0) scripted by
/// `script(i)`; `shipped`: agent `a`'s archive goes with its `loadAgent`.
async fn drive_four(
    aal: &str,
    script: impl Fn(u32) -> Script,
    shipped: bool,
) -> Result<Outcome, Infra> {
    let checked = magi_aal::check_str("t.aal", aal);
    let bus = MemoryBus::new();
    let link = bus.open_run(RUN).await.expect("open run");
    for (i, name) in ["n1", "n2", "n3", "n4"].into_iter().enumerate() {
        let node = bus.attach_node(name).await.expect("attach");
        scripted_node(node, script(i as u32), name);
    }
    let mut shipments = std::collections::HashMap::new();
    if shipped {
        let archive = super::Shipment {
            archive_b64: "AAAA".into(),
            sha256: "0".repeat(64),
        };
        shipments.insert("a".to_string(), archive);
    }
    run_driver(&checked, link, Duration::from_secs(10), None, shipments).await
}

/// The driver on `link` for `checked`'s procedure, with a record in a temporary directory.
async fn run_driver(
    checked: &magi_aal::Checked,
    link: RunLink,
    preflight: Duration,
    alive_every: Option<Duration>,
    shipments: std::collections::HashMap<String, super::Shipment>,
) -> Result<Outcome, Infra> {
    let procedure = Arc::new(checked.procedure.clone().expect("a valid procedure"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut record = RunRecord::create(dir.path(), RUN, &checked.files, "memory").expect("record");
    let mut console = Console::new(Mode::Json);
    let config = DriverConfig {
        engine: magi_engine::Options {
            group_timeout_ms: 200_000,
            abort_on_failure: true,
            teardown: true,
        },
        preflight,
        alive_every,
        shipments,
    };
    let driver = Driver::new(
        procedure,
        RUN,
        link,
        config,
        &mut console,
        &mut record,
        None,
    );
    driver.run().await
}

/// Group g of n1..n4: `go`, its trigger, then `wait_ms`.
fn four_nodes(wait_ms: u64) -> String {
    format!(
        "agents:\n  a: {{group: g, path: /nonexistent, execargs: {{}}}}\n\
         groups:\n  g: [n1, n2, n3, n4]\nstreamstarts: [main]\neventstreams:\n  main:\n\
         \x20   - {{type: event, agent: a, method: go, trigger: went, args: {{}}}}\n\
         \x20   - {{type: trigger, triggers: [{{event: went}}]}}\n\
         \x20   - {{type: trigger, triggers: [{{timeout: {wait_ms}}}]}}\n"
    )
}

/// The run failed with a node lost.
fn lost(result: &Result<Outcome, Infra>) -> bool {
    matches!(
        result,
        Ok(Outcome::Failed {
            kind: FailureKind::Node,
            ..
        })
    )
}

#[tokio::test(start_paused = true)]
async fn nodes_silent_while_a_shipped_archive_reaches_them_one_by_one_are_not_lost() {
    // Four nodes answer the shipped archive 2.5, 5, 7.5 and 10 s after it went out (a broker
    // delivering it to thousands of queues), and no heartbeat of theirs comes through from
    // 0.5 to 10 s: three times the lost-node window.
    let script = |i: u32| Script {
        pause: Some((Duration::from_millis(500), Duration::from_secs(10))),
        load_takes: Duration::from_millis(2500 * (u64::from(i) + 1)),
        ..Script::new()
    };
    let aal = four_nodes(0);
    assert_eq!(drive_four(&aal, script, true).await, Ok(Outcome::Success));
    // The same silence, the archive not shipped (the node reads its own copy): lost.
    let result = drive_four(&aal, script, false).await;
    assert!(lost(&result), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn nodes_whose_heartbeats_the_broker_delivers_ever_later_are_not_lost() {
    // From 3 s on, the broker falls behind by 6 s every second, up to 6 s behind: each
    // node's next heartbeat arrives 3.5 s after its last (the window is 3 s), the others'
    // in between tell how late they all are.
    let script = |hidden: bool| {
        move |i: u32| Script {
            phase: Duration::from_millis(125 * u64::from(i)),
            late: Some((Duration::from_secs(3), 6.0, Duration::from_secs(6), hidden)),
            ..Script::new()
        }
    };
    let aal = four_nodes(15_000);
    assert_eq!(
        drive_four(&aal, script(false), false).await,
        Ok(Outcome::Success)
    );
    // The same deliveries, the heartbeats saying when they arrived: the lateness is hidden
    // and the nodes are lost.
    let result = drive_four(&aal, script(true), false).await;
    assert!(lost(&result), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_announces_itself_fails_the_preflight_naming_it() {
    let (result, took) = drive_with(&procedure(1000), None, None, Duration::from_secs(20)).await;
    assert_eq!(result, Err(Infra::MissingNodes(vec!["n1".into()])));
    assert_eq!(took, Duration::from_secs(20));
}

/// Pre-flight at N = 10,000 under a storm of heartbeats: every node but the last announces
/// itself three times before the driver starts; at the end of a real 5 s pre-flight the
/// driver has read them all and names the last alone. Listing the missing nodes anew for
/// every message (10,000 names × 30,000 messages) took 22 s over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_of_ten_thousand_nodes_reads_a_storm_of_heartbeats_in_time() {
    const N: usize = 10_000;
    let names: Vec<String> = (0..N).map(|i| format!("n{i:05}")).collect();
    let aal = format!(
        "groups:\n  g: [{}]\nagents:\n  a: {{group: g, path: /nonexistent, execargs: {{}}}}\n\
         streamstarts: [main]\neventstreams:\n  main:\n\
         \x20   - {{type: event, agent: a, method: go, args: {{}}}}\n",
        names.join(", ")
    );
    let checked = magi_aal::check_str("t.aal", &aal);
    let bus = MemoryBus::new();
    let link = bus.open_run(RUN).await.expect("open run");
    let mut nodes = Vec::new();
    for name in &names[..N - 1] {
        nodes.push(bus.attach_node(name).await.expect("attach"));
    }
    for _ in 0..3 {
        for (node, name) in nodes.iter().zip(&names) {
            let status = NodeStatus {
                node: name.clone(),
                pid: 1,
                time: magi_proto::epoch_now(),
                heartbeat_ms: 2000,
                runs: Vec::new(),
                alive: true,
            };
            node.port.announce(status).await.expect("announce");
        }
    }
    let started = std::time::Instant::now();
    let result = run_driver(
        &checked,
        link,
        Duration::from_secs(5),
        None,
        Default::default(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(result, Err(Infra::MissingNodes(vec![names[N - 1].clone()])));
    // It ends at its deadline: the old way was still reading the storm 17 s after it.
    assert!(
        took < Duration::from_secs(8),
        "pre-flight of 5 s took {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_silent_while_the_broker_holds_a_call_unconfirmed_is_not_lost() {
    // The broker takes 12 s to confirm `go` (delivered at once); meanwhile the node's
    // heartbeats do not come through for 9.5 s, three times the lost-node window.
    let script = Script {
        pause: Some((Duration::from_millis(500), Duration::from_secs(10))),
        ..Script::new()
    };
    let (result, _) = drive_meddled(
        &procedure(20_000),
        Some(script.clone()),
        None,
        Duration::from_secs(10),
        Some(("go", Meddle::Late(Duration::from_secs(12)))),
    )
    .await;
    assert_eq!(result, Ok(Outcome::Success));
    // The same silence with the broker confirming at once: the node is lost.
    let (result, _) = drive_meddled(
        &procedure(20_000),
        Some(script),
        None,
        Duration::from_secs(10),
        None,
    )
    .await;
    assert!(lost(&result), "{result:?}");
}

#[test]
fn the_default_alive_period_is_2_s_up_to_2000_nodes_then_a_second_per_thousand() {
    for (nodes, secs) in [
        (0, 2.0),
        (1, 2.0),
        (1000, 2.0),
        (2000, 2.0),
        (3000, 3.0),
        (10_000, 10.0),
    ] {
        assert_eq!(
            super::default_alive_every(nodes).as_secs_f64(),
            secs,
            "{nodes} nodes"
        );
    }
}
