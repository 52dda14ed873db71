//! What the testbed asks of the machine: `ip` and `tc` batches, sysctls inside a
//! namespace, the host's routes, and the processes living in a namespace.
//!
//! Everything is done with iproute2 in batch mode (`ip -b -`, `tc -b -`: one process per
//! namespace rather than one per command) and, for sysctls, from a short-lived thread that
//! has joined the namespace with setns(2), so a 56-node testbed is built in well under a
//! second and a 1,000-node one in seconds.

use std::collections::HashSet;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::TestbedError;
use crate::plan::Net;

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where `program` is installed: on `PATH`, else in the sbin directories a non-login
/// `PATH` may lack.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Runs `program args... -b -` (iproute2's batch mode) with `lines` on stdin, in the
/// calling thread's namespace; a failure names the line that failed.
pub fn batch(program: &str, args: &[&str], lines: &[String]) -> Result<(), TestbedError> {
    if lines.is_empty() {
        return Ok(());
    }
    let args: Vec<&str> = args.iter().copied().chain(["-b", "-"]).collect();
    run_tool(program, &args, lines)
}

/// Runs `program args` with `lines` on stdin, in the calling thread's namespace; when it
/// fails, says which input line failed if the tool tells (`Command failed -:N`).
pub fn run_tool(program: &str, args: &[&str], lines: &[String]) -> Result<(), TestbedError> {
    let tool_error = |message: String| TestbedError::Tool {
        program: program.into(),
        message,
    };
    let mut child = tool(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tool_error(format!(
                "cannot run it ({e}); install iproute2 and nftables"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        // A tool that fails early closes its stdin; the exit status tells what happened.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| tool_error(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Command failed -:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .and_then(|n| lines.get(n.wrapping_sub(1)));
    let command = format!("{program} {}", args.join(" "));
    Err(tool_error(match failed {
        Some(line) => format!("`{command}` failed on `{line}`: {}", first_error(&stderr)),
        None => format!("`{command}` failed: {}", first_error(&stderr)),
    }))
}

/// A command for a tool that must not outlive us: killed with the builder (kill -9 of
/// `magi testbed up`), it would go on making namespaces after `down` has looked for them.
fn tool(program: &str) -> Command {
    let mut command = Command::new(program);
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated after fork.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: do not run at all.
            if libc::getppid() == 1 {
                return Err(io::Error::other("the testbed builder is gone"));
            }
            Ok(())
        });
    }
    command
}

fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| !l.starts_with("Command failed"))
        .unwrap_or("(no message)")
        .trim()
        .to_string()
}

/// Runs `f` on a thread of its own that has joined namespace `ns`: threads have their own
/// network namespace, and what the thread starts (`ip`, `tc`, `nft`) is born in it. This
/// is much cheaper than `ip -n`, which copies the mount table (one mount per namespace)
/// for every command.
pub fn in_namespace<T: Send>(
    ns: &str,
    f: impl FnOnce() -> Result<T, TestbedError> + Send,
) -> Result<T, TestbedError> {
    let path = Path::new(NETNS_DIR).join(ns);
    let ns_error = |message: String| TestbedError::Tool {
        program: "setns".into(),
        message: format!("namespace {ns}: {message}"),
    };
    let file = std::fs::File::open(&path).map_err(|e| ns_error(e.to_string()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: setns on a valid namespace fd changes only this (scoped) thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(ns_error(io::Error::last_os_error().to_string()));
                }
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(ns_error("the namespace thread panicked".into())))
    })
}

/// Writes sysctls (`/proc/sys/...` path, value) in the calling thread's namespace.
pub fn write_sysctls(settings: &[(&str, &str)]) -> Result<(), TestbedError> {
    for (path, value) in settings {
        std::fs::write(path, value).map_err(|e| TestbedError::Tool {
            program: "sysctl".into(),
            message: format!("{path}: {e}"),
        })?;
    }
    Ok(())
}

/// The networks the host routes to, in every routing table (local addresses included),
/// but the control networks of testbeds (on interfaces named `mgc...`): they are ours, and
/// each testbed's is kept apart from the others' by [`crate::control::Control::plan`].
pub fn host_networks() -> Result<Vec<Net>, TestbedError> {
    let out = Command::new("ip")
        .args(["-j", "-4", "route", "show", "table", "all"])
        .output()
        .map_err(|e| TestbedError::Tool {
            program: "ip".into(),
            message: format!("cannot list the host's routes: {e}"),
        })?;
    let routes: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).map_err(|e| TestbedError::Tool {
            program: "ip".into(),
            message: format!("unexpected `ip -j route` output: {e}"),
        })?;
    Ok(routes
        .iter()
        .filter(|r| {
            !r.get("dev")
                .and_then(|d| d.as_str())
                .is_some_and(|d| d.starts_with(crate::control::HOST_PREFIX))
        })
        .filter_map(|r| r.get("dst")?.as_str()?.parse::<Net>().ok())
        .collect())
}

/// The namespaces that exist whose names start with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Kills (SIGKILL) every process living in one of `namespaces`; returns how many.
pub fn kill_processes_in(namespaces: &[String]) -> usize {
    let inodes: HashSet<u64> = namespaces
        .iter()
        .filter_map(|ns| std::fs::metadata(Path::new(NETNS_DIR).join(ns)).ok())
        .map(|m| m.ino())
        .collect();
    if inodes.is_empty() {
        return 0;
    }
    let mut killed = Vec::new();
    for _ in 0..50 {
        let living = processes_in(&inodes);
        if living.is_empty() {
            break;
        }
        for pid in &living {
            // SAFETY: kill(2) with a pid read from /proc; at worst the process is gone.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            if !killed.contains(pid) {
                killed.push(*pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed.len()
}

fn processes_in(inodes: &HashSet<u64>) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: libc::pid_t = e.ok()?.file_name().to_str()?.parse().ok()?;
            let ino = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?.ino();
            inodes.contains(&ino).then_some(pid)
        })
        .collect()
}
