//! # magi-node: the node agent
//!
//! One node agent runs on every testbed node (or, on the embedded default, one per node
//! name inside the `magi` process). It joins and leaves a run's groups on the
//! orchestrator's command, loads agents from archives and runs them as processes, and
//! turns what agents say into triggers and records on the bus.
//!
//! - [`node`]: the dispatcher, `node::run(link, config, shutdown)`.
//! - [`fleet`]: node agents of one process, started and stopped together.
//! - [`config`]: `magi-node`'s command line, configuration file and host map.
//! - [`archive`]: unpacking agent archives safely into a cache keyed by SHA-256.
//! - [`library`]: resolving the original's `/share/magi/modules/...` paths by module name.
//! - [`manifest`]: the `magi-agent.json` every agent module carries.
//! - [`describe`]: a module's manifest without running it (for `magi check`).
//! - [`idl`]: an original MAGI module's `.idl`, read into a manifest.
//! - [`process`]: an agent as a child process speaking the line-delimited JSON protocol.
//! - [`privilege`]: agents as an unprivileged user with granted capabilities only.
//! - [`pack`]: packing a module directory into an archive to ship over the bus.

pub mod archive;
pub mod config;
pub mod describe;
pub mod fleet;
pub mod idl;
pub mod library;
pub mod manifest;
pub mod node;
pub mod pack;
pub mod privilege;
pub mod process;

pub use fleet::Fleet;
pub use node::{run, NodeConfig, Policy};

/// The runtime for a process hosting `nodes` node agents. One node agent is one
/// dispatcher, whose work is sequential: a current-thread runtime runs it without waking
/// another worker thread at every hop (delivery, agent, trigger), which on two cores took
/// about 6 % off a one-node round trip (`docs/benchmarks.md`). Many node agents get
/// tokio's multi-thread runtime, which spreads them over the cores, and their heartbeats a
/// thread of their own (`node::run`). Either way decoding archives goes to blocking
/// threads and lapin's socket to its own thread.
pub fn runtime_for(nodes: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match nodes {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Makes the allocator give freed large blocks (shipped archives, a megabyte and more
/// each) back to the system. glibc raises its mmap threshold to the largest block freed so
/// far (up to 32 MiB); from then on such blocks come from the heap and stay resident after
/// they are freed. Measured (`magi-bench --sizes 1000`, 1 MiB agent): a fleet of 1000 node
/// agents stayed at 2.5 GiB for the whole run after the load; with the threshold fixed at
/// 256 KiB it went back to 0.17 GiB. Call it first thing in `main`.
pub fn release_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets an allocator parameter; it is called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
