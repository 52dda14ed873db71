//! Reading the original MAGI's exported records (`mongoexport` of `magi.experiment_data`).
//!
//! The input is one JSON document per line (or one JSON array of documents) in MongoDB
//! extended JSON: `{"$oid": ..}`, `{"$date": ..}`, `{"$numberLong": ..}` and friends are
//! turned into plain values. Each document's `host`, `agent` and `created` become the
//! record's own fields, `_id` is dropped, and every other key goes into `data`.
use magi_proto::{Object, Record};
use serde_json::{Number, Value};

/// A document that cannot be turned into a record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportError {
    /// 1-based line of the input where the document starts.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The result of parsing an export: the records, and the documents that were rejected.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Records in input order.
    pub records: Vec<Record>,
    /// Rejected documents.
    pub errors: Vec<ImportError>,
}

/// Parses an export. `run` is the run name given to every record.
pub fn parse_export(text: &str, run: &str) -> Parsed {
    let mut out = Parsed::default();
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let offset = text.len() - trimmed.len();
        let first_line = text[..offset].matches('\n').count() + 1;
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(docs) => {
                for (i, doc) in docs.into_iter().enumerate() {
                    match to_record(doc, run) {
                        Ok(r) => out.records.push(r),
                        Err(message) => out.errors.push(ImportError {
                            line: first_line,
                            message: format!("document {}: {message}", i + 1),
                        }),
                    }
                }
            }
            Err(e) => out.errors.push(ImportError {
                line: e.line(),
                message: format!("not a JSON array: {e}"),
            }),
        }
        return out;
    }
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let doc = match serde_json::from_str::<Value>(l) {
            Ok(d) => d,
            Err(e) => {
                out.errors.push(ImportError {
                    line: line_no,
                    message: format!("not JSON: {e}"),
                });
                continue;
            }
        };
        match to_record(doc, run) {
            Ok(r) => out.records.push(r),
            Err(message) => out.errors.push(ImportError {
                line: line_no,
                message,
            }),
        }
    }
    out
}

/// Turns one exported document into a record.
pub fn to_record(doc: Value, run: &str) -> Result<Record, String> {
    let Value::Object(map) = plain(doc)? else {
        return Err("a document must be a JSON object".into());
    };
    let mut data = Object::new();
    let (mut host, mut agent, mut created) = (None, None, None);
    for (k, v) in map {
        match k.as_str() {
            "_id" => {}
            "host" => host = Some(string_field("host", v)?),
            "agent" => agent = Some(string_field("agent", v)?),
            "created" => {
                created = Some(match &v {
                    Value::Number(n) => n.as_f64().ok_or("`created` is not a number")?,
                    Value::String(s) => s
                        .parse::<f64>()
                        .map_err(|_| format!("`created` is not a time: {s:?}"))?,
                    _ => return Err(format!("`created` must be epoch seconds, found {v}")),
                })
            }
            _ => {
                data.insert(k, v);
            }
        }
    }
    let host = host.ok_or("no `host` field")?;
    let agent = agent.ok_or("no `agent` field")?;
    let created = created.ok_or("no `created` field")?;
    if !created.is_finite() {
        return Err("`created` is not a finite number".into());
    }
    Ok(Record {
        run: run.to_string(),
        agent,
        host,
        created,
        data,
    })
}

fn string_field(name: &str, v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("`{name}` must be a string, found {other}")),
    }
}

/// Replaces MongoDB extended JSON wrappers with plain JSON values (recursively).
/// `$date` becomes epoch seconds (a float), `$oid` its hex string.
pub fn plain(v: Value) -> Result<Value, String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(plain)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some((k, inner)) = map.iter().next() {
                    if let Some(x) = extended(k, inner)? {
                        return Ok(x);
                    }
                }
            }
            let mut out = Object::new();
            for (k, v) in map {
                out.insert(k, plain(v)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other),
    }
}

/// One extended-JSON wrapper `{key: inner}`, or None if `key` is not one.
fn extended(key: &str, inner: &Value) -> Result<Option<Value>, String> {
    let num_text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    Ok(Some(match key {
        "$oid" | "$symbol" => match inner {
            Value::String(s) => Value::String(s.clone()),
            _ => return Err(format!("bad {key}: {inner}")),
        },
        "$numberLong" | "$numberInt" => {
            let t = num_text(inner).ok_or_else(|| format!("bad {key}: {inner}"))?;
            Value::from(t.parse::<i64>().map_err(|_| format!("bad {key}: {t:?}"))?)
        }
        "$numberDouble" | "$numberDecimal" => {
            let t = num_text(inner).ok_or_else(|| format!("bad {key}: {inner}"))?;
            let f = t.parse::<f64>().map_err(|_| format!("bad {key}: {t:?}"))?;
            Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        "$date" => {
            let secs = match inner {
                Value::Number(n) => n.as_f64().ok_or("bad $date")? / 1000.0,
                Value::String(s) => {
                    rfc3339_seconds(s).ok_or_else(|| format!("bad $date: {s:?}"))?
                }
                Value::Object(m) => match m.get("$numberLong") {
                    Some(v) => {
                        let t = num_text(v).ok_or("bad $date")?;
                        t.parse::<i64>().map_err(|_| format!("bad $date: {t:?}"))? as f64 / 1000.0
                    }
                    None => return Err(format!("bad $date: {inner}")),
                },
                _ => return Err(format!("bad $date: {inner}")),
            };
            Value::from(secs)
        }
        "$timestamp" => match inner.get("t").and_then(Value::as_i64) {
            Some(t) => Value::from(t),
            None => return Err(format!("bad $timestamp: {inner}")),
        },
        _ => return Ok(None),
    }))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into epoch seconds.
pub fn rfc3339_seconds(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = format!("0.{}", s.get(start..i)?).parse().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" | "" => 0,
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.get(3..4) == Some(":") =>
        {
            let v =
                tz.get(1..3)?.parse::<i64>().ok()? * 3600 + tz.get(4..6)?.parse::<i64>().ok()? * 60;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn original_line_becomes_a_record() {
        let line = r#"{ "_id" : { "$oid" : "53f7ad5f483e67125d0ad467" }, "created" : 1408740703.076461, "packets" : 0, "trafficDirection" : "in", "bytes" : 0, "agent" : "monitor_agent", "host" : "servernode", "peerNode" : "clientnode", "intfName" : "eth5" }"#;
        let p = parse_export(line, "cs");
        assert!(p.errors.is_empty());
        let r = &p.records[0];
        assert_eq!(
            (r.run.as_str(), r.agent.as_str(), r.host.as_str()),
            ("cs", "monitor_agent", "servernode")
        );
        assert_eq!(r.created, 1408740703.076461);
        assert_eq!(
            Value::Object(r.data.clone()),
            json!({"packets": 0, "trafficDirection": "in", "bytes": 0, "peerNode": "clientnode", "intfName": "eth5"})
        );
    }

    #[test]
    fn extended_json_is_flattened() {
        let v = plain(json!({"a": {"$numberLong": "12"}, "b": {"$date": "2014-08-22T20:51:43.500Z"}, "c": {"$date": {"$numberLong": "1000"}}, "d": [{"$numberDouble": "1.5"}]})).unwrap();
        assert_eq!(v, json!({"a": 12, "b": 1408740703.5, "c": 1.0, "d": [1.5]}));
        let r = to_record(
            json!({"created": {"$date": 1500}, "host": "h", "agent": "a"}),
            "r",
        )
        .unwrap();
        assert_eq!(r.created, 1.5);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let p = parse_export(
            "{\"host\":\"h\",\"agent\":\"a\",\"created\":1}\n\nnot json\n{\"host\":\"h\"}\n[1]\n",
            "r",
        );
        assert_eq!(p.records.len(), 1);
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(p.errors[1].message.contains("agent"));
    }

    #[test]
    fn json_array_exports_are_read() {
        let p = parse_export("[{\"host\":\"h\",\"agent\":\"a\",\"created\":1},{\"host\":\"h\",\"agent\":\"a\",\"created\":2}]", "r");
        assert_eq!(p.records.len(), 2);
    }

    #[test]
    fn rfc3339_offsets() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_seconds("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(rfc3339_seconds("2000-02-29T00:00:00Z"), Some(951782400.0));
        assert_eq!(rfc3339_seconds("nope"), None);
        assert_eq!(rfc3339_seconds("2014-08-22T20:51:43+1\u{e9}00"), None);
        assert_eq!(rfc3339_seconds("2014-08-22T20:51:43.\u{e9}Z"), None);
        assert_eq!(rfc3339_seconds("2014-\u{e9}8-22T20:51:43Z"), None);
    }
}
