//! A lab: a topology laid out on this machine under a name, and the state file that
//! remembers it (`/run/magi-testbed/NAME.json`), so `down` works after any crash.
//!
//! Layout: node `N` of testbed `T` lives in network namespace `T.N`, its interfaces named
//! `eth0`, `eth1`, ... in the order of the segments it is on. A link is a veth pair between
//! two nodes' namespaces. A LAN is a bridge `brJ` in the namespace `T._lan` (never on the
//! host); each member's `ethK` is paired with a port `lJmP` of that bridge.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::TestbedError;
use crate::plan::{AddressPlan, Net};
use crate::routes::{static_routes, Route};
use crate::topology::{SegmentKind, Topology};

/// Where state files live (tmpfs: a reboot, which also removes every namespace, clears it).
pub const STATE_DIR: &str = "/run/magi-testbed";
/// Where `ip netns exec` finds a namespace's own `/etc` files (its `hosts`).
pub const NETNS_ETC: &str = "/etc/netns";

/// A testbed: its topology, addresses and routes, as recorded on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    /// The testbed's name.
    pub name: String,
    /// The topology.
    pub topology: Topology,
    /// The addresses.
    pub plan: AddressPlan,
    /// Every node's static routes.
    pub routes: Vec<Route>,
    /// When it was brought up (seconds since the epoch).
    pub created: u64,
    /// Whether `up` finished (false: it is being built, or its builder died).
    pub complete: bool,
    /// Its control network, if it was brought up with one (`--control`).
    #[serde(default)]
    pub control: Option<crate::control::Control>,
}

/// One interface of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// `eth0`, `eth1`, ...
    pub name: String,
    /// The segment it is on.
    pub segment: usize,
    /// Its address.
    pub address: Ipv4Addr,
    /// The segment's subnet.
    pub subnet: Net,
    /// The bridge port it is paired with, for a LAN (`l0m3`).
    pub port: Option<String>,
}

/// Checks a testbed name: it becomes part of namespace and file names.
pub fn check_name(name: &str) -> Result<(), TestbedError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TestbedError::BadName(name.to_string()))
    }
}

impl Lab {
    /// Plans testbed `name` for `topology` with addresses from `pool`.
    pub fn new(name: &str, topology: Topology, pool: Net) -> Result<Self, TestbedError> {
        check_name(name)?;
        let plan = AddressPlan::new(&topology, pool).map_err(TestbedError::Plan)?;
        let routes = static_routes(&topology, &plan);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Lab {
            name: name.to_string(),
            topology,
            plan,
            routes,
            created,
            complete: false,
            control: None,
        })
    }

    /// The namespace of node `node`.
    pub fn namespace(&self, node: usize) -> String {
        format!("{}.{}", self.name, self.topology.nodes[node].name)
    }

    /// The namespace holding the LANs' bridges.
    pub fn lan_namespace(&self) -> String {
        format!("{}._lan", self.name)
    }

    /// Every namespace of the testbed (the bridges' one only when there are LANs, the
    /// control network's only when it has one).
    pub fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = (0..self.topology.nodes.len())
            .map(|n| self.namespace(n))
            .collect();
        if self.topology.lans().next().is_some() {
            all.push(self.lan_namespace());
        }
        if self.control.is_some() {
            all.push(crate::control::namespace(self));
        }
        all
    }

    /// The prefix of every namespace of testbed `name` (`name.`).
    pub fn namespace_prefix(name: &str) -> String {
        format!("{name}.")
    }

    /// Node `node`'s interfaces, in segment order.
    pub fn interfaces(&self, node: usize) -> Vec<Interface> {
        self.topology
            .attachments(node)
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                let segment = &self.topology.segments[s];
                let position = segment.nodes.iter().position(|&m| m == node).unwrap_or(0);
                Interface {
                    name: format!("eth{k}"),
                    segment: s,
                    address: self.plan.address(s, position),
                    subnet: self.plan.subnets[s],
                    port: (segment.kind == SegmentKind::Lan)
                        .then(|| format!("l{}m{position}", self.lan_number(s))),
                }
            })
            .collect()
    }

    /// The bridge of LAN segment `segment` (`br0`, `br1`, ...).
    pub fn bridge(&self, segment: usize) -> String {
        format!("br{}", self.lan_number(segment))
    }

    fn lan_number(&self, segment: usize) -> usize {
        self.topology.segments[..segment]
            .iter()
            .filter(|s| s.kind == SegmentKind::Lan)
            .count()
    }

    /// Node `node`'s experiment address: that of its first interface (none if it is on no
    /// segment).
    pub fn address(&self, node: usize) -> Option<Ipv4Addr> {
        let s = *self.topology.attachments(node).first()?;
        self.plan.node_address(&self.topology, node, s)
    }

    /// The hosts map: every node's name to its experiment address, then, as on Emulab,
    /// `node-segment` for each interface (`router-lanC`).
    pub fn hosts(&self) -> Vec<(String, Ipv4Addr)> {
        let mut hosts = Vec::new();
        for n in 0..self.topology.nodes.len() {
            if let Some(a) = self.address(n) {
                hosts.push((self.topology.nodes[n].name.clone(), a));
            }
        }
        for (s, segment) in self.topology.segments.iter().enumerate() {
            for (p, &n) in segment.nodes.iter().enumerate() {
                let name = format!("{}-{}", self.topology.nodes[n].name, segment.name);
                hosts.push((name, self.plan.address(s, p)));
            }
        }
        hosts
    }

    /// The `/etc/hosts` every node sees.
    pub fn hosts_file(&self) -> String {
        let mut text = String::from("127.0.0.1\tlocalhost\n");
        for (name, address) in self.hosts() {
            text.push_str(&format!("{address}\t{name}\n"));
        }
        text
    }

    /// The state file of testbed `name`.
    pub fn state_path(name: &str) -> PathBuf {
        Path::new(STATE_DIR).join(format!("{name}.json"))
    }

    /// Writes the state file (atomically: a crash leaves the old or the new one).
    pub fn save(&self) -> Result<(), TestbedError> {
        let path = Self::state_path(&self.name);
        let err = |message: String| TestbedError::State {
            path: path.display().to_string(),
            message,
        };
        std::fs::create_dir_all(STATE_DIR).map_err(|e| err(e.to_string()))?;
        let text = serde_json::to_vec(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))
    }

    /// Reads testbed `name`'s state file.
    pub fn load(name: &str) -> Result<Self, TestbedError> {
        check_name(name)?;
        let path = Self::state_path(name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TestbedError::NotUp(name.to_string()))
            }
            Err(e) => {
                return Err(TestbedError::State {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&text).map_err(|e| TestbedError::State {
            path: path.display().to_string(),
            message: format!(
                "unreadable ({e}); `magi testbed down {name}` still removes its namespaces"
            ),
        })
    }

    /// The names of every testbed with a state file, sorted.
    pub fn list() -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(STATE_DIR) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                Some(name.strip_suffix(".json")?.to_string())
            })
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Lab {
        let t = crate::yaml::parse(
            "t.yaml",
            "nodes: [a, r, b, c]\nlinks:\n  - {name: up, nodes: [a, r]}\nlans:\n  - {name: down, nodes: [r, b, c]}\n",
        )
        .unwrap();
        Lab::new("t1", t, crate::plan::DEFAULT_POOL.parse().unwrap()).unwrap()
    }

    #[test]
    fn nodes_get_namespaces_and_interfaces_named_as_on_a_testbed_node() {
        let lab = lab();
        assert_eq!(lab.namespace(1), "t1.r");
        assert_eq!(
            lab.namespaces(),
            ["t1.a", "t1.r", "t1.b", "t1.c", "t1._lan"]
        );
        let r = lab.interfaces(1);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].name.as_str(), r[0].port.as_deref()), ("eth0", None));
        assert_eq!(
            (r[1].name.as_str(), r[1].port.as_deref()),
            ("eth1", Some("l0m0"))
        );
        assert_eq!(lab.bridge(1), "br0");
        assert_eq!(lab.address(1), Some(r[0].address));
    }

    #[test]
    fn the_hosts_file_names_every_node_and_interface() {
        let lab = lab();
        let hosts = lab.hosts_file();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        let b = lab.address(2).unwrap();
        assert!(hosts.contains(&format!("{b}\tb\n")), "{hosts}");
        assert!(hosts.contains("\tr-down\n"), "{hosts}");
    }

    #[test]
    fn testbed_names_are_checked() {
        assert!(check_name("cs55").is_ok());
        assert!(check_name("a-b").is_ok());
        for bad in ["", "CS", "a.b", "a/b", "-a", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
