//! The simulator on the case studies and on procedures written to go wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use magi_engine::display::Tag;

fn shared() -> PathBuf {
    std::env::var_os("MAGI_SHARED")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn procedure(text: &str) -> Arc<Procedure> {
    let checked = magi_aal::check_str("sim.aal", text);
    match checked.procedure.clone() {
        Some(p) => Arc::new(p),
        None => panic!("{}", checked.render(false)),
    }
}

fn case_study(name: &str) -> Arc<Procedure> {
    let path = shared().join("casestudies").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    procedure(&text)
}

const CLIENT_SERVER_HEAD: &str = "
groups: {client_group: [clientnode], server_group: [servernode]}
agents:
  client_agent: {group: client_group, path: /x/http_client.tar.gz, execargs: {}}
  server_agent: {group: server_group, path: /x/apache.tar.gz, execargs: {}}
";

#[test]
fn the_client_server_case_study_is_predicted_to_last_its_60_second_timeout() {
    let sim = simulate(
        case_study("casestudy_clientserver.aal"),
        &SimConfig::default(),
    );
    assert_eq!(
        sim.end,
        End::Finished {
            outcome: Outcome::Success
        }
    );
    assert!((60_000..60_100).contains(&sim.end_ms), "{}", sim.end_ms);
    assert!(sim.analysis.is_clean(), "{}", sim.analysis.render());
    let last = sim.lines.last().expect("lines");
    assert_eq!((last.stream.as_str(), last.tag), ("exit", Tag::Done));
}

#[test]
fn the_feedback_case_study_runs_its_300_seconds_in_well_under_a_second() {
    let started = std::time::Instant::now();
    let sim = simulate(case_study("casestudy_feedback.aal"), &SimConfig::default());
    assert!(
        started.elapsed().as_millis() < 1000,
        "{:?}",
        started.elapsed()
    );
    assert!((300_000..301_000).contains(&sim.end_ms), "{}", sim.end_ms);
    // Without a `result` in sense's replies, the control loop's wait cannot complete.
    let open = &sim.analysis.open_waits;
    assert_eq!(open.len(), 1, "{}", sim.analysis.render());
    assert_eq!(open[0].stream, "controlLoop");
    assert!(
        open[0].reasons[0].contains("result"),
        "{:?}",
        open[0].reasons
    );
}

#[test]
fn a_reply_given_for_a_method_completes_the_waits_that_match_it() {
    let mut config = SimConfig::default();
    config
        .replies
        .insert("sense".into(), serde_json::json!({"result": 0}));
    let sim = simulate(case_study("casestudy_feedback.aal"), &config);
    assert!(
        sim.analysis.open_waits.is_empty(),
        "{}",
        sim.analysis.render()
    );
    let senses = sim
        .lines
        .iter()
        .filter(|l| l.text.starts_with("sense("))
        .count();
    assert!(senses > 100, "the control loop ran {senses} times");
}

#[test]
fn a_wait_on_a_trigger_nothing_emits_is_named_with_the_waits_behind_it() {
    let p = procedure(&format!(
        "{CLIENT_SERVER_HEAD}
streamstarts: [serverstream, cleanup]
eventstreams:
  serverstream:
    - {{type: event, agent: server_agent, method: startServer, trigger: serverStarted, args: {{}}}}
    - type: trigger
      triggers: [{{event: clientStoped}}]
    - {{type: event, agent: server_agent, method: stopServer, trigger: serverStopped, args: {{}}}}
    - type: trigger
      triggers: [{{event: serverStopped}}]
  cleanup:
    - type: trigger
      triggers: [{{event: serverStopped, target: exit}}]
  orphan:
    - {{type: event, agent: client_agent, method: startClient, args: {{}}}}
"
    ));
    let sim = simulate(p, &SimConfig::default());
    assert_eq!(sim.end, End::Stuck);
    let open: Vec<(&str, &str)> = sim
        .analysis
        .open_waits
        .iter()
        .map(|w| (w.stream.as_str(), w.reasons[0].as_str()))
        .collect();
    assert_eq!(open.len(), 2, "{open:?}");
    assert_eq!(open[0].0, "cleanup");
    assert!(open[0].1.contains("never ran"), "{}", open[0].1);
    assert_eq!(open[1].0, "serverstream");
    assert!(open[1]
        .1
        .contains("nothing in the procedure emits `clientStoped`"));
    assert_eq!(sim.analysis.open_waits[1].span.line, 11);
    assert_eq!(
        sim.analysis.unreached_waits,
        [("serverstream".to_string(), "sim.aal:14".to_string())]
    );
    assert_eq!(
        sim.analysis.never_run,
        [("orphan".to_string(), "sim.aal:19".to_string())]
    );
}

#[test]
fn latency_set_for_a_method_lengthens_the_run_by_that_much() {
    let base = simulate(
        case_study("casestudy_clientserver.aal"),
        &SimConfig::default(),
    );
    let p = case_study("casestudy_clientserver.aal");
    let mut config = SimConfig::default();
    config
        .latencies
        .push((Selector::parse("loadAgent", &p), 2_000));
    let slow = simulate(p, &config);
    assert_eq!(slow.end_ms - base.end_ms, 2_000 - config.latency_ms);
}

#[test]
fn latency_for_a_group_and_method_beats_one_for_the_method_alone() {
    let p = case_study("casestudy_clientserver.aal");
    let mut config = SimConfig::default();
    config
        .latencies
        .push((Selector::parse("stopServer", &p), 100));
    config
        .latencies
        .push((Selector::parse("server_group.stopServer", &p), 1_000));
    let sim = simulate(p, &config);
    let base = simulate(
        case_study("casestudy_clientserver.aal"),
        &SimConfig::default(),
    );
    assert_eq!(sim.end_ms - base.end_ms, 1_000 - config.latency_ms);
}

#[test]
fn a_method_that_always_fails_ends_the_run_as_an_agent_failure() {
    let p = case_study("casestudy_clientserver.aal");
    let mut config = SimConfig::default();
    config
        .failures
        .push((Selector::parse("startServer", &p), 1.0));
    let sim = simulate(p, &config);
    match sim.end {
        End::Finished {
            outcome: Outcome::Failed { kind, .. },
        } => assert_eq!(kind, magi_engine::FailureKind::Agent),
        other => panic!("{other:?}"),
    }
    assert!(sim.end_ms < 1_000, "{}", sim.end_ms);
}

#[test]
fn a_loop_without_time_passing_is_reported_not_hung() {
    let p = procedure(&format!(
        "{CLIENT_SERVER_HEAD}
streamstarts: [spin]
eventstreams:
  spin:
    - type: trigger
      triggers: [{{timeout: 0, target: spin}}]
"
    ));
    let sim = simulate(p, &SimConfig::default());
    assert_eq!(sim.end, End::Spinning);
}
