//! A small YAML tree with positions, built on saphyr-parser's events (for graph configs).
use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::Value;

/// A YAML error at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line} column {col}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// A YAML value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlNode {
    /// The value.
    pub value: YamlValue,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// The shapes a YAML value takes.
#[derive(Debug, Clone, PartialEq)]
pub enum YamlValue {
    /// A scalar: its text and whether it was quoted (a quoted scalar is always a string).
    Scalar(String, bool),
    /// A sequence.
    Seq(Vec<YamlNode>),
    /// A mapping, in document order (keys are scalars' text).
    Map(Vec<(YamlNode, YamlNode)>),
}

impl YamlNode {
    /// Looks up a key in a mapping.
    pub fn get(&self, key: &str) -> Option<&YamlNode> {
        match &self.value {
            YamlValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YamlValue::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A word for the node's shape, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            YamlValue::Scalar(..) => "a scalar",
            YamlValue::Seq(_) => "a list",
            YamlValue::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON with YAML 1.2 core-schema scalars (null, booleans, integers,
    /// floats, else strings; quoted scalars are strings).
    pub fn to_json(&self) -> Value {
        match &self.value {
            YamlValue::Scalar(s, true) => Value::String(s.clone()),
            YamlValue::Scalar(s, false) => plain_scalar(s),
            YamlValue::Seq(items) => Value::Array(items.iter().map(YamlNode::to_json).collect()),
            YamlValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| k.to_json().to_string()),
                            v.to_json(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// Core-schema resolution of a plain scalar.
fn plain_scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    let looks_numeric = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || "+-.".contains(c));
    if looks_numeric && !s.eq_ignore_ascii_case("inf") {
        if let Ok(f) = s.parse::<f64>() {
            if f.is_finite() {
                return Value::from(f);
            }
        }
    }
    Value::String(s.to_string())
}

fn pos(span: &Span) -> (usize, usize) {
    (span.start.line(), span.start.col() + 1)
}

/// Parses one YAML document into a tree (`None` for an empty document). Anchors and
/// aliases are resolved; tags are ignored.
pub fn parse(text: &str) -> Result<Option<YamlNode>, YamlError> {
    enum Frame {
        Seq(usize, usize, usize, Vec<YamlNode>),
        Map(
            usize,
            usize,
            usize,
            Vec<(YamlNode, YamlNode)>,
            Option<YamlNode>,
        ),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, YamlNode> = Default::default();
    let mut root: Option<YamlNode> = None;
    let mut docs = 0;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| YamlError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let (line, col) = pos(&span);
        let done: Option<(YamlNode, usize)> = match ev {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(YamlError {
                        line,
                        col,
                        message: "more than one YAML document".into(),
                    });
                }
                None
            }
            Event::Scalar(v, style, anchor, _) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let v: Cow<str> = v;
                Some((
                    YamlNode {
                        value: YamlValue::Scalar(v.into_owned(), quoted),
                        line,
                        col,
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => Some((n.clone(), 0)),
                None => {
                    return Err(YamlError {
                        line,
                        col,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(line, col, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(line, col, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(l, c, a, items)) => Some((
                    YamlNode {
                        value: YamlValue::Seq(items),
                        line: l,
                        col: c,
                    },
                    a,
                )),
                _ => {
                    return Err(YamlError {
                        line,
                        col,
                        message: "unbalanced sequence".into(),
                    })
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(l, c, a, entries, _)) => Some((
                    YamlNode {
                        value: YamlValue::Map(entries),
                        line: l,
                        col: c,
                    },
                    a,
                )),
                _ => {
                    return Err(YamlError {
                        line,
                        col,
                        message: "unbalanced mapping".into(),
                    })
                }
            },
            _ => None,
        };
        let Some((node, anchor)) = done else { continue };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, _, items)) => items.push(node),
            Some(Frame::Map(_, _, _, entries, key)) => match key.take() {
                None => {
                    if !matches!(node.value, YamlValue::Scalar(..)) {
                        return Err(YamlError {
                            line: node.line,
                            col: node.col,
                            message: format!(
                                "a mapping key must be a scalar, found {}",
                                node.kind()
                            ),
                        });
                    }
                    if let Some((prev, _)) =
                        entries.iter().find(|(k, _)| k.as_str() == node.as_str())
                    {
                        return Err(YamlError {
                            line: node.line,
                            col: node.col,
                            message: format!(
                                "duplicate key `{}` (first at line {})",
                                node.as_str().unwrap_or_default(),
                                prev.line
                            ),
                        });
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_and_scalars() {
        let t = parse("a: 1\nb:\n  - x\n  - 'y'\n  - 2.5\nc: {d: true}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.to_json(),
            json!({"a": 1, "b": ["x", "y", 2.5], "c": {"d": true}})
        );
        let b = t.get("b").unwrap();
        assert_eq!((b.line, b.col), (3, 3));
        assert_eq!(t.get("c").unwrap().get("d").unwrap().line, 6);
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.message.contains("duplicate"));
    }

    #[test]
    fn anchors_resolve() {
        let t = parse("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        assert_eq!(t.to_json(), json!({"a": {"k": "v"}, "b": {"k": "v"}}));
    }
}
