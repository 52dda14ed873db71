//! `magi web`: the live traffic page, as the original's `traffic.html`.
//!
//! - `GET /` (also `/traffic.html`): a self-contained page (inline JS, a `<canvas>`, no
//!   external resources) that plots Mbit per sample (`bytes * 8 / 1e6`, i.e. Mbit/s for
//!   the packet counter's 1 s samples) against seconds since t0, the earliest matching
//!   record, one line per series (host, peer or interface, direction);
//! - `GET /events`: server-sent events with the points, history first, then new records
//!   as they reach the store (a poller reads records newer than the last seen every
//!   `poll` interval and fans them out to every page).
//!
//! Both take the filters as query parameters: `agent`, `host`, `peerNode`,
//! `trafficDirection`, `intfName`, `run`. As in the original, `?host=NAME.EXP.PROJ` (the
//! original's database address) is accepted: when no record has that host, it is
//! ignored and the page says so.
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query as QueryParams, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::store::{Query, Store, StoreError, StoredRecord};

/// The page.
const PAGE: &str = include_str!("traffic.html");

/// Errors of the web server.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The listening socket failed.
    #[error("cannot serve on {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of the live page.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// How often the store is polled for new records.
    pub poll: Duration,
    /// Points each series keeps on the page (the original kept 1000).
    pub max_points: usize,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            poll: Duration::from_millis(500),
            max_points: 1000,
        }
    }
}

struct Shared {
    /// Taken (and dropped) by the poller thread when the server stops: a PostgreSQL
    /// client must not be dropped inside the async runtime.
    store: Mutex<Option<Store>>,
    tx: broadcast::Sender<Arc<Vec<StoredRecord>>>,
    stop: AtomicBool,
    opts: WebOptions,
}

/// Stops the poller when the server is dropped.
pub struct PollerGuard(Arc<Shared>);

impl Drop for PollerGuard {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

fn query(shared: &Shared, q: &Query) -> Result<Vec<StoredRecord>, StoreError> {
    // A panic while holding the lock leaves the store usable: queries are read-only.
    let mut guard = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut() {
        Some(store) => store.query(q),
        None => Err(StoreError::WriterClosed(
            ": the web server is stopping".into(),
        )),
    }
}

/// Builds the router and starts the store poller (stopped when the guard is dropped).
/// Nothing here blocks on the store, so it may be called from async code.
pub fn router(store: Store, opts: WebOptions) -> Result<(Router, PollerGuard), StoreError> {
    let (tx, _) = broadcast::channel(256);
    let shared = Arc::new(Shared {
        store: Mutex::new(Some(store)),
        tx,
        stop: AtomicBool::new(false),
        opts,
    });
    let poller = shared.clone();
    std::thread::Builder::new()
        .name("magi-web-poller".into())
        .spawn(move || poll_loop(poller))
        .map_err(|e| StoreError::WriterClosed(format!(": cannot start the poller: {e}")))?;
    let app = Router::new()
        .route("/", get(page))
        .route("/traffic.html", get(page))
        .route("/events", get(events))
        .with_state(shared.clone());
    Ok((app, PollerGuard(shared)))
}

/// Serves the page on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    opts: WebOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (app, guard) = router(store, opts)?;
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    drop(guard);
    r.map_err(|source| WebError::Io { addr, source })
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn bind_and_serve(
    addr: SocketAddr,
    store: Store,
    opts: WebOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Io {
            addr: addr.to_string(),
            source,
        })?;
    serve(listener, store, opts, shutdown).await
}

fn poll_loop(shared: Arc<Shared>) {
    let mut failing = false;
    let mut last = {
        let mut guard = shared.store.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_mut()
            .map(Store::last_id)
            .transpose()
            .unwrap_or_else(|e| {
                tracing::warn!("live page: reading the store failed: {e}");
                None
            })
    }
    .unwrap_or(0);
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(shared.opts.poll);
        let got = query(&shared, &Query::new().after(last).limit(10_000));
        match got {
            Ok(rows) if rows.is_empty() => {}
            Ok(rows) => {
                failing = false;
                last = rows.iter().map(|r| r.id).max().unwrap_or(last);
                // No page listening is fine: the send fails and the rows are dropped.
                let _ = shared.tx.send(Arc::new(rows));
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("live page: polling the store failed: {e}");
                }
                failing = true;
                let mut guard = shared.store.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(Err(e)) = guard.as_mut().map(Store::reconnect) {
                    tracing::debug!("live page: reconnecting failed: {e}");
                }
            }
        }
    }
    // Dropped here, outside the async runtime.
    let store = shared
        .store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    drop(store);
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

/// The filters of one page, from its query parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficFilter {
    /// The store query (columns and data fields).
    pub query: Query,
    /// A note for the page (e.g. the original's `?host=` form ignored).
    pub note: Option<String>,
}

/// Data fields that can be filtered on with query parameters.
const FIELD_PARAMS: &[&str] = &["peerNode", "trafficDirection", "intfName"];

/// Builds the filter from query parameters; `host_exists` says whether any record has a
/// host (to tell the original's `?host=db.exp.proj` from a real host name).
pub fn traffic_filter(
    params: &HashMap<String, String>,
    host_exists: impl FnOnce(&str) -> bool,
) -> TrafficFilter {
    let mut f = TrafficFilter::default();
    let get = |k: &str| params.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    if let Some(a) = get("agent") {
        f.query.agent = Some(a.to_string());
    }
    if let Some(r) = get("run") {
        f.query.run = Some(r.to_string());
    }
    for k in FIELD_PARAMS {
        if let Some(v) = get(k) {
            f.query
                .fields
                .push((k.to_string(), Value::String(v.to_string())));
        }
    }
    if let Some(h) = get("host") {
        if h.contains('.') && !host_exists(h) {
            f.note = Some(format!(
                "host={h} is the original's database address (configHost.experiment.project): showing every host of this store"
            ));
        } else {
            f.query.host = Some(h.to_string());
        }
    }
    f
}

/// The series a record belongs to: host, peer (or interface) and direction.
pub fn series_key(r: &magi_proto::Record) -> String {
    let mut s = r.host.clone();
    let text = |k: &str| r.data.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(p) = text("peerNode") {
        s.push_str(&format!(" \u{2194} {p}"));
    } else if let Some(i) = text("intfName") {
        s.push_str(&format!(" {i}"));
    }
    if let Some(d) = text("trafficDirection") {
        s.push_str(&format!(" {d}"));
    }
    s
}

/// Mbit in the record's sample (`bytes * 8 / 1e6`), if it has a numeric `bytes`.
pub fn megabits(r: &magi_proto::Record) -> Option<f64> {
    r.data
        .get("bytes")
        .and_then(Value::as_f64)
        .map(|b| b * 8.0 / 1e6)
}

fn points_event(rows: &[&StoredRecord], t0: f64) -> Option<Event> {
    let pts: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            megabits(&r.record).map(|y| json!([series_key(&r.record), r.record.created - t0, y]))
        })
        .collect();
    if pts.is_empty() {
        return None;
    }
    Some(
        Event::default()
            .event("points")
            .data(json!({"t0": t0, "points": pts}).to_string()),
    )
}

struct Feed {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Arc<Vec<StoredRecord>>>,
    query: Query,
    queue: std::collections::VecDeque<Event>,
    t0: Option<f64>,
    last_id: i64,
}

impl Feed {
    fn push_rows(&mut self, rows: &[StoredRecord]) {
        let fresh: Vec<&StoredRecord> = rows
            .iter()
            .filter(|r| {
                r.id > self.last_id
                    && self.query.matches(&r.record)
                    && megabits(&r.record).is_some()
            })
            .collect();
        self.last_id = rows
            .iter()
            .map(|r| r.id)
            .max()
            .unwrap_or(self.last_id)
            .max(self.last_id);
        if fresh.is_empty() {
            return;
        }
        let t0 = *self.t0.get_or_insert_with(|| {
            fresh
                .iter()
                .map(|r| r.record.created)
                .fold(f64::MAX, f64::min)
        });
        for chunk in fresh.chunks(2000) {
            if let Some(ev) = points_event(chunk, t0) {
                self.queue.push_back(ev);
            }
        }
    }
}

/// History rows cut to the newest `max` per series (the page keeps no more).
struct History {
    rows: Vec<StoredRecord>,
    last_id: i64,
}

fn latest_per_series(rows: Vec<StoredRecord>, max: usize) -> History {
    let last_id = rows.iter().map(|r| r.id).max().unwrap_or(0);
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<StoredRecord> = rows
        .into_iter()
        .rev()
        .filter(|r| {
            let n = count.entry(series_key(&r.record)).or_insert(0);
            *n += 1;
            *n <= max
        })
        .collect();
    kept.reverse();
    History {
        rows: kept,
        last_id,
    }
}

async fn blocking_query(shared: &Arc<Shared>, q: Query) -> Result<Vec<StoredRecord>, String> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || query(&s, &q).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = shared.tx.subscribe();
    let host = params.get("host").cloned().unwrap_or_default();
    let exists = if host.contains('.') {
        blocking_query(&shared, Query::new().host(host.trim()).limit(1))
            .await
            .map(|r| !r.is_empty())
            .unwrap_or(false)
    } else {
        true
    };
    let filter = traffic_filter(&params, |_| exists);
    let mut feed = Feed {
        shared: shared.clone(),
        rx,
        query: filter.query.clone(),
        queue: Default::default(),
        t0: None,
        last_id: 0,
    };
    let meta = json!({
        "filter": crate::graph::describe_query(&filter.query),
        "note": filter.note,
        "maxPoints": shared.opts.max_points,
    });
    feed.queue
        .push_back(Event::default().event("meta").data(meta.to_string()));
    match blocking_query(&shared, filter.query.clone()).await {
        Ok(rows) => {
            feed.t0 = rows
                .iter()
                .filter(|r| megabits(&r.record).is_some())
                .map(|r| r.record.created)
                .reduce(f64::min);
            let kept = latest_per_series(rows, shared.opts.max_points);
            feed.push_rows(&kept.rows);
            feed.last_id = feed.last_id.max(kept.last_id);
        }
        Err(e) => feed
            .queue
            .push_back(Event::default().event("error").data(e)),
    }
    feed.queue
        .push_back(Event::default().event("live").data("history sent"));
    let s = stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(ev) = feed.queue.pop_front() {
                return Some((Ok(ev), feed));
            }
            match feed.rx.recv().await {
                Ok(rows) => feed.push_rows(&rows),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let q = feed.query.clone().after(feed.last_id);
                    match blocking_query(&feed.shared, q).await {
                        Ok(rows) => feed.push_rows(&rows),
                        Err(e) => feed
                            .queue
                            .push_back(Event::default().event("error").data(e)),
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> HashMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn original_host_parameter_is_accepted() {
        let f = traffic_filter(&params(&[("host", "servernode.cs.montage")]), |_| false);
        assert_eq!(f.query.host, None);
        assert!(f.note.is_some());
        let f = traffic_filter(
            &params(&[("host", "servernode"), ("peerNode", "clientnode")]),
            |_| false,
        );
        assert_eq!(f.query.host.as_deref(), Some("servernode"));
        assert_eq!(
            f.query.fields,
            vec![("peerNode".to_string(), Value::from("clientnode"))]
        );
        let f = traffic_filter(&params(&[("host", "node.exp.proj")]), |_| true);
        assert_eq!(f.query.host.as_deref(), Some("node.exp.proj"));
    }

    #[test]
    fn history_keeps_the_newest_points_of_each_series() {
        let rec = |id: i64, host: &str| StoredRecord {
            id,
            record: magi_proto::Record {
                run: "r".into(),
                agent: "m".into(),
                host: host.into(),
                created: id as f64,
                data: Default::default(),
            },
        };
        let rows = vec![
            rec(1, "a"),
            rec(2, "b"),
            rec(3, "a"),
            rec(4, "a"),
            rec(5, "b"),
        ];
        let h = latest_per_series(rows, 2);
        assert_eq!(
            h.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert_eq!(h.last_id, 5);
    }

    #[test]
    fn series_and_megabits() {
        let r = magi_proto::Record {
            run: "r".into(),
            agent: "m".into(),
            host: "servernode".into(),
            created: 1.0,
            data: json!({"peerNode": "clientnode", "trafficDirection": "out", "bytes": 125000})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        assert_eq!(series_key(&r), "servernode \u{2194} clientnode out");
        assert_eq!(megabits(&r), Some(1.0));
    }
}
