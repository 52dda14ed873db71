//! The trigger cache: what each node has reported, and when a wait is satisfied.
//!
//! Waits are level-triggered: a report that arrived before a stream reached its wait
//! counts. Reports are never consumed by a wait; one report can release many streams.
//! While user streams run, the original's *intended* invalidation applies (magi-spec
//! §2.6, fixed here): sending an event with `trigger: T` forgets every cached `T`, and a
//! new report of `T` from a node replaces that node's older ones.

use std::collections::{BTreeSet, HashMap};

use magi_aal::EventTrigger;
use magi_proto::Object;
use serde_json::Value;

/// One node's report of a trigger.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    node: String,
    args: Object,
}

/// Reports by trigger name.
#[derive(Debug, Default)]
pub struct TriggerCache {
    by_event: HashMap<String, Vec<Report>>,
}

impl TriggerCache {
    /// Stores a report from `nodes`, split per node. With `replace`, a node's earlier
    /// reports of the same trigger are dropped first (the newest reply per node wins).
    pub fn insert(&mut self, event: &str, nodes: &[String], args: &Object, replace: bool) {
        let reports = self.by_event.entry(event.to_string()).or_default();
        for node in nodes {
            if replace {
                reports.retain(|r| &r.node != node);
            }
            reports.push(Report { node: node.clone(), args: args.clone() });
        }
    }

    /// Forgets every report of a trigger.
    pub fn clear(&mut self, event: &str) {
        self.by_event.remove(event);
    }

    /// The distinct nodes whose reports match the wait's name and arguments, restricted
    /// to the wait's nodes when it names some.
    pub fn matching_nodes(&self, wait: &EventTrigger) -> BTreeSet<String> {
        let Some(reports) = self.by_event.get(&wait.event) else {
            return BTreeSet::new();
        };
        reports
            .iter()
            .filter(|r| wait.nodes.is_empty() || wait.nodes.contains(&r.node))
            .filter(|r| wait.args.iter().all(|(k, v)| r.args.get(k).is_some_and(|got| loose_eq(got, v))))
            .map(|r| r.node.clone())
            .collect()
    }

    /// Whether the wait has enough matching nodes.
    pub fn satisfies(&self, wait: &EventTrigger) -> bool {
        self.matching_nodes(wait).len() >= wait.count
    }
}

/// Equality as the original compared values (Python `==`): `true == 1`, `1 == 1.0`,
/// but `"75" != 75`. Containers compare element by element.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
        }
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// A boolean or number as f64 (Python's `True` is `1`).
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wait(event: &str, nodes: &[&str], count: usize, args: Value) -> EventTrigger {
        EventTrigger {
            event: event.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            count,
            args: args.as_object().cloned().unwrap_or_default(),
            target: None,
            span: Default::default(),
        }
    }

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn python_equality_makes_true_equal_one_but_not_a_string() {
        assert!(loose_eq(&json!(true), &json!(1)));
        assert!(loose_eq(&json!(0), &json!(false)));
        assert!(loose_eq(&json!(1.0), &json!(1)));
        assert!(!loose_eq(&json!("75"), &json!(75)));
        assert!(loose_eq(&json!([1, "a"]), &json!([true, "a"])));
    }

    #[test]
    fn replies_from_foreign_nodes_do_not_count() {
        let mut c = TriggerCache::default();
        let w = wait("x", &["a", "b"], 2, json!({"retVal": true}));
        c.insert("x", &["a".into(), "zz".into()], &obj(json!({"retVal": true})), true);
        assert!(!c.satisfies(&w));
        c.insert("x", &["b".into()], &obj(json!({"retVal": true})), true);
        assert!(c.satisfies(&w));
    }

    #[test]
    fn duplicate_replies_from_one_node_count_once() {
        let mut c = TriggerCache::default();
        let w = wait("x", &[], 2, json!({}));
        c.insert("x", &["a".into()], &Object::new(), false);
        c.insert("x", &["a".into()], &Object::new(), false);
        assert!(!c.satisfies(&w));
    }

    #[test]
    fn the_newest_reply_of_a_node_replaces_its_older_one() {
        let mut c = TriggerCache::default();
        let w = wait("x", &["a"], 1, json!({"retVal": true}));
        c.insert("x", &["a".into()], &obj(json!({"retVal": true})), true);
        c.insert("x", &["a".into()], &obj(json!({"retVal": 5})), true);
        assert!(!c.satisfies(&w));
    }
}
