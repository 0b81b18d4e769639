//! [`Nexthop`]: the kernel's nexthop objects (`ip nexthop`, Linux 5.3+),
//! their `ip nexthop show` text and their netlink encoding.
//!
//! netlink-packet-route 0.34 has no nexthop messages, so `nhmsg` and the
//! `NHA_*` attributes are encoded and decoded here (byte layouts from
//! `include/uapi/linux/nexthop.h`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use netlink_packet_core::Emitable;

use crate::error::{Error, Op};
use crate::names::Protocol;
use crate::nl::NlError;
use crate::route::parse_err;
use crate::rule::Family;

/// A nexthop object (`ip nexthop`): a gateway and device, a blackhole, or
/// a group of other nexthop objects with weights, under a numeric `id`
/// that routes refer to (`nhid`, [`Route::nhid`](crate::Route::nhid)).
/// Routing daemons such as FRR's zebra install their routes this way.
///
/// Not to be confused with [`NextHop`](crate::NextHop), one path of a
/// multipath route.
///
/// `Display` is the line `ip nexthop show` prints; `FromStr` takes that
/// line or the arguments of `ip nexthop add`.
///
/// ```
/// use podnet_route::{Nexthop, Protocol};
///
/// let a = Nexthop::new(1).via("10.0.0.2".parse().unwrap()).dev("eth0");
/// assert_eq!(a.to_string(), "id 1 via 10.0.0.2 dev eth0 scope link");
/// assert_eq!(a.to_ip_command(), "ip nexthop replace id 1 via 10.0.0.2 dev eth0");
/// let g = Nexthop::group(3, [(1, 1), (2, 3)]).proto(Protocol::STATIC);
/// assert_eq!(g.to_string(), "id 3 group 1/2,3 proto static");
/// assert_eq!(g.to_string().parse::<Nexthop>().unwrap(), g);
/// let b: Nexthop = "id 4 blackhole".parse().unwrap();
/// assert!(b.blackhole);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Nexthop {
    /// The object's id (`id`, 1 and up).
    pub id: u32,
    /// The address family: that of the gateway where there is one, IPv4
    /// by default (`ip -6 nexthop` for an IPv6 blackhole or device-only
    /// nexthop). Groups take their members' family.
    pub family: Family,
    /// The gateway (`via`).
    pub gateway: Option<IpAddr>,
    /// The device (`dev`).
    pub device: Option<String>,
    /// `onlink`: the gateway is on the device's link even without a
    /// matching connected route.
    pub onlink: bool,
    /// A blackhole nexthop (drops what it gets).
    pub blackhole: bool,
    /// The members of a group (`group ID[,WEIGHT]/...`); empty for a
    /// single nexthop.
    pub group: Vec<NexthopMember>,
    /// The protocol (`proto`); unspec by default, as `ip nexthop add`.
    pub proto: Protocol,
}

/// One member of a nexthop group: a nexthop object's id and its weight
/// (1 to 256).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NexthopMember {
    /// The member's nexthop id.
    pub id: u32,
    /// The weight, 1 to 256.
    pub weight: u16,
}

impl NexthopMember {
    /// Member `id` with `weight`.
    #[must_use]
    pub fn new(id: u32, weight: u16) -> NexthopMember {
        NexthopMember { id, weight }
    }
}

impl Nexthop {
    /// Nexthop object `id` with nothing set yet (give it a device, or make
    /// it a blackhole).
    #[must_use]
    pub fn new(id: u32) -> Nexthop {
        Nexthop {
            id,
            family: Family::V4,
            gateway: None,
            device: None,
            onlink: false,
            blackhole: false,
            group: Vec::new(),
            proto: Protocol::UNSPEC,
        }
    }

    /// A group `id` of `(member id, weight)` pairs.
    #[must_use]
    pub fn group(id: u32, members: impl IntoIterator<Item = (u32, u16)>) -> Nexthop {
        let mut n = Nexthop::new(id);
        n.group = members
            .into_iter()
            .map(|(id, weight)| NexthopMember { id, weight })
            .collect();
        n
    }

    /// A blackhole nexthop `id` of `family`.
    #[must_use]
    pub fn blackhole(id: u32, family: Family) -> Nexthop {
        let mut n = Nexthop::new(id);
        n.blackhole = true;
        n.family = family;
        n
    }

    /// Sets the gateway (and the family from it).
    #[must_use]
    pub fn via(mut self, gateway: IpAddr) -> Nexthop {
        self.family = Family::of_addr(&gateway);
        self.gateway = Some(gateway);
        self
    }

    /// Sets the device.
    pub fn dev(mut self, device: impl Into<String>) -> Nexthop {
        self.device = Some(device.into());
        self
    }

    /// Sets `onlink`.
    #[must_use]
    pub fn onlink(mut self, onlink: bool) -> Nexthop {
        self.onlink = onlink;
        self
    }

    /// Sets the protocol.
    #[must_use]
    pub fn proto(mut self, proto: Protocol) -> Nexthop {
        self.proto = proto;
        self
    }

    /// Sets the family (for a blackhole or device-only nexthop).
    #[must_use]
    pub fn family(mut self, family: Family) -> Nexthop {
        self.family = family;
        self
    }

    /// The `ip` command that creates or replaces this object:
    /// `ip [-6] nexthop replace <arguments>`.
    #[must_use]
    pub fn to_ip_command(&self) -> String {
        let six = self.family == Family::V6 && self.gateway.is_none() && self.group.is_empty();
        let mut s = String::from(if six {
            "ip -6 nexthop replace"
        } else {
            "ip nexthop replace"
        });
        s.push_str(&format!(" id {}", self.id));
        self.write_body(&mut s, false);
        s
    }

    fn write_body(&self, s: &mut String, show: bool) {
        use std::fmt::Write;
        if !self.group.is_empty() {
            s.push_str(" group ");
            for (i, m) in self.group.iter().enumerate() {
                if i > 0 {
                    s.push('/');
                }
                let _ = write!(s, "{}", m.id);
                if m.weight > 1 {
                    let _ = write!(s, ",{}", m.weight);
                }
            }
        }
        if let Some(g) = self.gateway {
            let _ = write!(s, " via {g}");
        }
        if let Some(d) = &self.device {
            let _ = write!(s, " dev {d}");
        }
        if show {
            if let Some(sc) = self.scope_name() {
                let _ = write!(s, " scope {sc}");
            }
        }
        if self.blackhole {
            s.push_str(" blackhole");
        }
        if self.proto != Protocol::UNSPEC {
            let _ = write!(s, " proto {}", self.proto);
        }
        if self.onlink {
            s.push_str(" onlink");
        }
    }

    /// The scope the kernel gives the object and `ip nexthop show` prints:
    /// link with a gateway, host for a device alone, none (global) else.
    fn scope_name(&self) -> Option<&'static str> {
        if !self.group.is_empty() || self.blackhole {
            None
        } else if self.gateway.is_some() {
            Some("link")
        } else if self.device.is_some() {
            Some("host")
        } else {
            None
        }
    }

    /// Checks the object on its own: an id, a device for a single nexthop
    /// that is no blackhole, a gateway of the family, a group with members
    /// of weight 1 to 256 and nothing else.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` saying what is wrong.
    pub fn validate(&self, op: Op) -> Result<(), Error> {
        let bad = |reason: &str| Error::InvalidInput {
            op,
            object: self.to_string(),
            reason: reason.to_string(),
        };
        if self.id == 0 {
            return Err(bad("nexthop id 0 (the kernel would pick one)"));
        }
        if let Some(g) = self.gateway {
            if Family::of_addr(&g) != self.family {
                return Err(bad("gateway is not of the nexthop's family"));
            }
            if g.is_unspecified() || g.is_multicast() {
                return Err(bad("gateway is unspecified or multicast"));
            }
        }
        if !self.group.is_empty() {
            if self.gateway.is_some() || self.device.is_some() || self.blackhole || self.onlink {
                return Err(bad(
                    "a group has only members (no via, dev, blackhole, onlink)",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for m in &self.group {
                if m.id == 0 || m.id == self.id {
                    return Err(bad("a group member must be another nexthop id"));
                }
                if !(1..=256).contains(&m.weight) {
                    return Err(bad("a member weight is 1 to 256"));
                }
                if !seen.insert(m.id) {
                    return Err(bad("a member appears twice in the group"));
                }
            }
            return Ok(());
        }
        if self.blackhole {
            if self.gateway.is_some() || self.device.is_some() || self.onlink {
                return Err(bad("a blackhole nexthop has no via, dev or onlink"));
            }
            return Ok(());
        }
        match &self.device {
            None => Err(bad("a nexthop needs a device (or blackhole, or group)")),
            Some(d) if d.is_empty() || d.len() > 15 || d.contains(['/', ' ', '\0']) => {
                Err(bad("bad device name"))
            }
            Some(_) if self.onlink && self.gateway.is_none() => Err(bad("onlink needs a gateway")),
            Some(_) => Ok(()),
        }
    }
}

impl fmt::Display for Nexthop {
    /// The line `ip nexthop show` prints (without its trailing space).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = format!("id {}", self.id);
        self.write_body(&mut s, true);
        f.write_str(&s)
    }
}

fn num<T: FromStr>(text: &str, what: &str, v: &str) -> Result<T, Error> {
    v.parse()
        .map_err(|_| parse_err(text, format!("bad {what} {v:?}")))
}

impl FromStr for Nexthop {
    type Err = Error;

    /// Parses a line of `ip nexthop show` or the arguments of `ip [-6]
    /// nexthop add|replace`: `id N [via ADDR] [dev NAME] [blackhole]
    /// [group ID[,W]/...] [proto P] [onlink]` (`scope` as `ip` prints it
    /// is accepted when it is the one the kernel gives). Encapsulation,
    /// `fdb` and resilient groups are refused.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace().peekable();
        let v6 = crate::route::strip_command(&mut words, "nexthop");
        let mut n = Nexthop::new(0);
        if v6 == Some(true) {
            n.family = Family::V6;
        }
        let mut id = None;
        let mut scope = None;
        while let Some(w) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| parse_err(text, format!("{w:?} needs a value")))
            };
            match w {
                "id" => id = Some(num::<u32>(text, "id", value()?)?),
                "via" => {
                    let mut v = value()?;
                    if v == "inet" || v == "inet6" {
                        v = value()?;
                    }
                    let g: IpAddr = num(text, "address", v)?;
                    if v6.is_some_and(|six| six != g.is_ipv6()) {
                        return Err(parse_err(
                            text,
                            "the gateway is not of the family given by -4/-6",
                        ));
                    }
                    n = n.via(g);
                }
                "dev" => n.device = Some(value()?.to_string()),
                "blackhole" => n.blackhole = true,
                "onlink" => n.onlink = true,
                "proto" | "protocol" => {
                    n.proto = value()?
                        .parse()
                        .map_err(|e: crate::names::NameError| parse_err(text, e.to_string()))?
                }
                "scope" => scope = Some(value()?.to_string()),
                "group" => {
                    for m in value()?.split('/') {
                        let (i, wt) = match m.split_once(',') {
                            Some((i, wt)) => (i, num::<u16>(text, "weight", wt)?),
                            None => (m, 1),
                        };
                        n.group.push(NexthopMember {
                            id: num(text, "member id", i)?,
                            weight: wt,
                        });
                    }
                }
                other => {
                    return Err(parse_err(
                        text,
                        format!("unsupported word {other:?} (not modelled)"),
                    ))
                }
            }
        }
        n.id = id.ok_or_else(|| parse_err(text, "no id"))?;
        if let Some(s) = scope {
            if Some(s.as_str()) != n.scope_name().or(Some("global")) {
                return Err(parse_err(
                    text,
                    format!("scope {s}: the kernel gives this nexthop another scope"),
                ));
            }
        }
        // What parses is what add/replace accept.
        n.validate(Op::Parse)?;
        Ok(n)
    }
}

// ------------------------------------------------------------------ codec

pub(crate) const RTM_NEWNEXTHOP: u16 = 104;
pub(crate) const RTM_DELNEXTHOP: u16 = 105;
pub(crate) const RTM_GETNEXTHOP: u16 = 106;

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_GROUP_TYPE: u16 = 3;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const RTNH_F_ONLINK: u32 = 4;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A message body already in bytes (for the messages netlink-packet-route
/// does not have).
#[derive(Debug, Clone, Default)]
pub(crate) struct Raw(pub Vec<u8>);

impl Emitable for Raw {
    fn buffer_len(&self) -> usize {
        self.0.len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.0.len()].copy_from_slice(&self.0);
    }
}

fn attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(crate::nl::align(buf.len()), 0);
}

fn nhmsg(family: u8, protocol: u8, flags: u32) -> Vec<u8> {
    let mut b = vec![family, 0, protocol, 0];
    b.extend_from_slice(&flags.to_ne_bytes());
    b
}

fn family_byte(f: Family) -> u8 {
    match f {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    }
}

/// The `RTM_NEWNEXTHOP` body for `n` with its device resolved to `oif`.
pub(crate) fn nexthop_new(n: &Nexthop, oif: Option<u32>) -> Raw {
    let family = if n.group.is_empty() {
        family_byte(n.family)
    } else {
        AF_UNSPEC
    };
    let flags = if n.onlink { RTNH_F_ONLINK } else { 0 };
    let mut b = nhmsg(family, n.proto.0, flags);
    attr(&mut b, NHA_ID, &n.id.to_ne_bytes());
    if !n.group.is_empty() {
        // struct nexthop_grp { u32 id; u8 weight (minus one); u8; u16 }.
        let mut g = Vec::with_capacity(8 * n.group.len());
        for m in &n.group {
            g.extend_from_slice(&m.id.to_ne_bytes());
            g.push(m.weight.clamp(1, 256).saturating_sub(1) as u8);
            g.extend_from_slice(&[0, 0, 0]);
        }
        attr(&mut b, NHA_GROUP, &g);
    }
    if n.blackhole {
        attr(&mut b, NHA_BLACKHOLE, &[]);
    }
    if let Some(i) = oif {
        attr(&mut b, NHA_OIF, &i.to_ne_bytes());
    }
    match n.gateway {
        Some(IpAddr::V4(a)) => attr(&mut b, NHA_GATEWAY, &a.octets()),
        Some(IpAddr::V6(a)) => attr(&mut b, NHA_GATEWAY, &a.octets()),
        None => {}
    }
    Raw(b)
}

/// The `RTM_GETNEXTHOP` / `RTM_DELNEXTHOP` body for object `id`.
pub(crate) fn nexthop_id(id: u32) -> Raw {
    let mut b = nhmsg(AF_UNSPEC, 0, 0);
    attr(&mut b, NHA_ID, &id.to_ne_bytes());
    Raw(b)
}

/// The `RTM_GETNEXTHOP` dump request (every family, no filter).
pub(crate) fn nexthop_dump() -> Raw {
    Raw(nhmsg(AF_UNSPEC, 0, 0))
}

/// A nexthop object as the kernel reported it, before the device is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedNexthop {
    pub nexthop: Nexthop,
    pub oif: Option<u32>,
    /// Something not modelled (encapsulation, fdb, a resilient group).
    pub complex: bool,
}

/// Decodes an `RTM_NEWNEXTHOP` body; `None` for families other than
/// unspec (groups), IPv4 and IPv6.
pub(crate) fn decode_nexthop(buf: &[u8]) -> Result<Option<DecodedNexthop>, NlError> {
    if buf.len() < 8 {
        return Err(NlError::Decode("short nhmsg".into()));
    }
    let family = match buf[0] {
        AF_INET | AF_UNSPEC => Family::V4,
        AF_INET6 => Family::V6,
        _ => return Ok(None),
    };
    let flags = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut n = Nexthop::new(0);
    n.family = family;
    n.proto = Protocol(buf[2]);
    n.onlink = flags & RTNH_F_ONLINK != 0;
    let mut oif = None;
    let mut complex = false;
    let mut attrs = &buf[8..];
    let u32_of = |v: &[u8]| -> Result<u32, NlError> {
        v.get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| NlError::Decode("short nexthop attribute".into()))
    };
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return Err(NlError::Decode(format!(
                "bad nexthop attribute length {len}"
            )));
        }
        let v = &attrs[4..len];
        match ty {
            NHA_ID => n.id = u32_of(v)?,
            NHA_GROUP => {
                for m in v.chunks(8) {
                    if m.len() < 8 {
                        return Err(NlError::Decode("short nexthop_grp".into()));
                    }
                    n.group.push(NexthopMember {
                        id: u32::from_ne_bytes([m[0], m[1], m[2], m[3]]),
                        weight: u16::from(m[4]) + 1,
                    });
                }
            }
            NHA_GROUP_TYPE => {
                let t = v.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
                complex |= t != Some(0);
            }
            NHA_BLACKHOLE => n.blackhole = true,
            NHA_OIF => oif = Some(u32_of(v)?),
            NHA_GATEWAY => {
                n.gateway = match v.len() {
                    4 => Some(IpAddr::from([v[0], v[1], v[2], v[3]])),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(v);
                        Some(IpAddr::from(a))
                    }
                    l => return Err(NlError::Decode(format!("nexthop gateway of {l} bytes"))),
                };
            }
            // NHA_ENCAP_TYPE, NHA_ENCAP, NHA_FDB, NHA_RES_GROUP, NHA_MASTER.
            7 | 8 | 10 | 11 | 12 => complex = true,
            _ => {}
        }
        attrs = attrs.get(crate::nl::align(len)..).unwrap_or(&[]);
    }
    if let Some(g) = n.gateway {
        n.family = Family::of_addr(&g);
    }
    Ok(Some(DecodedNexthop {
        nexthop: n,
        oif,
        complex,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_lines_of_iproute2_parse_and_print_back() {
        // `ip nexthop show` (iproute2 6.1), trailing spaces removed.
        for line in [
            "id 1 via 10.0.0.2 dev d1 scope link",
            "id 2 via 10.1.0.2 dev d2 scope link proto static",
            "id 3 group 1/2,3",
            "id 4 blackhole",
            "id 5 dev d1 scope host",
            "id 6 via 10.9.9.9 dev d1 scope link onlink",
            "id 7 via fd00::2 dev d1 scope link",
            "id 9 group 1,256/2 proto zebra",
        ] {
            let n: Nexthop = line.parse().unwrap();
            assert_eq!(n.to_string(), line);
            n.validate(Op::ReplaceNexthopObject).unwrap();
            assert_eq!(n.to_ip_command().parse::<Nexthop>().unwrap(), n);
        }
        let b: Nexthop = "ip -6 nexthop add id 8 blackhole".parse().unwrap();
        assert_eq!(b, Nexthop::blackhole(8, Family::V6));
        assert_eq!(b.to_ip_command(), "ip -6 nexthop replace id 8 blackhole");
        assert!("id 1 via 10.0.0.2 dev d1 scope host"
            .parse::<Nexthop>()
            .is_err());
        assert!("id 1 via 10.0.0.2 dev d1 encap mpls 100"
            .parse::<Nexthop>()
            .is_err());
        assert!("via 10.0.0.2 dev d1".parse::<Nexthop>().is_err());
        assert!("ip -6 nexthop add id 1 via 10.0.0.2 dev d1"
            .parse::<Nexthop>()
            .is_err());
    }

    #[test]
    fn validation_refuses_what_the_kernel_would() {
        let bad = [
            Nexthop::new(0).dev("e"),
            Nexthop::new(1),
            Nexthop::new(1).via("10.0.0.1".parse().unwrap()),
            Nexthop::group(2, [(1, 1)]).dev("e"),
            Nexthop::group(2, [(1, 0)]),
            Nexthop::group(2, [(1, 257)]),
            Nexthop::group(2, [(1, 1), (1, 2)]),
            Nexthop::group(2, [(2, 1)]),
            Nexthop::blackhole(3, Family::V4).dev("e"),
            Nexthop::new(4).dev("e").onlink(true),
            Nexthop::new(5)
                .via("fd00::1".parse().unwrap())
                .dev("e")
                .family(Family::V4),
        ];
        for n in bad {
            assert!(n.validate(Op::ReplaceNexthopObject).is_err(), "{n:?}");
        }
    }

    #[test]
    fn bytes_round_trip() {
        let a = Nexthop::new(7)
            .via("10.0.0.2".parse().unwrap())
            .dev("eth0")
            .onlink(true)
            .proto(Protocol::STATIC);
        let b = nexthop_new(&a, Some(3)).0;
        // nhmsg: family, scope, protocol, resvd, flags (onlink).
        assert_eq!(&b[..8], &[2, 0, 4, 0, 4, 0, 0, 0]);
        // NHA_ID (1) = 7, NHA_OIF (5) = 3, NHA_GATEWAY (6) = 10.0.0.2.
        assert_eq!(&b[8..16], &[8, 0, 1, 0, 7, 0, 0, 0]);
        assert_eq!(&b[16..24], &[8, 0, 5, 0, 3, 0, 0, 0]);
        assert_eq!(&b[24..32], &[8, 0, 6, 0, 10, 0, 0, 2]);
        let d = decode_nexthop(&b).unwrap().unwrap();
        let mut want = a.clone();
        want.device = None;
        assert_eq!((d.nexthop, d.oif, d.complex), (want, Some(3), false));

        let g = Nexthop::group(9, [(7, 1), (8, 256)]);
        let b = nexthop_new(&g, None).0;
        assert_eq!(b[0], 0, "a group is AF_UNSPEC");
        // NHA_GROUP (2): two nexthop_grp of 8 bytes, weight minus one.
        assert_eq!(&b[16..20], &[20, 0, 2, 0]);
        assert_eq!(&b[20..28], &[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[28..36], &[8, 0, 0, 0, 255, 0, 0, 0]);
        assert_eq!(decode_nexthop(&b).unwrap().unwrap().nexthop, g);

        let h = Nexthop::blackhole(4, Family::V6);
        let b = nexthop_new(&h, None).0;
        assert_eq!(&b[16..20], &[4, 0, 4, 0]);
        assert_eq!(decode_nexthop(&b).unwrap().unwrap().nexthop, h);

        let v6 = Nexthop::new(5).via("fd00::2".parse().unwrap()).dev("e");
        let d = decode_nexthop(&nexthop_new(&v6, Some(2)).0)
            .unwrap()
            .unwrap();
        assert_eq!(d.nexthop.gateway, v6.gateway);
        assert_eq!(d.nexthop.family, Family::V6);

        // A resilient group and an encapsulation are flagged; garbage is
        // an error, never a panic.
        let mut r = nexthop_new(&g, None).0;
        attr(&mut r, NHA_GROUP_TYPE, &1u16.to_ne_bytes());
        assert!(decode_nexthop(&r).unwrap().unwrap().complex);
        assert!(decode_nexthop(&[2, 0]).is_err());
        assert!(decode_nexthop(&[2, 0, 0, 0, 0, 0, 0, 0, 200, 0, 1, 0]).is_err());
        assert!(decode_nexthop(&[2, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1, 0, 0, 0]).is_err());
        assert_eq!(
            &nexthop_id(7).0,
            &[0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 7, 0, 0, 0]
        );
    }
}
