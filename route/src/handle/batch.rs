//! Pipelined batches of [`Handle`]: `upsert_many` and `delete_many`, with
//! shared nexthop routes and exact outcomes under overload. Both are
//! driven a window at a time by [`Handle::run_windows`]; this file says
//! what each checks, encodes and resolves ([`Batch`]).

use std::net::IpAddr;

use super::window::{Batch, LastDevice};
use super::*;
use crate::codec::{self};
use crate::error::{Error, Op, Result};
use crate::fastcodec;
use crate::fasthash::FastMap;
use crate::nl::{self, NlError};
use crate::route::Route;

/// A nexthop route that [`Handle::upsert_many`] ensures once for all the
/// routes that use it.
pub(crate) struct SharedNexthop {
    route: Route,
    /// What ensuring it did, or the kernel's errno and message.
    outcome: std::result::Result<Ensured, (i32, Option<String>)>,
    /// Whether a route that uses it succeeded.
    used: bool,
}

/// No index (no shared nexthop route, no multipath device list).
const NONE: u32 = u32::MAX;

/// A shared nexthop route's key: table, gateway, device, protocol.
type NhKey = (u32, IpAddr, Option<u32>, u8);

/// A route of an upsert batch, ready to send: its resolved device and
/// MTU, and where its multipath devices and shared nexthop route are.
#[derive(Clone, Copy)]
struct Ready {
    oif: Option<u32>,
    mtu: Option<u32>,
    /// Index in the batch's multipath device lists, or [`NONE`].
    hops: u32,
    /// Index in the batch's shared nexthop routes, or [`NONE`].
    nh: u32,
}

/// The state of one `upsert_many`.
struct Upsert<'r, 'm> {
    mtu: Option<&'m MtuConfig>,
    /// Tables no rule reaches are dumped once for the whole batch.
    cache: TableCache,
    /// Nexthop routes, each ensured once; batches mostly use few, in
    /// runs, as they use few devices.
    nhs: Vec<SharedNexthop>,
    nh_index: FastMap<NhKey, u32>,
    last_nh: Option<(NhKey, u32)>,
    last_dev: LastDevice<'r>,
    /// Device indexes of multipath hops, for the few routes that have them.
    hop_lists: Vec<Vec<u32>>,
}

impl Upsert<'_, '_> {
    fn hops(&self, w: &Ready) -> &[u32] {
        self.hop_lists
            .get(w.hops as usize)
            .map_or(&[][..], Vec::as_slice)
    }
}

impl<'r> Batch<'r> for Upsert<'r, '_> {
    type Ready = Ready;
    type Done = bool;
    const OP: Op = Op::Upsert;
    const SENT: bool = true;

    fn prepare(&mut self, h: &Handle, c: &mut Conn, r: &'r Route) -> Result<Ready> {
        r.validate(Op::Upsert)?;
        let mtu = effective_mtu(r, self.mtu, Op::Upsert)?;
        let oif = self.last_dev.oif(h, c, r, Op::Upsert)?;
        let hops = if r.multipath.is_empty() {
            NONE
        } else {
            self.hop_lists.push(h.hop_oifs(c, r, Op::Upsert, false)?);
            (self.hop_lists.len() - 1) as u32
        };
        let mut ready = Ready {
            oif,
            mtu,
            hops,
            nh: NONE,
        };
        // What `nexthop_route` needs, without building it per route.
        if let Some(gw) = r.nexthop.filter(|_| r.nhid.is_none() && !r.is_onlink()) {
            let key = (r.table, gw, ready.oif, r.proto.0);
            let idx = match self.last_nh {
                Some((k, idx)) if k == key => idx,
                _ => {
                    let (nhs, cache) = (&mut self.nhs, &mut self.cache);
                    let idx = *self.nh_index.entry(key).or_insert_with(|| {
                        nhs.push(h.share_nexthop(c, r, gw, ready.oif, cache));
                        (nhs.len() - 1) as u32
                    });
                    self.last_nh = Some((key, idx));
                    idx
                }
            };
            let nh = &self.nhs[idx as usize];
            if let Err((errno, message)) = &nh.outcome {
                return Err(Error::Kernel {
                    op: Op::UpsertNexthop,
                    object: nh.route.to_string(),
                    errno: *errno,
                    message: message.clone(),
                });
            }
            ready.nh = idx;
        }
        Ok(ready)
    }

    fn encode(&self, r: &Route, w: &Ready, buf: &mut Vec<u8>) -> (u16, u16) {
        fastcodec::append_route_new(r, w.oif, w.mtu, self.hops(w), buf);
        (nl::RTM_NEWROUTE, nl::NLM_F_CREATE | nl::NLM_F_EXCL)
    }

    fn resolve(
        &mut self,
        h: &Handle,
        c: &mut Conn,
        r: &'r Route,
        w: &Ready,
        e: NlError,
    ) -> Result<bool> {
        // EINVAL is retried only right after this call created the
        // route's nexthop route.
        let retry = self
            .nhs
            .get(w.nh as usize)
            .is_some_and(|nh| matches!(nh.outcome, Ok(Ensured::Created | Ensured::Replaced(_))));
        let hops = self
            .hop_lists
            .get(w.hops as usize)
            .map_or(&[][..], Vec::as_slice);
        let put = Put {
            oif: w.oif,
            mtu: w.mtu,
            hops,
            retry,
            take_over: false,
        };
        let cache = Some(&mut self.cache);
        match e {
            NlError::Kernel { errno, .. } if errno == libc::ENODEV => {
                // A stale cached index: resolve again and retry.
                self.last_dev.clear();
                h.oif(c, r, Op::Upsert, true).and_then(|fresh| {
                    let hops = h.hop_oifs(c, r, Op::Upsert, true)?;
                    let p = Put {
                        oif: fresh,
                        hops: &hops,
                        ..put
                    };
                    h.put_prefix(c, r, &p, None, cache)
                        .map_err(|e| kernel(Op::Upsert, r, e))
                })
            }
            // The reply was lost to a receive buffer overflow: ask again.
            // Found as requested, the route may have been added by the
            // lost request: `true` (changed).
            NlError::Lost => h
                .put_prefix(c, r, &put, None, cache)
                .map(|_| true)
                .map_err(|e| kernel(Op::Upsert, r, e)),
            e => h
                .put_prefix(c, r, &put, Some(e), cache)
                .map_err(|e| kernel(Op::Upsert, r, e)),
        }
    }

    fn window_done(&mut self, win: &[(usize, Ready)], out: &mut [Result<bool>]) {
        // A nexthop change counts for the first successful route that
        // uses it.
        for (i, w) in win {
            if let (Some(nh), Ok(ch)) = (self.nhs.get_mut(w.nh as usize), &mut out[*i]) {
                if !nh.used {
                    nh.used = true;
                    *ch |= matches!(nh.outcome, Ok(Ensured::Created | Ensured::Replaced(_)));
                }
            }
        }
    }
}

/// The state of one `delete_many`.
struct Delete<'r> {
    /// Whether IPv4 routes of metric 0 are checked first ([`ZeroMetric`]).
    precheck: bool,
    zero: ZeroMetric<'r>,
    last_dev: LastDevice<'r>,
}

impl<'r> Batch<'r> for Delete<'r> {
    /// The route's resolved device.
    type Ready = Option<u32>;
    type Done = ();
    const OP: Op = Op::Delete;
    const SENT: () = ();

    fn prepare(&mut self, h: &Handle, c: &mut Conn, r: &'r Route) -> Result<Option<u32>> {
        h.check_selector(r, Op::Delete)?;
        let oif = self.last_dev.oif(h, c, r, Op::Delete)?;
        if !self.precheck || r.is_ipv6() || r.kernel_metric() != 0 {
            return Ok(oif);
        }
        match self.zero.present(h, c, r, oif) {
            Ok(false) => Err(absent(r)),
            Ok(true) => Ok(oif),
            Err(e) => Err(kernel(Op::Delete, r, e)),
        }
    }

    fn encode(&self, r: &Route, oif: &Option<u32>, buf: &mut Vec<u8>) -> (u16, u16) {
        fastcodec::append_route_del(r, *oif, buf);
        (nl::RTM_DELROUTE, 0)
    }

    fn resolve(
        &mut self,
        _h: &Handle,
        c: &mut Conn,
        r: &'r Route,
        oif: &Option<u32>,
        e: NlError,
    ) -> Result<()> {
        let res = match e {
            NlError::Lost => match c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(r, *oif)) {
                Err(NlError::Kernel { errno, .. }) if errno == libc::ESRCH => Ok(()),
                r => r,
            },
            e => Err(e),
        };
        res.map_err(|e| kernel(Op::Delete, r, e))
    }
}

impl Handle {
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
        let mut c = lock(&self.conn);
        let mut b = Upsert {
            mtu,
            cache: TableCache::new(),
            nhs: Vec::new(),
            nh_index: FastMap::default(),
            last_nh: None,
            last_dev: LastDevice::default(),
            hop_lists: Vec::new(),
        };
        let out = self.run_windows(&mut c, routes, &mut b);
        // Nexthop routes no successful route uses are taken back.
        for ((_, _, oif, _), idx) in b.nh_index {
            let nh = &mut b.nhs[idx as usize];
            let outcome = std::mem::replace(&mut nh.outcome, Err((0, None)));
            if let (false, Ok(st)) = (nh.used, outcome) {
                self.undo(&mut c, &nh.route, oif, st);
            }
        }
        out
    }

    /// Ensures the nexthop route of `r` (gateway `gw`, device `oif`) for a
    /// batch, keeping the outcome for every route that shares it.
    fn share_nexthop(
        &self,
        c: &mut crate::nl::Conn,
        r: &Route,
        gw: IpAddr,
        oif: Option<u32>,
        cache: &mut TableCache,
    ) -> SharedNexthop {
        let Some(nh) = r.nexthop_route() else {
            return SharedNexthop {
                route: Route::host(gw),
                outcome: Err((libc::EINVAL, None)),
                used: false,
            };
        };
        let outcome = self.ensure(c, &nh, oif, Some(cache)).map_err(|e| {
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
    }

    /// Deletes many routes, pipelined; one result per route, in order, with
    /// the semantics of [`Handle::delete`] (IPv4 routes of metric 0 are
    /// checked against one dump per table for the whole batch). A delete
    /// whose reply was lost to a receive buffer overflow is asked again; a
    /// route then absent counts as deleted.
    pub fn delete_many(&self, routes: &[Route]) -> Vec<Result<()>> {
        self.delete_many_as(routes, true)
    }

    pub(crate) fn delete_many_as(&self, routes: &[Route], precheck: bool) -> Vec<Result<()>> {
        let mut c = lock(&self.conn);
        let mut b = Delete {
            precheck,
            zero: if precheck {
                ZeroMetric::for_batch(routes)
            } else {
                ZeroMetric::default()
            },
            last_dev: LastDevice::default(),
        };
        self.run_windows(&mut c, routes, &mut b)
    }

    // ---------------------------------------------------------------- rules
}

/// The IPv4 routes of metric 0 of the tables a `delete_many` touches, each
/// table dumped once and kept compact: by (prefix, tos) their device and
/// protocol (an IPv4 route's identity is table, prefix, tos and metric, so
/// there is one, unless added with `NLM_F_APPEND`; such prefixes are
/// checked one by one).
#[derive(Default)]
pub(crate) struct ZeroMetric<'r> {
    /// `None`: the dump kept being interrupted, check one by one.
    tables: FastMap<u32, Option<ZeroIndex>>,
    /// What the batch's routes of each table have in common.
    narrow: FastMap<u32, Narrow<'r>>,
}

/// What every IPv4 metric-0 route a batch deletes from one table has in
/// common: the protocol and the device, where all of them name the same
/// one. The table's dump is then filtered by them in the kernel (strict
/// checking): a delete of that protocol through that device can only hit
/// a route of that protocol on that device, so the others need not be
/// dumped. Next to a daemon's full table, the dump holds the agent's own
/// routes only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Narrow<'r> {
    proto: Option<crate::names::Protocol>,
    device: Option<&'r str>,
}

/// One table's metric-0 routes, sorted by (prefix, tos): the kernel dumps
/// them in that order already, and a batch mostly deletes in it too, so
/// building is appending and most lookups find their entry right after
/// the previous one's.
#[derive(Default)]
struct ZeroIndex {
    entries: Vec<ZeroEntry>,
    /// Where the next lookup looks first.
    hint: usize,
}

#[derive(Clone, Copy)]
struct ZeroEntry {
    /// Address, prefix length and tos, in that order of significance.
    key: u64,
    oif: Option<u32>,
    proto: u8,
    /// Several routes of this identity (`NLM_F_APPEND`).
    several: bool,
}

fn zero_key(prefix: &ipnet::IpNet, tos: u8) -> Option<u64> {
    match prefix {
        ipnet::IpNet::V4(n) => Some(
            (u64::from(u32::from(n.addr())) << 16)
                | (u64::from(n.prefix_len()) << 8)
                | u64::from(tos),
        ),
        ipnet::IpNet::V6(_) => None,
    }
}

impl ZeroIndex {
    /// Sorts what the dump appended (when the kernel's order was not
    /// already the key's) and folds duplicate identities into one entry.
    fn seal(&mut self) {
        if !self.entries.windows(2).all(|w| w[0].key <= w[1].key) {
            self.entries.sort_by_key(|e| e.key);
        }
        self.entries.dedup_by(|cur, prev| {
            let same = cur.key == prev.key;
            prev.several |= same;
            same
        });
    }

    fn get(&mut self, key: u64) -> Option<ZeroEntry> {
        let e = &self.entries;
        let at = if e.get(self.hint).is_some_and(|x| x.key == key) {
            self.hint
        } else {
            e.binary_search_by_key(&key, |x| x.key).ok()?
        };
        self.hint = at + 1;
        Some(e[at])
    }
}

impl<'r> ZeroMetric<'r> {
    /// The checks of a `delete_many` of `routes`: what their IPv4 routes
    /// of metric 0 have in common, per table ([`Narrow`]).
    fn for_batch(routes: &'r [Route]) -> ZeroMetric<'r> {
        let mut narrow: FastMap<u32, Narrow<'r>> = FastMap::default();
        for r in routes {
            if r.is_ipv6() || r.kernel_metric() != 0 {
                continue;
            }
            let mine = Narrow {
                proto: Some(r.proto).filter(|p| *p != crate::names::Protocol::UNSPEC),
                // A route on a nexthop object is deleted by its id, not
                // through a device.
                device: r.device.as_deref().filter(|_| r.nhid.is_none()),
            };
            narrow
                .entry(r.table)
                .and_modify(|n| {
                    if n.proto != mine.proto {
                        n.proto = None;
                    }
                    if n.device != mine.device {
                        n.device = None;
                    }
                })
                .or_insert(mine);
        }
        ZeroMetric {
            tables: FastMap::default(),
            narrow,
        }
    }

    /// Whether exactly the route `r` (metric 0) is there: its table,
    /// prefix, tos, device when given and protocol unless unspec.
    fn present(
        &mut self,
        h: &Handle,
        c: &mut crate::nl::Conn,
        r: &Route,
        oif: Option<u32>,
    ) -> std::result::Result<bool, NlError> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.tables.entry(r.table) {
            // Filtered as far as every route of the batch in this table
            // allows (the routes of `r`'s own protocol and device when
            // all say the same).
            let narrow = self.narrow.get(&r.table).copied().unwrap_or(Narrow {
                proto: None,
                device: None,
            });
            let by_dev = narrow.device.is_some() && narrow.device == r.device.as_deref();
            let req = codec::route_dump(
                Some(crate::rule::Family::V4),
                Some(r.table),
                narrow.proto.filter(|p| *p == r.proto),
                None,
                oif.filter(|_| by_dev),
            );
            let table = r.table;
            let mut index = ZeroIndex::default();
            let res = c.dump(nl::RTM_GETROUTE, &req, nl::RTM_NEWROUTE, |p| {
                if let Some(id) = fastcodec::peek_identity(p) {
                    if !id.cloned && id.table == table && id.metric == 0 {
                        if let Some(key) = zero_key(&id.prefix, id.tos) {
                            index.entries.push(ZeroEntry {
                                key,
                                oif: id.oif,
                                proto: id.proto,
                                several: false,
                            });
                        }
                    }
                }
                Ok(())
            });
            match res {
                Ok(()) => {}
                Err(NlError::Kernel { errno, .. }) if errno == libc::ENOENT => {}
                // Interrupted by concurrent changes: check one by one.
                Err(NlError::Interrupted) => {
                    e.insert(None);
                    return Ok(h.delete_precheck(c, r, oif, None)? != Some(false));
                }
                Err(e) => return Err(e),
            }
            index.seal();
            e.insert(Some(index));
        }
        let (Some(Some(index)), Some(key)) =
            (self.tables.get_mut(&r.table), zero_key(&r.prefix, r.tos))
        else {
            return Ok(h.delete_precheck(c, r, oif, None)? != Some(false));
        };
        match index.get(key) {
            None => Ok(false),
            Some(e) if !e.several => Ok((oif.is_none() || e.oif == oif)
                && (r.proto == crate::names::Protocol::UNSPEC || e.proto == r.proto.0)),
            // Several routes of that identity: the exact check of a single
            // delete.
            Some(_) => Ok(h.delete_precheck(c, r, oif, None)? != Some(false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prefix: &str, tos: u8, oif: u32) -> ZeroEntry {
        ZeroEntry {
            key: zero_key(&prefix.parse().unwrap(), tos).unwrap(),
            oif: Some(oif),
            proto: 4,
            several: false,
        }
    }

    #[test]
    fn a_batch_narrows_its_dumps_to_what_all_its_routes_name() {
        let routes: Vec<Route> = [
            "10.1.0.0/24 via 10.0.0.2 dev eth0 proto static",
            "10.2.0.0/24 via 10.0.0.2 dev eth0 proto static",
            // Another metric, IPv6: no dump, so no say.
            "10.3.0.0/24 via 10.0.0.2 dev eth1 proto bird metric 32",
            "fd00:1::/64 via fd00::2 dev eth1",
            "10.1.0.0/24 dev eth0 proto static table 7",
            "10.2.0.0/24 dev eth1 proto static table 7",
            "10.1.0.0/24 via 10.0.0.2 dev eth0 table 8",
            "10.2.0.0/24 via 10.0.0.2 dev eth0 proto unspec table 8",
            "10.1.0.0/24 nhid 4 proto zebra table 9",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
        let z = ZeroMetric::for_batch(&routes);
        let n = |table: u32| z.narrow.get(&table).copied();
        let static_ = Some(crate::names::Protocol::STATIC);
        assert_eq!(
            n(crate::names::MAIN_TABLE),
            Some(Narrow {
                proto: static_,
                device: Some("eth0")
            })
        );
        assert_eq!(
            n(7),
            Some(Narrow {
                proto: static_,
                device: None
            })
        );
        assert_eq!(
            n(8),
            Some(Narrow {
                proto: None,
                device: Some("eth0")
            })
        );
        assert_eq!(
            n(9),
            Some(Narrow {
                proto: Some(crate::names::Protocol(11)),
                device: None
            })
        );
        assert_eq!(z.narrow.len(), 4);
    }

    #[test]
    fn zero_index_finds_in_any_order_and_folds_duplicates() {
        let mut ix = ZeroIndex::default();
        // Out of the key's order, one identity twice (NLM_F_APPEND).
        for (p, tos, oif) in [
            ("10.0.0.9/32", 0, 1),
            ("10.0.0.0/24", 0, 2),
            ("10.0.0.0/24", 16, 3),
            ("10.0.0.5/32", 0, 4),
            ("10.0.0.5/32", 0, 5),
            ("9.0.0.0/8", 0, 6),
        ] {
            ix.entries.push(entry(p, tos, oif));
        }
        ix.seal();
        assert_eq!(ix.entries.len(), 5);
        let get = |ix: &mut ZeroIndex, p: &str, tos: u8| {
            ix.get(zero_key(&p.parse().unwrap(), tos).unwrap())
        };
        // In order, out of order, again: the hint never changes an answer.
        for _ in 0..2 {
            for (p, tos, want) in [
                ("9.0.0.0/8", 0, Some((6, false))),
                ("10.0.0.0/24", 0, Some((2, false))),
                ("10.0.0.0/24", 16, Some((3, false))),
                ("10.0.0.5/32", 0, Some((4, true))),
                ("10.0.0.9/32", 0, Some((1, false))),
                ("10.0.0.0/24", 8, None),
                ("10.0.0.0/25", 0, None),
                ("10.0.0.9/32", 0, Some((1, false))),
                ("9.0.0.0/8", 0, Some((6, false))),
                ("11.0.0.0/8", 0, None),
            ] {
                let got = get(&mut ix, p, tos).map(|e| (e.oif.unwrap(), e.several));
                assert_eq!(got, want, "{p} tos {tos}");
            }
        }
        assert!(zero_key(&"fd00::/64".parse().unwrap(), 0).is_none());
    }
}
