//! Real traffic to a ClusterIP: the topology of `traffic.rs` (node 1 hands
//! remote traffic to the stack and delivers with `bpf_redirect_peer`, node 2
//! runs skip-FIB and delivers through `to_container`), a service whose
//! backends are a pod on the client's node and a pod on the other node, TCP
//! connections and UDP request/responses from a pod to the ClusterIP.
//!
//! ```text
//!  p1a 10.1.0.2 (client) ─ lxc1a ┐                 ┌ lxc2a ─ p2a 10.2.0.2 (backend)
//!  p1b 10.1.0.3 (backend) ─ lxc1b ┤ n1 ══ eth0 ══ n2 │
//! ```

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use podnet_datapath::*;
use testsupport::{pod_link, require_privileges, veth, BpfDir, Netns};

fn node(tag: &str) -> Netns {
    let n = Netns::new(tag);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.default.rp_filter=0"]);
    n
}

fn add_pod(node: &Netns, tag: &str, lxc: &str, ip: &str, id: u16) -> (Netns, Endpoint) {
    let ns = Netns::new(tag);
    let ip: Ipv4Addr = ip.parse().unwrap();
    let link = pod_link(
        node,
        lxc,
        &ns,
        IpAddr::V4(ip),
        "169.254.1.1".parse().unwrap(),
    );
    node.ip(&[
        "route",
        "add",
        &format!("{ip}/32"),
        "dev",
        lxc,
        "scope",
        "link",
    ]);
    let ep = Endpoint::new(IpAddr::V4(ip), link.lxc_ifindex)
        .mac(link.pod_mac)
        .node_mac(link.lxc_mac)
        .id(id)
        .identity(1000 + u32::from(id));
    (ns, ep)
}

/// A TCP server answering every connection with `name`, and a UDP server
/// answering every datagram with `name`, in `pod` on port 8080 / 5353.
fn serve(pod: &Netns, ip: Ipv4Addr, name: &'static str) {
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

#[test]
fn pod_to_cluster_ip_reaches_backends_on_both_nodes_tcp_and_udp() {
    require_privileges!();
    let pins = BpfDir::new("svctraffic");
    let n1 = node("sn1");
    let n2 = node("sn2");
    veth(&n1, "eth0", &n2, "eth0");
    n1.ip(&["addr", "add", "192.168.100.1/24", "dev", "eth0"]);
    n2.ip(&["addr", "add", "192.168.100.2/24", "dev", "eth0"]);
    n1.ip(&[
        "route",
        "add",
        "10.2.0.0/24",
        "via",
        "192.168.100.2",
        "dev",
        "eth0",
    ]);
    n2.ip(&[
        "route",
        "add",
        "10.1.0.0/24",
        "via",
        "192.168.100.1",
        "dev",
        "eth0",
    ]);
    let (p1a, e1a) = add_pod(&n1, "sp1a", "lxc1a", "10.1.0.2", 101);
    let (p1b, e1b) = add_pod(&n1, "sp1b", "lxc1b", "10.1.0.3", 102);
    let (p2a, e2a) = add_pod(&n2, "sp2a", "lxc2a", "10.2.0.2", 201);

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

    let vip: Ipv4Addr = "10.96.0.10".parse().unwrap();
    let b1 = SocketAddr::new("10.1.0.3".parse().unwrap(), 8080);
    let b2 = SocketAddr::new("10.2.0.2".parse().unwrap(), 8080);
    dp1.upsert_services(&[
        Service::new(1, SocketAddr::new(vip.into(), 80), L4Protocol::Tcp)
            .backend(Backend::new(b1))
            .backend(Backend::new(b2)),
        Service::new(2, SocketAddr::new(vip.into(), 53), L4Protocol::Udp)
            .backend(Backend::new(SocketAddr::new(b1.ip(), 5353)))
            .backend(Backend::new(SocketAddr::new(b2.ip(), 5353))),
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
    serve(&p1b, "10.1.0.3".parse().unwrap(), "p1b");
    serve(&p2a, "10.2.0.2".parse().unwrap(), "p2a");

    // TCP: every connection answered, by both backends over 30 connections.
    let tcp_seen: HashSet<String> = p1a.run(move || {
        let mut seen = HashSet::new();
        for i in 0..30 {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::new(vip.into(), 80),
                Duration::from_secs(3),
            )
            .unwrap_or_else(|e| panic!("connection {i} to the ClusterIP: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            assert_eq!(s.peer_addr().unwrap(), SocketAddr::new(vip.into(), 80));
            s.write_all(b"hi").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            seen.insert(out);
        }
        seen
    });
    assert_eq!(
        tcp_seen,
        ["p1b".to_string(), "p2a".to_string()].into(),
        "both backends (same node, other node) answered over TCP"
    );

    // UDP, DNS-like: a connected socket only accepts answers from the
    // ClusterIP itself, so each answer proves the reverse NAT.
    let udp_seen: HashSet<String> = p1a.run(move || {
        let mut seen = HashSet::new();
        for i in 0..30 {
            let s = UdpSocket::bind(("10.1.0.2", 0)).unwrap();
            s.connect((vip, 53)).unwrap();
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
    assert_eq!(
        udp_seen,
        ["p1b".to_string(), "p2a".to_string()].into(),
        "both backends answered over UDP"
    );

    // The service entries are in node 1's conntrack maps.
    let svc = dp1
        .ct4_entries(CtTable::Tcp)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.flags == 4 && k.daddr == vip.octets())
        .count();
    assert!(svc >= 30, "{svc} TUPLE_F_SERVICE entries");
    assert_eq!(
        dp1.metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        0
    );

    // A removed backend gets no new connections.
    dp1.upsert_service(
        &Service::new(1, SocketAddr::new(vip.into(), 80), L4Protocol::Tcp)
            .backend(Backend::new(b2)),
    )
    .unwrap();
    let after: HashSet<String> = p1a.run(move || {
        (0..10)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(
                    &SocketAddr::new(vip.into(), 80),
                    Duration::from_secs(3),
                )
                .unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.write_all(b"hi").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
            .collect()
    });
    assert_eq!(after, ["p2a".to_string()].into());

    dp1.teardown().unwrap();
    dp2.teardown().unwrap();
}
