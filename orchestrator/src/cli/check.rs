//! `magi check`: validate a procedure, report every problem with its place in the text, and
//! print the plan (or the stream graph, or both as JSON).
//!
//! With the agents' modules at hand (found as `magi run` finds them), calls to methods an
//! agent does not list, and arguments a method does not take, are warnings
//! ([`crate::methods`]).
//!
//! Exit codes: 0 the procedure is valid (warnings are printed to stderr), 2 it is not, or a
//! file cannot be read; 1 the graph could not be written.
use clap::Args;
use magi_aal::{Checked, ReadError};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Arguments of `magi check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// AAL files, read in order (a later file's top-level key replaces an earlier one's).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the stream graph as Graphviz DOT: to stdout with `--dot`, to a file with
    /// `--dot=FILE` (then the plan is still printed).
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-"
    )]
    pub dot: Option<PathBuf>,
    /// Set a parameter of the procedure, `NAME=VALUE` (repeatable), as `magi run -D`.
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,
    /// Print the diagnostics and the plan as one JSON document on stdout.
    #[arg(long, conflicts_with = "dot")]
    pub json: bool,
    /// Extra directories of agent modules (also MAGI_MODULES, colon-separated), where the
    /// agents' methods are looked up, as `magi run --modules`.
    #[arg(long = "modules")]
    pub modules: Vec<PathBuf>,
}

/// Exit code of a valid procedure.
const VALID: i32 = 0;
/// Exit code when the graph cannot be written.
const OUTPUT_FAILED: i32 = 1;
/// Exit code of an invalid procedure or an unreadable file.
const INVALID: i32 = 2;

/// Runs `magi check`; returns the exit code.
pub fn run(args: CheckArgs) -> i32 {
    let mut checked = match magi_aal::load_with(&args.files, &args.defines) {
        Ok(checked) => checked,
        Err(errors) => return unreadable(&errors, args.json),
    };
    if let Some(procedure) = &checked.procedure {
        let library = magi_node::library::ModuleLibrary::standard(&args.modules);
        checked
            .diagnostics
            .extend(crate::methods::diagnose(procedure, &library));
        checked
            .diagnostics
            .sort_by_key(|d| (d.span.file, d.span.line, d.span.col));
    }
    if args.json {
        print_stdout(&json(&checked));
        return if checked.is_ok() { VALID } else { INVALID };
    }
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut report = checked.render(color);
    if !report.is_empty() {
        report.push('\n');
    }
    report.push_str(&summary(&checked));
    eprintln!("{report}");
    let Some(procedure) = &checked.procedure else {
        return INVALID;
    };
    match args.dot.as_deref() {
        Some(path) if path.as_os_str() == "-" => print_stdout(&magi_aal::dot::render(procedure)),
        Some(path) => {
            if let Err(e) = std::fs::write(path, magi_aal::dot::render(procedure)) {
                eprintln!("error: cannot write the graph to `{}`: {e}", path.display());
                return OUTPUT_FAILED;
            }
            print_stdout(&(parameters(&checked) + &magi_aal::plan::render(procedure)));
        }
        None => print_stdout(&(parameters(&checked) + &magi_aal::plan::render(procedure))),
    }
    // The process ends right after: freeing a big procedure piece by piece would only add
    // to the time `magi check` takes.
    std::mem::forget(checked);
    VALID
}

/// The parameters and their values, one per line, before the plan.
fn parameters(checked: &Checked) -> String {
    let mut out = String::new();
    if checked.parameters.is_empty() {
        return out;
    }
    out.push_str("parameters:\n");
    for p in &checked.parameters {
        let from = if p.set { "set by -D" } else { "default" };
        out.push_str(&format!(
            "  {} = {} ({from})\n",
            p.name,
            crate::recorded::value_text(&p.value)
        ));
    }
    out.push('\n');
    out
}

/// Loads a procedure for a command that needs a valid one (`simulate`, `sweep`), with
/// `-D` values: prints the diagnostics to stderr and returns `None` when it cannot be used.
pub fn load_valid(files: &[PathBuf], defines: &[String]) -> Option<Checked> {
    let checked = match magi_aal::load_with(files, defines) {
        Ok(c) => c,
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("error: {e}"));
            return None;
        }
    };
    if !checked.diagnostics.is_empty() {
        eprintln!("{}", checked.render(std::io::stderr().is_terminal()));
    }
    if checked.procedure.is_none() {
        eprintln!(
            "error: the procedure is not valid ({} error(s))",
            checked.errors()
        );
        return None;
    }
    Some(checked)
}

/// The last line: what the verdict is.
fn summary(checked: &Checked) -> String {
    let (errors, warnings) = (checked.errors(), checked.warnings());
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if checked.is_ok() {
        format!(
            "magi check: the procedure is valid ({})",
            plural(warnings, "warning")
        )
    } else {
        format!(
            "magi check: the procedure is not valid ({}, {})",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

fn json(checked: &Checked) -> String {
    let doc = serde_json::json!({
        "ok": checked.is_ok(),
        "errors": checked.errors(),
        "warnings": checked.warnings(),
        "files": checked.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        "diagnostics": checked.diagnostics.iter().map(|d| d.to_json(&checked.files)).collect::<Vec<_>>(),
        "parameters": checked.parameters,
        "plan": checked.procedure,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn unreadable(errors: &[ReadError], json: bool) -> i32 {
    if json {
        let diagnostics: Vec<_> = errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "severity": "error",
                    "message": e.to_string(),
                    "file": e.path.display().to_string(),
                    "line": 0,
                    "col": 0,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "ok": false, "errors": errors.len(), "warnings": 0,
            "diagnostics": diagnostics, "plan": null,
        });
        print_stdout(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for e in errors {
            eprintln!("error: {e}");
        }
    }
    INVALID
}

/// Prints to stdout; a closed pipe (`magi check x | head`) is not an error worth a panic.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}
