//! A dry run on virtual time: the real engine ([`magi_engine::Engine`]) driven by
//! simulated nodes that answer every call after a set latency, with set failure rates.
//! No bus, no processes, no clock: a procedure that runs for minutes is simulated in
//! milliseconds, which predicts its duration (the case studies are dominated by their
//! timeouts), shows its timeline, and finds the waits that never complete and the streams
//! that never run (see [`analysis`]).
//!
//! A simulated node answers as `magi-node` does: `joinGroup` → `GroupBuildDone {group}`,
//! `loadAgent` → `AgentLoadDone {agent}` (and the `unload`/`leave` counterparts); an agent
//! method called with `trigger: T` → `T` with what the method returns (`retVal: true`
//! unless a `--reply` says otherwise) and `agent`; a failure is a `RuntimeException`.

pub mod analysis;
pub mod calibrate;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use magi_aal::Procedure;
use magi_engine::display::Line;
use magi_engine::steps::Dest;
use magi_engine::{Engine, Outcome, Output};
use magi_proto::{method, Call, Object, DAEMON_DOCK};
use serde_json::{json, Value};

pub use analysis::{Analysis, OpenWait};

/// Which calls a latency or a failure rate applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// A group name (the call's destination), or any.
    pub group: Option<String>,
    /// A method name, or any.
    pub method: Option<String>,
}

impl Selector {
    /// Parses `GROUP.METHOD`, or a single name that is a group of `procedure` or else a
    /// method.
    pub fn parse(text: &str, procedure: &Procedure) -> Selector {
        if let Some((g, m)) = text.split_once('.') {
            return Selector {
                group: Some(g.to_string()),
                method: Some(m.to_string()),
            };
        }
        if procedure.group(text).is_some() || text == magi_proto::ALL_GROUP {
            Selector {
                group: Some(text.to_string()),
                method: None,
            }
        } else {
            Selector {
                group: None,
                method: Some(text.to_string()),
            }
        }
    }

    /// How specific it is (group and method 3, method 2, group 1); `None` when it does
    /// not apply.
    fn score(&self, group: &str, method: &str) -> Option<u8> {
        let g = self.group.as_deref().is_none_or(|x| x == group);
        let m = self.method.as_deref().is_none_or(|x| x == method);
        (g && m).then_some(u8::from(self.method.is_some()) * 2 + u8::from(self.group.is_some()))
    }
}

/// How the simulated nodes behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The engine's options (group timeout, abort on failure, teardown).
    pub engine: magi_engine::Options,
    /// Reply latency in ms when no selector applies.
    pub latency_ms: u64,
    /// Reply latencies in ms by group and/or method; the most specific applies.
    pub latencies: Vec<(Selector, u64)>,
    /// Failure rates (0 to 1) by group and/or method; the most specific applies.
    pub failures: Vec<(Selector, f64)>,
    /// What a method returns (merged into its trigger as a dict, or as `retVal`).
    pub replies: HashMap<String, Value>,
    /// Seed of the failure draws (the same seed gives the same run).
    pub seed: u64,
    /// Virtual time after which the simulation gives up (a run that loops forever).
    pub limit_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            engine: magi_engine::Options::default(),
            latency_ms: 5,
            latencies: Vec::new(),
            failures: Vec::new(),
            replies: HashMap::new(),
            seed: 1,
            limit_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

impl SimConfig {
    fn most_specific<T: Copy>(list: &[(Selector, T)], group: &str, method: &str) -> Option<T> {
        list.iter()
            .filter_map(|(s, v)| s.score(group, method).map(|score| (score, *v)))
            .max_by_key(|(score, _)| *score)
            .map(|(_, v)| v)
    }
}

/// How the simulation ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "end")]
pub enum End {
    /// The engine finished the run.
    Finished {
        /// How it ended.
        outcome: Outcome,
    },
    /// Nothing more can happen (no reply due, no timeout pending) and the run is not over:
    /// a real run would wait forever.
    Stuck,
    /// Virtual time passed the limit (a stream loops forever with time passing).
    TooLong,
    /// The engine kept working without time passing (a loop on `timeout: 0`).
    Spinning,
}

/// A simulated run.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The console lines, with virtual times (`at_ms`).
    pub lines: Vec<Line>,
    /// How it ended.
    pub end: End,
    /// Virtual time at the end, in ms: the predicted duration when it finished.
    pub end_ms: u64,
    /// How many calls were sent.
    pub calls: usize,
    /// Triggers the nodes sent back, by name (for the analysis).
    pub sent_triggers: HashMap<String, Vec<Object>>,
    /// Waits that never completed, waits never reached, streams never run.
    pub analysis: Analysis,
}

/// A reply due at a virtual time.
struct Reply {
    /// The call a method's reply answers (its `seq`); `None` for setup and teardown reports.
    call: Option<u64>,
    event: String,
    nodes: Vec<String>,
    args: Object,
}

/// splitmix64: small, seedable, good enough for failure draws and shuffles.
pub(crate) struct Draws(u64);

impl Draws {
    /// Draws from a seed.
    pub(crate) fn new(seed: u64) -> Draws {
        Draws(seed)
    }

    /// A number in [0, 1).
    pub(crate) fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Calls for more engine work at one instant (each up to the engine's step budget) after
/// which a run counts as spinning; replies arriving at one instant do not count.
const SPIN_LIMIT: usize = 50;

struct Sim<'a> {
    procedure: &'a Procedure,
    config: &'a SimConfig,
    engine: Engine,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    replies: HashMap<u64, Reply>,
    next_id: u64,
    draws: Draws,
    lines: Vec<Line>,
    tracker: analysis::Tracker,
    calls: usize,
    sent_triggers: HashMap<String, Vec<Object>>,
    finished: Option<Outcome>,
}

/// Runs the procedure on virtual time.
pub fn simulate(procedure: Arc<Procedure>, config: &SimConfig) -> Simulation {
    let mut sim = Sim {
        procedure: &procedure,
        config,
        engine: Engine::new(procedure.clone(), config.engine.clone(), "simulation"),
        queue: BinaryHeap::new(),
        replies: HashMap::new(),
        next_id: 0,
        draws: Draws(config.seed),
        lines: Vec::new(),
        tracker: analysis::Tracker::default(),
        calls: 0,
        sent_triggers: HashMap::new(),
        finished: None,
    };
    let outs = sim.engine.start(0);
    sim.carry_out(0, outs);
    let (end, end_ms) = sim.run_loop();
    let analysis = sim.tracker.analyse(&procedure, &sim.sent_triggers);
    Simulation {
        lines: sim.lines,
        end,
        end_ms,
        calls: sim.calls,
        sent_triggers: sim.sent_triggers,
        analysis,
    }
}

impl Sim<'_> {
    fn run_loop(&mut self) -> (End, u64) {
        let mut now = 0u64;
        let mut spins = 0usize;
        loop {
            if let Some(outcome) = self.finished.clone() {
                return (End::Finished { outcome }, now);
            }
            let reply_at = self.queue.peek().map(|Reverse((t, _))| *t);
            let deadline = self.engine.next_deadline().map(|d| d.max(now));
            let next = match (reply_at, deadline) {
                (Some(r), Some(d)) => r.min(d),
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => return (End::Stuck, now),
            };
            if next > self.config.limit_ms {
                return (End::TooLong, now);
            }
            let instant = next == now;
            now = next;
            if reply_at == Some(now) {
                while let Some(Reverse((t, id))) = self.queue.peek().copied() {
                    if t != now {
                        break;
                    }
                    self.queue.pop();
                    if let Some(r) = self.replies.remove(&id) {
                        let outs = match r.call {
                            Some(seq) => {
                                self.engine.on_reply(now, seq, &r.event, &r.nodes, &r.args)
                            }
                            None => self.engine.on_trigger(now, &r.event, &r.nodes, &r.args),
                        };
                        self.carry_out(now, outs);
                    }
                }
            } else {
                spins = if instant { spins + 1 } else { 0 };
                if spins > SPIN_LIMIT {
                    return (End::Spinning, now);
                }
                let outs = self.engine.on_time(now);
                self.carry_out(now, outs);
            }
        }
    }

    fn carry_out(&mut self, now: u64, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Line(line) => {
                    self.tracker.on_line(self.procedure, &line);
                    self.lines.push(line);
                }
                Output::Finished(outcome) => {
                    self.tracker.user_phase_over();
                    self.finished = Some(outcome);
                }
                Output::Send { dest, call, .. } => {
                    self.calls += 1;
                    self.answer(now, &dest, &call);
                }
            }
        }
    }

    /// Schedules every destination node's answer to a call.
    fn answer(&mut self, now: u64, dest: &Dest, call: &Call) {
        let arg = |k: &str| call.args.get(k).and_then(Value::as_str).unwrap_or_default();
        let (group, nodes) = match dest {
            Dest::Group(g) => (g.clone(), self.procedure.nodes_of(g)),
            // Daemon calls name their group; an `__ALL__` agent's calls go to every node.
            Dest::Nodes(n) if !arg("group").is_empty() => (arg("group").to_string(), n.clone()),
            Dest::Nodes(n) => (magi_proto::ALL_GROUP.to_string(), n.clone()),
        };
        let nodes: Vec<String> = match &call.nodes {
            Some(only) => nodes.into_iter().filter(|n| only.contains(n)).collect(),
            None => nodes,
        };
        let latency = SimConfig::most_specific(&self.config.latencies, &group, &call.method)
            .unwrap_or(self.config.latency_ms);
        let rate =
            SimConfig::most_specific(&self.config.failures, &group, &call.method).unwrap_or(0.0);
        if let Some(t) = &call.trigger {
            self.sent_triggers.entry(t.clone()).or_default();
        }
        let daemon = call.dock == DAEMON_DOCK;
        let done = match call.method.as_str() {
            method::JOIN_GROUP if daemon => {
                Some((magi_proto::GROUP_BUILD_DONE, "group", arg("group")))
            }
            method::LEAVE_GROUP if daemon => {
                Some((magi_proto::GROUP_TEARDOWN_DONE, "group", arg("group")))
            }
            method::LOAD_AGENT if daemon => {
                Some((magi_proto::AGENT_LOAD_DONE, "agent", arg("name")))
            }
            method::UNLOAD_AGENT if daemon => {
                Some((magi_proto::AGENT_UNLOAD_DONE, "agent", arg("name")))
            }
            _ => None,
        };
        for node in nodes {
            // Teardown never fails in the simulation: a failure there changes nothing.
            let fails = rate > 0.0
                && call.method != method::UNLOAD_AGENT
                && call.method != method::LEAVE_GROUP
                && self.draws.next_unit() < rate;
            let reply = if fails {
                Some((
                    magi_proto::RUNTIME_EXCEPTION.to_string(),
                    obj(json!({"agent": call.dock, "func_name": call.method,
                               "error": "simulated failure"})),
                ))
            } else if let Some((event, key, name)) = done {
                Some((event.to_string(), obj(json!({ key: name }))))
            } else if let Some(t) = &call.trigger {
                let value = self
                    .config
                    .replies
                    .get(&call.method)
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut args = magi_proto::agent::return_to_trigger_args(value);
                args.insert("agent".into(), json!(call.dock));
                self.sent_triggers
                    .entry(t.clone())
                    .or_default()
                    .push(args.clone());
                Some((t.clone(), args))
            } else {
                None
            };
            if let Some((event, args)) = reply {
                self.next_id += 1;
                let at = now.saturating_add(latency);
                self.queue.push(Reverse((at, self.next_id)));
                self.replies.insert(
                    self.next_id,
                    Reply {
                        // As `magi-node`: a method's replies name the call they answer.
                        call: (!daemon).then_some(call.seq),
                        event,
                        nodes: vec![node],
                        args,
                    },
                );
            }
        }
    }
}

fn obj(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        _ => Object::new(),
    }
}

#[cfg(test)]
mod tests;
