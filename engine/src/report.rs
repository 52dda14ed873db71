//! What the engine says about a run: the live view of what every stream waits for, and
//! how a failure reported by a node is put into words.

use magi_aal::Trigger;
use magi_proto::Object;
use serde_json::Value;

use crate::display::{duration_repr, object_repr};
use crate::steps::Step;
use crate::{value_text, Engine, WaitView};

impl Engine {
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

    /// Whether an incoming trigger is a failure that stops the run, and how to say it.
    pub(crate) fn failure_of(
        &self,
        event: &str,
        nodes: &[String],
        args: &Object,
    ) -> Option<String> {
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
}
