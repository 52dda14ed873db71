//! Typed access to a call's keyword arguments or an agent's `execargs`.
//!
//! AAL authors write numbers as strings and the other way round (`interval: '1'`,
//! `interval: 2`), and the original's Python took both; so numbers are accepted from
//! numeric strings, and distribution strings from numbers. Every error names the argument.

use magi_proto::Object;
use serde_json::Value;

/// A call's arguments (or execargs), with typed getters.
#[derive(Debug, Clone, Default)]
pub struct Args(pub Object);

impl Args {
    /// The raw value of `key`, if given and not `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// True when `key` is given (and not `null`).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The argument names, in the order given.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// An optional number (a JSON number or a numeric string).
    pub fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => number(v)
                .map(Some)
                .ok_or_else(|| format!("argument '{key}' must be a number, not {v}")),
        }
    }

    /// A required number.
    pub fn req_f64(&self, key: &str) -> Result<f64, String> {
        self.f64(key)?
            .ok_or_else(|| format!("missing argument '{key}' (a number)"))
    }

    /// An optional whole number within `[min, max]`.
    pub fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, String> {
        match self.f64(key)? {
            None => Ok(None),
            Some(v) if v.fract() == 0.0 && v >= min as f64 && v <= max as f64 => Ok(Some(v as i64)),
            Some(v) => Err(format!(
                "argument '{key}' must be a whole number from {min} to {max}, not {v}"
            )),
        }
    }

    /// An optional boolean (`true`/`false`, or the strings `"true"`/`"false"`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(format!("argument '{key}' must be true or false, not {v}")),
        }
    }

    /// An optional string; a number is taken as its text (for distribution strings).
    pub fn text(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(format!("argument '{key}' must be a string, not {v}")),
        }
    }

    /// A required string.
    pub fn req_text(&self, key: &str) -> Result<String, String> {
        self.text(key)?
            .ok_or_else(|| format!("missing argument '{key}' (a string)"))
    }

    /// An optional list of strings; a single string is a list of one.
    pub fn text_list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!("argument '{key}' must list strings, not {other}")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(format!(
                "argument '{key}' must be a list of strings, not {v}"
            )),
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Args {
        Args(v.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn numbers_come_from_numbers_and_numeric_strings() {
        let a = args(json!({"a": 2, "b": "2.5", "c": "x", "d": null, "e": [1]}));
        assert_eq!(a.f64("a").unwrap(), Some(2.0));
        assert_eq!(a.f64("b").unwrap(), Some(2.5));
        assert!(a.f64("c").unwrap_err().contains("'c' must be a number"));
        assert_eq!(a.f64("d").unwrap(), None);
        assert!(a.f64("e").is_err());
        assert!(a.req_f64("z").unwrap_err().contains("missing argument 'z'"));
        assert_eq!(a.int("a", 1, 10).unwrap(), Some(2));
        assert!(a.int("b", 1, 10).is_err());
        assert!(a.int("a", 5, 10).is_err());
    }

    #[test]
    fn strings_and_lists_are_lenient_where_aal_authors_are() {
        let a = args(json!({"s": "h1", "l": ["h1", "h2"], "n": 5, "bad": [1], "t": "true"}));
        assert_eq!(a.text_list("s").unwrap(), Some(vec!["h1".to_string()]));
        assert_eq!(a.text_list("l").unwrap().unwrap().len(), 2);
        assert_eq!(a.text("n").unwrap(), Some("5".to_string()));
        assert!(a.text_list("bad").is_err());
        assert_eq!(a.bool("t").unwrap(), Some(true));
        assert!(a.bool("n").is_err());
    }
}
