//! A node agent that is killed and started again picks its runs up where they were.
//!
//! After every change to its runs (a group joined or left, an agent loaded, unloaded or
//! gone), the node writes what it would need to set them up again to
//! `<state_dir>/runs/<node>.json`: each run's groups, and each agent's name, dock,
//! configuration and code (the cache entry of its module). When `magi-node` starts again
//! after a crash, a `kill -9` or a reboot, it rejoins those groups and starts those agents
//! afresh from the cache, without an `AgentLoadDone` (nobody asked), so the run's next
//! calls find them; the calls sent meanwhile waited in the node's queue. What an agent held
//! in memory is gone: it starts with its initial configuration. A restored run whose
//! orchestrator has gone meanwhile ends by the dead-man switch, as any other. A clean stop
//! (SIGTERM) stops every agent and leaves nothing to restore.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use magi_proto::Object;
use serde::{Deserialize, Serialize};

use super::code::Code;
use super::{sanitize, AgentStart, Node};

/// What is saved of a node's runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    runs: BTreeMap<String, SavedRun>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedRun {
    groups: BTreeSet<String>,
    agents: BTreeMap<String, SavedAgent>,
    /// The run's `runAlive` period in ms, when its orchestrator said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alive_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedAgent {
    dock: String,
    /// The module's cache entry (its SHA-256).
    module: String,
    execargs: Object,
    /// The process group it ran in, killed if anything of it survived the node.
    pgid: i32,
}

impl Node {
    fn saved_path(&self) -> PathBuf {
        self.config
            .state_dir
            .join("runs")
            .join(format!("{}.json", sanitize(&self.config.name)))
    }

    /// Writes the node's runs, when they changed since the last write.
    pub(super) fn save(&mut self) {
        if !self.config.restore {
            return;
        }
        let saved = Saved {
            runs: self
                .runs
                .iter()
                .filter(|(_, s)| !s.groups.is_empty() || !s.agents.is_empty())
                .map(|(run, s)| {
                    let agents = s
                        .agents
                        .iter()
                        .map(|(name, l)| {
                            let agent = SavedAgent {
                                dock: l.dock.clone(),
                                module: l.module.clone(),
                                execargs: l.execargs.clone(),
                                pgid: i32::try_from(l.process.pid()).unwrap_or(0),
                            };
                            (name.clone(), agent)
                        })
                        .collect();
                    let run_state = SavedRun {
                        groups: s.groups.clone(),
                        agents,
                        alive_ms: s.alive_every.map(|d| d.as_millis() as u64),
                    };
                    (run.clone(), run_state)
                })
                .collect(),
        };
        let Ok(bytes) = serde_json::to_vec_pretty(&saved) else {
            return;
        };
        if self.saved.as_ref() == Some(&bytes) {
            return;
        }
        let path = self.saved_path();
        let tmp = path.with_extension("json.tmp");
        // Private to the node: agents (run as another user) must not read other runs'
        // configurations.
        let written = path
            .parent()
            .map_or(Ok(()), |dir| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            })
            .and_then(|()| std::fs::write(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => self.saved = Some(bytes),
            Err(e) => {
                tracing::warn!(node = %self.config.name, "cannot save the node's runs to {}: {e}", path.display())
            }
        }
    }

    /// Sets up again the runs saved before this node agent last stopped without a goodbye.
    pub(super) async fn restore(&mut self) {
        if !self.config.restore {
            return;
        }
        let path = self.saved_path();
        let Ok(text) = std::fs::read(&path) else {
            return;
        };
        let saved: Saved = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %self.config.name, "ignoring {}: {e}", path.display());
                return;
            }
        };
        for (run, saved_run) in saved.runs {
            self.state(&run).heard_period(saved_run.alive_ms);
            tracing::warn!(
                node = %self.config.name,
                run,
                groups = saved_run.groups.len(),
                agents = saved_run.agents.len(),
                "restoring a run this node served before it restarted"
            );
            for group in saved_run.groups {
                match self.port.join(&run, &group).await {
                    Ok(()) => {
                        self.state(&run).groups.insert(group);
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.config.name, run, group, "cannot rejoin: {e}")
                    }
                }
            }
            for (name, agent) in saved_run.agents {
                kill_stale_group(agent.pgid);
                let state = self.state(&run);
                state.loading.insert(name.clone());
                state.last_seen = Some(Instant::now());
                self.start_agent(AgentStart {
                    run: run.clone(),
                    name,
                    dock: agent.dock,
                    execargs: agent.execargs,
                    code: Code::Shipped {
                        b64: None,
                        sha: Some(agent.module),
                    },
                    restored: true,
                });
            }
            self.state(&run).last_seen = Some(Instant::now());
        }
    }
}

/// Kills what is left of an agent's process group from before the restart (a child it
/// started that outlived it), if any process of this system is still in that group.
fn kill_stale_group(pgid: i32) {
    if pgid <= 1 {
        return;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let in_group = procs.filter_map(Result::ok).any(|p| {
        std::fs::read_to_string(p.path().join("stat"))
            .ok()
            .and_then(|stat| {
                // Fields after the command's closing parenthesis: state, ppid, pgrp, ...
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().nth(2)?.parse::<i32>().ok()
            })
            == Some(pgid)
    });
    if in_group {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
