//! What a module says about itself, without running it: its manifest (`magi-agent.json`,
//! or one made from an original `.idl`), for tools such as `magi check` that want to know
//! an agent's methods.

use std::path::Path;

use crate::archive::{AgentSource, ArchiveCache};
use crate::library::ModuleLibrary;
use crate::manifest::Manifest;

/// The manifest of the module at `path` (a directory, or an archive unpacked with the
/// node's safety rules into a temporary directory that is removed afterwards).
pub fn describe(path: &Path) -> Result<Manifest, String> {
    if path.is_dir() {
        return Manifest::read(path).map_err(|e| e.to_string());
    }
    let scratch =
        tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let module = ArchiveCache::new(scratch.path())
        .unpack(&AgentSource::Path(path.to_path_buf()))
        .map_err(|e| e.to_string())?;
    Manifest::read(&module.dir).map_err(|e| e.to_string())
}

/// The manifest of the module an AAL `path:` names, found as `magi run` would find it
/// (as is, else by module name in `library`).
pub fn describe_path(library: &ModuleLibrary, aal_path: &str) -> Result<Manifest, String> {
    let resolved = library.resolve(aal_path).map_err(|e| e.to_string())?;
    describe(&resolved.path)
}
