//! A small, seedable pseudo-random generator and the variates the original's distribution
//! functions used (Python's `random.uniform`, `gammavariate`, `paretovariate`,
//! `expovariate`).
//!
//! Agents only need statistical randomness for traffic shapes, and a fixed seed (execargs
//! `seed`) makes a run's traffic repeatable, so a 40-line xoshiro256** beats a dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// xoshiro256** seeded through splitmix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn seeded(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// A generator seeded from the clock and the process id (different in every process).
    pub fn from_entropy() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng::seeded(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in [0, 1), like Python's `random.random()`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[low, high]` (both inclusive, like Python's `randint`).
    pub fn int_inclusive(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low + 1;
        low + self.next_u64() % span
    }

    /// An index in `[0, len)`; `len` must be non-zero.
    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len.max(1) as u64) as usize
    }

    /// `random.uniform(a, b)`: `a + (b - a) * random()`, so `a > b` works too.
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next_f64()
    }

    /// A standard normal variate (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `random.gammavariate(alpha, beta)`: shape `alpha` > 0, **scale** `beta` > 0
    /// (mean `alpha * beta`). Marsaglia–Tsang, boosted for `alpha < 1`.
    pub fn gamma(&mut self, alpha: f64, beta: f64) -> f64 {
        if alpha < 1.0 {
            let u = 1.0 - self.next_f64();
            return self.gamma(alpha + 1.0, beta) * u.powf(1.0 / alpha);
        }
        let d = alpha - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.next_f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * beta;
            }
        }
    }

    /// `random.paretovariate(alpha)`: `(1 - random()) ** (-1 / alpha)`, at least 1.
    pub fn pareto(&mut self, alpha: f64) -> f64 {
        let u = 1.0 - self.next_f64();
        u.powf(-1.0 / alpha)
    }

    /// `random.expovariate(lambd)`: mean `1 / lambd`.
    pub fn expo(&mut self, lambd: f64) -> f64 {
        -(1.0 - self.next_f64()).ln() / lambd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(rng: &mut Rng, n: usize, f: impl Fn(&mut Rng) -> f64) -> f64 {
        (0..n).map(|_| f(rng)).sum::<f64>() / n as f64
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a: Vec<u64> = {
            let mut r = Rng::seeded(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::seeded(7);
        assert!(a.iter().all(|&x| x == r.next_u64()));
        assert_ne!(Rng::seeded(8).next_u64(), a[0]);
    }

    #[test]
    fn variates_have_the_means_of_pythons_random_module() {
        let mut r = Rng::seeded(1);
        let n = 40_000;
        let u = mean(&mut r, n, |r| r.next_f64());
        assert!((u - 0.5).abs() < 0.01, "uniform mean {u}");
        // gammavariate(alpha, beta): mean alpha * beta, with beta a scale.
        let g = mean(&mut r, n, |r| r.gamma(2.0, 3.0));
        assert!((g - 6.0).abs() < 0.15, "gamma mean {g}");
        let g = mean(&mut r, n, |r| r.gamma(0.5, 2.0));
        assert!((g - 1.0).abs() < 0.05, "gamma(alpha<1) mean {g}");
        let e = mean(&mut r, n, |r| r.expo(4.0));
        assert!((e - 0.25).abs() < 0.01, "expo mean {e}");
        // paretovariate(3): mean alpha / (alpha - 1) = 1.5, never below 1.
        let p = mean(&mut r, n, |r| r.pareto(3.0));
        assert!((p - 1.5).abs() < 0.05, "pareto mean {p}");
        assert!((0..1000).all(|_| r.pareto(1.5) >= 1.0));
    }

    #[test]
    fn randint_covers_both_ends() {
        let mut r = Rng::seeded(3);
        let draws: Vec<u64> = (0..2000).map(|_| r.int_inclusive(0, 3)).collect();
        for v in 0..=3 {
            assert!(draws.contains(&v), "{v} never drawn");
        }
        assert!(draws.iter().all(|&v| v <= 3));
    }
}
