//! Building the spanned tree from `saphyr-parser` events.
//!
//! The parser is a state machine, and so is this builder (an explicit stack, no recursion),
//! so that no input can overflow the stack; nesting is capped at [`MAX_DEPTH`] anyway, which
//! keeps every later recursive walk over the tree safe.

mod mapping;

use super::scalar::{plain_type, tagged_type};
use super::{Kind, Node, Scalar, Typed};
use crate::diagnostic::{location, Diagnostic};
use crate::procedure::{SourceFile, Span};
use crate::sources::Joined;
use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// Deepest nesting accepted (an AAL needs about six levels).
pub(crate) const MAX_DEPTH: usize = 200;

/// Most nodes that alias expansion may create in total.
const ALIAS_BUDGET: usize = 1_000_000;

/// The result of building.
pub(super) struct Outcome<'a> {
    /// The merged root, when there is content and no fatal error.
    pub root: Option<Node<'a>>,
    /// Warnings (duplicate keys, ignored tags, ...) and fatal errors of the builder itself.
    pub diagnostics: Vec<Diagnostic>,
    /// The parser's syntax error, if any.
    pub error: Option<ScanError>,
    /// Where the first document starts.
    pub start: Span,
    /// Joined line ranges (first, last) of scalars written over several lines, whose text
    /// may hold tabs.
    pub multiline_scalars: Vec<(usize, usize)>,
}

/// A collection being built.
struct Frame<'a> {
    span: Span,
    width: u32,
    anchor: usize,
    /// The raw start, to read the anchor's name when there is one.
    raw: saphyr_parser::Span,
    content: Content<'a>,
}

enum Content<'a> {
    Seq(Vec<Node<'a>>),
    Map {
        entries: Vec<(Node<'a>, Node<'a>)>,
        key: Option<Node<'a>>,
    },
}

/// An anchored node, ready to be copied by its aliases.
struct Anchored<'a> {
    node: Node<'a>,
    size: usize,
    depth: usize,
}

struct Builder<'a> {
    joined: &'a Joined,
    files: &'a [SourceFile],
    /// Byte offset of each joined line's start (for reading anchor names), computed at the
    /// first anchor.
    line_starts: Vec<usize>,
    stack: Vec<Frame<'a>>,
    anchors: HashMap<usize, Anchored<'a>>,
    anchor_names: HashMap<String, Span>,
    expanded: usize,
    documents: Vec<Node<'a>>,
    diagnostics: Vec<Diagnostic>,
    failed: bool,
    multiline_scalars: Vec<(usize, usize)>,
}

/// Parses the joined text and builds the tree.
pub(super) fn build<'a>(joined: &'a Joined, files: &'a [SourceFile]) -> Outcome<'a> {
    let mut builder = Builder {
        joined,
        files,
        line_starts: Vec::new(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        anchor_names: HashMap::new(),
        expanded: 0,
        documents: Vec::new(),
        diagnostics: Vec::new(),
        failed: false,
        multiline_scalars: Vec::new(),
    };
    let mut parser = Parser::new_from_str(&joined.text);
    let mut error = None;
    while let Some(next) = parser.next_event() {
        match next {
            Ok((event, span)) => {
                builder.on_event(event, span);
                if builder.failed {
                    break;
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let start = builder.documents.first().map(|d| d.span).unwrap_or(Span {
        file: 0,
        line: 1,
        col: 1,
    });
    let root = if error.is_some() || builder.failed {
        None
    } else {
        builder.merge_documents()
    };
    Outcome {
        root,
        diagnostics: builder.diagnostics,
        error,
        start,
        multiline_scalars: builder.multiline_scalars,
    }
}

impl<'a> Builder<'a> {
    fn span(&self, raw: saphyr_parser::Span) -> (Span, u32) {
        let (s, e) = (raw.start, raw.end);
        let width = if e.line() == s.line() {
            e.col().saturating_sub(s.col())
        } else {
            1
        };
        (
            self.joined.span(s.line(), s.col()),
            u32::try_from(width.max(1)).unwrap_or(1),
        )
    }

    fn on_event(&mut self, event: Event<'a>, raw: saphyr_parser::Span) {
        let (span, width) = self.span(raw);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if raw.end.line() > raw.start.line() {
                    self.multiline_scalars
                        .push((raw.start.line(), raw.end.line()));
                }
                let node = self.scalar(text, style, tag.as_deref(), span, width);
                self.finish(node, anchor, raw);
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if let Some(tag) = tag {
                    self.ignored_tag(tag, span, width);
                }
                if self.stack.len() >= MAX_DEPTH {
                    self.fatal(
                        Diagnostic::error(span, "the YAML is nested too deeply")
                            .note(format!(
                                "more than {MAX_DEPTH} levels of lists and mappings"
                            ))
                            .help("an AAL needs only a few levels; look for unbalanced `[` or `{`"),
                    );
                    return;
                }
                let content = if matches!(event, Event::SequenceStart(..)) {
                    Content::Seq(Vec::new())
                } else {
                    Content::Map {
                        entries: Vec::new(),
                        key: None,
                    }
                };
                self.stack.push(Frame {
                    span,
                    width,
                    anchor,
                    raw,
                    content,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let kind = match frame.content {
                    Content::Seq(items) => Kind::Seq(items),
                    Content::Map { mut entries, key } => {
                        if let Some(key) = key {
                            let null = null_at(key.span);
                            entries.push((key, null));
                        }
                        Kind::Map(self.finish_map(entries))
                    }
                };
                let node = Node {
                    span: frame.span,
                    width: frame.width,
                    kind,
                };
                self.finish(node, frame.anchor, frame.raw);
            }
            Event::Alias(id) => self.alias(id, span, width, raw),
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }

    fn scalar(
        &mut self,
        text: Cow<'a, str>,
        style: ScalarStyle,
        tag: Option<&Tag>,
        span: Span,
        width: u32,
    ) -> Node<'a> {
        let tagged = match tag {
            Some(tag) if tag.is_yaml_core_schema() => tagged_type(&tag.suffix, &text),
            _ => None,
        };
        let typed = match tagged {
            Some(t) => t,
            None => {
                if let Some(tag) = tag {
                    self.ignored_tag(tag, span, width);
                }
                if style == ScalarStyle::Plain {
                    plain_type(&text)
                } else {
                    Typed::Str
                }
            }
        };
        Node {
            span,
            width,
            kind: Kind::Scalar(Scalar {
                quoted: style != ScalarStyle::Plain,
                text,
                typed,
            }),
        }
    }

    fn ignored_tag(&mut self, tag: &Tag, span: Span, width: u32) {
        self.diagnostics.push(
            Diagnostic::warning(span, format!("the tag `{tag}` is ignored"))
                .width(width as usize)
                .help("AAL values are plain YAML; remove the tag"),
        );
    }

    /// Registers an anchored node and hands the node to its parent.
    fn finish(&mut self, node: Node<'a>, anchor: usize, raw: saphyr_parser::Span) {
        if anchor > 0 {
            let name = self.anchor_name(raw, '&');
            if let Some(first) = self.anchor_names.insert(name.clone(), node.span) {
                self.diagnostics.push(
                    Diagnostic::warning(node.span, format!("the anchor `&{name}` is defined again"))
                        .width(name.len() + 1)
                        .note(format!(
                            "first defined at {}; aliases after this point use this one",
                            location(first, self.files)
                        ))
                        .help("give each anchor its own name (the original MAGI rejected a repeated anchor)"),
                );
            }
            let (size, depth) = measure(&node);
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    depth,
                },
            );
        }
        self.push(node);
    }

    fn alias(&mut self, id: usize, span: Span, width: u32, raw: saphyr_parser::Span) {
        let name = self.anchor_name(raw, '*');
        let Some(anchored) = self.anchors.get(&id) else {
            self.fatal(
                Diagnostic::error(
                    span,
                    format!("the alias `*{name}` refers to a node that contains it"),
                )
                .width(width as usize)
                .help("an alias cannot be used inside the node its anchor names"),
            );
            return;
        };
        if self.stack.len() + anchored.depth > MAX_DEPTH {
            self.fatal(
                Diagnostic::error(
                    span,
                    format!("the alias `*{name}` nests the YAML too deeply"),
                )
                .width(width as usize)
                .note(format!(
                    "more than {MAX_DEPTH} levels of lists and mappings"
                )),
            );
            return;
        }
        self.expanded = self.expanded.saturating_add(anchored.size);
        if self.expanded > ALIAS_BUDGET {
            self.fatal(
                Diagnostic::error(span, format!("aliases expand to too much data at `*{name}`"))
                    .width(width as usize)
                    .note(format!(
                        "aliases expanded to more than {ALIAS_BUDGET} values; this looks like an alias bomb"
                    ))
                    .help("use fewer nested aliases"),
            );
            return;
        }
        let mut node = anchored.node.clone();
        node.span = span;
        node.width = width;
        self.push(node);
    }

    /// The name of the anchor (`&`) or alias (`*`) written at a raw span's start.
    fn anchor_name(&mut self, raw: saphyr_parser::Span, sigil: char) -> String {
        if self.line_starts.is_empty() {
            self.line_starts = std::iter::once(0)
                .chain(self.joined.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect();
        }
        let start = self
            .line_starts
            .get(raw.start.line().saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let line = self.joined.text.get(start..).unwrap_or("");
        let line = line.split('\n').next().unwrap_or("");
        let from: String = line.chars().skip(raw.start.col()).collect();
        // A tag may come before the anchor (`!!str &a x`).
        let Some(at) = from.find(sigil) else {
            return "?".into();
        };
        from[at + sigil.len_utf8()..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
            .collect()
    }

    fn push(&mut self, node: Node<'a>) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame {
                content: Content::Seq(items),
                ..
            }) => items.push(node),
            Some(Frame {
                content: Content::Map { entries, key },
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }

    fn fatal(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
        self.failed = true;
    }
}

fn null_at<'a>(span: Span) -> Node<'a> {
    Node {
        span,
        width: 1,
        kind: Kind::Scalar(Scalar {
            text: Cow::Borrowed(""),
            typed: Typed::Null,
            quoted: false,
        }),
    }
}

/// How many nodes a node holds, and how deep it is.
fn measure(node: &Node) -> (usize, usize) {
    match &node.kind {
        Kind::Scalar(_) => (1, 0),
        Kind::Seq(items) => items.iter().fold((1, 1), |(n, d), i| {
            let (s, e) = measure(i);
            (n.saturating_add(s), d.max(e + 1))
        }),
        Kind::Map(entries) => entries.iter().fold((1, 1), |(n, d), (k, v)| {
            let (ks, kd) = measure(k);
            let (vs, vd) = measure(v);
            (
                n.saturating_add(ks).saturating_add(vs),
                d.max(kd.max(vd) + 1),
            )
        }),
    }
}
