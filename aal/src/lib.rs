//! # magi-aal: the Agent Activation Language
//!
//! Raw YAML with spans is turned into a validated [`Procedure`] in one place:
//!
//! - [`sources`]: reading the files (the only I/O here) and joining several into one text,
//!   as the original did, with a map back to each file's lines;
//! - [`yaml`]: `saphyr-parser` events to a small spanned tree (aliases expanded, duplicate
//!   keys reported), and YAML syntax errors explained with their real cause; also the
//!   reader of the project's other YAML files ([`yaml::read_document`]);
//! - `validate`: the tree to a [`Procedure`], resolving which nodes every wait needs
//!   (spec §1.5) and collecting every [`Diagnostic`] on the way;
//! - [`plan`] and [`dot`]: what `magi check` prints, as text or as a Graphviz graph.
//!
//! ```
//! let checked = magi_aal::check_str("p.aal", "groups: {g: [n1]}\nagents: {}\n\
//!     streamstarts: [main]\neventstreams: {main: [{type: trigger, triggers: [{timeout: 10}]}]}\n");
//! assert!(checked.is_ok());
//! assert_eq!(checked.procedure.unwrap().streams[0].name, "main");
//! ```

#![warn(missing_docs)]

pub mod diagnostic;
pub mod dot;
pub mod params;
pub mod plan;
pub mod procedure;
pub mod sources;
pub mod suggest;
mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use params::Parameter;
pub use procedure::*;
pub use sources::{read_source, read_sources, source, ReadError};

use std::path::Path;

/// The outcome of checking a procedure: the procedure when it is valid, and every
/// diagnostic (sorted by place).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The source files, for rendering diagnostics.
    pub files: Vec<SourceFile>,
    /// The validated procedure; `None` when there is an error.
    pub procedure: Option<Procedure>,
    /// Errors and warnings, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// The declared parameters and the values used (empty without `parameters:`).
    pub parameters: Vec<Parameter>,
}

impl Checked {
    /// Whether the procedure is valid (no errors; warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.procedure.is_some()
    }

    /// How many errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// How many warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// The parameters' values by name, as the run record stores them.
    pub fn parameter_values(&self) -> serde_json::Map<String, serde_json::Value> {
        self.parameters
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect()
    }

    /// Every diagnostic rendered like rustc's, separated by blank lines.
    pub fn render(&self, color: bool) -> String {
        diagnostic::render_all(&self.diagnostics, &self.files, color)
    }
}

/// Checks a procedure made of the given files (in command-line order).
pub fn check(files: Vec<SourceFile>) -> Checked {
    check_with(files, &[])
}

/// Checks a procedure with parameter values set as `NAME=VALUE` (`magi run -D`).
pub fn check_with(files: Vec<SourceFile>, defines: &[String]) -> Checked {
    let joined = sources::Joined::new(&files);
    let mut parsed = yaml::parse(&joined, &files);
    let mut diagnostics = parsed.diagnostics;
    let mut parameters = Vec::new();
    let procedure = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        parameters = params::apply(
            parsed.root.as_mut(),
            parsed.start,
            defines,
            &mut diagnostics,
        );
        if diagnostics.iter().any(Diagnostic::is_error) {
            None
        } else {
            let (procedure, more) = validate::validate(parsed.root.as_ref(), parsed.start, &files);
            diagnostics.extend(more);
            procedure
        }
    };
    diagnostics.sort_by_key(|d| (d.span.file, d.span.line, d.span.col));
    Checked {
        files,
        procedure,
        diagnostics,
        parameters,
    }
}

/// Checks a procedure given as text.
pub fn check_str(path: &str, text: &str) -> Checked {
    check(vec![source(path, text)])
}

/// Reads the files and checks them; `Err` lists the files that could not be read.
pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Checked, Vec<ReadError>> {
    load_with(paths, &[])
}

/// Reads the files and checks them with parameter values set as `NAME=VALUE`.
pub fn load_with<P: AsRef<Path>>(
    paths: &[P],
    defines: &[String],
) -> Result<Checked, Vec<ReadError>> {
    read_sources(paths).map(|files| check_with(files, defines))
}

/// Reads any YAML document (a configuration file, say) as JSON, with the same typing
/// and the same syntax diagnostics as procedures; `Err` holds the rendered errors.
pub fn yaml_to_json(path: &str, text: &str) -> Result<serde_json::Value, String> {
    let doc = yaml::read_document(path, text);
    let files = std::slice::from_ref(&doc.file);
    let errors: Vec<Diagnostic> = doc
        .diagnostics
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    if !errors.is_empty() {
        return Err(diagnostic::render_all(&errors, files, false));
    }
    Ok(doc
        .root
        .map(|r| r.to_json())
        .unwrap_or(serde_json::Value::Null))
}
