//! `magi web`: serve the live traffic page for a run's (or an experiment's) records.
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use magi_data::web::{self, WebOptions};
use magi_data::Store;

use super::data::StoreArgs;

/// Arguments of `magi web`.
#[derive(Args, Debug)]
#[command(
    after_help = "Open http://ADDRESS/ in a browser. The page plots Mbit/s (bytes*8/1e6 per \
sample) against seconds since the first matching record, and follows new records as they are \
stored. Filter with query parameters: ?agent=monitor_agent&host=servernode&peerNode=clientnode\
&trafficDirection=out (the original's ?host=<configHost>.<exp>.<proj> is accepted too)."
)]
pub struct WebArgs {
    /// Where the records are (the store is created if it does not exist yet, so the page can
    /// be opened before the run starts).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// How often the store is read for new records, in milliseconds.
    #[arg(long = "poll-ms", default_value = "500", value_name = "MS", value_parser = super::parse::millis)]
    pub poll: Duration,
}

/// Runs `magi web` until Ctrl-C; returns the exit code.
pub fn run(args: WebArgs) -> i32 {
    match run_inner(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn run_inner(args: WebArgs) -> Result<()> {
    let target = args.store.target()?;
    let store =
        Store::open(&target).with_context(|| format!("opening the record store {target}"))?;
    let opts = WebOptions {
        poll: args.poll.max(Duration::from_millis(50)),
        ..WebOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().unwrap_or(args.listen);
        println!(
            "serving the live traffic page of {} at http://{addr}/ (Ctrl-C stops)",
            store.describe()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        web::serve(listener, store, opts, shutdown).await?;
        Ok(())
    })
}
