//! Pipelined batches of [`Handle`]: `upsert_many` and `delete_many`, with
//! shared nexthop routes and exact outcomes under overload.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;
use crate::codec::{self};
use crate::error::{Error, Op, Result};
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
            if let Some(gw) = r.nexthop.filter(|_| r.nexthop_route().is_some()) {
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

    pub(crate) fn delete_many_as(&self, routes: &[Route], precheck: bool) -> Vec<Result<()>> {
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
