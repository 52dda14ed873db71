//! The original case study's recorded data, plotted with its own graph configuration,
//! gives a plot of the original's shape; malformed configurations get a clear error.
use std::path::{Path, PathBuf};

use magi_data::graph::{self, GraphConfig};
use magi_data::{import, Store};

fn casestudies() -> PathBuf {
    let dir = match std::env::var_os("MAGI_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
    .join("casestudies");
    assert!(
        dir.is_dir(),
        "the case-study data is missing: {} (set MAGI_SHARED to the shared/ folder)",
        dir.display()
    );
    dir
}

fn imported_store(dir: &Path, export: &str) -> Store {
    let text = std::fs::read_to_string(casestudies().join(export)).expect("read export");
    let parsed = import::parse_export(&text, "cs");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let mut store =
        Store::open(dir.join("data.sqlite").to_str().expect("utf-8 path")).expect("open store");
    store.insert_batch(&parsed.records).expect("insert");
    store
}

/// Red pixels of a plot: (x, y) of every pixel that is clearly the first series' colour.
fn red_pixels(png: &Path) -> (u32, u32, Vec<(u32, u32)>) {
    let img = graph::read_png(png).expect("decode png");
    let red = img
        .enumerate()
        .filter(|(_, _, p)| p[0] > 180 && p[1] < 90 && p[2] < 90)
        .map(|(x, y, _)| (x, y))
        .collect();
    (img.width, img.height, red)
}

/// Shape features of a plotted curve: horizontal and vertical extent of its pixels
/// (fractions of the image) and how many times it turns (local extrema of its mean
/// height over 60 column bands).
fn features(red: &[(u32, u32)], w: u32, h: u32) -> (f64, f64, usize) {
    let (x0, x1) = red
        .iter()
        .fold((u32::MAX, 0), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = red
        .iter()
        .fold((u32::MAX, 0), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let bins = 60;
    let mut sum = vec![0.0; bins];
    let mut n = vec![0usize; bins];
    for &(x, y) in red {
        let b = ((((x - x0) as f64) / ((x1 - x0 + 1) as f64)) * bins as f64) as usize;
        sum[b.min(bins - 1)] += y as f64;
        n[b.min(bins - 1)] += 1;
    }
    let prof: Vec<f64> = sum
        .iter()
        .zip(&n)
        .filter(|(_, c)| **c > 0)
        .map(|(s, c)| s / *c as f64)
        .collect();
    let turns = prof
        .windows(3)
        .filter(|t| (t[1] - t[0]) * (t[2] - t[1]) < 0.0)
        .count();
    (
        (x1 - x0) as f64 / w as f64,
        (y1 - y0) as f64 / h as f64,
        turns,
    )
}

fn config(text: &str) -> GraphConfig {
    graph::parse_config(text, "test.conf").expect("valid config")
}

#[test]
fn case_study_plot_has_the_original_shape() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = imported_store(tmp.path(), "magi_cs_experiment_data.json");
    // The case study's configuration with its `agent:monitor_agent` typo fixed.
    let text = std::fs::read_to_string(casestudies().join("cs_magi_graph.conf"))
        .expect("read conf")
        .replace("agent:monitor_agent", "agent: monitor_agent");
    let cfg = config(&text);
    let series = graph::load_series(&mut store, &cfg).expect("query");
    assert_eq!(series.len(), 1);
    assert_eq!(
        series[0].points.len(),
        60,
        "one sample per second for the procedure's minute"
    );
    assert_eq!(
        series[0].points[0].0, 0.0,
        "x is seconds since the first record"
    );
    assert!(series[0].points.last().expect("points").0 > 57.0);

    let out = tmp.path().join("plot.png");
    graph::render_png(&cfg, &series, &out).expect("render");
    if let Some(keep) = std::env::var_os("MAGI_KEEP_PLOT") {
        std::fs::copy(&out, keep).expect("keep plot");
    }
    let (w, h, red) = red_pixels(&out);
    assert_eq!((w, h), graph::SIZE);
    // Non-empty plot area: the curve's pixels inside the axes.
    let inside = red
        .iter()
        .filter(|(x, y)| (100..720).contains(x) && (60..540).contains(y))
        .count();
    assert!(inside > 3000, "only {inside} curve pixels in the plot area");
    let columns: std::collections::BTreeSet<u32> = red.iter().map(|p| p.0).collect();
    assert!(
        columns.len() > 500,
        "the curve spans only {} columns",
        columns.len()
    );

    // The original PNG comes from another run of the same procedure than the exported
    // records (its values differ), so the shapes are compared, not the pixels: a curve
    // across the whole time axis, as tall, turning as often.
    let (ow, oh, original) = red_pixels(&casestudies().join("cs_traffic_plot.png"));
    let (ours, theirs) = (features(&red, w, h), features(&original, ow, oh));
    assert!(
        (ours.0 - theirs.0).abs() < 0.1,
        "width {ours:?} vs original {theirs:?}"
    );
    assert!(
        (ours.1 - theirs.1).abs() < 0.2,
        "height {ours:?} vs original {theirs:?}"
    );
    assert!(
        theirs.2 >= 20 && ours.2 >= 20,
        "turns {ours:?} vs original {theirs:?}"
    );
}

#[test]
fn both_series_of_the_viz_config_are_drawn_with_a_legend() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = imported_store(tmp.path(), "magi_cs_experiment_data.json");
    let text = std::fs::read_to_string(casestudies().join("viz_clientserver_graph.conf"))
        .expect("read conf");
    let cfg = config(&text);
    let series = graph::load_series(&mut store, &cfg).expect("query");
    assert_eq!(
        series
            .iter()
            .map(|s| s.label.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("Out"), Some("In")]
    );
    assert!(series.iter().all(|s| s.points.len() > 50));
    let out = tmp.path().join("viz.png");
    graph::render_png(&cfg, &series, &out).expect("render");
    let img = graph::read_png(&out).expect("decode");
    let blue = img.rgb.iter().filter(|p| p[2] > 150 && p[0] < 80).count();
    assert!(
        blue > 1000,
        "the second series is missing ({blue} blue pixels)"
    );
    if let Some(keep) = std::env::var_os("MAGI_KEEP_VIZ") {
        std::fs::copy(&out, keep).expect("keep plot");
    }
}

#[test]
fn the_projects_own_graph_config_plots_the_case_study() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = imported_store(tmp.path(), "magi_cs_experiment_data.json");
    let cfg =
        graph::load_config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/clientserver.conf"))
            .expect("config");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let series = graph::load_series(&mut store, &cfg).expect("query");
    assert_eq!(
        series.iter().map(|s| s.points.len()).collect::<Vec<_>>(),
        vec![60, 60]
    );
}

#[test]
fn cs55_old_format_config_plots_the_router_link() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = imported_store(tmp.path(), "magi_cs55_experiment_data.json");
    let text =
        std::fs::read_to_string(casestudies().join("casestudy_clientserver55_magi_graph.conf"))
            .expect("read");
    let cfg = config(&text);
    let series = graph::load_series(&mut store, &cfg).expect("query");
    assert!(series[0].points.len() > 50);
    let out = tmp.path().join("cs55.png");
    graph::render_png(&cfg, &series, &out).expect("render");
    let (w, h, red) = red_pixels(&out);
    let (ow, oh, original) = red_pixels(&casestudies().join("cs55_traffic_plot.png"));
    let (ours, theirs) = (features(&red, w, h), features(&original, ow, oh));
    assert!(
        (ours.0 - theirs.0).abs() < 0.1,
        "width {ours:?} vs original {theirs:?}"
    );
}

#[test]
fn case_study_config_typo_is_reported_at_its_line() {
    let path = casestudies().join("cs_magi_graph.conf");
    let err = graph::load_config(&path).expect_err("agent:monitor_agent must be rejected");
    let text = err.to_string();
    let graph::GraphError::Config(e) = err else {
        panic!("not a config error: {text}")
    };
    assert_eq!(e.line, 7, "{text}");
    assert!(text.contains("agent:monitor_agent"), "{text}");
    assert!(text.contains("write `agent: monitor_agent`"), "{text}");
}

#[test]
fn no_matching_record_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = imported_store(tmp.path(), "magi_cs_experiment_data.json");
    let cfg = config("graph: {type: scatter}\ndb: {agent: monitor_agent, filter: {host: nowhere}, yValue: bytes}\n");
    let series = graph::load_series(&mut store, &cfg).expect("query");
    let err =
        graph::render_png(&cfg, &series, &tmp.path().join("x.png")).expect_err("nothing to plot");
    assert!(err.to_string().contains("host=nowhere"), "{err}");
}

#[test]
fn mangled_configs_never_panic() {
    // Deterministic mutations of the case study's configurations: every result is a
    // configuration or an error with a line inside the text.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: Vec<char> = " :-{}[],#&*!|>'\"\n\tab0é".chars().collect();
    for name in [
        "cs_magi_graph.conf",
        "viz_clientserver_graph.conf",
        "casestudy_clientserver55_magi_graph.conf",
    ] {
        let base: Vec<char> = std::fs::read_to_string(casestudies().join(name))
            .expect("read")
            .chars()
            .collect();
        for _ in 0..400 {
            let mut text = base.clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % (text.len() + 1);
                match next() % 3 {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => text.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(e) = graph::parse_config(&text, "m.conf") {
                assert!(
                    e.line >= 1 && e.line <= text.lines().count().max(1) + 1,
                    "{e}\n--\n{text}"
                );
                let _ = e.to_string();
            }
        }
    }
}
