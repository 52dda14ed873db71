//! Loading a configuration's series from the record store: each series' records sorted
//! by x, with x made relative to the series' first record.
use serde_json::Value;

use super::config::GraphConfig;
use crate::store::{Query, Store, StoreError};

/// The points of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Legend label.
    pub label: Option<String>,
    /// (x, y) points, x relative to the series' first record.
    pub points: Vec<(f64, f64)>,
    /// Records matched but without a numeric x or y.
    pub skipped: usize,
    /// The query that selected the records (for messages).
    pub query: Query,
}

fn numeric(r: &magi_proto::Record, field: &str) -> Option<f64> {
    let v = match field {
        "created" => return Some(r.created),
        _ => r.data.get(field)?,
    };
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// Queries the store for every series of the configuration.
pub fn load_series(store: &mut Store, cfg: &GraphConfig) -> Result<Vec<SeriesData>, StoreError> {
    let mut out = Vec::new();
    for spec in &cfg.series {
        let mut query = Query::new().filter_map(&spec.filter);
        if let Some(a) = &cfg.agent {
            query.agent = Some(a.clone());
        }
        let rows = store.query(&query)?;
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(rows.len());
        let mut skipped = 0;
        for row in &rows {
            match (
                numeric(&row.record, &cfg.x_value),
                numeric(&row.record, &cfg.y_value),
            ) {
                (Some(x), Some(y)) => pts.push((x, y)),
                _ => skipped += 1,
            }
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(&(x0, _)) = pts.first() {
            for p in &mut pts {
                p.0 -= x0;
            }
        }
        out.push(SeriesData {
            label: spec.label.clone(),
            points: pts,
            skipped,
            query,
        });
    }
    Ok(out)
}

/// A description of a query for messages (`agent=monitor_agent host=servernode peerNode=clientnode`).
pub fn describe_query(q: &Query) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("run", &q.run), ("agent", &q.agent), ("host", &q.host)] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    for (k, v) in &q.fields {
        match v {
            Value::String(s) => parts.push(format!("{k}={s}")),
            other => parts.push(format!("{k}={other}")),
        }
    }
    if parts.is_empty() {
        "every record".into()
    } else {
        parts.join(" ")
    }
}
