//! The case study for real over RabbitMQ, into SQLite and PostgreSQL.

use super::*;
use crate::support::{host_agents, shared};

// ---------------------------------------------------------------------------------------
// (e) the case study for real over RabbitMQ, SQLite and PostgreSQL
// ---------------------------------------------------------------------------------------

/// `magi data query STORE ARGS --json` with the world's environment.
fn query(w: &World, store: &str, args: &[&str]) -> Vec<Value> {
    crate::support::data_query(w.magi(), store, args)
}

/// Real HTTP requests from clientnode to servernode, and bytes counted towards that peer.
fn check_traffic(w: &World, store: &str, run: &str) {
    let requests = query(w, store, &["--run-name", run, "--agent", "client_agent"]);
    assert!(requests.len() >= 3, "{store}: {requests:?}");
    assert!(
        requests.iter().all(|r| r["host"] == "clientnode"
            && r["data"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://servernode/getsize.py?length="))),
        "{requests:?}"
    );
    let counted = query(
        w,
        store,
        &[
            "--run-name",
            run,
            "--agent",
            "monitor_agent",
            "--host",
            "servernode",
            "--where",
            "peerNode=clientnode",
            "--where",
            "trafficDirection=out",
        ],
    );
    assert!(counted.len() >= 3, "{store}: {counted:?}");
    crate::support::assert_counted_covers_requests(&counted, &requests);
}

/// Drops a PostgreSQL table when the test ends, however it ends.
struct PgTable {
    base: String,
    table: String,
}

impl Drop for PgTable {
    fn drop(&mut self) {
        let out = Command::new("psql")
            .arg(&self.base)
            .args(["-q", "-c", &format!("DROP TABLE IF EXISTS {}", self.table)])
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("could not drop {} in {}: {out:?}", self.table, self.base);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_case_study_runs_over_rabbitmq_into_sqlite_and_postgresql() {
    let _host = host_agents();
    let original =
        std::fs::read_to_string(shared().join("casestudies/casestudy_clientserver_monitor.aal"))
            .expect("the case study");
    assert!(original.contains("timeout: 60000"));
    let mut w = World::new().await;
    let hosts = [
        "--host",
        "clientnode=127.0.1.1",
        "--host",
        "servernode=127.0.1.2",
    ];
    w.start_node(
        "clientnode",
        &[&["--address", "127.0.1.1"][..], &hosts].concat(),
    );
    w.start_node(
        "servernode",
        &[&["--address", "127.0.1.2"][..], &hosts].concat(),
    );
    let aal = w.write(
        "casestudy_short.aal",
        &original.replace("timeout: 60000", "timeout: 4000"),
    );

    // Default store: data.sqlite in the run's record.
    let run = format!("cs-sqlite-{}", tag());
    let done = Running::start(w.run_cmd(&aal, &run, &[]), w.dir.path(), "run-sqlite")
        .finish(Duration::from_secs(90))
        .await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    assert!(
        done.stdout.contains("startCollection(None)"),
        "{}",
        done.stdout
    );
    let store = w
        .records()
        .join(&run)
        .join("data.sqlite")
        .to_string_lossy()
        .into_owned();
    check_traffic(&w, &store, &run);

    // PostgreSQL, in a table of this test's own.
    let base = std::env::var("MAGI_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let probe = Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", "select 1"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            !magi_testkit::services_required(),
            "PostgreSQL at {base} is not reachable: {probe:?}"
        );
        eprintln!("skipping the PostgreSQL variant: {base} is not reachable");
        w.finish().await;
        return;
    }
    let pg = PgTable {
        base: base.clone(),
        table: format!("magi_broker_test_{}", tag()),
    };
    let url = format!("{base}?table={}", pg.table);
    let run = format!("cs-pg-{}", tag());
    let done = Running::start(
        w.run_cmd(&aal, &run, &["--store", &url]),
        w.dir.path(),
        "run-pg",
    )
    .finish(Duration::from_secs(90))
    .await;
    assert_eq!(done.code, Some(0), "{}", done.show());
    check_traffic(&w, &url, &run);
    assert!(
        !w.records().join(&run).join("data.sqlite").exists(),
        "records went to PostgreSQL, not SQLite"
    );
    drop(pg);
    w.finish().await;
}
