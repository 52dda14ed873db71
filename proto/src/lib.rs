//! # magi-proto: the messages every part of MAGI-rs agrees on
//!
//! No I/O lives here. The orchestrator, the node agent, both bus transports, taps and
//! agents exchange these types, always encoded as JSON:
//!
//! - [`Call`]: the orchestrator asks every node of a group (or one node) to run a method,
//!   either of the node agent itself (dock [`DAEMON_DOCK`]: `joinGroup`, `loadAgent`, ...)
//!   or of a loaded agent (dock = the agent's name in the AAL).
//! - [`Trigger`]: a node reports an event back to the orchestrator of a run
//!   (`serverStarted`, `AgentLoadDone`, `RuntimeException`, ...).
//! - [`Record`]: a data record an agent produced (bytes per interval, one HTTP request ...).
//! - [`NodeStatus`]: a node agent's announcement and heartbeat.
//! - [`DaemonCall`]: the node agent's own methods (`joinGroup`, `loadAgent`, ...), typed.
//! - [`agent`]: the line-delimited JSON protocol between a node agent and an agent process.

pub mod agent;
pub mod daemon;
pub mod file;
pub mod names;

pub use daemon::DaemonCall;
pub use names::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// JSON object, the shape of arguments, match arguments and records.
pub type Object = Map<String, Value>;

/// A method call sent by an orchestrator to the members of a group, or to named nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The run this call belongs to; node agents keep each run's groups and agents apart.
    pub run: String,
    /// Orchestrator-assigned sequence number, unique within the run (for records and taps).
    pub seq: u64,
    /// Receiver on the node: [`DAEMON_DOCK`] or the agent's name.
    pub dock: String,
    /// Method name.
    pub method: String,
    /// Keyword arguments.
    #[serde(default)]
    pub args: Object,
    /// Name of the trigger the node sends back when the method returns. Without it the
    /// return value is discarded, as in the original (failures are still reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// When set, only these nodes act on the call (the original's `joinGroup(nodes=...)`
    /// pattern); the others ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// Who sent it, as the transport proves it (over RabbitMQ the broker user, from the
    /// `user_id` property the broker validates); `None` on the in-process bus. Never read
    /// from the message body, so no one can claim another's name in it.
    #[serde(skip)]
    pub sender: Option<String>,
}

/// A trigger: something a node (or an external tool) reports to a run's orchestrator.
///
/// On the wire it is one flat JSON object, as in the original: `event`, `nodes`, and every
/// other key is an argument a wait can match on (`retVal`, `agent`, `group`, `result` ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The run it is for.
    pub run: String,
    /// The trigger's name.
    pub event: String,
    /// The nodes it vouches for (normally the one sending it).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The call this trigger answers (its `seq`), when it is a method's reply; `None` for
    /// a trigger an agent sends on its own. A reply counts only for the wait of the call it
    /// answers, never for a later call that fires the same trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    /// Every other key.
    #[serde(flatten)]
    pub args: Object,
}

impl Trigger {
    /// A trigger from one node with the given arguments.
    pub fn from_node(run: &str, event: &str, node: &str, args: Object) -> Self {
        Trigger {
            run: run.to_string(),
            event: event.to_string(),
            nodes: vec![node.to_string()],
            call: None,
            args,
        }
    }

    /// Builder: marks it as the reply to call `seq`.
    pub fn answering(mut self, seq: u64) -> Self {
        self.call = Some(seq);
        self
    }

    /// Builder: adds one argument.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.args.insert(key.to_string(), value.into());
        self
    }
}

/// One data record produced by an agent, stamped by the node agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The run it belongs to.
    pub run: String,
    /// The AAL agent name (`monitor_agent`).
    pub agent: String,
    /// The node that produced it.
    pub host: String,
    /// Seconds since the Unix epoch, as a float (the original's `created`).
    pub created: f64,
    /// The agent's fields.
    pub data: Object,
}

/// What a node agent announces about itself, at start and then at every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Process id of the node agent.
    pub pid: u32,
    /// Seconds since the Unix epoch when this status was made.
    pub time: f64,
    /// Heartbeat period in milliseconds: a node silent for a few of these is lost.
    pub heartbeat_ms: u64,
    /// Per run: the groups this node is in and the agents it runs.
    #[serde(default)]
    pub runs: Vec<RunMembership>,
    /// False in the last message a node sends when it shuts down cleanly.
    #[serde(default = "yes")]
    pub alive: bool,
}

fn yes() -> bool {
    true
}

/// A node's part in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMembership {
    /// The run.
    pub run: String,
    /// Groups joined.
    pub groups: Vec<String>,
    /// Agents loaded.
    pub agents: Vec<String>,
}

/// Seconds since the Unix epoch, as the original's records carry them.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether output to a stream may be coloured: only on a terminal, never with `--no-color`
/// or when `NO_COLOR` is set to anything (<https://no-color.org>).
pub fn color_allowed(terminal: bool, no_color_flag: bool) -> bool {
    terminal && !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A list of node names for a message: all of them up to `max`, else the first `max` and
/// how many more (a thousand names on one line tell nobody anything).
pub fn some_names(names: &[String], max: usize) -> String {
    if names.len() <= max {
        return names.join(", ");
    }
    format!("{} and {} more", names[..max].join(", "), names.len() - max)
}

/// A broker or database URL with its password replaced by `***`, for messages and logs
/// (`amqp://alice:secret@h/` → `amqp://alice:***@h/`). A list of URLs separated by commas
/// (a broker option naming a cluster's nodes) has every password replaced.
pub fn redact_url(url: &str) -> String {
    // A comma starts another URL where a scheme and `://` follow it.
    let starts_url = |after: &str| {
        after.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
        })
    };
    let mut out = String::with_capacity(url.len());
    let mut start = 0;
    for (i, _) in url.match_indices(',') {
        if starts_url(&url[i + 1..]) {
            out.push_str(&redact_one(&url[start..i]));
            out.push(',');
            start = i + 1;
        }
    }
    out.push_str(&redact_one(&url[start..]));
    out
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.find('@') {
        Some(i) if !rest[..i].contains('/') => (&rest[..i], &rest[i..]),
        _ => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_list_of_names_is_cut_with_a_count() {
        let names: Vec<String> = (0..1000).map(|i| format!("n{i:03}")).collect();
        assert_eq!(some_names(&names[..2], 10), "n000, n001");
        assert_eq!(some_names(&names[..10], 10).matches(", ").count(), 9);
        assert_eq!(some_names(&names, 3), "n000, n001, n002 and 997 more");
    }

    use super::*;

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(
            redact_url("amqp://bob:secret@h:5672/%2f"),
            "amqp://bob:***@h:5672/%2f"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("amqp://h"), "amqp://h");
    }

    #[test]
    fn every_password_of_a_broker_list_is_hidden() {
        assert_eq!(
            redact_url("amqp://h1/%2f,amqp://bob:s1@h2/%2f,amqps://bob:s2@h3/%2f"),
            "amqp://h1/%2f,amqp://bob:***@h2/%2f,amqps://bob:***@h3/%2f"
        );
        assert_eq!(
            redact_url("amqp://bob:s,ecret@h1:1,h2:2/%2f"),
            "amqp://bob:***@h1:1,h2:2/%2f"
        );
    }

    #[test]
    fn trigger_is_one_flat_object_on_the_wire() {
        let t = Trigger::from_node("r1", "serverStarted", "servernode", Object::new())
            .with("retVal", true);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"run": "r1", "event": "serverStarted", "nodes": ["servernode"], "retVal": true})
        );
        let back: Trigger = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
    }
}
