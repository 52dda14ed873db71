//! # magi: the orchestrator and the user's commands
//!
//! - [`cli`]: the command line, one module per command (`check`, `run`, `data`, `graph`, `web`).
//! - [`driver`]: the run loop around the engine, transport-independent.
//! - [`embedded`]: the in-process node agents of the embedded default.
//! - [`console`]: the original's console lines, colours, the live line, JSON records.
//! - [`record`]: the run record directory.
//! - [`recorded`]: run records read back (`runs`, `replay`, `diff`, `sweep`, `export`).
//! - [`simulate`]: a dry run of a procedure on virtual time with simulated nodes.
//! - [`study`]: sweeps of a procedure over parameter values, their table and plots.
//! - [`export`]: a run or a study packed into one archive with an RO-Crate.
//! - [`experiment`]: finding the broker from `--experiment/--project`.
//! - [`methods`]: `magi check`'s warnings about calls to methods agents do not have.
//! - [`testbed_nodes`]: a `magi-node` per namespace of a testbed, for runs over a broker.
pub mod cli;
pub mod console;
pub mod driver;
pub mod embedded;
pub mod experiment;
pub mod export;
pub mod methods;
pub mod record;
pub mod recorded;
pub mod simulate;
pub mod study;
pub mod testbed_nodes;
