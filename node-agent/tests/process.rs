//! Agent processes: the real Python test agent (`node-agent/testagent`) and a few
//! deliberately broken agents, spoken to over the line-delimited JSON protocol.

use std::path::{Path, PathBuf};
use std::time::Duration;

use magi_node::manifest::Manifest;
use magi_node::process::{
    write_python_helper, AgentEvent, AgentExit, AgentProcess, CallError, SpawnError, SpawnOptions,
};
use magi_proto::agent::{return_to_trigger_args, ToAgent};
use magi_proto::Object;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

fn testagent_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testagent")
}

fn obj(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn start_line(name: &str, execargs: Value) -> ToAgent {
    ToAgent::Start {
        name: name.to_string(),
        node: "node1".into(),
        run: "run1".into(),
        execargs: obj(execargs),
        address: "127.0.0.1".into(),
        hosts: obj(json!({"node1": "127.0.0.1"})),
    }
}

/// A started agent with the helper directory it needs kept alive.
#[derive(Debug)]
struct Running {
    agent: AgentProcess,
    events: UnboundedReceiver<AgentEvent>,
    _helper: tempfile::TempDir,
}

fn options(helper: &tempfile::TempDir) -> SpawnOptions {
    SpawnOptions {
        python_path: Some(write_python_helper(helper.path()).unwrap()),
        ready_timeout: Duration::from_secs(20),
        ..SpawnOptions::default()
    }
}

async fn spawn_in(dir: &Path, execargs: Value) -> Result<Running, SpawnError> {
    let helper = tempfile::tempdir().unwrap();
    let manifest = Manifest::read(dir).unwrap();
    let (agent, events) = AgentProcess::spawn(
        dir,
        &manifest,
        start_line("test_agent", execargs),
        options(&helper),
    )
    .await?;
    Ok(Running {
        agent,
        events,
        _helper: helper,
    })
}

async fn testagent(execargs: Value) -> Running {
    spawn_in(&testagent_dir(), execargs).await.unwrap()
}

impl Running {
    async fn next(&mut self) -> AgentEvent {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("no event within 10 s")
            .expect("the event channel closed")
    }

    async fn call(&mut self, id: u64, method: &str, args: Value) -> AgentEvent {
        self.agent.call(id, method, obj(args)).unwrap();
        self.next().await
    }

    async fn exit(&mut self) -> AgentExit {
        loop {
            if let AgentEvent::Exited(exit) = self.next().await {
                return exit;
            }
        }
    }
}

/// Whether a process is gone (reaped, or a zombie waiting for its reaper).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn eventually_gone(pid: u32) -> bool {
    for _ in 0..100 {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    false
}

/// A module in a temporary directory with the given manifest command and files.
fn module(command: Value, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = json!({"name": "broken", "command": command});
    std::fs::write(dir.path().join("magi-agent.json"), manifest.to_string()).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_agent_gets_ready_and_answers_calls() {
    let mut a = testagent(json!({})).await;
    assert_eq!(
        a.call(1, "ret", json!({"value": 42})).await,
        AgentEvent::Returned {
            id: 1,
            value: json!(42)
        }
    );
    // execargs, name and hosts arrived: any other method answers nothing (retVal true).
    assert_eq!(
        a.call(2, "startServer", json!({})).await,
        AgentEvent::Returned {
            id: 2,
            value: Value::Null
        }
    );
    assert!(a.agent.pending().is_empty());
    let exit = a.agent.stop(Duration::from_secs(5)).await;
    assert_eq!((exit.code, exit.stopped), (Some(0), true));
    assert_eq!(a.exit().await, exit);
}

#[tokio::test]
async fn returns_become_trigger_arguments_as_in_the_original() {
    let mut a = testagent(json!({})).await;
    let cases = [
        (json!({}), json!({"retVal": true})),
        (json!({"value": false}), json!({"retVal": false})),
        (json!({"value": 75}), json!({"retVal": 75})),
        (json!({"value": {"result": -1}}), json!({"result": -1})),
    ];
    for (id, (args, trigger)) in (1..).zip(cases) {
        let AgentEvent::Returned { id: got, value } = a.call(id, "ret", args).await else {
            panic!("no return")
        };
        assert_eq!(got, id);
        assert_eq!(Value::Object(return_to_trigger_args(value)), trigger);
    }
}

#[tokio::test]
async fn calls_run_concurrently_and_may_be_answered_out_of_order() {
    let mut a = testagent(json!({})).await;
    a.agent.call(1, "sleep", obj(json!({"ms": 1500}))).unwrap();
    a.agent
        .call(2, "ret", obj(json!({"value": "quick"})))
        .unwrap();
    assert_eq!(
        a.next().await,
        AgentEvent::Returned {
            id: 2,
            value: json!("quick")
        }
    );
    assert_eq!(a.agent.pending(), [1]);
    assert_eq!(
        a.next().await,
        AgentEvent::Returned {
            id: 1,
            value: Value::Null
        }
    );
    let err = a
        .agent
        .call(3, "ret", obj(json!({})))
        .and_then(|()| a.agent.call(3, "ret", obj(json!({}))));
    assert!(
        matches!(err, Err(CallError::DuplicateId { id: 3, .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_exception_fails_the_call_with_its_type_message_and_place() {
    let mut a = testagent(json!({})).await;
    let AgentEvent::Failed { id, error } = a.call(7, "fail", json!({"message": "boom"})).await
    else {
        panic!("no failure")
    };
    assert_eq!(id, Some(7));
    assert!(
        error.starts_with("RuntimeError: boom (testagent.py:") && error.ends_with(" in fail)"),
        "{error}"
    );
    // The agent goes on.
    assert!(matches!(
        a.call(8, "ret", json!({"value": 1})).await,
        AgentEvent::Returned { id: 8, .. }
    ));
}

#[tokio::test]
async fn execargs_make_named_methods_return_false() {
    let mut a = testagent(json!({"fail_on": ["startClient"]})).await;
    assert_eq!(
        a.call(1, "startClient", json!({})).await,
        AgentEvent::Returned {
            id: 1,
            value: json!(false)
        }
    );
    assert_eq!(
        a.call(2, "stopClient", json!({})).await,
        AgentEvent::Returned {
            id: 2,
            value: Value::Null
        }
    );
}

#[tokio::test]
async fn a_crash_mid_call_is_reported_with_the_pending_ids_and_the_stderr_tail() {
    let mut a = testagent(json!({})).await;
    a.agent.call(1, "sleep", obj(json!({"ms": 5000}))).unwrap();
    a.agent.call(2, "crash", obj(json!({"code": 3}))).unwrap();
    let exit = a.exit().await;
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.pending, [1, 2]);
    assert!(!exit.stopped);
    assert!(
        exit.stderr_tail
            .iter()
            .any(|l| l == "testagent test_agent: crashing with code 3 in crash"),
        "{:?}",
        exit.stderr_tail
    );
    assert_eq!(exit.to_string(), "exited with code 3");
    assert!(matches!(
        a.agent.call(3, "ret", obj(json!({}))),
        Err(CallError::NotRunning { .. })
    ));
    assert!(a.events.recv().await.is_none(), "Exited is the last event");
}

#[tokio::test]
async fn execargs_make_named_methods_crash() {
    let mut a = testagent(json!({"crash_on": "startClient, stopClient"})).await;
    a.agent.call(4, "startClient", obj(json!({}))).unwrap();
    let exit = a.exit().await;
    assert_eq!((exit.code, exit.pending), (Some(3), vec![4]));
}

#[tokio::test]
async fn a_garbage_line_is_reported_and_the_agent_keeps_working() {
    let mut a = testagent(json!({})).await;
    a.agent.call(1, "garbage", obj(json!({}))).unwrap();
    assert_eq!(
        a.next().await,
        AgentEvent::Garbage {
            line: "this line is not part of the protocol".into()
        }
    );
    assert!(matches!(a.next().await, AgentEvent::Returned { id: 1, .. }));
    assert!(matches!(
        a.call(2, "ret", json!({"value": 2})).await,
        AgentEvent::Returned { id: 2, .. }
    ));
}

#[tokio::test]
async fn spontaneous_triggers_records_and_logs_arrive_as_events() {
    let mut a = testagent(json!({})).await;
    a.agent
        .call(
            1,
            "emit",
            obj(json!({"event": "serverReady", "port": 8080})),
        )
        .unwrap();
    assert_eq!(
        a.next().await,
        AgentEvent::Trigger {
            event: "serverReady".into(),
            args: obj(json!({"port": 8080}))
        }
    );
    assert!(matches!(a.next().await, AgentEvent::Returned { id: 1, .. }));
    a.agent
        .call(2, "record", obj(json!({"bytes": 10})))
        .unwrap();
    assert_eq!(
        a.next().await,
        AgentEvent::Record {
            data: obj(json!({"bytes": 10}))
        }
    );
    assert!(matches!(a.next().await, AgentEvent::Returned { id: 2, .. }));
    a.agent
        .call(3, "log", obj(json!({"message": "hello", "level": "warn"})))
        .unwrap();
    assert_eq!(
        a.next().await,
        AgentEvent::Log {
            level: "warn".into(),
            message: "hello".into()
        }
    );
}

#[tokio::test]
async fn stop_kills_the_children_the_agent_started() {
    let mut a = testagent(json!({})).await;
    let AgentEvent::Returned { value, .. } = a.call(1, "spawn_sleeper", json!({})).await else {
        panic!("no return")
    };
    let pid = value["pid"].as_u64().unwrap() as u32;
    assert!(!gone(pid), "the sleeper runs");
    let exit = a.agent.stop(Duration::from_secs(5)).await;
    assert!(exit.stopped);
    assert!(gone(pid), "the sleeper survived stop()");
}

#[tokio::test]
async fn a_crash_takes_the_agents_children_with_it() {
    let mut a = testagent(json!({})).await;
    let AgentEvent::Returned { value, .. } = a.call(1, "spawn_sleeper", json!({})).await else {
        panic!("no return")
    };
    let pid = value["pid"].as_u64().unwrap() as u32;
    a.agent.call(2, "crash", obj(json!({}))).unwrap();
    assert_eq!(a.exit().await.code, Some(3));
    assert!(gone(pid), "the sleeper outlived its agent");
}

#[tokio::test]
async fn stop_escalates_to_signals_when_the_agent_ignores_it() {
    let dir = module(
        json!([
            "sh",
            "-c",
            "trap '' TERM; read start; echo '{\"kind\":\"ready\"}'; while :; do sleep 0.05; done"
        ]),
        &[],
    );
    let a = spawn_in(dir.path(), json!({})).await.unwrap();
    let exit = a.agent.stop(Duration::from_millis(200)).await;
    assert_eq!(exit.signal, Some(libc::SIGKILL), "{exit}");
    assert!(exit.stopped);
}

#[tokio::test]
async fn dropping_the_handle_kills_the_agent() {
    let a = testagent(json!({})).await;
    let pid = a.agent.pid();
    assert!(!gone(pid));
    drop(a);
    assert!(
        eventually_gone(pid).await,
        "agent {pid} outlived its handle"
    );
}

#[tokio::test]
async fn a_refused_configuration_fails_the_load() {
    let err = spawn_in(&testagent_dir(), json!({"refuse_start": true}))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnError::Refused { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("agent test_agent refused to start: the configuration was refused"),
        "{err}"
    );
}

#[tokio::test]
async fn an_exit_before_ready_fails_the_load_with_the_stderr_tail() {
    let dir = module(
        json!(["sh", "-c", "echo 'no such library' >&2; exit 4"]),
        &[],
    );
    let err = spawn_in(dir.path(), json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent test_agent exited with code 4 before it was ready; its stderr ends with:\n  no such library"
    );
}

#[tokio::test]
async fn silence_fails_the_load_after_the_timeout() {
    let dir = module(json!(["sleep", "30"]), &[]);
    let helper = tempfile::tempdir().unwrap();
    let manifest = Manifest::read(dir.path()).unwrap();
    let started = std::time::Instant::now();
    let err = AgentProcess::spawn(
        dir.path(),
        &manifest,
        start_line("mute", json!({})),
        SpawnOptions {
            ready_timeout: Duration::from_millis(300),
            ..options(&helper)
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SpawnError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_overlong_line_is_garbage_not_a_memory_blowup() {
    let script = "import sys\n\
                  sys.stdin.readline()\n\
                  sys.stdout.write('x' * (3 * 1024 * 1024) + '\\n')\n\
                  sys.stdout.write('{\"kind\":\"ready\"}\\n')\n\
                  sys.stdout.flush()\n\
                  sys.stdin.readline()\n";
    let dir = module(json!(["python3", "agent.py"]), &[("agent.py", script)]);
    let mut a = spawn_in(dir.path(), json!({})).await.unwrap();
    let AgentEvent::Garbage { line } = a.next().await else {
        panic!("no garbage")
    };
    assert!(
        line.ends_with("… (3145728 bytes, over the 1048576-byte line limit)"),
        "{}",
        &line[line.len() - 80..]
    );
    assert!(line.len() < 2000);
}

#[tokio::test]
async fn a_missing_program_is_named() {
    let dir = module(json!(["no-such-agent-program"]), &[]);
    let err = spawn_in(dir.path(), json!({})).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("agent command `no-such-agent-program` not found; looked in: "),
        "{err}"
    );
}

/// The node agent runs loads and unloads in spawned tasks: the futures must be `Send`.
#[allow(dead_code)]
fn futures_are_send(dir: &Path, manifest: &Manifest, agent: &AgentProcess) {
    fn send<T: Send>(_: T) {}
    send(AgentProcess::spawn(
        dir,
        manifest,
        start_line("x", json!({})),
        SpawnOptions::default(),
    ));
    send(agent.stop(Duration::from_secs(1)));
    send(agent.wait());
    let cache = magi_node::archive::ArchiveCache::new(dir);
    send(cache.unpack_async(magi_node::archive::AgentSource::Bytes(Vec::new())));
}

/// The chain the node agent runs for `loadAgent`: library, cache, manifest, process.
#[tokio::test]
async fn a_case_study_path_runs_the_library_module_from_the_cache() {
    use magi_node::archive::{AgentSource, ArchiveCache};
    use magi_node::library::ModuleLibrary;

    let library = ModuleLibrary::new(vec![Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()]);
    let resolved = library
        .resolve("/share/magi/modules/testagent/testagent.tar.gz")
        .unwrap();
    assert_eq!(resolved.path, testagent_dir());
    assert!(resolved
        .note
        .unwrap()
        .contains("using module testagent from"));
    let state = tempfile::tempdir().unwrap();
    let cache = ArchiveCache::in_state_dir(state.path());
    let module = cache
        .unpack_async(AgentSource::Path(resolved.path))
        .await
        .unwrap();
    let mut a = spawn_in(&module.dir, json!({})).await.unwrap();
    assert_eq!(
        a.call(1, "startClient", json!({})).await,
        AgentEvent::Returned {
            id: 1,
            value: Value::Null
        }
    );
}
