//! Calls to loaded agents, and what agents say back (returns, errors, their own triggers,
//! records, logs, their end).

use std::collections::HashMap;
use std::task::{Context, Poll};

use magi_proto::agent::return_to_trigger_args;
use magi_proto::{Call, Object, Record, Trigger};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{exception, obj, AgentEvent, Internal, Loaded, LoadedAgent, Node, Pending};

impl Node {
    /// A call to an agent, found by its dock (the AAL's `dock:`, by default its name).
    pub(super) async fn on_agent_call(&mut self, call: Call) {
        self.next_call += 1;
        let id = self.next_call;
        let run = call.run.clone();
        let found = self.runs.get_mut(&run).and_then(|s| {
            s.agents
                .iter_mut()
                .find(|(_, l)| l.dock == call.dock)
                .map(|(name, l)| (name.clone(), l))
        });
        let Some((name, loaded)) = found else {
            let error = format!(
                "agent {} is not loaded on node {}",
                call.dock, self.config.name
            );
            let mut t = exception(
                &run,
                &self.config.name,
                &call.dock,
                &call.method,
                &error,
                None,
            );
            t.call = Some(call.seq);
            return self.send_trigger(t).await;
        };
        loaded.pending.insert(
            id,
            Pending {
                method: call.method.clone(),
                trigger: call.trigger.clone(),
                seq: call.seq,
            },
        );
        if let Err(e) = loaded.process.call(id, &call.method, call.args) {
            loaded.pending.remove(&id);
            let t = exception(
                &run,
                &self.config.name,
                &name,
                &call.method,
                &e.to_string(),
                None,
            );
            self.send_trigger(t.answering(call.seq)).await;
        }
    }

    /// Acts on a message from the node's own tasks; a loaded agent's events are returned,
    /// for the dispatcher to read from then on ([`AgentEvents`]).
    pub(super) async fn on_internal(&mut self, msg: Internal) -> Option<Events> {
        match msg {
            Internal::Loaded {
                agent,
                process,
                events,
                pin,
            } => {
                let LoadedAgent {
                    run,
                    name,
                    dock,
                    execargs,
                    module,
                    restored,
                } = agent;
                let state = self.state(&run);
                state.loading.remove(&name);
                // The dead-man interval counts from the agent's start: a load that took
                // long (a large archive through a busy broker) was not the orchestrator's
                // silence.
                state.last_seen = Some(std::time::Instant::now());
                state.agents.insert(
                    name.clone(),
                    Loaded {
                        dock,
                        execargs,
                        module,
                        process,
                        _pin: pin,
                        pending: HashMap::new(),
                    },
                );
                let events = Events {
                    run: run.clone(),
                    name: name.clone(),
                    events,
                };
                if restored {
                    tracing::info!(node = %self.config.name, run, agent = name, "agent restored after the node's restart");
                } else {
                    self.trigger(
                        &run,
                        magi_proto::AGENT_LOAD_DONE,
                        obj(json!({"agent": name})),
                    )
                    .await;
                }
                return Some(events);
            }
            Internal::LoadFailed {
                run,
                name,
                error,
                restored,
            } => {
                let error = match restored {
                    true => format!("it ran here before the node agent restarted, and cannot be started again: {error}"),
                    false => error,
                };
                self.load_failed(&run, &name, &error).await
            }
            Internal::Unloaded { run, name } => {
                self.trigger(
                    &run,
                    magi_proto::AGENT_UNLOAD_DONE,
                    obj(json!({"agent": name})),
                )
                .await;
            }
        }
        None
    }

    pub(super) async fn on_agent_event(&mut self, run: &str, name: &str, event: AgentEvent) {
        let with_agent = |mut args: Object| {
            args.insert("agent".into(), json!(name));
            args
        };
        match event {
            AgentEvent::Returned { id, value } => {
                let Some(Pending {
                    trigger: Some(t),
                    seq,
                    ..
                }) = self.pending(run, name, id)
                else {
                    return;
                };
                let args = with_agent(return_to_trigger_args(value));
                let reply = Trigger::from_node(run, &t, &self.config.name, args).answering(seq);
                self.send_trigger(reply).await;
            }
            AgentEvent::Failed {
                id: Some(id),
                error,
            } => {
                let pending = self.pending(run, name, id);
                let method = pending.as_ref().map_or("unknown", |p| p.method.as_str());
                let mut t = exception(run, &self.config.name, name, method, &error, None);
                t.call = pending.map(|p| p.seq);
                self.send_trigger(t).await;
            }
            AgentEvent::Failed { id: None, error } => {
                self.exception(run, name, "unknown", &error, None).await
            }
            AgentEvent::Trigger { event, .. } if event == magi_proto::NODE_LEFT_RUN => {
                // Only the node agent itself may say the node left the run.
                let error = format!("a trigger named {event} is the node agent's own: dropped");
                self.exception(run, name, "unknown", &error, Some("MagiWarning"))
                    .await
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
            AgentEvent::File { path, name: file } => self.hand_back_file(run, name, &path, file),
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
                    .filter_map(|id| loaded.pending.get(id).map(|p| p.method.clone()))
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

    fn pending(&mut self, run: &str, name: &str, id: u64) -> Option<Pending> {
        self.runs
            .get_mut(run)?
            .agents
            .get_mut(name)?
            .pending
            .remove(&id)
    }
}

/// The events of one loaded agent.
pub(super) struct Events {
    run: String,
    name: String,
    events: UnboundedReceiver<AgentEvent>,
}

/// The events of every loaded agent of a node, read by its dispatcher itself: a task per
/// agent passing them on was one more task wake per call answered.
#[derive(Default)]
pub(super) struct AgentEvents {
    agents: Vec<Events>,
    /// Where the next poll starts, so that no agent's events hold up another's.
    start: usize,
}

impl AgentEvents {
    pub(super) fn add(&mut self, events: Events) {
        self.agents.push(events);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The next event of any agent, with the agent's run and name. An agent whose events
    /// ended (its process is gone and its last event read) is forgotten.
    pub(super) async fn next(&mut self) -> (String, String, AgentEvent) {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(String, String, AgentEvent)> {
        let len = self.agents.len();
        let mut found = None;
        let mut ended = false;
        for k in 0..len {
            let i = (self.start + k) % len;
            match self.agents[i].events.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    found = Some((i, event));
                    break;
                }
                Poll::Ready(None) => ended = true,
                Poll::Pending => {}
            }
        }
        let next = found.map(|(i, event)| {
            self.start = i + 1;
            let a = &self.agents[i];
            (a.run.clone(), a.name.clone(), event)
        });
        if ended {
            self.agents
                .retain(|a| !(a.events.is_closed() && a.events.is_empty()));
        }
        match next {
            Some(next) => Poll::Ready(next),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    fn returned(id: u64) -> AgentEvent {
        AgentEvent::Returned {
            id,
            value: serde_json::Value::Null,
        }
    }

    fn agent(name: &str) -> (Events, tokio::sync::mpsc::UnboundedSender<AgentEvent>) {
        let (tx, events) = unbounded_channel();
        let run = "r".to_string();
        let name = name.to_string();
        (Events { run, name, events }, tx)
    }

    #[tokio::test]
    async fn a_chatty_agent_does_not_hold_up_another_agents_events() {
        let mut all = AgentEvents::default();
        let (chatty, chatty_tx) = agent("chatty");
        let (quiet, quiet_tx) = agent("quiet");
        all.add(chatty);
        all.add(quiet);
        for id in 0..100 {
            chatty_tx.send(returned(id)).unwrap();
        }
        quiet_tx.send(returned(7)).unwrap();
        let first_two = [all.next().await.1, all.next().await.1];
        assert!(first_two.contains(&"quiet".to_string()), "{first_two:?}");
    }

    #[tokio::test]
    async fn an_agent_whose_events_ended_is_forgotten_after_its_last_event() {
        let mut all = AgentEvents::default();
        let (gone, gone_tx) = agent("gone");
        all.add(gone);
        gone_tx.send(returned(1)).unwrap();
        drop(gone_tx);
        let (run, name, event) = all.next().await;
        assert_eq!((run.as_str(), name.as_str()), ("r", "gone"));
        assert!(matches!(event, AgentEvent::Returned { id: 1, .. }));
        let more = tokio::time::timeout(std::time::Duration::from_millis(50), all.next()).await;
        assert!(more.is_err(), "an ended agent has no more events");
        assert!(all.is_empty());
    }
}
