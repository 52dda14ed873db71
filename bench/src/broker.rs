//! What the broker is like before the benchmark starts: a broker short of file handles, or
//! one still busy with earlier work, makes every figure show itself rather than MAGI-rs.

use std::time::Duration;

use crate::report::Figure;
use crate::sys;

/// The brokers' open-file limit (the lowest, for a cluster), warned about when it is below
/// two per queue at the largest N (`queues`): RabbitMQ's file handle cache then closes and
/// reopens queue files all the time. On a broker started with Debian's 1,024 a round at N = 3000
/// took 77 s instead of 1.5 s, the cache's process busy with its bookkeeping
/// (docs/benchmarks.md, "The broker's open-file limit").
pub fn open_files_figure(url: &str, largest: usize, queues: usize) -> Option<Figure> {
    let limit = sys::find_brokers(url)
        .into_iter()
        .filter_map(sys::open_files_limit)
        .min()?;
    let wanted = 2 * queues as u64;
    if limit < wanted {
        eprintln!(
            "magi-bench: warning: the broker may open {limit} files, fewer than two per queue for the \
             {queues} queues at N = {largest}: its figures will show its file handle cache, not MAGI-rs \
             (restart it with a higher limit: docs/deploy.md)"
        );
    }
    Some(
        Figure::new("broker_open_files", largest, limit as f64, "").note(format!(
            "the broker's open-file limit; below {wanted} (two per queue) it thrashes"
        )),
    )
}

/// Above this share of one core, an idle broker is busy with something else.
const BUSY_IDLE: f64 = 0.2;

/// The brokers' CPU over two seconds before the benchmark declares anything, in cores,
/// warned about when it is busy: after a run of thousands of nodes, RabbitMQ 3.10 stayed
/// at 87 % of a core in `pg_local` with nothing to do until it was restarted, and a
/// benchmark taken then gave p50 ratios up to 1.99 instead of 1.3-1.9
/// (docs/benchmarks.md, "Thousands of nodes on the single broker").
pub async fn idle_cpu_figure(url: &str) -> Option<Figure> {
    let brokers = sys::find_brokers(url);
    if brokers.is_empty() {
        return None;
    }
    let cpu = || -> f64 {
        brokers
            .iter()
            .filter_map(|&pid| sys::proc_cpu_seconds(pid))
            .sum()
    };
    let window = Duration::from_secs(2);
    let before = cpu();
    tokio::time::sleep(window).await;
    let busy = (cpu() - before) / window.as_secs_f64();
    if busy > BUSY_IDLE {
        eprintln!(
            "magi-bench: warning: the broker used {:.0} % of a core over 2 s before the benchmark \
             started: it is busy with other work (other clients, or leftovers of a large run: \
             restart it), and every figure will show it",
            busy * 100.0
        );
    }
    Some(
        Figure::new("broker_idle_cpu", brokers.len(), busy * 100.0, "%").note(format!(
            "the broker's CPU (% of one core) over 2 s before the benchmark; above {:.0} % it is busy with other work",
            BUSY_IDLE * 100.0
        )),
    )
}
