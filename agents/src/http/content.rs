//! What the original's apache agent served (magi-spec §5.2): `/getsize.py?length=N`
//! (exactly N bytes), `/gethost.py` (who is asking), and a fixed `/100k.bin`.

use std::net::IpAddr;
use std::sync::OnceLock;

use hyper::body::Bytes;

use crate::hosts::{canonical, Hosts};
use crate::random::Rng;

/// Size of `/100k.bin`, and of the blocks larger `/getsize.py` bodies are made of.
pub const BLOCK: usize = 100_000;

/// The body of `/100k.bin`: fixed pseudo-random bytes (the same in every run).
pub fn block_100k() -> &'static [u8] {
    static BLOCK_100K: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK_100K.get_or_init(|| {
        let mut rng = Rng::seeded(0x100_000);
        let mut v = Vec::with_capacity(BLOCK);
        while v.len() < BLOCK {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(BLOCK);
        v
    })
}

/// Small `/getsize.py` bodies: a repeated digit block, as the original's.
fn digits() -> &'static [u8] {
    static DIGITS: OnceLock<Vec<u8>> = OnceLock::new();
    DIGITS.get_or_init(|| b"0123456789".iter().copied().cycle().take(BLOCK).collect())
}

/// A response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Bytes made for this response.
    Owned(Bytes),
    /// A shared static buffer.
    Static(&'static [u8]),
    /// `/getsize.py`: `n` bytes, produced piece by piece without allocating `n`.
    Sized(u64),
}

impl Body {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Owned(v) => v.len() as u64,
            Body::Static(s) => s.len() as u64,
            Body::Sized(n) => *n,
        }
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The piece of the body that starts at `offset` (empty at the end), at most 100 kB,
    /// shared rather than copied.
    pub fn piece(&self, offset: u64) -> Bytes {
        let (whole, start) = match self {
            Body::Owned(b) => {
                let start = (offset as usize).min(b.len());
                return b.slice(start..(start + BLOCK).min(b.len()));
            }
            Body::Static(s) => (*s, (offset as usize).min(s.len())),
            Body::Sized(n) => {
                // Up to 100 000 bytes: digits; more: whole 100k.bin blocks, then a tail.
                let source = if *n <= BLOCK as u64 {
                    digits()
                } else {
                    block_100k()
                };
                let pos = (offset % BLOCK as u64) as usize;
                let len = ((BLOCK - pos) as u64).min(n.saturating_sub(offset)) as usize;
                return Bytes::from_static(&source[pos..pos + len]);
            }
        };
        Bytes::from_static(&whole[start..(start + BLOCK).min(whole.len())])
    }
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Body,
}

impl Response {
    fn text(status: u16, text: String) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: Body::Owned(text.into_bytes().into()),
        }
    }

    /// A plain-text error response.
    pub fn error(status: u16, message: &str) -> Response {
        Response::text(status, format!("{message}\n"))
    }
}

/// Answers `GET`/`HEAD` `target` (path and query) for a client at `peer`.
pub fn route(method: &str, target: &str, peer: IpAddr, hosts: &Hosts) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::error(405, "only GET and HEAD are served");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/getsize.py" => match query_value(query, "length").map(|v| v.parse::<u64>()) {
            Some(Ok(n)) => Response {
                status: 200,
                content_type: "text/plain",
                body: Body::Sized(n),
            },
            Some(Err(_)) => Response::error(400, "length must be a whole number of bytes"),
            None => Response::error(400, "usage: /getsize.py?length=<bytes>"),
        },
        "/gethost.py" => {
            let ip = canonical(peer);
            let name = hosts.name_of(ip).unwrap_or("an unknown host");
            Response {
                status: 200,
                content_type: "text/html",
                body: Body::Owned(
                    format!(
                        "<html><head><title>gethost</title></head><body>\n\
                         <p>You are <b>{}</b> ({ip})</p>\n</body></html>\n",
                        html_escape(name)
                    )
                    .into_bytes()
                    .into(),
                ),
            }
        }
        "/100k.bin" => Response {
            status: 200,
            content_type: "application/octet-stream",
            body: Body::Static(block_100k()),
        },
        "/" | "/index.html" => Response {
            status: 200,
            content_type: "text/html",
            body: Body::Static(
                b"<html><body><ul><li><a href=\"/getsize.py?length=1000\">/getsize.py?length=N</a></li>\
                  <li><a href=\"/gethost.py\">/gethost.py</a></li>\
                  <li><a href=\"/100k.bin\">/100k.bin</a></li></ul></body></html>\n",
            ),
        },
        _ => Response::error(404, "not found"),
    }
}

fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(b: &Body) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let p = b.piece(out.len() as u64);
            if p.is_empty() {
                return out;
            }
            out.extend_from_slice(&p);
        }
    }

    fn peer() -> IpAddr {
        "127.0.1.1".parse().unwrap()
    }

    #[test]
    fn getsize_bodies_have_exactly_the_asked_length() {
        let hosts = Hosts::default();
        for n in [0u64, 1, 999, 100_000, 100_001, 250_123] {
            let r = route("GET", &format!("/getsize.py?length={n}"), peer(), &hosts);
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), n);
            let body = body_of(&r.body);
            assert_eq!(body.len() as u64, n);
            if (1..=100_000).contains(&n) {
                assert!(body.starts_with(b"0123456789"[..(n as usize).min(10)].as_ref()));
            } else if n > 100_000 {
                assert_eq!(&body[..BLOCK], block_100k());
            }
        }
    }

    #[test]
    fn bad_lengths_and_unknown_paths_are_client_errors() {
        let h = Hosts::default();
        assert_eq!(
            route("GET", "/getsize.py?length=-1", peer(), &h).status,
            400
        );
        assert_eq!(
            route("GET", "/getsize.py?length=1e3", peer(), &h).status,
            400
        );
        assert_eq!(route("GET", "/getsize.py", peer(), &h).status, 400);
        assert_eq!(route("GET", "/etc/passwd", peer(), &h).status, 404);
        assert_eq!(route("POST", "/100k.bin", peer(), &h).status, 405);
        assert_eq!(route("GET", "/100k.bin", peer(), &h).body.len(), 100_000);
        assert_eq!(
            route("GET", "/getsize.py?x=1&length=7", peer(), &h)
                .body
                .len(),
            7
        );
    }

    #[test]
    fn gethost_names_the_requester_from_the_host_map() {
        let h = Hosts::from_pairs([("clientnode", peer())]);
        let r = route("GET", "/gethost.py", peer(), &h);
        let text = String::from_utf8(body_of(&r.body)).unwrap();
        assert!(text.contains("<b>clientnode</b> (127.0.1.1)"), "{text}");
        let r = route("GET", "/gethost.py", "127.0.9.9".parse().unwrap(), &h);
        let text = String::from_utf8(body_of(&r.body)).unwrap();
        assert!(text.contains("unknown host"), "{text}");
    }
}
