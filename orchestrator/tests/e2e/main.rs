//! The orchestrator's end-to-end tests, in one test binary: the real `magi` (and
//! `magi-node`) binaries as separate processes, on the embedded bus, over the real
//! RabbitMQ, and across network namespaces.
//!
//! One binary links once and shares [`support`]. Its tests run in parallel; what cannot
//! share the machine takes a lock: the broker tests hold `magi_testkit::BrokerGuard`, the
//! namespace tests `testbed::support::serial`, and every run of the case study's agents on
//! this host's own addresses (an HTTP server on port 80, nftables counters), and every
//! flood, capture or measurement on loopback, [`support::host_agents`].

// `host_agents` is a std mutex held for a whole test on purpose, awaits included: every
// test has a runtime of its own, so no task of another test waits on it in the same one.
#![allow(clippy::await_holding_lock)]

mod support;

mod agents_compat;
mod broker;
mod casestudy;
mod check;
mod cluster;
mod graph;
mod limits;
mod run;
mod stdlib;
mod study;
mod testbed;
