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
