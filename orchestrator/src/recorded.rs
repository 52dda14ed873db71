//! Run records read back: the one place that knows how to read what [`crate::record`]
//! writes (`run.json`, `console.jsonl`, `events.jsonl`). `magi runs`, `replay`, `diff`,
//! `sweep` and `export` all read records through here.

use std::fmt;
use std::path::{Path, PathBuf};

use magi_engine::display::{Line, Tag};
use magi_proto::Object;
use serde_json::Value;

/// Why a record cannot be read.
#[derive(Debug)]
pub enum RecordError {
    /// No record by that name or path.
    NotFound(String),
    /// A file of the record cannot be read.
    Io(PathBuf, std::io::Error),
    /// A file of the record is not what `magi run` writes.
    Malformed(PathBuf, String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotFound(what) => write!(f, "no run record {what}"),
            RecordError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            RecordError::Malformed(p, why) => {
                write!(f, "{} is not a run record: {why}", p.display())
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// One run record directory and its `run.json`.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    /// The record's directory.
    pub dir: PathBuf,
    /// `run.json` as written.
    pub summary: Value,
}

/// A console line of a record: the engine's line and the wall-clock time it was shown.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleLine {
    /// Seconds since the epoch.
    pub time: f64,
    /// The line.
    pub line: Line,
}

/// An event sent or a trigger received, from `events.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Seconds since the epoch.
    pub time: f64,
    /// `sent` or `recv`.
    pub dir: String,
    /// `call` or `trigger`.
    pub kind: String,
    /// The call (`{dest, call}`) or the trigger as on the wire.
    pub body: Value,
}

/// The tag a record stores (`"sent"`, `"DONE"`, ...) back as a [`Tag`].
pub fn tag_of(text: &str) -> Option<Tag> {
    [
        Tag::Sent,
        Tag::Trig,
        Tag::Done,
        Tag::Jump,
        Tag::Exit,
        Tag::Warn,
        Tag::Wait,
    ]
    .into_iter()
    .find(|t| t.as_str() == text)
}

fn read_text(path: &Path) -> Result<String, RecordError> {
    std::fs::read_to_string(path).map_err(|e| RecordError::Io(path.to_path_buf(), e))
}

/// Reads a JSON-lines file; a torn last line (a run killed mid-write) is skipped.
fn json_lines(path: &Path) -> Result<Vec<Value>, RecordError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RecordError::Io(path.to_path_buf(), e)),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str(l) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(RecordError::Malformed(
                    path.to_path_buf(),
                    format!("line {}: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

impl RecordedRun {
    /// Reads the record in `dir`.
    pub fn read(dir: &Path) -> Result<RecordedRun, RecordError> {
        let file = dir.join("run.json");
        if !file.is_file() {
            return Err(RecordError::NotFound(format!("in {}", dir.display())));
        }
        let summary: Value = serde_json::from_str(&read_text(&file)?)
            .map_err(|e| RecordError::Malformed(file.clone(), e.to_string()))?;
        if !summary.is_object() || summary["run"].as_str().is_none() {
            return Err(RecordError::Malformed(file, "it has no `run` name".into()));
        }
        Ok(RecordedRun {
            dir: dir.to_path_buf(),
            summary,
        })
    }

    /// Finds a run given as a record directory path or as a name under `record_dir`.
    pub fn find(run: &str, record_dir: &Path) -> Result<RecordedRun, RecordError> {
        let as_path = Path::new(run);
        if as_path.join("run.json").is_file() {
            return RecordedRun::read(as_path);
        }
        let under = record_dir.join(run);
        if under.join("run.json").is_file() {
            return RecordedRun::read(&under);
        }
        let near: Vec<String> = list(record_dir)
            .0
            .into_iter()
            .map(|r| r.name().to_string())
            .filter(|n| n.contains(run))
            .take(5)
            .collect();
        let hint = if near.is_empty() {
            String::new()
        } else {
            format!("; runs with that in their name: {}", near.join(", "))
        };
        Err(RecordError::NotFound(format!(
            "`{run}` (neither a record directory nor a run in {}){hint}",
            record_dir.display()
        )))
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        self.summary["run"].as_str().unwrap_or("?")
    }

    /// When the record was created (seconds since the epoch).
    pub fn started(&self) -> Option<f64> {
        self.summary["started"].as_f64()
    }

    /// When the run ended, if it did.
    pub fn ended(&self) -> Option<f64> {
        self.summary["ended"].as_f64()
    }

    /// How long the run took, in seconds.
    pub fn duration(&self) -> Option<f64> {
        Some(self.ended()? - self.started()?)
    }

    /// `success`, `failed`, `interrupted`, or `unfinished` (no outcome written: the run
    /// is going on, or was killed).
    pub fn outcome(&self) -> &str {
        self.summary["outcome"]["outcome"]
            .as_str()
            .unwrap_or("unfinished")
    }

    /// Whether the run got to its end (whatever the outcome).
    pub fn is_finished(&self) -> bool {
        self.summary["outcome"].is_object()
    }

    /// The failure message, if the run failed.
    pub fn message(&self) -> Option<&str> {
        self.summary["outcome"]["message"].as_str()
    }

    /// The exit code `magi run` returned.
    pub fn exit_code(&self) -> Option<i64> {
        self.summary["exit_code"].as_i64()
    }

    /// SHA-256 of the procedure's text.
    pub fn procedure_hash(&self) -> &str {
        self.summary["procedure"]["sha256"].as_str().unwrap_or("")
    }

    /// The procedure files as stored in the record: (path as given, stored file).
    pub fn procedure_files(&self) -> Vec<(String, PathBuf)> {
        self.summary["procedure"]["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| {
                        let stored = f["stored"].as_str()?;
                        // Only a plain relative path inside the record is followed.
                        let safe = Path::new(stored)
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)));
                        safe.then(|| {
                            (
                                f["path"].as_str().unwrap_or(stored).to_string(),
                                self.dir.join(stored),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Each loaded agent's archive: (agent, sha256).
    pub fn archives(&self) -> Vec<(String, String)> {
        self.summary["archives"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|a| {
                        (
                            a["agent"].as_str().unwrap_or("?").to_string(),
                            a["sha256"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The parameter values the run used (empty for a procedure without parameters).
    pub fn parameters(&self) -> Object {
        self.summary["parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// The console lines, in order.
    pub fn console(&self) -> Result<Vec<ConsoleLine>, RecordError> {
        let path = self.dir.join("console.jsonl");
        json_lines(&path)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let bad = |what: &str| {
                    RecordError::Malformed(path.clone(), format!("line {}: {what}", i + 1))
                };
                let tag = v["tag"]
                    .as_str()
                    .and_then(tag_of)
                    .ok_or_else(|| bad("no known `tag`"))?;
                let time = v["time"].as_f64().ok_or_else(|| bad("no `time`"))?;
                Ok(ConsoleLine {
                    time,
                    line: Line {
                        at_ms: ((time - self.started().unwrap_or(time)).max(0.0) * 1000.0) as u64,
                        stream: v["stream"].as_str().unwrap_or("unknown").to_string(),
                        tag,
                        text: v["text"].as_str().unwrap_or_default().to_string(),
                    },
                })
            })
            .collect()
    }

    /// The events sent and triggers received, in order.
    pub fn events(&self) -> Result<Vec<RecordedEvent>, RecordError> {
        Ok(json_lines(&self.dir.join("events.jsonl"))?
            .into_iter()
            .map(|mut v| RecordedEvent {
                time: v["time"].as_f64().unwrap_or(0.0),
                dir: v["dir"].as_str().unwrap_or_default().to_string(),
                kind: v["kind"].as_str().unwrap_or_default().to_string(),
                body: v["body"].take(),
            })
            .collect())
    }

    /// Each trigger received, with the nodes it came from, in order.
    pub fn triggers(&self) -> Result<Vec<(f64, String, Vec<String>)>, RecordError> {
        Ok(self
            .events()?
            .into_iter()
            .filter(|e| e.dir == "recv" && e.kind == "trigger")
            .map(|e| {
                let nodes = e.body["nodes"]
                    .as_array()
                    .map(|n| {
                        n.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    e.time,
                    e.body["event"].as_str().unwrap_or("?").to_string(),
                    nodes,
                )
            })
            .collect())
    }
}

/// Every record directly under `record_dir` (or under its `runs/` when it is a study),
/// oldest first, and the directories that looked like records but could not be read.
pub fn list(record_dir: &Path) -> (Vec<RecordedRun>, Vec<RecordError>) {
    let root = if record_dir.join("study.json").is_file() {
        record_dir.join("runs")
    } else {
        record_dir.to_path_buf()
    };
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return (runs, errors);
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join("run.json").is_file() {
            continue;
        }
        match RecordedRun::read(&dir) {
            Ok(r) => runs.push(r),
            Err(e) => errors.push(e),
        }
    }
    runs.sort_by(|a, b| {
        a.started()
            .unwrap_or(0.0)
            .total_cmp(&b.started().unwrap_or(0.0))
            .then_with(|| a.name().cmp(b.name()))
    });
    (runs, errors)
}

/// A parameter value as a person writes it (`2`, `fast`, `[a, b]`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `k=v k2=v2`, for listings.
pub fn parameters_text(params: &Object) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_record(dir: &Path, summary: Value, console: &[Value]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("run.json"), summary.to_string()).unwrap();
        let lines: Vec<String> = console.iter().map(Value::to_string).collect();
        std::fs::write(dir.join("console.jsonl"), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn a_record_reads_back_its_outcome_duration_and_console() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r1");
        write_record(
            &dir,
            json!({"run": "r1", "started": 100.0, "ended": 161.5,
                   "outcome": {"outcome": "success"}, "exit_code": 0,
                   "procedure": {"sha256": "ab", "files": []}, "parameters": {"rate": 2}}),
            &[json!({"time": 101.0, "stream": "main", "tag": "sent", "text": "go() --> g"})],
        );
        let r = RecordedRun::find("r1", tmp.path()).unwrap();
        assert_eq!(r.duration(), Some(61.5));
        assert_eq!(r.outcome(), "success");
        assert_eq!(parameters_text(&r.parameters()), "rate=2");
        let console = r.console().unwrap();
        assert_eq!(console[0].line.tag, Tag::Sent);
        assert_eq!(console[0].line.at_ms, 1000);
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        write_record(&dir, json!({"run": "r", "started": 1.0}), &[]);
        let ok = r#"{"time": 1.0, "stream": "s", "tag": "DONE", "text": "complete."}"#;
        std::fs::write(dir.join("console.jsonl"), format!("{ok}\n{{\"time\": 2")).unwrap();
        let r = RecordedRun::read(&dir).unwrap();
        assert_eq!(r.console().unwrap().len(), 1);
        assert_eq!(r.outcome(), "unfinished");
        std::fs::write(dir.join("console.jsonl"), format!("{{\"ti\n{ok}\n")).unwrap();
        assert!(matches!(r.console(), Err(RecordError::Malformed(..))));
    }

    #[test]
    fn an_unknown_run_names_similar_runs() {
        let tmp = tempfile::tempdir().unwrap();
        write_record(
            &tmp.path().join("client-1"),
            json!({"run": "client-1"}),
            &[],
        );
        let e = RecordedRun::find("client", tmp.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("client-1"), "{e}");
    }

    #[test]
    fn a_stored_path_outside_the_record_is_not_followed() {
        let r = RecordedRun {
            dir: PathBuf::from("/rec"),
            summary: json!({"run": "r", "procedure": {"files": [
                {"path": "a.aal", "stored": "procedure/00-a.aal"},
                {"path": "b.aal", "stored": "../../etc/passwd"}]}}),
        };
        let files = r.procedure_files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].1, PathBuf::from("/rec/procedure/00-a.aal"));
    }
}
