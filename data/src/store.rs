//! The store front: [`Store`], [`Query`], the [`Backend`] trait and its errors.
use std::path::{Path, PathBuf};

use magi_proto::{Object, Record};
use serde_json::Value;

/// The file name of a run's store inside its record directory.
pub const DATA_FILE: &str = "data.sqlite";

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An SQLite error, with the store's path.
    #[error("SQLite store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL error, with the store's URL (without password).
    #[error("PostgreSQL store {url}: {source}")]
    Postgres {
        /// The URL, password removed.
        url: String,
        /// The underlying error.
        #[source]
        source: postgres::Error,
    },
    /// The store's target (path or URL) is unusable.
    #[error("invalid store {target}: {reason}")]
    InvalidTarget {
        /// What the user gave.
        target: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A store that must exist (for reading) does not.
    #[error("no record store at {0} (expected a run's {DATA_FILE}, a directory holding one, or a postgres:// URL)")]
    NotFound(String),
    /// A query the store cannot run.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A stored row whose data is not a JSON object.
    #[error("corrupt record {id} in {store}: {reason}")]
    Corrupt {
        /// The store.
        store: String,
        /// Row id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The background writer stopped.
    #[error("the store writer has stopped{0}")]
    WriterClosed(String),
}

/// A record as read back, with its row id (increasing in insertion order).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Row id: later inserts have larger ids (used to follow a store live).
    pub id: i64,
    /// The record.
    pub record: Record,
}

/// A query: every condition set must hold. Results are sorted by `created`, then id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Only this run.
    pub run: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Equality on data fields (the original's filter maps), all must match.
    pub fields: Vec<(String, Value)>,
    /// `created >= from` (epoch seconds).
    pub from: Option<f64>,
    /// `created <= to` (epoch seconds).
    pub to: Option<f64>,
    /// Only rows with an id greater than this (follow a store as it grows).
    pub after_id: Option<i64>,
    /// At most this many rows; with `after_id`, the ones with the smallest ids.
    pub limit: Option<usize>,
}

impl Query {
    /// A query matching every record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restricts to one run.
    pub fn run(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }

    /// Restricts to one agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Restricts to one host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds an equality condition on a data field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Adds the conditions of one of the original's filter maps: `host`, `agent` and
    /// `run` select the record's own columns (string values), `created` an exact time,
    /// every other key a data field.
    pub fn filter_map(mut self, filter: &Object) -> Self {
        for (k, v) in filter {
            match (k.as_str(), v) {
                ("host", Value::String(s)) => self.host = Some(s.clone()),
                ("agent", Value::String(s)) => self.agent = Some(s.clone()),
                ("run", Value::String(s)) => self.run = Some(s.clone()),
                ("created", Value::Number(n)) if n.as_f64().is_some() => {
                    let t = n.as_f64();
                    self.from = t;
                    self.to = t;
                }
                _ => self.fields.push((k.clone(), v.clone())),
            }
        }
        self
    }

    /// Restricts to `from <= created <= to` (either bound optional).
    pub fn between(mut self, from: Option<f64>, to: Option<f64>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// Only rows inserted after the row with this id.
    pub fn after(mut self, id: i64) -> Self {
        self.after_id = Some(id);
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether a record satisfies the query's conditions (not `after_id` nor `limit`),
    /// with the same equality as the stores (numbers compare by value).
    pub fn matches(&self, r: &Record) -> bool {
        if self.run.as_deref().is_some_and(|x| x != r.run)
            || self.agent.as_deref().is_some_and(|x| x != r.agent)
            || self.host.as_deref().is_some_and(|x| x != r.host)
            || self.from.is_some_and(|t| r.created < t)
            || self.to.is_some_and(|t| r.created > t)
        {
            return false;
        }
        self.fields
            .iter()
            .all(|(k, want)| r.data.get(k).is_some_and(|have| json_eq(have, want)))
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// A storage engine for records.
pub trait Backend: Send {
    /// Inserts records in one transaction.
    fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError>;
    /// Runs a query; rows sorted by `created`, then id. With `after_id` and `limit`, the
    /// rows kept are those with the smallest ids.
    fn query(&mut self, q: &Query) -> Result<Vec<StoredRecord>, StoreError>;
    /// Number of stored records.
    fn count(&mut self) -> Result<u64, StoreError>;
    /// The largest row id (0 for an empty store).
    fn last_id(&mut self) -> Result<i64, StoreError>;
    /// Makes everything inserted so far durable.
    fn flush(&mut self) -> Result<(), StoreError>;
    /// Where the store lives, for messages (no password).
    fn describe(&self) -> String;
    /// Re-establishes a lost connection (a no-op where there is none).
    fn reconnect(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A record store: SQLite for a path, PostgreSQL for a `postgres://` URL.
pub struct Store {
    inner: Box<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("at", &self.inner.describe())
            .finish()
    }
}

/// Whether a store target names PostgreSQL.
pub fn is_postgres_url(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// Resolves a path target: an existing directory means its `data.sqlite`, an existing
/// file is the database; a new path is a file when it ends in `.sqlite`, `.sqlite3` or
/// `.db`, else a (run record) directory that will hold `data.sqlite`.
pub fn sqlite_path(target: &str) -> PathBuf {
    let p = Path::new(target);
    if p.is_dir() {
        return p.join(DATA_FILE);
    }
    if p.exists() {
        return p.to_path_buf();
    }
    match p.extension().and_then(|e| e.to_str()) {
        Some("sqlite" | "sqlite3" | "db") => p.to_path_buf(),
        _ => p.join(DATA_FILE),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `target`: a `postgres://` or
    /// `postgresql://` URL (optional `table=NAME` parameter, default `magi_records`),
    /// a directory or an SQLite file path (see [`sqlite_path`]).
    pub fn open(target: &str) -> Result<Store, StoreError> {
        if is_postgres_url(target) {
            return Ok(Store {
                inner: Box::new(crate::pg::PgStore::connect(target)?),
            });
        }
        let path = sqlite_path(target);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::InvalidTarget {
                target: target.to_string(),
                reason: format!("cannot create directory {}: {e}", parent.display()),
            })?;
        }
        Ok(Store {
            inner: Box::new(crate::sqlite::SqliteStore::open(&path, true)?),
        })
    }

    /// Opens an existing store for reading: a missing SQLite file is
    /// [`StoreError::NotFound`] rather than a new empty store.
    pub fn open_existing(target: &str) -> Result<Store, StoreError> {
        if is_postgres_url(target) {
            return Self::open(target);
        }
        let path = sqlite_path(target);
        if !path.is_file() {
            return Err(StoreError::NotFound(path.display().to_string()));
        }
        Ok(Store {
            inner: Box::new(crate::sqlite::SqliteStore::open(&path, false)?),
        })
    }

    /// Wraps another backend.
    pub fn from_backend(inner: Box<dyn Backend>) -> Store {
        Store { inner }
    }

    /// Inserts records in one transaction.
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.inner.insert_batch(records)
    }

    /// Inserts one record.
    pub fn insert(&mut self, record: &Record) -> Result<(), StoreError> {
        self.inner.insert_batch(std::slice::from_ref(record))
    }

    /// Runs a query.
    pub fn query(&mut self, q: &Query) -> Result<Vec<StoredRecord>, StoreError> {
        if let Some((k, _)) = q.fields.iter().find(|(k, _)| k.is_empty()) {
            return Err(StoreError::InvalidQuery(format!("empty field name {k:?}")));
        }
        if let (Some(a), Some(b)) = (q.from, q.to) {
            if a > b {
                return Err(StoreError::InvalidQuery(format!(
                    "time range is empty: from {a} is after to {b}"
                )));
            }
        }
        self.inner.query(q)
    }

    /// Number of stored records.
    pub fn count(&mut self) -> Result<u64, StoreError> {
        self.inner.count()
    }

    /// The largest row id (0 for an empty store): follow the store with `Query::after`.
    pub fn last_id(&mut self) -> Result<i64, StoreError> {
        self.inner.last_id()
    }

    /// Makes everything inserted so far durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    /// Re-establishes a lost connection to a server store (PostgreSQL); a no-op for
    /// SQLite or a live connection.
    pub fn reconnect(&mut self) -> Result<(), StoreError> {
        self.inner.reconnect()
    }

    /// Where the store lives, for messages.
    pub fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(host: &str, created: f64, data: Value) -> Record {
        Record {
            run: "r".into(),
            agent: "monitor_agent".into(),
            host: host.into(),
            created,
            data: data.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn filter_map_sends_columns_to_columns() {
        let f = json!({"host": "servernode", "peerNode": "clientnode", "bytes": 5});
        let q = Query::new().filter_map(f.as_object().unwrap());
        assert_eq!(q.host.as_deref(), Some("servernode"));
        assert_eq!(q.fields.len(), 2);
        assert!(q.matches(&rec(
            "servernode",
            1.0,
            json!({"peerNode": "clientnode", "bytes": 5.0})
        )));
        assert!(!q.matches(&rec(
            "clientnode",
            1.0,
            json!({"peerNode": "clientnode", "bytes": 5})
        )));
        assert!(!q.matches(&rec("servernode", 1.0, json!({"peerNode": "clientnode"}))));
    }

    #[test]
    fn time_bounds_are_inclusive() {
        let q = Query::new().between(Some(1.0), Some(2.0));
        assert!(q.matches(&rec("h", 1.0, json!({}))));
        assert!(q.matches(&rec("h", 2.0, json!({}))));
        assert!(!q.matches(&rec("h", 2.5, json!({}))));
    }
}
