//! The standard library's agents (`modules/runshell`, `runcmd`, `iperf`, `hping`,
//! `tcpdump`, `nodeStats`, `curl_reporter` in Python; `flooder` in Rust) over the agent
//! protocol, each with its real tool: what they return, what they record, and how they
//! refuse bad arguments.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, run_name, AgentProcess};

async fn agent(module: &str, test: &str, address: &str, hosts: Value) -> AgentProcess {
    AgentProcess::start_module(module, &run_name(test), "node1", address, hosts, json!({})).await
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Every record the agent sent so far (records sent while a call ran were kept by it).
fn recorded(a: &AgentProcess) -> Vec<Value> {
    a.records.iter().map(|(_, r)| r.clone()).collect()
}

/// The error text of a call that must fail.
async fn refused(a: &mut AgentProcess, method: &str, args: Value) -> String {
    match a.call(method, args.clone()).await {
        Err(e) => e,
        Ok(v) => panic!("{method}({args}) should fail, returned {v}"),
    }
}

#[tokio::test]
async fn runshell_returns_and_records_status_and_both_outputs_of_a_shell_line() {
    let mut a = agent("runshell", "rs_status", "127.0.0.1", json!({})).await;
    a.call(
        "setConfiguration",
        json!({"path": "echo out; echo err >&2; exit 4"}),
    )
    .await
    .unwrap();
    let v = a.call("execute", json!({})).await.unwrap();
    assert_eq!(
        v["retVal"], true,
        "the original's return, whatever the status"
    );
    assert_eq!(
        (v["exitStatus"].as_i64(), v["timedOut"].as_bool()),
        (Some(4), Some(false))
    );
    assert_eq!(
        (v["stdout"].as_str(), v["stderr"].as_str()),
        (Some("out\n"), Some("err\n"))
    );
    let rec = recorded(&a);
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["exitStatus"], 4);
    assert_eq!(rec[0]["command"], "echo out; echo err >&2; exit 4");
    a.stop().await;
}

#[tokio::test]
async fn runshell_bounds_the_output_it_keeps_and_ends_a_line_at_its_timeout() {
    let mut a = agent("runshell", "rs_bounds", "127.0.0.1", json!({})).await;
    a.call(
        "setConfiguration",
        json!({"path": "head -c 3000000 /dev/zero | tr '\\0' x", "maxOutput": 1000}),
    )
    .await
    .unwrap();
    let v = a.call("execute", json!({})).await.unwrap();
    assert_eq!(v["stdout"].as_str().map(str::len), Some(1000));
    assert_eq!(
        (v["stdoutBytes"].as_u64(), v["stdoutTruncated"].as_bool()),
        (Some(3_000_000), Some(true))
    );
    // A line running longer than its timeout ends, its background child with it.
    a.call(
        "setConfiguration",
        json!({"path": "sleep 60 & sleep 60", "timeout": 0.5}),
    )
    .await
    .unwrap();
    let t = Instant::now();
    let v = a.call("execute", json!({})).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(
        (v["timedOut"].as_bool(), v["exitStatus"].as_i64()),
        (Some(true), Some(-15))
    );
    a.stop().await;
}

#[tokio::test]
async fn runshell_refuses_bad_settings_and_keeps_the_previous_ones() {
    let mut a = agent("runshell", "rs_bad", "127.0.0.1", json!({})).await;
    assert!(refused(&mut a, "execute", json!({}))
        .await
        .contains("path is not set"));
    a.call("setConfiguration", json!({"path": "echo kept"}))
        .await
        .unwrap();
    for (args, says) in [
        (
            json!({"path": "echo new", "timeout": "soon"}),
            "timeout (seconds) must be a number",
        ),
        (json!({"timeout": -1}), "must be more than zero"),
        (
            json!({"maxOutput": 1e12}),
            "maxOutput (bytes) must be at most",
        ),
        (json!({"path": ["echo"]}), "path must be a string"),
    ] {
        let e = refused(&mut a, "setConfiguration", args).await;
        assert!(e.contains(says), "{e}");
    }
    let v = a.call("execute", json!({})).await.unwrap();
    assert_eq!(
        v["stdout"], "kept\n",
        "a refused configuration changes nothing"
    );
    a.stop().await;
}

#[tokio::test]
async fn runcmd_runs_in_the_background_without_a_shell_and_reports_when_down() {
    let mut a = agent("runcmd", "rc_bg", "127.0.0.1", json!({})).await;
    assert!(refused(&mut a, "isDown", json!({}))
        .await
        .contains("call start first"));
    assert!(refused(&mut a, "start", json!({}))
        .await
        .contains("cmdstring is not set"));
    a.call("setConfiguration", json!({"cmdstring": "echo $HOME; ls"}))
        .await
        .unwrap();
    assert_eq!(a.call("start", json!({})).await, Ok(json!(true)));
    let v = a.call("isDown", json!({})).await.unwrap();
    assert_eq!(
        v["stdout"], "$HOME; ls\n",
        "no shell: the words reach echo as they are"
    );
    // A long command: a second start is refused while it runs; stop ends it.
    a.call("setConfiguration", json!({"cmdstring": ["sleep", "60"]}))
        .await
        .unwrap();
    a.call("start", json!({})).await.unwrap();
    assert!(refused(&mut a, "start", json!({}))
        .await
        .contains("still runs"));
    a.call("stop", json!({})).await.unwrap();
    let v = a.call("isDown", json!({})).await.unwrap();
    assert_eq!(v["exitStatus"], -15);
    a.call(
        "setConfiguration",
        json!({"cmdstring": "magi-no-such-program x"}),
    )
    .await
    .unwrap();
    let e = refused(&mut a, "start", json!({})).await;
    assert!(e.contains("cannot run magi-no-such-program"), "{e}");
    let e = refused(
        &mut a,
        "setConfiguration",
        json!({"cmdstring": "echo 'open"}),
    )
    .await;
    assert!(e.contains("No closing quotation"), "{e}");
    let records = recorded(&a);
    assert_eq!(
        records.len(),
        2,
        "one record per command that ran: {records:?}"
    );
    a.stop().await;
}

#[tokio::test]
async fn iperf_client_and_server_measure_udp_and_record_both_reports() {
    let ip = "127.0.3.1";
    let hosts = json!({"srv": ip, "cli": "127.0.3.2"});
    let port = free_port(ip);
    let mut server = agent("iperf", "ip_srv", ip, hosts.clone()).await;
    let mut client = agent("iperf", "ip_cli", "127.0.3.2", hosts).await;
    assert_eq!(
        server.call("startServer", json!({"port": port})).await,
        Ok(json!(true))
    );
    let e = refused(&mut server, "startServer", json!({"port": port})).await;
    assert!(e.contains("already runs"), "{e}");
    let v = client
        .call(
            "startClient",
            json!({"server": "srv", "port": port, "time": 1, "bw": "2M"}),
        )
        .await
        .unwrap();
    assert_eq!(v["retVal"], true);
    let sent = v["bytes"].as_u64().unwrap();
    // 2 Mbit/s for 1 s is 250 000 bytes; iperf stops on a datagram boundary.
    assert!((200_000..300_000).contains(&sent), "{v}");
    assert_eq!(recorded(&client)[0]["role"], "client");
    let v = server.call("stopServer", json!({})).await.unwrap();
    assert_eq!(v["reports"], 1);
    let r = recorded(&server);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0]["role"].as_str(), r[0]["bytes"].as_u64()),
        (Some("server"), Some(sent))
    );
    assert_eq!(r[0]["lost"], 0);
    for (args, says) in [
        (json!({"server": "nosuchnode"}), "unknown node 'nosuchnode'"),
        (
            json!({"server": "srv", "time": -1}),
            "time (seconds) must be more than zero",
        ),
        (
            json!({"server": "srv", "bw": "fast"}),
            "bw must be bits per second",
        ),
        (
            json!({"server": "srv", "port": 70000}),
            "port must be at most 65535",
        ),
        (json!({}), "needs `server`"),
    ] {
        let e = refused(&mut client, "startClient", args).await;
        assert!(e.contains(says), "{e}");
    }
    server.stop().await;
    client.stop().await;
}

#[tokio::test]
async fn hping_probes_at_an_interval_and_floods_and_records_its_statistics() {
    if !is_root() {
        return magi_testkit::skip("hping", "hping3 needs raw sockets (root)");
    }
    let mut a = agent("hping", "hp", "127.0.0.1", json!({"srv": "127.0.0.1"})).await;
    let port = free_port("127.0.0.1");
    a.call(
        "startHping",
        json!({"dest": "srv", "port": port, "interval": 0.1}),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = a.call("stopHping", json!({})).await.unwrap();
    // About 1.5 s at 10 probes a second (1 s of it inside startHping).
    let sent = v["packetsSent"].as_u64().unwrap();
    assert!((8..=25).contains(&sent), "{v}");
    assert_eq!(
        (v["flood"].as_bool(), v["address"].as_str()),
        (Some(false), Some("127.0.0.1"))
    );
    // A flood, briefly, to loopback only.
    a.call("startHping", json!({"dest": "127.0.0.1", "port": port}))
        .await
        .unwrap();
    let v = a.call("stopHping", json!({})).await.unwrap();
    assert!(v["packetsSent"].as_u64().unwrap() > 1000, "{v}");
    assert_eq!(v["flood"], true);
    assert_eq!(recorded(&a).len(), 2);
    for (args, says) in [
        (
            json!({"dest": "srv", "interval": 0}),
            "interval (seconds) must be more than zero",
        ),
        (
            json!({"dest": "srv", "interval": "often"}),
            "must be a number",
        ),
        (
            json!({"dest": "srv", "port": -1}),
            "port must be more than zero",
        ),
        (json!({"dest": "elsewhere"}), "unknown node 'elsewhere'"),
        (json!({}), "needs `dest`"),
    ] {
        let e = refused(&mut a, "startHping", args).await;
        assert!(e.contains(says), "{e}");
    }
    a.stop().await;
}

#[tokio::test]
async fn tcpdump_captures_the_traffic_toward_dest_into_a_pcap_file_and_records_it() {
    if !is_root() {
        return magi_testkit::skip("tcpdump", "tcpdump needs raw sockets (root)");
    }
    let mut a = agent("tcpdump", "td", "127.0.0.1", json!({"peer": "127.0.4.1"})).await;
    let e = refused(&mut a, "startCollection", json!({})).await;
    assert!(e.contains("dest is not set"), "{e}");
    a.call("setConfiguration", json!({"dest": "peer"}))
        .await
        .unwrap();
    a.call("startCollection", json!({})).await.unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free_port("127.0.4.1");
    for _ in 0..50 {
        socket
            .send_to(b"magi tcpdump test", ("127.0.4.1", port))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = a.call("stopCollection", json!({})).await.unwrap();
    assert_eq!(
        (v["interface"].as_str(), v["dest"].as_str()),
        (Some("lo"), Some("peer"))
    );
    assert!(v["packets"].as_u64().unwrap() >= 50, "{v}");
    let file = v["file"].as_str().unwrap();
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(v["bytes"].as_u64(), Some(bytes.len() as u64));
    let payloads = bytes
        .windows(17)
        .filter(|w| w == b"magi tcpdump test")
        .count();
    assert!(
        payloads >= 50,
        "the capture holds the datagrams: {payloads}"
    );
    assert_eq!(recorded(&a)[0]["file"], file);
    // And it is handed back, for the node to fetch into the run record.
    assert_eq!(a.files.len(), 1, "{:?}", a.files);
    assert_eq!(a.files[0]["path"], file);
    let _ = std::fs::remove_file(file);
    let e = refused(
        &mut a,
        "setConfiguration",
        json!({"interface": "lo; rm -rf /"}),
    )
    .await;
    assert!(e.contains("is not an interface name"), "{e}");
    a.stop().await;
}

#[tokio::test]
async fn nodestats_samples_cpu_memory_interfaces_and_processes_every_interval() {
    let mut a = agent("nodeStats", "ns", "127.0.0.1", json!({})).await;
    let e = refused(&mut a, "setConfiguration", json!({"interval": 0.01})).await;
    assert!(e.contains("at least 0.1"), "{e}");
    a.call(
        "setConfiguration",
        json!({"interval": 0.2, "nodeDescription": "a test"}),
    )
    .await
    .unwrap();
    a.call("startCollection", json!({})).await.unwrap();
    a.collect(Duration::from_millis(1100)).await;
    a.call("stopCollection", json!({})).await.unwrap();
    let got = recorded(&a);
    let of = |kind: &str| got.iter().filter(|r| r["type"] == kind).collect::<Vec<_>>();
    assert_eq!(of("nodeinfo").len(), 1);
    assert_eq!(of("nodeinfo")[0]["nodeDescription"], "a test");
    let samples = of("node").len();
    assert!(
        (4..=7).contains(&samples),
        "every 0.2 s for 1.1 s: {samples}"
    );
    assert_eq!(of("memory").len(), samples);
    assert!(of("interface")
        .iter()
        .any(|r| r["name"] == "lo" && r["rx_bytes"].is_u64()));
    // The test process is this agent's parent, as the node agent would be.
    let me = std::process::id();
    assert!(
        of("process").iter().any(|r| r["process_id"] == me),
        "{:?}",
        of("process")
    );
    // Stopped: nothing more.
    assert!(a.collect(Duration::from_millis(500)).await.is_empty());
    a.stop().await;
}

#[tokio::test]
async fn curl_reporter_records_latency_and_bandwidth_of_each_fetch_size_in_turn() {
    let ip = "127.0.5.1";
    let port = free_port(ip);
    let mut web = AgentProcess::start(
        env!("CARGO_BIN_EXE_magi-http-server"),
        &run_name("curl_web"),
        "web",
        ip,
        json!({"web": ip}),
        json!({"port": port}),
    )
    .await;
    web.call("startServer", json!({})).await.unwrap();
    let mut a = agent("curl_reporter", "curl", "127.0.0.1", json!({"web": ip})).await;
    for (args, says) in [
        (json!({"url": "http://%s/"}), "url must be a template"),
        (json!({"sizes": []}), "sizes must be a non-empty list"),
        (
            json!({"sizes": [1, "big"]}),
            "sizes: each size must be a whole number",
        ),
        (
            json!({"protocol": "gopher"}),
            "protocol must be http or https",
        ),
    ] {
        let e = refused(&mut a, "setConfiguration", args).await;
        assert!(e.contains(says), "{e}");
    }
    let url = format!("%s://%s:{port}/getsize.py?length=%d");
    a.call(
        "setConfiguration",
        json!({"dests": ["web"], "url": url, "sizes": [1000, 50000], "interval": 0.3, "sut": "x"}),
    )
    .await
    .unwrap();
    a.call("startCollection", json!({})).await.unwrap();
    a.wait_records(3, Duration::from_secs(5)).await;
    a.call("stopCollection", json!({})).await.unwrap();
    let got: Vec<Value> = recorded(&a).into_iter().take(3).collect();
    let sizes: Vec<u64> = got.iter().map(|r| r["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [1000, 50000, 1000]);
    for r in &got {
        assert_eq!(
            (r["dest"].as_str(), r["sut"].as_str()),
            (Some("web"), Some("x"))
        );
        assert!(r["bandwidth"].as_f64().unwrap() > 0.0, "{r}");
        let (c, t) = (
            r["tcp_connected"].as_f64().unwrap(),
            r["total_time"].as_f64().unwrap(),
        );
        assert!(c > 0.0 && c <= t, "{r}");
        assert!(r.get("error").is_none(), "{r}");
    }
    a.call("setConfiguration", json!({"dests": ["nosuchnode"]}))
        .await
        .unwrap();
    let e = refused(&mut a, "startCollection", json!({})).await;
    assert!(e.contains("unknown node 'nosuchnode'"), "{e}");
    a.stop().await;
    web.stop().await;
}

/// Receives the UDP datagrams sent to `socket` for `duration`: (payload length, source port)
/// of each.
fn receive(socket: &std::net::UdpSocket, duration: Duration) -> Vec<(usize, u16)> {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let end = Instant::now() + duration;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            got.push((n, from.port()));
        }
    }
    got
}

#[tokio::test]
async fn flooder_sends_udp_at_its_rate_with_lengths_and_ports_in_range() {
    if !is_root() {
        return magi_testkit::skip("flooder", "the flooder needs a raw socket (root)");
    }
    let sink = std::net::UdpSocket::bind("127.0.6.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let mut a = AgentProcess::start(
        env!("CARGO_BIN_EXE_magi-flooder"),
        &run_name("flood"),
        "node1",
        "127.0.6.2",
        json!({"victim": "127.0.6.1"}),
        json!({"dst": "victim", "proto": "udp", "length": "minmax(10,20)", "sport": 4000,
               "dport": port, "ratetype": "flat", "highrate": 400}),
    )
    .await;
    assert_eq!(a.call("startFlood", json!({})).await, Ok(json!(true)));
    let got = tokio::task::spawn_blocking(move || receive(&sink, Duration::from_millis(1500)))
        .await
        .unwrap();
    let v = a.call("stopFlood", json!({})).await.unwrap();
    // 400 packets a second for about 1.5 s, all delivered on loopback.
    assert!((480..=720).contains(&got.len()), "{}", got.len());
    assert!(got
        .iter()
        .all(|&(n, p)| (10..=20).contains(&n) && p == 4000));
    assert!(got.iter().any(|&(n, _)| n == 10) && got.iter().any(|&(n, _)| n == 20));
    let sent = v["packets"].as_u64().unwrap();
    assert!(sent as usize >= got.len() && v["errors"] == 0, "{v}");
    let seconds: Vec<Value> = recorded(&a)
        .into_iter()
        .filter(|r| r["type"] == "second")
        .collect();
    assert!(!seconds.is_empty());
    assert!(seconds.iter().all(|r| r["rate"] == 400.0));
    assert_eq!(recorded(&a).last().unwrap()["type"], "total");
    a.stop().await;
}

#[tokio::test]
async fn flooder_ramps_its_rate_up_and_refuses_bad_settings_whole() {
    if !is_root() {
        return magi_testkit::skip("flooder ramp", "the flooder needs a raw socket (root)");
    }
    let sink = std::net::UdpSocket::bind("127.0.6.3:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let mut a = AgentProcess::start(
        env!("CARGO_BIN_EXE_magi-flooder"),
        &run_name("ramp"),
        "node1",
        "127.0.6.4",
        json!({}),
        json!({}),
    )
    .await;
    let e = refused(&mut a, "startFlood", json!({})).await;
    assert!(e.contains("dst is not set"), "{e}");
    for (args, says) in [
        (
            json!({"dst": "10.0.0.0/33"}),
            "dst '10.0.0.0/33' is not an address range",
        ),
        (
            json!({"dst": "127.0.6.3", "length": "minmax(20,10)"}),
            "length 'minmax(20,10)' must be",
        ),
        (json!({"highrate": -5}), "highrate must be from 0 to"),
        (
            json!({"ratetype": "chaotic"}),
            "ratetype must be flat, rampup or pulse",
        ),
        (json!({"proto": "icmp"}), "proto must be udp or tcp"),
        (json!({"tcpflags": ["SYN", "XMAS"]}), "'XMAS' is not one of"),
    ] {
        let e = refused(&mut a, "setConfiguration", args).await;
        assert!(e.contains(says), "{e}");
    }
    // The first refusal above set nothing: dst is still unset.
    assert!(refused(&mut a, "startFlood", json!({}))
        .await
        .contains("dst is not set"));
    // From 0 to 1000 packets a second over 2 s: about 250 in the first second, 750 in the
    // second.
    a.call(
        "setConfiguration",
        json!({"dst": "127.0.6.3/32", "dport": port, "ratetype": "rampup", "lowrate": 0,
               "highrate": 1000, "risetime": 2000}),
    )
    .await
    .unwrap();
    a.call("startFlood", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let v = a.call("stopFlood", json!({})).await.unwrap();
    let seconds: Vec<u64> = recorded(&a)
        .iter()
        .filter(|r| r["type"] == "second")
        .map(|r| r["packets"].as_u64().unwrap())
        .collect();
    assert!(seconds.len() >= 2, "{seconds:?}");
    assert!((180..=320).contains(&seconds[0]), "{seconds:?}");
    assert!((600..=900).contains(&seconds[1]), "{seconds:?}");
    assert!(v["packets"].as_u64().unwrap() >= seconds[0] + seconds[1]);
    drop(sink);
    // TCP SYNs toward a range: sent without errors.
    a.call(
        "setConfiguration",
        json!({"proto": "tcp", "dst": "127.0.7.0/24", "ratetype": "flat",
                                      "highrate": 200, "tcpflags": ["SYN", "ACK"]}),
    )
    .await
    .unwrap();
    a.call("startFlood", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = a.call("stopFlood", json!({})).await.unwrap();
    assert!(
        v["packets"].as_u64().unwrap() >= 40 && v["errors"] == 0,
        "{v}"
    );
    a.stop().await;
}
