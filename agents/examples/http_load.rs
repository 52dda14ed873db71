//! Load on the HTTP server agent with the crate's own client: requests per second, latency,
//! and the server process's memory (idle, under load, per idle keep-alive connection).
//!
//! ```text
//! cargo build --release -p magi-agents --bins --examples
//! target/release/examples/http_load target/release/magi-http-server [SECONDS] [WORKERS] [LENGTH] [IDLE]
//! ```
//!
//! The server runs as an agent process on 127.0.7.1 (driven over its stdin as the node agent
//! does); the workers send from 127.0.7.2, each GET on a connection of its own, as the
//! `http_client` agent does. Figures of a run are in `docs/agents.md`.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use magi_agents::http::client::{get, Target};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::process::Command;

const SERVER_IP: &str = "127.0.7.1";
const CLIENT_IP: &str = "127.0.7.2";

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, in clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let Some(server_bin) = args.get(1) else {
        return Err("usage: http_load SERVER_BINARY [SECONDS] [WORKERS] [LENGTH] [IDLE]".into());
    };
    let number = |i: usize, default: u64| -> Result<u64, String> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse()
                .map_err(|_| format!("argument {i} must be a whole number, not {a:?}"))
        })
    };
    let (seconds, workers, length, idle) = (
        number(2, 10)?,
        number(3, 8)?,
        number(4, 1000)?,
        number(5, 1000)?,
    );

    let port = std::net::TcpListener::bind((SERVER_IP, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port on {SERVER_IP}: {e}"))?
        .port();
    let mut child = Command::new(server_bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {server_bin}: {e}"))?;
    let pid = child.id().ok_or("the server exited at once")?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let start = json!({"kind": "start", "name": "load", "node": "servernode", "run": "load",
        "execargs": {"port": port}, "address": SERVER_IP, "hosts": {}});
    let call = json!({"kind": "call", "id": 1, "method": "startServer", "args": {}});
    for line in [start, call] {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    while let Ok(Some(line)) = stdout.next_line().await {
        if line.contains("\"return\"") {
            break;
        }
        if line.contains("\"error\"") {
            return Err(format!("the server refused: {line}"));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (idle_rss, _) = memory_kib(pid);
    let cpu_before = cpu_seconds(pid);

    // Load: each worker sends one GET after another, each on its own connection.
    let target = Target {
        host: "servernode".into(),
        ip: SERVER_IP.parse().map_err(|_| "bad server address")?,
        port,
        path: format!("/getsize.py?length={length}"),
    };
    let source: Option<IpAddr> = CLIENT_IP.parse().ok();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let target = target.clone();
        tasks.spawn(async move {
            let (mut totals, mut firsts, mut errors) = (Vec::new(), Vec::new(), 0u64);
            while Instant::now() < until {
                let f = get(&target, source, Duration::from_secs(5)).await;
                if f.error.is_none() && f.size_download == length {
                    totals.push(f.time_total);
                    firsts.push(f.time_starttransfer);
                } else {
                    errors += 1;
                }
            }
            (totals, firsts, errors)
        });
    }
    let mut peak_rss = idle_rss;
    let sampler = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            peak_rss = peak_rss.max(memory_kib(pid).0);
        }
    };
    let joined = async {
        let mut all = (Vec::new(), Vec::new(), 0u64);
        while let Some(Ok((t, f, e))) = tasks.join_next().await {
            all.0.extend(t);
            all.1.extend(f);
            all.2 += e;
        }
        all
    };
    let (mut totals, mut firsts, errors) = tokio::select! {
        all = joined => all,
        _ = sampler => unreachable!("the sampler never ends"),
    };
    let cpu = cpu_seconds(pid) - cpu_before;
    totals.sort_by(f64::total_cmp);
    firsts.sort_by(f64::total_cmp);
    let ms = |s: f64| s * 1000.0;
    println!(
        "load: {workers} workers, {seconds} s, GET {length} B: {} requests ({:.0}/s), {errors} errors; \
         time_total p50 {:.2} ms p99 {:.2} ms; time_starttransfer p50 {:.2} ms p99 {:.2} ms; \
         server CPU {:.1} µs per request",
        totals.len(),
        totals.len() as f64 / seconds as f64,
        ms(percentile(&totals, 0.5)),
        ms(percentile(&totals, 0.99)),
        ms(percentile(&firsts, 0.5)),
        ms(percentile(&firsts, 0.99)),
        cpu * 1e6 / totals.len().max(1) as f64,
    );

    // Idle keep-alive connections: each has been served one request and stays open.
    let before = memory_kib(pid).0;
    let mut open = Vec::new();
    let addr = SocketAddr::new(target.ip, port);
    let request = "GET /getsize.py?length=10 HTTP/1.1\r\nHost: servernode\r\n\r\n";
    for _ in 0..idle {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        let mut s = socket.connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"0123456789") {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return Err("an idle connection was closed".into()),
            }
        }
        open.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (with_idle, hwm) = memory_kib(pid);
    println!(
        "memory (KiB): idle {idle_rss}, peak under load {peak_rss}, before idle connections {before}, \
         with {idle} idle keep-alive connections {with_idle} ({:.1} KiB each), high-water mark {hwm}",
        (with_idle as f64 - before as f64) / idle.max(1) as f64
    );
    drop(open);
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ok(())
}
