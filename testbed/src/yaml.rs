//! Plain YAML topologies, for users without ns files:
//!
//! ```yaml
//! nodes: [client, router, server]
//! links:
//!   - {name: uplink, nodes: [client, router], bandwidth: 100Mb, delay: 0ms}
//! lans:
//!   - {name: servers, nodes: [router, server], bandwidth: 10Mb, loss: 0.01}
//! routing: Static      # the default; Manual for connected networks only
//! ```
//!
//! The YAML is turned into the same raw JSON the Tcl reader prints; every mapping in a list
//! gets the `line` it starts on, so errors name the line as for `.tcl` files.

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

use crate::topology::{RawTopology, Routing, Topology, TopologyError};

/// Reads and validates the YAML topology at `path`.
pub fn read(path: &Path) -> Result<Topology, TopologyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| TopologyError::at(&file, 0, format!("cannot read it: {e}")))?;
    parse(&file, &text)
}

/// Validates the YAML topology `text`, read from `file`.
pub fn parse(file: &str, text: &str) -> Result<Topology, TopologyError> {
    let value = to_json(text).map_err(|(line, m)| TopologyError::at(file, line, m))?;
    let raw: RawTopology = serde_json::from_value(value).map_err(|e| {
        TopologyError::at(
            file,
            0,
            format!("{e} (a topology has nodes, links, lans and routing)"),
        )
    })?;
    raw.validate(file, Routing::Static)
}

/// Parses YAML into JSON; an error carries its line.
fn to_json(text: &str) -> Result<Value, (u32, String)> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: HashMap<usize, Value> = HashMap::new();
    // Open collections: (value so far, pending key of a mapping, anchor, line).
    let mut stack: Vec<(Value, Option<String>, usize, u32)> = Vec::new();
    let mut root = None;
    for item in &mut parser {
        let (event, span) =
            item.map_err(|e| (line_of(e.marker().line()), format!("YAML: {}", e.info())))?;
        let line = line_of(span.start.line());
        let done = match event {
            Event::SequenceStart(anchor, _) => {
                stack.push((Value::Array(Vec::new()), None, anchor, line));
                None
            }
            Event::MappingStart(anchor, _) => {
                let in_list = matches!(stack.last(), Some((Value::Array(_), ..)));
                let mut map = Map::new();
                if in_list {
                    map.insert("line".into(), Value::from(line));
                }
                stack.push((Value::Object(map), None, anchor, line));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((value, _, anchor, _)) = stack.pop() else {
                    return Err((line, "YAML: unbalanced collection".into()));
                };
                if anchor > 0 {
                    anchors.insert(anchor, value.clone());
                }
                Some(value)
            }
            Event::Scalar(text, style, anchor, _) => {
                let value = scalar(&text, style);
                if anchor > 0 {
                    anchors.insert(anchor, value.clone());
                }
                Some(value)
            }
            Event::Alias(id) => Some(
                anchors
                    .get(&id)
                    .cloned()
                    .ok_or((line, "YAML: an alias to an unknown anchor".to_string()))?,
            ),
            _ => None,
        };
        let Some(value) = done else { continue };
        match stack.last_mut() {
            None => root = Some(value),
            Some((Value::Array(items), ..)) => items.push(value),
            Some((Value::Object(map), key, ..)) => match key.take() {
                None => match value {
                    Value::String(k) => *key = Some(k),
                    other => *key = Some(other.to_string()),
                },
                Some(k) => {
                    if map.contains_key(&k) && k != "line" {
                        return Err((line, format!("YAML: the key `{k}` is given twice")));
                    }
                    map.insert(k, value);
                }
            },
            Some(_) => return Err((line, "YAML: unexpected value".into())),
        }
    }
    match root {
        Some(Value::Object(map)) => Ok(Value::Object(map)),
        _ => Err((
            1,
            "a YAML topology is a mapping with nodes, links and lans".into(),
        )),
    }
}

fn line_of(line: usize) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// A plain scalar is typed as YAML 1.2's core schema says; a quoted one is a string.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "~" | "null" | "" => return Value::Null,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::SegmentKind;

    #[test]
    fn a_yaml_topology_gives_nodes_links_and_lans() {
        let t = parse(
            "t.yaml",
            "nodes: [client, router, server]\nlinks:\n  - {name: up, nodes: [client, router], bandwidth: 100Mb}\n\
             lans:\n  - name: down\n    nodes: [router, server]\n    bandwidth: 10Mb\n    loss: 0.01\n",
        )
        .unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.segments[0].kind, SegmentKind::Link);
        assert_eq!(t.segments[0].shape.bandwidth_bps, 100_000_000);
        assert_eq!(t.segments[1].kind, SegmentKind::Lan);
        assert_eq!(t.segments[1].shape.loss, 0.01);
        assert_eq!(t.segments[1].line, 5);
        assert_eq!(t.routing, Routing::Static);
        assert_eq!(t.routers(), [1]);
    }

    #[test]
    fn yaml_errors_name_the_line() {
        let e = parse(
            "t.yaml",
            "nodes: [a, b]\nlinks:\n  - {nodes: [a, b]}\n  - {nodes: [a, c]}\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("`c` is not a node"), "{e}");
        let e = parse("t.yaml", "nodes: [a, b\n").unwrap_err();
        assert!(e.line > 0 && e.message.starts_with("YAML"), "{e}");
        let e = parse("t.yaml", "nodes: [a]\nlinkz: []\n").unwrap_err();
        assert!(e.message.contains("unknown field `linkz`"), "{e}");
    }

    #[test]
    fn anchors_and_numbers_work_as_in_yaml() {
        let t = parse(
            "t.yaml",
            "nodes: &n [a, b]\nlans:\n  - {nodes: *n, bandwidth: 1000000, delay: 0}\n",
        )
        .unwrap();
        assert_eq!(t.segments[0].nodes, [0, 1]);
        assert_eq!(t.segments[0].shape.bandwidth_bps, 1_000_000);
    }
}
