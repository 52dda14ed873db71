//! Original-style agents (an `.idl` and Python written against the original's API) under
//! the `magi` compatibility package: the module's manifest is made from its IDL, and the
//! agent is spoken to line by line over the agent protocol, as the node agent would.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use magi_node::manifest::Manifest;
use magi_node::process::write_python_helper;
use serde_json::{json, Value};

/// An agent process, its protocol pipes, and the lines it sent besides answers.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Triggers, records and logs, in order.
    others: Vec<Value>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Starts a module made of `idl` and `files`; returns the agent and its answer to `start`.
fn start(idl: &str, files: &[(&str, &str)], execargs: Value) -> (Agent, Value) {
    let module = tempfile::tempdir().unwrap();
    std::fs::write(module.path().join("agent.idl"), idl).unwrap();
    for (name, text) in files {
        std::fs::write(module.path().join(name), text).unwrap();
    }
    let helper = tempfile::tempdir().unwrap();
    let python_path = write_python_helper(helper.path()).unwrap();
    let manifest = Manifest::read(module.path()).unwrap();
    let mut child = Command::new(manifest.program(module.path()).unwrap())
        .args(manifest.args())
        .current_dir(module.path())
        .env("PYTHONPATH", python_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A watchdog: a hung agent fails the test instead of hanging it.
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut agent = Agent {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
        others: Vec::new(),
        _dirs: (module, helper),
    };
    agent.send(
        json!({"kind": "start", "name": "a1", "node": "node1", "run": "r1",
        "execargs": execargs, "address": "127.0.0.1",
        "hosts": {"node1": "127.0.0.1", "node2": "127.0.1.2"}}),
    );
    let first = agent.line().expect("an answer to start");
    (agent, first)
}

impl Agent {
    fn send(&mut self, line: Value) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn line(&mut self) -> Option<Value> {
        let mut text = String::new();
        match self.stdout.read_line(&mut text) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&text).expect("a JSON line")),
        }
    }

    /// The next answer (`return` or `error` with an id); other lines are kept.
    fn answer(&mut self) -> Value {
        loop {
            let line = self.line().expect("the agent ended without answering");
            if line.get("id").is_some_and(|id| !id.is_null()) {
                return line;
            }
            self.others.push(line);
        }
    }

    fn call(&mut self, id: u64, method: &str, args: Value) -> Value {
        self.send(json!({"kind": "call", "id": id, "method": method, "args": args}));
        let answer = self.answer();
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const THREAD_IDL: &str = "execute: thread\nmainfile: agent.py\n";

const ADDER: &str = "
from magi.util.agent import DispatchAgent, agentmethod

class Adder(DispatchAgent):
    @agentmethod()
    def add(self, msg, a, b=0):
        return a + b

    @agentmethod()
    def nothing(self, msg):
        pass

    @agentmethod()
    def whoami(self, msg):
        return {'src': msg.src, 'method': msg.data['method'], 'name': self.name,
                'scale': self.scale}

    def boom(self, msg):
        raise ValueError('bad input')

def getAgent(**kwargs):
    agent = Adder()
    agent.setConfiguration(None, **kwargs)
    return agent
";

#[test]
fn methods_get_msg_and_only_the_arguments_they_take_and_none_is_no_value() {
    let (mut agent, ready) = start(THREAD_IDL, &[("agent.py", ADDER)], json!({"scale": 3}));
    assert_eq!(ready, json!({"kind": "ready"}));
    let r = agent.call(1, "add", json!({"a": 1, "b": 2, "unknown": 9}));
    assert_eq!(r["value"], 3, "{r}");
    let r = agent.call(2, "nothing", json!({"x": 1}));
    assert_eq!(r, json!({"kind": "return", "id": 2, "value": null}));
    let r = agent.call(3, "whoami", json!({}));
    assert_eq!(
        r["value"],
        json!({"src": "r1", "method": "whoami", "name": "a1", "scale": 3})
    );
    let r = agent.call(4, "boom", json!({}));
    let error = r["error"].as_str().unwrap();
    assert!(error.starts_with("ValueError: bad input (agent.py:"), "{r}");
    let r = agent.call(5, "nosuch", json!({}));
    assert_eq!(r["error"], "agent a1 has no method nosuch");
    let r = agent.call(6, "_private", json!({}));
    assert_eq!(r["error"], "agent a1 has no method _private");
    let r = agent.call(7, "add", json!({"b": 2}));
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("missing 1 required positional argument: 'a'"),
        "{r}"
    );
}

#[test]
fn a_non_blocking_agent_answers_overlapping_calls_as_they_finish() {
    let agent_py = "
import time
from magi.util.agent import NonBlockingDispatchAgent

class Slow(NonBlockingDispatchAgent):
    def wait(self, msg, seconds):
        time.sleep(seconds)
        return seconds

def getAgent(**kwargs):
    return Slow()
";
    let (mut agent, _) = start(THREAD_IDL, &[("agent.py", agent_py)], json!({}));
    agent.send(json!({"kind": "call", "id": 1, "method": "wait", "args": {"seconds": 0.6}}));
    agent.send(json!({"kind": "call", "id": 2, "method": "wait", "args": {"seconds": 0.0}}));
    assert_eq!(agent.answer()["id"], 2);
    assert_eq!(agent.answer()["id"], 1);
}

#[test]
fn a_process_agent_runs_its_main_and_sees_its_node_and_peers() {
    let agent_py = "
import sys
from magi.testbed import testbed
from magi.util import config
from magi.util.agent import DispatchAgent
from magi.util.processAgent import initializeProcessAgent

class Where(DispatchAgent):
    def where(self, msg):
        return {'node': config.getNodeName(), 'tb': testbed.nodename,
                'peer': testbed.getHostForName('node2'), 'mine': testbed.getLocalIPList(),
                'interval': self.interval, 'execute': self.execute, 'argv1': sys.argv[1]}

if __name__ == '__main__':
    agent = Where()
    kwargs = initializeProcessAgent(agent, sys.argv)
    agent.setConfiguration(None, **kwargs)
    agent.run()
";
    let idl = "execute: pipe\nmainfile: agent.py\n";
    let (mut agent, ready) = start(idl, &[("agent.py", agent_py)], json!({"interval": 0.5}));
    assert_eq!(ready, json!({"kind": "ready"}));
    let r = agent.call(1, "where", json!({}));
    assert_eq!(
        r["value"],
        json!({"node": "node1", "tb": "node1", "peer": "127.0.1.2", "mine": ["127.0.0.1"],
               "interval": 0.5, "execute": "pipe", "argv1": "a1"})
    );
}

#[test]
fn a_collection_records_what_is_inserted_and_finds_it_back() {
    let agent_py = "
from magi.util import database
from magi.util.agent import DispatchAgent

class Store(DispatchAgent):
    def go(self, msg):
        c = database.getCollection(self.name)
        c.insert({'k': 1, 'v': 'a'})
        c.insert([{'k': 2, 'v': 'b'}, {'k': 1, 'v': 'c'}])
        found = [d['v'] for d in c.find({'k': 1})]
        big = c.find({'k': {'$gt': 1}}).count()
        c.remove({'v': 'a'})
        try:
            c.insert({'host': 'x'})
            refused = False
        except RuntimeError:
            refused = True
        return {'found': found, 'big': big, 'left': c.find().count(), 'refused': refused}

def getAgent(**kwargs):
    return Store()
";
    let (mut agent, _) = start(THREAD_IDL, &[("agent.py", agent_py)], json!({}));
    let r = agent.call(1, "go", json!({}));
    assert_eq!(
        r["value"],
        json!({"found": ["a", "c"], "big": 1, "left": 2, "refused": true})
    );
    let records: Vec<&Value> = agent
        .others
        .iter()
        .filter(|l| l["kind"] == "record")
        .map(|l| &l["data"])
        .collect();
    assert_eq!(
        records,
        [
            &json!({"k": 1, "v": "a"}),
            &json!({"k": 2, "v": "b"}),
            &json!({"k": 1, "v": "c"})
        ]
    );
}

#[test]
fn programs_run_from_an_agent_answer_as_text() {
    let agent_py = "
from magi.util.agent import DispatchAgent
from magi.util.execl import execAndRead, run, pipeIn

class Shell(DispatchAgent):
    def go(self, msg):
        out, err = execAndRead('sh -c echo')
        said, _ = execAndRead(['printf', '%s-%s', 'a', 'b'])
        return {'said': said, 'status': run('false'), 'piped': pipeIn('echo x; echo y').read(),
                'err': err}

def getAgent(**kwargs):
    return Shell()
";
    let (mut agent, _) = start(THREAD_IDL, &[("agent.py", agent_py)], json!({}));
    let r = agent.call(1, "go", json!({}));
    assert_eq!(
        r["value"],
        json!({"said": "a-b", "status": 1, "piped": "x\ny\n", "err": ""})
    );
}

#[test]
fn a_reporting_agent_reports_periodically_through_its_messenger() {
    let agent_py = "
from magi.util.agent import ReportingDispatchAgent

class Ticker(ReportingDispatchAgent):
    n = 0
    def periodic(self, now):
        self.n += 1
        self.messenger.trigger(event='tick', n=self.n, nodes=['ignored'])
        return 0.01

def getAgent(**kwargs):
    return Ticker()
";
    let (mut agent, _) = start(THREAD_IDL, &[("agent.py", agent_py)], json!({}));
    let second = loop {
        let line = agent.line().expect("a tick");
        if line["args"]["n"] == 2 {
            break line;
        }
    };
    assert_eq!(
        second,
        json!({"kind": "trigger", "event": "tick", "args": {"n": 2}})
    );
}

#[test]
fn an_agent_without_get_agent_or_a_run_loop_is_refused_at_start() {
    let (_, answer) = start(THREAD_IDL, &[("agent.py", "x = 1\n")], json!({}));
    assert_eq!(
        answer["error"],
        "agent.py has no getAgent(**kwargs): an agent with `execute: thread` is built by it"
    );
    let no_run = "def getAgent(**kwargs):\n    return object()\n";
    let (_, answer) = start(THREAD_IDL, &[("agent.py", no_run)], json!({}));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .ends_with("has no run(): derive it from magi.util.agent.DispatchAgent"),
        "{answer}"
    );
    let idl = "execute: socket\nmainfile: agent.py\n";
    let (_, answer) = start(idl, &[("agent.py", "print('no run')\n")], json!({}));
    assert_eq!(
        answer["error"],
        "agent.py ended before the agent served calls (does it call agent.run()?)"
    );
    let (_, answer) = start(idl, &[("agent.py", "raise KeyError('conf')\n")], json!({}));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("KeyError: 'conf' (agent.py:1"),
        "{answer}"
    );
}

#[test]
fn python_2_spellings_are_named_with_their_fix() {
    let cases = [
        ("print \"hello\"\n", "agent.py:1: `print` is a statement in Python 2 (print \"hello\"): print is a function in Python 3: write print(...), e.g. print(\"x\")"),
        ("x = 0777\n", "agent.py:1: octal numbers like 0777 are Python 2 (x = 0777): write 0o777"),
        ("if 1 <> 2:\n    pass\n", "agent.py:1: `<>` is Python 2 (if 1 <> 2:): write `!=`"),
        ("raise ValueError, 'x'\n", "agent.py:1: `raise E, message` is Python 2 (raise ValueError, 'x'): write `raise E(\"message\")`"),
        ("if True:\n\tx = 1\n        y = 2\n", "agent.py:3: indentation mixes tabs and spaces"),
    ];
    for (source, expected) in cases {
        let (_, answer) = start(THREAD_IDL, &[("agent.py", source)], json!({}));
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(expected), "{source:?}: {answer}");
    }
}

#[test]
fn the_package_is_written_readable_by_every_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_python_helper(dir.path()).unwrap();
    for file in [
        "magi_agent.py",
        "magi/original.py",
        "magi/util/agent.py",
        "magi/testbed/__init__.py",
    ] {
        let mode = std::fs::metadata(Path::new(dir.path()).join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o444, 0o444, "{file}: {mode:o}");
    }
}
