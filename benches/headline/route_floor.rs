//! Headline rows of the `route` area against the floor: a raw pipelined
//! netlink loop written here (the requests' bytes built in place, 1,024 per
//! `send`, an ack requested on the last of each window, nothing parsed but
//! each reply's errno), which is what any program that adds or deletes
//! these routes must at least cost. `upsert_many` and `delete_many` of 100k
//! /32 gateway routes are measured as ratios to it (goal 1.1x), and routes
//! on one shared nexthop object (`nhid`, what FRR's zebra installs): their
//! floor against the plain-gateway floor, and `upsert_many` through the
//! object against the plain-gateway floor (goal 0.7x: faster than any tool
//! that programs plain routes can be). Each contender works in a namespace
//! of its own, of the same shape, kept for all rounds (`rounds.rs`); within
//! a round the contenders take turns in chunks of 10k routes, each chunk a
//! routing table of its own (tables 100-109; the gateway resolves through
//! main, as for routes in main): `delete_many` dumps each table it touches
//! once per call, so a chunk's delete dumps that chunk's routes only, and
//! the deletes take turns like the adds. (In one table, a `delete_many`
//! of each chunk would dump the whole table ten times; whole deletes one
//! after the other saw different machines: session 7's quartiles of the
//! delete ratio were 1.01-1.20x.)

use std::fs::File;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use podnet_route::{Handle, Nexthop, Route};
use testsupport::Netns;

use super::{count_label, node};
use crate::report::{time, Goal, Report};
use crate::rounds::{alternate_until, take_turns, Record, Rounds, Samples};

const AREA: &str = "route";
/// Requests per `send` of the floor loop.
const WINDOW: usize = 1024;
/// The first of the tables the chunks of routes go into.
const FIRST_TABLE: u32 = 100;
/// The pause before each timed part (see `settle` in `run`).
const SETTLE: Duration = Duration::from_millis(100);

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;

fn dst(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i as u32)
}

/// What the floor loop sends for route `i`.
#[derive(Clone, Copy)]
enum Shape {
    /// `DST via 10.0.0.2 dev eth0` (what `upsert_many` sends for them).
    Gateway { oif: u32 },
    /// `DST nhid 1`.
    Object,
    /// The delete of a `Gateway` route (as `delete_many` sends it).
    Delete { oif: u32 },
}

/// A raw `NETLINK_ROUTE` socket in a namespace.
struct Raw {
    fd: OwnedFd,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl Raw {
    fn open(ns: &Netns) -> Raw {
        let file = File::open(ns.path()).expect("netns file");
        let fd = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns/socket/bind on descriptors this thread owns;
                // only this short-lived thread changes namespace.
                unsafe {
                    assert_eq!(libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET), 0);
                    let fd = libc::socket(
                        libc::AF_NETLINK,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        libc::NETLINK_ROUTE,
                    );
                    assert!(fd >= 0, "netlink socket");
                    let mut sa: libc::sockaddr_nl = std::mem::zeroed();
                    sa.nl_family = libc::AF_NETLINK as u16;
                    let rc = libc::bind(
                        fd,
                        (&sa as *const libc::sockaddr_nl).cast(),
                        std::mem::size_of::<libc::sockaddr_nl>() as u32,
                    );
                    assert_eq!(rc, 0, "bind");
                    OwnedFd::from_raw_fd(fd)
                }
            })
            .join()
            .expect("netns thread")
        });
        Raw {
            fd,
            seq: 0,
            tx: Vec::with_capacity(WINDOW * 64),
            rx: vec![0; 64 * 1024],
        }
    }

    fn attr(&mut self, ty: u16, v: &[u8]) {
        self.tx
            .extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        self.tx.extend_from_slice(&ty.to_ne_bytes());
        self.tx.extend_from_slice(v);
    }

    /// Appends the request for route `i` of `shape` in `table` (below 256).
    fn push(&mut self, i: usize, table: u32, shape: Shape, ack: bool) {
        self.seq = self.seq.wrapping_add(1);
        let start = self.tx.len();
        let (ty, flags) = match shape {
            Shape::Delete { .. } => (RTM_DELROUTE, 0),
            _ => (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL),
        };
        let flags = NLM_F_REQUEST | flags | if ack { NLM_F_ACK } else { 0 };
        self.tx.extend_from_slice(&0u32.to_ne_bytes());
        self.tx.extend_from_slice(&ty.to_ne_bytes());
        self.tx.extend_from_slice(&flags.to_ne_bytes());
        self.tx.extend_from_slice(&self.seq.to_ne_bytes());
        self.tx.extend_from_slice(&0u32.to_ne_bytes());
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let (scope, kind) = match shape {
            Shape::Delete { .. } => (255, 0),
            _ => (0, 1),
        };
        self.tx
            .extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0, table as u8, 3, scope, kind]);
        self.tx.extend_from_slice(&0u32.to_ne_bytes());
        self.attr(RTA_TABLE, &table.to_ne_bytes());
        self.attr(RTA_DST, &dst(i).octets());
        match shape {
            Shape::Gateway { oif } => {
                self.attr(RTA_GATEWAY, &[10, 0, 0, 2]);
                self.attr(RTA_OIF, &oif.to_ne_bytes());
            }
            Shape::Object => self.attr(RTA_NH_ID, &1u32.to_ne_bytes()),
            Shape::Delete { oif } => self.attr(RTA_OIF, &oif.to_ne_bytes()),
        }
        let len = (self.tx.len() - start) as u32;
        self.tx[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sends the requests of routes `routes` of `shape` in `table`, a
    /// window per `send`, and reads the replies up to each window's ack;
    /// returns how many failed.
    fn run(&mut self, routes: Range<usize>, table: u32, shape: Shape) -> usize {
        let (mut start, n) = (routes.start, routes.end);
        let mut failed = 0;
        while start < n {
            let end = (start + WINDOW).min(n);
            self.tx.clear();
            for i in start..end {
                self.push(i, table, shape, i + 1 == end);
            }
            let last = self.seq;
            // SAFETY: send reads `tx` for the duration of the call.
            let rc = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    self.tx.as_ptr().cast(),
                    self.tx.len(),
                    0,
                )
            };
            assert_eq!(rc as usize, self.tx.len(), "send");
            let mut done = false;
            while !done {
                // SAFETY: recv writes at most `rx.len()` bytes into `rx`.
                let got = unsafe {
                    libc::recv(
                        self.fd.as_raw_fd(),
                        self.rx.as_mut_ptr().cast(),
                        self.rx.len(),
                        0,
                    )
                };
                assert!(got > 0, "recv");
                let mut at = 0;
                let buf = &self.rx[..got as usize];
                while at + 16 <= buf.len() {
                    let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                    let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap());
                    if ty == NLMSG_ERROR {
                        let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                        failed += usize::from(errno != 0);
                        done |= seq == last;
                    }
                    at += (len + 3) & !3;
                }
            }
            start = end;
        }
        failed
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The calling thread's (user, system) CPU time.
fn thread_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime), tv(u.ru_stime))
}

/// One contender's wall and CPU time over the chunks of a round.
#[derive(Default)]
struct Took {
    wall: Duration,
    user: Duration,
    sys: Duration,
}

impl Took {
    /// Runs `f`, adding its wall time and this thread's CPU time.
    fn add<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let (u0, s0) = thread_cpu();
        let (t, out) = time(f);
        let (u1, s1) = thread_cpu();
        self.wall += t;
        self.user += u1 - u0;
        self.sys += s1 - s0;
        out
    }

    /// Records the wall time as `name` (ms) and the user and system CPU
    /// time per route as `name user` / `name sys` (ns): on a busy machine
    /// the CPU times show where a difference comes from.
    fn put(&self, r: &mut Record<'_>, name: &str, n: usize) {
        r.put(name, ms(self.wall));
        let per = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
        r.put(&format!("{name} user"), per(self.user));
        r.put(&format!("{name} sys"), per(self.sys));
    }
}

pub fn run(report: &mut Report) {
    // PODNET_FLOOR_ROUTES overrides the size (to profile the full size in
    // quick mode's 3 rounds).
    let n = std::env::var("PODNET_FLOOR_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| report.size(100_000, 2_000));
    let k = count_label(n);
    let chunks = report.size(10, 2);
    let chunk = |c: usize| c * n / chunks..(c + 1) * n / chunks;
    let table = |c: usize| FIRST_TABLE + c as u32;
    let in_tables = |make: &dyn Fn(usize) -> Route| -> Vec<Route> {
        (0..chunks)
            .flat_map(|c| chunk(c).map(move |i| (c, i)))
            .map(|(c, i)| make(i).table(table(c)))
            .collect()
    };
    let gateway = in_tables(&|i| {
        Route::host(dst(i).into())
            .via("10.0.0.2".parse().expect("literal"))
            .dev("eth0")
    });
    let on_object = in_tables(&|i| Route::host(dst(i).into()).nhid(1));
    let object = Nexthop::new(1)
        .via("10.0.0.2".parse().expect("literal"))
        .dev("eth0");
    // A namespace with the nexthop object in place.
    let node_with_object = |tag: &str| {
        let ns = node(tag);
        Handle::open_netns(ns.path())
            .expect("handle")
            .add_nexthop(&object)
            .expect("nexthop object");
        ns
    };

    // Each contender keeps its namespace for all rounds and takes its
    // routes out again: a namespace dropped with 100k routes is torn down
    // by the kernel in the background, under the RTNL lock the next
    // contender's requests wait for. Within a round the contenders take
    // turns in chunks of n/10 routes (`rounds::take_turns`).
    let ns_gw = node("floor-gw");
    let oif = ns_gw.ifindex("eth0");
    let mut raw_gw = Raw::open(&ns_gw);
    let ns_many = node("floor-many");
    let h_many = Handle::open_netns(ns_many.path()).expect("handle");
    let ns_nh = node_with_object("floor-nh");
    let mut raw_nh = Raw::open(&ns_nh);
    let h_nh = Handle::open_netns(ns_nh.path()).expect("handle");
    let ns_mnh = node_with_object("floor-manynh");
    let h_mnh = Handle::open_netns(ns_mnh.path()).expect("handle");
    // Deleting the object takes its routes with it.
    let renew_object = |h: &Handle| {
        h.delete_nexthop(1).expect("delete the nexthop object");
        h.add_nexthop(&object).expect("nexthop object");
    };
    // The kernel frees deleted routes after an RCU grace period, 100k
    // callbacks that would otherwise run during the next timing: the
    // round's adds and its deletes start after a pause for them.
    let settle = || std::thread::sleep(SETTLE);
    let rows = |samples: &Samples| {
        let mut made =
            vec![
            samples.row(
            AREA,
            format!("upsert_many, {k} /32 gateway routes, vs the raw netlink floor"),
            "many add",
            "raw pipelined RTM_NEWROUTE, 1024/send",
            "floor add",
            "ms",
            Goal::RatioAtMost(1.1),
            ),
            samples.row(
            AREA,
            format!("delete_many, {k} /32 gateway routes, vs the raw netlink floor"),
            "many del",
            "raw pipelined RTM_DELROUTE, 1024/send",
            "floor del",
            "ms",
            Goal::RatioAtMost(1.1),
            ),
            samples.row(
            AREA,
            format!("raw floor, {k} routes on one nexthop object (nhid) vs plain gateway routes"),
            "floor nh add",
            "raw floor, plain gateway routes",
            "floor add",
            "ms",
            Goal::None,
            ),
            samples.row(
            AREA,
            format!("upsert_many, {k} routes on one nexthop object, vs its own raw floor"),
            "many nh add",
            "raw floor, nhid routes",
            "floor nh add",
            "ms",
            Goal::None,
            ),
            samples.row(
            AREA,
            format!("upsert_many, {k} routes on one nexthop object, vs the plain-gateway floor"),
            "many nh add",
            "raw floor, plain gateway routes",
            "floor add",
            "ms",
            Goal::RatioAtMost(0.7),
            ),
        ];
        // Where the time goes: CPU time per route of each contender.
        for name in [
            "floor add",
            "many add",
            "floor del",
            "many del",
            "floor nh add",
            "many nh add",
        ] {
            for part in ["user", "sys"] {
                made.push(samples.alone(
                    AREA,
                    format!("{part} CPU per route: {name}, {k} routes"),
                    &format!("{name} {part}"),
                    "ns",
                    Goal::None,
                ));
            }
        }
        made
    };
    report.add_all(alternate_until(
        report.plan(Rounds::Other, 3),
        &mut [&mut |r: &mut Record<'_>| {
            let flip = r.round() % 2;
            // The adds: four contenders, each into its own namespace.
            let mut took: [Took; 4] = Default::default();
            settle();
            take_turns(4, chunks, flip, |c, k| {
                let part = chunk(k);
                let t = &mut took[c];
                match c {
                    0 => {
                        let failed = t.add(|| raw_gw.run(part, table(k), Shape::Gateway { oif }));
                        assert_eq!(failed, 0, "every raw add succeeds");
                    }
                    1 => {
                        let res = t.add(|| h_many.upsert_many(&gateway[part], None));
                        assert!(res.iter().all(|r| matches!(r, Ok(true))));
                    }
                    2 => {
                        let failed = t.add(|| raw_nh.run(part, table(k), Shape::Object));
                        assert_eq!(failed, 0, "every raw nhid add succeeds");
                    }
                    _ => {
                        let res = t.add(|| h_mnh.upsert_many(&on_object[part], None));
                        assert!(res.iter().all(|r| matches!(r, Ok(true))));
                    }
                }
            });
            for (t, name) in
                took.iter()
                    .zip(["floor add", "many add", "floor nh add", "many nh add"])
            {
                t.put(r, name, n);
            }
            // The deletes of the plain routes, a table at a time; the nhid
            // routes go untimed with their object.
            let mut took: [Took; 2] = Default::default();
            settle();
            take_turns(2, chunks, flip, |c, k| {
                let part = chunk(k);
                if c == 0 {
                    let failed = took[0].add(|| raw_gw.run(part, table(k), Shape::Delete { oif }));
                    assert_eq!(failed, 0, "every raw delete succeeds");
                } else {
                    let res = took[1].add(|| h_many.delete_many(&gateway[part]));
                    assert!(res.iter().all(|r| r.is_ok()));
                }
            });
            took[0].put(r, "floor del", n);
            took[1].put(r, "many del", n);
            renew_object(&h_nh);
            renew_object(&h_mnh);
        }],
        &rows,
    ));
    drop((ns_gw, ns_many, ns_nh, ns_mnh));
}
