//! What goes on the wire and what comes off it: JSON bodies, their properties, the checks
//! every inbound message passes (size, JSON, run), and duplicate suppression.

use std::collections::{HashSet, VecDeque};

use lapin::message::Delivery;
use lapin::BasicProperties;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default largest message accepted in either direction: 16 MiB, so that `loadAgent` can
/// ship agent modules of several MiB (base64 makes a 1 MiB module a 1.4 MB call).
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

/// Encode a message, refusing one larger than `limit` (the receiver would drop it).
pub(crate) fn encode<T: Serialize>(
    what: &str,
    value: &T,
    limit: usize,
) -> Result<Vec<u8>, crate::SendError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| crate::SendError::Refused(format!("{what} cannot be encoded: {e}")))?;
    if body.len() > limit {
        return Err(crate::SendError::Refused(format!(
            "{what} is {} bytes, over the bus limit of {limit}",
            body.len()
        )));
    }
    Ok(body)
}

/// Properties of a message: JSON, its kind in `type`, a fresh id for deduplication,
/// persistence for messages that must survive a broker restart, and the sender's broker
/// user in `user_id`, which RabbitMQ checks against the connection's user (a publish
/// naming anyone else is refused), so that receivers know who sent it.
pub(crate) fn properties(kind: &str, persistent: bool, user: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_user_id(user.into())
        .with_type(kind.into())
        .with_message_id(uuid::Uuid::now_v7().to_string().into())
        .with_delivery_mode(if persistent { 2 } else { 1 })
}

/// Why an inbound message was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Dropped {
    /// Larger than the limit.
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not the JSON of the expected message.
    #[error("not a valid {what}: {reason}")]
    Invalid {
        /// Expected message.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The body names another run than the routing key, or comes from an unexpected place.
    #[error("{0}")]
    Misrouted(String),
    /// No `user_id`: nobody vouches for who sent it (every MAGI-rs client sets it).
    #[error("no user_id: the sender is not known")]
    Anonymous,
}

/// The broker user that sent a delivery (validated by RabbitMQ), required.
pub(crate) fn sender(d: &Delivery) -> Result<String, Dropped> {
    d.properties
        .user_id()
        .as_ref()
        .map(|u| u.as_str().to_string())
        .ok_or(Dropped::Anonymous)
}

/// Decode a delivery's body as `T`, within `limit` bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    d: &Delivery,
    limit: usize,
) -> Result<T, Dropped> {
    if d.data.len() > limit {
        return Err(Dropped::TooLarge {
            size: d.data.len(),
            limit,
        });
    }
    serde_json::from_slice(&d.data).map_err(|e| Dropped::Invalid {
        what,
        reason: e.to_string(),
    })
}

/// Remembers the ids of the last messages seen, so that a message published twice (a
/// publish retried after a reconnect) or delivered twice (an ack lost in a reconnect)
/// reaches the application once.
pub(crate) struct Dedupe {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedupe {
    /// A window of `capacity` ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// True the first time an id is seen (and for messages without an id).
    ///
    /// Node statuses are let through unremembered: a repeated one is harmless (the latest
    /// wins), and a run hears from every node every 2 s. At N = 10,000 their 5,000 ids a
    /// second pushed a trigger's id out of the window in under 2 s, so a trigger published
    /// again after a late confirm was counted again (4-5 `AgentLoadDone` per node).
    pub(crate) fn first_time(&mut self, props: &BasicProperties) -> bool {
        if props.kind().as_ref().is_some_and(|k| k.as_str() == "node") {
            return true;
        }
        let Some(id) = props.message_id().as_ref().map(|s| s.as_str().to_string()) else {
            return true;
        };
        if !self.seen.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger published again after a late confirm is dropped even when a flood of
    /// node statuses (10,000 nodes' heartbeats for a few seconds) came between the two.
    #[test]
    fn a_repeated_trigger_is_dropped_across_a_flood_of_node_statuses() {
        let mut dedupe = Dedupe::new(8192);
        let trigger = properties("trigger", true, "u");
        assert!(dedupe.first_time(&trigger));
        for _ in 0..20_000 {
            assert!(dedupe.first_time(&properties("node", false, "u")));
        }
        assert!(!dedupe.first_time(&trigger), "the repeat got through");
        // Statuses are let through even when repeated.
        let status = properties("node", false, "u");
        assert!(dedupe.first_time(&status) && dedupe.first_time(&status));
    }

    #[test]
    fn the_window_forgets_the_oldest_ids() {
        let mut dedupe = Dedupe::new(2);
        let (a, b, c) = (
            properties("trigger", true, "u"),
            properties("trigger", true, "u"),
            properties("trigger", true, "u"),
        );
        assert!(dedupe.first_time(&a) && dedupe.first_time(&b) && dedupe.first_time(&c));
        assert!(!dedupe.first_time(&c) && !dedupe.first_time(&b));
        assert!(dedupe.first_time(&a), "a was pushed out of a window of 2");
    }
}
