//! `magi testbed status`: what a testbed is made of, and whether it is all there.

use std::fmt::Write as _;

use crate::lab::Lab;
use crate::system::namespaces_with_prefix;
use crate::topology::SegmentKind;
use crate::units::{show_bandwidth, show_delay};

/// How many of the testbed's namespaces exist, out of how many it should have.
pub fn health(lab: &Lab) -> (usize, usize) {
    let expected = lab.namespaces();
    let present = namespaces_with_prefix(&Lab::namespace_prefix(&lab.name));
    let found = expected.iter().filter(|ns| present.contains(ns)).count();
    (found, expected.len())
}

/// One line: name, state, size, source.
pub fn summary(lab: &Lab) -> String {
    let (found, expected) = health(lab);
    let state = if !lab.complete {
        "incomplete (its builder stopped; bring it down)"
    } else if found == expected {
        "up"
    } else {
        "damaged (namespaces missing; bring it down)"
    };
    let t = &lab.topology;
    format!(
        "{}: {state}, {} nodes, {} links, {} LANs, {found}/{expected} namespaces, pool {}, from {}",
        lab.name,
        t.nodes.len(),
        t.links().count(),
        t.lans().count(),
        lab.plan.pool,
        t.source
    )
}

/// The summary, then every node with its interfaces and routes, then every segment with
/// its settings.
pub fn describe(lab: &Lab) -> String {
    let t = &lab.topology;
    let mut out = summary(lab);
    out.push_str("\n\nnode (namespace)\tinterfaces\n");
    let routers = t.routers();
    for n in 0..t.nodes.len() {
        let ifaces: Vec<String> = lab
            .interfaces(n)
            .iter()
            .map(|i| {
                format!(
                    "{} {}/{} ({})",
                    i.name, i.address, i.subnet.prefix, t.segments[i.segment].name
                )
            })
            .collect();
        let routes = lab.routes.iter().filter(|r| r.node == n).count();
        let role = if routers.contains(&n) {
            ", forwards"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{} ({})\t{}; {routes} routes{role}",
            t.nodes[n].name,
            lab.namespace(n),
            if ifaces.is_empty() {
                "none".to_string()
            } else {
                ifaces.join(", ")
            }
        );
    }
    out.push_str("\nsegment\tkind\tsubnet\tnodes\tbandwidth\tdelay\tloss\tqueue\n");
    for (s, seg) in t.segments.iter().enumerate() {
        let kind = match seg.kind {
            SegmentKind::Link => "link".to_string(),
            SegmentKind::Lan => format!("LAN ({} in {})", lab.bridge(s), lab.lan_namespace()),
        };
        let _ = writeln!(
            out,
            "{}\t{kind}\t{}\t{}\t{}\t{}\t{}%\t{}",
            seg.name,
            lab.plan.subnets[s],
            seg.nodes.len(),
            show_bandwidth(seg.shape.bandwidth_bps),
            show_delay(seg.shape.delay_us),
            seg.shape.loss * 100.0,
            seg.shape.queue
        );
    }
    if let Some(c) = &lab.control {
        let _ = writeln!(
            out,
            "\ncontrol network {}: the host is {} on {}, node N is ctl0 in its namespace (bridge ctl in {}); no experiment traffic",
            c.subnet,
            c.host_address,
            c.host_interface,
            crate::control::namespace(lab)
        );
    }
    out
}
