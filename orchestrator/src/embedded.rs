//! The embedded default: no broker, one in-process node agent per node the procedure
//! names, on the in-process bus. Each node gets its own loopback address (127.0.1.x), and
//! every agent gets the name → address map, so clients and servers talk over real TCP as
//! separate hosts and traffic can be told apart per peer.

use std::path::PathBuf;
use std::time::Duration;

use magi_bus::Bus;
use magi_node::library::ModuleLibrary;
use magi_node::{Fleet, NodeConfig};
use magi_proto::Object;
use serde_json::json;

/// The loopback address of the `i`-th node (0-based): 127.0.1.1, 127.0.1.2, ...
pub fn node_address(i: usize) -> String {
    format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// The name → address map of the nodes, in order.
pub fn host_map(nodes: &[String]) -> Object {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), json!(node_address(i))))
        .collect()
}

/// Where one node's agents run: the address they are given, and the command they are
/// started through (`ip netns exec NS` on a testbed; empty on loopback).
#[derive(Debug, Clone)]
pub struct NodePlace {
    /// The node's name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// The agents' command prefix.
    pub command_prefix: Vec<String>,
}

/// Each node on its own loopback address, agents started directly.
pub fn loopback_places(nodes: &[String]) -> Vec<NodePlace> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodePlace {
            name: n.clone(),
            address: node_address(i),
            command_prefix: Vec::new(),
        })
        .collect()
}

/// In-process node agents, stopped together.
pub struct EmbeddedNodes {
    fleet: Fleet,
}

impl EmbeddedNodes {
    /// Attaches one node agent per node to the bus and starts them, on loopback.
    pub async fn start(
        bus: &dyn Bus,
        nodes: &[String],
        state_dir: PathBuf,
        log_dir: PathBuf,
        library: ModuleLibrary,
    ) -> Result<Self, magi_bus::AttachError> {
        let places = loopback_places(nodes);
        Self::start_placed(bus, &places, host_map(nodes), state_dir, log_dir, library).await
    }

    /// Attaches one node agent per place to the bus and starts them; agents get `hosts`.
    pub async fn start_placed(
        bus: &dyn Bus,
        places: &[NodePlace],
        hosts: Object,
        state_dir: PathBuf,
        log_dir: PathBuf,
        library: ModuleLibrary,
    ) -> Result<Self, magi_bus::AttachError> {
        let mut fleet = Fleet::new();
        for place in places {
            let name = &place.name;
            let link = bus.attach_node(name).await?;
            let mut config = NodeConfig::new(name, state_dir.clone());
            config.address = place.address.clone();
            config.command_prefix = place.command_prefix.clone();
            config.hosts = hosts.clone();
            config.log_dir = Some(log_dir.clone());
            config.library = library.clone();
            config.heartbeat = Duration::from_secs(2);
            fleet.spawn(link, config);
        }
        Ok(EmbeddedNodes { fleet })
    }

    /// Stops every node agent (and so every agent still running) and waits for them.
    pub async fn stop(self) {
        self.fleet.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_distinct_loopback_addresses() {
        assert_eq!(node_address(0), "127.0.1.1");
        assert_eq!(node_address(249), "127.0.1.250");
        assert_eq!(node_address(250), "127.0.2.1");
    }
}
