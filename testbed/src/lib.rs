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
//! - [`units`]: ns-2's spellings of bandwidth and delay;
//! - [`lab`]: a topology laid out under a name (namespaces, interfaces, hosts map) and its
//!   state file; [`up()`], [`down()`] and [`status`] build, remove and describe it, with
//!   [`shaping`] (htb, netem, nftables loss) and [`system`] (iproute2 batches, setns);
//! - [`control`]: the control network a `magi-node` per namespace reaches the broker by.

#![warn(missing_docs)]

pub mod control;
pub mod down;
pub mod error;
pub mod lab;
pub mod plan;
pub mod routes;
pub mod shaping;
pub mod status;
pub mod system;
pub mod tcl;
pub mod topology;
pub mod units;
pub mod up;
pub mod yaml;

pub use down::{down, DownReport};
pub use error::TestbedError;
pub use lab::Lab;
pub use plan::{AddressPlan, Net};
pub use topology::{read, Topology, TopologyError};
pub use up::{up, up_with, UpOptions};
