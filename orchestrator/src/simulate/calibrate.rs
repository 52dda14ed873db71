//! Latencies measured in a run record, so that a simulation answers as the testbed did:
//! for every call, the time from sending it to the last reply it caused (matched by the
//! reply's trigger name and, for setup and teardown, its group or agent), and per method
//! the median over its calls.

use std::collections::BTreeMap;

use magi_proto::method;
use serde_json::Value;

use crate::recorded::RecordedEvent;

/// The trigger a call's replies carry, and the argument that names what they answer.
fn reply_of(call: &Value) -> Option<(String, Option<(&'static str, String)>)> {
    let arg = |k: &str| call["args"][k].as_str().unwrap_or_default().to_string();
    let daemon = call["dock"] == magi_proto::DAEMON_DOCK;
    let m = call["method"].as_str()?;
    Some(match m {
        method::JOIN_GROUP if daemon => (
            magi_proto::GROUP_BUILD_DONE.into(),
            Some(("group", arg("group"))),
        ),
        method::LEAVE_GROUP if daemon => (
            magi_proto::GROUP_TEARDOWN_DONE.into(),
            Some(("group", arg("group"))),
        ),
        method::LOAD_AGENT if daemon => (
            magi_proto::AGENT_LOAD_DONE.into(),
            Some(("agent", arg("name"))),
        ),
        method::UNLOAD_AGENT if daemon => (
            magi_proto::AGENT_UNLOAD_DONE.into(),
            Some(("agent", arg("name"))),
        ),
        _ => (call["trigger"].as_str()?.to_string(), None),
    })
}

/// Median reply latency in ms per method, from a record's events.
pub fn latencies(events: &[RecordedEvent]) -> BTreeMap<String, u64> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if e.dir != "sent" || e.kind != "call" {
            continue;
        }
        let call = &e.body["call"];
        let (Some(m), Some((event, key))) = (call["method"].as_str(), reply_of(call)) else {
            continue;
        };
        let answers = |r: &&RecordedEvent| {
            r.dir == "recv"
                && r.body["event"] == event.as_str()
                && key.as_ref().is_none_or(|(k, v)| r.body[*k] == v.as_str())
                // A reply that names its call must name this one.
                && r.body["call"].as_u64().is_none_or(|seq| call["seq"].as_u64() == Some(seq))
        };
        // The replies up to the next call of the same kind (which would clear them).
        let next = events[i + 1..]
            .iter()
            .position(|x| x.dir == "sent" && reply_of(&x.body["call"]) == reply_of(call))
            .map_or(events.len(), |p| i + 1 + p);
        let last = events[i + 1..next]
            .iter()
            .filter(answers)
            .map(|r| r.time)
            .reduce(f64::max);
        if let Some(t) = last {
            samples
                .entry(m.to_string())
                .or_default()
                .push((t - e.time).max(0.0) * 1000.0);
        }
    }
    samples
        .into_iter()
        .map(|(m, mut v)| {
            v.sort_by(f64::total_cmp);
            (m, v[v.len() / 2].round() as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(time: f64, dir: &str, body: Value) -> RecordedEvent {
        let kind = if dir == "sent" { "call" } else { "trigger" };
        RecordedEvent {
            time,
            dir: dir.into(),
            kind: kind.into(),
            body,
        }
    }

    #[test]
    fn a_method_latency_is_the_median_time_to_its_last_reply() {
        let load = |t: f64, name: &str| {
            ev(
                t,
                "sent",
                json!({"call": {"dock": "daemon", "method": "loadAgent", "args": {"name": name}}}),
            )
        };
        let done = |t: f64, name: &str| {
            ev(
                t,
                "recv",
                json!({"event": "AgentLoadDone", "agent": name, "nodes": ["n"]}),
            )
        };
        let start = |t: f64| {
            ev(
                t,
                "sent",
                json!({"call": {"dock": "a", "method": "start", "trigger": "started", "args": {}}}),
            )
        };
        let started = |t: f64| ev(t, "recv", json!({"event": "started", "nodes": ["n"]}));
        let events = [
            load(0.0, "a"),
            load(0.0, "b"),
            done(0.5, "b"),
            done(2.0, "a"),
            start(10.0),
            started(10.1),
            started(10.3),
            start(20.0),
            started(20.2),
        ];
        let l = latencies(&events);
        assert_eq!(
            l["loadAgent"], 2000,
            "a: 2 s, b: 0.5 s, median of two is the larger"
        );
        assert_eq!(
            l["start"], 300,
            "the last reply before the next start counts"
        );
    }
}
