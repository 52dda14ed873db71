//! Building, checking and removing testbeds from the shared topologies.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

#[test]
fn the_two_node_topology_is_a_100_mb_link_that_carries_100_mb() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_clientserver.tcl"), "cs");
    let addr = bed.exec(
        "clientnode",
        &["ip", "-o", "-4", "addr", "show", "dev", "eth0"],
    );
    assert!(
        text(&addr).contains("inet 198.18.0.1/30"),
        "{}",
        text(&addr)
    );
    let hosts = std::fs::read_to_string(format!("/etc/netns/{}/hosts", bed.ns("clientnode")))
        .expect("hosts file");
    assert!(hosts.contains("198.18.0.2\tservernode\n"), "{hosts}");
    // Names resolve through the namespace's hosts file.
    let ping = bed.exec("clientnode", &["ping", "-c", "1", "-W", "2", "servernode"]);
    assert!(ping.status.success(), "{}", text(&ping));
    // Nothing leads out of the lab (asked of the routing table: no packet is sent).
    let out = bed.exec("clientnode", &["ip", "route", "get", "192.0.2.1"]);
    assert!(!out.status.success(), "a route out: {}", text(&out));
    assert_link_carries(&bed, "clientnode", "servernode", 100e6);
}

#[test]
fn the_55_node_topology_routes_clients_through_the_router_at_10_mb() {
    let _serial = serial();
    let bed = Bed::up(&shared("cs55_topology.tcl"), "cs55");
    assert_eq!(
        bed.lab.namespaces().len(),
        57,
        "56 nodes and the LANs' namespace"
    );
    let routes = bed.exec("clientnode-17", &["ip", "-4", "route"]);
    let router_on_c = bed.address("router");
    assert!(
        text(&routes).contains(&format!("198.18.0.64/29 via {router_on_c} dev eth0")),
        "{}",
        text(&routes)
    );
    let forwarding = bed.exec("router", &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(text(&forwarding).trim(), "1");
    let ping = bed.exec(
        "clientnode-17",
        &["ping", "-c", "1", "-W", "2", "servernode-3"],
    );
    assert!(ping.status.success(), "across the router: {}", text(&ping));
    // Bridges live in the LANs' own namespace, not on the host.
    let bridges = Command::new("ip")
        .args([
            "-n",
            &format!("{}._lan", bed.name),
            "-o",
            "link",
            "show",
            "type",
            "bridge",
        ])
        .output()
        .expect("ip");
    assert_eq!(text(&bridges).lines().count(), 2, "{}", text(&bridges));
    assert_link_carries(&bed, "clientnode-1", "servernode-1", 10e6);
}

#[test]
fn the_feedback_topology_reaches_from_leaf_to_leaf_across_both_routers() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_feedback.tcl"), "fb");
    let ping = bed.exec("uc-49", &["ping", "-c", "1", "-W", "2", "s-9"]);
    assert!(ping.status.success(), "{}", text(&ping));
    let status = magi(&["testbed", "status", &bed.name]);
    assert!(
        text(&status).contains("63 nodes, 62 links, 0 LANs, 63/63 namespaces"),
        "{}",
        text(&status)
    );
}

#[test]
fn loss_drops_packets_at_random_and_delay_is_refused_without_netem() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let lossy = dir.path().join("lossy.yaml");
    std::fs::write(
        &lossy,
        "nodes: [a, b]\nlinks:\n  - {name: l, nodes: [a, b], bandwidth: 10Mb, loss: 0.2}\n",
    )
    .expect("write");
    let bed = Bed::up(&lossy, "loss");
    let ping = bed.exec(
        "a",
        &["ping", "-q", "-c", "200", "-i", "0.005", "-W", "1", "b"],
    );
    let summary = text(&ping);
    let received: f64 = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    // 20 % each way: about 64 % of the pings come back.
    assert!((0.48..=0.80).contains(&(received / 200.0)), "{summary}");
    drop(bed);

    let delayed = dir.path().join("delayed.tcl");
    std::fs::write(
        &delayed,
        "set ns [new Simulator]\nsource tb_compat.tcl\nset a [$ns node]\nset b [$ns node]\n\
         set l [$ns duplex-link $a $b 10Mb 10ms DropTail]\n",
    )
    .expect("write");
    let name = format!("t{}-delay", std::process::id());
    let out = magi(&["testbed", "up", &delayed.to_string_lossy(), "--name", &name]);
    if !magi_testbed::up::netem_available() {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("sch_netem"), "{}", text(&out));
        assert!(
            text(&out).contains("delayed.tcl:5: link `l`"),
            "{}",
            text(&out)
        );
        assert!(leftovers(&name).is_empty());
    } else {
        let _ = magi_testbed::down(&name);
    }
}

#[test]
fn down_leaves_nothing_after_the_builder_is_killed_half_way() {
    let _serial = serial();
    let name = format!("t{}-kill", std::process::id());
    let mut up = Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(["testbed", "up"])
        .arg(shared("cs55_topology.tcl"))
        .args(["--name", &name])
        .stdout(Stdio::null())
        .spawn()
        .expect("magi testbed up");
    // Kill it once some namespaces exist (or when it is done, on a fast machine).
    let started = Instant::now();
    while leftovers(&name).len() < 3 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = up.kill();
    let _ = up.wait();
    assert!(
        !leftovers(&name).is_empty(),
        "the builder had made something"
    );
    let down = magi(&["testbed", "down", &name]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    let again = magi(&["testbed", "down", &name]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("no testbed named"),
        "{}",
        text(&again)
    );
}

#[test]
fn testbed_commands_say_plainly_that_they_need_root() {
    let _serial = serial();
    // A copy nobody can run wherever the checkout is (a home directory may be closed).
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("magi");
    std::fs::copy(env!("CARGO_BIN_EXE_magi"), &copy).expect("copy magi");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(["testbed", "down", "whatever"])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("needs root"), "{}", text(&out));
}

#[test]
fn up_refuses_a_pool_on_the_hosts_networks_and_a_name_already_up() {
    let _serial = serial();
    let topology = shared("casestudy_clientserver.tcl");
    let host = magi_testbed::system::host_networks()
        .expect("host routes")
        .into_iter()
        .find(|n| n.prefix > 0 && n.prefix < 31)
        .expect("the host routes to some network");
    let name = format!("t{}-pool", std::process::id());
    let out = magi(&[
        "testbed",
        "up",
        &topology.to_string_lossy(),
        "--name",
        &name,
        "--pool",
        &host.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("overlaps the host's network"),
        "{}",
        text(&out)
    );
    assert!(leftovers(&name).is_empty());

    let bed = Bed::up(&topology, "twice");
    let again = magi(&[
        "testbed",
        "up",
        &topology.to_string_lossy(),
        "--name",
        &bed.name,
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already up"), "{}", text(&again));
    let ping = bed.exec("clientnode", &["ping", "-c", "1", "-W", "2", "servernode"]);
    assert!(
        ping.status.success(),
        "the first one is untouched: {}",
        text(&ping)
    );
}
