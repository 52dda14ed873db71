//! The `http_client` module (magi-spec §5.1) against a real server agent and against
//! scripted test servers, all on loopback, bounded in count and time.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, run_name, AgentProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CLIENT: &str = env!("CARGO_BIN_EXE_magi-http-client");
const SERVER: &str = env!("CARGO_BIN_EXE_magi-http-server");

async fn client(test: &str, address: &str, hosts: Value, execargs: Value) -> AgentProcess {
    AgentProcess::start(
        CLIENT,
        &run_name(test),
        "clientnode",
        address,
        hosts,
        execargs,
    )
    .await
}

/// What a scripted server saw of one connection.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    from: SocketAddr,
    request: String,
}

/// A test server on `ip:port` that logs each connection and answers after `delay` with
/// the asked length of body.
async fn scripted_server(ip: &str, delay: Duration) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, from)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let at = Instant::now();
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let request = String::from_utf8_lossy(&head).to_string();
                log.lock().unwrap().push(Seen {
                    at,
                    from,
                    request: request.clone(),
                });
                tokio::time::sleep(delay).await;
                let n: usize = request
                    .split("length=")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n{}",
                    "x".repeat(n)
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn requests_go_to_a_real_server_and_each_gives_a_record() {
    let (srv, cli) = ("127.0.3.1", "127.0.3.2");
    let port = free_port(srv);
    let hosts = json!({"servernode": srv, "clientnode": cli});
    let mut server = AgentProcess::start(
        SERVER,
        &run_name("real"),
        "servernode",
        srv,
        hosts.clone(),
        json!({"port": port}),
    )
    .await;
    server.call("startServer", json!({})).await.unwrap();
    let mut agent = client(
        "real",
        cli,
        hosts,
        json!({"servers": ["servernode"], "interval": "0.2", "sizes": "minmax(1000,2000)", "port": port}),
    )
    .await;
    assert_eq!(agent.call("startClient", json!({})).await, Ok(json!(true)));
    let records = agent.collect(Duration::from_millis(1300)).await;
    assert_eq!(agent.call("stopClient", json!({})).await, Ok(json!(true)));
    // One request per 0.2 s, the first 0.2 s after the start: about 6 in 1.3 s.
    assert!(
        (4..=7).contains(&records.len()),
        "{} records: {records:?}",
        records.len()
    );
    for r in &records {
        let url = r["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("http://servernode:{port}/getsize.py?length=")),
            "{url}"
        );
        let asked: u64 = url.rsplit('=').next().unwrap().parse().unwrap();
        assert!((1000..=2000).contains(&asked), "{asked}");
        assert_eq!(r["size_download"], asked);
        assert_eq!(r["size_requested"], asked);
        assert_eq!(r["error"], "");
        assert_eq!(r["http_code"], 200);
        assert_eq!(r["server"], "servernode");
        let (total, first) = (
            r["time_total"].as_f64().unwrap(),
            r["time_starttransfer"].as_f64().unwrap(),
        );
        assert!(first > 0.0 && first <= total && total < 1.0, "{r}");
        let speed = r["speed_download"].as_f64().unwrap();
        assert!((speed - asked as f64 / total).abs() < 1.0, "{r}");
    }
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn requests_come_from_the_nodes_own_address() {
    let (srv, cli) = ("127.0.3.5", "127.0.3.6");
    let (port, seen) = scripted_server(srv, Duration::ZERO).await;
    let mut agent = client(
        "source",
        cli,
        json!({"servernode": srv, "clientnode": cli}),
        json!({"servers": "servernode", "interval": "0.05", "sizes": "10", "port": port}),
    )
    .await;
    agent.call("startClient", json!({})).await.unwrap();
    let records = agent.wait_records(3, Duration::from_secs(5)).await;
    agent.call("stopClient", json!({})).await.unwrap();
    assert_eq!(records.len(), 3);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3);
    for s in &seen {
        assert_eq!(
            s.from.ip().to_string(),
            cli,
            "the client must send from its node's address"
        );
        assert!(
            s.request
                .starts_with("GET /getsize.py?length=10 HTTP/1.1\r\n"),
            "{}",
            s.request
        );
        assert!(s.request.contains("Host: servernode\r\n"), "{}", s.request);
    }
    agent.stop().await;
}

#[tokio::test]
async fn the_request_is_byte_for_byte_stable() {
    // What the packet counters of the case study count, with the server's answer.
    let (srv, cli) = ("127.0.3.21", "127.0.3.22");
    let (port, seen) = scripted_server(srv, Duration::ZERO).await;
    let mut agent = client(
        "bytes",
        cli,
        json!({"servernode": srv}),
        json!({"servers": ["servernode"], "interval": "0.05", "sizes": "1000", "port": port}),
    )
    .await;
    agent.call("startClient", json!({})).await.unwrap();
    agent.wait_records(1, Duration::from_secs(5)).await;
    agent.call("stopClient", json!({})).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].request,
        "GET /getsize.py?length=1000 HTTP/1.1\r\nHost: servernode\r\n\
         User-Agent: magi-http-client\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(seen[0].request.len(), 120);
    agent.stop().await;
}

#[tokio::test]
async fn the_first_request_comes_one_interval_after_start_and_spacing_is_start_to_start() {
    let (srv, cli) = ("127.0.3.7", "127.0.3.8");
    // Each answer takes 0.3 s of the 0.8 s interval: spacing stays 0.8 s start to start.
    let (port, seen) = scripted_server(srv, Duration::from_millis(300)).await;
    let mut agent = client(
        "timing",
        cli,
        json!({"servernode": srv}),
        json!({"servers": ["servernode"], "interval": "0.8", "port": port}),
    )
    .await;
    let started = Instant::now();
    agent.call("startClient", json!({})).await.unwrap();
    agent.wait_records(3, Duration::from_secs(5)).await;
    agent.call("stopClient", json!({})).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    let first = seen[0].at - started;
    assert!(
        first >= Duration::from_millis(750) && first < Duration::from_millis(1200),
        "first after {first:?}"
    );
    for pair in seen.windows(2).take(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(750) && gap < Duration::from_millis(1000),
            "gap {gap:?}"
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn requests_do_not_block_method_calls() {
    let (srv, cli) = ("127.0.3.9", "127.0.3.10");
    let (port, seen) = scripted_server(srv, Duration::from_secs(3)).await;
    let mut agent = client(
        "nonblocking",
        cli,
        json!({"servernode": srv}),
        json!({"servers": ["servernode"], "interval": "0.05", "port": port}),
    )
    .await;
    agent.call("startClient", json!({})).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "a request is in flight");
    let t = Instant::now();
    assert_eq!(
        agent.call("confirmConfiguration", json!({})).await,
        Ok(json!(true))
    );
    assert_eq!(agent.call("stopClient", json!({})).await, Ok(json!(true)));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "calls waited {:?}",
        t.elapsed()
    );
    // Stop does not wait for the slow request either.
    let took = agent.stop().await;
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
}

#[tokio::test]
async fn an_unknown_server_name_is_refused_at_load() {
    let mut agent = AgentProcess::spawn(
        CLIENT,
        &run_name("unknown"),
        "clientnode",
        "127.0.3.11",
        json!({"servernode": "127.0.3.12", "clientnode": "127.0.3.11"}),
        json!({"servers": ["servernode", "servrnode"]}),
    )
    .await;
    let e = agent.first_answer().await.unwrap_err();
    assert!(e.contains("servers: unknown node 'servrnode'"), "{e}");
    assert!(e.contains("clientnode, servernode"), "{e}");
}

#[tokio::test]
async fn a_bad_distribution_is_refused_at_load_and_at_set_configuration() {
    let hosts = json!({"servernode": "127.0.3.13"});
    let mut agent = AgentProcess::spawn(
        CLIENT,
        &run_name("baddist"),
        "c",
        "127.0.3.14",
        hosts.clone(),
        json!({"sizes": "minmax(1000,"}),
    )
    .await;
    let e = agent.first_answer().await.unwrap_err();
    assert!(
        e.starts_with("sizes: bad distribution 'minmax(1000,' at column 13"),
        "{e}"
    );

    let mut agent = client(
        "baddist2",
        "127.0.3.14",
        hosts,
        json!({"sizes": "minmax(1,2)"}),
    )
    .await;
    let e = agent
        .call(
            "setConfiguration",
            json!({"interval": "2", "sizes": "minMax(1, 2)"}),
        )
        .await
        .unwrap_err();
    assert!(e.contains("did you mean 'minmax'"), "{e}");
    // Nothing of a refused configuration takes effect.
    let c = agent.call("getConfiguration", json!({})).await.unwrap();
    assert_eq!(
        (c["interval"].as_str(), c["sizes"].as_str()),
        (Some("1"), Some("minmax(1,2)"))
    );
    assert_eq!(
        agent
            .call(
                "setConfiguration",
                json!({"interval": 2, "sizes": "gamma(2, 500, cap=3000)"})
            )
            .await,
        Ok(json!(true))
    );
    let c = agent.call("getConfiguration", json!({})).await.unwrap();
    assert_eq!(
        (c["interval"].as_str(), c["sizes"].as_str()),
        (Some("2"), Some("gamma(2, 500, cap=3000)"))
    );
    agent.stop().await;
}

#[tokio::test]
async fn traffic_methods_change_the_requested_size_as_the_original() {
    let mut agent = client(
        "traffic",
        "127.0.3.15",
        json!({}),
        json!({"sizes": "1000", "seed": 7}),
    )
    .await;
    let sizes = |c: Value| c["sizes"].as_str().unwrap().parse::<f64>().unwrap();
    // Returning nothing: the trigger carries retVal true, as the original's None.
    assert_eq!(
        agent
            .call("increaseTraffic", json!({"stepsize": 500}))
            .await,
        Ok(Value::Null)
    );
    assert_eq!(
        sizes(agent.call("getConfiguration", json!({})).await.unwrap()),
        1500.0
    );
    agent
        .call("reduceTraffic", json!({"stepsize": "5000"}))
        .await
        .unwrap();
    assert_eq!(
        sizes(agent.call("getConfiguration", json!({})).await.unwrap()),
        0.0
    );
    agent
        .call("setConfiguration", json!({"sizes": "100000"}))
        .await
        .unwrap();
    let (mut up, mut down, mut same) = (0, 0, 0);
    let mut last = 100_000.0;
    for _ in 0..200 {
        agent
            .call("changeTraffic", json!({"stepsize": 50000}))
            .await
            .unwrap();
        let now = sizes(agent.call("getConfiguration", json!({})).await.unwrap());
        assert!((now - last).abs() <= 50000.0 && now >= 0.0);
        match now.partial_cmp(&last) {
            Some(std::cmp::Ordering::Greater) => up += 1,
            Some(std::cmp::Ordering::Less) => down += 1,
            _ => same += 1,
        }
        last = now;
    }
    // About 10 % up, 10 % down, 80 % unchanged.
    assert!(
        (5..=40).contains(&up) && (5..=40).contains(&down) && same >= 130,
        "{up} {down} {same}"
    );
    let e = agent.call("increaseTraffic", json!({})).await.unwrap_err();
    assert!(e.contains("missing argument 'stepsize'"), "{e}");
    agent.stop().await;
}

#[tokio::test]
async fn a_failed_request_is_a_record_with_its_error() {
    let (srv, cli) = ("127.0.3.16", "127.0.3.17");
    let port = free_port(srv); // nobody listens there
    let mut agent = client(
        "failed",
        cli,
        json!({"servernode": srv}),
        json!({"servers": ["servernode"], "interval": "0.1", "port": port}),
    )
    .await;
    agent.call("startClient", json!({})).await.unwrap();
    let records = agent.wait_records(1, Duration::from_secs(3)).await;
    agent.call("stopClient", json!({})).await.unwrap();
    let r = &records[0];
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("failed to connect to servernode"),
        "{r}"
    );
    assert_eq!(
        (r["size_download"].as_u64(), r["http_code"].as_u64()),
        (Some(0), Some(0))
    );
    agent.stop().await;
}

#[tokio::test]
async fn stop_client_stops_the_requests_and_start_client_resumes_them() {
    let (srv, cli) = ("127.0.3.18", "127.0.3.19");
    let (port, seen) = scripted_server(srv, Duration::ZERO).await;
    let mut agent = client(
        "stopstart",
        cli,
        json!({"servernode": srv}),
        json!({"servers": ["servernode"], "interval": "0.1", "port": port}),
    )
    .await;
    agent.call("startClient", json!({})).await.unwrap();
    agent.wait_records(2, Duration::from_secs(3)).await;
    agent.call("stopClient", json!({})).await.unwrap();
    let after_stop = agent.collect(Duration::from_millis(150)).await.len();
    let n = seen.lock().unwrap().len();
    assert!(
        agent.collect(Duration::from_millis(500)).await.is_empty(),
        "records after stopClient"
    );
    assert_eq!(seen.lock().unwrap().len(), n, "requests after stopClient");
    assert!(after_stop <= 1);
    agent.call("startClient", json!({})).await.unwrap();
    assert_eq!(agent.wait_records(2, Duration::from_secs(3)).await.len(), 2);
    agent.stop().await;
}

#[tokio::test]
async fn without_servers_it_says_so_once() {
    let mut agent = client(
        "noservers",
        "127.0.3.20",
        json!({}),
        json!({"interval": "0.05"}),
    )
    .await;
    agent.call("startClient", json!({})).await.unwrap();
    assert!(agent.collect(Duration::from_millis(400)).await.is_empty());
    let logs = agent.log_text();
    assert_eq!(logs.matches("no servers to contact").count(), 1, "{logs}");
    agent.stop().await;
}
