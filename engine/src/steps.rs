//! Streams compiled into steps: the user's streams, and the setup (`initialization`) and
//! teardown (`exit`) streams the engine builds from the groups and agents.
//!
//! Setup, as decided in DESIGN §5: all groups are built at once (every `joinGroup` is
//! sent, then each group's `GroupBuildDone` is awaited from every member), then all
//! agents are loaded at once (every `loadAgent`, then each `AgentLoadDone`). Teardown
//! mirrors it: unload all agents, then leave all groups.

use magi_aal::{Agent, EventTrigger, Procedure, Target, TimeoutTrigger, Trigger};
use magi_proto::daemon::{AgentName, GroupArgs, LoadAgent};
use magi_proto::{DaemonCall, Object, DAEMON_DOCK};
use serde_json::{json, Value};

/// Name of the setup stream, as the original's console showed it.
pub const SETUP_STREAM: &str = "initialization";
/// Name of the teardown stream.
pub const TEARDOWN_STREAM: &str = "exit";

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Every member of a group of the run.
    Group(String),
    /// Each of these nodes, whether or not it is in a group yet.
    Nodes(Vec<String>),
}

/// One step of a running stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send a call.
    Send(Box<SendStep>),
    /// Wait for the first complete trigger of a list.
    Wait(Vec<Trigger>),
}

/// A call to send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendStep {
    /// Where to.
    pub dest: Dest,
    /// What the console shows as the destination (`__ALL__`, `server_group`).
    pub dest_label: String,
    /// Receiver on the node.
    pub dock: String,
    /// Method.
    pub method: String,
    /// Arguments.
    pub args: Object,
    /// Trigger the nodes send back.
    pub trigger: Option<String>,
    /// Only these nodes act on it.
    pub only_nodes: Option<Vec<String>>,
    /// The console shows `method name` rather than `method(args)` (setup and teardown).
    pub named: Option<String>,
}

/// Compiles a user stream.
pub fn user_steps(procedure: &Procedure, stream: &magi_aal::Stream) -> Vec<Step> {
    stream
        .entries
        .iter()
        .map(|entry| match entry {
            magi_aal::Entry::Event(e) => {
                let (dest, dest_label, dock) = match procedure.agent(&e.agent) {
                    Some(agent) => agent_dest(procedure, agent),
                    // Validation rejects unknown agents; an empty group reaches nobody
                    // and is reported as undeliverable rather than panicking here.
                    None => (Dest::Nodes(Vec::new()), e.agent.clone(), e.agent.clone()),
                };
                Step::Send(Box::new(SendStep {
                    dest,
                    dest_label,
                    dock,
                    method: e.method.clone(),
                    args: e.args.clone(),
                    trigger: e.trigger.clone(),
                    only_nodes: None,
                    named: None,
                }))
            }
            magi_aal::Entry::Wait(w) => Step::Wait(w.triggers.clone()),
        })
        .collect()
}

/// Where an agent's events go: its group (or every node for `__ALL__`) and its dock.
fn agent_dest(procedure: &Procedure, agent: &Agent) -> (Dest, String, String) {
    let dest = if agent.group == magi_proto::ALL_GROUP {
        Dest::Nodes(procedure.all_nodes())
    } else {
        Dest::Group(agent.group.clone())
    };
    (dest, agent.group.clone(), agent.dock.clone())
}

fn obj(v: Value) -> Object {
    v.as_object().cloned().unwrap_or_default()
}

fn done_wait(
    event: &str,
    key: &str,
    name: &str,
    nodes: &[String],
    timeout_ms: u64,
    target: Option<Target>,
) -> Step {
    Step::Wait(vec![
        Trigger::Event(EventTrigger {
            event: event.to_string(),
            nodes: nodes.to_vec(),
            count: nodes.len().max(1),
            args: obj(json!({ key: name })),
            target: None,
            span: Default::default(),
        }),
        Trigger::Timeout(TimeoutTrigger {
            timeout_ms,
            target,
            span: Default::default(),
        }),
    ])
}

fn daemon_call(
    dest: Dest,
    dest_label: &str,
    call: DaemonCall,
    name: &str,
    only: Option<Vec<String>>,
) -> Step {
    let (method, args) = call.to_wire();
    Step::Send(Box::new(SendStep {
        dest,
        dest_label: dest_label.to_string(),
        dock: DAEMON_DOCK.to_string(),
        method,
        args,
        trigger: None,
        only_nodes: only,
        named: Some(name.to_string()),
    }))
}

/// `loadAgent` for an agent.
fn load_agent(agent: &Agent) -> DaemonCall {
    let (path, tardata) = match &agent.source {
        Some(magi_aal::AgentSource::Path(p)) => (Some(p.clone()), None),
        Some(magi_aal::AgentSource::Tardata(t)) => (None, Some(t.clone())),
        None => (None, None),
    };
    DaemonCall::LoadAgent(Box::new(LoadAgent {
        name: agent.name.clone(),
        group: agent.group.clone(),
        dock: Some(agent.dock.clone()),
        execargs: agent.execargs.clone(),
        path,
        tardata,
        code: agent.code.clone(),
        ..Default::default()
    }))
}

/// `unloadAgent` for an agent.
fn unload_agent(agent: &Agent) -> DaemonCall {
    DaemonCall::UnloadAgent(AgentName {
        name: agent.name.clone(),
    })
}

/// The nodes a phase's wait for `key: name` (`group: g`, `agent: a`) waits for, out of
/// the nodes it concerns. Setup waits for all of them; teardown only for those that setup
/// reached (a node that never joined a group or loaded an agent has nothing to undo, and
/// one that refused the run's calls would never answer).
pub type Expect<'a> = &'a dyn Fn(&str, &str, &[String]) -> Vec<String>;

/// Every node: what setup waits for.
fn every(_key: &str, _name: &str, nodes: &[String]) -> Vec<String> {
    nodes.to_vec()
}

/// Every group's call (`joinGroup`/`leaveGroup`, to its members), then a wait for each
/// group's `done` trigger from the members `expect` names (no wait when it names none).
fn group_phase(
    procedure: &Procedure,
    make: fn(GroupArgs) -> DaemonCall,
    done: &str,
    timeout_ms: u64,
    on_timeout: Option<Target>,
    expect: Expect,
) -> Vec<Step> {
    // Each member gets a message of its own (`Dest::Nodes`), so the call names no members:
    // with the member list in every member's message, joining a group of 10,000 nodes was
    // 10,000 messages of 160 KB, 1.6 GB, which the orchestrator, the broker and the nodes
    // all had to hold.
    let calls = procedure.groups.iter().map(|g| {
        let call = make(GroupArgs {
            group: g.name.clone(),
            nodes: Vec::new(),
        });
        daemon_call(
            Dest::Nodes(g.nodes.clone()),
            magi_proto::ALL_GROUP,
            call,
            &g.name,
            None,
        )
    });
    let waits = procedure.groups.iter().filter_map(|g| {
        let nodes = expect("group", &g.name, &g.nodes);
        (!nodes.is_empty()).then(|| {
            done_wait(
                done,
                "group",
                &g.name,
                &nodes,
                timeout_ms,
                on_timeout.clone(),
            )
        })
    });
    calls.chain(waits).collect()
}

/// Every loadable agent's call (`loadAgent`/`unloadAgent`, to its group), then a wait for
/// each agent's `done` trigger from every node of its group (the agent's `loadTimeout`).
fn agent_phase(
    procedure: &Procedure,
    make: fn(&Agent) -> DaemonCall,
    done: &str,
    on_timeout: Option<Target>,
    expect: Expect,
) -> Vec<Step> {
    let calls = procedure.loadable_agents().map(|a| {
        daemon_call(
            Dest::Group(a.group.clone()),
            &a.group,
            make(a),
            &a.name,
            None,
        )
    });
    let waits = procedure.loadable_agents().filter_map(|a| {
        let nodes = expect("agent", &a.name, &procedure.nodes_of(&a.group));
        (!nodes.is_empty()).then(|| {
            done_wait(
                done,
                "agent",
                &a.name,
                &nodes,
                a.load_timeout_ms,
                on_timeout.clone(),
            )
        })
    });
    calls.chain(waits).collect()
}

/// The setup stream: build all groups, then load all agents. A timeout ends the run.
pub fn setup_steps(procedure: &Procedure, group_timeout_ms: u64) -> Vec<Step> {
    let mut steps = group_phase(
        procedure,
        DaemonCall::JoinGroup,
        magi_proto::GROUP_BUILD_DONE,
        group_timeout_ms,
        Some(Target::Exit),
        &every,
    );
    steps.extend(agent_phase(
        procedure,
        load_agent,
        magi_proto::AGENT_LOAD_DONE,
        Some(Target::Exit),
        &every,
    ));
    steps
}

/// The teardown stream: unload all agents, then leave all groups, waiting for the nodes
/// `reached` names (those setup reached). A timeout only moves on (a lost node must not
/// keep the others' agents running).
pub fn teardown_steps(procedure: &Procedure, group_timeout_ms: u64, reached: Expect) -> Vec<Step> {
    let mut steps = agent_phase(
        procedure,
        unload_agent,
        magi_proto::AGENT_UNLOAD_DONE,
        None,
        reached,
    );
    steps.extend(group_phase(
        procedure,
        DaemonCall::LeaveGroup,
        magi_proto::GROUP_TEARDOWN_DONE,
        group_timeout_ms,
        None,
        reached,
    ));
    steps
}
