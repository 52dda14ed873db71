//! `scripts/lib/rabbitmq.sh`: `ensure_rabbitmq` as CI calls it (under `set -euo pipefail`,
//! on a machine whose broker is down), against a stub broker so that the real one is left
//! alone. CI failed twice in this script before the suite even began.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A stub `rabbitmqctl` (down until the stub server ran) and a stub `rabbitmq-server`
/// (writes its open-file limit and marks itself started) in a directory anyone may use:
/// as root the script starts the server as the `rabbitmq` user.
fn stubs(starts: bool) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("magi-start-script-{}-{starts}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = dir.display();
    let ctl = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *await_startup*) [ -e {d}/started ] ;;\n  *) exit 1 ;;\nesac\n"
    );
    let server = if starts {
        format!("#!/bin/sh\nulimit -n > {d}/limit\ntouch {d}/started\n")
    } else {
        "#!/bin/sh\nexit 1\n".to_string()
    };
    for (name, text) in [("rabbitmqctl", ctl), ("rabbitmq-server", server)] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// Runs `ensure_rabbitmq` as CI does, with a hard open-file limit below the 65,536 asked.
fn ensure(dir: &Path, wait_s: u32) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-c")
        .arg("set -euo pipefail; ulimit -n 4096; . scripts/lib/rabbitmq.sh; ensure_rabbitmq; echo ensured")
        .current_dir(root)
        .env("PATH", path)
        .env("MAGI_RABBITMQ_SERVER", dir.join("rabbitmq-server"))
        .env("MAGI_RABBITMQ_WAIT", wait_s.to_string())
        .output()
        .unwrap()
}

#[test]
fn a_stopped_broker_is_started_under_set_e_with_the_hard_open_file_limit() {
    let dir = stubs(true);
    let out = ensure(&dir, 30);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ensure_rabbitmq failed: {stdout}{stderr}"
    );
    assert!(stdout.contains("ensured"), "{stdout}{stderr}");
    assert!(stderr.contains("starting RabbitMQ"), "{stderr}");
    let limit = std::fs::read_to_string(dir.join("limit")).unwrap();
    assert_eq!(
        limit.trim(),
        "4096",
        "the server did not get the hard limit"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broker_that_does_not_start_fails_after_the_wait_saying_so() {
    let dir = stubs(false);
    let began = std::time::Instant::now();
    let out = ensure(&dir, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("RabbitMQ did not start within 2 s"),
        "{stderr}"
    );
    assert!(began.elapsed().as_secs() < 10, "took {:?}", began.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}
