//! `magi diff RUN_A RUN_B`: what differs between two runs: the procedure's and the agent
//! archives' hashes, the parameters, the outcome, the steps that took longer or shorter
//! (or whose text changed), and which triggers came from which nodes.
//!
//! Steps are matched stream by stream, in order (the n-th line of stream S in A against the
//! n-th in B). A step's time is the time since the stream's previous line, or, for a
//! stream's first line, since the console line before it (so setup time is not charged to
//! the first step of every stream).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::recorded::{value_text, ConsoleLine, RecordedRun};

/// Arguments of `magi diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The first run: a name under --record-dir, or a record directory.
    pub run_a: String,
    /// The second run.
    pub run_b: String,
    /// Where run records are.
    #[arg(long, default_value = "magi-runs", env = "MAGI_RECORD_DIR")]
    pub record_dir: PathBuf,
    /// A step is reported when its time changed by at least this many seconds.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// The differences as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// A value in A and in B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What differs (a parameter, an agent, a stream step).
    pub what: String,
    /// In run A.
    pub a: String,
    /// In run B.
    pub b: String,
}

/// A step whose time or text differs, or that only one run has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepChange {
    /// The stream.
    pub stream: String,
    /// 1-based index of the line within the stream (in A, or in B for a line only B has).
    pub index: usize,
    /// The line's tag.
    pub tag: String,
    /// The line's text in A (`None`: only B has the step).
    pub text_a: Option<String>,
    /// The text in B (`None`: only A has the step).
    pub text_b: Option<String>,
    /// Seconds the step took in A.
    pub secs_a: Option<f64>,
    /// Seconds in B.
    pub secs_b: Option<f64>,
}

/// Most lines `align` compares with a longest common subsequence (beyond: by position).
const ALIGN_LIMIT: usize = 4_000_000;

/// Pairs the lines of one stream in A and in B: equal lines (tag and text) by a longest
/// common subsequence, then, between two equal lines, lines of the same tag in order (a
/// step whose text changed, e.g. a timeout set by a parameter); the rest stand alone.
fn align(
    a: &[(&ConsoleLine, f64)],
    b: &[(&ConsoleLine, f64)],
) -> Vec<(Option<usize>, Option<usize>)> {
    let key = |l: &ConsoleLine| (l.line.tag, l.line.text.clone());
    let (n, m) = (a.len(), b.len());
    let mut anchors = Vec::new();
    if n.saturating_mul(m) <= ALIGN_LIMIT {
        let mut dp = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                dp[i][j] = if key(a[i].0) == key(b[j].0) {
                    dp[i + 1][j + 1] + 1
                } else {
                    dp[i + 1][j].max(dp[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if key(a[i].0) == key(b[j].0) {
                anchors.push((i, j));
                i += 1;
                j += 1;
            } else if dp[i + 1][j] >= dp[i][j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    let mut pairs = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (ai, bj) in anchors.into_iter().chain([(n, m)]) {
        // The gap a[i..ai] / b[j..bj]: same tags paired in order.
        let mut next_b = j;
        for (x, (line, _)) in a.iter().enumerate().take(ai).skip(i) {
            let found = (next_b..bj).find(|&y| line.line.tag == b[y].0.line.tag);
            match found {
                Some(y) => {
                    pairs.extend((next_b..y).map(|z| (None, Some(z))));
                    pairs.push((Some(x), Some(y)));
                    next_b = y + 1;
                }
                None => pairs.push((Some(x), None)),
            }
        }
        pairs.extend((next_b..bj).map(|z| (None, Some(z))));
        if ai < n && bj < m {
            pairs.push((Some(ai), Some(bj)));
        }
        (i, j) = (ai + 1, bj + 1);
    }
    pairs
}

/// Everything that differs between two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDiff {
    /// The two runs' names.
    pub runs: (String, String),
    /// The procedure's hash, when it differs.
    pub procedure: Option<Change>,
    /// Agent archives whose hash differs (or that only one run loaded).
    pub archives: Vec<Change>,
    /// Parameters whose values differ.
    pub parameters: Vec<Change>,
    /// The outcome, when it differs.
    pub outcome: Option<Change>,
    /// Durations of the whole runs, in seconds.
    pub durations: (Option<f64>, Option<f64>),
    /// Steps whose time changed by at least the threshold, or whose text changed.
    pub steps: Vec<StepChange>,
    /// Streams with a different number of lines: (stream, lines in A, lines in B).
    pub stream_lengths: Vec<(String, usize, usize)>,
    /// Triggers that came from different nodes: trigger → (nodes in A, nodes in B).
    pub triggers: Vec<Change>,
}

fn change(what: &str, a: String, b: String) -> Option<Change> {
    (a != b).then(|| Change {
        what: what.to_string(),
        a,
        b,
    })
}

/// Changes between two maps: keys in either, values as text (`-` when absent).
fn map_changes(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<Change> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let text = |m: &BTreeMap<String, String>, k: &String| m.get(k).cloned().unwrap_or("-".into());
    keys.into_iter()
        .filter_map(|k| change(k, text(a, k), text(b, k)))
        .collect()
}

/// Each stream's lines with the seconds each took.
fn timed_steps(console: &[ConsoleLine]) -> BTreeMap<String, Vec<(&ConsoleLine, f64)>> {
    let mut last_of: BTreeMap<&str, f64> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(&ConsoleLine, f64)>> = BTreeMap::new();
    let mut previous = console.first().map(|l| l.time).unwrap_or(0.0);
    for l in console {
        let since = last_of
            .get(l.line.stream.as_str())
            .copied()
            .unwrap_or(previous);
        out.entry(l.line.stream.clone())
            .or_default()
            .push((l, l.time - since));
        last_of.insert(&l.line.stream, l.time);
        previous = l.time;
    }
    out
}

fn trigger_nodes(run: &RecordedRun) -> Result<BTreeMap<String, String>, String> {
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, event, nodes) in run.triggers().map_err(|e| e.to_string())? {
        by.entry(event).or_default().extend(nodes);
    }
    Ok(by
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(",")))
        .collect())
}

/// Compares two runs.
pub fn compare(a: &RecordedRun, b: &RecordedRun, threshold: f64) -> Result<RunDiff, String> {
    let params = |r: &RecordedRun| -> BTreeMap<String, String> {
        r.parameters()
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect()
    };
    let archives =
        |r: &RecordedRun| -> BTreeMap<String, String> { r.archives().into_iter().collect() };
    let outcome = |r: &RecordedRun| {
        let code = r
            .exit_code()
            .map(|c| format!(" (exit {c})"))
            .unwrap_or_default();
        match r.message() {
            Some(m) => format!("{}{code}: {m}", r.outcome()),
            None => format!("{}{code}", r.outcome()),
        }
    };
    let console_a = a.console().map_err(|e| e.to_string())?;
    let console_b = b.console().map_err(|e| e.to_string())?;
    let (steps_a, steps_b) = (timed_steps(&console_a), timed_steps(&console_b));
    let mut steps = Vec::new();
    let mut stream_lengths = Vec::new();
    let streams: BTreeSet<&String> = steps_a.keys().chain(steps_b.keys()).collect();
    let empty = Vec::new();
    for stream in streams {
        let sa = steps_a.get(stream).unwrap_or(&empty);
        let sb = steps_b.get(stream).unwrap_or(&empty);
        if sa.len() != sb.len() {
            stream_lengths.push((stream.clone(), sa.len(), sb.len()));
        }
        for (x, y) in align(sa, sb) {
            let (la, lb) = (x.map(|x| sa[x]), y.map(|y| sb[y]));
            let changed = match (la, lb) {
                (Some((la, ta)), Some((lb, tb))) => {
                    (tb - ta).abs() >= threshold || la.line.text != lb.line.text
                }
                _ => true,
            };
            let Some(line) = la.or(lb).map(|(l, _)| l) else {
                continue;
            };
            if changed {
                steps.push(StepChange {
                    stream: stream.clone(),
                    index: x.or(y).unwrap_or(0) + 1,
                    tag: line.line.tag.as_str().to_string(),
                    text_a: la.map(|(l, _)| l.line.text.clone()),
                    text_b: lb.map(|(l, _)| l.line.text.clone()),
                    secs_a: la.map(|(_, t)| t),
                    secs_b: lb.map(|(_, t)| t),
                });
            }
        }
    }
    Ok(RunDiff {
        runs: (a.name().to_string(), b.name().to_string()),
        procedure: change(
            "procedure",
            a.procedure_hash().to_string(),
            b.procedure_hash().to_string(),
        ),
        archives: map_changes(&archives(a), &archives(b)),
        parameters: map_changes(&params(a), &params(b)),
        outcome: change("outcome", outcome(a), outcome(b)),
        durations: (a.duration(), b.duration()),
        steps,
        stream_lengths,
        triggers: map_changes(&trigger_nodes(a)?, &trigger_nodes(b)?),
    })
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// The differences as text, one section per kind.
pub fn render(d: &RunDiff) -> String {
    let mut out = vec![format!("A: {}\nB: {}", d.runs.0, d.runs.1)];
    out.push(match &d.procedure {
        Some(c) => format!("procedure: differs ({} / {})", short(&c.a), short(&c.b)),
        None => "procedure: same".into(),
    });
    if d.archives.is_empty() {
        out.push("agent archives: same".into());
    }
    for c in &d.archives {
        out.push(format!(
            "agent archive {}: {} / {}",
            c.what,
            short(&c.a),
            short(&c.b)
        ));
    }
    if d.parameters.is_empty() {
        out.push("parameters: same".into());
    }
    for c in &d.parameters {
        out.push(format!("parameter {}: {} / {}", c.what, c.a, c.b));
    }
    out.push(match &d.outcome {
        Some(c) => format!("outcome: {} / {}", c.a, c.b),
        None => "outcome: same".into(),
    });
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.1} s")).unwrap_or("-".into());
    out.push(format!(
        "duration: {} / {}",
        secs(d.durations.0),
        secs(d.durations.1)
    ));
    if d.steps.is_empty() && d.stream_lengths.is_empty() {
        out.push("steps: same".into());
    }
    for s in &d.steps {
        let head = format!("step {} #{} {}", s.stream, s.index, s.tag);
        out.push(match (&s.text_a, &s.text_b, s.secs_a, s.secs_b) {
            (Some(ta), Some(tb), Some(a), Some(b)) => {
                let text = if ta == tb {
                    ta.clone()
                } else {
                    format!("{ta} / {tb}")
                };
                format!("{head}: {a:.2} s / {b:.2} s ({:+.2} s): {text}", b - a)
            }
            (Some(ta), None, ..) => format!("{head}: only in A: {ta}"),
            (_, Some(tb), ..) => format!("{head}: only in B: {tb}"),
            _ => head,
        });
    }
    for (stream, a, b) in &d.stream_lengths {
        out.push(format!("stream {stream}: {a} lines / {b} lines"));
    }
    if d.triggers.is_empty() {
        out.push("triggers: same, from the same nodes".into());
    }
    for c in &d.triggers {
        out.push(format!("trigger {} from: {} / {}", c.what, c.a, c.b));
    }
    out.join("\n")
}

/// Runs `magi diff`; returns 0 when the runs are alike, 1 when they differ, 2 on an error
/// (as `diff(1)` does).
pub fn run(args: DiffArgs) -> i32 {
    let read = |r: &str| RecordedRun::find(r, &args.record_dir);
    let (a, b) = match (read(&args.run_a), read(&args.run_b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let d = match compare(&a, &b, args.threshold) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if args.json {
        println!("{}", serde_json::to_value(&d).unwrap_or(Value::Null));
    } else {
        println!("{}", render(&d));
    }
    let alike = d.procedure.is_none()
        && d.archives.is_empty()
        && d.parameters.is_empty()
        && d.outcome.is_none()
        && d.steps.is_empty()
        && d.stream_lengths.is_empty()
        && d.triggers.is_empty();
    if alike {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(
        dir: &std::path::Path,
        name: &str,
        params: Value,
        console: &[(f64, &str, &str, &str)],
    ) -> RecordedRun {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("run.json"),
            json!({"run": name, "started": 0.0, "ended": 10.0, "parameters": params,
                   "outcome": {"outcome": "success"}, "procedure": {"sha256": "aa"}})
            .to_string(),
        )
        .unwrap();
        let lines: Vec<String> = console
            .iter()
            .map(|(t, s, tag, text)| {
                json!({"time": t, "stream": s, "tag": tag, "text": text}).to_string()
            })
            .collect();
        std::fs::write(d.join("console.jsonl"), lines.join("\n")).unwrap();
        RecordedRun::read(&d).unwrap()
    }

    #[test]
    fn diff_names_the_changed_parameter_and_the_step_that_took_longer() {
        let tmp = tempfile::tempdir().unwrap();
        let a = record(
            tmp.path(),
            "a",
            json!({"wait": 1000, "rate": 2}),
            &[
                (1.0, "main", "sent", "go() --> g"),
                (2.0, "main", "trig", "trigger completed: timeout: 1s"),
                (2.1, "main", "DONE", "complete."),
            ],
        );
        let b = record(
            tmp.path(),
            "b",
            json!({"wait": 4000, "rate": 2}),
            &[
                (1.0, "main", "sent", "go() --> g"),
                (5.0, "main", "trig", "trigger completed: timeout: 4s"),
                (5.1, "main", "DONE", "complete."),
            ],
        );
        let d = compare(&a, &b, 0.5).unwrap();
        let names: Vec<&str> = d.parameters.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(names, ["wait"]);
        assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
        assert_eq!((d.steps[0].stream.as_str(), d.steps[0].index), ("main", 2));
        let (a_secs, b_secs) = (d.steps[0].secs_a.unwrap(), d.steps[0].secs_b.unwrap());
        assert!((b_secs - a_secs - 3.0).abs() < 1e-9);
        assert!(d.procedure.is_none() && d.outcome.is_none());
        let text = render(&d);
        assert!(text.contains("parameter wait: 1000 / 4000"), "{text}");
    }

    #[test]
    fn a_step_inserted_in_one_run_is_named_alone_and_the_rest_still_pair_up() {
        let tmp = tempfile::tempdir().unwrap();
        let a = record(
            tmp.path(),
            "a",
            json!({}),
            &[
                (1.0, "init", "sent", "joinGroup g1 --> __ALL__"),
                (1.1, "init", "trig", "GroupBuildDone g1"),
                (1.2, "init", "DONE", "complete."),
            ],
        );
        let b = record(
            tmp.path(),
            "b",
            json!({}),
            &[
                (1.0, "init", "sent", "joinGroup g1 --> __ALL__"),
                (1.0, "init", "sent", "joinGroup g2 --> __ALL__"),
                (1.1, "init", "trig", "GroupBuildDone g1"),
                (1.2, "init", "DONE", "complete."),
            ],
        );
        let d = compare(&a, &b, 0.5).unwrap();
        assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
        assert_eq!(d.steps[0].text_a, None);
        assert_eq!(
            d.steps[0].text_b.as_deref(),
            Some("joinGroup g2 --> __ALL__")
        );
        assert!(render(&d).contains("only in B: joinGroup g2"));
    }
}
