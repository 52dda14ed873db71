//! `magi testbed up`: build a lab's namespaces, links, bridges, addresses, routes, shaping,
//! loss and hosts files.
//!
//! The state file is written before anything is made, so a builder killed half-way leaves
//! enough on disk for [`crate::down`] to remove what exists. A failure part-way removes
//! what was made before it is reported.

use std::path::Path;

use crate::control::Control;
use crate::error::TestbedError;
use crate::lab::{Lab, NETNS_ETC};
use crate::plan::{check_pool, Net};
use crate::shaping::{loss_ruleset, tc_lines};
use crate::system::{
    self, batch, in_namespace, is_root, namespaces_with_prefix, run_tool, write_sysctls,
};
use crate::topology::{SegmentKind, Topology};

/// IPv4 only: no IPv6 neighbour discovery chatter in what agents count.
const NO_IPV6: [(&str, &str); 2] = [
    ("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"),
    ("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"),
];

/// Packets no larger than the MTU: without it TCP hands veth 64 KB segmentation-offload
/// packets, which htb lets out whole (a 0.5 s burst on a 1 Mb/s link) and which make the
/// DropTail queue hold a few giant packets instead of 50 real ones.
const MTU_SIZED: &str = "gso_max_segs 1";

/// Turns IPv6 off in the calling thread's namespace, if the kernel has IPv6 at all.
fn no_ipv6() -> Result<(), TestbedError> {
    if Path::new("/proc/sys/net/ipv6").exists() {
        write_sysctls(&NO_IPV6)?;
    }
    Ok(())
}

/// How many `ip`/`tc` batches run at once.
const WORKERS: usize = 4;

/// What `up` builds besides the topology.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// A control network ([`crate::control`]), for a `magi-node` in every namespace.
    pub control: bool,
}

/// Brings testbed `name` up for `topology`, with addresses from `pool`.
pub fn up(name: &str, topology: Topology, pool: Net) -> Result<Lab, TestbedError> {
    up_with(name, topology, pool, UpOptions::default())
}

/// Brings testbed `name` up for `topology`, with addresses from `pool` and `options`.
pub fn up_with(
    name: &str,
    topology: Topology,
    pool: Net,
    options: UpOptions,
) -> Result<Lab, TestbedError> {
    if !is_root() {
        return Err(TestbedError::NotRoot);
    }
    let mut lab = Lab::new(name, topology, pool)?;
    check_pool(&pool, &system::host_networks()?).map_err(TestbedError::Plan)?;
    if options.control {
        let highest = lab
            .plan
            .subnets
            .iter()
            .map(|s| u64::from(u32::from(s.addr)) + s.size())
            .max()
            .unwrap_or(0);
        let taken: Vec<Net> = Lab::list()
            .iter()
            .filter(|other| *other != name)
            .filter_map(|other| Lab::load(other).ok()?.control.map(|c| c.subnet))
            .collect();
        lab.control = Some(
            Control::plan(name, lab.topology.nodes.len(), pool, highest, &taken)
                .map_err(TestbedError::Plan)?,
        );
    }
    check_emulation(&lab.topology)?;
    if Lab::state_path(name).exists()
        || !namespaces_with_prefix(&Lab::namespace_prefix(name)).is_empty()
    {
        return Err(TestbedError::AlreadyUp(name.to_string()));
    }
    lab.save()?;
    let built = build(&lab).and_then(|()| match &lab.control {
        Some(control) => crate::control::build(&lab, control),
        None => Ok(()),
    });
    if let Err(e) = built {
        let _ = crate::down::down(name);
        return Err(e);
    }
    lab.complete = true;
    lab.save()?;
    Ok(lab)
}

/// Refuses what this machine cannot emulate, naming the segment and its line: a delay
/// without `sch_netem`, a loss without `nft`.
pub fn check_emulation(topology: &Topology) -> Result<(), TestbedError> {
    let at = |s: &crate::topology::Segment| {
        let kind = match s.kind {
            SegmentKind::Link => "link",
            SegmentKind::Lan => "LAN",
        };
        format!("{}:{}: {kind} `{}`", topology.source, s.line, s.name)
    };
    if let Some(s) = topology.segments.iter().find(|s| s.shape.delay_us > 0) {
        if !netem_available() {
            return Err(TestbedError::Unsupported(format!(
                "{} asks for a {} delay, but this kernel has no netem queue (module sch_netem): \
                 load it with `modprobe sch_netem`, or set the delay to 0ms",
                at(s),
                crate::units::show_delay(s.shape.delay_us)
            )));
        }
    }
    if let Some(s) = topology.segments.iter().find(|s| s.shape.loss > 0.0) {
        if crate::system::which("nft").is_none() {
            return Err(TestbedError::Unsupported(format!(
                "{} asks for loss, which is emulated with nftables: install it (apt-get install nftables)",
                at(s)
            )));
        }
    }
    Ok(())
}

/// Whether the kernel has netem: a netem qdisc is tried on the loopback of a throw-away
/// namespace.
pub fn netem_available() -> bool {
    std::process::Command::new("unshare")
        .args([
            "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn build(lab: &Lab) -> Result<(), TestbedError> {
    let t = &lab.topology;
    let nodes: Vec<usize> = (0..t.nodes.len()).collect();
    let namespaces = lab.namespaces();
    batch(
        "ip",
        &[],
        &namespaces
            .iter()
            .map(|ns| format!("netns add {ns}"))
            .collect::<Vec<_>>(),
    )?;
    let interfaces: Vec<_> = nodes.iter().map(|&n| lab.interfaces(n)).collect();
    let mut veths = Vec::new();
    for (s, segment) in t.segments.iter().enumerate() {
        let end = |n: usize| {
            let i = interfaces[n].iter().find(|i| i.segment == s);
            (
                lab.namespace(n),
                i.map(|i| i.name.clone()).unwrap_or_default(),
                i.and_then(|i| i.port.clone()),
            )
        };
        match segment.kind {
            SegmentKind::Link => {
                let (a_ns, a, _) = end(segment.nodes[0]);
                let (b_ns, b, _) = end(segment.nodes[1]);
                veths.push(format!(
                    "link add {a} netns {a_ns} {MTU_SIZED} type veth peer name {b} netns {b_ns} {MTU_SIZED}"
                ));
            }
            SegmentKind::Lan => {
                for &m in &segment.nodes {
                    let (m_ns, dev, port) = end(m);
                    let port = port.unwrap_or_default();
                    veths.push(format!(
                        "link add {dev} netns {m_ns} {MTU_SIZED} type veth peer name {port} netns {} {MTU_SIZED}",
                        lab.lan_namespace()
                    ));
                }
            }
        }
    }
    batch("ip", &[], &veths)?;

    if t.lans().next().is_some() {
        let hub = lab.lan_namespace();
        let mut ip = vec!["link set lo up".to_string()];
        let mut tc = Vec::new();
        for (s, segment) in t.segments.iter().enumerate() {
            if segment.kind != SegmentKind::Lan {
                continue;
            }
            let bridge = lab.bridge(s);
            ip.push(format!(
                "link add {bridge} type bridge stp_state 0 forward_delay 0"
            ));
            ip.push(format!("link set {bridge} up"));
            for &m in &segment.nodes {
                if let Some(port) = interfaces[m]
                    .iter()
                    .find(|i| i.segment == s)
                    .and_then(|i| i.port.clone())
                {
                    ip.push(format!("link set {port} master {bridge}"));
                    ip.push(format!("link set {port} up"));
                    tc.extend(tc_lines(&port, &segment.shape));
                }
            }
        }
        in_namespace(&hub, || {
            no_ipv6()?;
            batch("ip", &[], &ip)?;
            batch("tc", &[], &tc)
        })?;
    }

    let routers = t.routers();
    let hosts = lab.hosts_file();
    parallel(&nodes, |&n| {
        let ns = lab.namespace(n);
        let mut ip = vec!["link set lo up".to_string()];
        let mut tc = Vec::new();
        let mut lossy = Vec::new();
        for i in &interfaces[n] {
            let shape = &t.segments[i.segment].shape;
            ip.push(format!(
                "addr add {}/{} dev {}",
                i.address, i.subnet.prefix, i.name
            ));
            ip.push(format!("link set {} up", i.name));
            tc.extend(tc_lines(&i.name, shape));
            lossy.push((i.name.clone(), shape.loss));
        }
        for r in lab.routes.iter().filter(|r| r.node == n) {
            ip.push(format!("route add {} via {}", r.to, r.via));
        }
        in_namespace(&ns, || {
            no_ipv6()?;
            if routers.contains(&n) {
                write_sysctls(&[("/proc/sys/net/ipv4/ip_forward", "1")])?;
            }
            batch("ip", &[], &ip)?;
            batch("tc", &[], &tc)?;
            match loss_ruleset(&lossy) {
                Some(rules) => run_tool("nft", &["-f", "-"], &[rules]),
                None => Ok(()),
            }
        })?;
        write_hosts(&ns, &hosts)
    })
}

fn write_hosts(ns: &str, text: &str) -> Result<(), TestbedError> {
    let dir = Path::new(NETNS_ETC).join(ns);
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("hosts"), text))
        .map_err(|e| TestbedError::State {
            path: dir.display().to_string(),
            message: e.to_string(),
        })
}

/// Runs `f` on every item, [`WORKERS`] at a time; the first error wins.
pub(crate) fn parallel<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), TestbedError> + Sync,
) -> Result<(), TestbedError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if let Err(e) = f(item) {
                    if let Ok(mut slot) = failed.lock() {
                        slot.get_or_insert(e);
                    }
                    next.store(items.len(), std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    match failed.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}
