//! [`Handle`]: one `NETLINK_ROUTE` socket in one netns, shared by every
//! object family. Each family's operations live in a file of their own:
//! routes in `routes.rs`, their pipelined batches in `batch.rs`, rules in
//! `rules.rs`, and links, addresses and neighbours in the crate's `link.rs`,
//! `address.rs` and `neighbour.rs`.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use netlink_packet_core::Emitable;

use crate::codec::{self};
use crate::error::{Error, Op, Result};
use crate::nl::{self, Conn, NlError};

/// Cilium's `RouteReplaceMaxTries`: attempts of the prefix route on EINVAL.
pub const ROUTE_REPLACE_MAX_TRIES: u32 = 10;
/// Cilium's `RouteReplaceRetryInterval`.
pub const ROUTE_REPLACE_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often a dump interrupted by concurrent changes is retried.
pub const DUMP_MAX_TRIES: u32 = 10;

mod batch;
mod nexthops;
mod routes;
mod rules;
mod window;

pub(crate) use routes::*;
pub use routes::{GetOptions, MtuConfig, RouteFilter};

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
        NlError::Unmodelled(existing, what) => Error::Unmodelled {
            op,
            object: object.to_string(),
            existing: existing.to_string(),
            what,
        },
    }
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

    pub(crate) fn with_conn(conn: Conn, netns: Option<PathBuf>) -> Handle {
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

    pub(crate) fn name_of(&self, c: &mut Conn, idx: u32) -> Option<String> {
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

    /// Records what a link notification says: `index` is named `name`
    /// (`present`), or the link is gone. A gone link's index keeps its
    /// name, so that the notifications of its routes that follow still
    /// name it; its name no longer resolves to it.
    pub(crate) fn note_link(&self, index: u32, name: &str, present: bool) {
        let mut l = lock(&self.links);
        if present {
            if let Some(old) = l.by_name.insert(name.to_string(), index) {
                if old != index {
                    l.by_index.remove(&old);
                }
            }
            if let Some(stale) = l.by_index.insert(index, name.to_string()) {
                if stale != name && l.by_name.get(&stale) == Some(&index) {
                    l.by_name.remove(&stale);
                }
            }
        } else if l.by_name.get(name) == Some(&index) {
            l.by_name.remove(name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;

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
