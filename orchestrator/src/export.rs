//! `magi export`: one `.tar.gz` with everything needed to reproduce a run or a study and
//! plot it again, described by an RO-Crate (`ro-crate-metadata.json`, RO-Crate 1.1):
//!
//! ```text
//! <name>/
//!   ro-crate-metadata.json
//!   procedure/        the AAL files as run
//!   parameters.json   the values of each run (and a study's grid)
//!   nodes.json        the node map: each group's nodes, as the runs joined them
//!   archives.json     each agent's archive: SHA-256, size, where it came from
//!   archives/         the archives themselves, when they are still there with that hash
//!   runs/<run>/       the run records (console, events, data.sqlite, logs)
//!   study.json, cells.csv, cells.json, *.png   (a study)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::recorded::RecordedRun;

/// Where an entry's bytes come from.
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// The archive being put together: path in the archive → its bytes.
#[derive(Default)]
struct Contents {
    entries: BTreeMap<String, Source>,
}

impl Contents {
    fn file(&mut self, at: String, path: &Path) {
        self.entries.insert(at, Source::File(path.to_path_buf()));
    }

    fn json(&mut self, at: &str, v: &Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        self.entries
            .insert(at.to_string(), Source::Bytes(text.into_bytes()));
    }

    /// Every regular file under `dir`, at `at/<relative path>` (links are not followed).
    fn tree(&mut self, at: &str, dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // `.run.json.tmp` and the like
            }
            let inner = format!("{at}/{name}");
            if kind.is_dir() {
                self.tree(&inner, &entry.path())?;
            } else if kind.is_file() {
                self.file(inner, &entry.path());
            }
        }
        Ok(())
    }

    fn bytes(&self, source: &Source) -> std::io::Result<Vec<u8>> {
        match source {
            Source::File(p) => std::fs::read(p),
            Source::Bytes(b) => Ok(b.clone()),
        }
    }
}

/// What a run's record says about its node map: group → nodes, from its `joinGroup` calls.
fn node_map(run: &RecordedRun) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for e in run.events().unwrap_or_default() {
        let call = &e.body["call"];
        if e.kind == "call" && call["method"] == "joinGroup" {
            if let Some(group) = call["args"]["group"].as_str() {
                map.insert(group.to_string(), call["args"]["nodes"].clone());
            }
        }
    }
    map
}

/// Adds a run's record, its procedure (once), its archives, and returns its description.
fn add_run(
    c: &mut Contents,
    run: &RecordedRun,
    archives: &mut BTreeMap<String, Value>,
) -> Result<Value, String> {
    let at = format!("runs/{}", run.name());
    c.tree(&at, &run.dir)
        .map_err(|e| format!("cannot read {}: {e}", run.dir.display()))?;
    for (_, stored) in run.procedure_files() {
        if let Some(name) = stored.file_name() {
            c.file(format!("procedure/{}", name.to_string_lossy()), &stored);
        }
    }
    for a in run.summary["archives"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let (Some(sha), Some(source)) = (a["sha256"].as_str(), a["source"].as_str()) else {
            continue;
        };
        let mut entry = a.clone();
        // The archive is included only when it is still there with the recorded hash.
        if let Ok(packed) = magi_node::pack::pack(Path::new(source)) {
            if packed.sha256 == sha {
                let path = format!("archives/{sha}.tar");
                c.entries.insert(path.clone(), Source::Bytes(packed.bytes));
                entry["included"] = json!(path);
            }
        }
        archives.insert(sha.to_string(), entry);
    }
    Ok(json!({
        "run": run.name(), "record": at, "parameters": run.parameters(),
        "outcome": run.outcome(), "started": run.started(), "ended": run.ended(),
        "procedure_sha256": run.procedure_hash(), "nodes": node_map(run),
    }))
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` of an epoch time (days to civil date, H. Hinnant's method).
pub fn iso_utc(epoch: f64) -> String {
    let secs = epoch.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn format_of(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "aal" | "yaml" | "yml" => "application/yaml",
        "json" => "application/json",
        "jsonl" => "application/x-ndjson",
        "csv" => "text/csv",
        "png" => "image/png",
        "sqlite" => "application/vnd.sqlite3",
        "tar" => "application/x-tar",
        "log" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The RO-Crate metadata of the contents.
fn ro_crate(c: &Contents, name: &str, description: &str, runs: &[Value]) -> std::io::Result<Value> {
    let mut graph = vec![json!({
        "@id": "ro-crate-metadata.json", "@type": "CreativeWork",
        "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}, "about": {"@id": "./"},
    })];
    let mut parts = Vec::new();
    let mut files = Vec::new();
    for (path, source) in &c.entries {
        let bytes = c.bytes(source)?;
        parts.push(json!({"@id": path}));
        let mut file = json!({
            "@id": path, "@type": "File", "name": path.rsplit('/').next().unwrap_or(path),
            "contentSize": bytes.len().to_string(), "encodingFormat": format_of(path),
            "sha256": crate::record::sha256_hex(&bytes),
        });
        if path.starts_with("procedure/") {
            file["@type"] = json!(["File", "SoftwareSourceCode"]);
            file["programmingLanguage"] = json!("MAGI AAL");
        }
        files.push(file);
    }
    let procedures: Vec<Value> = c
        .entries
        .keys()
        .filter(|p| p.starts_with("procedure/"))
        .map(|p| json!({"@id": p}))
        .collect();
    graph.push(json!({
        "@id": "./", "@type": "Dataset", "name": name, "description": description,
        "datePublished": iso_utc(magi_proto::epoch_now()),
        "hasPart": parts, "mainEntity": procedures.first(),
    }));
    graph.extend(files);
    for r in runs {
        let status = if r["outcome"] == "success" {
            "CompletedActionStatus"
        } else {
            "FailedActionStatus"
        };
        let record = r["record"].as_str().unwrap_or_default();
        let results: Vec<Value> = c
            .entries
            .keys()
            .filter(|p| p.starts_with(&format!("{record}/")))
            .map(|p| json!({"@id": p}))
            .collect();
        graph.push(json!({
            "@id": format!("#run-{}", r["run"].as_str().unwrap_or_default()), "@type": "CreateAction",
            "name": format!("magi run {}", r["run"].as_str().unwrap_or_default()),
            "instrument": procedures, "result": results, "actionStatus": status,
            "startTime": r["started"].as_f64().map(iso_utc), "endTime": r["ended"].as_f64().map(iso_utc),
        }));
    }
    Ok(json!({"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}))
}

/// Exports a run record or a study directory to `out` (a `.tar.gz`); returns how many
/// files it holds.
pub fn export(source: &Path, out: &Path) -> Result<usize, String> {
    let mut c = Contents::default();
    let mut archives = BTreeMap::new();
    let mut runs = Vec::new();
    let (name, description) = if source.join("study.json").is_file() {
        let (records, errors) = crate::recorded::list(source);
        if let Some(e) = errors.first() {
            return Err(e.to_string());
        }
        for r in &records {
            runs.push(add_run(&mut c, r, &mut archives)?);
        }
        for f in ["study.json", "cells.csv", "cells.json"] {
            if source.join(f).is_file() {
                c.file(f.to_string(), &source.join(f));
            }
        }
        for entry in std::fs::read_dir(source)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.ends_with(".png") {
                c.file(n, &entry.path());
            }
        }
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "study".into());
        let text = format!(
            "MAGI study {name}: {} runs of one procedure over a grid of parameters",
            records.len()
        );
        (name, text)
    } else {
        let run = RecordedRun::read(source).map_err(|e| e.to_string())?;
        runs.push(add_run(&mut c, &run, &mut archives)?);
        let text = format!("MAGI run {}: {}", run.name(), run.outcome());
        (run.name().to_string(), text)
    };
    let params: Vec<Value> = runs
        .iter()
        .map(|r| json!({"run": r["run"], "parameters": r["parameters"]}))
        .collect();
    c.json("parameters.json", &json!(params));
    let nodes: Vec<Value> = runs
        .iter()
        .map(|r| json!({"run": r["run"], "groups": r["nodes"]}))
        .collect();
    c.json("nodes.json", &json!(nodes));
    c.json("archives.json", &json!(archives));
    let metadata = ro_crate(&c, &name, &description, &runs).map_err(|e| e.to_string())?;
    c.json("ro-crate-metadata.json", &metadata);
    write_tar_gz(&c, &name, out)?;
    Ok(c.entries.len())
}

fn write_tar_gz(c: &Contents, top: &str, out: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", out.display());
    let file = std::fs::File::create(out).map_err(fail)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, source) in &c.entries {
        let bytes = c.bytes(source).map_err(fail)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(magi_proto::epoch_now() as u64);
        header.set_cksum();
        tar.append_data(&mut header, format!("{top}/{path}"), bytes.as_slice())
            .map_err(fail)?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(iso_utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_796_191_209.6), "2026-12-02T06:00:09Z");
    }
}
