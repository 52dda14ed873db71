//! The flooder's rate over time: flat, a ramp up, or pulses (the original's `ratetype`).

/// Packets per second as a function of the time since the flood started.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// `high` packets per second throughout.
    Flat {
        /// Packets per second.
        high: f64,
    },
    /// From `low` to `high` linearly over `rise` seconds, then `high`.
    RampUp {
        /// Starting rate.
        low: f64,
        /// Final rate.
        high: f64,
        /// Seconds of the rise.
        rise: f64,
    },
    /// Repeatedly: `low` for `low_time`, rising over `rise`, `high` for `high_time`,
    /// falling over `fall`.
    Pulse {
        /// Rate of the low state.
        low: f64,
        /// Rate of the high state.
        high: f64,
        /// Seconds in the low state.
        low_time: f64,
        /// Seconds from low to high.
        rise: f64,
        /// Seconds in the high state.
        high_time: f64,
        /// Seconds from high to low.
        fall: f64,
    },
}

impl Rate {
    /// The rate `t` seconds after the start.
    pub fn at(&self, t: f64) -> f64 {
        match *self {
            Rate::Flat { high } => high,
            Rate::RampUp { low, high, rise } => {
                if t >= rise {
                    high
                } else {
                    low + (high - low) * t / rise
                }
            }
            Rate::Pulse {
                low,
                high,
                low_time,
                rise,
                high_time,
                fall,
            } => {
                let period = low_time + rise + high_time + fall;
                let mut x = t % period;
                if x < low_time {
                    return low;
                }
                x -= low_time;
                if x < rise {
                    return low + (high - low) * x / rise;
                }
                x -= rise;
                if x < high_time {
                    return high;
                }
                x -= high_time;
                high - (high - low) * x / fall
            }
        }
    }

    /// The packets due between `a` and `b` seconds (the integral of the rate, by the
    /// trapezoid over steps short enough for the piecewise-linear rates here).
    pub fn packets_between(&self, a: f64, b: f64) -> f64 {
        (self.at(a) + self.at(b)) / 2.0 * (b - a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_rises_linearly_then_stays_high() {
        let r = Rate::RampUp {
            low: 0.0,
            high: 100.0,
            rise: 2.0,
        };
        assert_eq!(
            (r.at(0.0), r.at(1.0), r.at(2.0), r.at(9.0)),
            (0.0, 50.0, 100.0, 100.0)
        );
    }

    #[test]
    fn a_pulse_cycles_low_rise_high_fall() {
        let r = Rate::Pulse {
            low: 10.0,
            high: 110.0,
            low_time: 1.0,
            rise: 1.0,
            high_time: 1.0,
            fall: 1.0,
        };
        let at: Vec<f64> = [0.5, 1.5, 2.5, 3.5, 4.5].iter().map(|&t| r.at(t)).collect();
        assert_eq!(at, [10.0, 60.0, 110.0, 60.0, 10.0]);
        assert_eq!(r.packets_between(2.0, 3.0), 110.0);
    }
}
