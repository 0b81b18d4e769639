//! The window-at-a-time driver of [`Handle`]'s pipelined batches
//! (`upsert_many`, `delete_many`): routes are checked and encoded into the
//! send buffer one window (a datagram of requests) at a time while they
//! are in the cache, the window is sent, its acks collected, and the
//! requests the kernel failed (or whose reply was lost) are resolved
//! before the next window. What differs between the batches is a
//! [`Batch`].

use super::Handle;
use crate::error::{Error, Op, Result};
use crate::nl::{Conn, NlError};
use crate::route::Route;

/// One kind of pipelined batch, as [`Handle::run_windows`] drives it.
pub(crate) trait Batch<'r> {
    /// What a checked route carries to its request (its resolved device,
    /// MTU, ...).
    type Ready: Copy;
    /// A route's outcome.
    type Done;
    /// The operation, for the socket errors of a window.
    const OP: Op;
    /// What a sent request reports unless the kernel says otherwise.
    const SENT: Self::Done;

    /// Checks and resolves route `r` before it goes in a window; an error
    /// is its outcome and nothing is sent for it.
    fn prepare(&mut self, h: &Handle, c: &mut Conn, r: &'r Route) -> Result<Self::Ready>;

    /// Appends the request of `r` to `buf`; returns its message type and
    /// flags.
    fn encode(&self, r: &Route, ready: &Self::Ready, buf: &mut Vec<u8>) -> (u16, u16);

    /// The outcome of a request the kernel failed with `e` (or whose reply
    /// was lost, [`NlError::Lost`]).
    fn resolve(
        &mut self,
        h: &Handle,
        c: &mut Conn,
        r: &'r Route,
        ready: &Self::Ready,
        e: NlError,
    ) -> Result<Self::Done>;

    /// Called once a window's outcomes are all known: `win` holds the
    /// index (in the batch and in `out`) and the [`Batch::Ready`] of each
    /// route sent in it.
    fn window_done(&mut self, _win: &[(usize, Self::Ready)], _out: &mut [Result<Self::Done>]) {}
}

/// The socket error of a window whose outcomes are unknown, for route `r`.
fn socket_error(op: Op, r: &Route, e: &NlError) -> Error {
    Error::Io {
        op,
        context: r.to_string(),
        source: std::io::Error::from_raw_os_error(e.errno().unwrap_or(libc::EIO)),
    }
}

/// The device of the batch's previous route: a batch mostly names few
/// devices, in runs, so most routes need no lookup.
#[derive(Default)]
pub(crate) struct LastDevice<'r>(Option<(&'r str, u32)>);

impl<'r> LastDevice<'r> {
    /// The device index of `r`, as [`Handle::oif`] resolves it.
    pub(crate) fn oif(
        &mut self,
        h: &Handle,
        c: &mut Conn,
        r: &'r Route,
        op: Op,
    ) -> Result<Option<u32>> {
        match (r.device.as_deref(), self.0) {
            (Some(d), Some((name, idx))) if r.nhid.is_none() && d == name => Ok(Some(idx)),
            _ => {
                let oif = h.oif(c, r, op, false)?;
                if let (Some(d), Some(idx)) = (r.device.as_deref(), oif) {
                    self.0 = Some((d, idx));
                }
                Ok(oif)
            }
        }
    }

    /// Forgets the device (its index went stale).
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

impl Handle {
    /// Runs batch `b` over `routes`, one window at a time; one outcome per
    /// route, in order. Should the socket fail, the routes of that window
    /// and all after it get its error and nothing more is sent.
    pub(crate) fn run_windows<'r, B: Batch<'r>>(
        &self,
        c: &mut Conn,
        routes: &'r [Route],
        b: &mut B,
    ) -> Vec<Result<B::Done>> {
        let mut out: Vec<Result<B::Done>> = Vec::with_capacity(routes.len());
        let mut win: Vec<(usize, B::Ready)> = Vec::new();
        let mut fails: Vec<(usize, NlError)> = Vec::new();
        let mut next = 0;
        while next < routes.len() {
            let cap = c.window().max(1);
            win.clear();
            while next < routes.len() && win.len() < cap {
                let i = next;
                next += 1;
                match b.prepare(self, c, &routes[i]) {
                    Ok(ready) => {
                        // Sent: `SENT` unless the window says otherwise.
                        out.push(Ok(B::SENT));
                        win.push((i, ready));
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            fails.clear();
            let sent = c.send_window(
                win.len(),
                |k, buf| {
                    let (i, ready) = &win[k];
                    b.encode(&routes[*i], ready, buf)
                },
                |k, e| fails.push((k, e)),
            );
            if let Err(e) = sent {
                // The socket failed: nothing more is sent.
                for (i, _) in &win {
                    out[*i] = Err(socket_error(B::OP, &routes[*i], &e));
                }
                out.extend(
                    routes[next..]
                        .iter()
                        .map(|r| Err(socket_error(B::OP, r, &e))),
                );
                break;
            }
            for (k, e) in fails.drain(..) {
                let (i, ready) = win[k];
                out[i] = b.resolve(self, c, &routes[i], &ready, e);
            }
            b.window_done(&win, &mut out);
        }
        out
    }
}
