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
        let mut out: Vec<Option<Result<bool>>> = (0..routes.len()).map(|_| None).collect();
        let mut c = lock(&self.conn);
        let mut prepared: Vec<(usize, Option<u32>, Option<u32>)> = Vec::with_capacity(routes.len());
        // Device indexes of multipath hops, for the few routes that have them.
        let mut hops_of: FastMap<usize, Vec<u32>> = FastMap::default();
        // The device of the previous route, resolved (batches mostly use
        // few devices, in runs).
        let mut last_dev: Option<(&str, u32)> = None;
        for (i, r) in routes.iter().enumerate() {
            let p = r
                .validate(Op::Upsert)
                .and_then(|()| effective_mtu(r, mtu, Op::Upsert))
                .and_then(|m| {
                    let oif = match (r.device.as_deref(), last_dev) {
                        (Some(d), Some((name, idx))) if r.nhid.is_none() && d == name => Some(idx),
                        _ => {
                            let oif = self.oif(&mut c, r, Op::Upsert, false)?;
                            if let (Some(d), Some(idx)) = (r.device.as_deref(), oif) {
                                last_dev = Some((d, idx));
                            }
                            oif
                        }
                    };
                    Ok((oif, m))
                })
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
        let mut nhs: FastMap<NhKey, SharedNexthop> = FastMap::default();
        let mut ready = Vec::with_capacity(prepared.len());
        let mut nh_key_of: Vec<Option<NhKey>> = vec![None; routes.len()];
        for (i, oif, m) in prepared {
            let r = &routes[i];
            // What `nexthop_route` needs, without building it per route.
            if let Some(gw) = r.nexthop.filter(|_| r.nhid.is_none() && !r.is_onlink()) {
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
                fastcodec::route_new(&routes[i], oif, m, hops_of.get(&i).unwrap_or(&no_hops)),
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

    pub(crate) fn delete_many_as(&self, routes: &[Route], precheck: bool) -> Vec<Result<()>> {
        let mut out: Vec<Option<Result<()>>> = (0..routes.len()).map(|_| None).collect();
        let mut c = lock(&self.conn);
        let mut zero = ZeroMetric::default();
        let mut ready = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let res = self
                .check_selector(r, Op::Delete)
                .and_then(|()| self.oif(&mut c, r, Op::Delete, false))
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
                Ok(oif) => ready.push((i, oif)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let acks = c.batch(ready.len(), |k| {
            let (i, oif) = ready[k];
            (
                nl::RTM_DELROUTE,
                0u16,
                fastcodec::route_del(&routes[i], oif),
            )
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
}

/// The IPv4 routes of metric 0 of the tables a `delete_many` touches, each
/// table dumped once and kept compact: by (prefix, tos) their device and
/// protocol (an IPv4 route's identity is table, prefix, tos and metric, so
/// there is one, unless added with `NLM_F_APPEND`; such prefixes are
/// checked one by one).
/// One table's metric-0 routes by (prefix, tos): (device, protocol), or
/// `None` for several.
type ZeroIndex = FastMap<(ipnet::IpNet, u8), Option<(Option<u32>, u8)>>;

#[derive(Default)]
pub(crate) struct ZeroMetric {
    /// `None`: the dump kept being interrupted, check one by one.
    tables: FastMap<u32, Option<ZeroIndex>>,
}

impl ZeroMetric {
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
            let req = codec::route_dump(
                Some(crate::rule::Family::V4),
                Some(r.table),
                None,
                None,
                None,
            );
            let table = r.table;
            let mut index = ZeroIndex::default();
            let res = c.dump(nl::RTM_GETROUTE, &req, nl::RTM_NEWROUTE, |p| {
                if let Some(id) = fastcodec::peek_identity(p) {
                    if !id.cloned && id.table == table && id.metric == 0 {
                        index
                            .entry((id.prefix, id.tos))
                            .and_modify(|v| *v = None)
                            .or_insert(Some((id.oif, id.proto)));
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
            e.insert(Some(index));
        }
        let Some(Some(index)) = self.tables.get(&r.table) else {
            return Ok(h.delete_precheck(c, r, oif, None)? != Some(false));
        };
        match index.get(&(r.prefix, r.tos)) {
            None => Ok(false),
            Some(Some((k_oif, k_proto))) => Ok((oif.is_none() || *k_oif == oif)
                && (r.proto == crate::names::Protocol::UNSPEC || *k_proto == r.proto.0)),
            // Several routes of that identity: the exact check of a single
            // delete.
            Some(None) => Ok(h.delete_precheck(c, r, oif, None)? != Some(false)),
        }
    }
}

/// Fills the outcome of every route sent in a batch that failed as a whole
/// (the socket, not the kernel, failed).
pub(crate) fn batch_failed<T>(
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
pub(crate) fn outcomes<T>(out: Vec<Option<Result<T>>>, op: Op) -> Vec<Result<T>> {
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
