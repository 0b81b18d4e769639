//! The netlink socket: framing, acks with extended-ack messages, dumps with
//! `NLM_F_DUMP_INTR` detection, and pipelined batches.
//!
//! Message bodies are encoded and decoded with netlink-packet-route; the
//! 16-byte `nlmsghdr` framing and the `nlmsgerr` acks are handled here so a
//! request costs one `send` and one `recv` and no allocation.

use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_core::Emitable;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLM_F_CAPPED: u16 = 0x100;
const NLMSGERR_ATTR_MSG: u16 = 1;

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;
pub(crate) const RTM_NEWRULE: u16 = 32;
pub(crate) const RTM_DELRULE: u16 = 33;
pub(crate) const RTM_GETRULE: u16 = 34;

const HDR: usize = 16;
/// Big enough for any dump datagram the kernel sends (at most 32 KiB).
const RX_LEN: usize = 64 * 1024;

/// A failure below the level of routes and rules.
#[derive(Debug)]
pub(crate) enum NlError {
    Io(io::Error),
    Kernel {
        errno: i32,
        message: Option<String>,
    },
    Decode(String),
    Interrupted,
    /// The request's outcome was lost: the receive buffer overflowed
    /// (ENOBUFS) while its reply was due.
    Lost,
    /// A route of the same identity but another protocol is in the way.
    Conflict(Box<crate::route::Route>),
    /// The route a replace would hit carries what this crate does not
    /// model (the route, what).
    Unmodelled(Box<crate::route::Route>, String),
}

impl From<io::Error> for NlError {
    fn from(e: io::Error) -> Self {
        NlError::Io(e)
    }
}

impl NlError {
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            NlError::Io(e) => e.raw_os_error(),
            NlError::Lost => Some(libc::ENOBUFS),
            _ => None,
        }
    }
}

/// One received message.
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Parses the body of an `NLMSG_ERROR`: (errno, extended-ack message).
pub(crate) fn parse_error(flags: u16, payload: &[u8]) -> Result<(i32, Option<String>), NlError> {
    if payload.len() < 4 {
        return Err(NlError::Decode("short NLMSG_ERROR".into()));
    }
    let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
    // The kernel sends 0 or a negative errno; anything else (a positive
    // code, i32::MIN, which has no negation) is malformed.
    let errno = match code.checked_neg() {
        Some(e) if e >= 0 => e,
        _ => return Err(NlError::Decode(format!("bad NLMSG_ERROR code {code}"))),
    };
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 4 + HDR {
        return Ok((errno, None));
    }
    // The TLVs follow the echoed request: its header only when capped.
    let skip = if flags & NLM_F_CAPPED != 0 {
        HDR
    } else {
        align(u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]) as usize)
    };
    let tlvs = payload.get(4 + skip..).unwrap_or(&[]);
    Ok((errno, attr_string(tlvs, NLMSGERR_ATTR_MSG)))
}

/// The outcome an `NLMSG_ERROR` reports: `Ok(())` for an ack (errno 0),
/// else the kernel's error. The outer error is a malformed message.
fn outcome(m: &Msg<'_>) -> Result<Result<(), NlError>, NlError> {
    let (errno, message) = parse_error(m.flags, m.payload)?;
    Ok(if errno == 0 {
        Ok(())
    } else {
        Err(NlError::Kernel { errno, message })
    })
}

/// The first attribute of type `want` in `attrs`, read as a NUL-terminated
/// string; the walk stops at a malformed attribute.
pub(crate) fn attr_string(mut attrs: &[u8], want: u16) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            break;
        }
        if ty == want {
            let v = attrs[4..len].split(|b| *b == 0).next().unwrap_or(&[]);
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        attrs = attrs.get(align(len)..).unwrap_or(&[]);
    }
    None
}

pub(crate) fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterates over the messages of one datagram.
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = Result<Msg<'_>, NlError>> {
    std::iter::from_fn(move || {
        if buf.len() < HDR {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < HDR || len > buf.len() {
            buf = &[];
            return Some(Err(NlError::Decode(format!(
                "bad netlink message length {len}"
            ))));
        }
        let m = Msg {
            ty: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: &buf[HDR..len],
        };
        buf = buf.get(align(len)..).unwrap_or(&[]);
        Some(Ok(m))
    })
}

/// What a dump has seen so far.
#[derive(Debug, Default)]
pub(crate) struct DumpState {
    interrupted: bool,
    first_err: Option<NlError>,
}

/// Feeds one datagram of a dump with sequence number `seq` to `each`.
/// Returns `Some(outcome)` once the dump is complete: `Interrupted` when any
/// message carried `NLM_F_DUMP_INTR`, the kernel's error when it sent one,
/// or the first error of `each`.
pub(crate) fn scan_dump(
    datagram: &[u8],
    seq: u32,
    want: u16,
    st: &mut DumpState,
    each: &mut impl FnMut(&[u8]) -> Result<(), NlError>,
) -> Result<Option<Result<(), NlError>>, NlError> {
    for m in messages(datagram) {
        let m = m?;
        if m.seq != seq {
            continue;
        }
        if m.flags & NLM_F_DUMP_INTR != 0 {
            st.interrupted = true;
        }
        match m.ty {
            NLMSG_DONE => {
                if m.payload.len() >= 4 {
                    let code = i32::from_ne_bytes([
                        m.payload[0],
                        m.payload[1],
                        m.payload[2],
                        m.payload[3],
                    ]);
                    if code < 0 && st.first_err.is_none() {
                        // The DONE of a failed dump carries the error and
                        // the extended ack like NLMSG_ERROR does.
                        let (errno, message) = parse_error(m.flags, m.payload)?;
                        st.first_err = Some(NlError::Kernel { errno, message });
                    }
                }
                return Ok(Some(match (st.first_err.take(), st.interrupted) {
                    (Some(e), _) => Err(e),
                    (None, true) => Err(NlError::Interrupted),
                    (None, false) => Ok(()),
                }));
            }
            NLMSG_ERROR => {
                if let Err(e) = outcome(&m)? {
                    // An error instead of a dump ends it.
                    return Ok(Some(Err(e)));
                }
            }
            t if t == want => {
                if let Err(e) = each(m.payload) {
                    st.first_err.get_or_insert(e);
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The outcomes of [`Conn::get_route_then_add`]: the lookup's answer and
/// the add's ack.
pub(crate) type Pair<T> = (Result<T, NlError>, Result<(), NlError>);

/// One `NETLINK_ROUTE` socket with its buffers.
pub(crate) struct Conn {
    sock: Socket,
    /// Requests per datagram of a batch; halved after an overflow.
    window: usize,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
    /// The sequence numbers of the window being sent.
    seqs: Vec<u32>,
}

/// Sets a netlink socket's receive buffer: `SO_RCVBUFFORCE` where the
/// process may (root), else `SO_RCVBUF` within `net.core.rmem_max`.
pub(crate) fn force_rcvbuf(sock: &Socket, bytes: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        sock.set_rx_buf_sz(bytes)?;
    }
    Ok(())
}

impl Conn {
    /// Opens a socket in the calling thread's netns, with extended acks,
    /// capped acks and strict checking on.
    pub(crate) fn open() -> io::Result<Conn> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.set_ext_ack(true)?;
        sock.set_cap_ack(true)?;
        sock.set_netlink_get_strict_chk(true)?;
        // Room for the acks of a pipelined batch; SO_RCVBUFFORCE works as
        // root, else the ordinary limit applies.
        let _ = force_rcvbuf(&sock, 4 << 20);
        // A reply never comes only if something is badly wrong; fail with
        // EAGAIN instead of hanging forever.
        let timeout = libc::timeval {
            tv_sec: 60,
            tv_usec: 0,
        };
        // SAFETY: setsockopt reads `timeout` for the duration of the call.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut c = Conn {
            sock,
            window: 0,
            seq: 0,
            tx: Vec::with_capacity(4096),
            rx: vec![0; RX_LEN],
            seqs: Vec::new(),
        };
        c.window = c.default_window();
        Ok(c)
    }

    /// The socket's receive buffer size in bytes (as the kernel counts it:
    /// twice what was asked for).
    pub(crate) fn rcvbuf(&self) -> usize {
        self.sock.get_rx_buf_sz().unwrap_or(212_992)
    }

    fn default_window(&self) -> usize {
        (self.rcvbuf() / 2048).clamp(16, 1024)
    }

    /// Sets the receive buffer (`SO_RCVBUFFORCE` where permitted, else
    /// `SO_RCVBUF` within the system limit) and sizes the batch window to
    /// it; returns the size the kernel now counts.
    pub(crate) fn set_rcvbuf(&mut self, bytes: usize) -> io::Result<usize> {
        force_rcvbuf(&self.sock, bytes)?;
        self.window = self.default_window();
        Ok(self.rcvbuf())
    }

    /// The socket's descriptor (for `SIOCGSKNS`: its netns).
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }

    /// The batch window now in use.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// Reads and clears the socket's pending error (`SO_ERROR`): ENOBUFS
    /// when the kernel dropped a reply because the receive buffer was full.
    fn take_error(&self) -> Option<i32> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `err`.
        let rc = unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0 && err != 0).then_some(err)
    }

    /// Appends one request to the send buffer and returns its sequence number.
    pub(crate) fn push<E: Emitable>(&mut self, ty: u16, flags: u16, body: &E) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        let start = self.tx.len();
        let len = HDR + body.buffer_len();
        self.tx.resize(start + align(len), 0);
        let b = &mut self.tx[start..];
        b[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        b[12..16].copy_from_slice(&0u32.to_ne_bytes());
        body.emit(&mut b[HDR..len]);
        self.seq
    }

    /// Appends one request whose body `body` appends to the send buffer
    /// (and returns the request's type and flags); returns its sequence
    /// number. The body is written in place: no message value, no copy.
    #[inline]
    fn push_body(&mut self, ack: u16, body: impl FnOnce(&mut Vec<u8>) -> (u16, u16)) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        let start = self.tx.len();
        self.tx.extend_from_slice(&[0u8; HDR]);
        let (ty, flags) = body(&mut self.tx);
        let len = self.tx.len() - start;
        let b = &mut self.tx[start..start + HDR];
        b[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b[6..8].copy_from_slice(&(flags | ack | NLM_F_REQUEST).to_ne_bytes());
        b[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.tx.resize(start + align(len), 0);
        self.seq
    }

    /// The bytes queued so far (for tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> &[u8] {
        &self.tx
    }

    fn flush(&mut self) -> Result<(), NlError> {
        let r = self.sock.send(&self.tx, 0);
        self.tx.clear();
        r?;
        Ok(())
    }

    /// Receives one datagram into `rx`; returns its length.
    fn recv(&mut self) -> Result<usize, NlError> {
        loop {
            let mut slice: &mut [u8] = &mut self.rx[..];
            match self.sock.recv(&mut slice, 0) {
                Ok(n) if n > RX_LEN => {
                    return Err(NlError::Decode(format!("datagram of {n} bytes truncated")))
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends the queued requests and waits for the ack of `seq`.
    pub(crate) fn ack<E: Emitable>(
        &mut self,
        ty: u16,
        flags: u16,
        body: &E,
    ) -> Result<(), NlError> {
        self.tx.clear();
        let seq = self.push(ty, flags | NLM_F_ACK, body);
        self.flush()?;
        loop {
            let n = self.recv()?;
            for m in messages(&self.rx[..n]) {
                let m = m?;
                if m.seq != seq || m.ty != NLMSG_ERROR {
                    continue;
                }
                return outcome(&m)?;
            }
        }
    }

    /// Sends a non-dump request that the kernel answers with one message
    /// (`RTM_GETROUTE`, `RTM_GETLINK`) and decodes the answer.
    pub(crate) fn get<E: Emitable, T>(
        &mut self,
        ty: u16,
        body: &E,
        want: u16,
        decode: impl FnOnce(&[u8]) -> Result<T, NlError>,
    ) -> Result<T, NlError> {
        self.tx.clear();
        let seq = self.push(ty, 0, body);
        self.flush()?;
        loop {
            let n = self.recv()?;
            let mut found = None;
            for m in messages(&self.rx[..n]) {
                let m = m?;
                if m.seq != seq {
                    continue;
                }
                if m.ty == NLMSG_ERROR {
                    // An ack before the answer is no answer; an error is.
                    outcome(&m)??;
                    continue;
                }
                if m.ty == want {
                    found = Some(m.payload);
                    break;
                }
            }
            if let Some(p) = found {
                return decode(p);
            }
        }
    }

    /// Sends an `RTM_GETROUTE` (non-dump) and an acked `RTM_NEWROUTE` in
    /// one datagram (the kernel handles them in order) and returns both
    /// outcomes: one round trip instead of two.
    pub(crate) fn get_route_then_add<G: Emitable, A: Emitable, T>(
        &mut self,
        get: &G,
        decode: impl FnOnce(&[u8]) -> Result<T, NlError>,
        add_flags: u16,
        add: &A,
    ) -> Result<Pair<T>, NlError> {
        self.tx.clear();
        let s1 = self.push(RTM_GETROUTE, 0, get);
        let s2 = self.push(RTM_NEWROUTE, add_flags | NLM_F_ACK, add);
        self.flush()?;
        let mut decode = Some(decode);
        let mut r1: Option<Result<T, NlError>> = None;
        let mut r2: Option<Result<(), NlError>> = None;
        while r1.is_none() || r2.is_none() {
            let n = self.recv()?;
            for m in messages(&self.rx[..n]) {
                let m = m?;
                if m.seq == s1 && r1.is_none() {
                    if m.ty == NLMSG_ERROR {
                        if let Err(e) = outcome(&m)? {
                            r1 = Some(Err(e));
                        }
                    } else if m.ty == RTM_NEWROUTE {
                        if let Some(d) = decode.take() {
                            r1 = Some(d(m.payload));
                        }
                    }
                } else if m.seq == s2 && m.ty == NLMSG_ERROR {
                    r2 = Some(outcome(&m)?);
                }
            }
        }
        match (r1, r2) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(NlError::Decode("missing reply".into())),
        }
    }

    /// Runs one dump; `each` gets every message of type `want`. Returns
    /// `Interrupted` when the kernel flagged `NLM_F_DUMP_INTR` (after
    /// reading the dump to its end).
    pub(crate) fn dump<E: Emitable>(
        &mut self,
        ty: u16,
        body: &E,
        want: u16,
        mut each: impl FnMut(&[u8]) -> Result<(), NlError>,
    ) -> Result<(), NlError> {
        self.tx.clear();
        let seq = self.push(ty, NLM_F_DUMP, body);
        self.flush()?;
        let mut st = DumpState::default();
        loop {
            let n = self.recv()?;
            if let Some(done) = scan_dump(&self.rx[..n], seq, want, &mut st, &mut each)? {
                return done;
            }
        }
    }

    /// Sends one window of `n` requests pipelined in one datagram (the
    /// caller keeps `n` within [`Conn::window`]), only the last asking for
    /// an ack, and calls `fail(k, e)`, in order, for each request that
    /// failed; every other request succeeded. `make(k, buf)` appends the
    /// body of request `k` to the send buffer and returns its type and
    /// flags.
    ///
    /// The kernel handles a datagram's requests while `send` runs and
    /// queues their replies; when the receive buffer fills, it drops every
    /// later reply and reports ENOBUFS. Then the queue is drained without
    /// waiting: the replies it holds are the first ones, so every request
    /// up to the last one answered is known (no reply = success), and
    /// those after it fail with [`NlError::Lost`], for the caller to
    /// resolve. The window is halved for what follows, and the socket is
    /// clean for the next request at once. An error of the socket itself
    /// is returned, and the window's outcomes are then unknown.
    pub(crate) fn send_window(
        &mut self,
        n: usize,
        mut make: impl FnMut(usize, &mut Vec<u8>) -> (u16, u16),
        mut fail: impl FnMut(usize, NlError),
    ) -> Result<(), NlError> {
        if n == 0 {
            return Ok(());
        }
        self.tx.clear();
        self.seqs.clear();
        // Only the last request asks for an ack: the kernel answers the
        // others only when they fail (netlink_rcv_skb), and handles them in
        // order, so the last ack closes the window.
        for k in 0..n {
            let ack = if k + 1 == n { NLM_F_ACK } else { 0 };
            let seq = self.push_body(ack, |buf| make(k, buf));
            self.seqs.push(seq);
        }
        self.flush()?;
        let last = n - 1;
        // Index of the next reply expected.
        let mut next = 0usize;
        let mut overflow = self.take_error() == Some(libc::ENOBUFS);
        let mut done = false;
        while !done {
            let got = if overflow {
                self.recv_nowait()
            } else {
                self.recv().map(Some)
            };
            let len = match got {
                Ok(Some(len)) => len,
                // Drained: what was not answered is lost.
                Ok(None) => break,
                Err(NlError::Io(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    overflow = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for m in messages(&self.rx[..len]) {
                let m = m?;
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                // Answers come in order; find this one's index from `next`.
                let Some(off) = self.seqs[next..].iter().position(|s| *s == m.seq) else {
                    continue;
                };
                let idx = next + off;
                next = idx + 1;
                if let Err(e) = outcome(&m)? {
                    fail(idx, e);
                }
                if idx == last && !overflow {
                    done = true;
                }
            }
        }
        if overflow {
            for k in next..n {
                fail(k, NlError::Lost);
            }
            self.window = (self.window / 2).max(1);
            // A pending error from the drain itself is stale now.
            let _ = self.take_error();
        }
        Ok(())
    }

    /// Receives one datagram without waiting; `None` when the queue is
    /// empty.
    fn recv_nowait(&mut self) -> Result<Option<usize>, NlError> {
        loop {
            let mut slice: &mut [u8] = &mut self.rx[..];
            match self.sock.recv(&mut slice, libc::MSG_DONTWAIT) {
                Ok(n) if n > RX_LEN => {
                    return Err(NlError::Decode(format!("datagram of {n} bytes truncated")))
                }
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // Reported once; the queue may still hold replies.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_with_extended_ack_is_parsed() {
        // errno -EINVAL, capped original header, then NLMSGERR_ATTR_MSG.
        let mut p = Vec::new();
        p.extend_from_slice(&(-libc::EINVAL).to_ne_bytes());
        p.extend_from_slice(&[0u8; 16]);
        let msg = b"Invalid prefix\0";
        p.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(msg);
        while p.len() % 4 != 0 {
            p.push(0);
        }
        let (errno, m) = parse_error(NLM_F_ACK_TLVS | NLM_F_CAPPED, &p).unwrap();
        assert_eq!(errno, libc::EINVAL);
        assert_eq!(m.as_deref(), Some("Invalid prefix"));
        let (errno, m) = parse_error(0, &0i32.to_ne_bytes()).unwrap();
        assert_eq!((errno, m), (0, None));
        assert!(parse_error(0, &[1, 2]).is_err());
        // Fuzzing found the negation of i32::MIN; a positive code is no
        // errno either.
        assert!(parse_error(0, &i32::MIN.to_ne_bytes()).is_err());
        assert!(parse_error(NLM_F_ACK_TLVS, &[0x00, 0, 0, 0x80, 0, 0]).is_err());
        assert!(parse_error(0, &5i32.to_ne_bytes()).is_err());
    }

    #[test]
    fn push_frames_requests() {
        let mut c = Conn::open().unwrap();
        let r = crate::route::Route::new("10.0.0.0/8".parse().unwrap()).dev("x");
        let m = crate::codec::route_new(&r, Some(1), None, &[]);
        let body_len = m.buffer_len();
        let seq = c.push(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &m);
        let seq2 = c.push(RTM_DELROUTE, 0, &m);
        let q = c.queued();
        assert_eq!(q.len(), 2 * align(16 + body_len));
        let ms: Vec<_> = messages(q).map(|m| m.unwrap()).collect();
        assert_eq!(ms[0].ty, RTM_NEWROUTE);
        assert_eq!(ms[0].flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!((ms[0].seq, ms[1].seq), (seq, seq2));
        assert_eq!(seq2, seq + 1);
        assert_eq!(ms[1].payload.len(), body_len);
    }

    fn msg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, body: &[u8]) {
        let len = 16 + body.len();
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(body);
        buf.resize(align(buf.len()), 0);
    }

    #[test]
    fn dump_scan_detects_interruption_and_errors() {
        let mut seen = Vec::new();
        let mut each = |p: &[u8]| {
            seen.push(p.to_vec());
            Ok(())
        };
        // Part one: two routes, one of another request (seq 6) skipped.
        let mut d1 = Vec::new();
        msg(&mut d1, RTM_NEWROUTE, 2, 7, b"a");
        msg(&mut d1, RTM_NEWROUTE, 2, 6, b"x");
        msg(&mut d1, RTM_NEWROUTE, 2 | NLM_F_DUMP_INTR, 7, b"b");
        let mut st = DumpState::default();
        assert!(scan_dump(&d1, 7, RTM_NEWROUTE, &mut st, &mut each)
            .unwrap()
            .is_none());
        let mut d2 = Vec::new();
        msg(&mut d2, NLMSG_DONE, 2, 7, &0i32.to_ne_bytes());
        let done = scan_dump(&d2, 7, RTM_NEWROUTE, &mut st, &mut each)
            .unwrap()
            .unwrap();
        assert!(matches!(done, Err(NlError::Interrupted)));
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        // A clean dump completes.
        let mut st = DumpState::default();
        let mut d = Vec::new();
        msg(&mut d, RTM_NEWROUTE, 2, 8, b"c");
        msg(&mut d, NLMSG_DONE, 2, 8, &0i32.to_ne_bytes());
        let done = scan_dump(&d, 8, RTM_NEWROUTE, &mut st, &mut |_: &[u8]| Ok(()))
            .unwrap()
            .unwrap();
        assert!(done.is_ok());
        // A DONE carrying an errno fails the dump with it.
        let mut st = DumpState::default();
        let mut d = Vec::new();
        msg(&mut d, NLMSG_DONE, 2, 9, &(-libc::ENOENT).to_ne_bytes());
        let done = scan_dump(&d, 9, RTM_NEWROUTE, &mut st, &mut |_: &[u8]| Ok(()))
            .unwrap()
            .unwrap();
        assert!(matches!(done, Err(NlError::Kernel { errno, .. }) if errno == libc::ENOENT));
        // An undecodable message fails the dump after reading it to the end.
        let mut st = DumpState::default();
        let mut d = Vec::new();
        msg(&mut d, RTM_NEWROUTE, 2, 10, b"bad");
        msg(&mut d, NLMSG_DONE, 2, 10, &0i32.to_ne_bytes());
        let mut fail = |_: &[u8]| Err(NlError::Decode("bad".into()));
        let done = scan_dump(&d, 10, RTM_NEWROUTE, &mut st, &mut fail)
            .unwrap()
            .unwrap();
        assert!(matches!(done, Err(NlError::Decode(_))));
    }

    #[test]
    fn framing_walks_messages() {
        let mut buf = Vec::new();
        for (ty, body) in [(24u16, &b"abcde"[..]), (3, &b""[..])] {
            let len = 16 + body.len();
            buf.extend_from_slice(&(len as u32).to_ne_bytes());
            buf.extend_from_slice(&ty.to_ne_bytes());
            buf.extend_from_slice(&2u16.to_ne_bytes());
            buf.extend_from_slice(&9u32.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(body);
            buf.resize(align(buf.len()), 0);
        }
        let ms: Vec<_> = messages(&buf).map(|m| m.unwrap()).collect();
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].ty, ms[0].payload), (24, &b"abcde"[..]));
        assert_eq!((ms[1].ty, ms[1].seq, ms[1].flags), (3, 9, 2));
        let bad = [200u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(messages(&bad).next().unwrap().is_err());
    }
}
