//! Route operations of [`Handle`]: upsert (with Cilium's nexthop route and
//! EINVAL retry), delete, exact lookup, list, `ip route get`, tables.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::Emitable;

use super::*;
use crate::codec::{self, Decoded};
use crate::error::{Error, Op, Result};
use crate::fasthash::FastMap;
use crate::names::{Protocol, RouteType};
use crate::nl::{self, Conn, NlError};
use crate::route::Route;
use crate::rule::Family;

/// The MTU configuration of Cilium's `mtu.Configuration`, as far as routes
/// use it: a route that asks for an MTU (`Route::mtu` set) gets the device
/// MTU when it has a preferred source (`local`: a route to local
/// endpoints), else the route MTU (which leaves room for tunnel overhead).
///
/// ```
/// use podnet_route::MtuConfig;
/// let cfg = MtuConfig::new(9001, 8951);
/// assert!(cfg.validate().is_ok());
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MtuConfig {
    /// The MTU of the devices (`GetDeviceMTU`).
    pub device_mtu: u32,
    /// The MTU for routes leaving the node (`GetRouteMTU`).
    pub route_mtu: u32,
}

impl MtuConfig {
    /// The device MTU and the route MTU.
    #[must_use]
    pub fn new(device_mtu: u32, route_mtu: u32) -> MtuConfig {
        MtuConfig {
            device_mtu,
            route_mtu,
        }
    }

    /// Both MTUs must be non-zero.
    ///
    /// # Errors
    ///
    /// A message naming the zero or too large MTU.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.device_mtu == 0 || self.route_mtu == 0 {
            return Err(format!(
                "MTU 0 in MTU configuration (device {}, route {})",
                self.device_mtu, self.route_mtu
            ));
        }
        let max = crate::route::MAX_MTU;
        if self.device_mtu > max || self.route_mtu > max {
            return Err(format!(
                "MTU above {max} in MTU configuration (device {}, route {}): the kernel would store {max}",
                self.device_mtu, self.route_mtu
            ));
        }
        Ok(())
    }
}

/// Which routes [`Handle::list`] returns. The kernel filters by family,
/// table, protocol, type and device itself (strict checking), so a filtered
/// list costs only what it returns.
///
/// ```
/// use podnet_route::{RouteFilter, Family};
/// let f = RouteFilter::default().family(Family::V6).table(300).device("eth0");
/// assert_eq!(f.table, Some(300));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteFilter {
    /// Only this family (`None`: IPv4 and IPv6).
    pub family: Option<Family>,
    /// Only this table (`None`: every table).
    pub table: Option<u32>,
    /// Only routes through this device.
    pub device: Option<String>,
    /// Only routes of this protocol.
    pub proto: Option<Protocol>,
    /// Only routes of this type.
    pub kind: Option<RouteType>,
}

impl RouteFilter {
    /// Sets the family.
    #[must_use]
    pub fn family(mut self, f: Family) -> Self {
        self.family = Some(f);
        self
    }
    /// Sets the table.
    #[must_use]
    pub fn table(mut self, t: u32) -> Self {
        self.table = Some(t);
        self
    }
    /// Sets the device.
    pub fn device(mut self, d: impl Into<String>) -> Self {
        self.device = Some(d.into());
        self
    }
    /// Sets the protocol.
    #[must_use]
    pub fn proto(mut self, p: Protocol) -> Self {
        self.proto = Some(p);
        self
    }
    /// Sets the type.
    #[must_use]
    pub fn kind(mut self, k: RouteType) -> Self {
        self.kind = Some(k);
        self
    }
}

/// The selectors of [`Handle::get_with`], like `ip route get DST from SRC
/// iif DEV oif DEV mark MARK`.
///
/// ```
/// use podnet_route::GetOptions;
/// let q = GetOptions::new().from("10.0.0.5".parse().unwrap()).iif("lxc1");
/// assert!(q.oif.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// The source address (`from`).
    pub from: Option<IpAddr>,
    /// The input device (`iif`): an input (forwarding) lookup as for a
    /// packet arriving there.
    pub iif: Option<String>,
    /// The output device (`oif`).
    pub oif: Option<String>,
    /// The firewall mark (`mark`).
    pub mark: Option<u32>,
}

impl GetOptions {
    /// No selectors (`ip route get DST`).
    #[must_use]
    pub fn new() -> GetOptions {
        GetOptions::default()
    }
    /// Sets the source address (`from`).
    #[must_use]
    pub fn from(mut self, src: IpAddr) -> Self {
        self.from = Some(src);
        self
    }
    /// Sets the input device (`iif`).
    #[must_use]
    pub fn iif(mut self, dev: impl Into<String>) -> Self {
        self.iif = Some(dev.into());
        self
    }
    /// Sets the output device (`oif`).
    #[must_use]
    pub fn oif(mut self, dev: impl Into<String>) -> Self {
        self.oif = Some(dev.into());
        self
    }
    /// Sets the firewall mark (`mark`).
    #[must_use]
    pub fn mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }
}

/// What [`Handle::ensure`] did.
pub(crate) enum Ensured {
    Same,
    Created,
    Replaced(Box<Decoded>),
}

pub(crate) fn effective_mtu(r: &Route, cfg: Option<&MtuConfig>, op: Op) -> Result<Option<u32>> {
    let Some(cfg) = cfg else { return Ok(r.mtu) };
    cfg.validate().map_err(|reason| Error::InvalidInput {
        op,
        object: r.to_string(),
        reason,
    })?;
    Ok(r.mtu.map(|_| {
        if r.local.is_some() {
            cfg.device_mtu
        } else {
            cfg.route_mtu
        }
    }))
}

/// Does the kernel's `d` already say what `r` (with `oif`, `mtu`) says?
pub(crate) fn same_as(
    r: &Route,
    oif: Option<u32>,
    mtu: Option<u32>,
    hops: &[u32],
    d: &Decoded,
) -> bool {
    let k = &d.route;
    let paths = match r.nhid {
        // Through a nexthop object: the object is what counts.
        Some(id) => k.nhid == Some(id),
        // Without an id, a route the kernel has on an object whose gateway
        // and device are the ones asked for is the same: it stays there.
        None => {
            k.nexthop == r.nexthop
                // IPv6 reject routes sit on `lo` whatever was asked.
                && (d.oif == oif || (oif.is_none() && r.kind.is_reject()))
                && same_paths(r, hops, d)
                && k.is_onlink() == r.is_onlink()
        }
    };
    !d.cloned
        && k.prefix == r.prefix
        && k.table == r.table
        && k.kind == r.kind
        && k.proto == r.proto
        && k.scope == r.scope
        && k.local == r.local
        && k.mtu == mtu
        && k.mtu_lock == r.mtu_lock
        && k.advmss == r.advmss
        && k.initcwnd == r.initcwnd
        && k.tos == r.tos
        && k.realm == r.realm
        && (!r.is_ipv6() || k.pref == r.pref)
        // The kernel counts a lifetime down: only its presence is compared.
        && (r.expires.is_none() || k.expires.is_some())
        && k.kernel_metric() == r.kernel_metric()
        && paths
}

/// One path as [`path_set`] compares it: (device index, gateway, weight,
/// onlink, realm).
pub(crate) type PathKey = (u32, Option<IpAddr>, u16, bool, Option<u32>);

/// The paths of a multipath route as a set with weights: (device index,
/// gateway, weight, onlink, realm), sorted. The kernel keeps them as
/// given but reports an IPv6 FIB answer rotated to the path its hash
/// picked, so the order is not compared.
pub(crate) fn path_set(hops: &[crate::route::NextHop], oifs: &[u32]) -> Vec<PathKey> {
    let onlink = crate::names::RouteFlags::ONLINK;
    let mut v: Vec<_> = hops
        .iter()
        .zip(oifs.iter().copied().chain(std::iter::repeat(0)))
        .map(|(h, i)| (i, h.gateway, h.weight, h.flags.contains(onlink), h.realm))
        .collect();
    v.sort();
    v
}

pub(crate) fn same_paths(r: &Route, hops: &[u32], d: &Decoded) -> bool {
    r.multipath.len() == d.route.multipath.len()
        && path_set(&r.multipath, hops) == path_set(&d.route.multipath, &d.hop_oifs)
}

/// The routes of tables dumped once for a whole batch, by (IPv6, table).
pub(crate) type TableCache = HashMap<(bool, u32), FastMap<IpNet, Vec<Decoded>>>;

/// A table's routes indexed by prefix (what [`matches`] requires equal), so
/// a batch looks each route up in O(1) instead of scanning the table.
pub(crate) fn index_by_prefix(all: Vec<Decoded>) -> FastMap<IpNet, Vec<Decoded>> {
    let mut by: FastMap<IpNet, Vec<Decoded>> = FastMap::default();
    for d in all {
        by.entry(d.route.prefix).or_default().push(d);
    }
    by
}

/// The cached routes of `r`'s table with `r`'s prefix.
pub(crate) fn cached<'c>(
    cache: &'c TableCache,
    key: (bool, u32),
    r: &Route,
) -> impl Iterator<Item = &'c Decoded> {
    cache
        .get(&key)
        .and_then(|m| m.get(&r.prefix))
        .into_iter()
        .flatten()
}

/// What the prefix step of an upsert sends and how it treats what is there.
pub(crate) struct Put<'a> {
    pub(crate) oif: Option<u32>,
    pub(crate) mtu: Option<u32>,
    pub(crate) hops: &'a [u32],
    /// Retry EINVAL (the nexthop route was just created).
    pub(crate) retry: bool,
    /// Replace a route of another protocol.
    pub(crate) take_over: bool,
}

pub(crate) fn proto_matches(r: &Route, d: &Decoded) -> bool {
    r.proto == Protocol::UNSPEC || d.route.proto == r.proto
}

/// The "not found" of a delete that found no route of the identity.
pub(crate) fn absent(r: &Route) -> Error {
    Error::Kernel {
        op: Op::Delete,
        object: r.to_string(),
        errno: libc::ESRCH,
        message: Some(format!(
            "no route of metric {} and protocol {}",
            r.kernel_metric(),
            r.proto
        )),
    }
}

/// How [`Handle::find`] matches.
#[derive(Clone, Copy)]
pub(crate) struct Crit {
    /// The multipath order must be the configured one (the FIB's IPv6
    /// answer rotates it).
    order: bool,
    /// Match the route's type (else any type).
    kind: bool,
    /// Match the nexthop when the route has one.
    nexthop: bool,
    /// `true`: match the identity's metric (None = the family default);
    /// `false`: match `priority` only when it is set.
    identity: bool,
    /// Allow "absent" from a FIB answer that shows a shorter prefix in the
    /// same table (used only where a wrong "absent" costs one replace).
    shortcut: bool,
}

impl Crit {
    /// The route of the same identity (table, prefix, metric; device when
    /// given), whatever its type and nexthop: what upsert replaces.
    const IDENTITY: Crit = Crit {
        order: false,
        kind: false,
        nexthop: false,
        identity: true,
        shortcut: false,
    };
    /// What [`Handle::lookup`] promises: type, and where set nexthop and
    /// metric, too.
    const LOOKUP: Crit = Crit {
        order: true,
        kind: true,
        nexthop: true,
        identity: false,
        shortcut: false,
    };
}

pub(crate) fn matches(r: &Route, oif: Option<u32>, c: Crit, d: &Decoded) -> bool {
    let k = &d.route;
    !d.cloned
        && k.prefix == r.prefix
        && k.table == r.table
        && k.tos == r.tos
        && (!c.kind || k.kind == r.kind)
        && (oif.is_none() || d.oif == oif)
        && (!c.nexthop || r.nexthop.is_none() || k.nexthop == r.nexthop)
        && (!c.nexthop || r.nhid.is_none() || k.nhid == r.nhid)
        && if c.identity {
            k.kernel_metric() == r.kernel_metric()
        } else {
            r.priority.is_none() || k.kernel_metric() == r.kernel_metric()
        }
}

/// Whether a `fibmatch` answer can be taken at its word. While no custom
/// rules exist, the kernel keeps the local table merged into main, and a
/// local-table entry is then reported as table main: answers of the types
/// the local table holds (local, broadcast, anycast, multicast, nat), or
/// reported as table local, are checked by a dump instead.
pub(crate) fn fib_trustworthy(d: &Decoded) -> bool {
    !matches!(d.route.kind.0, 2..=5 | 10) && d.route.table != crate::names::LOCAL_TABLE
}

/// A `fibmatch` answer that is `r` itself, of its type.
pub(crate) fn fib_confirms(r: &Route, oif: Option<u32>, c: Crit, d: &Decoded) -> bool {
    fib_trustworthy(d) && d.route.kind == r.kind && matches(r, oif, c, d)
}

impl Handle {
    /// Resolves the route's device (None when it has none).
    pub(crate) fn oif(
        &self,
        c: &mut Conn,
        r: &Route,
        op: Op,
        refresh: bool,
    ) -> Result<Option<u32>> {
        if r.nhid.is_some() {
            // The object's device, reported, not asked for.
            return Ok(None);
        }
        r.device
            .as_deref()
            .map(|d| self.dev_index(c, d, refresh, op, r))
            .transpose()
    }

    pub(crate) fn named(&self, c: &mut Conn, d: Decoded) -> Route {
        let mut r = d.route;
        r.device = d.oif.and_then(|i| self.name_of(c, i));
        for (h, idx) in r.multipath.iter_mut().zip(&d.hop_oifs) {
            h.device = self.name_of(c, *idx);
        }
        r
    }

    /// Resolves the devices of a multipath route's hops.
    pub(crate) fn hop_oifs(
        &self,
        c: &mut Conn,
        r: &Route,
        op: Op,
        refresh: bool,
    ) -> Result<Vec<u32>> {
        if r.nhid.is_some() {
            return Ok(Vec::new());
        }
        r.multipath
            .iter()
            .filter_map(|h| h.device.as_deref())
            .map(|d| self.dev_index(c, d, refresh, op, r))
            .collect()
    }

    // --------------------------------------------------------------- finding

    pub(crate) fn dump_routes(
        &self,
        c: &mut Conn,
        req: &impl Emitable,
        mut keep: impl FnMut(&Decoded) -> bool,
    ) -> std::result::Result<Vec<Decoded>, NlError> {
        let r = dump_retrying(c, nl::RTM_GETROUTE, req, nl::RTM_NEWROUTE, |p, out| {
            if let Some(d) = codec::decode_route(p)? {
                if !d.cloned && keep(&d) {
                    out.push(d);
                }
            }
            Ok(())
        });
        match r {
            // A table that does not exist holds no routes.
            Err(NlError::Kernel { errno, .. }) if errno == libc::ENOENT => Ok(Vec::new()),
            r => r,
        }
    }

    /// Finds the kernel's route matching `r` exactly: first a `fibmatch`
    /// FIB lookup (one message, independent of the table's size), and when
    /// that answers with a different route, a strict-check dump of the one
    /// table filtered by device (and type), matched here exactly. With a
    /// `cache` (one batch), the table is dumped whole once and every later
    /// miss in it is matched against that copy: re-upserting n routes of a
    /// table no rule reaches costs n FIB lookups and one dump, not n dumps.
    pub(crate) fn find(
        &self,
        c: &mut Conn,
        r: &Route,
        oif: Option<u32>,
        crit: Crit,
        cache: Option<&mut TableCache>,
    ) -> std::result::Result<Option<Decoded>, NlError> {
        match c.get(
            nl::RTM_GETROUTE,
            &codec::route_get(r.prefix.addr(), true),
            nl::RTM_NEWROUTE,
            codec::decode_route,
        ) {
            // An IPv6 answer lists multipath paths rotated to the one its
            // hash picked: where the order matters, the dump has it.
            Ok(Some(d))
                if fib_confirms(r, oif, crit, &d)
                    && !(crit.order && r.is_ipv6() && d.route.multipath.len() > 1) =>
            {
                return Ok(Some(d))
            }
            Ok(Some(d))
                if crit.shortcut
                    && fib_trustworthy(&d)
                    && d.route.table == r.table
                    && d.route.prefix.prefix_len() < r.prefix.prefix_len() =>
            {
                return Ok(None)
            }
            Ok(_) | Err(NlError::Kernel { .. }) | Err(NlError::Decode(_)) => {}
            Err(e) => return Err(e),
        }
        let fam = Family::of(&r.prefix);
        if let Some(cache) = cache {
            let key = (fam == Family::V6, r.table);
            if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(key) {
                let req = codec::route_dump(Some(fam), Some(r.table), None, None, None);
                let all = self.dump_routes(c, &req, |d| d.route.table == r.table)?;
                e.insert(index_by_prefix(all));
            }
            let found = cached(cache, key, r);
            return Ok(found
                .filter(|d| matches(r, oif, crit, d))
                .min_by_key(|d| d.route.kernel_metric())
                .cloned());
        }
        let kind = crit.kind.then_some(r.kind);
        let req = codec::route_dump(Some(fam), Some(r.table), None, kind, oif);
        let found = self.dump_routes(c, &req, |d| matches(r, oif, crit, d))?;
        Ok(found.into_iter().min_by_key(|d| d.route.kernel_metric()))
    }

    // ------------------------------------------------------------- mutation

    /// Sends a route request; with `retry`, EINVAL is retried like Cilium
    /// does right after it created the nexthop route (the kernel's race),
    /// and only then: other EINVALs cannot clear.
    pub(crate) fn send_route(
        &self,
        c: &mut Conn,
        ty: u16,
        flags: u16,
        msg: &impl Emitable,
        retry: bool,
    ) -> std::result::Result<(), NlError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match c.ack(ty, flags, msg) {
                Err(NlError::Kernel { errno, .. })
                    if retry && errno == libc::EINVAL && tries < ROUTE_REPLACE_MAX_TRIES =>
                {
                    std::thread::sleep(ROUTE_REPLACE_RETRY_INTERVAL);
                }
                r => return r,
            }
        }
    }

    /// Makes sure the nexthop route `r` is in the kernel (replace when
    /// absent or different). A route of the same identity but another
    /// protocol (a daemon's, the kernel's) already makes the gateway
    /// reachable and is left alone.
    pub(crate) fn ensure(
        &self,
        c: &mut Conn,
        r: &Route,
        oif: Option<u32>,
        cache: Option<&mut TableCache>,
    ) -> std::result::Result<Ensured, NlError> {
        let crit = Crit {
            shortcut: true,
            ..Crit::IDENTITY
        };
        let mut cache = cache;
        let old = self.find(c, r, oif, crit, cache.as_deref_mut())?;
        if let Some(d) = &old {
            if same_as(r, oif, None, &[], d) || d.route.proto != r.proto {
                return Ok(Ensured::Same);
            }
        }
        self.send_route(
            c,
            nl::RTM_NEWROUTE,
            nl::NLM_F_CREATE | nl::NLM_F_REPLACE,
            &codec::route_new(r, oif, None, &[]),
            false,
        )?;
        // A batch's copy of the table now has it too: a later route through
        // the same gateway with another protocol finds it there (and leaves
        // it alone) instead of replacing it.
        if let Some(cache) = cache {
            if let Some(t) = cache.get_mut(&(r.is_ipv6(), r.table)) {
                let mut route = r.clone();
                route.device = None;
                let entry = t.entry(r.prefix).or_default();
                entry.retain(|d| !matches(r, oif, Crit::IDENTITY, d));
                entry.push(Decoded {
                    route,
                    oif,
                    hop_oifs: Vec::new(),
                    complex: false,
                    kept: Vec::new(),
                    kept_metrics: Vec::new(),
                    kept_lock: 0,
                    cloned: false,
                });
            }
        }
        Ok(match old {
            Some(d) => Ensured::Replaced(Box::new(d)),
            None => Ensured::Created,
        })
    }

    /// Undoes an [`Ensured`] (best effort: the caller reports its own error).
    pub(crate) fn undo(&self, c: &mut Conn, r: &Route, oif: Option<u32>, what: Ensured) {
        match what {
            Ensured::Same => {}
            Ensured::Created => {
                let _ = c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(r, oif));
            }
            Ensured::Replaced(old) => {
                let mut msg = codec::route_new(&old.route, old.oif, old.route.mtu, &old.hop_oifs);
                codec::keep_from(&mut msg, &old.route, &old);
                let _ = c.ack(nl::RTM_NEWROUTE, nl::NLM_F_CREATE | nl::NLM_F_REPLACE, &msg);
            }
        }
    }

    /// The prefix step of an upsert: add exclusively; when a route of the
    /// same identity exists, compare and replace only if it differs, and
    /// (unless `p.take_over`) only if it is of the requested protocol.
    pub(crate) fn put_prefix(
        &self,
        c: &mut Conn,
        r: &Route,
        p: &Put<'_>,
        first: Option<NlError>,
        cache: Option<&mut TableCache>,
    ) -> std::result::Result<bool, NlError> {
        let mut msg = codec::route_new(r, p.oif, p.mtu, p.hops);
        let res = match first {
            Some(e) => Err(e),
            None => c.ack(nl::RTM_NEWROUTE, nl::NLM_F_CREATE | nl::NLM_F_EXCL, &msg),
        };
        match res {
            Ok(()) => Ok(true),
            Err(NlError::Kernel { errno, .. }) if errno == libc::EEXIST => {
                let mut cache = cache;
                let mine = self.find(c, r, p.oif, Crit::IDENTITY, cache.as_deref_mut())?;
                if let Some(d) = &mine {
                    if same_as(r, p.oif, p.mtu, p.hops, d) {
                        return Ok(false);
                    }
                }
                // The identity is (table, prefix, tos, metric), whatever the
                // device: the route a replace would hit may be on another.
                let hit = match (mine, p.oif) {
                    (Some(d), _) => Some(d),
                    (None, Some(_)) => self.find(c, r, None, Crit::IDENTITY, cache)?,
                    (None, None) => None,
                };
                if let Some(d) = hit {
                    if !p.take_over && d.route.proto != r.proto {
                        return Err(NlError::Conflict(Box::new(d.route)));
                    }
                    if d.complex {
                        return Err(NlError::Unmodelled(
                            Box::new(d.route),
                            "attributes on its paths (encapsulation) or a source prefix".into(),
                        ));
                    }
                    // What the crate does not model stays.
                    codec::keep_from(&mut msg, r, &d);
                }
                self.send_route(
                    c,
                    nl::RTM_NEWROUTE,
                    nl::NLM_F_CREATE | nl::NLM_F_REPLACE,
                    &msg,
                    p.retry,
                )?;
                Ok(true)
            }
            Err(NlError::Kernel { errno, .. }) if errno == libc::EINVAL && p.retry => {
                // Cilium's retry: the prefix may race the nexthop route
                // this call just created.
                self.send_route(
                    c,
                    nl::RTM_NEWROUTE,
                    nl::NLM_F_CREATE | nl::NLM_F_EXCL,
                    &msg,
                    true,
                )?;
                Ok(true)
            }
            // The kernel checks the nexthops before it looks for an
            // existing route: a gateway it cannot validate now (a rule
            // that makes it unreachable, say) fails even the add of a route
            // that is already there. Already there exactly as asked is no
            // error.
            Err(e @ NlError::Kernel { .. }) => {
                match self.find(c, r, p.oif, Crit::IDENTITY, cache) {
                    Ok(Some(d)) if same_as(r, p.oif, p.mtu, p.hops, &d) => Ok(false),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn upsert_locked(
        &self,
        c: &mut Conn,
        r: &Route,
        oif: Option<u32>,
        mtu: Option<u32>,
        hops: &[u32],
        take_over: bool,
    ) -> Result<bool> {
        let mut p = Put {
            oif,
            mtu,
            hops,
            retry: false,
            take_over,
        };
        let Some(nh) = r.nexthop_route() else {
            return self
                .put_prefix(c, r, &p, None, None)
                .map_err(|e| kernel(Op::Upsert, r, e));
        };
        // Fast path, one round trip: ask the FIB for the nexthop route and
        // add the prefix route exclusively in the same datagram. When the
        // FIB confirms the nexthop route as it should be (the common case),
        // the prefix outcome is final.
        let (fib, added) = c
            .get_route_then_add(
                &codec::route_get(nh.prefix.addr(), true),
                codec::decode_route,
                nl::NLM_F_CREATE | nl::NLM_F_EXCL,
                &codec::route_new(r, oif, mtu, hops),
            )
            .map_err(|e| kernel(Op::Upsert, r, e))?;
        let nh_confirmed = matches!(&fib, Ok(Some(d))
            if fib_confirms(&nh, oif, Crit::IDENTITY, d) && same_as(&nh, oif, None, &[], d));
        if nh_confirmed {
            return match added {
                Ok(()) => Ok(true),
                Err(e) => self
                    .put_prefix(c, r, &p, Some(e), None)
                    .map_err(|e| kernel(Op::Upsert, r, e)),
            };
        }
        // Slow path: make sure of the nexthop route, then of the prefix.
        let st = match self.ensure(c, &nh, oif, None) {
            Ok(st) => st,
            Err(e) => {
                if added.is_ok() {
                    // No half state: the prefix route went in first.
                    let _ = c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(r, oif));
                }
                return Err(kernel(Op::UpsertNexthop, &nh, e));
            }
        };
        let nh_changed = !matches!(st, Ensured::Same);
        p.retry = nh_changed;
        let prefix = match added {
            Ok(()) => Ok(true),
            // The prefix may have failed for want of its nexthop route: an
            // EEXIST is compared, anything else is tried again now.
            Err(e) if e.errno() == Some(libc::EEXIST) => self.put_prefix(c, r, &p, Some(e), None),
            Err(_) => self.put_prefix(c, r, &p, None, None),
        };
        match prefix {
            Ok(ch) => Ok(nh_changed | ch),
            Err(e) => {
                // No half state: take back the nexthop route we touched.
                self.undo(c, &nh, oif, st);
                Err(kernel(Op::Upsert, r, e))
            }
        }
    }

    /// Adds or updates a route with Cilium's semantics and returns whether
    /// anything changed.
    ///
    /// For `prefix via nexthop dev foo`, first makes sure `nexthop dev foo
    /// scope link` (same table and protocol) exists, then adds the prefix
    /// route. Right after this call created (or changed) that nexthop
    /// route, the prefix is retried on EINVAL (the kernel's race, as in
    /// Cilium) up to [`ROUTE_REPLACE_MAX_TRIES`] times,
    /// [`ROUTE_REPLACE_RETRY_INTERVAL`] apart; any other error is returned
    /// at once. When the route is already there exactly as given, nothing
    /// is replaced and the result is `false`. A failure of the prefix step
    /// removes (or restores) the nexthop route this call touched.
    ///
    /// A route of the same identity (table, prefix, metric) but another
    /// protocol (a routing daemon's, the kernel's) is never rewritten: the
    /// result is [`Error::Conflict`]. [`Handle::upsert_take_over`] replaces
    /// it. (A nexthop route of another protocol is left as it is: it makes
    /// the gateway reachable already.)
    ///
    /// With `mtu` given and `route.mtu` set, the route MTU comes from the
    /// configuration (see [`MtuConfig`]); else `route.mtu` is used as is.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a route [`Route::validate`] refuses (nothing
    /// sent), `Error::UnknownDevice`, `Error::Conflict` for a route of another
    /// protocol in the way, `Error::Kernel` with the kernel's errno and message
    /// (`Op::UpsertNexthop` when the nexthop route failed).
    pub fn upsert(&self, route: &Route, mtu: Option<&MtuConfig>) -> Result<bool> {
        self.upsert_as(route, mtu, false)
    }

    /// Like [`Handle::upsert`], and a route of the same identity but
    /// another protocol is replaced too (taken over).
    ///
    /// # Errors
    ///
    /// As [`Handle::upsert`], without `Error::Conflict`.
    pub fn upsert_take_over(&self, route: &Route, mtu: Option<&MtuConfig>) -> Result<bool> {
        self.upsert_as(route, mtu, true)
    }

    pub(crate) fn upsert_as(
        &self,
        route: &Route,
        mtu: Option<&MtuConfig>,
        take_over: bool,
    ) -> Result<bool> {
        route.validate(Op::Upsert)?;
        let mtu = effective_mtu(route, mtu, Op::Upsert)?;
        let mut c = lock(&self.conn);
        let oif = self.oif(&mut c, route, Op::Upsert, false)?;
        let hops = self.hop_oifs(&mut c, route, Op::Upsert, false)?;
        match self.upsert_locked(&mut c, route, oif, mtu, &hops, take_over) {
            Err(e) if e.errno() == Some(libc::ENODEV) => {
                // A cached index is stale: a link was re-created.
                let fresh = self.oif(&mut c, route, Op::Upsert, true)?;
                let fresh_hops = self.hop_oifs(&mut c, route, Op::Upsert, true)?;
                if fresh == oif && fresh_hops == hops {
                    return Err(e);
                }
                self.upsert_locked(&mut c, route, fresh, mtu, &fresh_hops, take_over)
            }
            r => r,
        }
    }

    /// Whether the route `r` describes is there: for an IPv4 route of
    /// metric 0 the kernel's delete takes "metric 0" as "any metric", so
    /// the exact route (table, prefix, metric 0, device and protocol where
    /// given) is checked for first. `None`: nothing to check.
    pub(crate) fn delete_precheck(
        &self,
        c: &mut Conn,
        r: &Route,
        oif: Option<u32>,
        cache: Option<&mut TableCache>,
    ) -> std::result::Result<Option<bool>, NlError> {
        if r.is_ipv6() || r.kernel_metric() != 0 {
            return Ok(None);
        }
        let crit = Crit {
            kind: false,
            ..Crit::IDENTITY
        };
        let found = match cache {
            Some(cache) => {
                let key = (false, r.table);
                if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(key) {
                    let req = codec::route_dump(Some(Family::V4), Some(r.table), None, None, None);
                    let all = self.dump_routes(c, &req, |d| d.route.table == r.table)?;
                    e.insert(index_by_prefix(all));
                }
                cached(cache, key, r).any(|d| matches(r, oif, crit, d) && proto_matches(r, d))
            }
            // One FIB message where the FIB has the route (the best route
            // of its prefix has the lowest metric, 0), else a dump of the
            // table filtered by device.
            None => self
                .find(c, r, oif, crit, None)?
                .is_some_and(|d| proto_matches(r, &d)),
        };
        Ok(Some(found))
    }

    /// Deletes a route: the route of the prefix's identity (table, prefix,
    /// metric: no metric means the family's default, 0 for IPv4 and 1024
    /// for IPv6, on both families alike), through the route's device when
    /// set, of the route's protocol (any protocol only when the route says
    /// [`Protocol::UNSPEC`]), whatever its scope and type. A route of
    /// another metric or protocol is never removed. A route that is not
    /// there gives an error for which [`Error::is_not_found`] is true.
    ///
    /// # Errors
    ///
    /// An error for which [`Error::is_not_found`] is true when no such route is
    /// there; `Error::InvalidInput` for a bad selector; `Error::Kernel` for
    /// other refusals.
    pub fn delete(&self, route: &Route) -> Result<()> {
        self.check_selector(route, Op::Delete)?;
        let mut c = lock(&self.conn);
        let oif = self.oif(&mut c, route, Op::Delete, false)?;
        if self
            .delete_precheck(&mut c, route, oif, None)
            .map_err(|e| kernel(Op::Delete, route, e))?
            == Some(false)
        {
            return Err(absent(route));
        }
        let res = c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(route, oif));
        match res {
            Err(NlError::Kernel { errno, .. }) if errno == libc::ENODEV && oif.is_some() => {
                let fresh = self.oif(&mut c, route, Op::Delete, true)?;
                c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(route, fresh))
                    .map_err(|e| kernel(Op::Delete, route, e))
            }
            r => r.map_err(|e| kernel(Op::Delete, route, e)),
        }
    }

    /// Like [`Handle::delete`] but a missing route is `Ok(false)`.
    ///
    /// # Errors
    ///
    /// As [`Handle::delete`], except "not found".
    pub fn delete_if_present(&self, route: &Route) -> Result<bool> {
        match self.delete(route) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn check_selector(&self, r: &Route, op: Op) -> Result<()> {
        let bad = |reason: String| Error::InvalidInput {
            op,
            object: r.to_string(),
            reason,
        };
        if r.prefix.trunc() != r.prefix {
            return Err(bad(format!("prefix {} has host bits set", r.prefix)));
        }
        if r.nexthop.is_some_and(|n| n.is_ipv6() != r.is_ipv6()) {
            return Err(bad("nexthop is not of the prefix's address family".into()));
        }
        if r.table == 0 {
            return Err(bad("table 0 (unspec) is not a table".into()));
        }
        Ok(())
    }

    /// Finds the route with the given table, prefix and type, and where set
    /// device, nexthop and metric, and returns the kernel's view of it with
    /// every field filled (`None` when there is none).
    ///
    /// Costs one FIB lookup when the table is reachable through the policy
    /// rules (the main table, say) however many routes it holds; otherwise
    /// one dump of that table filtered by device in the kernel.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a bad selector, `Error::UnknownDevice`,
    /// `Error::Kernel` or `Error::DumpInterrupted` when the kernel cannot
    /// answer.
    pub fn lookup(&self, route: &Route) -> Result<Option<Route>> {
        self.check_selector(route, Op::Lookup)?;
        let mut c = lock(&self.conn);
        let oif = self.oif(&mut c, route, Op::Lookup, false)?;
        let found = self
            .find(&mut c, route, oif, Crit::LOOKUP, None)
            .map_err(|e| kernel(Op::Lookup, route, e))?;
        Ok(found.map(|d| self.named(&mut c, d)))
    }

    /// Lists routes (no cached clones), filtered in the kernel.
    ///
    /// # Errors
    ///
    /// `Error::UnknownDevice` for the filter's device; `Error::Kernel`,
    /// `Error::Decode` or `Error::DumpInterrupted` when the dump fails.
    pub fn list(&self, filter: &RouteFilter) -> Result<Vec<Route>> {
        let mut c = lock(&self.conn);
        let what = format!("{filter:?}");
        let oif = filter
            .device
            .as_deref()
            .map(|d| self.dev_index(&mut c, d, false, Op::List, &what))
            .transpose()?;
        let req = codec::route_dump(filter.family, filter.table, filter.proto, filter.kind, oif);
        let found = self.dump_routes(&mut c, &req, |d| {
            filter.table.is_none_or(|t| d.route.table == t)
                && filter.proto.is_none_or(|p| d.route.proto == p)
                && filter.kind.is_none_or(|k| d.route.kind == k)
                && (oif.is_none() || d.oif == oif || oif.is_some_and(|o| d.hop_oifs.contains(&o)))
        });
        let found = found.map_err(|e| kernel(Op::List, &what, e))?;
        Ok(found.into_iter().map(|d| self.named(&mut c, d)).collect())
    }

    /// The kernel's answer for `dst`, like `ip route get DST`.
    ///
    /// An IPv4 answer is a cached clone for which the kernel reports no
    /// protocol (`unspec`); it is returned as [`Protocol::BOOT`], the
    /// default, so that neither `Display` nor [`Route::show`] prints a
    /// `proto`, as `ip route get` prints none. `answer.show(ShowStyle::TableAll)`
    /// is the first line of `ip route get` without `uid` (and, for IPv4,
    /// with the `mtu` that `ip` prints on its `cache` line; for IPv6,
    /// without `from`).
    ///
    /// # Errors
    ///
    /// `Error::Kernel` with the kernel's answer (ENETUNREACH for no route ...).
    pub fn get(&self, dst: IpAddr) -> Result<Route> {
        let mut c = lock(&self.conn);
        let d = c
            .get(
                nl::RTM_GETROUTE,
                &codec::route_get(dst, false),
                nl::RTM_NEWROUTE,
                codec::decode_route,
            )
            .map_err(|e| kernel(Op::Get, &dst, e))?;
        let d = d.ok_or_else(|| Error::Decode {
            op: Op::Get,
            reason: "reply of another family".into(),
        })?;
        Ok(get_answer(self.named(&mut c, d)))
    }

    /// Deletes every route of `table` (of `family`, or both), like Cilium's
    /// `DeleteRouteTable`; returns how many went. Every route is attempted;
    /// the first failure other than "already gone" is returned.
    ///
    /// # Errors
    ///
    /// The first failure other than "already gone" (every route is attempted),
    /// or the failure to list the table.
    pub fn delete_table(&self, table: u32, family: Option<Family>) -> Result<usize> {
        let mut f = RouteFilter::default().table(table);
        f.family = family;
        let routes = self.list(&f)?;
        let mut deleted = 0;
        let mut first = None;
        // Each route is the kernel's own, described exactly.
        for res in self.delete_many_as(&routes, false) {
            match res {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    /// The device of the default route of lowest metric in the main table,
    /// like Cilium's `NodeDeviceWithDefaultRoute` for one family. Two
    /// default routes of the same lowest metric are an error, as in Cilium.
    ///
    /// # Errors
    ///
    /// `Error::Kernel` (ENOENT) when there is no default route,
    /// `Error::InvalidInput` when two share the lowest metric,
    /// `Error::UnknownDevice` when it has no device.
    pub fn default_route_device(&self, family: Family) -> Result<String> {
        let f = RouteFilter::default()
            .family(family)
            .table(crate::MAIN_TABLE);
        let mut defaults: Vec<Route> = self
            .list(&f)?
            .into_iter()
            .filter(|r| r.prefix.prefix_len() == 0)
            .collect();
        defaults.sort_by_key(Route::kernel_metric);
        let what = format!("default route ({family:?})");
        match defaults.as_slice() {
            [] => Err(Error::Kernel {
                op: Op::Lookup,
                object: what,
                errno: libc::ENOENT,
                message: Some("no default route".into()),
            }),
            [a, b, ..] if a.kernel_metric() == b.kernel_metric() => Err(Error::InvalidInput {
                op: Op::Lookup,
                object: what,
                reason: format!("several default routes of the same metric: {a} and {b}"),
            }),
            [a, ..] => {
                let dev = a
                    .device
                    .clone()
                    .or_else(|| a.multipath.first().and_then(|h| h.device.clone()));
                dev.ok_or_else(|| Error::UnknownDevice {
                    op: Op::Lookup,
                    object: a.to_string(),
                    device: String::new(),
                })
            }
        }
    }

    /// The kernel's answer for `dst` with selectors, like `ip route get DST
    /// from SRC iif DEV oif DEV mark MARK`. The answer's `table` is the
    /// table the policy rules chose.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` when `from` is of another family,
    /// `Error::UnknownDevice`, `Error::Kernel` with the kernel's answer.
    pub fn get_with(&self, dst: IpAddr, opts: &GetOptions) -> Result<Route> {
        let what = || format!("{dst} {opts:?}");
        if opts.from.is_some_and(|s| s.is_ipv6() != dst.is_ipv6()) {
            return Err(Error::InvalidInput {
                op: Op::Get,
                object: what(),
                reason: "from is not of the destination's family".into(),
            });
        }
        let mut c = lock(&self.conn);
        let mut dev = |name: &Option<String>| match name {
            // The object text is formatted only on error.
            Some(n) => {
                let what = format_args!("{dst} {opts:?}");
                self.dev_index(&mut c, n, false, Op::Get, &what).map(Some)
            }
            None => Ok(None),
        };
        let iif = dev(&opts.iif)?;
        let oif = dev(&opts.oif)?;
        let req = codec::route_get_with(dst, opts.from, iif, oif, opts.mark);
        let d = c
            .get(
                nl::RTM_GETROUTE,
                &req,
                nl::RTM_NEWROUTE,
                codec::decode_route,
            )
            .map_err(|e| kernel(Op::Get, &what(), e))?;
        let d = d.ok_or_else(|| Error::Decode {
            op: Op::Get,
            reason: "reply of another family".into(),
        })?;
        Ok(get_answer(self.named(&mut c, d)))
    }

    // ---------------------------------------------------------------- batch
}

/// An `ip route get` answer: IPv4 answers carry protocol 0, which `ip`
/// does not print (see [`Handle::get`]).
pub(crate) fn get_answer(mut r: Route) -> Route {
    if !r.is_ipv6() && r.proto == Protocol::UNSPEC {
        r.proto = Protocol::BOOT;
    }
    r
}
