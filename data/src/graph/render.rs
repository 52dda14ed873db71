//! Drawing series into a PNG the way the original's matplotlib plots looked: 800 x 600,
//! "nice" axis ranges, the first series red, a legend when series are labelled.
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::config::{GraphConfig, PlotType};
use super::series::{describe_query, SeriesData};
use super::GraphError;

/// The bundled font (DejaVu Sans, see `fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");

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
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    draw(cfg, series, &all, &mut pixels).map_err(|e| draw_err(&e))?;
    write_png(out, &pixels).map_err(|e| draw_err(&e))
}

/// Draws the plot into an RGB buffer of [`SIZE`].
fn draw(
    cfg: &GraphConfig,
    series: &[SeriesData],
    all: &[(f64, f64)],
    pixels: &mut [u8],
) -> Result<(), String> {
    let draw_err = |e: &dyn fmt::Display| e.to_string();
    let (xmin, xmax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = all
        .iter()
        .chain(
            cfg.band
                .iter()
                .flat_map(|b| [(xmin, b.low), (xmin, b.high)])
                .collect::<Vec<_>>()
                .iter(),
        )
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x0, x1, xstep) = nice_range(xmin.min(0.0), xmax);
    let (y0, y1, ystep) = nice_range(ymin, ymax);

    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
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

    if let Some(band) = &cfg.band {
        let shade = RGBColor(200, 200, 200).mix(0.5);
        let anno = chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, band.low), (x1, band.high)],
                shade.filled(),
            )))
            .map_err(|e| draw_err(&e))?;
        if let Some(label) = &band.label {
            anno.label(label).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade.filled())
            });
        }
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
    if series.iter().any(|s| s.label.is_some())
        || cfg.band.as_ref().is_some_and(|b| b.label.is_some())
    {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15).into_font())
            .draw()
            .map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))
}

/// Writes an RGB buffer of [`SIZE`] as a PNG file.
fn write_png(out: &Path, pixels: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| e.to_string())?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
