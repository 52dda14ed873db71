//! The one place where the spanned YAML becomes a validated [`Procedure`].
//!
//! Order of work: top-level keys, then groups, agents, the stream names, the map of which
//! agent emits which trigger (the original's `_resolveReferences`, §1.5 of the spec), then
//! every stream's entries with their triggers resolved, then `streamstarts` and the checks
//! that need everything (streams that never run, waits on triggers nothing emits).
//! Diagnostics are collected, never thrown: one run reports every problem it can find.

mod setup;
mod streams;
mod triggers;

use crate::diagnostic::Diagnostic;
use crate::procedure::{Agent, Group, Procedure, SourceFile, Span};
use crate::suggest::{closest, did_you_mean};
use crate::yaml::Node;
use std::collections::{HashMap, HashSet};

/// The top-level keys of an AAL.
const TOP_LEVEL: [&str; 4] = ["groups", "agents", "streamstarts", "eventstreams"];

/// Who emits a trigger name: the first agent whose event carries `trigger: name`.
struct Emitter {
    agent: String,
    method: String,
    span: Span,
    /// Other agents that emit the same name (their nodes are not waited for by default).
    others: Vec<String>,
}

/// A trigger name that waits use but no event emits.
struct Unemitted {
    span: Span,
    width: u32,
    more: Vec<u32>,
}

/// The state of one validation.
pub(crate) struct Checker<'a> {
    files: &'a [SourceFile],
    diags: Vec<Diagnostic>,
    groups: Vec<Group>,
    group_index: HashMap<String, usize>,
    agents: Vec<Agent>,
    agent_index: HashMap<String, usize>,
    /// Every node of every group.
    all_nodes: Vec<String>,
    all_node_set: HashSet<String>,
    stream_names: HashMap<String, Span>,
    stream_order: Vec<String>,
    emitters: HashMap<String, Emitter>,
    jumped_to: HashSet<String>,
    unemitted: HashMap<String, Unemitted>,
    unemitted_order: Vec<String>,
    /// `groups` or `agents` is missing: references to them are not reported one by one.
    no_groups: bool,
    no_agents: bool,
}

/// Validates the root of an AAL; the procedure is `Some` when there is no error.
pub(crate) fn validate(
    root: Option<&Node>,
    start: Span,
    files: &[SourceFile],
) -> (Option<Procedure>, Vec<Diagnostic>) {
    let mut c = Checker {
        files,
        diags: Vec::new(),
        groups: Vec::new(),
        group_index: HashMap::new(),
        agents: Vec::new(),
        agent_index: HashMap::new(),
        all_nodes: Vec::new(),
        all_node_set: HashSet::new(),
        stream_names: HashMap::new(),
        stream_order: Vec::new(),
        emitters: HashMap::new(),
        jumped_to: HashSet::new(),
        unemitted: HashMap::new(),
        unemitted_order: Vec::new(),
        no_groups: false,
        no_agents: false,
    };
    let procedure = c.procedure(root, start);
    let ok = !c.diags.iter().any(Diagnostic::is_error);
    (procedure.filter(|_| ok), c.diags)
}

/// An error pointing at a node.
fn error_at(node: &Node, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(node.span, message).width(node.width as usize)
}

/// A warning pointing at a node.
fn warning_at(node: &Node, message: impl Into<String>) -> Diagnostic {
    Diagnostic::warning(node.span, message).width(node.width as usize)
}

/// A name written as a scalar (any scalar but an empty one).
fn name_of<'n>(node: &'n Node<'_>) -> Option<&'n str> {
    node.text().filter(|t| !t.is_empty() && !node.is_null())
}

/// Up to eight names, for "known names are: ..." help texts.
fn listing<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
    let more = names.len().saturating_sub(8);
    if names.is_empty() {
        "none".into()
    } else if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn procedure(&mut self, root: Option<&Node>, start: Span) -> Option<Procedure> {
        let Some(root) = root else {
            self.push(
                Diagnostic::error(start, "the procedure is empty")
                    .help("an AAL is a YAML mapping with `groups`, `agents`, `streamstarts` and `eventstreams`"),
            );
            return None;
        };
        if root.map().is_none() {
            self.push(
                error_at(root, format!("an AAL is a YAML mapping, not {}", root.describe()))
                    .help("write `groups:`, `agents:`, `streamstarts:` and `eventstreams:` at the start of lines"),
            );
            return None;
        }
        self.unknown_top_level_keys(root);
        let required = |c: &mut Self, key: &str, example: &str| {
            let value = root.get(key);
            if value.is_none() {
                c.push(
                    Diagnostic::error(root.span, format!("the procedure has no `{key}`"))
                        .help(format!("add a top-level `{key}:`, e.g. {example}")),
                );
            }
            value
        };
        let groups = required(self, "groups", "`groups: {servers: [node1, node2]}`");
        let agents = required(
            self,
            "agents",
            "`agents: {server_agent: {group: servers, path: ..., execargs: {}}}`",
        );
        let streams = required(
            self,
            "eventstreams",
            "`eventstreams: {main: [ {type: event, ...} ]}`",
        );
        let starts = required(
            self,
            "streamstarts",
            "`streamstarts: [main]`: the streams that start after setup",
        );

        self.no_groups = groups.is_none();
        self.no_agents = agents.is_none();
        if let Some(g) = groups {
            self.groups(g);
        }
        if let Some(a) = agents {
            self.agents(a);
        }
        self.add_daemon_agent();
        let streams = streams.map(|s| self.streams(s)).unwrap_or_default();
        let streamstarts = starts.map(|s| self.streamstarts(s)).unwrap_or_default();
        if starts.is_some() {
            self.never_run_streams(&streams, &streamstarts);
        }
        self.unemitted_warnings();

        Some(Procedure {
            files: self.files.to_vec(),
            groups: std::mem::take(&mut self.groups),
            agents: std::mem::take(&mut self.agents),
            streams,
            streamstarts,
        })
    }

    /// Keys the original ignored silently: say where they probably belong.
    fn unknown_top_level_keys(&mut self, root: &Node) {
        for (key, value) in root.map().unwrap_or_default() {
            let name = crate::yaml::key_text(key);
            if TOP_LEVEL.contains(&name.as_ref()) {
                continue;
            }
            let message = format!("unknown top-level key `{name}` is ignored");
            let d = warning_at(key, message);
            let d = if let Some(near) = closest(&name, TOP_LEVEL) {
                d.help(format!("did you mean `{near}`?"))
            } else if let Some((looks, home)) = probable_home(value) {
                d.note("it is not under `groups:`, `agents:` or `eventstreams:`, so the original MAGI ignored it silently")
                    .help(format!("it looks like {looks}; move it under `{home}:`"))
            } else {
                d.help(
                    "the top-level keys are `groups`, `agents`, `streamstarts` and `eventstreams`",
                )
            };
            self.push(d);
        }
    }

    /// `streamstarts`: a list of known stream names.
    fn streamstarts(&mut self, node: &Node) -> Vec<String> {
        let Some(items) = node.seq() else {
            let example = node.text().unwrap_or("stream");
            self.push(
                error_at(
                    node,
                    format!(
                        "`streamstarts` must be a list of stream names, not {}",
                        node.describe()
                    ),
                )
                .help(format!("write `streamstarts: [{example}]`")),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.push(
                error_at(
                    node,
                    "`streamstarts` is empty: nothing would run after setup",
                )
                .help("list the streams that start after setup, e.g. `streamstarts: [main]`"),
            );
        }
        let mut starts: Vec<String> = Vec::new();
        for item in items {
            let Some(name) = name_of(item).filter(|_| item.seq().is_none()) else {
                self.push(error_at(
                    item,
                    format!("a stream name was expected here, not {}", item.describe()),
                ));
                continue;
            };
            if !self.stream_names.contains_key(name) {
                let near = did_you_mean(name, self.stream_order.iter().map(String::as_str));
                let known = listing(self.stream_order.iter().map(String::as_str));
                self.push(
                    error_at(
                        item,
                        format!("`streamstarts` names the unknown stream `{name}`{near}"),
                    )
                    .help(format!("the streams under `eventstreams` are: {known}")),
                );
            } else if starts.iter().any(|s| s == name) {
                self.push(warning_at(
                    item,
                    format!("the stream `{name}` is started twice; it runs once"),
                ));
            } else {
                starts.push(name.to_string());
            }
        }
        starts
    }

    /// Streams that are neither started nor the target of a jump.
    fn never_run_streams(&mut self, streams: &[crate::procedure::Stream], starts: &[String]) {
        for stream in streams {
            if !starts.contains(&stream.name) && !self.jumped_to.contains(&stream.name) {
                self.push(
                    Diagnostic::warning(
                        stream.span,
                        format!("the stream `{}` never runs", stream.name),
                    )
                    .width(stream.name.chars().count())
                    .note("it is not in `streamstarts`, and no trigger jumps to it with `target:`")
                    .help(format!(
                        "add it to `streamstarts`, or jump to it with `target: {}`",
                        stream.name
                    )),
                );
            }
        }
    }

    /// One warning per trigger name that waits use but no event emits.
    fn unemitted_warnings(&mut self) {
        let order = std::mem::take(&mut self.unemitted_order);
        for name in order {
            let Some(u) = self.unemitted.remove(&name) else {
                continue;
            };
            let mut d = Diagnostic::warning(
                u.span,
                format!("nothing in the procedure emits the trigger `{name}`"),
            )
            .width(u.width as usize)
            .note("the wait needs a report from outside the procedure (any one node suffices)");
            if !u.more.is_empty() {
                let lines: Vec<String> = u.more.iter().take(8).map(u32::to_string).collect();
                d = d.note(format!(
                    "{} more waits on it, at lines {}",
                    u.more.len(),
                    lines.join(", ")
                ));
            }
            let near = closest(&name, self.emitters.keys().map(String::as_str));
            d = match near.and_then(|n| self.emitters.get(n).map(|e| (n, e))) {
                Some((n, e)) => d.help(format!(
                    "did you mean `{n}`? (trigger names are case-sensitive; `{n}` is sent by {}.{} at line {})",
                    e.agent, e.method, e.span.line
                )),
                None => d.help(format!(
                    "add `trigger: {name}` to the event whose completion this waits for, unless another program sends it"
                )),
            };
            self.push(d);
        }
    }
}

/// What an unknown top-level value looks like, and the key it belongs under.
fn probable_home(value: &Node) -> Option<(&'static str, &'static str)> {
    let is_entry = |i: &Node| i.map().is_some() && i.get("type").is_some();
    if let Some(items) = value.seq() {
        if !items.is_empty() && items.iter().all(is_entry) {
            return Some((
                "an event stream (a list of entries with `type:`)",
                "eventstreams",
            ));
        }
        if !items.is_empty() && items.iter().all(|i| i.text().is_some()) {
            return Some(("a group (a list of node names)", "groups"));
        }
    }
    let entries = value.map()?;
    if ["group", "path", "tardata", "execargs"]
        .iter()
        .any(|k| value.get(k).is_some())
    {
        return Some(("an agent (it has `group`, `path` or `execargs`)", "agents"));
    }
    let all = |f: &dyn Fn(&Node) -> bool| !entries.is_empty() && entries.iter().all(|(_, v)| f(v));
    if all(&|v| v.seq().is_some_and(|s| s.iter().all(is_entry))) {
        return Some(("event streams", "eventstreams"));
    }
    if all(&|v| v.map().is_some() && v.get("group").is_some()) {
        return Some(("agents", "agents"));
    }
    if all(&|v| {
        v.seq()
            .is_some_and(|s| s.iter().all(|i| i.text().is_some()))
    }) {
        return Some(("groups", "groups"));
    }
    None
}
