//! The shared case-study topologies, read from the original `.tcl` files unchanged.

use std::path::PathBuf;

use magi_testbed::routes::static_routes;
use magi_testbed::topology::{Routing, SegmentKind};
use magi_testbed::{AddressPlan, Topology};

fn casestudy(file: &str) -> Topology {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/casestudies")
        .join(file);
    magi_testbed::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn names(t: &Topology, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&i| t.nodes[i].name.clone()).collect()
}

#[test]
fn the_client_server_topology_is_two_nodes_on_a_100_mb_link() {
    let t = casestudy("casestudy_clientserver.tcl");
    assert_eq!(names(&t, &[0, 1]), ["clientnode", "servernode"]);
    assert_eq!(t.segments.len(), 1);
    let link = &t.segments[0];
    assert_eq!(
        (link.name.as_str(), link.kind, link.line),
        ("link", SegmentKind::Link, 12)
    );
    assert_eq!(link.nodes, [0, 1]);
    assert_eq!(link.shape.bandwidth_bps, 100_000_000);
    assert_eq!(link.shape.delay_us, 0);
    assert_eq!(t.routing, Routing::Static);
    assert!(t.routers().is_empty());
    assert_eq!(
        t.nodes[0].settings["startcmd"],
        "sudo python /share/magi/current/magi_bootstrap.py"
    );
}

fn check_cs55(t: &Topology, router_startcmd: bool) {
    assert_eq!(t.nodes.len(), 56);
    assert_eq!(t.nodes[0].name, "clientnode-1");
    assert_eq!(t.nodes[54].name, "servernode-5");
    assert_eq!(t.nodes[55].name, "router");
    assert_eq!(t.links().count(), 0);
    let lans: Vec<_> = t.lans().collect();
    assert_eq!(lans.len(), 2);
    assert_eq!(lans[0].name, "lanC");
    assert_eq!(lans[0].nodes.len(), 51);
    assert_eq!(lans[1].name, "lanS");
    assert_eq!(lans[1].nodes.len(), 6);
    assert_eq!(
        lans[0].nodes[0], 55,
        "the router comes first, named literally"
    );
    assert!(lans.iter().all(|l| l.shape.bandwidth_bps == 10_000_000));
    assert_eq!(names(t, &t.routers()), ["router"]);
    assert_eq!(
        t.nodes[55].settings.contains_key("startcmd"),
        router_startcmd
    );

    let plan = AddressPlan::new(t, magi_testbed::plan::DEFAULT_POOL.parse().unwrap()).unwrap();
    let routes = static_routes(t, &plan);
    // Every client routes to the server LAN through the router, and back.
    assert_eq!(routes.len(), 55);
    let router_on_c = plan.node_address(t, 55, 0).unwrap();
    let client_route = routes.iter().find(|r| r.node == 0).unwrap();
    assert_eq!(
        (client_route.to, client_route.via),
        (plan.subnets[1], router_on_c)
    );
}

#[test]
fn the_55_node_topology_is_two_lans_joined_by_a_router() {
    check_cs55(&casestudy("cs55_topology.tcl"), false);
}

#[test]
fn the_55_node_case_study_topology_has_a_router_with_a_start_command() {
    check_cs55(&casestudy("casestudy_clientserver55.tcl"), true);
}

#[test]
fn the_feedback_topology_is_trees_of_links_behind_two_routers() {
    let t = casestudy("casestudy_feedback.tcl");
    assert_eq!(t.nodes.len(), 63);
    assert_eq!(t.lans().count(), 0);
    assert_eq!(t.links().count(), 62);
    assert!(t.links().all(|l| l.shape.bandwidth_bps == 1_000_000_000));
    let link5 = t.segments.iter().find(|s| s.name == "link-5").unwrap();
    assert_eq!(
        names(&t, &link5.nodes),
        ["s-1", "s-0"],
        "expr $i/3 picks the parent"
    );
    assert_eq!(t.nodes[0].settings["os"], "Ubuntu-STD");
    assert_eq!(t.nodes[0].settings["hardware"], "MicroCloud");
    let routers = names(&t, &t.routers());
    assert!(routers.contains(&"rs".to_string()) && routers.contains(&"rc".to_string()));
    // A tree: every node reaches every one of the 62 subnets it is not on.
    let plan = AddressPlan::new(&t, magi_testbed::plan::DEFAULT_POOL.parse().unwrap()).unwrap();
    let routes = static_routes(&t, &plan);
    for n in 0..t.nodes.len() {
        let own = t.attachments(n).len();
        assert_eq!(
            routes.iter().filter(|r| r.node == n).count(),
            62 - own,
            "{}",
            t.nodes[n].name
        );
    }
}
