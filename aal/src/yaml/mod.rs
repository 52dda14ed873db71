//! The spanned YAML layer: `saphyr-parser` events turned into a small tree whose every node
//! knows its file, line and column.
//!
//! Aliases are expanded (with a budget, so that an alias bomb is an error, not an out of
//! memory), merge keys (`<<: *base`) are applied as PyYAML's full loader did, and duplicate
//! keys are reported ("the later one wins", as in the original). Several documents in the
//! stream (`---`) are merged key by key, like several files. Syntax errors are turned into
//! diagnostics that point at the real cause (see `syntax`).
//!
//! Procedures are read through [`crate::check`]; any other YAML file (a graph
//! configuration, an experiment configuration) through [`read_document`], with the same
//! typing and the same diagnostics.

mod build;
pub(crate) mod scalar;

pub use scalar::Typed;
mod syntax;

use crate::diagnostic::Diagnostic;
use crate::procedure::{SourceFile, Span};
use crate::sources::{source, Joined};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// A YAML node with its place in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    /// Where it starts (for an alias, where the alias is written).
    pub span: Span,
    /// How many characters it covers on its first line (for carets).
    pub width: u32,
    /// What it is.
    pub kind: Kind<'a>,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind<'a> {
    /// A scalar and its typed value.
    Scalar(Scalar<'a>),
    /// A sequence.
    Seq(Vec<Node<'a>>),
    /// A mapping, in text order, duplicates removed (the later value kept at the earlier
    /// key's position).
    Map(Vec<(Node<'a>, Node<'a>)>),
}

/// A scalar: its text as written (after YAML unescaping) and its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar<'a> {
    /// The text (borrowed from the source when it needs no unescaping).
    pub text: Cow<'a, str>,
    /// Its type (always a string for quoted scalars).
    pub typed: Typed,
    /// Whether it was quoted or a block scalar (never typed, never a merge key).
    pub quoted: bool,
}

impl<'a> Node<'a> {
    /// The scalar's text, for any scalar.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(s.text.as_ref()),
            _ => None,
        }
    }

    /// The scalar's text if it is a string (not a number, bool or null).
    pub fn str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) if s.typed == Typed::Str => Some(s.text.as_ref()),
            _ => None,
        }
    }

    /// The scalar's number, if it is one.
    pub fn number(&self) -> Option<&Number> {
        match &self.kind {
            Kind::Scalar(Scalar {
                typed: Typed::Number(n),
                ..
            }) => Some(n),
            _ => None,
        }
    }

    /// Whether the node is a null scalar (`~`, `null` or nothing).
    pub fn is_null(&self) -> bool {
        matches!(
            &self.kind,
            Kind::Scalar(Scalar {
                typed: Typed::Null,
                ..
            })
        )
    }

    /// The entries, if a mapping.
    pub fn map(&self) -> Option<&[(Node<'a>, Node<'a>)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if a sequence.
    pub fn seq(&self) -> Option<&[Node<'a>]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a key of a mapping (keys compared by text).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value of a key of a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node<'a>, &Node<'a>)> {
        self.map()?
            .iter()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(k, v)| (k, v))
    }

    /// What kind of thing it is, in words ("a mapping", "a list", "a number", ...).
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Map(_) => "a mapping",
            Kind::Seq(_) => "a list",
            Kind::Scalar(s) => match s.typed {
                Typed::Null => "empty",
                Typed::Bool(_) => "a boolean",
                Typed::Number(_) => "a number",
                Typed::Str => "a string",
            },
        }
    }

    /// The same node owning its text, free of the source it was read from.
    pub fn into_owned(self) -> Node<'static> {
        let kind = match self.kind {
            Kind::Scalar(s) => Kind::Scalar(Scalar {
                text: Cow::Owned(s.text.into_owned()),
                typed: s.typed,
                quoted: s.quoted,
            }),
            Kind::Seq(items) => Kind::Seq(items.into_iter().map(Node::into_owned).collect()),
            Kind::Map(entries) => Kind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
        };
        Node {
            span: self.span,
            width: self.width,
            kind,
        }
    }

    /// The node as JSON (mapping keys become their text).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Scalar(s) => s.typed.to_value(&s.text),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (key_text(k).into_owned(), v.to_json()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

/// The text of a mapping key; a non-scalar key is written as JSON.
pub fn key_text<'k>(key: &'k Node<'_>) -> Cow<'k, str> {
    match key.text() {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(key.to_json().to_string()),
    }
}

/// The root mapping of the procedure and the syntax diagnostics found on the way.
pub(crate) struct Parsed<'a> {
    /// The merged root, `None` when the text has a syntax error or no content.
    pub root: Option<Node<'a>>,
    /// Errors and warnings of the YAML layer.
    pub diagnostics: Vec<Diagnostic>,
    /// Where the first document starts.
    pub start: Span,
}

/// Parses the joined text of the files into one spanned tree.
pub(crate) fn parse<'a>(joined: &'a Joined, files: &'a [SourceFile]) -> Parsed<'a> {
    let outcome = build::build(joined, files);
    let mut diagnostics = outcome.diagnostics;
    let root = match outcome.error {
        Some(error) => {
            diagnostics.push(syntax::explain(joined, &error));
            None
        }
        None => {
            diagnostics.extend(syntax::tab_warnings(joined, &outcome.multiline_scalars));
            outcome.root
        }
    };
    let start = outcome.start;
    Parsed {
        root,
        diagnostics,
        start,
    }
}

/// A YAML file read on its own, not as a procedure.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file, for rendering the diagnostics.
    pub file: SourceFile,
    /// The tree (several documents merged key by key); `None` when the text has a syntax
    /// error or no content.
    pub root: Option<Node<'static>>,
    /// Errors and warnings of the YAML layer (syntax, duplicate keys, ignored tags, ...).
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads any YAML file (a configuration, say) into a spanned tree, with the typing and
/// the syntax diagnostics of procedures.
pub fn read_document(path: &str, text: &str) -> Document {
    let files = vec![source(path, text)];
    let joined = Joined::new(&files);
    let parsed = parse(&joined, &files);
    let root = parsed.root.map(Node::into_owned);
    let diagnostics = parsed.diagnostics;
    Document {
        file: files.into_iter().next().unwrap_or_else(|| source(path, "")),
        root,
        diagnostics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::source;
    use serde_json::json;

    /// Parses files that live for the whole test.
    fn parse_files(files: Vec<SourceFile>) -> Parsed<'static> {
        let files: &'static [SourceFile] = Vec::leak(files);
        parse(Box::leak(Box::new(Joined::new(files))), files)
    }

    fn parse_one(text: &str) -> Parsed<'static> {
        parse_files(vec![source("t.aal", text)])
    }

    #[test]
    fn nodes_know_file_line_and_column() {
        let p = parse_one("a:\n  b: [1, x]\n");
        let root = p.root.unwrap();
        let b = root.get("a").unwrap().get("b").unwrap();
        assert_eq!((b.span.line, b.span.col), (2, 6));
        let x = &b.seq().unwrap()[1];
        assert_eq!((x.span.line, x.span.col, x.width), (2, 10, 1));
    }

    #[test]
    fn aliases_expand_and_point_at_the_alias() {
        let p = parse_one("g: &s [a, b]\nh: {servers: *s}\n");
        let root = p.root.unwrap();
        assert_eq!(
            root.get("h").unwrap().to_json(),
            json!({"servers": ["a", "b"]})
        );
        let alias = root.get("h").unwrap().get("servers").unwrap();
        assert_eq!((alias.span.line, alias.span.col), (2, 14));
    }

    #[test]
    fn anchor_of_file_one_is_usable_in_file_two() {
        let p = parse_files(vec![
            source("1.aal", "g: &s [a]\n"),
            source("2.aal", "h: *s\n"),
        ]);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let root = p.root.unwrap();
        let h = root.get("h").unwrap();
        assert_eq!(h.to_json(), json!(["a"]));
        assert_eq!((h.span.file, h.span.line), (1, 1));
    }

    #[test]
    fn duplicate_key_warns_and_later_one_wins() {
        let p = parse_one("a: 1\nb: 2\na: 3\n");
        let root = p.root.unwrap();
        assert_eq!(root.to_json(), json!({"a": 3, "b": 2}));
        assert_eq!(p.diagnostics.len(), 1);
        let d = &p.diagnostics[0];
        assert!(!d.is_error());
        assert!(d.message.contains("later one wins"), "{}", d.message);
        assert_eq!(d.span.line, 3);
    }

    #[test]
    fn top_level_key_replaced_by_a_later_file_names_both_places() {
        let p = parse_files(vec![
            source("1.aal", "groups: {a: [x]}\n"),
            source("2.aal", "groups: {b: [y]}\n"),
        ]);
        let d = &p.diagnostics[0];
        assert_eq!(d.span.file, 1);
        assert!(d.message.contains("replaces"), "{}", d.message);
        assert!(
            d.notes.iter().any(|n| n.contains("1.aal:1:1")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn merge_keys_apply_like_pyyaml() {
        let p = parse_one("base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\n");
        assert_eq!(
            p.root.unwrap().get("m").unwrap().to_json(),
            json!({"x": 1, "y": 3})
        );
        assert!(p.diagnostics.is_empty());
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let p = parse_one("a: '5'\nb: 5\nc: \"yes\"\nd: yes\n");
        assert_eq!(
            p.root.unwrap().to_json(),
            json!({"a": "5", "b": 5, "c": "yes", "d": true})
        );
    }

    #[test]
    fn alias_bomb_is_an_error_not_a_crash() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let p = parse_one(&text);
        assert!(p.root.is_none());
        assert!(p
            .diagnostics
            .iter()
            .any(|d| d.is_error() && d.message.contains("alias")));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let p = parse_one(&text);
        assert!(p.root.is_none());
        assert!(p.diagnostics.iter().any(|d| d.message.contains("deep")));
    }

    #[test]
    fn several_documents_merge_like_several_files() {
        let p = parse_one("a: 1\n---\nb: 2\n");
        assert_eq!(p.root.unwrap().to_json(), json!({"a": 1, "b": 2}));
    }
}
