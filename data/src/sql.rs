//! The SQL both backends build for a [`Query`]: the conditions on the record's columns, the
//! order and the limit, with numbered parameters. Each backend adds its own conditions on
//! `data` fields (their JSON functions differ) and converts the parameters to its driver's
//! types.

use magi_proto::Record;

use crate::sqlite::parse_data;
use crate::store::{Query, StoreError, StoredRecord};

/// A query parameter, before a backend converts it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    /// SQL NULL.
    Null,
    /// Text.
    Text(String),
    /// A float.
    Real(f64),
    /// An integer.
    Integer(i64),
}

/// A query's SQL being built, and its parameters.
pub(crate) struct QuerySql {
    /// The SQL so far.
    pub sql: String,
    /// The parameters, in placeholder order.
    pub params: Vec<Param>,
    /// `?` (SQLite) or `$` (PostgreSQL), followed by the parameter's number.
    placeholder: char,
}

impl QuerySql {
    /// `select` (which ends in a `WHERE` with a true condition) and the column conditions of
    /// `q`: run, agent, host, time range, records after an id.
    pub fn new(select: String, q: &Query, placeholder: char) -> Self {
        let mut s = QuerySql {
            sql: select,
            params: Vec::new(),
            placeholder,
        };
        for (col, v) in [("run", &q.run), ("agent", &q.agent), ("host", &q.host)] {
            if let Some(v) = v {
                s.condition(col, "=", Param::Text(v.clone()));
            }
        }
        if let Some(t) = q.from {
            s.condition("created", ">=", Param::Real(t));
        }
        if let Some(t) = q.to {
            s.condition("created", "<=", Param::Real(t));
        }
        if let Some(id) = q.after_id {
            s.condition("id", ">", Param::Integer(id));
        }
        s
    }

    /// Adds a parameter; returns its placeholder (`?3`, `$3`).
    pub fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("{}{}", self.placeholder, self.params.len())
    }

    fn condition(&mut self, column: &str, op: &str, p: Param) {
        let placeholder = self.param(p);
        self.sql
            .push_str(&format!(" AND {column} {op} {placeholder}"));
    }

    /// Ends the SQL with the order (by id when paging with `after_id`, so that the limit
    /// cuts at an id; by time otherwise) and the limit.
    pub fn finish(mut self, q: &Query) -> (String, Vec<Param>) {
        if q.after_id.is_some() {
            self.sql.push_str(" ORDER BY id");
        } else {
            self.sql.push_str(" ORDER BY created, id");
        }
        if let Some(n) = q.limit {
            self.sql.push_str(&format!(" LIMIT {n}"));
        }
        (self.sql, self.params)
    }
}

/// A row as both backends select it: id, run, agent, host, created, data (JSON text).
pub(crate) type Row = (i64, String, String, String, f64, String);

/// The record of a row; `store` names the store when the data is not a JSON object.
pub(crate) fn stored_record(store: &str, row: Row) -> Result<StoredRecord, StoreError> {
    let (id, run, agent, host, created, data) = row;
    let data = parse_data(&data).map_err(|reason| StoreError::Corrupt {
        store: store.to_string(),
        id,
        reason,
    })?;
    Ok(StoredRecord {
        id,
        record: Record {
            run,
            agent,
            host,
            created,
            data,
        },
    })
}

/// Puts the rows of a paged query (fetched in id order) in the order every query answers
/// in: by time, then id.
pub(crate) fn time_order(q: &Query, rows: &mut [StoredRecord]) {
    if q.after_id.is_some() {
        rows.sort_by(|a, b| {
            a.record
                .created
                .total_cmp(&b.record.created)
                .then(a.id.cmp(&b.id))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_conditions_are_numbered_in_order_and_paging_orders_by_id() {
        let q = Query {
            agent: Some("a".into()),
            from: Some(1.5),
            after_id: Some(7),
            limit: Some(10),
            ..Query::new()
        };
        let (sql, params) = QuerySql::new("S WHERE TRUE".into(), &q, '$').finish(&q);
        assert_eq!(
            sql,
            "S WHERE TRUE AND agent = $1 AND created >= $2 AND id > $3 ORDER BY id LIMIT 10"
        );
        assert_eq!(
            params,
            vec![Param::Text("a".into()), Param::Real(1.5), Param::Integer(7)]
        );
        let (sql, _) = QuerySql::new("S".into(), &Query::new(), '?').finish(&Query::new());
        assert_eq!(sql, "S ORDER BY created, id");
    }
}
