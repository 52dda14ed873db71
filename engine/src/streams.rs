//! Moving one stream a step: sending its events, completing its waits (with the
//! targets they jump to), and what a wait expects as the run stands (teardown forgets lost
//! nodes).

use std::borrow::Cow;

use magi_aal::{EventTrigger, Target, Trigger};
use magi_proto::Call;

use crate::display::{args_repr, duration_repr, object_repr, Tag};
use crate::steps::{SendStep, Step};
use crate::{
    is_implicit, missing_what, Engine, FailureKind, Outcome, Output, Phase, Progress, Running,
};

impl Engine {
    pub(crate) fn start_stream(&mut self, name: &str) {
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
    pub(crate) fn step(&mut self, i: usize, now: u64, out: &mut Vec<Output>) -> Progress {
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

    pub(crate) fn on_wait_complete(
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
                        magi_proto::some_names(&missing, 20)
                    );
                    self.fail(now, FailureKind::Setup, message, out);
                    return Progress::Removed;
                }
                Phase::Teardown if !missing.is_empty() => {
                    let message = format!(
                        "teardown: no {} from nodes [{}]; going on",
                        missing_what(triggers),
                        magi_proto::some_names(&missing, 20)
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

    pub(crate) fn send(&mut self, now: u64, stream: &str, s: &SendStep, out: &mut Vec<Output>) {
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
    pub(crate) fn effective<'t>(&self, et: &'t EventTrigger) -> Cow<'t, EventTrigger> {
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

    pub(crate) fn complete(&self, t: &Trigger, since: u64, now: u64) -> bool {
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
    pub(crate) fn missing_nodes(&self, triggers: &[Trigger]) -> Vec<String> {
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
