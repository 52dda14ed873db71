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

/// A step whose time or text differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepChange {
    /// The stream.
    pub stream: String,
    /// 1-based index of the line within the stream.
    pub index: usize,
    /// The line's tag.
    pub tag: String,
    /// The line's text in A (and in B when it changed).
    pub text_a: String,
    /// The text in B.
    pub text_b: String,
    /// Seconds the step took in A.
    pub secs_a: f64,
    /// Seconds in B.
    pub secs_b: f64,
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
        for (i, ((la, ta), (lb, tb))) in sa.iter().zip(sb).enumerate() {
            if (tb - ta).abs() >= threshold || la.line.text != lb.line.text {
                steps.push(StepChange {
                    stream: stream.clone(),
                    index: i + 1,
                    tag: la.line.tag.as_str().to_string(),
                    text_a: la.line.text.clone(),
                    text_b: lb.line.text.clone(),
                    secs_a: *ta,
                    secs_b: *tb,
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
        let text = if s.text_a == s.text_b {
            s.text_a.clone()
        } else {
            format!("{} / {}", s.text_a, s.text_b)
        };
        out.push(format!(
            "step {} #{} {}: {:.2} s / {:.2} s ({:+.2} s): {text}",
            s.stream,
            s.index,
            s.tag,
            s.secs_a,
            s.secs_b,
            s.secs_b - s.secs_a
        ));
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
        assert!((d.steps[0].secs_b - d.steps[0].secs_a - 3.0).abs() < 1e-9);
        assert!(d.procedure.is_none() && d.outcome.is_none());
        let text = render(&d);
        assert!(text.contains("parameter wait: 1000 / 4000"), "{text}");
    }
}
