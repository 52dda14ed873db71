//! Distribution strings (`'5'`, `'minmax(1000,10000)'`, `'gamma(2, 3, cap=10)*1000'`),
//! parsed once by a small safe expression parser and sampled on every use.
//!
//! The original evaluated these with Python's `eval` (magi-spec §5.4), so any expression
//! ran, and a typo surfaced as an exception in the middle of a run. Here the grammar is
//! the useful part of that: numbers, `+ - * / **`, parentheses, unary minus, and the
//! functions of `magi.util.distributions` with positional or keyword arguments. A bad
//! expression is an error when the configuration is given, with the column it is at.
//!
//! Semantics follow the original: `minmax(a, b)` is `random.uniform`; `gamma(alpha, rate,
//! cap)` passes `rate` to Python's `gammavariate` as its second parameter, which is the
//! *scale* (the original's naming slip, kept so traffic shapes match); `pareto(alpha,
//! scale, cap)` and `expo(lambd, scale, cap)` multiply by `scale`; a `cap` replaces values
//! above it. Arithmetic is floating point (Python 3 division).

use std::fmt;

mod parser;

use crate::random::Rng;
use parser::Parser;

/// A parsed distribution expression; [`Distribution::sample`] draws a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    source: String,
    expr: Expr,
}

/// Why an expression was refused (with the 1-based column it was found at).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// The expression as given.
    pub source: String,
    /// 1-based character column of the problem.
    pub column: usize,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad distribution '{}' at column {}: {}",
            self.source, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Option<Expr>>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

/// The functions of `magi.util.distributions`, with their parameter names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Function {
    MinMax,
    Gamma,
    Pareto,
    Expo,
}

impl Function {
    const ALL: [Function; 4] = [
        Function::MinMax,
        Function::Gamma,
        Function::Pareto,
        Function::Expo,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::MinMax => "minmax",
            Function::Gamma => "gamma",
            Function::Pareto => "pareto",
            Function::Expo => "expo",
        }
    }

    /// Parameter names, and how many of them are required.
    fn params(self) -> (&'static [&'static str], usize) {
        match self {
            Function::MinMax => (&["min", "max"], 2),
            Function::Gamma => (&["alpha", "rate", "cap"], 2),
            Function::Pareto => (&["alpha", "scale", "cap"], 1),
            Function::Expo => (&["lambd", "scale", "cap"], 1),
        }
    }

    fn signature(self) -> String {
        let (names, required) = self.params();
        let parts: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i < required {
                    n.to_string()
                } else {
                    format!("{n}=None")
                }
            })
            .collect();
        format!("{}({})", self.name(), parts.join(", "))
    }
}

impl Distribution {
    /// Parses `source`, then draws once to catch errors that do not depend on chance
    /// (`1/0`, `gamma(0, 1)`), so that they are reported now and not in the middle of a run.
    pub fn parse(source: &str) -> Result<Distribution, ParseError> {
        let expr = Parser::new(source).parse()?;
        let dist = Distribution {
            source: source.trim().to_string(),
            expr,
        };
        dist.sample(&mut Rng::seeded(0))
            .map_err(|message| ParseError {
                source: source.to_string(),
                column: 1,
                message,
            })?;
        Ok(dist)
    }

    /// A constant (what `increaseTraffic` leaves behind, as the original's `str(value)`).
    pub fn constant(value: f64) -> Distribution {
        Distribution {
            source: format_number(value),
            expr: Expr::Number(value),
        }
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Draws one value. Fails on a division by zero, a parameter out of its domain, or a
    /// non-finite result.
    pub fn sample(&self, rng: &mut Rng) -> Result<f64, String> {
        let v = eval(&self.expr, rng)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("'{}' gave {v}", self.source))
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Formats like Python's `str()` of an int or float: `1500`, `1500.5`.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn eval(expr: &Expr, rng: &mut Rng) -> Result<f64, String> {
    Ok(match expr {
        Expr::Number(v) => *v,
        Expr::Neg(e) => -eval(e, rng)?,
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, rng)?, eval(b, rng)?);
            match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div if b == 0.0 => return Err("division by zero".to_string()),
                Op::Div => a / b,
                Op::Pow => a.powf(b),
            }
        }
        Expr::Call(f, args) => {
            let mut v = Vec::with_capacity(args.len());
            for a in args {
                v.push(match a {
                    Some(e) => Some(eval(e, rng)?),
                    None => None,
                });
            }
            call(*f, &v, rng)?
        }
    })
}

fn call(f: Function, args: &[Option<f64>], rng: &mut Rng) -> Result<f64, String> {
    let arg = |i: usize, default: f64| args.get(i).copied().flatten().unwrap_or(default);
    let cap = |v: f64, i: usize| match args.get(i).copied().flatten() {
        Some(c) if v > c => c,
        _ => v,
    };
    match f {
        Function::MinMax => Ok(rng.uniform(arg(0, 0.0), arg(1, 0.0))),
        Function::Gamma => {
            let (alpha, beta) = (arg(0, 0.0), arg(1, 0.0));
            if alpha <= 0.0 || beta <= 0.0 {
                return Err(format!(
                    "gamma(alpha={alpha}, rate={beta}): both must be > 0"
                ));
            }
            Ok(cap(rng.gamma(alpha, beta), 2))
        }
        Function::Pareto => {
            let alpha = arg(0, 0.0);
            if alpha <= 0.0 {
                return Err(format!("pareto(alpha={alpha}): alpha must be > 0"));
            }
            Ok(cap(rng.pareto(alpha) * arg(1, 1.0), 2))
        }
        Function::Expo => {
            let lambd = arg(0, 0.0);
            if lambd == 0.0 {
                return Err("expo(lambd=0): lambd must not be 0".to_string());
            }
            Ok(cap(rng.expo(lambd) * arg(1, 1.0), 2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> f64 {
        Distribution::parse(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .sample(&mut Rng::seeded(1))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(s: &str) -> ParseError {
        match Distribution::parse(s) {
            Ok(d) => panic!("'{s}' parsed as {d:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn numbers_and_arithmetic_follow_python_precedence() {
        assert_eq!(value("1000"), 1000.0);
        assert_eq!(value(" 2.5 "), 2.5);
        assert_eq!(value(".5"), 0.5);
        assert_eq!(value("1e3"), 1000.0);
        assert_eq!(value("1 + 2 * 3"), 7.0);
        assert_eq!(value("(1 + 2) * 3"), 9.0);
        assert_eq!(value("7 / 2"), 3.5);
        assert_eq!(value("10 - 4 - 3"), 3.0);
        assert_eq!(value("-3 + 5"), 2.0);
        assert_eq!(value("--3"), 3.0);
        assert_eq!(value("-2 ** 2"), -4.0);
        assert_eq!(value("2 ** 3 ** 2"), 512.0);
        assert_eq!(value("2 ** -1"), 0.5);
        assert_eq!(value("3 * -2"), -6.0);
    }

    #[test]
    fn minmax_stays_within_its_bounds_and_is_uniform() {
        let d = Distribution::parse("minmax(1000,10000)").unwrap();
        let mut rng = Rng::seeded(42);
        let draws: Vec<f64> = (0..20_000).map(|_| d.sample(&mut rng).unwrap()).collect();
        assert!(draws.iter().all(|v| (1000.0..=10000.0).contains(v)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 5500.0).abs() < 60.0, "mean {mean}");
        // Both ends are reached: each tenth of the range holds about a tenth of the draws.
        for decile in 0..10 {
            let lo = 1000.0 + 900.0 * decile as f64;
            let n = draws
                .iter()
                .filter(|v| (lo..lo + 900.0).contains(*v))
                .count();
            assert!((1700..2300).contains(&n), "decile {decile}: {n}");
        }
    }

    #[test]
    fn caps_bound_every_draw() {
        let mut rng = Rng::seeded(5);
        for s in [
            "gamma(2, 1000, 1500)",
            "gamma(2, 1000, cap=1500)",
            "pareto(1.2, 1000, 1500)",
            "pareto(1.2, scale=1000, cap=1500)",
            "expo(0.001, 1, 1500)",
            "expo(lambd=0.001, cap=1500)",
        ] {
            let d = Distribution::parse(s).unwrap();
            let draws: Vec<f64> = (0..5000).map(|_| d.sample(&mut rng).unwrap()).collect();
            assert!(draws.iter().all(|&v| v <= 1500.0), "{s} went over its cap");
            assert!(
                draws.iter().filter(|&&v| v == 1500.0).count() > 100,
                "{s}: the cap never bit, so this test proves nothing"
            );
        }
    }

    #[test]
    fn distribution_functions_keep_the_originals_parameters() {
        let mut rng = Rng::seeded(9);
        let mean = |s: &str, rng: &mut Rng| {
            let d = Distribution::parse(s).unwrap();
            (0..40_000).map(|_| d.sample(rng).unwrap()).sum::<f64>() / 40_000.0
        };
        // gamma's second parameter is Python's beta, a scale: mean = alpha * beta.
        let g = mean("gamma(2, 500)", &mut rng);
        assert!((g - 1000.0).abs() < 25.0, "gamma {g}");
        let e = mean("expo(2, 1000)", &mut rng);
        assert!((e - 500.0).abs() < 12.0, "expo {e}");
        let p = mean("pareto(3, 100)", &mut rng);
        assert!((p - 150.0).abs() < 5.0, "pareto {p}");
        let d = Distribution::parse("pareto(3, 100)").unwrap();
        assert!((0..1000).all(|_| d.sample(&mut rng).unwrap() >= 100.0));
        let m = mean("minmax(1, 2) * 3", &mut rng);
        assert!((m - 4.5).abs() < 0.05, "scaled minmax {m}");
    }

    #[test]
    fn bad_expressions_say_what_and_where() {
        let e = error("minmax(1000,");
        assert!(e.message.contains("ends where a value"), "{e}");
        assert_eq!(e.column, 13);
        let e = error("minMax(1,2)");
        assert!(e.message.contains("did you mean 'minmax'"), "{e}");
        assert_eq!(e.column, 1);
        let e = error("__import__('os')");
        assert!(e.message.contains("unknown name '__import__'"), "{e}");
        let e = error("1000 1000");
        assert!(e.message.contains("unexpected '1'"), "{e}");
        assert_eq!(e.column, 6);
        assert!(error("").message.contains("empty"));
        assert!(error("minmax(1)").message.contains("missing 'max'"));
        assert!(error("minmax(1,2,3)").message.contains("too many"));
        assert!(error("expo(1, cap=2, 3)").message.contains("positional"));
        assert!(error("gamma(2, 1, rate=3)").message.contains("given twice"));
        assert!(error("pareto(2, shape=3)")
            .message
            .contains("no parameter 'shape'"));
        assert!(error("(1 + 2").message.contains("missing ')'"));
        assert!(error("minmax").message.contains("must be called"));
        assert!(error("1 $ 2").message.contains("unexpected '$'"));
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(error(&deep).message.contains("nested too deeply"));
    }

    #[test]
    fn errors_that_do_not_depend_on_chance_are_reported_at_parse() {
        assert!(error("1/0").message.contains("division by zero"));
        assert!(error("gamma(0, 1)").message.contains("must be > 0"));
        assert!(error("expo(0)").message.contains("must not be 0"));
        assert!(error("pareto(-1)").message.contains("must be > 0"));
        assert!(error("10 ** 400").message.contains("gave inf"));
    }

    #[test]
    fn constants_print_like_pythons_str() {
        assert_eq!(Distribution::constant(1500.0).source(), "1500");
        assert_eq!(Distribution::constant(2.5).source(), "2.5");
        assert_eq!(
            Distribution::parse(" minmax(1,2) ").unwrap().to_string(),
            "minmax(1,2)"
        );
    }
}
