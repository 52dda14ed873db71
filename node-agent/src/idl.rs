//! The original MAGI's interface file (`*.idl`), read into our [`Manifest`].
//!
//! A module with an `.idl` and no `magi-agent.json` is an original-style agent: its IDL
//! names the Python file to run (`mainfile`), how the original started it (`execute:
//! thread|pipe|socket`) and, sometimes, its methods. Such a module runs with Python 3 under
//! the `magi` compatibility package shipped with the node agent (`node-agent/python/magi/`):
//! the manifest made here starts `python3 -m magi.original --execute MODE --mainfile FILE`,
//! which gives the agent the original's API over our agent protocol (docs/agents.md,
//! "Original-style agents").
//!
//! ```yaml
//! name: agent101
//! execute: socket
//! mainfile: agent.py
//! inherits: [DispatchAgent]
//! methods:
//!   - {name: testInt, help: adds, args: [a, b]}
//! ```
//!
//! The method list is descriptive, as in the original (most IDLs list none): `magi check`
//! uses it when it is there. When it is, the methods every original agent inherits
//! (`setConfiguration`, `confirmConfiguration`, `stop`, and those of the base classes named
//! in `inherits`) are added to it.

use std::path::{Component, Path};

use serde_json::Value;

use crate::manifest::{ArgSpec, Manifest, ManifestError, MethodSpec};

/// The largest IDL file read; a bigger one is refused (real ones are a few hundred bytes).
pub const MAX_IDL_BYTES: u64 = 64 * 1024;

/// The Python module of the compatibility package that runs an original-style agent.
pub const ORIGINAL_RUNNER: &str = "magi.original";

/// The original's ways of starting an agent (all run the same way here).
const EXECUTE_MODES: &[&str] = &["thread", "pipe", "socket"];

/// Methods the original's base classes give an agent: (class, method, takes any argument).
const INHERITED: &[(&str, &str, bool)] = &[
    ("Agent", "setConfiguration", true),
    ("Agent", "confirmConfiguration", false),
    ("Agent", "stop", false),
    ("SharedServer", "startServer", false),
    ("SharedServer", "stopServer", false),
    ("TrafficClientAgent", "startClient", false),
    ("TrafficClientAgent", "stopClient", false),
];

/// Reads `<dir>/<idl_file>` and makes the manifest that runs the module with Python 3.
pub fn manifest_from_idl(dir: &Path, idl_file: &str) -> Result<Manifest, ManifestError> {
    let path = dir.join(idl_file);
    let invalid = |reason: String| ManifestError::Invalid {
        path: path.clone(),
        reason,
    };
    let size = std::fs::metadata(&path)
        .map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?
        .len();
    if size > MAX_IDL_BYTES {
        return Err(invalid(format!(
            "the interface file is {size} bytes, more than the {MAX_IDL_BYTES} an IDL may have"
        )));
    }
    let bytes = std::fs::read(&path).map_err(|source| ManifestError::Read {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        invalid(format!(
            "not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let manifest = parse_idl(&text, &path.to_string_lossy(), module_name(dir)).map_err(invalid)?;
    check_mainfile(dir, &manifest).map_err(invalid)?;
    Ok(manifest)
}

/// The directory's name, the module's name when the IDL gives none.
fn module_name(dir: &Path) -> &str {
    dir.file_name().and_then(|n| n.to_str()).unwrap_or("agent")
}

/// Parses IDL text into a manifest (without looking at the files); `path` names it in
/// errors, `default_name` is used when the IDL has no `name`.
pub fn parse_idl(text: &str, path: &str, default_name: &str) -> Result<Manifest, String> {
    let doc = magi_aal::yaml_to_json(path, text)
        .map_err(|e| format!("not a readable IDL (YAML):\n{e}"))?;
    let Value::Object(idl) = doc else {
        return Err("an IDL is a YAML mapping (`name:`, `execute:`, `mainfile:` ...)".into());
    };
    let text_of = |key: &str| -> Result<Option<String>, String> {
        match idl.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!("`{key}` must be text, not {}", kind(other))),
        }
    };
    let execute = text_of("execute")?.ok_or(
        "`execute` is missing: the original needs `thread`, `pipe` or `socket` to start an agent",
    )?;
    if !EXECUTE_MODES.contains(&execute.as_str()) {
        return Err(format!(
            "`execute: {execute}` is not one of the original's ways to start an agent (thread, pipe, socket)"
        ));
    }
    let mainfile = text_of("mainfile")?
        .filter(|m| !m.is_empty())
        .ok_or("`mainfile` is missing: name the agent's Python file (`mainfile: agent.py`)")?;
    let name = text_of("name")?
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_name.to_string());
    let description = text_of("description")?
        .or(text_of("display")?)
        .unwrap_or_default();
    let mut methods = match idl.get("methods").or_else(|| idl.get("method")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().map(method).collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`methods` must be a list, not {}", kind(other))),
    };
    if !methods.is_empty() {
        let inherits: Vec<&str> = match idl.get("inherits") {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        };
        for (class, name, varargs) in INHERITED {
            let applies = *class == "Agent" || inherits.iter().any(|c| c.trim() == *class);
            if applies && !methods.iter().any(|m: &MethodSpec| m.name == *name) {
                methods.push(MethodSpec {
                    name: name.to_string(),
                    help: format!("inherited from the original's {class}"),
                    args: Vec::new(),
                    varargs: *varargs,
                });
            }
        }
    }
    // Built through serde, so that fields the manifest gains later take their defaults.
    let manifest: Manifest = serde_json::from_value(serde_json::json!({
        "name": name,
        "description": description,
        "command": ["python3", "-m", ORIGINAL_RUNNER, "--execute", execute, "--mainfile", mainfile],
        "methods": methods,
    }))
    .map_err(|e| format!("cannot make a manifest of the IDL: {e}"))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = manifest.methods.iter().find(|m| !seen.insert(&m.name)) {
        return Err(format!("method `{}` is listed twice", twice.name));
    }
    Ok(manifest)
}

/// One entry of the IDL's method list: `{name, help, args}`, where `args` is a list of
/// names or of `{name, type, help}`, or a mapping (`args: {}`).
fn method(entry: &Value) -> Result<MethodSpec, String> {
    let Value::Object(m) = entry else {
        return Err(format!(
            "a method must be a mapping with `name`, not {}",
            kind(entry)
        ));
    };
    let name = match m.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err("a method has no `name`".into()),
    };
    let help = m
        .get("help")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let arg = |n: &str, v: Option<&serde_json::Map<String, Value>>| ArgSpec {
        name: n.to_string(),
        kind: v
            .and_then(|v| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        required: false,
        help: v
            .and_then(|v| v.get("help"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let args = match m.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map.keys().map(|k| arg(k, None)).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| match a {
                Value::String(s) => Ok(arg(s.trim(), None)),
                Value::Object(o) => match o.get("name").and_then(Value::as_str) {
                    Some(n) => Ok(arg(n.trim(), Some(o))),
                    None => Err(format!("an argument of method `{name}` has no `name`")),
                },
                other => Err(format!(
                    "an argument of method `{name}` is {}, not a name",
                    kind(other)
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`args` of method `{name}` must be a list, not {}",
                kind(other)
            ))
        }
    };
    Ok(MethodSpec {
        name,
        help,
        args,
        varargs: false,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The mainfile must be a Python file inside the module.
fn check_mainfile(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let mainfile = manifest.command.last().map(String::as_str).unwrap_or("");
    let relative = Path::new(mainfile);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`mainfile: {mainfile}` is outside the module: it must be a path inside it, without `..`"
        ));
    }
    let path = dir.join(relative);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("`mainfile: {mainfile}` is not a regular file")),
        Err(_) => {
            return Err(format!(
                "`mainfile: {mainfile}` does not exist in the module"
            ))
        }
    }
    if !mainfile.ends_with(".py") && !has_python_shebang(&path) {
        return Err(format!(
            "`mainfile: {mainfile}` is not a Python file: an original agent in another language \
             (a C agent of magiCLib, say) speaks the original's wire protocol, which MAGI-rs does \
             not; give the module a magi-agent.json and a program speaking the agent protocol"
        ));
    }
    Ok(())
}

fn has_python_shebang(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 128];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let first = head[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
    first.starts_with(b"#!") && first.windows(6).any(|w| w == b"python")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        parse_idl(text, "m/agent.idl", "m")
    }

    #[test]
    fn an_idl_becomes_a_manifest_running_the_mainfile_with_python3() {
        let m = parse(
            "name: agent101\nexecute: socket \nmainfile: agent.py\ninherits:\n   - DispatchAgent\n",
        )
        .unwrap();
        assert_eq!(m.name, "agent101");
        assert_eq!(
            m.command,
            [
                "python3",
                "-m",
                "magi.original",
                "--execute",
                "socket",
                "--mainfile",
                "agent.py"
            ]
        );
        // No method list: nothing is known, nothing is added.
        assert!(m.methods.is_empty());
    }

    #[test]
    fn listed_methods_take_their_args_and_the_inherited_ones_are_added() {
        let m = parse(
            "execute: thread\nmainfile: l.py\ninherits: [SharedServer]\nmethods:\n  - name: link_up\n    args: [linkName, timing]\n  - name: go\n    args: {}\n  - name: typed\n    args: [{name: n, type: int, help: count}]\n",
        )
        .unwrap();
        assert_eq!(m.name, "m");
        let up = m.method("link_up").unwrap();
        let names: Vec<_> = up.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["linkName", "timing"]);
        assert_eq!(m.method("typed").unwrap().args[0].kind, "int");
        assert!(m.method("setConfiguration").unwrap().varargs);
        assert!(m.method("startServer").is_some());
        assert!(m.method("startClient").is_none());
    }

    #[test]
    fn the_singular_method_key_of_some_idls_is_read_too() {
        let m = parse(
            "execute: thread\nmainfile: n.py\nmethod:\n  - name: startCollection\n    args: { }\n",
        )
        .unwrap();
        assert!(m.method("startCollection").is_some());
    }

    #[test]
    fn bad_idls_are_refused_with_the_reason() {
        let cases = [
            ("mainfile: a.py\n", "`execute` is missing"),
            ("execute: fork\nmainfile: a.py\n", "`execute: fork`"),
            ("execute: thread\n", "`mainfile` is missing"),
            ("- just\n- a list\n", "a YAML mapping"),
            ("execute: [thread\n", "not a readable IDL"),
            (
                "execute: thread\nmainfile: a.py\nmethods: 3\n",
                "must be a list",
            ),
            (
                "execute: thread\nmainfile: a.py\nmethods: [{help: x}]\n",
                "has no `name`",
            ),
            (
                "execute: thread\nmainfile: a.py\nmethods: [{name: a}, {name: a}]\n",
                "listed twice",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    /// A module directory holding `agent.idl` with `text` and the given files.
    fn module(text: &[u8], files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.idl"), text).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    fn refusal(dir: &tempfile::TempDir) -> String {
        manifest_from_idl(dir.path(), "agent.idl")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_mainfile_outside_the_module_is_refused() {
        for mainfile in ["../../etc/passwd", "/etc/passwd", "sub/../../x.py"] {
            let dir = module(
                format!("execute: thread\nmainfile: {mainfile}\n").as_bytes(),
                &[],
            );
            let e = refusal(&dir);
            assert!(e.contains("is outside the module"), "{mainfile}: {e}");
        }
    }

    #[test]
    fn a_missing_or_non_python_mainfile_is_refused() {
        let dir = module(b"execute: thread\nmainfile: agent.py\n", &[]);
        assert!(refusal(&dir).contains("does not exist in the module"));
        let dir = module(
            b"execute: socket\nmainfile: test\ncompileCmd: make all\n",
            &[("test", "\x7fELF")],
        );
        assert!(refusal(&dir).contains("is not a Python file"));
        let dir = module(
            b"execute: pipe\nmainfile: run\n",
            &[("run", "#!/usr/bin/env python3\n")],
        );
        assert!(manifest_from_idl(dir.path(), "agent.idl").is_ok());
    }

    #[test]
    fn a_huge_or_binary_idl_is_refused_before_it_is_parsed() {
        let huge = vec![b'#'; MAX_IDL_BYTES as usize + 1];
        let e = refusal(&module(&huge, &[]));
        assert!(e.contains("more than the 65536 an IDL may have"), "{e}");
        let e = refusal(&module(&[0xff, 0xfe, 0x00, 0x12], &[]));
        assert!(e.contains("not UTF-8"), "{e}");
        let e = refusal(&module(b"{{{{ :: ]]", &[]));
        assert!(
            e.contains("not a readable IDL") && e.contains("agent.idl"),
            "{e}"
        );
    }
}
