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

/// An open run record.
pub struct RunRecord {
    dir: PathBuf,
    events: BufWriter<File>,
    console: BufWriter<File>,
    summary: Value,
}

pub use magi_node::archive::sha256_hex;

/// The longest run name, in bytes: a directory name is at most 255 bytes, and the run's
/// name also goes into AMQP names (at most 255 bytes, prefix included).
pub const MAX_RUN_NAME: usize = 200;

/// Why a name cannot be a run's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunNameError {
    name: String,
    why: &'static str,
}

impl std::fmt::Display for RunNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run name {:?} {}; a run name is one directory name under --record-dir, \
             such as alice.exp-1",
            self.name, self.why
        )
    }
}

impl std::error::Error for RunNameError {}

/// Checks that `name` is one plain directory name: not empty, not `.` or `..`, not
/// starting with a dot, no `/`, `\`, NUL or other control character, at most
/// [`MAX_RUN_NAME`] bytes. So the record can never be written outside the record directory.
pub fn validate_run_name(name: &str) -> Result<(), RunNameError> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_RUN_NAME {
        Some("is longer than 200 bytes")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name == "." || name == ".." {
        Some("names the record directory itself or its parent")
    } else if name.starts_with('.') {
        Some("starts with a dot")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(RunNameError {
            name: name.chars().take(60).collect(),
            why,
        }),
        None => Ok(()),
    }
}

impl RunRecord {
    /// Creates `<root>/<run>/` and writes the procedure; refuses a run name that is not a
    /// plain directory name ([`validate_run_name`]).
    pub fn create(
        root: &Path,
        run: &str,
        files: &[SourceFile],
        transport: &str,
    ) -> std::io::Result<RunRecord> {
        validate_run_name(run)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
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
    /// Writes a chunk of a file an agent handed back to `files/<node>/<agent>/<name>`;
    /// the file's path when it is complete. Names are checked to be plain file names (they
    /// come from the bus), and a chunk must lie within the size the file announced.
    pub fn file_chunk(
        &mut self,
        node: &str,
        agent: &str,
        chunk: &magi_proto::file::FileChunk,
    ) -> Result<Option<PathBuf>, String> {
        use base64::Engine as _;
        use std::os::unix::fs::FileExt;
        for part in [node, agent] {
            if !magi_proto::file::is_file_name(part) {
                return Err(format!("{part:?} is not a plain name"));
            }
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&chunk.data)
            .map_err(|e| format!("file {}: not base64: {e}", chunk.name))?;
        let end = chunk.offset + bytes.len() as u64;
        if end > chunk.size {
            return Err(format!(
                "file {}: a chunk runs past its announced size",
                chunk.name
            ));
        }
        let dir = self.dir.join("files").join(node).join(agent);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(&chunk.name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(chunk.offset == 0)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all_at(&bytes, chunk.offset)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((end == chunk.size).then_some(path))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_that_leave_the_record_directory_are_refused() {
        let long = "a".repeat(MAX_RUN_NAME + 1);
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "/etc",
            "/",
            "a/b",
            "..\\x",
            ".hidden",
            "a\0b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(validate_run_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["alice.exp-1", "guest.seed-101500-abc123", "a..b", "run_1"] {
            assert_eq!(validate_run_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn create_writes_nothing_for_a_bad_name() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("records");
        let e = RunRecord::create(&root, "../escaped", &[], "embedded")
            .err()
            .expect("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("\"../escaped\""), "{e}");
        assert!(!base.path().join("escaped").exists());
        assert!(!root.exists());
    }
}
