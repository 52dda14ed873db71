//! A generated procedure of a given size, for the scale test and the benchmark.

/// `streams` streams of `per_stream` events each, a wait after every tenth event, over 50
/// groups of 20 nodes (one agent per group). Every wait is on a trigger an event emits.
pub fn procedure(streams: usize, per_stream: usize) -> String {
    use std::fmt::Write as _;
    let groups = 50;
    let mut out = String::from("groups:\n");
    for g in 0..groups {
        let nodes: Vec<String> = (0..20).map(|i| format!("n{g}_{i}")).collect();
        let _ = writeln!(out, "  g{g}: [{}]", nodes.join(", "));
    }
    out.push_str("agents:\n");
    for g in 0..groups {
        let _ = writeln!(
            out,
            "  a{g}:\n    group: g{g}\n    path: /modules/a{g}.tar.gz\n    execargs: {{k: {g}}}"
        );
    }
    let names: Vec<String> = (0..streams).map(|s| format!("s{s}")).collect();
    let _ = writeln!(out, "streamstarts: [{}]\neventstreams:", names.join(", "));
    for s in 0..streams {
        let _ = writeln!(out, "  s{s}:");
        for i in 0..per_stream {
            let waits = i % 10 == 9;
            let _ = writeln!(
                out,
                "    - type: event\n      agent: a{}\n      method: m{i}",
                s % groups
            );
            if waits {
                let _ = writeln!(out, "      trigger: t{s}_{i}");
            }
            let _ = writeln!(out, "      args: {{x: {i}, y: 'v{i}'}}");
            if waits {
                let _ = writeln!(
                    out,
                    "    - type: trigger\n      triggers: [ {{event: t{s}_{i}}}, {{timeout: 5000, target: exit}} ]"
                );
            }
        }
    }
    out
}
