//! Node addressing as agents see it: this node's own address, and node name → address for
//! its peers (the `address` and `hosts` of the agent protocol's `start` line).
//!
//! On the embedded default every node has its own loopback address (127.0.1.x) and the
//! map is the only way to reach a peer by name. On a testbed the node agent may pass an
//! empty map; names then go to the system resolver (the testbed's `/etc/hosts`).

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};

use magi_proto::Object;
use serde_json::Value;

/// Node name → address, as given by the node agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hosts {
    map: BTreeMap<String, IpAddr>,
}

impl Hosts {
    /// Reads the `hosts` object of a `start` line; every value must be an IP address.
    pub fn from_object(hosts: &Object) -> Result<Hosts, String> {
        let mut map = BTreeMap::new();
        for (name, v) in hosts {
            let ip = match v {
                Value::String(s) => s.trim().parse::<IpAddr>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("hosts: node '{name}' has address {v}, not an IP address"))?;
            map.insert(name.clone(), ip);
        }
        Ok(Hosts { map })
    }

    /// Builds a map from pairs (for tests and tools).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, IpAddr)>) -> Hosts {
        Hosts {
            map: pairs
                .into_iter()
                .map(|(n, ip)| (n.to_string(), ip))
                .collect(),
        }
    }

    /// Every known node and its address, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, IpAddr)> {
        self.map.iter().map(|(n, ip)| (n.as_str(), *ip))
    }

    /// True when the node agent gave no map.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The address of node `name`: from the map, or an IP literal, or (only when the map
    /// is empty, as on a testbed) the system resolver. An unknown name is an error that
    /// lists the known ones.
    pub fn resolve(&self, name: &str) -> Result<IpAddr, String> {
        if let Some(ip) = self.map.get(name) {
            return Ok(*ip);
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ip);
        }
        if self.map.is_empty() {
            return (name, 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(|sa| sa.ip())
                .ok_or_else(|| {
                    format!("unknown node '{name}': the system resolver does not know it")
                });
        }
        let known: Vec<&str> = self.map.keys().map(String::as_str).collect();
        let shown = if known.len() > 12 {
            format!("{}, ... ({} nodes)", known[..12].join(", "), known.len())
        } else {
            known.join(", ")
        };
        Err(format!(
            "unknown node '{name}'; the experiment's nodes are: {shown}"
        ))
    }

    /// The node whose address is `ip` (the first in name order if several share it).
    pub fn name_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = canonical(ip);
        self.map
            .iter()
            .find(|(_, a)| canonical(**a) == ip)
            .map(|(n, _)| n.as_str())
    }
}

/// Parses the `address` of a `start` line: empty means "not given".
pub fn parse_address(address: &str) -> Result<Option<IpAddr>, String> {
    let a = address.trim();
    if a.is_empty() {
        return Ok(None);
    }
    a.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| format!("address '{address}' is not an IP address"))
}

/// An IPv4-mapped IPv6 address as plain IPv4, so that a dual-stack peer matches its entry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hosts() -> Hosts {
        let o = json!({"servernode": "127.0.1.2", "clientnode": "127.0.1.1"});
        Hosts::from_object(o.as_object().unwrap()).unwrap()
    }

    #[test]
    fn names_resolve_through_the_map_and_back() {
        let h = hosts();
        assert_eq!(h.resolve("servernode").unwrap().to_string(), "127.0.1.2");
        assert_eq!(h.name_of("127.0.1.1".parse().unwrap()), Some("clientnode"));
        assert_eq!(
            h.name_of("::ffff:127.0.1.1".parse().unwrap()),
            Some("clientnode")
        );
        assert_eq!(h.name_of("127.0.0.9".parse().unwrap()), None);
        assert_eq!(h.resolve("10.1.1.1").unwrap().to_string(), "10.1.1.1");
    }

    #[test]
    fn an_unknown_node_is_an_error_naming_the_known_ones() {
        let e = hosts().resolve("servernode-1").unwrap_err();
        assert!(e.contains("unknown node 'servernode-1'"), "{e}");
        assert!(e.contains("clientnode, servernode"), "{e}");
    }

    #[test]
    fn a_host_map_entry_that_is_not_an_address_is_refused() {
        let o = json!({"a": "not-an-ip"});
        let e = Hosts::from_object(o.as_object().unwrap()).unwrap_err();
        assert!(e.contains("node 'a'"), "{e}");
        assert!(parse_address("").unwrap().is_none());
        assert!(parse_address("127.0.1.1").unwrap().is_some());
        assert!(parse_address("nope").is_err());
    }
}
