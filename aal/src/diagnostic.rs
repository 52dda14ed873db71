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
    /// To render many, use [`render_all`], which indexes each file's lines once.
    pub fn render(&self, files: &[SourceFile], color: bool) -> String {
        let line_text = files
            .get(self.span.file)
            .and_then(|f| LineIndex::new(&f.text).line(self.span.line));
        let mut out = String::new();
        self.render_into(&mut out, files, line_text, color);
        out
    }

    /// Appends the rendering to `out`, with the source line already looked up.
    fn render_into(
        &self,
        out: &mut String,
        files: &[SourceFile],
        line_text: Option<&str>,
        color: bool,
    ) {
        let paint = Paint(color);
        let (word, code) = match self.severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
        };
        let _ = writeln!(
            out,
            "{}{}",
            paint.on(code, word),
            paint.on(BOLD, format_args!(": {}", self.message))
        );
        let number = self.span.line;
        let gutter = Spaces(number.to_string().len());
        let path = files.get(self.span.file).map_or("?", |f| f.path.as_str());
        let _ = writeln!(
            out,
            "{gutter}{} {path}:{}:{}",
            paint.on(BLUE, "-->"),
            self.span.line,
            self.span.col
        );
        if let Some(text) = line_text {
            let bar = paint.on(BLUE, "|");
            let _ = writeln!(out, "{gutter} {bar}");
            let _ = writeln!(out, "{} {bar} {text}", paint.on(BLUE, number));
            let _ = write!(out, "{gutter} {bar} ");
            // The caret line copies the tabs of the source line so that it lines up.
            let col = self.span.col.max(1) as usize;
            out.extend(
                text.chars()
                    .take(col - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .chain(std::iter::repeat(' '))
                    .take(col - 1),
            );
            let carets = Carets(self.width.max(1) as usize, self.label.as_deref());
            let _ = writeln!(out, "{}", paint.on(code, carets));
        }
        for note in &self.notes {
            let _ = writeln!(out, "{gutter} {} {note}", paint.on(BOLD, "= note:"));
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{gutter} {} {help}", paint.on(BOLD, "= help:"));
        }
    }
}

/// `n` spaces, written without building a string.
struct Spaces(usize);

impl std::fmt::Display for Spaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (0..self.0).try_for_each(|_| f.write_char(' '))
    }
}

/// `n` carets, then the label after a space.
struct Carets<'a>(usize, Option<&'a str>);

impl std::fmt::Display for Carets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (0..self.0).try_for_each(|_| f.write_char('^'))?;
        match self.1 {
            Some(label) => write!(f, " {label}"),
            None => Ok(()),
        }
    }
}

/// `path:line:col` for a span.
pub fn location(span: Span, files: &[SourceFile]) -> String {
    let path = files.get(span.file).map(|f| f.path.as_str()).unwrap_or("?");
    format!("{path}:{}:{}", span.line, span.col)
}

/// Renders diagnostics one after the other, separated by blank lines. Each file's lines are
/// indexed once, so the time is linear in the text and the diagnostics (looking a line up
/// by splitting the file again for every diagnostic made 80,000 warnings take 31 s).
pub fn render_all(diagnostics: &[Diagnostic], files: &[SourceFile], color: bool) -> String {
    let indexes: Vec<LineIndex> = files.iter().map(|f| LineIndex::new(&f.text)).collect();
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line_text = indexes.get(d.span.file).and_then(|x| x.line(d.span.line));
        d.render_into(&mut out, files, line_text, color);
    }
    out
}

/// Where every line of a text starts, found in one pass.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// The text of a 1-based line, without its line break.
    fn line(&self, line: u32) -> Option<&'a str> {
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.starts.get(index)?;
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.text.len(), |next| next - 1);
        let l = &self.text[start..end];
        Some(l.strip_suffix('\r').unwrap_or(l))
    }
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const BOLD: &str = "\x1b[1m";

/// ANSI colouring that can be switched off.
struct Paint(bool);

impl Paint {
    fn on<T: std::fmt::Display>(&self, code: &'static str, text: T) -> Painted<T> {
        Painted {
            code: self.0.then_some(code),
            text,
        }
    }
}

/// Text written in a colour (or plain), without building a string.
struct Painted<T> {
    code: Option<&'static str>,
    text: T,
}

impl<T: std::fmt::Display> std::fmt::Display for Painted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "{code}{}\x1b[0m", self.text),
            None => write!(f, "{}", self.text),
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
    fn the_line_index_finds_every_line_like_splitting_does() {
        let text = "a\r\n\nlast\n\tx";
        let index = LineIndex::new(text);
        for (i, expected) in text.split('\n').enumerate() {
            let expected = expected.strip_suffix('\r').unwrap_or(expected);
            assert_eq!(index.line(i as u32 + 1), Some(expected));
        }
        assert_eq!(index.line(0), None);
        assert_eq!(index.line(5), None);
    }

    #[test]
    fn render_all_is_each_rendering_joined_by_blank_lines() {
        let f = files();
        let ds = [
            Diagnostic::error(
                Span {
                    file: 0,
                    line: 1,
                    col: 1,
                },
                "one",
            ),
            Diagnostic::warning(
                Span {
                    file: 0,
                    line: 2,
                    col: 2,
                },
                "two",
            ),
            Diagnostic::warning(
                Span {
                    file: 3,
                    line: 9,
                    col: 1,
                },
                "nowhere",
            ),
        ];
        let expected: Vec<String> = ds.iter().map(|d| d.render(&f, false)).collect();
        assert_eq!(render_all(&ds, &f, false), expected.join("\n"));
    }

    #[test]
    fn no_colour_codes_unless_asked() {
        let d = Diagnostic::error(Span::default(), "m");
        assert!(!d.render(&files(), false).contains('\x1b'));
        assert!(d.render(&files(), true).contains('\x1b'));
    }
}
