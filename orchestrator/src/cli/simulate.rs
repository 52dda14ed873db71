//! `magi simulate`: a dry run on virtual time (see [`crate::simulate`]): the predicted
//! duration and timeline, the waits that never complete and the streams that never run.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::Value;

use crate::console::stream_name;
use crate::simulate::{simulate, End, Selector, SimConfig, Simulation};

/// Arguments of `magi simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// AAL files, read in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Set a parameter of the procedure, `NAME=VALUE` (repeatable), as `magi run -D`.
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,
    /// Reply latency in ms: `MS` for every call, or `SELECTOR=MS` where SELECTOR is a group,
    /// a method or `group.method` (repeatable; the most specific applies). Default 5.
    #[arg(long = "latency", value_name = "[SELECTOR=]MS")]
    pub latency: Vec<String>,
    /// Take each method's reply latency from a recorded run (a run name under
    /// --record-dir, or a record directory); --latency flags still win.
    #[arg(long, value_name = "RUN")]
    pub calibrate: Option<String>,
    /// Where run records are (for --calibrate).
    #[arg(long, default_value = "magi-runs", env = "MAGI_RECORD_DIR")]
    pub record_dir: PathBuf,
    /// Failure rate from 0 to 1, `SELECTOR=RATE` (repeatable): a failing node answers with
    /// a RuntimeException.
    #[arg(long = "fail", value_name = "SELECTOR=RATE")]
    pub fail: Vec<String>,
    /// What a method returns, `METHOD=JSON` (e.g. `sense={"result": 0}`); default true.
    #[arg(long = "reply", value_name = "METHOD=JSON")]
    pub reply: Vec<String>,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timeout of each group build and leave wait, in ms (as `magi run -g`).
    #[arg(short = 'g', long = "group-timeout", default_value_t = 20_000)]
    pub group_timeout: u64,
    /// Go on after a failure (as `magi run --keep-going`).
    #[arg(long)]
    pub keep_going: bool,
    /// Do not print the timeline, only the prediction and the findings.
    #[arg(long)]
    pub no_timeline: bool,
    /// The prediction, the findings and the timeline as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Parses `NAME=VALUE`.
fn pair<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str), String> {
    text.split_once('=')
        .ok_or_else(|| format!("`--{flag} {text}`: write NAME=VALUE"))
}

/// The simulation's configuration from the flags.
pub fn config(args: &SimulateArgs, procedure: &magi_aal::Procedure) -> Result<SimConfig, String> {
    let mut config = SimConfig {
        seed: args.seed,
        ..SimConfig::default()
    };
    config.engine.group_timeout_ms = args.group_timeout;
    config.engine.abort_on_failure = !args.keep_going;
    if let Some(run) = &args.calibrate {
        let events = crate::recorded::RecordedRun::find(run, &args.record_dir)
            .and_then(|r| r.events())
            .map_err(|e| format!("--calibrate: {e}"))?;
        for (method, ms) in crate::simulate::calibrate::latencies(&events) {
            let selector = Selector {
                group: None,
                method: Some(method),
            };
            config.latencies.push((selector, ms));
        }
    }
    for l in &args.latency {
        let (sel, ms) = match l.split_once('=') {
            Some((s, ms)) => (Some(s), ms),
            None => (None, l.as_str()),
        };
        let ms: u64 = ms
            .parse()
            .map_err(|_| format!("`--latency {l}`: the latency is whole milliseconds"))?;
        match sel {
            Some(s) => config.latencies.push((Selector::parse(s, procedure), ms)),
            None => config.latency_ms = ms,
        }
    }
    for f in &args.fail {
        let (sel, rate) = pair("fail", f)?;
        let rate: f64 = rate
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("`--fail {f}`: the rate is a number from 0 to 1"))?;
        config
            .failures
            .push((Selector::parse(sel, procedure), rate));
    }
    for r in &args.reply {
        let (method, json) = pair("reply", r)?;
        let value: Value = serde_json::from_str(json)
            .map_err(|e| format!("`--reply {r}`: the value is not JSON: {e}"))?;
        config.replies.insert(method.to_string(), value);
    }
    Ok(config)
}

/// What the end means for a person.
pub fn describe_end(sim: &Simulation) -> String {
    let secs = sim.end_ms as f64 / 1000.0;
    match &sim.end {
        End::Finished { outcome } => match outcome {
            magi_engine::Outcome::Success => format!("predicted duration: {secs:.3} s (success)"),
            magi_engine::Outcome::Failed { message, .. } => {
                format!("predicted duration: {secs:.3} s (fails: {message})")
            }
            magi_engine::Outcome::Interrupted => format!("predicted duration: {secs:.3} s"),
        },
        End::Stuck => format!(
            "the run never ends: at {secs:.3} s every stream left waits for something that never comes"
        ),
        End::TooLong => format!("the run is still going after {secs:.0} s of virtual time (a loop?)"),
        End::Spinning => format!(
            "the run loops without time passing at {secs:.3} s (a `timeout: 0` loop with no wait in it)"
        ),
    }
}

/// Runs `magi simulate`; returns 0 when the run ends in success, 1 when it fails or never
/// ends, 2 when the procedure or a flag is invalid.
pub fn run(args: SimulateArgs) -> i32 {
    let Some(procedure) =
        super::check::load_valid(&args.files, &args.defines).and_then(|c| c.procedure)
    else {
        return 2;
    };
    let config = match config(&args, &procedure) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let started = std::time::Instant::now();
    let sim = simulate(Arc::new(procedure), &config);
    let took = started.elapsed();
    let mut out = String::new();
    if args.json {
        let lines: Vec<Value> = sim
            .lines
            .iter()
            .map(|l| serde_json::json!({"ms": l.at_ms, "stream": l.stream, "tag": l.tag, "text": l.text}))
            .collect();
        let doc = serde_json::json!({
            "end": sim.end, "duration_ms": sim.end_ms, "calls": sim.calls,
            "findings": sim.analysis, "timeline": lines,
        });
        out = format!("{doc}\n");
    } else {
        if !args.no_timeline {
            for l in &sim.lines {
                out += &format!(
                    "stream {} : {} : (+{:.3}s) {}\n",
                    stream_name(&l.stream),
                    l.tag.as_str(),
                    l.at_ms as f64 / 1000.0,
                    l.text
                );
            }
        }
        out += &describe_end(&sim);
        out.push('\n');
        let findings = sim.analysis.render();
        if !findings.is_empty() {
            out += &findings;
            out.push('\n');
        }
        eprintln!(
            "magi: simulated {} calls in {:.1} ms",
            sim.calls,
            took.as_secs_f64() * 1000.0
        );
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    match sim.end {
        End::Finished {
            outcome: magi_engine::Outcome::Success,
        } => 0,
        _ => 1,
    }
}
