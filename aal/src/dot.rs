//! The stream graph as Graphviz DOT (`magi check --dot`), like the original's control-flow
//! graph: one cluster per stream with its entries in order, dashed edges from an event that
//! emits trigger T to every wait on T, bold edges for jumps (`target:`), and the `exit` node.
//! Triggers nothing emits come from an `outside` node.

use crate::plan::nodes_text;
use crate::procedure::{Entry, Procedure, Target, Trigger};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Above this many emitter × wait pairs for one trigger, edges go through a hub node, so the
/// graph stays linear in the size of the procedure.
const DIRECT_EDGES: usize = 64;

/// The graph as DOT text.
pub fn render(p: &Procedure) -> String {
    let mut out = String::new();
    out.push_str("digraph procedure {\n");
    out.push_str("  compound=true;\n  rankdir=TB;\n");
    out.push_str("  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    out.push_str("  start [shape=circle, label=\"start\"];\n");
    out.push_str("  exit [shape=doublecircle, label=\"exit\"];\n");

    let first: HashMap<&str, String> = p
        .streams
        .iter()
        .enumerate()
        .map(|(s, stream)| (stream.name.as_str(), format!("s{s}_0")))
        .collect();
    let cluster: HashMap<&str, usize> = p
        .streams
        .iter()
        .enumerate()
        .map(|(s, stream)| (stream.name.as_str(), s))
        .collect();
    let mut emitters: HashMap<&str, Vec<String>> = HashMap::new();
    let mut waits: HashMap<&str, Vec<String>> = HashMap::new();
    let mut edges = String::new();

    for (s, stream) in p.streams.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{s} {{");
        let _ = writeln!(out, "    label=\"{}\";", escape(&stream.name));
        if stream.entries.is_empty() {
            let _ = writeln!(out, "    s{s}_0 [label=\"(no entries)\", shape=plaintext];");
        }
        let mut previous: Option<String> = None;
        for (i, entry) in stream.entries.iter().enumerate() {
            let id = format!("s{s}_{i}");
            if let Some(prev) = previous.take() {
                let _ = writeln!(edges, "  {prev} -> {id};");
            }
            match entry {
                Entry::Event(e) => {
                    let mut label = format!("send {} -> {}", escape(&e.agent), escape(&e.method));
                    if let Some(t) = &e.trigger {
                        let _ = write!(label, "\\nreports {}", escape(t));
                        emitters.entry(t.as_str()).or_default().push(id.clone());
                    }
                    let _ = writeln!(out, "    {id} [label=\"{label}\"];");
                    previous = Some(id);
                }
                Entry::Wait(w) => {
                    let label: Vec<String> = w.triggers.iter().map(describe).collect();
                    let _ = writeln!(
                        out,
                        "    {id} [shape=ellipse, label=\"wait for {}\"];",
                        escape(&label.join(" or "))
                    );
                    let mut advances = false;
                    for t in &w.triggers {
                        for event in events_of(t) {
                            let at = waits.entry(event).or_default();
                            // One edge per wait, however many of its triggers name the event.
                            if at.last() != Some(&id) {
                                at.push(id.clone());
                            }
                        }
                        match t.target() {
                            None => advances = true,
                            Some(Target::Exit) => {
                                let _ = writeln!(edges, "  {id} -> exit [color=red, penwidth=2];");
                            }
                            Some(Target::Stream(name)) => {
                                if let (Some(to), Some(c)) =
                                    (first.get(name.as_str()), cluster.get(name.as_str()))
                                {
                                    // Graphviz cannot clip an edge at the cluster it starts in.
                                    let head = if *c == s {
                                        String::new()
                                    } else {
                                        format!(", lhead=cluster_{c}")
                                    };
                                    let _ = writeln!(
                                        edges,
                                        "  {id} -> {to} [label=\"jump\", penwidth=2{head}];"
                                    );
                                }
                            }
                        }
                    }
                    // A trigger with a target ends the chain; one without lets the stream go on.
                    previous = advances.then_some(id);
                }
            }
        }
        out.push_str("  }\n");
        if p.streamstarts.contains(&stream.name) {
            let _ = writeln!(edges, "  start -> s{s}_0 [lhead=cluster_{s}];");
        }
    }

    let mut names: Vec<&&str> = waits.keys().collect();
    names.sort();
    let mut outside = false;
    for (n, name) in names.into_iter().enumerate() {
        let to = &waits[*name];
        let label = escape(name);
        match emitters.get(*name) {
            None => {
                outside = true;
                for w in to {
                    let _ = writeln!(edges, "  outside -> {w} [style=dotted, label=\"{label}\"];");
                }
            }
            Some(from) if from.len() * to.len() <= DIRECT_EDGES => {
                for f in from {
                    for w in to {
                        let _ = writeln!(edges, "  {f} -> {w} [style=dashed, label=\"{label}\"];");
                    }
                }
            }
            Some(from) => {
                let hub = format!("trigger_{n}");
                let _ = writeln!(edges, "  {hub} [shape=plaintext, label=\"{label}\"];");
                for f in from {
                    let _ = writeln!(edges, "  {f} -> {hub} [style=dashed];");
                }
                for w in to {
                    let _ = writeln!(edges, "  {hub} -> {w} [style=dashed];");
                }
            }
        }
    }
    if outside {
        out.push_str("  outside [shape=plaintext, label=\"outside the procedure\"];\n");
    }
    out.push_str(&edges);
    out.push_str("}\n");
    out
}

/// A trigger in a few words.
fn describe(t: &Trigger) -> String {
    match t {
        Trigger::Event(e) => {
            let mut text = e.event.clone();
            let implicit =
                e.args.len() == 1 && e.args.get("retVal") == Some(&serde_json::Value::Bool(true));
            if !implicit {
                let args: Vec<String> = e.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                text = format!("{text} [{}]", args.join(", "));
            }
            if !e.nodes.is_empty() && e.count != e.nodes.len() {
                text = format!("{text} ({} of {})", e.count, nodes_text(&e.nodes));
            }
            text
        }
        Trigger::Timeout(t) => format!("{} ms", t.timeout_ms),
        Trigger::All(c) => format!(
            "({})",
            c.triggers
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(" & ")
        ),
        Trigger::Any(c) => format!(
            "({})",
            c.triggers
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    }
}

/// The event names a trigger waits on (composites included).
fn events_of(t: &Trigger) -> Vec<&str> {
    match t {
        Trigger::Event(e) => vec![e.event.as_str()],
        Trigger::Timeout(_) => Vec::new(),
        Trigger::All(c) | Trigger::Any(c) => c.triggers.iter().flat_map(events_of).collect(),
    }
}

/// Escapes text for a DOT string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
