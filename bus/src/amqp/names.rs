//! Every name the AMQP bus puts on the broker, in one place.
//!
//! Runs, groups and nodes are user-chosen strings; on the broker each becomes exactly one
//! *word*: a string with no `.` (the topic separator) and never a wildcard, so that a
//! routing key or an exchange name can never be read two ways. [`word`] keeps letters,
//! digits, `_` and `-`, writes `.` as `:`, and percent-escapes every other byte, which is
//! injective: run `a.b` (word `a:b`) and run `a` with group `b` can never meet.
//!
//! The layout these functions produce is documented in `docs/bus.md`.

/// Escape a user-chosen name into one topic word (see the module docs).
pub fn word(name: &str) -> String {
    if name.is_empty() {
        // A lone `%` cannot come out of any other input (escapes are always `%XX`).
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            b'.' => out.push(':'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Longest exchange name, queue name or routing key AMQP 0-9-1 allows (a short string).
pub const MAX_NAME: usize = 255;

/// The names of one bus: everything starts with a prefix (`magi.` in production, a unique
/// `magi.test.<uuid>.` in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix` (normally ends with `.`).
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix every object starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Topic exchange orchestrators publish group calls into (key [`Names::group_key`]).
    pub fn calls_exchange(&self) -> String {
        format!("{}calls", self.prefix)
    }

    /// Topic exchange of node-addressed calls (key [`Names::node_key`]).
    pub fn nodes_exchange(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// Topic exchange of triggers and records, bound by each run's queue.
    pub fn triggers_exchange(&self) -> String {
        format!("{}triggers", self.prefix)
    }

    /// Topic exchange of node announcements and heartbeats (key: the node's word).
    pub fn status_exchange(&self) -> String {
        format!("{}status", self.prefix)
    }

    /// Topic exchange of the copies every sender makes for taps (key [`Names::watch_key`]).
    pub fn watch_exchange(&self) -> String {
        format!("{}watch", self.prefix)
    }

    /// The five exchanges that exist once per prefix, whatever runs exist.
    pub fn global_exchanges(&self) -> [String; 5] {
        [
            self.calls_exchange(),
            self.nodes_exchange(),
            self.triggers_exchange(),
            self.status_exchange(),
            self.watch_exchange(),
        ]
    }

    /// Fanout exchange of one group of one run; members bind their node queue to it.
    pub fn group_exchange(&self, run: &str, group: &str) -> String {
        format!("{}group.{}.{}", self.prefix, word(run), word(group))
    }

    /// The inbox of a node agent.
    pub fn node_queue(&self, node: &str) -> String {
        format!("{}node.{}", self.prefix, word(node))
    }

    /// The inbox of a run's orchestrator.
    pub fn run_queue(&self, run: &str) -> String {
        format!("{}run.{}", self.prefix, word(run))
    }

    /// The second inbox of a run's orchestrator: node statuses (announcements and
    /// heartbeats), apart from its triggers and records so that those never wait behind
    /// them. Words have no `.`, so no run queue is ever named like it.
    pub fn run_status_queue(&self, run: &str) -> String {
        format!("{}.status", self.run_queue(run))
    }

    /// The lock of a node's or run's queue on a cluster: an exclusive (classic) queue
    /// held by the connection that consumes `queue`, so that a second one is refused.
    /// Words have no `.`, so no node or run queue is ever named like a lock.
    pub fn lock_queue(&self, queue: &str) -> String {
        format!("{queue}.lock")
    }

    /// Routing key of a group call on [`Names::calls_exchange`], and the key that binds the
    /// group's exchange there.
    pub fn group_key(&self, run: &str, group: &str) -> String {
        format!("{}.{}", word(run), word(group))
    }

    /// Routing key of a call to one node on [`Names::nodes_exchange`].
    pub fn node_key(&self, run: &str, node: &str) -> String {
        format!("{}.{}", word(run), word(node))
    }

    /// Binding of a node queue on [`Names::nodes_exchange`]: its calls, of any run.
    pub fn node_binding(&self, node: &str) -> String {
        format!("*.{}", word(node))
    }

    /// Routing key of a trigger (`kind` = `trigger`) or record (`record`) sent by `node`.
    pub fn inbound_key(&self, run: &str, kind: &str, node: &str) -> String {
        format!("{}.{}.{}", word(run), kind, word(node))
    }

    /// Binding of a run queue on [`Names::triggers_exchange`], and of a one-run tap on
    /// [`Names::watch_exchange`]: everything of that run.
    pub fn run_binding(&self, run: &str) -> String {
        format!("{}.#", word(run))
    }

    /// Routing key of a tap copy: the run, then `call`, `trigger` or `record`.
    pub fn watch_key(&self, run: &str, kind: &str) -> String {
        format!("{}.{}", word(run), kind)
    }

    /// Routing key of a node's status.
    pub fn status_key(&self, node: &str) -> String {
        word(node)
    }
}

/// First word of a routing key (the run's word in every key that carries a run).
pub fn first_word(key: &str) -> &str {
    key.split('.').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_never_contain_separators_or_wildcards() {
        for name in ["a.b", "*", "#", "a b", "é", "%", "", "x:y"] {
            let w = word(name);
            assert!(
                !w.contains('.') && w != "*" && w != "#",
                "{name:?} -> {w:?}"
            );
        }
        assert_eq!(word("alice.exp-1_2"), "alice:exp-1_2");
    }

    #[test]
    fn escaping_is_injective_on_tricky_pairs() {
        let names = [
            "a.b", "a:b", "a%3Ab", "a%2Eb", "", "%", "a", "a.", ".a", "*", "%2A", "é",
        ];
        let words: std::collections::BTreeSet<String> = names.iter().map(|n| word(n)).collect();
        assert_eq!(words.len(), names.len());
    }

    #[test]
    fn a_run_with_a_dot_and_a_group_never_collide_with_another_split() {
        let n = Names::new("magi.");
        assert_ne!(n.group_exchange("a.b", "c"), n.group_exchange("a", "b.c"));
        assert_ne!(n.group_key("a.b", "c"), n.group_key("a", "b.c"));
        assert_eq!(
            n.group_exchange("alice.e1", "clients"),
            "magi.group.alice:e1.clients"
        );
        assert_eq!(
            first_word(&n.inbound_key("alice.e1", "trigger", "n1.x")),
            "alice:e1"
        );
    }
}
