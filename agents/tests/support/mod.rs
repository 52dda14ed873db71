//! Test support: run a real agent binary and speak the agent protocol to it, and a raw
//! HTTP/1.1 client written independently of the crate's own.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// An agent process under test.
pub struct AgentProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    /// Every record seen so far, with the time it arrived.
    pub records: Vec<(Instant, Value)>,
    /// Every log line seen so far.
    pub logs: Vec<Value>,
    /// Every file handed back so far (`{"kind":"file","path":...}` lines).
    pub files: Vec<Value>,
}

/// A unique run name, so that agents of parallel tests never share a table.
pub fn run_name(test: &str) -> String {
    format!("t{}_{test}", std::process::id())
}

impl AgentProcess {
    /// Starts `bin` and sends its start line; does not wait for the answer.
    pub async fn spawn(
        bin: &str,
        run: &str,
        node: &str,
        address: &str,
        hosts: Value,
        execargs: Value,
    ) -> Self {
        Self::spawn_command(Command::new(bin), run, node, address, hosts, execargs).await
    }

    /// Starts the agent of module `agents/modules/<module>` as a node agent would (its
    /// manifest's command, in the module directory, the Python helper on PYTHONPATH) and
    /// sends its start line; does not wait for the answer.
    pub async fn spawn_module(
        module: &str,
        run: &str,
        node: &str,
        address: &str,
        hosts: Value,
        execargs: Value,
    ) -> Self {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("modules").join(module);
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("magi-agent.json")).expect("the manifest"),
        )
        .expect("a JSON manifest");
        let words: Vec<&str> = manifest["command"]
            .as_array()
            .expect("a command")
            .iter()
            .map(|w| w.as_str().expect("a word"))
            .collect();
        let mut command = Command::new(words[0]);
        command
            .args(&words[1..])
            .current_dir(&dir)
            .env("PYTHONPATH", root.join("../node-agent/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        Self::spawn_command(command, run, node, address, hosts, execargs).await
    }

    /// [`spawn_module`](Self::spawn_module), then expects `ready`.
    pub async fn start_module(
        module: &str,
        run: &str,
        node: &str,
        address: &str,
        hosts: Value,
        execargs: Value,
    ) -> Self {
        Self::spawn_module(module, run, node, address, hosts, execargs)
            .await
            .ready()
            .await
    }

    async fn spawn_command(
        mut command: Command,
        run: &str,
        node: &str,
        address: &str,
        hosts: Value,
        execargs: Value,
    ) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the agent binary starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut agent = AgentProcess {
            child,
            stdin,
            stdout,
            next_id: 1,
            records: Vec::new(),
            logs: Vec::new(),
            files: Vec::new(),
        };
        let start = json!({"kind": "start", "name": "test_agent", "node": node, "run": run,
                           "execargs": execargs, "address": address, "hosts": hosts});
        agent.send(&start).await;
        agent
    }

    /// Starts `bin` and expects it to answer `ready`.
    pub async fn start(
        bin: &str,
        run: &str,
        node: &str,
        address: &str,
        hosts: Value,
        execargs: Value,
    ) -> Self {
        Self::spawn(bin, run, node, address, hosts, execargs)
            .await
            .ready()
            .await
    }

    /// Expects `ready` as the answer to the start line.
    async fn ready(mut self) -> Self {
        match self.first_answer().await {
            Ok(()) => self,
            Err(e) => panic!("the agent refused to start: {e}"),
        }
    }

    /// The answer to the start line: `Ok` for ready, `Err(message)` for an error.
    pub async fn first_answer(&mut self) -> Result<(), String> {
        loop {
            let line = self
                .next_line(Duration::from_secs(10))
                .await
                .expect("an answer to the start line");
            match line["kind"].as_str() {
                Some("ready") => return Ok(()),
                Some("error") => return Err(line["error"].as_str().unwrap_or("").to_string()),
                Some("log") => self.logs.push(line),
                _ => panic!("unexpected first line {line}"),
            }
        }
    }

    /// Sends one protocol line.
    pub async fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        let mut line = v.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the agent");
        stdin.flush().await.expect("flush to the agent");
    }

    /// Closes the agent's stdin (end of input).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// The next line within `timeout`, or `None`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("the agent printed a line that is not JSON ({e}): {line}")
            })),
            _ => None,
        }
    }

    fn keep(&mut self, line: Value) {
        match line["kind"].as_str() {
            Some("record") => self.records.push((Instant::now(), line["data"].clone())),
            Some("log") => self.logs.push(line),
            Some("file") => self.files.push(line),
            _ => panic!("unexpected line {line}"),
        }
    }

    /// Calls `method` and waits (up to 10 s) for its answer.
    pub async fn call(&mut self, method: &str, args: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"kind": "call", "id": id, "method": method, "args": args}))
            .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .next_line(left)
                .await
                .unwrap_or_else(|| panic!("no answer to {method} within 10 s"));
            if line["id"] == id && line["kind"] == "return" {
                return Ok(line["value"].clone());
            }
            if line["id"] == id && line["kind"] == "error" {
                return Err(line["error"].as_str().unwrap_or("").to_string());
            }
            self.keep(line);
        }
    }

    /// Keeps records and logs arriving during `duration`; returns the new records.
    pub async fn collect(&mut self, duration: Duration) -> Vec<Value> {
        self.gather(usize::MAX, duration).await
    }

    /// Waits until `n` new records arrived (or `timeout`); returns them.
    pub async fn wait_records(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        self.gather(n, timeout).await
    }

    /// Keeps lines until `n` new records arrived or `timeout` passed; returns the new records.
    async fn gather(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        let before = self.records.len();
        let deadline = Instant::now() + timeout;
        while self.records.len() - before < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_line(left).await {
                Some(line) => self.keep(line),
                None => break,
            }
        }
        self.records[before..]
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Sends `stop`; asserts the process exits by itself within 6 s and returns how long
    /// that took.
    pub async fn stop(mut self) -> Duration {
        let t = Instant::now();
        self.send(&json!({"kind": "stop"})).await;
        self.wait_exit(t).await
    }

    /// Waits for the process to exit (after a stop or end of input), keeping its lines.
    pub async fn wait_exit(&mut self, since: Instant) -> Duration {
        while let Some(line) = self.next_line(Duration::from_secs(6)).await {
            self.keep(line);
        }
        let status = tokio::time::timeout(Duration::from_secs(6), self.child.wait())
            .await
            .expect("the agent exits within 6 s of being stopped")
            .expect("wait for the agent");
        assert!(status.success(), "the agent exited with {status}");
        since.elapsed()
    }

    /// Log messages seen so far, as text.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| format!("{}: {}\n", l["level"], l["message"].as_str().unwrap_or("")))
            .collect()
    }
}

impl Drop for AgentProcess {
    /// A test that failed half-way still lets its agent clean up (remove its nftables
    /// table): end its input and give it a moment before it is killed.
    fn drop(&mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free TCP port on `ip` (bound once and released).
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind a probe socket");
    l.local_addr().expect("probe address").port()
}

/// Connects to `to`, from `from` if given.
pub async fn connect(from: Option<&str>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(from) = from {
        let ip: IpAddr = from.parse().expect("a test address");
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(to).await
}

/// A response as a raw client sees it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a GET on `stream` and reads one response framed by its Content-Length.
pub async fn get_on(stream: &mut TcpStream, path: &str, close: bool) -> RawResponse {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("send a request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read the head");
        assert!(
            n == 1,
            "connection closed inside the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).expect("an ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .expect("a Content-Length header");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("the whole body");
    RawResponse {
        status,
        headers,
        body,
    }
}

/// One GET on a new connection, from `from` if given.
pub async fn get(from: Option<&str>, to: SocketAddr, path: &str) -> RawResponse {
    let mut s = connect(from, to).await.expect("connect to the server");
    get_on(&mut s, path, true).await
}
