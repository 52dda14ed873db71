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
//!
//! A run goes through phases: setup, then the user's streams (all of `streamstarts`
//! concurrently), then teardown (unless the user keeps agents), then finished.

pub mod cache;
pub mod display;
pub mod steps;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cache::TriggerCache;
use display::{args_repr, duration_repr, object_repr, Line, Tag};
use magi_aal::{EventTrigger, Procedure, Target, Trigger};
use magi_proto::{Call, Object};
use serde::Serialize;
use serde_json::Value;
use steps::{Dest, SendStep, Step, SETUP_STREAM, TEARDOWN_STREAM};

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

    /// A call could not be delivered (it reached no node).
    pub fn on_undeliverable(&mut self, now: u64, stream: &str, what: &str) -> Vec<Output> {
        let mut out = Vec::new();
        let message = format!("{what} (sent by stream {stream}) reached no node");
        if matches!(self.phase, Phase::Setup | Phase::User) && self.options.abort_on_failure {
            self.fail(now, FailureKind::Delivery, message, &mut out);
        } else {
            out.push(self.line(now, "unknown", Tag::Warn, message));
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

    /// What every stream is waiting for now, with the nodes still missing.
    pub fn waits(&self, now: u64) -> Vec<WaitView> {
        let mut views = Vec::new();
        for r in &self.running {
            let (Some(since), Some(Step::Wait(triggers))) = (r.wait_since, r.steps.get(r.idx))
            else {
                continue;
            };
            let triggers = triggers
                .iter()
                .map(|t| self.describe_wait(t, since, now))
                .collect();
            views.push(WaitView {
                stream: r.name.clone(),
                triggers,
            });
        }
        views
    }

    fn describe_wait(&self, t: &Trigger, since: u64, now: u64) -> String {
        match t {
            Trigger::Timeout(tt) => {
                let left = (since + tt.timeout_ms).saturating_sub(now);
                format!("timeout trigger will complete in {}", duration_repr(left))
            }
            Trigger::Event(et) => {
                let et = self.effective(et);
                let have = self.cache.matching_nodes(&et);
                if et.nodes.is_empty() {
                    format!(
                        "event trigger {} : {} waiting for {} more report(s) from any node",
                        et.event,
                        object_repr(&et.args),
                        et.count.saturating_sub(have.len())
                    )
                } else {
                    let missing: Vec<&String> =
                        et.nodes.iter().filter(|n| !have.contains(*n)).collect();
                    let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    format!(
                        "event trigger {} : {} waiting to be received from nodes [{}] ({} of {} needed so far)",
                        et.event,
                        object_repr(&et.args),
                        missing.join(", "),
                        have.len().min(et.count),
                        et.count
                    )
                }
            }
            Trigger::All(c) | Trigger::Any(c) => {
                let kind = if matches!(t, Trigger::All(_)) {
                    "AND"
                } else {
                    "OR"
                };
                let parts: Vec<String> = c
                    .triggers
                    .iter()
                    .map(|x| self.describe_wait(x, since, now))
                    .collect();
                format!("{kind}( {} )", parts.join(" ; "))
            }
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

    /// Whether an incoming trigger is a failure that stops the run, and how to say it.
    fn failure_of(&self, event: &str, nodes: &[String], args: &Object) -> Option<String> {
        let str_arg = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string()
        };
        if event == magi_proto::RUNTIME_EXCEPTION {
            let kind = args.get("type").and_then(Value::as_str);
            if matches!(kind, Some("MagiWarning") | Some("MagiError")) {
                return None;
            }
            return Some(format!(
                "Run-time exception in agent {} on node(s) {} in method {}, line {}, in file {}. Error: {}",
                str_arg("agent"),
                nodes.join(", "),
                str_arg("func_name"),
                args.get("line_num").map(value_text).unwrap_or_else(|| "unknown".into()),
                str_arg("filename"),
                str_arg("error"),
            ));
        }
        // Only a boolean false is a failure: the original's `0 == False` made a method
        // returning 0 end the experiment (magi-spec §10.5).
        if args.get("retVal") == Some(&Value::Bool(false)) {
            let agent = args
                .get("agent")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| self.emitters.get(event).map(|(a, _)| a.clone()));
            let agent = agent.unwrap_or_else(|| "unknown".into());
            let group = self
                .procedure
                .agent(&agent)
                .map(|a| a.group.clone())
                .unwrap_or_else(|| "unknown".into());
            let method = self
                .emitters
                .get(event)
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| "unknown".into());
            return Some(format!(
                "trigger {event} returned with False on agent {agent} in group {group} and on node(s): {} (method {method}).",
                nodes.join(", ")
            ));
        }
        None
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

    fn start_stream(&mut self, name: &str) {
        let Some(steps) = self.user_streams.get(name).cloned() else {
            return; // validation rejects unknown streams
        };
        let fresh = Running {
            name: name.to_string(),
            steps,
            idx: 0,
            wait_since: None,
        };
        match self.running.iter_mut().find(|r| r.name == name) {
            Some(existing) => *existing = fresh,
            None => self.running.push(fresh),
        }
    }

    /// Moves stream `i` one step if it can.
    fn step(&mut self, i: usize, now: u64, out: &mut Vec<Output>) -> Progress {
        let r = self.running[i].clone();
        let Some(step) = r.steps.get(r.idx) else {
            self.running.remove(i);
            out.push(self.line(now, &r.name, Tag::Done, "complete.".into()));
            return Progress::Removed;
        };
        match step {
            Step::Send(s) => {
                self.send(now, &r.name, s, out);
                self.running[i].idx += 1;
                Progress::Advanced
            }
            Step::Wait(triggers) => {
                let since = *self.running[i].wait_since.get_or_insert(now);
                let Some(winner) = triggers.iter().find(|t| self.complete(t, since, now)) else {
                    return Progress::Blocked;
                };
                let winner = winner.clone();
                self.on_wait_complete(i, now, &r.name, triggers, &winner, out)
            }
        }
    }

    fn on_wait_complete(
        &mut self,
        i: usize,
        now: u64,
        stream: &str,
        triggers: &[Trigger],
        winner: &Trigger,
        out: &mut Vec<Output>,
    ) -> Progress {
        let text = match winner {
            Trigger::Event(e) if is_implicit(&e.args) => format!("trigger completed: {}", e.event),
            Trigger::Event(e) => {
                format!("trigger completed: {}: {}", e.event, object_repr(&e.args))
            }
            Trigger::Timeout(t) => format!(
                "trigger completed: timeout: {}",
                duration_repr(t.timeout_ms)
            ),
            Trigger::All(_) => "trigger completed: AND".to_string(),
            Trigger::Any(_) => "trigger completed: OR".to_string(),
        };
        out.push(self.line(now, stream, Tag::Trig, text));
        // A setup wait that timed out ends the run; a teardown one only moves on.
        if let Trigger::Timeout(_) = winner {
            let missing = self.missing_nodes(triggers);
            match self.phase {
                Phase::Setup if !missing.is_empty() => {
                    // Nodes that never answered setup are not waited for in teardown.
                    self.lost.extend(missing.iter().cloned());
                    let message = format!(
                        "setup timed out: {} from nodes [{}] never arrived",
                        missing_what(triggers),
                        missing.join(", ")
                    );
                    self.fail(now, FailureKind::Setup, message, out);
                    return Progress::Removed;
                }
                Phase::Teardown if !missing.is_empty() => {
                    let message = format!(
                        "teardown: no {} from nodes [{}]; going on",
                        missing_what(triggers),
                        missing.join(", ")
                    );
                    out.push(self.line(now, stream, Tag::Warn, message));
                }
                _ => {}
            }
        }
        match winner.target() {
            None => {
                self.running[i].idx += 1;
                self.running[i].wait_since = None;
                Progress::Advanced
            }
            Some(Target::Exit) => {
                self.running.remove(i);
                out.push(self.line(
                    now,
                    stream,
                    Tag::Jump,
                    "Execution path of stream has jumped to target: exit.".into(),
                ));
                self.outcome.get_or_insert(Outcome::Success);
                self.stop_requested = true;
                Progress::Removed
            }
            Some(Target::Stream(name)) => {
                self.running.remove(i);
                out.push(self.line(
                    now,
                    stream,
                    Tag::Jump,
                    format!("Execution path of stream has jumped to target: {name}."),
                ));
                self.start_stream(name);
                Progress::Removed
            }
        }
    }

    fn send(&mut self, now: u64, stream: &str, s: &SendStep, out: &mut Vec<Output>) {
        self.seq += 1;
        if let Some(t) = &s.trigger {
            if self.phase == Phase::User {
                self.cache.clear(t);
            }
            let agent = self
                .procedure
                .agents
                .iter()
                .find(|a| a.dock == s.dock && a.group == s.dest_label)
                .map(|a| a.name.clone())
                .unwrap_or_else(|| s.dock.clone());
            self.emitters.insert(t.clone(), (agent, s.method.clone()));
            self.answering.insert(t.clone(), self.seq);
        }
        let fires = s
            .trigger
            .as_ref()
            .map(|t| format!("  (fires trigger: {t})"))
            .unwrap_or_default();
        let text = match &s.named {
            Some(name) => format!("{} {} --> {}{}", s.method, name, s.dest_label, fires),
            None => format!(
                "{}({}) --> {}{}",
                s.method,
                args_repr(&s.args),
                s.dest_label,
                fires
            ),
        };
        out.push(self.line(now, stream, Tag::Sent, text));
        let call = Call {
            run: self.run.clone(),
            seq: self.seq,
            dock: s.dock.clone(),
            method: s.method.clone(),
            args: s.args.clone(),
            trigger: s.trigger.clone(),
            nodes: s.only_nodes.clone(),
            sender: None,
        };
        out.push(Output::Send {
            stream: stream.to_string(),
            dest: s.dest.clone(),
            call,
        });
    }

    /// The wait as it applies now: in teardown, lost nodes are no longer waited for.
    fn effective<'t>(&self, et: &'t EventTrigger) -> Cow<'t, EventTrigger> {
        if self.phase != Phase::Teardown || self.lost.is_empty() || et.nodes.is_empty() {
            // Borrowed: this runs for every trigger received, and a wait may name thousands of nodes.
            return Cow::Borrowed(et);
        }
        let nodes: Vec<String> = et
            .nodes
            .iter()
            .filter(|n| !self.lost.contains(*n))
            .cloned()
            .collect();
        let count = et.count.min(nodes.len());
        Cow::Owned(EventTrigger {
            nodes,
            count,
            ..et.clone()
        })
    }

    fn complete(&self, t: &Trigger, since: u64, now: u64) -> bool {
        match t {
            Trigger::Event(et) => self.cache.satisfies(&self.effective(et)),
            Trigger::Timeout(tt) => now >= since.saturating_add(tt.timeout_ms),
            Trigger::All(c) => {
                !c.triggers.is_empty() && c.triggers.iter().all(|x| self.complete(x, since, now))
            }
            Trigger::Any(c) => c.triggers.iter().any(|x| self.complete(x, since, now)),
        }
    }

    /// The nodes the event triggers of a (setup or teardown) wait still miss.
    fn missing_nodes(&self, triggers: &[Trigger]) -> Vec<String> {
        let mut missing = Vec::new();
        for t in triggers {
            if let Trigger::Event(et) = t {
                let et = self.effective(et);
                let have = self.cache.matching_nodes(&et);
                missing.extend(et.nodes.iter().filter(|n| !have.contains(*n)).cloned());
            }
        }
        missing
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
