//! YAML syntax errors explained: the parser's message and position, turned into the real
//! cause and the fix.
//!
//! The parser is right about *where* it got lost, but not always about *why*: a line
//! indented deeper than the key above is read as the continuation of that key's value
//! (`method: startServer` then `    trigger: x` gives "mapping values are not allowed"), and
//! a tab in the indentation is sometimes reported on the line before. We look at the text
//! around the error to say what happened and how to fix it.

use crate::diagnostic::Diagnostic;
use crate::sources::Joined;
use saphyr_parser::ScanError;

/// One line of the joined text, and facts about its indentation.
struct Line<'a> {
    text: &'a str,
}

impl<'a> Line<'a> {
    /// Whether it holds nothing but blanks or a comment.
    fn is_blank(&self) -> bool {
        let t = self.text.trim_start_matches([' ', '\t']);
        t.is_empty() || t.starts_with('#')
    }

    /// The 0-based column (in characters) of the first tab in the indentation, if the
    /// indentation holds one.
    fn tab_in_indentation(&self) -> Option<usize> {
        self.text
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .position(|c| c == '\t')
    }

    /// The 0-based column of the line's content after any `- ` list markers, and that
    /// content.
    fn content(&self) -> (usize, &'a str) {
        let mut col = 0;
        let mut rest = self.text;
        loop {
            let trimmed = rest.trim_start_matches(' ');
            col += rest.len() - trimmed.len();
            rest = trimmed;
            if let Some(after) = rest.strip_prefix("- ") {
                col += 2;
                rest = after;
            } else {
                return (col, rest);
            }
        }
    }

    /// `key: value` with a plain value on the same line: (key, value).
    fn key_and_plain_value(&self) -> Option<(&'a str, &'a str)> {
        let (_, content) = self.content();
        let (key, value) = content.split_once(": ")?;
        let value = value.trim();
        let plain = !value.is_empty()
            && !value.starts_with(['[', '{', '|', '>', '&', '*', '!', '#', '"', '\'']);
        (plain && !key.is_empty() && !key.contains(' ')).then_some((key, value))
    }

    /// The key of a `key:` or `key: value` line.
    fn key(&self) -> Option<&'a str> {
        let (_, content) = self.content();
        let key = content.split_once(':').map(|(k, _)| k)?;
        (!key.is_empty() && !key.contains(' ')).then_some(key)
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split('\n')
        .map(|l| Line {
            text: l.strip_suffix('\r').unwrap_or(l),
        })
        .collect()
}

/// Turns the parser's error into a diagnostic that says what to fix.
pub(super) fn explain(joined: &Joined, error: &ScanError) -> Diagnostic {
    let all = lines(&joined.text);
    let line_no = error.marker().line().max(1);
    let col0 = error.marker().col();
    let info = error.info();
    let at = |line: usize, col0: usize| joined.span(line, col0);
    let line = |n: usize| all.get(n.wrapping_sub(1));

    // Tabs first: the parser may report them on the line before, with an unrelated message.
    for n in [line_no, line_no + 1, line_no.saturating_sub(1)] {
        if let Some(tab) = line(n).and_then(|l| l.tab_in_indentation()) {
            return Diagnostic::error(at(n, tab), "YAML syntax error: a tab in the indentation")
                .label("tab")
                .note("YAML does not allow tabs for indentation")
                .help("replace the tab with spaces, lining the line up with its siblings");
        }
    }
    if let Some(l) = line(line_no) {
        let tab_near = l
            .text
            .chars()
            .enumerate()
            .skip(col0.saturating_sub(1))
            .take(2)
            .find(|(_, c)| *c == '\t');
        if let Some((tab, _)) = tab_near {
            return Diagnostic::error(
                at(line_no, tab),
                "YAML syntax error: a tab where YAML wants a space",
            )
            .label("tab")
            .help("replace the tab with a space");
        }
    }

    let span = at(line_no, col0);
    if info.contains("recursion limit") {
        return Diagnostic::error(span, "YAML syntax error: the YAML is nested too deeply")
            .help("an AAL needs only a few levels; look for unbalanced `[` or `{`");
    }
    if info.starts_with("mapping values are not allowed") {
        return mapping_value(&all, line_no, col0, span);
    }
    if info.contains("did not find expected key") {
        let d = Diagnostic::error(
            span,
            "YAML syntax error: this line's indentation does not line up with the keys above it",
        );
        return match previous_content(&all, line_no) {
            Some((n, prev)) => {
                let (prev_col, _) = prev.content();
                d.note(format!(
                    "line {} starts at column {}, this one at column {}",
                    joined.span(n, 0).line,
                    prev_col + 1,
                    col0 + 1
                ))
                .help("indent every key of a mapping by exactly the same number of spaces")
            }
            None => d.help("indent every key of a mapping by exactly the same number of spaces"),
        };
    }
    if info.contains("did not find expected '-' indicator") {
        return Diagnostic::error(
            span,
            "YAML syntax error: a line in a list that is not a list item",
        )
        .note("this line is indented like the `- ` items above it")
        .help("start it with `- ` to make it an item, or indent it to belong to the item above");
    }
    if info.contains("unknown anchor") {
        let name: String = line(line_no)
            .map(|l| {
                l.text
                    .chars()
                    .skip(col0 + 1)
                    .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                    .collect()
            })
            .unwrap_or_default();
        return Diagnostic::error(
            span,
            format!("YAML syntax error: the alias `*{name}` names no anchor defined before it"),
        )
        .width(name.len() + 1)
        .help(format!(
            "define the anchor first, e.g. `servers: &{name} [node1]`, above this line (or in an earlier file)"
        ));
    }
    if info.contains("quoted scalar") {
        return Diagnostic::error(span, "YAML syntax error: a quoted value is not closed")
            .note(format!("the parser says: {info}"))
            .help("close the quote on the same line, or indent its continuation lines deeper than the key");
    }
    if info.contains("flow sequence")
        || info.contains("flow mapping")
        || info.contains("':' indicator")
        || info.contains("unexpected eof")
    {
        if let Some((n, col, open)) = unclosed_opener(&all, line_no, col0) {
            let close = if open == '[' { ']' } else { '}' };
            return Diagnostic::error(
                at(n, col),
                format!("YAML syntax error: this `{open}` is not closed"),
            )
            .label(format!("no `{close}` for this"))
            .note(format!(
                "the parser looked for `,` or `{close}` up to line {}: {info}",
                joined.span(line_no, 0).line
            ))
            .help(format!(
                "add the missing `{close}`, or a `,` between two items"
            ));
        }
        return Diagnostic::error(
            span,
            "YAML syntax error: a `[...]` or `{...}` is not closed or not separated by commas",
        )
        .note(format!("the parser says: {info}"))
        .help("check that every `[` has its `]`, every `{` its `}`, and that items are separated by `,`");
    }
    if info.starts_with("unexpected character") {
        return Diagnostic::error(span, format!("YAML syntax error: {info}"))
            .help("a value cannot start with `@` or `` ` ``; quote it, e.g. `'@value'`");
    }
    Diagnostic::error(span, format!("YAML syntax error: {info}"))
        .help("compare this line's indentation and punctuation with the lines above it")
}

/// The innermost `[` or `{` still open at the error: (line, 0-based column, bracket).
/// Quotes and comments are skipped; a bracket counts only where a value can start.
fn unclosed_opener(all: &[Line<'_>], line_no: usize, col0: usize) -> Option<(usize, usize, char)> {
    let mut stack: Vec<(usize, usize, char)> = Vec::new();
    for (i, line) in all.iter().enumerate().take(line_no) {
        let n = i + 1;
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for (col, c) in line.text.chars().enumerate() {
            if n == line_no && col >= col0 {
                break;
            }
            match quote {
                Some(q) => {
                    if c == q {
                        quote = None;
                    }
                }
                None => match c {
                    '#' if previous == ' ' || previous == '\t' => break,
                    '\'' | '"' if " \t[{,:".contains(previous) => quote = Some(c),
                    '[' | '{' if " \t[{,:-".contains(previous) || col == 0 => {
                        stack.push((n, col, c))
                    }
                    ']' | '}' if !stack.is_empty() => {
                        stack.pop();
                    }
                    _ => {}
                },
            }
            previous = c;
        }
    }
    stack.pop()
}

/// The nearest line above `line_no` with content, and its number.
fn previous_content<'a, 'b>(all: &'b [Line<'a>], line_no: usize) -> Option<(usize, &'b Line<'a>)> {
    (1..line_no)
        .rev()
        .take(200)
        .filter_map(|n| all.get(n - 1).map(|l| (n, l)))
        .find(|(_, l)| !l.is_blank())
}

/// "mapping values are not allowed": usually a `key:` indented under `key: value`.
fn mapping_value(
    all: &[Line<'_>],
    line_no: usize,
    col0: usize,
    span: crate::procedure::Span,
) -> Diagnostic {
    let base = Diagnostic::error(
        span,
        "YAML syntax error: mapping values are not allowed here",
    );
    let Some(this) = all.get(line_no.wrapping_sub(1)) else {
        return base;
    };
    let (this_col, this_content) = this.content();
    let this_key = this.key().unwrap_or(this_content);
    // `a: b: c` on one line: the `:` is inside a value.
    let key_end = this_col + this_key.chars().count();
    if col0 > key_end {
        return base
            .label("a second `: ` in one line")
            .help("a value that contains `: ` must be quoted, e.g. `key: 'a: b'`; a nested mapping starts on a new, deeper line");
    }
    // Walk up over continuation lines to the `key: value` whose value this line continues.
    let mut n = line_no;
    while let Some((p, prev)) = previous_content(all, n) {
        let (prev_col, _) = prev.content();
        if prev_col < this_col {
            if let Some((key, value)) = prev.key_and_plain_value() {
                return base
                    .label(format!("`{this_key}:` is read as part of the value of `{key}:`"))
                    .note(format!(
                        "this line is indented deeper than `{key}: {value}` on line {p}, so YAML reads it as the continuation of the value `{value}`"
                    ))
                    .help(format!(
                        "align `{this_key}:` with `{key}:` (indent it by {prev_col} spaces, not {this_col})"
                    ));
            }
            break;
        }
        n = p;
    }
    base.help("a key must be indented exactly like its sibling keys; a value containing `: ` must be quoted")
}

/// Warnings for tabs the YAML 1.2 parser accepts but the original's PyYAML rejected
/// ("found character '\t' that cannot start any token"): one per file, at the first.
pub(super) fn tab_warnings(joined: &Joined, multiline: &[(usize, usize)]) -> Vec<Diagnostic> {
    if !joined.text.contains('\t') {
        return Vec::new();
    }
    let inside_scalar = |n: usize| multiline.iter().any(|&(a, b)| a <= n && n <= b);
    let mut found: Vec<(crate::procedure::Span, usize)> = Vec::new();
    for (i, line) in lines(&joined.text).iter().enumerate() {
        let n = i + 1;
        if !line.text.contains('\t') || inside_scalar(n) {
            continue;
        }
        let leading = line.tab_in_indentation();
        let trailing = if line.text.contains('#') {
            None
        } else {
            let trimmed = line.text.trim_end_matches([' ', '\t']);
            let tail = &line.text[trimmed.len()..];
            tail.find('\t')
                .map(|t| trimmed.chars().count() + tail[..t].chars().count())
        };
        if let Some(col) = leading.or(trailing) {
            let span = joined.span(n, col);
            match found.last_mut() {
                Some((first, count)) if first.file == span.file => *count += 1,
                _ => found.push((span, 1)),
            }
        }
    }
    found
        .into_iter()
        .map(|(span, count)| {
            let d = Diagnostic::warning(span, "a tab character outside a value")
                .label("tab")
                .note("YAML 1.2 accepts it here, but the original MAGI's YAML reader (PyYAML) rejected the file");
            let d = if count > 1 {
                d.note(format!("{} more lines of this file have such tabs", count - 1))
            } else {
                d
            };
            d.help("replace the tab with spaces, or remove it")
        })
        .collect()
}
