//! # magi-engine: a procedure run as a pure state machine
//!
//! The engine does no I/O and reads no clock. The driver (the `magi run` command) feeds it
//! time (milliseconds since the run started) and the triggers it receives, and carries
//! out what it returns: calls to send, lines to show, and finally the run's outcome.
//! Every rule of the original's orchestrator (magi-spec §2), with the decisions of
//! DESIGN §5, lives here and is tested on virtual time.
//!
//! - [`steps`]: the setup (`initialization`), user and teardown (`exit`) streams as steps.
//! - [`cache`]: the per-node trigger cache and when a wait is satisfied.
//! - [`display`]: the console lines' fields.
//! - `report`: the live view of the waits, and failures put into words.
//! - `streams`: moving one stream a step (events, waits, jumps).
//!
//! A run goes through phases: setup, then the user's streams (all of `streamstarts`
//! concurrently), then teardown (unless the user keeps agents), then finished.

pub mod cache;
pub mod display;
mod report;
pub mod steps;
mod streams;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cache::TriggerCache;
use display::{Line, Tag};
use magi_aal::{EventTrigger, Procedure, Trigger};
use magi_proto::{Call, Object};
use serde::Serialize;
use serde_json::Value;
use steps::{Dest, Step, SETUP_STREAM, TEARDOWN_STREAM};

/// How a run behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Timeout of each group build and teardown wait, in ms (the original's `-g`, 20 s).
    pub group_timeout_ms: u64,
    /// Stop and tear down on `retVal: false`, a RuntimeException or a lost node.
    pub abort_on_failure: bool,
    /// Unload agents and leave groups at the end of the run.
    pub teardown: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            group_timeout_ms: 20_000,
            abort_on_failure: true,
            teardown: true,
        }
    }
}

/// Why a run failed; the command line turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// An agent returned false, raised, crashed or failed to load.
    Agent,
    /// Setup did not complete: nodes did not answer in time.
    Setup,
    /// A node agent was lost during the run.
    Node,
    /// A call reached no node.
    Delivery,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// Every stream finished or one reached `exit`.
    Success,
    /// The run stopped on a failure.
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// What happened, for a person.
        message: String,
    },
    /// The user interrupted the run.
    Interrupted,
}

/// What the driver must do.
// `Send` is the large one and by far the most frequent: boxing it would add an allocation
// per call to spare a few bytes on the rare lines.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Publish a call.
    Send {
        /// The stream that sent it.
        stream: String,
        /// Where to.
        dest: Dest,
        /// The call (its `seq` is unique in the run).
        call: Call,
    },
    /// Show a line.
    Line(Line),
    /// The run is over.
    Finished(Outcome),
}

/// A wait in progress, for the live view and the first Ctrl-C.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitView {
    /// The waiting stream.
    pub stream: String,
    /// One entry per trigger of the wait, in list order.
    pub triggers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    User,
    Teardown,
    Finished,
}

#[derive(Debug, Clone)]
struct Running {
    name: String,
    steps: Arc<Vec<Step>>,
    idx: usize,
    wait_since: Option<u64>,
}

enum Progress {
    Blocked,
    Advanced,
    Removed,
}

/// The engine of one run.
pub struct Engine {
    procedure: Arc<Procedure>,
    options: Options,
    run: String,
    user_streams: HashMap<String, Arc<Vec<Step>>>,
    phase: Phase,
    running: Vec<Running>,
    cache: TriggerCache,
    seq: u64,
    outcome: Option<Outcome>,
    /// Set when the user phase must end (exit target, failure, interrupt).
    stop_requested: bool,
    /// Nodes teardown no longer waits for: lost, or in a group that a teardown call
    /// reached no member of (a node whose dead man fired has left its groups).
    lost: BTreeSet<String>,
    /// Trigger name → (agent, method) of the last event sent with it, to name a failure.
    emitters: HashMap<String, (String, String)>,
    /// Trigger name → `seq` of the latest call sent with it: the only call whose replies count.
    answering: HashMap<String, u64>,
    finished_reported: bool,
    /// Set when a pump stopped at its step budget (a zero-timeout loop): more is due now.
    more_work: bool,
    /// The latest time the engine was given; deadlines at or before it have been seen.
    now: u64,
}

/// Steps one call may take before yielding, so that a stream looping on `timeout: 0`
/// cannot hang the driver; the rest is done at the next call.
const STEP_BUDGET: usize = 10_000;

impl Engine {
    /// An engine for a validated procedure; `run` is stamped on every call.
    pub fn new(procedure: Arc<Procedure>, options: Options, run: &str) -> Self {
        let user_streams = procedure
            .streams
            .iter()
            .map(|s| (s.name.clone(), Arc::new(steps::user_steps(&procedure, s))))
            .collect();
        Engine {
            procedure,
            options,
            run: run.to_string(),
            user_streams,
            phase: Phase::Setup,
            running: Vec::new(),
            cache: TriggerCache::default(),
            seq: 0,
            outcome: None,
            stop_requested: false,
            lost: BTreeSet::new(),
            emitters: HashMap::new(),
            answering: HashMap::new(),
            finished_reported: false,
            more_work: false,
            now: 0,
        }
    }

    /// Starts the run: setup begins.
    pub fn start(&mut self, now: u64) -> Vec<Output> {
        let setup = steps::setup_steps(&self.procedure, self.options.group_timeout_ms);
        self.running = vec![Running {
            name: SETUP_STREAM.into(),
            steps: Arc::new(setup),
            idx: 0,
            wait_since: None,
        }];
        self.phase = Phase::Setup;
        let mut out = Vec::new();
        self.pump(now, &mut out);
        out
    }

    /// Time passed: timeouts may have elapsed.
    pub fn on_time(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        self.pump(now, &mut out);
        out
    }

    /// A trigger arrived that answers no call: an agent's own, a node agent's setup and
    /// teardown reports, an external tool's.
    pub fn on_trigger(
        &mut self,
        now: u64,
        event: &str,
        nodes: &[String],
        args: &Object,
    ) -> Vec<Output> {
        self.receive(now, event, nodes, args, true)
    }

    /// A method's reply to call `call` (its `seq`) arrived. It counts for waits only while
    /// `call` is the latest call sent with this trigger: a late reply to an earlier
    /// iteration of a loop must not satisfy the next iteration's wait. A failure it reports
    /// still stops the run.
    pub fn on_reply(
        &mut self,
        now: u64,
        call: u64,
        event: &str,
        nodes: &[String],
        args: &Object,
    ) -> Vec<Output> {
        let current = self
            .answering
            .get(event)
            .is_none_or(|&latest| latest == call);
        self.receive(now, event, nodes, args, current)
    }

    fn receive(
        &mut self,
        now: u64,
        event: &str,
        nodes: &[String],
        args: &Object,
        counts: bool,
    ) -> Vec<Output> {
        if event == magi_proto::NODE_LEFT_RUN && !args.contains_key("agent") {
            return self.nodes_left(now, nodes, args);
        }
        let mut out = Vec::new();
        let args = implicit_ret_val(args);
        if matches!(self.phase, Phase::Setup | Phase::User) && self.options.abort_on_failure {
            if let Some(message) = self.failure_of(event, nodes, &args) {
                self.fail(now, FailureKind::Agent, message, &mut out);
            }
        }
        if counts {
            let replace = self.phase == Phase::User && !is_lifecycle(event);
            self.cache.insert(event, nodes, &args, replace);
        }
        self.pump(now, &mut out);
        out
    }

    /// Nodes that left the run by themselves, their dead-man switch having fired
    /// (`NodeLeftRun`): lost to the run, as a node that stopped answering is.
    fn nodes_left(&mut self, now: u64, nodes: &[String], args: &Object) -> Vec<Output> {
        let silent = args
            .get("silent")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && (0.0..1e9).contains(s));
        let why = match silent {
            Some(s) => format!("its dead-man switch heard nothing from this run for {s:.1} s; it stopped the run's agents and left its groups"),
            None => "its dead-man switch fired; it stopped the run's agents and left its groups".into(),
        };
        let mut out = Vec::new();
        for node in nodes {
            out.extend(self.on_node_lost(now, node, &why));
        }
        out
    }

    /// A call to `dest` could not be delivered; `why` says how, as the message's end
    /// ("reached no node", "was not delivered: the bus is disconnected ..."). In teardown,
    /// no node it was meant for will answer it: they are not waited for any more.
    pub fn on_undeliverable(
        &mut self,
        now: u64,
        stream: &str,
        what: &str,
        why: &str,
        dest: &Dest,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let message = format!("{what} (sent by stream {stream}) {why}");
        if matches!(self.phase, Phase::Setup | Phase::User) && self.options.abort_on_failure {
            self.fail(now, FailureKind::Delivery, message, &mut out);
        } else {
            out.push(self.line(now, "unknown", Tag::Warn, message));
        }
        if self.phase == Phase::Teardown {
            let nodes = match dest {
                Dest::Group(g) => self.procedure.nodes_of(g),
                Dest::Nodes(n) => n.clone(),
            };
            self.lost.extend(nodes);
        }
        self.pump(now, &mut out);
        out
    }

    /// A node agent stopped answering (or announced it is going away).
    pub fn on_node_lost(&mut self, now: u64, node: &str, why: &str) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.procedure.all_nodes().iter().any(|n| n == node)
            || !self.lost.insert(node.to_string())
        {
            return out;
        }
        let message = format!("node {node} lost: {why}");
        if matches!(self.phase, Phase::Setup | Phase::User) && self.options.abort_on_failure {
            self.fail(now, FailureKind::Node, message, &mut out);
        } else {
            out.push(self.line(now, "unknown", Tag::Warn, message));
        }
        self.pump(now, &mut out);
        out
    }

    /// The user asked to stop: tear down (or, if already tearing down, stop at once).
    pub fn interrupt(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        match self.phase {
            Phase::Setup | Phase::User => {
                out.push(self.line(now, "unknown", Tag::Exit, "Cleaning up and exiting".into()));
                self.outcome.get_or_insert(Outcome::Interrupted);
                self.stop_requested = true;
                self.pump(now, &mut out);
            }
            Phase::Teardown => {
                self.outcome.get_or_insert(Outcome::Interrupted);
                self.running.clear();
                self.phase = Phase::Finished;
                self.report_finished(&mut out);
            }
            Phase::Finished => {}
        }
        out
    }

    /// The earliest engine time at which a timeout may complete a wait.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.more_work {
            return Some(0);
        }
        let mut best: Option<u64> = None;
        for r in &self.running {
            if let (Some(since), Some(Step::Wait(triggers))) = (r.wait_since, r.steps.get(r.idx)) {
                for t in triggers {
                    collect_deadlines(t, since, &mut |d| {
                        if d > self.now {
                            best = Some(best.map_or(d, |b: u64| b.min(d)));
                        }
                    });
                }
            }
        }
        best
    }

    /// Whether the run is over.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The outcome, once finished.
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.is_finished() {
            self.outcome.as_ref()
        } else {
            None
        }
    }

    // ----- internals -------------------------------------------------------------------

    fn line(&self, now: u64, stream: &str, tag: Tag, text: String) -> Output {
        Output::Line(Line {
            at_ms: now,
            stream: stream.to_string(),
            tag,
            text,
        })
    }

    fn fail(&mut self, now: u64, kind: FailureKind, message: String, out: &mut Vec<Output>) {
        out.push(self.line(now, "unknown", Tag::Exit, message.clone()));
        if self.outcome.is_none() {
            self.outcome = Some(Outcome::Failed { kind, message });
        }
        self.stop_requested = true;
    }

    /// Runs streams until nothing more can happen at `now`.
    fn pump(&mut self, now: u64, out: &mut Vec<Output>) {
        self.more_work = false;
        self.now = self.now.max(now);
        let mut budget = STEP_BUDGET;
        loop {
            if self.phase == Phase::Finished {
                self.report_finished(out);
                return;
            }
            if self.stop_requested && self.phase != Phase::Teardown {
                self.stop_requested = false;
                self.begin_teardown();
                continue;
            }
            let mut progressed = false;
            let mut i = 0;
            while i < self.running.len() && !(self.stop_requested && self.phase != Phase::Teardown)
            {
                if budget == 0 {
                    self.more_work = true;
                    return;
                }
                budget -= 1;
                match self.step(i, now, out) {
                    Progress::Blocked => i += 1,
                    Progress::Advanced => progressed = true,
                    Progress::Removed => progressed = true,
                }
            }
            if self.stop_requested && self.phase != Phase::Teardown {
                continue;
            }
            if self.running.is_empty() {
                self.next_phase();
                continue;
            }
            if !progressed {
                return;
            }
        }
    }

    fn next_phase(&mut self) {
        match self.phase {
            Phase::Setup => {
                self.phase = Phase::User;
                for name in self.procedure.streamstarts.clone() {
                    self.start_stream(&name);
                }
            }
            Phase::User => {
                self.outcome.get_or_insert(Outcome::Success);
                self.begin_teardown();
            }
            Phase::Teardown | Phase::Finished => {
                self.phase = Phase::Finished;
            }
        }
    }

    fn begin_teardown(&mut self) {
        self.running.clear();
        if self.options.teardown {
            let (cache, lost) = (&self.cache, &self.lost);
            let reached = |key: &str, name: &str, nodes: &[String]| {
                let setup_event = match key {
                    "group" => magi_proto::GROUP_BUILD_DONE,
                    _ => magi_proto::AGENT_LOAD_DONE,
                };
                let done = cache.matching_nodes(&EventTrigger {
                    event: setup_event.to_string(),
                    nodes: nodes.to_vec(),
                    count: 1,
                    args: Object::from_iter([(key.to_string(), Value::from(name))]),
                    target: None,
                    span: Default::default(),
                });
                nodes
                    .iter()
                    .filter(|n| done.contains(*n) && !lost.contains(*n))
                    .cloned()
                    .collect()
            };
            let steps =
                steps::teardown_steps(&self.procedure, self.options.group_timeout_ms, &reached);
            self.running.push(Running {
                name: TEARDOWN_STREAM.into(),
                steps: Arc::new(steps),
                idx: 0,
                wait_since: None,
            });
            self.phase = Phase::Teardown;
        } else {
            self.phase = Phase::Finished;
        }
    }

    fn report_finished(&mut self, out: &mut Vec<Output>) {
        if !self.finished_reported {
            self.finished_reported = true;
            out.push(Output::Finished(
                self.outcome.clone().unwrap_or(Outcome::Success),
            ));
        }
    }
}

fn missing_what(triggers: &[Trigger]) -> String {
    triggers
        .iter()
        .find_map(|t| match t {
            Trigger::Event(e) => Some(match e.args.iter().next() {
                Some((_, v)) => format!("{} of {}", e.event, value_text(v)),
                None => e.event.clone(),
            }),
            _ => None,
        })
        .unwrap_or_else(|| "reports".into())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Setup and teardown triggers are never invalidated (a node reports `GroupBuildDone`
/// once per group, and each report must stay).
fn is_lifecycle(event: &str) -> bool {
    matches!(
        event,
        magi_proto::GROUP_BUILD_DONE
            | magi_proto::GROUP_TEARDOWN_DONE
            | magi_proto::AGENT_LOAD_DONE
            | magi_proto::AGENT_UNLOAD_DONE
    )
}

/// The original's rule for an incoming trigger (magi-spec §2.5): when no argument
/// remains, the arguments are `{retVal: true}`. The `agent` key our node agents add to an
/// agent's own trigger does not count, so `trigger(event)` with no arguments satisfies a
/// plain `{event: X}` wait, as it did in the original.
fn implicit_ret_val(args: &Object) -> Cow<'_, Object> {
    if args.keys().any(|k| k != "agent") {
        return Cow::Borrowed(args);
    }
    let mut with = args.clone();
    with.insert("retVal".into(), Value::Bool(true));
    Cow::Owned(with)
}

/// Whether a wait's arguments are just the implicit `{retVal: true}`.
fn is_implicit(args: &Object) -> bool {
    args.len() == 1 && args.get("retVal") == Some(&Value::Bool(true))
}

fn collect_deadlines(t: &Trigger, since: u64, f: &mut dyn FnMut(u64)) {
    match t {
        Trigger::Timeout(tt) => f(since.saturating_add(tt.timeout_ms)),
        Trigger::All(c) | Trigger::Any(c) => c
            .triggers
            .iter()
            .for_each(|x| collect_deadlines(x, since, f)),
        Trigger::Event(_) => {}
    }
}

#[cfg(test)]
mod tests;
