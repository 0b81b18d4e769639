//! Change notifications: a [`Monitor`] receives the kernel's rtnetlink
//! multicast messages for routes, rules, links, addresses and nexthop
//! objects in one network namespace and hands them out as typed
//! [`Event`]s, decoded by the same code as [`Handle::list`],
//! [`Handle::list_rules`], [`Handle::links`], [`Handle::addresses`] and
//! [`Handle::nexthops`] (an event's route prints
//! exactly as `list` returns it). A lost notification (the socket's
//! receive buffer overflowed: `ENOBUFS`) is an [`Event::Lost`]; a
//! [`Keeper`] says what to re-install after an event, a lost one included.
//!
//! What `ip monitor` does, as a library: `ip monitor route rule link
//! address nexthop` in the netns prints the same objects (see [`Event`]'s
//! `Display`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::address::{decode_address, Address};
use crate::codec;
use crate::error::{Error, Op, Result};
use crate::handle::{lock, Handle};
use crate::link::{decode_link_full, Link};
use crate::nexthop::{self, Nexthop};
use crate::nl::{self, Conn};
use crate::route::Route;
use crate::rule::Rule;
use crate::show::ShowStyle;

// rtnetlink multicast groups (linux/rtnetlink.h, `enum rtnetlink_groups`).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV4_RULE: u32 = 8;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTNLGRP_IPV6_RULE: u32 = 19;
/// Nexthop objects (Linux 5.3+); above 31, so joined with
/// `NETLINK_ADD_MEMBERSHIP` only (as every group here is).
const RTNLGRP_NEXTHOP: u32 = 32;

const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;

/// `SIOCGSKNS` (linux/sockios.h): a socket's network namespace as a file.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// The receive buffer a monitor asks for: room for a burst of about ten
/// thousand route notifications.
pub const MONITOR_RECEIVE_BUFFER: usize = 8 << 20;

/// Big enough for any notification datagram.
const RX_LEN: usize = 64 * 1024;

/// What a [`Monitor`] listens to: a set of object families (combine with
/// `|`).
///
/// ```
/// use podnet_route::Topics;
/// let t = Topics::ROUTES | Topics::RULES_V4;
/// assert!(t.contains(Topics::ROUTES_V6));
/// assert!(!t.contains(Topics::RULES));
/// assert_eq!(t.to_string(), "route rule(4)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Topics(u8);

impl Topics {
    /// Nothing.
    pub const NONE: Topics = Topics(0);
    /// IPv4 routes (`RTNLGRP_IPV4_ROUTE`).
    pub const ROUTES_V4: Topics = Topics(1);
    /// IPv6 routes (`RTNLGRP_IPV6_ROUTE`).
    pub const ROUTES_V6: Topics = Topics(2);
    /// Routes of both families.
    pub const ROUTES: Topics = Topics(1 | 2);
    /// IPv4 rules (`RTNLGRP_IPV4_RULE`).
    pub const RULES_V4: Topics = Topics(4);
    /// IPv6 rules (`RTNLGRP_IPV6_RULE`).
    pub const RULES_V6: Topics = Topics(8);
    /// Rules of both families.
    pub const RULES: Topics = Topics(4 | 8);
    /// Links (`RTNLGRP_LINK`).
    pub const LINKS: Topics = Topics(16);
    /// IPv4 addresses (`RTNLGRP_IPV4_IFADDR`).
    pub const ADDRESSES_V4: Topics = Topics(32);
    /// IPv6 addresses (`RTNLGRP_IPV6_IFADDR`).
    pub const ADDRESSES_V6: Topics = Topics(64);
    /// Addresses of both families.
    pub const ADDRESSES: Topics = Topics(32 | 64);
    /// Nexthop objects of every family (`RTNLGRP_NEXTHOP`, what `ip
    /// monitor nexthop` listens to): FRR's zebra installs its routes on
    /// them. A kernel before 5.3 has none, and nothing to join for them.
    pub const NEXTHOPS: Topics = Topics(128);
    /// Everything above.
    pub const ALL: Topics = Topics(255);

    /// `true` when every topic of `other` is in `self`.
    #[must_use]
    pub const fn contains(self, other: Topics) -> bool {
        self.0 & other.0 == other.0
    }

    /// The multicast groups to join. Links are always joined: their
    /// events keep the names of devices current, delivered or not.
    fn groups(self) -> Vec<u32> {
        let mut g = vec![RTNLGRP_LINK];
        for (t, group) in [
            (Topics::ROUTES_V4, RTNLGRP_IPV4_ROUTE),
            (Topics::ROUTES_V6, RTNLGRP_IPV6_ROUTE),
            (Topics::RULES_V4, RTNLGRP_IPV4_RULE),
            (Topics::RULES_V6, RTNLGRP_IPV6_RULE),
            (Topics::ADDRESSES_V4, RTNLGRP_IPV4_IFADDR),
            (Topics::ADDRESSES_V6, RTNLGRP_IPV6_IFADDR),
            (Topics::NEXTHOPS, RTNLGRP_NEXTHOP),
        ] {
            if self.contains(t) {
                g.push(group);
            }
        }
        g
    }
}

impl BitOr for Topics {
    type Output = Topics;
    fn bitor(self, rhs: Topics) -> Topics {
        Topics(self.0 | rhs.0)
    }
}

impl fmt::Display for Topics {
    /// The objects of `ip monitor OBJECT...`, a family in parentheses when
    /// only one of the two is asked for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        for (name, both, v4, v6) in [
            ("link", Topics::LINKS, Topics::LINKS, Topics::LINKS),
            (
                "address",
                Topics::ADDRESSES,
                Topics::ADDRESSES_V4,
                Topics::ADDRESSES_V6,
            ),
            (
                "route",
                Topics::ROUTES,
                Topics::ROUTES_V4,
                Topics::ROUTES_V6,
            ),
            ("rule", Topics::RULES, Topics::RULES_V4, Topics::RULES_V6),
            (
                "nexthop",
                Topics::NEXTHOPS,
                Topics::NEXTHOPS,
                Topics::NEXTHOPS,
            ),
        ] {
            if self.contains(both) {
                words.push(name.to_string());
            } else if self.contains(v4) {
                words.push(format!("{name}(4)"));
            } else if self.contains(v6) {
                words.push(format!("{name}(6)"));
            }
        }
        if words.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&words.join(" "))
        }
    }
}

/// One change the kernel announced, decoded as the crate's listing calls
/// decode the same object.
///
/// `Display` prints it as `ip monitor` does: the object as `ip ... show`
/// prints it (routes as in `ip route show table all`), `Deleted ` before
/// a removal.
///
/// ```
/// use podnet_route::{Event, Route};
/// let r: Route = "10.2.0.0/16 via 10.0.0.2 dev eth0 table 300".parse()?;
/// assert_eq!(Event::DelRoute(r).to_string(), "Deleted 10.2.0.0/16 via 10.0.0.2 dev eth0 table 300");
/// assert_eq!(Event::Lost.to_string(), "Lost (receive buffer overflow: resynchronize)");
/// # Ok::<(), podnet_route::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A route was added or changed (`RTM_NEWROUTE`).
    NewRoute(Route),
    /// A route was removed (`RTM_DELROUTE`). For a multipath route that
    /// lost some of its paths, the route lists the paths removed.
    DelRoute(Route),
    /// A rule was added (`RTM_NEWRULE`).
    NewRule(Rule),
    /// A rule was removed (`RTM_DELRULE`).
    DelRule(Rule),
    /// A link was created or changed (`RTM_NEWLINK`).
    NewLink(Link),
    /// A link was removed (`RTM_DELLINK`).
    DelLink(Link),
    /// An address was added or changed (`RTM_NEWADDR`).
    NewAddress(Address),
    /// An address was removed (`RTM_DELADDR`).
    DelAddress(Address),
    /// A nexthop object was added or replaced (`RTM_NEWNEXTHOP`).
    NewNexthop(Nexthop),
    /// A nexthop object was removed (`RTM_DELNEXTHOP`): by `ip nexthop
    /// del` or its daemon. The kernel removes the routes on it with it,
    /// the IPv4 ones without a notification of their own. The kernel
    /// sends no such event for the objects it flushes because their
    /// device went down or away (watch [`Topics::LINKS`] for that).
    DelNexthop(Nexthop),
    /// The kernel dropped notifications because the receive buffer was
    /// full (`ENOBUFS`): any number of changes since the previous event
    /// are unknown. Read the state again (a dump) and compare it with what
    /// you want; [`Keeper::repairs`] answers this with every route kept.
    /// Events keep coming after it.
    Lost,
}

impl Event {
    /// The route of a route event.
    #[must_use]
    pub fn route(&self) -> Option<&Route> {
        match self {
            Event::NewRoute(r) | Event::DelRoute(r) => Some(r),
            _ => None,
        }
    }

    /// The nexthop object of a nexthop event.
    #[must_use]
    pub fn nexthop(&self) -> Option<&Nexthop> {
        match self {
            Event::NewNexthop(n) | Event::DelNexthop(n) => Some(n),
            _ => None,
        }
    }

    /// `true` for a removal (`Del*`).
    #[must_use]
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            Event::DelRoute(_)
                | Event::DelRule(_)
                | Event::DelLink(_)
                | Event::DelAddress(_)
                | Event::DelNexthop(_)
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_removal() {
            f.write_str("Deleted ")?;
        }
        match self {
            Event::NewRoute(r) | Event::DelRoute(r) => write!(f, "{}", r.show(ShowStyle::TableAll)),
            Event::NewRule(r) | Event::DelRule(r) => write!(f, "{}", r.show()),
            Event::NewLink(l) | Event::DelLink(l) => write!(f, "{l}"),
            Event::NewAddress(a) | Event::DelAddress(a) => write!(f, "{}: {a}", a.index),
            Event::NewNexthop(n) | Event::DelNexthop(n) => write!(f, "{n}"),
            Event::Lost => f.write_str("Lost (receive buffer overflow: resynchronize)"),
        }
    }
}

/// Runs `f` on a short-lived thread that entered the netns `ns` (the
/// caller's own netns when `None`), so that sockets `f` opens belong to
/// it; no thread of the caller changes namespace.
fn in_netns<T: Send>(ns: Option<&File>, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let Some(file) = ns else {
        return f();
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a file descriptor we borrow for the call; it
            // changes only this short-lived thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
    })
}

/// The network namespace of socket `fd`, as a file (`SIOCGSKNS`); `None`
/// where the kernel refuses (it needs `CAP_NET_ADMIN`).
fn socket_netns(fd: RawFd) -> Option<File> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor.
    let ns = unsafe { libc::ioctl(fd, SIOCGSKNS as _) };
    if ns < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created for us and is owned by nobody else.
    Some(File::from(unsafe { OwnedFd::from_raw_fd(ns) }))
}

/// A subscription to the kernel's change notifications in one network
/// namespace: routes, rules, links and addresses as [`Topics`] choose,
/// received blocking ([`recv`](Monitor::recv)), with a timeout
/// ([`recv_timeout`](Monitor::recv_timeout)) or without waiting
/// ([`try_recv`](Monitor::try_recv)); its descriptor
/// ([`AsRawFd`]) can go into an `epoll` set of the caller's.
///
/// Each event is decoded by the code that decodes `list`'s answers, and
/// device names are kept current from link notifications (a route removed
/// with its device still names it). The monitor carries a [`Handle`] in
/// the same netns ([`Monitor::handle`]) for the dump that follows an
/// [`Event::Lost`].
///
/// Notifications queue in the socket's receive buffer (8 MiB where the
/// process may force it, see [`Monitor::set_receive_buffer`]) until they
/// are received: a monitor that is not read while the routing table
/// changes fast loses notifications and says so with [`Event::Lost`].
///
/// An agent that keeps its routes installed, whoever removes them:
///
/// ```no_run
/// use std::time::Duration;
/// use podnet_route::{Event, Handle, Keeper, Route, Topics};
///
/// let h = Handle::open_netns("/run/netns/node")?;
/// // Subscribe first, then install: nothing is missed in between.
/// let mut mon = h.subscribe(Topics::ROUTES | Topics::LINKS)?;
/// let want: Route = "10.2.0.0/16 via 10.0.0.2 dev eth0 proto static".parse()?;
/// let keeper = Keeper::new([want]);
/// for r in keeper.routes() {
///     h.upsert(r, None)?;
/// }
/// loop {
///     let Some(ev) = mon.recv_timeout(Duration::from_secs(1))? else {
///         continue; // idle: a good moment for periodic work
///     };
///     if let Event::Lost = ev {
///         eprintln!("notifications lost: checking every route");
///     }
///     // A removal, a replacement or a lost notification of one of ours:
///     // upsert it again (idempotent: nothing is sent when it is intact).
///     for (route, res) in keeper.repair(&h, &ev) {
///         match res {
///             Ok(true) => eprintln!("re-installed {route}"),
///             Ok(false) => {}
///             Err(e) => eprintln!("{e}"),
///         }
///     }
/// }
/// # Ok::<(), podnet_route::Error>(())
/// ```
pub struct Monitor {
    sock: Socket,
    topics: Topics,
    handle: Handle,
    pending: VecDeque<Result<Event>>,
    rx: Vec<u8>,
    lost: u64,
    label: String,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("netns", &self.handle.netns())
            .field("topics", &self.topics)
            .field("lost", &self.lost)
            .finish()
    }
}

impl Handle {
    /// Subscribes to the change notifications of `topics` in this handle's
    /// network namespace (where its socket was opened; see [`Monitor`]).
    /// Subscribe before reading the state you watch, so that no change
    /// falls between the two.
    ///
    /// ```no_run
    /// use podnet_route::{Handle, Topics};
    /// let h = Handle::open_netns("/run/netns/blue")?;
    /// let mut mon = h.subscribe(Topics::ROUTES | Topics::LINKS)?;
    /// while let Some(ev) = mon.try_recv()? {
    ///     println!("{ev}"); // as `ip monitor` prints it
    /// }
    /// # Ok::<(), podnet_route::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Error::Io` (operation `monitor`) when the socket cannot be opened
    /// in the namespace or the groups cannot be joined; the errors of
    /// [`Handle::links`] for the first read of the device names.
    pub fn subscribe(&self, topics: Topics) -> Result<Monitor> {
        let fd = lock(&self.conn).raw_fd();
        let label = self
            .netns()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        // The socket's own netns is exact; without the privilege to ask
        // for it, the path the handle was opened with (or, for
        // `Handle::new`, the caller's netns) is.
        let ns = match socket_netns(fd) {
            Some(f) => Some(f),
            None => match self.netns() {
                Some(p) => Some(File::open(p).map_err(|source| Error::Io {
                    op: Op::Monitor,
                    context: label.clone(),
                    source,
                })?),
                None => None,
            },
        };
        Monitor::open_in(ns.as_ref(), self.netns().map(Path::to_path_buf), topics)
    }
}

impl Monitor {
    /// Subscribes to `topics` in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// As [`Handle::subscribe`].
    pub fn new(topics: Topics) -> Result<Monitor> {
        Monitor::open_in(None, None, topics)
    }

    /// Subscribes to `topics` in the network namespace at `path`
    /// (`/run/netns/NAME`, `/proc/PID/ns/net`), opened the way
    /// [`Handle::open_netns`] opens its socket.
    ///
    /// # Errors
    ///
    /// `Error::Io` when the namespace cannot be opened or entered; else as
    /// [`Handle::subscribe`].
    pub fn open_netns(path: impl AsRef<Path>, topics: Topics) -> Result<Monitor> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| Error::Io {
            op: Op::Monitor,
            context: path.display().to_string(),
            source,
        })?;
        Monitor::open_in(Some(&file), Some(path.to_path_buf()), topics)
    }

    fn open_in(ns: Option<&File>, path: Option<PathBuf>, topics: Topics) -> Result<Monitor> {
        let label = path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let io_err = |source| Error::Io {
            op: Op::Monitor,
            context: label.clone(),
            source,
        };
        let (sock, conn) = in_netns(ns, || {
            let mut sock = Socket::new(NETLINK_ROUTE)?;
            sock.bind_auto()?;
            nl::force_rcvbuf(&sock, MONITOR_RECEIVE_BUFFER)?;
            for g in topics.groups() {
                match sock.add_membership(g) {
                    // A kernel before 5.3 has no nexthop objects, so no
                    // group for them: nothing to hear there.
                    Err(e) if g == RTNLGRP_NEXTHOP && e.raw_os_error() == Some(libc::EINVAL) => {}
                    r => r?,
                }
            }
            Ok((sock, Conn::open()?))
        })
        .map_err(io_err)?;
        let handle = Handle::with_conn(conn, path);
        // Joined first, then read: a link that changes in between is in
        // the queue and updates the names again.
        for l in handle.links()? {
            handle.note_link(l.index, &l.name, true);
        }
        Ok(Monitor {
            sock,
            topics,
            handle,
            pending: VecDeque::new(),
            rx: vec![0; RX_LEN],
            lost: 0,
            label,
        })
    }

    /// The topics subscribed to.
    #[must_use]
    pub fn topics(&self) -> Topics {
        self.topics
    }

    /// A handle in the monitor's netns: for the dump after an
    /// [`Event::Lost`], or for repairs.
    #[must_use]
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// How many times notifications were lost ([`Event::Lost`] returned
    /// or queued) since the monitor was opened.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Sets the socket's receive buffer (`SO_RCVBUFFORCE` where the process
    /// may, else within `net.core.rmem_max`) and returns the size the
    /// kernel now counts (twice the request).
    ///
    /// # Errors
    ///
    /// `Error::Io` when the kernel refuses the size.
    pub fn set_receive_buffer(&mut self, bytes: usize) -> Result<usize> {
        nl::force_rcvbuf(&self.sock, bytes).map_err(|source| Error::Io {
            op: Op::Monitor,
            context: format!("receive buffer of {bytes} bytes"),
            source,
        })?;
        Ok(self.receive_buffer())
    }

    /// The socket's receive buffer, as the kernel counts it.
    #[must_use]
    pub fn receive_buffer(&self) -> usize {
        self.sock.get_rx_buf_sz().unwrap_or(0)
    }

    /// The next event, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `Error::Io` for a failed receive, `Error::Decode` for a message
    /// that does not decode (the monitor stays usable; later calls return
    /// the events after it).
    pub fn recv(&mut self) -> Result<Event> {
        loop {
            if let Some(ev) = self.next_within(None)? {
                return Ok(ev);
            }
        }
    }

    /// The next event, waiting at most `timeout`; `None` when none came.
    ///
    /// # Errors
    ///
    /// As [`Monitor::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Event>> {
        self.next_within(Some(timeout))
    }

    /// The next event if one is queued, without waiting.
    ///
    /// # Errors
    ///
    /// As [`Monitor::recv`].
    pub fn try_recv(&mut self) -> Result<Option<Event>> {
        self.next_within(Some(Duration::ZERO))
    }

    /// Every event queued now, without waiting (an empty vector when there
    /// is none).
    ///
    /// # Errors
    ///
    /// As [`Monitor::recv`]; the events received before the error are
    /// returned by the next call.
    pub fn drain(&mut self) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        loop {
            match self.try_recv() {
                Ok(Some(ev)) => out.push(ev),
                Ok(None) => return Ok(out),
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    // Handed out by the next call, after these.
                    self.pending.push_front(Err(e));
                    return Ok(out);
                }
            }
        }
    }

    /// Pops a queued event, receiving datagrams until one decodes to an
    /// event or `timeout` (`None`: forever) passes.
    fn next_within(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return ev.map(Some);
            }
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !self.receive(wait)? {
                return Ok(None);
            }
        }
    }

    /// Receives one datagram (waiting at most `wait`, `None`: forever) and
    /// queues its events; `false` when nothing came in time.
    fn receive(&mut self, wait: Option<Duration>) -> Result<bool> {
        let io_err = |source| Error::Io {
            op: Op::Monitor,
            context: self.label.clone(),
            source,
        };
        let got = loop {
            let mut slice: &mut [u8] = &mut self.rx[..];
            match self.sock.recv_from(&mut slice, libc::MSG_DONTWAIT) {
                Ok(got) => break got,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.lost += 1;
                    self.pending.push_back(Ok(Event::Lost));
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait == Some(Duration::ZERO) || !self.poll(wait).map_err(io_err)? {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(io_err(e)),
            }
        };
        let (n, from) = got;
        // Only the kernel speaks on these groups; skip anyone else.
        if from.port_number() != 0 {
            return Ok(true);
        }
        if n > self.rx.len() {
            self.pending.push_back(Err(Error::Decode {
                op: Op::Monitor,
                reason: format!("datagram of {n} bytes truncated"),
            }));
            return Ok(true);
        }
        let rx = std::mem::take(&mut self.rx);
        for m in nl::messages(&rx[..n]) {
            let ev = match m {
                Ok(m) => self.decode(m.ty, m.payload),
                Err(e) => Err(crate::handle::kernel(Op::Monitor, &"notification", e)),
            };
            match ev {
                Ok(Some(ev)) => self.pending.push_back(Ok(ev)),
                Ok(None) => {}
                Err(e) => self.pending.push_back(Err(e)),
            }
        }
        self.rx = rx;
        Ok(true)
    }

    /// Waits until the socket is readable, at most `wait` (`None`:
    /// forever); `false` on timeout.
    fn poll(&self, wait: Option<Duration>) -> io::Result<bool> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    // Round up: a 0.5 ms wait must not become a busy 0.
                    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll reads and writes the one pollfd we pass.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc > 0 {
                return Ok(true);
            }
        }
    }

    /// One notification as an event; `None` for what the topics leave out
    /// or the listings skip (other families, cached clones).
    fn decode(&self, ty: u16, payload: &[u8]) -> Result<Option<Event>> {
        let dec = |e| crate::handle::kernel(Op::Monitor, &"notification", e);
        Ok(match ty {
            nl::RTM_NEWROUTE | nl::RTM_DELROUTE => {
                let Some(d) = codec::decode_route(payload).map_err(dec)? else {
                    return Ok(None);
                };
                if d.cloned {
                    return Ok(None);
                }
                let mut c = lock(&self.handle.conn);
                let r = self.handle.named(&mut c, d);
                Some(if ty == nl::RTM_NEWROUTE {
                    Event::NewRoute(r)
                } else {
                    Event::DelRoute(r)
                })
            }
            nl::RTM_NEWRULE | nl::RTM_DELRULE => {
                let Some((r, _)) = codec::decode_rule_full(payload).map_err(dec)? else {
                    return Ok(None);
                };
                Some(if ty == nl::RTM_NEWRULE {
                    Event::NewRule(r)
                } else {
                    Event::DelRule(r)
                })
            }
            nl::RTM_NEWLINK | RTM_DELLINK => {
                // ifi_family: AF_BRIDGE messages describe bridge ports, not
                // links; `ip link` does not list them either.
                if payload.first().is_some_and(|f| *f != 0) {
                    return Ok(None);
                }
                let l = decode_link_full(payload).map_err(dec)?;
                let new = ty == nl::RTM_NEWLINK;
                self.handle.note_link(l.index, &l.name, new);
                if !self.topics.contains(Topics::LINKS) {
                    return Ok(None);
                }
                Some(if new {
                    Event::NewLink(l)
                } else {
                    Event::DelLink(l)
                })
            }
            nexthop::RTM_NEWNEXTHOP | nexthop::RTM_DELNEXTHOP => {
                let Some(d) = nexthop::decode_nexthop(payload).map_err(dec)? else {
                    return Ok(None);
                };
                let mut c = lock(&self.handle.conn);
                let n = self.handle.named_nexthop(&mut c, d);
                Some(if ty == nexthop::RTM_NEWNEXTHOP {
                    Event::NewNexthop(n)
                } else {
                    Event::DelNexthop(n)
                })
            }
            RTM_NEWADDR | RTM_DELADDR => {
                let Some(mut a) = decode_address(payload).map_err(dec)? else {
                    return Ok(None);
                };
                let mut c = lock(&self.handle.conn);
                a.device = self
                    .handle
                    .name_of(&mut c, a.index)
                    .unwrap_or_else(|| format!("if{}", a.index));
                Some(if ty == RTM_NEWADDR {
                    Event::NewAddress(a)
                } else {
                    Event::DelAddress(a)
                })
            }
            _ => None,
        })
    }
}

impl AsRawFd for Monitor {
    /// The socket, readable when a notification is queued (for `poll` or
    /// `epoll`; then call [`Monitor::try_recv`] until it returns `None`).
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as `self.sock`, which
        // outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }
}

/// A route's identity in the kernel: what `ip route replace` and `ip route
/// del` match on (table, prefix, metric; the family is the prefix's). Two
/// routes of one key cannot both be installed.
///
/// ```
/// use podnet_route::{Route, RouteKey};
/// let a: Route = "fd00:1::/64 via fd00::2 dev eth0".parse()?;
/// let b: Route = "fd00:1::/64 dev eth1 metric 1024".parse()?;
/// assert_eq!(RouteKey::of(&a), RouteKey::of(&b)); // 1024 is IPv6's default metric
/// let c: Route = "fd00:1::/64 dev eth1 metric 32".parse()?;
/// assert_ne!(RouteKey::of(&a), RouteKey::of(&c));
/// # Ok::<(), podnet_route::Error>(())
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RouteKey {
    /// The table.
    pub table: u32,
    /// The destination prefix.
    pub prefix: IpNet,
    /// The metric as the kernel stores it ([`Route::kernel_metric`]).
    pub metric: u32,
}

impl RouteKey {
    /// The key of `r`.
    #[must_use]
    pub fn of(r: &Route) -> RouteKey {
        RouteKey {
            table: r.table,
            prefix: r.prefix,
            metric: r.kernel_metric(),
        }
    }
}

/// The routes an agent keeps installed, and what an [`Event`] asks it to
/// re-install: the resynchronisation half of a [`Monitor`].
///
/// * [`Event::DelRoute`] of a kept route's identity ([`RouteKey`]): that
///   route (a daemon or an admin removed it, or one of its paths).
/// * [`Event::NewRoute`] of a kept identity: that route too, as someone
///   may have replaced it; the upsert sends nothing when it is intact
///   (the event of the agent's own upsert costs one lookup). A route of
///   another protocol in its place is refused by the upsert
///   ([`Error::Conflict`]), never overwritten.
/// * [`Event::NewLink`] of a link that is up: the kept routes through it.
///   The kernel removes the IPv4 routes of a link that goes down without
///   a notification (IPv6 sends one), so subscribe to [`Topics::LINKS`]
///   too to get them back after an `ip link set dev X down; ... up`.
/// * [`Event::DelNexthop`] / [`Event::NewNexthop`] of a nexthop object
///   that kept routes refer to (`nhid`): those routes. The kernel removes
///   the routes on an object with it (the IPv4 ones silently): their
///   upsert fails (the kernel's "Nexthop id does not exist") until the
///   object is back, and its `NewNexthop` brings them back.
/// * [`Event::Lost`]: every kept route. Upserting them all is the dump and
///   the diff: [`Handle::upsert_many`] reads the tables they are in and
///   rewrites only the routes that differ or are missing.
///
/// ```
/// use podnet_route::{Event, Keeper, Route};
/// let r: Route = "10.2.0.0/16 via 10.0.0.2 dev eth0".parse()?;
/// let k = Keeper::new([r.clone()]);
/// // An admin's `ip route del 10.2.0.0/16` (any path or device).
/// let gone: Route = "10.2.0.0/16 via 10.0.0.3 dev eth1".parse()?;
/// assert_eq!(k.repairs(&Event::DelRoute(gone)), vec![&r]);
/// let other: Route = "10.3.0.0/16 dev eth1".parse()?;
/// assert!(k.repairs(&Event::DelRoute(other)).is_empty());
/// assert_eq!(k.repairs(&Event::Lost), vec![&r]);
/// # Ok::<(), podnet_route::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Keeper {
    routes: HashMap<RouteKey, Route>,
}

impl Keeper {
    /// Keeps `routes` (a later route of the same identity replaces an
    /// earlier one).
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Keeper {
        let mut k = Keeper::default();
        for r in routes {
            k.insert(r);
        }
        k
    }

    /// Keeps `r`; returns the route it replaces (same [`RouteKey`]).
    pub fn insert(&mut self, r: Route) -> Option<Route> {
        self.routes.insert(RouteKey::of(&r), r)
    }

    /// Stops keeping the route of `r`'s identity; returns it.
    pub fn remove(&mut self, r: &Route) -> Option<Route> {
        self.routes.remove(&RouteKey::of(r))
    }

    /// The kept route of `key`.
    #[must_use]
    pub fn get(&self, key: &RouteKey) -> Option<&Route> {
        self.routes.get(key)
    }

    /// Every kept route (in no particular order).
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }

    /// How many routes are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// `true` when no route is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The kept routes `ev` asks to upsert again (see [`Keeper`]).
    #[must_use]
    pub fn repairs(&self, ev: &Event) -> Vec<&Route> {
        match ev {
            Event::Lost => self.routes.values().collect(),
            Event::NewRoute(r) | Event::DelRoute(r) => {
                self.routes.get(&RouteKey::of(r)).into_iter().collect()
            }
            // The kernel drops IPv4 routes of a link that goes down
            // without a notification: when it is up again, those through
            // it are due.
            Event::NewLink(l) if l.up => self
                .routes
                .values()
                .filter(|r| uses_device(r, &l.name))
                .collect(),
            // The routes on a nexthop object go with it, and can come
            // back with it.
            Event::NewNexthop(n) | Event::DelNexthop(n) => self
                .routes
                .values()
                .filter(|r| r.nhid == Some(n.id))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Upserts [`Keeper::repairs`] of `ev` through `h` (one batch) and
    /// returns each route with its outcome (`Ok(true)`: it had to be
    /// written again).
    pub fn repair<'k>(&'k self, h: &Handle, ev: &Event) -> Vec<(&'k Route, Result<bool>)> {
        let todo = self.repairs(ev);
        match todo.len() {
            0 => Vec::new(),
            1 => vec![(todo[0], h.upsert(todo[0], None))],
            _ => {
                let owned: Vec<Route> = todo.iter().map(|r| (*r).clone()).collect();
                todo.into_iter().zip(h.upsert_many(&owned, None)).collect()
            }
        }
    }
}

/// Does `r` go through device `name` (itself or one of its paths)?
fn uses_device(r: &Route, name: &str) -> bool {
    r.device.as_deref() == Some(name)
        || r.multipath
            .iter()
            .any(|h| h.device.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_to_groups() {
        assert_eq!(Topics::NONE.groups(), vec![RTNLGRP_LINK]);
        assert_eq!(
            Topics::ROUTES.groups(),
            vec![RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE]
        );
        assert_eq!(Topics::ALL.groups().len(), 8);
        assert_eq!(Topics::ALL.to_string(), "link address route rule nexthop");
        assert_eq!(
            Topics::NEXTHOPS.groups(),
            vec![RTNLGRP_LINK, RTNLGRP_NEXTHOP]
        );
        assert_eq!(Topics::ADDRESSES_V6.to_string(), "address(6)");
        assert_eq!(Topics::NONE.to_string(), "nothing");
        assert!(Topics::ALL.contains(Topics::LINKS | Topics::RULES));
    }

    #[test]
    fn event_text_is_ip_monitor_text() {
        let r: Route = "10.2.0.0/16 via 10.0.0.2 dev eth0".parse().unwrap();
        assert_eq!(
            Event::NewRoute(r.clone()).to_string(),
            "10.2.0.0/16 via 10.0.0.2 dev eth0"
        );
        assert_eq!(
            Event::DelRoute(r).to_string(),
            "Deleted 10.2.0.0/16 via 10.0.0.2 dev eth0"
        );
        let rule: Rule = "priority 30 from 10.0.0.5 lookup 92".parse().unwrap();
        assert_eq!(
            Event::DelRule(rule).to_string(),
            "Deleted 30:\tfrom 10.0.0.5 lookup 92"
        );
        let nh: Nexthop = "id 7 via 10.0.0.2 dev eth0 scope link proto zebra"
            .parse()
            .unwrap();
        let del = Event::DelNexthop(nh.clone());
        assert_eq!(
            del.to_string(),
            "Deleted id 7 via 10.0.0.2 dev eth0 scope link proto zebra"
        );
        assert!(del.is_removal());
        assert_eq!(del.nexthop(), Some(&nh));
        assert!(!Event::NewNexthop(nh).is_removal());
    }

    #[test]
    fn keeper_repairs_by_identity() {
        let a: Route = "10.2.0.0/16 via 10.0.0.2 dev eth0".parse().unwrap();
        let b: Route = "fd02::/64 via fd00::2 dev eth0".parse().unwrap();
        let mut k = Keeper::new([a.clone(), b.clone()]);
        // IPv6's default metric is 1024, however it was written.
        let b_seen: Route = "fd02::/64 dev eth1 metric 1024".parse().unwrap();
        assert_eq!(k.repairs(&Event::DelRoute(b_seen)), vec![&b]);
        // Another metric or table is another route.
        let daemon: Route = "10.2.0.0/16 via 10.0.0.9 dev eth0 metric 32"
            .parse()
            .unwrap();
        assert!(k.repairs(&Event::DelRoute(daemon)).is_empty());
        let other_table: Route = "10.2.0.0/16 via 10.0.0.2 dev eth0 table 7".parse().unwrap();
        assert!(k.repairs(&Event::NewRoute(other_table)).is_empty());
        assert_eq!(k.repairs(&Event::Lost).len(), 2);
        assert!(k
            .repairs(&Event::NewRule(Rule::new(crate::Family::V4)))
            .is_empty());
        assert_eq!(k.remove(&a), Some(a));
        assert_eq!(k.len(), 1);
        // The routes on a nexthop object follow its events.
        let on: Route = "10.4.0.0/24 nhid 7 proto zebra metric 20".parse().unwrap();
        k.insert(on.clone());
        let seven: Nexthop = "id 7 via 10.0.0.2 dev eth0".parse().unwrap();
        let eight: Nexthop = "id 8 via 10.0.0.2 dev eth0".parse().unwrap();
        assert_eq!(k.repairs(&Event::DelNexthop(seven.clone())), vec![&on]);
        assert_eq!(k.repairs(&Event::NewNexthop(seven)), vec![&on]);
        assert!(k.repairs(&Event::DelNexthop(eight)).is_empty());
    }
}
