//! Static routes: for every node, a route to every subnet it is not on, through the
//! neighbour on its shortest path (fewest segments crossed), as Emulab's `rtproto Static`.
//!
//! The search runs breadth-first over nodes and segments together (a node reaches a
//! segment it is on, a segment reaches its members), so a 1,000-node LAN costs 1,000
//! steps per node rather than a million. Ties go to the earlier segment and member in the
//! file's order, so the routes are the same on every run.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::plan::{AddressPlan, Net};
use crate::topology::{Routing, Topology};

/// One route of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The node that has it.
    pub node: usize,
    /// The destination subnet.
    pub to: Net,
    /// The next hop: a neighbour's address on a segment both are on.
    pub via: Ipv4Addr,
}

/// Every node's routes, node by node (none when the topology asks for no routing).
pub fn static_routes(topology: &Topology, plan: &AddressPlan) -> Vec<Route> {
    if topology.routing == Routing::None {
        return Vec::new();
    }
    let attached: Vec<Vec<usize>> = (0..topology.nodes.len())
        .map(|n| topology.attachments(n))
        .collect();
    let mut routes = Vec::new();
    for source in 0..topology.nodes.len() {
        // For each node: the first hop (segment, neighbour) of its shortest path from `source`.
        let mut first_hop: Vec<Option<(usize, usize)>> = vec![None; topology.nodes.len()];
        let mut node_seen = vec![false; topology.nodes.len()];
        // For each segment: the node it was first reached from.
        let mut reached_from: Vec<Option<usize>> = vec![None; topology.segments.len()];
        let mut queue = VecDeque::from([source]);
        node_seen[source] = true;
        while let Some(u) = queue.pop_front() {
            for &s in &attached[u] {
                if reached_from[s].is_some() {
                    continue;
                }
                reached_from[s] = Some(u);
                for &m in &topology.segments[s].nodes {
                    if node_seen[m] {
                        continue;
                    }
                    node_seen[m] = true;
                    first_hop[m] = if u == source {
                        Some((s, m))
                    } else {
                        first_hop[u]
                    };
                    queue.push_back(m);
                }
            }
        }
        for (s, from) in reached_from.iter().enumerate() {
            let Some(u) = *from else { continue };
            if u == source {
                continue; // directly connected
            }
            if let Some((segment, neighbour)) = first_hop[u] {
                if let Some(via) = plan.node_address(topology, neighbour, segment) {
                    routes.push(Route {
                        node: source,
                        to: plan.subnets[s],
                        via,
                    });
                }
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::DEFAULT_POOL;

    fn setup(yaml: &str) -> (Topology, AddressPlan) {
        let t = crate::yaml::parse("t.yaml", yaml).unwrap();
        let plan = AddressPlan::new(&t, DEFAULT_POOL.parse().unwrap()).unwrap();
        (t, plan)
    }

    fn routes_of(routes: &[Route], node: usize) -> Vec<&Route> {
        routes.iter().filter(|r| r.node == node).collect()
    }

    #[test]
    fn a_chain_routes_each_end_through_the_middle() {
        let (t, plan) =
            setup("nodes: [a, r, b]\nlinks:\n  - {nodes: [a, r]}\n  - {nodes: [r, b]}\n");
        let routes = static_routes(&t, &plan);
        let a = routes_of(&routes, 0);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].to, plan.subnets[1]);
        assert_eq!(a[0].via, plan.node_address(&t, 1, 0).unwrap());
        assert!(
            routes_of(&routes, 1).is_empty(),
            "the router is on both subnets"
        );
        assert_eq!(
            routes_of(&routes, 2)[0].via,
            plan.node_address(&t, 1, 1).unwrap()
        );
    }

    #[test]
    fn the_shortest_path_wins_over_a_longer_one() {
        // a - b - c - d, and a - d directly: a reaches c's subnets through d or b in 2 hops,
        // and d's link subnet (c-d) through d directly (1 hop).
        let (t, plan) = setup(
            "nodes: [a, b, c, d]\nlinks:\n  - {nodes: [a, b]}\n  - {nodes: [b, c]}\n  - {nodes: [c, d]}\n  - {nodes: [a, d]}\n",
        );
        let routes = static_routes(&t, &plan);
        let to_cd = routes
            .iter()
            .find(|r| r.node == 0 && r.to == plan.subnets[2])
            .unwrap();
        assert_eq!(to_cd.via, plan.node_address(&t, 3, 3).unwrap());
        let to_bc = routes
            .iter()
            .find(|r| r.node == 0 && r.to == plan.subnets[1])
            .unwrap();
        assert_eq!(to_bc.via, plan.node_address(&t, 1, 0).unwrap());
    }

    #[test]
    fn manual_routing_gives_no_routes() {
        let (t, plan) = setup(
            "nodes: [a, r, b]\nrouting: Manual\nlinks:\n  - {nodes: [a, r]}\n  - {nodes: [r, b]}\n",
        );
        assert!(static_routes(&t, &plan).is_empty());
    }
}
