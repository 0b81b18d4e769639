//! Pipelined batches of [`Handle`]: `upsert_many` and `delete_many`, with
//! shared nexthop routes and exact outcomes under overload.

use std::net::IpAddr;

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
    i: usize,
    oif: Option<u32>,
    mtu: Option<u32>,
    /// Index in the batch's multipath device lists, or [`NONE`].
    hops: u32,
    /// Index in the batch's shared nexthop routes, or [`NONE`].
    nh: u32,
}

/// The socket error of a window whose outcomes are unknown, for route `r`.
fn socket_error(op: Op, r: &Route, e: &NlError) -> Error {
    Error::Io {
        op,
        context: r.to_string(),
        source: std::io::Error::from_raw_os_error(e.errno().unwrap_or(libc::EIO)),
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
        // The routes go one window (a datagram of requests) at a time:
        // checked, resolved and encoded while they are in the cache, then
        // sent, and the window's failures resolved before the next.
        let mut out: Vec<Result<bool>> = Vec::with_capacity(routes.len());
        let mut c = lock(&self.conn);
        // Tables no rule reaches are dumped once for the whole batch.
        let mut cache = TableCache::new();
        // Nexthop routes, each ensured once; batches mostly use few, in
        // runs, as they use few devices.
        let mut nhs: Vec<SharedNexthop> = Vec::new();
        let mut nh_index: FastMap<NhKey, u32> = FastMap::default();
        let mut last_nh: Option<(NhKey, u32)> = None;
        let mut last_dev: Option<(&str, u32)> = None;
        // Device indexes of multipath hops, for the few routes that have them.
        let mut hop_lists: Vec<Vec<u32>> = Vec::new();
        let mut win: Vec<Ready> = Vec::new();
        let mut fails: Vec<(usize, NlError)> = Vec::new();
        let mut next = 0;
        while next < routes.len() {
            let cap = c.window().max(1);
            win.clear();
            while next < routes.len() && win.len() < cap {
                let i = next;
                next += 1;
                let r = &routes[i];
                let prep = r
                    .validate(Op::Upsert)
                    .and_then(|()| effective_mtu(r, mtu, Op::Upsert))
                    .and_then(|m| {
                        let oif = match (r.device.as_deref(), last_dev) {
                            (Some(d), Some((name, idx))) if r.nhid.is_none() && d == name => {
                                Some(idx)
                            }
                            _ => {
                                let oif = self.oif(&mut c, r, Op::Upsert, false)?;
                                if let (Some(d), Some(idx)) = (r.device.as_deref(), oif) {
                                    last_dev = Some((d, idx));
                                }
                                oif
                            }
                        };
                        let hops = if r.multipath.is_empty() {
                            NONE
                        } else {
                            hop_lists.push(self.hop_oifs(&mut c, r, Op::Upsert, false)?);
                            (hop_lists.len() - 1) as u32
                        };
                        Ok(Ready {
                            i,
                            oif,
                            mtu: m,
                            hops,
                            nh: NONE,
                        })
                    });
                let mut ready = match prep {
                    Ok(ready) => ready,
                    Err(e) => {
                        out.push(Err(e));
                        continue;
                    }
                };
                // What `nexthop_route` needs, without building it per route.
                if let Some(gw) = r.nexthop.filter(|_| r.nhid.is_none() && !r.is_onlink()) {
                    let key = (r.table, gw, ready.oif, r.proto.0);
                    let idx = match last_nh {
                        Some((k, idx)) if k == key => idx,
                        _ => {
                            let idx = *nh_index.entry(key).or_insert_with(|| {
                                nhs.push(self.share_nexthop(&mut c, r, gw, ready.oif, &mut cache));
                                (nhs.len() - 1) as u32
                            });
                            last_nh = Some((key, idx));
                            idx
                        }
                    };
                    let nh = &nhs[idx as usize];
                    if let Err((errno, message)) = &nh.outcome {
                        out.push(Err(Error::Kernel {
                            op: Op::UpsertNexthop,
                            object: nh.route.to_string(),
                            errno: *errno,
                            message: message.clone(),
                        }));
                        continue;
                    }
                    ready.nh = idx;
                }
                // Sent: `true` unless the window says otherwise.
                out.push(Ok(true));
                win.push(ready);
            }
            fails.clear();
            let sent = c.send_window(
                win.len(),
                |k, buf| {
                    let w = &win[k];
                    let hops = hop_lists
                        .get(w.hops as usize)
                        .map_or(&[][..], Vec::as_slice);
                    fastcodec::append_route_new(&routes[w.i], w.oif, w.mtu, hops, buf);
                    (nl::RTM_NEWROUTE, nl::NLM_F_CREATE | nl::NLM_F_EXCL)
                },
                |k, e| fails.push((k, e)),
            );
            if let Err(e) = sent {
                // The socket failed: nothing more is sent.
                for w in &win {
                    out[w.i] = Err(socket_error(Op::Upsert, &routes[w.i], &e));
                }
                out.extend(
                    routes[next..]
                        .iter()
                        .map(|r| Err(socket_error(Op::Upsert, r, &e))),
                );
                break;
            }
            for (k, e) in fails.drain(..) {
                let w = win[k];
                let r = &routes[w.i];
                let hops = hop_lists
                    .get(w.hops as usize)
                    .map_or(&[][..], Vec::as_slice);
                // EINVAL is retried only right after this call created
                // the route's nexthop route.
                let retry = nhs.get(w.nh as usize).is_some_and(|nh| {
                    matches!(nh.outcome, Ok(Ensured::Created | Ensured::Replaced(_)))
                });
                let put = Put {
                    oif: w.oif,
                    mtu: w.mtu,
                    hops,
                    retry,
                    take_over: false,
                };
                out[w.i] = match e {
                    NlError::Kernel { errno, .. } if errno == libc::ENODEV => {
                        // A stale cached index: resolve again and retry.
                        last_dev = None;
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
                    NlError::Lost => self
                        .put_prefix(&mut c, r, &put, None, Some(&mut cache))
                        .map(|_| true)
                        .map_err(|e| kernel(Op::Upsert, r, e)),
                    e => self
                        .put_prefix(&mut c, r, &put, Some(e), Some(&mut cache))
                        .map_err(|e| kernel(Op::Upsert, r, e)),
                };
            }
            // A nexthop change counts for the first successful route that
            // uses it.
            for w in &win {
                if let (Some(nh), Ok(ch)) = (nhs.get_mut(w.nh as usize), &mut out[w.i]) {
                    if !nh.used {
                        nh.used = true;
                        *ch |= matches!(nh.outcome, Ok(Ensured::Created | Ensured::Replaced(_)));
                    }
                }
            }
        }
        // Nexthop routes no successful route uses are taken back.
        for ((_, _, oif, _), idx) in nh_index {
            let nh = &mut nhs[idx as usize];
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
        // One window at a time, as `upsert_many`.
        let mut out: Vec<Result<()>> = Vec::with_capacity(routes.len());
        let mut c = lock(&self.conn);
        let mut zero = if precheck {
            ZeroMetric::for_batch(routes)
        } else {
            ZeroMetric::default()
        };
        let mut last_dev: Option<(&str, u32)> = None;
        let mut win: Vec<(usize, Option<u32>)> = Vec::new();
        let mut fails: Vec<(usize, NlError)> = Vec::new();
        let mut next = 0;
        while next < routes.len() {
            let cap = c.window().max(1);
            win.clear();
            while next < routes.len() && win.len() < cap {
                let i = next;
                next += 1;
                let r = &routes[i];
                let res = self
                    .check_selector(r, Op::Delete)
                    .and_then(|()| match (r.device.as_deref(), last_dev) {
                        (Some(d), Some((name, idx))) if r.nhid.is_none() && d == name => {
                            Ok(Some(idx))
                        }
                        _ => {
                            let oif = self.oif(&mut c, r, Op::Delete, false)?;
                            if let (Some(d), Some(idx)) = (r.device.as_deref(), oif) {
                                last_dev = Some((d, idx));
                            }
                            Ok(oif)
                        }
                    })
                    .and_then(|oif| {
                        if !precheck || r.is_ipv6() || r.kernel_metric() != 0 {
                            return Ok(oif);
                        }
                        match zero.present(self, &mut c, r, oif) {
                            Ok(false) => Err(absent(r)),
                            Ok(true) => Ok(oif),
                            Err(e) => Err(kernel(Op::Delete, r, e)),
                        }
                    });
                match res {
                    Ok(oif) => {
                        out.push(Ok(()));
                        win.push((i, oif));
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            fails.clear();
            let sent = c.send_window(
                win.len(),
                |k, buf| {
                    let (i, oif) = win[k];
                    fastcodec::append_route_del(&routes[i], oif, buf);
                    (nl::RTM_DELROUTE, 0)
                },
                |k, e| fails.push((k, e)),
            );
            if let Err(e) = sent {
                for (i, _) in &win {
                    out[*i] = Err(socket_error(Op::Delete, &routes[*i], &e));
                }
                out.extend(
                    routes[next..]
                        .iter()
                        .map(|r| Err(socket_error(Op::Delete, r, &e))),
                );
                break;
            }
            for (k, e) in fails.drain(..) {
                let (i, oif) = win[k];
                let r = &routes[i];
                let res = match e {
                    NlError::Lost => match c.ack(nl::RTM_DELROUTE, 0, &codec::route_del(r, oif)) {
                        Err(NlError::Kernel { errno, .. }) if errno == libc::ESRCH => Ok(()),
                        r => r,
                    },
                    e => Err(e),
                };
                out[i] = res.map_err(|e| kernel(Op::Delete, r, e));
            }
        }
        out
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
