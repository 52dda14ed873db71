//! Ctrl-C and SIGTERM: the broker is cleaned of what the benchmark declared, and no
//! further phase starts meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use magi_testkit::{vhost_of, TestBroker};

use crate::permissions;

/// How long an interrupted benchmark spends deleting what it declared.
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

/// Set once Ctrl-C or SIGTERM has come: the signal's task is cleaning the broker up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Between phases: once interrupted, start nothing more and wait for the signal's task to
/// exit. (The driver ends its run on the same signal; the next phase, started while the
/// broker was being cleaned, declared its run queues again and left them behind.)
pub async fn halt_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
}

/// On Ctrl-C or SIGTERM: delete what this run declared on the broker, then exit. (The
/// driver also listens for them while it runs; fleet children stop when our pipe closes,
/// or with us: `sys::die_with_parent`.)
pub fn watch_signals(prefix: String, url: String) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("magi-bench: interrupted; cleaning the broker up");
        let kit = TestBroker {
            vhost: vhost_of(&url),
            url,
            prefix: prefix.clone(),
        };
        // 10,000 node queues on a busy broker took longer than 20 s to delete, and the
        // benchmark left them without a word.
        match tokio::time::timeout(CLEANUP_WAIT, kit.cleanup()).await {
            Ok(Ok(left)) if left.is_empty() => {}
            Ok(Ok(left)) => eprintln!(
                "magi-bench: {} left on the broker; `magi-bench cleanup {prefix}` deletes them",
                left.len()
            ),
            Ok(Err(e)) => eprintln!(
                "magi-bench: cleanup failed ({e}); `magi-bench cleanup {prefix}` deletes what is left"
            ),
            Err(_) => eprintln!(
                "magi-bench: cleanup not done after {} s; `magi-bench cleanup {prefix}` deletes what is left",
                CLEANUP_WAIT.as_secs()
            ),
        }
        let _ = tokio::task::spawn_blocking(permissions::remove_live).await;
        std::process::exit(130);
    });
}
