//! The plan `magi check` prints: what setup builds and loads, then per stream what is sent
//! to whom and what each wait needs (resolved nodes, count, match arguments, target).

use crate::procedure::{Agent, AgentSource, Entry, EventTrigger, Procedure, Span, Target, Trigger};
use magi_proto::Object;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// Node lists longer than this are shortened in the text (the JSON plan has them all).
const SHOWN_NODES: usize = 6;

/// The plan as text.
pub fn render(p: &Procedure) -> String {
    let mut out = String::new();
    let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
    let _ = writeln!(
        out,
        "procedure {}: {} group(s), {} agent(s) to load, {} stream(s)",
        paths.join(" + "),
        p.groups.len(),
        p.loadable_agents().count(),
        p.streams.len()
    );
    setup(&mut out, p);
    let _ = writeln!(
        out,
        "\nafter setup, start together: {}",
        p.streamstarts.join(", ")
    );
    let agents: HashMap<&str, &Agent> = p.agents.iter().map(|a| (a.name.as_str(), a)).collect();
    let emitted: HashSet<&str> = p
        .streams
        .iter()
        .flat_map(|s| &s.entries)
        .filter_map(|e| match e {
            Entry::Event(e) => e.trigger.as_deref(),
            Entry::Wait(_) => None,
        })
        .collect();
    let all_nodes = p.all_nodes();
    let groups: HashMap<&str, &[String]> = p
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.nodes.as_slice()))
        .chain([(magi_proto::ALL_GROUP, all_nodes.as_slice())])
        .collect();
    for stream in &p.streams {
        let started = p.streamstarts.contains(&stream.name);
        let _ = writeln!(
            out,
            "\nstream {} ({}{})",
            stream.name,
            where_(p, stream.span),
            if started {
                ""
            } else {
                ", runs only when jumped to"
            }
        );
        if stream.entries.is_empty() {
            let _ = writeln!(out, "  (no entries)");
        }
        for (i, entry) in stream.entries.iter().enumerate() {
            let n = i + 1;
            match entry {
                Entry::Event(e) => {
                    let (group, nodes, dock) = match agents.get(e.agent.as_str()) {
                        Some(a) => (
                            a.group.as_str(),
                            groups.get(a.group.as_str()).copied().unwrap_or_default(),
                            a.dock.as_str(),
                        ),
                        None => ("?", &[][..], "?"),
                    };
                    let _ = write!(
                        out,
                        "  {n}. send {}.{}({}) to {group} {} (dock {dock})",
                        e.agent,
                        e.method,
                        args(&e.args),
                        nodes_text(nodes)
                    );
                    if let Some(t) = &e.trigger {
                        let _ = write!(out, "; each node reports `{t}`");
                    }
                    let _ = writeln!(out, "  [{}]", where_(p, e.span));
                }
                Entry::Wait(w) => {
                    if let [only] = w.triggers.as_slice() {
                        let _ = writeln!(
                            out,
                            "  {n}. wait for {}  [{}]",
                            trigger(only, &emitted),
                            where_(p, w.span)
                        );
                        children(&mut out, only, 6, &emitted);
                    } else {
                        let _ = writeln!(
                            out,
                            "  {n}. wait for the first of:  [{}]",
                            where_(p, w.span)
                        );
                        for t in &w.triggers {
                            let _ = writeln!(out, "       - {}", trigger(t, &emitted));
                            children(&mut out, t, 9, &emitted);
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\nat `exit`: unload every agent, then leave every group (also when a node reports a failure)"
    );
    out
}

fn setup(out: &mut String, p: &Procedure) {
    let _ = writeln!(out, "\nsetup, step 1: build every group at once");
    for g in &p.groups {
        let _ = writeln!(out, "  {} {}", g.name, nodes_text(&g.nodes));
    }
    let _ = writeln!(out, "setup, step 2: load every agent at once");
    let mut loaded = 0;
    for a in p.loadable_agents() {
        loaded += 1;
        let source = match &a.source {
            Some(AgentSource::Path(path)) => format!("path {path}"),
            Some(AgentSource::Tardata(t)) => format!("tardata ({} bytes of base64)", t.len()),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} on {} {}, dock {}, from {source}, execargs {}, load timeout {} ms",
            a.name,
            a.group,
            nodes_text(&p.nodes_of(&a.group)),
            a.dock,
            args(&a.execargs),
            a.load_timeout_ms
        );
    }
    if loaded == 0 {
        let _ = writeln!(out, "  (no agent to load)");
    }
    let daemon: Vec<&str> = p
        .agents
        .iter()
        .filter(|a| !a.is_loadable())
        .map(|a| a.name.as_str())
        .collect();
    if !daemon.is_empty() {
        let _ = writeln!(
            out,
            "  not loaded, their events go to the node agent (dock daemon): {}",
            daemon.join(", ")
        );
    }
}

/// `file:line` when several files, else `line N`.
fn where_(p: &Procedure, span: Span) -> String {
    if p.files.len() > 1 {
        format!("{}:{}", p.file_of(span), span.line)
    } else {
        format!("line {}", span.line)
    }
}

fn args(args: &Object) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

/// `[a, b, c]` or `[a, b, c, ... z] (50 nodes)`.
pub(crate) fn nodes_text(nodes: &[String]) -> String {
    if nodes.len() <= SHOWN_NODES {
        format!("[{}]", nodes.join(", "))
    } else {
        format!(
            "[{}, ... {}] ({} nodes)",
            nodes[..SHOWN_NODES - 1].join(", "),
            nodes[nodes.len() - 1],
            nodes.len()
        )
    }
}

/// One trigger in words, with its target.
fn trigger(t: &Trigger, emitted: &HashSet<&str>) -> String {
    let what = match t {
        Trigger::Event(e) if emitted.contains(e.event.as_str()) => event_trigger(e),
        Trigger::Event(e) => format!("{} (sent from outside the procedure)", event_trigger(e)),
        Trigger::Timeout(t) => format!("{} ms", t.timeout_ms),
        Trigger::All(_) => "all of:".to_string(),
        Trigger::Any(_) => "any of:".to_string(),
    };
    match t.target() {
        None => what,
        Some(Target::Exit) => format!("{what} -> exit"),
        Some(Target::Stream(s)) => format!("{what} -> jump to {s}"),
    }
}

/// The children of an AND/OR, indented.
fn children(out: &mut String, t: &Trigger, indent: usize, emitted: &HashSet<&str>) {
    if let Trigger::All(c) | Trigger::Any(c) = t {
        for child in &c.triggers {
            let _ = writeln!(out, "{:indent$}- {}", "", trigger(child, emitted));
            children(out, child, indent + 3, emitted);
        }
    }
}

fn event_trigger(e: &EventTrigger) -> String {
    let from = if e.nodes.is_empty() {
        if e.count == 1 {
            "from any one node".to_string()
        } else {
            format!("from any {} nodes", e.count)
        }
    } else if e.count == e.nodes.len() {
        format!("from all of {}", nodes_text(&e.nodes))
    } else {
        format!("from {} of {}", e.count, nodes_text(&e.nodes))
    };
    format!("`{}` {from} matching {}", e.event, args(&e.args))
}
