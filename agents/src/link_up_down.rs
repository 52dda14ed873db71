//! The `link_up_down` module: links changed during a run, as the original's
//! `link_up_down` agent and Emulab's link events (`tevc ... link0 down|up|modify`) do.
//!
//! The agent runs on a node of a testbed made by `magi testbed up` and changes that node's
//! side of a link: it takes the interface down or up, or sets what the node sends on it
//! (bandwidth: the htb class of the testbed's shaping; delay: netem under it; loss:
//! nftables' random drop in the testbed's `magi_testbed_loss` table). A link is named by a
//! neighbour (`dest`, the original's `link_up`/`link_down`) or by its name in the topology
//! (`linkName`, the original's `link_up_tevc`/`link_down_tevc`); `timing` (seconds) delays
//! the change, as tevc's `+N`. Each change is logged and recorded
//! (`{linkEvent, intfName, peerNode|linkName, ...}`).
//!
//! It never touches the machine's own interfaces: it starts only inside a network
//! namespace made by `ip netns` for this node (`T.node`, as the testbed names them), and
//! only changes an interface that shares a subnet with the named neighbour or carries the
//! node's address on the named link. Elsewhere (the embedded bus without a testbed, where
//! every node is a loopback address of one machine) the load is refused, plainly.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use magi_testbed::shaping::{class_line, leaf_line, loss_ruleset, LOSS_TABLE};
use magi_testbed::system::which;
use magi_testbed::units::{parse_bandwidth, parse_delay, show_bandwidth, show_delay};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::netif::Interface;
use crate::runtime::{unknown_method, Agent, Context, Outbox};

/// The methods of the `link_up_down` module.
pub const METHODS: &[&str] = &[
    "link_up",
    "link_down",
    "link_up_tevc",
    "link_down_tevc",
    "modify_link",
];

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The agent: the node's name and where its changes are reported, plus changes scheduled
/// with `timing` that have not happened yet.
pub struct LinkUpDown {
    node: String,
    /// The experiment's node names (the start line's host map).
    nodes: Vec<String>,
    out: Outbox,
    scheduled: Vec<JoinHandle<()>>,
}

/// What a call changes.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Up,
    Down,
    Modify {
        bandwidth_bps: Option<u64>,
        delay_us: Option<u64>,
        loss: Option<f64>,
    },
}

impl Change {
    fn word(&self) -> &'static str {
        match self {
            Change::Up => "up",
            Change::Down => "down",
            Change::Modify { .. } => "modify",
        }
    }
}

/// The name of the testbed namespace this process lives in, if it lives in one made by
/// `ip netns` (`/run/netns/NAME` is the same namespace as `/proc/self/ns/net`).
fn own_named_namespace() -> Option<String> {
    let me = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir(NETNS_DIR).ok()?.find_map(|e| {
        let e = e.ok()?;
        let m = std::fs::metadata(e.path()).ok()?;
        (m.ino() == me.ino() && m.dev() == me.dev())
            .then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// Refuses a node that is not a testbed node (see the module's documentation).
pub fn check_place(
    node: &str,
    address: Option<IpAddr>,
    namespace: Option<&str>,
) -> Result<(), String> {
    let where_ = match address {
        Some(ip) if ip.is_loopback() => format!(
            "node {node} is {ip}, a loopback address of this machine (the embedded bus without a testbed)"
        ),
        _ => match namespace {
            Some(ns) if ns.rsplit_once('.').map(|(_, n)| n) == Some(node) => return Ok(()),
            Some(ns) => format!("this process lives in namespace {ns}, not in node {node}'s"),
            None => format!("node {node} runs in this machine's own network namespace"),
        },
    };
    Err(format!(
        "link_up_down: {where_}, so there is no link of its own to take down or reshape, and \
         the machine's own interfaces are never touched. Run the procedure across a testbed: \
         `magi testbed up TOPOLOGY`, then `magi run --testbed NAME ...`"
    ))
}

/// Reads a hosts file: (name, IPv4 address) for every name of every line.
pub fn parse_hosts_file(text: &str) -> Vec<(String, Ipv4Addr)> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<Ipv4Addr>) else {
            continue;
        };
        pairs.extend(words.map(|w| (w.to_string(), ip)));
    }
    pairs
}

/// The interface that leads to neighbour `dest`: the one whose subnet holds one of `dest`'s
/// addresses (`dest` itself, or `dest-SEGMENT` for its other interfaces). `nodes` are the
/// experiment's node names, so that `s-1-link` is not taken for a name of `s-10`'s.
pub fn interface_to<'a>(
    interfaces: &'a [Interface],
    hosts: &[(String, Ipv4Addr)],
    nodes: &[&str],
    dest: &str,
) -> Result<&'a Interface, String> {
    let prefix = format!("{dest}-");
    let longer: Vec<String> = nodes
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .map(|n| format!("{n}-"))
        .collect();
    let addresses: Vec<Ipv4Addr> = hosts
        .iter()
        .filter(|(name, _)| {
            name == dest
                || (name.starts_with(&prefix)
                    && !nodes.contains(&name.as_str())
                    && !longer.iter().any(|l| name.starts_with(l.as_str())))
        })
        .map(|(_, ip)| *ip)
        .collect();
    if addresses.is_empty() {
        return Err(format!(
            "link_up_down: unknown node '{dest}' (not in the testbed's hosts)"
        ));
    }
    interfaces
        .iter()
        .find(|i| addresses.iter().any(|&a| i.holds(a) && a != i.address))
        .ok_or_else(|| {
            format!("link_up_down: this node has no link to '{dest}' (no interface shares a subnet with it); name a neighbour")
        })
}

/// The interface carrying this node's address on link or LAN `link` (hosts entry
/// `NODE-LINK`, as the testbed names each interface).
pub fn interface_on<'a>(
    interfaces: &'a [Interface],
    hosts: &[(String, Ipv4Addr)],
    node: &str,
    link: &str,
) -> Result<&'a Interface, String> {
    let own = format!("{node}-");
    let wanted = format!("{own}{link}");
    let address = hosts.iter().find(|(n, _)| *n == wanted).map(|(_, ip)| *ip);
    address
        .and_then(|a| interfaces.iter().find(|i| i.address == a))
        .ok_or_else(|| {
            let mut links: Vec<&str> = hosts
                .iter()
                .filter_map(|(n, _)| n.strip_prefix(&own))
                .collect();
            links.dedup();
            format!(
                "link_up_down: node {node} is not on a link named '{link}'; its links are: {}",
                links.join(", ")
            )
        })
}

/// What `timing` asks: now (absent or 0), or that many seconds from now.
fn timing(args: &Args) -> Result<Option<Duration>, String> {
    match args.f64("timing")? {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(t) if t > 0.0 && t <= 86_400.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(format!(
            "argument 'timing' must be seconds from 0 to 86400, not {t}"
        )),
    }
}

/// A number or an ns-2 spelling (`10Mb`, `10ms`) read by `parse`; a bare number means
/// `unit`.
fn spelled(
    args: &Args,
    key: &str,
    unit: &str,
    parse: fn(&str) -> Result<u64, String>,
) -> Result<Option<u64>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => parse(&format!("{n}{unit}")).map(Some),
        Some(Value::String(s)) => parse(s.trim()).map(Some),
        Some(v) => Err(format!(
            "argument '{key}' must be a number or a string, not {v}"
        )),
    }
    .map_err(|e| format!("argument '{key}': {e}"))
}

fn modification(args: &Args) -> Result<Change, String> {
    let bandwidth_bps = spelled(args, "bandwidth", "b", parse_bandwidth)?;
    let delay_us = spelled(args, "delay", "ms", parse_delay)?;
    let loss = match args.f64("loss")? {
        Some(p) if !(0.0..=1.0).contains(&p) => {
            return Err(format!(
                "argument 'loss' must be a fraction from 0 to 1, not {p}"
            ))
        }
        other => other,
    };
    if bandwidth_bps == Some(0) {
        return Err("argument 'bandwidth' must be above 0 (take the link down instead)".into());
    }
    if bandwidth_bps.is_none() && delay_us.is_none() && loss.is_none() {
        return Err("modify_link needs at least one of bandwidth, delay, loss".into());
    }
    Ok(Change::Modify {
        bandwidth_bps,
        delay_us,
        loss,
    })
}

async fn tool(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let path =
        which(program).ok_or_else(|| format!("link_up_down: `{program}` is not installed"))?;
    let mut child = Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("link_up_down: cannot run {program}: {e}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.unwrap_or("").as_bytes()).await;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Handles of the loss rules on `dev` in the testbed's loss table (`nft -a` output).
pub fn loss_rule_handles(listing: &str, dev: &str) -> Vec<String> {
    let wanted = format!("oifname \"{dev}\"");
    listing
        .lines()
        .filter(|l| l.contains(&wanted))
        .filter_map(|l| {
            l.rsplit_once("# handle ")
                .map(|(_, h)| h.trim().to_string())
        })
        .collect()
}

async fn set_loss(dev: &str, loss: f64) -> Result<(), String> {
    if let Ok(listing) = tool(
        "nft",
        &["-a", "list", "chain", "inet", LOSS_TABLE, "egress"],
        None,
    )
    .await
    {
        for handle in loss_rule_handles(&listing, dev) {
            tool(
                "nft",
                &[
                    "delete", "rule", "inet", LOSS_TABLE, "egress", "handle", &handle,
                ],
                None,
            )
            .await?;
        }
    }
    match loss_ruleset(&[(dev.to_string(), loss)]) {
        Some(rules) => tool("nft", &["-f", "-"], Some(&rules)).await.map(|_| ()),
        None => Ok(()),
    }
}

/// Carries out `change` on `dev`; returns what was done, for the log and the record.
async fn apply(dev: &str, change: &Change) -> Result<Value, String> {
    match change {
        Change::Up | Change::Down => {
            tool("ip", &["link", "set", "dev", dev, change.word()], None).await?;
            Ok(json!({}))
        }
        Change::Modify {
            bandwidth_bps,
            delay_us,
            loss,
        } => {
            let mut done = serde_json::Map::new();
            if let Some(rate) = bandwidth_bps {
                let line = class_line("change", dev, *rate);
                let words: Vec<&str> = line.split_whitespace().collect();
                tool("tc", &words, None).await?;
                done.insert("bandwidth".into(), json!(show_bandwidth(*rate)));
            }
            if let Some(delay) = delay_us {
                let line = leaf_line("replace", dev, *delay);
                let words: Vec<&str> = line.split_whitespace().collect();
                tool("tc", &words, None).await.map_err(|e| {
                    if *delay > 0 {
                        format!(
                            "link_up_down: a {} delay needs the kernel's netem queue (module sch_netem), \
                             which this kernel does not offer (load it with `modprobe sch_netem`); {e}",
                            show_delay(*delay)
                        )
                    } else {
                        e
                    }
                })?;
                done.insert("delay".into(), json!(show_delay(*delay)));
            }
            if let Some(p) = loss {
                set_loss(dev, *p).await?;
                done.insert("loss".into(), json!(p));
            }
            Ok(Value::Object(done))
        }
    }
}

impl LinkUpDown {
    /// Finds the interface a call names and changes it, now or after `timing`.
    async fn change(
        &mut self,
        args: &Args,
        change: Change,
        by_name: bool,
    ) -> Result<Value, String> {
        let hosts = parse_hosts_file(&std::fs::read_to_string("/etc/hosts").unwrap_or_default());
        let all = crate::netif::list().await?;
        let dest = if by_name { None } else { args.text("dest")? };
        let (dev, about) = match (dest, args.text("linkName")?) {
            (Some(dest), _) => {
                let nodes: Vec<&str> = self.nodes.iter().map(String::as_str).collect();
                let dev = interface_to(&all, &hosts, &nodes, &dest)?;
                (dev.name.clone(), json!({"peerNode": dest}))
            }
            (None, Some(link)) => {
                let dev = interface_on(&all, &hosts, &self.node, &link)?;
                (dev.name.clone(), json!({"linkName": link}))
            }
            (None, None) if by_name => {
                return Err("missing argument 'linkName' (a link's name in the topology)".into())
            }
            (None, None) => return Err("name the link: dest (a neighbour) or linkName".into()),
        };
        self.schedule(dev, about, change, timing(args)?).await
    }

    async fn schedule(
        &mut self,
        dev: String,
        about: Value,
        change: Change,
        after: Option<Duration>,
    ) -> Result<Value, String> {
        let out = self.out.clone();
        let Some(after) = after else {
            return report(&out, &dev, about, &change)
                .await
                .map(|_| Value::Bool(true));
        };
        out.info(format!(
            "link {} of {dev} in {:.3} s",
            change.word(),
            after.as_secs_f64()
        ));
        self.scheduled.retain(|h| !h.is_finished());
        self.scheduled.push(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Err(e) = report(&out, &dev, about, &change).await {
                out.error(e);
            }
        }));
        Ok(Value::Bool(true))
    }
}

/// Applies `change` to `dev`, then logs and records it.
async fn report(out: &Outbox, dev: &str, about: Value, change: &Change) -> Result<(), String> {
    let done = apply(dev, change).await?;
    let mut record = json!({"linkEvent": change.word(), "intfName": dev});
    for (k, v) in about
        .as_object()
        .into_iter()
        .flatten()
        .chain(done.as_object().into_iter().flatten())
    {
        record[k] = v.clone();
    }
    out.info(format!("link {}: {record}", change.word()));
    if let Value::Object(data) = record {
        out.record(data);
    }
    Ok(())
}

impl Agent for LinkUpDown {
    async fn start(ctx: Context, _execargs: Args) -> Result<Self, String> {
        check_place(&ctx.node, ctx.address, own_named_namespace().as_deref())?;
        Ok(LinkUpDown {
            nodes: ctx.hosts.iter().map(|(n, _)| n.to_string()).collect(),
            node: ctx.node,
            out: ctx.out,
            scheduled: Vec::new(),
        })
    }

    async fn call(&mut self, method: &str, args: Args) -> Result<Value, String> {
        match method {
            "link_up" => self.change(&args, Change::Up, false).await,
            "link_down" => self.change(&args, Change::Down, false).await,
            "link_up_tevc" => self.change(&args, Change::Up, true).await,
            "link_down_tevc" => self.change(&args, Change::Down, true).await,
            "modify_link" => {
                let change = modification(&args)?;
                self.change(&args, change, false).await
            }
            _ => Err(unknown_method(method, METHODS)),
        }
    }

    async fn stop(&mut self) {
        for h in self.scheduled.drain(..) {
            h.abort();
        }
    }
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
    fn only_a_testbed_nodes_own_namespace_is_accepted() {
        let testbed: Option<IpAddr> = Some("198.18.0.1".parse().unwrap());
        assert!(check_place("clientnode", testbed, Some("cs.clientnode")).is_ok());
        let loopback =
            check_place("clientnode", Some("127.0.1.1".parse().unwrap()), None).unwrap_err();
        assert!(
            loopback.contains("loopback") && loopback.contains("magi testbed up"),
            "{loopback}"
        );
        let host = check_place("clientnode", testbed, None).unwrap_err();
        assert!(host.contains("own network namespace"), "{host}");
        let other = check_place("clientnode", testbed, Some("cs.servernode")).unwrap_err();
        assert!(other.contains("cs.servernode"), "{other}");
    }

    #[test]
    fn the_interface_to_a_neighbour_shares_a_subnet_with_any_of_its_addresses() {
        let ifs = [eth("eth0", "198.18.0.1", 30), eth("eth1", "198.18.0.5", 30)];
        let hosts = parse_hosts_file(
            "127.0.0.1\tlocalhost\n198.18.0.9\ts-1\n198.18.0.6\ts-1-link-2\n198.18.0.2\ts-10-link-3\n198.18.0.13\ts-10\n",
        );
        let nodes = ["s-1", "s-10"];
        assert_eq!(
            interface_to(&ifs, &hosts, &nodes, "s-1").unwrap().name,
            "eth1"
        );
        assert_eq!(
            interface_to(&ifs, &hosts, &nodes, "s-10").unwrap().name,
            "eth0"
        );
        assert!(interface_to(&ifs, &hosts, &nodes, "nobody")
            .unwrap_err()
            .contains("unknown node"));
        let far = parse_hosts_file("198.18.1.1 far\n");
        assert!(interface_to(&ifs, &far, &["far"], "far")
            .unwrap_err()
            .contains("no link to 'far'"));
    }

    #[test]
    fn a_link_by_name_is_the_interface_with_the_nodes_address_on_it() {
        let ifs = [eth("eth0", "198.18.0.1", 30)];
        let hosts =
            parse_hosts_file("198.18.0.1 clientnode clientnode-link\n198.18.0.2 servernode-link\n");
        assert_eq!(
            interface_on(&ifs, &hosts, "clientnode", "link")
                .unwrap()
                .name,
            "eth0"
        );
        let e = interface_on(&ifs, &hosts, "clientnode", "other").unwrap_err();
        assert!(e.contains("its links are: link"), "{e}");
    }

    #[test]
    fn modifications_are_checked_before_anything_changes() {
        let args = |v: Value| Args(v.as_object().unwrap().clone());
        assert_eq!(
            modification(&args(json!({"bandwidth": "10Mb", "loss": 0.1}))).unwrap(),
            Change::Modify {
                bandwidth_bps: Some(10_000_000),
                delay_us: None,
                loss: Some(0.1)
            }
        );
        assert_eq!(
            modification(&args(json!({"delay": 10}))).unwrap(),
            Change::Modify {
                bandwidth_bps: None,
                delay_us: Some(10_000),
                loss: None
            }
        );
        for bad in [
            json!({}),
            json!({"loss": 2}),
            json!({"bandwidth": "fast"}),
            json!({"bandwidth": 0}),
        ] {
            assert!(modification(&args(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn loss_rules_of_one_interface_are_found_by_handle() {
        let listing = "table inet magi_testbed_loss {\n\tchain egress { # handle 1\n\t\toifname \"eth0\" numgen random mod 1000000 < 50000 drop # handle 4\n\t\toifname \"eth1\" numgen random mod 1000000 < 1 drop # handle 5\n\t}\n}\n";
        assert_eq!(loss_rule_handles(listing, "eth0"), ["4"]);
        assert!(loss_rule_handles(listing, "eth2").is_empty());
    }
}
