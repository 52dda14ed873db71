//! The `pktcounters` module: bytes and packets per peer node and direction, per interval
//! (magi-spec §5.3), without touching anyone else's firewall rules.
//!
//! Every `interval` seconds, on multiples of the interval since the epoch (so on whole
//! seconds), while collecting, the agent reads its counters and records the delta since
//! the previous reading, one record per peer and direction:
//! `{intfName, peerNode, trafficDirection: "in"|"out", packets, bytes, counter}`, then
//! `{intfName: "total", trafficDirection, packets, bytes, counter}` for each direction
//! with traffic, as the original. `counter` says what was counted: `nftables ip
//! saddr/daddr` (the agent's own table, see [`nft`]) or `interface /proc/net/dev` (the
//! fallback, see [`interfaces`]).
//!
//! execargs: `interval` (whole seconds, at least 1, default 1), `peers` (node names to
//! count, default every other node of the host map), `counter` (`auto`, `nftables` or
//! `interface`; `auto` uses nftables when it can).

pub mod interfaces;
pub mod nft;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::runtime::{unknown_method, Agent, Context, Outbox};

/// The methods of the `pktcounters` module.
pub const METHODS: &[&str] = &[
    "startCollection",
    "stopCollection",
    "sense",
    "setConfiguration",
    "confirmConfiguration",
];

/// What `counter` says for nftables counts.
pub const COUNTED_NFT: &str = "nftables ip saddr/daddr";
/// What `counter` says for interface counts.
pub const COUNTED_INTERFACE: &str = "interface /proc/net/dev";

/// Direction of traffic relative to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Towards this node.
    In,
    /// From this node.
    Out,
}

impl Direction {
    /// `"in"` or `"out"`, as in the records.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What one counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// `intfName`.
    pub intf: String,
    /// `peerNode`.
    pub peer: String,
    /// `trafficDirection`.
    pub direction: Direction,
}

/// A cumulative count.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Which counter.
    pub key: CounterKey,
    /// Packets so far.
    pub packets: u64,
    /// Bytes so far.
    pub bytes: u64,
}

/// Where counts come from.
#[derive(Debug)]
enum Counters {
    Nft(nft::Table),
    Interfaces(interfaces::Interfaces),
}

impl Counters {
    async fn read(&self) -> Result<Vec<Reading>, String> {
        match self {
            Counters::Nft(t) => t.read().await,
            Counters::Interfaces(i) => i.read().await,
        }
    }

    fn counted(&self) -> &'static str {
        match self {
            Counters::Nft(_) => COUNTED_NFT,
            Counters::Interfaces(_) => COUNTED_INTERFACE,
        }
    }

    async fn remove(&mut self) -> Result<(), String> {
        match self {
            Counters::Nft(t) => t.remove().await,
            Counters::Interfaces(_) => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Auto,
    Nftables,
    Interface,
}

/// Latest bytes per (peer, direction), for `sense`.
type Latest = Arc<Mutex<HashMap<(String, Direction), u64>>>;

struct Collection {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The packet-counter agent.
pub struct PktCountersAgent {
    ctx: Context,
    interval: u64,
    peers: Option<Vec<String>>,
    mode: Mode,
    latest: Latest,
    collection: Option<Collection>,
}

impl PktCountersAgent {
    fn configure(&mut self, args: &Args) -> Result<(), String> {
        if let Some(v) = args.f64("interval")? {
            // The original: int seconds, minimum 1.
            if !(v.is_finite() && v < 86_400.0) {
                return Err(format!("interval must be a number of seconds, not {v}"));
            }
            self.interval = (v as u64).max(1);
        }
        if let Some(names) = args.text_list("peers")? {
            for n in &names {
                self.ctx
                    .hosts
                    .resolve(n)
                    .map_err(|e| format!("peers: {e}"))?;
            }
            self.peers = Some(names);
        }
        if let Some(c) = args.text("counter")? {
            self.mode = match c.as_str() {
                "auto" => Mode::Auto,
                "nftables" | "nft" => Mode::Nftables,
                "interface" | "interfaces" => Mode::Interface,
                other => {
                    return Err(format!(
                        "counter must be auto, nftables or interface, not '{other}'"
                    ))
                }
            };
        }
        if args.has("filters") {
            self.ctx.out.warn(
                "filters (custom iptables counters) are not supported; counting per peer node",
            );
        }
        Ok(())
    }

    /// The peers to count: name, address. Peers sharing this node's address cannot be
    /// told apart from it and are left out (with a warning).
    fn peers(&self) -> Vec<(String, IpAddr)> {
        let me = self.ctx.address;
        let wanted = |n: &str| self.peers.as_ref().is_none_or(|p| p.iter().any(|x| x == n));
        let mut out = Vec::new();
        for (name, ip) in self.ctx.hosts.iter() {
            if name == self.ctx.node || !wanted(name) {
                continue;
            }
            if Some(ip) == me {
                self.ctx.out.warn(format!(
                    "peer {name} has this node's address {ip}; its traffic cannot be told apart"
                ));
                continue;
            }
            out.push((name.to_string(), ip));
        }
        if let Some(p) = &self.peers {
            // Names given as addresses or resolved by the system are not in the map.
            for n in p {
                if !out.iter().any(|(name, _)| name == n) && n != &self.ctx.node {
                    if let Ok(ip) = self.ctx.hosts.resolve(n) {
                        if Some(ip) != me {
                            out.push((n.clone(), ip));
                        }
                    }
                }
            }
        }
        out
    }

    async fn counters(&self) -> Result<Counters, String> {
        let peers = self.peers();
        let mut routes = Vec::new();
        for (name, ip) in &peers {
            routes.push((
                name.clone(),
                interfaces::route_dev(*ip, self.ctx.address).await,
            ));
        }
        let nft_failure = match (self.mode, self.ctx.address, nft::program()) {
            (Mode::Interface, _, _) => None,
            (_, None, _) => Some("this node has no address of its own to count by".to_string()),
            (_, _, None) => Some("nft is not installed".to_string()),
            (_, Some(me), Some(program)) => {
                let table = nft::table_name(&self.ctx.run, &self.ctx.name, &self.ctx.node);
                let local = crate::netif::list().await.unwrap_or_default();
                let nft_peers: Vec<nft::Peer> = peers
                    .iter()
                    .zip(&routes)
                    .map(|((name, ip), (_, dev))| {
                        let intf = dev.clone().unwrap_or_else(|| "any".to_string());
                        let link_end = match ip {
                            IpAddr::V4(v4) => crate::netif::link_end(&local, &intf, *v4),
                            IpAddr::V6(_) => false,
                        };
                        nft::Peer {
                            name: name.clone(),
                            ip: *ip,
                            intf,
                            link_end,
                        }
                    })
                    .collect();
                match nft::Table::create(program, table, me, &nft_peers).await {
                    Ok(t) => {
                        self.ctx.out.info(format!(
                            "counting {} peer(s) in nftables table inet {}",
                            nft_peers.len(),
                            t.name()
                        ));
                        return Ok(Counters::Nft(t));
                    }
                    Err(e) => Some(e),
                }
            }
        };
        if let Some(why) = nft_failure {
            if self.mode == Mode::Nftables {
                return Err(format!("cannot count with nftables: {why}"));
            }
            self.ctx.out.warn(format!(
                "counting interface statistics instead of per-peer nftables counters: {why}"
            ));
        }
        let text = tokio::fs::read_to_string("/proc/net/dev")
            .await
            .map_err(|e| format!("cannot read /proc/net/dev: {e}"))?;
        let available = interfaces::parse_proc_net_dev(&text);
        let me_is_loopback = self.ctx.address.is_none_or(|a| a.is_loopback());
        let i = interfaces::Interfaces::choose(&routes, &available, me_is_loopback);
        for (dev, peers) in &i.peers_by_dev {
            if peers.len() > 1 {
                self.ctx.out.warn(format!(
                    "interface {dev} leads to {} peers ({}); its records say peerNode '{}'",
                    peers.len(),
                    peers.join(", "),
                    interfaces::UNKNOWN_PEER
                ));
            }
        }
        Ok(Counters::Interfaces(i))
    }

    async fn start_collection(&mut self) -> Result<Value, String> {
        // Restarting re-creates the counters, as the original's setDefaults did.
        self.stop_collection().await;
        let counters = self.counters().await?;
        // The baseline is read before answering, so all traffic after the answer counts.
        let baseline = match counters.read().await {
            Ok(r) => r
                .into_iter()
                .map(|r| (r.key, (r.packets, r.bytes)))
                .collect(),
            Err(e) => {
                self.ctx.out.error(format!("cannot read counters: {e}"));
                HashMap::new()
            }
        };
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(sample_loop(
            counters,
            baseline,
            self.interval,
            self.ctx.out.clone(),
            self.latest.clone(),
            stop_rx,
        ));
        self.collection = Some(Collection { stop, task });
        Ok(Value::Bool(true))
    }

    async fn stop_collection(&mut self) {
        if let Some(c) = self.collection.take() {
            let _ = c.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(3), c.task).await;
        }
    }

    fn sense(&self, args: &Args) -> Result<Value, String> {
        let peer = args.req_text("peerNode")?;
        let direction = match args.req_text("trafficDirection")?.as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            other => {
                return Err(format!(
                    "trafficDirection must be 'in' or 'out', not '{other}'"
                ))
            }
        };
        let low = args.req_f64("thresholdLow")?;
        let high = args.req_f64("thresholdHigh")?;
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(peer.clone(), direction))
            .copied();
        // No record yet: the original's lookup failed and it answered 0.
        let result = match latest {
            None => {
                self.ctx.out.warn(format!(
                    "sense: no record yet for {peer} {}; answering 0",
                    direction.as_str()
                ));
                0
            }
            Some(b) if (b as f64) < low => -1,
            Some(b) if (b as f64) > high => 1,
            Some(_) => 0,
        };
        Ok(json!({ "result": result }))
    }
}

impl Agent for PktCountersAgent {
    async fn start(ctx: Context, execargs: Args) -> Result<Self, String> {
        let mut agent = PktCountersAgent {
            ctx,
            interval: 1,
            peers: None,
            mode: Mode::Auto,
            latest: Latest::default(),
            collection: None,
        };
        agent.configure(&execargs)?;
        Ok(agent)
    }

    async fn call(&mut self, method: &str, args: Args) -> Result<Value, String> {
        match method {
            "startCollection" => self.start_collection().await,
            "stopCollection" => {
                self.stop_collection().await;
                Ok(Value::Bool(true))
            }
            "sense" => self.sense(&args),
            // Effective at the next startCollection.
            "setConfiguration" => {
                self.configure(&args)?;
                Ok(Value::Bool(true))
            }
            "confirmConfiguration" => Ok(Value::Bool(true)),
            _ => Err(unknown_method(method, METHODS)),
        }
    }

    async fn stop(&mut self) {
        self.stop_collection().await;
    }
}

/// Seconds since the epoch, as a float.
fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The first multiple of `interval` seconds after `now`.
fn next_boundary(now: f64, interval: u64) -> f64 {
    let i = interval as f64;
    ((now / i).floor() + 1.0) * i
}

async fn sample_loop(
    mut counters: Counters,
    mut previous: HashMap<CounterKey, (u64, u64)>,
    interval: u64,
    out: Outbox,
    latest: Latest,
    mut stop: oneshot::Receiver<()>,
) {
    let counted = counters.counted();
    let mut boundary = next_boundary(now_epoch(), interval);
    loop {
        let wait = Duration::from_secs_f64((boundary - now_epoch()).max(0.0));
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tokio::time::sleep(wait) => {}
        }
        match counters.read().await {
            Ok(readings) => {
                let records = deltas(&readings, &previous, counted);
                remember(&latest, &records);
                for data in records {
                    out.record(data);
                }
                previous = readings
                    .into_iter()
                    .map(|r| (r.key, (r.packets, r.bytes)))
                    .collect();
            }
            Err(e) => out.error(format!("cannot read counters: {e}")),
        }
        let now = now_epoch();
        while boundary <= now {
            boundary += interval as f64;
        }
    }
    if let Err(e) = counters.remove().await {
        out.error(e);
    }
}

/// Keeps each peer's latest bytes per direction, for `sense`.
fn remember(latest: &Latest, records: &[magi_proto::Object]) {
    let mut l = latest.lock().unwrap_or_else(|p| p.into_inner());
    for r in records {
        let peer = r.get("peerNode").and_then(Value::as_str);
        let direction = match r.get("trafficDirection").and_then(Value::as_str) {
            Some("in") => Direction::In,
            _ => Direction::Out,
        };
        if let (Some(peer), Some(bytes)) = (peer, r.get("bytes").and_then(Value::as_u64)) {
            l.insert((peer.to_string(), direction), bytes);
        }
    }
}

/// The records for one interval: each counter's delta, then the totals.
fn deltas(
    readings: &[Reading],
    previous: &HashMap<CounterKey, (u64, u64)>,
    counted: &str,
) -> Vec<magi_proto::Object> {
    let mut records = Vec::new();
    let mut totals = [(0u64, 0u64); 2];
    for r in readings {
        let (p0, b0) = previous.get(&r.key).copied().unwrap_or((0, 0));
        // A counter that went backwards was reset: count from zero.
        let packets = if r.packets >= p0 {
            r.packets - p0
        } else {
            r.packets
        };
        let bytes = if r.bytes >= b0 { r.bytes - b0 } else { r.bytes };
        let t = &mut totals[r.key.direction as usize];
        t.0 += packets;
        t.1 += bytes;
        records.push(object(json!({
            "intfName": r.key.intf,
            "peerNode": r.key.peer,
            "trafficDirection": r.key.direction.as_str(),
            "packets": packets,
            "bytes": bytes,
            "counter": counted,
        })));
    }
    for (direction, (packets, bytes)) in [Direction::In, Direction::Out].into_iter().zip(totals) {
        if packets > 0 {
            records.push(object(json!({
                "intfName": "total",
                "trafficDirection": direction.as_str(),
                "packets": packets,
                "bytes": bytes,
                "counter": counted,
            })));
        }
    }
    records
}

fn object(v: Value) -> magi_proto::Object {
    match v {
        Value::Object(m) => m,
        _ => magi_proto::Object::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(peer: &str, direction: Direction, packets: u64, bytes: u64) -> Reading {
        Reading {
            key: CounterKey {
                intf: "lo".into(),
                peer: peer.into(),
                direction,
            },
            packets,
            bytes,
        }
    }

    #[test]
    fn records_are_per_interval_deltas_with_totals_as_the_original() {
        let prev: HashMap<CounterKey, (u64, u64)> = [
            (reading("a", Direction::In, 0, 0).key, (10, 1000)),
            (reading("a", Direction::Out, 0, 0).key, (5, 500)),
        ]
        .into_iter()
        .collect();
        let now = [
            reading("a", Direction::In, 15, 3000),
            reading("a", Direction::Out, 5, 500),
            reading("b", Direction::In, 2, 80),
        ];
        let r = deltas(&now, &prev, COUNTED_NFT);
        assert_eq!(r.len(), 4, "{r:?}"); // 3 counters + total in (total out had no packets)
        assert_eq!(r[0]["bytes"], 2000);
        assert_eq!(r[0]["packets"], 5);
        assert_eq!(r[0]["peerNode"], "a");
        assert_eq!(r[0]["trafficDirection"], "in");
        assert_eq!(r[0]["counter"], COUNTED_NFT);
        assert_eq!(r[1]["bytes"], 0);
        assert_eq!(r[2]["bytes"], 80);
        assert_eq!(r[3]["intfName"], "total");
        assert_eq!(r[3]["bytes"], 2080);
        assert_eq!(r[3]["packets"], 7);
        assert!(r[3].get("peerNode").is_none());
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        let prev: HashMap<CounterKey, (u64, u64)> =
            [(reading("a", Direction::In, 0, 0).key, (10, 1000))]
                .into_iter()
                .collect();
        let r = deltas(
            &[reading("a", Direction::In, 3, 300)],
            &prev,
            COUNTED_INTERFACE,
        );
        assert_eq!(r[0]["bytes"], 300);
    }

    #[test]
    fn samples_fall_on_multiples_of_the_interval() {
        assert_eq!(next_boundary(100.2, 1), 101.0);
        assert_eq!(next_boundary(100.0, 1), 101.0);
        assert_eq!(next_boundary(101.5, 2), 102.0);
        assert_eq!(next_boundary(102.0, 2), 104.0);
    }
}
