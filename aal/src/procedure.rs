//! The validated procedure: what the engine runs and `magi check` prints.
//!
//! Everything here has been resolved and checked: agents name known groups, events name
//! known agents, every event trigger knows which nodes it waits for and how many. All
//! lists are in AAL order, which is also the order of execution wherever the original
//! used Python 2 dict order.

use magi_proto::Object;
use serde::Serialize;

/// A place in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    /// Index into [`Procedure::files`].
    pub file: usize,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// A source file of the procedure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceFile {
    /// The path as given.
    pub path: String,
    /// Its text.
    #[serde(skip)]
    pub text: String,
}

/// A validated procedure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Procedure {
    /// The source files, in command-line order.
    pub files: Vec<SourceFile>,
    /// The user's groups in AAL order (`__ALL__` is not among them).
    pub groups: Vec<Group>,
    /// The agents in AAL order, `__DAEMON__` included (it is never loaded).
    pub agents: Vec<Agent>,
    /// The event streams in AAL order.
    pub streams: Vec<Stream>,
    /// The streams started after setup, in the given order.
    pub streamstarts: Vec<String>,
}

/// A named set of nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its nodes, in AAL order, without duplicates.
    pub nodes: Vec<String>,
    /// Where it is defined.
    pub span: Span,
}

/// Where an agent's code comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// `path:` a `.tar.gz`/`.tar` archive or a directory.
    Path(String),
    /// `tardata:` base64 of a tar archive.
    Tardata(String),
}

/// An agent: a behaviour loaded onto every node of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agent {
    /// Its AAL name.
    pub name: String,
    /// The group it is loaded on and whose nodes its events go to.
    pub group: String,
    /// Its code; `None` for agents that are never loaded (`__DAEMON__`, or no path/tardata),
    /// whose events go to the node agent itself.
    pub source: Option<AgentSource>,
    /// The original's `code` key (names the cache directory); informational.
    pub code: Option<String>,
    /// The dock its events are sent to: the agent's name, or `daemon`.
    pub dock: String,
    /// Initial configuration (`[]` and `{}` both mean none).
    pub execargs: Object,
    /// The original's `idl` key; informational.
    pub idl: Option<String>,
    /// Timeout of the load and unload waits, in ms (default 200 000).
    pub load_timeout_ms: u64,
    /// Where it is defined.
    pub span: Span,
}

impl Agent {
    /// Whether setup loads it (it has a `path` or `tardata`).
    pub fn is_loadable(&self) -> bool {
        self.source.is_some()
    }
}

/// A named list of entries, run in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stream {
    /// Its name.
    pub name: String,
    /// Its entries.
    pub entries: Vec<Entry>,
    /// Where it is defined.
    pub span: Span,
}

/// One step of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Entry {
    /// Call a method on every node of an agent's group.
    Event(Event),
    /// Wait until one of several triggers completes.
    Wait(Wait),
}

/// `type: event`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The agent whose method is called.
    pub agent: String,
    /// The method.
    pub method: String,
    /// Keyword arguments (anchors expanded).
    pub args: Object,
    /// The trigger each node sends back when the method returns.
    pub trigger: Option<String>,
    /// Where the entry starts.
    pub span: Span,
}

/// `type: trigger`: a list of triggers, OR with first-in-list priority.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wait {
    /// The triggers, in list order.
    pub triggers: Vec<Trigger>,
    /// Where the entry starts.
    pub span: Span,
}

/// Where a completed trigger sends its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The reserved `exit`: stop, then tear down.
    Exit,
    /// Restart the named stream from its start (ending the current one).
    Stream(String),
}

/// One trigger of a wait.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trigger {
    /// Wait for reports from nodes.
    Event(EventTrigger),
    /// Wait for time.
    Timeout(TimeoutTrigger),
    /// `type: AND`: every child completes.
    All(Composite),
    /// `type: OR`: any child completes.
    Any(Composite),
}

impl Trigger {
    /// The trigger's target, if any.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Trigger::Event(t) => t.target.as_ref(),
            Trigger::Timeout(t) => t.target.as_ref(),
            Trigger::All(c) | Trigger::Any(c) => c.target.as_ref(),
        }
    }

    /// Where the trigger is written.
    pub fn span(&self) -> Span {
        match self {
            Trigger::Event(t) => t.span,
            Trigger::Timeout(t) => t.span,
            Trigger::All(c) | Trigger::Any(c) => c.span,
        }
    }
}

/// `{event: X, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventTrigger {
    /// The trigger name awaited.
    pub event: String,
    /// The nodes whose reports count; empty means any node (a trigger no event emits).
    pub nodes: Vec<String>,
    /// How many distinct nodes must report (default: all of `nodes`, at least 1).
    pub count: usize,
    /// Arguments a report must carry with equal values; `{retVal: true}` when none given.
    pub args: Object,
    /// Where to go when complete.
    pub target: Option<Target>,
    /// Where it is written.
    pub span: Span,
}

/// `{timeout: ms}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeoutTrigger {
    /// Milliseconds from the moment the wait starts (exact, unlike the original).
    pub timeout_ms: u64,
    /// Where to go when it elapses.
    pub target: Option<Target>,
    /// Where it is written.
    pub span: Span,
}

/// `{type: AND|OR, triggers: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Composite {
    /// The children (their own targets are ignored, as in the original).
    pub triggers: Vec<Trigger>,
    /// Where to go when complete.
    pub target: Option<Target>,
    /// Where it is written.
    pub span: Span,
}

impl Procedure {
    /// The path of the file a span points into (`?` for a span of no file).
    pub fn file_of(&self, span: Span) -> &str {
        self.files
            .get(span.file)
            .map(|f| f.path.as_str())
            .unwrap_or("?")
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// An agent by name.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Every node named in `groups`, in first-seen order (the `__ALL__` group).
    pub fn all_nodes(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.groups
            .iter()
            .flat_map(|g| &g.nodes)
            .filter(|n| seen.insert(n.as_str()))
            .cloned()
            .collect()
    }

    /// The nodes of a group, `__ALL__` included.
    pub fn nodes_of(&self, group: &str) -> Vec<String> {
        if group == magi_proto::ALL_GROUP {
            self.all_nodes()
        } else {
            self.group(group)
                .map(|g| g.nodes.clone())
                .unwrap_or_default()
        }
    }

    /// The agents setup loads, in AAL order.
    pub fn loadable_agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter().filter(|a| a.is_loadable())
    }
}
