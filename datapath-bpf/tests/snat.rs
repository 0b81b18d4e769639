//! BPF_PROG_TEST_RUN tests of masquerade: SNAT at to-netdev and reverse
//! SNAT at from-netdev for TCP, UDP, ICMP echo and ICMP errors, both
//! families; Cilium's SNAT entries; port collisions and exhaustion. Every
//! rewritten checksum is checked by computing it here from scratch.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use podnet_datapath::maps::{TUPLE_F_IN, TUPLE_F_OUT};
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

const A_IF: u32 = 10;
const B_IF: u32 = 20;
const A_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 2];
const B_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];
/// Test runs happen on the loopback device.
const LO: u32 = 1;

fn a4() -> IpAddr {
    "10.1.0.2".parse().unwrap()
}
fn b4() -> IpAddr {
    "10.1.0.3".parse().unwrap()
}
fn node4() -> IpAddr {
    "192.168.50.1".parse().unwrap()
}
fn out4() -> IpAddr {
    "203.0.113.5".parse().unwrap()
}
fn a6() -> IpAddr {
    "fd00:1::2".parse().unwrap()
}
fn b6() -> IpAddr {
    "fd00:1::3".parse().unwrap()
}
fn node6() -> IpAddr {
    "2001:db8:50::1".parse().unwrap()
}
fn out6() -> IpAddr {
    "2001:db8:99::5".parse().unwrap()
}

fn addrs(v6: bool) -> (IpAddr, IpAddr, IpAddr, IpAddr) {
    if v6 {
        (a6(), b6(), node6(), out6())
    } else {
        (a4(), b4(), node4(), out4())
    }
}

fn masq(min: u16, max: u16) -> Masquerade {
    Masquerade::new()
        .ipv4(true)
        .ipv6(true)
        .ipv4_native_routing_cidr("10.0.0.0/8".parse().unwrap())
        .ipv6_native_routing_cidr("fd00::/16".parse().unwrap())
        .port_range(min, max)
}

/// Pods A and B on this node, masquerading to node4/node6 on "lo".
fn setup(tag: &str, m: Masquerade) -> (BpfDir, Datapath) {
    let dir = BpfDir::new(tag);
    let o = Options::small(dir.join("globals")).masquerade(m);
    let dp = Datapath::load(&o).expect("load");
    for (ip, ifindex, mac, id) in [
        (a4(), A_IF, A_MAC, 1001),
        (b4(), B_IF, B_MAC, 1002),
        (a6(), A_IF, A_MAC, 1001),
        (b6(), B_IF, B_MAC, 1002),
    ] {
        dp.upsert_endpoint(
            &Endpoint::new(ip, ifindex)
                .mac(mac)
                .node_mac(NODE_MAC)
                .id(id)
                .identity(5000 + u32::from(id)),
        )
        .unwrap();
    }
    dp.set_masquerade_address(LO, node4()).unwrap();
    dp.set_masquerade_address(LO, node6()).unwrap();
    (dir, dp)
}

// ---- packets and an independent checksum computation -------------------------

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!(),
    }
    p
}

/// The L4 checksum of `l4` (TCP, UDP, ICMPv6 over their pseudo header;
/// ICMP over itself). 0 when the checksum in it is right.
fn l4_sum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    let mut b = if proto == 1 {
        Vec::new()
    } else {
        pseudo(src, dst, proto, l4.len())
    };
    b.extend_from_slice(l4);
    csum(&b)
}

fn csum_off(proto: u8) -> usize {
    match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    }
}

fn fill_csum(src: IpAddr, dst: IpAddr, proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
    let off = csum_off(proto);
    l4[off..off + 2].copy_from_slice(&[0, 0]);
    let c = l4_sum(src, dst, proto, &l4);
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

/// An IP packet (no Ethernet) from `src` to `dst` carrying `l4`.
fn ip(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ip4::new(s, d, proto).build(l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => ip6(s, d, proto, 64, l4),
        _ => unreachable!(),
    }
}

fn frame(v6: bool, macs: ([u8; 6], [u8; 6]), ip: &[u8]) -> Vec<u8> {
    let mut p = eth(macs.1, macs.0, if v6 { ETH_P_IPV6 } else { ETH_P_IP });
    p.extend_from_slice(ip);
    p
}

fn icmp_proto(v6: bool) -> u8 {
    if v6 {
        58
    } else {
        1
    }
}

/// A TCP (SYN or `flags`), UDP or ICMP echo packet with right checksums;
/// for ICMP the ports are the echo id (`src.port()`, request when
/// `dst.port()` is 0, else a reply with id `dst.port()`).
fn pkt(
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
    flags: u8,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let l4 = match proto {
        6 => tcp(src.port(), dst.port(), flags),
        17 => udp(src.port(), dst.port(), 12),
        _ => {
            let request = dst.port() == 0;
            let id = if request { src.port() } else { dst.port() };
            icmp_echo(request, v6, id, 1)
        }
    };
    let l4 = fill_csum(src.ip(), dst.ip(), proto, l4);
    frame(v6, macs, &ip(src.ip(), dst.ip(), proto, &l4))
}

/// The packet's source and destination (ports; ICMP echo: the id as the
/// requester's port) and protocol, after checking every checksum in it
/// (IPv4 header; L4; for an ICMP error, the quoted IPv4 header too).
fn parse(p: &[u8]) -> (SocketAddr, SocketAddr, u8) {
    let v6 = p[12..14] == [0x86, 0xdd];
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = if !v6 {
        let hl = usize::from(p[14] & 0xf) * 4;
        let tot = usize::from(u16::from_be_bytes([p[16], p[17]]));
        assert_eq!(csum(&p[14..14 + hl]), 0, "IPv4 header checksum");
        let s = Ipv4Addr::new(p[26], p[27], p[28], p[29]);
        let d = Ipv4Addr::new(p[30], p[31], p[32], p[33]);
        (s.into(), d.into(), p[23], &p[14 + hl..14 + tot])
    } else {
        let s: [u8; 16] = p[22..38].try_into().unwrap();
        let d: [u8; 16] = p[38..54].try_into().unwrap();
        (
            Ipv6Addr::from(s).into(),
            Ipv6Addr::from(d).into(),
            p[20],
            &p[54..],
        )
    };
    assert_eq!(l4_sum(src, dst, proto, l4), 0, "L4 checksum of {proto}");
    let port = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
    let (sport, dport) = match proto {
        6 | 17 => (port(0), port(2)),
        _ => match l4[0] {
            8 | 128 => (port(4), 0),
            0 | 129 => (0, port(4)),
            _ => {
                if !v6 {
                    let ihl = usize::from(l4[8] & 0xf) * 4;
                    assert_eq!(csum(&l4[8..8 + ihl]), 0, "quoted IPv4 header checksum");
                }
                (0, 0)
            }
        },
    };
    (
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        proto,
    )
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn from_a() -> TestContext {
    TestContext::new().ingress_ifindex(A_IF)
}

fn from_b() -> TestContext {
    TestContext::new().ingress_ifindex(B_IF)
}

/// The SNAT entries of either family as (daddr, saddr, dport, sport, proto,
/// flags) -> (to_addr, to_port), ports in host order.
type NatRow = ((IpAddr, IpAddr, u16, u16, u8, u8), (IpAddr, u16));
fn nat_rows(dp: &Datapath, v6: bool) -> Vec<NatRow> {
    // The families' keys and values differ only in the addresses' type.
    macro_rules! rows {
        ($entries:expr) => {
            $entries
                .unwrap()
                .into_iter()
                .map(|(k, v)| {
                    (
                        (
                            IpAddr::from(k.daddr),
                            IpAddr::from(k.saddr),
                            u16::from_be(k.dport),
                            u16::from_be(k.sport),
                            k.nexthdr,
                            k.flags,
                        ),
                        (IpAddr::from(v.to_addr), u16::from_be(v.to_port)),
                    )
                })
                .collect()
        };
    }
    if v6 {
        rows!(dp.snat6_entries())
    } else {
        rows!(dp.snat4_entries())
    }
}

/// A pod's connection out and its reply back: from-container (CT entry),
/// to-netdev (SNAT to the node, source port kept), from-netdev (reverse).
fn snat_and_reverse(v6: bool, proto: u8) {
    require_privileges!();
    let tag = format!("snat{}{proto}", if v6 { 6 } else { 4 });
    let (_dir, dp) = setup(&tag, masq(32768, 65535));
    let (a, _, node, out) = addrs(v6);
    let icmp = proto == icmp_proto(v6);
    // ICMP: the echo id 4660 is outside the range: a random id is chosen.
    let (pod, peer) = if icmp {
        (sa(a, 4660), sa(out, 0))
    } else {
        (sa(a, 40000), sa(out, 80))
    };
    let p = pkt(pod, peer, proto, 0x02, (A_MAC, NODE_MAC));
    let fc = dp.test_run(Program::FromContainer, &p, &from_a()).unwrap();
    assert_eq!(fc.retval, TC_ACT_OK, "{tag}: to the stack");
    let tn = dp
        .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
        .unwrap();
    assert_eq!(tn.retval, TC_ACT_OK, "{tag}: to-netdev passes");
    let (s, d, _) = parse(&tn.data);
    assert_eq!(s.ip(), node, "{tag}: source is the node");
    assert_eq!(d, peer, "{tag}: destination untouched");
    let port = s.port();
    if icmp {
        assert!((32768..=65535).contains(&port), "{tag}: id {port} in range");
    } else {
        assert_eq!(port, 40000, "{tag}: source port kept");
    }

    // Cilium's pair: forward {peer, pod, OUT} -> node:port, reverse
    // {node, peer, port, peer port, IN} -> pod.
    let rows = nat_rows(&dp, v6);
    assert_eq!(rows.len(), 2, "{tag}: {rows:?}");
    assert!(
        rows.contains(&(
            (out, a, peer.port(), pod.port(), proto, TUPLE_F_OUT),
            (node, port)
        )),
        "{tag}: forward entry in {rows:?}"
    );
    assert!(
        rows.contains(&(
            (node, out, port, peer.port(), proto, TUPLE_F_IN),
            (a, pod.port())
        )),
        "{tag}: reverse entry in {rows:?}"
    );

    // The reply, to the node, goes back to the pod.
    let reply = if icmp {
        pkt(sa(out, 0), sa(node, port), proto, 0, (GW_MAC, NODE_MAC))
    } else {
        pkt(sa(out, 80), sa(node, port), proto, 0x12, (GW_MAC, NODE_MAC))
    };
    let fr = dp
        .test_run(Program::FromNetdev, &reply, &TestContext::new())
        .unwrap();
    assert_eq!(fr.retval, TC_ACT_REDIRECT, "{tag}: delivered to the pod");
    let (s, d, _) = parse(&fr.data);
    if icmp {
        assert_eq!((s.ip(), d), (out, sa(a, 4660)), "{tag}: reply to the pod");
    } else {
        assert_eq!((s, d), (peer, pod), "{tag}: reply to the pod");
    }

    // Established: the next packet out re-uses the mapping.
    let p2 = pkt(pod, peer, proto, 0x10, (A_MAC, NODE_MAC));
    let fc = dp.test_run(Program::FromContainer, &p2, &from_a()).unwrap();
    let tn = dp
        .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
        .unwrap();
    assert_eq!(parse(&tn.data).0, sa(node, port), "{tag}: same mapping");
    assert_eq!(nat_rows(&dp, v6).len(), 2);
}

#[test]
fn snat_tcp4() {
    snat_and_reverse(false, 6);
}
#[test]
fn snat_udp4() {
    snat_and_reverse(false, 17);
}
#[test]
fn snat_icmp4_echo() {
    snat_and_reverse(false, 1);
}
#[test]
fn snat_tcp6() {
    snat_and_reverse(true, 6);
}
#[test]
fn snat_udp6() {
    snat_and_reverse(true, 17);
}
#[test]
fn snat_icmp6_echo() {
    snat_and_reverse(true, 58);
}

/// An ICMP error from the peer about a masqueraded UDP packet (quoting it
/// as it left: node:port -> peer) goes to the pod with the quote translated.
fn icmp_error_goes_back(v6: bool) {
    require_privileges!();
    let tag = format!("snaterr{}", if v6 { 6 } else { 4 });
    let (_dir, dp) = setup(&tag, masq(32768, 65535));
    let (a, _, node, out) = addrs(v6);
    let pod = sa(a, 40001);
    let peer = sa(out, 53);
    let p = pkt(pod, peer, 17, 0, (A_MAC, NODE_MAC));
    let fc = dp.test_run(Program::FromContainer, &p, &from_a()).unwrap();
    let tn = dp
        .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
        .unwrap();
    let quoted = tn.data[14..].to_vec(); // as it left, node:40001 -> peer
    assert_eq!(parse(&tn.data).0, sa(node, 40001));

    // Port unreachable, quoting the IP header and 8 bytes of UDP.
    let qlen = if v6 { 40 + 8 } else { 20 + 8 };
    let mut icmp = if v6 {
        vec![1, 4, 0, 0, 0, 0, 0, 0]
    } else {
        vec![3, 3, 0, 0, 0, 0, 0, 0]
    };
    icmp.extend_from_slice(&quoted[..qlen]);
    let proto = icmp_proto(v6);
    let icmp = fill_csum(out, node, proto, icmp);
    let err = frame(v6, (GW_MAC, NODE_MAC), &ip(out, node, proto, &icmp));
    let fr = dp
        .test_run(Program::FromNetdev, &err, &TestContext::new())
        .unwrap();
    assert_eq!(fr.retval, TC_ACT_REDIRECT, "{tag}: delivered to the pod");
    let (s, d, pr) = parse(&fr.data); // checks outer, ICMP and quoted checksums
    assert_eq!(
        (s.ip(), d.ip(), pr),
        (out, a, proto),
        "{tag}: outer to the pod"
    );
    let l3 = if v6 { 54 } else { 34 };
    let q = &fr.data[l3 + 8..];
    let (qs, qsport) = if v6 {
        let b: [u8; 16] = q[8..24].try_into().unwrap();
        (IpAddr::from(b), u16::from_be_bytes([q[40], q[41]]))
    } else {
        (
            IpAddr::from([q[12], q[13], q[14], q[15]]),
            u16::from_be_bytes([q[20], q[21]]),
        )
    };
    assert_eq!(
        (qs, qsport),
        (a, 40001),
        "{tag}: the quote is the pod's packet"
    );
}

#[test]
fn snat_icmp4_error() {
    icmp_error_goes_back(false);
}
#[test]
fn snat_icmp6_error() {
    icmp_error_goes_back(true);
}

/// Two pods using the same source port to the same peer: the second gets
/// another port in the range; both replies find their pod.
fn port_collision(v6: bool) {
    require_privileges!();
    let tag = format!("snatcol{}", if v6 { 6 } else { 4 });
    let (_dir, dp) = setup(&tag, masq(40000, 40999));
    let (a, b, node, out) = addrs(v6);
    let peer = sa(out, 443);
    let mut ports = Vec::new();
    for (pod, ctx, mac) in [
        (sa(a, 40000), from_a(), A_MAC),
        (sa(b, 40000), from_b(), B_MAC),
    ] {
        let fc = dp
            .test_run(
                Program::FromContainer,
                &pkt(pod, peer, 6, 0x02, (mac, NODE_MAC)),
                &ctx,
            )
            .unwrap();
        let tn = dp
            .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
            .unwrap();
        let (s, _, _) = parse(&tn.data);
        assert_eq!(s.ip(), node);
        ports.push(s.port());
    }
    assert_eq!(ports[0], 40000, "{tag}: the first keeps its port");
    assert_ne!(ports[1], 40000, "{tag}: the second gets another");
    assert!((40000..=40999).contains(&ports[1]), "{tag}: in range");
    for (port, pod) in [(ports[0], sa(a, 40000)), (ports[1], sa(b, 40000))] {
        let reply = pkt(peer, sa(node, port), 6, 0x12, (GW_MAC, NODE_MAC));
        let fr = dp
            .test_run(Program::FromNetdev, &reply, &TestContext::new())
            .unwrap();
        assert_eq!(parse(&fr.data).1, pod, "{tag}: reply to port {port}");
    }
    assert_eq!(nat_rows(&dp, v6).len(), 4);
}

#[test]
fn snat_port_collision4() {
    port_collision(false);
}
#[test]
fn snat_port_collision6() {
    port_collision(true);
}

/// A range of one port: the second flow to the same peer finds none,
/// drops with DROP_NAT_NO_MAPPING, counted, and leaves no entry behind.
#[test]
fn snat_exhaustion_drops_and_counts() {
    require_privileges!();
    let (_dir, dp) = setup("snatexh", masq(40000, 40000));
    for v6 in [false, true] {
        let (a, b, _, out) = addrs(v6);
        let peer = sa(out, 443);
        let fc = dp
            .test_run(
                Program::FromContainer,
                &pkt(sa(a, 1234), peer, 6, 0x02, (A_MAC, NODE_MAC)),
                &from_a(),
            )
            .unwrap();
        let tn = dp
            .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
            .unwrap();
        assert_eq!(tn.retval, TC_ACT_OK);
        assert_eq!(
            parse(&tn.data).0.port(),
            40000,
            "random port in a one-port range"
        );
        let fc = dp
            .test_run(
                Program::FromContainer,
                &pkt(sa(b, 1234), peer, 6, 0x02, (B_MAC, NODE_MAC)),
                &from_b(),
            )
            .unwrap();
        let tn = dp
            .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
            .unwrap();
        assert_eq!(tn.retval, TC_ACT_SHOT, "no port left");
        assert_eq!(nat_rows(&dp, v6).len(), 2, "nothing half-created");
    }
    assert_eq!(
        dp.metric(reason::NAT_NO_MAPPING, TrafficDirection::Egress)
            .unwrap(),
        2
    );
    assert_eq!(
        reason::name(reason::NAT_NO_MAPPING),
        "No mapping for NAT masquerade"
    );
}

/// Not masqueraded: destinations in the native-routing CIDR, sources that
/// are no pod, flows without their CT_EGRESS entry, replies to nothing.
#[test]
fn snat_leaves_other_traffic_alone() {
    require_privileges!();
    let (_dir, dp) = setup("snatnot", masq(32768, 65535));
    for v6 in [false, true] {
        let (a, b, node, out) = addrs(v6);
        let host = if v6 { node6() } else { node4() };
        let cases = [
            (sa(a, 40000), sa(b, 80), "pod to pod (native-routing CIDR)"),
            (sa(host, 40000), sa(out, 80), "the host's own traffic"),
            (sa(a, 40002), sa(out, 80), "a pod flow without CT entry"),
        ];
        for (src, dst, what) in cases {
            let p = pkt(src, dst, 6, 0x02, (A_MAC, NODE_MAC));
            let tn = dp
                .test_run(Program::ToNetdev, &p, &TestContext::new())
                .unwrap();
            assert_eq!(tn.retval, TC_ACT_OK, "{what}");
            assert_eq!(tn.data, p, "{what}: untouched");
        }
        let stray = pkt(sa(out, 80), sa(node, 40000), 6, 0x12, (GW_MAC, NODE_MAC));
        let fr = dp
            .test_run(Program::FromNetdev, &stray, &TestContext::new())
            .unwrap();
        assert_eq!(fr.retval, TC_ACT_OK, "to the host's stack");
        assert_eq!(fr.data, stray, "untouched");
        assert!(nat_rows(&dp, v6).is_empty());
    }
}

/// Masquerade off (the default): to-netdev passes everything untouched.
#[test]
fn snat_off_is_a_no_op() {
    require_privileges!();
    let (_dir, dp) = setup("snatoff", Masquerade::new());
    let p = pkt(sa(a4(), 40000), sa(out4(), 80), 6, 0x02, (A_MAC, NODE_MAC));
    let fc = dp.test_run(Program::FromContainer, &p, &from_a()).unwrap();
    let tn = dp
        .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
        .unwrap();
    assert_eq!(tn.data, fc.data);
    assert!(dp.snat4_entries().unwrap().is_empty());
}

/// Bad masquerade settings are typed errors before anything is created.
#[test]
fn bad_masquerade_settings_are_refused_before_the_kernel() {
    let dir = std::env::temp_dir().join("pnt-never-created");
    let bad = [
        Masquerade::new().ipv4(true).port_range(100, 99),
        Masquerade::new()
            .ipv4(true)
            .ipv4_native_routing_cidr("fd00::/8".parse().unwrap()),
    ];
    for m in bad {
        let e = Datapath::load(&Options::small(&dir).masquerade(m)).unwrap_err();
        assert!(matches!(e, Error::Masquerade(_)), "{e}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(!dir.exists());
    }
}

/// NodePort to a backend on another node: the client's packet is DNATed to
/// the backend and SNATed to the node (its CT_EGRESS entry, carrying the
/// service, owns the mapping); the backend's reply goes back to the client
/// from the frontend. Both families.
#[test]
fn nodeport_to_a_remote_backend_is_snated_and_the_reply_translated_back() {
    require_privileges!();
    let (_dir, dp) = setup("snatnp", masq(32768, 65535));
    // A namespace without routes: the FIB lookups for the forwarding find
    // nothing, the packets go to the stack (host routes would vary).
    let ns = testsupport::Netns::new("snatnp");
    ns.run(|| nodeport_runs(&dp));
}

fn nodeport_runs(dp: &Datapath) {
    for v6 in [false, true] {
        let (_, _, node, out) = addrs(v6);
        let backend: IpAddr = if v6 {
            "fd00:2::5".parse().unwrap()
        } else {
            "10.2.0.5".parse().unwrap()
        };
        let (fe, be, client) = (sa(node, 30080), sa(backend, 8080), sa(out, 5555));
        dp.upsert_service(
            &Service::new(9, fe, L4Protocol::Tcp)
                .kind(ServiceKind::NodePort)
                .backend(Backend::new(be)),
        )
        .unwrap();
        let syn = pkt(client, fe, 6, 0x02, (GW_MAC, NODE_MAC));
        let fwd = dp
            .test_run(Program::FromNetdev, &syn, &TestContext::new())
            .unwrap();
        assert_eq!(
            fwd.retval, TC_ACT_OK,
            "to the stack, towards the backend's node"
        );
        let (s, d, _) = parse(&fwd.data);
        assert_eq!(d, be, "DNAT to the backend");
        assert_eq!(s.ip(), node, "SNAT to the node");
        let rows = nat_rows(dp, v6);
        assert!(
            rows.contains(&((backend, out, 8080, 5555, 6, TUPLE_F_OUT), (node, s.port()))),
            "forward entry: {rows:?}"
        );
        // The owner: the translated flow's CT_EGRESS entry with the service.
        macro_rules! owner {
            ($entries:expr) => {
                $entries
                    .unwrap()
                    .into_iter()
                    .find(|(k, _)| {
                        IpAddr::from(k.daddr) == out
                            && IpAddr::from(k.saddr) == backend
                            && k.flags == TUPLE_F_OUT
                    })
                    .map(|(_, e)| e.rev_nat_index)
            };
        }
        let owner = if v6 {
            owner!(dp.ct6_entries(CtTable::Tcp))
        } else {
            owner!(dp.ct4_entries(CtTable::Tcp))
        };
        assert_eq!(owner.map(u16::from_be), Some(9), "owner CT entry");

        let reply = pkt(be, s, 6, 0x12, (GW_MAC, NODE_MAC));
        let back = dp
            .test_run(Program::FromNetdev, &reply, &TestContext::new())
            .unwrap();
        assert_eq!(back.retval, TC_ACT_OK, "to the stack, towards the client");
        assert_eq!(parse(&back.data).0, fe, "from the frontend");
        assert_eq!(parse(&back.data).1, client, "to the client");
    }
}

/// from-netdev takes a reply to a masquerade address to the reverse SNAT
/// before its endpoint lookup, by a table of those addresses (snat_node.h)
/// that is only a hint: a reply to an address that left the table (here:
/// the interface's masquerade address changed after the mapping was made)
/// is still translated back, through the other order; a packet to the new
/// address without a mapping still passes untouched.
fn reverse_snat_without_the_table(v6: bool) {
    let tag = format!("snatnode{}", if v6 { 6 } else { 4 });
    let (_dir, dp) = setup(&tag, masq(32768, 65535));
    let (a, _, node, out) = addrs(v6);
    let (pod, peer) = (sa(a, 40000), sa(out, 80));
    let p = pkt(pod, peer, 6, 0x02, (A_MAC, NODE_MAC));
    let fc = dp.test_run(Program::FromContainer, &p, &from_a()).unwrap();
    let tn = dp
        .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
        .unwrap();
    assert_eq!(parse(&tn.data).0, sa(node, 40000), "{tag}: masqueraded");
    let reply = pkt(peer, sa(node, 40000), 6, 0x12, (GW_MAC, NODE_MAC));
    let run = |p: &[u8]| {
        dp.test_run(Program::FromNetdev, p, &TestContext::new())
            .unwrap()
    };
    let fr = run(&reply);
    assert_eq!(fr.retval, TC_ACT_REDIRECT, "{tag}: in the table");
    assert_eq!(parse(&fr.data), (peer, pod, 6), "{tag}: in the table");

    let other: IpAddr = if v6 {
        "2001:db8:51::1".parse().unwrap()
    } else {
        "192.168.51.1".parse().unwrap()
    };
    dp.set_masquerade_address(LO, other).unwrap();
    let fr = run(&reply);
    assert_eq!(fr.retval, TC_ACT_REDIRECT, "{tag}: no longer in the table");
    assert_eq!(
        parse(&fr.data),
        (peer, pod, 6),
        "{tag}: no longer in the table"
    );
    let stray = pkt(peer, sa(other, 40000), 6, 0x12, (GW_MAC, NODE_MAC));
    let fr = run(&stray);
    assert_eq!(
        fr.retval, TC_ACT_OK,
        "{tag}: no mapping: to the host's stack"
    );
    assert_eq!(fr.data, stray, "{tag}: untouched");
}

#[test]
fn reverse_snat4_without_the_masquerade_address_table() {
    require_privileges!();
    reverse_snat_without_the_table(false);
}

#[test]
fn reverse_snat6_without_the_masquerade_address_table() {
    require_privileges!();
    reverse_snat_without_the_table(true);
}
