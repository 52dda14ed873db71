//! `eventstreams`: the streams, their events and their waits.

use super::{error_at, listing, name_of, warning_at, Checker, Emitter};
use crate::procedure::{Entry, Event, Stream, Wait};
use crate::suggest::did_you_mean;
use crate::yaml::{key_text, Node};
use magi_proto::EXIT_TARGET;

/// The keys of an event entry.
const EVENT_KEYS: [&str; 5] = ["type", "agent", "method", "args", "trigger"];
/// The keys of a trigger (wait) entry.
const WAIT_KEYS: [&str; 2] = ["type", "triggers"];

impl Checker<'_> {
    /// All streams, in AAL order.
    pub(super) fn streams(&mut self, node: &Node) -> Vec<Stream> {
        let Some(entries) = node.map() else {
            self.push(
                error_at(node, format!("`eventstreams` must map stream names to lists of entries, not be {}", node.describe()))
                    .help("write e.g. `eventstreams: {main: [ {type: event, agent: a, method: m, args: {}} ]}`"),
            );
            return Vec::new();
        };
        for (key, _) in entries {
            if let Some(name) = name_of(key) {
                if name == EXIT_TARGET {
                    self.push(
                        warning_at(key, "a stream named `exit` can never be jumped to")
                            .note("`target: exit` always means: stop and tear down")
                            .help("rename the stream"),
                    );
                }
                self.stream_names.insert(name.to_string(), key.span);
                self.stream_order.push(name.to_string());
            }
        }
        self.collect_emitters(entries);
        let mut streams = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = name_of(key) else {
                self.push(error_at(key, "a stream name was expected here"));
                continue;
            };
            let items: &[Node] = match value.seq() {
                Some(items) => items,
                None if value.is_null() => &[],
                None => {
                    self.push(
                        error_at(
                            value,
                            format!(
                                "the stream `{name}` must be a list of entries, not {}",
                                value.describe()
                            ),
                        )
                        .help("start each entry with `- type: event` or `- type: trigger`"),
                    );
                    continue;
                }
            };
            if items.is_empty() {
                self.push(warning_at(
                    key,
                    format!("the stream `{name}` has no entries"),
                ));
            }
            let entries = items.iter().filter_map(|item| self.entry(item)).collect();
            streams.push(Stream {
                name: name.to_string(),
                entries,
                span: key.span,
            });
        }
        streams
    }

    /// Which agent emits which trigger name: the first event (in AAL order) whose agent
    /// is known and that has `trigger:` wins, as the original's `setdefault` did.
    fn collect_emitters(&mut self, streams: &[(Node, Node)]) {
        for item in streams.iter().filter_map(|(_, v)| v.seq()).flatten() {
            if item.get("type").and_then(Node::text) != Some("event") {
                continue;
            }
            let agent = item.get("agent").and_then(name_of);
            let trigger = item.get("trigger").and_then(Node::str);
            let (Some(agent), Some(trigger)) = (agent, trigger) else {
                continue;
            };
            if !self.agent_index.contains_key(agent) {
                continue;
            }
            let method = item.get("method").and_then(Node::text).unwrap_or("?");
            let span = item.get("trigger").map(|t| t.span).unwrap_or(item.span);
            match self.emitters.get_mut(trigger) {
                Some(e) => {
                    if e.agent != agent && !e.others.iter().any(|o| o == agent) {
                        e.others.push(agent.to_string());
                    }
                }
                None => {
                    self.emitters.insert(
                        trigger.to_string(),
                        Emitter {
                            agent: agent.to_string(),
                            method: method.to_string(),
                            span,
                            others: Vec::new(),
                        },
                    );
                }
            }
        }
    }

    /// One entry of a stream; `None` when it is skipped or wrong.
    fn entry(&mut self, node: &Node) -> Option<Entry> {
        if node.map().is_none() {
            self.push(
                error_at(node, format!("a stream entry must be a mapping, not {}", node.describe()))
                    .help("write `- type: event` (with `agent`, `method`, `args`) or `- type: trigger` (with `triggers`)"),
            );
            return None;
        }
        let Some(kind) = node.get("type") else {
            let guess = if node.get("triggers").is_some() {
                "`type: trigger`"
            } else if node.get("agent").is_some() || node.get("method").is_some() {
                "`type: event`"
            } else {
                "`type: event` or `type: trigger`"
            };
            self.push(error_at(node, "a stream entry without `type`").help(format!("add {guess}")));
            return None;
        };
        match kind.text() {
            Some("event") => self.event(node).map(Entry::Event),
            Some("trigger") => self.wait(node).map(Entry::Wait),
            other => {
                let near = other
                    .map(|t| did_you_mean(t, ["event", "trigger"]))
                    .unwrap_or_default();
                self.push(
                    warning_at(
                        kind,
                        format!(
                            "unknown entry type `{}`: the entry is skipped{near}",
                            other.unwrap_or("?")
                        ),
                    )
                    .help("the entry types are `event` and `trigger`"),
                );
                None
            }
        }
    }

    fn unknown_keys(&mut self, node: &Node, known: &[&str], what: &str) {
        for (k, _) in node.map().unwrap_or_default() {
            let text = key_text(k);
            if !known.contains(&text.as_ref()) {
                let near = did_you_mean(&text, known.iter().copied());
                self.push(
                    warning_at(
                        k,
                        format!("unknown key `{text}` in {what} is ignored{near}"),
                    )
                    .help(format!(
                        "the keys of {what} are {}",
                        listing(known.iter().copied())
                    )),
                );
            }
        }
    }

    /// `type: event`.
    fn event(&mut self, node: &Node) -> Option<Event> {
        self.unknown_keys(node, &EVENT_KEYS, "an event");
        let agent = match node.get("agent") {
            None => {
                self.push(error_at(node, "an event without `agent`").help(format!(
                    "add `agent: <name>`; the agents are {}",
                    self.agent_listing()
                )));
                None
            }
            Some(a) => self.agent_ref(a),
        };
        let method = match node.get("method") {
            None => {
                self.push(
                    error_at(node, "an event without `method`")
                        .help("add `method: <the agent's method to call>`"),
                );
                None
            }
            Some(m) => match m.str() {
                Some(text) if !text.is_empty() => Some(text.to_string()),
                _ => {
                    self.push(error_at(
                        m,
                        format!("`method` must be a method name, not {}", m.describe()),
                    ));
                    None
                }
            },
        };
        let args = match node.get("args") {
            None => {
                self.push(
                    error_at(node, "an event without `args`")
                        .note("the original MAGI refused an event without `args`")
                        .help("add `args: {}` when the method takes no arguments"),
                );
                None
            }
            Some(a) => match a.to_json() {
                serde_json::Value::Object(o) => Some(o),
                // Real procedures write `args: []` for a method without arguments.
                serde_json::Value::Array(items) if items.is_empty() => {
                    self.push(
                        warning_at(a, "`args: []` is read as no arguments")
                            .help("write `args: {}`: arguments are a mapping of names to values"),
                    );
                    Some(serde_json::Map::new())
                }
                _ => {
                    self.push(
                        error_at(
                            a,
                            format!(
                                "`args` must be a mapping of argument names to values, not {}",
                                a.describe()
                            ),
                        )
                        .help("write `args: {name: value}`; `args: {}` for none"),
                    );
                    None
                }
            },
        };
        let trigger = match node.get("trigger") {
            None => None,
            Some(t) if t.is_null() => {
                self.push(
                    warning_at(
                        t,
                        "an empty `trigger`: no report comes back from this event",
                    )
                    .help("name the trigger, e.g. `trigger: serverStarted`, or remove the key"),
                );
                None
            }
            Some(t) => match t.str() {
                Some(text) => Some(text.to_string()),
                None => {
                    self.push(error_at(
                        t,
                        format!("`trigger` must be a trigger name, not {}", t.describe()),
                    ));
                    None
                }
            },
        };
        Some(Event {
            agent: agent?,
            method: method?,
            args: args?,
            trigger,
            span: node.span,
        })
    }

    /// A reference to an agent.
    pub(super) fn agent_ref(&mut self, node: &Node) -> Option<String> {
        let Some(name) = name_of(node).filter(|_| node.map().is_none() && node.seq().is_none())
        else {
            self.push(error_at(
                node,
                format!("an agent name was expected here, not {}", node.describe()),
            ));
            return None;
        };
        if self.agent_index.contains_key(name) {
            return Some(name.to_string());
        }
        if self.no_agents {
            return None;
        }
        let near = did_you_mean(name, self.agents.iter().map(|a| a.name.as_str()));
        self.push(
            error_at(node, format!("unknown agent `{name}`{near}")).help(format!(
                "the agents are {}; define it under `agents:`",
                self.agent_listing()
            )),
        );
        None
    }

    fn agent_listing(&self) -> String {
        listing(self.agents.iter().map(|a| a.name.as_str()))
    }

    /// `type: trigger`.
    fn wait(&mut self, node: &Node) -> Option<Wait> {
        self.unknown_keys(node, &WAIT_KEYS, "a trigger entry");
        let Some(list) = node.get("triggers") else {
            self.push(
                error_at(node, "a trigger entry without `triggers`")
                    .help("add e.g. `triggers: [ {event: serverStarted} ]` or `triggers: [ {timeout: 5000} ]`"),
            );
            return None;
        };
        let items = self.trigger_list(list, "`triggers`")?;
        let triggers: Vec<_> = items.iter().map(|t| self.trigger(t, false)).collect();
        Some(Wait {
            triggers: triggers.into_iter().collect::<Option<Vec<_>>>()?,
            span: node.span,
        })
    }

    /// The items of a `triggers:` list, which must be a non-empty list.
    pub(super) fn trigger_list<'n, 'a>(
        &mut self,
        list: &'n Node<'a>,
        what: &str,
    ) -> Option<&'n [Node<'a>]> {
        match list.seq() {
            Some([]) => {
                self.push(
                    error_at(list, format!("{what} is empty: the wait never completes"))
                        .help("list at least one trigger, e.g. `[ {event: serverStarted} ]`"),
                );
                None
            }
            Some(items) => Some(items),
            None => {
                let help = if list.map().is_some() {
                    "wrap it in a list: `triggers: [ {...} ]`"
                } else {
                    "write e.g. `triggers: [ {event: serverStarted} ]`"
                };
                self.push(
                    error_at(
                        list,
                        format!("{what} must be a list of triggers, not {}", list.describe()),
                    )
                    .help(help),
                );
                None
            }
        }
    }
}
