//! `magi testbed down`: remove everything a testbed made, from its state file and from the
//! namespaces that exist under its name (so a state file lost or half-written still leaves
//! nothing behind).
//!
//! Processes still living in the namespaces (agents of a run whose orchestrator was killed)
//! are killed first: a namespace with a process in it outlives `ip netns del`. Deleting a
//! namespace deletes its veths, bridges, qdiscs and nftables tables with it.

use std::path::Path;

use crate::error::TestbedError;
use crate::lab::{check_name, Lab, NETNS_ETC};
use crate::system::{batch, is_root, kill_processes_in, namespaces_with_prefix};

/// What `down` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Namespaces deleted.
    pub namespaces: usize,
    /// Processes killed in them.
    pub killed: usize,
}

/// Brings testbed `name` down.
pub fn down(name: &str) -> Result<DownReport, TestbedError> {
    if !is_root() {
        return Err(TestbedError::NotRoot);
    }
    check_name(name)?;
    let prefix = Lab::namespace_prefix(name);
    let state = Lab::state_path(name);
    let mut namespaces = namespaces_with_prefix(&prefix);
    let etc = etc_dirs(&prefix);
    if namespaces.is_empty() && etc.is_empty() && !state.exists() {
        return Err(TestbedError::NotUp(name.to_string()));
    }
    namespaces.sort();
    let killed = kill_processes_in(&namespaces);
    // The host's end of the control network goes with its namespace, but only once the
    // kernel gets round to it: removed here, so that it is gone when `down` returns.
    let host_end = crate::control::host_interface(name);
    if Path::new("/sys/class/net").join(&host_end).exists() {
        batch("ip", &["-force"], &[format!("link del {host_end}")])?;
    }
    // -force: go on past a namespace that vanished meanwhile.
    batch(
        "ip",
        &["-force"],
        &namespaces
            .iter()
            .map(|ns| format!("netns del {ns}"))
            .collect::<Vec<_>>(),
    )?;
    for dir in &etc {
        let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC).join(dir));
    }
    match std::fs::remove_file(&state) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(TestbedError::State {
                path: state.display().to_string(),
                message: e.to_string(),
            })
        }
    }
    let _ = std::fs::remove_file(state.with_extension("json.tmp"));
    Ok(DownReport {
        namespaces: namespaces.len(),
        killed,
    })
}

/// The `/etc/netns` directories of the testbed's namespaces.
fn etc_dirs(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_ETC) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}
