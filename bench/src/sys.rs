//! Process-level measurements and plumbing: CPU time, resident memory, a CPU sampler,
//! and moving the console's output out of the way while the driver runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// User + system CPU seconds of this process so far (all threads).
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    status_of(&format!("/proc/{pid}/status"), field)
}

/// Have the kernel stop the child `cmd` starts (SIGTERM) when the thread that started it
/// ends: a benchmark killed by a signal runs no destructor, and its fleets and its
/// `magi-node` went on heartbeating into a broker that had no run for them (found after an
/// interrupted N = 3000 run). Call it from a runtime's worker thread, which lives as long as
/// the benchmark.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the hook runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The open-file limit (soft) of process `pid`, from `/proc/PID/limits`.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number after `field:` in a `/proc` file of such lines.
fn status_of(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The memory this machine has available now (`MemAvailable`), in bytes.
pub fn mem_available() -> Option<u64> {
    status_of("/proc/meminfo", "MemAvailable").map(|kb| kb * 1024)
}

/// Refuses a fleet of `n` node agents that this machine cannot hold, before it takes the
/// broker down with it. Measured here (`fleet_rss_peak`, N = 1000, 1.4 MB shipped): a fleet
/// process peaks at about 1.2 times the shipped bytes per node agent while the archive
/// arrives (1.6 times before its node agents stopped copying it and waiting for one
/// another's unpacking), and an agent process and a node agent at rest take about 0.3 MiB
/// together. Before that, at N = 10,000 the fleets used 22 of the 24 GiB before any agent
/// started, and the kernel's OOM killer took RabbitMQ.
pub fn check_memory(n: usize, shipped: usize) -> anyhow::Result<()> {
    let per_node = shipped as u64 * 12 / 10 + (5 << 16);
    let need = n as u64 * per_node;
    let Some(available) = mem_available() else {
        return Ok(());
    };
    if need > available / 10 * 9 {
        anyhow::bail!(
            "N = {n} needs about {:.1} GiB ({:.1} MiB per node agent: 1.2 times the {} KiB \
             shipped archive while it arrives, and its agent process) and this machine has \
             {:.1} GiB available; run fewer nodes, a smaller agent (--agent-kib), or the fleet \
             on a machine with more memory",
            need as f64 / f64::from(1 << 30),
            per_node as f64 / f64::from(1 << 20),
            shipped / 1024,
            available as f64 / f64::from(1 << 30)
        );
    }
    Ok(())
}

/// The 1-minute load average (other work on the machine makes every figure noisier).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since the Unix epoch (the run record's clock).
pub fn epoch() -> f64 {
    magi_proto::epoch_now()
}

/// CPU seconds of the calling thread.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: clock_gettime writes into the struct we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// User + system CPU seconds of another process so far (all threads), from `/proc`.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) / hz)
}

/// The RabbitMQ broker's process (`beam.smp` running `rabbit`), to read its CPU time.
/// The RabbitMQ processes serving `url`: the nodes of the local cluster
/// (`magi1..3@localhost`) when it names them, else the single broker.
pub fn find_brokers(url: &str) -> Vec<u32> {
    if !magi_testkit::Cluster::serves(url) {
        return find_broker().into_iter().collect();
    }
    beam_processes().filter(|&pid| cluster_node(pid)).collect()
}

/// The Erlang VMs running on this machine (RabbitMQ brokers among them).
fn beam_processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "beam.smp")
        })
}

/// Whether `pid` is a node of the local cluster (`scripts/cluster` names it in the
/// environment: the command line does not carry the node name).
fn cluster_node(pid: u32) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    String::from_utf8_lossy(&environ)
        .split('\0')
        .any(|v| v.starts_with("RABBITMQ_NODENAME=magi"))
}

/// The single broker's process (not a node of the local cluster). The server boots with
/// `-s rabbit boot`; `rabbitmqctl` runs in an Erlang VM too, with `rabbit` in its command
/// line (its home), and a figure once sampled one of those instead of the broker.
pub fn find_broker() -> Option<u32> {
    beam_processes().find(|&pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        words
            .windows(3)
            .any(|w| w == [&b"-s"[..], b"rabbit", b"boot"])
            && !cluster_node(pid)
    })
}

/// CPU seconds of this process (`None`) or another one.
pub fn cpu_of(pid: Option<u32>) -> f64 {
    match pid {
        None => cpu_seconds(),
        Some(p) => proc_cpu_seconds(p).unwrap_or(f64::NAN),
    }
}

/// One sample: epoch seconds, then the CPU seconds of each watched process.
type Sample = (f64, Vec<f64>);

/// Samples the CPU time of this process and of a few others every few milliseconds, so
/// that the CPU spent between two instants of the run record can be read afterwards.
pub struct CpuSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
    pids: Vec<Option<u32>>,
}

impl CpuSampler {
    /// Starts sampling every `every`: this process, then each of `others`.
    pub fn start(every: Duration, others: &[u32]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let pids: Vec<Option<u32>> = std::iter::once(None)
            .chain(others.iter().map(|p| Some(*p)))
            .collect();
        let (s, v, p) = (stop.clone(), samples.clone(), pids.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                // This process's figure leaves out the sampler's own reading of /proc.
                let own = thread_cpu_seconds();
                let cpu = p
                    .iter()
                    .map(|pid| match pid {
                        None => cpu_seconds() - own,
                        Some(_) => cpu_of(*pid),
                    })
                    .collect();
                let sample = (epoch(), cpu);
                if let Ok(mut v) = v.lock() {
                    v.push(sample);
                }
                std::thread::sleep(every);
            }
        });
        CpuSampler {
            stop,
            samples,
            thread: Some(thread),
            pids,
        }
    }

    /// Stops; the samples of each process (this one first), as (epoch seconds, CPU seconds).
    pub fn finish(mut self) -> Vec<Vec<(f64, f64)>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut v = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        if let Some(last) = v.last().cloned() {
            // The end: others read now; this process as last sampled (the sampler is gone).
            let now: Vec<f64> = self.pids.iter().map(|pid| cpu_of(*pid)).collect();
            let cpu = (0..self.pids.len())
                .map(|i| if i == 0 { last.1[0] } else { now[i] })
                .collect();
            v.push((epoch(), cpu));
        }
        (0..self.pids.len())
            .map(|i| v.iter().map(|(t, c)| (*t, c[i])).collect())
            .collect()
    }
}

/// CPU seconds spent between two epoch instants, from samples (linear between samples).
pub fn cpu_between(samples: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let at = |t: f64| -> f64 {
        let i = samples.partition_point(|(s, _)| *s <= t);
        match (
            i.checked_sub(1).and_then(|j| samples.get(j)),
            samples.get(i),
        ) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => c0 + (c1 - c0) * (t - t0) / (t1 - t0),
            (Some(&(_, c0)), _) => c0,
            (None, Some(&(_, c1))) => c1,
            (None, None) => 0.0,
        }
    };
    (at(to) - at(from)).max(0.0)
}

/// While alive, file descriptor 1 (stdout) goes to a file: the driver's console prints
/// the original's lines there, and the benchmark's table stays readable.
pub struct StdoutTo {
    saved: libc::c_int,
}

impl StdoutTo {
    /// Redirects stdout to `path` (created or truncated).
    pub fn file(path: &std::path::Path) -> std::io::Result<StdoutTo> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let _ = std::io::stdout().flush();
        let file = std::fs::File::create(path)?;
        // SAFETY: dup/dup2 on descriptors we own or on fd 1; errors are checked.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if unsafe { libc::dup2(file.as_raw_fd(), 1) } < 0 {
            let e = std::io::Error::last_os_error();
            unsafe { libc::close(saved) };
            return Err(e);
        }
        Ok(StdoutTo { saved })
    }
}

impl Drop for StdoutTo {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: restores the descriptor saved in `file`.
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_larger_than_the_machine_is_refused_before_it_starts() {
        let err = check_memory(10_000_000, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("GiB available"), "{err}");
        assert!(check_memory(1, 1 << 20).is_ok());
    }

    #[test]
    fn cpu_between_interpolates() {
        let s = [(0.0, 0.0), (1.0, 0.5), (2.0, 0.5), (3.0, 1.5)];
        assert!((cpu_between(&s, 0.5, 2.5) - 0.75).abs() < 1e-9);
        assert!((cpu_between(&s, -1.0, 10.0) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn own_cpu_time_reads_the_same_both_ways() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        let mine = cpu_seconds();
        let proc = proc_cpu_seconds(std::process::id()).unwrap();
        assert!((mine - proc).abs() < 0.05, "{mine} vs {proc}");
    }

    #[test]
    fn own_resident_memory_is_readable() {
        assert!(status_kb(std::process::id(), "VmRSS").unwrap_or(0) > 0);
    }
}
