//! No input makes the AAL layer panic: random text, YAML-ish text, and the real case-study
//! files mutated the way people break YAML (lines deleted or duplicated, indentation
//! changed, tabs and colons inserted), alone or split into two files. Everything the checker
//! produces is also rendered (diagnostics, plan, DOT, JSON), since rendering slices text too.

use magi_aal::{check, source, Checked};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

static CORPUS: OnceLock<Vec<String>> = OnceLock::new();

/// The shared test data beside the project (`../shared` from the workspace root).
fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Every case-study and conformance AAL, plus a few written here.
fn corpus() -> Vec<String> {
    let mut texts = vec![
        "groups: &g {a: [n1, n2]}\nagents: {x: {group: a, path: /p, execargs: {}}}\n\
         streamstarts: [s]\neventstreams:\n  s:\n    - {type: event, agent: x, method: m, args: {<<: *g}, trigger: t}\n\
         \x20   - {type: trigger, triggers: [{type: AND, triggers: [{event: t}, {timeout: 5}], target: exit}]}\n"
            .to_string(),
    ];
    for dir in ["casestudies", "conformance/aal"] {
        let entries = std::fs::read_dir(shared().join(dir))
            .expect("the shared test data is beside the project");
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "aal") {
                texts.push(std::fs::read_to_string(&path).expect("readable"));
            }
        }
    }
    assert!(texts.len() > 10, "the corpus holds the shared AAL files");
    texts
}

/// Renders everything a checked procedure can be turned into.
fn exercise(checked: &Checked) {
    let _ = checked.render(true);
    for d in &checked.diagnostics {
        let _ = d.to_json(&checked.files);
        assert!(d.span.line >= 1 || d.span == Default::default(), "{d:?}");
    }
    if let Some(p) = &checked.procedure {
        let _ = magi_aal::plan::render(p);
        let _ = magi_aal::dot::render(p);
        let _ = serde_json::to_string(p);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    Indent(usize, i8),
    Insert(usize, usize, char),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), -4i8..5).prop_map(|(l, d)| Mutation::Indent(l, d)),
        (
            any::<usize>(),
            0usize..40,
            prop::sample::select(vec![
                '\t', ':', ' ', '-', '[', ']', '{', '}', '&', '*', '\'', '"', '#', ',', '|', '>',
                '!', '?', '%', '@', 'é', '\u{feff}', '\r'
            ])
        )
            .prop_map(|(l, c, ch)| Mutation::Insert(l, c, ch)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Indent(i, d) => {
                let l = &mut lines[i % n];
                if d >= 0 {
                    *l = format!("{}{l}", " ".repeat(d as usize));
                } else {
                    let strip = l
                        .chars()
                        .take((-d) as usize)
                        .take_while(|c| *c == ' ')
                        .count();
                    *l = l[strip..].to_string();
                }
            }
            Mutation::Insert(i, col, ch) => {
                let l = &mut lines[i % n];
                let at = l.char_indices().nth(col).map(|(b, _)| b).unwrap_or(l.len());
                l.insert(at, ch);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::Truncate(i) => lines.truncate(i % n + 1),
        }
    }
    lines.join("\n")
}

proptest! {
    // 256 cases each by default; `PROPTEST_CASES=100000` for a longer hunt.
    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        exercise(&check(vec![source("random.aal", text)]));
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[ a-z0-9:,\\-\\[\\]{}&*!|>'\"#?%@\\t\\n]{0,300}") {
        exercise(&check(vec![source("yamlish.aal", text)]));
    }

    #[test]
    fn mutated_case_studies_never_panic(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
        split in any::<prop::sample::Index>(),
        two_files in any::<bool>(),
    ) {
        let corpus = CORPUS.get_or_init(corpus);
        let text = mutate(pick.get::<String>(corpus), &mutations);
        let files = if two_files {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let at = split.index(lines.len() + 1);
            vec![source("one.aal", lines[..at].concat()), source("two.aal", lines[at..].concat())]
        } else {
            vec![source("mutated.aal", text)]
        };
        exercise(&check(files));
    }
}

#[test]
fn every_shared_file_checks_without_panic() {
    for text in corpus() {
        exercise(&check(vec![source("x.aal", text)]));
    }
}
