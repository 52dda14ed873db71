//! Per-peer counters in the agent's own nftables table.
//!
//! The original flushed the machine's iptables tables to install its rules (magi-spec
//! §5.3). Here the agent creates one table of its own, `inet magi_<run>_<agent>_<node>`,
//! holding named counters and the rules that feed them, reads the counters with
//! `nft -j list counters`, and deletes the table when collection stops or the agent exits.
//! Other tables are never read or written. Rules only count (`policy accept`, no verdicts).
//!
//! For each peer `P` of this node `ME`:
//! - `in_k`: `input`  `ip saddr P ip daddr ME`, plus `forward` `ip saddr P`;
//! - `out_k`: `output` `ip saddr ME ip daddr P`, plus `forward` `ip daddr P`.
//!
//! The address pair is what tells peers apart on the embedded default, where every node
//! shares the loopback interface; the forward rules make a router count transit traffic
//! per neighbour as the original's per-interface counters did. A peer at the other end of
//! a point-to-point link (a testbed's /30) is counted by the interface instead
//! (`iifname`/`oifname` in all three chains), so what it forwards from beyond counts as
//! its traffic, as on a testbed node: the feedback case study's `rc` senses everything
//! `rs` sends it. Bytes are IP bytes
//! (headers included), as iptables counted them. Chains hook at priority -300 (before
//! connection tracking and any filtering), so what is counted is what arrived or left.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{CounterKey, Direction, Reading};

/// One counted peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// The peer's node name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// The interface traffic to it uses (for `intfName`).
    pub intf: String,
    /// Whether it is the other end of a point-to-point link on `intf`: then everything
    /// that crosses `intf` is counted as its traffic, also what it forwards from beyond
    /// (as the original's per-interface counters on a testbed node did).
    pub link_end: bool,
}

/// The agent's table; deleted on [`Table::remove`] or, failing that, on drop.
#[derive(Debug)]
pub struct Table {
    nft: PathBuf,
    name: String,
    counters: Vec<(String, CounterKey)>,
    removed: bool,
}

/// The `nft` program, if installed (also looked for in the sbin directories, which a
/// non-login PATH may lack).
pub fn program() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| p.is_file())
}

/// The table name for an agent: `magi_<run>_<agent>_<node>`, lower-case letters, digits
/// and `_` only. When that changes the name (or it is long), a hash of the exact name is
/// appended, so that distinct agents never share a table.
pub fn table_name(run: &str, agent: &str, node: &str) -> String {
    let raw = format!("magi_{run}_{agent}_{node}");
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == raw && clean.len() <= 48 {
        return clean;
    }
    let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut short: String = clean.chars().take(40).collect();
    short.push_str(&format!("_{:08x}", hash as u32));
    short
}

/// The nft script that (re)creates the table atomically: a stale table of the same name,
/// left by a killed agent, is replaced.
pub fn script(table: &str, me: IpAddr, peers: &[Peer]) -> (String, Vec<(String, CounterKey)>) {
    let family = |ip: IpAddr| if ip.is_ipv4() { "ip" } else { "ip6" };
    let mut counters = Vec::new();
    let (mut defs, mut input, mut output, mut forward) =
        (String::new(), String::new(), String::new(), String::new());
    for (k, p) in peers.iter().enumerate() {
        let (cin, cout) = (format!("in_{k}"), format!("out_{k}"));
        let (f, fm) = (family(p.ip), family(me));
        defs.push_str(&format!("\tcounter {cin} {{ }}\n\tcounter {cout} {{ }}\n"));
        if p.link_end {
            let dev = &p.intf;
            input.push_str(&format!("\t\tiifname \"{dev}\" counter name \"{cin}\"\n"));
            output.push_str(&format!("\t\toifname \"{dev}\" counter name \"{cout}\"\n"));
            forward.push_str(&format!("\t\tiifname \"{dev}\" counter name \"{cin}\"\n"));
            forward.push_str(&format!("\t\toifname \"{dev}\" counter name \"{cout}\"\n"));
        } else if f == fm {
            input.push_str(&format!(
                "\t\t{f} saddr {} {f} daddr {me} counter name \"{cin}\"\n",
                p.ip
            ));
            output.push_str(&format!(
                "\t\t{f} saddr {me} {f} daddr {} counter name \"{cout}\"\n",
                p.ip
            ));
        }
        if !p.link_end {
            forward.push_str(&format!("\t\t{f} saddr {} counter name \"{cin}\"\n", p.ip));
            forward.push_str(&format!("\t\t{f} daddr {} counter name \"{cout}\"\n", p.ip));
        }
        for (name, direction) in [(cin, Direction::In), (cout, Direction::Out)] {
            counters.push((
                name,
                CounterKey {
                    intf: p.intf.clone(),
                    peer: p.name.clone(),
                    direction,
                },
            ));
        }
    }
    let chain = |name: &str, rules: &str| {
        format!(
            "\tchain {name} {{\n\t\ttype filter hook {name} priority -300; policy accept;\n{rules}\t}}\n"
        )
    };
    let text = format!(
        "add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n{defs}{}{}{}}}\n",
        chain("input", &input),
        chain("output", &output),
        chain("forward", &forward),
    );
    (text, counters)
}

impl Table {
    /// Creates the table with counters for `peers` of this node at `me`.
    pub async fn create(
        nft: PathBuf,
        name: String,
        me: IpAddr,
        peers: &[Peer],
    ) -> Result<Table, String> {
        let (text, counters) = script(&name, me, peers);
        let mut child = Command::new(&nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", nft.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .await
                .map_err(|e| format!("cannot give nft its script: {e}"))?;
        }
        let done = child
            .wait_with_output()
            .await
            .map_err(|e| format!("nft failed: {e}"))?;
        if !done.status.success() {
            return Err(format!(
                "nft could not create table inet {name}: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            ));
        }
        Ok(Table {
            nft,
            name,
            counters,
            removed: false,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cumulative counts of every counter.
    pub async fn read(&self) -> Result<Vec<Reading>, String> {
        let done = Command::new(&self.nft)
            .args(["-j", "list", "counters", "table", "inet", &self.name])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if !done.status.success() {
            return Err(format!(
                "nft could not list table inet {}: {}",
                self.name,
                String::from_utf8_lossy(&done.stderr).trim()
            ));
        }
        let values = parse_counters(&String::from_utf8_lossy(&done.stdout))?;
        Ok(self
            .counters
            .iter()
            .map(|(name, key)| {
                let (packets, bytes) = values.get(name).copied().unwrap_or((0, 0));
                Reading {
                    key: key.clone(),
                    packets,
                    bytes,
                }
            })
            .collect())
    }

    /// Deletes the table.
    pub async fn remove(&mut self) -> Result<(), String> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let done = Command::new(&self.nft)
            .args(["delete", "table", "inet", &self.name])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if done.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft could not delete table inet {}: {}",
                self.name,
                String::from_utf8_lossy(&done.stderr).trim()
            ))
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if !self.removed {
            // Last resort (an aborted task, a panic): never leave rules behind.
            let _ = std::process::Command::new(&self.nft)
                .args(["delete", "table", "inet", &self.name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Counter name → (packets, bytes) from `nft -j list counters` output.
pub fn parse_counters(json: &str) -> Result<HashMap<String, (u64, u64)>, String> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| format!("nft printed something that is not JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft's JSON has no 'nftables' list")?;
    Ok(items
        .iter()
        .filter_map(|item| item.get("counter"))
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.to_string();
            let packets = c.get("packets")?.as_u64()?;
            let bytes = c.get("bytes")?.as_u64()?;
            Some((name, (packets, bytes)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_valid_nft_identifiers_and_distinct() {
        assert_eq!(
            table_name("run1", "monitor_agent", "servernode"),
            "magi_run1_monitor_agent_servernode"
        );
        let a = table_name("0190-ab", "monitor_agent", "node-1");
        let b = table_name("0190_ab", "monitor_agent", "node_1");
        assert_ne!(a, b);
        for n in [&a, &b, &table_name(&"x".repeat(300), "A", "b c")] {
            assert!(n.len() <= 49, "{n}");
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
    }

    #[test]
    fn the_end_of_a_point_to_point_link_is_counted_by_the_interface() {
        let peers = [Peer {
            name: "rs".into(),
            ip: "198.18.0.1".parse().unwrap(),
            intf: "eth0".into(),
            link_end: true,
        }];
        let (text, _) = script("magi_t", "198.18.0.2".parse().unwrap(), &peers);
        assert_eq!(
            text.matches("iifname \"eth0\" counter name \"in_0\"")
                .count(),
            2,
            "{text}"
        );
        assert_eq!(
            text.matches("oifname \"eth0\" counter name \"out_0\"")
                .count(),
            2,
            "{text}"
        );
        assert!(!text.contains("saddr"), "{text}");
    }

    #[test]
    fn the_script_counts_each_direction_by_address_pair() {
        let peers = [Peer {
            name: "clientnode".into(),
            ip: "127.0.1.1".parse().unwrap(),
            intf: "lo".into(),
            link_end: false,
        }];
        let (text, counters) = script("magi_t", "127.0.1.2".parse().unwrap(), &peers);
        assert!(text.starts_with("add table inet magi_t\ndelete table inet magi_t\n"));
        assert!(text.contains("ip saddr 127.0.1.1 ip daddr 127.0.1.2 counter name \"in_0\""));
        assert!(text.contains("ip saddr 127.0.1.2 ip daddr 127.0.1.1 counter name \"out_0\""));
        assert!(text.contains("type filter hook forward priority -300; policy accept;"));
        assert!(!text.contains("drop") && !text.contains("reject") && !text.contains("flush"));
        assert_eq!(counters.len(), 2);
        assert_eq!(counters[0].1.direction, Direction::In);
        assert_eq!(counters[1].1.peer, "clientnode");
    }

    #[test]
    fn counters_are_read_from_nfts_json() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "out_0", "table": "t", "handle": 3, "packets": 4, "bytes": 216}},
            {"counter": {"family": "inet", "name": "in_0", "table": "t", "handle": 4, "packets": 5, "bytes": 10216}}]}"#;
        let c = parse_counters(out).unwrap();
        assert_eq!(c["out_0"], (4, 216));
        assert_eq!(c["in_0"], (5, 10216));
        assert!(parse_counters("nope").is_err());
        assert!(parse_counters("{}").is_err());
    }
}
