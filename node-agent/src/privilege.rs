//! Agents run as an unprivileged user, with only the capabilities their manifest asks for
//! and the node's policy grants.
//!
//! A `magi-node` running as root starts every agent through `setpriv` (util-linux):
//! real and effective user and group of the agent user (`nobody` by default), no
//! supplementary groups, and as inheritable, ambient and bounding capability sets exactly
//! the granted capabilities the manifest names (`"capabilities": ["net_bind_service"]`).
//! The ambient set carries them across `exec`, so a Python agent that runs `nft` gives it
//! `CAP_NET_ADMIN`; the bounding set keeps setuid programs from gaining anything more. The
//! agent's environment is rebuilt from nothing (the node's own may hold broker
//! credentials), and its program is looked up on a system `PATH` it can reach.
//!
//! Why `setpriv` rather than `setuid` in a `pre_exec` hook: agents on a testbed start
//! through `ip netns exec`, which needs root; the drop must come after it, in the chain
//! `ip netns exec NS setpriv ... agent`, and one way serves both cases.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The system directories an agent's program is looked up in (and its `PATH`).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The user agents run as when `magi-node` runs as root and names none.
pub const DEFAULT_AGENT_USER: &str = "nobody";

/// Linux capability names (without `CAP_`), as `capabilities(7)` lists them.
const CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// A capability name as manifests and `--grant` spell it: `net_admin`, `NET_ADMIN` or
/// `CAP_NET_ADMIN`, normalised to `net_admin`.
pub fn parse_capability(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    if CAPABILITIES.contains(&bare) {
        Ok(bare.to_string())
    } else {
        Err(format!(
            "{name:?} is not a Linux capability (e.g. net_admin, net_bind_service, net_raw; see capabilities(7))"
        ))
    }
}

/// A user agents run as, looked up once when the node starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUser {
    /// The name given.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl AgentUser {
    /// Looks a user up by name (or numeric id) in the system's user database.
    pub fn lookup(name: &str) -> Result<AgentUser, String> {
        let c = CString::new(name).map_err(|_| format!("user {name:?} contains a NUL"))?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0u8; 16 * 1024];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`.
        let rc = unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        if rc == 0 && !out.is_null() {
            // SAFETY: `pw_name` points into `buf`, NUL-terminated, when the call succeeded.
            let found = unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy();
            return Ok(AgentUser {
                name: found.into_owned(),
                uid: pwd.pw_uid,
                gid: pwd.pw_gid,
            });
        }
        match name.parse::<u32>() {
            Ok(uid) => Ok(AgentUser {
                name: name.to_string(),
                uid,
                gid: uid,
            }),
            Err(_) => Err(format!(
                "no user {name:?} on this system: create it, or name another with --agent-user"
            )),
        }
    }
}

/// How a root `magi-node` confines its agents: the user they run as and the capabilities
/// its policy lets manifests ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Who agents run as.
    pub user: AgentUser,
    /// Capabilities a manifest may ask for (`--grant`).
    pub grant: BTreeSet<String>,
    /// The `setpriv` program.
    pub setpriv: PathBuf,
}

/// How one agent is started under a [`Sandbox`]: a wrapper command, its whole environment
/// and where its program is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// `setpriv --reuid ... --` to put before the program.
    pub wrapper: Vec<String>,
    /// The environment the agent gets (nothing of the node's own).
    pub env: Vec<(OsString, OsString)>,
    /// `PATH` for the program's lookup.
    pub path: OsString,
}

impl Sandbox {
    /// A sandbox running agents as `user`, granting `grant`; finds `setpriv`.
    pub fn new(user: AgentUser, grant: BTreeSet<String>) -> Result<Sandbox, String> {
        let setpriv = std::env::split_paths(SYSTEM_PATH)
            .map(|d| d.join("setpriv"))
            .find(|p| p.is_file())
            .ok_or("setpriv (util-linux) is not installed: magi-node needs it to run agents as an unprivileged user")?;
        Ok(Sandbox {
            user,
            grant,
            setpriv,
        })
    }

    /// How the agent `agent` of node `node`, whose manifest asks for `asked`, is started;
    /// refused when the policy does not grant all of them.
    pub fn confine(
        &self,
        node: &str,
        agent: &str,
        asked: &[String],
    ) -> Result<Confinement, String> {
        let missing: Vec<&str> = asked
            .iter()
            .filter(|c| !self.grant.contains(*c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "agent {agent} asks for the capabilities {}, which node {node} does not grant \
                 (its operator grants them with `magi-node --grant {}`; see docs/security.md)",
                missing.join(", "),
                missing.join(",")
            ));
        }
        let caps: String = std::iter::once("-all".to_string())
            .chain(asked.iter().map(|c| format!("+{c}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut wrapper = vec![
            self.setpriv.display().to_string(),
            format!("--reuid={}", self.user.uid),
            format!("--regid={}", self.user.gid),
            "--clear-groups".into(),
            format!("--inh-caps={caps}"),
            format!("--bounding-set={caps}"),
        ];
        if !asked.is_empty() {
            wrapper.push(format!("--ambient-caps={caps}"));
        }
        wrapper.push("--".into());
        let path = match crate::manifest::exe_dir() {
            Some(exe) => format!("{}:{SYSTEM_PATH}", exe.display()),
            None => SYSTEM_PATH.to_string(),
        };
        let env = [
            ("PATH", path.as_str()),
            ("HOME", "/"),
            ("LANG", "C.UTF-8"),
            ("USER", self.user.name.as_str()),
            ("LOGNAME", self.user.name.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        Ok(Confinement {
            wrapper,
            env,
            path: OsString::from(SYSTEM_PATH),
        })
    }

    /// Checks that the agent user can reach `dir` (search permission on every directory
    /// from `/` down, read on `dir` itself), for the node's start: agents read their code
    /// from the cache and the Python helper from the state directory.
    pub fn check_reachable(&self, dir: &Path) -> Result<(), String> {
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut chain: Vec<&Path> = dir.ancestors().collect();
        chain.reverse();
        for (i, d) in chain.iter().enumerate() {
            let meta = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            let want = if i + 1 == chain.len() { 0o5 } else { 0o1 };
            if !self.may(&meta, want) {
                return Err(format!(
                    "agents run as {} (uid {}), who cannot reach {} ({} is mode {:o}, owner uid {}): \
                     give --state-dir a directory they can reach, or choose the user with --agent-user",
                    self.user.name,
                    self.user.uid,
                    dir.display(),
                    d.display(),
                    meta.mode() & 0o7777,
                    meta.uid()
                ));
            }
        }
        Ok(())
    }

    /// Whether the agent user has the `rwx` bits `want` (as `0o5` = r-x) on a file.
    fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        let mode = meta.mode();
        let bits = if meta.uid() == self.user.uid {
            mode >> 6
        } else if meta.gid() == self.user.gid {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }
}

/// Where a node keeps the Python helpers agents import: `<state_dir>/python`.
pub const PYTHON_SUBDIR: &str = "python";

/// `magi-node`'s choice from `--agent-user` and `--grant`: as root, a sandbox for the agent
/// user (default `nobody`; `root` means none), with the state directory made reachable for
/// it where agents read (the cache, the Python helper) and private where they must not
/// (agents' logs); not as root, agents run as this user and `--agent-user` may only name it.
pub fn settle(
    agent_user: Option<&str>,
    grant: BTreeSet<String>,
    state_dir: &Path,
    log_dir: Option<&Path>,
) -> Result<Option<Sandbox>, String> {
    if !is_root() {
        if let Some(name) = agent_user {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if AgentUser::lookup(name)?.uid != me {
                return Err(format!(
                    "--agent-user {name}: only a magi-node running as root can start agents as another user (this one runs as uid {me})"
                ));
            }
        }
        return Ok(None);
    }
    let user = AgentUser::lookup(agent_user.unwrap_or(DEFAULT_AGENT_USER))?;
    if user.uid == 0 {
        return Ok(None);
    }
    let sandbox = Sandbox::new(user, grant)?;
    let mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(p)
            .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)))
            .map_err(|e| format!("cannot prepare {}: {e}", p.display()))
    };
    let logs = log_dir.map_or_else(|| state_dir.join("logs"), Path::to_path_buf);
    mode(&logs, 0o700)?;
    let meta = std::fs::metadata(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    mode(state_dir, (meta.mode() & 0o7777) | 0o011)?;
    for sub in [crate::archive::CACHE_SUBDIR, PYTHON_SUBDIR] {
        let dir = state_dir.join(sub);
        mode(&dir, 0o755)?;
        sandbox.check_reachable(&dir)?;
    }
    Ok(Some(sandbox))
}

/// Whether this process runs as root (and so can confine its agents).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(grant: &[&str]) -> Sandbox {
        Sandbox {
            user: AgentUser {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
            },
            grant: grant.iter().map(|s| s.to_string()).collect(),
            setpriv: PathBuf::from("/usr/bin/setpriv"),
        }
    }

    #[test]
    fn capability_names_are_normalised_and_unknown_ones_refused() {
        assert_eq!(parse_capability("CAP_NET_ADMIN").unwrap(), "net_admin");
        assert_eq!(parse_capability(" net_raw ").unwrap(), "net_raw");
        let e = parse_capability("root").unwrap_err();
        assert!(e.contains("not a Linux capability"), "{e}");
    }

    #[test]
    fn an_agent_asking_for_an_ungranted_capability_is_refused_naming_it_and_the_flag() {
        let e = sandbox(&["net_raw"])
            .confine(
                "n1",
                "apache",
                &["net_bind_service".into(), "net_raw".into()],
            )
            .unwrap_err();
        assert!(e.contains("net_bind_service"), "{e}");
        assert!(!e.contains("net_bind_service, net_raw"), "{e}");
        assert!(e.contains("--grant net_bind_service"), "{e}");
    }

    #[test]
    fn a_confined_agent_gets_the_agent_user_exactly_its_capabilities_and_a_fresh_environment() {
        let c = sandbox(&["net_admin", "net_raw"])
            .confine("n1", "counter", &["net_admin".into()])
            .unwrap();
        assert!(c.wrapper.contains(&"--reuid=65534".to_string()));
        assert!(c
            .wrapper
            .contains(&"--ambient-caps=-all,+net_admin".to_string()));
        assert!(c
            .wrapper
            .contains(&"--bounding-set=-all,+net_admin".to_string()));
        assert_eq!(c.wrapper.last().unwrap(), "--");
        let plain = sandbox(&[]).confine("n1", "client", &[]).unwrap();
        assert!(plain.wrapper.contains(&"--bounding-set=-all".to_string()));
        assert!(!plain.wrapper.iter().any(|w| w.starts_with("--ambient")));
        let keys: Vec<_> = plain
            .env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(keys, ["PATH", "HOME", "LANG", "USER", "LOGNAME"]);
    }

    #[test]
    fn a_directory_behind_a_private_parent_is_unreachable_and_the_error_names_the_parent() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("state");
        std::fs::create_dir(&inner).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let s = sandbox(&[]);
        let e = s.check_reachable(&inner).unwrap_err();
        assert!(e.contains("mode 700"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        s.check_reachable(&inner).unwrap();
    }

    #[test]
    fn users_are_looked_up_by_name() {
        let u = AgentUser::lookup("nobody").unwrap();
        assert_eq!(u.uid, 65534);
        assert!(AgentUser::lookup("no-such-user-magi").is_err());
    }
}
