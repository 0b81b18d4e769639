//! Real traffic to services: the topology of `traffic.rs` (one node hands
//! remote traffic to the stack and delivers with `bpf_redirect_peer`, the
//! other runs skip-FIB and delivers through `to_container`; the `swapped`
//! tests swap the two modes), a service whose backends are a pod on the
//! client's node and a pod on the other node, TCP connections and UDP
//! request/responses from a pod to the ClusterIP, over IPv4 and over IPv6;
//! NodePort from the other node to a local backend; a backend set to
//! terminating while clients run; 100 services of 3 backends each.
//!
//! ```text
//!  p1a 10.1.0.2 (client) ─ lxc1a ┐                 ┌ lxc2a ─ p2a 10.2.0.2 (backend)
//!  p1b 10.1.0.3 (backend) ─ lxc1b ┤ n1 ══ eth0 ══ n2 │
//! ```

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{attach_node, lab_pod};
use podnet_datapath::*;
use testsupport::{require_privileges, veth, BpfDir, Netns};

fn node(tag: &str) -> Netns {
    let n = Netns::new(tag);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.default.rp_filter=0"]);
    n
}

/// TCP servers answering every connection with `name` (port 8080) and
/// `name` + "/8082" (port 8082), one answering every message of a
/// connection with `name` (port 8081), and a UDP server answering every
/// datagram with `name` (port 5353), in `pod`.
fn serve(pod: &Netns, ip: IpAddr, name: &'static str) {
    let (tcp, tcp2, echo, udp) = pod.run(move || {
        (
            TcpListener::bind((ip, 8080)).unwrap(),
            TcpListener::bind((ip, 8082)).unwrap(),
            TcpListener::bind((ip, 8081)).unwrap(),
            UdpSocket::bind((ip, 5353)).unwrap(),
        )
    });
    for (l, answer) in [(tcp, name.to_string()), (tcp2, format!("{name}/8082"))] {
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let mut b = [0u8; 16];
                let _ = s.read(&mut b);
                let _ = s.write_all(answer.as_bytes());
            }
        });
    }
    std::thread::spawn(move || {
        for mut s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = [0u8; 16];
                while matches!(s.read(&mut b), Ok(n) if n > 0) {
                    if s.write_all(name.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((_, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(name.as_bytes(), from);
        }
    });
}

/// One TCP connection from inside the caller's namespace to `to`: what the
/// server answered.
fn tcp_ask(to: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connection to {to}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(s.peer_addr().unwrap(), to);
    s.write_all(b"hi").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The two nodes, the client pod `p1a` and the backends `p1b` (same node)
/// and `p2a` (other node), serving (see [`serve`]), datapaths attached.
/// `swapped`: node 1 (the client's) delivers through `to_container` with
/// skip-FIB, node 2 with `bpf_redirect_peer`; else the other way round.
struct Topo {
    a: IpAddr,
    b1ip: IpAddr,
    b2ip: IpAddr,
    vip: IpAddr,
    /// Node 1's underlay address.
    n1ip: IpAddr,
    dp1: Datapath,
    dp2: Datapath,
    // Namespaces after the datapaths: dropped last.
    p1a: Netns,
    _p1b: Netns,
    _p2a: Netns,
    _n1: Netns,
    n2: Netns,
    _pins: BpfDir,
}

impl Topo {
    fn new(v6: bool, swapped: bool) -> Topo {
        let pick = |a: &str, b: &str| -> IpAddr { (if v6 { b } else { a }).parse().unwrap() };
        let f = format!(
            "{}{}",
            if v6 { "6" } else { "4" },
            if swapped { "s" } else { "" }
        );
        let pins = BpfDir::new(&format!("svctraffic{f}"));
        let n1 = node(&format!("sn{f}1"));
        let n2 = node(&format!("sn{f}2"));
        veth(&n1, "eth0", &n2, "eth0");
        if v6 {
            n1.add_address("fd00:100::1/64", "eth0");
            n2.add_address("fd00:100::2/64", "eth0");
            n1.add_route("fd00:2::/64 via fd00:100::2 dev eth0");
            n2.add_route("fd00:1::/64 via fd00:100::1 dev eth0");
        } else {
            n1.add_address("192.168.100.1/24", "eth0");
            n2.add_address("192.168.100.2/24", "eth0");
            n1.add_route("10.2.0.0/24 via 192.168.100.2 dev eth0");
            n2.add_route("10.1.0.0/24 via 192.168.100.1 dev eth0");
        }
        let a = pick("10.1.0.2", "fd00:1::2");
        let b1ip = pick("10.1.0.3", "fd00:1::3");
        let b2ip = pick("10.2.0.2", "fd00:2::2");
        let (p1a, e1a) = lab_pod(&n1, &format!("sp{f}1a"), "lxc1a", a, 101);
        let (p1b, e1b) = lab_pod(&n1, &format!("sp{f}1b"), "lxc1b", b1ip, 102);
        let (p2a, e2a) = lab_pod(&n2, &format!("sp{f}2a"), "lxc2a", b2ip, 201);

        let peer = Options::small(pins.join("n1"));
        let fib = |o: Options| o.skip_fib(true).redirect_peer(false);
        let (o1, o2) = if swapped {
            (
                fib(Options::small(pins.join("n1"))),
                Options::small(pins.join("n2")),
            )
        } else {
            (peer, fib(Options::small(pins.join("n2"))))
        };
        let mut dp1 = Datapath::load(&o1).unwrap();
        let mut dp2 = Datapath::load(&o2).unwrap();
        for e in [&e1a, &e1b] {
            dp1.upsert_endpoint(e).unwrap();
        }
        dp2.upsert_endpoint(&e2a).unwrap();
        let (n1_eth0, n2_eth0) = (n1.ifindex("eth0"), n2.ifindex("eth0"));
        attach_node(&n1, &mut dp1, &[&e1a, &e1b], n1_eth0);
        attach_node(&n2, &mut dp2, &[&e2a], n2_eth0);
        serve(&p1b, b1ip, "p1b");
        serve(&p2a, b2ip, "p2a");
        Topo {
            a,
            b1ip,
            b2ip,
            vip: pick("10.96.0.10", "fd00:96::10"),
            n1ip: pick("192.168.100.1", "fd00:100::1"),
            dp1,
            dp2,
            p1a,
            _p1b: p1b,
            _p2a: p2a,
            _n1: n1,
            n2,
            _pins: pins,
        }
    }

    /// The `TUPLE_F_SERVICE` entries in node 1's conntrack maps to `vip`.
    fn service_entries(&self, vip: IpAddr) -> usize {
        [CtTable::Tcp, CtTable::Any]
            .into_iter()
            .map(|t| match vip {
                IpAddr::V4(v) => self
                    .dp1
                    .ct4_entries(t)
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k.flags == 4 && k.daddr == v.octets())
                    .count(),
                IpAddr::V6(v) => self
                    .dp1
                    .ct6_entries(t)
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k.flags == 4 && k.daddr == v.octets())
                    .count(),
            })
            .sum()
    }

    fn teardown(self) {
        let Topo { dp1, dp2, .. } = self;
        dp1.teardown().unwrap();
        dp2.teardown().unwrap();
    }
}

fn both() -> HashSet<String> {
    ["p1b".to_string(), "p2a".to_string()].into()
}

#[test]
fn pod_to_cluster_ip_reaches_backends_on_both_nodes_tcp_and_udp() {
    require_privileges!();
    cluster_ip(false, false);
}

#[test]
fn ipv6_pod_to_cluster_ip_reaches_backends_on_both_nodes_tcp_and_udp() {
    require_privileges!();
    cluster_ip(true, false);
}

#[test]
fn pod_to_cluster_ip_with_delivery_modes_swapped() {
    require_privileges!();
    cluster_ip(false, true);
}

#[test]
fn ipv6_pod_to_cluster_ip_with_delivery_modes_swapped() {
    require_privileges!();
    cluster_ip(true, true);
}

fn cluster_ip(v6: bool, swapped: bool) {
    let t = Topo::new(v6, swapped);
    let (a, vip, b1ip, b2ip) = (t.a, t.vip, t.b1ip, t.b2ip);
    let fe_tcp = SocketAddr::new(vip, 80);
    let fe_udp = SocketAddr::new(vip, 53);
    let (b1, b2) = (SocketAddr::new(b1ip, 8080), SocketAddr::new(b2ip, 8080));
    t.dp1
        .upsert_services(&[
            Service::new(1, fe_tcp, L4Protocol::Tcp)
                .backend(Backend::new(b1))
                .backend(Backend::new(b2)),
            Service::new(2, fe_udp, L4Protocol::Udp)
                .backend(Backend::new(SocketAddr::new(b1ip, 5353)))
                .backend(Backend::new(SocketAddr::new(b2ip, 5353))),
        ])
        .unwrap();

    // TCP: every connection answered, by both backends over 30 connections.
    let tcp_seen: HashSet<String> = t
        .p1a
        .run(move || (0..30).map(|_| tcp_ask(fe_tcp)).collect());
    assert_eq!(
        tcp_seen,
        both(),
        "both backends (same node, other node) answered over TCP"
    );

    // UDP, DNS-like: a connected socket only accepts answers from the
    // ClusterIP itself, so each answer proves the reverse NAT.
    let udp_seen: HashSet<String> = t.p1a.run(move || {
        let mut seen = HashSet::new();
        for i in 0..30 {
            let s = UdpSocket::bind(SocketAddr::new(a, 0)).unwrap();
            s.connect(fe_udp).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send(b"q").unwrap();
            let mut b = [0u8; 16];
            let n = s
                .recv(&mut b)
                .unwrap_or_else(|e| panic!("UDP answer {i} from the ClusterIP: {e}"));
            seen.insert(String::from_utf8_lossy(&b[..n]).into_owned());
        }
        seen
    });
    assert_eq!(udp_seen, both(), "both backends answered over UDP");

    // The service entries are in node 1's conntrack maps.
    let svc = t.service_entries(vip);
    assert!(svc >= 60, "{svc} TUPLE_F_SERVICE entries");
    assert_eq!(
        t.dp1
            .metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        0
    );

    // A removed backend gets no new connections.
    t.dp1
        .upsert_service(&Service::new(1, fe_tcp, L4Protocol::Tcp).backend(Backend::new(b2)))
        .unwrap();
    let after: HashSet<String> = t
        .p1a
        .run(move || (0..10).map(|_| tcp_ask(fe_tcp)).collect());
    assert_eq!(after, ["p2a".to_string()].into());
    t.teardown();
}

/// NodePort: a client on the other node (in its host namespace, on the
/// underlay) reaches node 1's address at the node port; the local backend
/// answers, and the reply leaves node 1 with the node port as its source.
#[test]
fn nodeport_from_the_underlay_reaches_a_local_backend() {
    require_privileges!();
    for v6 in [false, true] {
        let t = Topo::new(v6, false);
        let np = SocketAddr::new(t.n1ip, 30080);
        let npu = SocketAddr::new(t.n1ip, 30053);
        t.dp1
            .upsert_services(&[
                Service::new(7, np, L4Protocol::Tcp)
                    .kind(ServiceKind::NodePort)
                    .backend(Backend::new(SocketAddr::new(t.b1ip, 8080))),
                Service::new(8, npu, L4Protocol::Udp)
                    .kind(ServiceKind::NodePort)
                    .backend(Backend::new(SocketAddr::new(t.b1ip, 5353))),
            ])
            .unwrap();
        let answers: Vec<String> = t.n2.run(move || (0..5).map(|_| tcp_ask(np)).collect());
        assert_eq!(answers, vec!["p1b".to_string(); 5], "v6={v6}");
        let udp: Vec<String> = t.n2.run(move || {
            (0..5)
                .map(|_| {
                    let any: SocketAddr = if v6 { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
                    let s = UdpSocket::bind(any).unwrap();
                    s.connect(npu).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    s.send(b"q").unwrap();
                    let mut b = [0u8; 16];
                    let n = s
                        .recv(&mut b)
                        .unwrap_or_else(|e| panic!("NodePort UDP answer: {e}"));
                    String::from_utf8_lossy(&b[..n]).into_owned()
                })
                .collect()
        });
        assert_eq!(udp, vec!["p1b".to_string(); 5], "v6={v6}");
        t.teardown();
    }
}

/// A backend set to terminating while clients talk: the established
/// connections to it go on, new ones avoid it. Removed afterwards, its
/// connections get a new backend (as in Cilium: the removed backend's id
/// is gone), which the new backend refuses.
#[test]
fn terminating_backend_keeps_established_connections_new_ones_avoid_it() {
    require_privileges!();
    let t = Topo::new(false, false);
    let fe = SocketAddr::new(t.vip, 81);
    let (b1, b2) = (SocketAddr::new(t.b1ip, 8081), SocketAddr::new(t.b2ip, 8081));
    let svc = |s1: BackendState| {
        Service::new(3, fe, L4Protocol::Tcp)
            .backend(Backend::new(b1).with_state(s1))
            .backend(Backend::new(b2))
    };
    t.dp1.upsert_service(&svc(BackendState::Active)).unwrap();
    let ask = |s: &mut TcpStream| -> String {
        s.write_all(b"?").unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        String::from_utf8_lossy(&b).into_owned()
    };
    // Connections until some are on p1b.
    let mut on_p1b = Vec::new();
    for _ in 0..40 {
        let mut s = t
            .p1a
            .run(|| TcpStream::connect_timeout(&fe, Duration::from_secs(3)))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        if ask(&mut s) == "p1b" {
            on_p1b.push(s);
        }
        if on_p1b.len() == 3 {
            break;
        }
    }
    assert!(!on_p1b.is_empty(), "no connection landed on p1b in 40");

    t.dp1
        .upsert_service(&svc(BackendState::Terminating))
        .unwrap();
    for round in 0..20 {
        for s in &mut on_p1b {
            assert_eq!(ask(s), "p1b", "established connection, round {round}");
        }
        let mut n = t
            .p1a
            .run(|| TcpStream::connect_timeout(&fe, Duration::from_secs(3)))
            .unwrap();
        n.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        assert_eq!(
            ask(&mut n),
            "p2a",
            "a new connection avoids the terminating backend"
        );
    }

    // Removed: its connections are moved to p2a, which knows nothing of
    // them (reset, or no answer).
    t.dp1
        .upsert_service(&Service::new(3, fe, L4Protocol::Tcp).backend(Backend::new(b2)))
        .unwrap();
    let s = &mut on_p1b[0];
    let moved = s.write_all(b"?").is_err() || {
        let mut b = [0u8; 3];
        s.read_exact(&mut b).is_err()
    };
    assert!(moved, "a removed backend's connection does not go on");
    drop(on_p1b);
    t.teardown();
}

/// 100 services of 3 backends each (two pods, three ports), one upsert:
/// every ClusterIP answers, from its own backends.
#[test]
fn hundred_services_of_three_backends() {
    require_privileges!();
    let t = Topo::new(false, false);
    let services: Vec<Service> = (0..100u16)
        .map(|i| {
            let vip = SocketAddr::new(std::net::Ipv4Addr::new(10, 96, 1, i as u8).into(), 80);
            Service::new(100 + i, vip, L4Protocol::Tcp)
                .backend(Backend::new(SocketAddr::new(t.b1ip, 8080)))
                .backend(Backend::new(SocketAddr::new(t.b2ip, 8080)))
                .backend(Backend::new(SocketAddr::new(t.b2ip, 8082)))
        })
        .collect();
    t.dp1.upsert_services(&services).unwrap();
    assert_eq!(t.dp1.services().unwrap().len(), 100);
    let fronts: Vec<SocketAddr> = services.iter().map(|s| s.frontend).collect();
    let seen: HashSet<String> = t
        .p1a
        .run(move || fronts.iter().map(|fe| tcp_ask(*fe)).collect());
    let all: HashSet<String> =
        ["p1b".to_string(), "p2a".to_string(), "p2a/8082".to_string()].into();
    assert_eq!(
        seen, all,
        "each ClusterIP answered by one of its three backends"
    );
    let entries: usize = (0..100u8)
        .map(|i| t.service_entries(std::net::Ipv4Addr::new(10, 96, 1, i).into()))
        .sum();
    assert_eq!(entries, 100, "one TUPLE_F_SERVICE entry per connection");
    t.teardown();
}
