//! Resident memory of a real `magi-node` process: idle (attached, heartbeating, no run),
//! then running the benchmark's agent (joined a group, agent loaded and called).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use magi_bus::amqp::AmqpBus;
use magi_bus::{Bus, Inbound, RunLink};
use magi_proto::{method, Call, Object, DAEMON_DOCK};
use serde_json::json;

use crate::fleet::bus_options;
use crate::report::Figure;
use crate::sys::status_kb;

/// Resident set sizes in KiB.
pub struct Rss {
    /// After start-up, attached and idle.
    pub idle_kb: u64,
    /// With the agent loaded and answering calls.
    pub running_kb: u64,
    /// Peak (VmHWM) at the end.
    pub peak_kb: u64,
}

/// How to start the node agent process that is measured.
pub struct Subject {
    /// The program.
    pub program: std::path::PathBuf,
    /// Its arguments.
    pub args: Vec<std::ffi::OsString>,
    /// The node name it attaches under.
    pub node: String,
}

impl Subject {
    /// The real daemon: `magi-node --name benchmem ...`.
    pub fn daemon(binary: &Path, url: &str, prefix: &str, state: &Path) -> Subject {
        let mut args: Vec<std::ffi::OsString> = ["--name", "benchmem", "--broker", url]
            .iter()
            .map(Into::into)
            .collect();
        args.extend(["--bus-prefix", prefix, "--log", "warn", "--state-dir"].map(Into::into));
        args.push(state.into());
        Subject {
            program: binary.to_path_buf(),
            args,
            node: "benchmem".into(),
        }
    }

    /// The fallback: this program's fleet mode hosting one node agent (the same
    /// `magi_node::run` on the same bus, in a bigger executable).
    pub fn fleet(url: &str, prefix: &str, state: &Path, max_message: usize) -> Result<Subject> {
        let mut args: Vec<std::ffi::OsString> = vec!["fleet".into()];
        for (k, v) in [
            ("--url", url.to_string()),
            ("--prefix", prefix.to_string()),
            ("--nodes", "1".into()),
            ("--name-prefix", "benchmem".into()),
            ("--max-message", max_message.to_string()),
        ] {
            args.push(k.into());
            args.push(v.into());
        }
        args.push("--state-dir".into());
        args.push(state.into());
        Ok(Subject {
            program: std::env::current_exe()?,
            args,
            node: "benchmem0".into(),
        })
    }
}

/// Starts the node agent process, measures, stops it.
pub async fn measure(subject: &Subject, url: &str, prefix: &str, module_dir: &Path) -> Result<Rss> {
    let name = subject.node.as_str();
    let opts = bus_options(
        prefix,
        magi_bus::amqp::DEFAULT_MAX_MESSAGE,
        format!("{prefix}memory"),
    );
    let bus = AmqpBus::connect(url, opts).await?;
    let run = "bench-memory";
    let mut link = bus.open_run(run).await?;
    let mut cmd = tokio::process::Command::new(&subject.program);
    crate::sys::die_with_parent(&mut cmd);
    let mut child = cmd
        .args(&subject.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", subject.program.display()))?;
    let pid = child.id().context("magi-node has no pid")?;
    let result = async {
        wait_for(&mut link, Duration::from_secs(30), |m| matches!(m, Inbound::Node(s) if s.node == name)).await?;
        // Let it settle (a few heartbeats) before reading.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_kb = status_kb(pid, "VmRSS").context("reading VmRSS")?;

        let nodes = vec![name.to_string()];
        let call = |seq: u64, dock: &str, m: &str, args: serde_json::Value, trigger: Option<&str>| Call {
            run: run.into(),
            seq,
            dock: dock.into(),
            method: m.into(),
            args: args.as_object().cloned().unwrap_or_else(Object::new),
            trigger: trigger.map(str::to_string),
            nodes: None,
            sender: None,
        };
        let load = json!({"name": "pinger", "dock": "pinger", "execargs": {}, "path": module_dir});
        link.port.publish_nodes(&nodes, call(1, DAEMON_DOCK, method::LOAD_AGENT, load, None)).await?;
        wait_for(&mut link, Duration::from_secs(60), |m| {
            matches!(m, Inbound::Trigger(t) if t.event == magi_proto::AGENT_LOAD_DONE || t.event == magi_proto::RUNTIME_EXCEPTION)
        })
        .await
        .and_then(|m| match m {
            Inbound::Trigger(t) if t.event == magi_proto::RUNTIME_EXCEPTION => bail!("loading the agent failed: {:?}", t.args),
            _ => Ok(()),
        })?;
        for seq in 0..20 {
            link.port.publish_nodes(&nodes, call(10 + seq, "pinger", "ping", json!({}), Some("pinged"))).await?;
            wait_for(&mut link, Duration::from_secs(30), |m| matches!(m, Inbound::Trigger(t) if t.event == "pinged")).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let running_kb = status_kb(pid, "VmRSS").context("reading VmRSS")?;
        link.port.publish_nodes(&nodes, call(100, DAEMON_DOCK, method::END_RUN, json!({}), None)).await?;
        let peak_kb = status_kb(pid, "VmHWM").unwrap_or(0);
        Ok::<_, anyhow::Error>(Rss { idle_kb, running_kb, peak_kb })
    }
    .await;
    drop(child.stdin.take());
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let _ = child.start_kill();
    let _ = link.port.close().await;
    bus.close().await;
    result
}

async fn wait_for(
    link: &mut RunLink,
    patience: Duration,
    want: impl Fn(&Inbound) -> bool,
) -> Result<Inbound> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, link.inbound.recv()).await {
            Err(_) => bail!("magi-node did not answer within {patience:?}"),
            Ok(None) => bail!("the run link closed"),
            Ok(Some(m)) if want(&m) => return Ok(m),
            Ok(Some(_)) => {}
        }
    }
}

/// The resident-memory figures of a real `magi-node` (`bin_dir`'s, or `--magi-node`), with
/// and without a `frame_max` in its URL; whether every one could be taken.
pub async fn figures(
    cli: &crate::Cli,
    kit: &magi_testkit::TestBroker,
    module: &crate::ours::Module,
    work: &Path,
    bin_dir: &Path,
    max_message: usize,
) -> Result<(Vec<Figure>, bool)> {
    let mut figures = Vec::new();
    let mut complete = true;
    let magi_node = cli
        .magi_node
        .clone()
        .unwrap_or_else(|| bin_dir.join("magi-node"));
    let state = work.join("magi-node-state");
    let (subject, what) = if magi_node.is_file() {
        (
            Subject::daemon(&magi_node, &cli.url, &kit.prefix, &state),
            "VmRSS of a real magi-node process",
        )
    } else {
        eprintln!(
            "magi-bench: {} is not built: measuring this program's fleet mode hosting one node agent instead (build it: cargo build --release -p magi-node)",
            magi_node.display()
        );
        complete = false;
        (
            Subject::fleet(&cli.url, &kit.prefix, &state, max_message)?,
            "NOT magi-node: magi-bench's fleet mode with one node agent (magi-node not built)",
        )
    };
    crate::interrupt::halt_if_interrupted().await;
    eprintln!("magi-bench: node agent resident memory ...");
    match measure(&subject, &cli.url, &kit.prefix, &module.dir).await {
        Ok(rss) => {
            let mib = |kb: u64| kb as f64 / 1024.0;
            figures.push(
                Figure::new("magi_node_rss_idle", 1, mib(rss.idle_kb), "MiB")
                    .at_most(10.0)
                    .note(what),
            );
            figures.push(
                Figure::new("magi_node_rss_running", 1, mib(rss.running_kb), "MiB")
                    .note("agent (1 MiB module) loaded and called 20 times"),
            );
            figures.push(
                Figure::new("magi_node_rss_peak", 1, mib(rss.peak_kb), "MiB")
                    .note("VmHWM at the end"),
            );
        }
        Err(e) => {
            eprintln!("magi-bench: node agent memory: {e:#}");
            complete = false;
        }
    }
    // lapin sizes its two socket buffers (32 frames each) before the broker's frame_max is
    // known, then grows them and zero-fills the growth: 2 × 4 MiB resident. A frame_max in
    // the URL sizes them at once, untouched. Same daemon, same broker, URL with frame_max:
    if magi_node.is_file() {
        let url = magi_bus::amqp::with_frame_max(&cli.url);
        let subject = Subject::daemon(&magi_node, &url, &kit.prefix, &state);
        match measure(&subject, &url, &kit.prefix, &module.dir).await {
            Ok(rss) => {
                let mib = |kb: u64| kb as f64 / 1024.0;
                figures.push(
                    Figure::new("magi_node_rss_idle_frame_max", 1, mib(rss.idle_kb), "MiB")
                        .at_most(10.0)
                        .note("the same, broker URL with ?frame_max=131072"),
                );
                figures.push(
                    Figure::new(
                        "magi_node_rss_running_frame_max",
                        1,
                        mib(rss.running_kb),
                        "MiB",
                    )
                    .note("the same, broker URL with ?frame_max=131072"),
                );
            }
            Err(e) => {
                eprintln!("magi-bench: node agent memory (frame_max): {e:#}");
                complete = false;
            }
        }
    }
    Ok((figures, complete))
}
