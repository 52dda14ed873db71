//! `groups` and `agents`: what setup builds and loads.

use super::{error_at, listing, name_of, warning_at, Checker};
use crate::procedure::{Agent, AgentSource, Group, Span};
use crate::suggest::did_you_mean;
use crate::yaml::{key_text, Node};
use magi_proto::{Object, ALL_GROUP, DAEMON_AGENT, DAEMON_DOCK};
use std::collections::HashSet;

/// The keys an agent spec may have.
const AGENT_KEYS: [&str; 8] = [
    "group",
    "path",
    "tardata",
    "code",
    "dock",
    "execargs",
    "idl",
    "loadTimeout",
];

/// The original's default `loadTimeout`, in ms.
pub(crate) const DEFAULT_LOAD_TIMEOUT_MS: u64 = 200_000;

impl Checker<'_> {
    /// `groups`: name → list of node names.
    pub(super) fn groups(&mut self, node: &Node) {
        let Some(entries) = node.map() else {
            self.push(
                error_at(
                    node,
                    format!(
                        "`groups` must map group names to node lists, not be {}",
                        node.describe()
                    ),
                )
                .help("write e.g. `groups: {server_group: [servernode], client_group: [c1, c2]}`"),
            );
            return;
        };
        for (key, value) in entries {
            let Some(name) = name_of(key) else {
                self.push(error_at(key, "a group name was expected here"));
                continue;
            };
            if name == ALL_GROUP {
                self.push(
                    error_at(
                        key,
                        format!("`{ALL_GROUP}` is reserved: it is every node of every group"),
                    )
                    .help("choose another name for this group"),
                );
                continue;
            }
            let nodes = self.node_list(value, &format!("the group `{name}`"));
            if nodes.is_empty() && value.seq().is_some() {
                self.push(
                    warning_at(key, format!("the group `{name}` has no nodes"))
                        .note("its agents are loaded nowhere and its events reach no node"),
                );
            }
            for n in &nodes {
                if self.all_node_set.insert(n.clone()) {
                    self.all_nodes.push(n.clone());
                }
            }
            self.group_index.insert(name.to_string(), self.groups.len());
            self.groups.push(Group {
                name: name.to_string(),
                nodes,
                span: key.span,
            });
        }
    }

    /// A list of node names (duplicates dropped with a warning).
    fn node_list(&mut self, value: &Node, what: &str) -> Vec<String> {
        let Some(items) = value.seq() else {
            let help = match value.text() {
                Some(t) if t.contains(',') => format!("write it as a list: `[{t}]`"),
                Some(t) if !t.is_empty() => format!("write it as a list: `[{t}]`"),
                _ => "write the node names as a list, e.g. `[node1, node2]`".to_string(),
            };
            self.push(
                error_at(
                    value,
                    format!(
                        "{what} must be a list of node names, not {}",
                        value.describe()
                    ),
                )
                .help(help),
            );
            return Vec::new();
        };
        let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
        let mut nodes = Vec::with_capacity(items.len());
        for item in items {
            match name_of(item).filter(|_| item.map().is_none() && item.seq().is_none()) {
                None => self.push(error_at(
                    item,
                    format!("a node name was expected here, not {}", item.describe()),
                )),
                Some(n) if !seen.insert(n) => {
                    self.push(warning_at(
                        item,
                        format!("the node `{n}` is listed twice in {what}"),
                    ));
                }
                Some(n) => nodes.push(n.to_string()),
            }
        }
        nodes
    }

    /// `agents`: name → spec.
    pub(super) fn agents(&mut self, node: &Node) {
        let Some(entries) = node.map() else {
            self.push(
                error_at(node, format!("`agents` must map agent names to their specs, not be {}", node.describe()))
                    .help("write e.g. `agents: {server_agent: {group: server_group, path: /path/to/agent.tar.gz, execargs: {}}}`"),
            );
            return;
        };
        for (key, spec) in entries {
            let Some(name) = name_of(key) else {
                self.push(error_at(key, "an agent name was expected here"));
                continue;
            };
            if let Some(agent) = self.agent(name, key, spec) {
                self.agent_index
                    .insert(agent.name.clone(), self.agents.len());
                self.agents.push(agent);
            }
        }
    }

    fn agent(&mut self, name: &str, key: &Node, spec: &Node) -> Option<Agent> {
        if spec.map().is_none() {
            self.push(
                error_at(
                    spec,
                    format!(
                        "the agent `{name}` must be a mapping, not {}",
                        spec.describe()
                    ),
                )
                .help("give it at least `group:`, and `path:` and `execargs:` to load it"),
            );
            return None;
        }
        for (k, _) in spec.map().unwrap_or_default() {
            let text = key_text(k);
            if !AGENT_KEYS.contains(&text.as_ref()) {
                let near = did_you_mean(&text, AGENT_KEYS);
                self.push(
                    warning_at(
                        k,
                        format!("unknown key `{text}` in the agent `{name}` is ignored{near}"),
                    )
                    .help(format!("an agent's keys are {}", listing(AGENT_KEYS))),
                );
            }
        }
        let group = match spec.get("group") {
            None => {
                self.push(
                    error_at(key, format!("the agent `{name}` has no `group`")).help(format!(
                        "add `group: <name>`; the groups are {}",
                        self.group_listing()
                    )),
                );
                None
            }
            Some(g) => self.group_ref(g),
        };
        let string = |c: &mut Self, k: &str| -> Option<String> {
            let v = spec.get(k)?;
            match v.text().filter(|_| !v.is_null()) {
                Some(t) => Some(t.to_string()),
                None => {
                    c.push(error_at(
                        v,
                        format!(
                            "`{k}` of the agent `{name}` must be a string, not {}",
                            v.describe()
                        ),
                    ));
                    None
                }
            }
        };
        let path = string(self, "path");
        let tardata = string(self, "tardata");
        if path.is_some() && tardata.is_some() {
            if let Some(p) = spec.get("path") {
                self.push(warning_at(
                    p,
                    format!("the agent `{name}` has both `path` and `tardata`; `tardata` is used"),
                ));
            }
        }
        let given_source = tardata
            .map(AgentSource::Tardata)
            .or(path.map(AgentSource::Path));
        let code = string(self, "code");
        let idl = string(self, "idl");
        let dock_given = string(self, "dock");
        // An agent with `code` and a dock of its own but no `path` or `tardata` is one the
        // original expected to be running already (its agents outlived a run); nothing
        // outlives a run here, so it is loaded from `code`, which the module library
        // resolves by name (`code: nodeStats`).
        let from_code = given_source.is_none()
            && name != DAEMON_AGENT
            && dock_given.as_deref().is_some_and(|d| d != DAEMON_DOCK);
        let source = given_source.clone().or_else(|| {
            code.clone()
                .filter(|c| from_code && !c.trim().is_empty())
                .map(AgentSource::Path)
        });
        let dock = dock_given.clone().unwrap_or_else(|| {
            if source.is_some() {
                name.to_string()
            } else {
                DAEMON_DOCK.to_string()
            }
        });
        let execargs = self.execargs(name, key, spec, given_source.is_some());
        let load_timeout_ms = self.load_timeout(name, spec);
        if let (None, Some(AgentSource::Path(code))) = (&given_source, &source) {
            self.push(
                warning_at(key, format!("the agent `{name}` has no `path` or `tardata`; it is loaded from its `code` `{code}`"))
                    .note("the original loaded no such agent: it expected one already running on its dock from an earlier procedure")
                    .help("add `path:` to say where the agent comes from"),
            );
        } else if source.is_none() && name != DAEMON_AGENT {
            match dock_given.as_deref() {
                None => self.push(
                    warning_at(key, format!("the agent `{name}` has no `path` or `tardata`, so it is never loaded"))
                        .note("its events call methods of the node agent itself (dock `daemon`), as in the original")
                        .help("add `path:` (an archive or directory with the agent) to load it; or `dock: daemon` to say this is meant"),
                ),
                Some(DAEMON_DOCK) => {}
                Some(dock) => self.push(
                    warning_at(key, format!("the agent `{name}` is never loaded, so nothing answers on its dock `{dock}`"))
                        .note("an agent without `path` or `tardata` is not loaded on its group's nodes")
                        .help("add `path:` (an archive or directory with the agent) to load it"),
                ),
            }
        }
        // An agent whose group is wrong is still recorded (the error is reported), so that its
        // events do not also report an unknown agent.
        Some(Agent {
            name: name.to_string(),
            group: group.unwrap_or_default(),
            source,
            code,
            dock,
            execargs,
            idl,
            load_timeout_ms,
            span: key.span,
        })
    }

    /// A reference to a group (`__ALL__` included).
    pub(super) fn group_ref(&mut self, node: &Node) -> Option<String> {
        let Some(name) = name_of(node).filter(|_| node.map().is_none() && node.seq().is_none())
        else {
            self.push(error_at(
                node,
                format!("a group name was expected here, not {}", node.describe()),
            ));
            return None;
        };
        if name == ALL_GROUP || self.group_index.contains_key(name) {
            return Some(name.to_string());
        }
        if self.no_groups {
            return None;
        }
        let near = did_you_mean(
            name,
            self.groups
                .iter()
                .map(|g| g.name.as_str())
                .chain([ALL_GROUP]),
        );
        self.push(
            error_at(node, format!("unknown group `{name}`{near}")).help(format!(
                "the groups are {}; define it under `groups:`",
                self.group_listing()
            )),
        );
        None
    }

    fn group_listing(&self) -> String {
        listing(self.groups.iter().map(|g| g.name.as_str()))
    }

    /// `execargs`: a mapping; `[]`, `{}` and nothing mean none; required to load.
    fn execargs(&mut self, name: &str, key: &Node, spec: &Node, loadable: bool) -> Object {
        let Some(value) = spec.get("execargs") else {
            if loadable {
                self.push(
                    error_at(
                        key,
                        format!("the agent `{name}` has a `path` or `tardata` but no `execargs`"),
                    )
                    .note("the original MAGI refused to load such an agent")
                    .help("add `execargs: {}` (or the agent's initial configuration)"),
                );
            }
            return Object::new();
        };
        if value.is_null() || value.seq().is_some_and(<[Node]>::is_empty) {
            return Object::new();
        }
        match value.to_json() {
            serde_json::Value::Object(o) => o,
            _ => {
                self.push(
                    error_at(
                        value,
                        format!(
                            "`execargs` of the agent `{name}` must be a mapping, not {}",
                            value.describe()
                        ),
                    )
                    .help("write it as `execargs: {key: value, ...}`; `execargs: {}` for none"),
                );
                Object::new()
            }
        }
    }

    fn load_timeout(&mut self, name: &str, spec: &Node) -> u64 {
        let Some(value) = spec.get("loadTimeout") else {
            return DEFAULT_LOAD_TIMEOUT_MS;
        };
        match milliseconds(value) {
            Some(ms) => ms,
            None => {
                self.push(
                    error_at(value, format!("`loadTimeout` of the agent `{name}` must be a number of milliseconds, not {}", value.describe()))
                        .help(format!("e.g. `loadTimeout: {DEFAULT_LOAD_TIMEOUT_MS}` (the default)")),
                );
                DEFAULT_LOAD_TIMEOUT_MS
            }
        }
    }

    /// `__DAEMON__`, unless the user defined one: every node, dock `daemon`, never loaded.
    pub(super) fn add_daemon_agent(&mut self) {
        if self.agent_index.contains_key(DAEMON_AGENT) {
            return;
        }
        self.agent_index
            .insert(DAEMON_AGENT.to_string(), self.agents.len());
        self.agents.push(Agent {
            name: DAEMON_AGENT.to_string(),
            group: ALL_GROUP.to_string(),
            source: None,
            code: None,
            dock: DAEMON_DOCK.to_string(),
            execargs: Object::new(),
            idl: None,
            load_timeout_ms: DEFAULT_LOAD_TIMEOUT_MS,
            span: Span::default(),
        });
    }

    /// The nodes of a group, `__ALL__` included.
    pub(super) fn nodes_of(&self, group: &str) -> Vec<String> {
        if group == ALL_GROUP {
            return self.all_nodes.clone();
        }
        self.group_index
            .get(group)
            .and_then(|&i| self.groups.get(i))
            .map(|g| g.nodes.clone())
            .unwrap_or_default()
    }
}

/// A non-negative number of milliseconds (a float is rounded); `None` for anything else.
pub(super) fn milliseconds(node: &Node) -> Option<u64> {
    let v = node.number()?;
    if let Some(u) = v.as_u64() {
        return Some(u);
    }
    let f = v.as_f64()?;
    // Non-negative and finite by the check; the cast saturates for huge values.
    (f >= 0.0 && f.is_finite()).then(|| f.round() as u64)
}
