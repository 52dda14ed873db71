//! What a simulated run says about the procedure: the waits that never complete (and
//! why), the waits behind them that are never reached, and the streams that never run.
//!
//! The tracker follows each user stream's position from the engine's console lines (a
//! `sent` or `trig` line moves a stream one entry on; `jump` restarts the target; `DONE`
//! ends it), so every open wait is named by its place in the AAL text.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use magi_aal::{Entry, EventTrigger, Procedure, Span, Trigger};
use magi_engine::display::{Line, Tag};
use magi_engine::steps::{SETUP_STREAM, TEARDOWN_STREAM};
use magi_proto::Object;
use serde::Serialize;
use serde_json::Value;

const JUMPED: &str = "Execution path of stream has jumped to target: ";

/// Follows the user streams' positions through a run.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Running user streams → index of their current entry.
    pos: BTreeMap<String, usize>,
    /// Streams that ever started.
    started: BTreeSet<String>,
    /// Positions when the user phase ended.
    snapshot: Option<BTreeMap<String, usize>>,
}

impl Tracker {
    /// Follows one console line.
    pub(crate) fn on_line(&mut self, procedure: &Procedure, line: &Line) {
        if self.snapshot.is_some() {
            return;
        }
        let s = line.stream.as_str();
        if s == SETUP_STREAM {
            if line.tag == Tag::Done {
                for name in &procedure.streamstarts {
                    self.start(name);
                }
            }
            return;
        }
        if s == TEARDOWN_STREAM {
            self.user_phase_over();
            return;
        }
        if procedure.stream(s).is_none() {
            return; // `unknown`: lines about the run as a whole
        }
        match line.tag {
            Tag::Sent | Tag::Trig => *self.pos.entry(s.to_string()).or_default() += 1,
            Tag::Done => {
                self.pos.remove(s);
            }
            Tag::Jump => {
                self.pos.remove(s);
                let target = line
                    .text
                    .strip_prefix(JUMPED)
                    .map(|t| t.strip_suffix('.').unwrap_or(t));
                match target {
                    Some("exit") => self.user_phase_over(),
                    Some(t) => self.start(t),
                    None => {}
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, name: &str) {
        self.pos.insert(name.to_string(), 0);
        self.started.insert(name.to_string());
    }

    /// The user phase ended: the positions now are where each stream stopped.
    pub(crate) fn user_phase_over(&mut self) {
        if self.snapshot.is_none() {
            self.snapshot = Some(self.pos.clone());
        }
    }

    /// The analysis at the end of the simulation.
    pub(crate) fn analyse(
        &self,
        procedure: &Procedure,
        replies: &HashMap<String, Vec<Object>>,
    ) -> Analysis {
        let stopped = self.snapshot.as_ref().unwrap_or(&self.pos);
        let mut analysis = Analysis::default();
        for (name, &idx) in stopped {
            let Some(stream) = procedure.stream(name) else {
                continue;
            };
            let Some(Entry::Wait(wait)) = stream.entries.get(idx) else {
                continue;
            };
            if wait.triggers.iter().any(can_time_out) {
                continue; // cut short by the end of the run; it would have completed
            }
            // One reason per trigger name (a wait may list one name with several matches).
            let mut by_name: BTreeMap<&str, Vec<&EventTrigger>> = BTreeMap::new();
            for t in &wait.triggers {
                event_triggers(t, &mut |et| by_name.entry(&et.event).or_default().push(et));
            }
            let reasons = by_name
                .values()
                .map(|ets| why_open(procedure, ets, replies))
                .collect();
            analysis.open_waits.push(OpenWait {
                stream: name.clone(),
                at: place(procedure, wait.span),
                span: wait.span,
                reasons,
            });
            for later in &stream.entries[idx + 1..] {
                if let Entry::Wait(w) = later {
                    analysis
                        .unreached_waits
                        .push((name.clone(), place(procedure, w.span)));
                }
            }
        }
        for stream in &procedure.streams {
            if !self.started.contains(&stream.name) {
                analysis
                    .never_run
                    .push((stream.name.clone(), place(procedure, stream.span)));
            }
        }
        analysis
    }
}

/// A wait a stream was still blocked on when the run ended, and could not time out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenWait {
    /// The stream.
    pub stream: String,
    /// `file:line` of the wait.
    pub at: String,
    /// Where the wait is written.
    pub span: Span,
    /// Why each of its event triggers did not complete.
    pub reasons: Vec<String>,
}

/// What the simulation found wrong with the procedure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Waits that never complete.
    pub open_waits: Vec<OpenWait>,
    /// Waits behind an open wait in the same stream: (stream, `file:line`).
    pub unreached_waits: Vec<(String, String)>,
    /// Streams that never start: (stream, `file:line`).
    pub never_run: Vec<(String, String)>,
}

impl Analysis {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.open_waits.is_empty() && self.unreached_waits.is_empty() && self.never_run.is_empty()
    }

    /// One line per finding.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        for w in &self.open_waits {
            out.push(format!(
                "wait never completes: stream {} at {}: {}",
                w.stream,
                w.at,
                w.reasons.join("; ")
            ));
        }
        for (s, at) in &self.unreached_waits {
            out.push(format!("wait never reached: stream {s} at {at}"));
        }
        for (s, at) in &self.never_run {
            out.push(format!(
                "stream never runs: {s} at {at} (not in streamstarts, and no trigger that completes jumps to it)"
            ));
        }
        out.join("\n")
    }
}

fn place(procedure: &Procedure, span: Span) -> String {
    format!("{}:{}", procedure.file_of(span), span.line)
}

fn can_time_out(t: &Trigger) -> bool {
    match t {
        Trigger::Timeout(_) => true,
        Trigger::Any(c) => c.triggers.iter().any(can_time_out),
        Trigger::All(c) => c.triggers.iter().all(can_time_out),
        Trigger::Event(_) => false,
    }
}

fn event_triggers<'t>(t: &'t Trigger, f: &mut dyn FnMut(&'t EventTrigger)) {
    match t {
        Trigger::Event(e) => f(e),
        Trigger::All(c) | Trigger::Any(c) => c.triggers.iter().for_each(|x| event_triggers(x, f)),
        Trigger::Timeout(_) => {}
    }
}

/// The events of the procedure that emit a trigger: (stream, agent.method, `file:line`).
fn emitters(procedure: &Procedure, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in &procedure.streams {
        for e in &s.entries {
            if let Entry::Event(ev) = e {
                if ev.trigger.as_deref() == Some(name) {
                    out.push(format!(
                        "{}.{} in stream {} at {}",
                        ev.agent,
                        ev.method,
                        s.name,
                        place(procedure, ev.span)
                    ));
                }
            }
        }
    }
    out
}

/// Values equal as the engine compares them (numbers by value: `1 == 1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn why_open(
    procedure: &Procedure,
    waits: &[&EventTrigger],
    replies: &HashMap<String, Vec<Object>>,
) -> String {
    let name = &waits[0].event;
    let from = emitters(procedure, name);
    if from.is_empty() {
        return format!("nothing in the procedure emits `{name}`");
    }
    let Some(got) = replies.get(name) else {
        return format!(
            "`{name}` is emitted only by {}, which never ran",
            from.join(", ")
        );
    };
    let matching = |et: &EventTrigger| {
        got.iter()
            .filter(|r| {
                et.args
                    .iter()
                    .all(|(k, v)| r.get(k).is_some_and(|x| same(x, v)))
            })
            .count()
    };
    if let Some(et) = waits.iter().find(|et| matching(et) > 0) {
        return format!(
            "only {} of the {} reports of `{name}` it needs arrived",
            matching(et),
            et.count
        );
    }
    let wanted: Vec<String> = waits
        .iter()
        .map(|et| Value::Object(et.args.clone()).to_string())
        .collect();
    let sample = got
        .first()
        .map(|r| Value::Object(r.clone()))
        .unwrap_or(Value::Null);
    format!(
        "`{name}` arrived as {sample} but the wait needs {} (say what the method returns with --reply METHOD=JSON)",
        wanted.join(" or ")
    )
}
