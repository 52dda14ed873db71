//! The SQLite backend: one file per run, WAL mode, data as JSON text.
use std::path::Path;
use std::time::Duration;

use magi_proto::{Object, Record};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OpenFlags};
use serde_json::Value;

use crate::sql::{stored_record, time_order, Param, QuerySql};
use crate::store::{Backend, Query, StoreError, StoredRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id      INTEGER PRIMARY KEY,
    run     TEXT NOT NULL,
    agent   TEXT NOT NULL,
    host    TEXT NOT NULL,
    created REAL NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_agent_host_created ON records (agent, host, created);
CREATE INDEX IF NOT EXISTS records_created ON records (created);
";

/// A store in one SQLite file.
pub(crate) struct SqliteStore {
    conn: Connection,
    path: String,
}

impl SqliteStore {
    /// Opens the file (creating it and the schema when `create`), in WAL mode.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // journal_mode returns a row; WAL lets readers (magi web, magi graph) run beside the writer.
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteStore { conn, path: shown })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// SQL value equal to what `json_extract` yields for this JSON value.
fn sql_value(v: &Value) -> Param {
    match v {
        Value::Null => Param::Null,
        Value::Bool(b) => Param::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Param::Integer(i),
            None => Param::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Param::Text(s.clone()),
        other => Param::Text(other.to_string()),
    }
}

/// `$."key"` for json_extract; keys with quotes or backslashes cannot be addressed.
fn json_path(key: &str) -> Result<String, StoreError> {
    if key.contains('"') || key.contains('\\') {
        return Err(StoreError::InvalidQuery(format!(
            "field name {key:?} has a quote or backslash"
        )));
    }
    Ok(format!("$.\"{key}\""))
}

impl Backend for SqliteStore {
    fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        {
            let mut st = tx
                .prepare_cached("INSERT INTO records (run, agent, host, created, data) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), source: e })?;
            for r in records {
                let data = Value::Object(r.data.clone()).to_string();
                st.execute(rusqlite::params![r.run, r.agent, r.host, r.created, data])
                    .map_err(|e| StoreError::Sqlite {
                        path: self.path.clone(),
                        source: e,
                    })?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn query(&mut self, q: &Query) -> Result<Vec<StoredRecord>, StoreError> {
        let select = "SELECT id, run, agent, host, created, data FROM records WHERE 1=1";
        let mut s = QuerySql::new(select.into(), q, '?');
        for (k, v) in &q.fields {
            let path = s.param(Param::Text(json_path(k)?));
            let condition = match v {
                Value::Null => format!(" AND json_type(data, {path}) = 'null'"),
                Value::Bool(b) => format!(" AND json_type(data, {path}) = '{b}'"),
                _ => {
                    let value = s.param(sql_value(v));
                    format!(" AND json_extract(data, {path}) = {value}")
                }
            };
            s.sql.push_str(&condition);
        }
        let (sql, params) = s.finish(q);
        let params: Vec<SqlValue> = params
            .into_iter()
            .map(|p| match p {
                Param::Null => SqlValue::Null,
                Param::Text(t) => SqlValue::Text(t),
                Param::Real(f) => SqlValue::Real(f),
                Param::Integer(i) => SqlValue::Integer(i),
            })
            .collect();
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut st = self.conn.prepare(&sql).map_err(err)?;
        let rows = st
            .query_map(params_from_iter(params.iter()), |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, f64>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(stored_record(&path, row.map_err(err)?)?);
        }
        time_order(q, &mut out);
        Ok(out)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn last_id(&mut self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM records", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        // Commits are durable in WAL mode; a passive checkpoint keeps the WAL short.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }

    fn describe(&self) -> String {
        self.path.clone()
    }
}

/// Parses a stored data column into an object.
pub(crate) fn parse_data(text: &str) -> Result<Object, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("data is not a JSON object: {other}")),
        Err(e) => Err(format!("data is not JSON: {e}")),
    }
}
