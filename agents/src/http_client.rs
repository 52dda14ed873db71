//! The `http_client` module: web traffic from this node to the named servers
//! (magi-spec §5.1), one GET at a time, as the original's curl loop.
//!
//! - `startClient`: the first request comes one interval after the start; the spacing is
//!   start-to-start and re-sampled on every tick; a request that outlasts the interval
//!   delays the next one (one request in flight, as the original's synchronous curl).
//! - Each request goes to one server picked uniformly at random, asks
//!   `/getsize.py?length=<int(sizes)>`, is sent from the node's own address, and gives one
//!   record `{url, time_total, time_starttransfer, size_download, speed_download, error}`
//!   (plus `server`, `size_requested`, `http_code`).
//! - Requests run in a background task, so method calls are answered at once.
//! - Configuration (execargs or `setConfiguration`) is checked as a whole before any of it
//!   takes effect: an unknown server name or a bad distribution is an error then.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::args::Args;
use crate::distribution::Distribution;
use crate::http::client::{self, Fetch, Target};
use crate::random::Rng;
use crate::runtime::{unknown_method, Agent, Context, Outbox};

/// The methods of the `http_client` module.
pub const METHODS: &[&str] = &[
    "startClient",
    "stopClient",
    "increaseTraffic",
    "reduceTraffic",
    "changeTraffic",
    "setConfiguration",
    "confirmConfiguration",
    "getConfiguration",
];

/// Shortest spacing between requests, so that `interval: '0'` cannot spin a core.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Longest spacing taken from a distribution (a day), so a huge draw cannot overflow.
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// One server, by node name and resolved address.
#[derive(Debug, Clone, PartialEq)]
struct Server {
    name: String,
    ip: IpAddr,
}

/// Everything the request loop reads on each tick.
#[derive(Debug, Clone)]
struct Config {
    servers: Vec<Server>,
    interval: Distribution,
    sizes: Distribution,
    port: u16,
    timeout: Duration,
    bind_source: bool,
    rng: Rng,
}

#[derive(Debug, Clone, Copy, Default)]
struct Control {
    running: bool,
    /// Bumped by every `startClient`, so a restart re-times the first request.
    generation: u64,
}

/// The HTTP client agent.
pub struct HttpClientAgent {
    ctx: Context,
    config: Arc<Mutex<Config>>,
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
}

fn lock(config: &Mutex<Config>) -> MutexGuard<'_, Config> {
    // A panic while holding the lock cannot leave a Config half-written (every change
    // is a whole assignment), so a poisoned lock is still usable.
    config.lock().unwrap_or_else(|p| p.into_inner())
}

impl HttpClientAgent {
    /// Applies `args` to a copy of `config`; the copy replaces the original only if every
    /// key was valid.
    fn configured(ctx: &Context, config: &Config, args: &Args) -> Result<Config, String> {
        let mut c = config.clone();
        if let Some(names) = args.text_list("servers")? {
            c.servers = names
                .iter()
                .map(|name| {
                    ctx.hosts
                        .resolve(name)
                        .map(|ip| Server {
                            name: name.clone(),
                            ip,
                        })
                        .map_err(|e| format!("servers: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(s) = args.text("interval")? {
            c.interval = Distribution::parse(&s).map_err(|e| format!("interval: {e}"))?;
        }
        if let Some(s) = args.text("sizes")? {
            c.sizes = Distribution::parse(&s).map_err(|e| format!("sizes: {e}"))?;
        }
        if let Some(port) = args.int("port", 1, 65535)? {
            c.port = port as u16;
        }
        if let Some(t) = args.f64("timeout")? {
            if !(t > 0.0 && t <= 86_400.0) {
                return Err(format!("timeout must be from 0 to 86400 seconds, not {t}"));
            }
            c.timeout = Duration::from_secs_f64(t);
        }
        if let Some(seed) = args.int("seed", 0, i64::MAX)? {
            c.rng = Rng::seeded(seed as u64);
        }
        if let Some(b) = args.bool("bindSource")? {
            c.bind_source = b;
        }
        if args.bool("useSocks")? == Some(true) {
            return Err("useSocks: this client does not support SOCKS proxies".to_string());
        }
        for key in args.keys() {
            let known = [
                "servers",
                "interval",
                "sizes",
                "port",
                "timeout",
                "seed",
                "bindSource",
                "useSocks",
                "socksServer",
                "socksPort",
                "socksVersion",
                "name",
                "hostname",
            ];
            if !known.contains(&key) {
                ctx.out.warn(format!(
                    "unknown configuration '{key}' ignored (known: {})",
                    known[..7].join(", ")
                ));
            }
        }
        Ok(c)
    }

    fn set_configuration(&mut self, args: &Args) -> Result<Value, String> {
        let mut config = lock(&self.config);
        let new = Self::configured(&self.ctx, &config, args)?;
        *config = new;
        Ok(Value::Bool(true))
    }

    /// `sizes` becomes the constant `f(one draw of sizes, uniform draw)`, floored at 0:
    /// the original's `self.sizes = str(eval(self.sizes) ± step)`.
    fn change_sizes(
        &mut self,
        f: impl FnOnce(f64, &mut Rng) -> Option<f64>,
    ) -> Result<Value, String> {
        let mut config = lock(&self.config);
        let c = &mut *config;
        let current = c
            .sizes
            .sample(&mut c.rng)
            .map_err(|e| format!("sizes: {e}"))?;
        if let Some(v) = f(current, &mut c.rng) {
            c.sizes = Distribution::constant(v.max(0.0));
            self.ctx.out.info(format!("sizes is now {}", c.sizes));
        }
        Ok(Value::Null)
    }

    fn set_running(&self, running: bool) {
        self.control.send_modify(|c| {
            c.running = running;
            if running {
                c.generation += 1;
            }
        });
    }
}

impl Agent for HttpClientAgent {
    async fn start(ctx: Context, execargs: Args) -> Result<Self, String> {
        let defaults = Config {
            servers: Vec::new(),
            interval: Distribution::constant(1.0),
            sizes: Distribution::constant(1000.0),
            port: 80,
            timeout: Duration::from_secs(120),
            bind_source: true,
            rng: Rng::from_entropy(),
        };
        let config = Arc::new(Mutex::new(Self::configured(&ctx, &defaults, &execargs)?));
        let (control, control_rx) = watch::channel(Control::default());
        let task = tokio::spawn(request_loop(
            config.clone(),
            control_rx,
            ctx.out.clone(),
            ctx.address,
        ));
        Ok(HttpClientAgent {
            ctx,
            config,
            control,
            task,
        })
    }

    async fn call(&mut self, method: &str, args: Args) -> Result<Value, String> {
        match method {
            "startClient" => {
                self.set_running(true);
                Ok(Value::Bool(true))
            }
            "stopClient" => {
                self.set_running(false);
                Ok(Value::Bool(true))
            }
            "increaseTraffic" => {
                let step = args.req_f64("stepsize")?;
                self.change_sizes(|v, _| Some(v + step))
            }
            "reduceTraffic" => {
                let step = args.req_f64("stepsize")?;
                self.change_sizes(|v, _| Some(v - step))
            }
            "changeTraffic" => {
                // randint(0, 100): below 10 add, 10..19 subtract a random part of stepsize.
                let step = args.req_f64("stepsize")?;
                self.change_sizes(|v, rng| {
                    let prob = rng.int_inclusive(0, 100);
                    let part = (step * rng.next_f64()).trunc();
                    match prob {
                        0..=9 => Some(v + part),
                        10..=19 => Some(v - part),
                        _ => None,
                    }
                })
            }
            "setConfiguration" => self.set_configuration(&args),
            "confirmConfiguration" => Ok(Value::Bool(true)),
            "getConfiguration" => {
                let c = lock(&self.config);
                Ok(json!({
                    "servers": c.servers.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                    "interval": c.interval.source(),
                    "sizes": c.sizes.source(),
                    "port": c.port,
                    "running": self.control.borrow().running,
                }))
            }
            _ => Err(unknown_method(method, METHODS)),
        }
    }

    async fn stop(&mut self) {
        self.set_running(false);
        self.task.abort();
    }
}

/// Waits for `startClient`, then makes one request per tick until `stopClient`.
async fn request_loop(
    config: Arc<Mutex<Config>>,
    mut control: watch::Receiver<Control>,
    out: Outbox,
    address: Option<IpAddr>,
) {
    let mut warned_no_servers = false;
    loop {
        let generation = loop {
            let c = *control.borrow_and_update();
            if c.running {
                break c.generation;
            }
            if control.changed().await.is_err() {
                return;
            }
        };
        let mut due = Instant::now() + next_interval(&config, &out);
        loop {
            tokio::select! {
                // A stop seen together with a due tick wins: no request after stopClient.
                biased;
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let c = *control.borrow_and_update();
                    if !c.running || c.generation != generation {
                        break;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(due) => {}
            }
            due = Instant::now() + next_interval(&config, &out);
            let Some((target, source, timeout)) = next_request(&config, address, &out) else {
                if !warned_no_servers {
                    out.warn("no servers to contact, nothing to do");
                    warned_no_servers = true;
                }
                continue;
            };
            warned_no_servers = false;
            let fetch = client::get(&target, source, timeout).await;
            out.record(record(&target, &fetch));
        }
    }
}

fn next_interval(config: &Mutex<Config>, out: &Outbox) -> Duration {
    let mut c = lock(config);
    let c = &mut *c;
    match c.interval.sample(&mut c.rng) {
        Ok(secs) => Duration::try_from_secs_f64(secs.max(0.0))
            .unwrap_or(MAX_INTERVAL)
            .clamp(MIN_INTERVAL, MAX_INTERVAL),
        Err(e) => {
            out.error(format!("interval: {e}; waiting 1 s"));
            Duration::from_secs(1)
        }
    }
}

/// The next GET (server drawn uniformly, size drawn from `sizes`), or `None` when there
/// is nothing to ask.
fn next_request(
    config: &Mutex<Config>,
    address: Option<IpAddr>,
    out: &Outbox,
) -> Option<(Target, Option<IpAddr>, Duration)> {
    let mut c = lock(config);
    let c = &mut *c;
    if c.servers.is_empty() {
        return None;
    }
    let server = c.servers[c.rng.index(c.servers.len())].clone();
    let size = match c.sizes.sample(&mut c.rng) {
        // Python's "%d": truncated toward zero; a negative size asks for nothing.
        Ok(v) => v.trunc().max(0.0) as u64,
        Err(e) => {
            out.error(format!("sizes: {e}; request skipped"));
            return None;
        }
    };
    let target = Target {
        host: server.name,
        ip: server.ip,
        port: c.port,
        path: format!("/getsize.py?length={size}"),
    };
    let source = if c.bind_source { address } else { None };
    Some((target, source, c.timeout))
}

fn record(target: &Target, fetch: &Fetch) -> magi_proto::Object {
    let size_requested = target
        .path
        .rsplit('=')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let v = json!({
        "url": target.url(),
        "server": target.host,
        "size_requested": size_requested,
        "http_code": fetch.http_code,
        "time_total": fetch.time_total,
        "time_starttransfer": fetch.time_starttransfer,
        "size_download": fetch.size_download,
        "speed_download": fetch.speed_download(),
        "error": fetch.error.clone().unwrap_or_default(),
    });
    match v {
        Value::Object(map) => map,
        _ => magi_proto::Object::new(),
    }
}
