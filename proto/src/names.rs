//! Reserved names of the original MAGI, kept so that procedures and tools carry over.

/// The group of every node of a procedure; never built or torn down.
pub const ALL_GROUP: &str = "__ALL__";
/// The pseudo-agent whose events call node-agent methods on every node.
pub const DAEMON_AGENT: &str = "__DAEMON__";
/// The dock (receiver) of node-agent methods.
pub const DAEMON_DOCK: &str = "daemon";
/// The reserved target that ends a run (teardown follows).
pub const EXIT_TARGET: &str = "exit";

/// Node agent → orchestrator: a node joined a group.
pub const GROUP_BUILD_DONE: &str = "GroupBuildDone";
/// Node agent → orchestrator: a node left a group.
pub const GROUP_TEARDOWN_DONE: &str = "GroupTeardownDone";
/// Node agent → orchestrator: an agent is loaded and ready.
pub const AGENT_LOAD_DONE: &str = "AgentLoadDone";
/// Node agent → orchestrator: an agent is stopped.
pub const AGENT_UNLOAD_DONE: &str = "AgentUnloadDone";
/// Node agent → orchestrator: something failed (a method raised, an agent crashed, a load failed).
pub const RUNTIME_EXCEPTION: &str = "RuntimeException";
/// Node agent → orchestrator (MAGI-rs's own, not the original's): the node stopped the
/// run's agents and left its groups by itself, its dead-man switch having heard nothing
/// from the run for `silent` seconds (more than its limit, `limit`). Agents cannot send it.
pub const NODE_LEFT_RUN: &str = "NodeLeftRun";

/// Node-agent methods.
pub mod method {
    /// `joinGroup{group, nodes}`.
    pub const JOIN_GROUP: &str = "joinGroup";
    /// `leaveGroup{group, nodes}`.
    pub const LEAVE_GROUP: &str = "leaveGroup";
    /// `loadAgent{name, group, path|tardata|archive, execargs, ...}`.
    pub const LOAD_AGENT: &str = "loadAgent";
    /// `unloadAgent{name}`.
    pub const UNLOAD_AGENT: &str = "unloadAgent";
    /// `endRun{}`: forget everything of a run (used by teardown and the dead-man switch).
    pub const END_RUN: &str = "endRun";
    /// `runAlive{}`: the run's orchestrator is alive (the nodes' dead-man switch).
    pub const RUN_ALIVE: &str = "runAlive";
    /// `detachRun{}`: the orchestrator left on purpose; its kept agents are spared.
    pub const DETACH_RUN: &str = "detachRun";
}
