//! Real traffic to a ClusterIP: the topology of `traffic.rs` (node 1 hands
//! remote traffic to the stack and delivers with `bpf_redirect_peer`, node 2
//! runs skip-FIB and delivers through `to_container`), a service whose
//! backends are a pod on the client's node and a pod on the other node, TCP
//! connections and UDP request/responses from a pod to the ClusterIP, over
//! IPv4 and over IPv6.
//!
//! ```text
//!  p1a 10.1.0.2 (client) ─ lxc1a ┐                 ┌ lxc2a ─ p2a 10.2.0.2 (backend)
//!  p1b 10.1.0.3 (backend) ─ lxc1b ┤ n1 ══ eth0 ══ n2 │
//! ```

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use podnet_datapath::*;
use testsupport::{pod_link, require_privileges, veth, BpfDir, Netns};

fn node(tag: &str) -> Netns {
    let n = Netns::new(tag);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.default.rp_filter=0"]);
    n
}

fn add_pod(node: &Netns, tag: &str, lxc: &str, ip: IpAddr, id: u16) -> (Netns, Endpoint) {
    let ns = Netns::new(tag);
    let link = if ip.is_ipv4() {
        let l = pod_link(node, lxc, &ns, ip, "169.254.1.1".parse().unwrap());
        node.add_route(&format!("{ip}/32 dev {lxc} scope link"));
        l
    } else {
        let l = pod_link(node, lxc, &ns, ip, "fe80::1".parse().unwrap());
        node.add_route(&format!("{ip}/128 dev {lxc}"));
        l
    };
    let ep = Endpoint::new(ip, link.lxc_ifindex)
        .mac(link.pod_mac)
        .node_mac(link.lxc_mac)
        .id(id)
        .identity(1000 + u32::from(id));
    (ns, ep)
}

/// A TCP server answering every connection with `name`, and a UDP server
/// answering every datagram with `name`, in `pod` on port 8080 / 5353.
fn serve(pod: &Netns, ip: IpAddr, name: &'static str) {
    let (tcp, udp) = pod.run(move || {
        (
            TcpListener::bind((ip, 8080)).unwrap(),
            UdpSocket::bind((ip, 5353)).unwrap(),
        )
    });
    std::thread::spawn(move || {
        for mut s in tcp.incoming().flatten() {
            let mut b = [0u8; 16];
            let _ = s.read(&mut b);
            let _ = s.write_all(name.as_bytes());
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

#[test]
fn pod_to_cluster_ip_reaches_backends_on_both_nodes_tcp_and_udp() {
    require_privileges!();
    cluster_ip(false);
}

#[test]
fn ipv6_pod_to_cluster_ip_reaches_backends_on_both_nodes_tcp_and_udp() {
    require_privileges!();
    cluster_ip(true);
}

fn cluster_ip(v6: bool) {
    let pick = |a: &str, b: &str| -> IpAddr { (if v6 { b } else { a }).parse().unwrap() };
    let f = if v6 { "6" } else { "4" };
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
    let vip = pick("10.96.0.10", "fd00:96::10");
    let (p1a, e1a) = add_pod(&n1, &format!("sp{f}1a"), "lxc1a", a, 101);
    let (p1b, e1b) = add_pod(&n1, &format!("sp{f}1b"), "lxc1b", b1ip, 102);
    let (p2a, e2a) = add_pod(&n2, &format!("sp{f}2a"), "lxc2a", b2ip, 201);

    let mut dp1 = Datapath::load(&Options::small(pins.join("n1"))).unwrap();
    let mut dp2 = Datapath::load(
        &Options::small(pins.join("n2"))
            .skip_fib(true)
            .redirect_peer(false),
    )
    .unwrap();
    for e in [&e1a, &e1b] {
        dp1.upsert_endpoint(e).unwrap();
    }
    dp2.upsert_endpoint(&e2a).unwrap();

    let fe_tcp = SocketAddr::new(vip, 80);
    let fe_udp = SocketAddr::new(vip, 53);
    let (b1, b2) = (SocketAddr::new(b1ip, 8080), SocketAddr::new(b2ip, 8080));
    dp1.upsert_services(&[
        Service::new(1, fe_tcp, L4Protocol::Tcp)
            .backend(Backend::new(b1))
            .backend(Backend::new(b2)),
        Service::new(2, fe_udp, L4Protocol::Udp)
            .backend(Backend::new(SocketAddr::new(b1ip, 5353)))
            .backend(Backend::new(SocketAddr::new(b2ip, 5353))),
    ])
    .unwrap();

    let (n1_eth0, n2_eth0) = (n1.ifindex("eth0"), n2.ifindex("eth0"));
    n1.run(|| {
        for e in [&e1a, &e1b] {
            dp1.attach(e.ifindex, Hook::FromContainer).unwrap();
            dp1.attach(e.ifindex, Hook::ToContainer).unwrap();
        }
        dp1.attach(n1_eth0, Hook::FromNetdev).unwrap();
    });
    n2.run(|| {
        dp2.attach(e2a.ifindex, Hook::FromContainer).unwrap();
        dp2.attach(e2a.ifindex, Hook::ToContainer).unwrap();
        dp2.attach(n2_eth0, Hook::FromNetdev).unwrap();
    });
    serve(&p1b, b1ip, "p1b");
    serve(&p2a, b2ip, "p2a");
    let both: HashSet<String> = ["p1b".to_string(), "p2a".to_string()].into();

    // TCP: every connection answered, by both backends over 30 connections.
    let tcp_seen: HashSet<String> = p1a.run(move || (0..30).map(|_| tcp_ask(fe_tcp)).collect());
    assert_eq!(
        tcp_seen, both,
        "both backends (same node, other node) answered over TCP"
    );

    // UDP, DNS-like: a connected socket only accepts answers from the
    // ClusterIP itself, so each answer proves the reverse NAT.
    let udp_seen: HashSet<String> = p1a.run(move || {
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
    assert_eq!(udp_seen, both, "both backends answered over UDP");

    // The service entries are in node 1's conntrack maps.
    let svc = match vip {
        IpAddr::V4(v) => dp1
            .ct4_entries(CtTable::Tcp)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.flags == 4 && k.daddr == v.octets())
            .count(),
        IpAddr::V6(v) => dp1
            .ct6_entries(CtTable::Tcp)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.flags == 4 && k.daddr == v.octets())
            .count(),
    };
    assert!(svc >= 30, "{svc} TUPLE_F_SERVICE entries");
    assert_eq!(
        dp1.metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        0
    );

    // A removed backend gets no new connections.
    dp1.upsert_service(&Service::new(1, fe_tcp, L4Protocol::Tcp).backend(Backend::new(b2)))
        .unwrap();
    let after: HashSet<String> = p1a.run(move || (0..10).map(|_| tcp_ask(fe_tcp)).collect());
    assert_eq!(after, ["p2a".to_string()].into());

    dp1.teardown().unwrap();
    dp2.teardown().unwrap();
}
