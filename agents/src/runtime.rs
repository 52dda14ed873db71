//! A small runtime for agent processes: the agent protocol of `magi_proto::agent` over
//! stdin/stdout, so that an agent is a struct with `start`, `call` and `stop`.
//!
//! Three tasks share the work:
//! - the **input loop** reads lines (bounded in length) and never waits on an agent, so a
//!   `stop` line or a signal is seen at once;
//! - the **worker** owns the agent and runs calls one at a time in arrival order (the
//!   agents' methods are quick: they flip state and start or stop background tasks);
//! - the **writer** is the only owner of stdout; everything (returns, records, logs) goes
//!   to it through an [`Outbox`], so lines never interleave.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use magi_proto::agent::{FromAgent, ToAgent};
use magi_proto::Object;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::args::Args;
use crate::hosts::{parse_address, Hosts};

/// Longest input line accepted (a call's arguments); longer lines are refused and skipped.
pub const MAX_LINE: usize = 1 << 20;
/// How long an agent's `stop` may take before the process exits anyway.
pub const STOP_GRACE: Duration = Duration::from_secs(4);

/// Who the agent is and where it runs, from the `start` line.
#[derive(Debug, Clone)]
pub struct Context {
    /// The agent's AAL name (`client_agent`).
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// The run it belongs to.
    pub run: String,
    /// This node's own address (what a server binds to and a client sends from), if given.
    pub address: Option<IpAddr>,
    /// Node name → address, to reach peers by name.
    pub hosts: Hosts,
    /// Where records, logs and triggers go.
    pub out: Outbox,
}

enum Out {
    Line(FromAgent),
    Close,
}

/// A handle for sending lines to the node agent; cheap to clone into background tasks.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Out::Line(l) => write!(f, "{l:?}"),
            Out::Close => f.write_str("Close"),
        }
    }
}

impl Outbox {
    /// Sends one protocol line (dropped silently once the process is closing).
    pub fn send(&self, line: FromAgent) {
        let _ = self.tx.send(Out::Line(line));
    }

    /// Sends a data record.
    pub fn record(&self, data: Object) {
        self.send(FromAgent::Record { data });
    }

    /// Sends a trigger of the agent's own.
    pub fn trigger(&self, event: &str, args: Object) {
        self.send(FromAgent::Trigger {
            event: event.to_string(),
            args,
        });
    }

    /// Sends a log line at `level` (`error`, `warn`, `info`, `debug`).
    pub fn log(&self, level: &str, message: impl Into<String>) {
        self.send(FromAgent::Log {
            level: level.to_string(),
            message: message.into(),
        });
    }

    /// Sends an `info` log line.
    pub fn info(&self, message: impl Into<String>) {
        self.log("info", message);
    }

    /// Sends a `warn` log line.
    pub fn warn(&self, message: impl Into<String>) {
        self.log("warn", message);
    }

    /// Sends an `error` log line.
    pub fn error(&self, message: impl Into<String>) {
        self.log("error", message);
    }
}

/// An agent: built from the `start` line, then called by method name until stopped.
pub trait Agent: Sized + Send + 'static {
    /// Takes the configuration (execargs); an `Err` refuses the load with that message.
    fn start(ctx: Context, execargs: Args) -> impl Future<Output = Result<Self, String>> + Send;

    /// Runs one method; `Ok(value)` is returned to the caller, `Err(message)` fails the
    /// call. Must not wait on long work: start a task for it.
    fn call(
        &mut self,
        method: &str,
        args: Args,
    ) -> impl Future<Output = Result<Value, String>> + Send;

    /// Cleans up (stops servers and loops, removes firewall tables) before the exit.
    fn stop(&mut self) -> impl Future<Output = ()> + Send;
}

/// The error for a method the agent does not have, listing the ones it has.
pub fn unknown_method(method: &str, known: &[&str]) -> String {
    format!(
        "this agent has no method '{method}'; its methods are: {}",
        known.join(", ")
    )
}

/// Runs agent `A` on stdin/stdout until `stop`, end of input, SIGTERM or SIGINT, then
/// exits the process (0, or 1 when the agent refused to start).
pub fn main<A: Agent>() -> ! {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async {
        run::<A, _, _>(tokio::io::stdin(), tokio::io::stdout(), termination()).await
    });
    // Not a normal return: dropping the runtime would wait for the blocking stdin read.
    std::process::exit(code)
}

/// Resolves on SIGTERM or SIGINT (never, where signals cannot be installed).
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

enum Job {
    Call {
        id: u64,
        method: String,
        args: Object,
    },
    Stop,
}

/// The protocol loop over any input and output; returns the process exit code.
pub async fn run<A, R, W>(input: R, output: W, shutdown: impl Future<Output = ()>) -> i32
where
    A: Agent,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_lines(output, rx));
    let out = Outbox { tx };
    let mut input = BufReader::new(input);
    tokio::pin!(shutdown);

    // 1. The start line.
    let start = tokio::select! {
        line = read_line(&mut input) => line,
        _ = &mut shutdown => Input::Eof,
    };
    let refuse = |error: String| {
        out.send(FromAgent::Error { id: None, error });
    };
    let agent = match start {
        Input::Eof => return close(out, writer, 0).await,
        Input::TooLong => {
            refuse("the start line is too long".to_string());
            return close(out, writer, 1).await;
        }
        Input::Line(line) => match serde_json::from_slice::<ToAgent>(&line) {
            Ok(ToAgent::Start {
                name,
                node,
                run,
                execargs,
                address,
                hosts,
            }) => {
                let context = Hosts::from_object(&hosts).and_then(|hosts| {
                    Ok(Context {
                        name,
                        node,
                        run,
                        address: parse_address(&address)?,
                        hosts,
                        out: out.clone(),
                    })
                });
                match context {
                    Ok(ctx) => A::start(ctx, Args(execargs)).await,
                    Err(e) => Err(e),
                }
            }
            Ok(other) => Err(format!(
                "the first line must be 'start', got {}",
                kind_of(&other)
            )),
            Err(e) => Err(format!("the start line is not valid: {e}")),
        },
    };
    let mut agent = match agent {
        Ok(agent) => agent,
        Err(e) => {
            refuse(e);
            return close(out, writer, 1).await;
        }
    };
    out.send(FromAgent::Ready);

    // 2. The worker owns the agent and answers calls in order.
    let (jobs, mut job_rx) = mpsc::unbounded_channel::<Job>();
    let worker_out = out.clone();
    let mut worker = tokio::spawn(async move {
        while let Some(job) = job_rx.recv().await {
            match job {
                Job::Call { id, method, args } => {
                    let answer = match agent.call(&method, Args(args)).await {
                        Ok(value) => FromAgent::Return { id, value },
                        Err(error) => FromAgent::Error {
                            id: Some(id),
                            error,
                        },
                    };
                    worker_out.send(answer);
                }
                Job::Stop => break,
            }
        }
        agent.stop().await;
    });

    // 3. The input loop.
    loop {
        let line = tokio::select! {
            line = read_line(&mut input) => line,
            _ = &mut shutdown => break,
        };
        match line {
            Input::Eof => break,
            Input::TooLong => out.warn(format!("ignored an input line over {MAX_LINE} bytes")),
            Input::Line(line) => match serde_json::from_slice::<ToAgent>(&line) {
                Ok(ToAgent::Call { id, method, args }) => {
                    let _ = jobs.send(Job::Call { id, method, args });
                }
                Ok(ToAgent::Stop) => break,
                Ok(ToAgent::Start { .. }) => out.warn("ignored a second start line"),
                Err(e) => out.warn(format!(
                    "ignored an input line that is not a protocol message: {e}"
                )),
            },
        }
    }
    let _ = jobs.send(Job::Stop);
    if tokio::time::timeout(STOP_GRACE, &mut worker).await.is_err() {
        out.error(format!(
            "the agent did not stop within {} s; exiting anyway",
            STOP_GRACE.as_secs()
        ));
        // Aborting drops the agent, which runs its cleanup guards.
        worker.abort();
        let _ = worker.await;
    }
    close(out, writer, 0).await
}

fn kind_of(m: &ToAgent) -> &'static str {
    match m {
        ToAgent::Start { .. } => "start",
        ToAgent::Call { .. } => "call",
        ToAgent::Stop => "stop",
    }
}

/// Lets the writer flush what was sent so far, then returns `code`.
async fn close(out: Outbox, writer: tokio::task::JoinHandle<()>, code: i32) -> i32 {
    let _ = out.tx.send(Out::Close);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    code
}

async fn write_lines<W: AsyncWrite + Unpin>(mut output: W, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        // Batch what is already queued into one write and one flush.
        let mut closing = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Out::Line(line) => {
                    if serde_json::to_writer(&mut buf, &line).is_ok() {
                        buf.push(b'\n');
                    }
                }
                Out::Close => {
                    closing = true;
                    break;
                }
            }
            if buf.len() < 1 << 16 {
                next = rx.try_recv().ok();
            }
        }
        if output.write_all(&buf).await.is_err() || output.flush().await.is_err() {
            eprintln!("stdout is closed; the node agent is gone");
            return;
        }
        buf.clear();
        if closing {
            return;
        }
    }
}

enum Input {
    Line(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer one is consumed and reported.
async fn read_line<R: AsyncRead + Unpin>(input: &mut BufReader<R>) -> Input {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = match input.fill_buf().await {
            Ok(b) => b,
            Err(_) => return Input::Eof,
        };
        if available.is_empty() {
            return if line.is_empty() && !too_long {
                Input::Eof
            } else if too_long {
                Input::TooLong
            } else {
                Input::Line(line)
            };
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1),
            None => (available, available.len()),
        };
        let found_newline = done > chunk.len();
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        input.consume(done);
        if found_newline {
            if too_long {
                return Input::TooLong;
            }
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                line.clear();
                continue; // blank lines are not messages
            }
            return Input::Line(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::AsyncReadExt;

    /// An agent that echoes its arguments, fails `boom`, and refuses `execargs.refuse`.
    struct Echo {
        ctx: Context,
    }

    impl Agent for Echo {
        async fn start(ctx: Context, execargs: Args) -> Result<Self, String> {
            if execargs.has("refuse") {
                return Err("refused as asked".into());
            }
            Ok(Echo { ctx })
        }
        async fn call(&mut self, method: &str, args: Args) -> Result<Value, String> {
            match method {
                "echo" => Ok(Value::Object(args.0)),
                "whoami" => Ok(json!({"node": self.ctx.node, "address": self.ctx.address})),
                _ => Err(unknown_method(method, &["echo", "whoami"])),
            }
        }
        async fn stop(&mut self) {
            self.ctx.out.info("stopped");
        }
    }

    async fn exchange(input: &str) -> (i32, Vec<Value>) {
        let (out_w, mut out_r) = tokio::io::duplex(1 << 20);
        let input = input.as_bytes().to_vec();
        let code = run::<Echo, _, _>(&input[..], out_w, std::future::pending()).await;
        let mut text = String::new();
        let _ = out_r.read_to_string(&mut text).await;
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (code, lines)
    }

    fn start(execargs: Value) -> String {
        json!({"kind": "start", "name": "a", "node": "n1", "run": "r", "execargs": execargs,
               "address": "127.0.1.1", "hosts": {"n1": "127.0.1.1"}})
        .to_string()
    }

    #[tokio::test]
    async fn calls_are_answered_by_id_and_stop_runs_cleanup() {
        let input = format!(
            "{}\n\n{}\nnot json\n{}\n{}\n{}\n",
            start(json!({})),
            json!({"kind": "call", "id": 1, "method": "echo", "args": {"x": 1}}),
            json!({"kind": "call", "id": 2, "method": "boom", "args": {}}),
            json!({"kind": "call", "id": 3, "method": "whoami", "args": {}}),
            json!({"kind": "stop"}),
        );
        let (code, lines) = exchange(&input).await;
        assert_eq!(code, 0);
        assert_eq!(lines[0], json!({"kind": "ready"}));
        assert!(lines.contains(&json!({"kind": "return", "id": 1, "value": {"x": 1}})));
        let err = lines
            .iter()
            .find(|l| l["id"] == 2)
            .expect("an answer to call 2");
        assert_eq!(err["kind"], "error");
        assert!(err["error"].as_str().unwrap().contains("no method 'boom'"));
        assert!(lines
            .iter()
            .any(|l| l["kind"] == "log" && l["level"] == "warn"));
        assert!(lines.contains(
            &json!({"kind": "return", "id": 3, "value": {"node": "n1", "address": "127.0.1.1"}})
        ));
        assert_eq!(lines.last().unwrap()["message"], "stopped");
    }

    #[tokio::test]
    async fn a_refused_start_is_an_error_line_and_exit_code_1() {
        let (code, lines) = exchange(&format!("{}\n", start(json!({"refuse": true})))).await;
        assert_eq!(code, 1);
        assert_eq!(
            lines,
            vec![json!({"kind": "error", "id": null, "error": "refused as asked"})]
        );
        let (code, lines) = exchange("{\"kind\":\"stop\"}\n").await;
        assert_eq!(code, 1);
        assert!(lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("must be 'start'"));
    }

    #[tokio::test]
    async fn end_of_input_stops_the_agent() {
        let (code, lines) = exchange(&format!("{}\n", start(json!({})))).await;
        assert_eq!(code, 0);
        assert_eq!(lines.last().unwrap()["message"], "stopped");
    }

    #[tokio::test]
    async fn an_overlong_line_is_skipped_not_fatal() {
        let long = format!(
            "{{\"kind\":\"call\",\"id\":9,\"method\":\"echo\",\"args\":{{\"x\":\"{}\"}}}}",
            "a".repeat(MAX_LINE + 10)
        );
        let input = format!(
            "{}\n{long}\n{}\n",
            start(json!({})),
            json!({"kind": "call", "id": 1, "method": "echo", "args": {}})
        );
        let (_, lines) = exchange(&input).await;
        assert!(lines
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains("over"))));
        assert!(lines.contains(&json!({"kind": "return", "id": 1, "value": {}})));
        assert!(!lines.iter().any(|l| l["id"] == 9));
    }
}
