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
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use magi_proto::Object;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use serde_json::Value;

use crate::store::{Query, Store, StoreError};
use crate::yaml::{self, YamlNode, YamlValue};

/// The bundled font (DejaVu Sans, see `fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Keys of the original's `db` section that name its MongoDB and are ignored here.
const MONGO_KEYS: &[&str] = &[
    "dbName",
    "dbHost",
    "dbPort",
    "collectionName",
    "dbhost",
    "dbport",
];

/// Line or scatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotType {
    /// Points joined by lines.
    Line,
    /// Points only.
    Scatter,
}

/// One series to plot.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// Legend label (`series:`); None in the old format.
    pub label: Option<String>,
    /// Equality filter (the original's filter map).
    pub filter: Object,
    /// Line of the series in the configuration.
    pub line: usize,
}

/// A parsed graph configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphConfig {
    /// `graph.type`.
    pub plot_type: PlotType,
    /// `graph.title`.
    pub title: Option<String>,
    /// `graph.xLabel`.
    pub x_label: Option<String>,
    /// `graph.yLabel`.
    pub y_label: Option<String>,
    /// `db.agent`: the agent whose records are plotted (None: every agent).
    pub agent: Option<String>,
    /// The series (`db.plots`, or the single `db.filter`).
    pub series: Vec<SeriesSpec>,
    /// `db.xValue` (default `created`).
    pub x_value: String,
    /// `db.yValue`.
    pub y_value: String,
    /// Things accepted but worth telling (ignored keys ...), with their positions.
    pub warnings: Vec<String>,
}

/// A configuration error at a position, with the offending line and a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphConfigError {
    /// The configuration's file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// The text of the line, for the snippet.
    pub source_line: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for GraphConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        if !self.source_line.is_empty() {
            let n = self.line.to_string();
            let pad = " ".repeat(n.len());
            let caret_pad: String = self
                .source_line
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{pad} |\n{n} | {}\n{pad} | {caret_pad}^",
                self.source_line
            )?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphConfigError {}

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

struct Ctx<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
}

impl Ctx<'_> {
    fn err(
        &self,
        line: usize,
        col: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> GraphConfigError {
        GraphConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            source_line: self
                .lines
                .get(line.wrapping_sub(1))
                .map(|s| s.to_string())
                .unwrap_or_default(),
            hint,
        }
    }

    fn at(
        &self,
        node: &YamlNode,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> GraphConfigError {
        self.err(node.line, node.col, message, hint)
    }

    /// A `key:value` line (no space after the colon) at or before `upto`: YAML reads it
    /// as one plain scalar, which is the usual cause of a confusing structure error.
    fn missing_space(&self, from: usize, upto: usize) -> Option<GraphConfigError> {
        for line_no in from.max(1)..=upto.min(self.lines.len()) {
            let l = self.lines[line_no - 1];
            let content = l.trim_start();
            if content.starts_with('#') || content.starts_with('-') {
                continue;
            }
            let indent = l.len() - content.len();
            let Some(colon) = content.find(':') else {
                continue;
            };
            let key = &content[..colon];
            let after = &content[colon + 1..];
            let is_key = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            let next = after.chars().next();
            if is_key && next.is_some_and(|c| !c.is_whitespace() && c != '/' && c != ':') {
                let value = after.split(" #").next().unwrap_or(after).trim_end();
                return Some(self.err(
                    line_no,
                    indent + colon + 2,
                    format!("`{key}:{value}` is one plain string, not the key `{key}`: YAML needs a space after the colon"),
                    Some(format!("write `{key}: {value}`")),
                ));
            }
        }
        None
    }
}

fn scalar_string(ctx: &Ctx, node: &YamlNode, what: &str) -> Result<String, GraphConfigError> {
    match &node.value {
        YamlValue::Scalar(s, _) => Ok(s.clone()),
        _ => Err(ctx.at(
            node,
            format!("`{what}` must be a single value, found {}", node.kind()),
            None,
        )),
    }
}

fn mapping<'n>(
    ctx: &Ctx,
    node: &'n YamlNode,
    what: &str,
    example: &str,
) -> Result<&'n [(YamlNode, YamlNode)], GraphConfigError> {
    match &node.value {
        YamlValue::Map(entries) => Ok(entries),
        YamlValue::Scalar(s, _) if s.contains(':') => {
            if let Some(e) = ctx.missing_space(node.line, node.line + s.matches('\n').count() + 1) {
                return Err(e);
            }
            Err(ctx.at(
                node,
                format!("`{what}` must be a mapping, found the string {s:?}"),
                Some(example.to_string()),
            ))
        }
        _ => Err(ctx.at(
            node,
            format!("`{what}` must be a mapping, found {}", node.kind()),
            Some(example.to_string()),
        )),
    }
}

fn filter_map(ctx: &Ctx, node: &YamlNode, what: &str) -> Result<Object, GraphConfigError> {
    let entries = mapping(
        ctx,
        node,
        what,
        "write the filter as a mapping, e.g. `{host: servernode, trafficDirection: out}`",
    )?;
    let mut out = Object::new();
    for (k, v) in entries {
        if !matches!(v.value, YamlValue::Scalar(..)) {
            return Err(ctx.at(
                v,
                format!(
                    "filter value of `{}` must be a single value to compare with, found {}",
                    k.as_str().unwrap_or(""),
                    v.kind()
                ),
                None,
            ));
        }
        out.insert(k.as_str().unwrap_or_default().to_string(), v.to_json());
    }
    Ok(out)
}

/// Parses a configuration's text; `file` names it in messages.
pub fn parse_config(text: &str, file: &str) -> Result<GraphConfig, GraphConfigError> {
    let ctx = Ctx {
        file,
        lines: text.lines().collect(),
    };
    let root = match yaml::parse(text) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(ctx.err(
                1,
                1,
                "the graph configuration is empty",
                Some(format_example()),
            ))
        }
        Err(e) => {
            if let Some(better) = ctx.missing_space(1, e.line) {
                return Err(better);
            }
            return Err(ctx.err(e.line, e.col, format!("invalid YAML: {}", e.message), None));
        }
    };
    let top = mapping(&ctx, &root, "the configuration", &format_example())?;
    let mut warnings = Vec::new();
    let warn_unknown = |warnings: &mut Vec<String>, k: &YamlNode, section: &str| {
        warnings.push(format!(
            "{file}:{}:{}: unknown key `{}` in {section}, ignored",
            k.line,
            k.col,
            k.as_str().unwrap_or("")
        ));
    };
    for (k, _) in top {
        if !matches!(k.as_str(), Some("graph" | "db")) {
            warn_unknown(&mut warnings, k, "the configuration");
        }
    }
    let graph = root
        .get("graph")
        .ok_or_else(|| ctx.err(1, 1, "missing the `graph` section", Some(format_example())))?;
    let db = root
        .get("db")
        .ok_or_else(|| ctx.err(1, 1, "missing the `db` section", Some(format_example())))?;

    let g = mapping(
        &ctx,
        graph,
        "graph",
        "write `graph: {type: line, xLabel: ..., yLabel: ..., title: ...}`",
    )?;
    let mut plot_type = PlotType::Line;
    let (mut title, mut x_label, mut y_label) = (None, None, None);
    for (k, v) in g {
        match k.as_str() {
            Some("type") => {
                plot_type = match scalar_string(&ctx, v, "type")?.as_str() {
                    "line" => PlotType::Line,
                    "scatter" => PlotType::Scatter,
                    other => {
                        return Err(ctx.at(
                            v,
                            format!("unknown graph type `{other}`"),
                            Some("use `type: line` or `type: scatter`".into()),
                        ))
                    }
                }
            }
            Some("title") => title = Some(scalar_string(&ctx, v, "title")?),
            Some("xLabel") => x_label = Some(scalar_string(&ctx, v, "xLabel")?),
            Some("yLabel") => y_label = Some(scalar_string(&ctx, v, "yLabel")?),
            _ => warn_unknown(&mut warnings, k, "graph"),
        }
    }

    let d = mapping(&ctx, db, "db", "write `db: {agent: NAME, plots: [{series: LABEL, filter: {...}}], xValue: created, yValue: FIELD}`")?;
    let mut agent = None;
    let mut x_value = "created".to_string();
    let mut y_value = None;
    let mut plots: Option<(&YamlNode, Vec<SeriesSpec>)> = None;
    let mut single: Option<(&YamlNode, Object)> = None;
    for (k, v) in d {
        match k.as_str() {
            Some("agent") => agent = Some(scalar_string(&ctx, v, "agent")?),
            Some("xValue") => x_value = scalar_string(&ctx, v, "xValue")?,
            Some("yValue") => y_value = Some(scalar_string(&ctx, v, "yValue")?),
            Some("filter") => single = Some((k, filter_map(&ctx, v, "filter")?)),
            Some("plots") => {
                let YamlValue::Seq(items) = &v.value else {
                    return Err(ctx.at(
                        v,
                        format!("`plots` must be a list, found {}", v.kind()),
                        Some("write `plots: [{series: LABEL, filter: {...}}]`".into()),
                    ));
                };
                let mut list = Vec::new();
                for item in items {
                    mapping(
                        &ctx,
                        item,
                        "a plots entry",
                        "write `- {series: LABEL, filter: {...}}`",
                    )?;
                    let filter = match item.get("filter") {
                        Some(f) => filter_map(&ctx, f, "filter")?,
                        None => {
                            return Err(ctx.at(
                                item,
                                "this plots entry has no `filter`",
                                Some("write `- {series: LABEL, filter: {...}}`".into()),
                            ))
                        }
                    };
                    let label = item
                        .get("series")
                        .map(|s| scalar_string(&ctx, s, "series"))
                        .transpose()?;
                    if let YamlValue::Map(entries) = &item.value {
                        for (ik, _) in entries {
                            if !matches!(ik.as_str(), Some("series" | "filter")) {
                                warn_unknown(&mut warnings, ik, "a plots entry");
                            }
                        }
                    }
                    list.push(SeriesSpec {
                        label,
                        filter,
                        line: item.line,
                    });
                }
                if list.is_empty() {
                    return Err(ctx.at(
                        v,
                        "`plots` is empty",
                        Some("add `- {series: LABEL, filter: {...}}`".into()),
                    ));
                }
                plots = Some((k, list));
            }
            Some(key) if MONGO_KEYS.contains(&key) => {}
            _ => warn_unknown(&mut warnings, k, "db"),
        }
    }
    let y_value = y_value.ok_or_else(|| {
        ctx.at(
            db,
            "`db` has no `yValue` (the field to plot)",
            Some("add e.g. `yValue: bytes` under `db`".into()),
        )
    })?;
    let series = match (plots, single) {
        (Some((_, list)), None) => list,
        (Some((_, list)), Some((fk, _))) => {
            warnings.push(format!(
                "{file}:{}:{}: both `plots` and `filter` are given; `filter` is ignored",
                fk.line, fk.col
            ));
            list
        }
        (None, Some((fk, filter))) => vec![SeriesSpec {
            label: None,
            filter,
            line: fk.line,
        }],
        (None, None) => return Err(ctx.at(
            db,
            "`db` has neither `plots` nor `filter`",
            Some(
                "add `plots: [{series: LABEL, filter: {...}}]` (or the old single `filter: {...}`)"
                    .into(),
            ),
        )),
    };
    Ok(GraphConfig {
        plot_type,
        title,
        x_label,
        y_label,
        agent,
        series,
        x_value,
        y_value,
        warnings,
    })
}

fn format_example() -> String {
    "a graph configuration looks like `graph: {type: line, xLabel: Time(sec), yLabel: Bytes, title: Traffic plot}` and `db: {agent: monitor_agent, plots: [{series: Out, filter: {host: servernode}}], xValue: created, yValue: bytes}`".into()
}

/// The points of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Legend label.
    pub label: Option<String>,
    /// (x, y) points, x relative to the series' first record.
    pub points: Vec<(f64, f64)>,
    /// Records matched but without a numeric x or y.
    pub skipped: usize,
    /// The query that selected the records (for messages).
    pub query: Query,
}

fn numeric(r: &magi_proto::Record, field: &str) -> Option<f64> {
    let v = match field {
        "created" => return Some(r.created),
        _ => r.data.get(field)?,
    };
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// Queries the store for every series of the configuration.
pub fn load_series(store: &mut Store, cfg: &GraphConfig) -> Result<Vec<SeriesData>, StoreError> {
    let mut out = Vec::new();
    for spec in &cfg.series {
        let mut query = Query::new().filter_map(&spec.filter);
        if let Some(a) = &cfg.agent {
            query.agent = Some(a.clone());
        }
        let rows = store.query(&query)?;
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(rows.len());
        let mut skipped = 0;
        for row in &rows {
            match (
                numeric(&row.record, &cfg.x_value),
                numeric(&row.record, &cfg.y_value),
            ) {
                (Some(x), Some(y)) => pts.push((x, y)),
                _ => skipped += 1,
            }
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(&(x0, _)) = pts.first() {
            for p in &mut pts {
                p.0 -= x0;
            }
        }
        out.push(SeriesData {
            label: spec.label.clone(),
            points: pts,
            skipped,
            query,
        });
    }
    Ok(out)
}

/// A description of a query for messages (`agent=monitor_agent host=servernode peerNode=clientnode`).
pub fn describe_query(q: &Query) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("run", &q.run), ("agent", &q.agent), ("host", &q.host)] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    for (k, v) in &q.fields {
        match v {
            Value::String(s) => parts.push(format!("{k}={s}")),
            other => parts.push(format!("{k}={other}")),
        }
    }
    if parts.is_empty() {
        "every record".into()
    } else {
        parts.join(" ")
    }
}

/// Image size of the plots (the original's matplotlib default: 800 x 600).
pub const SIZE: (u32, u32) = (800, 600);

/// The series colours, first red as in the original's plots.
pub const COLOURS: [RGBColor; 8] = [
    RGBColor(255, 0, 0),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A "nice" axis range covering [lo, hi], and its tick step (1, 2, 2.5 or 5 × 10^k).
pub fn nice_range(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (mut lo, mut hi) = (lo, hi);
    if (hi - lo).abs() < f64::EPSILON * hi.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let raw = (hi - lo) / 9.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let nlo = (lo / step).floor() * step;
    let nhi = (hi / step).ceil() * step;
    if !(nlo.is_finite() && nhi.is_finite() && step.is_finite() && step > 0.0) {
        // Values near the limits of f64: plot the raw range.
        return (lo, hi, (hi / 9.0 - lo / 9.0).max(f64::MIN_POSITIVE));
    }
    (nlo, nhi, step)
}

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font cannot be read".to_string())
    })
    .clone()
}

fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..=9usize)
        .find(|d| {
            let scaled = step * 10f64.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(9);
    let s = format!("{v:.decimals$}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Draws the series into a PNG file of [`SIZE`].
pub fn render_png(cfg: &GraphConfig, series: &[SeriesData], out: &Path) -> Result<(), GraphError> {
    let shown = out.display().to_string();
    let draw_err = |e: &dyn fmt::Display| GraphError::Draw {
        path: shown.clone(),
        message: e.to_string(),
    };
    register_font().map_err(|e| draw_err(&e))?;
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        let which: Vec<String> = series.iter().map(|s| describe_query(&s.query)).collect();
        return Err(GraphError::NoData(format!(
            "no record matches {}",
            which.join("; nor ")
        )));
    }
    let (xmin, xmax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1, xstep) = nice_range(xmin.min(0.0), xmax);
    let (y0, y1, ystep) = nice_range(ymin, ymax);

    let root = BitMapBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin_top(if cfg.title.is_some() { 55 } else { 20 })
        .margin_right(80)
        .margin_left(20)
        .margin_bottom(10)
        .x_label_area_size(50)
        .y_label_area_size(75);
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| draw_err(&e))?;
    let xfmt = |v: &f64| tick_label(*v, xstep);
    let yfmt = |v: &f64| tick_label(*v, ystep);
    let mut mesh = chart.configure_mesh();
    mesh.disable_mesh()
        .x_labels(((x1 - x0) / xstep).round() as usize + 1)
        .y_labels(((y1 - y0) / ystep).round() as usize + 1)
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .label_style(("sans-serif", 16).into_font())
        .axis_desc_style(("sans-serif", 17).into_font())
        .axis_style(BLACK.stroke_width(1));
    if let Some(l) = &cfg.x_label {
        mesh.x_desc(l);
    }
    if let Some(l) = &cfg.y_label {
        mesh.y_desc(l);
    }
    mesh.draw().map_err(|e| draw_err(&e))?;
    if let Some(t) = &cfg.title {
        // Centred over the axes, as matplotlib does.
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let style = ("sans-serif", 22)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        root.draw_text(t, &style, ((xr.start + xr.end) / 2, yr.start - 12))
            .map_err(|e| draw_err(&e))?;
    }

    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let label = s.label.clone().unwrap_or_default();
        let anno = match cfg.plot_type {
            PlotType::Line => chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| draw_err(&e))?,
            PlotType::Scatter => chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| draw_err(&e))?,
        };
        if s.label.is_some() {
            anno.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        }
    }
    if series.iter().any(|s| s.label.is_some()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15).into_font())
            .draw()
            .map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

/// What a PNG holds, for checks: its size and how many pixels of a region are not white.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngInk {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Non-white pixels inside the region.
    pub ink: u64,
}

/// The region inside the axes of a [`SIZE`] plot (x0, y0, x1, y1), clear of labels.
pub const PLOT_REGION: (u32, u32, u32, u32) = (110, 70, 715, 530);

/// Reads a PNG and counts the non-white pixels in `region` (x0, y0, x1, y1, exclusive ends).
pub fn png_ink(path: &Path, region: (u32, u32, u32, u32)) -> Result<PngInk, GraphError> {
    let img = image::open(path)
        .map_err(|e| GraphError::Draw {
            path: path.display().to_string(),
            message: format!("cannot read back: {e}"),
        })?
        .to_rgb8();
    let (width, height) = img.dimensions();
    let (x0, y0, x1, y1) = region;
    let ink = img
        .enumerate_pixels()
        .filter(|(x, y, p)| (x0..x1).contains(x) && (y0..y1).contains(y) && p.0 != [255, 255, 255])
        .count() as u64;
    Ok(PngInk { width, height, ink })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = "graph:\n   type: line\n   xLabel: Time(sec)\n   yLabel: Bytes\n   title: Traffic plot\ndb:\n   agent: monitor_agent\n   plots:\n        - { series: Out , filter: {host: servernode, peerNode: clientnode, trafficDirection: out} }\n        - { series: In , filter: {host: servernode, peerNode: clientnode, trafficDirection: in} } \n   xValue: created\n   yValue: bytes\n   #dbName: magi_cs\n";

    #[test]
    fn current_format() {
        let c = parse_config(CURRENT, "g.conf").unwrap();
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].label.as_deref(), Some("Out"));
        assert_eq!(
            c.series[1].filter.get("trafficDirection"),
            Some(&Value::from("in"))
        );
        assert_eq!(
            (c.x_value.as_str(), c.y_value.as_str()),
            ("created", "bytes")
        );
        assert_eq!(c.agent.as_deref(), Some("monitor_agent"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn old_format_single_filter() {
        let text = "graph:\n   type: scatter\n   title: T\ndb:\n   agent: monitor_agent\n   filter:\n        host: router\n        peerNode: clientnode-1\n   xValue: created\n   yValue: bytes\n";
        let c = parse_config(text, "g.conf").unwrap();
        assert_eq!(c.plot_type, PlotType::Scatter);
        assert_eq!(c.series.len(), 1);
        assert_eq!(c.series[0].label, None);
        assert_eq!(c.series[0].line, 6);
    }

    #[test]
    fn missing_space_after_colon_is_reported_at_its_line() {
        let text = "graph:\n   type: line\ndb:\n   agent:monitor_agent\n   filter:\n        host: servernode\n   yValue: bytes\n";
        let e = parse_config(text, "cs.conf").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(
            e.to_string().contains("write `agent: monitor_agent`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_type_and_missing_keys() {
        let e = parse_config(
            "graph: {type: pie}\ndb: {agent: a, filter: {h: 1}, yValue: y}\n",
            "g",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (1, "unknown graph type `pie`")
        );
        let e = parse_config("graph: {type: line}\ndb: {agent: a, yValue: y}\n", "g").unwrap_err();
        assert!(e.message.contains("neither"), "{e}");
        let e =
            parse_config("graph: {type: line}\ndb: {agent: a, filter: {h: 1}}\n", "g").unwrap_err();
        assert!(e.message.contains("yValue"), "{e}");
        let e = parse_config("graph: {type: line}\n", "g").unwrap_err();
        assert!(e.message.contains("`db`"), "{e}");
        let e = parse_config("", "g").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
    }

    #[test]
    fn nice_ranges() {
        assert_eq!(nice_range(0.0, 58.0), (0.0, 60.0, 10.0));
        assert_eq!(nice_range(1417.0, 9826.0), (1000.0, 10000.0, 1000.0));
        let (lo, hi, _) = nice_range(5.0, 5.0);
        assert!(lo < 5.0 && hi > 5.0);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick_label(1000.0, 1000.0), "1000");
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(0.25, 0.25), "0.25");
    }
}
