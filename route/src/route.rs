//! [`Route`]: what a route is, its builder methods and its `ip route` text.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::{Error, Op};
use crate::names::{
    parse_table, table_name, Protocol, RouteFlags, RoutePref, RouteType, Scope, LOCAL_TABLE,
    MAIN_TABLE,
};

/// A Linux route, with the fields of Cilium's `route.Route`.
///
/// Build one with [`Route::new`] and the builder methods; print it with
/// `Display` (the arguments of `ip route replace`) or
/// [`to_ip_command`](Route::to_ip_command); parse that text back with
/// `FromStr`.
///
/// ```
/// use podnet_route::{Route, Protocol};
///
/// let r = Route::new("10.1.0.0/16".parse().unwrap())
///     .via("192.168.1.1".parse().unwrap())
///     .dev("eth0")
///     .table(300)
///     .proto(Protocol::STATIC)
///     .mtu(1450);
/// assert_eq!(
///     r.to_ip_command(),
///     "ip route replace 10.1.0.0/16 via 192.168.1.1 dev eth0 table 300 proto static mtu 1450"
/// );
/// assert_eq!(r.to_string().parse::<Route>().unwrap(), r);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Route {
    /// The destination prefix (no host bits set).
    pub prefix: IpNet,
    /// The gateway (`via`), of the prefix's family.
    pub nexthop: Option<IpAddr>,
    /// The preferred source address (`src`).
    pub local: Option<IpAddr>,
    /// The output device (`dev`).
    pub device: Option<String>,
    /// The route MTU (`mtu`, the `RTAX_MTU` metric). `Some(0)` is invalid.
    pub mtu: Option<u32>,
    /// The protocol (`proto`); `boot` by default, like `ip route add`.
    pub proto: Protocol,
    /// The scope (`scope`); always [`Scope::UNIVERSE`] for IPv6.
    pub scope: Scope,
    /// The table; main (254) by default. Any `u32` except 0 works.
    pub table: u32,
    /// The type (`unicast`, `local`, `blackhole` ...).
    pub kind: RouteType,
    /// The metric (`metric`, `RTA_PRIORITY`). `None` means the kernel's
    /// default: 0 for IPv4, 1024 for IPv6. Part of the route's identity.
    pub priority: Option<u32>,
    /// The paths of a multipath (ECMP) route, `nexthop via A dev X weight
    /// W ...`. When not empty, `nexthop` and `device` stay `None`.
    pub multipath: Vec<NextHop>,
    /// The flags the kernel reported (`linkdown`, `onlink` ...); read and
    /// printed by [`show`](Route::show), never sent, not compared by
    /// `upsert`; empty for a route built here.
    pub flags: RouteFlags,
    /// The IPv6 router preference the kernel reported (`pref`); read and
    /// printed by [`show`](Route::show), never sent; `medium` by default.
    pub pref: RoutePref,
}

/// One path of a multipath (ECMP) route.
///
/// ```
/// use podnet_route::{NextHop, Route};
/// let r = Route::new("10.7.0.0/16".parse().unwrap())
///     .nexthops(vec![
///         NextHop::new("eth0").via("10.0.0.2".parse().unwrap()),
///         NextHop::new("eth1").via("10.1.0.2".parse().unwrap()).weight(3),
///     ]);
/// assert_eq!(r.to_string(),
///     "10.7.0.0/16 nexthop via 10.0.0.2 dev eth0 weight 1 nexthop via 10.1.0.2 dev eth1 weight 3");
/// assert_eq!(r.to_string().parse::<Route>().unwrap(), r);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NextHop {
    /// The gateway of this path.
    pub gateway: Option<IpAddr>,
    /// The device of this path.
    pub device: Option<String>,
    /// The weight, 1 to 256 (iproute2's `weight`; 1 by default).
    pub weight: u16,
    /// The flags the kernel reported for this path (`linkdown` ...); read,
    /// never sent.
    pub flags: RouteFlags,
}

impl NextHop {
    /// A path through `device`, weight 1.
    pub fn new(device: impl Into<String>) -> NextHop {
        NextHop {
            gateway: None,
            device: Some(device.into()),
            weight: 1,
            flags: RouteFlags::default(),
        }
    }

    /// Sets the gateway.
    #[must_use]
    pub fn via(mut self, gateway: IpAddr) -> NextHop {
        self.gateway = Some(gateway);
        self
    }

    /// Sets the weight (1 to 256).
    #[must_use]
    pub fn weight(mut self, weight: u16) -> NextHop {
        self.weight = weight;
        self
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nexthop")?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(d) = &self.device {
            write!(f, " dev {d}")?;
        }
        write!(f, " weight {}", self.weight)
    }
}

impl Route {
    /// A unicast route to `prefix` in the main table, protocol `boot`, scope
    /// global, with nothing else set.
    #[must_use]
    pub fn new(prefix: IpNet) -> Route {
        Route {
            prefix,
            nexthop: None,
            local: None,
            device: None,
            mtu: None,
            proto: Protocol::BOOT,
            scope: Scope::UNIVERSE,
            table: MAIN_TABLE,
            kind: RouteType::UNICAST,
            priority: None,
            multipath: Vec::new(),
            flags: RouteFlags::default(),
            pref: RoutePref::default(),
        }
    }

    /// A route to the single address `ip` (a /32 or /128).
    #[must_use]
    pub fn host(ip: IpAddr) -> Route {
        Route::new(IpNet::from(ip))
    }

    /// Sets the gateway (`via`).
    #[must_use]
    pub fn via(mut self, nexthop: IpAddr) -> Route {
        self.nexthop = Some(nexthop);
        self
    }

    /// Sets the device (`dev`).
    pub fn dev(mut self, device: impl Into<String>) -> Route {
        self.device = Some(device.into());
        self
    }

    /// Sets the preferred source address (`src`).
    #[must_use]
    pub fn src(mut self, local: IpAddr) -> Route {
        self.local = Some(local);
        self
    }

    /// Sets the MTU (`mtu`).
    #[must_use]
    pub fn mtu(mut self, mtu: u32) -> Route {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the protocol (`proto`).
    #[must_use]
    pub fn proto(mut self, proto: Protocol) -> Route {
        self.proto = proto;
        self
    }

    /// Sets the scope (`scope`).
    #[must_use]
    pub fn scope(mut self, scope: Scope) -> Route {
        self.scope = scope;
        self
    }

    /// Sets the table (`table`).
    #[must_use]
    pub fn table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    /// Sets the type. Setting [`RouteType::LOCAL`] on a route of scope global
    /// also sets scope host, as Cilium and iproute2 do.
    #[must_use]
    pub fn kind(mut self, kind: RouteType) -> Route {
        self.kind = kind;
        if kind == RouteType::LOCAL && self.scope == Scope::UNIVERSE && self.prefix.addr().is_ipv4()
        {
            self.scope = Scope::HOST;
        }
        self
    }

    /// Sets the metric (`metric`).
    #[must_use]
    pub fn metric(mut self, priority: u32) -> Route {
        self.priority = Some(priority);
        self
    }

    /// Makes this a multipath (ECMP) route over `hops` (clears `nexthop`
    /// and `device`).
    #[must_use]
    pub fn nexthops(mut self, hops: Vec<NextHop>) -> Route {
        self.nexthop = None;
        self.device = None;
        self.multipath = hops;
        self
    }

    /// The metric the kernel stores for this route: `priority`, or the
    /// family's default when it is `None` (0 for IPv4, 1024 for IPv6);
    /// IPv6 also turns metric 0 into 1024.
    ///
    /// ```
    /// use podnet_route::Route;
    /// assert_eq!(Route::new("fd00::/64".parse().unwrap()).metric(0).kernel_metric(), 1024);
    /// assert_eq!(Route::new("10.0.0.0/8".parse().unwrap()).kernel_metric(), 0);
    /// ```
    #[must_use]
    pub fn kernel_metric(&self) -> u32 {
        match (self.priority, self.is_ipv6()) {
            (None | Some(0), true) => 1024,
            (Some(p), _) => p,
            (None, false) => 0,
        }
    }

    /// `true` for an IPv6 route.
    #[must_use]
    pub fn is_ipv6(&self) -> bool {
        self.prefix.addr().is_ipv6()
    }

    /// The `ip` command that creates or replaces this route:
    /// `ip route replace <Display>` (`ip -6 route replace` for IPv6).
    #[must_use]
    pub fn to_ip_command(&self) -> String {
        if self.is_ipv6() {
            format!("ip -6 route replace {self}")
        } else {
            format!("ip route replace {self}")
        }
    }

    /// The scope-link route to this route's nexthop that Cilium's upsert
    /// creates first: `<nexthop> dev <device> scope link table <table>`
    /// (scope global for IPv6), with this route's protocol.
    #[must_use]
    pub fn nexthop_route(&self) -> Option<Route> {
        let nh = self.nexthop?;
        let mut r = Route::host(nh).table(self.table).proto(self.proto);
        r.device.clone_from(&self.device);
        if nh.is_ipv4() {
            r.scope = Scope::LINK;
        }
        Some(r)
    }

    /// Checks the route on its own (without the kernel): prefix without host
    /// bits, families that agree, a device where one is needed, MTU not 0,
    /// table not 0, no scope for IPv6.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` saying what is wrong.
    pub fn validate(&self, op: Op) -> Result<(), Error> {
        let bad = |reason: String| Error::InvalidInput {
            op,
            object: self.to_string(),
            reason,
        };
        if self.prefix.trunc() != self.prefix {
            return Err(bad(format!(
                "prefix {} has host bits set (did you mean {}?)",
                self.prefix,
                self.prefix.trunc()
            )));
        }
        let v6 = self.is_ipv6();
        if let Some(nh) = self.nexthop {
            if nh.is_ipv6() != v6 {
                return Err(bad(format!(
                    "nexthop {nh} is not of the prefix's address family"
                )));
            }
            if self.kind.is_reject() {
                return Err(bad(format!("a {} route has no nexthop", self.kind)));
            }
        }
        if let Some(l) = self.local {
            if l.is_ipv6() != v6 {
                return Err(bad(format!(
                    "source {l} is not of the prefix's address family"
                )));
            }
        }
        if self.mtu == Some(0) {
            return Err(bad("MTU 0".into()));
        }
        if let Some(m) = self.mtu.filter(|m| *m > MAX_MTU) {
            return Err(bad(format!(
                "MTU {m} above {MAX_MTU}: the kernel would store {MAX_MTU}"
            )));
        }
        if let Some(nh) = self.nexthop {
            check_gateway(nh, &self.prefix).map_err(bad)?;
        }
        for h in &self.multipath {
            if let Some(g) = h.gateway {
                check_gateway(g, &self.prefix).map_err(bad)?;
            }
        }
        if self.table == 0 {
            return Err(bad("table 0 (unspec) is not a table".into()));
        }
        if v6 && self.scope != Scope::UNIVERSE {
            return Err(bad(format!(
                "IPv6 routes have no scope (the kernel always reports global), got scope {}",
                self.scope
            )));
        }
        let bad_name = |d: &str| d.is_empty() || d.len() > 15 || d.contains(['/', ' ', '\0']);
        if !self.multipath.is_empty() {
            if self.nexthop.is_some() || self.device.is_some() {
                return Err(bad(
                    "a multipath route keeps its gateways and devices in its nexthops".into(),
                ));
            }
            if self.kind.is_reject() {
                return Err(bad(format!("a {} route has no nexthops", self.kind)));
            }
            for h in &self.multipath {
                match &h.device {
                    None => return Err(bad(format!("{h} needs a device"))),
                    Some(d) if bad_name(d) => {
                        return Err(bad(format!("{d:?} is not a valid device name")))
                    }
                    _ => {}
                }
                if h.gateway.is_some_and(|g| g.is_ipv6() != v6) {
                    return Err(bad(format!("{h}: gateway of another address family")));
                }
                if !(1..=256).contains(&h.weight) {
                    return Err(bad(format!("{h}: weight must be 1 to 256")));
                }
            }
            return Ok(());
        }
        match &self.device {
            Some(d) if bad_name(d) => {
                return Err(bad(format!("{d:?} is not a valid device name")));
            }
            None if !self.kind.is_reject() => {
                return Err(bad(format!("a {} route needs a device", self.kind)));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The largest route MTU the kernel stores (`IP_MAX_MTU` less 15); it
/// clamps larger values to this, so [`Route::validate`] refuses them.
pub const MAX_MTU: u32 = 65520;

/// A gateway that cannot be one: the unspecified address, a multicast or
/// the IPv4 broadcast address, or the network address of the route's own
/// IPv4 prefix (which `ip` refuses too).
fn check_gateway(gw: IpAddr, prefix: &IpNet) -> Result<(), String> {
    if gw.is_unspecified() {
        return Err(format!("gateway {gw} is the unspecified address"));
    }
    if gw.is_multicast() {
        return Err(format!("gateway {gw} is a multicast address"));
    }
    if let IpAddr::V4(a) = gw {
        if a.is_broadcast() {
            return Err(format!("gateway {gw} is the broadcast address"));
        }
        if prefix.prefix_len() > 0 && prefix.prefix_len() < 31 && gw == prefix.network() {
            return Err(format!(
                "gateway {gw} is the network address of the route's prefix {prefix}"
            ));
        }
    }
    Ok(())
}

/// The table iproute2 picks when `ip route add` gets none.
fn default_table(kind: RouteType) -> u32 {
    match kind.0 {
        // local, broadcast, anycast, nat go to the local table.
        2 | 3 | 4 | 10 => LOCAL_TABLE,
        _ => MAIN_TABLE,
    }
}

/// The scope iproute2 picks when `ip route add` gets none.
fn default_scope(v6: bool, kind: RouteType, has_gateway: bool) -> Scope {
    if v6 {
        return Scope::UNIVERSE;
    }
    match kind.0 {
        2 | 10 => Scope::HOST,
        3..=5 => Scope::LINK,
        0 | 1 if !has_gateway => Scope::LINK,
        _ => Scope::UNIVERSE,
    }
}

fn fmt_prefix(p: &IpNet) -> String {
    match p {
        // Only 0.0.0.0/0 is `default`: `1.7.0.0/0` (host bits, refused by
        // `validate`) stays as it is, so its text parses back to it.
        IpNet::V4(n) if n.prefix_len() == 0 && n.addr().is_unspecified() => "default".into(),
        IpNet::V4(n) if n.prefix_len() == 32 => n.addr().to_string(),
        IpNet::V6(n) if n.prefix_len() == 128 => n.addr().to_string(),
        _ => p.to_string(),
    }
}

impl fmt::Display for Route {
    /// The arguments of `ip route replace` that recreate this route, in the
    /// order `ip route show` prints them, leaving out what iproute2 would
    /// pick by itself (type unicast, table main, proto boot, its default
    /// scope).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RouteType::UNICAST {
            write!(f, "{} ", self.kind)?;
        }
        f.write_str(&fmt_prefix(&self.prefix))?;
        if let Some(nh) = self.nexthop {
            write!(f, " via {nh}")?;
        }
        if let Some(d) = &self.device {
            write!(f, " dev {d}")?;
        }
        if self.table != default_table(self.kind) {
            write!(f, " table {}", table_name(self.table))?;
        }
        if self.proto != Protocol::BOOT {
            write!(f, " proto {}", self.proto)?;
        }
        let gw = self.nexthop.is_some() || !self.multipath.is_empty();
        if self.scope != default_scope(self.is_ipv6(), self.kind, gw) {
            write!(f, " scope {}", self.scope)?;
        }
        if let Some(l) = self.local {
            write!(f, " src {l}")?;
        }
        if let Some(m) = self.priority {
            write!(f, " metric {m}")?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        for h in &self.multipath {
            write!(f, " {h}")?;
        }
        Ok(())
    }
}

/// A parse failure of `text`.
pub(crate) fn parse_err(text: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        op: Op::Parse,
        object: text.to_string(),
        reason: reason.into(),
    }
}

fn parse_addr(text: &str, word: &str) -> Result<IpAddr, Error> {
    word.parse::<IpAddr>()
        .map_err(|_| parse_err(text, format!("{word:?} is not an IP address")))
}

pub(crate) fn parse_prefix(text: &str, word: &str, v6: Option<bool>) -> Result<IpNet, Error> {
    if word == "default" || word == "all" || word == "any" {
        return Ok(if v6 == Some(true) {
            IpNet::V6(Default::default())
        } else {
            IpNet::V4(Default::default())
        });
    }
    if let Ok(n) = word.parse::<IpNet>() {
        return Ok(n);
    }
    parse_addr(text, word)
        .map(IpNet::from)
        .map_err(|_| parse_err(text, format!("{word:?} is not a prefix")))
}

/// Strips a leading `ip [-4|-6] <object> <verb>` and returns the family flag.
pub(crate) fn strip_command<'a>(
    words: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
    object: &str,
) -> Option<bool> {
    let mut v6 = None;
    if words.peek() == Some(&"ip") {
        words.next();
    }
    loop {
        match words.peek() {
            Some(&"-6") => v6 = Some(true),
            Some(&"-4") => v6 = Some(false),
            _ => break,
        }
        words.next();
    }
    if words.peek() == Some(&object) {
        words.next();
        if let Some(w) = words.peek() {
            if matches!(
                *w,
                "add" | "replace" | "change" | "append" | "del" | "delete" | "prepend"
            ) {
                words.next();
            }
        }
    }
    v6
}

impl FromStr for Route {
    type Err = Error;

    /// Parses `ip route` arguments (optionally with a leading
    /// `ip [-6] route replace`): `[TYPE] PREFIX [via ADDR] [dev NAME]
    /// [table T] [proto P] [scope S] [src ADDR] [metric N] [mtu N]`, with
    /// iproute2's defaults for what is left out.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace().peekable();
        let v6_flag = strip_command(&mut words, "route");
        let mut kind = RouteType::UNICAST;
        let mut first = words.next().ok_or_else(|| parse_err(text, "no prefix"))?;
        if first == "to" {
            first = words.next().ok_or_else(|| parse_err(text, "no prefix"))?;
        }
        // Like `ip`, only a type's name leads (a number there is a prefix).
        if let Some(k) = RouteType::from_name(first) {
            kind = k;
            first = words
                .next()
                .ok_or_else(|| parse_err(text, "no prefix after the type"))?;
        }
        let prefix = parse_prefix(text, first, v6_flag)?;
        // `default` without -4/-6 takes its family from the addresses that
        // follow, as `ip` does (`default via fd00::1` is an IPv6 route).
        let family_from_addresses = v6_flag.is_none() && matches!(first, "default" | "all" | "any");
        let mut r = Route::new(prefix);
        r.kind = kind;
        let mut table = None;
        let mut scope = None;
        while let Some(w) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| parse_err(text, format!("{w:?} needs a value")))
            };
            match w {
                "via" => {
                    let mut v = value()?;
                    if v == "inet" || v == "inet6" {
                        v = value()?;
                    }
                    r.nexthop = Some(parse_addr(text, v)?);
                }
                "dev" | "oif" => r.device = Some(value()?.to_string()),
                "table" => {
                    table = Some(parse_table(value()?).map_err(|e| parse_err(text, e.to_string()))?)
                }
                "proto" | "protocol" => {
                    r.proto = value()?
                        .parse()
                        .map_err(|e: crate::names::NameError| parse_err(text, e.to_string()))?
                }
                "scope" => {
                    scope = Some(
                        value()?
                            .parse::<Scope>()
                            .map_err(|e| parse_err(text, e.to_string()))?,
                    )
                }
                "src" => r.local = Some(parse_addr(text, value()?)?),
                "metric" | "priority" | "preference" => {
                    let v = value()?;
                    r.priority = Some(
                        v.parse()
                            .map_err(|_| parse_err(text, format!("bad metric {v:?}")))?,
                    )
                }
                "mtu" => {
                    let v = value()?;
                    if v == "lock" {
                        return Err(parse_err(text, "locked MTU is not supported"));
                    }
                    r.mtu = Some(
                        v.parse()
                            .map_err(|_| parse_err(text, format!("bad mtu {v:?}")))?,
                    )
                }
                "nexthop" => {
                    // `nexthop [via A] [dev X] [weight W]`, repeated, last.
                    r.multipath.push(NextHop {
                        gateway: None,
                        device: None,
                        weight: 1,
                        flags: RouteFlags::default(),
                    });
                }
                "weight" if !r.multipath.is_empty() => {
                    let v = value()?;
                    if let Some(h) = r.multipath.last_mut() {
                        h.weight = v
                            .parse()
                            .map_err(|_| parse_err(text, format!("bad weight {v:?}")))?;
                    }
                }
                other => return Err(parse_err(text, format!("unsupported word {other:?}"))),
            }
            // Inside a `nexthop` group, via/dev belong to the group.
            if !r.multipath.is_empty() && w != "nexthop" && w != "weight" {
                if !matches!(w, "via" | "dev" | "oif") {
                    return Err(parse_err(text, format!("{w:?} after nexthop")));
                }
                let (gw, dev) = (r.nexthop.take(), r.device.take());
                if let Some(h) = r.multipath.last_mut() {
                    if gw.is_some() {
                        h.gateway = gw;
                    }
                    if dev.is_some() {
                        h.device = dev;
                    }
                }
            }
        }
        if family_from_addresses {
            let first_addr = r
                .nexthop
                .or_else(|| r.multipath.iter().find_map(|h| h.gateway))
                .or(r.local);
            if first_addr.is_some_and(|a| a.is_ipv6()) {
                r.prefix = IpNet::V6(Default::default());
            }
        }
        let v6 = r.prefix.addr().is_ipv6();
        r.table = table.unwrap_or_else(|| default_table(kind));
        let gw = r.nexthop.is_some() || !r.multipath.is_empty();
        r.scope = scope.unwrap_or_else(|| default_scope(v6, kind, gw));
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn display_matches_iproute2() {
        let r = Route::new(p("10.0.0.0/24")).dev("eth0").scope(Scope::LINK);
        assert_eq!(r.to_string(), "10.0.0.0/24 dev eth0");
        let r = Route::new(p("10.0.0.0/24")).dev("eth0");
        assert_eq!(r.to_string(), "10.0.0.0/24 dev eth0 scope global");
        let r = Route::new(p("0.0.0.0/0"))
            .via("10.0.0.1".parse().unwrap())
            .dev("eth1")
            .table(92);
        assert_eq!(r.to_string(), "default via 10.0.0.1 dev eth1 table 92");
        let r = Route::host("10.0.0.9".parse().unwrap())
            .dev("lo")
            .kind(RouteType::LOCAL);
        assert_eq!(r.to_string(), "local 10.0.0.9 dev lo table main");
        let r = Route::new(p("2001:db8::/64"))
            .via("fe80::1".parse().unwrap())
            .dev("eth0")
            .metric(1024)
            .proto(Protocol(192));
        assert_eq!(
            r.to_ip_command(),
            "ip -6 route replace 2001:db8::/64 via fe80::1 dev eth0 proto eigrp metric 1024"
        );
        let r = Route::new(p("10.9.0.0/16"))
            .kind(RouteType::BLACKHOLE)
            .table(1000);
        assert_eq!(r.to_string(), "blackhole 10.9.0.0/16 table 1000");
    }

    #[test]
    fn default_takes_its_family_from_the_gateway() {
        let r: Route = "default via fd00::fe dev eth0 table 77".parse().unwrap();
        assert!(r.is_ipv6(), "{r:?}");
        assert_eq!(r.to_string().parse::<Route>().unwrap(), r);
        let r: Route = "default nexthop via fe80::1 dev a nexthop via fe80::2 dev b"
            .parse()
            .unwrap();
        assert!(r.is_ipv6());
        let r: Route = "default via 10.0.0.1 dev eth0".parse().unwrap();
        assert!(!r.is_ipv6());
        // An explicit -4 keeps IPv4 (and validation then refuses the mix).
        let r: Route = "ip -4 route add default via fd00::1 dev eth0"
            .parse()
            .unwrap();
        assert!(!r.is_ipv6());
    }

    #[test]
    fn parse_round_trips() {
        let routes = [
            Route::new(p("10.0.0.0/24")).dev("eth0").scope(Scope::LINK),
            Route::new(p("10.0.0.0/24")).dev("eth0"),
            Route::new(p("0.0.0.0/0"))
                .via("10.0.0.1".parse().unwrap())
                .dev("e")
                .table(4096),
            Route::new(p("::/0"))
                .via("fd00::1".parse().unwrap())
                .dev("e")
                .metric(7),
            Route::host("10.0.0.9".parse().unwrap())
                .dev("lo")
                .kind(RouteType::LOCAL)
                .table(255),
            Route::host("10.0.0.9".parse().unwrap())
                .dev("lo")
                .kind(RouteType::LOCAL),
            Route::new(p("10.9.0.0/16")).kind(RouteType::UNREACHABLE),
            Route::new(p("10.1.0.0/16"))
                .via("10.0.0.1".parse().unwrap())
                .dev("eth0")
                .src("10.0.0.2".parse().unwrap())
                .mtu(1400)
                .proto(Protocol::KERNEL)
                .scope(Scope::SITE)
                .table(253),
            Route::new(p("10.7.0.0/16")).metric(5).nexthops(vec![
                NextHop::new("eth0").via("10.0.0.2".parse().unwrap()),
                NextHop::new("eth1")
                    .via("10.1.0.2".parse().unwrap())
                    .weight(256),
            ]),
            Route::new(p("fd07::/64")).table(300).nexthops(vec![
                NextHop::new("eth0")
                    .via("fd00::2".parse().unwrap())
                    .weight(2),
                NextHop::new("eth1"),
            ]),
        ];
        for r in routes {
            let text = r.to_string();
            assert_eq!(text.parse::<Route>().unwrap(), r, "{text}");
            assert_eq!(r.to_ip_command().parse::<Route>().unwrap(), r);
        }
    }

    #[test]
    fn fuzz_found_texts_round_trip_or_are_refused() {
        // `1.7.0.0/0` printed as `default` and came back as 0.0.0.0/0.
        let r: Route = "1.7.0.0/0 dev e".parse().unwrap();
        assert_eq!(r.to_string().parse::<Route>().unwrap(), r);
        assert!(r.validate(Op::Upsert).is_err());
        // A numeric leading type (`0x40 ::`) printed as `64 ::`, which no
        // parser takes: like `ip`, only type names lead.
        assert!("0x40 :: dev e".parse::<Route>().is_err());
        assert!("6 10.0.0.0/8".parse::<Route>().is_err());
        let r: Route = "blackhole 10.0.0.0/8".parse().unwrap();
        assert_eq!(r.kind, RouteType::BLACKHOLE);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trips() {
        let r: Route = "10.7.0.0/16 table 300 proto static nexthop via 10.0.0.2 dev eth0 weight 2"
            .parse()
            .unwrap();
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("10.7.0.0/16"), "{j}");
        assert_eq!(serde_json::from_str::<Route>(&j).unwrap(), r);
        let rule: crate::Rule = "priority 30 from 10.0.0.5 lookup 92".parse().unwrap();
        let j = serde_json::to_string(&rule).unwrap();
        assert_eq!(serde_json::from_str::<crate::Rule>(&j).unwrap(), rule);
    }

    #[test]
    fn parse_applies_iproute2_defaults() {
        let r: Route = "10.0.0.0/8 dev eth0".parse().unwrap();
        assert_eq!(r.scope, Scope::LINK);
        let r: Route = "local 10.0.0.1 dev lo".parse().unwrap();
        assert_eq!((r.table, r.scope), (LOCAL_TABLE, Scope::HOST));
        let r: Route = "ip -6 route replace default via fe80::1 dev eth0"
            .parse()
            .unwrap();
        assert_eq!(r.prefix, p("::/0"));
        assert!("10.0.0.0/8 frobnicate 3".parse::<Route>().is_err());
        assert!("".parse::<Route>().is_err());
    }

    #[test]
    fn validation_rejects_bad_input() {
        let bad = [
            Route::new(p("10.0.0.1/24")).dev("eth0"),
            Route::new(p("10.0.0.0/24"))
                .dev("eth0")
                .via("fd00::1".parse().unwrap()),
            Route::new(p("10.0.0.0/24")).dev("eth0").mtu(0),
            Route::new(p("10.0.0.0/24")).via("10.1.1.1".parse().unwrap()),
            Route::new(p("fd00::/64")).dev("eth0").scope(Scope::LINK),
            Route::new(p("10.0.0.0/24")).dev("eth0").table(0),
            Route::new(p("10.0.0.0/24")).dev("a-very-long-device-name"),
            // Values the kernel would change or refuse.
            Route::new(p("10.0.0.0/24")).dev("eth0").mtu(65521),
            Route::new(p("10.1.0.0/24"))
                .dev("e")
                .via("0.0.0.0".parse().unwrap()),
            Route::new(p("10.1.0.0/24"))
                .dev("e")
                .via("255.255.255.255".parse().unwrap()),
            Route::new(p("10.1.0.0/24"))
                .dev("e")
                .via("224.0.0.1".parse().unwrap()),
            Route::new(p("10.1.0.0/24"))
                .dev("e")
                .via("10.1.0.0".parse().unwrap()),
            Route::new(p("fd00::/64"))
                .dev("e")
                .via("::".parse().unwrap()),
            Route::new(p("fd00::/64"))
                .dev("e")
                .via("ff02::1".parse().unwrap()),
            Route::new(p("10.7.0.0/16"))
                .nexthops(vec![NextHop::new("e").via("0.0.0.0".parse().unwrap())]),
        ];
        for r in bad {
            let e = r.validate(Op::Upsert).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{r}: {e}");
        }
        Route::new(p("10.0.0.0/24"))
            .kind(RouteType::BLACKHOLE)
            .validate(Op::Upsert)
            .unwrap();
    }
}
