//! The control network (`magi testbed up --control`): how each node's `magi-node` reaches
//! the broker, apart from the experiment's links, as a testbed's control LAN is.
//!
//! Layout for testbed `T`: a bridge `ctl` in namespace `T._ctl`; each node's `ctl0` is
//! paired with a port `cN` of it (N the node's index), and the host's own namespace gets one
//! veth, `mgc` + a hash of the name, paired with the bridge's port `host`. The subnet comes
//! from the top sixteenth of the pool (the experiment's subnets are laid out from its
//! bottom), sized to the nodes, distinct from every other testbed's control subnet; the
//! host side is its first address, node N its `N + 2`-th.
//!
//! It carries no experiment traffic: the nodes' ports are isolated (a node reaches the
//! host and no other node over it), and every node drops anything that would be forwarded
//! into or out of `ctl0` (nftables table `magi_testbed_control`). The experiment's routes
//! never name it, and the host routes only the control subnet to it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::TestbedError;
use crate::lab::Lab;
use crate::plan::Net;
use crate::system::{batch, in_namespace, run_tool};

/// The beginning of the host-side interface names of control networks (`mgc1a2b3c4d`).
pub const HOST_PREFIX: &str = "mgc";
/// A node's interface on the control network.
pub const NODE_INTERFACE: &str = "ctl0";
/// The nftables table, in every node, that keeps forwarding off the control network.
pub const TABLE: &str = "magi_testbed_control";

/// A testbed's control network, as recorded in its state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// Its subnet.
    pub subnet: Net,
    /// The host's interface on it.
    pub host_interface: String,
    /// The host's address on it (where the broker, or a relay to it, listens).
    pub host_address: Ipv4Addr,
}

/// The part of `pool` control networks come from: its last sixteenth.
pub fn range(pool: Net) -> Result<Net, String> {
    if pool.prefix > 26 {
        return Err(format!(
            "the pool {pool} is too small for a control network (its last sixteenth holds it): use a /26 or larger"
        ));
    }
    let size = pool.size() / 16;
    Ok(Net {
        addr: pool.nth(pool.size() - size),
        prefix: pool.prefix + 4,
    })
}

/// A short stable hash of a testbed name (FNV-1a), for interface names of 15 bytes at most.
fn short_hash(name: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The host-side interface of testbed `name`'s control network (`mgc` + a hash of the
/// name: interface names have 15 bytes at most).
pub fn host_interface(name: &str) -> String {
    format!("{HOST_PREFIX}{}", short_hash(name))
}

impl Control {
    /// Plans the control network of testbed `name` with `nodes` nodes, from `pool`, apart
    /// from the control subnets `taken` by other testbeds; the experiment's subnets must
    /// stay below the control range (`highest` is the first address above them).
    pub fn plan(
        name: &str,
        nodes: usize,
        pool: Net,
        highest: u64,
        taken: &[Net],
    ) -> Result<Control, String> {
        let range = range(pool)?;
        if highest > u64::from(u32::from(range.addr)) {
            return Err(format!(
                "the topology's addresses reach into {range}, the pool's last sixteenth, where control networks live; give a larger pool with --pool"
            ));
        }
        let size = (nodes as u64 + 3).next_power_of_two().max(4);
        let prefix = (32 - size.trailing_zeros()) as u8;
        let subnet = (0..range.size() / size)
            .map(|k| Net { addr: range.nth(k * size), prefix })
            .find(|s| !taken.iter().any(|t| t.overlaps(s)))
            .ok_or_else(|| {
                format!("no room for a control network of {nodes} nodes in {range}: other testbeds hold it; bring one down or give another --pool")
            })?;
        Ok(Control {
            subnet,
            host_interface: host_interface(name),
            host_address: subnet.nth(1),
        })
    }

    /// Node `node`'s address on the control network.
    pub fn node_address(&self, node: usize) -> Ipv4Addr {
        self.subnet.nth(node as u64 + 2)
    }
}

/// The nftables ruleset that keeps a node from forwarding into or out of the control
/// network, and from accepting on it anything not addressed to its control address (Linux
/// would otherwise answer on `ctl0` for the node's experiment addresses too).
pub fn no_forwarding_ruleset() -> String {
    format!(
        "table inet {TABLE} {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    iifname \"{NODE_INTERFACE}\" drop\n    oifname \"{NODE_INTERFACE}\" drop\n  }}\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    iifname \"{NODE_INTERFACE}\" fib daddr . iif type != local drop\n  }}\n}}\n"
    )
}

/// ARP on `ctl0` answers for the control address only.
const ARP_STRICT: [(&str, &str); 2] = [
    ("/proc/sys/net/ipv4/conf/ctl0/arp_ignore", "1"),
    ("/proc/sys/net/ipv4/conf/ctl0/arp_announce", "2"),
];

/// The namespace holding the control bridge.
pub fn namespace(lab: &Lab) -> String {
    format!("{}._ctl", lab.name)
}

/// Builds `lab`'s control network (its namespaces exist already).
pub fn build(lab: &Lab, control: &Control) -> Result<(), TestbedError> {
    let hub = namespace(lab);
    let prefix = control.subnet.prefix;
    let nodes = lab.topology.nodes.len();
    let mut host = vec![format!(
        "link add {} type veth peer name host netns {hub}",
        control.host_interface
    )];
    host.extend((0..nodes).map(|n| {
        format!(
            "link add {NODE_INTERFACE} netns {} type veth peer name c{n} netns {hub}",
            lab.namespace(n)
        )
    }));
    host.push(format!(
        "addr add {}/{prefix} dev {}",
        control.host_address, control.host_interface
    ));
    host.push(format!("link set {} up", control.host_interface));
    batch("ip", &[], &host)?;
    let mut bridge = vec![
        "link set lo up".to_string(),
        "link add ctl type bridge stp_state 0 forward_delay 0".into(),
        "link set ctl up".into(),
        "link set host master ctl".into(),
        "link set host up".into(),
    ];
    for n in 0..nodes {
        bridge.push(format!("link set c{n} master ctl"));
        // An isolated port talks to the host's port only, never to another node's.
        bridge.push(format!("link set c{n} type bridge_slave isolated on"));
        bridge.push(format!("link set c{n} up"));
    }
    in_namespace(&hub, || batch("ip", &[], &bridge))?;
    let rules = no_forwarding_ruleset();
    crate::up::parallel(&(0..nodes).collect::<Vec<_>>(), |&n| {
        let ip = [
            format!(
                "addr add {}/{prefix} dev {NODE_INTERFACE}",
                control.node_address(n)
            ),
            format!("link set {NODE_INTERFACE} up"),
        ];
        in_namespace(&lab.namespace(n), || {
            batch("ip", &[], &ip)?;
            crate::system::write_sysctls(&ARP_STRICT)?;
            run_tool("nft", &["-f", "-"], std::slice::from_ref(&rules))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Net {
        crate::plan::DEFAULT_POOL.parse().unwrap()
    }

    #[test]
    fn control_networks_come_from_the_top_of_the_pool_sized_to_the_nodes() {
        assert_eq!(range(pool()).unwrap().to_string(), "198.19.224.0/19");
        let c = Control::plan("cs", 2, pool(), 8, &[]).unwrap();
        assert_eq!(c.subnet.to_string(), "198.19.224.0/29");
        assert_eq!(c.host_address.to_string(), "198.19.224.1");
        assert_eq!(c.node_address(0).to_string(), "198.19.224.2");
        assert!(c.host_interface.starts_with(HOST_PREFIX) && c.host_interface.len() <= 15);
        let big = Control::plan("feedback", 72, pool(), 8, &[c.subnet]).unwrap();
        assert_eq!(big.subnet.to_string(), "198.19.224.128/25");
    }

    #[test]
    fn a_pool_too_small_or_full_is_refused_with_the_way_out() {
        let small: Net = "10.0.0.0/28".parse().unwrap();
        assert!(range(small).unwrap_err().contains("too small"));
        let reach = Control::plan(
            "x",
            2,
            pool(),
            u64::from(u32::from(Ipv4Addr::new(198, 19, 230, 0))),
            &[],
        );
        assert!(reach.unwrap_err().contains("--pool"));
        let whole = range(pool()).unwrap();
        let full = Control::plan("x", 2, pool(), 8, &[whole]);
        assert!(full.unwrap_err().contains("other testbeds"));
    }

    #[test]
    fn nodes_drop_whatever_would_be_forwarded_through_the_control_interface() {
        let r = no_forwarding_ruleset();
        assert!(
            r.contains("hook forward")
                && r.contains("iifname \"ctl0\" drop")
                && r.contains("oifname \"ctl0\" drop"),
            "{r}"
        );
        assert!(
            r.contains("iifname \"ctl0\" fib daddr . iif type != local drop"),
            "{r}"
        );
    }
}
