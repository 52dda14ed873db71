//! The module library: where an AAL's agent `path` is found when it does not exist here.
//!
//! The original's procedures name archives on the testbed's shared file system
//! (`path: /share/magi/modules/http_client/http_client.tar.gz`). So that they run unchanged,
//! a path that does not exist locally resolves by module name in the library directories:
//! the ones configured (an option, then `MAGI_MODULES`, colon-separated), then the project's
//! `agents/modules`, found by walking up from the running executable (which works for
//! cargo's `target/debug`). The module name is the directory containing the file
//! (`.../pktcounters/pktCountersAgent.tar.gz` → `pktcounters`), then the file's stem
//! (`pktCountersAgent`). In a library directory a module is a directory `<name>/` or an
//! archive `<name>.tar.gz`, `<name>.tgz` or `<name>.tar`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable listing library directories, colon-separated.
pub const MODULES_ENV: &str = "MAGI_MODULES";

/// Archive suffixes a module file may have, longest first.
const ARCHIVE_SUFFIXES: &[&str] = &[".tar.gz", ".tgz", ".tar"];

/// The ordered list of directories holding agent modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleLibrary {
    dirs: Vec<PathBuf>,
}

/// A resolved agent path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModule {
    /// The path to load: the given one, or a module in the library.
    pub path: PathBuf,
    /// The module name used, when the library was used.
    pub module: Option<String>,
    /// For a person, when the library was used: what was asked and what is used instead.
    pub note: Option<String>,
}

/// The path neither exists nor names a module of the library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "agent path {path} does not exist here, and no module named {} is in the module library \
     (searched: {}); add a directory with {MODULES_ENV}",
    Names(.names), Dirs(.searched)
)]
pub struct LibraryError {
    /// The path asked for.
    pub path: String,
    /// The module names tried.
    pub names: Vec<String>,
    /// The library directories searched.
    pub searched: Vec<PathBuf>,
}

struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "`{n}`")?;
        }
        if self.0.is_empty() {
            f.write_str("(none: the path has no usable name)")?;
        }
        Ok(())
    }
}

struct Dirs<'a>(&'a [PathBuf]);

impl fmt::Display for Dirs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no library directory is configured");
        }
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", d.display())?;
        }
        Ok(())
    }
}

impl ModuleLibrary {
    /// A library searching exactly `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        ModuleLibrary { dirs }
    }

    /// The standard library: `extra` (from an option), then `MAGI_MODULES`, then the
    /// project's `agents/modules` next to the executable, if found.
    pub fn standard(extra: &[PathBuf]) -> Self {
        let env = std::env::var_os(MODULES_ENV);
        let mut dirs: Vec<PathBuf> = extra.to_vec();
        if let Some(env) = env {
            dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs.extend(project_modules_dir());
        dirs.dedup();
        ModuleLibrary { dirs }
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Resolves an AAL agent path: as is when it exists, else by module name.
    pub fn resolve(&self, path: &str) -> Result<ResolvedModule, LibraryError> {
        let given = Path::new(path);
        if !path.is_empty() && given.exists() {
            return Ok(ResolvedModule {
                path: given.to_path_buf(),
                module: None,
                note: None,
            });
        }
        let names = module_names(given);
        for dir in &self.dirs {
            for name in &names {
                if let Some(found) = find_module(dir, name) {
                    let note = format!(
                        "{path} does not exist here; using module {name} from {}",
                        found.display()
                    );
                    return Ok(ResolvedModule {
                        path: found,
                        module: Some(name.clone()),
                        note: Some(note),
                    });
                }
            }
        }
        Err(LibraryError {
            path: path.to_string(),
            names,
            searched: self.dirs.clone(),
        })
    }
}

/// The names a missing path may stand for: its parent directory's name, then its file stem.
fn module_names(path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    // A bare name or a file at the top of the tree has no meaningful parent.
    if let Some(parent) = parent.filter(|p| !p.is_empty()) {
        names.push(parent.to_string());
    }
    if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
        let stem = ARCHIVE_SUFFIXES
            .iter()
            .find_map(|s| file.strip_suffix(s))
            .unwrap_or(file);
        if !stem.is_empty() && !names.iter().any(|n| n == stem) {
            names.push(stem.to_string());
        }
    }
    // A name must be one plain path component.
    names.retain(|n| n != "." && n != ".." && !n.contains('/'));
    names
}

/// The module `name` in library directory `dir`: a directory or an archive.
fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    let as_dir = dir.join(name);
    if as_dir.is_dir() {
        return Some(as_dir);
    }
    ARCHIVE_SUFFIXES
        .iter()
        .map(|s| dir.join(format!("{name}{s}")))
        .find(|p| p.is_file())
}

/// The project's `agents/modules`, found by walking up from the running executable.
pub fn project_modules_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|d| d.join("agents").join("modules"))
        .find(|d| d.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory_then_the_stem() {
        let n = module_names(Path::new(
            "/share/magi/modules/http_client/http_client.tar.gz",
        ));
        assert_eq!(n, ["http_client"]);
        let n = module_names(Path::new(
            "/share/magi/modules/pktcounters/pktCountersAgent.tar.gz",
        ));
        assert_eq!(n, ["pktcounters", "pktCountersAgent"]);
        assert_eq!(module_names(Path::new("apache")), ["apache"]);
    }

    #[test]
    fn a_missing_path_resolves_in_the_library_with_a_note() {
        let lib = tempfile::tempdir().unwrap();
        std::fs::create_dir(lib.path().join("pktcounters")).unwrap();
        std::fs::write(lib.path().join("http_client.tar.gz"), b"").unwrap();
        let library = ModuleLibrary::new(vec![PathBuf::from("/nonexistent"), lib.path().into()]);
        let r = library
            .resolve("/share/magi/modules/pktcounters/pktCountersAgent.tar.gz")
            .unwrap();
        assert_eq!(r.path, lib.path().join("pktcounters"));
        assert_eq!(r.module.as_deref(), Some("pktcounters"));
        let note = r.note.unwrap();
        assert!(note.starts_with("/share/magi/modules/pktcounters/pktCountersAgent.tar.gz does not exist here; using module pktcounters from "), "{note}");
        let r = library
            .resolve("/share/magi/modules/http_client/http_client.tar.gz")
            .unwrap();
        assert_eq!(r.path, lib.path().join("http_client.tar.gz"));
    }

    #[test]
    fn an_existing_path_is_used_as_is() {
        let here = tempfile::tempdir().unwrap();
        let p = here.path().to_str().unwrap();
        let r = ModuleLibrary::new(vec![]).resolve(p).unwrap();
        assert_eq!((r.path.as_path(), r.note), (here.path(), None));
    }

    #[test]
    fn an_unresolvable_path_lists_the_directories_searched() {
        let library = ModuleLibrary::new(vec!["/a".into(), "/b".into()]);
        let e = library.resolve("/share/x/y.tar.gz").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`x` or `y`") && text.contains("/a, /b"),
            "{text}"
        );
        let e = ModuleLibrary::new(vec![])
            .resolve("/share/x/y.tar.gz")
            .unwrap_err();
        assert!(
            e.to_string().contains("no library directory is configured"),
            "{e}"
        );
    }
}
