//! # magi-agents: the standard agents, as Rust programs speaking the agent protocol
//!
//! Each agent is a process started by the node agent, talking line-delimited JSON on
//! stdin/stdout (`magi_proto::agent`). The pieces:
//!
//! - [`runtime`]: the protocol loop; an agent is a struct implementing [`runtime::Agent`].
//! - [`hosts`]: node addressing as agents see it (own address, node name → address).
//! - [`args`]: typed access to call arguments and execargs.
//! - [`netif`]: this node's interfaces and subnets.
//! - [`distribution`] and [`random`]: the original's distribution strings, parsed safely.
//! - [`http`]: the HTTP/1.1 server and client: hyper over sockets the agents open themselves.
//! - The agents: [`http_server`] (module `apache`), [`http_client`] (module
//!   `http_client`), [`pktcounters`] (module `pktcounters`), [`link_up_down`] (module
//!   `link_up_down`: links changed during a run on a testbed); each has a thin binary in
//!   `src/bin/` and a module directory with its manifest in `modules/`.

pub mod args;
pub mod distribution;
pub mod flooder;
pub mod hosts;
pub mod http;
pub mod http_client;
pub mod http_server;
pub mod link_up_down;
pub mod netif;
pub mod pktcounters;
pub mod random;
pub mod runtime;
