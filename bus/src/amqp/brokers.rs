//! A broker option names one broker or several (the nodes of a RabbitMQ cluster), in
//! either of two spellings (`docs/bus.md`, "Clusters"):
//!
//! - several hosts in one URL, sharing its credentials, vhost and query:
//!   `amqp://alice:pw@b1:5672,b2:5672,b3:5672/%2fmagi?heartbeat=10`;
//! - a list of whole URLs separated by commas: `amqp://alice:pw@b1/%2fmagi,amqp://alice:pw@b2/%2fmagi`
//!   (a comma starts a new URL only where `amqp://` or `amqps://` follows it).
//!
//! The query parameter `queues=classic|quorum` (removed before the URL reaches lapin) says
//! which kind of queue node and run inboxes are; without it, several brokers mean a
//! cluster, hence quorum queues, and one broker means classic queues.

use crate::ConnectError;
use magi_proto::redact_url as redact;

/// The kind of the durable inbox queues (node and run queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Classic queues: on one broker node; exclusive consumers refuse a second one.
    Classic,
    /// Quorum queues: replicated over the cluster (Raft), survive the loss of a minority
    /// of its nodes; a second consumer is refused by an exclusive lock queue.
    Quorum,
}

/// The brokers of one broker option, in the order clients try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers {
    /// One plain URL per broker (lapin's syntax), without the `queues` parameter.
    pub urls: Vec<String>,
    /// The inbox queue kind: the `queues` parameter, else quorum for several brokers.
    pub queues: QueueKind,
    /// The broker user of every URL (they must all name the same one: it is what the
    /// broker proves about every message).
    pub user: String,
}

impl Brokers {
    /// Parses a broker option; every hostile input is a clear [`ConnectError::BadUrl`] that
    /// names the option without its passwords.
    pub fn parse(spec: &str) -> Result<Brokers, ConnectError> {
        let bad = |why: String| ConnectError::BadUrl(format!("broker {}: {why}", redact(spec)));
        let mut urls = Vec::new();
        let mut kind: Option<QueueKind> = None;
        for piece in split_urls(spec) {
            for url in expand_hosts(piece).map_err(&bad)? {
                let (url, asked) = take_queues_param(&url).map_err(&bad)?;
                match (kind, asked) {
                    (Some(k), Some(a)) if k != a => {
                        return Err(bad("the URLs ask for different queue kinds".into()))
                    }
                    (None, Some(a)) => kind = Some(a),
                    _ => {}
                }
                url.parse::<lapin::uri::AMQPUri>()
                    .map_err(|e| bad(format!("invalid URL {}: {e}", redact(&url))))?;
                urls.push(url);
            }
        }
        if urls.is_empty() {
            return Err(bad("no broker named".into()));
        }
        let users: Vec<String> = urls.iter().map(|u| url_user(u)).collect();
        if users.iter().any(|u| *u != users[0]) {
            return Err(bad(format!(
                "every broker of one option must be reached as the same user (found {})",
                users.join(", ")
            )));
        }
        let queues = kind.unwrap_or(if urls.len() > 1 {
            QueueKind::Quorum
        } else {
            QueueKind::Classic
        });
        Ok(Brokers {
            urls,
            queues,
            user: users[0].clone(),
        })
    }
}

/// Splits at each comma followed by a scheme: the pieces are whole URLs.
fn split_urls(spec: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, _) in spec.match_indices(',') {
        let after = &spec[i + 1..];
        if after.starts_with("amqp://") || after.starts_with("amqps://") {
            pieces.push(&spec[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&spec[start..]);
    pieces
}

/// One URL per host of `url` (`amqp://u:p@h1,h2:5673/vhost?q` gives two URLs sharing the
/// credentials, vhost and query).
fn expand_hosts(url: &str) -> Result<Vec<String>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{:?} is not an amqp:// or amqps:// URL",
            redact(url)
        ));
    };
    if scheme != "amqp" && scheme != "amqps" {
        return Err(format!(
            "{:?} is not an amqp:// or amqps:// URL",
            redact(url)
        ));
    }
    let (userinfo, hosts_and_tail) = match rest.find('@') {
        Some(i) if !rest[..i].contains('/') => (&rest[..=i], &rest[i + 1..]),
        _ => ("", rest),
    };
    let end = hosts_and_tail
        .find(['/', '?'])
        .unwrap_or(hosts_and_tail.len());
    let (hosts, tail) = hosts_and_tail.split_at(end);
    let mut urls = Vec::new();
    for host in hosts.split(',') {
        if host.trim().is_empty() {
            return Err(format!("an empty host in {:?}", redact(url)));
        }
        urls.push(format!("{scheme}://{userinfo}{}{tail}", host.trim()));
    }
    Ok(urls)
}

/// Removes `queues=...` from the URL's query; the kind it asked for.
fn take_queues_param(url: &str) -> Result<(String, Option<QueueKind>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut kind = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("queues", "classic")) => kind = Some(QueueKind::Classic),
            Some(("queues", "quorum")) => kind = Some(QueueKind::Quorum),
            Some(("queues", other)) => {
                return Err(format!(
                    "queues={other:?}: the kinds are classic and quorum"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, kind))
}

/// The user name of a broker URL; `guest` when it names none (lapin's default).
fn url_user(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|u| u.authority.userinfo.username)
        .unwrap_or_else(|_| "guest".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_classic_broker() {
        let b = Brokers::parse("amqp://u:p@h:5672/%2f?heartbeat=10").unwrap();
        assert_eq!(b.urls, ["amqp://u:p@h:5672/%2f?heartbeat=10"]);
        assert_eq!(b.queues, QueueKind::Classic);
        assert_eq!(b.user, "u");
    }

    #[test]
    fn several_hosts_in_one_url_share_credentials_vhost_and_query() {
        let b = Brokers::parse("amqp://u:p@a:5681,b:5682,c/%2fmagi?heartbeat=10").unwrap();
        assert_eq!(
            b.urls,
            [
                "amqp://u:p@a:5681/%2fmagi?heartbeat=10",
                "amqp://u:p@b:5682/%2fmagi?heartbeat=10",
                "amqp://u:p@c/%2fmagi?heartbeat=10"
            ]
        );
        assert_eq!(b.queues, QueueKind::Quorum);
    }

    #[test]
    fn a_list_of_urls_splits_only_where_a_scheme_follows_the_comma() {
        let b = Brokers::parse("amqp://u:p%2Cq@a/%2f,amqps://u:p@b:5671/%2f").unwrap();
        assert_eq!(b.urls, ["amqp://u:p%2Cq@a/%2f", "amqps://u:p@b:5671/%2f"]);
        assert_eq!(b.queues, QueueKind::Quorum);
    }

    #[test]
    fn the_queues_parameter_overrides_the_guess_and_is_not_passed_on() {
        let b = Brokers::parse("amqp://a,b/%2f?queues=classic&heartbeat=5").unwrap();
        assert_eq!(b.queues, QueueKind::Classic);
        assert_eq!(
            b.urls,
            ["amqp://a/%2f?heartbeat=5", "amqp://b/%2f?heartbeat=5"]
        );
        let one = Brokers::parse("amqp://a/%2f?queues=quorum").unwrap();
        assert_eq!(
            (one.queues, one.urls[0].as_str()),
            (QueueKind::Quorum, "amqp://a/%2f")
        );
    }

    #[test]
    fn hostile_broker_options_are_refused_without_their_passwords() {
        for spec in [
            "",
            "amqp://u:secret@a,,b/%2f",
            "http://u:secret@a/",
            "amqp://u:secret@a/%2f?queues=mirrored",
            "amqp://u:secret@a/%2f?queues=classic,amqp://u:secret@b/%2f?queues=quorum",
            "amqp://u:secret@a/%2f,amqp://v:secret@b/%2f",
            "amqp://u:secret@a:notaport/%2f",
        ] {
            let err = Brokers::parse(spec).unwrap_err().to_string();
            assert!(err.contains("broker"), "{spec}: {err}");
            assert!(!err.contains("secret"), "{spec}: {err}");
        }
    }
}
