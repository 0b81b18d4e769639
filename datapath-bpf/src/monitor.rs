//! `cilium monitor`'s text for events: the one-line summaries of
//! `pkg/monitor/datapath_drop.go`, `datapath_trace.go`,
//! `datapath_policy.go` and the connection summary of `dissect.go`
//! (cilium/cilium 1.17; the format, not the code), as `Display` of
//! [`DatapathEvent`] and its parts.
//!
//! ```text
//! xx drop (Policy denied) flow 0x0 to endpoint 101, ifindex 12, file datapath.bpf.c:120, identity 20001->10001: 10.2.0.2:40000 -> 10.1.0.2:80 tcp SYN
//! -> endpoint 1002 flow 0x0, identity 5001->5002 state new ifindex 20 orig-ip 0.0.0.0: 10.1.0.2:40000 -> 10.1.0.3:80 tcp SYN
//! Policy verdict log: flow 0x0 local EP ID 1002, remote ID 5001, proto 6, ingress, action deny, auth: disabled, match L3-L4, 10.1.0.2:40000 -> 10.1.0.3:80 tcp SYN
//! ```
//! Interfaces are shown by index: the reader may be in another namespace
//! than the interface.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::events::{
    bpf_file_name, policy_match_name, trace_reason_name, DatapathEvent, DropNotify, LostEvents,
    ObsPoint, PolicyVerdict, TraceNotify,
};
use crate::maps::reason;

/// What a captured packet's first bytes say: addresses, protocol, ports,
/// TCP flags or ICMP type (Cilium's `GetConnectionSummary`).
///
/// ```
/// use podnet_datapath::monitor::PacketSummary;
/// // Ethernet + IPv4 + TCP SYN 10.0.0.1:1000 -> 10.0.0.2:80.
/// let mut p = vec![0u8; 14 + 20 + 20];
/// p[12] = 0x08;
/// p[14] = 0x45;
/// p[14 + 9] = 6;
/// p[14 + 12..14 + 16].copy_from_slice(&[10, 0, 0, 1]);
/// p[14 + 16..14 + 20].copy_from_slice(&[10, 0, 0, 2]);
/// p[34..36].copy_from_slice(&1000u16.to_be_bytes());
/// p[36..38].copy_from_slice(&80u16.to_be_bytes());
/// p[34 + 13] = 0x02;
/// let s = PacketSummary::parse(&p).unwrap();
/// assert_eq!(s.to_string(), "10.0.0.1:1000 -> 10.0.0.2:80 tcp SYN");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSummary {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol (upper layer, after IPv6 extension headers).
    pub proto: u8,
    /// Source port (TCP/UDP), else 0.
    pub sport: u16,
    /// Destination port (TCP/UDP), else 0.
    pub dport: u16,
    /// TCP flags byte (TCP only).
    pub tcp_flags: u8,
    /// ICMP / `ICMPv6` type and code.
    pub icmp: Option<(u8, u8)>,
}

impl PacketSummary {
    /// Parses Ethernet, IPv4 or IPv6 and the L4 header; `None` when the
    /// bytes hold no IP header.
    #[must_use]
    pub fn parse(p: &[u8]) -> Option<PacketSummary> {
        let ethertype = u16::from_be_bytes([*p.get(12)?, *p.get(13)?]);
        let l3 = p.get(14..)?;
        let (src, dst, mut proto, mut off) = match ethertype {
            0x0800 => {
                let ihl = usize::from(l3.first()? & 0xf) * 4;
                let a: [u8; 4] = l3.get(12..16)?.try_into().ok()?;
                let b: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
                let frag = u16::from_be_bytes([*l3.get(6)?, *l3.get(7)?]) & 0x1fff;
                // A later fragment carries no L4 header.
                let proto = if frag != 0 { 0 } else { *l3.get(9)? };
                (
                    IpAddr::from(Ipv4Addr::from(a)),
                    IpAddr::from(Ipv4Addr::from(b)),
                    proto,
                    ihl,
                )
            }
            0x86dd => {
                let a: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
                let b: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
                (
                    IpAddr::from(Ipv6Addr::from(a)),
                    IpAddr::from(Ipv6Addr::from(b)),
                    *l3.get(6)?,
                    40,
                )
            }
            _ => return None,
        };
        // IPv6 extension headers: hop-by-hop, routing, destination options.
        if ethertype == 0x86dd {
            for _ in 0..4 {
                if !matches!(proto, 0 | 43 | 60) {
                    break;
                }
                let Some(h) = l3.get(off..off + 2) else { break };
                proto = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
        }
        let mut s = PacketSummary {
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            icmp: None,
        };
        let l4 = l3.get(off..).unwrap_or(&[]);
        match proto {
            6 | 17 | 132 if l4.len() >= 4 => {
                s.sport = u16::from_be_bytes([l4[0], l4[1]]);
                s.dport = u16::from_be_bytes([l4[2], l4[3]]);
                if proto == 6 {
                    s.tcp_flags = l4.get(13).copied().unwrap_or(0);
                }
            }
            1 | 58 if l4.len() >= 2 => s.icmp = Some((l4[0], l4[1])),
            _ => {}
        }
        Some(s)
    }
}

fn icmp_name(v6: bool, t: u8, code: u8) -> String {
    let name = match (v6, t) {
        (false, 0) => "EchoReply",
        (false, 3) => "DestinationUnreachable",
        (false, 8) => "EchoRequest",
        (false, 11) => "TimeExceeded",
        (true, 1) => "DestinationUnreachable",
        (true, 2) => "PacketTooBig",
        (true, 3) => "TimeExceeded",
        (true, 128) => "EchoRequest",
        (true, 129) => "EchoReply",
        (true, 133) => "RouterSolicitation",
        (true, 134) => "RouterAdvertisement",
        (true, 135) => "NeighborSolicitation",
        (true, 136) => "NeighborAdvertisement",
        _ => return format!("{t}({code})"),
    };
    if code == 0 || matches!(t, 0 | 8 | 128 | 129) {
        name.to_string()
    } else {
        format!("{name}({code})")
    }
}

impl fmt::Display for PacketSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((t, code)) = self.icmp {
            return write!(
                f,
                "{} -> {} {}",
                self.src,
                self.dst,
                icmp_name(self.src.is_ipv6(), t, code)
            );
        }
        let name = match self.proto {
            6 => "tcp",
            17 => "udp",
            132 => "sctp",
            _ => return write!(f, "{} -> {}", self.src, self.dst),
        };
        write!(
            f,
            "{} -> {} {name}",
            SocketAddr::new(self.src, self.sport),
            SocketAddr::new(self.dst, self.dport)
        )?;
        if self.proto == 6 {
            // Cilium's order: SYN, ACK, RST, FIN.
            let flags: Vec<&str> = [(0x02, "SYN"), (0x10, "ACK"), (0x04, "RST"), (0x01, "FIN")]
                .into_iter()
                .filter(|(bit, _)| self.tcp_flags & bit != 0)
                .map(|(_, n)| n)
                .collect();
            write!(f, " {}", flags.join(", "))?;
        }
        Ok(())
    }
}

/// The connection summary of a packet, `[unknown]` without an IP header.
struct Summary<'a>(&'a [u8]);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PacketSummary::parse(self.0) {
            Some(s) => s.fmt(f),
            None => f.write_str("[unknown]"),
        }
    }
}

impl fmt::Display for DropNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xx drop ({}) flow {:#x} to endpoint {}, ifindex {}, file {}:{}, identity {}->{}: {}",
            reason::name(self.reason()),
            self.header.hash,
            self.dst_endpoint,
            self.ifindex,
            bpf_file_name(self.file),
            self.line,
            self.src_identity,
            self.dst_identity,
            Summary(&self.packet)
        )
    }
}

impl fmt::Display for TraceNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let obs = self.obs_point();
        match obs {
            ObsPoint::TO_ENDPOINT => write!(f, "-> endpoint {}", self.dst_endpoint)?,
            ObsPoint::FROM_ENDPOINT => write!(f, "<- endpoint {}", self.header.source)?,
            ObsPoint(1) => f.write_str("-> proxy")?,
            ObsPoint(2) => f.write_str("-> host from")?,
            ObsPoint::TO_STACK => f.write_str("-> stack")?,
            ObsPoint(4) => f.write_str("-> overlay")?,
            ObsPoint(6) => f.write_str("<- proxy")?,
            ObsPoint(7) => f.write_str("<- host")?,
            ObsPoint(8) => f.write_str("<- stack")?,
            ObsPoint(9) => f.write_str("<- overlay")?,
            ObsPoint::FROM_NETWORK => f.write_str("<- network")?,
            ObsPoint::TO_NETWORK => f.write_str("-> network")?,
            ObsPoint(_) => f.write_str("unknown trace")?,
        }
        write!(
            f,
            " flow {:#x}, identity {}->{} state {} ifindex {} orig-ip {}: {}",
            self.header.hash,
            self.src_identity,
            self.dst_identity,
            trace_reason_name(self.reason),
            self.ifindex,
            self.orig_ip,
            Summary(&self.packet)
        )
    }
}

impl fmt::Display for PolicyVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            crate::TrafficDirection::Ingress => "ingress",
            crate::TrafficDirection::Egress => "egress",
        };
        let action = match self.verdict {
            v if v < 0 => "deny",
            0 => "allow",
            _ => "redirect",
        };
        write!(
            f,
            "Policy verdict log: flow {:#x} local EP ID {}, remote ID {}, proto {}, {dir}, action {action}, auth: disabled, match {}, {}",
            self.header.hash,
            self.header.source,
            self.remote_identity,
            self.proto,
            policy_match_name(self.match_type),
            Summary(&self.packet)
        )
    }
}

impl fmt::Display for LostEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Lost {} events (ring buffer full), {} drop notifications (rate limit)",
            self.ring_full, self.rate_limited
        )
    }
}

impl fmt::Display for DatapathEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatapathEvent::Drop(d) => d.fmt(f),
            DatapathEvent::Trace(t) => t.fmt(f),
            DatapathEvent::PolicyVerdict(p) => p.fmt(f),
            DatapathEvent::Lost(l) => l.fmt(f),
            DatapathEvent::Unknown { msg_type, data } => {
                write!(f, "unknown message type {msg_type} ({} bytes)", data.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventHeader;

    fn tcp4(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 54];
        p[12] = 0x08;
        p[14] = 0x45;
        p[14 + 9] = 6;
        p[26..30].copy_from_slice(&[10, 2, 0, 2]);
        p[30..34].copy_from_slice(&[10, 1, 0, 2]);
        p[34..36].copy_from_slice(&sport.to_be_bytes());
        p[36..38].copy_from_slice(&dport.to_be_bytes());
        p[47] = flags;
        p
    }

    #[test]
    fn drop_reads_like_cilium_monitor() {
        let d = DropNotify {
            header: EventHeader {
                msg_type: 1,
                subtype: reason::POLICY,
                ..Default::default()
            },
            src_identity: 20001,
            dst_identity: 10001,
            dst_endpoint: 101,
            line: 120,
            file: 1,
            ext_error: 0,
            ifindex: 12,
            packet: tcp4(40000, 80, 0x02),
        };
        assert_eq!(
            d.to_string(),
            "xx drop (Policy denied) flow 0x0 to endpoint 101, ifindex 12, file datapath.bpf.c:120, \
             identity 20001->10001: 10.2.0.2:40000 -> 10.1.0.2:80 tcp SYN"
        );
    }

    #[test]
    fn summaries() {
        let s = PacketSummary::parse(&tcp4(1, 2, 0x12)).unwrap();
        assert_eq!(s.to_string(), "10.2.0.2:1 -> 10.1.0.2:2 tcp SYN, ACK");
        let mut icmp = tcp4(0, 0, 0);
        icmp[23] = 1;
        icmp[34] = 8;
        icmp[35] = 0;
        let s = PacketSummary::parse(&icmp).unwrap();
        assert_eq!(s.to_string(), "10.2.0.2 -> 10.1.0.2 EchoRequest");
        assert!(PacketSummary::parse(&[0u8; 20]).is_none());
        // IPv6 UDP.
        let mut p = vec![0u8; 14 + 40 + 8];
        p[12] = 0x86;
        p[13] = 0xdd;
        p[14] = 0x60;
        p[14 + 6] = 17;
        p[14 + 8 + 15] = 1;
        p[14 + 24 + 15] = 2;
        p[54..56].copy_from_slice(&53u16.to_be_bytes());
        p[56..58].copy_from_slice(&5353u16.to_be_bytes());
        let s = PacketSummary::parse(&p).unwrap();
        assert_eq!(s.to_string(), "[::1]:53 -> [::2]:5353 udp");
    }
}
