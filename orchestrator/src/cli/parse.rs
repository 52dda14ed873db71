//! Parsers for command-line values that need more than their type: durations with an upper
//! bound (a `Duration` built from `1e30` seconds panics, and one that large is always a
//! mistake) and run names that must stay inside the record directory. Used as clap
//! `value_parser`s, so a bad value is a clap error (exit 2) naming the option.

use std::time::Duration;

/// The longest duration any option accepts: 30 days.
pub const MAX_SECONDS: u64 = 30 * 24 * 3600;

/// A number of seconds (`5`, `0.5`, `1e3`) between 0 and [`MAX_SECONDS`].
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    bounded(text, value, 1.0, "seconds")
}

/// A whole number of milliseconds between 0 and [`MAX_SECONDS`] × 1000.
pub fn millis(text: &str) -> Result<Duration, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))?;
    bounded(text, value as f64, 1e-3, "milliseconds")
}

/// `value` (written `text`) units of `unit_secs` seconds each, if finite, not negative and
/// within bounds.
fn bounded(text: &str, value: f64, unit_secs: f64, unit: &str) -> Result<Duration, String> {
    let max = MAX_SECONDS as f64 / unit_secs;
    if !value.is_finite() || value < 0.0 || value > max {
        return Err(format!(
            "{} {unit} is out of range: give 0 to {max} {unit} (30 days)",
            text.trim()
        ));
    }
    Ok(Duration::from_secs_f64(value * unit_secs))
}

/// A run name that is safe as a directory name under `--record-dir` (see
/// [`crate::record::validate_run_name`]).
pub fn run_name(text: &str) -> Result<String, String> {
    crate::record::validate_run_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_fractions_and_exponents_within_the_bound() {
        assert_eq!(seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        assert_eq!(seconds("2592000"), Ok(Duration::from_secs(MAX_SECONDS)));
    }

    #[test]
    fn huge_negative_and_non_finite_seconds_are_refused_with_the_range() {
        for bad in [
            "1e30",
            "1e19",
            "2592000.5",
            "-1",
            "-0.001",
            "NaN",
            "inf",
            "-inf",
        ] {
            let e = seconds(bad).unwrap_err();
            assert!(
                e.contains("out of range: give 0 to 2592000 seconds"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            seconds("soon").unwrap_err(),
            "\"soon\" is not a number of seconds"
        );
    }

    #[test]
    fn millis_are_bounded_too() {
        assert_eq!(millis("500"), Ok(Duration::from_millis(500)));
        assert!(millis("18446744073709551615")
            .unwrap_err()
            .contains("out of range"));
        assert!(millis("-5").is_err());
    }
}
