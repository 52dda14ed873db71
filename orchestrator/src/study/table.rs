//! The study's table (CSV and JSON, one row per cell) and its plots of a figure against a
//! parameter with the spread over the cells that share a value (replicates, and the
//! other parameters' values).

use std::collections::BTreeMap;
use std::path::Path;

use magi_data::graph::{render_png, GraphConfig, PlotType, SeriesData};
use magi_data::Query;
use magi_proto::Object;
use serde_json::{json, Value};

use super::figures::Figure;
use super::Plan;
use crate::recorded::RecordedRun;

/// One row per cell of the plan, in the grid's order, with the figures from each cell's
/// data; a cell never run has the outcome `not run`.
pub fn rows(plan: &Plan, study: &Path, figures: &[Figure]) -> Vec<Row> {
    let mut cells: Vec<&super::Cell> = plan.cells.iter().collect();
    cells.sort_by(|a, b| a.name.cmp(&b.name));
    cells
        .into_iter()
        .map(|cell| {
            let dir = study.join("runs").join(&cell.name);
            let record = RecordedRun::read(&dir).ok();
            let mut store =
                magi_data::Store::open_existing(&dir.join(magi_data::DATA_FILE).to_string_lossy())
                    .ok();
            let figures = figures
                .iter()
                .map(|f| {
                    let v = store.as_mut().and_then(|s| f.compute(s).ok().flatten());
                    (f.name.clone(), v)
                })
                .collect();
            let parameters = record.as_ref().map(|r| r.parameters()).unwrap_or_else(|| {
                cell.defines
                    .iter()
                    .filter_map(|d| d.split_once('='))
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect()
            });
            Row {
                cell: cell.name.clone(),
                replicate: cell.replicate,
                parameters,
                outcome: record
                    .as_ref()
                    .map(|r| r.outcome().to_string())
                    .unwrap_or_else(|| "not run".into()),
                exit_code: record.as_ref().and_then(RecordedRun::exit_code),
                duration: record.as_ref().and_then(RecordedRun::duration),
                figures,
            }
        })
        .collect()
}

/// Writes `cells.csv`, `cells.json` and the plots; returns the files written, and the
/// plots that could not be drawn with why.
pub fn write(plan: &Plan, study: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let figures: Vec<Figure> = plan
        .figures
        .iter()
        .map(|f| Figure::parse(f))
        .collect::<Result<_, _>>()?;
    let rows = rows(plan, study, &figures);
    // Columns: the swept parameters first, then any other parameter the runs used.
    let mut params = plan.parameters();
    for r in &rows {
        for k in r.parameters.keys() {
            if !params.contains(k) {
                params.push(k.clone());
            }
        }
    }
    let mut written = Vec::new();
    let mut problems = Vec::new();
    let put = |name: &str, text: String, written: &mut Vec<String>| {
        std::fs::write(study.join(name), text)
            .map(|_| written.push(name.to_string()))
            .map_err(|e| format!("cannot write {}/{name}: {e}", study.display()))
    };
    put("cells.csv", csv(&rows, &params, &figures), &mut written)?;
    let doc: Vec<Value> = rows.iter().map(Row::to_json).collect();
    put(
        "cells.json",
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
        &mut written,
    )?;
    let plots: Vec<(String, String)> = if plan.plots.is_empty() {
        let first = plan.parameters().into_iter().next();
        figures
            .iter()
            .filter_map(|f| first.clone().map(|p| (f.name.clone(), p)))
            .collect()
    } else {
        plan.plots
            .iter()
            .filter_map(|p| p.split_once(':'))
            .map(|(f, p)| (f.to_string(), p.to_string()))
            .collect()
    };
    for (figure, param) in plots {
        let name = format!("{figure}-vs-{param}.png");
        match plot(&rows, &figure, &param, &study.join(&name)) {
            Ok(()) => written.push(name),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    Ok((written, problems))
}

/// One row of the study's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The cell's run name.
    pub cell: String,
    /// Its replicate (1-based).
    pub replicate: usize,
    /// Its parameter values.
    pub parameters: Object,
    /// `success`, `failed`, `interrupted` or `unfinished`.
    pub outcome: String,
    /// `magi run`'s exit code.
    pub exit_code: Option<i64>,
    /// Seconds the run took.
    pub duration: Option<f64>,
    /// Each figure's value, by name.
    pub figures: Vec<(String, Option<f64>)>,
}

impl Row {
    /// The row as a JSON object.
    pub fn to_json(&self) -> Value {
        let mut o = json!({
            "cell": self.cell, "replicate": self.replicate, "parameters": self.parameters,
            "outcome": self.outcome, "exit_code": self.exit_code, "duration": self.duration,
        });
        for (name, v) in &self.figures {
            o[name] = json!(v);
        }
        o
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The table as CSV: cell, replicate, one column per parameter, outcome, exit code,
/// duration, one column per figure.
pub fn csv(rows: &[Row], params: &[String], figures: &[Figure]) -> String {
    let mut head = vec!["cell".to_string(), "replicate".to_string()];
    head.extend(params.iter().cloned());
    head.extend(["outcome", "exit_code", "duration_s"].map(String::from));
    head.extend(figures.iter().map(|f| f.name.clone()));
    let mut out = head
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    for r in rows {
        let mut cells = vec![r.cell.clone(), r.replicate.to_string()];
        cells.extend(params.iter().map(|p| {
            r.parameters
                .get(p)
                .map(crate::recorded::value_text)
                .unwrap_or_default()
        }));
        cells.push(r.outcome.clone());
        cells.push(r.exit_code.map(|c| c.to_string()).unwrap_or_default());
        cells.push(num(r.duration));
        cells.extend(r.figures.iter().map(|(_, v)| num(*v)));
        out += &(cells
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",")
            + "\n");
    }
    out
}

/// Mean, min and max of a figure for each value of a parameter (numeric values only),
/// ordered by the value.
pub fn spread(rows: &[Row], figure: &str, param: &str) -> Vec<(f64, f64, f64, f64)> {
    let mut by: BTreeMap<i64, (f64, Vec<f64>)> = BTreeMap::new();
    for r in rows {
        let x = r.parameters.get(param).and_then(|v| match v {
            Value::String(s) => s.parse::<f64>().ok(),
            other => other.as_f64(),
        });
        let y = r
            .figures
            .iter()
            .find(|(n, _)| n == figure)
            .and_then(|(_, v)| *v);
        if let (Some(x), Some(y)) = (x, y) {
            // Keyed by the value in millionths, so equal values share an entry.
            by.entry((x * 1e6).round() as i64)
                .or_insert((x, Vec::new()))
                .1
                .push(y);
        }
    }
    by.into_values()
        .map(|(x, ys)| {
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            let min = ys.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (x, mean, min, max)
        })
        .collect()
}

/// Plots a figure against a parameter: the mean over the cells sharing a value, and the
/// smallest and largest of them, as three lines.
pub fn plot(rows: &[Row], figure: &str, param: &str, out: &Path) -> Result<(), String> {
    let points = spread(rows, figure, param);
    if points.is_empty() {
        return Err(format!(
            "no cell has both a numeric `{param}` and a value of `{figure}`"
        ));
    }
    let series = |label: &str, pick: fn(&(f64, f64, f64, f64)) -> f64| SeriesData {
        label: Some(label.to_string()),
        points: points.iter().map(|p| (p.0, pick(p))).collect(),
        skipped: 0,
        query: Query::new(),
    };
    let cfg = GraphConfig {
        band: None,
        plot_type: PlotType::Line,
        title: Some(format!("{figure} against {param}")),
        x_label: Some(param.to_string()),
        y_label: Some(figure.to_string()),
        agent: None,
        series: Vec::new(),
        x_value: param.to_string(),
        y_value: figure.to_string(),
        warnings: Vec::new(),
    };
    let data = [
        series("mean", |p| p.1),
        series("min", |p| p.2),
        series("max", |p| p.3),
    ];
    render_png(&cfg, &data, out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_groups_replicates_by_parameter_value() {
        let row = |x: Value, y: f64| Row {
            cell: "c".into(),
            replicate: 1,
            parameters: json!({"interval": x}).as_object().cloned().unwrap(),
            outcome: "success".into(),
            exit_code: Some(0),
            duration: Some(1.0),
            figures: vec![("bps".into(), Some(y))],
        };
        let rows = [
            row(json!(1), 10.0),
            row(json!("1"), 20.0),
            row(json!(5), 3.0),
        ];
        assert_eq!(
            spread(&rows, "bps", "interval"),
            [(1.0, 15.0, 10.0, 20.0), (5.0, 3.0, 3.0, 3.0)]
        );
        let text = csv(&rows, &["interval".into()], &[]);
        assert!(
            text.starts_with("cell,replicate,interval,outcome,exit_code,duration_s\n"),
            "{text}"
        );
    }
}
