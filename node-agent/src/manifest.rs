//! The agent manifest, `magi-agent.json`, at the root of every agent module.
//!
//! It says what the agent is (name, description), how to start it (`command`, run with the
//! unpacked module directory as working directory) and which methods it offers. It replaces
//! the original's IDL file (magi-spec §4.4); the methods are descriptive, as the IDL's were,
//! and serve help texts and early checks. A module with an original IDL and no manifest
//! gets one made from the IDL ([`crate::idl`]).
//!
//! ```json
//! {"name": "http_client", "description": "HTTP traffic generator",
//!  "command": ["python3", "agent.py"],
//!  "methods": [{"name": "startClient", "help": "start fetching", "args": []}]}
//! ```

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest's file name, at the root of a module.
pub const MANIFEST_FILE: &str = "magi-agent.json";

/// Where the manifest format is documented, for error messages.
pub const MANIFEST_DOCS: &str = "docs/agent-protocol.md";

/// A parsed and validated `magi-agent.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The module's name (`http_client`).
    pub name: String,
    /// One line for a person.
    #[serde(default)]
    pub description: String,
    /// Program and arguments; run with the module directory as working directory.
    pub command: Vec<String>,
    /// The methods the agent offers (descriptive, like the original IDL's).
    #[serde(default)]
    pub methods: Vec<MethodSpec>,
    /// Linux capabilities the agent needs (`net_admin`, `net_bind_service`, `net_raw`...):
    /// a `magi-node` running as root gives them only when its policy grants them
    /// (`--grant`), and refuses the load otherwise; see [`crate::privilege`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// One method an agent offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSpec {
    /// The method's name, as an AAL event names it.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub help: String,
    /// Its keyword arguments.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// Takes keyword arguments beyond those listed (Python's `**kwargs`): a checker does
    /// not flag unknown ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub varargs: bool,
}

/// One keyword argument of a method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgSpec {
    /// The argument's name.
    pub name: String,
    /// Its type, as the original IDL spelled it (`int`, `str`, `strlist`, ...); informative.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Whether a call must give it (default true, as in the IDL).
    #[serde(default = "yes")]
    pub required: bool,
    /// What it means.
    #[serde(default)]
    pub help: String,
}

fn yes() -> bool {
    true
}

/// Why a module's manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The module has no manifest (and no original IDL either).
    #[error(
        "{dir} has no {MANIFEST_FILE} (nor an original MAGI `.idl`); an agent module needs one \
         at its root (see {MANIFEST_DOCS})"
    )]
    Missing {
        /// The module directory.
        dir: PathBuf,
    },
    /// The manifest could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The manifest is not valid JSON or does not have the manifest's shape.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        /// The manifest's path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The manifest parses but is unusable.
    #[error("{path}: {reason}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The command's program was found nowhere.
    #[error("agent command `{program}` not found; looked in: {}", DisplayPaths(.searched))]
    CommandNotFound {
        /// The program word from the manifest.
        program: String,
        /// Where it was looked for, in order.
        searched: Vec<PathBuf>,
    },
}

/// Displays a list of paths separated by commas.
struct DisplayPaths<'a>(&'a [PathBuf]);

impl fmt::Display for DisplayPaths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(nowhere)");
        }
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", p.display())?;
        }
        Ok(())
    }
}

impl Manifest {
    /// Reads and validates `<dir>/magi-agent.json`.
    pub fn read(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // An original-style module: its IDL says what to run (crate::idl).
                return match find_idl(dir) {
                    Some(idl) => crate::idl::manifest_from_idl(dir, &idl),
                    None => Err(ManifestError::Missing {
                        dir: dir.to_path_buf(),
                    }),
                };
            }
            Err(source) => return Err(ManifestError::Read { path, source }),
        };
        Manifest::parse(&text, &path)
    }

    /// Parses and validates manifest text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| ManifestError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("`name` is empty".into()));
        }
        match self.command.first() {
            None => {
                return Err(invalid(
                    "`command` is empty; give the program and its arguments, e.g. [\"python3\", \"agent.py\"]"
                        .into(),
                ))
            }
            Some(program) if program.trim().is_empty() => {
                return Err(invalid("`command` starts with an empty program name".into()))
            }
            Some(_) => {}
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(invalid("`command` contains a NUL character".into()));
        }
        for cap in &self.capabilities {
            let normal = crate::privilege::parse_capability(cap)
                .map_err(|e| invalid(format!("`capabilities`: {e}")))?;
            if &normal != cap {
                return Err(invalid(format!(
                    "`capabilities`: write {cap:?} as {normal:?}"
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for method in &self.methods {
            if method.name.trim().is_empty() {
                return Err(invalid("a method has an empty `name`".into()));
            }
            if !seen.insert(method.name.as_str()) {
                return Err(invalid(format!("method `{}` is listed twice", method.name)));
            }
        }
        Ok(())
    }

    /// The method called `name`, if the manifest lists it.
    pub fn method(&self, name: &str) -> Option<&MethodSpec> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// Resolves the command's program for a module unpacked in `dir`; see [`resolve_program`].
    pub fn program(&self, dir: &Path) -> Result<PathBuf, ManifestError> {
        self.program_on(dir, std::env::var_os("PATH"))
    }

    /// [`Manifest::program`] with another `PATH` (a confined agent's).
    pub fn program_on(&self, dir: &Path, path: Option<OsString>) -> Result<PathBuf, ManifestError> {
        // validate() guarantees a first word; an unvalidated manifest gets a clear error.
        let word = self.command.first().map(String::as_str).unwrap_or("");
        resolve_program(dir, word, exe_dir().as_deref(), path)
    }

    /// The command's arguments after the program.
    pub fn args(&self) -> &[String] {
        self.command.get(1..).unwrap_or(&[])
    }
}

/// The directory of the running executable, where cargo puts `magi-node` and the standard
/// agents' binaries.
pub fn exe_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent().map(Path::to_path_buf)
}

/// Finds the program of an agent command.
///
/// A word with a `/` is a path, relative to the module directory `dir` unless absolute. A
/// bare word is looked up in the module directory, then in `exe_dir` (next to the running
/// executable), then in `path` (the `PATH` value).
pub fn resolve_program(
    dir: &Path,
    word: &str,
    exe_dir: Option<&Path>,
    path: Option<OsString>,
) -> Result<PathBuf, ManifestError> {
    let not_found = |searched| ManifestError::CommandNotFound {
        program: word.to_string(),
        searched,
    };
    if word.is_empty() {
        return Err(not_found(Vec::new()));
    }
    if word.contains('/') {
        let candidate = dir.join(word);
        return if candidate.is_file() {
            Ok(candidate)
        } else {
            Err(not_found(vec![candidate]))
        };
    }
    let mut searched = vec![dir.to_path_buf()];
    // In the module itself, any regular file will do: a missing execute bit gives a clear
    // "permission denied" at spawn, which is more useful than "not found".
    let candidate = dir.join(word);
    if candidate.is_file() {
        return Ok(candidate);
    }
    let mut others: Vec<PathBuf> = exe_dir.map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = path {
        others.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    for d in others {
        let candidate = d.join(word);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(d);
    }
    Err(not_found(searched))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first `*.idl` file at the root of `dir`, by name, if any.
pub fn find_idl(dir: &Path) -> Option<String> {
    let mut idls: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".idl"))
        .collect();
    idls.sort();
    idls.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("m/magi-agent.json"))
    }

    #[test]
    fn a_full_manifest_parses_with_defaults() {
        let m = parse(
            r#"{"name":"t","command":["python3","a.py"],
                "methods":[{"name":"go","args":[{"name":"n","type":"int"}]}]}"#,
        )
        .unwrap();
        assert_eq!(m.args(), ["a.py"]);
        let go = m.method("go").unwrap();
        assert!(go.args[0].required);
        assert_eq!(go.args[0].kind, "int");
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let e = parse("{\n  \"name\": \"t\",\n  \"command\": [\"x\",]\n}").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("m/magi-agent.json:3:"), "{text}");
    }

    #[test]
    fn empty_command_is_refused() {
        let e = parse(r#"{"name":"t","command":[]}"#).unwrap_err();
        assert!(e.to_string().contains("`command` is empty"), "{e}");
        let e = parse(r#"{"name":"t","command":[""]}"#).unwrap_err();
        assert!(e.to_string().contains("empty program"), "{e}");
    }

    #[test]
    fn a_missing_manifest_next_to_an_idl_reads_the_idl() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.py"), "").unwrap();
        std::fs::write(
            dir.path().join("http_client.idl"),
            "name: x\nexecute: thread\nmainfile: agent.py\n",
        )
        .unwrap();
        let m = Manifest::read(dir.path()).unwrap();
        assert_eq!((m.name.as_str(), m.command[0].as_str()), ("x", "python3"));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Manifest::read(empty.path()).unwrap_err(),
            ManifestError::Missing { .. }
        ));
    }

    #[test]
    fn bare_words_are_found_in_the_module_then_next_to_the_executable_then_on_path() {
        let module = tempfile::tempdir().unwrap();
        let exe = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let make = |d: &Path, name: &str| {
            let p = d.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let on_path = make(bin.path(), "tool");
        let path = Some(bin.path().as_os_str().to_owned());
        let found = resolve_program(module.path(), "tool", Some(exe.path()), path.clone());
        assert_eq!(found.unwrap(), on_path);
        let beside = make(exe.path(), "tool");
        let found = resolve_program(module.path(), "tool", Some(exe.path()), path.clone());
        assert_eq!(found.unwrap(), beside);
        let inside = make(module.path(), "tool");
        let found = resolve_program(module.path(), "tool", Some(exe.path()), path.clone());
        assert_eq!(found.unwrap(), inside);
        let e = resolve_program(module.path(), "nope", Some(exe.path()), path).unwrap_err();
        assert!(
            e.to_string().contains(&bin.path().display().to_string()),
            "{e}"
        );
        let e = resolve_program(module.path(), "sub/tool", None, None).unwrap_err();
        assert!(matches!(e, ManifestError::CommandNotFound { .. }));
    }
}
