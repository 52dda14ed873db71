//! A topology: nodes, and the segments (point-to-point links and LANs) that join them.
//!
//! Both readers ([`crate::tcl`] for ns files, [`crate::yaml`] for plain YAML) produce the
//! same raw JSON shape, which is validated here once: names, members, bandwidth, delay,
//! loss and queue, each error naming the file and the line that made the object.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::units::{parse_bandwidth, parse_delay, parse_loss};

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The file it was read from (for messages).
    pub source: String,
    /// The nodes, in the order the file made them.
    pub nodes: Vec<Node>,
    /// Links and LANs, links first, each in the order the file made them.
    pub segments: Vec<Segment>,
    /// How routes are made.
    pub routing: Routing,
    /// Every `tb-*` command, as written (recorded, not all needed here).
    pub settings: Vec<Setting>,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Its name (`clientnode-3`).
    pub name: String,
    /// The line that made it (0: unknown).
    pub line: u32,
    /// `tb-set-node-*` settings: `startcmd`, `os`, `hardware`, ...
    pub settings: BTreeMap<String, String>,
}

/// Whether a segment is a point-to-point link or a LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    /// `duplex-link`: two nodes, a veth pair.
    Link,
    /// `make-lan`: any number of nodes on a bridge.
    Lan,
}

/// A link or a LAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Its name (`link`, `lanC`).
    pub name: String,
    /// Link or LAN.
    pub kind: SegmentKind,
    /// Its members, as indices into [`Topology::nodes`], in the file's order.
    pub nodes: Vec<usize>,
    /// What every member's attachment is shaped to.
    pub shape: Shape,
    /// The line that made it.
    pub line: u32,
}

/// What one attachment to a segment is shaped to, in each direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// Bits per second.
    pub bandwidth_bps: u64,
    /// One-way delay, microseconds.
    pub delay_us: u64,
    /// Loss rate, a fraction.
    pub loss: f64,
    /// Queue discipline (only DropTail is emulated).
    pub queue: String,
}

/// How routes are made (`$ns rtproto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// `Static` or `Session`: shortest-path routes for every node.
    Static,
    /// No `rtproto`, or `Manual`: only directly connected networks.
    None,
}

/// A `tb-*` command as the file wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// `tb-set-node-startcmd`.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where.
    pub line: u32,
}

/// A topology that cannot be read, with the place it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyError {
    /// The file.
    pub file: String,
    /// The line (0: the file as a whole).
    pub line: u32,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for TopologyError {}

impl TopologyError {
    /// An error at `line` of `file`.
    pub fn at(file: &str, line: u32, message: impl Into<String>) -> Self {
        TopologyError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// Reads a topology: `.tcl` and `.ns` files through Tcl, anything else as YAML.
pub fn read(path: &Path) -> Result<Topology, TopologyError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("tcl" | "ns") => crate::tcl::read(path),
        _ => crate::yaml::read(path),
    }
}

/// The raw shape both readers produce.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopology {
    #[serde(default)]
    pub nodes: Vec<RawNode>,
    #[serde(default)]
    pub links: Vec<RawSegment>,
    #[serde(default)]
    pub lans: Vec<RawSegment>,
    #[serde(default)]
    pub routing: Option<String>,
    #[serde(default)]
    pub settings: Vec<Setting>,
    /// Whether `$ns run` was reached (Tcl only; recorded, not required).
    #[serde(default)]
    #[allow(dead_code)]
    pub ran: bool,
}

/// A node: its name alone, or a mapping.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawNode {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        line: u32,
        #[serde(default)]
        settings: BTreeMap<String, String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSegment {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub line: u32,
    pub nodes: Vec<String>,
    #[serde(default)]
    pub bandwidth: Option<Value>,
    #[serde(default)]
    pub delay: Option<Value>,
    #[serde(default)]
    pub loss: Option<Value>,
    #[serde(default)]
    pub queue: Option<String>,
}

/// The bandwidth a YAML segment gets when it names none (Emulab's default).
const DEFAULT_BANDWIDTH: u64 = 100_000_000;

/// A node or segment name as Emulab allows it: a letter, then letters, digits, `-`, `_`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 63
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl RawTopology {
    /// Validates the raw topology read from `file`; `default_routing` is used when the
    /// file says nothing (ns files: none, as on Emulab; YAML: static).
    pub(crate) fn validate(
        self,
        file: &str,
        default_routing: Routing,
    ) -> Result<Topology, TopologyError> {
        let err = |line: u32, message: String| TopologyError::at(file, line, message);
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for raw in self.nodes {
            let node = match raw {
                RawNode::Name(name) => Node {
                    name,
                    line: 0,
                    settings: BTreeMap::new(),
                },
                RawNode::Full {
                    name,
                    line,
                    settings,
                } => Node {
                    name,
                    line,
                    settings,
                },
            };
            if !valid_name(&node.name) {
                return Err(err(node.line, format!(
                    "bad node name `{}`: a name starts with a letter and has only letters, digits, `-` and `_`",
                    node.name
                )));
            }
            if let Some(&other) = index.get(&node.name) {
                return Err(err(
                    node.line,
                    format!(
                        "node `{}` is made twice (first at line {})",
                        node.name, nodes[other].line
                    ),
                ));
            }
            index.insert(node.name.clone(), nodes.len());
            nodes.push(node);
        }
        let mut segments = Vec::new();
        let mut seg_names: HashMap<String, u32> = HashMap::new();
        let raws = self
            .links
            .into_iter()
            .map(|s| (SegmentKind::Link, s))
            .chain(self.lans.into_iter().map(|s| (SegmentKind::Lan, s)));
        for (n, (kind, raw)) in raws.enumerate() {
            let line = raw.line;
            let what = match kind {
                SegmentKind::Link => "link",
                SegmentKind::Lan => "LAN",
            };
            let name = raw
                .name
                .unwrap_or_else(|| format!("{what}{n}").to_lowercase());
            if !valid_name(&name) {
                return Err(err(line, format!("bad {what} name `{name}`: a name starts with a letter and has only letters, digits, `-` and `_`")));
            }
            if let Some(first) = seg_names.insert(name.clone(), line) {
                return Err(err(
                    line,
                    format!("the name `{name}` is used twice (first at line {first})"),
                ));
            }
            let mut members = Vec::new();
            for m in &raw.nodes {
                let Some(&i) = index.get(m) else {
                    return Err(err(line, format!("{what} `{name}`: `{m}` is not a node")));
                };
                if members.contains(&i) {
                    return Err(err(
                        line,
                        format!("{what} `{name}`: node `{m}` is in it twice"),
                    ));
                }
                members.push(i);
            }
            match kind {
                SegmentKind::Link if members.len() != 2 => {
                    return Err(err(
                        line,
                        format!(
                            "link `{name}` joins {} nodes; a link joins exactly two",
                            members.len()
                        ),
                    ))
                }
                SegmentKind::Lan if members.is_empty() => {
                    return Err(err(line, format!("LAN `{name}` has no nodes")))
                }
                _ => {}
            }
            let bandwidth_bps = match &raw.bandwidth {
                Some(v) => parse_bandwidth(&scalar_text(v))
                    .map_err(|e| err(line, format!("{what} `{name}`: {e}")))?,
                None => DEFAULT_BANDWIDTH,
            };
            let delay_us = match &raw.delay {
                Some(v) => parse_delay(&scalar_text(v))
                    .map_err(|e| err(line, format!("{what} `{name}`: {e}")))?,
                None => 0,
            };
            let loss = match &raw.loss {
                Some(v) => parse_loss(&scalar_text(v))
                    .map_err(|e| err(line, format!("{what} `{name}`: {e}")))?,
                None => 0.0,
            };
            let queue = raw.queue.unwrap_or_else(|| "DropTail".into());
            if queue != "DropTail" {
                return Err(err(line, format!(
                    "{what} `{name}`: queue `{queue}` is not emulated here; use DropTail (a FIFO of 50 packets)"
                )));
            }
            segments.push(Segment {
                name,
                kind,
                nodes: members,
                shape: Shape {
                    bandwidth_bps,
                    delay_us,
                    loss,
                    queue,
                },
                line,
            });
        }
        let routing = match self.routing.as_deref() {
            None | Some("") => default_routing,
            Some("Static" | "Session") => Routing::Static,
            Some("Manual") => Routing::None,
            Some(other) => {
                return Err(err(
                    0,
                    format!("unknown routing `{other}`: use Static, Session or Manual"),
                ))
            }
        };
        if nodes.is_empty() {
            return Err(err(0, "the topology has no nodes".into()));
        }
        Ok(Topology {
            source: file.to_string(),
            nodes,
            segments,
            routing,
            settings: self.settings,
        })
    }
}

impl Topology {
    /// The index of the node named `name`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The segments node `i` is attached to, in segment order (its interfaces, in order).
    pub fn attachments(&self, node: usize) -> Vec<usize> {
        (0..self.segments.len())
            .filter(|&s| self.segments[s].nodes.contains(&node))
            .collect()
    }

    /// The links (point-to-point segments).
    pub fn links(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.kind == SegmentKind::Link)
    }

    /// The LANs.
    pub fn lans(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.kind == SegmentKind::Lan)
    }

    /// Nodes on more than one segment: they forward (Emulab makes every such node a router
    /// under static routing).
    pub fn routers(&self) -> Vec<usize> {
        let mut count = vec![0usize; self.nodes.len()];
        for s in &self.segments {
            for &m in &s.nodes {
                count[m] += 1;
            }
        }
        (0..self.nodes.len()).filter(|&i| count[i] > 1).collect()
    }
}
