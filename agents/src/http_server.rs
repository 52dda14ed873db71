//! The `apache` module: a real HTTP server on the node's own address (magi-spec §5.2),
//! shared by its callers as the original's `SharedServer` was.
//!
//! `startServer` starts serving on the first caller and `stopServer` stops when the last
//! one has left. A caller is named by a `caller` argument when the call has one (the
//! original keyed by the calling node, a set: a second start by the same caller changes
//! nothing); calls without one are counted.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::http::server::{self, Stats};
use crate::runtime::{unknown_method, Agent, Context};

/// The methods of the `apache` module.
pub const METHODS: &[&str] = &[
    "startServer",
    "stopServer",
    "setConfig",
    "setConfiguration",
    "confirmConfiguration",
    "status",
];

/// The HTTP server agent.
pub struct HttpServerAgent {
    ctx: Context,
    port: u16,
    callers: BTreeSet<String>,
    anonymous: u64,
    running: Option<Running>,
}

struct Running {
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl HttpServerAgent {
    fn configure(&mut self, args: &Args) -> Result<(), String> {
        if let Some(port) = args.int("port", 1, 65535)? {
            self.port = port as u16;
        }
        for key in args.keys() {
            if !matches!(key, "port" | "name" | "hostname") {
                // The original's apache tuning knobs (StartServers, MaxClients, ...) have
                // no meaning here; say so rather than pretend.
                self.ctx.out.info(format!(
                    "configuration '{key}' has no effect on this server"
                ));
            }
        }
        Ok(())
    }

    fn users(&self) -> u64 {
        self.callers.len() as u64 + self.anonymous
    }

    fn start_server(&mut self, args: &Args) -> Result<Value, String> {
        if self.running.is_none() {
            let ip = self
                .ctx
                .address
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let addr = SocketAddr::new(ip, self.port);
            let listener =
                server::bind(addr).map_err(|e| format!("cannot serve HTTP on {addr}: {e}"))?;
            let stats = Arc::new(Stats::default());
            let hosts = Arc::new(self.ctx.hosts.clone());
            let task = tokio::spawn(server::serve(listener, hosts, stats.clone()));
            self.ctx.out.info(format!("serving HTTP on {addr}"));
            self.running = Some(Running { addr, stats, task });
        }
        match args.text("caller")? {
            Some(caller) => {
                self.callers.insert(caller);
            }
            None => self.anonymous += 1,
        }
        Ok(Value::Bool(true))
    }

    async fn stop_server(&mut self, args: &Args) -> Result<Value, String> {
        let known = match args.text("caller")? {
            Some(caller) => self.callers.remove(&caller),
            None if self.anonymous > 0 => {
                self.anonymous -= 1;
                true
            }
            None => false,
        };
        if !known {
            // The original raised KeyError here, which aborted the run; stopping a server
            // that this caller did not start is harmless, so it is only reported.
            self.ctx
                .out
                .warn("stopServer from a caller that had not started the server: nothing to do");
        }
        if self.users() == 0 {
            self.shut_down().await;
        }
        Ok(Value::Bool(true))
    }

    /// Stops serving and returns once the listening socket is closed, so that the reply
    /// to `stopServer` means the port is free (an aborted task is only dropped, and its
    /// listener closed, when the runtime next gets to it).
    async fn shut_down(&mut self) {
        if let Some(running) = self.running.take() {
            running.task.abort();
            let _ = running.task.await;
            self.ctx.out.info(format!(
                "stopped serving on {}: {} requests, {} body bytes, {} connections",
                running.addr,
                running.stats.requests.load(Ordering::Relaxed),
                running.stats.bytes.load(Ordering::Relaxed),
                running.stats.connections.load(Ordering::Relaxed),
            ));
        }
    }
}

impl Agent for HttpServerAgent {
    async fn start(ctx: Context, execargs: Args) -> Result<Self, String> {
        let mut agent = HttpServerAgent {
            ctx,
            port: 80,
            callers: BTreeSet::new(),
            anonymous: 0,
            running: None,
        };
        agent.configure(&execargs)?;
        Ok(agent)
    }

    async fn call(&mut self, method: &str, args: Args) -> Result<Value, String> {
        match method {
            "startServer" => self.start_server(&args),
            "stopServer" => self.stop_server(&args).await,
            // Effective at the next start, as the original's.
            "setConfig" | "setConfiguration" => {
                self.configure(&args)?;
                Ok(Value::Bool(true))
            }
            "confirmConfiguration" => Ok(Value::Bool(true)),
            "status" => Ok(json!({
                "serving": self.running.as_ref().map(|r| r.addr.to_string()),
                "users": self.users(),
            })),
            _ => Err(unknown_method(method, METHODS)),
        }
    }

    async fn stop(&mut self) {
        self.shut_down().await;
    }
}
