//! The engine's calls go out from a task of their own, one after the other in the engine's
//! order, each confirmed by the bus before the next. The run loop only hands them over, so
//! it goes on taking triggers in while the broker confirms a call: at N = 1000 a confirmed
//! publish to every node's queue takes about 250 ms, and that call's own triggers arrive
//! meanwhile. (Awaited in the loop, the 1000 triggers were all handled after the confirm,
//! in one burst of 50-70 ms that every round paid; docs/benchmarks.md.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magi_bus::{RunPort, SendError};
use magi_engine::steps::Dest;
use magi_proto::Call;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A call on its way out.
pub(super) struct Outgoing {
    /// The stream that sent it (told when it cannot be delivered).
    pub stream: String,
    pub dest: Dest,
    pub call: Call,
}

/// A call the bus could not deliver.
pub(super) struct Undelivered {
    pub stream: String,
    /// What was sent, e.g. `ping to group clients`.
    pub what: String,
    /// Where it was sent.
    pub dest: Dest,
    pub error: SendError,
}

/// The sending task and both ends of its conversation with the loop.
pub(super) struct Sender {
    calls: Option<UnboundedSender<Outgoing>>,
    /// Calls that could not be delivered, in the order they were sent.
    pub undelivered: UnboundedReceiver<Undelivered>,
    task: JoinHandle<()>,
    /// The call now going out (`None`: none is).
    going_out: Arc<Mutex<Option<GoingOut>>>,
    /// When each group last had a call delivered (a call tells its nodes the run is alive).
    called: Arc<Mutex<HashMap<String, Instant>>>,
}

/// The call the task is handing to the bus.
struct GoingOut {
    /// Since when it has waited for the bus.
    since: Instant,
    /// Its group, if it is to a group.
    group: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values: a panic elsewhere cannot leave them half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a destination reads in the run record: every node named.
pub(super) fn describe(dest: &Dest) -> String {
    match dest {
        Dest::Group(g) => format!("group {g}"),
        Dest::Nodes(n) => format!("nodes {}", n.join(",")),
    }
}

/// How a destination reads on the console: at most ten nodes named (a `joinGroup` to
/// 3,000 nodes that reached none once printed a 17 KB line).
fn describe_briefly(dest: &Dest) -> String {
    match dest {
        Dest::Group(g) => format!("group {g}"),
        Dest::Nodes(n) => format!("nodes {}", crate::console::some_names(n, 10)),
    }
}

impl Sender {
    /// Starts the task on `port`.
    pub(super) fn start(port: Arc<dyn RunPort>) -> Sender {
        let (calls, mut rx) = unbounded_channel::<Outgoing>();
        let (failed, undelivered) = unbounded_channel();
        let going_out = Arc::new(Mutex::new(None));
        let now_out = going_out.clone();
        let called = Arc::new(Mutex::new(HashMap::new()));
        let delivered = called.clone();
        let task = tokio::spawn(async move {
            let set = |v| *lock(&now_out) = v;
            while let Some(out) = rx.recv().await {
                let what = format!("{} to {}", out.call.method, describe_briefly(&out.dest));
                set(Some(GoingOut {
                    since: Instant::now(),
                    group: match &out.dest {
                        Dest::Group(g) => Some(g.clone()),
                        Dest::Nodes(_) => None,
                    },
                }));
                let result = match &out.dest {
                    Dest::Group(g) => port.publish_group(g, out.call).await,
                    Dest::Nodes(n) => port.publish_nodes(n, out.call).await,
                };
                set(None);
                if let (Ok(_), Dest::Group(g)) = (&result, &out.dest) {
                    lock(&delivered).insert(g.clone(), Instant::now());
                }
                if let Err(error) = result {
                    let _ = failed.send(Undelivered {
                        stream: out.stream,
                        what,
                        dest: out.dest,
                        error,
                    });
                }
            }
        });
        Sender {
            calls: Some(calls),
            undelivered,
            task,
            going_out,
            called,
        }
    }

    /// Whether `group` had a call delivered within the last `period`, or has had one going
    /// out for less than `period`: a `runAlive` sent meanwhile would wait behind that call
    /// in the queues of the members that have not taken it yet (at 10,000 nodes, one every
    /// 2 s while the broker took a minute over a call was more work than the round trip's
    /// own). A call going out for longer no longer counts: its first members took it long
    /// ago and have heard nothing since (at 10,000 nodes a `loadAgent` went out for 37 s and
    /// three nodes' 30 s dead man fired: they left the run and its next wait timed out).
    pub(super) fn called_within(&self, group: &str, period: Duration) -> bool {
        lock(&self.going_out)
            .as_ref()
            .is_some_and(|c| c.group.as_deref() == Some(group) && c.since.elapsed() < period)
            || lock(&self.called)
                .get(group)
                .is_some_and(|t| t.elapsed() < period)
    }

    /// Whether a call has waited longer than `limit` for the bus to take it: the broker is
    /// overloaded or away, and what the nodes send waits in it too.
    pub(super) fn stalled(&self, limit: Duration) -> bool {
        lock(&self.going_out)
            .as_ref()
            .is_some_and(|c| c.since.elapsed() > limit)
    }

    /// Queues a call.
    pub(super) fn send(&self, out: Outgoing) {
        if let Some(calls) = &self.calls {
            // The task ends only when `finish` closes this side or the runtime stops.
            let _ = calls.send(out);
        }
    }

    /// Waits until every queued call has gone out; what could not be delivered.
    pub(super) async fn finish(&mut self) -> Vec<Undelivered> {
        self.calls = None;
        let _ = (&mut self.task).await;
        let mut left = Vec::new();
        while let Ok(u) = self.undelivered.try_recv() {
            left.push(u);
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magi_bus::Delivered;
    use tokio::sync::Notify;

    /// A port whose group publishes wait until `release` is notified.
    struct Held {
        release: Arc<Notify>,
    }

    #[async_trait::async_trait]
    impl RunPort for Held {
        async fn publish_group(&self, _: &str, _: Call) -> Result<Delivered, SendError> {
            self.release.notified().await;
            Ok(Delivered { receivers: None })
        }
        async fn publish_nodes(&self, _: &[String], _: Call) -> Result<Delivered, SendError> {
            Ok(Delivered { receivers: None })
        }
        async fn close(&self) -> Result<(), SendError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_going_out_counts_as_told_for_one_period_and_its_delivery_for_the_next() {
        let release = Arc::new(Notify::new());
        let sender = Sender::start(Arc::new(Held {
            release: release.clone(),
        }));
        let period = Duration::from_secs(2);
        assert!(!sender.called_within("g", period));
        sender.send(Outgoing {
            stream: "s".into(),
            dest: Dest::Group("g".into()),
            call: serde_json::from_value(serde_json::json!({
                "run": "r", "seq": 1, "dock": "a", "method": "m"
            }))
            .expect("a call"),
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(sender.called_within("g", period), "a second into its call");
        assert!(!sender.called_within("h", period), "another group");
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(
            !sender.called_within("g", period),
            "a minute into its call, its first members have heard nothing for a minute"
        );
        release.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(sender.called_within("g", period), "delivered a second ago");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!sender.called_within("g", period), "delivered 3 s ago");
    }

    /// A port that no call reaches.
    struct Nowhere;

    #[async_trait::async_trait]
    impl RunPort for Nowhere {
        async fn publish_group(&self, g: &str, _: Call) -> Result<Delivered, SendError> {
            Err(SendError::NoRoute(format!("group {g}")))
        }
        async fn publish_nodes(&self, _: &[String], _: Call) -> Result<Delivered, SendError> {
            Err(SendError::NoRoute("nodes".into()))
        }
        async fn close(&self) -> Result<(), SendError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_call_to_thousands_of_nodes_that_reached_none_names_ten_of_them() {
        let mut sender = Sender::start(Arc::new(Nowhere));
        let nodes: Vec<String> = (0..3000).map(|i| format!("n{i:04}")).collect();
        sender.send(Outgoing {
            stream: "s".into(),
            dest: Dest::Nodes(nodes),
            call: serde_json::from_value(serde_json::json!({
                "run": "r", "seq": 1, "dock": "daemon", "method": "joinGroup"
            }))
            .expect("a call"),
        });
        let failed = sender.undelivered.recv().await.expect("undelivered");
        assert!(
            failed.what.ends_with("n0009 and 2990 more"),
            "{}",
            failed.what
        );
        assert!(failed.what.len() < 200, "{} bytes", failed.what.len());
    }
}
