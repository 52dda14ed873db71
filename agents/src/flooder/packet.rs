//! The flooder's packets: address ranges (the original's CIDR strings), value ranges
//! (`minmax(A,B)`), and IPv4 UDP or TCP packets built whole for a raw socket.

use std::net::Ipv4Addr;

use crate::random::Rng;

/// An IPv4 address range: a base and a mask, as `A.A.A.A/N`, `A.A.A.A/M.M.M.M` or
/// `A.A.A.A` (one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's first address (base & mask).
    pub base: u32,
    /// The mask.
    pub mask: u32,
}

impl Cidr {
    /// Parses a range; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<Cidr, String> {
        let bad = |why: &str| {
            format!("{what} '{text}' is not an address range ({why}); give A.A.A.A/N, A.A.A.A/M.M.M.M or A.A.A.A")
        };
        let (addr, mask) = match text.trim().split_once('/') {
            None => (text.trim(), u32::MAX),
            Some((a, m)) => {
                let mask = if let Ok(bits) = m.parse::<u32>() {
                    if bits > 32 {
                        return Err(bad("a prefix is at most 32"));
                    }
                    u32::MAX.checked_shl(32 - bits).unwrap_or(0)
                } else {
                    let m: Ipv4Addr = m.parse().map_err(|_| bad("bad mask"))?;
                    let m = u32::from(m);
                    if m.leading_ones() + m.trailing_zeros() != 32 {
                        return Err(bad("the mask's ones must come first"));
                    }
                    m
                };
                (a, mask)
            }
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("bad address"))?;
        Ok(Cidr {
            base: u32::from(addr) & mask,
            mask,
        })
    }

    /// One address.
    pub fn single(addr: Ipv4Addr) -> Cidr {
        Cidr {
            base: u32::from(addr),
            mask: u32::MAX,
        }
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u64 {
        u64::from(!self.mask) + 1
    }

    /// A random address of the range.
    pub fn pick(&self, rng: &mut Rng) -> Ipv4Addr {
        let offset = if self.mask == u32::MAX {
            0
        } else {
            rng.int_inclusive(0, u64::from(!self.mask)) as u32
        };
        Ipv4Addr::from(self.base | offset)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            Ipv4Addr::from(self.base),
            self.mask.leading_ones()
        )
    }
}

/// An inclusive range of whole numbers: `minmax(A,B)` or one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinMax {
    /// Smallest value.
    pub min: u64,
    /// Largest value.
    pub max: u64,
}

impl MinMax {
    /// Parses `minmax(A,B)` or `N` with both ends within `[0, limit]`; `what` names it.
    pub fn parse(text: &str, what: &str, limit: u64) -> Result<MinMax, String> {
        let t = text.trim();
        let bad =
            || format!("{what} '{text}' must be minmax(A,B) or a whole number, from 0 to {limit}");
        let (min, max) = match t.strip_prefix("minmax(").and_then(|r| r.strip_suffix(')')) {
            Some(inner) => {
                let (a, b) = inner.split_once(',').ok_or_else(bad)?;
                (
                    a.trim().parse::<u64>().map_err(|_| bad())?,
                    b.trim().parse::<u64>().map_err(|_| bad())?,
                )
            }
            None => {
                let n = t.parse::<u64>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if min > max || max > limit {
            return Err(bad());
        }
        Ok(MinMax { min, max })
    }

    /// A random value of the range.
    pub fn pick(&self, rng: &mut Rng) -> u64 {
        if self.min == self.max {
            self.min
        } else {
            rng.int_inclusive(self.min, self.max)
        }
    }
}

/// TCP flag bits by name (the original's `tcpflags`).
pub fn tcp_flag(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "fin" => 0x01,
        "syn" => 0x02,
        "rst" => 0x04,
        "psh" => 0x08,
        "ack" => 0x10,
        "urg" => 0x20,
        _ => return None,
    })
}

/// The transport of a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP datagrams.
    Udp,
    /// TCP segments with the given flags.
    Tcp(u8),
}

/// The ones' complement sum of `data` (big-endian 16-bit words), folded, not inverted.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The Internet checksum of `data` after the pseudo-header sum `start`.
pub fn checksum(data: &[u8], start: u32) -> u16 {
    !(sum(data, start) as u16)
}

/// Writes one whole IPv4 packet into `buf` (cleared first): a 20-byte header, then a UDP
/// or TCP header with its checksum, then `payload` bytes of zeros.
#[allow(clippy::too_many_arguments)]
pub fn build(
    buf: &mut Vec<u8>,
    proto: Proto,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: usize,
    id: u16,
) {
    let transport_len = match proto {
        Proto::Udp => 8,
        Proto::Tcp(_) => 20,
    } + payload;
    let total = 20 + transport_len;
    buf.clear();
    buf.resize(total, 0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    buf[4..6].copy_from_slice(&id.to_be_bytes());
    buf[8] = 64;
    buf[9] = match proto {
        Proto::Udp => 17,
        Proto::Tcp(_) => 6,
    };
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let header = checksum(&buf[..20], 0);
    buf[10..12].copy_from_slice(&header.to_be_bytes());
    let t = &mut buf[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    let check_at = match proto {
        Proto::Udp => {
            t[4..6].copy_from_slice(&(transport_len as u16).to_be_bytes());
            6
        }
        Proto::Tcp(flags) => {
            t[4..8].copy_from_slice(&u32::from(id).wrapping_mul(2_654_435_761).to_be_bytes());
            t[12] = 5 << 4; // data offset: 5 words
            t[13] = flags;
            t[14..16].copy_from_slice(&65535u16.to_be_bytes()); // window
            16
        }
    };
    let pseudo =
        sum(&src.octets(), 0) + sum(&dst.octets(), 0) + u32::from(buf[9]) + transport_len as u32;
    let mut c = checksum(&buf[20..], pseudo);
    if c == 0 && matches!(proto, Proto::Udp) {
        c = 0xffff; // 0 means "no checksum" in UDP
    }
    buf[20 + check_at..22 + check_at].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_in_the_originals_three_forms_and_refuse_the_rest() {
        let c = Cidr::parse("10.1.2.3/24", "dst").unwrap();
        assert_eq!((c.to_string(), c.size()), ("10.1.2.0/24".to_string(), 256));
        assert_eq!(
            Cidr::parse("10.1.2.3/255.255.0.0", "dst")
                .unwrap()
                .to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(Cidr::parse("10.1.2.3", "dst").unwrap().size(), 1);
        for bad in ["10.1.2/24", "10.1.2.3/33", "10.1.2.3/255.0.255.0", "x"] {
            let e = Cidr::parse(bad, "dst").unwrap_err();
            assert!(e.starts_with(&format!("dst '{bad}'")), "{e}");
        }
        let mut rng = Rng::seeded(1);
        for _ in 0..100 {
            let a = u32::from(c.pick(&mut rng));
            assert_eq!(a & c.mask, c.base);
        }
    }

    #[test]
    fn minmax_parses_a_range_or_a_number_within_its_limit() {
        assert_eq!(
            MinMax::parse("minmax(10, 20)", "length", 100).unwrap(),
            MinMax { min: 10, max: 20 }
        );
        assert_eq!(
            MinMax::parse("7", "length", 100).unwrap(),
            MinMax { min: 7, max: 7 }
        );
        for bad in ["minmax(20,10)", "minmax(1,200)", "-1", "minmax(1)", "1.5"] {
            assert!(MinMax::parse(bad, "length", 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn packets_carry_valid_ip_and_transport_checksums() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut buf = Vec::new();
        for proto in [Proto::Udp, Proto::Tcp(0x02)] {
            build(&mut buf, proto, src, dst, 1234, 80, 33, 7);
            assert_eq!(u16::from_be_bytes([buf[2], buf[3]]) as usize, buf.len());
            // A correct checksum makes the sum over the covered bytes 0xffff.
            assert_eq!(sum(&buf[..20], 0), 0xffff);
            let len = (buf.len() - 20) as u32;
            let pseudo = sum(&src.octets(), 0) + sum(&dst.octets(), 0) + u32::from(buf[9]) + len;
            assert_eq!(sum(&buf[20..], pseudo), 0xffff, "{proto:?}");
        }
        assert_eq!(buf[20 + 13], 0x02, "the SYN flag");
    }
}
