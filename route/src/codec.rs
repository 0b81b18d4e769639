//! Encoding routes and rules into netlink-packet-route messages and
//! decoding the kernel's messages back.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Parseable;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags as NlRouteFlags, RouteHeader, RouteMessage,
    RouteMetric, RouteNextHop, RouteNextHopFlags, RoutePreference, RouteRealm,
};
use netlink_packet_route::rule::{
    RuleAction as NlAction, RuleAttribute, RuleFlags, RuleMessage, RulePortRange, RuleUidRange,
};
use netlink_packet_route::AddressFamily;

use crate::names::{Protocol, RouteFlags, RoutePref, RouteType, Scope};
use crate::nl::NlError;
use crate::route::{NextHop, Route};
use crate::rule::{Family, Rule, RuleAction};

/// `USER_HZ`: the kernel reports route lifetimes in these ticks.
const USER_HZ: u32 = 100;

/// `RT_SCOPE_NOWHERE`.
const SCOPE_NOWHERE: u8 = 255;

fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The family of a dump request (`None`: both).
fn dump_family(family: Option<Family>) -> AddressFamily {
    match family {
        Some(Family::V4) => AddressFamily::Inet,
        Some(Family::V6) => AddressFamily::Inet6,
        None => AddressFamily::Unspec,
    }
}

fn header_table(table: u32) -> u8 {
    // Tables above 255 live only in RTA_TABLE; rtm_table is then
    // RT_TABLE_UNSPEC, as iproute2 sends it.
    if table < 256 {
        table as u8
    } else {
        0
    }
}

/// What both `route_new` and `route_del` say first: family, prefix and table.
fn route_identity(r: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family_of(&r.prefix.addr());
    m.header.destination_prefix_length = r.prefix.prefix_len();
    m.header.table = header_table(r.table);
    m.header.tos = r.tos;
    m.attributes.push(RouteAttribute::Table(r.table));
    if r.prefix.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(r.prefix.addr().into()));
    }
    m
}

/// The `RTM_NEWROUTE` body for `r` with the resolved `oif`, effective `mtu`
/// and the resolved devices of its multipath hops (`hop_oifs[i]` for
/// `r.multipath[i]`).
pub(crate) fn route_new(
    r: &Route,
    oif: Option<u32>,
    mtu: Option<u32>,
    hop_oifs: &[u32],
) -> RouteMessage {
    let mut m = route_identity(r);
    let h = &mut m.header;
    h.protocol = r.proto.0.into();
    h.scope = r.scope.0.into();
    h.kind = r.kind.0.into();
    if r.is_onlink() && r.nhid.is_none() {
        h.flags = NlRouteFlags::Onlink;
    }
    let a = &mut m.attributes;
    if let Some(id) = r.nhid {
        // The object has the gateway, device and paths; the kernel
        // refuses them next to an id.
        a.push(RouteAttribute::NhId(id));
    } else if let Some(nh) = r.nexthop {
        a.push(RouteAttribute::Gateway(nh.into()));
    }
    if let Some(l) = r.local {
        a.push(RouteAttribute::PrefSource(l.into()));
    }
    if let (Some(i), None) = (oif, r.nhid) {
        a.push(RouteAttribute::Oif(i));
    }
    if let Some(p) = r.priority {
        a.push(RouteAttribute::Priority(p));
    }
    if let Some(f) = r.realm {
        a.push(RouteAttribute::Realm(realm_attr(f)));
    }
    if r.is_ipv6() && r.pref != RoutePref::MEDIUM {
        a.push(RouteAttribute::Preference(RoutePreference::from(r.pref.0)));
    }
    if let Some(e) = r.expires {
        a.push(RouteAttribute::Expires(e));
    }
    let mut metrics = Vec::new();
    if let Some(mtu) = mtu {
        metrics.push(RouteMetric::Mtu(mtu));
        if r.mtu_lock {
            metrics.push(RouteMetric::Lock(LOCK_MTU));
        }
    }
    if let Some(v) = r.advmss {
        metrics.push(RouteMetric::Advmss(v));
    }
    if let Some(v) = r.initcwnd {
        metrics.push(RouteMetric::InitCwnd(v));
    }
    if !metrics.is_empty() {
        a.push(RouteAttribute::Metrics(metrics));
    }
    if !r.multipath.is_empty() && r.nhid.is_none() {
        let hops = r
            .multipath
            .iter()
            .zip(hop_oifs.iter().copied().chain(std::iter::repeat(0)))
            .map(|(h, idx)| {
                let mut nh = RouteNextHop::default();
                nh.hops = h.weight.clamp(1, 256).saturating_sub(1) as u8;
                nh.interface_index = idx;
                if h.flags.contains(RouteFlags::ONLINK) {
                    nh.flags = RouteNextHopFlags::Onlink;
                }
                if let Some(g) = h.gateway {
                    nh.attributes.push(RouteAttribute::Gateway(g.into()));
                }
                if let Some(f) = h.realm {
                    nh.attributes.push(RouteAttribute::Realm(realm_attr(f)));
                }
                nh
            })
            .collect();
        a.push(RouteAttribute::MultiPath(hops));
    }
    m
}

/// `RTA_FLOW` from `SRC << 16 | DST`.
fn realm_attr(f: u32) -> RouteRealm {
    RouteRealm {
        source: (f >> 16) as u16,
        destination: (f & 0xffff) as u16,
    }
}

/// `SRC << 16 | DST` from `RTA_FLOW`.
fn realm_of(f: &RouteRealm) -> u32 {
    u32::from(f.source) << 16 | u32::from(f.destination)
}

/// `1 << RTAX_MTU` in `RTAX_LOCK`.
const LOCK_MTU: u32 = 1 << 2;

/// Adds to a replace of the kernel's route `old` what this crate does not
/// model but `old` carries (encapsulation, other metrics, locks), and its
/// remaining lifetime when `r` sets none: a replace keeps them.
pub(crate) fn keep_from(m: &mut RouteMessage, r: &Route, old: &Decoded) {
    m.attributes.extend(old.kept.iter().cloned());
    if r.expires.is_none() {
        if let Some(e) = old.route.expires {
            m.attributes.push(RouteAttribute::Expires(e));
        }
    }
    if old.kept_metrics.is_empty() && old.kept_lock == 0 {
        return;
    }
    let pos = m
        .attributes
        .iter()
        .position(|a| matches!(a, RouteAttribute::Metrics(_)));
    let metrics = match pos {
        Some(i) => match &mut m.attributes[i] {
            RouteAttribute::Metrics(v) => v,
            _ => return,
        },
        None => {
            m.attributes.push(RouteAttribute::Metrics(Vec::new()));
            match m.attributes.last_mut() {
                Some(RouteAttribute::Metrics(v)) => v,
                _ => return,
            }
        }
    };
    metrics.extend(old.kept_metrics.iter().cloned());
    if old.kept_lock != 0 {
        let mut lock = old.kept_lock;
        metrics.retain(|mt| match mt {
            RouteMetric::Lock(b) => {
                lock |= *b;
                false
            }
            _ => true,
        });
        metrics.push(RouteMetric::Lock(lock));
    }
}

/// The `RTM_DELROUTE` body: the route's identity (table, prefix, metric),
/// device and protocol (0, any, for `Protocol::UNSPEC`), with scope nowhere
/// and type 0 so that a route of any scope and type matches.
pub(crate) fn route_del(r: &Route, oif: Option<u32>) -> RouteMessage {
    let mut m = route_identity(r);
    let h = &mut m.header;
    h.scope = SCOPE_NOWHERE.into();
    h.protocol = r.proto.0.into();
    h.kind = 0u8.into();
    let a = &mut m.attributes;
    match r.nhid {
        // A route on a nexthop object matches by the id, not the device.
        Some(id) => a.push(RouteAttribute::NhId(id)),
        None => {
            if let Some(i) = oif {
                a.push(RouteAttribute::Oif(i));
            }
        }
    }
    // The metric is part of the identity: an IPv6 route without one is the
    // route of metric 1024 (what the kernel gives it), not any route of the
    // prefix. IPv4 treats metric 0 as "any" itself.
    // (IPv6 also reads metric 0 as "any": send what the kernel stores.)
    match (r.priority, r.is_ipv6()) {
        (_, true) => a.push(RouteAttribute::Priority(r.kernel_metric())),
        (Some(p), false) => a.push(RouteAttribute::Priority(p)),
        (None, false) => {}
    }
    m
}

/// A FIB lookup request (`ip route get ADDR`, with `fibmatch` when
/// `fib_match`): `dst_len` is the full length, as strict checking demands.
pub(crate) fn route_get(dst: IpAddr, fib_match: bool) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family_of(&dst);
    m.header.destination_prefix_length = if dst.is_ipv6() { 128 } else { 32 };
    // RTM_F_LOOKUP_TABLE makes IPv4 report the table the answer came from
    // (else it may report main whatever table the rules chose). IPv6 always
    // reports the real table and rejects the flag under strict checking.
    if dst.is_ipv4() {
        m.header.flags = NlRouteFlags::LookupTable;
    }
    if fib_match {
        m.header.flags |= NlRouteFlags::FibMatch;
    }
    m.attributes.push(RouteAttribute::Destination(dst.into()));
    m
}

/// `ip route get DST from SRC iif IIF oif OIF mark MARK` (resolved).
pub(crate) fn route_get_with(
    dst: IpAddr,
    from: Option<IpAddr>,
    iif: Option<u32>,
    oif: Option<u32>,
    mark: Option<u32>,
) -> RouteMessage {
    let mut m = route_get(dst, false);
    if let Some(s) = from {
        m.header.source_prefix_length = if s.is_ipv6() { 128 } else { 32 };
        m.attributes.push(RouteAttribute::Source(s.into()));
    }
    if let Some(i) = iif {
        m.attributes.push(RouteAttribute::Iif(i));
    }
    if let Some(o) = oif {
        m.attributes.push(RouteAttribute::Oif(o));
    }
    if let Some(k) = mark {
        m.attributes.push(RouteAttribute::Mark(k));
    }
    m
}

/// A strict-check dump request filtered by family, table, protocol, type
/// and output interface (the only filters the kernel applies).
pub(crate) fn route_dump(
    family: Option<Family>,
    table: Option<u32>,
    proto: Option<Protocol>,
    kind: Option<RouteType>,
    oif: Option<u32>,
) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = dump_family(family);
    m.header.table = table.map(header_table).unwrap_or(0);
    m.header.protocol = proto.map(|p| p.0).unwrap_or(0).into();
    m.header.kind = kind.map(|k| k.0).unwrap_or(0).into();
    m.header.scope = 0u8.into();
    if let Some(t) = table {
        m.attributes.push(RouteAttribute::Table(t));
    }
    if let Some(i) = oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    m
}

/// A route as the kernel reported it, before the device index is named.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub route: Route,
    pub oif: Option<u32>,
    /// The device index of each multipath hop.
    pub hop_oifs: Vec<u32>,
    /// Something this crate does not model on a path of a multipath
    /// route (encapsulation, MPLS): a replace would drop it.
    pub complex: bool,
    /// Attributes this crate does not model (encapsulation, MPLS `via`,
    /// `ttl-propagate`), carried over by a replace ([`keep_from`]).
    pub kept: Vec<RouteAttribute>,
    /// Metrics this crate does not model (`window`, `rtt`, `hoplimit` ...).
    pub kept_metrics: Vec<RouteMetric>,
    /// `RTAX_LOCK` bits other than the MTU's.
    pub kept_lock: u32,
    /// A cached clone (exceptions), not a FIB entry.
    pub cloned: bool,
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Decodes an `RTM_NEWROUTE` body; `None` for families other than IPv4/IPv6.
/// Attributes netlink-packet-route does not know are tolerated (they decode
/// as `Other`).
pub(crate) fn decode_route(buf: &[u8]) -> Result<Option<Decoded>, NlError> {
    // Most routes of a dump carry only the attributes the light decoder
    // reads (a dump of a big table costs less then).
    if let Some(d) = crate::fastcodec::decode_simple(buf) {
        return Ok(Some(d));
    }
    let m = RouteMessage::parse(buf).map_err(|e| NlError::Decode(e.to_string()))?;
    Ok(decode_route_msg(&m))
}

pub(crate) fn decode_route_msg(m: &RouteMessage) -> Option<Decoded> {
    let h: &RouteHeader = &m.header;
    let v6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut dst: Option<IpAddr> = None;
    let mut r = Route::new(IpNet::V4(Default::default()));
    r.table = h.table as u32;
    r.proto = Protocol(h.protocol.into());
    r.scope = Scope(h.scope.into());
    r.kind = RouteType(h.kind.into());
    r.flags = RouteFlags(h.flags.bits() & RouteFlags::ALL.0);
    r.tos = h.tos;
    let mut oif = None;
    // IPv6 source routing (`from`): another identity than this crate
    // describes, never replaced.
    let source_routed = h.source_prefix_length > 0;
    let mut hop_oifs = Vec::new();
    let mut complex = false;
    let mut kept = Vec::new();
    let mut kept_metrics = Vec::new();
    let mut kept_lock = 0;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr(d),
            RouteAttribute::Gateway(g) => r.nexthop = addr(g),
            RouteAttribute::PrefSource(s) => r.local = addr(s),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => r.priority = Some(*p),
            RouteAttribute::Table(t) => r.table = *t,
            RouteAttribute::Preference(p) => r.pref = RoutePref(u8::from(*p)),
            RouteAttribute::Metrics(ms) => {
                for mt in ms {
                    match mt {
                        RouteMetric::Mtu(v) => r.mtu = Some(*v),
                        RouteMetric::Advmss(v) => r.advmss = Some(*v),
                        RouteMetric::InitCwnd(v) => r.initcwnd = Some(*v),
                        RouteMetric::Lock(bits) => {
                            r.mtu_lock = bits & LOCK_MTU != 0;
                            kept_lock = bits & !LOCK_MTU;
                        }
                        other => kept_metrics.push(other.clone()),
                    }
                }
            }
            RouteAttribute::NhId(id) => r.nhid = Some(*id),
            RouteAttribute::Realm(f) => r.realm = Some(realm_of(f)),
            RouteAttribute::CacheInfo(ci) if ci.expires != 0 => {
                // Clock ticks (USER_HZ, 100 a second), as `ip` divides them.
                r.expires = Some(ci.expires / USER_HZ);
            }
            RouteAttribute::MultiPath(hops) => {
                for h in hops {
                    let mut gateway = None;
                    let mut realm = None;
                    for ha in &h.attributes {
                        match ha {
                            RouteAttribute::Gateway(g) => gateway = addr(g),
                            RouteAttribute::Realm(f) => realm = Some(realm_of(f)),
                            _ => complex = true,
                        }
                    }
                    hop_oifs.push(h.interface_index);
                    r.multipath.push(NextHop {
                        gateway,
                        device: None,
                        weight: u16::from(h.hops) + 1,
                        flags: RouteFlags(u32::from(h.flags.bits())),
                        realm,
                    });
                }
            }
            RouteAttribute::Encap(_)
            | RouteAttribute::EncapType(_)
            | RouteAttribute::Via(_)
            | RouteAttribute::NewDestination(_)
            | RouteAttribute::TtlPropagate(_) => kept.push(a.clone()),
            _ => {}
        }
    }
    let zero = if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    let d = dst.unwrap_or(zero);
    r.prefix = IpNet::new(d, h.destination_prefix_length).ok()?;
    if !v6 && r.priority == Some(0) {
        r.priority = None;
    }
    Some(Decoded {
        route: r,
        oif,
        hop_oifs,
        complex: complex || source_routed,
        kept,
        kept_metrics,
        kept_lock,
        cloned: h.flags.contains(NlRouteFlags::Cloned),
    })
}

/// An `RTM_GETLINK` body asking for one link by name or index.
pub(crate) fn link_get(name: Option<&str>, index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if let Some(n) = name {
        m.attributes.push(LinkAttribute::IfName(n.to_string()));
    }
    m
}

/// Reads (index, name) from an `RTM_NEWLINK` body without decoding the rest
/// (links carry many attributes we do not need).
pub(crate) fn decode_link(buf: &[u8]) -> Result<(u32, String), NlError> {
    const IFINFO: usize = 16;
    const IFLA_IFNAME: u16 = 3;
    if buf.len() < IFINFO {
        return Err(NlError::Decode("short ifinfomsg".into()));
    }
    let index = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]) as u32;
    let name = crate::nl::attr_string(&buf[IFINFO..], IFLA_IFNAME)
        .ok_or_else(|| NlError::Decode("link without IFLA_IFNAME".into()))?;
    Ok((index, name))
}

/// The `RTM_NEWRULE` / `RTM_DELRULE` body for `r`.
pub(crate) fn rule_msg(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    let h = &mut m.header;
    h.family = match r.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    h.src_len = r.from.map(|n| n.prefix_len()).unwrap_or(0);
    h.dst_len = r.to.map(|n| n.prefix_len()).unwrap_or(0);
    h.action = match r.action {
        RuleAction::Lookup => NlAction::ToTable,
        RuleAction::Goto(_) => NlAction::Goto,
        RuleAction::Nop => NlAction::Nop,
        RuleAction::Blackhole => NlAction::Blackhole,
        RuleAction::Unreachable => NlAction::Unreachable,
        RuleAction::Prohibit => NlAction::Prohibit,
    };
    if r.invert {
        h.flags = RuleFlags::Invert;
    }
    let a = &mut m.attributes;
    if r.action == RuleAction::Lookup {
        h.table = header_table(r.table);
        a.push(RuleAttribute::Table(r.table));
    }
    if let RuleAction::Goto(p) = r.action {
        a.push(RuleAttribute::Goto(p));
    }
    if let Some(p) = r.priority {
        a.push(RuleAttribute::Priority(p));
    }
    if let Some(n) = r.from {
        a.push(RuleAttribute::Source(n.addr()));
    }
    if let Some(n) = r.to {
        a.push(RuleAttribute::Destination(n.addr()));
    }
    if let Some(mark) = r.mark {
        a.push(RuleAttribute::FwMark(mark));
        a.push(RuleAttribute::FwMask(r.mask.unwrap_or(u32::MAX)));
    }
    if r.protocol.0 != 0 {
        a.push(RuleAttribute::Protocol(r.protocol.0.into()));
    }
    m.header.tos = r.tos;
    let a = &mut m.attributes;
    if let Some(d) = &r.iif {
        a.push(RuleAttribute::Iifname(d.clone()));
    }
    if let Some(d) = &r.oif {
        a.push(RuleAttribute::Oifname(d.clone()));
    }
    if let Some((start, end)) = r.uid_range {
        a.push(RuleAttribute::UidRange(RuleUidRange { start, end }));
    }
    if let Some(p) = r.ip_proto {
        a.push(RuleAttribute::IpProtocol(p.into()));
    }
    if let Some((start, end)) = r.sport {
        a.push(RuleAttribute::SourcePortRange(RulePortRange { start, end }));
    }
    if let Some((start, end)) = r.dport {
        a.push(RuleAttribute::DestinationPortRange(RulePortRange {
            start,
            end,
        }));
    }
    if let Some(l) = r.suppress_prefixlength {
        a.push(RuleAttribute::SuppressPrefixLen(l));
    }
    m
}

/// A rule dump request for `family` (`None`: both).
pub(crate) fn rule_dump(family: Option<Family>) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = dump_family(family);
    m
}

/// Decodes an `RTM_NEWRULE` body; `None` for other families.
#[cfg(test)]
pub(crate) fn decode_rule(buf: &[u8]) -> Result<Option<Rule>, NlError> {
    Ok(decode_rule_full(buf)?.map(|(r, _)| r))
}

/// Like `decode_rule`, and says whether the rule has selectors this crate
/// does not model (iif, oif, uid range, ports, tos ...).
pub(crate) fn decode_rule_full(buf: &[u8]) -> Result<Option<(Rule, bool)>, NlError> {
    let m = RuleMessage::parse(buf).map_err(|e| NlError::Decode(e.to_string()))?;
    let h = &m.header;
    let family = match h.family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return Ok(None),
    };
    let mut r = Rule::new(family);
    r.table = h.table as u32;
    r.invert = h.flags.contains(RuleFlags::Invert);
    r.action = match h.action {
        NlAction::ToTable => RuleAction::Lookup,
        NlAction::Goto => RuleAction::Goto(0),
        NlAction::Nop => RuleAction::Nop,
        NlAction::Blackhole => RuleAction::Blackhole,
        NlAction::Unreachable => RuleAction::Unreachable,
        NlAction::Prohibit => RuleAction::Prohibit,
        _ => RuleAction::Lookup,
    };
    let mut src = None;
    let mut dst = None;
    let mut extra = false;
    r.tos = h.tos;
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => r.priority = Some(*p),
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::FwMark(v) => r.mark = Some(*v),
            RuleAttribute::FwMask(v) => r.mask = Some(*v),
            RuleAttribute::Source(ip) => src = Some(*ip),
            RuleAttribute::Destination(ip) => dst = Some(*ip),
            RuleAttribute::Goto(p) => r.action = RuleAction::Goto(*p),
            RuleAttribute::Protocol(p) => r.protocol = Protocol(u8::from(*p)),
            // The kernel always reports these two; all ones means unset.
            RuleAttribute::SuppressPrefixLen(v) => {
                r.suppress_prefixlength = (*v != u32::MAX).then_some(*v)
            }
            RuleAttribute::SuppressIfGroup(v) => extra |= *v != u32::MAX,
            RuleAttribute::TunId(v) => extra |= *v != 0,
            RuleAttribute::L3MDev(v) => extra |= *v,
            RuleAttribute::Iifname(d) => r.iif = Some(d.clone()),
            RuleAttribute::Oifname(d) => r.oif = Some(d.clone()),
            RuleAttribute::UidRange(u) => r.uid_range = Some((u.start, u.end)),
            RuleAttribute::IpProtocol(p) => r.ip_proto = Some(u8::from(*p)),
            RuleAttribute::SourcePortRange(p) => r.sport = Some((p.start, p.end)),
            RuleAttribute::DestinationPortRange(p) => r.dport = Some((p.start, p.end)),
            RuleAttribute::Realm(_) => extra = true,
            _ => {}
        }
    }
    r.from = src.and_then(|ip| IpNet::new(ip, h.src_len).ok());
    r.to = dst.and_then(|ip| IpNet::new(ip, h.dst_len).ok());
    if r.mark.is_none() && r.mask.is_some() {
        r.mark = Some(0);
    }
    // The kernel reports priority 0 for the local-table rule as an absent
    // attribute on some versions; it is priority 0 either way.
    if r.priority.is_none() {
        r.priority = Some(0);
    }
    Ok(Some((r.normalized(), extra)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn bytes<E: Emitable>(e: &E) -> Vec<u8> {
        let mut v = vec![0; e.buffer_len()];
        e.emit(&mut v);
        v
    }

    #[test]
    fn new_route_bytes_put_big_tables_in_rta_table() {
        let r = Route::new("10.1.0.0/16".parse().unwrap())
            .via("10.0.0.1".parse().unwrap())
            .dev("eth0")
            .table(1000)
            .metric(5);
        let b = bytes(&route_new(&r, Some(7), Some(1400), &[]));
        // rtmsg: family, dst_len, src_len, tos, table, proto, scope, type, flags.
        assert_eq!(&b[..8], &[2, 16, 0, 0, 0, 3, 0, 1]);
        // RTA_TABLE (15) = 1000 comes first.
        assert_eq!(&b[12..20], &[8, 0, 15, 0, 0xe8, 0x03, 0, 0]);
        // RTA_DST (1) = 10.1.0.0.
        assert_eq!(&b[20..28], &[8, 0, 1, 0, 10, 1, 0, 0]);
        // RTA_GATEWAY (5), RTA_OIF (4), RTA_PRIORITY (6), RTA_METRICS (8).
        assert_eq!(&b[28..32], &[8, 0, 5, 0]);
        assert_eq!(&b[36..44], &[8, 0, 4, 0, 7, 0, 0, 0]);
        assert_eq!(&b[44..52], &[8, 0, 6, 0, 5, 0, 0, 0]);
        assert_eq!(&b[52..56], &[12, 0, 8, 0]);
        assert_eq!(&b[56..64], &[8, 0, 2, 0, 0x78, 0x05, 0, 0]);
        // Decoding gives the same route back (device still unnamed).
        let d = decode_route(&b).unwrap().unwrap();
        let mut want = r.clone();
        want.device = None;
        want.mtu = Some(1400);
        assert_eq!(d.route, want);
        assert_eq!(d.oif, Some(7));
        assert!(!d.complex);
    }

    #[test]
    fn multipath_bytes_round_trip() {
        let r = Route::new("10.7.0.0/16".parse().unwrap()).nexthops(vec![
            NextHop::new("a").via("10.0.0.2".parse().unwrap()),
            NextHop::new("b").via("10.1.0.2".parse().unwrap()).weight(3),
        ]);
        let b = bytes(&route_new(&r, None, None, &[4, 9]));
        let d = decode_route(&b).unwrap().unwrap();
        assert_eq!(d.hop_oifs, vec![4, 9]);
        assert!(!d.complex);
        let mut want = r.clone();
        for h in &mut want.multipath {
            h.device = None;
        }
        assert_eq!(d.route, want);
        // RTA_MULTIPATH (9) holds rtnexthop {len, flags, hops = weight-1, ifindex}.
        let at = b.windows(4).position(|w| w == [36, 0, 9, 0]).unwrap();
        assert_eq!(&b[at + 4..at + 12], &[16, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(&b[at + 20..at + 28], &[16, 0, 0, 2, 9, 0, 0, 0]);
    }

    #[test]
    fn per_path_realms_are_rta_flow_in_each_rtnexthop() {
        let r = Route::new("10.52.0.0/24".parse().unwrap()).nexthops(vec![
            NextHop::new("a").via("10.0.0.2".parse().unwrap()).realm(7),
            NextHop::new("b")
                .via("10.1.0.2".parse().unwrap())
                .realms(3, 4),
            NextHop::new("c").via("10.2.0.2".parse().unwrap()),
        ]);
        let b = bytes(&route_new(&r, None, None, &[4, 9, 5]));
        // Two hops of 24 bytes (rtnexthop, RTA_GATEWAY, RTA_FLOW), one of
        // 16: RTA_MULTIPATH is 4 + 24 + 24 + 16 long; no route-level flow.
        let at = b.windows(4).position(|w| w == [68, 0, 9, 0]).unwrap();
        assert_eq!(&b[at + 4..at + 12], &[24, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(&b[at + 12..at + 20], &[8, 0, 5, 0, 10, 0, 0, 2]);
        // RTA_FLOW (11) = SRC << 16 | DST, native endian.
        assert_eq!(&b[at + 20..at + 24], &[8, 0, 11, 0]);
        assert_eq!(&b[at + 24..at + 28], &7u32.to_ne_bytes());
        assert_eq!(&b[at + 28..at + 36], &[24, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(&b[at + 44..at + 48], &[8, 0, 11, 0]);
        assert_eq!(&b[at + 48..at + 52], &(3u32 << 16 | 4).to_ne_bytes());
        assert_eq!(&b[at + 52..at + 60], &[16, 0, 0, 0, 5, 0, 0, 0]);
        assert!(!b[..at].windows(4).any(|w| w == [8, 0, 11, 0]));
        let d = decode_route(&b).unwrap().unwrap();
        assert!(!d.complex, "a path's realm is modelled");
        let mut want = r.clone();
        for h in &mut want.multipath {
            h.device = None;
        }
        assert_eq!(d.route, want);
        assert_eq!(d.route.multipath[0].realm, Some(7));
        assert_eq!(d.route.multipath[1].realm, Some(3 << 16 | 4));
        assert_eq!(d.route.multipath[2].realm, None);
        assert_eq!(d.route.realm, None);
    }

    #[test]
    fn delete_template_is_scope_nowhere_type_0_of_the_protocol() {
        let r = Route::new("fd00::/64".parse().unwrap())
            .dev("eth0")
            .proto(Protocol::KERNEL);
        let b = bytes(&route_del(&r, Some(3)));
        assert_eq!(&b[..8], &[10, 64, 0, 0, 254, 2, 255, 0]);
        let b = bytes(&route_del(&r.clone().proto(Protocol::UNSPEC), Some(3)));
        assert_eq!(&b[..8], &[10, 64, 0, 0, 254, 0, 255, 0]);
    }

    #[test]
    fn small_table_in_header_and_unknown_attributes_tolerated() {
        let r = Route::new("10.2.0.0/24".parse().unwrap())
            .dev("x")
            .table(100);
        let mut b = bytes(&route_new(&r, Some(2), None, &[]));
        assert_eq!(b[4], 100);
        // Append an attribute type no kernel has (0x7ff0): still decodes.
        b.extend_from_slice(&[8, 0, 0xf0, 0x7f, 1, 2, 3, 4]);
        let d = decode_route(&b).unwrap().unwrap();
        assert_eq!(d.route.table, 100);
        assert_eq!(d.route.prefix, r.prefix);
        // RTA_TABLE wins over rtm_table.
        let mut m = route_new(&r.clone().table(5000), Some(2), None, &[]);
        m.header.table = 252;
        let d = decode_route(&bytes(&m)).unwrap().unwrap();
        assert_eq!(d.route.table, 5000);
    }

    #[test]
    fn fibmatch_request_is_full_length() {
        let b = bytes(&route_get("10.0.0.1".parse().unwrap(), true));
        assert_eq!(b[1], 32);
        assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 0x3000);
        let b = bytes(&route_dump(
            Some(Family::V6),
            Some(300),
            None,
            Some(RouteType::UNICAST),
            Some(4),
        ));
        assert_eq!(&b[..8], &[10, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn rule_bytes_round_trip() {
        let r = Rule::new(Family::V4)
            .priority(30)
            .from("10.0.0.5/32".parse().unwrap())
            .to("10.0.0.0/16".parse().unwrap())
            .mark(0x200, 0xf00)
            .table(300)
            .protocol(Protocol::STATIC)
            .invert(true);
        let b = bytes(&rule_msg(&r));
        // fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags.
        assert_eq!(&b[..8], &[2, 16, 32, 0, 0, 0, 0, 1]);
        assert_eq!(decode_rule(&b).unwrap().unwrap(), r);
    }
}
