//! The node agent's dispatcher: one task per node that acts on calls from the bus.
//!
//! It keeps each run apart: a run's groups, its agents and their pending calls. Calls
//! to the `daemon` dock are the node agent's own methods (join and leave groups, load
//! and unload agents, end a run: [`daemon`]); calls to any other dock go to the run's
//! agent with that dock ([`agents`]). Slow work (unpacking, starting and stopping agents) runs in tasks that report
//! back to the dispatcher, so one node never blocks on one agent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use magi_bus::{NodeLink, NodePort};
use magi_proto::{Call, NodeStatus, Object, RunMembership, Trigger, DAEMON_DOCK};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::archive::{ArchiveCache, Pin};
use crate::library::ModuleLibrary;
use crate::process::{write_python_helper, AgentEvent, AgentProcess};

mod agents;
mod code;
mod daemon;
mod files;
mod restore;

/// How a node agent is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name (as procedures' `groups` name it).
    pub name: String,
    /// The node's own address, given to agents (what servers bind to, clients send from).
    pub address: String,
    /// Node name → address, given to agents to reach peers by name.
    pub hosts: Object,
    /// Where the agent cache, the Python helper and logs live.
    pub state_dir: PathBuf,
    /// Where agents' stderr goes (`<log_dir>/<run>/<node>.<agent>.stderr`); default under `state_dir`.
    pub log_dir: Option<PathBuf>,
    /// Where module names are looked up when a `path` does not exist.
    pub library: ModuleLibrary,
    /// How often the node announces itself.
    pub heartbeat: Duration,
    /// Stop a run's agents when its orchestrator has been silent this long (`None`: never).
    pub dead_man: Option<Duration>,
    /// How long an agent has to become ready.
    pub ready_timeout: Duration,
    /// How long a stopping agent gets before its process group is killed.
    pub stop_grace: Duration,
    /// A command agents are started through (`ip netns exec NS` on a testbed); empty: none.
    pub command_prefix: Vec<String>,
    /// Who may use this node.
    pub policy: Policy,
    /// Largest size of the unpacked agent cache, in bytes; modules no agent runs are
    /// evicted to stay under it.
    pub cache_quota: u64,
    /// Run agents as an unprivileged user with granted capabilities only (`magi-node` as
    /// root); `None`: as this process's user.
    pub sandbox: Option<crate::privilege::Sandbox>,
    /// Save the node's runs under `state_dir` and set them up again when started after a
    /// crash (`magi-node`; not the embedded default, whose nodes live and die with `magi`).
    pub restore: bool,
}

/// Who may use a node: the broker users (orchestrators) allowed to call it. Their identity
/// is the one the broker proves (the `user_id` it validates); calls from anyone else are
/// refused with a `RuntimeException` and logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// The users allowed, and groups of them as `@name`; `None`: everyone who can reach
    /// the node's queue.
    pub allow: Option<Vec<String>>,
    /// Groups of users (`students` → `bob`, `carol`), named in `allow` as `@students`.
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// Whether a call from `sender` (`None`: the in-process bus, this very process) may run.
    pub fn admits(&self, sender: Option<&str>) -> Result<(), String> {
        let (Some(allow), Some(user)) = (&self.allow, sender) else {
            return Ok(());
        };
        let named = |entry: &String| match entry.strip_prefix('@') {
            Some(group) => self
                .groups
                .get(group)
                .is_some_and(|members| members.iter().any(|m| m == user)),
            None => entry == user,
        };
        if allow.iter().any(named) {
            return Ok(());
        }
        Err(format!(
            "broker user {user} is not among those its policy allows ({})",
            allow.join(", ")
        ))
    }

    /// Checks that every `@group` the policy allows is defined.
    pub fn check(&self) -> Result<(), String> {
        for entry in self.allow.iter().flatten() {
            if let Some(group) = entry.strip_prefix('@') {
                if !self.groups.contains_key(group) {
                    return Err(format!(
                        "--allow {entry}: no user group {group} is defined (define it with --user-group {group}=USER,USER or `user-group = {group}=USER,USER`)"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl NodeConfig {
    /// A configuration with the defaults for `name`.
    pub fn new(name: &str, state_dir: PathBuf) -> Self {
        NodeConfig {
            name: name.to_string(),
            address: "127.0.0.1".into(),
            hosts: Object::new(),
            state_dir,
            log_dir: None,
            library: ModuleLibrary::standard(&[]),
            heartbeat: Duration::from_secs(2),
            dead_man: None,
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(3),
            command_prefix: Vec::new(),
            policy: Policy::default(),
            cache_quota: crate::archive::DEFAULT_QUOTA,
            sandbox: None,
            restore: false,
        }
    }
}

/// A loaded agent.
struct Loaded {
    /// Where its calls are addressed (the AAL's `dock`; the name unless it says otherwise).
    dock: String,
    /// Its configuration and its code's cache entry, saved to restore it after a restart.
    execargs: Object,
    module: String,
    process: Arc<AgentProcess>,
    /// Keeps its code in the cache while it runs (dropped after the process has stopped).
    _pin: Pin,
    /// Agent call id → the call it carries out.
    pending: HashMap<u64, Pending>,
}

/// A call an agent is carrying out.
struct Pending {
    method: String,
    /// The trigger to send when it returns.
    trigger: Option<String>,
    /// The orchestrator's `seq` of the call, named in the reply.
    seq: u64,
}

#[derive(Default)]
struct RunState {
    groups: BTreeSet<String>,
    agents: HashMap<String, Loaded>,
    /// Agents being loaded (a second load waits for the first's answer).
    loading: BTreeSet<String>,
    last_seen: Option<Instant>,
    /// How often the run's orchestrator says it is alive (from its `loadAgent` and
    /// `runAlive` calls), when it said.
    alive_every: Option<Duration>,
    /// The orchestrator left on purpose with `--keep-agents`: the dead-man switch spares it.
    detached: bool,
}

/// A run's dead-man interval is at least this many of its `runAlive` periods, so that one
/// `runAlive` late by a whole period never stops a run's agents.
const DEAD_MAN_PERIODS: u32 = 3;
/// The longest `runAlive` period a node takes from a call: a run cannot keep its agents
/// alive for longer than `DEAD_MAN_PERIODS` of these without a word.
const LONGEST_ALIVE_PERIOD: Duration = Duration::from_secs(60);

impl RunState {
    /// Notes the run's `runAlive` period, as a call states it.
    fn heard_period(&mut self, alive_ms: Option<u64>) {
        if let Some(ms) = alive_ms.filter(|ms| *ms > 0) {
            self.alive_every = Some(Duration::from_millis(ms).min(LONGEST_ALIVE_PERIOD));
        }
    }

    /// How long the run's orchestrator may be silent before its agents are stopped: the
    /// node's own limit, or several of the run's periods when that is longer.
    fn dead_man(&self, own: Duration) -> Duration {
        match self.alive_every {
            Some(every) => own.max(every * DEAD_MAN_PERIODS),
            None => own,
        }
    }
}

/// What background tasks report to the dispatcher.
enum Internal {
    Loaded {
        agent: LoadedAgent,
        process: Arc<AgentProcess>,
        events: UnboundedReceiver<AgentEvent>,
        pin: Pin,
    },
    LoadFailed {
        run: String,
        name: String,
        error: String,
        /// The load was this node's own, restoring an agent after a restart.
        restored: bool,
    },
    Unloaded {
        run: String,
        name: String,
    },
}

/// An agent to start: asked by a `loadAgent`, or restored after the node restarted.
struct AgentStart {
    run: String,
    name: String,
    dock: String,
    execargs: Object,
    code: code::Code,
    /// Restoring after a restart: nobody waits for an `AgentLoadDone`.
    restored: bool,
}

/// What is kept of a started agent, enough to start it again after a restart.
struct LoadedAgent {
    run: String,
    name: String,
    dock: String,
    execargs: Object,
    /// Its code's cache entry (the SHA-256 of the module).
    module: String,
    restored: bool,
}

struct Node {
    config: NodeConfig,
    port: Arc<dyn NodePort>,
    cache: ArchiveCache,
    python_path: Option<PathBuf>,
    runs: HashMap<String, RunState>,
    internal: UnboundedSender<Internal>,
    next_call: u64,
    /// What was last written by [`Node::save`].
    saved: Option<Vec<u8>>,
}

/// Runs a node agent on a bus link until `shutdown` resolves or the bus goes away. At
/// the end every agent is stopped (its whole process group) and the node says goodbye.
pub async fn run(
    mut link: NodeLink,
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (internal_tx, mut internal_rx) = unbounded_channel();
    let cache = ArchiveCache::in_state_dir(&config.state_dir).with_quota(config.cache_quota);
    let _ = cache.remove_stale_temp_dirs(Duration::from_secs(3600));
    let python_path =
        match write_python_helper(&config.state_dir.join(crate::privilege::PYTHON_SUBDIR)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(node = %config.name, "cannot write the Python agent helper: {e}");
                None
            }
        };
    let mut node = Node {
        port: link.port.clone(),
        config,
        cache,
        python_path,
        runs: HashMap::new(),
        internal: internal_tx,
        next_call: 0,
        saved: None,
    };
    node.restore().await;
    node.announce(true).await;
    // Heartbeats go out from a task of their own, with what the dispatcher last showed, so
    // that no wait of the dispatcher's on the broker (a join, a confirm) delays them: at
    // N = 3000 joins held a dispatcher up for 19 s and its node was declared lost.
    let (shown, showing) = tokio::sync::watch::channel(node.memberships());
    let beats = heartbeat_runtime().spawn(heartbeats(
        node.port.clone(),
        node.config.name.clone(),
        node.config.heartbeat,
        showing,
    ));
    let mut tick = tokio::time::interval(node.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut agent_events = agents::AgentEvents::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            call = link.calls.recv() => match call {
                Some(call) => node.on_call(call).await,
                None => break,
            },
            (run, name, event) = agent_events.next(), if !agent_events.is_empty() => {
                node.on_agent_event(&run, &name, event).await
            }
            Some(msg) = internal_rx.recv() => {
                if let Some(events) = node.on_internal(msg).await {
                    agent_events.add(events);
                }
            }
            _ = tick.tick() => node.check_dead_man().await,
            _ = &mut shutdown => break,
        }
        node.save();
        shown.send_if_modified(|runs| {
            let now = node.memberships();
            let changed = *runs != now;
            *runs = now;
            changed
        });
    }
    beats.abort();
    let runs: Vec<String> = node.runs.keys().cloned().collect();
    for run in runs {
        node.end_run(&run).await;
    }
    node.save();
    node.announce(false).await;
}

/// Where heartbeats run: on a multi-threaded runtime (`magi-node`, a benchmark's fleet), a
/// runtime of their own on one thread. A node agent's own work waits in its runtime's
/// queues, and a heartbeat queued behind it came late: a fleet process of a thousand node
/// agents decoding a thousand 1.4 MB `loadAgent`s made its heartbeats 14 s late; the
/// kernel schedules this thread as soon as it wakes. A current-thread runtime (tests on
/// tokio's paused clock) keeps them.
fn heartbeat_runtime() -> tokio::runtime::Handle {
    use tokio::runtime::{Handle, RuntimeFlavor};
    static OWN: std::sync::OnceLock<Option<Handle>> = std::sync::OnceLock::new();
    let current = Handle::current();
    if current.runtime_flavor() != RuntimeFlavor::MultiThread {
        return current;
    }
    let own = OWN.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("magi-heartbeat".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .ok()?;
        Some(handle)
    });
    own.clone().unwrap_or(current)
}

/// Heartbeats every `period`: the node is alive, in the runs the dispatcher last showed.
/// One is not held back by the previous one's confirm (a broker busy delivering a large
/// archive to thousands of queues confirmed late, and the next heartbeat was made 17 s
/// after the last); while the broker holds a few, the next are left out.
///
/// The first comes a fraction of a period after the start (the announcement), a fraction
/// that the node's name decides: node agents started together (`magi-node --nodes N`, a
/// benchmark's fleet) spread their heartbeats over the period instead of sending them in
/// one burst (a thousand at once every 2 s in a fleet of 1000; no effect of the spread on
/// the benchmark's round trip was shown: `docs/benchmarks.md`).
async fn heartbeats(
    port: Arc<dyn NodePort>,
    node: String,
    period: Duration,
    runs: tokio::sync::watch::Receiver<Vec<RunMembership>>,
) {
    const IN_FLIGHT: usize = 4;
    let first = tokio::time::Instant::now() + period.mul_f64(phase(&node));
    let mut every = tokio::time::interval_at(first, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flying = tokio::task::JoinSet::new();
    loop {
        every.tick().await;
        while flying.try_join_next().is_some() {}
        if flying.len() >= IN_FLIGHT {
            continue;
        }
        let (port, node, runs) = (port.clone(), node.clone(), runs.borrow().clone());
        flying.spawn(async move { announce(&*port, &node, period, runs, true).await });
    }
}

/// Where in the period a node's heartbeats fall: a fraction in (0, 1] from its name.
fn phase(node: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    node.hash(&mut h);
    (h.finish() % 1000 + 1) as f64 / 1000.0
}

async fn announce(
    port: &dyn NodePort,
    node: &str,
    period: Duration,
    runs: Vec<RunMembership>,
    alive: bool,
) {
    let status = NodeStatus {
        node: node.to_string(),
        pid: std::process::id(),
        time: magi_proto::epoch_now(),
        heartbeat_ms: period.as_millis() as u64,
        runs,
        alive,
    };
    if let Err(e) = port.announce(status).await {
        tracing::debug!(node, "announce failed: {e}");
    }
}

impl Node {
    /// The node's part in each run, as its heartbeats tell it.
    fn memberships(&self) -> Vec<RunMembership> {
        self.runs
            .iter()
            .map(|(run, s)| RunMembership {
                run: run.clone(),
                groups: s.groups.iter().cloned().collect(),
                agents: s.agents.keys().cloned().collect(),
            })
            .collect()
    }

    async fn announce(&self, alive: bool) {
        let c = &self.config;
        announce(&*self.port, &c.name, c.heartbeat, self.memberships(), alive).await;
    }

    async fn trigger(&self, run: &str, event: &str, args: Object) {
        self.send_trigger(Trigger::from_node(run, event, &self.config.name, args))
            .await
    }

    async fn send_trigger(&self, t: Trigger) {
        let (run, event) = (t.run.clone(), t.event.clone());
        if let Err(e) = self.port.send_trigger(t).await {
            tracing::warn!(node = %self.config.name, run, event, "trigger not delivered: {e}");
        }
    }

    /// Reports a failure as the original did: a `RuntimeException` trigger.
    async fn exception(
        &self,
        run: &str,
        agent: &str,
        method: &str,
        error: &str,
        kind: Option<&str>,
    ) {
        self.send_trigger(exception(
            run,
            &self.config.name,
            agent,
            method,
            error,
            kind,
        ))
        .await
    }

    async fn on_call(&mut self, call: Call) {
        if let Some(nodes) = &call.nodes {
            if !nodes.contains(&self.config.name) {
                return;
            }
        }
        if let Err(refusal) = self.config.policy.admits(call.sender.as_deref()) {
            // A refused run's `runAlive` (every 2 s) and `detachRun` expect no answer: its
            // first call was refused and told so already; no log or trigger per repeat.
            let keepalive = [
                magi_proto::method::RUN_ALIVE,
                magi_proto::method::DETACH_RUN,
            ];
            if call.dock == DAEMON_DOCK && keepalive.contains(&call.method.as_str()) {
                tracing::debug!(run = %call.run, method = %call.method, "refused: {refusal}");
                return;
            }
            let error = format!("node {} refuses the call: {refusal}", self.config.name);
            tracing::warn!(run = %call.run, method = %call.method, "{error}");
            let t = exception(
                &call.run,
                &self.config.name,
                &call.dock,
                &call.method,
                &error,
                None,
            );
            return self.send_trigger(t.answering(call.seq)).await;
        }
        let state = self.runs.entry(call.run.clone()).or_default();
        state.last_seen = Some(Instant::now());
        if call.dock == DAEMON_DOCK {
            self.on_daemon_call(call).await;
        } else {
            self.on_agent_call(call).await;
        }
    }

    fn state(&mut self, run: &str) -> &mut RunState {
        self.runs.entry(run.to_string()).or_default()
    }
}

/// A `RuntimeException` trigger: the original's report of a failure.
fn exception(
    run: &str,
    node: &str,
    agent: &str,
    method: &str,
    error: &str,
    kind: Option<&str>,
) -> Trigger {
    let mut args = obj(json!({"agent": agent, "func_name": method, "error": error}));
    if let Some(kind) = kind {
        args.insert("type".into(), json!(kind));
    }
    Trigger::from_node(run, magi_proto::RUNTIME_EXCEPTION, node, args)
}

fn obj(v: Value) -> Object {
    v.as_object().cloned().unwrap_or_default()
}

/// A name safe as one path component.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stated_period_lengthens_the_dead_man_to_three_periods_up_to_a_bound() {
        let own = Duration::from_secs(10);
        let mut run = RunState::default();
        assert_eq!(run.dead_man(own), own, "nothing stated");
        run.heard_period(Some(3_000));
        assert_eq!(
            run.dead_man(own),
            own,
            "three periods are less than its own"
        );
        run.heard_period(Some(10_000));
        assert_eq!(run.dead_man(own), Duration::from_secs(30));
        run.heard_period(Some(0));
        assert_eq!(run.dead_man(own), Duration::from_secs(30), "0 is no period");
        run.heard_period(Some(u64::MAX));
        assert_eq!(run.dead_man(own), LONGEST_ALIVE_PERIOD * DEAD_MAN_PERIODS);
    }
}
