//! The Python helper (`magi_agent.py`) that lets a researcher write an agent in a few
//! lines: shipped inside the node agent and written where agents' `PYTHONPATH` finds it.

use std::io;
use std::path::{Path, PathBuf};

use super::PYTHON_HELPER_FILE;

/// The source of the Python helper module (`magi_agent.py`).
pub fn python_helper_source() -> &'static str {
    include_str!("../../python/magi_agent.py")
}

/// Writes the Python helper as `<dir>/magi_agent.py` (atomically, only if it differs) and
/// returns `dir`, the directory to put on `PYTHONPATH`.
pub fn write_python_helper(dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(PYTHON_HELPER_FILE);
    let source = python_helper_source();
    if std::fs::read(&path).ok().as_deref() == Some(source.as_bytes()) {
        return Ok(dir.to_path_buf());
    }
    // Unique per call: several node agents in one process may write at the same time.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{PYTHON_HELPER_FILE}.{}.{n}.tmp",
        std::process::id()
    ));
    std::fs::write(&tmp, source)?;
    std::fs::rename(&tmp, &path)?;
    Ok(dir.to_path_buf())
}
