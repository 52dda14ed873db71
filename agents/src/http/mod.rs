//! HTTP/1.1 for the standard agents: hyper's HTTP/1 server and client connections over
//! tokio TCP sockets that this module opens itself.
//!
//! The sockets stay ours because the agents need exact control of them: the client binds
//! its source address (so per-peer counters see the node's own address) and times the
//! first response byte as curl's `time_starttransfer`; the server drops a connection whose
//! writes stall ([`io::Watched`]). hyper does the protocol: heads, keep-alive, chunked and
//! read-to-close bodies, interim responses, limits on heads. The wire bytes are those of the
//! hand-written code this replaced (no `Date` header, headers in title case and in the same
//! order), so the traffic a packet counter sees is unchanged; `examples/http_load.rs`
//! measures speed and memory (figures in `docs/agents.md`). Not supported: TLS, HTTP/2,
//! request bodies beyond discarding them.

pub mod client;
pub mod content;
pub mod io;
pub mod server;

/// Longest request or response head read (request line or status line plus headers).
pub const MAX_HEAD: usize = 64 * 1024;
