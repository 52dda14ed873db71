//! One size N of the benchmark: the first halves of the bare reference and of the routed
//! one, MAGI-rs's run, their second halves (so that all see the same drift of the
//! machine's load), then the floor; and their figures.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use magi_testkit::TestBroker;

use crate::bare::Kind;
use crate::figures::{floor_figures, routed_figures, size_figures};
use crate::fleet::FleetArgs;
use crate::report::Figure;
use crate::{bare, interrupt, ours, permissions, Cli};

/// What every size shares.
pub struct Plan<'a> {
    pub cli: &'a Cli,
    pub kit: &'a TestBroker,
    pub module: &'a ours::Module,
    /// The work directory (node states, run records).
    pub work: &'a Path,
    pub rounds: usize,
    pub warmup: usize,
    /// Bytes of the shipped archive in base64.
    pub shipped: usize,
    pub max_message: usize,
}

/// Measures size `n`: its figures, and whether every one of them could be taken. An error
/// is the benchmark's own failure (a work directory it cannot write).
pub async fn measure(plan: &Plan<'_>, n: usize) -> Result<(Vec<Figure>, bool)> {
    let Plan {
        cli,
        kit,
        module,
        work,
        rounds,
        warmup,
        shipped,
        max_message,
    } = *plan;
    let mut complete = true;
    let mut failover = Vec::new();
    let args = FleetArgs {
        url: cli.url.clone(),
        prefix: kit.prefix.clone(),
        nodes: n,
        per_conn: cli.per_conn,
        name_prefix: "n".into(),
        state_dir: work.join(format!("nodes-{n}")),
        max_message,
        heartbeat_ms: cli.heartbeat_ms,
        dead_man_secs: cli.dead_man_secs,
        separate_caches: cli.separate_caches,
        bare_exchange: None,
        bare_reply: None,
        bare_kind: Kind::Bare,
        cred_dir: None,
        allow: None,
        first: 0,
        total: n,
        processes: cli.processes.unwrap_or(n.div_ceil(1000)).max(1),
    };
    // Bare lapin, plain and routed: half of their rounds before MAGI-rs's run, half after,
    // with the same consumers, so that all see the same drift of the machine's load.
    let mut session = None;
    let mut routed = None;
    for (kind, wanted, what) in [
        (Kind::Bare, !cli.no_bare, "bare lapin"),
        (Kind::Routed, !cli.no_bare && !cli.no_routed, ROUTED),
    ] {
        if !wanted {
            continue;
        }
        eprintln!("magi-bench: N = {n}: {what} ...");
        let started = async {
            let mut s = bare::Session::start(&args, kind).await?;
            s.rounds(warmup, rounds.div_ceil(2)).await?;
            Ok::<_, anyhow::Error>(s)
        };
        match started.await {
            Ok(s) if kind == Kind::Bare => session = Some(s),
            Ok(s) => routed = Some(s),
            Err(e) => {
                eprintln!("magi-bench: N = {n}: {what} failed: {e:#}");
                complete = false;
            }
        }
    }
    eprintln!("magi-bench: N = {n}: MAGI-rs ...");
    let permissions = match cli.permissions {
        false => None,
        true => {
            // Broker users are global: names unique to this benchmark.
            let id = &kit.prefix["magi.bench.".len()..][..8];
            let dir = work.join(format!("permissions-{n}"));
            std::fs::create_dir_all(&dir)?;
            let made = permissions::Permissions::create(&cli.url, &kit.prefix, id, n, &dir)
                .context("--permissions")?;
            eprintln!(
                "magi-bench: N = {n}: permissions on: vhost {}, {n} node users, orchestrator {}",
                made.vhost, made.orchestrator
            );
            Some(made)
        }
    };
    let ours_args = match &permissions {
        None => args.clone(),
        Some(p) => FleetArgs {
            url: p.orchestrator_url(),
            name_prefix: p.node_prefix.clone(),
            cred_dir: Some(p.cred_dir.clone()),
            allow: Some(p.orchestrator.clone()),
            ..args.clone()
        },
    };
    let alive = match cli.alive_ms {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => Some(magi::driver::default_alive_every(n)),
    };
    let ours = ours::run(
        &ours_args,
        alive,
        cli.watch_heartbeats,
        module,
        warmup,
        rounds,
        work,
        cli.failover,
    )
    .await;
    if let Some(p) = &permissions {
        if let Err(e) = p.remove() {
            eprintln!("magi-bench: {e:#}");
            complete = false;
        }
    }
    let ours = match ours {
        Ok(o) => {
            if let Some(f) = &o.failover {
                complete &= f.once;
                failover.extend(f.figures.iter().cloned());
            }
            Some(o)
        }
        Err(e) => {
            eprintln!("magi-bench: N = {n}: MAGI-rs failed: {e:#}");
            complete = false;
            None
        }
    };
    interrupt::halt_if_interrupted().await;
    let big = if cli.quick { 1 } else { 3 };
    let bare = match session {
        None => None,
        Some(s) => {
            let run = second_half(s, n, "bare lapin", warmup, rounds, Some((big, shipped))).await;
            complete &= run.is_some();
            run
        }
    };
    let routed = match routed {
        None => None,
        Some(s) => {
            let run = second_half(s, n, ROUTED, warmup, rounds, None).await;
            complete &= run.is_some();
            run
        }
    };
    // The floor, after all: the same fan-out with none of the guarantees.
    interrupt::halt_if_interrupted().await;
    let floor = if cli.no_floor {
        None
    } else {
        eprintln!("magi-bench: N = {n}: the floor (bare lapin, transient, no confirms) ...");
        let measured = async {
            let mut s = bare::Session::start(&args, Kind::Floor).await?;
            let r = s.rounds(warmup.min(3), rounds).await;
            let run = s.finish().await;
            r.map(|()| run)
        };
        match measured.await {
            Ok(run) => Some(run),
            Err(e) => {
                eprintln!("magi-bench: N = {n}: the floor failed: {e:#}");
                complete = false;
                None
            }
        }
    };
    let _ = std::fs::remove_dir_all(&args.state_dir);
    let mut these = failover;
    these.extend(size_figures(n, ours.as_ref(), bare.as_ref(), module));
    if cli.permissions {
        for f in these.iter_mut().filter(|f| f.name.starts_with("roundtrip")) {
            f.note = Some("permissions on: a broker user and connection per node".into());
        }
    }
    these.extend(routed_figures(
        n,
        ours.as_ref(),
        bare.as_ref(),
        routed.as_ref(),
    ));
    these.extend(floor_figures(
        n,
        ours.as_ref(),
        bare.as_ref(),
        floor.as_ref(),
    ));
    Ok((these, complete))
}

/// How the routed reference is named in progress lines.
const ROUTED: &str = "bare lapin on MAGI-rs's routing";

/// The second half of a reference's rounds (then `big`: that many rounds of a message of
/// that size, the floor of shipping the agent), and its figures; `None`, said on stderr,
/// when it failed.
async fn second_half(
    mut s: bare::Session,
    n: usize,
    what: &str,
    warmup: usize,
    rounds: usize,
    big: Option<(usize, usize)>,
) -> Option<bare::BareRun> {
    eprintln!("magi-bench: N = {n}: {what}, second half ...");
    let rest = async {
        s.rounds(warmup.min(3), rounds / 2).await?;
        match big {
            Some((count, size)) => s.big_rounds(count, size).await,
            None => Ok(()),
        }
    };
    let result = rest.await;
    let run = s.finish().await;
    match result {
        Ok(()) => Some(run),
        Err(e) => {
            eprintln!("magi-bench: N = {n}: {what} failed: {e:#}");
            None
        }
    }
}
