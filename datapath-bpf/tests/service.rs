//! BPF_PROG_TEST_RUN tests of services: DNAT of new connections to a
//! frontend, Cilium's CT entries for them, reverse NAT of replies, backend
//! choice, established flows across backend changes, no-backend drops, ICMP
//! errors about service flows translated back; the
//! rewritten checksums are checked by computing them here from scratch.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use podnet_datapath::maps::{TUPLE_F_OUT, TUPLE_F_RELATED};
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

const TUPLE_F_SERVICE: u8 = 4;
const SVC_ID: u16 = 7;

/// Client pod A and backend pod B on this node, both families.
fn setup(tag: &str, peer: bool) -> (BpfDir, Datapath) {
    two_pods(tag, |o| o.redirect_peer(peer).trace_redirects(true))
}

fn vip4() -> Ipv4Addr {
    "10.96.0.10".parse().unwrap()
}
fn vip6() -> Ipv6Addr {
    "fd00:96::10".parse().unwrap()
}

// ---- an independent checksum computation (l4_csum: common/mod.rs) ----------

fn csum_field(proto: u8) -> usize {
    if proto == 6 {
        16
    } else {
        6
    }
}

/// `l4` with its checksum filled in.
fn with_csum(src: IpAddr, dst: IpAddr, proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
    let off = csum_field(proto);
    l4[off..off + 2].copy_from_slice(&[0, 0]);
    let c = l4_csum(src, dst, proto, &l4);
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

/// A packet with correct IP and L4 checksums.
fn pkt(
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
    tcp_flags: u8,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let l4 = if proto == 6 {
        tcp(src.port(), dst.port(), tcp_flags)
    } else {
        udp(src.port(), dst.port(), 12)
    };
    let l4 = with_csum(src.ip(), dst.ip(), proto, l4);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => packet4(macs.0, macs.1, &Ip4::new(s, d, proto), &l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = eth(macs.1, macs.0, ETH_P_IPV6);
            p.extend(ip6(s, d, proto, 64, &l4));
            p
        }
        _ => unreachable!(),
    }
}

/// Source and destination of a packet, and whether every checksum in it
/// is right (IPv4 header, L4 over its pseudo header).
fn parse(p: &[u8]) -> (SocketAddr, SocketAddr, bool) {
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = if p[12..14] == [0x08, 0] {
        let hl = usize::from(p[14] & 0xf) * 4;
        let s = Ipv4Addr::new(p[26], p[27], p[28], p[29]);
        let d = Ipv4Addr::new(p[30], p[31], p[32], p[33]);
        let tot = usize::from(u16::from_be_bytes([p[16], p[17]]));
        assert_eq!(csum(&p[14..14 + hl]), 0, "IPv4 header checksum");
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
    let ok = l4_csum(src, dst, proto, l4) == 0;
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    (SocketAddr::new(src, sport), SocketAddr::new(dst, dport), ok)
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// DNAT of a new connection and reverse NAT of its reply, for one family
/// and protocol, in both local delivery modes.
fn dnat_and_reverse(v6: bool, proto: u8, peer: bool) {
    let tag = format!("svc{}{}{}", if v6 { 6 } else { 4 }, proto, u8::from(peer));
    let (_dir, dp) = setup(&tag, peer);
    let (a, b, vip): (IpAddr, IpAddr, IpAddr) = if v6 {
        (a6().into(), b6().into(), vip6().into())
    } else {
        (a4().into(), b4().into(), vip4().into())
    };
    let l4p = if proto == 6 {
        L4Protocol::Tcp
    } else {
        L4Protocol::Udp
    };
    let frontend = sa(vip, 80);
    let backend = sa(b, 8080);
    dp.upsert_service(&Service::new(SVC_ID, frontend, l4p).backend(Backend::new(backend)))
        .unwrap();
    let client = sa(a, 40000);

    // The client's first packet goes to the backend, checksums right.
    let out = dp
        .test_run(
            Program::FromContainer,
            &pkt(client, frontend, proto, 0x02, (A_MAC, A_NODE_MAC)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(
        out.retval, TC_ACT_REDIRECT,
        "{tag}: delivered to the local backend"
    );
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    let (s, d, ok) = parse(&out.data);
    assert_eq!((s, d), (client, backend), "{tag}: DNAT to the backend");
    assert!(ok, "{tag}: L4 checksum after DNAT");

    // Cilium's entries: the service entry (tuple as it arrived, flag
    // SERVICE, backend id, rev NAT index) and the flow's own, to the
    // backend, carrying the rev NAT index.
    let tcp = proto == 6;
    let (vip, a, b): (IpAddr, IpAddr, IpAddr) = if v6 {
        (vip6().into(), a6().into(), b6().into())
    } else {
        (vip4().into(), a4().into(), b4().into())
    };
    let ct = ct_entries(&dp, v6, if tcp { CtTable::Tcp } else { CtTable::Any });
    let svc = ct
        .iter()
        .find(|(k, _)| k.flags == TUPLE_F_SERVICE)
        .unwrap_or_else(|| panic!("{tag}: service entry in {ct:?}"));
    assert_eq!((svc.0.daddr, svc.0.saddr), (vip, a));
    assert_eq!((svc.0.dport, svc.0.sport), (40000, 80));
    assert_eq!({ svc.1.backend_id } >> 16, u64::from(SVC_ID));
    assert_eq!(u16::from_be(svc.1.rev_nat_index), SVC_ID);
    let flow = ct
        .iter()
        .find(|(k, _)| k.flags == TUPLE_F_OUT && k.saddr == b)
        .unwrap_or_else(|| panic!("{tag}: flow entry in {ct:?}"));
    assert_eq!(u16::from_be(flow.1.rev_nat_index), SVC_ID);
    if !v6 {
        let related = dp.ct4_entries(CtTable::Any).unwrap();
        assert!(
            related
                .iter()
                .any(|(k, e)| k.flags == TUPLE_F_OUT | TUPLE_F_RELATED
                    && u16::from_be(e.rev_nat_index) == SVC_ID),
            "{tag}: related entry carries the rev NAT index: {related:?}"
        );
    }

    // The reply: from the backend's veth (redirect_peer: delivered by its
    // from-container) or at the client's to-container; the source is the
    // frontend again, checksums right.
    let reply = pkt(backend, client, proto, 0x12, (B_MAC, B_NODE_MAC));
    let out = if peer {
        let o = dp
            .test_run(
                Program::FromContainer,
                &reply,
                &TestContext::new().ingress_ifindex(B_IF),
            )
            .unwrap();
        assert_eq!(o.retval, TC_ACT_REDIRECT, "{tag}: reply delivered");
        assert_eq!(dp.last_redirect().unwrap(), Some(A_IF));
        o
    } else {
        let o = dp
            .test_run(Program::ToContainer, &reply, &TestContext::new())
            .unwrap();
        assert_eq!(o.retval, TC_ACT_OK, "{tag}: reply passes");
        o
    };
    let (s, d, ok) = parse(&out.data);
    assert_eq!((s, d), (frontend, client), "{tag}: reverse NAT");
    assert!(ok, "{tag}: L4 checksum after reverse NAT");

    // An ICMP error from the backend about the client's packet: outer
    // source and quoted destination back to the frontend, checksums right.
    let err = icmp_error(backend, client, proto);
    let out = if peer {
        dp.test_run(
            Program::FromContainer,
            &err,
            &TestContext::new().ingress_ifindex(B_IF),
        )
        .unwrap()
    } else {
        dp.test_run(Program::ToContainer, &err, &TestContext::new())
            .unwrap()
    };
    let (outer_src, quoted_dst) = check_icmp_error(&out.data);
    assert_eq!(outer_src, vip, "{tag}: ICMP error's source");
    assert_eq!(quoted_dst, frontend, "{tag}: quoted destination");

    // The second packet of the connection: same backend, established.
    let out = dp
        .test_run(
            Program::FromContainer,
            &pkt(client, frontend, proto, 0x10, (A_MAC, A_NODE_MAC)),
            &from_a(),
        )
        .unwrap();
    let (_, d, ok) = parse(&out.data);
    assert_eq!(d, backend);
    assert!(ok);
    assert_eq!(
        dp.metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        0
    );

    // The same tuple straight to the backend (a socket given the backend by
    // socket LB, re-using the port): the flow's stale service entry is made
    // anew without the service, so its reply keeps the backend's address.
    let out = dp
        .test_run(
            Program::FromContainer,
            &pkt(client, backend, proto, 0x02, (A_MAC, A_NODE_MAC)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(parse(&out.data).1, backend, "{tag}: direct, untranslated");
    let out = if peer {
        dp.test_run(
            Program::FromContainer,
            &reply,
            &TestContext::new().ingress_ifindex(B_IF),
        )
        .unwrap()
    } else {
        dp.test_run(Program::ToContainer, &reply, &TestContext::new())
            .unwrap()
    };
    let (s, d, _) = parse(&out.data);
    assert_eq!((s, d), (backend, client), "{tag}: no reverse NAT for it");
    dp.teardown().unwrap();
}

#[test]
fn tcp4_dnat_and_reverse_nat() {
    require_privileges!();
    dnat_and_reverse(false, 6, false);
    dnat_and_reverse(false, 6, true);
}

#[test]
fn udp4_dnat_and_reverse_nat() {
    require_privileges!();
    dnat_and_reverse(false, 17, false);
    dnat_and_reverse(false, 17, true);
}

#[test]
fn tcp6_dnat_and_reverse_nat() {
    require_privileges!();
    dnat_and_reverse(true, 6, false);
    dnat_and_reverse(true, 6, true);
}

#[test]
fn udp6_dnat_and_reverse_nat() {
    require_privileges!();
    dnat_and_reverse(true, 17, false);
    dnat_and_reverse(true, 17, true);
}

/// Three backends (one local, two on another node): new connections spread
/// over all; established ones keep their backend when the set changes; a
/// removed backend gets no new connections.
#[test]
fn backends_spread_established_keep_theirs_removed_get_none() {
    require_privileges!();
    let (_dir, dp) = setup("svcspread", false);
    let frontend = sa(vip4(), 80);
    let bes = [
        sa(b4(), 8080),
        sa(Ipv4Addr::new(10, 2, 0, 2), 8080),
        sa(Ipv4Addr::new(10, 2, 0, 3), 8080),
    ];
    let mut svc = Service::new(SVC_ID, frontend, L4Protocol::Tcp);
    for b in bes {
        svc = svc.backend(Backend::new(b));
    }
    dp.upsert_service(&svc).unwrap();
    let mut seen: HashMap<SocketAddr, u32> = HashMap::new();
    let mut chosen = HashMap::new();
    for port in 20000..20300u16 {
        let out = dp
            .test_run(
                Program::FromContainer,
                &pkt(sa(a4(), port), frontend, 6, 0x02, (A_MAC, A_NODE_MAC)),
                &from_a(),
            )
            .unwrap();
        let (_, d, ok) = parse(&out.data);
        assert!(ok);
        *seen.entry(d).or_default() += 1;
        chosen.insert(port, d);
    }
    for b in bes {
        let n = seen.get(&b).copied().unwrap_or(0);
        assert!(n >= 60, "backend {b} got {n} of 300: {seen:?}");
    }

    // Drop the second backend, add a fourth.
    let removed = bes[1];
    let added = sa(Ipv4Addr::new(10, 2, 0, 4), 8080);
    let svc2 = Service::new(SVC_ID, frontend, L4Protocol::Tcp)
        .backend(Backend::new(bes[0]))
        .backend(Backend::new(added))
        .backend(Backend::new(bes[2]));
    dp.upsert_service(&svc2).unwrap();
    assert_eq!(dp.services().unwrap(), vec![svc2.clone()]);
    for (port, was) in &chosen {
        let out = dp
            .test_run(
                Program::FromContainer,
                &pkt(sa(a4(), *port), frontend, 6, 0x10, (A_MAC, A_NODE_MAC)),
                &from_a(),
            )
            .unwrap();
        let (_, d, _) = parse(&out.data);
        if *was == removed {
            assert_ne!(d, removed, "a flow of the removed backend moves");
        } else {
            assert_eq!(d, *was, "established flow on port {port} keeps its backend");
        }
    }
    for port in 30000..30100u16 {
        let out = dp
            .test_run(
                Program::FromContainer,
                &pkt(sa(a4(), port), frontend, 6, 0x02, (A_MAC, A_NODE_MAC)),
                &from_a(),
            )
            .unwrap();
        let (_, d, _) = parse(&out.data);
        assert_ne!(d, removed, "no new connection to the removed backend");
    }

    // The service deleted: its established flows are translated no more
    // (their service entries name backend ids that went with it).
    assert!(dp.remove_service(frontend, L4Protocol::Tcp).unwrap());
    for port in 20000..20010u16 {
        let out = dp
            .test_run(
                Program::FromContainer,
                &pkt(sa(a4(), port), frontend, 6, 0x10, (A_MAC, A_NODE_MAC)),
                &from_a(),
            )
            .unwrap();
        let (_, d, _) = parse(&out.data);
        assert_eq!(
            d, frontend,
            "port {port}: no translation without the service"
        );
    }
    dp.teardown().unwrap();
}

#[test]
fn a_frontend_without_backends_drops_and_counts() {
    require_privileges!();
    let (_dir, dp) = setup("svcnone", false);
    let frontend = sa(vip4(), 80);
    dp.upsert_service(&Service::new(SVC_ID, frontend, L4Protocol::Tcp))
        .unwrap();
    let out = dp
        .test_run(
            Program::FromContainer,
            &pkt(sa(a4(), 40000), frontend, 6, 0x02, (A_MAC, A_NODE_MAC)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        1
    );
    assert_eq!(
        reason::name(reason::NO_SERVICE),
        "Service backend not found"
    );
    // A terminating backend takes no new connection either.
    dp.upsert_service(
        &Service::new(SVC_ID, frontend, L4Protocol::Tcp)
            .backend(Backend::new(sa(b4(), 8080)).with_state(BackendState::Terminating)),
    )
    .unwrap();
    let out = dp
        .test_run(
            Program::FromContainer,
            &pkt(sa(a4(), 40001), frontend, 6, 0x02, (A_MAC, A_NODE_MAC)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        2
    );
    // Another port of the same address is no service: untouched.
    let other = sa(vip4(), 81);
    let out = dp
        .test_run(
            Program::FromContainer,
            &pkt(sa(a4(), 40002), other, 6, 0x02, (A_MAC, A_NODE_MAC)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(out.retval, TC_ACT_OK);
    assert_eq!(parse(&out.data).1, other);
    dp.teardown().unwrap();
}

#[test]
fn service_api_validates_round_trips_and_keeps_the_old_service_on_failure() {
    require_privileges!();
    let (dir, dp) = setup("svcapi", false);
    let fe4 = sa(vip4(), 80);
    let fe6 = sa(vip6(), 53);
    let s4 = Service::new(1, fe4, L4Protocol::Tcp)
        .backend(Backend::new(sa(b4(), 8080)))
        .backend(
            Backend::new(sa(Ipv4Addr::new(10, 2, 0, 2), 8080))
                .with_state(BackendState::Terminating),
        );
    let s6 = Service::new(2, fe6, L4Protocol::Udp).backend(Backend::new(sa(b6(), 5353)));
    dp.upsert_services(&[s4.clone(), s6.clone()]).unwrap();
    assert_eq!(dp.services().unwrap(), vec![s4.clone(), s6.clone()]);

    // Bad input: nothing written.
    let bad = [
        Service::new(3, sa(vip4(), 0), L4Protocol::Tcp),
        Service::new(3, sa(vip4(), 90), L4Protocol::Tcp).backend(Backend::new(sa(b6(), 80))),
        Service::new(3, sa(vip4(), 90), L4Protocol::Tcp)
            .backend(Backend::new(sa(b4(), 80)))
            .backend(Backend::new(sa(b4(), 80))),
        // id 1 belongs to fe4
        Service::new(1, sa(vip4(), 90), L4Protocol::Tcp).backend(Backend::new(sa(b4(), 80))),
        // fe4 has id 1
        Service::new(9, fe4, L4Protocol::Tcp).backend(Backend::new(sa(b4(), 80))),
    ];
    for b in &bad {
        let e = dp.upsert_service(b).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }
    assert!(dp.upsert_services(&[s4.clone(), bad[0].clone()]).is_err());
    assert_eq!(
        dp.services().unwrap(),
        vec![s4.clone(), s6.clone()],
        "unchanged"
    );

    // Pinned and re-used after a restart.
    drop(dp);
    let o = Options::small(dir.join("globals")).redirect_peer(false);
    let dp = Datapath::load(&o).unwrap();
    assert_eq!(
        dp.services().unwrap(),
        vec![s4.clone(), s6.clone()],
        "survived"
    );

    assert!(dp.remove_service(fe4, L4Protocol::Tcp).unwrap());
    assert!(!dp.remove_service(fe4, L4Protocol::Tcp).unwrap());
    assert_eq!(dp.services().unwrap(), vec![s6]);
    assert!(dp.remove_service(fe6, L4Protocol::Udp).unwrap());
    assert!(dp.services().unwrap().is_empty());
    dp.teardown().unwrap();
}

/// An ICMP port unreachable from `backend` to `client` quoting the client's
/// packet to the backend (IP header and the first 8 bytes of L4).
fn icmp_error(backend: SocketAddr, client: SocketAddr, proto: u8) -> Vec<u8> {
    let quoted = pkt(client, backend, proto, 0x02, (A_MAC, A_NODE_MAC));
    let (ip_len, v6) = if client.is_ipv4() {
        (20, false)
    } else {
        (40, true)
    };
    let quote = &quoted[14..14 + ip_len + 8];
    let mut icmp = vec![
        if v6 { 1 } else { 3 },
        if v6 { 4 } else { 3 },
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    icmp.extend_from_slice(quote);
    let c = if v6 {
        l4_csum(backend.ip(), client.ip(), 58, &icmp)
    } else {
        csum(&icmp)
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    match (backend.ip(), client.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => packet4(B_MAC, B_NODE_MAC, &Ip4::new(s, d, 1), &icmp),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = eth(B_NODE_MAC, B_MAC, ETH_P_IPV6);
            p.extend(ip6(s, d, 58, 64, &icmp));
            p
        }
        _ => unreachable!(),
    }
}

/// The outer source and the quoted destination of an ICMP error, after
/// checking the outer IPv4 header, ICMP (ICMPv6 with its pseudo header) and
/// quoted IPv4 header checksums.
fn check_icmp_error(p: &[u8]) -> (IpAddr, SocketAddr) {
    if p[12..14] == [0x08, 0] {
        assert_eq!(csum(&p[14..34]), 0, "outer IPv4 header checksum");
        let icmp = &p[34..];
        assert_eq!(csum(icmp), 0, "ICMP checksum");
        let q = &icmp[8..];
        assert_eq!(csum(&q[..20]), 0, "quoted IPv4 header checksum");
        let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
        let dport = u16::from_be_bytes([q[22], q[23]]);
        (
            Ipv4Addr::new(p[26], p[27], p[28], p[29]).into(),
            sa(dst, dport),
        )
    } else {
        let s: [u8; 16] = p[22..38].try_into().unwrap();
        let d: [u8; 16] = p[38..54].try_into().unwrap();
        let icmp = &p[54..];
        assert_eq!(
            l4_csum(Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), 58, icmp),
            0,
            "ICMPv6 checksum"
        );
        let q = &icmp[8..];
        let qd: [u8; 16] = q[24..40].try_into().unwrap();
        let dport = u16::from_be_bytes([q[42], q[43]]);
        (Ipv6Addr::from(s).into(), sa(Ipv6Addr::from(qd), dport))
    }
}

/// NodePort from the underlay to a local backend, both families: DNAT and
/// delivery at from-netdev, the backend's reply translated back at its
/// from-container; a ClusterIP is not translated from the underlay.
#[test]
fn nodeport_from_the_underlay_to_a_local_backend() {
    require_privileges!();
    for v6 in [false, true] {
        for peer in [true, false] {
            let (_dir, dp) = setup(&format!("svcnp{}{}", u8::from(v6), u8::from(peer)), peer);
            let (node, client, b): (IpAddr, IpAddr, IpAddr) = if v6 {
                (
                    "fd00:100::1".parse().unwrap(),
                    "fd00:100::9".parse().unwrap(),
                    b6().into(),
                )
            } else {
                (
                    "192.168.100.1".parse().unwrap(),
                    "192.168.100.9".parse().unwrap(),
                    b4().into(),
                )
            };
            let fe = sa(node, 30080);
            let backend = sa(b, 8080);
            dp.upsert_service(
                &Service::new(SVC_ID, fe, L4Protocol::Tcp)
                    .kind(ServiceKind::NodePort)
                    .backend(Backend::new(backend)),
            )
            .unwrap();
            let vip = if v6 {
                IpAddr::from(vip6())
            } else {
                vip4().into()
            };
            dp.upsert_service(
                &Service::new(SVC_ID + 1, sa(vip, 80), L4Protocol::Tcp)
                    .backend(Backend::new(backend)),
            )
            .unwrap();
            let cl = sa(client, 5555);
            let out = dp
                .test_run(
                    Program::FromNetdev,
                    &pkt(cl, fe, 6, 0x02, (B_NODE_MAC, A_NODE_MAC)),
                    &TestContext::new(),
                )
                .unwrap();
            assert_eq!(
                out.retval, TC_ACT_REDIRECT,
                "v6 {v6} peer {peer}: delivered"
            );
            assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
            let (s, d, ok) = parse(&out.data);
            assert_eq!((s, d), (cl, backend), "NodePort DNAT");
            assert!(ok, "checksum after NodePort DNAT");

            let reply = pkt(backend, cl, 6, 0x12, (B_MAC, B_NODE_MAC));
            let out = dp
                .test_run(
                    Program::FromContainer,
                    &reply,
                    &TestContext::new().ingress_ifindex(B_IF),
                )
                .unwrap();
            assert_eq!(out.retval, TC_ACT_OK, "reply to the stack");
            let (s, d, ok) = parse(&out.data);
            assert_eq!((s, d), (fe, cl), "reply from the NodePort frontend");
            assert!(ok, "checksum after the reply's reverse NAT");

            // A ClusterIP is for pods: from the underlay it passes untouched.
            let out = dp
                .test_run(
                    Program::FromNetdev,
                    &pkt(cl, sa(vip, 80), 6, 0x02, (B_NODE_MAC, A_NODE_MAC)),
                    &TestContext::new(),
                )
                .unwrap();
            assert_eq!(out.retval, TC_ACT_OK);
            assert_eq!(parse(&out.data).1, sa(vip, 80));
            assert_eq!(
                dp.services()
                    .unwrap()
                    .iter()
                    .find(|s| s.frontend == fe)
                    .unwrap()
                    .kind,
                ServiceKind::NodePort
            );
            dp.teardown().unwrap();
        }
    }
}
