//! [`Handle`]: one `NETLINK_ROUTE` socket in one netns, and every operation
//! on routes and rules.

use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use netlink_packet_core::Emitable;

use crate::codec::{self, Decoded};
use crate::error::{Error, Op, Result};
use crate::names::{Protocol, RouteType};
use crate::nl::{self, Conn, NlError};
use crate::route::Route;
use crate::rule::{Family, Rule};

/// Cilium's `RouteReplaceMaxTries`: attempts of the prefix route on EINVAL.
pub const ROUTE_REPLACE_MAX_TRIES: u32 = 10;
/// Cilium's `RouteReplaceRetryInterval`.
pub const ROUTE_REPLACE_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often a dump interrupted by concurrent changes is retried.
pub const DUMP_MAX_TRIES: u32 = 10;

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

#[derive(Default)]
struct Links {
    by_name: HashMap<String, u32>,
    by_index: HashMap<u32, String>,
}

/// One `NETLINK_ROUTE` socket, opened in the current netns ([`Handle::new`])
/// or in another one ([`Handle::open_netns`]), with extended acks and strict
/// checking on. All methods take `&self`: a `Handle` can be shared between
/// threads (requests on one handle are serialised; open several handles for
/// parallelism). Link names are resolved once and cached; the cache is
/// refreshed when a name is not found or the kernel reports the cached
/// device gone (a link re-created under the same name).
///
/// ```no_run
/// use podnet_route::{Handle, Route, Scope};
///
/// let h = Handle::open_netns("/run/netns/blue")?;
/// let r = Route::new("10.2.0.0/16".parse().unwrap())
///     .via("192.168.1.1".parse().unwrap())
///     .dev("eth0");
/// assert!(h.upsert(&r, None)?);      // added (with `192.168.1.1 dev eth0 scope link`)
/// assert!(!h.upsert(&r, None)?);     // already there: nothing sent
/// let seen = h.lookup(&r)?.expect("present");
/// assert_eq!(seen.prefix, r.prefix);
/// h.delete(&r)?;
/// assert!(h.delete(&r).unwrap_err().is_not_found());
/// # Ok::<(), podnet_route::Error>(())
/// ```
pub struct Handle {
    pub(crate) conn: Mutex<Conn>,
    links: Mutex<Links>,
    netns: Option<PathBuf>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("netns", &self.netns)
            .finish()
    }
}

/// A nexthop route that [`Handle::upsert_many`] ensures once for all the
/// routes that use it.
struct SharedNexthop {
    route: Route,
    /// What ensuring it did, or the kernel's errno and message.
    outcome: std::result::Result<Ensured, (i32, Option<String>)>,
    /// Whether a route that uses it succeeded.
    used: bool,
}

/// What [`Handle::ensure`] did.
enum Ensured {
    Same,
    Created,
    Replaced(Box<Decoded>),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn kernel(op: Op, object: &dyn std::fmt::Display, e: NlError) -> Error {
    match e {
        NlError::Kernel { errno, message } => Error::Kernel {
            op,
            object: object.to_string(),
            errno,
            message,
        },
        NlError::Io(source) => Error::Io {
            op,
            context: object.to_string(),
            source,
        },
        NlError::Decode(reason) => Error::Decode { op, reason },
        NlError::Interrupted => Error::DumpInterrupted {
            op,
            tries: DUMP_MAX_TRIES,
        },
        NlError::Lost => Error::Io {
            op,
            context: object.to_string(),
            source: std::io::Error::from_raw_os_error(libc::ENOBUFS),
        },
        NlError::Conflict(existing) => Error::Conflict {
            op,
            object: object.to_string(),
            existing: existing.to_string(),
            proto: existing.proto,
        },
    }
}

fn effective_mtu(r: &Route, cfg: Option<&MtuConfig>, op: Op) -> Result<Option<u32>> {
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
fn same_as(r: &Route, oif: Option<u32>, mtu: Option<u32>, hops: &[u32], d: &Decoded) -> bool {
    let k = &d.route;
    !d.complex
        && !d.cloned
        && k.prefix == r.prefix
        && k.table == r.table
        && k.kind == r.kind
        && k.proto == r.proto
        && k.scope == r.scope
        && k.nexthop == r.nexthop
        && k.local == r.local
        // IPv6 reject routes sit on `lo` whatever was asked.
        && (d.oif == oif || (oif.is_none() && r.kind.is_reject()))
        && k.mtu == mtu
        && same_paths(r, hops, d)
        && k.kernel_metric() == r.kernel_metric()
}

/// The paths of a multipath route as a set with weights: (device index,
/// gateway, weight), sorted. The kernel keeps them as given but reports
/// an IPv6 FIB answer rotated to the path its hash picked, so the order
/// is not compared.
fn path_set(hops: &[crate::route::NextHop], oifs: &[u32]) -> Vec<(u32, Option<IpAddr>, u16)> {
    let mut v: Vec<_> = hops
        .iter()
        .zip(oifs.iter().copied().chain(std::iter::repeat(0)))
        .map(|(h, i)| (i, h.gateway, h.weight))
        .collect();
    v.sort();
    v
}

fn same_paths(r: &Route, hops: &[u32], d: &Decoded) -> bool {
    r.multipath.len() == d.route.multipath.len()
        && path_set(&r.multipath, hops) == path_set(&d.route.multipath, &d.hop_oifs)
}

/// The routes of tables dumped once for a whole batch, by (IPv6, table).
type TableCache = HashMap<(bool, u32), Vec<Decoded>>;

/// What the prefix step of an upsert sends and how it treats what is there.
struct Put<'a> {
    oif: Option<u32>,
    mtu: Option<u32>,
    hops: &'a [u32],
    /// Retry EINVAL (the nexthop route was just created).
    retry: bool,
    /// Replace a route of another protocol.
    take_over: bool,
}

fn proto_matches(r: &Route, d: &Decoded) -> bool {
    r.proto == Protocol::UNSPEC || d.route.proto == r.proto
}

/// The "not found" of a delete that found no route of the identity.
fn absent(r: &Route) -> Error {
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
struct Crit {
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

fn matches(r: &Route, oif: Option<u32>, c: Crit, d: &Decoded) -> bool {
    let k = &d.route;
    !d.cloned
        && k.prefix == r.prefix
        && k.table == r.table
        && (!c.kind || k.kind == r.kind)
        && (oif.is_none() || d.oif == oif)
        && (!c.nexthop || r.nexthop.is_none() || k.nexthop == r.nexthop)
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
fn fib_trustworthy(d: &Decoded) -> bool {
    !matches!(d.route.kind.0, 2..=5 | 10) && d.route.table != crate::names::LOCAL_TABLE
}

/// A `fibmatch` answer that is `r` itself, of its type.
fn fib_confirms(r: &Route, oif: Option<u32>, c: Crit, d: &Decoded) -> bool {
    fib_trustworthy(d) && d.route.kind == r.kind && matches(r, oif, c, d)
}

impl Handle {
    /// Opens a handle in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// `Error::Io` when the socket cannot be opened or configured.
    pub fn new() -> Result<Handle> {
        let conn = Conn::open().map_err(|source| Error::Io {
            op: Op::Open,
            context: String::new(),
            source,
        })?;
        Ok(Handle::with_conn(conn, None))
    }

    /// Opens a handle in the network namespace at `path` (`/run/netns/NAME`,
    /// `/proc/PID/ns/net`). The socket is created on a short-lived thread
    /// that entered the namespace, so no thread of the caller changes
    /// namespace; the socket then works from any thread.
    ///
    /// # Errors
    ///
    /// `Error::Io` when the namespace file cannot be opened or entered, or the
    /// socket cannot be opened there.
    pub fn open_netns(path: impl AsRef<Path>) -> Result<Handle> {
        let path = path.as_ref();
        let ctx = || path.display().to_string();
        let file = File::open(path).map_err(|source| Error::Io {
            op: Op::Open,
            context: ctx(),
            source,
        })?;
        let joined = std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<Conn> {
                // SAFETY: setns on a file descriptor we own; it changes only
                // this short-lived thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Conn::open()
            })
            .join()
        });
        let conn = match joined {
            Ok(r) => r.map_err(|source| Error::Io {
                op: Op::Open,
                context: ctx(),
                source,
            })?,
            Err(_) => {
                return Err(Error::Io {
                    op: Op::Open,
                    context: ctx(),
                    source: std::io::Error::other("netns thread panicked"),
                })
            }
        };
        Ok(Handle::with_conn(conn, Some(path.to_path_buf())))
    }

    fn with_conn(conn: Conn, netns: Option<PathBuf>) -> Handle {
        Handle {
            conn: Mutex::new(conn),
            links: Mutex::new(Links::default()),
            netns,
        }
    }

    /// Sets the socket's receive buffer to `bytes` and returns the size the
    /// kernel now counts (twice the request). A handle opens with 4 MiB,
    /// forced past `net.core.rmem_max` with `SO_RCVBUFFORCE` where the
    /// process may (`CAP_NET_ADMIN`), else as large as that limit allows:
    /// room for the replies of a pipelined batch. With a smaller buffer,
    /// batches send fewer requests per datagram; should the kernel still
    /// drop replies (ENOBUFS), the batch finds out what happened to each
    /// request and the handle stays usable (see [`Handle::upsert_many`]).
    ///
    /// # Errors
    ///
    /// `Error::Io` when the kernel refuses the size.
    pub fn set_receive_buffer(&self, bytes: usize) -> Result<usize> {
        lock(&self.conn)
            .set_rcvbuf(bytes)
            .map_err(|source| Error::Io {
                op: Op::Open,
                context: format!("receive buffer of {bytes} bytes"),
                source,
            })
    }

    /// The socket's receive buffer, as the kernel counts it.
    pub fn receive_buffer(&self) -> usize {
        lock(&self.conn).rcvbuf()
    }

    /// The number of requests a batch sends per datagram (from the receive
    /// buffer; halved after an overflow).
    pub fn batch_window(&self) -> usize {
        lock(&self.conn).window()
    }

    /// The namespace path given to [`Handle::open_netns`], if any.
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    // ---------------------------------------------------------------- links

    fn resolve(
        &self,
        c: &mut Conn,
        name: &str,
        refresh: bool,
    ) -> std::result::Result<Option<u32>, NlError> {
        if !refresh {
            if let Some(i) = lock(&self.links).by_name.get(name) {
                return Ok(Some(*i));
            }
        }
        match c.get(
            nl::RTM_GETLINK,
            &codec::link_get(Some(name), 0),
            nl::RTM_NEWLINK,
            codec::decode_link,
        ) {
            Ok((idx, n)) => {
                let mut l = lock(&self.links);
                if let Some(old) = l.by_name.insert(n.clone(), idx) {
                    l.by_index.remove(&old);
                }
                // The index may have been cached under an older name.
                if let Some(stale) = l.by_index.insert(idx, n.clone()) {
                    if stale != n {
                        l.by_name.remove(&stale);
                    }
                }
                Ok(Some(idx))
            }
            Err(NlError::Kernel { errno, .. }) if errno == libc::ENODEV => {
                let mut l = lock(&self.links);
                if let Some(old) = l.by_name.remove(name) {
                    l.by_index.remove(&old);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn name_of(&self, c: &mut Conn, idx: u32) -> Option<String> {
        if let Some(n) = lock(&self.links).by_index.get(&idx) {
            return Some(n.clone());
        }
        match c.get(
            nl::RTM_GETLINK,
            &codec::link_get(None, idx),
            nl::RTM_NEWLINK,
            codec::decode_link,
        ) {
            Ok((i, n)) => {
                let mut l = lock(&self.links);
                l.by_name.insert(n.clone(), i);
                l.by_index.insert(i, n.clone());
                Some(n)
            }
            Err(_) => None,
        }
    }

    /// Forgets every cached link name. The cache notices links that are
    /// gone or re-created by itself; a link *renamed* under a live handle
    /// is not noticed (its old name would still resolve): call this after
    /// renaming links.
    pub fn forget_links(&self) {
        let mut l = lock(&self.links);
        l.by_name.clear();
        l.by_index.clear();
    }

    /// The interface index of `name` in the handle's netns (cached).
    ///
    /// # Errors
    ///
    /// `Error::UnknownDevice` when there is no such link; `Error::Kernel` when
    /// the request fails.
    pub fn link_index(&self, name: &str) -> Result<u32> {
        let mut c = lock(&self.conn);
        self.dev_index(&mut c, name, false, Op::ResolveLink, &name)
    }

    /// Resolves device `name`; a missing device or a failed request is an
    /// error of `op` on `object`.
    fn dev_index(
        &self,
        c: &mut Conn,
        name: &str,
        refresh: bool,
        op: Op,
        object: &dyn std::fmt::Display,
    ) -> Result<u32> {
        match self.resolve(c, name, refresh) {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err(Error::UnknownDevice {
                op,
                object: object.to_string(),
                device: name.to_string(),
            }),
            Err(e) => Err(kernel(op, object, e)),
        }
    }

    /// Resolves the route's device (None when it has none).
    fn oif(&self, c: &mut Conn, r: &Route, op: Op, refresh: bool) -> Result<Option<u32>> {
        r.device
            .as_deref()
            .map(|d| self.dev_index(c, d, refresh, op, r))
            .transpose()
    }

    fn named(&self, c: &mut Conn, d: Decoded) -> Route {
        let mut r = d.route;
        r.device = d.oif.and_then(|i| self.name_of(c, i));
        for (h, idx) in r.multipath.iter_mut().zip(&d.hop_oifs) {
            h.device = self.name_of(c, *idx);
        }
        r
    }

    /// Resolves the devices of a multipath route's hops.
    fn hop_oifs(&self, c: &mut Conn, r: &Route, op: Op, refresh: bool) -> Result<Vec<u32>> {
        r.multipath
            .iter()
            .filter_map(|h| h.device.as_deref())
            .map(|d| self.dev_index(c, d, refresh, op, r))
            .collect()
    }

    // --------------------------------------------------------------- finding

    fn dump_routes(
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
    fn find(
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
                e.insert(all);
            }
            let found = cache.get(&key).into_iter().flatten();
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
    fn send_route(
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
    fn ensure(
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
        let old = self.find(c, r, oif, crit, cache)?;
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
        Ok(match old {
            Some(d) => Ensured::Replaced(Box::new(d)),
            None => Ensured::Created,
        })
    }

    /// Undoes an [`Ensured`] (best effort: the caller reports its own error).
    fn undo(&self, c: &mut Conn, r: &Route, oif: Option<u32>, what: Ensured) {
        match what {
            Ensured::Same => {}
            Ensured::Created => {
                let _ = c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(r, oif));
            }
            Ensured::Replaced(old) => {
                let msg = codec::route_new(&old.route, old.oif, old.route.mtu, &old.hop_oifs);
                let _ = c.ack(nl::RTM_NEWROUTE, nl::NLM_F_CREATE | nl::NLM_F_REPLACE, &msg);
            }
        }
    }

    /// The prefix step of an upsert: add exclusively; when a route of the
    /// same identity exists, compare and replace only if it differs, and
    /// (unless `p.take_over`) only if it is of the requested protocol.
    fn put_prefix(
        &self,
        c: &mut Conn,
        r: &Route,
        p: &Put<'_>,
        first: Option<NlError>,
        cache: Option<&mut TableCache>,
    ) -> std::result::Result<bool, NlError> {
        let msg = codec::route_new(r, p.oif, p.mtu, p.hops);
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
            Err(e) => Err(e),
        }
    }

    fn upsert_locked(
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

    fn upsert_as(&self, route: &Route, mtu: Option<&MtuConfig>, take_over: bool) -> Result<bool> {
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
    fn delete_precheck(
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
                    e.insert(all);
                }
                cache
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .any(|d| matches(r, oif, crit, d) && proto_matches(r, d))
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

    fn check_selector(&self, r: &Route, op: Op) -> Result<()> {
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

    /// Upserts many routes, pipelining the requests and reading the acks in
    /// bulk; returns one result per route, in order (one bad route does not
    /// hide the others' outcome). Semantics per route are those of
    /// [`Handle::upsert`]; each distinct nexthop route is checked once, and
    /// a table that the FIB cannot answer for (no rule reaches it, as an
    /// ENI table) is dumped once for the whole batch, so re-upserting
    /// routes that are present costs the same in any table.
    ///
    /// Should the kernel drop replies because the receive buffer is full
    /// (ENOBUFS, see [`Handle::set_receive_buffer`]), the requests whose
    /// reply was lost are asked again one by one: each result says what
    /// the kernel now holds (a route found exactly as requested reports
    /// `true`, as the lost request may have added it), and the handle is
    /// usable at once.
    pub fn upsert_many(&self, routes: &[Route], mtu: Option<&MtuConfig>) -> Vec<Result<bool>> {
        let mut out: Vec<Option<Result<bool>>> = (0..routes.len()).map(|_| None).collect();
        let mut c = lock(&self.conn);
        let mut prepared: Vec<(usize, Option<u32>, Option<u32>)> = Vec::with_capacity(routes.len());
        // Device indexes of multipath hops, for the few routes that have them.
        let mut hops_of: HashMap<usize, Vec<u32>> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            let p = r
                .validate(Op::Upsert)
                .and_then(|()| effective_mtu(r, mtu, Op::Upsert))
                .and_then(|m| Ok((self.oif(&mut c, r, Op::Upsert, false)?, m)))
                .and_then(|(oif, m)| {
                    if !r.multipath.is_empty() {
                        hops_of.insert(i, self.hop_oifs(&mut c, r, Op::Upsert, false)?);
                    }
                    Ok((oif, m))
                });
            match p {
                Ok((oif, m)) => prepared.push((i, oif, m)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let no_hops: Vec<u32> = Vec::new();
        // Tables no rule reaches are dumped once for the whole batch.
        let mut cache = TableCache::new();
        // Nexthop routes, each once.
        type NhKey = (u32, IpAddr, Option<u32>, u8);
        let mut nhs: HashMap<NhKey, SharedNexthop> = HashMap::new();
        let mut ready = Vec::with_capacity(prepared.len());
        let mut nh_key_of: Vec<Option<NhKey>> = vec![None; routes.len()];
        for (i, oif, m) in prepared {
            let r = &routes[i];
            if let Some(gw) = r.nexthop {
                let key = (r.table, gw, oif, r.proto.0);
                nh_key_of[i] = Some(key);
                let entry = nhs.entry(key).or_insert_with(|| {
                    let Some(nh) = r.nexthop_route() else {
                        return SharedNexthop {
                            route: Route::host(gw),
                            outcome: Err((libc::EINVAL, None)),
                            used: false,
                        };
                    };
                    let outcome = self
                        .ensure(&mut c, &nh, oif, Some(&mut cache))
                        .map_err(|e| {
                            let errno = e.errno().unwrap_or(libc::EIO);
                            let msg = match &e {
                                NlError::Kernel { message, .. } => message.clone(),
                                _ => None,
                            };
                            (errno, msg)
                        });
                    SharedNexthop {
                        route: nh,
                        outcome,
                        used: false,
                    }
                });
                if let Err((errno, message)) = &entry.outcome {
                    out[i] = Some(Err(Error::Kernel {
                        op: Op::UpsertNexthop,
                        object: entry.route.to_string(),
                        errno: *errno,
                        message: message.clone(),
                    }));
                    continue;
                }
            }
            ready.push((i, oif, m));
        }
        let acks = c.batch(ready.len(), |k| {
            let (i, oif, m) = ready[k];
            (
                nl::RTM_NEWROUTE,
                nl::NLM_F_CREATE | nl::NLM_F_EXCL,
                codec::route_new(&routes[i], oif, m, hops_of.get(&i).unwrap_or(&no_hops)),
            )
        });
        match acks {
            Ok(acks) => {
                for ((i, oif, m), ack) in ready.iter().zip(acks) {
                    let r = &routes[*i];
                    // EINVAL is retried only right after this call created
                    // the route's nexthop route.
                    let retry = nh_key_of[*i].and_then(|k| nhs.get(&k)).is_some_and(|nh| {
                        matches!(nh.outcome, Ok(Ensured::Created | Ensured::Replaced(_)))
                    });
                    let put = Put {
                        oif: *oif,
                        mtu: *m,
                        hops: hops_of.get(i).unwrap_or(&no_hops),
                        retry,
                        take_over: false,
                    };
                    let res = match ack {
                        Ok(()) => Ok(true),
                        Err(NlError::Kernel { errno, .. }) if errno == libc::ENODEV => {
                            // A stale cached index: resolve again and retry.
                            self.oif(&mut c, r, Op::Upsert, true).and_then(|fresh| {
                                let hops = self.hop_oifs(&mut c, r, Op::Upsert, true)?;
                                let p = Put {
                                    oif: fresh,
                                    hops: &hops,
                                    ..put
                                };
                                self.put_prefix(&mut c, r, &p, None, Some(&mut cache))
                                    .map_err(|e| kernel(Op::Upsert, r, e))
                            })
                        }
                        // The reply was lost to a receive buffer overflow:
                        // ask again. Found as requested, the route may have
                        // been added by the lost request: `true` (changed).
                        Err(NlError::Lost) => self
                            .put_prefix(&mut c, r, &put, None, Some(&mut cache))
                            .map(|_| true)
                            .map_err(|e| kernel(Op::Upsert, r, e)),
                        Err(e) => self
                            .put_prefix(&mut c, r, &put, Some(e), Some(&mut cache))
                            .map_err(|e| kernel(Op::Upsert, r, e)),
                    };
                    out[*i] = Some(res);
                }
            }
            Err(e) => batch_failed(&mut out, ready.iter().map(|r| r.0), routes, Op::Upsert, &e),
        }
        // A nexthop change counts for the first successful route that uses
        // it; nexthop routes no successful route uses are taken back.
        for (i, key) in nh_key_of.into_iter().enumerate() {
            let Some(key) = key else { continue };
            if let (Some(Ok(ch)), Some(nh)) = (&mut out[i], nhs.get_mut(&key)) {
                if !nh.used {
                    nh.used = true;
                    *ch |= matches!(nh.outcome, Ok(Ensured::Created | Ensured::Replaced(_)));
                }
            }
        }
        for ((_, _, oif, _), nh) in nhs {
            if let (false, Ok(st)) = (nh.used, nh.outcome) {
                self.undo(&mut c, &nh.route, oif, st);
            }
        }
        outcomes(out, Op::Upsert)
    }

    /// Deletes many routes, pipelined; one result per route, in order, with
    /// the semantics of [`Handle::delete`] (IPv4 routes of metric 0 are
    /// checked against one dump per table for the whole batch). A delete
    /// whose reply was lost to a receive buffer overflow is asked again; a
    /// route then absent counts as deleted.
    pub fn delete_many(&self, routes: &[Route]) -> Vec<Result<()>> {
        self.delete_many_as(routes, true)
    }

    fn delete_many_as(&self, routes: &[Route], precheck: bool) -> Vec<Result<()>> {
        let mut out: Vec<Option<Result<()>>> = (0..routes.len()).map(|_| None).collect();
        let mut c = lock(&self.conn);
        let mut cache = TableCache::new();
        let mut ready = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let res = self
                .check_selector(r, Op::Delete)
                .and_then(|()| self.oif(&mut c, r, Op::Delete, false))
                .and_then(|oif| {
                    if !precheck {
                        return Ok(oif);
                    }
                    match self.delete_precheck(&mut c, r, oif, Some(&mut cache)) {
                        Ok(Some(false)) => Err(absent(r)),
                        Ok(_) => Ok(oif),
                        Err(e) => Err(kernel(Op::Delete, r, e)),
                    }
                });
            match res {
                Ok(oif) => ready.push((i, oif)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let acks = c.batch(ready.len(), |k| {
            let (i, oif) = ready[k];
            (nl::RTM_DELROUTE, 0u16, codec::route_del(&routes[i], oif))
        });
        match acks {
            Ok(acks) => {
                for ((i, oif), ack) in ready.iter().zip(acks) {
                    let r = &routes[*i];
                    let res = match ack {
                        Err(NlError::Lost) => {
                            match c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(r, *oif)) {
                                Err(NlError::Kernel { errno, .. }) if errno == libc::ESRCH => {
                                    Ok(())
                                }
                                r => r,
                            }
                        }
                        r => r,
                    };
                    out[*i] = Some(res.map_err(|e| kernel(Op::Delete, r, e)));
                }
            }
            Err(e) => batch_failed(&mut out, ready.iter().map(|r| r.0), routes, Op::Delete, &e),
        }
        outcomes(out, Op::Delete)
    }

    // ---------------------------------------------------------------- rules

    /// Adds a rule unless an identical one exists (`true` when added). The
    /// kernel ignores `NLM_F_REPLACE` for rules and would add duplicates, so
    /// this adds with `NLM_F_EXCL` and takes EEXIST as "present". After an
    /// add, stale variants (same priority and selector, other table, action
    /// or protocol) are removed. Give rules a priority: without one the
    /// kernel picks a new one on each add, and the rule is not idempotent.
    ///
    /// The kernel's default rules (`0: from all lookup local`, `32766: from
    /// all lookup main`, `32767: from all lookup default`) are never
    /// removed as stale variants: a rule at one of those priorities with
    /// the selector `from all` that is not that default rule is refused
    /// (typed error, nothing sent). [`Handle::replace_system_rule`] is the
    /// explicit way to replace one.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a rule [`Rule::validate`] refuses or one that
    /// would remove a default rule (nothing sent); `Error::Kernel` for the
    /// kernel's refusal.
    pub fn replace_rule(&self, rule: &Rule) -> Result<bool> {
        self.replace_rule_as(rule, false)
    }

    /// Like [`Handle::replace_rule`], for a rule that takes the place of
    /// one of the kernel's default rules (its priority, selector `from
    /// all`), which is removed: only for callers that mean exactly that.
    ///
    /// # Errors
    ///
    /// As [`Handle::replace_rule`], without the default-rule refusal.
    pub fn replace_system_rule(&self, rule: &Rule) -> Result<bool> {
        self.replace_rule_as(rule, true)
    }

    fn replace_rule_as(&self, rule: &Rule, system: bool) -> Result<bool> {
        rule.validate(Op::ReplaceRule)?;
        let rule = rule.clone().normalized();
        if !system {
            if let Some(sys) = rule.system_slot().filter(|s| *s != rule) {
                return Err(Error::InvalidInput {
                    op: Op::ReplaceRule,
                    object: rule.to_string(),
                    reason: format!(
                        "priority {} with selector `from all` is the kernel's default rule `{sys}`, which this would remove (use replace_system_rule to mean that)",
                        sys.priority.unwrap_or(0)
                    ),
                });
            }
        }
        let mut c = lock(&self.conn);
        match c.ack(
            nl::RTM_NEWRULE,
            nl::NLM_F_CREATE | nl::NLM_F_EXCL,
            &codec::rule_msg(&rule),
        ) {
            Ok(()) => {}
            Err(NlError::Kernel { errno, .. }) if errno == libc::EEXIST => return Ok(false),
            Err(e) => return Err(kernel(Op::ReplaceRule, &rule, e)),
        }
        if rule.priority.is_some() {
            let all = self
                .rules_locked(&mut c, Some(rule.family))
                .map_err(|e| kernel(Op::ReplaceRule, &rule, e))?;
            for (k, extra) in all {
                // A rule with selectors we do not model is someone else's;
                // a default rule goes only when asked for.
                let stale = !extra
                    && k != rule
                    && (system || !k.is_system())
                    && k.priority == rule.priority
                    && k.from == rule.from
                    && k.to == rule.to
                    && k.mark == rule.mark
                    && k.mask == rule.mask
                    && k.invert == rule.invert;
                if stale {
                    c.ack(nl::RTM_DELRULE, 0, &codec::rule_msg(&k))
                        .map_err(|e| kernel(Op::DeleteRule, &k, e))?;
                }
            }
        }
        Ok(true)
    }

    /// Deletes a rule; a missing rule gives an error for which
    /// [`Error::is_not_found`] is true. The kernel deletes the first rule
    /// that matches what is given, so a rule that could match one of the
    /// kernel's default rules (selector `from all`, lookup local, main or
    /// default, at its priority or none) is refused (typed error, nothing
    /// sent); [`Handle::delete_system_rule`] is the explicit way.
    ///
    /// # Errors
    ///
    /// An error for which [`Error::is_not_found`] is true when no such rule is
    /// there; `Error::InvalidInput` for a bad rule or one that could match a
    /// default rule (nothing sent).
    pub fn delete_rule(&self, rule: &Rule) -> Result<()> {
        self.delete_rule_as(rule, false)
    }

    /// Like [`Handle::delete_rule`], also for one of the kernel's default
    /// rules: only for callers that mean exactly that.
    ///
    /// # Errors
    ///
    /// As [`Handle::delete_rule`], without the default-rule refusal.
    pub fn delete_system_rule(&self, rule: &Rule) -> Result<()> {
        self.delete_rule_as(rule, true)
    }

    fn delete_rule_as(&self, rule: &Rule, system: bool) -> Result<()> {
        rule.validate(Op::DeleteRule)?;
        let rule = rule.clone().normalized();
        if !system {
            if let Some(sys) = rule.matching_system_rule() {
                return Err(Error::InvalidInput {
                    op: Op::DeleteRule,
                    object: rule.to_string(),
                    reason: format!(
                        "this would delete the kernel's default rule `{sys}` (use delete_system_rule to mean that)"
                    ),
                });
            }
        }
        let mut c = lock(&self.conn);
        c.ack(nl::RTM_DELRULE, 0, &codec::rule_msg(&rule))
            .map_err(|e| kernel(Op::DeleteRule, &rule, e))
    }

    fn rules_locked(
        &self,
        c: &mut Conn,
        family: Option<Family>,
    ) -> std::result::Result<Vec<(Rule, bool)>, NlError> {
        let req = codec::rule_dump(family);
        dump_retrying(c, nl::RTM_GETRULE, &req, nl::RTM_NEWRULE, |p, out| {
            out.extend(codec::decode_rule_full(p)?);
            Ok(())
        })
    }

    /// Lists the rules of `family` (`None`: both), in the kernel's order.
    ///
    /// # Errors
    ///
    /// `Error::Kernel`, `Error::Decode` or `Error::DumpInterrupted` when the
    /// dump fails.
    pub fn list_rules(&self, family: Option<Family>) -> Result<Vec<Rule>> {
        let mut c = lock(&self.conn);
        self.rules_locked(&mut c, family)
            .map(|v| v.into_iter().map(|(r, _)| r).collect())
            .map_err(|e| kernel(Op::ListRules, &format!("{family:?}"), e))
    }
}

/// Runs a dump, again from the start while the kernel reports it
/// interrupted by concurrent changes (up to [`DUMP_MAX_TRIES`] runs); `each`
/// decodes one message into the run's results.
pub(crate) fn dump_retrying<T>(
    c: &mut Conn,
    ty: u16,
    req: &impl Emitable,
    want: u16,
    mut each: impl FnMut(&[u8], &mut Vec<T>) -> std::result::Result<(), NlError>,
) -> std::result::Result<Vec<T>, NlError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut out = Vec::new();
        match c.dump(ty, req, want, |p| each(p, &mut out)) {
            Ok(()) => return Ok(out),
            Err(NlError::Interrupted) if tries < DUMP_MAX_TRIES => {}
            Err(e) => return Err(e),
        }
    }
}

/// Fills the outcome of every route sent in a batch that failed as a whole
/// (the socket, not the kernel, failed).
fn batch_failed<T>(
    out: &mut [Option<Result<T>>],
    sent: impl Iterator<Item = usize>,
    routes: &[Route],
    op: Op,
    e: &NlError,
) {
    let errno = e.errno().unwrap_or(libc::EIO);
    for i in sent {
        out[i] = Some(Err(Error::Io {
            op,
            context: routes[i].to_string(),
            source: std::io::Error::from_raw_os_error(errno),
        }));
    }
}

/// The per-route results of a batch, in order; every slot is filled by
/// then, and an empty one would be reported rather than dropped.
fn outcomes<T>(out: Vec<Option<Result<T>>>, op: Op) -> Vec<Result<T>> {
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(Error::Decode {
                    op,
                    reason: "no outcome".into(),
                })
            })
        })
        .collect()
}

/// An `ip route get` answer: IPv4 answers carry protocol 0, which `ip`
/// does not print (see [`Handle::get`]).
fn get_answer(mut r: Route) -> Route {
    if !r.is_ipv6() && r.proto == Protocol::UNSPEC {
        r.proto = Protocol::BOOT;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Handle>();
    }

    #[test]
    fn mtu_configuration_picks_device_or_route_mtu() {
        let cfg = MtuConfig {
            device_mtu: 9000,
            route_mtu: 8950,
        };
        let r = Route::new("10.0.0.0/8".parse().unwrap()).dev("e").mtu(1500);
        assert_eq!(
            effective_mtu(&r, Some(&cfg), Op::Upsert).unwrap(),
            Some(8950)
        );
        let l = r.clone().src("10.0.0.1".parse().unwrap());
        assert_eq!(
            effective_mtu(&l, Some(&cfg), Op::Upsert).unwrap(),
            Some(9000)
        );
        assert_eq!(effective_mtu(&r, None, Op::Upsert).unwrap(), Some(1500));
        let none = Route::new("10.0.0.0/8".parse().unwrap()).dev("e");
        assert_eq!(effective_mtu(&none, Some(&cfg), Op::Upsert).unwrap(), None);
        let bad = MtuConfig {
            device_mtu: 0,
            route_mtu: 1,
        };
        assert!(effective_mtu(&r, Some(&bad), Op::Upsert).is_err());
    }
}
