//! A procedure of 10,000 events checks correctly (timing is the benchmark's job:
//! `cargo bench -p magi-aal`).

mod support {
    pub mod generate;
}

use magi_aal::{check_str, Entry, Trigger};

#[test]
fn ten_thousand_events_check_and_resolve() {
    let text = support::generate::procedure(100, 100);
    let checked = check_str("generated.aal", &text);
    assert!(checked.diagnostics.is_empty(), "{}", checked.render(false));
    let p = checked.procedure.expect("valid");
    let events = p
        .streams
        .iter()
        .flat_map(|s| &s.entries)
        .filter(|e| matches!(e, Entry::Event(_)))
        .count();
    assert_eq!(events, 10_000);
    match &p.streams[99].entries[10] {
        Entry::Wait(w) => match &w.triggers[0] {
            Trigger::Event(e) => {
                assert_eq!(e.event, "t99_9");
                assert_eq!(
                    (e.nodes.len(), e.nodes[0].as_str(), e.count),
                    (20, "n49_0", 20)
                );
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// 100,000 warnings are rendered in linear time: each file's lines are indexed once (it
/// used to split the file once per diagnostic, 31 s for 80,000 warnings). The bound is
/// loose on purpose: linear rendering takes a fraction of it even in a debug build, the
/// quadratic one took minutes.
#[test]
fn a_hundred_thousand_warnings_render_in_under_a_second() {
    let mut text = String::from(
        "groups: {g: [n1]}\nagents: {a: {group: g, path: /x, execargs: {}}}\n\
         streamstarts: [s]\neventstreams:\n  s:\n    - {type: event, agent: a, method: m, args: {}}\nnotes:\n",
    );
    for i in 0..100_000 {
        text.push_str(&format!("  - !tag v{i}\n"));
    }
    let checked = check_str("many.aal", &text);
    assert!(checked.is_ok(), "{}", checked.errors());
    assert!(checked.warnings() >= 100_000);
    let started = std::time::Instant::now();
    let report = checked.render(false);
    let took = started.elapsed();
    assert_eq!(
        report.matches("warning: the tag `!tag` is ignored").count(),
        100_000
    );
    assert!(
        report.contains("100007 |   - !tag v99999\n"),
        "the last line is shown"
    );
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
}
