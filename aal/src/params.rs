//! Parameters: an opt-in top-level `parameters:` mapping of names to default values, and
//! `$(name)` anywhere in a value (execargs, args, timeouts, group members, ...).
//!
//! ```yaml
//! parameters: {interval: 5, duration: 60000, clients: [c1, c2]}
//! groups: {client_group: $(clients)}                 # a whole value: the typed value
//! agents: {client_agent: {execargs: {interval: '$(interval)'}}}   # quoted: a string
//! ... triggers: [{timeout: $(duration)}]
//! ```
//!
//! A plain scalar that is exactly `$(name)` becomes the parameter's value with its type
//! (a number stays a number, a list becomes a list, and inside a list it is spliced in);
//! anywhere else `$(name)` is replaced by the value's text. `$$(` writes a literal `$(`.
//! Only a procedure with `parameters:` is substituted: without it, nothing changes. `$(` is
//! plain text to YAML (also inside flow mappings, unlike `{` or `}`) and to the original
//! MAGI, which never substituted anything.
//!
//! `magi run -D name=value` sets a value; it is read as YAML (`-D nodes=[a, b]`) and must
//! have its default's type (a number for a number, a list for a list; anything for a
//! string).

use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

use crate::diagnostic::Diagnostic;
use crate::procedure::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Kind, Node, Scalar, Typed};

/// A parameter and the value a run uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameter {
    /// Its name.
    pub name: String,
    /// The default written in the procedure.
    pub default: Value,
    /// The value used (the default unless `-D` set it).
    pub value: Value,
    /// Whether `-D` set it.
    pub set: bool,
    /// Where it is declared.
    pub span: Span,
}

const KEY: &str = "parameters";

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Takes `parameters:` out of the root, applies the `-D NAME=VALUE` overrides and
/// substitutes every `$(name)`; returns the parameters with their values.
pub(crate) fn apply(
    root: Option<&mut Node<'_>>,
    start: Span,
    defines: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Vec<Parameter> {
    let declared = root.and_then(|r| match &mut r.kind {
        Kind::Map(entries) => {
            let i = entries.iter().position(|(k, _)| k.text() == Some(KEY))?;
            let (key, value) = entries.remove(i);
            Some((r, key, value))
        }
        _ => None,
    });
    let Some((root, key, value)) = declared else {
        if let Some(d) = defines.first() {
            diags.push(
                Diagnostic::error(start, format!("`-D {d}`: the procedure has no parameters"))
                    .help("declare them at the top level, e.g. `parameters: {rate: 2}`, and use them as `$(rate)`"),
            );
        }
        return Vec::new();
    };
    let mut params = declare(&key, &value, diags);
    for d in defines {
        set(d, &key, &mut params, diags);
    }
    substitute(root, &params, diags);
    params
}

fn declare(key: &Node, value: &Node, diags: &mut Vec<Diagnostic>) -> Vec<Parameter> {
    let Some(entries) = value.map() else {
        diags.push(
            Diagnostic::error(
                value.span,
                format!(
                    "`parameters` must be a mapping of names to default values, not {}",
                    value.describe()
                ),
            )
            .width(value.width as usize)
            .help("write e.g. `parameters: {rate: 2, nodes: [n1, n2]}`"),
        );
        return Vec::new();
    };
    let _ = key;
    let mut params = Vec::new();
    for (k, v) in entries {
        let name = crate::yaml::key_text(k);
        if !valid_name(&name) {
            diags.push(
                Diagnostic::error(k.span, format!("`{name}` is not a parameter name"))
                    .width(k.width as usize)
                    .help("a name is letters, digits and `_`, starting with a letter or `_`"),
            );
            continue;
        }
        let default = v.to_json();
        let nested = matches!(&default, Value::Object(_))
            || default
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.is_array() || x.is_object()));
        if nested {
            diags.push(
                Diagnostic::error(v.span, format!("the parameter `{name}` must be a number, a string, a boolean or a list of them"))
                    .width(v.width as usize),
            );
            continue;
        }
        params.push(Parameter {
            name: name.into_owned(),
            value: default.clone(),
            default,
            set: false,
            span: v.span,
        });
    }
    params
}

/// Applies one `-D NAME=VALUE`.
fn set(define: &str, key: &Node, params: &mut [Parameter], diags: &mut Vec<Diagnostic>) {
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let known = || format!("the parameters are: {}", names.join(", "));
    let Some((name, text)) = define.split_once('=') else {
        diags.push(
            Diagnostic::error(key.span, format!("`-D {define}`: write NAME=VALUE"))
                .width(key.width as usize)
                .help(known()),
        );
        return;
    };
    let name = name.trim();
    let Some(p) = params.iter_mut().find(|p| p.name == name) else {
        let near = did_you_mean(name, names.iter().map(String::as_str));
        diags.push(
            Diagnostic::error(
                key.span,
                format!("`-D {define}`: the procedure has no parameter `{name}`{near}"),
            )
            .width(key.width as usize)
            .help(known()),
        );
        return;
    };
    let typed = crate::yaml_to_json("-D", text).unwrap_or_else(|_| Value::String(text.into()));
    let value = match (&p.default, typed) {
        (Value::String(_) | Value::Null, Value::Array(_) | Value::Object(_)) => None,
        (Value::String(_), _) => Some(Value::String(text.to_string())),
        (Value::Null, v) => Some(v),
        (Value::Number(_), v @ Value::Number(_)) => Some(v),
        (Value::Bool(_), v @ Value::Bool(_)) => Some(v),
        (Value::Array(_), Value::Array(items))
            if items.iter().all(|i| !i.is_array() && !i.is_object()) =>
        {
            Some(Value::Array(items))
        }
        _ => None,
    };
    match value {
        Some(v) => {
            p.value = v;
            p.set = true;
        }
        None => {
            let example = match &p.default {
                Value::Array(_) => format!("e.g. `-D {name}=[a, b]`"),
                Value::Number(_) => format!("e.g. `-D {name}=2`"),
                Value::Bool(_) => format!("`-D {name}=true` or `-D {name}=false`"),
                _ => format!("e.g. `-D {name}=text`"),
            };
            diags.push(
                Diagnostic::error(
                    p.span,
                    format!(
                        "`-D {define}`: `{name}` is {} (its default here), and `{text}` is not",
                        type_name(&p.default)
                    ),
                )
                .help(example),
            );
        }
    }
}

/// What a `$(...)` in a text refers to.
enum Piece<'t> {
    Text(Cow<'t, str>),
    Param(&'t str),
}

/// Splits a text into literal pieces and `$(name)` references; `None` when it has none.
fn pieces(text: &str) -> Option<Vec<Piece<'_>>> {
    if !text.contains("$(") {
        return None;
    }
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("$(") {
        if rest[..i].ends_with('$') {
            // `$$(` is a literal `$(`.
            literal.push_str(&rest[..i - 1]);
            literal.push_str("$(");
            rest = &rest[i + 2..];
            continue;
        }
        let Some(close) = rest[i..].find(')') else {
            break;
        };
        literal.push_str(&rest[..i]);
        if !literal.is_empty() {
            out.push(Piece::Text(Cow::Owned(std::mem::take(&mut literal))));
        }
        out.push(Piece::Param(&rest[i + 2..i + close]));
        rest = &rest[i + close + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Text(Cow::Owned(literal)));
    }
    Some(out)
}

fn scalar_node<'a>(span: Span, width: u32, v: &Value) -> Node<'a> {
    let (text, typed) = match v {
        Value::Null => (String::new(), Typed::Null),
        Value::Bool(b) => (b.to_string(), Typed::Bool(*b)),
        Value::Number(n) => (n.to_string(), Typed::Number(n.clone())),
        Value::String(s) => (s.clone(), Typed::Str),
        other => (other.to_string(), Typed::Str),
    };
    Node {
        span,
        width,
        kind: Kind::Scalar(Scalar {
            text: Cow::Owned(text),
            typed,
            quoted: false,
        }),
    }
}

fn value_node<'a>(span: Span, width: u32, v: &Value) -> Node<'a> {
    match v {
        Value::Array(items) => Node {
            span,
            width,
            kind: Kind::Seq(items.iter().map(|i| scalar_node(span, width, i)).collect()),
        },
        other => scalar_node(span, width, other),
    }
}

/// The replacement of a scalar node, or `None` when it has no `$(`.
fn replace<'a>(
    node: &Node<'a>,
    params: &[Parameter],
    diags: &mut Vec<Diagnostic>,
) -> Option<Node<'a>> {
    let Kind::Scalar(s) = &node.kind else {
        return None;
    };
    let parts = pieces(&s.text)?;
    let lookup = |name: &str, diags: &mut Vec<Diagnostic>| {
        let found = params.iter().find(|p| p.name == name);
        if found.is_none() {
            let near = did_you_mean(name, params.iter().map(|p| p.name.as_str()));
            diags.push(
                Diagnostic::error(node.span, format!("unknown parameter `$({name})`{near}"))
                    .width(node.width as usize)
                    .help(format!(
                        "declare it under `parameters:`, or write `$$(` for a literal `$(`; the parameters are: {}",
                        params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                    )),
            );
        }
        found
    };
    if let ([Piece::Param(name)], false) = (parts.as_slice(), s.quoted) {
        let p = lookup(name, diags)?;
        return Some(value_node(node.span, node.width, &p.value));
    }
    let mut text = String::new();
    for part in &parts {
        match part {
            Piece::Text(t) => text.push_str(t),
            Piece::Param(name) => {
                let p = lookup(name, diags)?;
                match &p.value {
                    Value::String(v) => text.push_str(v),
                    Value::Array(_) => {
                        diags.push(
                            Diagnostic::error(
                                node.span,
                                format!("the list `$({name})` cannot be part of a text"),
                            )
                            .width(node.width as usize)
                            .help(format!("use it as a whole value: `$({name})`")),
                        );
                        return None;
                    }
                    other => text.push_str(&other.to_string()),
                }
            }
        }
    }
    let typed = if s.quoted {
        Typed::Str
    } else {
        crate::yaml::scalar::plain_type(&text)
    };
    Some(Node {
        span: node.span,
        width: node.width,
        kind: Kind::Scalar(Scalar {
            text: Cow::Owned(text),
            typed,
            quoted: s.quoted,
        }),
    })
}

/// Substitutes every value under `node` (mapping keys are left alone).
fn substitute(node: &mut Node<'_>, params: &[Parameter], diags: &mut Vec<Diagnostic>) {
    match &mut node.kind {
        Kind::Scalar(_) => {
            if let Some(new) = replace(node, params, diags) {
                *node = new;
            }
        }
        Kind::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, v)| substitute(v, params, diags)),
        Kind::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                substitute(&mut item, params, diags);
                let splice = matches!(&item.kind, Kind::Seq(_)) && was_whole_list(&item);
                match item.kind {
                    Kind::Seq(inner) if splice => out.extend(inner),
                    _ => out.push(item),
                }
            }
            *items = out;
        }
    }
}

/// Whether a sequence was made from a list parameter (its items share its span), so that
/// `[a, $(more)]` splices rather than nests.
fn was_whole_list(node: &Node) -> bool {
    node.seq().is_some_and(|items| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.span == node.span && i.map().is_none())
    })
}

#[cfg(test)]
mod tests {
    use crate::{check_with, source};
    use serde_json::json;

    const AAL: &str = "parameters: {wait: 1000, clients: [c1, c2], label: fast}
groups: {client_group: $(clients), server_group: [s1]}
agents:
  client_agent: {group: client_group, path: /x/a.tar.gz, execargs: {label: 'run-$(label)', wait: $(wait)}}
streamstarts: [main]
eventstreams:
  main:
    - {type: event, agent: client_agent, method: go, args: {n: $(wait)}}
    - type: trigger
      triggers: [{timeout: $(wait)}]
";

    fn run(defines: &[&str]) -> crate::Checked {
        let defines: Vec<String> = defines.iter().map(|d| d.to_string()).collect();
        check_with(vec![source("p.aal", AAL)], &defines)
    }

    #[test]
    fn defaults_are_substituted_with_their_types() {
        let c = run(&[]);
        let p = c.procedure.expect("valid");
        assert_eq!(p.groups[0].nodes, ["c1", "c2"]);
        assert_eq!(p.agents[0].execargs["wait"], json!(1000));
        assert_eq!(p.agents[0].execargs["label"], json!("run-fast"));
        let crate::Entry::Wait(w) = &p.streams[0].entries[1] else {
            panic!()
        };
        let crate::Trigger::Timeout(t) = &w.triggers[0] else {
            panic!()
        };
        assert_eq!(t.timeout_ms, 1000);
        assert!(c.parameters.iter().all(|p| !p.set));
    }

    #[test]
    fn a_define_replaces_the_default_and_is_marked_set() {
        let c = run(&["wait=250", "clients=[a, b, c]"]);
        let p = c.procedure.expect("valid");
        assert_eq!(p.groups[0].nodes, ["a", "b", "c"]);
        assert_eq!(p.agents[0].execargs["wait"], json!(250));
        assert!(c.parameters.iter().find(|p| p.name == "wait").unwrap().set);
    }

    #[test]
    fn an_unknown_define_is_an_error_at_the_parameters_key_with_a_suggestion() {
        let c = run(&["wiat=3"]);
        assert!(c.procedure.is_none());
        let d = c.diagnostics.iter().find(|d| d.is_error()).unwrap();
        assert_eq!(d.span.line, 1);
        assert!(
            d.message.contains("no parameter `wiat`") && d.message.contains("wait"),
            "{}",
            d.message
        );
    }

    #[test]
    fn an_ill_typed_define_is_an_error_at_the_default() {
        let c = run(&["wait=soon"]);
        let d = c.diagnostics.iter().find(|d| d.is_error()).unwrap();
        assert_eq!((d.span.line, d.span.col), (1, 20));
        assert!(d.message.contains("is a number"), "{}", d.message);
    }

    #[test]
    fn an_unknown_reference_is_an_error_where_it_is_written() {
        let c = check_with(
            vec![source("p.aal", AAL.replace("{n: $(wait)}", "{n: $(wiat)}"))],
            &[],
        );
        let d = c.diagnostics.iter().find(|d| d.is_error()).unwrap();
        assert_eq!(d.span.line, 8);
        assert!(d.message.contains("did you mean `wait`"), "{}", d.message);
    }

    #[test]
    fn without_parameters_nothing_is_substituted_and_a_define_is_refused() {
        let text = AAL
            .replace(
                "parameters: {wait: 1000, clients: [c1, c2], label: fast}\n",
                "",
            )
            .replace("$(clients)", "[c1]")
            .replace("timeout: $(wait)", "timeout: 5");
        let c = check_with(vec![source("p.aal", &text)], &[]);
        let p = c.procedure.expect("valid");
        assert_eq!(p.agents[0].execargs["label"], json!("run-$(label)"));
        let c = check_with(vec![source("p.aal", &text)], &["wait=1".into()]);
        assert!(c.procedure.is_none());
    }

    #[test]
    fn a_list_parameter_inside_a_list_is_spliced_and_double_dollar_is_literal() {
        let text = AAL
            .replace("$(clients)", "[c0, $(clients)]")
            .replace("'run-$(label)'", "'$$(label)'");
        let c = check_with(vec![source("p.aal", &text)], &[]);
        let p = c.procedure.expect("valid");
        assert_eq!(p.groups[0].nodes, ["c0", "c1", "c2"]);
        assert_eq!(p.agents[0].execargs["label"], json!("$(label)"));
    }
}
