//! Over RabbitMQ across a testbed: `magi testbed up --control` and `magi run --broker URL
//! --testbed NAME`, a `magi-node` in each namespace logging in as its own broker user on a
//! throwaway vhost.

use std::process::Command;

use magi_testkit::{BrokerGuard, Throwaway};

use super::runs::short_case_study;
use super::support::*;

/// The processes living in namespace `ns`.
fn pids_in(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_control_network_reaches_the_host_only_and_down_removes_it() {
    let _serial = serial();
    let bed = Bed::up_with(&shared("casestudy_clientserver.tcl"), "ctl", &["--control"]);
    let control = bed.lab.control.clone().expect("a control network");
    let host_if = control.host_interface.clone();
    let client = control.node_address(0).to_string();
    let server = control.node_address(1).to_string();
    // The host reaches each node; a node reaches the host but not another node's control
    // address; the experiment's addresses are not reachable from the host.
    let ping = |args: &[&str]| {
        Command::new("ping")
            .args(["-c1", "-W1"])
            .args(args)
            .output()
            .expect("ping")
    };
    assert!(ping(&[&client]).status.success());
    assert!(bed
        .exec(
            "servernode",
            &["ping", "-c1", "-W1", &control.host_address.to_string()]
        )
        .status
        .success());
    assert!(
        !bed.exec("servernode", &["ping", "-c1", "-W1", &client])
            .status
            .success(),
        "node to node over the control bridge"
    );
    assert!(
        !ping(&["-I", &host_if, &bed.address("servernode")])
            .status
            .success(),
        "the host reached the experiment network"
    );
    assert!(ping(&[&server]).status.success());
    let rules = text(&bed.exec(
        "servernode",
        &["nft", "list", "table", "inet", "magi_testbed_control"],
    ));
    assert!(
        rules.contains("iifname \"ctl0\" drop") && rules.contains("oifname \"ctl0\" drop"),
        "{rules}"
    );
    let status = magi(&["testbed", "status", &bed.name]);
    assert!(
        text(&status).contains(&format!("control network {}", control.subnet)),
        "{}",
        text(&status)
    );
    let down = magi(&["testbed", "down", &bed.name]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    assert_eq!(leftovers(&bed.name), Vec::<String>::new());
    let links = Command::new("ip")
        .args(["-br", "link"])
        .output()
        .expect("ip link");
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&host_if),
        "{host_if} left on the host"
    );
}

#[test]
fn the_case_study_runs_over_rabbitmq_with_a_magi_node_per_namespace_as_its_own_user() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _broker = runtime
        .block_on(BrokerGuard::shared())
        .expect("the broker lock");
    // Broker users are global, and a node's user is its name: names unique to this test.
    let id = std::process::id();
    let (orchestrator, client, server) = (
        format!("orch{id}"),
        format!("clientnode{id}"),
        format!("servernode{id}"),
    );
    // The vhost as an operator configures a shared testbed (broker-config/apply.sh): no
    // guest, per-node users with topic permissions keyed on their names.
    let vhost = match Throwaway::configured("magi.", &[&orchestrator], &[&client, &server], &[]) {
        Ok(v) => v,
        Err(e) => return magi_testkit::skip("over RabbitMQ across a testbed", &e.to_string()),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // broker-config/apply.sh's credential files, one per node.
    let creds = dir.path().join("node-credentials");
    std::fs::create_dir(&creds).expect("mkdir");
    for node in [&client, &server] {
        std::fs::write(
            creds.join(format!("{node}.cred")),
            format!("{node}:{}\n", Throwaway::PASSWORD),
        )
        .expect("write");
    }
    // The case study's two nodes and 100 Mb/s link, under those names.
    let topology = dir.path().join("cs.yaml");
    std::fs::write(
        &topology,
        format!("nodes: [{client}, {server}]\nlinks:\n  - {{name: link, nodes: [{client}, {server}], bandwidth: 100Mb}}\n"),
    )
    .expect("write");
    let aal = short_case_study(dir.path());
    let text_of = std::fs::read_to_string(&aal).expect("read");
    std::fs::write(
        &aal,
        text_of
            .replace("clientnode", &client)
            .replace("servernode", &server),
    )
    .expect("write");
    // Without --control there is no way to the broker: refused, saying how.
    let plain = Bed::up(&topology, "noctl");
    let url = vhost.url(&orchestrator);
    let refused = magi(&[
        "run",
        &aal.to_string_lossy(),
        "--broker",
        &url,
        "--testbed",
        &plain.name,
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("magi testbed up --control"),
        "{}",
        text(&refused)
    );
    drop(plain);

    let bed = Bed::up_with(&topology, "amqp", &["--control"]);
    let records = dir.path().join("runs");
    let run = format!("{orchestrator}.cs");
    let out = magi(&[
        "run",
        &aal.to_string_lossy(),
        "--no-color",
        "--broker",
        &url,
        "--testbed",
        &bed.name,
        "--node-credentials",
        &creds.to_string_lossy(),
        "--run",
        &run,
        "--record-dir",
        &records.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record = records.join(&run);
    // The server's counter, started by the magi-node in servernode's namespace, counted the
    // client on the namespace's eth0.
    assert!(counted_in(&record, &client) > 0, "no traffic counted");
    let node_log = std::fs::read_to_string(record.join(format!("logs/magi-node-{server}.log")))
        .expect("the node's log");
    assert!(!node_log.contains("ERROR"), "{node_log}");
    // Every magi-node stopped with the run.
    for node in [&client, &server] {
        assert_eq!(
            pids_in(&bed.ns(node)),
            "",
            "processes left in {node}'s namespace"
        );
    }
}
