//! BPF masquerade with real traffic: the two-node lab and an outside
//! namespace beyond the cluster CIDR (`podnet::lab_outside`) whose servers
//! print the peer address they see.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use podnet::lab::{self, Lab};
use podnet::lab_outside::{self, ask, seen_as, udp_ask, PeerServer, NODE1_OUTSIDE_IP, OUTSIDE_IP};
use podnet_conntrack::nat::{dump_nat_entries, NatMap};
use podnet_conntrack::{gc, CtMap, GcFilter};
use podnet_datapath::{AttachMode, Backend, L4Protocol, Service, ServiceKind};
use testsupport::require_privileges;

const PODS: [(&str, usize); 4] = [("pod1a", 1), ("pod1b", 1), ("pod2a", 2), ("pod2b", 2)];

fn nat4(lab: &Lab, node: &str) -> NatMap {
    let n = lab.node(node).unwrap();
    NatMap::open(n.dp().unwrap().nat_map_paths().v4).unwrap()
}

/// The answer's peer address.
fn peer_of(answer: &str) -> SocketAddr {
    answer
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no peer address in {answer:?}"))
}

#[test]
fn pods_of_both_nodes_reach_the_outside_as_their_node() {
    require_privileges!();
    let (lab, outside) = lab_outside::start("masq").unwrap();
    let server = PeerServer::start(&outside, 7000).unwrap();
    for (name, node) in PODS {
        let pod = lab.pod(name).unwrap();
        let mut s = lab::connect(pod, server.tcp).unwrap();
        let a = ask(&mut s, name).unwrap();
        assert_eq!(peer_of(&a).ip(), seen_as(node), "{name} over TCP: {a}");
        assert!(a.ends_with(name), "{a}");
        let u = udp_ask(pod, server.udp, name).unwrap();
        assert_eq!(peer_of(&u).ip(), seen_as(node), "{name} over UDP: {u}");
        assert_eq!(
            lab::ping(pod, IpAddr::V4(OUTSIDE_IP), 2),
            2,
            "{name} pings the outside"
        );
    }
    // The mappings, as `cilium bpf nat list` prints them: TCP, UDP and
    // the ping's ICMP, each a pair, to node1's outside address.
    let text = dump_nat_entries(&nat4(&lab, "node1")).unwrap();
    for proto in ["TCP", "UDP", "ICMP"] {
        assert!(
            text.contains(&format!("{proto} OUT 10.1.0.10:")),
            "{proto} mapping of pod1a in\n{text}"
        );
    }
    assert!(
        text.contains(&format!("XLATE_SRC {NODE1_OUTSIDE_IP}:")),
        "{text}"
    );
    assert!(text.contains("XLATE_DST 10.1.0.10:"), "{text}");
    // Pod to pod stays un-NATed (native-routing CIDR).
    let pod1a = lab.pod("pod1a").unwrap();
    assert_eq!(lab::ping(pod1a, lab.pod("pod2a").unwrap().ip(), 1), 1);
    assert!(!dump_nat_entries(&nat4(&lab, "node1"))
        .unwrap()
        .contains("10.2.0.10"));
}

#[test]
fn a_thousand_concurrent_connections_to_the_outside_get_their_own_replies() {
    require_privileges!();
    let (lab, outside) = lab_outside::start("masqk").unwrap();
    let server = PeerServer::start(&outside, 7001).unwrap();
    let mut conns = Vec::new();
    for i in 0..1000 {
        let (name, node) = PODS[i % 4];
        let s = lab::connect(lab.pod(name).unwrap(), server.tcp).unwrap();
        conns.push((format!("{name}-{i}"), node, s));
    }
    // All open at once; every answer comes back on its own connection,
    // from its node's address, each mapping its own port.
    let mut seen = HashSet::new();
    for (token, node, s) in &mut conns {
        let a = ask(s, token).unwrap();
        let peer = peer_of(&a);
        assert_eq!(peer.ip(), seen_as(*node), "{token}: {a}");
        assert!(a.ends_with(&format!(" {token}")), "{token} got {a}");
        assert!(seen.insert(peer), "{peer} mapped twice");
    }
    assert_eq!(seen.len(), 1000);
}

#[test]
fn nodeport_from_the_outside_to_a_backend_on_the_other_node() {
    require_privileges!();
    let (lab, outside) = lab_outside::start("masqnp").unwrap();
    let backend = lab.pod("pod2a").unwrap();
    let echo = lab::EchoServer::start(backend, 8080, 2).unwrap();
    let fe = SocketAddr::new(IpAddr::V4(NODE1_OUTSIDE_IP), 30080);
    lab.node("node1")
        .unwrap()
        .dp()
        .unwrap()
        .upsert_service(
            &Service::new(11, fe, L4Protocol::Tcp)
                .kind(ServiceKind::NodePort)
                .backend(Backend::new(echo.addr())),
        )
        .unwrap();
    let mut s = outside
        .ns
        .run(|| std::net::TcpStream::connect_timeout(&fe, std::time::Duration::from_secs(3)))
        .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    lab::echo_exchange(&mut s, 64 * 1024).unwrap();
    // node1 holds the SNAT pair to the backend, to its address on the
    // interface towards the backend (eth0), owned by its CT entry.
    let text = dump_nat_entries(&nat4(&lab, "node1")).unwrap();
    assert!(
        text.contains("-> 10.2.0.10:8080 XLATE_SRC 192.168.100.1:"),
        "{text}"
    );
}

#[test]
fn gc_removes_ct_and_nat_entries_together() {
    require_privileges!();
    let (lab, outside) = lab_outside::start("masqgc").unwrap();
    let server = PeerServer::start(&outside, 7002).unwrap();
    let pod1a = lab.pod("pod1a").unwrap();
    for i in 0..5 {
        let mut s = lab::connect(pod1a, server.tcp).unwrap();
        ask(&mut s, &format!("t{i}")).unwrap();
        udp_ask(pod1a, server.udp, "u").unwrap();
    }
    let node1 = lab.node("node1").unwrap();
    let paths = node1.dp().unwrap().ct_map_paths();
    let (tcp, any) = (
        CtMap::open(&paths.tcp4).unwrap(),
        CtMap::open(&paths.any4).unwrap(),
    );
    let nat = nat4(&lab, "node1");
    assert_eq!(nat.count().unwrap(), 20, "5 TCP + 5 UDP flows, a pair each");
    let mut deleted = 0;
    for ct in [&tcp, &any] {
        let mut f = GcFilter::new()
            .match_ips([IpAddr::V4(OUTSIDE_IP)])
            .nat(&nat);
        deleted += gc(ct, &mut f).unwrap().nat_deleted;
    }
    assert_eq!(deleted, 20);
    assert_eq!(nat.count().unwrap(), 0, "no mapping left");
    let left = tcp
        .iter()
        .unwrap()
        .filter_map(Result::ok)
        .filter(|(k, _)| k.to_string().contains(&OUTSIDE_IP.to_string()))
        .count();
    assert_eq!(left, 0, "no CT entry to the outside left");
}

#[test]
fn a_datapath_reload_keeps_an_outside_tcp_connection() {
    require_privileges!();
    let (mut lab, outside) = lab_outside::start("masqrl").unwrap();
    let server = PeerServer::start(&outside, 7003).unwrap();
    let mut conns = Vec::new();
    for (name, node) in [("pod1a", 1), ("pod2a", 2)] {
        let mut s = lab::connect(lab.pod(name).unwrap(), server.tcp).unwrap();
        let before = peer_of(&ask(&mut s, "before").unwrap());
        assert_eq!(before.ip(), seen_as(node));
        conns.push((s, before));
    }
    lab.start_datapath(AttachMode::Auto).unwrap();
    for (s, before) in &mut conns {
        let after = peer_of(&ask(s, "after").unwrap());
        assert_eq!(
            after, *before,
            "same connection, same mapping after the reload"
        );
    }
}
