//! `cargo bench -p magi-aal`: how long checking a big procedure takes, next to the YAML
//! parser alone (the floor), best and median of several runs.

#[path = "../tests/support/generate.rs"]
mod generate;

use std::time::{Duration, Instant};

/// Best and median time of `f`; what `f` returns is dropped outside the timing.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut last = None;
    let mut all: Vec<Duration> = (0..runs)
        .map(|_| {
            drop(last.take());
            let start = Instant::now();
            let value = f();
            let elapsed = start.elapsed();
            last = Some(value);
            elapsed
        })
        .collect();
    all.sort();
    (all[0], all[runs / 2], last.expect("at least one run"))
}

fn main() {
    for (streams, per_stream) in [(10, 100), (100, 100)] {
        let text = generate::procedure(streams, per_stream);
        let events = streams * per_stream;
        let (parse_best, parse_median, ()) = time(15, || {
            let mut parser = saphyr_parser::Parser::new_from_str(&text);
            while let Some(Ok(_)) = parser.next_event() {}
        });
        let (check_best, check_median, checked) =
            time(15, || magi_aal::check_str("generated.aal", &text));
        let procedure = checked.procedure.expect("the generated procedure is valid");
        let (plan_best, _, _) = time(15, || magi_aal::plan::render(&procedure));
        println!(
            "{events} events ({} KB): YAML events alone {:.1} ms (median {:.1}); check {:.1} ms (median {:.1}); plan text {:.1} ms",
            text.len() / 1024,
            parse_best.as_secs_f64() * 1e3,
            parse_median.as_secs_f64() * 1e3,
            check_best.as_secs_f64() * 1e3,
            check_median.as_secs_f64() * 1e3,
            plan_best.as_secs_f64() * 1e3,
        );
    }
}
