//! `magi graph`: the original `magi_graph` configuration and PNG plots.
//!
//! Two configuration formats are read, as the original's users wrote them:
//!
//! ```yaml
//! graph: {type: line, xLabel: Time(sec), yLabel: Bytes, title: Traffic plot}
//! db:
//!   agent: monitor_agent
//!   plots:                       # current format: one entry per series
//!     - {series: Out, filter: {host: servernode, peerNode: clientnode, trafficDirection: out}}
//!   xValue: created
//!   yValue: bytes
//! ```
//!
//! and the old one with a single `db.filter:` mapping instead of `plots:` (one series, no
//! legend). Each series is the records of `agent` matching its filter, sorted by `xValue`;
//! x is `xValue` minus the series' first value (seconds since its first record when
//! `xValue` is `created`), y is `yValue` as recorded.
//!
//! The module follows the command's three steps: `config` reads the configuration
//! ([`parse_config`], [`load_config`]), `series` loads each series' points from the
//! store ([`load_series`]) and `render` draws them ([`render_png`]).
use std::path::Path;

mod config;
mod config_error;
#[cfg(feature = "png-check")]
mod ink;
mod render;
mod series;

pub use config::{parse_config, GraphConfig, PlotType, SeriesSpec};
pub use config_error::GraphConfigError;
#[cfg(feature = "png-check")]
pub use ink::{png_ink, read_png, Pixels, PngInk, PLOT_REGION};
pub use render::{nice_range, render_png, COLOURS, SIZE};
pub use series::{describe_query, load_series, SeriesData};

use crate::store::StoreError;

/// Errors of `magi graph`.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(Box<GraphConfigError>),
    /// The configuration file cannot be read.
    #[error("cannot read graph configuration {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No record matches any series.
    #[error("no records to plot: {0}")]
    NoData(String),
    /// Drawing or writing the PNG failed.
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The output file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl From<GraphConfigError> for GraphError {
    fn from(e: GraphConfigError) -> Self {
        GraphError::Config(Box::new(e))
    }
}

/// Reads and parses a configuration file.
pub fn load_config(path: &Path) -> Result<GraphConfig, GraphError> {
    let text = std::fs::read_to_string(path).map_err(|source| GraphError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_config(&text, &path.display().to_string())?)
}
