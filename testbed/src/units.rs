//! ns-2's spellings of bandwidth and delay, as Emulab's parser accepts them.

/// Bits per second from an ns bandwidth: `100Mbps`, `10Mb`, `1000000.0kb`, `1Gb`, `2MB`
/// (bytes), `64000` (bits). `k`, `M`, `G` are powers of 1000; a `B` counts bytes.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let unit = unit.strip_suffix("ps").unwrap_or(unit);
    let (scale, rest) = match unit.chars().next() {
        Some('k' | 'K') => (1e3, &unit[1..]),
        Some('m' | 'M') => (1e6, &unit[1..]),
        Some('g' | 'G') => (1e9, &unit[1..]),
        _ => (1.0, unit),
    };
    let bits = match rest {
        "" | "b" | "bit" => 1.0,
        "B" => 8.0,
        _ => {
            return Err(format!(
                "bad bandwidth `{text}`: use a number with kb, Mb or Gb (as 100Mb or 1000000.0kb)"
            ))
        }
    };
    let bps = number * scale * bits;
    if !(1.0..1e13).contains(&bps) {
        return Err(format!(
            "bad bandwidth `{text}`: it must be between 1 bit/s and 10 Tb/s"
        ));
    }
    Ok(bps.round() as u64)
}

/// Microseconds from an ns delay: `0ms`, `0.0ms`, `10ms`, `250us`, `1s`, `0.5` (seconds).
pub fn parse_delay(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let scale = match unit {
        "" | "s" => 1e6,
        "ms" => 1e3,
        "us" => 1.0,
        "ns" => 1e-3,
        _ => {
            return Err(format!(
                "bad delay `{text}`: use a number with s, ms or us (as 0ms or 10ms)"
            ))
        }
    };
    let us = number * scale;
    if !(0.0..=3.6e9).contains(&us) {
        return Err(format!(
            "bad delay `{text}`: it must be between 0 and one hour"
        ));
    }
    Ok(us.round() as u64)
}

/// A loss rate: a fraction between 0 and 1 (`0.05` is 5 %).
pub fn parse_loss(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "bad loss rate `{text}`: it must be a fraction between 0 and 1 (0.05 is 5 %)"
        )),
    }
}

/// A bandwidth for people: `100Mb/s`, `1.5Gb/s`, `64kb/s`.
pub fn show_bandwidth(bps: u64) -> String {
    let (value, unit) = match bps {
        b if b >= 1_000_000_000 => (b as f64 / 1e9, "Gb/s"),
        b if b >= 1_000_000 => (b as f64 / 1e6, "Mb/s"),
        b if b >= 1_000 => (b as f64 / 1e3, "kb/s"),
        b => (b as f64, "b/s"),
    };
    format!("{}{unit}", trim_float(value))
}

/// A delay for people: `0ms`, `10ms`, `0.25ms`.
pub fn show_delay(us: u64) -> String {
    format!("{}ms", trim_float(us as f64 / 1e3))
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let number = t[..end]
        .parse::<f64>()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    Ok((number, &t[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_in_the_spellings_of_the_case_studies() {
        assert_eq!(parse_bandwidth("100Mbps"), Ok(100_000_000));
        assert_eq!(parse_bandwidth("10Mb"), Ok(10_000_000));
        assert_eq!(parse_bandwidth("1000000.0kb"), Ok(1_000_000_000));
        assert_eq!(parse_bandwidth("1Gb"), Ok(1_000_000_000));
        assert_eq!(parse_bandwidth("1MB"), Ok(8_000_000));
        assert_eq!(parse_bandwidth("64000"), Ok(64_000));
    }

    #[test]
    fn bad_bandwidths_say_how_to_write_one() {
        assert!(parse_bandwidth("10Mq")
            .unwrap_err()
            .contains("kb, Mb or Gb"));
        assert!(parse_bandwidth("fast").unwrap_err().contains("number"));
        assert!(parse_bandwidth("0Mb").unwrap_err().contains("between"));
    }

    #[test]
    fn delays_in_microseconds() {
        assert_eq!(parse_delay("0ms"), Ok(0));
        assert_eq!(parse_delay("0.0ms"), Ok(0));
        assert_eq!(parse_delay("10ms"), Ok(10_000));
        assert_eq!(parse_delay("250us"), Ok(250));
        assert_eq!(parse_delay("1s"), Ok(1_000_000));
        assert!(parse_delay("10 parsecs").is_err());
        assert!(parse_delay("-1ms").is_err());
    }

    #[test]
    fn loss_is_a_fraction() {
        assert_eq!(parse_loss("0.05"), Ok(0.05));
        assert!(parse_loss("5%").is_err());
        assert!(parse_loss("1.5").is_err());
    }

    #[test]
    fn figures_are_shown_in_short_units() {
        assert_eq!(show_bandwidth(10_000_000), "10Mb/s");
        assert_eq!(show_bandwidth(1_500_000_000), "1.5Gb/s");
        assert_eq!(show_delay(0), "0ms");
        assert_eq!(show_delay(250), "0.25ms");
    }
}
