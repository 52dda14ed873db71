//! An agent running as a child process, spoken to with the line-delimited JSON protocol of
//! [`magi_proto::agent`].
//!
//! [`AgentProcess::spawn`] starts the manifest's command in the module directory, in a
//! process group of its own, sends the `start` line and waits (with a timeout) for `ready`.
//! After that, [`AgentProcess::call`] writes calls without waiting, and everything the agent
//! says arrives as [`AgentEvent`]s on a channel, ending with exactly one
//! [`AgentEvent::Exited`] that lists the calls left unanswered.
//!
//! Teardown is by process group, so that what an agent started (curl, a web server) dies
//! with it: [`AgentProcess::stop`] sends `stop`, waits a grace period, then SIGTERM, then
//! SIGKILL to the whole group; when the agent exits by itself, what is left of its group gets
//! the same treatment. Dropping an [`AgentProcess`] kills the group. A child that moved to
//! another process group or session (a daemon that detaches) escapes all of this.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use magi_proto::agent::{FromAgent, ToAgent};
use magi_proto::Object;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::manifest::{Manifest, ManifestError};

mod group;
mod pipes;
mod python;

use group::{signal_group, supervise};
use pipes::{read_protocol, read_stderr, write_lines};
pub use python::{python_helper_source, write_python_helper};

/// The longest protocol line read from an agent; longer ones are reported as garbage.
pub const MAX_LINE: usize = 1024 * 1024;

/// How many of the agent's last stderr lines are kept for crash reports.
pub const STDERR_TAIL_LINES: usize = 20;

/// The Python helper's file name; put its directory on `PYTHONPATH`.
pub const PYTHON_HELPER_FILE: &str = "magi_agent.py";

/// Longest stderr line kept (the rest of the line is dropped).
const MAX_STDERR_LINE: usize = 16 * 1024;

/// Longest garbage line quoted in an event.
const GARBAGE_QUOTE: usize = 1000;

/// How long processes left in a group get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// How long the output readers get to drain after the group is gone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How to start an agent process.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Extra environment variables (the node's own environment is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// How long the agent has to answer `start` with `ready`.
    pub ready_timeout: Duration,
    /// A file the agent's stderr is appended to; without it stderr goes to `tracing`.
    pub stderr_log: Option<PathBuf>,
    /// A directory put first on `PYTHONPATH` (where [`write_python_helper`] wrote the helper).
    pub python_path: Option<PathBuf>,
    /// A command the agent is started through (`ip netns exec NS`); empty: started directly.
    pub command_prefix: Vec<String>,
    /// Run as another user with given capabilities (after `command_prefix`), in a fresh
    /// environment; `None`: as this process's user, inheriting its environment.
    pub confinement: Option<crate::privilege::Confinement>,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            stderr_log: None,
            python_path: None,
            command_prefix: Vec::new(),
            confinement: None,
        }
    }
}

/// What an agent process says or does, in order; [`AgentEvent::Exited`] comes last.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// A call returned (`null` means no value: the trigger carries `retVal: true`).
    Returned {
        /// The call's id.
        id: u64,
        /// The returned value.
        value: Value,
    },
    /// A call failed, or (without `id`) the agent reports a failure outside any call.
    Failed {
        /// The call's id, if the error answers a call.
        id: Option<u64>,
        /// What went wrong.
        error: String,
    },
    /// A trigger the agent sent on its own.
    Trigger {
        /// Its name.
        event: String,
        /// Its arguments.
        args: Object,
    },
    /// A data record.
    Record {
        /// The fields.
        data: Object,
    },
    /// A file to fetch into the run record.
    File {
        /// Where it is.
        path: String,
        /// Its name in the record, if the agent gave one.
        name: Option<String>,
    },
    /// A log line.
    Log {
        /// `error`, `warn`, `info` or `debug`.
        level: String,
        /// The text.
        message: String,
    },
    /// A line that is not a protocol line (quoted, cut to 1000 bytes); the agent goes on.
    Garbage {
        /// The offending line.
        line: String,
    },
    /// The agent process has exited and its process group is gone.
    Exited(AgentExit),
}

/// How an agent process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExit {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal, if a signal killed it.
    pub signal: Option<i32>,
    /// Its last stderr lines, oldest first.
    pub stderr_tail: Vec<String>,
    /// Calls it never answered, in id order.
    pub pending: Vec<u64>,
    /// True when the exit followed [`AgentProcess::stop`] (not a crash).
    pub stopped: bool,
}

impl fmt::Display for AgentExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(sig)) => write!(f, "was killed by signal {sig} ({})", signal_name(sig)),
            (None, None) => f.write_str("ended (exit status unknown)"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Why an agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The manifest's command could not be resolved.
    #[error(transparent)]
    Command(#[from] ManifestError),
    /// The first line given was not `start`.
    #[error("the first line to an agent must be `start`")]
    NotStart,
    /// The program could not be executed.
    #[error("cannot start agent {name} ({}): {source}", .program.display())]
    Exec {
        /// The agent's name.
        name: String,
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The agent answered `start` with an error.
    #[error("agent {name} refused to start: {error}{}", tail(.stderr_tail))]
    Refused {
        /// The agent's name.
        name: String,
        /// Its error text.
        error: String,
        /// Its last stderr lines.
        stderr_tail: Vec<String>,
    },
    /// The agent exited before `ready`.
    #[error("agent {name} {exit} before it was ready{}", tail(&.exit.stderr_tail))]
    ExitedEarly {
        /// The agent's name.
        name: String,
        /// How it ended.
        exit: AgentExit,
    },
    /// No `ready` within the timeout; the agent was killed.
    #[error("agent {name} was not ready within {timeout:?}{}", tail(.stderr_tail))]
    Timeout {
        /// The agent's name.
        name: String,
        /// The timeout.
        timeout: Duration,
        /// Its last stderr lines.
        stderr_tail: Vec<String>,
    },
}

/// Formats a stderr tail for an error message.
fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n  {}", lines.join("\n  "))
    }
}

/// Why a call could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent has exited or is stopping.
    #[error("agent {name} is no longer running")]
    NotRunning {
        /// The agent's name.
        name: String,
    },
    /// A call with this id is still pending.
    #[error("call id {id} is already pending on agent {name}")]
    DuplicateId {
        /// The agent's name.
        name: String,
        /// The id.
        id: u64,
    },
    /// The arguments could not be encoded.
    #[error("cannot encode the call: {0}")]
    Encode(#[from] serde_json::Error),
}

/// State shared by the handle and the tasks serving one agent process.
struct Shared {
    name: String,
    /// The process group, equal to the agent's pid (it leads its own group).
    pgid: libc::pid_t,
    state: Mutex<State>,
    stderr_tail: Mutex<VecDeque<String>>,
    exit: watch::Sender<Option<AgentExit>>,
}

#[derive(Default)]
struct State {
    pending: BTreeSet<u64>,
    /// Set, with `pending` taken, when the exit is final: no call may be added after.
    exited: bool,
    stopping: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr_tail).iter().cloned().collect()
    }

    fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Signals the agent's process group, unless it is known to be gone.
    fn signal_group(&self, signal: libc::c_int) {
        if !self.has_exited() {
            signal_group(self.pgid, signal);
        }
    }
}

/// A running agent process. Dropping it kills the agent's process group.
pub struct AgentProcess {
    shared: Arc<Shared>,
    lines: mpsc::UnboundedSender<String>,
}

impl fmt::Debug for AgentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentProcess")
            .field("name", &self.shared.name)
            .field("pid", &self.shared.pgid)
            .finish()
    }
}

impl AgentProcess {
    /// Starts the module in `dir` as described by `manifest`, sends `start` and waits for
    /// `ready`. An error, an exit or silence before `ready` is a load failure; the process
    /// group is then killed and reaped before this returns.
    pub async fn spawn(
        dir: &Path,
        manifest: &Manifest,
        start: ToAgent,
        options: SpawnOptions,
    ) -> Result<(AgentProcess, mpsc::UnboundedReceiver<AgentEvent>), SpawnError> {
        let ToAgent::Start { name, .. } = &start else {
            return Err(SpawnError::NotStart);
        };
        let name = name.clone();
        let program = match &options.confinement {
            Some(c) => manifest.program_on(dir, Some(c.path.clone()))?,
            None => manifest.program(dir)?,
        };
        let exec_err = |source| SpawnError::Exec {
            name: name.clone(),
            program: program.clone(),
            source,
        };
        let wrappers: Vec<&String> = options
            .command_prefix
            .iter()
            .chain(options.confinement.iter().flat_map(|c| &c.wrapper))
            .collect();
        let mut command = match wrappers.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut c = tokio::process::Command::new(wrapper);
                c.args(wrapper_args).arg(&program);
                c
            }
            None => tokio::process::Command::new(&program),
        };
        if let Some(c) = &options.confinement {
            command.env_clear().envs(c.env.iter().map(|(k, v)| (k, v)));
        }
        command
            .args(manifest.args())
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            // Unpacked modules are shared, content-addressed cache entries: keep them pristine.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)));
        if let Some(helper_dir) = &options.python_path {
            let inherited = options
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == "PYTHONPATH")
                .map(|(_, v)| v.clone())
                .or_else(|| match options.confinement {
                    Some(_) => None,
                    None => std::env::var_os("PYTHONPATH"),
                });
            let mut paths = vec![helper_dir.clone()];
            if let Some(inherited) = inherited {
                paths.extend(std::env::split_paths(&inherited));
            }
            let joined = std::env::join_paths(paths)
                .map_err(|e| exec_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            command.env("PYTHONPATH", joined);
        }
        let mut child = command.spawn().map_err(exec_err)?;
        let pgid = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .ok_or_else(|| exec_err(io::Error::other("the process has no pid")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(exec_err(io::Error::other("the process has no pipes")));
        };

        let (exit_tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            name: name.clone(),
            pgid,
            state: Mutex::new(State::default()),
            stderr_tail: Mutex::new(VecDeque::new()),
            exit: exit_tx,
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_lines(stdin, lines_rx));
        let reader = tokio::spawn(read_protocol(
            stdout,
            shared.clone(),
            events_tx.clone(),
            ready_tx,
        ));
        let stderr_reader = tokio::spawn(read_stderr(stderr, shared.clone(), options.stderr_log));
        tokio::spawn(supervise(
            child,
            shared.clone(),
            reader,
            stderr_reader,
            events_tx,
        ));

        let agent = AgentProcess {
            shared,
            lines: lines_tx,
        };
        let first = serde_json::to_string(&start).map_err(|e| exec_err(io::Error::other(e)))?;
        let _ = agent.lines.send(first);
        match agent.handshake(ready_rx, options.ready_timeout).await {
            Ok(()) => Ok((agent, events_rx)),
            Err(mut e) => {
                agent.shared.signal_group(libc::SIGKILL);
                let exit = agent.wait().await;
                // Only now is stderr fully drained: the tail explains the failure best.
                if let SpawnError::Refused { stderr_tail, .. }
                | SpawnError::Timeout { stderr_tail, .. } = &mut e
                {
                    *stderr_tail = exit.stderr_tail;
                }
                Err(e)
            }
        }
    }

    async fn handshake(
        &self,
        mut ready: oneshot::Receiver<Result<(), String>>,
        timeout: Duration,
    ) -> Result<(), SpawnError> {
        let name = || self.shared.name.clone();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ready_open = true;
        loop {
            tokio::select! {
                // Biased: `ready` is always delivered before the exit is published, so an
                // agent that says ready and then dies at once still counts as loaded.
                biased;
                answer = &mut ready, if ready_open => match answer {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(error)) => {
                        return Err(SpawnError::Refused {
                            name: name(),
                            error,
                            stderr_tail: self.shared.stderr_tail(),
                        })
                    }
                    // Its stdout closed without `ready`: wait for the exit.
                    Err(_) => ready_open = false,
                },
                exit = self.wait() => return Err(SpawnError::ExitedEarly { name: name(), exit }),
                () = &mut deadline => {
                    return Err(SpawnError::Timeout {
                        name: name(),
                        timeout,
                        stderr_tail: self.shared.stderr_tail(),
                    })
                }
            }
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The agent's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.shared.pgid.unsigned_abs()
    }

    /// Sends a call; the answer arrives as [`AgentEvent::Returned`] or [`AgentEvent::Failed`]
    /// with the same `id`, or the id is listed in [`AgentExit::pending`]. Never blocks.
    pub fn call(&self, id: u64, method: &str, args: Object) -> Result<(), CallError> {
        let line = serde_json::to_string(&ToAgent::Call {
            id,
            method: method.to_string(),
            args,
        })?;
        let mut state = lock(&self.shared.state);
        if state.exited || state.stopping {
            return Err(CallError::NotRunning {
                name: self.shared.name.clone(),
            });
        }
        if !state.pending.insert(id) {
            return Err(CallError::DuplicateId {
                name: self.shared.name.clone(),
                id,
            });
        }
        if self.lines.send(line).is_err() {
            state.pending.remove(&id);
            return Err(CallError::NotRunning {
                name: self.shared.name.clone(),
            });
        }
        Ok(())
    }

    /// The ids of calls sent and not yet answered.
    pub fn pending(&self) -> Vec<u64> {
        lock(&self.shared.state).pending.iter().copied().collect()
    }

    /// The agent's last stderr lines, oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.shared.stderr_tail()
    }

    /// True once the agent has exited and its process group is gone.
    pub fn has_exited(&self) -> bool {
        self.shared.has_exited()
    }

    /// Waits until the agent has exited and its process group is gone.
    pub async fn wait(&self) -> AgentExit {
        let mut rx = self.shared.exit.subscribe();
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The supervisor always publishes before it ends; this is unreachable,
                // but an answer beats a hang.
                return AgentExit {
                    code: None,
                    signal: None,
                    stderr_tail: self.shared.stderr_tail(),
                    pending: self.pending(),
                    stopped: true,
                };
            }
        }
    }

    /// Stops the agent: `stop` line, up to `grace` to exit, then SIGTERM to its process
    /// group, then SIGKILL. Returns once the agent and its group are gone and reaped.
    pub async fn stop(&self, grace: Duration) -> AgentExit {
        lock(&self.shared.state).stopping = true;
        if let Ok(line) = serde_json::to_string(&ToAgent::Stop) {
            let _ = self.lines.send(line);
        }
        if let Ok(exit) = tokio::time::timeout(grace, self.wait()).await {
            return exit;
        }
        self.shared.signal_group(libc::SIGTERM);
        if let Ok(exit) = tokio::time::timeout(TERM_GRACE, self.wait()).await {
            return exit;
        }
        self.shared.signal_group(libc::SIGKILL);
        self.wait().await
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // The supervisor task still reaps the process; the runtime's kill_on_drop covers
        // the case where that task never runs again.
        self.shared.signal_group(libc::SIGKILL);
    }
}
