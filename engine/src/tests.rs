//! The engine's rules, one test each, on virtual time. A scripted set of nodes answers
//! setup and teardown calls; tests send user triggers by hand. (Over 600 lines because the
//! rules are many: each test is short and stands alone, sharing only the helpers at the top.)

use super::*;
use magi_aal::{AgentSource, Composite, Entry, Event, Group, Stream, Target, TimeoutTrigger, Wait};
use serde_json::json;

fn obj(v: Value) -> Object {
    v.as_object().cloned().unwrap_or_default()
}

fn procedure(
    groups: &[(&str, &[&str])],
    agents: &[(&str, &str)],
    streams: Vec<(&str, Vec<Entry>)>,
    starts: &[&str],
) -> Procedure {
    Procedure {
        files: vec![],
        groups: groups
            .iter()
            .map(|(n, nodes)| Group {
                name: n.to_string(),
                nodes: nodes.iter().map(|s| s.to_string()).collect(),
                span: Default::default(),
            })
            .collect(),
        agents: agents
            .iter()
            .map(|(n, g)| magi_aal::Agent {
                name: n.to_string(),
                group: g.to_string(),
                source: Some(AgentSource::Path(format!("/modules/{n}"))),
                code: None,
                dock: n.to_string(),
                execargs: Object::new(),
                idl: None,
                load_timeout_ms: 5_000,
                span: Default::default(),
            })
            .collect(),
        streams: streams
            .into_iter()
            .map(|(n, entries)| Stream {
                name: n.into(),
                entries,
                span: Default::default(),
            })
            .collect(),
        streamstarts: starts.iter().map(|s| s.to_string()).collect(),
    }
}

fn ev(agent: &str, method: &str, trigger: Option<&str>) -> Entry {
    Entry::Event(Event {
        agent: agent.into(),
        method: method.into(),
        args: Object::new(),
        trigger: trigger.map(Into::into),
        span: Default::default(),
    })
}

fn wait(triggers: Vec<Trigger>) -> Entry {
    Entry::Wait(Wait {
        triggers,
        span: Default::default(),
    })
}

fn on(event: &str, nodes: &[&str], count: usize, args: Value, target: Option<Target>) -> Trigger {
    Trigger::Event(EventTrigger {
        event: event.into(),
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
        count,
        args: obj(args),
        target,
        span: Default::default(),
    })
}

fn after(ms: u64, target: Option<Target>) -> Trigger {
    Trigger::Timeout(TimeoutTrigger {
        timeout_ms: ms,
        target,
        span: Default::default(),
    })
}

fn to(stream: &str) -> Option<Target> {
    Some(Target::Stream(stream.into()))
}

/// Drives an engine like the `magi run` loop does, with nodes that answer setup and
/// teardown at once (except `silent` ones).
struct Harness {
    engine: Engine,
    now: u64,
    lines: Vec<Line>,
    sent: Vec<(String, Call)>,
    outcome: Option<Outcome>,
    silent: Vec<String>,
    procedure: Arc<Procedure>,
}

impl Harness {
    fn new(p: Procedure, options: Options) -> Self {
        Self::with_silent(p, options, &[])
    }

    fn with_silent(p: Procedure, options: Options, silent: &[&str]) -> Self {
        let procedure = Arc::new(p);
        let mut h = Harness {
            engine: Engine::new(procedure.clone(), options, "run1"),
            now: 0,
            lines: vec![],
            sent: vec![],
            outcome: None,
            silent: silent.iter().map(|s| s.to_string()).collect(),
            procedure,
        };
        let out = h.engine.start(0);
        h.absorb(out);
        h
    }

    fn absorb(&mut self, out: Vec<Output>) {
        let mut replies = Vec::new();
        for o in out {
            match o {
                Output::Line(l) => self.lines.push(l),
                Output::Finished(outcome) => self.outcome = Some(outcome),
                Output::Send { dest, call, .. } => {
                    let nodes = match &dest {
                        Dest::Nodes(n) => n.clone(),
                        Dest::Group(g) => self.procedure.nodes_of(g),
                    };
                    let reply = match call.method.as_str() {
                        "joinGroup" => Some(("GroupBuildDone", "group")),
                        "leaveGroup" => Some(("GroupTeardownDone", "group")),
                        "loadAgent" => Some(("AgentLoadDone", "agent")),
                        "unloadAgent" => Some(("AgentUnloadDone", "agent")),
                        _ => None,
                    };
                    if let Some((event, key)) = reply {
                        let value = if key == "group" {
                            call.args["group"].clone()
                        } else {
                            call.args["name"].clone()
                        };
                        for n in nodes.iter().filter(|n| !self.silent.contains(n)) {
                            replies.push((
                                event.to_string(),
                                n.clone(),
                                obj(json!({ key: value.clone() })),
                            ));
                        }
                    }
                    self.sent.push((call.method.clone(), call));
                }
            }
        }
        for (event, node, args) in replies {
            let out = self.engine.on_trigger(self.now, &event, &[node], &args);
            self.absorb(out);
        }
    }

    /// A node's reply to the call `seq`.
    fn reply(&mut self, seq: u64, event: &str, node: &str, args: Value) {
        let out = self
            .engine
            .on_reply(self.now, seq, event, &[node.to_string()], &obj(args));
        self.absorb(out);
    }

    /// The `seq` of every call of this method sent so far.
    fn seqs(&self, method: &str) -> Vec<u64> {
        self.sent
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, c)| c.seq)
            .collect()
    }

    fn trigger(&mut self, event: &str, node: &str, args: Value) {
        let out = self
            .engine
            .on_trigger(self.now, event, &[node.to_string()], &obj(args));
        self.absorb(out);
    }

    /// Advances virtual time to `t`, firing every deadline on the way.
    fn advance_to(&mut self, t: u64) {
        while let Some(d) = self.engine.next_deadline() {
            if d > t {
                break;
            }
            self.now = d.max(self.now);
            let out = self.engine.on_time(self.now);
            self.absorb(out);
        }
        self.now = t;
        let out = self.engine.on_time(t);
        self.absorb(out);
    }

    fn methods(&self) -> Vec<&str> {
        self.sent.iter().map(|(m, _)| m.as_str()).collect()
    }

    fn user_methods(&self) -> Vec<&str> {
        self.methods()
            .into_iter()
            .filter(|m| !["joinGroup", "leaveGroup", "loadAgent", "unloadAgent"].contains(m))
            .collect()
    }

    fn has_line(&self, tag: Tag, needle: &str) -> bool {
        self.lines
            .iter()
            .any(|l| l.tag == tag && l.text.contains(needle))
    }
}

fn one_server() -> Vec<(&'static str, &'static [&'static str])> {
    vec![("servers", &["s1", "s2"][..]), ("clients", &["c1"][..])]
}

fn agents() -> Vec<(&'static str, &'static str)> {
    vec![("server", "servers"), ("client", "clients")]
}

#[test]
fn setup_builds_all_groups_at_once_then_loads_all_agents_at_once() {
    let h = Harness::new(
        procedure(&one_server(), &agents(), vec![], &[]),
        Options::default(),
    );
    assert_eq!(
        &h.methods()[..4],
        &["joinGroup", "joinGroup", "loadAgent", "loadAgent"]
    );
    assert!(h
        .lines
        .iter()
        .any(|l| l.stream == "initialization" && l.tag == Tag::Done));
}

/// Each member of a group gets its `joinGroup` and `leaveGroup` as a message of its own,
/// so the call names no members: with the list in each, a group of 10,000 nodes cost
/// 10,000 × 160 KB. Every member still gets the call and answers.
#[test]
fn group_calls_go_to_every_member_without_listing_the_members() {
    let names: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::new(
        procedure(&[("big", &members)], &[("a", "big")], vec![], &[]),
        Options::default(),
    );
    h.advance_to(1);
    let group_calls: Vec<&Call> = h
        .sent
        .iter()
        .filter(|(m, _)| m == "joinGroup" || m == "leaveGroup")
        .map(|(_, c)| c)
        .collect();
    assert_eq!(group_calls.len(), 2, "{:?}", h.methods());
    for call in group_calls {
        assert_eq!(call.nodes, None, "{}", call.method);
        assert_eq!(Value::Object(call.args.clone()), json!({"group": "big"}));
        assert!(serde_json::to_vec(call).unwrap().len() < 300);
    }
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn a_group_build_that_times_out_fails_setup_and_names_the_missing_node() {
    let mut h = Harness::with_silent(
        procedure(&one_server(), &agents(), vec![], &[]),
        Options::default(),
        &["s2"],
    );
    assert!(!h.methods().contains(&"loadAgent"));
    h.advance_to(19_999);
    assert!(h.outcome.is_none());
    h.advance_to(20_000);
    let Some(Outcome::Failed { kind, message }) = &h.outcome else {
        panic!("{:?}", h.outcome)
    };
    assert_eq!(*kind, FailureKind::Setup);
    assert!(
        message.contains("GroupBuildDone of servers") && message.contains("[s2]"),
        "{message}"
    );
    // Teardown still runs for what was built, and does not wait on the silent node forever.
    assert!(h.methods().contains(&"leaveGroup"));
}

#[test]
fn a_setup_timeout_of_many_silent_nodes_names_twenty_and_counts_the_rest() {
    let names: Vec<String> = (0..684).map(|i| format!("n{i:03}")).collect();
    let nodes: Vec<&str> = names.iter().map(String::as_str).collect();
    let groups = vec![("servers", &nodes[..]), ("clients", &["c1"][..])];
    let mut h = Harness::with_silent(
        procedure(&groups, &agents(), vec![], &[]),
        Options::default(),
        &nodes,
    );
    h.advance_to(20_000);
    let Some(Outcome::Failed { kind, message }) = &h.outcome else {
        panic!("{:?}", h.outcome)
    };
    assert_eq!(*kind, FailureKind::Setup);
    assert!(
        message.contains("[n000, n001, ") && message.contains("n019 and 664 more]"),
        "{message}"
    );
    assert!(!message.contains("n020"), "{message}");
}

#[test]
fn streams_run_concurrently_and_consecutive_events_go_out_back_to_back() {
    let streams = vec![
        (
            "a",
            vec![
                ev("server", "m1", None),
                ev("server", "m2", None),
                wait(vec![after(1000, None)]),
                ev("server", "m3", None),
            ],
        ),
        ("b", vec![ev("client", "n1", None)]),
    ];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a", "b"]),
        Options::default(),
    );
    assert_eq!(h.user_methods(), vec!["m1", "m2", "n1"]);
    h.advance_to(1000);
    assert_eq!(h.user_methods(), vec!["m1", "m2", "n1", "m3"]);
}

#[test]
fn a_wait_needs_every_node_of_the_emitting_group_by_default() {
    let streams = vec![(
        "a",
        vec![
            ev("server", "start", Some("started")),
            wait(vec![on(
                "started",
                &["s1", "s2"],
                2,
                json!({"retVal": true}),
                None,
            )]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("started", "s1", json!({"retVal": true}));
    assert!(!h.user_methods().contains(&"after"));
    h.trigger("started", "s2", json!({"retVal": true}));
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn count_lowers_the_number_of_nodes_needed() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![on(
                "started",
                &["s1", "s2"],
                1,
                json!({"retVal": true}),
                None,
            )]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("started", "s2", json!({"retVal": true}));
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn replies_from_nodes_outside_the_waits_nodes_do_not_count() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![on(
                "started",
                &["s1"],
                1,
                json!({"retVal": true}),
                None,
            )]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("started", "s2", json!({"retVal": true}));
    assert!(!h.user_methods().contains(&"after"));
    h.trigger("started", "s1", json!({"retVal": true}));
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn match_arguments_must_be_present_and_equal() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![on("sensed", &["c1"], 1, json!({"result": -1}), None)]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("sensed", "c1", json!({"result": 1}));
    h.trigger("sensed", "c1", json!({"other": -1}));
    assert!(!h.user_methods().contains(&"after"));
    h.trigger("sensed", "c1", json!({"result": -1, "extra": "ignored"}));
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn a_plain_wait_matches_only_retval_true_so_a_dict_return_does_not_satisfy_it() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![on("x", &["c1"], 1, json!({"retVal": true}), None)]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("x", "c1", json!({"result": 0}));
    assert!(!h.user_methods().contains(&"after"));
    h.trigger("x", "c1", json!({"retVal": 1})); // Python: 1 == True
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn a_trigger_that_arrived_before_the_wait_still_counts() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![after(5000, None)]),
            wait(vec![on("early", &["c1"], 1, json!({"retVal": true}), None)]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("early", "c1", json!({"retVal": true}));
    h.advance_to(5000);
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn one_trigger_releases_every_stream_waiting_on_it() {
    let streams = vec![
        (
            "a",
            vec![
                wait(vec![on("go", &[], 1, json!({"retVal": true}), None)]),
                ev("client", "a_after", None),
            ],
        ),
        (
            "b",
            vec![
                wait(vec![on("go", &[], 1, json!({"retVal": true}), None)]),
                ev("client", "b_after", None),
            ],
        ),
    ];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a", "b"]),
        Options::default(),
    );
    h.trigger("go", "anyone", json!({"retVal": true}));
    assert_eq!(h.user_methods(), vec!["a_after", "b_after"]);
}

#[test]
fn the_first_complete_trigger_in_the_list_wins() {
    let streams = vec![
        (
            "a",
            vec![wait(vec![after(0, to("first")), after(0, to("second"))])],
        ),
        ("first", vec![ev("client", "first_ran", None)]),
        ("second", vec![ev("client", "second_ran", None)]),
    ];
    let h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    assert_eq!(h.user_methods(), vec!["first_ran"]);
}

#[test]
fn a_target_restarts_the_named_stream_from_its_start() {
    let streams = vec![
        ("a", vec![wait(vec![after(1000, to("b"))])]),
        (
            "b",
            vec![
                ev("client", "b1", None),
                wait(vec![after(5000, None)]),
                ev("client", "b2", None),
            ],
        ),
    ];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a", "b"]),
        Options::default(),
    );
    h.advance_to(1000); // b is restarted while waiting: b1 again, its 5 s wait starts over
    assert_eq!(h.user_methods(), vec!["b1", "b1"]);
    h.advance_to(5999);
    assert_eq!(h.user_methods(), vec!["b1", "b1"]);
    h.advance_to(6000);
    assert_eq!(h.user_methods(), vec!["b1", "b1", "b2"]);
    assert!(h.has_line(Tag::Jump, "jumped to target: b."));
}

#[test]
fn a_stream_jumping_to_itself_loops() {
    let streams = vec![
        (
            "loop",
            vec![
                ev("client", "tick", None),
                wait(vec![after(1000, to("loop"))]),
            ],
        ),
        ("end", vec![wait(vec![after(3500, Some(Target::Exit))])]),
    ];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["loop", "end"]),
        Options::default(),
    );
    h.advance_to(3600);
    assert_eq!(h.user_methods(), vec!["tick", "tick", "tick", "tick"]);
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn timeouts_are_exact_milliseconds() {
    let streams = vec![(
        "a",
        vec![wait(vec![after(1500, None)]), ev("client", "after", None)],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.advance_to(1000); // the original truncated 1500 ms to 1 s
    assert!(h.user_methods().is_empty());
    h.advance_to(1499);
    assert!(h.user_methods().is_empty());
    h.advance_to(1500);
    assert_eq!(h.user_methods(), vec!["after"]);
    assert!(h.has_line(Tag::Trig, "timeout: 1.5 s"));
}

#[test]
fn and_needs_every_child_and_or_any_child() {
    let and = Trigger::All(Composite {
        triggers: vec![
            on("x", &[], 1, json!({"retVal": true}), None),
            after(1000, None),
        ],
        target: to("and_done"),
        span: Default::default(),
    });
    let or = Trigger::Any(Composite {
        triggers: vec![
            on("y", &[], 1, json!({"retVal": true}), None),
            after(3000, None),
        ],
        target: to("or_done"),
        span: Default::default(),
    });
    let streams = vec![
        ("a", vec![wait(vec![and])]),
        ("b", vec![wait(vec![or])]),
        ("and_done", vec![ev("client", "and_ran", None)]),
        ("or_done", vec![ev("client", "or_ran", None)]),
    ];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a", "b"]),
        Options::default(),
    );
    h.advance_to(1000);
    assert!(h.user_methods().is_empty(), "AND lacks its event");
    h.trigger("x", "c1", json!({"retVal": true}));
    assert_eq!(h.user_methods(), vec!["and_ran"]);
    h.trigger("y", "c1", json!({"retVal": true}));
    assert_eq!(h.user_methods(), vec!["and_ran", "or_ran"]);
}

#[test]
fn sending_an_event_forgets_stale_replies_of_its_trigger() {
    // A loop asks both servers each round; s2 answers only the first round. The
    // original's broken invalidation let s2's stale reply complete round two.
    let streams = vec![(
        "loop",
        vec![
            ev("server", "probe", Some("probed")),
            wait(vec![
                on(
                    "probed",
                    &["s1", "s2"],
                    2,
                    json!({"retVal": true}),
                    to("loop"),
                ),
                after(10_000, Some(Target::Exit)),
            ]),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["loop"]),
        Options::default(),
    );
    h.trigger("probed", "s1", json!({"retVal": true}));
    h.trigger("probed", "s2", json!({"retVal": true}));
    assert_eq!(h.user_methods(), vec!["probe", "probe"]);
    h.trigger("probed", "s1", json!({"retVal": true}));
    assert_eq!(
        h.user_methods(),
        vec!["probe", "probe"],
        "round two must wait for a fresh reply from s2"
    );
    h.advance_to(10_000);
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn exit_unloads_every_agent_then_leaves_every_group() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![after(0, Some(Target::Exit))]),
            ev("client", "never", None),
        ],
    )];
    let h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    assert_eq!(
        h.methods()[4..].to_vec(),
        vec!["unloadAgent", "unloadAgent", "leaveGroup", "leaveGroup"]
    );
    assert_eq!(h.outcome, Some(Outcome::Success));
    assert!(h
        .lines
        .iter()
        .any(|l| l.stream == "exit" && l.tag == Tag::Done));
}

#[test]
fn streams_that_just_end_are_torn_down_too() {
    let streams = vec![("a", vec![ev("client", "only", None)])];
    let h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    assert!(h
        .methods()
        .ends_with(&["unloadAgent", "unloadAgent", "leaveGroup", "leaveGroup"]));
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn keep_agents_skips_teardown() {
    let streams = vec![("a", vec![ev("client", "only", None)])];
    let h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options {
            teardown: false,
            ..Options::default()
        },
    );
    assert!(!h.methods().contains(&"unloadAgent"));
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn a_false_return_aborts_to_teardown_naming_agent_node_and_method() {
    let streams = vec![(
        "a",
        vec![
            ev("client", "startClient", Some("clientStarted")),
            wait(vec![after(60_000, None)]),
            ev("client", "never", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger(
        "clientStarted",
        "c1",
        json!({"retVal": false, "agent": "client"}),
    );
    let Some(Outcome::Failed { kind, message }) = &h.outcome else {
        panic!("{:?}", h.outcome)
    };
    assert_eq!(*kind, FailureKind::Agent);
    assert!(
        message.contains("agent client")
            && message.contains("c1")
            && message.contains("startClient"),
        "{message}"
    );
    assert!(h.methods().contains(&"unloadAgent"));
    assert!(!h.user_methods().contains(&"never"));
}

#[test]
fn a_zero_return_is_not_a_failure() {
    let streams = vec![(
        "a",
        vec![
            ev("client", "count", Some("counted")),
            wait(vec![after(1000, None)]),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("counted", "c1", json!({"retVal": 0}));
    h.advance_to(1000);
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn a_runtime_exception_aborts_unless_keep_going() {
    let streams = vec![("a", vec![wait(vec![after(1000, None)])])];
    let p = procedure(&one_server(), &agents(), streams, &["a"]);
    let mut h = Harness::new(p.clone(), Options::default());
    h.trigger(
        "RuntimeException",
        "s1",
        json!({"agent": "server", "func_name": "startServer", "error": "boom"}),
    );
    assert!(
        matches!(&h.outcome, Some(Outcome::Failed { message, .. }) if message.contains("in method startServer") && message.contains("boom"))
    );

    let mut h = Harness::new(
        p,
        Options {
            abort_on_failure: false,
            ..Options::default()
        },
    );
    h.trigger(
        "RuntimeException",
        "s1",
        json!({"agent": "server", "error": "boom"}),
    );
    h.trigger("x", "s1", json!({"retVal": false}));
    assert!(h.outcome.is_none());
    h.advance_to(1000);
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn a_magi_warning_does_not_stop_the_run() {
    let streams = vec![("a", vec![wait(vec![after(1000, None)])])];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger(
        "RuntimeException",
        "s1",
        json!({"type": "MagiWarning", "error": "meh"}),
    );
    h.advance_to(1000);
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn a_lost_node_ends_the_run_and_teardown_does_not_wait_for_it() {
    let streams = vec![("a", vec![wait(vec![after(60_000, None)])])];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.silent.push("s2".into());
    let out = h.engine.on_node_lost(h.now, "s2", "no heartbeat for 6 s");
    h.absorb(out);
    let message = node_failure_after_teardown(&h);
    assert!(message.contains("s2"));
}

/// The run failed for a node, and its teardown completed (without the silent nodes):
/// the failure's message.
fn node_failure_after_teardown(h: &Harness) -> &str {
    let Some(Outcome::Failed { kind, message }) = &h.outcome else {
        panic!("{:?}", h.outcome)
    };
    assert_eq!(*kind, FailureKind::Node);
    assert!(
        h.lines
            .iter()
            .any(|l| l.stream == "exit" && l.tag == Tag::Done),
        "teardown completed without {:?}",
        h.silent
    );
    message
}

#[test]
fn a_node_whose_dead_man_fired_is_lost_at_once_and_teardown_does_not_wait_for_it() {
    let streams = vec![("a", vec![wait(vec![after(60_000, None)])])];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.now = 31_000;
    // It left its groups: teardown's calls no longer reach it.
    h.silent.push("s2".into());
    h.trigger("NodeLeftRun", "s2", json!({"silent": 30.4, "limit": 30.0}));
    let message = node_failure_after_teardown(&h);
    assert!(
        message.contains("node s2 lost")
            && message.contains("dead-man switch heard nothing from this run for 30.4 s"),
        "{message}"
    );
}

#[test]
fn node_left_run_from_an_agent_or_a_stranger_loses_no_node() {
    let streams = vec![("a", vec![wait(vec![after(1000, None)])])];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    // An agent's trigger carries its name; a node outside the procedure is nobody here.
    h.trigger(
        "NodeLeftRun",
        "s2",
        json!({"agent": "server", "silent": 1.0}),
    );
    h.trigger("NodeLeftRun", "elsewhere", json!({"silent": 1.0}));
    h.advance_to(1000);
    assert_eq!(h.outcome, Some(Outcome::Success));
}

#[test]
fn an_interrupt_tears_down_and_reports_interrupted() {
    let streams = vec![("a", vec![wait(vec![after(60_000, None)])])];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    let out = h.engine.interrupt(10);
    h.absorb(out);
    assert_eq!(h.outcome, Some(Outcome::Interrupted));
    assert!(h.methods().contains(&"leaveGroup"));
}

#[test]
fn the_waits_view_names_the_missing_nodes_and_time_left() {
    let streams = vec![(
        "a",
        vec![wait(vec![
            on("up", &["s1", "s2"], 2, json!({"retVal": true}), None),
            after(60_000, Some(Target::Exit)),
        ])],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("up", "s1", json!({"retVal": true}));
    h.advance_to(20_000);
    let views = h.engine.waits(20_000);
    assert_eq!(views.len(), 1);
    assert!(views[0].triggers[0].contains("[s2]"), "{:?}", views);
    assert!(views[0].triggers[1].contains("40 s"), "{:?}", views);
}

#[test]
fn a_zero_timeout_self_loop_yields_instead_of_hanging() {
    let streams = vec![("spin", vec![wait(vec![after(0, to("spin"))])])];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["spin"]),
        Options::default(),
    );
    assert_eq!(
        h.engine.next_deadline(),
        Some(0),
        "more work is due at once"
    );
    let out = h.engine.interrupt(1);
    h.absorb(out);
    assert_eq!(h.outcome, Some(Outcome::Interrupted));
}

#[test]
fn a_late_reply_to_an_earlier_iteration_of_a_loop_does_not_count_for_the_next() {
    let streams = vec![(
        "loop",
        vec![
            ev("client", "work", Some("done")),
            wait(vec![
                on("done", &["c1"], 1, json!({"retVal": true}), None),
                after(1000, to("loop")),
            ]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["loop"]),
        Options::default(),
    );
    h.advance_to(1000); // no reply in time: the stream starts over and calls `work` again
    let seqs = h.seqs("work");
    assert_eq!(seqs.len(), 2, "{:?}", h.user_methods());
    h.now = 1100;
    h.reply(seqs[0], "done", "c1", json!({"retVal": true})); // the first call's, late
    assert!(
        !h.user_methods().contains(&"after"),
        "a stale reply counted"
    );
    h.reply(seqs[1], "done", "c1", json!({"retVal": true}));
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn a_late_reply_that_reports_a_failure_still_stops_the_run() {
    let streams = vec![(
        "loop",
        vec![
            ev("client", "work", Some("done")),
            wait(vec![
                on("done", &["c1"], 1, json!({"retVal": true}), None),
                after(1000, to("loop")),
            ]),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["loop"]),
        Options::default(),
    );
    h.advance_to(1000);
    let first = h.seqs("work")[0];
    h.reply(first, "done", "c1", json!({"retVal": false}));
    assert!(
        matches!(
            &h.outcome,
            Some(Outcome::Failed {
                kind: FailureKind::Agent,
                ..
            })
        ),
        "{:?}",
        h.outcome
    );
}

#[test]
fn an_agents_own_trigger_without_arguments_satisfies_a_plain_wait() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![on("ready", &[], 1, json!({"retVal": true}), None)]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    // What a node agent sends for an agent's `trigger("ready")`: only the agent's name.
    h.trigger("ready", "c1", json!({"agent": "client"}));
    assert!(h.user_methods().contains(&"after"));
}

#[test]
fn a_trigger_with_arguments_gets_no_implicit_ret_val() {
    let streams = vec![(
        "a",
        vec![
            wait(vec![on("sensed", &[], 1, json!({"retVal": true}), None)]),
            ev("client", "after", None),
        ],
    )];
    let mut h = Harness::new(
        procedure(&one_server(), &agents(), streams, &["a"]),
        Options::default(),
    );
    h.trigger("sensed", "c1", json!({"agent": "client", "result": -1}));
    assert!(!h.user_methods().contains(&"after"));
}

#[test]
fn teardown_waits_only_for_the_nodes_setup_reached() {
    // s2 refuses the run (a node whose policy does not name the user): it never joins,
    // loads nothing and would answer no teardown call either.
    let mut h = Harness::with_silent(
        procedure(&one_server(), &agents(), vec![], &[]),
        Options::default(),
        &["s2"],
    );
    h.trigger(
        magi_proto::RUNTIME_EXCEPTION,
        "s2",
        json!({"agent": "daemon", "func_name": "joinGroup", "error": "refused"}),
    );
    // No agent was loaded anywhere and s2 joined nothing: teardown has nothing to wait
    // for from s2, and ends at once instead of after the load and group timeouts.
    assert!(
        matches!(
            &h.outcome,
            Some(Outcome::Failed {
                kind: FailureKind::Agent,
                ..
            })
        ),
        "{:?} (lines: {:?})",
        h.outcome,
        h.lines.iter().map(|l| &l.text).collect::<Vec<_>>()
    );
    assert!(
        h.methods().contains(&"leaveGroup"),
        "teardown still leaves the groups"
    );
}

#[test]
fn teardown_does_not_wait_for_the_members_of_a_group_its_call_reached_none_of() {
    // c1's dead-man switch fired during a quiet stretch (it left its groups): teardown's
    // unloadAgent to `clients` reaches no node, and nobody will answer it.
    let mut h = Harness::new(
        procedure(
            &one_server(),
            &agents(),
            vec![("main", vec![wait(vec![after(1000, None)])])],
            &["main"],
        ),
        Options::default(),
    );
    h.silent.push("c1".into());
    h.advance_to(1000);
    assert!(h.methods().contains(&"unloadAgent"));
    assert!(
        h.outcome.is_none(),
        "teardown waits for c1's AgentUnloadDone"
    );
    let out = h.engine.on_undeliverable(
        h.now,
        TEARDOWN_STREAM,
        "unloadAgent to group clients",
        "reached no node",
        &Dest::Group("clients".into()),
    );
    h.absorb(out);
    assert_eq!(
        h.outcome,
        Some(Outcome::Success),
        "ended at once, without the teardown timeouts (lines: {:?})",
        h.lines.iter().map(|l| &l.text).collect::<Vec<_>>()
    );
    assert!(
        h.methods().contains(&"leaveGroup"),
        "the groups are still left"
    );
    assert!(!h.has_line(Tag::Warn, "teardown: no"));
}
