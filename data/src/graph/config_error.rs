//! Where a graph configuration is wrong: the error with its line and caret, and the
//! context that makes such errors from positions in the text.
use std::fmt;

use magi_aal::yaml::Node;

/// A configuration error at a position, with the offending line and a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphConfigError {
    /// The configuration's file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// The text of the line, for the snippet.
    pub source_line: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for GraphConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        if !self.source_line.is_empty() {
            let n = self.line.to_string();
            let pad = " ".repeat(n.len());
            let caret_pad: String = self
                .source_line
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{pad} |\n{n} | {}\n{pad} | {caret_pad}^",
                self.source_line
            )?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphConfigError {}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) lines: Vec<&'a str>,
}

impl Ctx<'_> {
    pub(super) fn err(
        &self,
        line: usize,
        col: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> GraphConfigError {
        GraphConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            source_line: self
                .lines
                .get(line.wrapping_sub(1))
                .map(|s| s.to_string())
                .unwrap_or_default(),
            hint,
        }
    }

    pub(super) fn at(
        &self,
        node: &Node<'_>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> GraphConfigError {
        self.err(
            node.span.line as usize,
            node.span.col as usize,
            message,
            hint,
        )
    }

    /// A `key:value` line (no space after the colon) at or before `upto`: YAML reads it
    /// as one plain scalar, which is the usual cause of a confusing structure error.
    pub(super) fn missing_space(&self, from: usize, upto: usize) -> Option<GraphConfigError> {
        for line_no in from.max(1)..=upto.min(self.lines.len()) {
            let l = self.lines[line_no - 1];
            let content = l.trim_start();
            if content.starts_with('#') || content.starts_with('-') {
                continue;
            }
            let indent = l.len() - content.len();
            let Some(colon) = content.find(':') else {
                continue;
            };
            let key = &content[..colon];
            let after = &content[colon + 1..];
            let is_key = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            let next = after.chars().next();
            if is_key && next.is_some_and(|c| !c.is_whitespace() && c != '/' && c != ':') {
                let value = after.split(" #").next().unwrap_or(after).trim_end();
                return Some(self.err(
                    line_no,
                    indent + colon + 2,
                    format!("`{key}:{value}` is one plain string, not the key `{key}`: YAML needs a space after the colon"),
                    Some(format!("write `{key}: {value}`")),
                ));
            }
        }
        None
    }
}
