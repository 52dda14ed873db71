//! The agent's process group: signals, the supervisor that notices the agent's end, and
//! clearing what the agent left running.

use super::*;

/// Sends `signal` to process group `pgid`; true if some process got it.
pub(super) fn signal_group(pgid: libc::pid_t, signal: libc::c_int) -> bool {
    // killpg(0) or (1) would hit our own group or init: never.
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe { libc::killpg(pgid, signal) == 0 }
}

/// Waits for the agent to exit, clears its process group, drains its output and publishes
/// the exit, last of all its events.
pub(super) async fn supervise(
    mut child: Child,
    shared: Arc<Shared>,
    mut reader: JoinHandle<()>,
    mut stderr_reader: JoinHandle<()>,
    events: mpsc::UnboundedSender<AgentEvent>,
) {
    let status = child.wait().await;
    // The leader is gone; what it started (curl, a server) must not outlive it. The
    // window for pid reuse here is nil in practice: the group id is only freed once the
    // last member has been reaped, and pids are not reused that fast.
    clear_group(shared.pgid).await;
    // The pipes close once no process holds them; bound the wait all the same.
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut stderr_reader)
        .await
        .is_err()
    {
        stderr_reader.abort();
    }
    let (code, signal) = match &status {
        Ok(status) => (status.code(), status.signal()),
        Err(_) => (None, None),
    };
    let (pending, stopped) = {
        let mut state = lock(&shared.state);
        state.exited = true;
        (std::mem::take(&mut state.pending), state.stopping)
    };
    let exit = AgentExit {
        code,
        signal,
        stderr_tail: shared.stderr_tail(),
        pending: pending.into_iter().collect(),
        stopped,
    };
    let _ = events.send(AgentEvent::Exited(exit.clone()));
    shared.exit.send_replace(Some(exit));
}

/// Ends what is left of a process group: SIGTERM, a short grace, then SIGKILL.
pub(super) async fn clear_group(pgid: libc::pid_t) {
    if !signal_group(pgid, libc::SIGTERM) {
        return;
    }
    let deadline = tokio::time::Instant::now() + TERM_GRACE;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !group_alive(pgid) {
            return;
        }
    }
    signal_group(pgid, libc::SIGKILL);
}

/// Whether a process group has a live (non-zombie) member.
///
/// Killed children of a dead agent stay zombies until init reaps them, which some container
/// inits do lazily; `killpg(pgid, 0)` counts zombies, so it would make every teardown wait
/// out the grace. `/proc` tells the states apart; without it, fall back to the probe.
pub(super) fn group_alive(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return signal_group(pgid, 0);
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may itself hold ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<libc::pid_t>().ok());
        pgrp == Some(pgid) && !matches!(state, Some("Z") | Some("X"))
    })
}
