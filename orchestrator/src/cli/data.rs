//! `magi data import` and `magi data query`, and the store options shared with `magi
//! graph` and `magi web`.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use magi_data::{import, Query, Store};
use serde_json::Value;

/// Where the records are: one of `--store`, `--run` or `-e/-p`.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Record store: an SQLite file, a directory holding data.sqlite, or a
    /// postgres://user@host/db[?table=NAME] URL.
    #[arg(long, env = "MAGI_STORE", value_name = "PATH|URL")]
    pub store: Option<String>,
    /// A run's record directory (its data.sqlite).
    #[arg(long = "run", value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Experiment (the original's -e): the store $MAGI_DATA_DIR/<project>/<experiment>/data.sqlite.
    #[arg(short = 'e', long = "experiment", value_name = "EXP")]
    pub experiment: Option<String>,
    /// Project (the original's -p), with -e; default "default".
    #[arg(
        short = 'p',
        long = "project",
        value_name = "PROJ",
        requires = "experiment"
    )]
    pub project: Option<String>,
}

/// The root of the -e/-p store convention: $MAGI_DATA_DIR, else $XDG_DATA_HOME/magi,
/// else ~/.local/share/magi.
pub fn data_root() -> PathBuf {
    if let Some(d) = std::env::var_os("MAGI_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("magi");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/magi"),
        None => PathBuf::from(".magi"),
    }
}

/// A project or experiment name usable as one path component.
fn component(kind: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        bail!("{kind} name {name:?} must be letters, digits, '-', '_' or '.'");
    }
    Ok(name.to_string())
}

impl StoreArgs {
    /// The store target (path or URL) these options name.
    pub fn target(&self) -> Result<String> {
        let given = [
            self.store.is_some(),
            self.run_dir.is_some(),
            self.experiment.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => bail!("say where the records are: --store PATH|URL, --run DIR, or -e EXPERIMENT [-p PROJECT]"),
            1 => {}
            _ => bail!("give only one of --store, --run and -e/-p"),
        }
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        if let Some(d) = &self.run_dir {
            if !d.is_dir() {
                bail!("--run {}: not a run record directory", d.display());
            }
            return Ok(d.join(magi_data::DATA_FILE).display().to_string());
        }
        let exp = component("experiment", self.experiment.as_deref().unwrap_or_default())?;
        let proj = component("project", self.project.as_deref().unwrap_or("default"))?;
        Ok(data_root()
            .join(proj)
            .join(exp)
            .join(magi_data::DATA_FILE)
            .display()
            .to_string())
    }

    /// Opens the store for reading (it must exist).
    pub fn open_existing(&self) -> Result<Store> {
        let target = self.target()?;
        Store::open_existing(&target).with_context(|| format!("opening the record store {target}"))
    }
}

/// Arguments of `magi data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Import the original MAGI's exported records (mongoexport JSON, one document per line).
    Import(ImportArgs),
    /// Print stored records, sorted by time.
    Query(QueryArgs),
}

/// Arguments of `magi data import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The export file (e.g. magi_cs_experiment_data.json).
    file: PathBuf,
    /// The store to import into (created if missing): SQLite file, directory or postgres:// URL.
    #[arg(long, value_name = "PATH|URL", required_unless_present = "experiment")]
    into: Option<String>,
    /// Import into the -e/-p store instead (see `magi graph --help`).
    #[arg(
        short = 'e',
        long = "experiment",
        value_name = "EXP",
        conflicts_with = "into"
    )]
    experiment: Option<String>,
    /// Project of -e; default "default".
    #[arg(
        short = 'p',
        long = "project",
        value_name = "PROJ",
        requires = "experiment"
    )]
    project: Option<String>,
    /// Run name given to the imported records (default: the file's name without extension).
    #[arg(long = "run-name", value_name = "NAME")]
    run_name: Option<String>,
    /// Import the valid documents even if some are not (they are listed either way).
    #[arg(long)]
    skip_invalid: bool,
}

/// Arguments of `magi data query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The store: SQLite file, a run's record directory, or postgres:// URL.
    store: String,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// Only this run.
    #[arg(long = "run-name", value_name = "NAME")]
    run_name: Option<String>,
    /// Equality on a field, e.g. --where peerNode=clientnode --where bytes=0 (numbers,
    /// true/false/null and "quoted strings" are JSON; anything else is a string).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    conditions: Vec<String>,
    /// From this time: epoch seconds or RFC 3339 (2014-08-22T20:51:43Z).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Up to this time (inclusive).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON object per line ({id, run, agent, host, created, data}).
    #[arg(long)]
    json: bool,
}

/// Runs `magi data ...`; returns the exit code.
pub fn run(args: DataArgs) -> i32 {
    let r = match args.command {
        DataCommand::Import(a) => import_cmd(a),
        DataCommand::Query(a) => query_cmd(a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn import_cmd(a: ImportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let run = match &a.run_name {
        Some(r) => r.clone(),
        None => a
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "import".into()),
    };
    let target = match (&a.into, &a.experiment) {
        (Some(t), _) => t.clone(),
        (None, exp) => StoreArgs {
            experiment: exp.clone(),
            project: a.project.clone(),
            ..Default::default()
        }
        .target()?,
    };
    let start = std::time::Instant::now();
    let parsed = import::parse_export(&text, &run);
    let shown = a.file.display();
    for e in parsed.errors.iter().take(20) {
        eprintln!("{shown}:{e}");
    }
    if parsed.errors.len() > 20 {
        eprintln!(
            "{shown}: ... and {} more invalid documents",
            parsed.errors.len() - 20
        );
    }
    if !parsed.errors.is_empty() && !a.skip_invalid {
        bail!(
            "{} invalid documents in {shown}; nothing imported (--skip-invalid imports the rest)",
            parsed.errors.len()
        );
    }
    let mut store =
        Store::open(&target).with_context(|| format!("opening the record store {target}"))?;
    store.insert_batch(&parsed.records)?;
    store.flush()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "imported {} records from {shown} into {} as run {run} ({:.0} records/s){}",
        parsed.records.len(),
        store.describe(),
        parsed.records.len() as f64 / secs.max(1e-9),
        if parsed.errors.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", parsed.errors.len())
        }
    );
    Ok(())
}

/// A `--where` value: JSON when it parses as a JSON scalar, else the text.
fn where_value(v: &str) -> Value {
    match serde_json::from_str::<Value>(v) {
        Ok(j @ (Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_))) => j,
        _ => Value::String(v.to_string()),
    }
}

fn time_arg(name: &str, v: &str) -> Result<f64> {
    if let Ok(t) = v.trim().parse::<f64>() {
        if t.is_finite() {
            return Ok(t);
        }
    }
    import::rfc3339_seconds(v.trim()).with_context(|| {
        format!(
            "--{name} {v:?}: give epoch seconds or an RFC 3339 time such as 2014-08-22T20:51:43Z"
        )
    })
}

fn query_cmd(a: QueryArgs) -> Result<()> {
    let mut filter = magi_data::Object::new();
    for c in &a.conditions {
        let Some((k, v)) = c.split_once('=') else {
            bail!("--where {c:?}: write KEY=VALUE, e.g. --where trafficDirection=out");
        };
        if k.trim().is_empty() {
            bail!("--where {c:?}: the field name is empty");
        }
        filter.insert(k.trim().to_string(), where_value(v));
    }
    let mut q = Query::new().filter_map(&filter);
    if let Some(x) = &a.agent {
        q.agent = Some(x.clone());
    }
    if let Some(x) = &a.host {
        q.host = Some(x.clone());
    }
    if let Some(x) = &a.run_name {
        q.run = Some(x.clone());
    }
    if let Some(t) = &a.from {
        q.from = Some(time_arg("from", t)?);
    }
    if let Some(t) = &a.to {
        q.to = Some(time_arg("to", t)?);
    }
    q.limit = a.limit;
    let mut store = Store::open_existing(&a.store)
        .with_context(|| format!("opening the record store {}", a.store))?;
    let start = std::time::Instant::now();
    let rows = store.query(&q)?;
    let took = start.elapsed();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for r in &rows {
        let line = if a.json {
            serde_json::json!({
                "id": r.id, "run": r.record.run, "agent": r.record.agent, "host": r.record.host,
                "created": r.record.created, "data": r.record.data,
            })
            .to_string()
        } else {
            format!(
                "{:.6}  {}  {}  {}  {}",
                r.record.created,
                r.record.run,
                r.record.agent,
                r.record.host,
                Value::Object(r.record.data.clone())
            )
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(()); // stdout closed (e.g. `| head`)
        }
    }
    let _ = out.flush();
    eprintln!("{} records ({} ms)", rows.len(), took.as_millis());
    Ok(())
}
