//! What shapes a link: an `htb` class at the segment's bandwidth on each sending side,
//! with a DropTail queue under it (`bfifo` of 50 full-size packets, ns-2's default queue)
//! or, for a delay, `netem`; loss by nftables' random drop.
//!
//! Shaping is on egress, so each direction of a link is shaped by its sender: a node's
//! `ethK` towards the segment, and for a LAN the bridge port towards the member. This is
//! Emulab's LAN model: every member's attachment to the LAN carries at most the LAN's
//! bandwidth each way.

use crate::topology::Shape;

/// ns-2's default queue: 50 packets (of 1,500 bytes here).
pub const QUEUE_BYTES: u64 = 50 * 1500;

/// The name of the nftables table that drops packets for loss, in each lossy namespace.
pub const LOSS_TABLE: &str = "magi_testbed_loss";

/// `tc -b` lines that shape interface `dev` to `shape`.
pub fn tc_lines(dev: &str, shape: &Shape) -> Vec<String> {
    vec![
        format!("qdisc add dev {dev} root handle 1: htb default 1"),
        class_line("add", dev, shape.bandwidth_bps),
        leaf_line("add", dev, shape.delay_us),
    ]
}

/// The `tc` line (without `tc`) that makes (`add`) or changes (`change`) the htb class
/// holding `dev` to `rate` bits/s.
pub fn class_line(verb: &str, dev: &str, rate: u64) -> String {
    // The bucket holds 10 ms of traffic (at least two full-size packets), so the average
    // rate is the configured one and bursts stay short.
    let burst = (rate / 8 / 100).max(3000);
    format!(
        "class {verb} dev {dev} parent 1: classid 1:1 htb rate {rate}bit ceil {rate}bit burst {burst} cburst {burst}"
    )
}

/// The `tc` line (without `tc`) that makes (`add`) or replaces (`replace`) the queue under
/// `dev`'s class: DropTail, or netem for a delay above 0.
pub fn leaf_line(verb: &str, dev: &str, delay_us: u64) -> String {
    let leaf = if delay_us > 0 {
        format!("netem delay {delay_us}us limit 1000")
    } else {
        format!("bfifo limit {QUEUE_BYTES}")
    };
    format!("qdisc {verb} dev {dev} parent 1:1 handle 10: {leaf}")
}

/// The nftables ruleset that drops each packet leaving the given interfaces with the given
/// probability (`nft -f -` input), or `None` when nothing is lossy.
pub fn loss_ruleset(lossy: &[(String, f64)]) -> Option<String> {
    let rules: Vec<String> = lossy
        .iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(dev, p)| {
            // Per million, so 0.0001 % is the finest loss rate.
            let threshold = (p * 1e6).round() as u64;
            format!("    oifname \"{dev}\" numgen random mod 1000000 < {threshold} drop")
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    Some(format!(
        "table inet {LOSS_TABLE} {{\n  chain egress {{\n    type filter hook postrouting priority 0; policy accept;\n{}\n  }}\n}}\n",
        rules.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(bandwidth_bps: u64, delay_us: u64) -> Shape {
        Shape {
            bandwidth_bps,
            delay_us,
            loss: 0.0,
            queue: "DropTail".into(),
        }
    }

    #[test]
    fn a_link_is_an_htb_class_with_a_droptail_queue() {
        let lines = tc_lines("eth0", &shape(10_000_000, 0));
        assert_eq!(lines[0], "qdisc add dev eth0 root handle 1: htb default 1");
        assert!(lines[1].contains("rate 10000000bit ceil 10000000bit burst 12500 "));
        assert_eq!(
            lines[2],
            "qdisc add dev eth0 parent 1:1 handle 10: bfifo limit 75000"
        );
    }

    #[test]
    fn a_delay_puts_netem_under_the_class() {
        let lines = tc_lines("eth1", &shape(1_000_000, 10_000));
        assert!(
            lines[2].ends_with("netem delay 10000us limit 1000"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn loss_drops_at_random_per_million_on_the_lossy_interfaces_only() {
        assert_eq!(loss_ruleset(&[("eth0".into(), 0.0)]), None);
        let r = loss_ruleset(&[("eth0".into(), 0.0), ("eth1".into(), 0.05)]).unwrap();
        assert!(
            r.contains("oifname \"eth1\" numgen random mod 1000000 < 50000 drop"),
            "{r}"
        );
        assert!(!r.contains("eth0"), "{r}");
    }
}
