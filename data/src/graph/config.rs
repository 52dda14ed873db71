//! The graph configuration: the original `magi_graph` format (a `graph` section for the
//! drawing and a `db` section naming the records), current and old, read with positions so
//! that every mistake is reported at its line.
use magi_proto::Object;

use super::config_error::{Ctx, GraphConfigError};
use magi_aal::yaml::{read_document, Node};

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

/// A band of y values drawn behind the series (`graph.band`): the feedback case study's
/// thresholds, between which its control loop keeps the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Its lower edge.
    pub low: f64,
    /// Its upper edge.
    pub high: f64,
    /// Its legend label.
    pub label: Option<String>,
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
    /// `graph.band` (an addition of ours): `{low: N, high: N, label: TEXT}`.
    pub band: Option<Band>,
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

/// A node of the configuration's tree.
type Yaml = Node<'static>;

fn scalar_string(ctx: &Ctx, node: &Yaml, what: &str) -> Result<String, GraphConfigError> {
    match node.text() {
        Some(s) => Ok(s.to_string()),
        None => Err(ctx.at(
            node,
            format!("`{what}` must be a single value, found {}", node.describe()),
            None,
        )),
    }
}

fn mapping<'n>(
    ctx: &Ctx,
    node: &'n Yaml,
    what: &str,
    example: &str,
) -> Result<&'n [(Yaml, Yaml)], GraphConfigError> {
    match (node.map(), node.text()) {
        (Some(entries), _) => Ok(entries),
        (None, Some(s)) if s.contains(':') => {
            let line = node.span.line as usize;
            if let Some(e) = ctx.missing_space(line, line + s.matches('\n').count() + 1) {
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
            format!("`{what}` must be a mapping, found {}", node.describe()),
            Some(example.to_string()),
        )),
    }
}

fn filter_map(ctx: &Ctx, node: &Yaml, what: &str) -> Result<Object, GraphConfigError> {
    let entries = mapping(
        ctx,
        node,
        what,
        "write the filter as a mapping, e.g. `{host: servernode, trafficDirection: out}`",
    )?;
    let mut out = Object::new();
    for (k, v) in entries {
        if v.text().is_none() {
            return Err(ctx.at(
                v,
                format!(
                    "filter value of `{}` must be a single value to compare with, found {}",
                    k.text().unwrap_or(""),
                    v.describe()
                ),
                None,
            ));
        }
        out.insert(k.text().unwrap_or_default().to_string(), v.to_json());
    }
    Ok(out)
}

/// Parses a configuration's text; `file` names it in messages.
pub fn parse_config(text: &str, file: &str) -> Result<GraphConfig, GraphConfigError> {
    let ctx = Ctx {
        file,
        lines: text.lines().collect(),
    };
    let doc = read_document(file, text);
    let mut warnings = Vec::new();
    for d in &doc.diagnostics {
        let (line, col) = (d.span.line as usize, d.span.col as usize);
        if d.is_error() {
            if let Some(better) = ctx.missing_space(1, line) {
                return Err(better);
            }
            return Err(ctx.err(line, col, d.message.clone(), d.help.clone()));
        }
        warnings.push(format!("{file}:{line}:{col}: {}", d.message));
    }
    let Some(root) = doc.root else {
        return Err(ctx.err(
            1,
            1,
            "the graph configuration is empty",
            Some(format_example()),
        ));
    };
    let top = mapping(&ctx, &root, "the configuration", &format_example())?;
    let warn_unknown = |warnings: &mut Vec<String>, k: &Yaml, section: &str| {
        warnings.push(format!(
            "{file}:{}:{}: unknown key `{}` in {section}, ignored",
            k.span.line,
            k.span.col,
            k.text().unwrap_or("")
        ));
    };
    for (k, _) in top {
        if !matches!(k.text(), Some("graph" | "db")) {
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
    let (mut title, mut x_label, mut y_label, mut band) = (None, None, None, None);
    for (k, v) in g {
        match k.text() {
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
            Some("band") => band = Some(read_band(&ctx, v)?),
            _ => warn_unknown(&mut warnings, k, "graph"),
        }
    }

    let d = mapping(&ctx, db, "db", "write `db: {agent: NAME, plots: [{series: LABEL, filter: {...}}], xValue: created, yValue: FIELD}`")?;
    let mut agent = None;
    let mut x_value = "created".to_string();
    let mut y_value = None;
    let mut plots: Option<(&Yaml, Vec<SeriesSpec>)> = None;
    let mut single: Option<(&Yaml, Object)> = None;
    for (k, v) in d {
        match k.text() {
            Some("agent") => agent = Some(scalar_string(&ctx, v, "agent")?),
            Some("xValue") => x_value = scalar_string(&ctx, v, "xValue")?,
            Some("yValue") => y_value = Some(scalar_string(&ctx, v, "yValue")?),
            Some("filter") => single = Some((k, filter_map(&ctx, v, "filter")?)),
            Some("plots") => {
                let Some(items) = v.seq() else {
                    return Err(ctx.at(
                        v,
                        format!("`plots` must be a list, found {}", v.describe()),
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
                    if let Some(entries) = item.map() {
                        for (ik, _) in entries {
                            if !matches!(ik.text(), Some("series" | "filter")) {
                                warn_unknown(&mut warnings, ik, "a plots entry");
                            }
                        }
                    }
                    list.push(SeriesSpec {
                        label,
                        filter,
                        line: item.span.line as usize,
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
                fk.span.line, fk.span.col
            ));
            list
        }
        (None, Some((fk, filter))) => vec![SeriesSpec {
            label: None,
            filter,
            line: fk.span.line as usize,
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
        band,
        agent,
        series,
        x_value,
        y_value,
        warnings,
    })
}

fn read_band(ctx: &Ctx, node: &Yaml) -> Result<Band, GraphConfigError> {
    const HOW: &str = "write `band: {low: 10100000, high: 10400000, label: thresholds}`";
    mapping(ctx, node, "band", HOW)?;
    let edge = |key: &str| -> Result<f64, GraphConfigError> {
        let v = node
            .get(key)
            .ok_or_else(|| ctx.at(node, format!("the band has no `{key}`"), Some(HOW.into())))?;
        scalar_string(ctx, v, key)?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| {
                ctx.at(
                    v,
                    format!("the band's `{key}` must be a number"),
                    Some(HOW.into()),
                )
            })
    };
    let (low, high) = (edge("low")?, edge("high")?);
    if low > high {
        return Err(ctx.at(
            node,
            "the band's `low` is above its `high`",
            Some(HOW.into()),
        ));
    }
    let label = node
        .get("label")
        .map(|l| scalar_string(ctx, l, "label"))
        .transpose()?;
    Ok(Band { low, high, label })
}

fn format_example() -> String {
    "a graph configuration looks like `graph: {type: line, xLabel: Time(sec), yLabel: Bytes, title: Traffic plot}` and `db: {agent: monitor_agent, plots: [{series: Out, filter: {host: servernode}}], xValue: created, yValue: bytes}`".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
    fn a_band_is_read_and_a_bad_one_named_at_its_line() {
        let with = |band: &str| {
            CURRENT.replace(
                "   title: Traffic plot\n",
                &format!("   title: Traffic plot\n   band: {band}\n"),
            )
        };
        let c = parse_config(
            &with("{low: 10100000, high: 10400000, label: thresholds}"),
            "g.conf",
        )
        .unwrap();
        assert_eq!(
            c.band,
            Some(Band {
                low: 10_100_000.0,
                high: 10_400_000.0,
                label: Some("thresholds".into())
            })
        );
        assert_eq!(parse_config(CURRENT, "g.conf").unwrap().band, None);
        for bad in ["{low: 2, high: 1}", "{low: x, high: 1}", "{high: 1}", "5"] {
            let e = parse_config(&with(bad), "g.conf").unwrap_err();
            assert_eq!(e.line, 6, "{bad}: {e}");
        }
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
    fn a_duplicate_key_is_a_warning_and_the_later_one_wins() {
        let text = "graph: {type: line}\ndb:\n   agent: a\n   agent: monitor_agent\n   filter: {h: 1}\n   yValue: y\n";
        let c = parse_config(text, "g.conf").unwrap();
        assert_eq!(c.agent.as_deref(), Some("monitor_agent"));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with("g.conf:4:4: "),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn a_yaml_syntax_error_is_reported_at_its_place() {
        let e = parse_config("graph: {type: line\ndb: {yValue: y}\n", "g.conf").unwrap_err();
        assert!(e.message.starts_with("YAML syntax error"), "{e}");
        assert_eq!(e.line, 1, "{e}");
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
}
