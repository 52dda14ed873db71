//! Typing of plain scalars as the original's PyYAML (YAML 1.1 resolver) did.
//!
//! Quoted and block scalars are always strings. A plain scalar is null (`~`, `null`, empty),
//! a bool (`true`/`yes`/`on` and their capitalised and upper-case forms, likewise false),
//! an int (decimal with `_`, `0b`, `0x`, a leading `0` for octal, `1:30` sexagesimal), a float
//! (`1.5`, `1.`, `.5`, `1.0e+3` — the exponent needs a sign, so `1e3` is a string — and
//! `.inf`/`.nan`, which JSON cannot hold and so stay strings), or else a string. Timestamps
//! stay strings, since the AAL's consumers are JSON.

use serde_json::{Number, Value};

/// The type of a scalar; a string's text is the scalar's own, so it is not copied here.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    /// `~`, `null`, nothing.
    Null,
    /// `true`, `yes`, `off`, ...
    Bool(bool),
    /// An int or a float.
    Number(Number),
    /// Anything else: the text itself.
    Str,
}

impl Typed {
    /// The JSON value of a scalar of this type with this text.
    pub fn to_value(&self, text: &str) -> Value {
        match self {
            Typed::Null => Value::Null,
            Typed::Bool(b) => Value::Bool(*b),
            Typed::Number(n) => Value::Number(n.clone()),
            Typed::Str => Value::String(text.to_string()),
        }
    }
}

/// The type PyYAML would have given a plain scalar.
pub(crate) fn plain_type(text: &str) -> Typed {
    if is_null(text) {
        return Typed::Null;
    }
    if let Some(b) = bool_value(text) {
        return Typed::Bool(b);
    }
    if let Some(i) = int_value(text).or_else(|| float_value(text)) {
        return i;
    }
    Typed::Str
}

/// The type of a scalar with an explicit core-schema tag (`!!str`, `!!int`, ...); `None`
/// when the tag is unknown or the text does not fit it.
pub(crate) fn tagged_type(suffix: &str, text: &str) -> Option<Typed> {
    match suffix {
        "str" => Some(Typed::Str),
        "null" => is_null(text).then_some(Typed::Null),
        "bool" => bool_value(text).map(Typed::Bool),
        "int" => int_value(text),
        "float" => float_value(text).or_else(|| match int_value(text) {
            Some(Typed::Number(n)) => n.as_f64().and_then(Number::from_f64).map(Typed::Number),
            _ => None,
        }),
        _ => None,
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn bool_value(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// Splits an optional sign off.
fn sign(text: &str) -> (i128, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (-1, rest)
    } else if let Some(rest) = text.strip_prefix('+') {
        (1, rest)
    } else {
        (1, text)
    }
}

fn all(text: &str, f: impl Fn(char) -> bool) -> bool {
    !text.is_empty() && text.chars().all(f)
}

fn int_value(text: &str) -> Option<Typed> {
    let (sign, body) = sign(text);
    let parse = |digits: &str, radix: u32| -> Option<i128> {
        if !digits.contains('_') {
            return i128::from_str_radix(digits, radix).ok();
        }
        let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
        if cleaned.is_empty() {
            return Some(0);
        }
        i128::from_str_radix(&cleaned, radix).ok()
    };
    let magnitude = if let Some(d) = body.strip_prefix("0b") {
        if !all(d, |c| c == '0' || c == '1' || c == '_') {
            return None;
        }
        parse(d, 2)?
    } else if let Some(d) = body.strip_prefix("0x") {
        if !all(d, |c| c.is_ascii_hexdigit() || c == '_') {
            return None;
        }
        parse(d, 16)?
    } else if body == "0" {
        0
    } else if let Some(d) = body.strip_prefix('0') {
        if !all(d, |c| ('0'..='7').contains(&c) || c == '_') {
            return None;
        }
        parse(d, 8)?
    } else if body.starts_with(|c: char| ('1'..='9').contains(&c)) {
        if body.contains(':') {
            sexagesimal(body)?
        } else if all(body, |c| c.is_ascii_digit() || c == '_') {
            parse(body, 10)?
        } else {
            return None;
        }
    } else {
        return None;
    };
    let value = sign * magnitude;
    if let Ok(v) = i64::try_from(value) {
        Some(Typed::Number(v.into()))
    } else if let Ok(v) = u64::try_from(value) {
        Some(Typed::Number(v.into()))
    } else {
        // Too big for JSON integers: keep the text rather than lose digits.
        Some(Typed::Str)
    }
}

/// `[1-9][0-9_]*(:[0-5]?[0-9])+` as base 60.
fn sexagesimal(body: &str) -> Option<i128> {
    let mut parts = body.split(':');
    let head = parts.next()?;
    if !all(head, |c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    let mut value: i128 = head.replace('_', "").parse().ok()?;
    for part in parts {
        if part.is_empty() || part.len() > 2 || !all(part, |c| c.is_ascii_digit()) {
            return None;
        }
        if part.len() == 2 && !part.starts_with(|c: char| ('0'..='5').contains(&c)) {
            return None;
        }
        value = value
            .checked_mul(60)?
            .checked_add(part.parse::<i128>().ok()?)?;
    }
    Some(value)
}

fn float_value(text: &str) -> Option<Typed> {
    let number = |v: f64| Number::from_f64(v).map(Typed::Number);
    if matches!(
        text,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
    ) || matches!(text, ".nan" | ".NaN" | ".NAN")
    {
        // PyYAML gives inf/nan; JSON has neither, so the text stays a string.
        return None;
    }
    // `\.[0-9][0-9_]*([eE][-+][0-9]+)?` (no sign allowed in this form).
    if let Some(rest) = text.strip_prefix('.') {
        let (mantissa, exponent) = split_exponent(rest)?;
        if !mantissa.starts_with(|c: char| c.is_ascii_digit())
            || !all(mantissa, |c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let cleaned = format!("0.{}{}", mantissa.replace('_', ""), exponent);
        return cleaned.parse().ok().and_then(number);
    }
    let (sign, body) = sign(text);
    let sign = if sign < 0 { -1.0 } else { 1.0 };
    let (whole, fraction) = body.split_once('.')?;
    if !whole.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if whole.contains(':') {
        // `[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`
        if !all(fraction, |c| c.is_ascii_digit() || c == '_') && !fraction.is_empty() {
            return None;
        }
        let mut parts = whole.split(':');
        let head = parts.next()?;
        if !all(head, |c| c.is_ascii_digit() || c == '_') {
            return None;
        }
        let mut value: f64 = head.replace('_', "").parse().ok()?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !all(part, |c| c.is_ascii_digit()) {
                return None;
            }
            if part.len() == 2 && !part.starts_with(|c: char| ('0'..='5').contains(&c)) {
                return None;
            }
            value = value * 60.0 + part.parse::<f64>().ok()?;
        }
        let frac: String = fraction.chars().filter(|&c| c != '_').collect();
        let frac: f64 = if frac.is_empty() {
            0.0
        } else {
            format!("0.{frac}").parse().ok()?
        };
        return number(sign * (value + frac));
    }
    if !all(whole, |c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    let (fraction, exponent) = split_exponent(fraction)?;
    if !fraction.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    let cleaned = format!(
        "{}.{}0{}",
        whole.replace('_', ""),
        fraction.replace('_', ""),
        exponent
    );
    cleaned.parse::<f64>().ok().and_then(|v| number(sign * v))
}

/// Splits `[eE][-+][0-9]+` off the end; `None` if an exponent is malformed.
fn split_exponent(text: &str) -> Option<(&str, &str)> {
    match text.find(['e', 'E']) {
        None => Some((text, "")),
        Some(i) => {
            let exponent = &text[i..];
            let digits = exponent.get(2..)?;
            let signed = exponent[1..].starts_with(['-', '+']);
            if signed && all(digits, |c| c.is_ascii_digit()) {
                Some((&text[..i], exponent))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain_value(text: &str) -> Value {
        plain_type(text).to_value(text)
    }

    fn tagged_value(suffix: &str, text: &str) -> Option<Value> {
        tagged_type(suffix, text).map(|t| t.to_value(text))
    }

    #[test]
    fn bools_follow_yaml_1_1_like_pyyaml() {
        for t in ["true", "True", "TRUE", "yes", "Yes", "on", "ON"] {
            assert_eq!(plain_value(t), json!(true), "{t}");
        }
        for t in ["false", "False", "no", "NO", "off", "Off"] {
            assert_eq!(plain_value(t), json!(false), "{t}");
        }
        for t in ["tRUE", "y", "n", "Y"] {
            assert_eq!(plain_value(t), json!(t), "{t}");
        }
    }

    #[test]
    fn nulls() {
        for t in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain_value(t), Value::Null, "{t}");
        }
        assert_eq!(plain_value("nULL"), json!("nULL"));
    }

    #[test]
    fn ints_in_every_pyyaml_form() {
        assert_eq!(plain_value("60000"), json!(60000));
        assert_eq!(plain_value("-1"), json!(-1));
        assert_eq!(plain_value("+7"), json!(7));
        assert_eq!(plain_value("1_000"), json!(1000));
        assert_eq!(plain_value("0"), json!(0));
        assert_eq!(plain_value("010"), json!(8));
        assert_eq!(plain_value("0x1F"), json!(31));
        assert_eq!(plain_value("0b101"), json!(5));
        assert_eq!(plain_value("1:30"), json!(90));
        assert_eq!(plain_value("09"), json!("09"));
        assert_eq!(plain_value("1:60"), json!("1:60"));
    }

    #[test]
    fn floats_need_a_dot_and_a_signed_exponent() {
        assert_eq!(plain_value("1.5"), json!(1.5));
        assert_eq!(plain_value("1500.0"), json!(1500.0));
        assert_eq!(plain_value("1."), json!(1.0));
        assert_eq!(plain_value(".5"), json!(0.5));
        assert_eq!(plain_value("-2.5"), json!(-2.5));
        assert_eq!(plain_value("1.0e+3"), json!(1000.0));
        assert_eq!(plain_value("1e3"), json!("1e3"));
        assert_eq!(plain_value("1.0e3"), json!("1.0e3"));
        assert_eq!(plain_value("1:30.5"), json!(90.5));
        assert_eq!(plain_value(".inf"), json!(".inf"));
    }

    #[test]
    fn other_text_stays_a_string() {
        for t in [
            "minmax(1000,10000)",
            "1.1.1.1",
            "server",
            "2001-12-14",
            "0.0.0.0",
        ] {
            assert_eq!(plain_value(t), json!(t), "{t}");
        }
    }

    #[test]
    fn explicit_tags() {
        assert_eq!(tagged_value("str", "5"), Some(json!("5")));
        assert_eq!(tagged_value("int", "5"), Some(json!(5)));
        assert_eq!(tagged_value("float", "5"), Some(json!(5.0)));
        assert_eq!(tagged_value("int", "x"), None);
        assert_eq!(tagged_value("python/none", ""), None);
    }
}
