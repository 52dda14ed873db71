//! The node agent's dispatcher: one task per node that acts on calls from the bus.
//!
//! It keeps each run apart: a run's groups, its agents and their pending calls. Calls
//! to the `daemon` dock are the node agent's own methods (join and leave groups, load
//! and unload agents, end a run); calls to any other dock go to the run's agent of that
//! name. Slow work (unpacking, starting and stopping agents) runs in tasks that report
//! back to the dispatcher, so one node never blocks on one agent.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use magi_bus::{NodeLink, NodePort};
use magi_proto::agent::{return_to_trigger_args, ToAgent};
use magi_proto::{method, Call, NodeStatus, Object, Record, RunMembership, Trigger, DAEMON_DOCK};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::archive::{AgentSource, ArchiveCache};
use crate::library::ModuleLibrary;
use crate::manifest::Manifest;
use crate::process::{write_python_helper, AgentEvent, AgentProcess, SpawnOptions};

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
        }
    }
}

/// A loaded agent.
struct Loaded {
    process: Arc<AgentProcess>,
    /// Call id → (method, trigger to send on return).
    pending: HashMap<u64, (String, Option<String>)>,
}

#[derive(Default)]
struct RunState {
    groups: BTreeSet<String>,
    agents: HashMap<String, Loaded>,
    /// Agents being loaded (a second load waits for the first's answer).
    loading: BTreeSet<String>,
    last_seen: Option<Instant>,
    /// The orchestrator left on purpose with `--keep-agents`: the dead-man switch spares it.
    detached: bool,
}

/// What background tasks report to the dispatcher.
enum Internal {
    Loaded {
        run: String,
        name: String,
        process: Arc<AgentProcess>,
        events: UnboundedReceiver<AgentEvent>,
    },
    LoadFailed {
        run: String,
        name: String,
        error: String,
    },
    Event {
        run: String,
        name: String,
        event: AgentEvent,
    },
    Unloaded {
        run: String,
        name: String,
    },
}

struct Node {
    config: NodeConfig,
    port: Arc<dyn NodePort>,
    cache: ArchiveCache,
    python_path: Option<PathBuf>,
    runs: HashMap<String, RunState>,
    internal: UnboundedSender<Internal>,
    next_call: u64,
}

/// Runs a node agent on a bus link until `shutdown` resolves or the bus goes away. At
/// the end every agent is stopped (its whole process group) and the node says goodbye.
pub async fn run(
    mut link: NodeLink,
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (internal_tx, mut internal_rx) = unbounded_channel();
    let cache = ArchiveCache::in_state_dir(&config.state_dir);
    let _ = cache.remove_stale_temp_dirs(Duration::from_secs(3600));
    let python_path = match write_python_helper(&config.state_dir.join("python")) {
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
    };
    node.announce(true).await;
    let mut heartbeat = tokio::time::interval(node.config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            call = link.calls.recv() => match call {
                Some(call) => node.on_call(call).await,
                None => break,
            },
            Some(msg) = internal_rx.recv() => node.on_internal(msg).await,
            _ = heartbeat.tick() => {
                node.check_dead_man().await;
                node.announce(true).await;
            }
            _ = &mut shutdown => break,
        }
    }
    let runs: Vec<String> = node.runs.keys().cloned().collect();
    for run in runs {
        node.end_run(&run).await;
    }
    node.announce(false).await;
}

impl Node {
    async fn announce(&self, alive: bool) {
        let runs = self
            .runs
            .iter()
            .map(|(run, s)| RunMembership {
                run: run.clone(),
                groups: s.groups.iter().cloned().collect(),
                agents: s.agents.keys().cloned().collect(),
            })
            .collect();
        let status = NodeStatus {
            node: self.config.name.clone(),
            pid: std::process::id(),
            time: magi_proto::epoch_now(),
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            runs,
            alive,
        };
        if let Err(e) = self.port.announce(status).await {
            tracing::debug!(node = %self.config.name, "announce failed: {e}");
        }
    }

    async fn trigger(&self, run: &str, event: &str, args: Object) {
        let t = Trigger {
            run: run.to_string(),
            event: event.to_string(),
            nodes: vec![self.config.name.clone()],
            args,
        };
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
        let mut args = obj(json!({"agent": agent, "func_name": method, "error": error}));
        if let Some(kind) = kind {
            args.insert("type".into(), json!(kind));
        }
        self.trigger(run, magi_proto::RUNTIME_EXCEPTION, args).await;
    }

    async fn on_call(&mut self, call: Call) {
        if let Some(nodes) = &call.nodes {
            if !nodes.contains(&self.config.name) {
                return;
            }
        }
        let state = self.runs.entry(call.run.clone()).or_default();
        state.last_seen = Some(Instant::now());
        if call.dock == DAEMON_DOCK {
            self.on_daemon_call(call).await;
        } else {
            self.on_agent_call(call).await;
        }
    }

    async fn on_daemon_call(&mut self, call: Call) {
        let run = call.run.clone();
        let arg = |k: &str| {
            call.args
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match call.method.as_str() {
            method::JOIN_GROUP => {
                let group = arg("group");
                match self.port.join(&run, &group).await {
                    Ok(()) => {
                        self.state(&run).groups.insert(group.clone());
                        self.trigger(
                            &run,
                            magi_proto::GROUP_BUILD_DONE,
                            obj(json!({"group": group})),
                        )
                        .await;
                    }
                    Err(e) => {
                        self.exception(
                            &run,
                            DAEMON_DOCK,
                            method::JOIN_GROUP,
                            &format!("cannot join group {group}: {e}"),
                            None,
                        )
                        .await
                    }
                }
            }
            method::LEAVE_GROUP => {
                let group = arg("group");
                if let Err(e) = self.port.leave(&run, &group).await {
                    tracing::warn!(node = %self.config.name, run, group, "leave failed: {e}");
                }
                self.state(&run).groups.remove(&group);
                self.trigger(
                    &run,
                    magi_proto::GROUP_TEARDOWN_DONE,
                    obj(json!({"group": group})),
                )
                .await;
            }
            method::LOAD_AGENT => self.load(&run, &call.args).await,
            method::UNLOAD_AGENT => self.unload(&run, &arg("name")),
            method::END_RUN => self.end_run(&run).await,
            "runAlive" => {}
            "detachRun" => self.state(&run).detached = true,
            other => {
                let error = format!("the node agent has no method {other}");
                self.exception(&run, DAEMON_DOCK, other, &error, None).await;
            }
        }
    }

    fn state(&mut self, run: &str) -> &mut RunState {
        self.runs.entry(run.to_string()).or_default()
    }

    async fn load(&mut self, run: &str, args: &Object) {
        let name = args
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let state = self.state(run);
        if state.agents.contains_key(&name) {
            self.trigger(
                run,
                magi_proto::AGENT_LOAD_DONE,
                obj(json!({"agent": name})),
            )
            .await;
            return;
        }
        if !state.loading.insert(name.clone()) {
            return; // the first load's answer will come
        }
        let source = match self.source_of(args) {
            Ok(s) => s,
            Err(error) => {
                self.state(run).loading.remove(&name);
                self.exception(run, &name, method::LOAD_AGENT, &error, Some("LoadError"))
                    .await;
                return;
            }
        };
        let execargs = match args.get("execargs") {
            Some(Value::Object(m)) => m.clone(),
            _ => Object::new(),
        };
        let start = ToAgent::Start {
            name: name.clone(),
            node: self.config.name.clone(),
            run: run.to_string(),
            execargs,
            address: self.config.address.clone(),
            hosts: self.config.hosts.clone(),
        };
        let log_dir = self
            .config
            .log_dir
            .clone()
            .unwrap_or_else(|| self.config.state_dir.join("logs"))
            .join(sanitize(run));
        let options = SpawnOptions {
            env: Vec::new(),
            ready_timeout: self.config.ready_timeout,
            stderr_log: Some(log_dir.join(format!(
                "{}.{}.stderr",
                self.config.name,
                sanitize(&name)
            ))),
            python_path: self.python_path.clone(),
            command_prefix: self.config.command_prefix.clone(),
        };
        let cache = self.cache.clone();
        let tx = self.internal.clone();
        let run = run.to_string();
        tokio::spawn(async move {
            let _ = std::fs::create_dir_all(&log_dir);
            let result = async {
                let dir = match source {
                    Code::Cached(dir) => dir,
                    Code::Shipped { b64, sha } => unpack_shipped(&cache, b64, sha).await?,
                    Code::Source(source) => {
                        cache
                            .unpack_async(source)
                            .await
                            .map_err(|e| e.to_string())?
                            .dir
                    }
                };
                let manifest = Manifest::read(&dir).map_err(|e| e.to_string())?;
                AgentProcess::spawn(&dir, &manifest, start, options)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            let msg = match result {
                Ok((process, events)) => Internal::Loaded {
                    run,
                    name,
                    process: Arc::new(process),
                    events,
                },
                Err(error) => Internal::LoadFailed { run, name, error },
            };
            let _ = tx.send(msg);
        });
    }

    /// Where a `loadAgent` call's code comes from: bytes shipped over the bus (the
    /// orchestrator's way; already in the cache when the same bytes came before), the
    /// original's `tardata`, or a `path` (resolved through the module library when it does
    /// not exist here). Nothing heavy happens here: decoding and unpacking are left to the
    /// load's own task, so the dispatcher (and its heartbeat) is never held up by them.
    fn source_of(&self, args: &Object) -> Result<Code, String> {
        let sha = match args.get("sha256") {
            Some(Value::String(sha))
                if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                Some(sha.clone())
            }
            _ => None,
        };
        if let Some(sha) = &sha {
            let dir = self.cache.root().join(sha);
            if dir.join(crate::manifest::MANIFEST_FILE).is_file() {
                return Ok(Code::Cached(dir));
            }
        }
        if let Some(Value::String(b64)) = args.get("archive") {
            return Ok(Code::Shipped {
                b64: b64.clone(),
                sha,
            });
        }
        if let Some(Value::String(t)) = args.get("tardata") {
            return Ok(Code::Source(AgentSource::TarData(t.clone())));
        }
        if let Some(Value::String(p)) = args.get("path") {
            let resolved = self.config.library.resolve(p).map_err(|e| e.to_string())?;
            if let Some(note) = resolved.note {
                tracing::info!(node = %self.config.name, "{note}");
            }
            return Ok(Code::Source(AgentSource::Path(resolved.path)));
        }
        Err("loadAgent names no code: give `path`, `tardata` or a shipped `archive`".into())
    }

    fn unload(&mut self, run: &str, name: &str) {
        let state = self.state(run);
        let loaded = state.agents.remove(name);
        let tx = self.internal.clone();
        let grace = self.config.stop_grace;
        let (run, name) = (run.to_string(), name.to_string());
        tokio::spawn(async move {
            if let Some(loaded) = loaded {
                loaded.process.stop(grace).await;
            }
            let _ = tx.send(Internal::Unloaded { run, name });
        });
    }

    async fn end_run(&mut self, run: &str) {
        let Some(state) = self.runs.remove(run) else {
            return;
        };
        for group in &state.groups {
            let _ = self.port.leave(run, group).await;
        }
        let grace = self.config.stop_grace;
        let mut stops = tokio::task::JoinSet::new();
        for loaded in state.agents.into_values() {
            stops.spawn(async move { loaded.process.stop(grace).await });
        }
        while stops.join_next().await.is_some() {}
    }

    async fn check_dead_man(&mut self) {
        // A run with nothing left here (its `runAlive` calls or a finished teardown leave an
        // empty entry) is forgotten once quiet, so a long-lived daemon neither grows nor
        // keeps announcing runs that ended.
        let quiet = self.config.dead_man.unwrap_or(Duration::from_secs(60));
        self.runs.retain(|_, s| {
            !(s.agents.is_empty()
                && s.groups.is_empty()
                && s.loading.is_empty()
                && s.last_seen.is_some_and(|t| t.elapsed() > quiet))
        });
        let Some(limit) = self.config.dead_man else {
            return;
        };
        let dead: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, s)| {
                !s.detached
                    && !s.agents.is_empty()
                    && s.last_seen.is_some_and(|t| t.elapsed() > limit)
            })
            .map(|(r, _)| r.clone())
            .collect();
        for run in dead {
            tracing::warn!(node = %self.config.name, run, "the orchestrator of run {run} has been silent for more than {limit:?}: stopping its agents");
            self.end_run(&run).await;
        }
    }

    async fn on_agent_call(&mut self, call: Call) {
        self.next_call += 1;
        let id = self.next_call;
        let run = call.run.clone();
        let Some(loaded) = self
            .runs
            .get_mut(&run)
            .and_then(|s| s.agents.get_mut(&call.dock))
        else {
            let error = format!(
                "agent {} is not loaded on node {}",
                call.dock, self.config.name
            );
            self.exception(&run, &call.dock, &call.method, &error, None)
                .await;
            return;
        };
        loaded
            .pending
            .insert(id, (call.method.clone(), call.trigger.clone()));
        if let Err(e) = loaded.process.call(id, &call.method, call.args) {
            loaded.pending.remove(&id);
            self.exception(&run, &call.dock, &call.method, &e.to_string(), None)
                .await;
        }
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Loaded {
                run,
                name,
                process,
                mut events,
            } => {
                let state = self.state(&run);
                state.loading.remove(&name);
                state.agents.insert(
                    name.clone(),
                    Loaded {
                        process,
                        pending: HashMap::new(),
                    },
                );
                let tx = self.internal.clone();
                let (r, n) = (run.clone(), name.clone());
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        if tx
                            .send(Internal::Event {
                                run: r.clone(),
                                name: n.clone(),
                                event,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                });
                self.trigger(
                    &run,
                    magi_proto::AGENT_LOAD_DONE,
                    obj(json!({"agent": name})),
                )
                .await;
            }
            Internal::LoadFailed { run, name, error } => {
                self.state(&run).loading.remove(&name);
                let error = format!(
                    "cannot load agent {name} on node {}: {error}",
                    self.config.name
                );
                tracing::warn!("{error}");
                self.exception(&run, &name, method::LOAD_AGENT, &error, Some("LoadError"))
                    .await;
            }
            Internal::Unloaded { run, name } => {
                self.trigger(
                    &run,
                    magi_proto::AGENT_UNLOAD_DONE,
                    obj(json!({"agent": name})),
                )
                .await;
            }
            Internal::Event { run, name, event } => self.on_agent_event(&run, &name, event).await,
        }
    }

    async fn on_agent_event(&mut self, run: &str, name: &str, event: AgentEvent) {
        let with_agent = |mut args: Object| {
            args.insert("agent".into(), json!(name));
            args
        };
        match event {
            AgentEvent::Returned { id, value } => {
                let Some((_, trigger)) = self.pending(run, name, id) else {
                    return;
                };
                if let Some(t) = trigger {
                    self.trigger(run, &t, with_agent(return_to_trigger_args(value)))
                        .await;
                }
            }
            AgentEvent::Failed {
                id: Some(id),
                error,
            } => {
                let method = self
                    .pending(run, name, id)
                    .map(|(m, _)| m)
                    .unwrap_or_else(|| "unknown".into());
                self.exception(run, name, &method, &error, None).await;
            }
            AgentEvent::Failed { id: None, error } => {
                self.exception(run, name, "unknown", &error, None).await
            }
            AgentEvent::Trigger { event, args } => {
                self.trigger(run, &event, with_agent(args)).await
            }
            AgentEvent::Record { data } => {
                let record = Record {
                    run: run.to_string(),
                    agent: name.to_string(),
                    host: self.config.name.clone(),
                    created: magi_proto::epoch_now(),
                    data,
                };
                if let Err(e) = self.port.send_record(record).await {
                    tracing::warn!(node = %self.config.name, run, agent = name, "record not delivered: {e}");
                }
            }
            AgentEvent::Log { level, message } => match level.as_str() {
                "error" | "warn" | "warning" => {
                    tracing::warn!(node = %self.config.name, agent = name, "{message}")
                }
                _ => tracing::info!(node = %self.config.name, agent = name, "{message}"),
            },
            AgentEvent::Garbage { line } => {
                let error =
                    format!("agent wrote a line that is not the agent protocol (ignored): {line}");
                self.exception(run, name, "unknown", &error, Some("MagiWarning"))
                    .await;
            }
            AgentEvent::Exited(exit) => {
                if exit.stopped {
                    return;
                }
                let Some(loaded) = self.runs.get_mut(run).and_then(|s| s.agents.remove(name))
                else {
                    return;
                };
                let methods: Vec<String> = exit
                    .pending
                    .iter()
                    .filter_map(|id| loaded.pending.get(id).map(|(m, _)| m.clone()))
                    .collect();
                let method = methods.first().cloned().unwrap_or_else(|| "unknown".into());
                let tail = exit
                    .stderr_tail
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ");
                let error = format!(
                    "agent process {exit}{}{}",
                    if methods.is_empty() {
                        String::new()
                    } else {
                        format!(" while running {}", methods.join(", "))
                    },
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; last stderr: {tail}")
                    }
                );
                self.exception(run, name, &method, &error, None).await;
            }
        }
    }

    fn pending(&mut self, run: &str, name: &str, id: u64) -> Option<(String, Option<String>)> {
        self.runs
            .get_mut(run)?
            .agents
            .get_mut(name)?
            .pending
            .remove(&id)
    }
}

/// A load's code, as found by `source_of`.
enum Code {
    /// Already unpacked in the cache: a shipped archive whose bytes came before.
    Cached(PathBuf),
    /// Shipped with the call: the archive in base64, and the SHA-256 the orchestrator gave.
    Shipped { b64: String, sha: Option<String> },
    /// A path or the original's `tardata`.
    Source(AgentSource),
}

/// Decodes and unpacks a shipped archive on a blocking thread. Node agents of one process
/// that share a cache (`magi-node --nodes N`) and get the same archive at once unpack it
/// once: the others wait for the first and then find it in the cache.
async fn unpack_shipped(
    cache: &ArchiveCache,
    b64: String,
    sha: Option<String>,
) -> Result<PathBuf, String> {
    let lock = sha.as_ref().map(|s| unpack_lock(&cache.root().join(s)));
    let _held = match &lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    if let Some(dir) = sha.as_ref().map(|s| cache.root().join(s)) {
        if dir.join(crate::manifest::MANIFEST_FILE).is_file() {
            return Ok(dir);
        }
    }
    let bytes =
        tokio::task::spawn_blocking(move || base64::engine::general_purpose::STANDARD.decode(b64))
            .await
            .map_err(|e| format!("decoding the shipped archive failed: {e}"))?
            .map_err(|e| format!("the shipped archive is not valid base64: {e}"))?;
    cache
        .unpack_async(AgentSource::Bytes(bytes))
        .await
        .map(|m| m.dir)
        .map_err(|e| e.to_string())
}

/// One lock per cache entry being unpacked in this process.
fn unpack_lock(entry: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<PathBuf, std::sync::Weak<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.retain(|_, l| l.strong_count() > 0);
    if let Some(lock) = locks.get(entry).and_then(std::sync::Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(entry.to_path_buf(), Arc::downgrade(&lock));
    lock
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
