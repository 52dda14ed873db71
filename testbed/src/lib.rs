//! # magi-testbed: a testbed on one machine
//!
//! The original topology files (ns-2/Emulab `.tcl`, unchanged) or a plain YAML topology
//! become network namespaces joined by shaped links, so a procedure can be tried across
//! real links, a router and LANs before it goes to the testbed.
//!
//! - [`topology`]: the validated topology (nodes, links, LANs, `tb-*` settings), read by
//!   [`tcl`] (the real `tclsh` with our stand-in for `Simulator` and `tb_compat.tcl`) or
//!   [`yaml`];
//! - [`plan`]: the address plan (one subnet per link or LAN, from 198.18.0.0/15 by
//!   default, never overlapping the host's networks) and [`routes`]: static shortest-path
//!   routes for every node;
//! - [`units`]: ns-2's spellings of bandwidth and delay.

#![warn(missing_docs)]

pub mod plan;
pub mod routes;
pub mod tcl;
pub mod topology;
pub mod units;
pub mod yaml;

pub use plan::{AddressPlan, Net};
pub use topology::{read, Topology, TopologyError};
