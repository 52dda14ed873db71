//! The node agent's own methods: join and leave groups, load and unload agents, end a run,
//! and the dead-man switch.

use std::sync::Arc;
use std::time::Duration;

use magi_proto::agent::ToAgent;
use magi_proto::daemon::{AgentName, GroupArgs, LoadAgent};
use magi_proto::{method, Call, DaemonCall, DAEMON_DOCK};
use serde_json::json;

use super::{obj, sanitize, AgentStart, Internal, LoadedAgent, Node};
use crate::manifest::Manifest;
use crate::process::{AgentProcess, SpawnOptions};

impl Node {
    pub(super) async fn on_daemon_call(&mut self, call: Call) {
        let run = call.run.clone();
        let called = call.method.clone();
        let daemon = match DaemonCall::take(call) {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(node = %self.config.name, run, "refused a call: {error}");
                return self
                    .exception(&run, DAEMON_DOCK, &called, &error, None)
                    .await;
            }
        };
        match daemon {
            DaemonCall::JoinGroup(GroupArgs { group, .. }) => {
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
            DaemonCall::LeaveGroup(GroupArgs { group, .. }) => {
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
            DaemonCall::LoadAgent(load) => self.load(&run, *load).await,
            DaemonCall::UnloadAgent(AgentName { name }) => self.unload(&run, &name),
            DaemonCall::EndRun {} => self.end_run(&run).await,
            DaemonCall::RunAlive(alive) => self.state(&run).heard_period(alive.alive_ms),
            DaemonCall::DetachRun {} => self.state(&run).detached = true,
        }
    }

    async fn load(&mut self, run: &str, mut load: LoadAgent) {
        let name = load.name.clone();
        let dock = load.dock().to_string();
        let state = self.state(run);
        state.heard_period(load.alive_ms);
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
        let code = match self.source_of(&mut load) {
            Ok(s) => s,
            Err(error) => return self.load_failed(run, &name, &error).await,
        };
        self.start_agent(AgentStart {
            run: run.to_string(),
            name,
            dock,
            execargs: load.execargs,
            code,
            restored: false,
        });
    }

    /// Unpacks an agent's code and starts its process off the dispatcher; the result comes
    /// back as [`Internal::Loaded`] or [`Internal::LoadFailed`].
    pub(super) fn start_agent(&mut self, agent: AgentStart) {
        let AgentStart {
            run,
            name,
            dock,
            execargs,
            code,
            restored,
        } = agent;
        let start = ToAgent::Start {
            name: name.clone(),
            node: self.config.name.clone(),
            run: run.clone(),
            execargs: execargs.clone(),
            address: self.config.address.clone(),
            hosts: self.config.hosts.clone(),
        };
        let log_dir = self
            .config
            .log_dir
            .clone()
            .unwrap_or_else(|| self.config.state_dir.join("logs"))
            .join(sanitize(&run));
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
            confinement: None,
        };
        let sandbox = self.config.sandbox.clone();
        let node = self.config.name.clone();
        let cache = self.cache.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let _ = std::fs::create_dir_all(&log_dir);
            let result = async {
                let (dir, pin) = code.unpack(&cache).await?;
                let manifest = Manifest::read(&dir).map_err(|e| e.to_string())?;
                let options = SpawnOptions {
                    confinement: match &sandbox {
                        Some(s) => Some(s.confine(&node, &name, &manifest.capabilities)?),
                        None => None,
                    },
                    ..options
                };
                let module = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                AgentProcess::spawn(&dir, &manifest, start, options)
                    .await
                    .map(|(process, events)| (process, events, pin, module))
                    .map_err(|e| e.to_string())
            }
            .await;
            let msg = match result {
                Ok((process, events, pin, module)) => Internal::Loaded {
                    agent: LoadedAgent {
                        run,
                        name,
                        dock,
                        execargs,
                        module,
                        restored,
                    },
                    process: Arc::new(process),
                    events,
                    pin,
                },
                Err(error) => Internal::LoadFailed {
                    run,
                    name,
                    error,
                    restored,
                },
            };
            let _ = tx.send(msg);
        });
    }

    /// A load that cannot finish: logged here, reported to the run as a `LoadError`.
    pub(super) async fn load_failed(&mut self, run: &str, name: &str, error: &str) {
        self.state(run).loading.remove(name);
        let error = format!(
            "cannot load agent {name} on node {}: {error}",
            self.config.name
        );
        tracing::warn!("{error}");
        self.exception(run, name, method::LOAD_AGENT, &error, Some("LoadError"))
            .await;
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

    pub(super) async fn end_run(&mut self, run: &str) {
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

    pub(super) async fn check_dead_man(&mut self) {
        // Silence heard while this node is cut off from the broker is nobody's fault: it
        // counts only from the moment the node's present connection came up, so after an
        // outage each orchestrator has a full dead-man interval to be heard from again.
        let Some(up) = self.port.up_since() else {
            return;
        };
        for s in self.runs.values_mut() {
            s.last_seen = s.last_seen.map(|seen| seen.max(up));
        }
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
        let dead: Vec<(String, Duration, Duration)> = self
            .runs
            .iter()
            .filter(|(_, s)| !s.detached && !s.agents.is_empty())
            .filter_map(|(r, s)| {
                let silent = s.last_seen?.elapsed();
                let limit = s.dead_man(limit);
                (silent > limit).then(|| (r.clone(), silent, limit))
            })
            .collect();
        for (run, silent, limit) in dead {
            tracing::warn!(node = %self.config.name, run, "the orchestrator of run {run} has been silent for more than {limit:?}: stopping its agents");
            self.end_run(&run).await;
            // Said to the run, which may only be slow (a call going out to 10,000 nodes
            // for a minute): it learns at once that this node left, instead of from a wait
            // that times out and a teardown that waits for answers that cannot come.
            let args = json!({"silent": silent.as_secs_f64(), "limit": limit.as_secs_f64()});
            self.trigger(&run, magi_proto::NODE_LEFT_RUN, obj(args))
                .await;
        }
    }
}
