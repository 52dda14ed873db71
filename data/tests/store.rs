//! The store contract, run against SQLite and against the real PostgreSQL.
//!
//! PostgreSQL tests use a table of their own (`table=` in the URL) and drop it afterwards.
//! They need the server at `MAGI_TEST_POSTGRES` (default
//! `postgres://root@127.0.0.1:5432/test`); without it they are skipped with a message,
//! unless `CI` or `MAGI_REQUIRE_SERVICES` is set (as `scripts/test` does), where they fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use magi_data::{import, Query, Record, Store, Writer};
use serde_json::{json, Value};

fn rec(run: &str, agent: &str, host: &str, created: f64, data: Value) -> Record {
    Record {
        run: run.into(),
        agent: agent.into(),
        host: host.into(),
        created,
        data: data.as_object().cloned().unwrap_or_default(),
    }
}

fn sample() -> Vec<Record> {
    vec![
        rec(
            "r1",
            "monitor_agent",
            "servernode",
            3.0,
            json!({"peerNode": "clientnode", "trafficDirection": "out", "bytes": 300}),
        ),
        rec(
            "r1",
            "monitor_agent",
            "servernode",
            1.0,
            json!({"peerNode": "clientnode", "trafficDirection": "out", "bytes": 100}),
        ),
        rec(
            "r1",
            "monitor_agent",
            "servernode",
            2.0,
            json!({"peerNode": "clientnode", "trafficDirection": "in", "bytes": 20.5}),
        ),
        rec(
            "r1",
            "monitor_agent",
            "clientnode",
            1.5,
            json!({"peerNode": "servernode", "trafficDirection": "out", "bytes": 7}),
        ),
        rec(
            "r1",
            "client_agent",
            "clientnode",
            2.5,
            json!({"url": "http://servernode/x", "ok": true, "err": null}),
        ),
        rec(
            "r2",
            "monitor_agent",
            "servernode",
            4.0,
            json!({"peerNode": "clientnode", "trafficDirection": "out", "bytes": 400}),
        ),
    ]
}

fn created(rows: &[magi_data::StoredRecord]) -> Vec<f64> {
    rows.iter().map(|r| r.record.created).collect()
}

/// The contract every backend meets.
fn contract(store: &mut Store) {
    assert_eq!(store.count().unwrap(), 0);
    assert_eq!(store.last_id().unwrap(), 0);
    store.insert_batch(&sample()).unwrap();
    store.flush().unwrap();
    assert_eq!(store.count().unwrap(), 6);

    // Everything, sorted by created.
    let all = store.query(&Query::new()).unwrap();
    assert_eq!(created(&all), vec![1.0, 1.5, 2.0, 2.5, 3.0, 4.0]);
    assert_eq!(all[0].record.data.get("bytes"), Some(&json!(100)));

    // Agent, host, run and field filters (the original's filter map).
    let f = json!({"host": "servernode", "peerNode": "clientnode", "trafficDirection": "out"});
    let out = store
        .query(
            &Query::new()
                .agent("monitor_agent")
                .filter_map(f.as_object().unwrap()),
        )
        .unwrap();
    assert_eq!(created(&out), vec![1.0, 3.0, 4.0]);
    let out = store
        .query(
            &Query::new()
                .run("r1")
                .agent("monitor_agent")
                .host("servernode"),
        )
        .unwrap();
    assert_eq!(created(&out), vec![1.0, 2.0, 3.0]);

    // Numbers compare by value; booleans and null as JSON.
    assert_eq!(
        created(&store.query(&Query::new().field("bytes", 300.0)).unwrap()),
        vec![3.0]
    );
    assert_eq!(
        created(&store.query(&Query::new().field("bytes", 20.5)).unwrap()),
        vec![2.0]
    );
    assert_eq!(
        created(&store.query(&Query::new().field("ok", true)).unwrap()),
        vec![2.5]
    );
    assert!(store
        .query(&Query::new().field("ok", false))
        .unwrap()
        .is_empty());
    assert_eq!(
        created(
            &store
                .query(&Query::new().field("err", Value::Null))
                .unwrap()
        ),
        vec![2.5]
    );
    assert!(store
        .query(&Query::new().field("nosuchfield", "x"))
        .unwrap()
        .is_empty());
    // A string never equals a number.
    assert!(store
        .query(&Query::new().field("bytes", "300"))
        .unwrap()
        .is_empty());

    // Time range, inclusive.
    let out = store
        .query(&Query::new().between(Some(1.5), Some(3.0)))
        .unwrap();
    assert_eq!(created(&out), vec![1.5, 2.0, 2.5, 3.0]);
    assert!(store
        .query(&Query::new().between(Some(3.0), Some(1.0)))
        .is_err());

    // Following the store: rows after an id, limited, still sorted by created.
    let last = store.last_id().unwrap();
    assert!(last > 0);
    assert!(store.query(&Query::new().after(last)).unwrap().is_empty());
    store
        .insert_batch(&[
            rec("r1", "a", "h", 0.5, json!({})),
            rec("r1", "a", "h", 9.0, json!({})),
        ])
        .unwrap();
    let newer = store.query(&Query::new().after(last)).unwrap();
    assert_eq!(created(&newer), vec![0.5, 9.0]);
    assert!(newer.iter().all(|r| r.id > last));
    assert_eq!(
        store
            .query(&Query::new().after(last).limit(1))
            .unwrap()
            .len(),
        1
    );

    // Every result agrees with Query::matches.
    let everything = store.query(&Query::new()).unwrap();
    for q in [
        Query::new()
            .agent("monitor_agent")
            .field("trafficDirection", "out"),
        Query::new().host("clientnode").between(Some(2.0), None),
        Query::new().field("bytes", 7),
    ] {
        let expect: Vec<f64> = everything
            .iter()
            .filter(|r| q.matches(&r.record))
            .map(|r| r.record.created)
            .collect();
        assert_eq!(created(&store.query(&q).unwrap()), expect, "{q:?}");
    }
}

#[test]
fn sqlite_meets_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path().join("run/data.sqlite").to_str().unwrap()).unwrap();
    contract(&mut store);
}

#[test]
fn sqlite_directory_means_its_data_file_and_readers_need_an_existing_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let err = Store::open_existing(dir).unwrap_err();
    assert!(err.to_string().contains("no record store"), "{err}");
    Store::open(dir)
        .unwrap()
        .insert(&rec("r", "a", "h", 1.0, json!({"k": 1})))
        .unwrap();
    assert!(tmp.path().join("data.sqlite").is_file());
    let mut again = Store::open_existing(dir).unwrap();
    assert_eq!(again.count().unwrap(), 1);
}

#[test]
fn sqlite_field_names_with_quotes_are_refused_not_injected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path().to_str().unwrap()).unwrap();
    let err = store.query(&Query::new().field("a\"b", 1)).unwrap_err();
    assert!(err.to_string().contains("quote"), "{err}");
    assert!(store
        .query(&Query::new().field("a'); DROP TABLE records; --", 1))
        .unwrap()
        .is_empty());
    assert_eq!(store.count().unwrap(), 0);
}

#[test]
fn writer_thread_stores_everything_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.sqlite");
    let writer = Writer::spawn(Store::open(path.to_str().unwrap()).unwrap());
    for i in 0..2500 {
        writer
            .send(rec("r", "a", "h", i as f64, json!({"i": i})))
            .unwrap();
    }
    writer.flush().unwrap();
    assert_eq!(
        Store::open_existing(path.to_str().unwrap())
            .unwrap()
            .count()
            .unwrap(),
        2500
    );
    writer
        .send_batch(
            (0..500)
                .map(|i| rec("r", "a", "h", i as f64, json!({})))
                .collect(),
        )
        .unwrap();
    let stats = writer.close().unwrap();
    assert_eq!((stats.stored, stats.dropped), (3000, 0));
    assert_eq!(
        Store::open_existing(path.to_str().unwrap())
            .unwrap()
            .count()
            .unwrap(),
        3000
    );
}

#[test]
fn writer_open_reports_a_store_that_cannot_be_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Writer::open(tmp.path().join("r").to_str().unwrap()).unwrap();
    w.send(rec("r", "a", "h", 1.0, json!({}))).unwrap();
    assert_eq!(w.close().unwrap().stored, 1);
    let err = Writer::open("postgres://root@127.0.0.1:1/nowhere?connect_timeout=2")
        .err()
        .expect("no server on port 1");
    assert!(err.to_string().contains("PostgreSQL store"), "{err}");
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    assert!(Writer::open(blocker.join("sub/data.sqlite").to_str().unwrap()).is_err());
}

/// Import and query figures on the case-study export (printed with --nocapture).
#[test]
fn import_of_the_original_export_and_query_speed() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/casestudies/magi_cs55_experiment_data.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        panic!("the case-study export is missing: {}", path.display());
    };
    let parsed = import::parse_export(&text, "cs55");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert_eq!(parsed.records.len(), 354);
    // Scale it up to measure: 100 copies shifted in time.
    let many: Vec<Record> = (0..100)
        .flat_map(|k| {
            parsed.records.iter().map(move |r| Record {
                created: r.created + k as f64 * 100.0,
                ..r.clone()
            })
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(tmp.path().to_str().unwrap()).unwrap();
    let t = Instant::now();
    store.insert_batch(&many).unwrap();
    let ins = t.elapsed();
    let t = Instant::now();
    let q = Query::new()
        .agent("monitor_agent")
        .host("router")
        .field("peerNode", "clientnode-1")
        .field("trafficDirection", "out");
    let rows = store.query(&q).unwrap();
    let qt = t.elapsed();
    assert_eq!(rows.len(), 5900);
    println!(
        "sqlite: inserted {} records in {:?} ({:.0} records/s); filtered query returned {} rows in {:?}",
        many.len(),
        ins,
        many.len() as f64 / ins.as_secs_f64(),
        rows.len(),
        qt
    );
}

// ---- PostgreSQL ----

static N: AtomicUsize = AtomicUsize::new(0);

/// A table of this test's own, dropped when the guard goes.
struct PgTable {
    base: String,
    table: String,
}

impl PgTable {
    fn url(&self) -> String {
        format!("{}?table={}", self.base, self.table)
    }
}

impl Drop for PgTable {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table));
        }
    }
}

/// A table of the test's own on the test server; `None` (the test skipped) without one.
fn pg_table(test: &str) -> Option<PgTable> {
    let base = std::env::var("MAGI_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    if let Err(e) = postgres::Client::connect(&base, postgres::NoTls) {
        magi_testkit::skip(
            test,
            &format!("PostgreSQL at {base} is not reachable ({e}); set MAGI_TEST_POSTGRES"),
        );
        return None;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let table = format!(
        "magi_test_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    );
    Some(PgTable { base, table })
}

#[test]
fn postgres_meets_the_contract() {
    let Some(t) = pg_table("postgres_meets_the_contract") else {
        return;
    };
    let mut store = Store::open(&t.url()).unwrap();
    contract(&mut store);
}

#[test]
fn postgres_writer_and_import_speed() {
    let Some(t) = pg_table("postgres_writer_and_import_speed") else {
        return;
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/casestudies/magi_cs_experiment_data.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = import::parse_export(&text, "cs");
    let many: Vec<Record> = (0..50)
        .flat_map(|k| {
            parsed.records.iter().map(move |r| Record {
                created: r.created + k as f64 * 100.0,
                ..r.clone()
            })
        })
        .collect();
    let writer = Writer::spawn(Store::open(&t.url()).unwrap());
    let start = Instant::now();
    writer.send_batch(many.clone()).unwrap();
    let stats = writer.close().unwrap();
    let ins = start.elapsed();
    assert_eq!(stats.stored, many.len() as u64);
    let mut store = Store::open(&t.url()).unwrap();
    let start = Instant::now();
    let f = json!({"host": "servernode", "peerNode": "clientnode", "trafficDirection": "out"});
    let rows = store
        .query(
            &Query::new()
                .agent("monitor_agent")
                .filter_map(f.as_object().unwrap()),
        )
        .unwrap();
    let qt = start.elapsed();
    assert_eq!(rows.len(), 60 * 50);
    assert!(rows
        .windows(2)
        .all(|w| w[0].record.created <= w[1].record.created));
    println!(
        "postgres: inserted {} records in {:?} ({:.0} records/s); filtered query returned {} rows in {:?}",
        many.len(),
        ins,
        many.len() as f64 / ins.as_secs_f64(),
        rows.len(),
        qt
    );
}

#[test]
fn postgres_writer_survives_a_dropped_connection() {
    let Some(t) = pg_table("postgres_writer_survives_a_dropped_connection") else {
        return;
    };
    let url = format!("{}&application_name={}", t.url(), t.table);
    let writer = Writer::open(&url).unwrap();
    writer.send(rec("r", "a", "h", 1.0, json!({}))).unwrap();
    writer.flush().unwrap();
    // The server drops our connection (as on a restart).
    let mut admin = postgres::Client::connect(&t.base, postgres::NoTls).unwrap();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&t.table],
        )
        .unwrap();
    assert_eq!(killed.len(), 1);
    writer.send(rec("r", "a", "h", 2.0, json!({}))).unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while writer.flush().is_err() {
        assert!(Instant::now() < deadline, "the writer did not recover");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let stats = writer.close().unwrap();
    assert_eq!((stats.stored, stats.dropped), (2, 0));
    assert_eq!(Store::open(&t.url()).unwrap().count().unwrap(), 2);
}

#[test]
fn postgres_bad_table_names_are_refused() {
    let err = Store::open("postgres://root@127.0.0.1:5432/test?table=x;drop").unwrap_err();
    assert!(err.to_string().contains("table name"), "{err}");
}

/// Runs this test binary's `postgres_meets_the_contract` against a server that is not there.
fn contract_without_postgres(require: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["postgres_meets_the_contract", "--exact", "--test-threads=1"])
        .env(
            "MAGI_TEST_POSTGRES",
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=2",
        )
        .env_remove("CI")
        .env_remove("MAGI_REQUIRE_SERVICES");
    if require {
        cmd.env("MAGI_REQUIRE_SERVICES", "1");
    }
    cmd.output().expect("run the test binary")
}

#[test]
fn a_test_without_its_service_says_skipped_and_fails_where_services_are_required() {
    let skipped = contract_without_postgres(false);
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{stderr}");
    assert!(
        stderr.contains("SKIPPED postgres_meets_the_contract: PostgreSQL at"),
        "{stderr}"
    );
    let required = contract_without_postgres(true);
    let stdout = String::from_utf8_lossy(&required.stdout);
    assert!(!required.status.success(), "{stdout}");
    assert!(stdout.contains("MAGI_REQUIRE_SERVICES is set"), "{stdout}");
}
