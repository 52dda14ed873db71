//! `magi graph`: plot recorded data to a PNG with the original's graph configuration.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use magi_data::graph;

use super::data::StoreArgs;

/// Arguments of `magi graph`.
#[derive(Args, Debug)]
#[command(
    after_help = "The configuration is the original magi_graph's YAML, in either format:\n\n  \
graph: {type: line|scatter, xLabel: ..., yLabel: ..., title: ...}\n  \
db: {agent: NAME, plots: [{series: LABEL, filter: {host: ..., ...}}], xValue: created, yValue: FIELD}\n\n\
or the old one with a single `db.filter: {...}` instead of `plots`. x is xValue minus each series' \
first value (seconds since its first record for `created`).\n\n\
Records come from --store, from a run's record directory (--run DIR), or from \
$MAGI_DATA_DIR/<project>/<experiment>/data.sqlite with -e/-p (MAGI_DATA_DIR defaults to \
~/.local/share/magi)."
)]
pub struct GraphArgs {
    /// The graph configuration (YAML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: PathBuf,
    /// The PNG to write.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "graph.png"
    )]
    pub output: PathBuf,
    /// Where the records are.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs `magi graph`; returns the exit code.
pub fn run(args: GraphArgs) -> i32 {
    match run_inner(&args) {
        Ok(()) => 0,
        Err(e) => {
            match e.downcast_ref::<graph::GraphError>() {
                Some(graph::GraphError::Config(c)) => eprintln!("error: {c}"),
                _ => eprintln!("error: {e:#}"),
            }
            1
        }
    }
}

fn run_inner(args: &GraphArgs) -> Result<()> {
    let cfg = graph::load_config(&args.config)?;
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    let mut store = args.store.open_existing()?;
    let series = graph::load_series(&mut store, &cfg)
        .with_context(|| format!("querying {}", store.describe()))?;
    for (s, spec) in series.iter().zip(&cfg.series) {
        if s.points.is_empty() {
            eprintln!(
                "warning: {}:{}: no record matches {}",
                args.config.display(),
                spec.line,
                graph::describe_query(&s.query)
            );
        }
        if s.skipped > 0 {
            eprintln!(
                "warning: {} records of {} have no numeric {} or {}; left out",
                s.skipped,
                graph::describe_query(&s.query),
                cfg.x_value,
                cfg.y_value
            );
        }
    }
    graph::render_png(&cfg, &series, &args.output)?;
    let summary: Vec<String> = series
        .iter()
        .map(|s| {
            format!(
                "{}: {} points",
                s.label.as_deref().unwrap_or("series"),
                s.points.len()
            )
        })
        .collect();
    println!("wrote {} ({})", args.output.display(), summary.join(", "));
    Ok(())
}
