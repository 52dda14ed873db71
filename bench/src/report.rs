//! Figures: percentiles, the JSON objects written to `--out`, and the printed table.

use std::time::Duration;

use serde::Serialize;

/// One measurement, as written to the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured (`roundtrip_p50`, `setup`, `magi_node_rss_idle`, ...).
    pub name: String,
    /// Scale: nodes for bus figures, events for `magi check`.
    pub n: usize,
    /// The figure.
    pub value: f64,
    /// Its unit (`ms`, `s`, `MiB`, `us`).
    pub unit: String,
    /// For comparisons: the same figure over bare lapin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// For comparisons: `value / baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The target for this figure, when it has one (on `ratio` when there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Whether the target is met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// How it was measured, when that needs saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Figure {
    /// A plain figure.
    pub fn new(name: &str, n: usize, value: f64, unit: &str) -> Self {
        Figure {
            name: name.into(),
            n,
            value,
            unit: unit.into(),
            baseline: None,
            ratio: None,
            target: None,
            met: None,
            note: None,
        }
    }

    /// A figure compared with its bare-lapin baseline.
    pub fn compared(name: &str, n: usize, value: f64, baseline: f64, unit: &str) -> Self {
        let ratio = if baseline > 0.0 {
            Some(value / baseline)
        } else {
            None
        };
        Figure {
            baseline: Some(baseline),
            ratio,
            ..Figure::new(name, n, value, unit)
        }
    }

    /// With a target: an upper bound on the ratio when there is one, else on the value.
    pub fn at_most(mut self, target: f64) -> Self {
        let checked = self.ratio.unwrap_or(self.value);
        self.target = Some(target);
        self.met = Some(checked <= target);
        self
    }

    /// With a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Milliseconds as f64.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The figures as a text table.
pub fn table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 7]> = figures
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                f.n.to_string(),
                format!("{} {}", num(f.value), f.unit),
                f.baseline
                    .map(|b| format!("{} {}", num(b), f.unit))
                    .unwrap_or_default(),
                f.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
                match (f.target, f.met) {
                    (Some(t), Some(m)) => {
                        format!("<= {} {}", num(t), if m { "met" } else { "MISSED" })
                    }
                    _ => String::new(),
                },
                f.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let head = [
        "measurement",
        "n",
        "value",
        "bare lapin",
        "ratio",
        "target",
        "note",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()).take(6) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 6 {
                s.push_str(c);
            } else if i == 0 {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(&format!("{c:>w$}  ", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(head.to_vec(), &mut out);
    let rule: Vec<String> = widths
        .iter()
        .take(6)
        .map(|w| "-".repeat(*w))
        .chain(["----".to_string()])
        .collect();
    line(rule.iter().map(String::as_str).collect(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 99.0),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn targets_apply_to_the_ratio_when_there_is_one() {
        let f = Figure::compared("x", 1, 3.0, 2.0, "ms").at_most(1.5);
        assert_eq!(f.met, Some(true));
        let f = Figure::new("y", 1, 12.0, "MiB").at_most(10.0);
        assert_eq!(f.met, Some(false));
    }
}
