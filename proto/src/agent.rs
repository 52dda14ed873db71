//! The agent protocol: one JSON object per line between a node agent and an agent process.
//!
//! The node agent writes [`ToAgent`] lines on the agent's stdin and reads [`FromAgent`]
//! lines from its stdout; stderr is the agent's own log. The exchange is:
//!
//! 1. node → agent `{"kind":"start", ...}` with the agent's name, node, run, `execargs` and
//!    the host map; agent → node `{"kind":"ready"}` (or `{"kind":"error", ...}` to refuse).
//! 2. node → agent `{"kind":"call","id":7,"method":"startClient","args":{}}`; agent → node
//!    `{"kind":"return","id":7,"value":true}` or `{"kind":"error","id":7,"error":"..."}`.
//!    Calls may be answered out of order; an agent must not block its input on a call.
//! 3. At any time, agent → node: `{"kind":"trigger","event":"x","args":{...}}`,
//!    `{"kind":"record","data":{...}}`, `{"kind":"log","level":"info","message":"..."}`.
//! 4. node → agent `{"kind":"stop"}`: the agent exits within a few seconds, or its whole
//!    process group is killed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Object;

/// A line from the node agent to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ToAgent {
    /// First line: who the agent is and its initial configuration.
    Start {
        /// The agent's AAL name (`client_agent`).
        name: String,
        /// The node it runs on.
        node: String,
        /// The run it belongs to.
        run: String,
        /// The AAL's `execargs`, the initial configuration.
        execargs: Object,
        /// The node's own address (what a server binds to).
        address: String,
        /// Node name → address, for reaching peers by name (`servers: [servernode]`).
        hosts: Object,
    },
    /// Call a method.
    Call {
        /// Echoed in the answer.
        id: u64,
        /// Method name.
        method: String,
        /// Keyword arguments.
        args: Object,
    },
    /// Stop: clean up and exit.
    Stop,
}

/// A line from an agent to the node agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FromAgent {
    /// The agent has taken its configuration and is ready for calls.
    Ready,
    /// A call returned. `null` means "no value" (the trigger then carries `retVal: true`).
    Return {
        /// The call's id.
        id: u64,
        /// The returned value.
        #[serde(default)]
        value: Value,
    },
    /// A call failed, or (without `id`) the agent failed outside any call.
    Error {
        /// The call's id, if the error answers a call.
        #[serde(default)]
        id: Option<u64>,
        /// What went wrong, for a person.
        error: String,
    },
    /// A trigger the agent sends on its own.
    Trigger {
        /// Its name.
        event: String,
        /// Its arguments.
        #[serde(default)]
        args: Object,
    },
    /// A data record for the run's data layer.
    Record {
        /// The fields.
        data: Object,
    },
    /// A file the agent wrote, to be fetched into the run record (`files/<node>/<agent>/`).
    /// The node reads it only if it is a regular file the agent's own user owns.
    File {
        /// Where it is, on the node.
        path: String,
        /// Its name in the run record (default: the path's last component).
        #[serde(default)]
        name: Option<String>,
    },
    /// A log line.
    Log {
        /// `error`, `warn`, `info`, `debug`.
        #[serde(default = "info")]
        level: String,
        /// The text.
        message: String,
    },
}

fn info() -> String {
    "info".to_string()
}

/// Turns a method's return value into trigger arguments exactly as the original did
/// (magi-spec §4.5): a dict is merged as is (no `retVal`), nothing becomes
/// `retVal: true`, anything else `v` becomes `retVal: v`.
pub fn return_to_trigger_args(value: Value) -> Object {
    match value {
        Value::Object(map) => map,
        Value::Null => Object::from_iter([("retVal".to_string(), Value::Bool(true))]),
        other => Object::from_iter([("retVal".to_string(), other)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn returns_become_trigger_arguments_as_in_the_original() {
        assert_eq!(
            return_to_trigger_args(json!(null)),
            json!({"retVal": true}).as_object().unwrap().clone()
        );
        assert_eq!(
            return_to_trigger_args(json!(false)),
            json!({"retVal": false}).as_object().unwrap().clone()
        );
        assert_eq!(
            return_to_trigger_args(json!(75)),
            json!({"retVal": 75}).as_object().unwrap().clone()
        );
        assert_eq!(
            return_to_trigger_args(json!({"result": -1})),
            json!({"result": -1}).as_object().unwrap().clone()
        );
    }

    #[test]
    fn lines_parse_by_kind() {
        let l: FromAgent =
            serde_json::from_str(r#"{"kind":"return","id":3,"value":{"a":1}}"#).unwrap();
        assert_eq!(
            l,
            FromAgent::Return {
                id: 3,
                value: json!({"a": 1})
            }
        );
        let l: FromAgent = serde_json::from_str(r#"{"kind":"log","message":"hi"}"#).unwrap();
        assert_eq!(
            l,
            FromAgent::Log {
                level: "info".into(),
                message: "hi".into()
            }
        );
        let s = serde_json::to_string(&ToAgent::Stop).unwrap();
        assert_eq!(s, r#"{"kind":"stop"}"#);
    }
}
