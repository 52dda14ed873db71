//! Inputs that used to take the orchestrator down, given to the real `magi` binary: each
//! gets a clear error quickly, with bounded memory, and never a hang or a panic.
//!
//! Every command runs under a deadline (killed and failed past it) and its peak memory is
//! read from the kernel (`wait4`'s `ru_maxrss`).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished `magi` did.
struct Finished {
    code: i32,
    stderr: String,
    took: Duration,
    max_rss_mib: u64,
}

/// Runs `magi args...` in `dir`; kills it and fails the test after `deadline`.
// The child is reaped by `wait4` (for its peak memory), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn magi(dir: &Path, args: &[&str], deadline: Duration) -> Finished {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_magi"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MAGI_STATE_DIR", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("magi starts");
    let mut pipe = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let (status, usage) = loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        assert!(r == 0, "wait4 failed");
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("magi {args:?} still running after {deadline:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    eprintln!(
        "magi {:?}: {took:?}, {} MiB",
        args.iter()
            .map(|a| a.chars().take(40).collect::<String>())
            .collect::<Vec<_>>(),
        usage.ru_maxrss / 1024
    );
    assert!(
        libc::WIFEXITED(status),
        "magi {args:?} did not exit normally (status {status:#x}): a crash"
    );
    Finished {
        code: libc::WEXITSTATUS(status),
        stderr: reader.join().expect("stderr reader"),
        took,
        max_rss_mib: usage.ru_maxrss as u64 / 1024,
    }
}

/// Exit code of a command-line error or an invalid procedure.
const EXIT_INVALID: i32 = 2;

/// One group of one node, one agent at `path`, one event.
fn procedure_with_agent_path(path: &str) -> String {
    format!(
        "groups: {{g: [n1]}}\n\
         agents: {{a: {{group: g, path: '{path}', execargs: {{}}}}}}\n\
         streamstarts: [s]\n\
         eventstreams:\n  s:\n    - {{type: event, agent: a, method: go, trigger: done, args: {{}}}}\n    \
         - {{type: trigger, triggers: [{{event: done, target: exit}}]}}\n"
    )
}

#[test]
fn agent_paths_that_are_devices_fifos_or_sockets_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("module.tar.gz");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let socket = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let cases = [
        ("/dev/zero".to_string(), "character device"),
        (fifo.to_string_lossy().into_owned(), "fifo"),
        (socket.to_string_lossy().into_owned(), "socket"),
    ];
    for (path, kind) in cases {
        std::fs::write(dir.path().join("p.aal"), procedure_with_agent_path(&path)).unwrap();
        let out = magi(
            dir.path(),
            &["run", "p.aal", "--run", "r", "--record-dir", "records"],
            Duration::from_secs(20),
        );
        let expected = format!(
            "agent path {path} is a {kind}; an agent module is a regular file (an archive) or a directory"
        );
        assert!(out.stderr.contains(&expected), "{path}: {}", out.stderr);
        assert_eq!(out.code, 2, "{path}: {}", out.stderr);
        assert!(
            out.took < Duration::from_secs(5),
            "{path}: took {:?}",
            out.took
        );
        assert!(out.max_rss_mib < 200, "{path}: {} MiB", out.max_rss_mib);
    }
}

#[test]
fn run_names_that_would_leave_the_record_directory_are_refused() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("work");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("p.aal"), procedure_with_agent_path("/nonexistent")).unwrap();
    let long = "a".repeat(201);
    // (A NUL cannot be passed in an argument at all; record.rs's unit test covers it.)
    for name in [
        "../../x", "../x", "/tmp/x", "/", ".", "..", "", "a/b", ".hidden", &long,
    ] {
        let out = magi(
            &dir,
            &["run", "p.aal", "--run", name, "--record-dir", "records"],
            Duration::from_secs(5),
        );
        assert_eq!(out.code, EXIT_INVALID, "{name:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("for '--run <RUN>': run name"),
            "{name:?}: {}",
            out.stderr
        );
        assert!(
            out.took < Duration::from_secs(1),
            "{name:?}: {:?}",
            out.took
        );
    }
    let left: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["work"],
        "something was written beside the work directory"
    );
    assert!(!dir.join("records").exists(), "no record was started");
}

#[test]
fn durations_out_of_range_are_command_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &["status", "--wait", "1e30"],
        &["status", "--wait=-1"],
        &["status", "--wait", "NaN"],
        &["tap", "--for", "1e19"],
        &["tap", "--for", "inf"],
        &["tap", "--for=-0.5"],
        &[
            "web",
            "--store",
            "x.sqlite",
            "--poll-ms",
            "18446744073709551615",
        ],
    ];
    for args in cases {
        let out = magi(dir.path(), args, Duration::from_secs(5));
        assert_eq!(out.code, EXIT_INVALID, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("is out of range: give 0 to"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.took < Duration::from_secs(1),
            "{args:?}: {:?}",
            out.took
        );
    }
}

#[test]
fn a_hundred_thousand_warnings_are_reported_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = procedure_with_agent_path("/nonexistent");
    text.push_str("notes:\n");
    for i in 0..100_000 {
        text.push_str(&format!("  - !tag v{i}\n"));
    }
    std::fs::write(dir.path().join("many.aal"), text).unwrap();
    // Quadratic rendering took 83 s here; linear takes about 1.4 s in a debug build
    // (0.8 s of it parsing), well under a second in a release build.
    let out = magi(dir.path(), &["check", "many.aal"], Duration::from_secs(20));
    assert_eq!(out.code, 0, "{}", out.stderr.lines().last().unwrap_or(""));
    assert_eq!(
        out.stderr
            .matches("warning: the tag `!tag` is ignored")
            .count(),
        100_000
    );
    assert!(out.took < Duration::from_secs(5), "took {:?}", out.took);
    assert!(out.max_rss_mib < 300, "{} MiB", out.max_rss_mib);
}
