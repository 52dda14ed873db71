//! The PostgreSQL backend: one table (default `magi_records`), data as `jsonb`.
pub(crate) use magi_proto::redact_url as redact;
use std::str::FromStr;

use magi_proto::Record;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use serde_json::Value;

use crate::sql::{stored_record, time_order, Param, QuerySql, Row};
use crate::store::{Backend, Query, StoreError, StoredRecord};

/// The default table name.
pub(crate) const DEFAULT_TABLE: &str = "magi_records";

/// Rows per INSERT statement.
const CHUNK: usize = 5000;

/// A store in one PostgreSQL table.
pub(crate) struct PgStore {
    client: Client,
    table: String,
    shown: String,
    /// The URL as given, to reconnect.
    target: String,
}

/// Splits our own `table=` parameter off a URL; returns (url for the driver, table).
fn split_table(url: &str) -> Result<(String, String), StoreError> {
    let invalid = |reason: String| StoreError::InvalidTarget {
        target: redact(url),
        reason,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_TABLE.to_string()));
    };
    let mut table = DEFAULT_TABLE.to_string();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("table", t)) => table = t.to_string(),
            _ => kept.push(pair),
        }
    }
    let valid = !table.is_empty()
        && table.len() <= 48
        && table
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(invalid(format!(
            "table name {table:?} must be 1-48 characters of a-z, 0-9 and _, not starting with a digit"
        )));
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, table))
}

impl PgStore {
    /// Connects (no TLS) and creates the table and its index if needed.
    pub(crate) fn connect(target: &str) -> Result<Self, StoreError> {
        let (url, table) = split_table(target)?;
        let shown = format!("{} (table {table})", redact(&url));
        let config = postgres::Config::from_str(&url).map_err(|e| StoreError::Postgres {
            url: shown.clone(),
            source: e,
        })?;
        let mut client = config.connect(NoTls).map_err(|e| StoreError::Postgres {
            url: shown.clone(),
            source: e,
        })?;
        let schema = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                id      BIGSERIAL PRIMARY KEY,
                run     TEXT NOT NULL,
                agent   TEXT NOT NULL,
                host    TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                data    JSONB NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {table}_agent_host_created ON {table} (agent, host, created);
            CREATE INDEX IF NOT EXISTS {table}_created ON {table} (created);"
        );
        // Two connections creating the same table at once can collide in the catalogue:
        // the loser retries and then sees the table.
        let mut attempt = 0;
        loop {
            match client.batch_execute(&schema) {
                Ok(()) => break,
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                }
                Err(e) => {
                    return Err(StoreError::Postgres {
                        url: shown,
                        source: e,
                    })
                }
            }
        }
        Ok(PgStore {
            client,
            table,
            shown,
            target: target.to_string(),
        })
    }

    fn err(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.shown.clone(),
            source,
        }
    }
}

impl Backend for PgStore {
    fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (run, agent, host, created, data)
             SELECT r, a, h, c, d::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[]) AS t(r, a, h, c, d)",
            self.table
        );
        let shown = self.shown.clone();
        let err = |source| StoreError::Postgres {
            url: shown.clone(),
            source,
        };
        let mut tx = self.client.transaction().map_err(err)?;
        let st = tx.prepare(&sql).map_err(err)?;
        for chunk in records.chunks(CHUNK) {
            let runs: Vec<&str> = chunk.iter().map(|r| r.run.as_str()).collect();
            let agents: Vec<&str> = chunk.iter().map(|r| r.agent.as_str()).collect();
            let hosts: Vec<&str> = chunk.iter().map(|r| r.host.as_str()).collect();
            let created: Vec<f64> = chunk.iter().map(|r| r.created).collect();
            let data: Vec<String> = chunk
                .iter()
                .map(|r| Value::Object(r.data.clone()).to_string())
                .collect();
            tx.execute(&st, &[&runs, &agents, &hosts, &created, &data])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn query(&mut self, q: &Query) -> Result<Vec<StoredRecord>, StoreError> {
        let select = format!(
            "SELECT id, run, agent, host, created, data::text FROM {} WHERE TRUE",
            self.table
        );
        let mut s = QuerySql::new(select, q, '$');
        for (k, v) in &q.fields {
            let key = s.param(Param::Text(k.clone()));
            let value = s.param(Param::Text(v.to_string()));
            s.sql
                .push_str(&format!(" AND data -> {key} = {value}::text::jsonb"));
        }
        let (sql, params) = s.finish(q);
        let params: Vec<Box<dyn ToSql + Sync>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    Param::Null => Box::new(None::<String>),
                    Param::Text(t) => Box::new(t),
                    Param::Real(f) => Box::new(f),
                    Param::Integer(i) => Box::new(i),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(&sql, &refs).map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let get = |e| self.err(e);
            let fields: Row = (
                row.try_get(0).map_err(get)?,
                row.try_get(1).map_err(get)?,
                row.try_get(2).map_err(get)?,
                row.try_get(3).map_err(get)?,
                row.try_get(4).map_err(get)?,
                row.try_get(5).map_err(get)?,
            );
            out.push(stored_record(&self.shown, fields)?);
        }
        time_order(q, &mut out);
        Ok(out)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        let row = self
            .client
            .query_one(&format!("SELECT count(*) FROM {}", self.table), &[])
            .map_err(|e| self.err(e))?;
        let n: i64 = row.try_get(0).map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn last_id(&mut self) -> Result<i64, StoreError> {
        let row = self
            .client
            .query_one(
                &format!("SELECT coalesce(max(id), 0)::bigint FROM {}", self.table),
                &[],
            )
            .map_err(|e| self.err(e))?;
        row.try_get(0).map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        // Every batch is committed when inserted.
        Ok(())
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            *self = PgStore::connect(&self.target)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parameter_is_split_off_and_checked() {
        let (u, t) =
            split_table("postgres://root@127.0.0.1/test?table=abc_1&connect_timeout=5").unwrap();
        assert_eq!(u, "postgres://root@127.0.0.1/test?connect_timeout=5");
        assert_eq!(t, "abc_1");
        let (u, t) = split_table("postgres://root@127.0.0.1/test").unwrap();
        assert_eq!(
            (u.as_str(), t.as_str()),
            ("postgres://root@127.0.0.1/test", DEFAULT_TABLE)
        );
        assert!(split_table("postgres://h/db?table=x;drop").is_err());
        assert!(split_table("postgres://h/db?table=1x").is_err());
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
