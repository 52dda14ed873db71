//! The feedback case study across its own topology: `casestudy_feedback.aal` unchanged but
//! for its 300 s, across `casestudy_feedback.tcl` (63 nodes, trees of 1 Gb/s links, routers
//! `rs` and `rc`). Its control loop senses with the packet counter on `rc` what `rs` sends
//! in, and steers the control client up or down to stay between the procedure's thresholds.

use std::path::Path;

use serde_json::Value;

use super::support::*;

/// The procedure's thresholds (`thresholdLow`, `thresholdHigh`), bytes per interval.
const BAND: (u64, u64) = (10_100_000, 10_400_000);

/// The sensing intervals once the loop has settled (from the first inside the band on):
/// (inside the band, all).
pub fn in_band_once_settled(readings: &[u64]) -> (usize, usize) {
    let inside = |b: &u64| (BAND.0..=BAND.1).contains(b);
    let settled = readings
        .iter()
        .position(inside)
        .map_or(&[][..], |i| &readings[i..]);
    (settled.iter().filter(|b| inside(b)).count(), settled.len())
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn the_feedback_loop_senses_real_traffic_and_steers_it_into_the_band() {
    let _serial = serial();
    let bed = Bed::up(&shared("casestudy_feedback.tcl"), "fb");
    let dir = tempfile::tempdir().expect("temp dir");
    let original =
        std::fs::read_to_string(shared("casestudy_feedback.aal")).expect("the case study");
    assert_eq!(original.matches("timeout: 300000").count(), 1);
    let aal = dir.path().join("casestudy_feedback.aal");
    std::fs::write(&aal, original.replace("timeout: 300000", "timeout: 24000")).expect("write");
    let records = dir.path().join("runs");
    let out = magi(&[
        "run",
        &aal.to_string_lossy(),
        "--no-color",
        "--run",
        "fb",
        "--testbed",
        &bed.name,
        "--record-dir",
        &records.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = jsonl(&records.join("fb/events.jsonl"));
    let sensed: Vec<i64> = events
        .iter()
        .filter(|e| e["dir"] == "recv" && e["body"]["event"] == "intfSensed")
        .filter_map(|e| e["body"]["result"].as_i64())
        .collect();
    let steered = |method: &str| {
        events
            .iter()
            .filter(|e| e["dir"] == "sent" && e["body"]["call"]["method"] == method)
            .count()
    };
    let (up, down) = (steered("increaseTraffic"), steered("reduceTraffic"));
    let counted = magi(&[
        "data",
        "query",
        &records.join("fb").to_string_lossy(),
        "--agent",
        "monitor_agent",
        "--json",
        "--where",
        "peerNode=rs",
        "--where",
        "trafficDirection=in",
    ]);
    let mut readings: Vec<(f64, u64)> = String::from_utf8_lossy(&counted.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| Some((r["created"].as_f64()?, r["data"]["bytes"].as_u64()?)))
        .collect();
    readings.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bytes: Vec<u64> = readings.iter().map(|r| r.1).collect();
    let (inside, settled) = in_band_once_settled(&bytes);
    eprintln!(
        "feedback: sense answered {sensed:?}; steered up {up}, down {down}; intervals (bytes) {bytes:?}; \
         {inside} of {settled} intervals inside the band once settled"
    );
    assert!(
        sensed.iter().any(|&r| r != 0) || inside > 0,
        "sense never saw the traffic: {sensed:?}"
    );
    assert!(sensed.iter().all(|r| [-1, 0, 1].contains(r)), "{sensed:?}");
    assert!(
        (up >= 1 && down >= 1) || (settled >= 3 && inside * 2 >= settled),
        "the loop neither steered both ways nor settled in the band: up {up}, down {down}, {inside} of {settled} in the band"
    );
}

#[test]
fn intervals_are_counted_in_the_band_from_the_first_inside_it() {
    assert_eq!(
        in_band_once_settled(&[0, 9_000_000, 10_200_000, 10_500_000, 10_300_000]),
        (2, 3)
    );
    assert_eq!(in_band_once_settled(&[0, 11_000_000]), (0, 0));
}
