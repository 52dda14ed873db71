//! The `apache` module's server (magi-spec §5.2), driven through the agent protocol and
//! checked with an independent raw HTTP client. Loopback only.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::{connect, free_port, get, get_on, run_name, AgentProcess};

const BIN: &str = env!("CARGO_BIN_EXE_magi-http-server");

async fn server(test: &str, address: &str, port: u16, hosts: Value) -> AgentProcess {
    AgentProcess::start(
        BIN,
        &run_name(test),
        "servernode",
        address,
        hosts,
        json!({"port": port}),
    )
    .await
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[tokio::test]
async fn getsize_serves_exactly_the_asked_number_of_bytes() {
    let ip = "127.0.2.1";
    let port = free_port(ip);
    let mut agent = server("getsize", ip, port, json!({"servernode": ip})).await;
    assert_eq!(agent.call("startServer", json!({})).await, Ok(json!(true)));
    for n in [0usize, 1, 1000, 99_999, 100_000, 100_001, 4_000_000] {
        let r = get(None, addr(ip, port), &format!("/getsize.py?length={n}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert_eq!(r.header("Content-Length"), Some(n.to_string().as_str()));
        assert_eq!(r.body.len(), n);
    }
    agent.stop().await;
}

#[tokio::test]
async fn gethost_names_the_requesting_node_and_its_address() {
    let (ip, client) = ("127.0.2.3", "127.0.2.4");
    let port = free_port(ip);
    let hosts = json!({"servernode": ip, "clientnode": client});
    let mut agent = server("gethost", ip, port, hosts).await;
    agent.call("startServer", json!({})).await.unwrap();
    let r = get(Some(client), addr(ip, port), "/gethost.py").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html"));
    let page = String::from_utf8(r.body).unwrap();
    assert!(page.contains("<b>clientnode</b> (127.0.2.4)"), "{page}");
    agent.stop().await;
}

#[tokio::test]
async fn serves_the_fixed_100k_file_and_refuses_bad_requests() {
    let ip = "127.0.2.5";
    let port = free_port(ip);
    let mut agent = server("files", ip, port, json!({})).await;
    agent.call("startServer", json!({})).await.unwrap();
    let r = get(None, addr(ip, port), "/100k.bin").await;
    assert_eq!((r.status, r.body.len()), (200, 100_000));
    assert_eq!(get(None, addr(ip, port), "/nothing-here").await.status, 404);
    assert_eq!(
        get(None, addr(ip, port), "/getsize.py?length=lots")
            .await
            .status,
        400
    );
    // Garbage instead of a request gets a 400, not a hang or a crash.
    let mut s = connect(None, addr(ip, port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"\x00\x01garbage\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 200];
    let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"));
    // And the server still serves.
    assert_eq!(
        get(None, addr(ip, port), "/getsize.py?length=3").await.body,
        b"012"
    );
    agent.stop().await;
}

#[tokio::test]
async fn the_answer_to_the_clients_request_is_byte_for_byte_stable() {
    // What the packet counters of the case study count: a `Date` header or a changed
    // header would change every byte count recorded.
    let ip = "127.0.2.13";
    let port = free_port(ip);
    let mut agent = server("bytes", ip, port, json!({})).await;
    agent.call("startServer", json!({})).await.unwrap();
    let mut s = connect(None, addr(ip, port)).await.unwrap();
    let request = "GET /getsize.py?length=1000 HTTP/1.1\r\nHost: servernode\r\n\
                   User-Agent: magi-http-client\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut answer)
        .await
        .unwrap();
    let head = "HTTP/1.1 200 OK\r\nServer: magi-http-server\r\nContent-Type: text/plain\r\n\
                Content-Length: 1000\r\nConnection: close\r\n\r\n";
    assert_eq!(
        String::from_utf8_lossy(&answer[..head.len().min(answer.len())]),
        head
    );
    assert_eq!(answer.len(), 112 + 1000);
    agent.stop().await;
}

#[tokio::test]
async fn an_oversized_head_gets_431_and_the_server_goes_on() {
    let ip = "127.0.2.12";
    let port = free_port(ip);
    let mut agent = server("bighead", ip, port, json!({})).await;
    agent.call("startServer", json!({})).await.unwrap();
    let mut s = connect(None, addr(ip, port)).await.unwrap();
    let head = format!("GET /{} HTTP/1.1\r\nHost: s\r\n\r\n", "a".repeat(70_000));
    // The server may answer and close before it has read everything sent.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes()).await;
    let mut buf = vec![0u8; 200];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
    )
    .await
    .expect("an answer, not a hang")
    .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(
        get(None, addr(ip, port), "/getsize.py?length=3").await.body,
        b"012"
    );
    agent.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let ip = "127.0.2.6";
    let port = free_port(ip);
    let mut agent = server("keepalive", ip, port, json!({})).await;
    agent.call("startServer", json!({})).await.unwrap();
    let mut s = connect(None, addr(ip, port)).await.unwrap();
    for n in [10usize, 200_000, 5] {
        let r = get_on(&mut s, &format!("/getsize.py?length={n}"), false).await;
        assert_eq!(r.body.len(), n);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
    agent.stop().await;
}

#[tokio::test]
async fn the_server_is_shared_until_its_last_caller_stops() {
    let ip = "127.0.2.7";
    let port = free_port(ip);
    let mut agent = server("shared", ip, port, json!({})).await;
    let serving = |port| async move { connect(None, addr(ip, port)).await.is_ok() };
    // Named callers are a set: a second start by the same caller changes nothing.
    agent
        .call("startServer", json!({"caller": "orch-a"}))
        .await
        .unwrap();
    agent
        .call("startServer", json!({"caller": "orch-a"}))
        .await
        .unwrap();
    agent
        .call("startServer", json!({"caller": "orch-b"}))
        .await
        .unwrap();
    agent
        .call("stopServer", json!({"caller": "orch-a"}))
        .await
        .unwrap();
    assert!(serving(port).await, "orch-b still uses the server");
    assert_eq!(
        agent.call("stopServer", json!({"caller": "orch-b"})).await,
        Ok(json!(true))
    );
    assert!(
        !serving(port).await,
        "the last caller left: the server stops"
    );
    // Calls without a caller are counted.
    agent.call("startServer", json!({})).await.unwrap();
    agent.call("startServer", json!({})).await.unwrap();
    agent.call("stopServer", json!({})).await.unwrap();
    assert!(serving(port).await, "one anonymous start is still counted");
    agent.call("stopServer", json!({})).await.unwrap();
    assert!(!serving(port).await);
    // A stop with nothing to stop is harmless, and said.
    assert_eq!(agent.call("stopServer", json!({})).await, Ok(json!(true)));
    agent.collect(Duration::from_millis(100)).await;
    assert!(
        agent.log_text().contains("had not started"),
        "{}",
        agent.log_text()
    );
    agent.stop().await;
}

#[tokio::test]
async fn the_default_port_is_80() {
    let ip = "127.0.2.8";
    let mut agent = AgentProcess::start(
        BIN,
        &run_name("port80"),
        "servernode",
        ip,
        json!({}),
        json!({}),
    )
    .await;
    match agent.call("startServer", json!({})).await {
        Ok(v) => assert_eq!(v, json!(true)),
        Err(e) if e.contains("ermission denied") => {
            let why = format!("not allowed to bind port 80 here ({e})");
            magi_testkit::skip("the_default_port_is_80", &why);
            return;
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        get(None, addr(ip, 80), "/getsize.py?length=42")
            .await
            .body
            .len(),
        42
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_port_in_use_is_an_error_of_the_call_not_a_crash() {
    let ip = "127.0.2.9";
    let taken = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut agent = server("inuse", ip, port, json!({})).await;
    let e = agent.call("startServer", json!({})).await.unwrap_err();
    assert!(e.contains(&format!("{ip}:{port}")), "{e}");
    drop(taken);
    assert_eq!(agent.call("startServer", json!({})).await, Ok(json!(true)));
    agent.stop().await;
}

#[tokio::test]
async fn a_bad_port_is_refused_at_load() {
    let mut agent = AgentProcess::spawn(
        BIN,
        &run_name("badport"),
        "n",
        "127.0.2.10",
        json!({}),
        json!({"port": 70000}),
    )
    .await;
    let e = agent.first_answer().await.unwrap_err();
    assert!(e.contains("'port'"), "{e}");
}

#[tokio::test]
async fn stop_exits_promptly_and_frees_the_port() {
    let ip = "127.0.2.11";
    let port = free_port(ip);
    let mut agent = server("stop", ip, port, json!({})).await;
    agent.call("startServer", json!({})).await.unwrap();
    // An open idle connection must not hold the exit up.
    let _idle = connect(None, addr(ip, port)).await.unwrap();
    let took = agent.stop().await;
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(connect(None, addr(ip, port)).await.is_err());
}
