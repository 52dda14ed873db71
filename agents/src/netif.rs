//! This node's IPv4 interfaces, as `ip -j -4 addr show` lists them.

use std::net::Ipv4Addr;

use serde_json::Value;

/// One of this node's IPv4 interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
}

impl Interface {
    /// Whether `ip` is in the interface's subnet.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

/// Reads `ip -j -4 addr show` output: every interface with an IPv4 address but `lo`.
pub fn parse_interfaces(json: &str) -> Result<Vec<Interface>, String> {
    let list: Vec<Value> =
        serde_json::from_str(json).map_err(|e| format!("unexpected `ip -j addr` output: {e}"))?;
    let mut found = Vec::new();
    for dev in &list {
        let Some(name) = dev["ifname"].as_str() else {
            continue;
        };
        if name == "lo" {
            continue;
        }
        for a in dev["addr_info"].as_array().into_iter().flatten() {
            let address = a["local"].as_str().and_then(|s| s.parse().ok());
            let prefix = a["prefixlen"].as_u64().and_then(|p| u8::try_from(p).ok());
            if let (Some(address), Some(prefix @ 0..=32)) = (address, prefix) {
                found.push(Interface {
                    name: name.to_string(),
                    address,
                    prefix,
                });
            }
        }
    }
    Ok(found)
}

/// This node's interfaces (`ip -j -4 addr show` in its network namespace).
pub async fn list() -> Result<Vec<Interface>, String> {
    let out = tokio::process::Command::new("ip")
        .args(["-j", "-4", "addr", "show"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run ip: {e}"))?;
    parse_interfaces(&String::from_utf8_lossy(&out.stdout))
}

/// Whether `peer` is the other end of a point-to-point link on interface `dev` (a /30 or
/// /31 subnet of `dev` holds it): then everything crossing `dev` is traffic with `peer`.
pub fn link_end(interfaces: &[Interface], dev: &str, peer: Ipv4Addr) -> bool {
    interfaces
        .iter()
        .any(|i| i.name == dev && i.prefix >= 30 && i.holds(peer) && i.address != peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(name: &str, address: &str, prefix: u8) -> Interface {
        Interface {
            name: name.into(),
            address: address.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn interfaces_are_read_from_ip_json_without_loopback() {
        let json = r#"[{"ifname":"lo","addr_info":[{"local":"127.0.0.1","prefixlen":8}]},
            {"ifname":"eth0","addr_info":[{"local":"198.18.0.1","prefixlen":30}]}]"#;
        assert_eq!(
            parse_interfaces(json).unwrap(),
            [eth("eth0", "198.18.0.1", 30)]
        );
        assert!(parse_interfaces("nope").is_err());
    }

    #[test]
    fn a_peer_is_a_links_end_only_on_a_point_to_point_subnet() {
        let ifs = [
            eth("eth0", "198.18.0.1", 30),
            eth("eth1", "198.18.0.65", 26),
        ];
        assert!(link_end(&ifs, "eth0", "198.18.0.2".parse().unwrap()));
        assert!(
            !link_end(&ifs, "eth1", "198.18.0.66".parse().unwrap()),
            "a LAN"
        );
        assert!(
            !link_end(&ifs, "eth0", "198.18.0.9".parse().unwrap()),
            "beyond the link"
        );
        assert!(
            !link_end(&ifs, "eth1", "198.18.0.2".parse().unwrap()),
            "another interface"
        );
    }
}
