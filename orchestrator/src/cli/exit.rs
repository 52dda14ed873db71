//! The exit codes of `magi`'s commands, in one place; each command's `--help` says which
//! it uses and what they mean for it.

/// Success (`run`: every stream finished or one reached `exit`; `status`: node agents
/// found; `tap`: stopped by Ctrl-C, `--count` or `--for`).
pub const EXIT_OK: i32 = 0;
/// `run`: the procedure failed (an agent returned false, raised, crashed or did not load);
/// `status`: no node agent answered, or an expected one is missing.
pub const EXIT_FAILED: i32 = 1;
/// The input is not valid (a procedure `magi check` refuses, a bad command line).
pub const EXIT_INVALID: i32 = 2;
/// Infrastructure: the broker unreachable or lost, nodes missing or lost, a call that
/// reached no node, setup timed out.
pub const EXIT_INFRA: i32 = 3;
/// Interrupted (Ctrl-C twice, or SIGTERM); teardown was done.
pub const EXIT_INTERRUPTED: i32 = 130;
