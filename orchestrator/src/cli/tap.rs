//! `magi tap`: print everything on the bus (calls, triggers, records, node announcements),
//! for one run or all, filtered by group, node, event or kind.
//!
//! A tap is an observer: it reads copies the senders' bus library makes (and the nodes'
//! announcements), from a queue of its own that is bounded (oldest dropped first) and
//! expires, so it needs nothing from the orchestrator and an abandoned tap cannot fill the
//! broker. A sender makes no copies while nobody taps and asks again every 5 s, so a run
//! already going shows within 5 s. Only read permission is needed (the tap role of
//! `broker-config/`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Args;
use magi_bus::{Bus, TapItem};
use magi_proto::{Call, DaemonCall, NodeStatus};
use serde_json::{json, Value};

use super::status::BrokerArgs;

use super::exit::{EXIT_INFRA, EXIT_INVALID, EXIT_OK};

/// Kinds of message a tap sees.
const KINDS: &[&str] = &["call", "trigger", "record", "node"];

/// Arguments of `magi tap`.
#[derive(Args, Debug)]
#[command(after_help = "\
Prints one line per message seen: its arrival time, then

  call     RUN  -> group G | nodes A,B  dock.method(args) [=> trigger] #seq
  trigger  RUN  <- NODE  event {args}
  record   RUN  <- NODE  agent {fields}
  node     NODE alive|stopped pid=P runs=[...]      (only without --run)

--json prints each message as one JSON object per line instead: {\"time\", \"kind\", \"run\",
\"group\", \"nodes\", \"body\"} with the message itself in `body`. Long strings (shipped
archives) are shortened in text lines only.

Filters combine with AND; --group, --node, --event and --kind may be repeated (OR within
one). --group G keeps calls to G, triggers naming group G, and triggers and records of nodes
seen joining G. --node N keeps what N sent, calls addressed to N, and calls to groups N was
seen joining. --event E keeps calls of method E or expecting trigger E, and triggers E.

Runs until Ctrl-C (or --count / --for). Exit codes: 0 stopped; 2 command-line error; 3 the
broker cannot be reached or the connection was lost.")]
pub struct TapArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Only this run (node announcements are then not shown: they belong to no run).
    #[arg(long)]
    pub run: Option<String>,
    /// Only this group's traffic (repeatable).
    #[arg(long)]
    pub group: Vec<String>,
    /// Only this node's traffic (repeatable).
    #[arg(long)]
    pub node: Vec<String>,
    /// Only this event: a call's method or expected trigger, or a trigger (repeatable).
    #[arg(long)]
    pub event: Vec<String>,
    /// Only these kinds: call, trigger, record, node (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Stop after printing this many messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECS", value_parser = super::parse::seconds)]
    pub for_secs: Option<Duration>,
}

/// Runs `magi tap`; returns the exit code.
pub fn run(args: TapArgs) -> i32 {
    if let Some(k) = args.kind.iter().find(|k| !KINDS.contains(&k.as_str())) {
        eprintln!("error: --kind {k}: the kinds are {}", KINDS.join(", "));
        return EXIT_INVALID;
    }
    super::block_on(tap(args))
}

async fn tap(args: TapArgs) -> i32 {
    let (bus, shown) = match args.broker.connect("tap").await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut link = match bus.tap(args.run.as_deref()).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot open a tap on {shown}: {e}");
            bus.close().await;
            return EXIT_INFRA;
        }
    };
    let what = match &args.run {
        Some(r) => format!("run {r}"),
        None => "every run and node".into(),
    };
    eprintln!(
        "magi tap: watching {what} on {shown} (Ctrl-C stops; a run already going shows within 5 s)"
    );
    let mut filter = Filter::new(&args);
    let mut printed = 0u64;
    let stop_at = args.for_secs.map(|s| tokio::time::Instant::now() + s);
    let until = async {
        match stop_at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until);
    let signals = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(signals);
    let mut code = EXIT_OK;
    while args.count.is_none_or(|n| printed < n) {
        tokio::select! {
            item = link.items.recv() => match item {
                Some(item) => {
                    if filter.keep(&item) {
                        print_item(&item, magi_proto::epoch_now(), args.json);
                        printed += 1;
                    }
                }
                None => {
                    eprintln!("error: the connection to {shown} was lost");
                    code = EXIT_INFRA;
                    break;
                }
            },
            _ = &mut until => break,
            _ = &mut signals => break,
        }
    }
    bus.close().await;
    code
}

/// The filters, and what the tap learned about group membership so far.
struct Filter {
    groups: BTreeSet<String>,
    nodes: BTreeSet<String>,
    events: BTreeSet<String>,
    kinds: BTreeSet<String>,
    /// (run, group) → nodes seen joining it (joinGroup calls, node announcements).
    members: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Filter {
    fn new(args: &TapArgs) -> Self {
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        Filter {
            groups: set(&args.group),
            nodes: set(&args.node),
            events: set(&args.event),
            kinds: set(&args.kind),
            members: BTreeMap::new(),
        }
    }

    fn learn(&mut self, item: &TapItem) {
        let run = item.run.clone().unwrap_or_default();
        match item.kind.as_str() {
            "call" if item.body["method"] == magi_proto::method::JOIN_GROUP => {
                let Ok(call) = serde_json::from_value::<Call>(item.body.clone()) else {
                    return;
                };
                if let Ok(DaemonCall::JoinGroup(g)) = DaemonCall::from_call(&call) {
                    let mut who: Vec<String> = item.nodes.clone();
                    who.extend(call.nodes.into_iter().flatten());
                    self.members.entry((run, g.group)).or_default().extend(who);
                }
            }
            "node" => {
                let Ok(status) = serde_json::from_value::<NodeStatus>(item.body.clone()) else {
                    return;
                };
                for m in status.runs {
                    for g in m.groups {
                        self.members
                            .entry((m.run.clone(), g))
                            .or_default()
                            .insert(status.node.clone());
                    }
                }
            }
            _ => {}
        }
    }

    fn member(&self, run: &str, group: &str, node: &str) -> bool {
        self.members
            .get(&(run.to_string(), group.to_string()))
            .is_some_and(|m| m.contains(node))
    }

    fn keep(&mut self, item: &TapItem) -> bool {
        self.learn(item);
        if !self.kinds.is_empty() && !self.kinds.contains(&item.kind) {
            return false;
        }
        let run = item.run.as_deref().unwrap_or_default();
        let body = &item.body;
        if !self.events.is_empty() {
            let names: Vec<&str> = match item.kind.as_str() {
                "call" => [body["method"].as_str(), body["trigger"].as_str()]
                    .into_iter()
                    .flatten()
                    .collect(),
                "trigger" => body["event"].as_str().into_iter().collect(),
                _ => Vec::new(),
            };
            if !names.iter().any(|n| self.events.contains(*n)) {
                return false;
            }
        }
        if !self.groups.is_empty() {
            let ok = match item.kind.as_str() {
                "call" => {
                    item.group.as_ref().is_some_and(|g| self.groups.contains(g))
                        || body["args"]["group"]
                            .as_str()
                            .is_some_and(|g| self.groups.contains(g))
                }
                "trigger" | "record" => {
                    body["group"]
                        .as_str()
                        .is_some_and(|g| self.groups.contains(g))
                        || self
                            .groups
                            .iter()
                            .any(|g| item.nodes.iter().any(|n| self.member(run, g, n)))
                }
                _ => body["runs"].as_array().into_iter().flatten().any(|m| {
                    m["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .any(|g| self.groups.contains(g))
                }),
            };
            if !ok {
                return false;
            }
        }
        if !self.nodes.is_empty() {
            let named = item.nodes.iter().any(|n| self.nodes.contains(n))
                || body["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|n| self.nodes.contains(n));
            let via_group = item.kind == "call"
                && item
                    .group
                    .as_ref()
                    .is_some_and(|g| self.nodes.iter().any(|n| self.member(run, g, n)));
            if !(named || via_group) {
                return false;
            }
        }
        true
    }
}

/// Prints one message as a line (or as JSON).
fn print_item(item: &TapItem, now: f64, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"time": now, "kind": item.kind, "run": item.run, "group": item.group, "nodes": item.nodes, "body": item.body})
        );
    } else {
        println!("{}", format_item(item, now));
    }
}

/// A message as one text line.
fn format_item(item: &TapItem, now: f64) -> String {
    let time = format!(
        "{}.{:03}",
        crate::console::clock(now),
        ((now.fract() * 1000.0) as u32).min(999)
    );
    let run = item.run.as_deref().unwrap_or("-");
    let b = &item.body;
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    match item.kind.as_str() {
        "call" => {
            let dest = match &item.group {
                Some(g) => format!("group {g}"),
                None => format!("nodes {}", item.nodes.join(",")),
            };
            let trigger = b["trigger"]
                .as_str()
                .map(|t| format!(" => {t}"))
                .unwrap_or_default();
            let only = b["nodes"]
                .as_array()
                .map(|n| {
                    format!(
                        " (only {})",
                        n.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
                .unwrap_or_default();
            format!(
                "{time} call    {run}  -> {dest}{only}  {}.{}({}){trigger} #{}",
                s(&b["dock"]),
                s(&b["method"]),
                compact_args(&b["args"]),
                b["seq"]
            )
        }
        "trigger" => {
            let args: serde_json::Map<String, Value> = b
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "run" | "event" | "nodes" | "call"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // A reply names the call it answers, as the call's line ends with `#seq`.
            let answers = b["call"]
                .as_u64()
                .map(|seq| format!(" (answers #{seq})"))
                .unwrap_or_default();
            format!(
                "{time} trigger {run}  <- {}  {} {}{answers}",
                item.nodes.join(","),
                s(&b["event"]),
                shorten(&Value::Object(args))
            )
        }
        "record" => format!(
            "{time} record  {run}  <- {}  {} {}",
            item.nodes.join(","),
            s(&b["agent"]),
            shorten(&b["data"])
        ),
        "node" => {
            let runs: Vec<String> = b["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    let names = |k: &str| {
                        m[k].as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default()
                    };
                    format!(
                        "{}: groups [{}] agents [{}]",
                        s(&m["run"]),
                        names("groups"),
                        names("agents")
                    )
                })
                .collect();
            let state = if b["alive"].as_bool().unwrap_or(true) {
                "alive"
            } else {
                "stopped"
            };
            format!(
                "{time} node    {} {state} pid={} runs=[{}]",
                s(&b["node"]),
                b["pid"],
                runs.join("; ")
            )
        }
        other => format!("{time} {other} {run} {}", shorten(b)),
    }
}

/// Keyword arguments as `k=v, ...` with long strings shortened.
fn compact_args(args: &Value) -> String {
    match args.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", shorten(v)))
            .collect::<Vec<_>>()
            .join(", "),
        None => String::new(),
    }
}

/// A value as compact JSON, with strings longer than 80 characters replaced by their size.
fn shorten(v: &Value) -> String {
    fn walk(v: &Value) -> Value {
        match v {
            Value::String(s) if s.chars().count() > 80 => {
                Value::String(format!("<{} bytes>", s.len()))
            }
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), walk(v))).collect())
            }
            other => other.clone(),
        }
    }
    walk(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &str, group: Option<&str>, nodes: &[&str], body: Value) -> TapItem {
        TapItem {
            kind: kind.into(),
            run: Some("r".into()),
            group: group.map(String::from),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            body,
        }
    }

    fn args(group: &[&str], node: &[&str], event: &[&str], kind: &[&str]) -> TapArgs {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        TapArgs {
            broker: BrokerArgs {
                broker: None,
                experiment: None,
                project: None,
                bus_prefix: None,
            },
            run: None,
            group: v(group),
            node: v(node),
            event: v(event),
            kind: v(kind),
            json: false,
            count: None,
            for_secs: None,
        }
    }

    #[test]
    fn groups_and_nodes_are_followed_through_joins() {
        let mut f = Filter::new(&args(&["g"], &[], &[], &[]));
        let join = item(
            "call",
            None,
            &["n1"],
            json!({"run": "r", "seq": 1, "dock": "daemon", "method": "joinGroup", "args": {"group": "g"}}),
        );
        assert!(f.keep(&join));
        assert!(f.keep(&item(
            "trigger",
            None,
            &["n1"],
            json!({"run": "r", "event": "serverStarted", "nodes": ["n1"]})
        )));
        assert!(!f.keep(&item(
            "trigger",
            None,
            &["n2"],
            json!({"run": "r", "event": "serverStarted", "nodes": ["n2"]})
        )));
        assert!(f.keep(&item(
            "call",
            Some("g"),
            &[],
            json!({"run": "r", "seq": 2, "dock": "a", "method": "m", "args": {}})
        )));
        let mut f = Filter::new(&args(&[], &["n1"], &[], &[]));
        assert!(f.keep(&join));
        assert!(f.keep(&item(
            "call",
            Some("g"),
            &[],
            json!({"run": "r", "seq": 2, "dock": "a", "method": "m", "args": {}})
        )));
        assert!(!f.keep(&item(
            "call",
            Some("other"),
            &[],
            json!({"run": "r", "seq": 3, "dock": "a", "method": "m", "args": {}})
        )));
    }

    #[test]
    fn events_and_kinds_filter() {
        let mut f = Filter::new(&args(&[], &[], &["serverStarted"], &["call", "trigger"]));
        assert!(f.keep(&item("call", Some("g"), &[], json!({"run": "r", "seq": 1, "dock": "a", "method": "startServer", "trigger": "serverStarted", "args": {}}))));
        assert!(f.keep(&item(
            "trigger",
            None,
            &["n"],
            json!({"run": "r", "event": "serverStarted"})
        )));
        assert!(!f.keep(&item(
            "trigger",
            None,
            &["n"],
            json!({"run": "r", "event": "other"})
        )));
        assert!(!f.keep(&item(
            "record",
            None,
            &["n"],
            json!({"run": "r", "agent": "a", "data": {}})
        )));
    }

    #[test]
    fn lines_shorten_shipped_archives() {
        let long = "A".repeat(500);
        let line = format_item(
            &item(
                "call",
                None,
                &["n1"],
                json!({"run": "r", "seq": 4, "dock": "daemon", "method": "loadAgent", "args": {"name": "x", "archive": long}}),
            ),
            0.0,
        );
        assert!(
            line.contains(
                "call    r  -> nodes n1  daemon.loadAgent(name=\"x\", archive=\"<500 bytes>\") #4"
            ),
            "{line}"
        );
        let line = format_item(
            &item(
                "trigger",
                None,
                &["n1"],
                json!({"run": "r", "event": "e", "nodes": ["n1"], "retVal": true}),
            ),
            0.0,
        );
        assert!(
            line.ends_with("trigger r  <- n1  e {\"retVal\":true}"),
            "{line}"
        );
    }
}
