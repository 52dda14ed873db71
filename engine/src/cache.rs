//! The trigger cache: what each node has reported, and when a wait is satisfied.
//!
//! Waits are level-triggered: a report that arrived before a stream reached its wait
//! counts. Reports are never consumed by a wait; one report can release many streams.
//! While user streams run, the original's *intended* invalidation applies (magi-spec
//! §2.6, fixed here): sending an event with `trigger: T` forgets every cached `T`, and a
//! new report of `T` from a node replaces that node's older ones.

use std::collections::{BTreeSet, HashMap, HashSet};

use magi_aal::EventTrigger;
use magi_proto::Object;
use serde_json::Value;

/// Reports by trigger name, then by node: each node's reports' arguments, oldest first.
///
/// Keyed by node so that a wait over N nodes is checked in O(N), and a report is stored or
/// replaced in O(1), whatever the number of reports already cached (a round of N triggers
/// costs O(N), not O(N²) or worse).
#[derive(Debug, Default)]
pub struct TriggerCache {
    by_event: HashMap<String, HashMap<String, Vec<Object>>>,
}

impl TriggerCache {
    /// Stores a report from `nodes`, split per node. With `replace`, a node's earlier
    /// reports of the same trigger are dropped first (the newest reply per node wins).
    pub fn insert(&mut self, event: &str, nodes: &[String], args: &Object, replace: bool) {
        let reports = match self.by_event.get_mut(event) {
            Some(r) => r,
            None => self.by_event.entry(event.to_string()).or_default(),
        };
        for node in nodes {
            match reports.get_mut(node) {
                Some(list) if replace => {
                    list.clear();
                    list.push(args.clone());
                }
                Some(list) => list.push(args.clone()),
                None => {
                    reports.insert(node.clone(), vec![args.clone()]);
                }
            }
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
        if wait.nodes.is_empty() {
            reports
                .iter()
                .filter(|(_, list)| matches_any(wait, list))
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            wait.nodes
                .iter()
                .filter(|n| reports.get(*n).is_some_and(|list| matches_any(wait, list)))
                .cloned()
                .collect()
        }
    }

    /// Whether the wait has enough matching nodes.
    pub fn satisfies(&self, wait: &EventTrigger) -> bool {
        let Some(reports) = self.by_event.get(&wait.event) else {
            return wait.count == 0;
        };
        // Matching nodes are among the nodes that reported: too few reporters, no need to look.
        if reports.len() < wait.count {
            return false;
        }
        let have = if wait.nodes.is_empty() {
            reports
                .values()
                .filter(|list| matches_any(wait, list))
                .count()
        } else {
            let mut seen = HashSet::with_capacity(wait.nodes.len());
            wait.nodes
                .iter()
                .filter(|n| {
                    reports.get(*n).is_some_and(|list| matches_any(wait, list))
                        && seen.insert(n.as_str())
                })
                .count()
        };
        have >= wait.count
    }
}

/// Whether one of a node's reports carries every argument the wait asks for.
fn matches_any(wait: &EventTrigger, reports: &[Object]) -> bool {
    reports.iter().any(|r| {
        wait.args
            .iter()
            .all(|(k, v)| r.get(k).is_some_and(|got| loose_eq(got, v)))
    })
}

/// Equality as the original compared values (Python `==`): `true == 1`, `1 == 1.0`,
/// but `"75" != 75`. Containers compare element by element.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
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
        c.insert(
            "x",
            &["a".into(), "zz".into()],
            &obj(json!({"retVal": true})),
            true,
        );
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
    fn a_wait_on_many_nodes_needs_each_of_them_once() {
        let names: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut w = wait("x", &refs, 1000, json!({"retVal": true}));
        w.nodes.push("n0".into()); // a node named twice still counts once
        let mut c = TriggerCache::default();
        let yes = obj(json!({"retVal": true}));
        c.insert("x", &["outsider".into()], &yes, true);
        for n in &names[..999] {
            c.insert("x", std::slice::from_ref(n), &yes, true);
            assert!(!c.satisfies(&w));
        }
        c.insert("x", &["n999".into()], &obj(json!({"retVal": false})), true);
        assert!(!c.satisfies(&w));
        assert_eq!(c.matching_nodes(&w).len(), 999);
        c.insert("x", &["n999".into()], &yes, true);
        assert!(c.satisfies(&w));
        assert_eq!(c.matching_nodes(&w).len(), 1000);
    }

    #[test]
    fn lifecycle_reports_accumulate_per_node() {
        let mut c = TriggerCache::default();
        c.insert(
            "GroupBuildDone",
            &["a".into()],
            &obj(json!({"group": "g1"})),
            false,
        );
        c.insert(
            "GroupBuildDone",
            &["a".into()],
            &obj(json!({"group": "g2"})),
            false,
        );
        assert!(c.satisfies(&wait("GroupBuildDone", &["a"], 1, json!({"group": "g1"}))));
        assert!(c.satisfies(&wait("GroupBuildDone", &["a"], 1, json!({"group": "g2"}))));
        assert!(!c.satisfies(&wait("GroupBuildDone", &["a"], 1, json!({"group": "g3"}))));
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
