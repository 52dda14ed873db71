//! The testbed for real: the shared `.tcl` topologies built as network namespaces by the
//! real `magi testbed`, checked from inside (addresses, routes, a ping across the router,
//! the shaped rate of a TCP transfer, loss), brought down (also after kill -9), and the
//! case study run across the two-node topology on the embedded bus.
//!
//! Needs root. Every test holds one lock (namespace tests run one at a time) and uses a
//! testbed name made unique by this process's id; addresses come from 198.18.0.0/15 and no
//! route leads out of the lab.
mod broker;
mod build;
mod feedback;
mod links;
mod runs;
mod support;
