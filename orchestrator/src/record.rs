//! The run record: every run leaves a directory with the procedure and its hash, the
//! agents' archive hashes, every event sent and trigger received (JSON lines with
//! timestamps), the console lines, the outcome, and the data recorded (`data.sqlite`).
//!
//! ```text
//! <record-dir>/<run>/
//!   run.json          run id, start/end, procedure files and SHA-256, parameters,
//!                     archives, outcome
//!   procedure/        the AAL files as given
//!   events.jsonl      {"time", "dir": "sent"|"recv", "kind": "call"|"trigger", ...}
//!   console.jsonl     the console lines
//!   data.sqlite       the records (unless a --store URL sends them elsewhere)
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use magi_aal::SourceFile;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An open run record.
pub struct RunRecord {
    dir: PathBuf,
    events: BufWriter<File>,
    console: BufWriter<File>,
    summary: Value,
}

/// SHA-256 of bytes as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RunRecord {
    /// Creates `<root>/<run>/` and writes the procedure.
    pub fn create(
        root: &Path,
        run: &str,
        files: &[SourceFile],
        transport: &str,
    ) -> std::io::Result<RunRecord> {
        let dir = root.join(run);
        std::fs::create_dir_all(dir.join("procedure"))?;
        let mut all = String::new();
        let mut listed = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let name = Path::new(&f.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("file{i}.aal"));
            let stored = format!("{i:02}-{name}");
            std::fs::write(dir.join("procedure").join(&stored), &f.text)?;
            listed.push(json!({"path": f.path, "stored": format!("procedure/{stored}"), "sha256": sha256_hex(f.text.as_bytes())}));
            all.push_str(&f.text);
        }
        let summary = json!({
            "run": run,
            "started": magi_proto::epoch_now(),
            "transport": transport,
            "procedure": {"sha256": sha256_hex(all.as_bytes()), "files": listed},
            "archives": [],
        });
        let events = BufWriter::new(File::create(dir.join("events.jsonl"))?);
        let console = BufWriter::new(File::create(dir.join("console.jsonl"))?);
        let record = RunRecord {
            dir,
            events,
            console,
            summary,
        };
        record.write_summary()?;
        Ok(record)
    }

    /// The record's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes the parameter values the run uses.
    pub fn parameters(&mut self, values: &serde_json::Map<String, Value>) {
        if !values.is_empty() {
            self.summary["parameters"] = Value::Object(values.clone());
            let _ = self.write_summary();
        }
    }

    /// Notes an agent's archive.
    pub fn archive(&mut self, agent: &str, source: &str, sha256: &str, bytes: usize) {
        if let Some(list) = self.summary["archives"].as_array_mut() {
            list.push(json!({"agent": agent, "source": source, "sha256": sha256, "bytes": bytes}));
        }
        let _ = self.write_summary();
    }

    /// Appends an event sent or a trigger received.
    pub fn event(&mut self, dir: &str, kind: &str, body: Value) {
        let line = json!({"time": magi_proto::epoch_now(), "dir": dir, "kind": kind, "body": body});
        let _ = writeln!(self.events, "{line}");
    }

    /// Appends a console line.
    pub fn console(&mut self, line: &magi_engine::display::Line, epoch: f64) {
        let rec = json!({"time": epoch, "stream": line.stream, "tag": line.tag, "text": line.text});
        let _ = writeln!(self.console, "{rec}");
    }

    /// Writes the outcome and closes the logs.
    pub fn finish(&mut self, outcome: &Value, exit_code: i32) -> std::io::Result<()> {
        self.summary["ended"] = json!(magi_proto::epoch_now());
        self.summary["outcome"] = outcome.clone();
        self.summary["exit_code"] = json!(exit_code);
        self.events.flush()?;
        self.console.flush()?;
        self.write_summary()
    }

    /// Flushes the logs (periodically, so a crash loses little).
    pub fn flush(&mut self) {
        let _ = self.events.flush();
        let _ = self.console.flush();
    }

    fn write_summary(&self) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.summary).unwrap_or_default();
        let tmp = self.dir.join(".run.json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, self.dir.join("run.json"))
    }
}
