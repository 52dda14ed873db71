//! `magi run`: carry out a procedure, on the embedded bus or over RabbitMQ.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use magi_aal::{AgentSource, Procedure};
use magi_engine::{FailureKind, Outcome};
use magi_node::library::ModuleLibrary;
use magi_proto::redact_url as redact;

use crate::console::{Console, Mode};
use crate::driver::{default_alive_every, Driver, DriverConfig, Infra, Shipment};
use crate::embedded::EmbeddedNodes;
use crate::record::RunRecord;

pub use super::exit::{EXIT_FAILED, EXIT_INFRA, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK};

const AFTER_HELP: &str = "\
Exit codes:
  0    success: every stream finished or one reached `exit`
  1    procedure failure: an agent returned false, raised, crashed or failed to load
  2    invalid procedure (the diagnostics say where), or a command-line error
  3    infrastructure: broker unreachable, nodes missing or lost, a call reached no node,
       setup timed out
  130  interrupted (Ctrl-C twice within 2 s, or SIGTERM); agents were unloaded

Without --broker the run uses the embedded bus: one in-process node agent per node named in
`groups`, each with its own loopback address (127.0.1.x); with --testbed NAME, each node's
agents run inside its namespace of a testbed made by `magi testbed up`, with its experiment
address; with --broker and --testbed NAME, a magi-node is started in each namespace for the
run, reaching the broker over the testbed's control network (`magi testbed up --control`;
--node-credentials DIR for per-node broker users). Every run leaves a record directory
(--record-dir) with the procedure, its hash, the archives' hashes, every event and trigger,
the console lines and the data recorded.";

/// Arguments of `magi run`.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct RunArgs {
    /// AAL files, read in order (as the original's repeated `-f`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Set a parameter of the procedure, `NAME=VALUE` (repeatable).
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,
    /// The parameter values used, for the record (set from the procedure).
    #[arg(skip)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The original's `-f FILE` spelling; may be repeated.
    #[arg(short = 'f', long = "events", hide = true)]
    pub events: Vec<PathBuf>,
    /// RabbitMQ URL (amqp://user:pass@host:port/vhost); without it, the embedded bus.
    #[arg(long, env = "MAGI_BROKER")]
    pub broker: Option<String>,
    /// Experiment name: finds the broker in the experiment's configuration file.
    #[arg(short = 'e', long)]
    pub experiment: Option<String>,
    /// Project name (with --experiment).
    #[arg(short = 'p', long)]
    pub project: Option<String>,
    /// The run's name (default: the procedure's file name and the time). Over a broker with
    /// per-user permissions, runs must start with `<user>.`.
    #[arg(long, value_parser = super::parse::run_name)]
    pub run: Option<String>,
    /// One JSON record per line instead of the console lines.
    #[arg(long)]
    pub json: bool,
    /// No colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long, alias = "nocolor")]
    pub no_color: bool,
    /// Go on after `retVal: false`, a RuntimeException or a lost node.
    #[arg(long)]
    pub keep_going: bool,
    /// Leave agents loaded and groups joined at the end.
    #[arg(long)]
    pub keep_agents: bool,
    /// Timeout of each group build and leave wait, in ms (the original's -g).
    #[arg(short = 'g', long = "group-timeout", default_value_t = 20_000)]
    pub group_timeout: u64,
    /// How long to wait for node agents to announce themselves, in seconds (broker runs).
    #[arg(long, default_value = "30", value_parser = super::parse::seconds)]
    pub preflight: Duration,
    /// How often the run tells its node agents that it is alive, in seconds (broker runs; 0:
    /// never; default 2, or one per thousand nodes above 2,000 nodes). Each is a message to
    /// every node of a group not called meanwhile. Nodes give the run three of these periods
    /// (or their own `--dead-man-secs`, if longer) before they stop its agents.
    #[arg(long, value_parser = super::parse::seconds)]
    pub alive_every: Option<Duration>,
    /// Where run records go.
    #[arg(long, default_value = "magi-runs", env = "MAGI_RECORD_DIR")]
    pub record_dir: PathBuf,
    /// Where data records go: an SQLite path or a postgres:// URL (default: data.sqlite in
    /// the run's record).
    #[arg(long)]
    pub store: Option<String>,
    /// Extra directories of agent modules (also MAGI_MODULES, colon-separated).
    #[arg(long = "modules")]
    pub modules: Vec<PathBuf>,
    /// Where embedded node agents keep their agent cache (default ~/.cache/magi).
    #[arg(long, env = "MAGI_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run across a testbed made by `magi testbed up`: each node's agents start in its
    /// namespace, with its experiment address. With --broker, a `magi-node` is started in
    /// each namespace for the run, reaching the broker over the testbed's control network
    /// (`magi testbed up --control`).
    #[arg(long, value_name = "NAME")]
    pub testbed: Option<String>,
    /// With --broker and --testbed: broker-config/apply.sh's credential directory
    /// (`<node>.cred`), so that each node logs in as its own broker user.
    #[arg(long, value_name = "DIR", requires = "testbed")]
    pub node_credentials: Option<PathBuf>,
}

/// Where the nodes of a run across a testbed run.
enum Placement {
    /// In-process node agents whose agents start in the namespaces.
    Embedded(Vec<crate::embedded::NodePlace>, magi_proto::Object),
    /// A `magi-node` per namespace, over the broker.
    Broker(magi_testbed::Lab),
}

/// Runs `magi run`; returns the exit code.
pub fn run(mut args: RunArgs) -> i32 {
    args.files.append(&mut args.events);
    let mut console = Console::new(Mode::detect(args.json, args.no_color));
    let checked = match magi_aal::load_with(&args.files, &args.defines) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return EXIT_INVALID;
        }
    };
    let color = matches!(console.mode(), Mode::Text { color: true, .. });
    if !checked.diagnostics.is_empty() {
        eprintln!("{}", checked.render(color));
    }
    args.parameters = checked.parameter_values();
    let Some(procedure) = checked.procedure.clone() else {
        eprintln!("error: the procedure is not valid ({} error(s)); `magi check` shows the plan once it is", checked.errors());
        return EXIT_INVALID;
    };
    super::block_on(run_procedure(args, Arc::new(procedure), &mut console))
}

/// `<stem>-<HHMMSS>-<id>`; over a broker `<user>.<stem>-...`, the form the broker
/// permissions of `broker-config/` expect (a user publishes only into its own runs).
fn default_run_name(args: &RunArgs, broker: Option<&str>) -> String {
    let user = broker
        .map(|url| broker_user(url).unwrap_or_else(|| "guest".into()) + ".")
        .unwrap_or_default();
    let stem = args
        .files
        .first()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{user}{stem}-{}-{}",
        crate::console::clock(magi_proto::epoch_now()).replace(':', ""),
        &id[id.len() - 6..]
    )
}

/// Finds the broker: `--broker`, or the experiment's configuration file.
fn broker_url(args: &RunArgs) -> Result<Option<String>, String> {
    if let Some(b) = &args.broker {
        return Ok(Some(b.clone()));
    }
    match (&args.experiment, &args.project) {
        (None, None) => Ok(None),
        (Some(e), Some(p)) => crate::experiment::broker_of(p, e).map(Some),
        _ => Err("--experiment and --project go together".into()),
    }
}

async fn run_procedure(args: RunArgs, procedure: Arc<Procedure>, console: &mut Console) -> i32 {
    let broker = match broker_url(&args) {
        Ok(b) => b,
        Err(e) => {
            console.note(&format!("error: {e}"));
            return EXIT_INVALID;
        }
    };
    if args.node_credentials.is_some() && broker.is_none() {
        console.note(
            "error: --node-credentials is for runs over a broker (--broker URL --testbed NAME)",
        );
        return EXIT_INVALID;
    }
    let placed = match (&args.testbed, &broker) {
        (None, _) => None,
        (Some(name), Some(_)) => Some(
            super::testbed::whole(name, &procedure.all_nodes()).and_then(|lab| match lab.control {
                Some(_) => Ok(Placement::Broker(lab)),
                None => Err(format!(
                    "testbed {name} has no control network for a magi-node per namespace to reach the broker by: \
                     bring it up with `magi testbed up --control` (or drop --broker to run on the embedded bus)"
                )),
            }),
        ),
        (Some(name), None) => Some(
            super::testbed::places(name, &procedure.all_nodes())
                .map(|(places, hosts)| Placement::Embedded(places, hosts)),
        ),
    };
    let placed = match placed.transpose() {
        Ok(p) => p,
        Err(e) => {
            console.note(&format!("error: {e}"));
            return EXIT_INVALID;
        }
    };
    let run = args
        .run
        .clone()
        .unwrap_or_else(|| default_run_name(&args, broker.as_deref()));
    let library = ModuleLibrary::standard(&args.modules);
    let transport = if broker.is_some() { "amqp" } else { "embedded" };
    let files: Vec<magi_aal::SourceFile> = procedure.files.clone();
    let mut record = match RunRecord::create(&args.record_dir, &run, &files, transport) {
        Ok(r) => r,
        Err(e) => {
            console.note(&format!(
                "error: cannot create the run record in {}: {e}",
                args.record_dir.display()
            ));
            return EXIT_INFRA;
        }
    };
    record.parameters(&args.parameters);
    let shipments = match prepare_archives(&procedure, &library, &mut record, console) {
        Ok(s) => s,
        Err(e) => {
            console.note(&format!("error: {e}"));
            let outcome = serde_json::json!({"outcome": "failed", "kind": "invalid", "message": e});
            let _ = record.finish(&outcome, EXIT_INVALID);
            return EXIT_INVALID;
        }
    };
    let store = args.store.clone().unwrap_or_else(|| {
        record
            .dir()
            .join("data.sqlite")
            .to_string_lossy()
            .into_owned()
    });
    let writer = match tokio::task::spawn_blocking(move || magi_data::Writer::open(&store)).await {
        Ok(Ok(w)) => Some(w),
        Ok(Err(e)) => {
            console.note(&format!("warning: records will not be stored: {e}"));
            None
        }
        Err(_) => None,
    };
    let config = DriverConfig {
        engine: magi_engine::Options {
            group_timeout_ms: args.group_timeout,
            abort_on_failure: !args.keep_going,
            teardown: !args.keep_agents,
        },
        preflight: if broker.is_some() {
            args.preflight
        } else {
            Duration::from_secs(10)
        },
        alive_every: broker
            .as_ref()
            .map(|_| {
                args.alive_every
                    .unwrap_or_else(|| default_alive_every(procedure.all_nodes().len()))
            })
            .filter(|every| !every.is_zero()),
        shipments,
    };

    let url = broker.as_deref().unwrap_or(magi_bus::EMBEDDED);
    let bus = match magi_bus::connect(url, crate::cli::status::bus_options(None)).await {
        Ok(b) => b,
        Err(e) => {
            let why = format!("cannot reach the broker at {}: {e}", redact(url));
            return infra(console, &mut record, &why);
        }
    };
    let link = match bus.open_run(&run).await {
        Ok(l) => l,
        Err(magi_bus::AttachError::InUse(_)) => {
            let why = format!(
                "run {run} is open already: another orchestrator runs under this name (choose another with --run)"
            );
            return infra(console, &mut record, &why);
        }
        Err(e) => return infra(console, &mut record, &e.to_string()),
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let log_dir = record.dir().join("logs");
    // Over a broker across a testbed: a magi-node in every namespace, for this run.
    let testbed_nodes = match (&placed, &broker) {
        (Some(Placement::Broker(lab)), Some(url)) => {
            let launch = crate::testbed_nodes::NodeLaunch {
                broker: url.clone(),
                credentials: args.node_credentials.clone(),
                // Not under this user's home: as root, each magi-node runs its agents as
                // nobody, who must reach their code (the node checks it at start).
                state_dir: Path::new("/var/lib/magi-testbed/nodes").join(&lab.name),
                log_dir: log_dir.clone(),
                modules: args.modules.clone(),
            };
            match crate::testbed_nodes::TestbedNodes::start(lab, &procedure.all_nodes(), &launch)
                .await
            {
                Ok(n) => Some(n),
                Err(e) => {
                    let _ = link.port.close().await;
                    bus.close().await;
                    return infra(console, &mut record, &e);
                }
            }
        }
        _ => None,
    };
    // The embedded default: the nodes' agents run here, on the same in-process bus.
    let nodes = if broker.is_none() {
        let started = match placed {
            Some(Placement::Embedded(places, hosts)) => {
                EmbeddedNodes::start_placed(&*bus, &places, hosts, state_dir, log_dir, library)
                    .await
            }
            _ => {
                EmbeddedNodes::start(&*bus, &procedure.all_nodes(), state_dir, log_dir, library)
                    .await
            }
        };
        match started {
            Ok(n) => Some(n),
            Err(e) => return infra(console, &mut record, &e.to_string()),
        }
    } else {
        None
    };
    let port = link.port.clone();
    let result = Driver::new(
        procedure.clone(),
        &run,
        link,
        config,
        console,
        &mut record,
        writer.as_ref(),
    )
    .run()
    .await;
    let _ = port.close().await;
    if let Some(nodes) = nodes {
        nodes.stop().await;
    }
    if let Some(nodes) = testbed_nodes {
        nodes.stop().await;
    }
    bus.close().await;
    if let Some(w) = writer {
        let _ = tokio::task::spawn_blocking(move || w.close()).await;
    }
    let (outcome_json, code) = match result {
        Ok(outcome) => {
            let code = exit_code(&outcome);
            (serde_json::to_value(&outcome).unwrap_or_default(), code)
        }
        Err(Infra::MissingNodes(missing)) => {
            let msg = format!(
                "{} node agent(s) not answering after the pre-flight wait: {}",
                missing.len(),
                crate::console::some_names(&missing, 50)
            );
            console.note(&format!("error: {msg}"));
            (
                serde_json::json!({"outcome": "failed", "kind": "setup", "message": msg}),
                EXIT_INFRA,
            )
        }
        Err(Infra::BusLost(msg)) => {
            console.note(&format!("error: {msg}"));
            (
                serde_json::json!({"outcome": "failed", "kind": "bus", "message": msg}),
                EXIT_INFRA,
            )
        }
    };
    let _ = record.finish(&outcome_json, code);
    console.note(&format!(
        "run {run}: {} (exit {code}); record in {}",
        describe(&outcome_json),
        record.dir().display()
    ));
    if matches!(console.mode(), Mode::Json) {
        println!(
            "{}",
            serde_json::json!({"run": run, "result": outcome_json, "exit_code": code, "record": record.dir()})
        );
    }
    code
}

fn describe(outcome: &serde_json::Value) -> String {
    match outcome["outcome"].as_str() {
        Some("success") => "success".into(),
        Some("interrupted") => "interrupted".into(),
        _ => format!(
            "failed: {}",
            outcome["message"].as_str().unwrap_or("unknown")
        ),
    }
}

fn infra(console: &mut Console, record: &mut RunRecord, msg: &str) -> i32 {
    console.note(&format!("error: {msg}"));
    let _ = record.finish(
        &serde_json::json!({"outcome": "failed", "kind": "bus", "message": msg}),
        EXIT_INFRA,
    );
    EXIT_INFRA
}

/// The exit code of an outcome.
pub fn exit_code(outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Success => EXIT_OK,
        Outcome::Interrupted => EXIT_INTERRUPTED,
        Outcome::Failed {
            kind: FailureKind::Agent,
            ..
        } => EXIT_FAILED,
        Outcome::Failed { .. } => EXIT_INFRA,
    }
}

fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("magi")
}

/// The user name of a broker URL (`amqp://alice:pw@host/` → `alice`).
pub(crate) fn broker_user(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let creds = &rest[..rest.find('@')?];
    let user = creds.split(':').next()?;
    (!user.is_empty()).then(|| user.to_string())
}

/// Resolves and packs every loadable agent's code, so nodes need no shared filesystem.
/// A path the orchestrator cannot read is left for the nodes to resolve themselves; one
/// that can never be a module (a device, a FIFO, a socket, over the size cap) is an error.
fn prepare_archives(
    procedure: &Procedure,
    library: &ModuleLibrary,
    record: &mut RunRecord,
    console: &mut Console,
) -> Result<HashMap<String, Shipment>, String> {
    let mut shipments = HashMap::new();
    for agent in procedure.loadable_agents() {
        let Some(AgentSource::Path(path)) = &agent.source else {
            continue;
        };
        let resolved = match library.resolve(path) {
            Ok(r) => r,
            Err(e) => {
                console.note(&format!(
                    "agent {}: {e}; the nodes will look for it themselves",
                    agent.name
                ));
                continue;
            }
        };
        if let Some(note) = &resolved.note {
            console.note(&format!("agent {}: {note}", agent.name));
        }
        match magi_node::pack::pack(&resolved.path) {
            Ok(packed) => {
                record.archive(
                    &agent.name,
                    &resolved.path.to_string_lossy(),
                    &packed.sha256,
                    packed.bytes.len(),
                );
                shipments.insert(
                    agent.name.clone(),
                    Shipment {
                        archive_b64: base64::engine::general_purpose::STANDARD
                            .encode(&packed.bytes),
                        sha256: packed.sha256,
                    },
                );
            }
            Err(e) if e.is_refusal() => return Err(format!("agent {}: {e}", agent.name)),
            Err(e) => console.note(&format!(
                "agent {}: cannot read {}: {e}; the nodes will look for it themselves",
                agent.name,
                resolved.path.display()
            )),
        }
    }
    Ok(shipments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_runs_are_named_after_the_broker_user() {
        assert_eq!(
            broker_user("amqp://alice:pw@h:5672/%2f").as_deref(),
            Some("alice")
        );
        assert_eq!(broker_user("amqp://h:5672/"), None);
    }

    #[test]
    fn broker_passwords_are_not_printed() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
    }
}
