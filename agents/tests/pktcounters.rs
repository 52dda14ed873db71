//! The `pktcounters` module (magi-spec §5.3): real traffic between loopback addresses,
//! counted per peer in the agent's own nftables table, and the interface fallback.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{connect, run_name, AgentProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_magi-pktcounters");

/// Whether this machine lets us make nftables tables; skips the test otherwise.
fn nft_usable(test: &str) -> bool {
    match Command::new("nft").args(["list", "tables"]).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr);
            magi_testkit::skip(
                test,
                &format!("nft cannot list tables here ({}); run as root", why.trim()),
            );
            false
        }
        Err(e) => {
            magi_testkit::skip(
                test,
                &format!("nft is not installed ({e}); apt-get install nftables"),
            );
            false
        }
    }
}

fn tables() -> Vec<String> {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn table_exists(name: &str) -> bool {
    tables().iter().any(|t| t == &format!("table inet {name}"))
}

/// Sends `up` bytes from `from` to a listener on `to`, which answers with `down` bytes.
async fn transfer(from: &str, to: &str, up: usize, down: usize) {
    let listener = TcpListener::bind((to, 0)).await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = vec![0u8; up];
        s.read_exact(&mut got).await.unwrap();
        s.write_all(&vec![b'y'; down]).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let mut c = connect(Some(from), addr).await.unwrap();
    c.write_all(&vec![b'x'; up]).await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), down);
    server.await.unwrap();
}

fn sum(records: &[Value], peer: &str, direction: &str, field: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["peerNode"] == peer && r["trafficDirection"] == direction)
        .map(|r| r[field].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn counts_bytes_between_two_nodes_per_peer_and_direction_in_its_own_table() {
    if !nft_usable("counts_bytes_between_two_nodes_per_peer_and_direction_in_its_own_table") {
        return;
    }
    let (me, sender, idle) = ("127.0.4.1", "127.0.4.2", "127.0.4.3");
    let run = run_name("count");
    let hosts = json!({"router": me, "clientnode": sender, "idlenode": idle});
    let before = tables();
    let mut agent = AgentProcess::start(BIN, &run, "router", me, hosts, json!({})).await;
    assert_eq!(
        agent.call("startCollection", json!({})).await,
        Ok(json!(true))
    );
    let table = format!("magi_{run}_test_agent_router");
    assert!(
        table_exists(&table),
        "the agent's table {table} exists while collecting"
    );
    transfer(sender, me, 300_000, 50_000).await;
    // Up to two whole intervals for the deltas to be recorded.
    let records = agent.collect(Duration::from_millis(2300)).await;
    assert!(!records.is_empty(), "no records: {}", agent.log_text());
    for r in &records {
        assert_eq!(r["counter"], "nftables ip saddr/daddr", "{r}");
        if r["intfName"] != "total" {
            assert_eq!(r["intfName"], "lo", "{r}");
        }
    }
    // IP bytes: the payload plus headers (52 bytes a packet with timestamps).
    let bytes_in = sum(&records, "clientnode", "in", "bytes");
    let packets_in = sum(&records, "clientnode", "in", "packets");
    assert!(
        bytes_in >= 300_000 && bytes_in <= 300_000 + 80 * packets_in,
        "in {bytes_in} in {packets_in} packets"
    );
    let bytes_out = sum(&records, "clientnode", "out", "bytes");
    let packets_out = sum(&records, "clientnode", "out", "packets");
    assert!(
        bytes_out >= 50_000 && bytes_out <= 50_000 + 80 * packets_out,
        "out {bytes_out} in {packets_out} packets"
    );
    assert_eq!(
        sum(&records, "idlenode", "in", "bytes") + sum(&records, "idlenode", "out", "bytes"),
        0
    );
    // Totals follow each interval's counters, as the original's.
    let total_in: u64 = records
        .iter()
        .filter(|r| r["intfName"] == "total" && r["trafficDirection"] == "in")
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(total_in, bytes_in);

    assert_eq!(
        agent.call("stopCollection", json!({})).await,
        Ok(json!(true))
    );
    assert!(!table_exists(&table), "stopCollection removes the table");
    // Nobody else's table was touched.
    let after = tables();
    // (Tables of this test process's other tests come and go in parallel.)
    let ours = format!("magi_t{}_", std::process::id());
    for t in before.iter().filter(|t| !t.contains(&ours)) {
        assert!(after.contains(t), "{t} disappeared");
    }
    agent.stop().await;
}

#[tokio::test]
async fn sense_compares_the_latest_interval_with_the_thresholds() {
    let (me, peer) = ("127.0.4.5", "127.0.4.6");
    let hosts = json!({"monitor": me, "peer": peer});
    // The interface counter works everywhere; sense reads records of either kind.
    let mut agent = AgentProcess::start(
        BIN,
        &run_name("sense"),
        "monitor",
        me,
        hosts,
        json!({"counter": "interface"}),
    )
    .await;
    let sense = |low: i64, high: i64| json!({"peerNode": "peer", "trafficDirection": "in", "thresholdLow": low, "thresholdHigh": high});
    // No record yet: 0, as the original answered when its lookup failed.
    assert_eq!(
        agent.call("sense", sense(0, 0)).await,
        Ok(json!({"result": 0}))
    );
    agent.call("startCollection", json!({})).await.unwrap();
    let records = agent.wait_records(1, Duration::from_secs(3)).await;
    let bytes = records
        .iter()
        .find(|r| r["trafficDirection"] == "in")
        .map(|r| r["bytes"].as_i64().unwrap());
    agent.call("stopCollection", json!({})).await.unwrap();
    let Some(b) = bytes else {
        panic!("no 'in' record: {records:?}")
    };
    assert_eq!(
        agent.call("sense", sense(b + 1, b + 2)).await,
        Ok(json!({"result": -1}))
    );
    assert_eq!(
        agent.call("sense", sense(b, b)).await,
        Ok(json!({"result": 0}))
    );
    assert_eq!(
        agent.call("sense", sense(b - 2, b - 1)).await,
        Ok(json!({"result": 1}))
    );
    let e = agent
        .call("sense", json!({"peerNode": "peer", "trafficDirection": "sideways", "thresholdLow": 0, "thresholdHigh": 1}))
        .await
        .unwrap_err();
    assert!(e.contains("'in' or 'out'"), "{e}");
    assert!(agent
        .call("sense", json!({"peerNode": "peer"}))
        .await
        .unwrap_err()
        .contains("missing argument"));
    agent.stop().await;
}

#[tokio::test]
async fn the_table_is_removed_when_the_agent_is_stopped_or_its_input_ends() {
    if !nft_usable("the_table_is_removed_when_the_agent_is_stopped_or_its_input_ends") {
        return;
    }
    let hosts = json!({"a": "127.0.4.8", "b": "127.0.4.9"});
    for how in ["stop", "eof"] {
        let run = run_name(&format!("cleanup_{how}"));
        let mut agent =
            AgentProcess::start(BIN, &run, "a", "127.0.4.8", hosts.clone(), json!({})).await;
        agent.call("startCollection", json!({})).await.unwrap();
        let table = format!("magi_{run}_test_agent_a");
        assert!(table_exists(&table));
        if how == "stop" {
            agent.stop().await;
        } else {
            agent.close_input();
            agent.wait_exit(std::time::Instant::now()).await;
        }
        assert!(
            !table_exists(&table),
            "the table outlived the agent ({how})"
        );
    }
}

#[tokio::test]
async fn records_come_once_per_interval_on_whole_seconds() {
    let (me, peer) = ("127.0.4.11", "127.0.4.12");
    let hosts = json!({"m": me, "p": peer});
    let mut agent = AgentProcess::start(
        BIN,
        &run_name("align"),
        "m",
        me,
        hosts,
        json!({"counter": "interface", "interval": 1}),
    )
    .await;
    agent.call("startCollection", json!({})).await.unwrap();
    agent.collect(Duration::from_millis(3200)).await;
    agent.call("stopCollection", json!({})).await.unwrap();
    // lo leads to one peer: 2 records a second (in, out), plus totals when lo saw traffic.
    let arrivals: Vec<f64> = agent
        .records
        .iter()
        .filter(|(_, r)| r["intfName"] == "lo" && r["trafficDirection"] == "in")
        .map(|(at, _)| {
            let since = at.elapsed();
            (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - since).as_secs_f64()
        })
        .collect();
    assert!((2..=4).contains(&arrivals.len()), "{arrivals:?}");
    for t in &arrivals {
        assert!(t.fract() < 0.3, "a sample at {t} is not on a whole second");
    }
    for pair in arrivals.windows(2) {
        assert!((pair[1] - pair[0] - 1.0).abs() < 0.3, "{arrivals:?}");
    }
    let r = &agent.records[0].1;
    assert_eq!(r["counter"], "interface /proc/net/dev");
    assert_eq!(r["peerNode"], "p");
    agent.stop().await;
}

#[tokio::test]
async fn interface_records_say_when_the_peer_is_unknown() {
    let me = "127.0.4.14";
    let hosts = json!({"m": me, "p1": "127.0.4.15", "p2": "127.0.4.16"});
    let mut agent = AgentProcess::start(
        BIN,
        &run_name("unknownpeer"),
        "m",
        me,
        hosts,
        json!({"counter": "interface"}),
    )
    .await;
    agent.call("startCollection", json!({})).await.unwrap();
    let records = agent.wait_records(2, Duration::from_secs(3)).await;
    agent.call("stopCollection", json!({})).await.unwrap();
    assert_eq!(
        records[0]["peerNode"], "peerNode",
        "two peers share lo: {records:?}"
    );
    assert!(
        agent.log_text().contains("leads to 2 peers (p1, p2)"),
        "{}",
        agent.log_text()
    );
    agent.stop().await;
}

#[tokio::test]
async fn bad_configuration_is_refused_at_load() {
    let hosts = json!({"m": "127.0.4.17"});
    for (execargs, expect) in [
        (json!({"counter": "magic"}), "counter must be"),
        (json!({"interval": "soon"}), "'interval' must be a number"),
        (json!({"peers": ["nobody"]}), "peers: unknown node 'nobody'"),
    ] {
        let mut agent = AgentProcess::spawn(
            BIN,
            &run_name("bad"),
            "m",
            "127.0.4.17",
            hosts.clone(),
            execargs,
        )
        .await;
        let e = agent.first_answer().await.unwrap_err();
        assert!(e.contains(expect), "{e}");
    }
}
