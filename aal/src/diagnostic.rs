//! Diagnostics: what is wrong (or suspicious) in an AAL, where, and how to fix it.
//!
//! Every diagnostic points at a place in the text ([`Span`]) and renders like rustc's:
//!
//! ```text
//! error: YAML syntax error: mapping values are not allowed here
//!   --> seed.aal:27:16
//!    |
//! 27 |         trigger: serverStarted
//!    |                ^
//!    = help: ...
//! ```

use crate::procedure::{SourceFile, Span};
use serde::Serialize;
use std::fmt::Write as _;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The procedure is not accepted.
    Error,
    /// Accepted, but probably not what the author meant.
    Warning,
}

/// One finding about the procedure's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub message: String,
    /// Where (for implicit things, the start of the first file).
    pub span: Span,
    /// How many characters the caret underlines (at least 1).
    pub width: u32,
    /// Text printed after the carets.
    pub label: Option<String>,
    /// Extra facts (`= note: ...`), e.g. the other place of a duplicate.
    pub notes: Vec<String>,
    /// How to fix it (`= help: ...`).
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, span, message)
    }

    /// A new warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, span, message)
    }

    fn new(severity: Severity, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            message: message.into(),
            span,
            width: 1,
            label: None,
            notes: Vec::new(),
            help: None,
        }
    }

    /// Sets how many characters the caret underlines.
    pub fn width(mut self, width: usize) -> Self {
        self.width = u32::try_from(width.max(1)).unwrap_or(u32::MAX);
        self
    }

    /// Sets the text after the carets.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the help text.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` of the diagnostic, with the file's path as given.
    pub fn location(&self, files: &[SourceFile]) -> String {
        location(self.span, files)
    }

    /// The diagnostic as a JSON value (`severity`, `message`, `file`, `line`, `col`, ...).
    pub fn to_json(&self, files: &[SourceFile]) -> serde_json::Value {
        serde_json::json!({
            "severity": self.severity,
            "message": self.message,
            "file": files.get(self.span.file).map(|f| f.path.as_str()),
            "line": self.span.line,
            "col": self.span.col,
            "width": self.width,
            "label": self.label,
            "notes": self.notes,
            "help": self.help,
        })
    }

    /// Renders the diagnostic like rustc does, with ANSI colours when `color` is set.
    pub fn render(&self, files: &[SourceFile], color: bool) -> String {
        let paint = Paint(color);
        let mut out = String::new();
        let (word, code) = match self.severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
        };
        let _ = writeln!(
            out,
            "{}{}",
            paint.on(code, word),
            paint.on(BOLD, &format!(": {}", self.message))
        );
        let line_text = files
            .get(self.span.file)
            .and_then(|f| line_of(&f.text, self.span.line));
        let number = self.span.line.to_string();
        let gutter = " ".repeat(number.len());
        let _ = writeln!(
            out,
            "{gutter}{} {}",
            paint.on(BLUE, "-->"),
            location(self.span, files)
        );
        if let Some(text) = line_text {
            let bar = paint.on(BLUE, "|");
            let _ = writeln!(out, "{gutter} {bar}");
            let _ = writeln!(out, "{} {bar} {}", paint.on(BLUE, &number), text);
            // The caret line copies the tabs of the source line so that it lines up.
            let col = self.span.col.max(1) as usize;
            let pad: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .chain(std::iter::repeat(' '))
                .take(col - 1)
                .collect();
            let carets = "^".repeat(self.width.max(1) as usize);
            let label = self
                .label
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{gutter} {bar} {pad}{}",
                paint.on(code, &format!("{carets}{label}"))
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "{gutter} {} {note}", paint.on(BOLD, "= note:"));
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{gutter} {} {help}", paint.on(BOLD, "= help:"));
        }
        out
    }
}

/// `path:line:col` for a span.
pub fn location(span: Span, files: &[SourceFile]) -> String {
    let path = files.get(span.file).map(|f| f.path.as_str()).unwrap_or("?");
    format!("{path}:{}:{}", span.line, span.col)
}

/// The text of a 1-based line, without its line break.
pub(crate) fn line_of(text: &str, line: u32) -> Option<&str> {
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    text.split('\n')
        .nth(index)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const BOLD: &str = "\x1b[1m";

/// ANSI colouring that can be switched off.
struct Paint(bool);

impl Paint {
    fn on(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("{code}{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<SourceFile> {
        vec![SourceFile {
            path: "a.aal".into(),
            text: "x: 1\n\tkey: value\n".into(),
        }]
    }

    #[test]
    fn renders_like_rustc_with_location_caret_and_help() {
        let span = Span {
            file: 0,
            line: 1,
            col: 4,
        };
        let d = Diagnostic::error(span, "bad value")
            .label("here")
            .help("fix it");
        let text = d.render(&files(), false);
        assert_eq!(
            text,
            "error: bad value\n --> a.aal:1:4\n  |\n1 | x: 1\n  |    ^ here\n  = help: fix it\n"
        );
    }

    #[test]
    fn caret_keeps_tabs_of_the_source_line_so_it_lines_up() {
        let span = Span {
            file: 0,
            line: 2,
            col: 2,
        };
        let text = Diagnostic::warning(span, "w")
            .width(3)
            .render(&files(), false);
        assert!(text.contains("2 | \tkey: value\n  | \t^^^\n"), "{text}");
    }

    #[test]
    fn no_colour_codes_unless_asked() {
        let d = Diagnostic::error(Span::default(), "m");
        assert!(!d.render(&files(), false).contains('\x1b'));
        assert!(d.render(&files(), true).contains('\x1b'));
    }
}
