//! Neighbour (ARP / NDP) entries: add or replace, delete and list
//! (`ip neighbour`), as [`Handle`] methods (`RTM_NEWNEIGH` / `RTM_DELNEIGH` /
//! `RTM_GETNEIGH`, each acked). Permanent entries are what a pod uses for
//! its gateway when no ARP responder answers for it.

use std::fmt;
use std::net::IpAddr;

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;

use crate::address::relabel;
use crate::error::{Op, Result};
use crate::handle::{dump_retrying, kernel, lock, Handle};
use crate::link::{check_ifname, MacAddr};
use crate::nl::{self, NlError};

const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;

/// `NUD_PERMANENT`.
const NUD_PERMANENT: u16 = 0x80;

/// A neighbour entry, printed as `ip neighbour show` prints it.
///
/// ```
/// use podnet_route::{MacAddr, Neighbour};
/// let n = Neighbour::permanent(
///     "169.254.1.1".parse().unwrap(),
///     MacAddr([0x0a, 0, 0, 0, 0, 1]),
///     "eth0",
/// );
/// assert_eq!(n.to_string(), "169.254.1.1 dev eth0 lladdr 0a:00:00:00:00:01 PERMANENT");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Neighbour {
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address (`None`: an incomplete or failed entry).
    pub lladdr: Option<MacAddr>,
    /// The device name.
    pub device: String,
    /// The device index (filled in by the kernel's answers).
    pub index: u32,
    /// The `NUD_*` state bits (`0x80` = `PERMANENT`).
    pub state: u16,
}

impl Neighbour {
    /// A permanent entry `ip lladdr mac dev device` (as `ip neigh replace
    /// ... nud permanent`).
    pub fn permanent(ip: IpAddr, mac: MacAddr, device: impl Into<String>) -> Neighbour {
        Neighbour {
            ip,
            lladdr: Some(mac),
            device: device.into(),
            index: 0,
            state: NUD_PERMANENT,
        }
    }

    /// `true` for a `PERMANENT` entry.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.state & NUD_PERMANENT != 0
    }
}

/// `ip`'s names of the NUD states, in bit order.
const STATES: [(u16, &str); 8] = [
    (0x01, "INCOMPLETE"),
    (0x02, "REACHABLE"),
    (0x04, "STALE"),
    (0x08, "DELAY"),
    (0x10, "PROBE"),
    (0x20, "FAILED"),
    (0x40, "NOARP"),
    (0x80, "PERMANENT"),
];

impl fmt::Display for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dev {}", self.ip, self.device)?;
        if let Some(m) = self.lladdr {
            write!(f, " lladdr {m}")?;
        }
        for (bit, name) in STATES {
            if self.state & bit != 0 {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

/// The `RTM_NEWNEIGH` / `RTM_DELNEIGH` body for `n` on link `index`.
pub(crate) fn neighbour_msg(n: &Neighbour, index: u32) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.ifindex = index;
    m.header.state = NeighbourState::from(n.state);
    m.header.family = if n.ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.attributes
        .push(NeighbourAttribute::Destination(match n.ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    if let Some(mac) = n.lladdr {
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    }
    m
}

/// Decodes an `RTM_NEWNEIGH` body (device left empty; `None` for entries
/// without an IP destination, e.g. bridge FDB entries).
pub(crate) fn decode_neighbour(buf: &[u8]) -> std::result::Result<Option<Neighbour>, NlError> {
    use netlink_packet_core::Parseable;
    let m = NeighbourMessage::parse(buf).map_err(|e| NlError::Decode(e.to_string()))?;
    let mut ip = None;
    let mut lladdr = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(b) => lladdr = MacAddr::from_slice(b),
            _ => {}
        }
    }
    Ok(ip.map(|ip| Neighbour {
        ip,
        lladdr,
        device: String::new(),
        index: m.header.ifindex,
        state: u16::from(m.header.state),
    }))
}

impl Handle {
    /// Adds `n` or replaces the entry for its IP on its device (`ip
    /// neighbour replace`): idempotent.
    ///
    /// ```no_run
    /// use podnet_route::{Handle, MacAddr, Neighbour};
    /// let h = Handle::open_netns("/run/netns/pod1")?;
    /// let gw = Neighbour::permanent("169.254.1.1".parse().unwrap(), "0a:00:00:00:00:01".parse().unwrap(), "eth0");
    /// h.replace_neighbour(&gw)?;
    /// # Ok::<(), podnet_route::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::UnknownDevice`] when the device does not exist,
    /// [`crate::Error::Kernel`] naming the entry and the errno.
    pub fn replace_neighbour(&self, n: &Neighbour) -> Result<()> {
        check_ifname(Op::ReplaceNeighbour, n, &n.device)?;
        let idx = self
            .link_index(&n.device)
            .map_err(|e| relabel(e, Op::ReplaceNeighbour, n))?;
        let mut c = lock(&self.conn);
        c.ack(
            RTM_NEWNEIGH,
            nl::NLM_F_CREATE | nl::NLM_F_REPLACE,
            &neighbour_msg(n, idx),
        )
        .map_err(|e| kernel(Op::ReplaceNeighbour, n, e))
    }

    /// Deletes the entry for `n.ip` on `n.device` (`ip neighbour del`). A
    /// missing entry fails with `ENOENT` ([`crate::Error::is_not_found`]).
    ///
    /// # Errors
    /// [`crate::Error::UnknownDevice`] when the device does not exist,
    /// [`crate::Error::Kernel`] naming the entry and the errno.
    pub fn delete_neighbour(&self, n: &Neighbour) -> Result<()> {
        check_ifname(Op::DeleteNeighbour, n, &n.device)?;
        let idx = self
            .link_index(&n.device)
            .map_err(|e| relabel(e, Op::DeleteNeighbour, n))?;
        let mut m = neighbour_msg(n, idx);
        m.attributes
            .retain(|a| matches!(a, NeighbourAttribute::Destination(_)));
        let mut c = lock(&self.conn);
        c.ack(RTM_DELNEIGH, 0, &m)
            .map_err(|e| kernel(Op::DeleteNeighbour, n, e))
    }

    /// The neighbour entries of `device` (`None`: of every link).
    ///
    /// # Errors
    /// [`crate::Error::UnknownDevice`] for a missing device,
    /// [`crate::Error::Kernel`] when the dump fails.
    pub fn neighbours(&self, device: Option<&str>) -> Result<Vec<Neighbour>> {
        let what = device.unwrap_or("all");
        let want = match device {
            Some(d) => Some(
                self.link_index(d)
                    .map_err(|e| relabel(e, Op::ListNeighbours, &what))?,
            ),
            None => None,
        };
        let mut out: Vec<Neighbour> = {
            let mut c = lock(&self.conn);
            dump_retrying(
                &mut c,
                RTM_GETNEIGH,
                &NeighbourMessage::default(),
                RTM_NEWNEIGH,
                |p, out| {
                    if let Some(n) = decode_neighbour(p)? {
                        if want.is_none_or(|w| w == n.index) {
                            out.push(n);
                        }
                    }
                    Ok(())
                },
            )
            .map_err(|e| kernel(Op::ListNeighbours, &what, e))?
        };
        for n in &mut out {
            n.device = match device {
                Some(d) => d.to_string(),
                None => self
                    .link_by_index(n.index)?
                    .map(|l| l.name)
                    .unwrap_or_else(|| format!("if{}", n.index)),
            };
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn permanent_entry_bytes_round_trip() {
        let n = Neighbour::permanent(
            "169.254.1.1".parse().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 9]),
            "eth0",
        );
        let m = neighbour_msg(&n, 3);
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        // ndmsg: family, pad x3, ifindex, state (u16), flags, type.
        assert_eq!(b[0], libc::AF_INET as u8);
        assert_eq!(&b[4..8], &3u32.to_ne_bytes());
        assert_eq!(&b[8..10], &0x80u16.to_ne_bytes());
        // NDA_DST (1) 169.254.1.1, NDA_LLADDR (2).
        assert_eq!(&b[12..20], &[8, 0, 1, 0, 169, 254, 1, 1]);
        assert_eq!(&b[20..30], &[10, 0, 2, 0, 2, 0, 0, 0, 0, 9]);
        let back = decode_neighbour(&b).unwrap().unwrap();
        assert_eq!(back.ip, n.ip);
        assert_eq!(back.lladdr, n.lladdr);
        assert!(back.is_permanent());
    }

    #[test]
    fn display_names_every_state_bit() {
        let mut n = Neighbour::permanent("fe80::1".parse().unwrap(), MacAddr([0; 6]), "lxc1");
        n.state = 0x02;
        n.lladdr = None;
        assert_eq!(n.to_string(), "fe80::1 dev lxc1 REACHABLE");
    }
}
