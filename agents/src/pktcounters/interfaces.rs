//! The fallback when nftables is missing or not permitted: interface statistics from
//! `/proc/net/dev` (the caller's network namespace). An interface is attributed to a peer
//! when it is the route to exactly that one peer; otherwise the record says `peerNode`
//! is unknown, as the original did (`'peerNode'`), and lists the peers behind it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use super::{CounterKey, Direction, Reading};

/// The `peerNode` of an interface whose peer is not known (the original's marker).
pub const UNKNOWN_PEER: &str = "peerNode";

/// Cumulative counts of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DevCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// Parses `/proc/net/dev`.
pub fn parse_proc_net_dev(text: &str) -> HashMap<String, DevCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse::<u64>().unwrap_or(0))
                .collect();
            if f.len() < 10 {
                return None;
            }
            Some((
                name.trim().to_string(),
                DevCounters {
                    rx_bytes: f[0],
                    rx_packets: f[1],
                    tx_bytes: f[8],
                    tx_packets: f[9],
                },
            ))
        })
        .collect()
}

/// The interface the kernel would use to reach `peer` (from `from`), via `ip route get`.
pub async fn route_dev(peer: IpAddr, from: Option<IpAddr>) -> Option<String> {
    let mut cmd = Command::new("ip");
    cmd.args(["-j", "route", "get", &peer.to_string()]);
    if let Some(from) = from.filter(|f| f.is_ipv4() == peer.is_ipv4()) {
        cmd.args(["from", &from.to_string()]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?.get("dev")?.as_str().map(str::to_string)
}

/// The interfaces counted, each with the peer it leads to (or [`UNKNOWN_PEER`]).
#[derive(Debug, Clone)]
pub struct Interfaces {
    devs: Vec<(String, String)>,
    /// Interface → every peer routed through it.
    pub peers_by_dev: BTreeMap<String, Vec<String>>,
}

impl Interfaces {
    /// Chooses the interfaces: those that route to a peer; with none known, every
    /// interface but `lo` (and `lo` too when this node's address is a loopback one).
    pub fn choose(
        routes: &[(String, Option<String>)],
        available: &HashMap<String, DevCounters>,
        me_is_loopback: bool,
    ) -> Interfaces {
        let mut peers_by_dev: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (peer, dev) in routes {
            if let Some(dev) = dev {
                peers_by_dev
                    .entry(dev.clone())
                    .or_default()
                    .push(peer.clone());
            }
        }
        let devs: Vec<(String, String)> = if peers_by_dev.is_empty() {
            let mut names: Vec<&String> = available
                .keys()
                .filter(|n| me_is_loopback || n.as_str() != "lo")
                .collect();
            names.sort();
            names
                .into_iter()
                .map(|n| (n.clone(), UNKNOWN_PEER.to_string()))
                .collect()
        } else {
            peers_by_dev
                .iter()
                .map(|(dev, peers)| {
                    let label = if peers.len() == 1 {
                        peers[0].clone()
                    } else {
                        UNKNOWN_PEER.to_string()
                    };
                    (dev.clone(), label)
                })
                .collect()
        };
        Interfaces { devs, peers_by_dev }
    }

    /// Cumulative counts of the chosen interfaces.
    pub async fn read(&self) -> Result<Vec<Reading>, String> {
        let text = tokio::fs::read_to_string("/proc/net/dev")
            .await
            .map_err(|e| format!("cannot read /proc/net/dev: {e}"))?;
        Ok(self.readings(&parse_proc_net_dev(&text)))
    }

    fn readings(&self, now: &HashMap<String, DevCounters>) -> Vec<Reading> {
        let mut out = Vec::new();
        for (dev, peer) in &self.devs {
            let c = now.get(dev).copied().unwrap_or_default();
            for (direction, packets, bytes) in [
                (Direction::In, c.rx_packets, c.rx_bytes),
                (Direction::Out, c.tx_packets, c.tx_bytes),
            ] {
                out.push(Reading {
                    key: CounterKey {
                        intf: dev.clone(),
                        peer: peer.clone(),
                        direction,
                    },
                    packets,
                    bytes,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      50    0    0    0     0          0         0     7000      70    0    0    0     0       0          0
  eth1: 1         2    0    0    0     0          0         0     3      4    0    0    0     0       0          0
";

    #[test]
    fn proc_net_dev_gives_rx_and_tx_per_interface() {
        let d = parse_proc_net_dev(SAMPLE);
        assert_eq!(d.len(), 3);
        assert_eq!(
            d["eth0"],
            DevCounters {
                rx_bytes: 5000,
                rx_packets: 50,
                tx_bytes: 7000,
                tx_packets: 70
            }
        );
    }

    #[test]
    fn an_interface_names_its_peer_only_when_it_leads_to_one_peer() {
        let avail = parse_proc_net_dev(SAMPLE);
        let routes = vec![
            ("servernode".to_string(), Some("eth0".to_string())),
            ("a".to_string(), Some("eth1".to_string())),
            ("b".to_string(), Some("eth1".to_string())),
            ("c".to_string(), None),
        ];
        let i = Interfaces::choose(&routes, &avail, false);
        let r = i.readings(&avail);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].key.peer, "servernode");
        assert_eq!((r[0].bytes, r[1].bytes), (5000, 7000));
        assert_eq!(r[2].key.peer, UNKNOWN_PEER);
        assert_eq!(i.peers_by_dev["eth1"], vec!["a", "b"]);
        // No routes known: every interface but lo.
        let i = Interfaces::choose(&[], &avail, false);
        assert_eq!(i.readings(&avail).len(), 4);
        let i = Interfaces::choose(&[], &avail, true);
        assert_eq!(i.readings(&avail).len(), 6);
    }
}
