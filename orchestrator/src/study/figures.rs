//! Summary figures of a run's data: `NAME=FUNC(FIELD) [KEY=VALUE ...]`, e.g.
//! `in_bps=rate(bytes) agent=monitor_agent trafficDirection=in intfName=total`.

use magi_data::{Query, Store};
use magi_proto::Object;
use serde_json::{json, Value};

/// How a figure summarises a field over the matching records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Mean of the field.
    Mean,
    /// Sum of the field.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// How many records match.
    Count,
    /// Value of the last record.
    Last,
    /// Per-second rate of a per-interval counter: the sum over every record but the
    /// first, divided by the seconds from the first record to the last.
    Rate,
}

const FUNCS: [(&str, Func); 7] = [
    ("mean", Func::Mean),
    ("sum", Func::Sum),
    ("min", Func::Min),
    ("max", Func::Max),
    ("count", Func::Count),
    ("last", Func::Last),
    ("rate", Func::Rate),
];

/// A summary figure: `NAME=FUNC(FIELD) [KEY=VALUE ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Its column name.
    pub name: String,
    /// The summary.
    pub func: Func,
    /// The data field (or `created`).
    pub field: String,
    /// The records' filter (`agent`, `host` and data fields, as `magi graph`'s filters).
    pub filter: Object,
    /// The text as given.
    pub spec: String,
}

/// A filter value as typed: a number, `true`/`false`, or text.
fn typed(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() {
            return json!(f);
        }
    }
    match v {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(v),
    }
}

impl Figure {
    /// Parses `NAME=FUNC(FIELD) [KEY=VALUE ...]`.
    pub fn parse(spec: &str) -> Result<Figure, String> {
        let usage = "write NAME=FUNC(FIELD) [KEY=VALUE ...], e.g. `in_bps=rate(bytes) agent=monitor_agent trafficDirection=in intfName=total`; FUNC is mean, sum, min, max, count, last or rate";
        let mut words = spec.split_whitespace();
        let head = words.next().unwrap_or_default();
        let (name, call) = head
            .split_once('=')
            .ok_or_else(|| format!("figure `{spec}`: {usage}"))?;
        let (func, field) = call
            .strip_suffix(')')
            .and_then(|c| c.split_once('('))
            .ok_or_else(|| format!("figure `{spec}`: {usage}"))?;
        let func = FUNCS
            .iter()
            .find(|(n, _)| *n == func)
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("figure `{spec}`: unknown function `{func}`; {usage}"))?;
        if name.is_empty() || field.is_empty() {
            return Err(format!("figure `{spec}`: {usage}"));
        }
        let mut filter = Object::new();
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("figure `{spec}`: the filter `{w}` is not KEY=VALUE"))?;
            // agent, host and run are the record's own columns: always text.
            let v = if ["agent", "host", "run"].contains(&k) {
                json!(v)
            } else {
                typed(v)
            };
            filter.insert(k.to_string(), v);
        }
        Ok(Figure {
            name: name.to_string(),
            func,
            field: field.to_string(),
            filter,
            spec: spec.to_string(),
        })
    }

    /// The figure over a store's records; `None` when no record has the field.
    pub fn compute(&self, store: &mut Store) -> Result<Option<f64>, magi_data::StoreError> {
        let rows = store.query(&Query::new().filter_map(&self.filter))?;
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                let v = match self.field.as_str() {
                    "created" => Some(r.record.created),
                    f => r.record.data.get(f).and_then(Value::as_f64),
                };
                v.map(|v| (r.record.created, v))
            })
            .collect();
        if self.func == Func::Count {
            return Ok(Some(points.len() as f64));
        }
        let Some(&(t0, first)) = points.first() else {
            return Ok(None);
        };
        let values = points.iter().map(|p| p.1);
        Ok(match self.func {
            Func::Mean => Some(values.sum::<f64>() / points.len() as f64),
            Func::Sum => Some(values.sum()),
            Func::Min => values.reduce(f64::min),
            Func::Max => values.reduce(f64::max),
            Func::Last => points.last().map(|p| p.1),
            Func::Rate => {
                let (t1, _) = points[points.len() - 1];
                let span = t1 - t0;
                (span > 0.0).then(|| (values.sum::<f64>() - first) / span)
            }
            Func::Count => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(created: f64, bytes: u64, dir: &str) -> magi_proto::Record {
        magi_proto::Record {
            run: "r".into(),
            agent: "monitor_agent".into(),
            host: "servernode".into(),
            created,
            data: json!({"bytes": bytes, "trafficDirection": dir, "intfName": "total"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn rate_is_the_bytes_after_the_first_record_over_the_time_they_span() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d.sqlite");
        let mut store = Store::open(&path.to_string_lossy()).unwrap();
        store
            .insert_batch(&[
                record(10.0, 999, "in"),
                record(11.0, 100, "in"),
                record(12.0, 300, "in"),
                record(12.0, 7, "out"),
            ])
            .unwrap();
        store.flush().unwrap();
        let f =
            Figure::parse("in_bps=rate(bytes) agent=monitor_agent trafficDirection=in").unwrap();
        assert_eq!(f.compute(&mut store).unwrap(), Some(200.0));
        let f = Figure::parse("n=count(bytes) intfName=total").unwrap();
        assert_eq!(f.compute(&mut store).unwrap(), Some(4.0));
        let f = Figure::parse("m=mean(bytes) trafficDirection=nothing").unwrap();
        assert_eq!(f.compute(&mut store).unwrap(), None);
    }

    #[test]
    fn a_bad_figure_says_how_to_write_one() {
        for bad in ["x", "x=rate", "x=median(bytes)", "x=rate(bytes) agent"] {
            let e = Figure::parse(bad).unwrap_err();
            assert!(e.contains(bad.split_whitespace().next().unwrap()), "{e}");
        }
    }
}
