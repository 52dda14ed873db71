//! Triggers of a wait, and the resolution of which nodes an event trigger waits for
//! (the original's `_resolveReferences`, spec §1.5).

use super::setup::milliseconds;
use super::{error_at, listing, name_of, warning_at, Checker, Unemitted};
use crate::procedure::{Composite, EventTrigger, Target, TimeoutTrigger, Trigger};
use crate::suggest::{closest, did_you_mean};
use crate::yaml::{key_text, Node};
use magi_proto::{Object, EXIT_TARGET};
use serde_json::Value;

/// Trigger names the system itself sends; waiting on them is not waiting on nothing.
const SYSTEM_TRIGGERS: [&str; 6] = [
    magi_proto::GROUP_BUILD_DONE,
    "GroupPong",
    magi_proto::AGENT_LOAD_DONE,
    magi_proto::AGENT_UNLOAD_DONE,
    magi_proto::GROUP_TEARDOWN_DONE,
    magi_proto::RUNTIME_EXCEPTION,
];

/// The keys of an event trigger that are not match arguments.
const EVENT_TRIGGER_KEYS: [&str; 4] = ["event", "nodes", "count", "target"];
/// The keys of a timeout trigger.
const TIMEOUT_KEYS: [&str; 2] = ["timeout", "target"];
/// The keys of an AND/OR composite.
const COMPOSITE_KEYS: [&str; 3] = ["type", "triggers", "target"];

impl Checker<'_> {
    /// One trigger of a list; `nested` inside an AND/OR (whose children's targets are
    /// ignored).
    pub(super) fn trigger(&mut self, node: &Node, nested: bool) -> Option<Trigger> {
        if node.map().is_none() {
            self.push(
                error_at(
                    node,
                    format!("a trigger must be a mapping, not {}", node.describe()),
                )
                .help("write e.g. `{event: serverStarted}` or `{timeout: 5000, target: exit}`"),
            );
            return None;
        }
        if nested {
            if let Some((k, _)) = node.entry("target") {
                self.push(
                    warning_at(
                        k,
                        "the `target` of a trigger inside `type: AND`/`OR` is ignored",
                    )
                    .help("put the target on the AND/OR trigger itself"),
                );
            }
        }
        // The original's `getTriggerType`: `event` first, then AND/OR, else a timeout.
        if node.get("event").is_some() {
            self.event_trigger(node).map(Trigger::Event)
        } else if let Some(kind) = node.get("type") {
            self.composite(node, kind)
        } else {
            self.timeout_trigger(node).map(Trigger::Timeout)
        }
    }

    fn event_trigger(&mut self, node: &Node) -> Option<EventTrigger> {
        let event_node = node.get("event")?;
        let event = match event_node.str() {
            Some(e) if !e.is_empty() => e.to_string(),
            _ => {
                self.push(error_at(
                    event_node,
                    format!(
                        "`event` must be a trigger name, not {}",
                        event_node.describe()
                    ),
                ));
                return None;
            }
        };
        let mut ok = true;
        if let Some((k, v)) = node.entry("timeout") {
            let ms = v.text().unwrap_or("T");
            self.push(
                error_at(k, format!("`event` and `timeout` in one trigger: waiting for `{event}` can never complete"))
                    .note(format!("`timeout` here is a match argument: a report of `{event}` would have to carry `timeout: {ms}`"))
                    .help(format!(
                        "to wait for `{event}` at most {ms} ms, write two triggers: `triggers: [ {{event: {event}}}, {{timeout: {ms}, target: <stream or exit>}} ]`"
                    )),
            );
            ok = false;
        }
        let explicit_nodes = node.get("nodes").map(|n| self.trigger_nodes(n));
        let explicit_count = match node.get("count") {
            None => None,
            Some(c) => match c.number().and_then(serde_json::Number::as_u64) {
                Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                None => {
                    self.push(error_at(
                        c,
                        format!(
                            "`count` must be a whole number of nodes, not {}",
                            c.describe()
                        ),
                    ));
                    ok = false;
                    None
                }
            },
        };
        let target = self.target_of(node);
        let agent_key = match node.get("agent") {
            Some(a) => {
                let agent = self.agent_ref(a);
                ok &= agent.is_some();
                agent
            }
            None => None,
        };

        // Which nodes: the emitting agent's group by default (`agent:` overrides the agent).
        let (emitting, others) = match self.emitters.get(&event) {
            Some(e) => (Some(e.agent.clone()), e.others.clone()),
            None => (None, Vec::new()),
        };
        let agent = emitting
            .as_ref()
            .map(|e| agent_key.clone().unwrap_or_else(|| e.clone()));
        if emitting.is_none() && !SYSTEM_TRIGGERS.contains(&event.as_str()) {
            self.record_unemitted(&event, event_node);
        }
        if let (Some(first), None, None, false) =
            (&emitting, &agent_key, &explicit_nodes, others.is_empty())
        {
            let d = warning_at(event_node, format!(
                "`{event}` is emitted by `{first}` and also by {}; this wait needs the nodes of `{first}` only",
                listing(others.iter().map(String::as_str)),
            ))
            .help("add `agent: <name>` or `nodes: [...]` to the trigger to wait for other nodes");
            self.push(d);
        }
        let nodes = match (explicit_nodes, &agent) {
            (Some(n), _) => n,
            (None, Some(a)) => {
                let group = self
                    .agent_index
                    .get(a)
                    .and_then(|&i| self.agents.get(i))
                    .map(|a| a.group.clone())
                    .unwrap_or_default();
                self.nodes_of(&group)
            }
            (None, None) => Vec::new(),
        };
        let count = explicit_count.unwrap_or(nodes.len().max(1));
        if !nodes.is_empty() && count > nodes.len() {
            if let Some(c) = node.get("count") {
                self.push(
                    error_at(c, format!("`count: {count}` can never be reached: the trigger waits for {} node(s)", nodes.len()))
                        .note(format!("the nodes are {}", listing(nodes.iter().map(String::as_str))))
                        .help("lower `count`, or list more `nodes`"),
                );
                ok = false;
            }
        }

        let mut args = Object::new();
        for (k, v) in node.map().unwrap_or_default() {
            let key = key_text(k);
            if !EVENT_TRIGGER_KEYS.contains(&key.as_ref()) {
                args.insert(key.into_owned(), v.to_json());
            }
        }
        if args.is_empty() {
            args.insert("retVal".into(), Value::Bool(true));
        }
        let target = target.filter(|_| ok)?;
        Some(EventTrigger {
            event,
            nodes,
            count,
            args,
            target,
            span: node.span,
        })
    }

    /// `nodes:` of a trigger: a list, or a comma-separated string.
    fn trigger_nodes(&mut self, value: &Node) -> Vec<String> {
        let names: Vec<(String, &Node)> = match (value.seq(), value.text()) {
            (Some(items), _) => items
                .iter()
                .filter_map(|i| {
                    match name_of(i).filter(|_| i.map().is_none() && i.seq().is_none()) {
                        Some(n) => Some((n.to_string(), i)),
                        None => {
                            self.push(error_at(
                                i,
                                format!("a node name was expected here, not {}", i.describe()),
                            ));
                            None
                        }
                    }
                })
                .collect(),
            (None, Some(text)) if !value.is_null() => text
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| (n.to_string(), value))
                .collect(),
            _ => {
                self.push(
                    error_at(
                        value,
                        format!(
                            "`nodes` must be a list of node names, not {}",
                            value.describe()
                        ),
                    )
                    .help("write e.g. `nodes: [node1, node2]` (or `nodes: 'node1, node2'`)"),
                );
                return Vec::new();
            }
        };
        let mut nodes: Vec<String> = Vec::with_capacity(names.len());
        for (name, at) in names {
            if !self.all_node_set.contains(&name) {
                let near = did_you_mean(&name, self.all_nodes.iter().map(String::as_str));
                self.push(
                    warning_at(
                        at,
                        format!(
                            "the node `{name}` is in no group, so no report can come from it{near}"
                        ),
                    )
                    .help("name nodes listed under `groups:`"),
                );
            }
            if !nodes.contains(&name) {
                nodes.push(name);
            }
        }
        if nodes.is_empty() {
            self.push(warning_at(
                value,
                "empty `nodes`: a report from any one node completes this trigger",
            ));
        }
        nodes
    }

    /// The `target` of a trigger: `Some(None)` when there is none, `None` when it is wrong.
    fn target_of(&mut self, node: &Node) -> Option<Option<Target>> {
        let Some(t) = node.get("target") else {
            return Some(None);
        };
        let Some(name) = t.text().filter(|_| !t.is_null()) else {
            self.push(error_at(
                t,
                format!(
                    "`target` must be a stream name or `exit`, not {}",
                    t.describe()
                ),
            ));
            return None;
        };
        if name == EXIT_TARGET {
            return Some(Some(Target::Exit));
        }
        if self.stream_names.contains_key(name) {
            self.jumped_to.insert(name.to_string());
            return Some(Some(Target::Stream(name.to_string())));
        }
        let near = did_you_mean(
            name,
            self.stream_order
                .iter()
                .map(String::as_str)
                .chain([EXIT_TARGET]),
        );
        self.push(
            error_at(t, format!("unknown target `{name}`{near}"))
                .note("the original MAGI silently dropped the stream when it jumped to an unknown target")
                .help(format!(
                    "a target is `exit` or one of the streams: {}",
                    listing(self.stream_order.iter().map(String::as_str))
                )),
        );
        None
    }

    fn timeout_trigger(&mut self, node: &Node) -> Option<TimeoutTrigger> {
        let mut ok = true;
        let timeout_ms = match node.get("timeout") {
            // The original's idiom `{target: exit}`: a timeout of 0, i.e. now.
            None => 0,
            Some(t) => milliseconds(t).unwrap_or_else(|| {
                let help = match t.str() {
                    Some(s) => format!("write the number without quotes: `timeout: {s}`"),
                    None => "write e.g. `timeout: 5000` for five seconds".to_string(),
                };
                self.push(
                    error_at(
                        t,
                        format!(
                            "`timeout` must be a number of milliseconds, not {}",
                            t.describe()
                        ),
                    )
                    .help(help),
                );
                ok = false;
                0
            }),
        };
        for (k, _) in node.map().unwrap_or_default() {
            let key = key_text(k);
            if TIMEOUT_KEYS.contains(&key.as_ref()) {
                continue;
            }
            let near = closest(&key, ["event", "timeout", "target", "type"]);
            let d = warning_at(
                k,
                format!("`{key}` is ignored: a trigger without `event` only waits for time"),
            )
            .note(format!(
                "this trigger completes {timeout_ms} ms after the wait starts"
            ));
            let d = match near {
                Some(n) => d.help(format!("did you mean `{n}`?")),
                None if ["nodes", "count", "agent"].contains(&key.as_ref()) => {
                    d.help(format!("`{key}` only applies to a trigger with `event:`"))
                }
                None => d.help("a timeout trigger has `timeout` (ms) and `target`"),
            };
            self.push(d);
        }
        let target = self.target_of(node);
        (ok && target.is_some()).then(|| TimeoutTrigger {
            timeout_ms,
            target: target.flatten(),
            span: node.span,
        })
    }

    fn composite(&mut self, node: &Node, kind: &Node) -> Option<Trigger> {
        let all = match kind.text() {
            Some("AND") => true,
            Some("OR") => false,
            other => {
                let near = other
                    .map(|t| did_you_mean(t, ["AND", "OR"]))
                    .unwrap_or_default();
                self.push(
                    error_at(kind, format!("unknown trigger type `{}`{near}", other.unwrap_or("?")))
                        .help("a composite trigger is `type: AND` (all of `triggers`) or `type: OR` (any of them); without `type` and `event` a trigger waits for `timeout`"),
                );
                return None;
            }
        };
        let word = if all { "AND" } else { "OR" };
        for (k, _) in node.map().unwrap_or_default() {
            let key = key_text(k);
            if !COMPOSITE_KEYS.contains(&key.as_ref()) {
                self.push(
                    warning_at(k, format!("`{key}` is ignored in a `type: {word}` trigger"))
                        .help("a composite trigger has `type`, `triggers` and `target`"),
                );
            }
        }
        let Some(list) = node.get("triggers") else {
            self.push(
                error_at(node, format!("a `type: {word}` trigger without `triggers`"))
                    .help(format!("add the triggers it combines: `{{type: {word}, triggers: [ {{event: a}}, {{event: b}} ], target: ...}}`")),
            );
            return None;
        };
        let items = self.trigger_list(list, &format!("the `triggers` of `type: {word}`"))?;
        let children: Vec<Option<Trigger>> = items.iter().map(|t| self.trigger(t, true)).collect();
        let target = self.target_of(node)?;
        let composite = Composite {
            triggers: children.into_iter().collect::<Option<Vec<_>>>()?,
            target,
            span: node.span,
        };
        Some(if all {
            Trigger::All(composite)
        } else {
            Trigger::Any(composite)
        })
    }

    fn record_unemitted(&mut self, event: &str, at: &Node) {
        match self.unemitted.get_mut(event) {
            Some(u) => u.more.push(at.span.line),
            None => {
                self.unemitted.insert(
                    event.to_string(),
                    Unemitted {
                        span: at.span,
                        width: at.width,
                        more: Vec::new(),
                    },
                );
                self.unemitted_order.push(event.to_string());
            }
        }
    }
}
