//! The `flooder` agent: floods an address range with UDP or TCP packets at a flat, rising
//! or pulsing rate, from a raw socket, recording what it sent every second. The interface
//! is the original's `flooder` module (deter-project/magi-modules flooder/flooder.idl:
//! startFlood, stopFlood; variables dst, src, proto, length, ratetype, highrate, lowrate,
//! hightime, lowtime, risetime, falltime, sport, dport, tcpflags), which drove a C program;
//! this is a Rust agent of its own. Needs CAP_NET_RAW (its manifest asks for `net_raw`).

pub mod packet;
pub mod rate;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::args::Args;
use crate::random::Rng;
use crate::runtime::{unknown_method, Agent, Context, Outbox};
use packet::{Cidr, MinMax, Proto};
use rate::Rate;

/// The methods, in the manifest's order.
pub const METHODS: &[&str] = &[
    "startFlood",
    "stopFlood",
    "stop",
    "setConfiguration",
    "confirmConfiguration",
];

/// Highest rate accepted, packets per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Largest payload accepted, bytes (an IPv4 packet is at most 65 535 bytes).
pub const MAX_LENGTH: u64 = 65_000;

/// A flood's configuration, as given (validated as a whole before it replaces the last).
#[derive(Debug, Clone)]
struct Config {
    dst: Option<Cidr>,
    src: Option<Cidr>,
    tcp: bool,
    length: MinMax,
    ratetype: String,
    highrate: f64,
    lowrate: f64,
    hightime: f64,
    lowtime: f64,
    risetime: f64,
    falltime: f64,
    sport: MinMax,
    dport: MinMax,
    tcpflags: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dst: None,
            src: None,
            tcp: false,
            length: MinMax { min: 0, max: 0 },
            ratetype: "flat".into(),
            highrate: 100.0,
            lowrate: 0.0,
            hightime: 1000.0,
            lowtime: 1000.0,
            risetime: 0.0,
            falltime: 0.0,
            sport: MinMax { min: 0, max: 65535 },
            dport: MinMax { min: 0, max: 65535 },
            tcpflags: 0x02,
        }
    }
}

/// The `flooder` agent.
pub struct FlooderAgent {
    ctx: Context,
    config: Config,
    flood: Option<Flood>,
}

struct Flood {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Totals>,
}

/// What a flood sent.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    packets: u64,
    bytes: u64,
    errors: u64,
    seconds: f64,
}

impl FlooderAgent {
    fn configure(&mut self, args: &Args) -> Result<(), String> {
        let mut c = self.config.clone();
        let range = |key: &str, c: Option<Cidr>| -> Result<Option<Cidr>, String> {
            match args.text(key)? {
                None => Ok(c),
                Some(t) => self.range(&t, key).map(Some),
            }
        };
        c.dst = range("dst", c.dst)?;
        c.src = range("src", c.src)?;
        // The original's `srcmask`: the bits of the source address kept from `src` (or the
        // node's own address); the others vary (`0.0.0.0`: any source).
        if let Some(mask) = args.text("srcmask")? {
            let base = match c.src {
                Some(cidr) => std::net::Ipv4Addr::from(cidr.base).to_string(),
                None => match self.ctx.address {
                    Some(std::net::IpAddr::V4(a)) => a.to_string(),
                    _ => return Err("srcmask needs src (an IPv4 address) on this node".into()),
                },
            };
            c.src = Some(Cidr::parse(&format!("{base}/{}", mask.trim()), "srcmask")?);
        }
        if let Some(p) = args.text("proto")? {
            c.tcp = match p.to_ascii_lowercase().as_str() {
                "udp" => false,
                "tcp" => true,
                _ => return Err(format!("proto must be udp or tcp, not '{p}'")),
            };
        }
        for (key, slot, limit) in [
            ("length", &mut c.length, MAX_LENGTH),
            ("sport", &mut c.sport, 65535),
            ("dport", &mut c.dport, 65535),
        ] {
            if let Some(t) = args.text(key)? {
                *slot = MinMax::parse(&t, key, limit)?;
            }
        }
        if let Some(t) = args.text("ratetype")? {
            if !["flat", "rampup", "pulse"].contains(&t.as_str()) {
                return Err(format!("ratetype must be flat, rampup or pulse, not '{t}'"));
            }
            c.ratetype = t;
        }
        for (key, slot, max) in [
            ("highrate", &mut c.highrate, MAX_RATE),
            ("lowrate", &mut c.lowrate, MAX_RATE),
            ("hightime", &mut c.hightime, 86_400_000.0),
            ("lowtime", &mut c.lowtime, 86_400_000.0),
            ("risetime", &mut c.risetime, 86_400_000.0),
            ("falltime", &mut c.falltime, 86_400_000.0),
        ] {
            if let Some(v) = args.f64(key)? {
                if !(0.0..=max).contains(&v) {
                    return Err(format!("{key} must be from 0 to {max}, not {v}"));
                }
                *slot = v;
            }
        }
        if let Some(flags) = args.text_list("tcpflags")? {
            let mut bits = 0;
            for f in &flags {
                bits |= packet::tcp_flag(f).ok_or_else(|| {
                    format!("tcpflags: '{f}' is not one of SYN, FIN, RST, ACK, PSH, URG")
                })?;
            }
            c.tcpflags = bits;
        }
        rate_of(&c)?;
        self.config = c;
        Ok(())
    }

    /// An address range, or a node's name (one address).
    fn range(&self, text: &str, key: &str) -> Result<Cidr, String> {
        let looks_like_address = text.trim().starts_with(|ch: char| ch.is_ascii_digit());
        if looks_like_address {
            return Cidr::parse(text, key);
        }
        match self
            .ctx
            .hosts
            .resolve(text.trim())
            .map_err(|e| format!("{key}: {e}"))?
        {
            IpAddr::V4(a) => Ok(Cidr::single(a)),
            IpAddr::V6(a) => Err(format!("{key}: {text} is {a}; the flooder sends IPv4 only")),
        }
    }

    fn start_flood(&mut self) -> Result<Value, String> {
        if self.flood.as_ref().is_some_and(|f| !f.thread.is_finished()) {
            return Err("a flood is already running; call stopFlood first".into());
        }
        let c = self.config.clone();
        let dst = c.dst.ok_or(
            "dst is not set: setConfiguration(dst=A.A.A.A/N or a node name) says what to flood",
        )?;
        let src = match (c.src, self.ctx.address) {
            (Some(s), _) => s,
            (None, Some(IpAddr::V4(a))) => Cidr::single(a),
            // Zero: the kernel fills in the address of the outgoing interface.
            _ => Cidr::single(Ipv4Addr::UNSPECIFIED),
        };
        let socket = raw_socket()?;
        let rate = rate_of(&c)?;
        let proto = if c.tcp {
            Proto::Tcp(c.tcpflags)
        } else {
            Proto::Udp
        };
        let plan = Plan {
            dst,
            src,
            proto,
            length: c.length,
            sport: c.sport,
            dport: c.dport,
            rate,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, out) = (stop.clone(), self.ctx.out.clone());
        let thread = std::thread::Builder::new()
            .name("flood".into())
            .spawn(move || plan.run(&socket, &flag, &out))
            .map_err(|e| format!("cannot start the flood thread: {e}"))?;
        self.flood = Some(Flood { stop, thread });
        Ok(Value::Bool(true))
    }

    fn stop_flood(&mut self) -> Value {
        let Some(flood) = self.flood.take() else {
            return json!({"retVal": true, "packets": 0});
        };
        flood.stop.store(true, Ordering::Relaxed);
        let t = flood.thread.join().unwrap_or_default();
        let summary = json!({"type": "total", "packets": t.packets, "bytes": t.bytes,
                             "errors": t.errors, "seconds": t.seconds});
        if let Value::Object(o) = summary.clone() {
            self.ctx.out.record(o);
        }
        let mut answer = summary;
        answer["retVal"] = Value::Bool(true);
        answer
    }
}

fn rate_of(c: &Config) -> Result<Rate, String> {
    let (low, high) = (c.lowrate, c.highrate);
    let ms = |v: f64| v / 1000.0;
    Ok(match c.ratetype.as_str() {
        "rampup" => Rate::RampUp {
            low,
            high,
            rise: ms(c.risetime).max(1e-3),
        },
        "pulse" => {
            if c.hightime + c.lowtime + c.risetime + c.falltime <= 0.0 {
                return Err("a pulse needs some hightime, lowtime, risetime or falltime".into());
            }
            Rate::Pulse {
                low,
                high,
                low_time: ms(c.lowtime),
                rise: ms(c.risetime),
                high_time: ms(c.hightime),
                fall: ms(c.falltime),
            }
        }
        _ => Rate::Flat { high },
    })
}

/// What the flood thread sends.
struct Plan {
    dst: Cidr,
    src: Cidr,
    proto: Proto,
    length: MinMax,
    sport: MinMax,
    dport: MinMax,
    rate: Rate,
}

impl Plan {
    /// Sends at the planned rate until `stop`, recording each second's counts.
    fn run(&self, socket: &OwnedFd, stop: &AtomicBool, out: &Outbox) -> Totals {
        let mut rng = Rng::from_entropy();
        let mut buf = Vec::with_capacity(2048);
        let start = Instant::now();
        let (mut total, mut second) = (Totals::default(), Totals::default());
        let (mut due, mut last, mut next_report) = (0.0f64, 0.0f64, 1.0f64);
        let mut first_error: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            let t = start.elapsed().as_secs_f64();
            // Packets owed since the last pass; a stall (a busy machine) does not turn into
            // a burst of more than 50 ms worth.
            due = (due + self.rate.packets_between(last, t)).min(self.rate.at(t) * 0.05 + 1.0);
            last = t;
            while due >= 1.0 && !stop.load(Ordering::Relaxed) {
                due -= 1.0;
                let id = rng.next_u64() as u16;
                let dst = self.dst.pick(&mut rng);
                packet::build(
                    &mut buf,
                    self.proto,
                    self.src.pick(&mut rng),
                    dst,
                    self.sport.pick(&mut rng) as u16,
                    self.dport.pick(&mut rng) as u16,
                    self.length.pick(&mut rng) as usize,
                    id,
                );
                match send_to(socket, &buf, dst) {
                    Ok(()) => {
                        second.packets += 1;
                        second.bytes += buf.len() as u64;
                    }
                    Err(e) => {
                        second.errors += 1;
                        if first_error.is_none() {
                            let text = format!("sending to {dst} failed: {e}");
                            out.warn(text.clone());
                            first_error = Some(text);
                        }
                    }
                }
            }
            if t >= next_report {
                total.packets += second.packets;
                total.bytes += second.bytes;
                total.errors += second.errors;
                out.record(object(json!({"type": "second", "packets": second.packets,
                    "bytes": second.bytes, "errors": second.errors, "rate": self.rate.at(t)})));
                second = Totals::default();
                next_report += 1.0;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        total.packets += second.packets;
        total.bytes += second.bytes;
        total.errors += second.errors;
        total.seconds = start.elapsed().as_secs_f64();
        total
    }
}

fn object(v: Value) -> magi_proto::Object {
    match v {
        Value::Object(o) => o,
        _ => magi_proto::Object::new(),
    }
}

/// A raw IPv4 socket on which we write whole packets, headers included.
fn raw_socket() -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot open a raw socket ({e}): the flooder needs CAP_NET_RAW (its manifest asks for net_raw)"
        ));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_to(socket: &OwnedFd, packet: &[u8], dst: Ipv4Addr) -> std::io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffer and the address outlive the call; the sizes are theirs.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Agent for FlooderAgent {
    async fn start(ctx: Context, execargs: Args) -> Result<Self, String> {
        let mut agent = FlooderAgent {
            ctx,
            config: Config::default(),
            flood: None,
        };
        agent.configure(&execargs)?;
        Ok(agent)
    }

    async fn call(&mut self, method: &str, args: Args) -> Result<Value, String> {
        match method {
            "startFlood" => self.start_flood(),
            "stopFlood" => Ok(self.stop_flood()),
            "stop" => {
                self.stop_flood();
                Ok(Value::Bool(true))
            }
            "setConfiguration" => {
                self.configure(&args)?;
                Ok(Value::Bool(true))
            }
            "confirmConfiguration" => Ok(Value::Bool(true)),
            _ => Err(unknown_method(method, METHODS)),
        }
    }

    async fn stop(&mut self) {
        self.stop_flood();
    }
}
