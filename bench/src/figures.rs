//! The figures of one N, from what the runs measured: MAGI-rs against the bare reference
//! (with its targets), against the reference on MAGI-rs's routing, and both against the
//! floor.

use std::time::Duration;

use crate::report::{ms, percentile, Figure};
use crate::{bare, ours};

/// The figures of one N: round trip, CPU per trigger, setup, teardown and the rest.
pub fn size_figures(
    n: usize,
    ours: Option<&ours::OursRun>,
    bare: Option<&bare::BareRun>,
    module: &ours::Module,
) -> Vec<Figure> {
    let mut figures = Vec::new();
    let median = |v: &[Duration]| ms(percentile(v, 50.0));
    let Some(ours) = ours else {
        // Only the reference could be measured: keep its figures (value = baseline).
        if let Some(b) = bare {
            for (p, name) in [(50.0, "bare_roundtrip_p50"), (99.0, "bare_roundtrip_p99")] {
                figures.push(Figure::new(name, n, ms(percentile(&b.rounds, p)), "ms"));
            }
        }
        return figures;
    };
    for (p, name) in [(50.0, "roundtrip_p50"), (99.0, "roundtrip_p99")] {
        let v = ms(percentile(&ours.rounds, p));
        let f = match bare {
            Some(b) => Figure::compared(name, n, v, ms(percentile(&b.rounds, p)), "ms"),
            None => Figure::new(name, n, v, "ms"),
        };
        // Issue 11: at every N, p50 at most 1.25 and p99 at most 1.5 times bare lapin's.
        figures.push(match (bare.is_some(), p == 50.0) {
            (true, true) => f.at_most(1.25),
            (true, false) => f.at_most(1.5),
            (false, _) => f,
        });
    }
    if n >= 10_000 {
        // Issue 11: at 10,000 nodes the round trip's p50 is under 5 s.
        let s = ms(percentile(&ours.rounds, 50.0)) / 1e3;
        figures.push(Figure::new("roundtrip_p50_seconds", n, s, "s").at_most(5.0));
    }
    let us = |v: f64| v * 1e6;
    let cpu_rows = [
        (
            "orchestrator_cpu_per_trigger",
            Some(ours.cpu_per_trigger),
            bare.map(|b| b.cpu_per_answer),
            "orchestrator process; bare: the bare client's CPU per answer",
        ),
        (
            "nodes_cpu_per_trigger",
            ours.nodes_cpu_per_trigger,
            bare.and_then(|b| b.nodes_cpu_per_answer),
            "the fleet process (node agents; agent processes not counted); bare: the consumers",
        ),
        (
            "broker_cpu_per_trigger",
            ours.broker_cpu_per_trigger,
            bare.and_then(|b| b.broker_cpu_per_answer),
            "RabbitMQ (beam.smp), all of its work in the round-trip phase",
        ),
    ];
    for (name, value, baseline, note) in cpu_rows {
        let Some(value) = value else { continue };
        figures.push(
            match baseline {
                Some(b) => Figure::compared(name, n, us(value), us(b), "us"),
                None => Figure::new(name, n, us(value), "us"),
            }
            .note(note),
        );
    }
    let kib = module.packed.bytes.len() / 1024;
    let setup_s = ours.setup.as_secs_f64();
    let setup = match bare.filter(|b| !b.big_rounds.is_empty()) {
        Some(b) => Figure::compared("setup", n, setup_s, median(&b.big_rounds) / 1e3, "s").note(
            format!("groups built + {kib} KiB agent loaded everywhere; bare: one message of the shipped size to N queues, N answers"),
        ),
        None => Figure::new("setup", n, setup_s, "s")
            .note(format!("groups built + {kib} KiB agent loaded everywhere")),
    };
    // The targets are on the time, not on a ratio: issue 6 at 1,000, issue 11 at 10,000.
    let target = match n {
        1000 => Some(10.0),
        10_000 => Some(60.0),
        _ => None,
    };
    figures.push(match target {
        Some(t) => {
            let mut f = setup;
            f.target = Some(t);
            f.met = Some(setup_s <= t);
            f
        }
        None => setup,
    });
    figures.push(Figure::new("teardown", n, ours.teardown.as_secs_f64(), "s"));
    figures.push(
        Figure::new("preflight", n, ours.preflight.as_secs_f64(), "s")
            .note("every node announced (before setup)"),
    );
    figures.push(
        Figure::new("fleet_start", n, ours.fleet_ready.as_secs_f64(), "s")
            .note("node agents attached in the fleet process"),
    );
    figures.push(Figure::new(
        "fleet_stop",
        n,
        ours.fleet_stop.as_secs_f64(),
        "s",
    ));
    figures.push(
        Figure::new(
            "fleet_rss_peak",
            n,
            ours.fleet_peak_kib as f64 / 1024.0,
            "MiB",
        )
        .note("the fleet processes' VmHWM summed (node agents; agent processes not counted)"),
    );
    figures
}

/// The routed reference's figures: bare lapin over MAGI-rs's exchanges, routing keys and
/// message properties. MAGI-rs against it is the cost of MAGI-rs's own work (JSON, checks,
/// deduplication, the engine, the node agent, the agent process); it against the bare
/// reference is the cost of the routing and properties that identities and groups need.
pub fn routed_figures(
    n: usize,
    ours: Option<&ours::OursRun>,
    bare: Option<&bare::BareRun>,
    routed: Option<&bare::BareRun>,
) -> Vec<Figure> {
    let Some(routed) = routed else {
        return Vec::new();
    };
    let mut figures = Vec::new();
    for p in [50.0, 99.0] {
        let base = ms(percentile(&routed.rounds, p));
        figures.push(
            Figure::new(&format!("routed_roundtrip_p{p}"), n, base, "ms")
                .note("bare lapin on MAGI-rs's exchanges, keys and properties"),
        );
        if let Some(o) = ours {
            let v = ms(percentile(&o.rounds, p));
            figures.push(
                Figure::compared(&format!("roundtrip_p{p}_over_routed"), n, v, base, "ms")
                    .note("MAGI-rs against the routed reference: the cost of its own work"),
            );
        }
        if let Some(b) = bare {
            let v = ms(percentile(&b.rounds, p));
            figures.push(
                Figure::compared(&format!("routed_p{p}_over_bare"), n, base, v, "ms")
                    .note("the routed reference against bare lapin: the cost of the routing"),
            );
        }
    }
    let us = |v: f64| v * 1e6;
    if let (Some(o), Some(r)) = (
        ours.and_then(|o| o.broker_cpu_per_trigger),
        routed.broker_cpu_per_answer,
    ) {
        figures.push(
            Figure::compared("broker_cpu_per_trigger_over_routed", n, us(o), us(r), "us")
                .note("RabbitMQ's CPU per trigger, MAGI-rs against the routed reference"),
        );
    }
    figures
}

/// The floor's figures: MAGI-rs and the bare reference against the same fan-out with no
/// guarantee (transient, no confirms, automatic acknowledgements), what the guarantees
/// cost.
pub fn floor_figures(
    n: usize,
    ours: Option<&ours::OursRun>,
    bare: Option<&bare::BareRun>,
    floor: Option<&bare::BareRun>,
) -> Vec<Figure> {
    let Some(floor) = floor else {
        return Vec::new();
    };
    let mut figures = Vec::new();
    for p in [50.0, 99.0] {
        let base = ms(percentile(&floor.rounds, p));
        figures.push(
            Figure::new(&format!("floor_roundtrip_p{p}"), n, base, "ms")
                .note("bare lapin, transient, no confirms, auto-ack, classic queues"),
        );
        if let Some(o) = ours {
            let v = ms(percentile(&o.rounds, p));
            figures.push(
                Figure::compared(&format!("roundtrip_p{p}_over_floor"), n, v, base, "ms")
                    .note("MAGI-rs against the floor (the baseline column is the floor)"),
            );
        }
        if let Some(b) = bare {
            let v = ms(percentile(&b.rounds, p));
            figures.push(
                Figure::compared(&format!("bare_p{p}_over_floor"), n, v, base, "ms")
                    .note("bare lapin with the bus's guarantees against the floor: their cost"),
            );
        }
    }
    figures
}
