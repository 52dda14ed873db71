//! The node agent's own methods (dock [`DAEMON_DOCK`](crate::DAEMON_DOCK)), typed once.
//!
//! The orchestrator builds a [`DaemonCall`] and turns it into a [`Call`]'s `method` and
//! `args` ([`DaemonCall::to_wire`]); the node agent, taps and the bus read a call back with
//! [`DaemonCall::from_call`], which says plainly what is wrong with a malformed one (a
//! `joinGroup` without `group` is refused, never read as the group `""`). Unknown keys are
//! ignored, as the original's procedures carry keys of their own.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Call, Object};

/// A call to the node agent itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "args", rename_all = "camelCase")]
pub enum DaemonCall {
    /// Join a group of the run; the node answers `GroupBuildDone{group}`.
    JoinGroup(GroupArgs),
    /// Leave a group of the run; the node answers `GroupTeardownDone{group}`.
    LeaveGroup(GroupArgs),
    /// Load an agent; the node answers `AgentLoadDone{agent}` or a `RuntimeException`.
    LoadAgent(Box<LoadAgent>),
    /// Stop an agent; the node answers `AgentUnloadDone{agent}`.
    UnloadAgent(AgentName),
    /// Forget everything of the run (teardown's last word, the dead-man switch).
    EndRun {},
    /// The run's orchestrator is alive (feeds the node's dead-man switch).
    RunAlive(Alive),
    /// The orchestrator left on purpose (`--keep-agents`): spare the run's agents.
    DetachRun {},
}

/// Arguments of `runAlive`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alive {
    /// How often the orchestrator tells its nodes it is alive, in ms: a node gives the run a
    /// dead-man interval of three such periods when that is longer than its own, so a large
    /// run's longer period does not stop its agents. Absent from older orchestrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive_ms: Option<u64>,
}

/// Arguments of `joinGroup` and `leaveGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupArgs {
    /// The group.
    pub group: String,
    /// Its members, as the original sends them. MAGI-rs sends none (each member gets a
    /// message of its own, and the list in each made the calls O(N²) bytes); read when
    /// given, ignored by the node agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// Arguments of `unloadAgent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentName {
    /// The agent's AAL name.
    pub name: String,
}

/// Arguments of `loadAgent`. Where the code comes from, in the order a node looks:
/// its cache (`sha256`), the shipped `archive`, the original's `tardata`, a `path`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadAgent {
    /// The agent's AAL name.
    pub name: String,
    /// The group it is loaded on.
    #[serde(default)]
    pub group: String,
    /// Where its calls are addressed (the AAL's `dock`, by default the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dock: Option<String>,
    /// Its initial configuration.
    #[serde(default)]
    pub execargs: Object,
    /// A module path (resolved through the node's module library when it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The original's inline tarball (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tardata: Option<String>,
    /// The archive shipped by the orchestrator (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// SHA-256 of the shipped archive (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The original's `code` (the module's directory name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The run's `runAlive` period in ms, as in [`Alive`]: the node knows it from the
    /// moment the run has an agent there, before the first `runAlive` comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive_ms: Option<u64>,
}

impl LoadAgent {
    /// The dock its calls are addressed to.
    pub fn dock(&self) -> &str {
        self.dock.as_deref().unwrap_or(&self.name)
    }
}

impl DaemonCall {
    /// Reads a call to the `daemon` dock. The error says which method and what is wrong.
    pub fn from_call(call: &Call) -> Result<DaemonCall, String> {
        Self::parse(&call.method, call.args.clone())
    }

    /// [`from_call`](Self::from_call), taking the call: a shipped archive (a megabyte and
    /// more) is moved into the [`LoadAgent`], not copied.
    pub fn take(call: Call) -> Result<DaemonCall, String> {
        Self::parse(&call.method, call.args)
    }

    /// Reads a method and its arguments.
    pub fn parse(method: &str, args: Object) -> Result<DaemonCall, String> {
        let parsed: DaemonCall =
            serde_json::from_value(json!({"method": method, "args": Value::Object(args)}))
                .map_err(|e| {
                    if e.to_string().starts_with("unknown variant") {
                        format!("the node agent has no method {method}")
                    } else {
                        format!("{method}: {e}")
                    }
                })?;
        parsed.check()?;
        Ok(parsed)
    }

    /// The method name and arguments, as a [`Call`] carries them.
    pub fn to_wire(&self) -> (String, Object) {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => {
                let method = match m.remove("method") {
                    Some(Value::String(s)) => s,
                    _ => String::new(),
                };
                let args = match m.remove("args") {
                    Some(Value::Object(a)) => a,
                    _ => Object::new(),
                };
                (method, args)
            }
            // Serialising these plain structs cannot fail.
            _ => (String::new(), Object::new()),
        }
    }

    /// A call of `run` to the node agents' dock, expecting no answer (`seq` 0, no
    /// trigger), addressed by where it is published.
    pub fn call(&self, run: &str) -> Call {
        let (method, args) = self.to_wire();
        Call {
            run: run.to_string(),
            seq: 0,
            dock: crate::DAEMON_DOCK.into(),
            method,
            args,
            trigger: None,
            nodes: None,
            sender: None,
        }
    }

    /// The method name.
    pub fn method(&self) -> &'static str {
        match self {
            DaemonCall::JoinGroup(_) => crate::method::JOIN_GROUP,
            DaemonCall::LeaveGroup(_) => crate::method::LEAVE_GROUP,
            DaemonCall::LoadAgent(_) => crate::method::LOAD_AGENT,
            DaemonCall::UnloadAgent(_) => crate::method::UNLOAD_AGENT,
            DaemonCall::EndRun {} => crate::method::END_RUN,
            DaemonCall::RunAlive(_) => crate::method::RUN_ALIVE,
            DaemonCall::DetachRun {} => crate::method::DETACH_RUN,
        }
    }

    fn check(&self) -> Result<(), String> {
        let method = self.method();
        let named = |what: &str, v: &str| {
            if v.is_empty() {
                Err(format!("{method}: `{what}` is empty"))
            } else {
                Ok(())
            }
        };
        match self {
            DaemonCall::JoinGroup(g) | DaemonCall::LeaveGroup(g) => named("group", &g.group),
            DaemonCall::UnloadAgent(a) => named("name", &a.name),
            DaemonCall::LoadAgent(l) => {
                named("name", &l.name)?;
                if let Some(sha) = &l.sha256 {
                    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(format!("{method}: `sha256` is not 64 hex digits"));
                    }
                }
                Ok(())
            }
            DaemonCall::EndRun {} | DaemonCall::RunAlive(_) | DaemonCall::DetachRun {} => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn every_daemon_call_goes_through_the_wire_and_back() {
        let calls = [
            DaemonCall::JoinGroup(GroupArgs {
                group: "g".into(),
                nodes: vec!["n1".into()],
            }),
            DaemonCall::LeaveGroup(GroupArgs {
                group: "g".into(),
                nodes: vec![],
            }),
            DaemonCall::LoadAgent(Box::new(LoadAgent {
                name: "a".into(),
                group: "g".into(),
                dock: Some("d".into()),
                path: Some("/x".into()),
                ..Default::default()
            })),
            DaemonCall::UnloadAgent(AgentName { name: "a".into() }),
            DaemonCall::EndRun {},
            DaemonCall::RunAlive(Alive::default()),
            DaemonCall::RunAlive(Alive {
                alive_ms: Some(10_000),
            }),
            DaemonCall::DetachRun {},
        ];
        for c in calls {
            let (method, a) = c.to_wire();
            assert_eq!(method, c.method());
            assert_eq!(DaemonCall::parse(&method, a.clone()), Ok(c));
        }
    }

    #[test]
    fn a_join_without_group_is_refused_not_read_as_an_empty_group() {
        let e = DaemonCall::parse("joinGroup", args(json!({"nodes": ["n1"]}))).unwrap_err();
        assert!(e.contains("joinGroup") && e.contains("group"), "{e}");
        let e = DaemonCall::parse("joinGroup", args(json!({"group": ""}))).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = DaemonCall::parse("joinGroup", args(json!({"group": 7}))).unwrap_err();
        assert!(e.contains("joinGroup"), "{e}");
    }

    #[test]
    fn unknown_methods_and_bad_hashes_are_named() {
        let e = DaemonCall::parse("reboot", Object::new()).unwrap_err();
        assert_eq!(e, "the node agent has no method reboot");
        let e = DaemonCall::parse("loadAgent", args(json!({"name": "a", "sha256": "../x"})))
            .unwrap_err();
        assert!(e.contains("sha256"), "{e}");
    }

    #[test]
    fn the_originals_extra_keys_are_ignored_and_the_dock_defaults_to_the_name() {
        let c = DaemonCall::parse(
            "loadAgent",
            args(json!({"name": "a", "group": "g", "idl": "x", "execargs": {"k": 1}})),
        )
        .unwrap();
        let DaemonCall::LoadAgent(l) = c else {
            panic!("{c:?}")
        };
        assert_eq!(l.dock(), "a");
        assert_eq!(l.execargs.get("k"), Some(&json!(1)));
    }
}
