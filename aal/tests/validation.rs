//! The AAL rules, one behaviour per test: what the procedure becomes, and what is reported
//! where. (Over 600 lines because the rules are many: each test is short and stands alone.)

use magi_aal::{
    check, check_str, source, AgentSource, Checked, Diagnostic, Entry, Procedure, Target, Trigger,
};
use serde_json::json;

/// Groups `servers` (3 nodes) and `clients` (2), agents `srv` and `cli` that emit
/// `started`/`stopped`, and the given streams (with `streamstarts: [main]`).
fn aal(streams: &str) -> String {
    format!(
        "groups:\n  servers: [s1, s2, s3]\n  clients: [c1, c2]\n\
         agents:\n  srv: {{group: servers, path: /m/srv.tar.gz, execargs: {{}}}}\n  \
         cli: {{group: clients, path: /m/cli.tar.gz, execargs: []}}\n\
         streamstarts: [main]\neventstreams:\n  main:\n\
         \x20   - {{type: event, agent: srv, method: start, args: {{}}, trigger: started}}\n\
         \x20   - {{type: event, agent: cli, method: stop, args: {{}}, trigger: stopped}}\n{streams}"
    )
}

fn checked(text: &str) -> Checked {
    check_str("t.aal", text)
}

/// The procedure, which must be valid.
fn valid(text: &str) -> Procedure {
    let c = checked(text);
    assert!(
        c.is_ok(),
        "expected a valid procedure, got:\n{}",
        c.render(false)
    );
    c.procedure.expect("valid")
}

/// The one diagnostic whose message contains `needle`.
fn find<'a>(c: &'a Checked, needle: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = c
        .diagnostics
        .iter()
        .filter(|d| d.message.contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one diagnostic with {needle:?} expected, got:\n{}",
        c.render(false)
    );
    found[0]
}

/// The triggers of the `n`th entry (a wait) of stream `main`.
fn wait(p: &Procedure, n: usize) -> Vec<Trigger> {
    match &p.stream("main").expect("main").entries[n] {
        Entry::Wait(w) => w.triggers.clone(),
        other => panic!("entry {n} is not a wait: {other:?}"),
    }
}

fn event_trigger(t: &Trigger) -> &magi_aal::EventTrigger {
    match t {
        Trigger::Event(e) => e,
        other => panic!("not an event trigger: {other:?}"),
    }
}

// --- which nodes a wait needs (spec §1.5) ---

#[test]
fn a_wait_needs_every_node_of_the_emitting_agents_group() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {event: started} ]}\n",
    ));
    let e = wait(&p, 2);
    let e = event_trigger(&e[0]);
    assert_eq!(e.nodes, ["s1", "s2", "s3"]);
    assert_eq!(e.count, 3);
}

#[test]
fn a_bare_event_trigger_matches_ret_val_true() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {event: started} ]}\n",
    ));
    assert_eq!(
        event_trigger(&wait(&p, 2)[0]).args,
        json!({"retVal": true}).as_object().cloned().unwrap()
    );
}

#[test]
fn extra_keys_are_match_arguments_and_replace_the_implicit_ret_val() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {event: started, result: -1, target: exit} ]}\n",
    ));
    let e = wait(&p, 2);
    let e = event_trigger(&e[0]);
    assert_eq!(
        serde_json::Value::Object(e.args.clone()),
        json!({"result": -1})
    );
    assert_eq!(e.target, Some(Target::Exit));
}

#[test]
fn the_trigger_agent_key_selects_the_nodes_and_stays_a_match_argument() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {event: started, agent: cli} ]}\n",
    ));
    let e = wait(&p, 2);
    let e = event_trigger(&e[0]);
    assert_eq!(e.nodes, ["c1", "c2"]);
    assert_eq!(
        serde_json::Value::Object(e.args.clone()),
        json!({"agent": "cli"})
    );
}

#[test]
fn explicit_nodes_win_as_a_list_or_a_comma_string_and_count_follows_them() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {event: started, nodes: [s2]} ]}\n\
         \x20   - {type: trigger, triggers: [ {event: started, nodes: 's1, s3'} ]}\n\
         \x20   - {type: trigger, triggers: [ {event: started, count: 2} ]}\n",
    ));
    assert_eq!(event_trigger(&wait(&p, 2)[0]).nodes, ["s2"]);
    let e = wait(&p, 3);
    assert_eq!(event_trigger(&e[0]).nodes, ["s1", "s3"]);
    assert_eq!(event_trigger(&e[0]).count, 2);
    let e = wait(&p, 4);
    assert_eq!(
        (event_trigger(&e[0]).nodes.len(), event_trigger(&e[0]).count),
        (3, 2)
    );
}

#[test]
fn the_first_emitting_agent_decides_and_a_second_emitter_is_reported() {
    let c = checked(&aal(
        "    - {type: event, agent: cli, method: again, args: {}, trigger: started}\n\
         \x20   - {type: trigger, triggers: [ {event: started} ]}\n",
    ));
    assert!(c.is_ok());
    let d = find(&c, "also by");
    assert!(!d.is_error());
    assert_eq!(
        event_trigger(&wait(c.procedure.as_ref().unwrap(), 3)[0]).nodes,
        ["s1", "s2", "s3"]
    );
}

#[test]
fn a_trigger_nothing_emits_needs_one_report_from_any_node_and_warns_with_did_you_mean() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {event: Started} ]}\n",
    ));
    assert!(c.is_ok(), "a warning, not an error");
    let d = find(&c, "nothing in the procedure emits the trigger `Started`");
    assert!(!d.is_error());
    assert_eq!((d.span.line, d.span.col), (12, 43));
    assert!(
        d.help
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `started`?"),
        "{d:?}"
    );
    let e = wait(c.procedure.as_ref().unwrap(), 2);
    assert_eq!(
        (event_trigger(&e[0]).nodes.len(), event_trigger(&e[0]).count),
        (0, 1)
    );
}

#[test]
fn waiting_on_a_system_trigger_is_not_waiting_on_nothing() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {event: AgentLoadDone, agent: srv} ]}\n",
    ));
    assert!(c.is_ok());
    assert!(c.diagnostics.is_empty(), "{}", c.render(false));
}

#[test]
fn event_and_timeout_in_one_mapping_is_an_error_that_shows_the_list_form() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {event: started, timeout: 5000} ]}\n",
    ));
    assert!(!c.is_ok());
    let d = find(&c, "`event` and `timeout` in one trigger");
    assert!(d.is_error());
    assert_eq!(d.span.line, 12);
    let help = d.help.as_deref().unwrap_or("");
    assert!(
        help.contains("[ {event: started}, {timeout: 5000, target: <stream or exit>} ]"),
        "{help}"
    );
}

#[test]
fn a_count_above_the_waited_nodes_can_never_complete() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {event: started, count: 4} ]}\n",
    ));
    assert!(find(&c, "can never be reached").is_error());
}

// --- timeouts and composites ---

#[test]
fn a_trigger_with_only_a_target_is_a_timeout_of_zero() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {target: exit} ]}\n",
    ));
    match &wait(&p, 2)[0] {
        Trigger::Timeout(t) => {
            assert_eq!((t.timeout_ms, t.target.clone()), (0, Some(Target::Exit)))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeouts_are_exact_milliseconds() {
    let p = valid(&aal("    - {type: trigger, triggers: [ {timeout: 1500} ]}\n    - {type: trigger, triggers: [ {timeout: 999.6} ]}\n"));
    let ms = |n| match &wait(&p, n)[0] {
        Trigger::Timeout(t) => t.timeout_ms,
        other => panic!("{other:?}"),
    };
    assert_eq!((ms(2), ms(3)), (1500, 1000));
}

#[test]
fn a_quoted_timeout_is_an_error() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {timeout: '5000'} ]}\n",
    ));
    let d = find(&c, "`timeout` must be a number");
    assert!(d.help.as_deref().unwrap_or("").contains("without quotes"));
}

#[test]
fn a_misspelt_key_in_a_timeout_trigger_warns_with_did_you_mean() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {evnt: started} ]}\n",
    ));
    let d = find(&c, "`evnt` is ignored");
    assert_eq!(d.help.as_deref(), Some("did you mean `event`?"));
}

#[test]
fn and_or_composites_hold_their_children_and_target() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {type: AND, triggers: [ {event: started}, {event: stopped} ], target: exit},\n\
         \x20                                {type: OR, triggers: [ {timeout: 10}, {event: started} ]} ]}\n",
    ));
    let w = wait(&p, 2);
    match (&w[0], &w[1]) {
        (Trigger::All(a), Trigger::Any(o)) => {
            assert_eq!(a.triggers.len(), 2);
            assert_eq!(a.target, Some(Target::Exit));
            assert_eq!(event_trigger(&a.triggers[1]).nodes, ["c1", "c2"]);
            assert!(matches!(o.triggers[0], Trigger::Timeout(_)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_composite_without_triggers_is_an_error() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {type: OR, target: exit} ]}\n",
    ));
    assert!(find(&c, "a `type: OR` trigger without `triggers`").is_error());
}

#[test]
fn a_target_inside_a_composite_is_ignored_with_a_warning() {
    let c = checked(&aal("    - {type: trigger, triggers: [ {type: AND, triggers: [ {event: started, target: exit} ]} ]}\n"));
    assert!(c.is_ok());
    assert!(!find(&c, "inside `type: AND`/`OR` is ignored").is_error());
}

#[test]
fn a_lower_case_composite_type_is_an_error_with_did_you_mean() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {type: and, triggers: [ {event: started} ]} ]}\n",
    ));
    assert!(find(&c, "unknown trigger type `and`; did you mean `AND`?").is_error());
}

// --- targets and streams ---

#[test]
fn an_unknown_target_is_an_error_with_did_you_mean() {
    let c = checked(&aal(
        "    - {type: trigger, triggers: [ {timeout: 1, target: mian} ]}\n",
    ));
    let d = find(&c, "unknown target `mian`; did you mean `main`?");
    assert!(d.is_error());
    assert_eq!((d.span.line, d.span.col), (12, 56));
}

#[test]
fn jumping_to_a_stream_makes_it_run() {
    let p = valid(&aal(
        "    - {type: trigger, triggers: [ {timeout: 1, target: loop} ]}\n  loop:\n    - {type: trigger, triggers: [ {timeout: 1, target: loop} ]}\n",
    ));
    assert_eq!(
        p.streams
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["main", "loop"]
    );
    assert_eq!(
        wait(&p, 2)[0].target(),
        Some(&Target::Stream("loop".into()))
    );
}

#[test]
fn a_stream_that_never_runs_is_reported() {
    let c = checked(&aal(
        "  orphan:\n    - {type: trigger, triggers: [ {timeout: 1} ]}\n",
    ));
    assert!(c.is_ok());
    let d = find(&c, "the stream `orphan` never runs");
    assert_eq!(d.span.line, 12);
}

#[test]
fn streamstarts_missing_or_naming_an_unknown_stream_is_an_error() {
    let text = aal("").replace("streamstarts: [main]\n", "");
    assert!(find(&checked(&text), "no `streamstarts`").is_error());
    let text = aal("").replace("streamstarts: [main]", "streamstarts: [main, mainn]");
    assert!(find(
        &checked(&text),
        "the unknown stream `mainn`; did you mean `main`?"
    )
    .is_error());
}

#[test]
fn an_unknown_entry_type_is_skipped_with_a_warning() {
    let p = valid(&aal("    - {type: comment, text: hello}\n"));
    assert_eq!(p.stream("main").unwrap().entries.len(), 2);
    let c = checked(&aal("    - {type: comment, text: hello}\n"));
    assert!(!find(&c, "unknown entry type `comment`").is_error());
}

#[test]
fn an_event_without_args_is_an_error() {
    let c = checked(&aal("    - {type: event, agent: srv, method: m}\n"));
    let d = find(&c, "an event without `args`");
    assert!(d.help.as_deref().unwrap_or("").contains("args: {}"));
}

#[test]
fn an_event_for_an_unknown_agent_is_an_error_with_did_you_mean() {
    let c = checked(&aal(
        "    - {type: event, agent: svr, method: m, args: {}}\n",
    ));
    assert!(find(&c, "unknown agent `svr`; did you mean `srv`?").is_error());
}

#[test]
fn events_carry_agent_method_args_and_trigger() {
    let p = valid(&aal(
        "    - {type: event, agent: srv, method: go, args: {servers: [a, b], n: 3, rate: '5'}}\n",
    ));
    match &p.stream("main").unwrap().entries[2] {
        Entry::Event(e) => {
            assert_eq!(
                (e.agent.as_str(), e.method.as_str(), e.trigger.as_deref()),
                ("srv", "go", None)
            );
            assert_eq!(
                serde_json::Value::Object(e.args.clone()),
                json!({"servers": ["a", "b"], "n": 3, "rate": "5"})
            );
            assert_eq!(e.span.line, 12);
        }
        other => panic!("{other:?}"),
    }
}

// --- groups and agents ---

#[test]
fn the_daemon_agent_is_implicit_on_every_node() {
    let p = valid(&aal(
        "    - {type: event, agent: __DAEMON__, method: ping, args: {}}\n",
    ));
    let d = p.agent("__DAEMON__").unwrap();
    assert_eq!(
        (d.group.as_str(), d.dock.as_str(), d.is_loadable()),
        ("__ALL__", "daemon", false)
    );
    assert_eq!(p.nodes_of(&d.group), ["s1", "s2", "s3", "c1", "c2"]);
}

#[test]
fn agent_defaults_dock_name_execargs_and_load_timeout() {
    let p = valid(&aal(""));
    let srv = p.agent("srv").unwrap();
    assert_eq!((srv.dock.as_str(), srv.load_timeout_ms), ("srv", 200_000));
    assert!(srv.execargs.is_empty());
    assert!(
        p.agent("cli").unwrap().execargs.is_empty(),
        "`[]` means none"
    );
}

#[test]
fn an_agent_without_path_is_never_loaded_and_its_events_go_to_the_daemon_dock() {
    let text = aal("").replace("agents:\n", "agents:\n  helper: {group: servers}\n");
    let c = checked(&text);
    assert!(c.is_ok());
    let helper = c
        .procedure
        .as_ref()
        .unwrap()
        .agent("helper")
        .unwrap()
        .clone();
    assert_eq!(
        (helper.dock.as_str(), helper.is_loadable()),
        ("daemon", false)
    );
    assert!(!find(&c, "is never loaded").is_error());
}

#[test]
fn an_agent_with_code_and_a_dock_of_its_own_but_no_path_is_loaded_from_its_code() {
    // The original's nodeStats.aal: `dock: nodeStats, code: nodeStats`, no path, `execargs: []`.
    let text = aal("").replace(
        "agents:\n",
        "agents:\n  stats: {group: servers, dock: stats, code: nodeStats, execargs: []}\n  \
         other: {group: servers, dock: daemon, code: nodeStats}\n",
    );
    let p = valid(&text);
    let stats = p.agent("stats").unwrap();
    assert_eq!(stats.source, Some(AgentSource::Path("nodeStats".into())));
    assert_eq!(stats.dock, "stats");
    assert!(p.loadable_agents().any(|a| a.name == "stats"));
    let other = p.agent("other").unwrap();
    assert!(
        !other.is_loadable(),
        "a daemon-docked agent is never loaded"
    );
    let c = checked(&text);
    let warning = find(&c, "is loaded from its `code` `nodeStats`");
    assert!(!warning.is_error());
}

#[test]
fn execargs_must_be_a_mapping_and_are_required_to_load() {
    let text = aal("").replace("execargs: []", "execargs: [1, 2]");
    assert!(find(
        &checked(&text),
        "`execargs` of the agent `cli` must be a mapping"
    )
    .is_error());
    let text = aal("").replace(", execargs: []", "");
    let c = checked(&text);
    let d = find(&c, "but no `execargs`");
    assert!(d.is_error());
    assert_eq!(d.span.line, 6);
}

#[test]
fn an_agents_unknown_group_is_an_error_with_did_you_mean() {
    let text = aal("").replace("group: clients", "group: client");
    assert!(find(
        &checked(&text),
        "unknown group `client`; did you mean `clients`?"
    )
    .is_error());
}

#[test]
fn the_all_group_is_reserved() {
    let text = aal("").replace("clients: [c1, c2]", "__ALL__: [c1, c2]");
    assert!(find(&checked(&text), "`__ALL__` is reserved").is_error());
}

#[test]
fn a_node_listed_twice_in_a_group_counts_once() {
    let p = valid(&aal("").replace("[s1, s2, s3]", "[s1, s2, s1, s3]"));
    assert_eq!(p.group("servers").unwrap().nodes, ["s1", "s2", "s3"]);
}

// --- the document as a whole ---

#[test]
fn unknown_top_level_keys_say_where_they_probably_belong() {
    let text = format!(
        "{}monitor_group: [s1]\nmonitor_agent: {{group: monitor_group, path: /p, execargs: {{}}}}\n\
         monitorstream:\n  - {{type: trigger, triggers: [ {{event: started}} ]}}\nagent:\n  x: {{group: servers}}\n",
        aal("")
    );
    let c = checked(&text);
    assert!(c.is_ok(), "unknown keys are warnings");
    let help = |needle: &str| find(&c, needle).help.clone().unwrap_or_default();
    assert!(help("`monitor_group`").contains("looks like a group"));
    assert!(help("`monitor_group`").contains("move it under `groups:`"));
    assert!(help("`monitor_agent`").contains("move it under `agents:`"));
    assert!(help("`monitorstream`").contains("move it under `eventstreams:`"));
    assert_eq!(help("`agent`"), "did you mean `agents`?");
}

#[test]
fn an_empty_file_or_a_list_is_not_a_procedure() {
    assert!(find(&checked(""), "the procedure is empty").is_error());
    assert!(find(&checked("- a\n"), "an AAL is a YAML mapping, not a list").is_error());
}

#[test]
fn missing_groups_agents_or_eventstreams_are_errors() {
    let c = checked("streamstarts: [x]\n");
    for key in ["groups", "agents", "eventstreams"] {
        assert!(find(&c, &format!("has no `{key}`")).is_error());
    }
}

#[test]
fn a_missing_groups_section_is_reported_once_not_at_every_agent() {
    let text = aal("").replace(
        "groups:\n  servers: [s1, s2, s3]\n  clients: [c1, c2]\n",
        "",
    );
    let c = checked(&text);
    assert_eq!(c.errors(), 1, "{}", c.render(false));
    assert!(find(&c, "has no `groups`").is_error());
}

#[test]
fn anchors_expand_into_args_and_execargs() {
    let text = aal("")
        .replace("servers: [s1, s2, s3]", "servers: &slist [s1, s2, s3]")
        .replace("execargs: []", "execargs: {servers: *slist}");
    let p = valid(&text);
    assert_eq!(
        serde_json::Value::Object(p.agent("cli").unwrap().execargs.clone()),
        json!({"servers": ["s1", "s2", "s3"]})
    );
}

// --- several files ---

#[test]
fn an_anchor_of_one_file_is_usable_in_the_next() {
    let one = "groups:\n  servers: &s [s1]\n";
    let two =
        "agents: {a: {group: servers, path: /p, execargs: {servers: *s}}}\nstreamstarts: [m]\n\
               eventstreams: {m: [ {type: event, agent: a, method: x, args: {}} ]}";
    let c = check(vec![source("one.aal", one), source("two.aal", two)]);
    assert!(c.is_ok(), "{}", c.render(false));
    let p = c.procedure.unwrap();
    assert_eq!(p.agent("a").unwrap().span.file, 1);
    assert_eq!(p.files.len(), 2);
}

#[test]
fn a_later_file_replacing_a_top_level_key_is_reported_with_both_places() {
    let one = aal("");
    let two = "groups:\n  servers: [x1]\n  clients: [y1]\n";
    let c = check(vec![source("one.aal", one), source("two.aal", two)]);
    assert!(c.is_ok());
    let d = find(&c, "`groups` in two.aal replaces the `groups` of one.aal");
    assert_eq!((d.span.file, d.span.line), (1, 1));
    assert!(
        d.notes.iter().any(|n| n.contains("one.aal:1:1")),
        "{:?}",
        d.notes
    );
    assert_eq!(c.procedure.unwrap().group("servers").unwrap().nodes, ["x1"]);
}

// --- YAML syntax ---

#[test]
fn a_key_indented_under_a_key_value_line_is_explained_with_the_fix() {
    let text = "a:\n  - type: event\n    method: start\n      trigger: x\n    args: {}\n";
    let c = checked(text);
    let d = find(&c, "mapping values are not allowed");
    assert_eq!((d.span.line, d.span.col), (4, 14));
    assert_eq!(
        d.help.as_deref(),
        Some("align `trigger:` with `method:` (indent it by 4 spaces, not 6)")
    );
}

#[test]
fn a_tab_in_the_indentation_is_pointed_at() {
    let c = checked("groups:\n  g: [a]\n\tx: [b]\n");
    let d = find(&c, "a tab in the indentation");
    assert_eq!((d.span.line, d.span.col), (3, 1));
}

#[test]
fn an_unclosed_bracket_is_pointed_at_where_it_opens() {
    let c = checked("groups:\n  g: [a, b\nagents: {}\n");
    let d = find(&c, "this `[` is not closed");
    assert_eq!((d.span.line, d.span.col), (2, 6));
}

#[test]
fn an_alias_without_anchor_is_named() {
    let c = checked("groups:\n  g: *nodes\n");
    let d = find(&c, "the alias `*nodes` names no anchor");
    assert_eq!((d.span.line, d.span.col), (2, 6));
}

#[test]
fn a_trailing_tab_is_accepted_with_a_compatibility_warning() {
    let c = checked(&aal("").replace("clients: [c1, c2]", "clients: [c1, c2]\t"));
    assert!(c.is_ok());
    let d = find(&c, "a tab character");
    assert_eq!((d.span.line, d.span.col), (3, 20));
}

#[test]
fn duplicate_keys_warn_and_the_later_one_wins() {
    let c = checked(&aal("").replace(
        "  clients: [c1, c2]\n",
        "  clients: [c1, c2]\n  clients: [c3]\n",
    ));
    assert!(c.is_ok());
    assert!(!find(&c, "duplicate key `clients`: the later one wins").is_error());
    assert_eq!(c.procedure.unwrap().group("clients").unwrap().nodes, ["c3"]);
}

#[test]
fn yaml_1_1_scalars_are_typed_as_the_original_read_them() {
    let p = valid(&aal("    - {type: event, agent: srv, method: m, args: {a: yes, b: 'yes', c: 010, d: 1e3, e: ~, f: 1.5}}\n"));
    match &p.stream("main").unwrap().entries[2] {
        Entry::Event(e) => assert_eq!(
            serde_json::Value::Object(e.args.clone()),
            json!({"a": true, "b": "yes", "c": 8, "d": "1e3", "e": null, "f": 1.5})
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn diagnostics_are_sorted_by_place() {
    let c = checked(&aal("    - {type: event, agent: nope, method: m, args: {}}\n    - {type: trigger, triggers: [ {target: nowhere} ]}\n"));
    let lines: Vec<u32> = c.diagnostics.iter().map(|d| d.span.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert_eq!(c.errors(), 2);
}

#[test]
fn an_empty_args_list_means_no_arguments_with_a_warning() {
    let text = aal("").replace("method: start, args: {}", "method: start, args: []");
    let c = checked(&text);
    let d = find(&c, "`args: []` is read as no arguments");
    assert!(!d.is_error());
    assert_eq!(d.span.line, 10);
    let p = c.procedure.expect("valid with a warning");
    let Entry::Event(e) = &p.streams[0].entries[0] else {
        panic!("an event")
    };
    assert!(e.args.is_empty());
    let text = aal("").replace("method: start, args: {}", "method: start, args: [1]");
    assert!(find(&checked(&text), "`args` must be a mapping").is_error());
}
