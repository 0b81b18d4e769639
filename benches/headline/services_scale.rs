//! Services at scale (issue #11), against what users run instead.
//!
//! Four copies of one lab, built once and measured in alternating rounds
//! (inside a round the four take turns, a chunk of each figure at a time):
//! a client pod on node 1 reaches one ClusterIP (the middle one of the
//! list) whose three backends (one pod on node 2, ports 8080-8082) are on
//! the other node, with
//!
//! * `kp10`, `kp10k`: no BPF, the services programmed the way kube-proxy's
//!   iptables mode does (`iptables-restore` of the nat table: `KUBE-SERVICES`
//!   -> `KUBE-SVC-*` -> `KUBE-SEP-*` with `statistic --mode random`,
//!   `KUBE-MARK-MASQ`, `KUBE-POSTROUTING`; Debian's iptables, nft backend),
//!   10 and 10,000 services;
//! * `dp10`, `dp10k`: this datapath on both nodes, the services in its LB
//!   maps (`upsert_services`), 10 and 10,000 services.
//!
//! Figures: TCP request/response rate on one connection (one byte each way,
//! back to back), and new-connection rate (connect, one request/response,
//! the server closes). Goals: flat in the number of services (10k at least
//! 1/1.1 of 10) and, at 10k, at least 2x kube-proxy's rate.
//!
//! A fifth contender, `dp10 socket LB`: the `dp10` lab with socket load
//! balancing attached to a cgroup the benchmark process moves into for the
//! row (connect() gets the backend; no per-packet DNAT), against `dp10`
//! (per-packet DNAT), for the same two figures.
//!
//! Time to program: 10,000 services x 3 backends by `iptables-restore`, next
//! to `upsert_services` (whose own row is in `datapath.rs`), once per round.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use podnet_datapath::{Backend, Datapath, Endpoint, Hook, L4Protocol, Options, Service};
use testsupport::{pod_link, veth, BpfDir, Netns};

use crate::report::{Goal, Report};
use crate::rounds::{alternate, alternate_until, take_turns, Record, Rounds, Samples};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const PORTS: [u16; 3] = [8080, 8081, 8082];
/// Each datapath's TCP conntrack table (see `Lab::new`).
const CT_TCP_SIZE: u32 = 262_144;

/// The i-th service's ClusterIP (10.96.0.0 onwards).
fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a60_0000 + u32::try_from(i).expect("fits"))
}

fn node(tag: &str) -> Netns {
    let n = Netns::new(tag);
    for s in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ] {
        n.exec_ok("sysctl", &["-qw", s]);
    }
    n
}

/// The kube-proxy iptables-mode nat table for `n` services.
fn kube_proxy_rules(n: usize) -> String {
    use std::fmt::Write as _;
    let mut r = String::with_capacity(n * 1600);
    r.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    r.push_str(":KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODEPORTS - [0:0]\n");
    for i in 0..n {
        let _ = writeln!(r, ":KUBE-SVC-{i:016X} - [0:0]");
        for b in 0..3 {
            let _ = writeln!(r, ":KUBE-SEP-{i:012X}{b:04X} - [0:0]");
        }
    }
    r.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    r.push_str("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    r.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    r.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    r.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    r.push_str("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
    r.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    for i in 0..n {
        let _ = writeln!(
            r,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-{i:016X}",
            vip(i)
        );
    }
    for i in 0..n {
        let svc = format!("KUBE-SVC-{i:016X}");
        let _ = writeln!(
            r,
            "-A {svc} ! -s 10.0.0.0/8 -d {}/32 -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ",
            vip(i)
        );
        for (b, prob) in [
            (0, Some("0.33333333349")),
            (1, Some("0.50000000000")),
            (2, None),
        ] {
            let stat = prob.map_or(String::new(), |p| {
                format!(" -m statistic --mode random --probability {p}")
            });
            let _ = writeln!(
                r,
                "-A {svc} -m comment --comment \"default/svc-{i}:http -> {BACKEND}:{}\"{stat} -j KUBE-SEP-{i:012X}{b:04X}",
                PORTS[b]
            );
        }
        for (b, port) in PORTS.iter().enumerate() {
            let sep = format!("KUBE-SEP-{i:012X}{b:04X}");
            let _ = writeln!(
                r,
                "-A {sep} -s {BACKEND}/32 -m comment --comment \"default/svc-{i}:http\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                r,
                "-A {sep} -p tcp -m comment --comment \"default/svc-{i}:http\" -m tcp -j DNAT --to-destination {BACKEND}:{port}"
            );
        }
    }
    r.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n");
    r
}

/// `iptables-restore` of `rules` in `ns`; how long it took.
fn iptables_restore(ns: &Netns, rules: &str) -> Duration {
    let t = Instant::now();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "iptables-restore"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("iptables-restore (Debian package iptables)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("rules to iptables-restore");
    assert!(
        child.wait().expect("iptables-restore").success(),
        "iptables-restore failed"
    );
    t.elapsed()
}

fn services(n: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let mut s = Service::new(
                u16::try_from(i + 1).expect("fits"),
                SocketAddr::new(vip(i).into(), 80),
                L4Protocol::Tcp,
            );
            for p in PORTS {
                s = s.backend(Backend::new(SocketAddr::new(BACKEND.into(), p)));
            }
            s
        })
        .collect()
}

/// One lab: two nodes, the client pod on node 1, the backend pod on node 2
/// serving (one byte answered per byte read, until EOF) on `PORTS`.
struct Lab {
    dps: Vec<Datapath>,
    frontend: SocketAddr,
    client: Netns,
    _backend: Netns,
    _n1: Netns,
    _n2: Netns,
    _pins: Option<BpfDir>,
}

impl Lab {
    /// `datapath`: this datapath with `n` services; else kube-proxy's rules.
    fn new(tag: &str, datapath: bool, n: usize) -> Lab {
        let n1 = node(&format!("{tag}1"));
        let n2 = node(&format!("{tag}2"));
        veth(&n1, "eth0", &n2, "eth0");
        n1.add_address("192.168.100.1/24", "eth0");
        n2.add_address("192.168.100.2/24", "eth0");
        n1.add_route("10.2.0.0/24 via 192.168.100.2 dev eth0");
        n2.add_route("10.1.0.0/24 via 192.168.100.1 dev eth0");
        let gw: IpAddr = "169.254.1.1".parse().expect("address");
        let client = Netns::new(&format!("{tag}c"));
        let backend = Netns::new(&format!("{tag}b"));
        let lc = pod_link(&n1, "lxc1", &client, CLIENT.into(), gw);
        n1.add_route(&format!("{CLIENT}/32 dev lxc1 scope link"));
        let lb = pod_link(&n2, "lxc2", &backend, BACKEND.into(), gw);
        n2.add_route(&format!("{BACKEND}/32 dev lxc2 scope link"));
        let frontend = SocketAddr::new(vip(n / 2).into(), 80);
        let mut dps = Vec::new();
        let mut pins = None;
        if datapath {
            let dir = BpfDir::new(&format!("scale-{tag}"));
            // A TCP conntrack table for the run's connections (about
            // 150,000 entries in the dp10 lab: each connection's flow entry
            // and its service entry, never collected here). With the small
            // table (4,096) the kernel evicted entries of live connections:
            // a connection's SYN-ACK came back right and its ACK was
            // answered by a reset (connect: ECONNRESET), as when a service
            // entry lost after the SYN sends the ACK to another backend.
            let mut d1 = Datapath::load(&Options::small(dir.join("n1")).ct_tcp_size(CT_TCP_SIZE))
                .expect("load");
            let mut d2 = Datapath::load(
                &Options::small(dir.join("n2"))
                    .ct_tcp_size(CT_TCP_SIZE)
                    .skip_fib(true)
                    .redirect_peer(false),
            )
            .expect("load");
            let ep = |ip: Ipv4Addr, l: &testsupport::PodLink, id: u16| {
                Endpoint::new(ip.into(), l.lxc_ifindex)
                    .mac(l.pod_mac)
                    .node_mac(l.lxc_mac)
                    .id(id)
                    .identity(1000 + u32::from(id))
            };
            d1.upsert_endpoint(&ep(CLIENT, &lc, 1)).expect("endpoint");
            d2.upsert_endpoint(&ep(BACKEND, &lb, 2)).expect("endpoint");
            d1.upsert_services(&services(n)).expect("services");
            let (e1, e2) = (n1.ifindex("eth0"), n2.ifindex("eth0"));
            n1.run(|| {
                d1.attach(lc.lxc_ifindex, Hook::FromContainer)
                    .expect("attach");
                d1.attach(lc.lxc_ifindex, Hook::ToContainer)
                    .expect("attach");
                d1.attach(e1, Hook::FromNetdev).expect("attach");
            });
            n2.run(|| {
                d2.attach(lb.lxc_ifindex, Hook::FromContainer)
                    .expect("attach");
                d2.attach(lb.lxc_ifindex, Hook::ToContainer)
                    .expect("attach");
                d2.attach(e2, Hook::FromNetdev).expect("attach");
            });
            dps = vec![d1, d2];
            pins = Some(dir);
        } else {
            iptables_restore(&n1, &kube_proxy_rules(n));
        }
        for port in PORTS {
            let l = backend.run(move || TcpListener::bind((BACKEND, port)).expect("bind"));
            std::thread::spawn(move || {
                for mut s in l.incoming().flatten() {
                    std::thread::spawn(move || {
                        let _ = s.set_nodelay(true);
                        let mut b = [0u8; 1];
                        while matches!(s.read(&mut b), Ok(1)) {
                            if s.write_all(&b).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
        let lab = Lab {
            dps,
            frontend,
            client,
            _backend: backend,
            _n1: n1,
            _n2: n2,
            _pins: pins,
        };
        // Warm up (ARP, caches) and prove the path works.
        lab.connections_took(3);
        lab
    }

    /// How long `n` request/responses on one connection to the frontend
    /// take (the connect not counted).
    fn rr_took(&self, n: usize) -> Duration {
        let fe = self.frontend;
        self.client.run(move || {
            let mut s = TcpStream::connect_timeout(&fe, Duration::from_secs(3)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let mut b = [7u8; 1];
            let t = Instant::now();
            for _ in 0..n {
                s.write_all(&b)
                    .and_then(|()| s.read_exact(&mut b))
                    .expect("exchange");
            }
            t.elapsed()
        })
    }

    /// How long `n` connections (connect, one request/response, close) take.
    fn connections_took(&self, n: usize) -> Duration {
        let fe = self.frontend;
        self.client.run(move || {
            let t = Instant::now();
            for _ in 0..n {
                let mut s =
                    TcpStream::connect_timeout(&fe, Duration::from_secs(3)).expect("connect");
                s.set_nodelay(true).expect("nodelay");
                s.set_read_timeout(Some(Duration::from_secs(3)))
                    .expect("timeout");
                let mut b = [7u8; 1];
                s.write_all(&b)
                    .and_then(|()| s.read_exact(&mut b))
                    .expect("exchange");
                close_without_time_wait(s);
            }
            t.elapsed()
        })
    }
}

/// `n` in `t`, per second.
fn per_s(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

/// Closes with a reset (`SO_LINGER` 0) instead of a FIN: a full run opens
/// more connections to the one frontend than the client has ephemeral ports,
/// and each FIN close would park its port in TIME_WAIT for a minute
/// (connect then failed with EADDRNOTAVAIL). The same for every contender.
fn close_without_time_wait(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

impl Drop for Lab {
    fn drop(&mut self) {
        for dp in self.dps.drain(..) {
            let _ = dp.teardown();
        }
    }
}

/// The cgroup v2 mount.
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split(' ').next() != Some("cgroup2") {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup v2 directory.
fn own_cgroup(root: &std::path::Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(root.join(rel.trim_start_matches('/')))
}

fn move_self_to(cgroup: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
}

/// The two figures of every lab: what, its key in the samples, its unit.
const METRICS: [(&str, &str, &str); 2] = [
    (
        "TCP request/response rate on one connection",
        "rr",
        "k req/s",
    ),
    (
        "new-connection rate (connect, one request/response, close)",
        "conn",
        "k conn/s",
    ),
];

/// The chunks of a round's exchanges and connections that the four scale
/// labs take turns with.
const CHUNKS: usize = 4;

pub fn run(report: &mut Report) {
    let big = report.size(10_000, 200);
    let rr = report.size(20_000, 300);
    let conns = report.size(2_000, 50);
    let rounds = report.rounds(Rounds::Network);
    let mut labs = [
        ("kp10", Lab::new("kp10", false, 10)),
        ("kpbig", Lab::new("kpbig", false, big)),
        ("dp10", Lab::new("dp10", true, 10)),
        ("dpbig", Lab::new("dpbig", true, big)),
    ];
    let rows = |samples: &Samples| {
        let mut made = Vec::new();
        let n = big;
        for (what, key, unit) in METRICS {
            made.push(samples.row(
                "services",
                format!("{what} to one ClusterIP, this datapath, {n} services"),
                &format!("dpbig {key}"),
                "the same with 10 services",
                &format!("dp10 {key}"),
                unit,
                Goal::RatioAtLeast(1.0 / 1.1),
            ));
            made.push(samples.row(
                "services",
                format!("{what} to one ClusterIP, {n} services: this datapath"),
                &format!("dpbig {key}"),
                format!("kube-proxy iptables mode, {n} services"),
                &format!("kpbig {key}"),
                unit,
                Goal::RatioAtLeast(2.0),
            ));
            made.push(samples.row(
                "services",
                format!("{what} to one ClusterIP, kube-proxy iptables mode, {n} services"),
                &format!("kpbig {key}"),
                "the same with 10 services",
                &format!("kp10 {key}"),
                unit,
                Goal::None,
            ));
        }

        made
    };
    // One measurement for the four labs: each round's exchanges and
    // connections go in chunks, the labs taking turns (`take_turns`), so
    // that the two labs of a row see the same machine; a lab measured after
    // the other three in a block of its own did not (run 3 of session 7:
    // quartiles of the new-connection ratios 0.90-1.20x).
    let samples = alternate_until(
        report.plan(Rounds::Network, 3),
        &mut [&mut |r: &mut Record<'_>| {
            let mut took = [[Duration::ZERO; 2]; 4];
            take_turns(labs.len(), CHUNKS, r.round() % 2, |i, _| {
                took[i][0] += labs[i].1.rr_took(rr / CHUNKS);
                took[i][1] += labs[i].1.connections_took(conns / CHUNKS);
            });
            for ((name, _), [rr_t, conn_t]) in labs.iter().zip(took) {
                r.put(
                    &format!("{name} rr"),
                    per_s(rr / CHUNKS * CHUNKS, rr_t) / 1e3,
                );
                r.put(
                    &format!("{name} conn"),
                    per_s(conns / CHUNKS * CHUNKS, conn_t) / 1e3,
                );
            }
        }],
        &rows,
    );
    report.add_all(samples);
    // Socket LB for the pod: the dp10 lab, this process in a cgroup of its
    // own with socket load balancing attached for one contender only.
    let mut dp1 = labs[2].1.dps.remove(0);
    let lab = &labs[2].1;
    let cg = cgroup2_root().and_then(|root| {
        let back = own_cgroup(&root)?;
        let dir = root.join(format!("pnt-{}-bench-socklb", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some((dir, back))
    });
    if let Some((dir, back)) = cg {
        move_self_to(&dir).expect("moving the benchmark into its cgroup");
        let samples = alternate(
            rounds,
            &mut [
                &mut |r: &mut Record<'_>| {
                    r.put("per-packet rr", per_s(rr, lab.rr_took(rr)) / 1e3);
                    r.put(
                        "per-packet conn",
                        per_s(conns, lab.connections_took(conns)) / 1e3,
                    );
                },
                &mut |r: &mut Record<'_>| {
                    dp1.attach_socket_lb(&dir).expect("attach_socket_lb");
                    r.put("socket LB rr", per_s(rr, lab.rr_took(rr)) / 1e3);
                    r.put(
                        "socket LB conn",
                        per_s(conns, lab.connections_took(conns)) / 1e3,
                    );
                    assert!(dp1.detach_socket_lb(&dir).expect("detach_socket_lb"));
                },
            ],
        );
        let _ = move_self_to(&back);
        let _ = std::fs::remove_dir(&dir);
        for (what, key, unit) in METRICS {
            report.add(samples.row(
                "services",
                format!("{what} to a ClusterIP from a pod, socket LB (cgroup connect4)"),
                &format!("socket LB {key}"),
                "per-packet DNAT (from-container)",
                &format!("per-packet {key}"),
                unit,
                Goal::None,
            ));
        }
    } else {
        eprintln!("services: no cgroup v2 mount, socket LB rows skipped");
    }

    // Programming 10k services: iptables-restore, once per round, into a
    // namespace of its own.
    let rules = kube_proxy_rules(big);
    let samples = alternate(
        report.size(5, 2),
        &mut [&mut |r: &mut Record<'_>| {
            let ns = Netns::new("kprestore");
            r.put("restore", iptables_restore(&ns, &rules).as_secs_f64() * 1e3);
        }],
    );
    report.add(samples.alone(
        "services",
        format!("time to program {big} services x 3 backends with iptables-restore (kube-proxy iptables mode, nft backend; compare upsert_services in the datapath rows)"),
        "restore",
        "ms",
        Goal::None,
    ));
    if let Err(e) = dp1.teardown() {
        eprintln!("services bench teardown: {e}");
    }
    drop(labs);
}
