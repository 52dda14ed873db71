//! A small HTTP/1.1 server and client over tokio TCP, with `httparse` for the headers.
//!
//! Why not hyper: the agents need one GET shape, exact control of the socket (the client
//! binds its source address so per-peer traffic can be told apart), and curl-like timings
//! (`time_starttransfer` is the first response byte); and a 2-core machine builds this in
//! seconds. What is supported: keep-alive, `Content-Length` and chunked response bodies,
//! read-to-close bodies, bounded heads, timeouts. What is not: TLS, HTTP/2, request bodies
//! beyond discarding them, pipelining beyond sequential requests on one connection.

pub mod client;
pub mod content;
pub mod server;

/// Longest request or response head read (request line or status line plus headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers parsed in one head.
pub const MAX_HEADERS: usize = 64;
