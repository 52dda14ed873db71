//! The Python helper (`magi_agent.py`) that lets a researcher write an agent in a few
//! lines, and the `magi` package that gives original-style agents the original's API:
//! shipped inside the node agent and written where agents' `PYTHONPATH` finds them.

use std::io;
use std::path::{Path, PathBuf};

use super::PYTHON_HELPER_FILE;

/// Every file written to the agents' Python directory: (path in it, source).
const PYTHON_FILES: &[(&str, &str)] = &[
    (
        PYTHON_HELPER_FILE,
        include_str!("../../python/magi_agent.py"),
    ),
    (
        "magi/__init__.py",
        include_str!("../../python/magi/__init__.py"),
    ),
    (
        "magi/_runtime.py",
        include_str!("../../python/magi/_runtime.py"),
    ),
    (
        "magi/original.py",
        include_str!("../../python/magi/original.py"),
    ),
    (
        "magi/messaging/__init__.py",
        include_str!("../../python/magi/messaging/__init__.py"),
    ),
    (
        "magi/messaging/magimessage.py",
        include_str!("../../python/magi/messaging/magimessage.py"),
    ),
    (
        "magi/testbed/__init__.py",
        include_str!("../../python/magi/testbed/__init__.py"),
    ),
    (
        "magi/util/__init__.py",
        include_str!("../../python/magi/util/__init__.py"),
    ),
    (
        "magi/util/agent.py",
        include_str!("../../python/magi/util/agent.py"),
    ),
    (
        "magi/util/calls.py",
        include_str!("../../python/magi/util/calls.py"),
    ),
    (
        "magi/util/config.py",
        include_str!("../../python/magi/util/config.py"),
    ),
    (
        "magi/util/database.py",
        include_str!("../../python/magi/util/database.py"),
    ),
    (
        "magi/util/execl.py",
        include_str!("../../python/magi/util/execl.py"),
    ),
    (
        "magi/util/helpers.py",
        include_str!("../../python/magi/util/helpers.py"),
    ),
    (
        "magi/util/processAgent.py",
        include_str!("../../python/magi/util/processAgent.py"),
    ),
];

/// The source of the Python helper module (`magi_agent.py`).
pub fn python_helper_source() -> &'static str {
    PYTHON_FILES[0].1
}

/// Writes the Python helper as `<dir>/magi_agent.py` and the compatibility package as
/// `<dir>/magi/` (each file atomically, only if it differs; readable by every user, since
/// agents may run as another user than the node agent) and returns `dir`, the directory
/// to put on `PYTHONPATH`.
pub fn write_python_helper(dir: &Path) -> io::Result<PathBuf> {
    for (name, source) in PYTHON_FILES {
        write_if_changed(&dir.join(name), source)?;
    }
    Ok(dir.to_path_buf())
}

fn write_if_changed(path: &Path, source: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    if std::fs::read(path).ok().as_deref() == Some(source.as_bytes()) {
        return Ok(());
    }
    // Unique per call: several node agents in one process may write at the same time.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("file");
    let tmp = parent.join(format!(".{file}.{}.{n}.tmp", std::process::id()));
    std::fs::write(&tmp, source)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}
