//! Direct encoders and a light decoder for the messages of pipelined
//! batches: `RTM_NEWROUTE` / `RTM_DELROUTE` bodies of single-path routes
//! written straight into the send buffer (no `RouteMessage`, no attribute
//! vector), and the few fields a batch's table copy needs read straight
//! from a dump. They produce and read exactly the bytes of `codec.rs`
//! (tested byte for byte below); anything they do not cover (multipath,
//! attributes to carry over) goes through `codec.rs`.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Emitable;
use netlink_packet_route::route::RouteMessage;

use crate::codec::Decoded;
use crate::names::{Protocol, RouteFlags, RoutePref, RouteType, Scope};
use crate::route::Route;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTA_MULTIPATH: u16 = 9;
const RTA_FLOW: u16 = 11;
const RTA_TABLE: u16 = 15;
const RTA_PREF: u16 = 20;
const RTA_EXPIRES: u16 = 23;
const RTA_NH_ID: u16 = 30;
const RTAX_LOCK: u16 = 1;
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
const RTAX_INITCWND: u16 = 11;
const RTM_F_CLONED: u32 = 0x200;
const RTNH_F_ONLINK: u32 = 4;

/// A route body for a batch: written directly when it can be.
pub(crate) enum RouteBody {
    /// A single-path `RTM_NEWROUTE` (or with `del`, an `RTM_DELROUTE`).
    Fast(FastRoute),
    /// Anything else, through netlink-packet-route.
    Msg(RouteMessage),
}

impl Emitable for RouteBody {
    fn buffer_len(&self) -> usize {
        match self {
            RouteBody::Fast(f) => f.buffer_len(),
            RouteBody::Msg(m) => m.buffer_len(),
        }
    }
    fn emit(&self, buffer: &mut [u8]) {
        match self {
            RouteBody::Fast(f) => f.emit(buffer),
            RouteBody::Msg(m) => m.emit(buffer),
        }
    }
}

/// The fields of a single-path route request, copied out of the `Route`.
pub(crate) struct FastRoute {
    v6: bool,
    dst: IpAddr,
    dst_len: u8,
    tos: u8,
    table: u32,
    proto: u8,
    scope: u8,
    kind: u8,
    flags: u32,
    nhid: Option<u32>,
    gateway: Option<IpAddr>,
    src: Option<IpAddr>,
    oif: Option<u32>,
    priority: Option<u32>,
    realm: Option<u32>,
    pref: Option<u8>,
    expires: Option<u32>,
    mtu: Option<u32>,
    lock: bool,
    advmss: Option<u32>,
    initcwnd: Option<u32>,
}

fn addr_len(a: &IpAddr) -> usize {
    if a.is_ipv6() {
        16
    } else {
        4
    }
}

/// Appends the `RTM_NEWROUTE` body for `r` (as [`route_new`] makes it) to
/// `buf`: a batch's send buffer, written in place.
#[inline]
pub(crate) fn append_route_new(
    r: &Route,
    oif: Option<u32>,
    mtu: Option<u32>,
    hops: &[u32],
    buf: &mut Vec<u8>,
) {
    match route_new(r, oif, mtu, hops) {
        RouteBody::Fast(f) => f.append(buf),
        RouteBody::Msg(m) => {
            let at = buf.len();
            buf.resize(at + m.buffer_len(), 0);
            m.emit(&mut buf[at..]);
        }
    }
}

/// Appends the `RTM_DELROUTE` body for `r` (as [`route_del`] makes it).
#[inline]
pub(crate) fn append_route_del(r: &Route, oif: Option<u32>, buf: &mut Vec<u8>) {
    if let RouteBody::Fast(f) = route_del(r, oif) {
        f.append(buf);
    }
}

/// The bytes of `RTM_NEWROUTE` for `r` as `codec::route_new` makes them,
/// directly; multipath routes go through `route_new`.
#[inline]
pub(crate) fn route_new(r: &Route, oif: Option<u32>, mtu: Option<u32>, hops: &[u32]) -> RouteBody {
    if !r.multipath.is_empty() && r.nhid.is_none() {
        return RouteBody::Msg(crate::codec::route_new(r, oif, mtu, hops));
    }
    let v6 = r.is_ipv6();
    RouteBody::Fast(FastRoute {
        v6,
        dst: r.prefix.addr(),
        dst_len: r.prefix.prefix_len(),
        tos: r.tos,
        table: r.table,
        proto: r.proto.0,
        scope: r.scope.0,
        kind: r.kind.0,
        flags: if r.is_onlink() && r.nhid.is_none() {
            RTNH_F_ONLINK
        } else {
            0
        },
        nhid: r.nhid,
        gateway: if r.nhid.is_none() { r.nexthop } else { None },
        src: r.local,
        oif: if r.nhid.is_none() { oif } else { None },
        priority: r.priority,
        realm: r.realm,
        pref: (v6 && r.pref != RoutePref::MEDIUM).then_some(r.pref.0),
        expires: r.expires,
        mtu,
        lock: mtu.is_some() && r.mtu_lock,
        advmss: r.advmss,
        initcwnd: r.initcwnd,
    })
}

/// The bytes of `RTM_DELROUTE` for `r` as `codec::route_del` makes them.
#[inline]
pub(crate) fn route_del(r: &Route, oif: Option<u32>) -> RouteBody {
    let v6 = r.is_ipv6();
    let priority = match (r.priority, v6) {
        (_, true) => Some(r.kernel_metric()),
        (p, false) => p,
    };
    RouteBody::Fast(FastRoute {
        v6,
        dst: r.prefix.addr(),
        dst_len: r.prefix.prefix_len(),
        tos: r.tos,
        table: r.table,
        proto: r.proto.0,
        scope: 255,
        kind: 0,
        flags: 0,
        nhid: r.nhid,
        gateway: None,
        src: None,
        oif: if r.nhid.is_none() { oif } else { None },
        priority,
        realm: None,
        pref: None,
        expires: None,
        mtu: None,
        lock: false,
        advmss: None,
        initcwnd: None,
    })
}

impl FastRoute {
    /// Appends the body to `buf`.
    #[inline]
    fn append(&self, buf: &mut Vec<u8>) {
        let at = buf.len();
        buf.resize(at + self.buffer_len(), 0);
        self.emit(&mut buf[at..]);
    }

    #[inline]
    fn metrics_len(&self) -> usize {
        8 * (usize::from(self.mtu.is_some())
            + usize::from(self.lock)
            + usize::from(self.advmss.is_some())
            + usize::from(self.initcwnd.is_some()))
    }
}

struct W<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl W<'_> {
    #[inline]
    fn bytes(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
    #[inline]
    fn attr(&mut self, ty: u16, v: &[u8]) {
        self.bytes(&((4 + v.len()) as u16).to_ne_bytes());
        self.bytes(&ty.to_ne_bytes());
        self.bytes(v);
        let pad = (4 - v.len() % 4) % 4;
        self.b[self.at..self.at + pad].fill(0);
        self.at += pad;
    }
    #[inline]
    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }
    #[inline]
    fn addr(&mut self, ty: u16, a: &IpAddr) {
        match a {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }
}

impl Emitable for FastRoute {
    #[inline]
    fn buffer_len(&self) -> usize {
        let a = addr_len(&self.dst) + 4;
        let mut n = 12 + 8; // rtmsg, RTA_TABLE
        if self.dst_len > 0 {
            n += a;
        }
        n += 8 * usize::from(self.nhid.is_some());
        if let Some(g) = &self.gateway {
            n += addr_len(g) + 4;
        }
        if let Some(s) = &self.src {
            n += addr_len(s) + 4;
        }
        n += 8
            * (usize::from(self.oif.is_some())
                + usize::from(self.priority.is_some())
                + usize::from(self.realm.is_some())
                + usize::from(self.pref.is_some())
                + usize::from(self.expires.is_some()));
        let m = self.metrics_len();
        if m > 0 {
            n += 4 + m;
        }
        n
    }

    #[inline]
    fn emit(&self, buffer: &mut [u8]) {
        let table_byte = if self.table < 256 {
            self.table as u8
        } else {
            0
        };
        let family = if self.v6 { 10 } else { 2 };
        let mut w = W { b: buffer, at: 0 };
        w.bytes(&[
            family,
            self.dst_len,
            0,
            self.tos,
            table_byte,
            self.proto,
            self.scope,
            self.kind,
        ]);
        w.bytes(&self.flags.to_ne_bytes());
        w.u32(RTA_TABLE, self.table);
        if self.dst_len > 0 {
            w.addr(RTA_DST, &self.dst);
        }
        if let Some(id) = self.nhid {
            w.u32(RTA_NH_ID, id);
        }
        if let Some(g) = &self.gateway {
            w.addr(RTA_GATEWAY, g);
        }
        if let Some(s) = &self.src {
            w.addr(RTA_PREFSRC, s);
        }
        if let Some(i) = self.oif {
            w.u32(RTA_OIF, i);
        }
        if let Some(p) = self.priority {
            w.u32(RTA_PRIORITY, p);
        }
        if let Some(f) = self.realm {
            w.u32(RTA_FLOW, f);
        }
        if let Some(p) = self.pref {
            w.attr(RTA_PREF, &[p]);
        }
        if let Some(e) = self.expires {
            w.u32(RTA_EXPIRES, e);
        }
        let m = self.metrics_len();
        if m > 0 {
            w.bytes(&((4 + m) as u16).to_ne_bytes());
            w.bytes(&RTA_METRICS.to_ne_bytes());
            if let Some(v) = self.mtu {
                w.u32(RTAX_MTU, v);
            }
            if self.lock {
                w.u32(RTAX_LOCK, 1 << RTAX_MTU);
            }
            if let Some(v) = self.advmss {
                w.u32(RTAX_ADVMSS, v);
            }
            if let Some(v) = self.initcwnd {
                w.u32(RTAX_INITCWND, v);
            }
        }
    }
}

/// The family (IPv6 or not) and `rtm_flags` of a route message's header;
/// `None` for a message too short or of another family.
#[inline]
fn route_header(buf: &[u8]) -> Option<(bool, u32)> {
    if buf.len() < 12 {
        return None;
    }
    let v6 = match buf[0] {
        2 => false,
        10 => true,
        _ => return None,
    };
    Some((v6, u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]])))
}

/// An address attribute of the family (`v6`) of its message.
#[inline]
fn address(v: &[u8], v6: bool) -> Option<IpAddr> {
    match (v.len(), v6) {
        (4, false) => Some(IpAddr::from([v[0], v[1], v[2], v[3]])),
        (16, true) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(v);
            Some(IpAddr::from(a))
        }
        _ => None,
    }
}

/// Decodes a dumped route whose attributes are all ones this light decoder
/// knows (the common case: no multipath, metrics, encapsulation or cache
/// info); `None` sends the message to `codec::decode_route`.
pub(crate) fn decode_simple(buf: &[u8]) -> Option<Decoded> {
    let (v6, flags) = route_header(buf)?;
    if buf[2] != 0 {
        return None; // source prefix
    }
    let mut r = Route::new(IpNet::V4(Default::default()));
    r.table = u32::from(buf[4]);
    r.proto = Protocol(buf[5]);
    r.scope = Scope(buf[6]);
    r.kind = RouteType(buf[7]);
    r.tos = buf[3];
    r.flags = RouteFlags(flags & RouteFlags::ALL.0);
    let mut dst = None;
    let mut oif = None;
    let mut at = 12;
    let addr = |v: &[u8]| address(v, v6);
    let u32_of = |v: &[u8]| -> Option<u32> {
        (v.len() == 4).then(|| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
    };
    while at + 4 <= buf.len() {
        let len = usize::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
        let ty = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & 0x3fff;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let v = &buf[at + 4..at + len];
        match ty {
            RTA_TABLE => r.table = u32_of(v)?,
            RTA_DST => dst = Some(addr(v)?),
            RTA_OIF => oif = Some(u32_of(v)?),
            RTA_GATEWAY => r.nexthop = Some(addr(v)?),
            RTA_PREFSRC => r.local = Some(addr(v)?),
            RTA_PRIORITY => r.priority = Some(u32_of(v)?),
            RTA_PREF if v.len() == 1 => r.pref = RoutePref(v[0]),
            RTA_NH_ID => r.nhid = Some(u32_of(v)?),
            RTA_FLOW => r.realm = Some(u32_of(v)?),
            // RTA_CACHEINFO (12) of IPv6 routes without a lifetime.
            12 if v.len() >= 12 && v[8..12] == [0, 0, 0, 0] => {}
            // Anything else (metrics, multipath, encapsulation, ...): the
            // full decoder.
            RTA_METRICS | RTA_MULTIPATH => return None,
            _ => return None,
        }
        at += (len + 3) & !3;
    }
    let zero = if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    r.prefix = IpNet::new(dst.unwrap_or(zero), buf[1]).ok()?;
    if !v6 && r.priority == Some(0) {
        r.priority = None;
    }
    Some(Decoded {
        route: r,
        oif,
        hop_oifs: Vec::new(),
        complex: false,
        kept: Vec::new(),
        kept_metrics: Vec::new(),
        kept_lock: 0,
        cloned: flags & RTM_F_CLONED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<E: Emitable>(e: &E) -> Vec<u8> {
        let mut v = vec![0; e.buffer_len()];
        e.emit(&mut v);
        v
    }

    fn sample() -> Vec<Route> {
        [
            "10.1.0.0/16 via 10.0.0.1 dev eth0 table 1000 metric 5 mtu 1400",
            "10.1.0.0/16 via 10.0.0.1 dev eth0 src 10.0.0.9 proto static",
            "default via 10.0.0.1 dev eth0",
            "10.2.0.0/24 dev eth0 tos 0x10 realms 3/4 mtu lock 1300 advmss 1400 initcwnd 10",
            "10.3.0.0/24 via 10.99.0.1 dev eth0 onlink table 100",
            "10.4.0.0/24 nhid 7 proto zebra metric 20",
            "10.4.0.0/24 nhid 7 via 10.0.0.1 dev eth0",
            "blackhole 10.5.0.0/16 table 70000",
            "fd00::/64 via fd01::1 dev eth0 pref high expires 300 metric 7",
            "fd00::/64 dev eth0 pref low advmss 1200",
            "unreachable fd09::/64",
            "local 10.0.0.9 dev lo table local",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect()
    }

    #[test]
    fn fast_bytes_are_codecs_bytes() {
        for r in sample() {
            for (oif, mtu) in [(Some(3), r.mtu), (None, None)] {
                let slow = bytes(&crate::codec::route_new(&r, oif, mtu, &[]));
                let fast = bytes(&route_new(&r, oif, mtu, &[]));
                assert_eq!(fast, slow, "new {r}");
                let slow = bytes(&crate::codec::route_del(&r, oif));
                let fast = bytes(&route_del(&r, oif));
                assert_eq!(fast, slow, "del {r}");
                // Appended in place after other bytes: the same bytes.
                let mut buf = vec![7u8; 3];
                append_route_del(&r, oif, &mut buf);
                assert_eq!(&buf[3..], &slow[..], "appended del {r}");
                let mut buf = vec![7u8; 5];
                append_route_new(&r, oif, mtu, &[], &mut buf);
                let slow = bytes(&crate::codec::route_new(&r, oif, mtu, &[]));
                assert_eq!(&buf[5..], &slow[..], "appended new {r}");
            }
        }
    }

    #[test]
    fn light_decoder_agrees_with_the_full_one_or_declines() {
        for r in sample() {
            let b = bytes(&crate::codec::route_new(&r, Some(3), r.mtu, &[]));
            let full = crate::codec::decode_route(&b).unwrap().unwrap();
            match decode_simple(&b) {
                Some(light) => {
                    assert_eq!(light.route, full.route, "{r}");
                    assert_eq!(light.oif, full.oif);
                    assert!(r.mtu.is_none() && r.advmss.is_none() && r.initcwnd.is_none());
                }
                None => assert!(
                    r.mtu.is_some()
                        || r.advmss.is_some()
                        || r.initcwnd.is_some()
                        || r.expires.is_some(),
                    "{r} declined"
                ),
            }
        }
        // Garbage is declined, never a panic.
        assert!(decode_simple(&[2, 24, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0, 200, 0, 1, 0]).is_none());
        assert!(decode_simple(&[2]).is_none());
    }
}

/// What a batch's delete precheck needs of a dumped route: its identity
/// (table, prefix, tos, metric), output device and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub prefix: IpNet,
    pub tos: u8,
    pub table: u32,
    pub metric: u32,
    pub oif: Option<u32>,
    pub proto: u8,
    pub cloned: bool,
}

/// Reads a dumped route's [`Identity`] without decoding the rest; `None`
/// for a message that is not an IPv4/IPv6 route or is malformed.
pub(crate) fn peek_identity(buf: &[u8]) -> Option<Identity> {
    let (v6, flags) = route_header(buf)?;
    let mut table = u32::from(buf[4]);
    let mut dst = None;
    let mut oif = None;
    let mut metric = 0;
    let mut at = 12;
    while at + 4 <= buf.len() {
        let len = usize::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
        let ty = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & 0x3fff;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let v = &buf[at + 4..at + len];
        let u = || (v.len() == 4).then(|| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        match ty {
            RTA_TABLE => table = u()?,
            RTA_OIF => oif = Some(u()?),
            RTA_PRIORITY => metric = u()?,
            RTA_DST => dst = Some(address(v, v6)?),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    let zero = if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    Some(Identity {
        prefix: IpNet::new(dst.unwrap_or(zero), buf[1]).ok()?,
        tos: buf[3],
        table,
        metric,
        oif,
        proto: buf[5],
        cloned: flags & RTM_F_CLONED != 0,
    })
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn identity_is_what_the_full_decoder_reads() {
        for t in [
            "10.1.0.0/16 via 10.0.0.1 dev eth0 table 1000 metric 5 mtu 1400",
            "default via 10.0.0.1 dev eth0 proto static tos 0x10",
            "fd00::/64 via fd01::1 dev eth0 metric 7",
        ] {
            let r: Route = t.parse().unwrap();
            let mut b = vec![0; 0];
            let m = crate::codec::route_new(&r, Some(3), r.mtu, &[]);
            b.resize(m.buffer_len(), 0);
            m.emit(&mut b);
            let id = peek_identity(&b).unwrap();
            let d = crate::codec::decode_route(&b).unwrap().unwrap();
            assert_eq!(id.prefix, d.route.prefix);
            assert_eq!(
                (id.table, id.tos, id.proto),
                (d.route.table, d.route.tos, d.route.proto.0)
            );
            assert_eq!(id.metric, d.route.priority.unwrap_or(0));
            assert_eq!(id.oif, d.oif);
        }
        assert!(peek_identity(&[2, 0, 0]).is_none());
    }
}
