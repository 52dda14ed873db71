//! # magi-data: the data layer of MAGI-rs
//!
//! Agents produce [`Record`]s (`{run, agent, host, created, data}`); the node agents ship
//! them over the bus to the orchestrator, which stores them here. This crate holds:
//!
//! - [`Store`]: the record store, SQLite by default (one `data.sqlite` file in a run's
//!   record directory, WAL mode) or PostgreSQL when opened with a `postgres://` URL;
//!   queried by run, agent, host, equality on data fields and time range ([`Query`]);
//! - [`Writer`]: a background thread that batches records into a store, safe to feed
//!   from async code;
//! - [`import`]: reads the original MAGI's exported MongoDB records (one JSON document
//!   per line, MongoDB extended JSON);
//! - [`graph`]: the original `magi_graph` configuration (both formats) and PNG plots;
//! - [`web`]: the live traffic page (`traffic.html`) fed by server-sent events.
//!
//! ```no_run
//! use magi_data::{Query, Store};
//! # fn main() -> Result<(), magi_data::StoreError> {
//! let mut store = Store::open("runs/r1/data.sqlite")?;
//! let rec = magi_proto::Record {
//!     run: "r1".into(), agent: "monitor_agent".into(), host: "servernode".into(),
//!     created: 1408740703.07, data: serde_json::Map::new(),
//! };
//! store.insert_batch(&[rec])?;
//! store.flush()?;
//! let out = store.query(&Query::new().agent("monitor_agent").field("peerNode", "clientnode"))?;
//! # let _ = out; Ok(()) }
//! ```

pub mod graph;
pub mod import;
mod pg;
mod sql;
mod sqlite;
mod store;
pub mod web;
mod writer;

pub use magi_proto::{Object, Record};
pub use store::{
    is_postgres_url, sqlite_path, Backend, Query, Store, StoreError, StoredRecord, DATA_FILE,
};
pub use writer::{Writer, WriterStats};
