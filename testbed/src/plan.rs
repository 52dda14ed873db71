//! The address plan: one subnet per segment, carved from a pool that must not collide with
//! any network the host itself routes to.
//!
//! The default pool is 198.18.0.0/15, the range RFC 2544 reserves for network test labs:
//! no real network uses it, so a testbed never shadows one. Subnets are sized to their
//! segment (a /30 for a link; for a LAN, the smallest that holds its members) and laid out
//! largest first, so each is aligned. Member `i` of a segment gets the subnet's address
//! `i + 1`, so in a link the first node named is `.1`, the second `.2`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::topology::Topology;

/// The default pool.
pub const DEFAULT_POOL: &str = "198.18.0.0/15";

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Net {
    /// The network's size in addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn start(&self) -> u64 {
        u64::from(u32::from(self.addr))
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Net) -> bool {
        self.start() < other.start() + other.size() && other.start() < self.start() + self.size()
    }

    /// The `n`-th address of the network.
    pub fn nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from((self.start() + n) as u32)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Net {
    type Err = String;

    /// `198.18.0.0/15`; a bare address is a /32. The address must be the network's first.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 network (as 198.18.0.0/15)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to 32"))?;
        let net = Net { addr, prefix };
        if net.start() & (net.size() - 1) != 0 {
            return Err(format!(
                "`{s}` is not the start of a /{prefix} network (host bits are set)"
            ));
        }
        Ok(net)
    }
}

/// The address plan of a topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressPlan {
    /// The pool the subnets come from.
    pub pool: Net,
    /// One subnet per segment, in segment order.
    pub subnets: Vec<Net>,
}

impl AddressPlan {
    /// Lays out one subnet per segment of `topology` in `pool`.
    pub fn new(topology: &Topology, pool: Net) -> Result<Self, String> {
        let sizes: Vec<u64> = topology
            .segments
            .iter()
            .map(|s| ((s.nodes.len() as u64) + 2).next_power_of_two().max(4))
            .collect();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        let total: u64 = sizes.iter().sum();
        if total > pool.size() {
            return Err(format!(
                "the topology needs {total} addresses but the pool {pool} has {}; give a larger pool with --pool",
                pool.size()
            ));
        }
        let mut subnets = vec![pool; sizes.len()];
        let mut next = 0u64;
        for i in order {
            subnets[i] = Net {
                addr: pool.nth(next),
                prefix: (32 - sizes[i].trailing_zeros()) as u8,
            };
            next += sizes[i];
        }
        Ok(AddressPlan { pool, subnets })
    }

    /// The address of member `position` of segment `segment`.
    pub fn address(&self, segment: usize, position: usize) -> Ipv4Addr {
        self.subnets[segment].nth(position as u64 + 1)
    }

    /// The address node `node` has on segment `segment`, if it is a member.
    pub fn node_address(
        &self,
        topology: &Topology,
        node: usize,
        segment: usize,
    ) -> Option<Ipv4Addr> {
        let position = topology.segments[segment]
            .nodes
            .iter()
            .position(|&m| m == node)?;
        Some(self.address(segment, position))
    }
}

/// Refuses a pool that overlaps a network the host routes to (the default route aside).
pub fn check_pool(pool: &Net, host_routes: &[Net]) -> Result<(), String> {
    match host_routes.iter().find(|r| r.prefix > 0 && r.overlaps(pool)) {
        Some(r) => Err(format!(
            "the address pool {pool} overlaps the host's network {r}; choose another pool with --pool (198.18.0.0/15 is reserved for test labs)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(yaml: &str) -> Topology {
        crate::yaml::parse("t.yaml", yaml).unwrap()
    }

    #[test]
    fn subnets_are_aligned_disjoint_and_inside_the_pool() {
        let t = topo("nodes: [a, b, c, d, e, f]\nlinks:\n  - {nodes: [a, b]}\nlans:\n  - {nodes: [b, c, d, e, f]}\n");
        let pool: Net = DEFAULT_POOL.parse().unwrap();
        let plan = AddressPlan::new(&t, pool).unwrap();
        // The LAN (5 members + network + broadcast: 8) first, then the /30.
        assert_eq!(plan.subnets[1].to_string(), "198.18.0.0/29");
        assert_eq!(plan.subnets[0].to_string(), "198.18.0.8/30");
        assert!(!plan.subnets[0].overlaps(&plan.subnets[1]));
        assert_eq!(plan.address(0, 0), Ipv4Addr::new(198, 18, 0, 9));
        assert_eq!(plan.address(0, 1), Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(
            plan.node_address(&t, 4, 1),
            Some(Ipv4Addr::new(198, 18, 0, 4))
        );
        assert_eq!(plan.node_address(&t, 0, 1), None);
    }

    #[test]
    fn a_pool_too_small_is_refused_with_the_figures() {
        let t = topo("nodes: [a, b, c, d, e, f]\nlans:\n  - {nodes: [a, b, c, d, e, f]}\n");
        let e = AddressPlan::new(&t, "198.18.0.0/30".parse().unwrap()).unwrap_err();
        assert!(e.contains("needs 8 addresses"), "{e}");
    }

    #[test]
    fn a_pool_that_overlaps_a_host_route_is_refused() {
        let pool: Net = "10.0.0.0/8".parse().unwrap();
        let routes: Vec<Net> = ["0.0.0.0/0", "10.1.2.0/24"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert!(check_pool(&pool, &routes)
            .unwrap_err()
            .contains("10.1.2.0/24"));
        let pool: Net = DEFAULT_POOL.parse().unwrap();
        assert!(check_pool(&pool, &routes).is_ok());
    }

    #[test]
    fn bad_pools_are_explained() {
        assert!("198.18.0.1/15"
            .parse::<Net>()
            .unwrap_err()
            .contains("host bits"));
        assert!("198.18.0.0/33"
            .parse::<Net>()
            .unwrap_err()
            .contains("prefix"));
        assert!("lab".parse::<Net>().unwrap_err().contains("IPv4"));
    }
}
