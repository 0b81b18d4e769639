//! BPF_PROG_TEST_RUN tests of the datapath programs: crafted packets,
//! prefilled maps, verdicts, rewritten headers, conntrack entries, metrics.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use podnet_datapath::maps::{ct_flags, TUPLE_F_IN, TUPLE_F_OUT, TUPLE_F_RELATED};
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

fn setup(tag: &str) -> (BpfDir, Datapath) {
    setup_with(tag, false)
}

/// `peer`: deliver with bpf_redirect_peer (ingress policy in the same run).
fn setup_with(tag: &str, peer: bool) -> (BpfDir, Datapath) {
    two_pods(tag, |o| o.trace_redirects(true).redirect_peer(peer))
}

fn syn_a_to_b() -> Vec<u8> {
    packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(40000, 80, 0x02),
    )
}

fn ip4_hdr_ok(p: &[u8]) -> bool {
    let hl = usize::from(p[14] & 0xf) * 4;
    csum(&p[14..14 + hl]) == 0
}

#[test]
fn local_delivery_v4_rewrites_macs_and_ttl_and_creates_cilium_ct_entries() {
    require_privileges!();
    let (_dir, dp) = setup("local4");
    let pkt = syn_a_to_b();
    let before = mono_now();
    let out = dp
        .test_run(Program::FromContainer, &pkt, &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(&out.data[0..6], &B_MAC, "dst MAC = pod MAC");
    assert_eq!(&out.data[6..12], &B_NODE_MAC, "src MAC = node MAC");
    assert_eq!(out.data[14 + 8], 63, "TTL decremented");
    assert!(ip4_hdr_ok(&out.data), "IPv4 checksum still valid");
    assert_eq!(out.mark & 0x0F00, 0x0F00, "identity carried in the mark");
    assert_eq!(out.mark >> 16, A_ID & 0xffff);

    // Cilium's key: addresses reversed, ports as (dport, sport) of the original direction.
    let ct = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 1, "{ct:?}");
    let (k, e) = ct[0];
    assert_eq!(
        k,
        CtTuple4 {
            daddr: a4().octets(),
            saddr: b4().octets(),
            dport: 80u16.to_be(),
            sport: 40000u16.to_be(),
            nexthdr: 6,
            flags: TUPLE_F_OUT,
        }
    );
    assert_eq!(e.packets, 1);
    assert_eq!(e.bytes, pkt.len() as u64);
    assert_eq!(e.src_sec_id, A_ID);
    assert_eq!(e.tx_flags_seen, 0x02);
    assert_eq!(e.flags & ct_flags::SEEN_NON_SYN, 0);
    let after = mono_now();
    assert!(
        e.lifetime >= before + 60 && e.lifetime <= after + 60,
        "SYN timeout: {}",
        e.lifetime
    );
    assert!(e.last_tx_report >= before && e.last_tx_report <= after);

    // Related ICMP entry in the "any" map.
    let any = dp.ct4_entries(CtTable::Any).unwrap();
    assert_eq!(any.len(), 1);
    assert_eq!(any[0].0.nexthdr, 1);
    assert_eq!(any[0].0.flags, TUPLE_F_OUT | TUPLE_F_RELATED);
    assert_eq!((any[0].0.sport, any[0].0.dport), (0, 0));

    // An ACK on the same flow: established lifetime, counters grow.
    let ack = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(40000, 80, 0x10),
    );
    let out = dp
        .test_run(Program::FromContainer, &ack, &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    let ct = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 1);
    let e = ct[0].1;
    assert_eq!(e.packets, 2);
    assert_eq!(e.bytes, (pkt.len() + ack.len()) as u64);
    assert_ne!(e.flags & ct_flags::SEEN_NON_SYN, 0);
    assert!(e.lifetime >= before + 21600, "TCP lifetime: {}", e.lifetime);
    assert_eq!(e.tx_flags_seen, 0x12);

    // FIN then FIN the other way: closing, close timeout.
    let fin = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(40000, 80, 0x11),
    );
    dp.test_run(Program::FromContainer, &fin, &from_a())
        .unwrap();
    let e = dp.ct4_entries(CtTable::Tcp).unwrap()[0].1;
    assert_ne!(e.flags & ct_flags::TX_CLOSING, 0);
    assert_eq!(e.flags & ct_flags::RX_CLOSING, 0);

    assert_eq!(
        dp.metric(reason::FORWARDED, TrafficDirection::Egress)
            .unwrap(),
        3
    );
}

#[test]
fn to_container_creates_ingress_entry_and_replies_skip_policy() {
    require_privileges!();
    let (_dir, dp) = setup("toc");
    let out = dp
        .test_run(Program::FromContainer, &syn_a_to_b(), &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    // The redirected packet meets to-container on B's veth, mark included.
    let ctx = TestContext::new().mark(out.mark);
    let out2 = dp.test_run(Program::ToContainer, &out.data, &ctx).unwrap();
    assert_eq!(out2.retval, TC_ACT_OK);
    assert_eq!(out2.mark, 0, "identity mark consumed");
    let ct = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 2);
    let ingress = ct
        .iter()
        .find(|(k, _)| k.flags == TUPLE_F_IN)
        .expect("IN entry");
    assert_eq!(ingress.0.daddr, a4().octets());
    assert_eq!(ingress.1.src_sec_id, A_ID);
    assert_eq!(ingress.1.rx_flags_seen, 0x02);

    // B replies (SYN-ACK): a reply at from-container of B, policy not consulted
    // even though B enforces egress policy with no allow entry.
    dp.upsert_endpoint(&ep(b4().into(), false, EndpointFlags::EGRESS_ENFORCE))
        .unwrap();
    let synack = packet4(
        B_MAC,
        B_NODE_MAC,
        &Ip4::new(b4(), a4(), 6),
        &tcp(80, 40000, 0x12),
    );
    let ctx = TestContext::new().ingress_ifindex(B_IF);
    let out3 = dp.test_run(Program::FromContainer, &synack, &ctx).unwrap();
    assert_eq!(out3.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(A_IF));
    assert_eq!(
        dp.ct4_entries(CtTable::Tcp).unwrap().len(),
        2,
        "no new entry for a reply"
    );
    // And it is a reply at A's to-container too.
    dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::INGRESS_ENFORCE))
        .unwrap();
    let out4 = dp
        .test_run(Program::ToContainer, &out3.data, &TestContext::default())
        .unwrap();
    assert_eq!(out4.retval, TC_ACT_OK);
    // A new connection from B to A is not: A enforces ingress policy.
    let syn = packet4(
        B_MAC,
        B_NODE_MAC,
        &Ip4::new(b4(), a4(), 6),
        &tcp(50000, 22, 0x02),
    );
    let out5 = dp
        .test_run(Program::ToContainer, &syn, &TestContext::default())
        .unwrap();
    assert_eq!(out5.retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::POLICY, TrafficDirection::Ingress)
            .unwrap(),
        1
    );

    // To an address that is no endpoint: passes untouched, its mark kept,
    // no entry, nothing counted.
    let forwarded = dp
        .metric(reason::FORWARDED, TrafficDirection::Ingress)
        .unwrap();
    let other = packet4(
        B_MAC,
        B_NODE_MAC,
        &Ip4::new(b4(), "10.1.0.99".parse().unwrap(), 6),
        &tcp(50001, 22, 0x02),
    );
    let marked = TestContext::new().mark(out.mark);
    let out6 = dp.test_run(Program::ToContainer, &other, &marked).unwrap();
    assert_eq!((out6.retval, out6.mark), (TC_ACT_OK, out.mark));
    assert_eq!(out6.data, other);
    assert!(dp
        .ct4_entries(CtTable::Tcp)
        .unwrap()
        .iter()
        .all(|(k, _)| k.sport != 50001u16.to_be() && k.dport != 50001u16.to_be()));
    assert_eq!(
        dp.metric(reason::FORWARDED, TrafficDirection::Ingress)
            .unwrap(),
        forwarded
    );
}

#[test]
fn policy_deny_and_enforcement_are_counted() {
    require_privileges!();
    let (_dir, dp) = setup("policy");
    let deny = PolicyKey::new(1002, TrafficDirection::Ingress)
        .identity(A_ID)
        .dport(80)
        .protocol(6);
    dp.deny(&deny).unwrap();
    let out = dp
        .test_run(Program::ToContainer, &syn_a_to_b(), &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::POLICY_DENY, TrafficDirection::Ingress)
            .unwrap(),
        1
    );
    let st = dp.policy(&deny).unwrap().unwrap();
    assert!(st.deny);
    assert_eq!(st.packets, 1);
    assert!(
        dp.ct4_entries(CtTable::Tcp).unwrap().is_empty(),
        "no CT entry for a dropped packet"
    );
    // Another port is not denied.
    let other = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(40001, 81, 0x02),
    );
    assert_eq!(
        dp.test_run(Program::ToContainer, &other, &TestContext::default())
            .unwrap()
            .retval,
        TC_ACT_OK
    );
    assert!(dp.remove_policy(&deny).unwrap());
    assert!(!dp.remove_policy(&deny).unwrap());

    // Egress enforcement with a wildcard allow for UDP only.
    dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::EGRESS_ENFORCE))
        .unwrap();
    let udp_pkt = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 17),
        &udp(5000, 53, 10),
    );
    assert_eq!(
        dp.test_run(Program::FromContainer, &udp_pkt, &from_a())
            .unwrap()
            .retval,
        TC_ACT_SHOT
    );
    assert_eq!(
        dp.metric(reason::POLICY, TrafficDirection::Egress).unwrap(),
        1
    );
    dp.allow(&PolicyKey::new(1001, TrafficDirection::Egress).protocol(17))
        .unwrap();
    assert_eq!(
        dp.test_run(Program::FromContainer, &udp_pkt, &from_a())
            .unwrap()
            .retval,
        TC_ACT_REDIRECT
    );
    let any = dp.ct4_entries(CtTable::Any).unwrap();
    assert!(any
        .iter()
        .any(|(k, _)| k.nexthdr == 17 && k.dport == 53u16.to_be() && k.sport == 5000u16.to_be()));
    // TCP still dropped.
    assert_eq!(
        dp.test_run(Program::FromContainer, &syn_a_to_b(), &from_a())
            .unwrap()
            .retval,
        TC_ACT_SHOT
    );

    // An ICMP error about that UDP flow (B's port unreachable back to A) is
    // RELATED: A's ingress enforcement does not drop it.
    dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::INGRESS_ENFORCE))
        .unwrap();
    let mut unreach = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    unreach.extend(Ip4::new(a4(), b4(), 17).build(&udp(5000, 53, 0)));
    let err = packet4(B_MAC, B_NODE_MAC, &Ip4::new(b4(), a4(), 1), &unreach);
    assert_eq!(
        dp.test_run(Program::ToContainer, &err, &TestContext::default())
            .unwrap()
            .retval,
        TC_ACT_OK
    );
    // An ICMP error from a peer A has no flow with is new, and dropped.
    let stray = packet4(
        B_MAC,
        B_NODE_MAC,
        &Ip4::new("10.1.0.77".parse().unwrap(), a4(), 1),
        &unreach,
    );
    assert_eq!(
        dp.test_run(Program::ToContainer, &stray, &TestContext::default())
            .unwrap()
            .retval,
        TC_ACT_SHOT
    );
}

#[test]
fn remote_destination_goes_to_the_stack_and_spoofed_source_is_dropped() {
    require_privileges!();
    let (_dir, dp) = setup("remote");
    let remote: Ipv4Addr = "10.2.0.5".parse().unwrap();
    dp.upsert_ipcache(
        "10.2.0.0/24".parse().unwrap(),
        &IpcacheInfo::new(7777).tunnel_endpoint("192.168.100.2".parse().unwrap()),
    )
    .unwrap();
    let pkt = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), remote, 1),
        &icmp_echo(true, false, 0x77, 1),
    );
    let out = dp
        .test_run(Program::FromContainer, &pkt, &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_OK);
    assert_eq!(
        out.data, pkt,
        "handed to the stack untouched (the stack decrements the TTL)"
    );
    let any = dp.ct4_entries(CtTable::Any).unwrap();
    assert_eq!(any.len(), 1);
    let (k, e) = any[0];
    assert_eq!((k.daddr, k.saddr), (a4().octets(), remote.octets()));
    // Echo request: the id ends in sport once the tuple is in forward order.
    assert_eq!(
        (k.sport, k.dport, k.flags),
        (0x77u16.to_be(), 0, TUPLE_F_OUT)
    );
    assert_eq!(e.src_sec_id, A_ID);
    // The echo reply coming back is a reply at A's to-container.
    let reply = packet4(
        [2; 6],
        A_NODE_MAC,
        &Ip4::new(remote, a4(), 1),
        &icmp_echo(false, false, 0x77, 1),
    );
    dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::INGRESS_ENFORCE))
        .unwrap();
    assert_eq!(
        dp.test_run(Program::ToContainer, &reply, &TestContext::default())
            .unwrap()
            .retval,
        TC_ACT_OK
    );
    assert_eq!(dp.ct4_entries(CtTable::Any).unwrap()[0].1.packets, 2);

    // Source address not A's on A's veth.
    let spoof = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new("10.1.0.99".parse().unwrap(), remote, 17),
        &udp(1, 2, 0),
    );
    assert_eq!(
        dp.test_run(Program::FromContainer, &spoof, &from_a())
            .unwrap()
            .retval,
        TC_ACT_SHOT
    );
    // A's address on the wrong veth.
    let wrong = TestContext::new().ingress_ifindex(B_IF);
    let pkt = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), remote, 17),
        &udp(1, 2, 0),
    );
    assert_eq!(
        dp.test_run(Program::FromContainer, &pkt, &wrong)
            .unwrap()
            .retval,
        TC_ACT_SHOT
    );
    assert_eq!(
        dp.metric(reason::INVALID_SOURCE_IP, TrafficDirection::Egress)
            .unwrap(),
        2
    );
}

/// Established flows to no local pod skip the endpoint lookup by a stamp in
/// the CT entry; every endpoint change must void the stamps, so a flow whose
/// destination becomes (or stops being) a local pod follows at once.
#[test]
fn established_flows_follow_endpoint_changes() {
    require_privileges!();
    let (_dir, dp) = setup("epgen");
    let remote: Ipv4Addr = "10.2.0.5".parse().unwrap();
    let remote6: Ipv6Addr = "fd00:2::5".parse().unwrap();
    let ack4 = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), remote, 6),
        &tcp(40000, 80, 0x10),
    );
    let ack6 = {
        let mut p = eth(A_MAC, A_NODE_MAC, ETH_P_IPV6);
        p.extend(ip6(a6(), remote6, 6, 64, &tcp(40000, 80, 0x10)));
        p
    };
    let send = |pkt: &[u8]| {
        dp.test_run(Program::FromContainer, pkt, &from_a())
            .unwrap()
            .retval
    };
    let stamp4 = || dp.ct4_entries(CtTable::Tcp).unwrap()[0].1.reserved0;
    let stamp6 = || dp.ct6_entries(CtTable::Tcp).unwrap()[0].1.reserved0;
    // The first packet creates the entries; the second, established, goes
    // to the stack and stamps them.
    for _ in 0..2 {
        assert_eq!(send(&ack4), TC_ACT_OK);
        assert_eq!(send(&ack6), TC_ACT_OK);
    }
    let (s4, s6) = (stamp4(), stamp6());
    assert_ne!(s4, 0, "remote destination cached");
    assert_eq!(s4, s6, "both stamped with the same generation");

    // The destinations become pods on this node: delivered locally now.
    for ip in [IpAddr::V4(remote), IpAddr::V6(remote6)] {
        dp.upsert_endpoint(&ep(ip, false, EndpointFlags::empty()))
            .unwrap();
    }
    assert_eq!(send(&ack4), TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(send(&ack6), TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(
        (stamp4(), stamp6()),
        (s4, s6),
        "local delivery is never stamped"
    );

    // A host endpoint is no pod: back to the stack, stamped anew.
    dp.upsert_endpoint(&ep(remote.into(), false, EndpointFlags::HOST))
        .unwrap();
    assert_eq!(send(&ack4), TC_ACT_OK);
    let host_stamp = stamp4();
    assert!(host_stamp != 0 && host_stamp != s4);
    assert_eq!(send(&ack4), TC_ACT_OK, "cached");

    // Removed again: the stack, and the IPv6 flow too.
    assert!(dp.remove_endpoint(remote.into()).unwrap());
    assert!(dp.remove_endpoint(remote6.into()).unwrap());
    assert_eq!(send(&ack4), TC_ACT_OK);
    assert_eq!(send(&ack6), TC_ACT_OK);
    assert!(![0, s4, host_stamp].contains(&stamp4()));
    assert_eq!(stamp4(), stamp6());
    let entries = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert_eq!(entries.len(), 1, "one flow throughout");
    assert_eq!(entries[0].1.packets, 6);

    // The benchmark reference finds the flow from its packets and nothing
    // else (the reverse direction is another tuple), and changes nothing.
    let lookup = |pkt: &[u8]| {
        dp.test_run(Program::CtLookup, pkt, &TestContext::default())
            .unwrap()
            .retval
    };
    assert_eq!(lookup(&ack4), TC_ACT_OK);
    let reply = packet4(
        A_NODE_MAC,
        A_MAC,
        &Ip4::new(remote, a4(), 6),
        &tcp(80, 40000, 0x10),
    );
    assert_eq!(lookup(&reply), TC_ACT_SHOT);
    assert_eq!(lookup(&ack4[..36]), TC_ACT_SHOT, "ports cut off");
    assert_eq!(dp.ct4_entries(CtTable::Tcp).unwrap()[0].1.packets, 6);
}

/// `ct_accounting` off (Cilium without CONNTRACK_ACCOUNTING): entries are
/// created and kept alive as usual, their counters stay 0.
#[test]
fn conntrack_without_accounting_keeps_counters_at_zero() {
    require_privileges!();
    let dir = BpfDir::new("noacct");
    let o = Options::small(dir.join("globals")).ct_accounting(false);
    let dp = Datapath::load(&o).expect("load");
    dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::empty()))
        .unwrap();
    let remote: Ipv4Addr = "10.2.0.5".parse().unwrap();
    let send = |flags: u8| {
        let pkt = packet4(
            A_MAC,
            A_NODE_MAC,
            &Ip4::new(a4(), remote, 6),
            &tcp(40000, 80, flags),
        );
        dp.test_run(Program::FromContainer, &pkt, &from_a())
            .unwrap()
            .retval
    };
    assert_eq!(send(0x02), TC_ACT_OK);
    let syn = dp.ct4_entries(CtTable::Tcp).unwrap()[0].1;
    assert_eq!(syn.lifetime, syn.last_tx_report + 60, "SYN timeout");
    assert_eq!(send(0x10), TC_ACT_OK);
    let entries = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert_eq!(entries.len(), 1);
    let e = entries[0].1;
    assert_eq!((e.packets, e.bytes), (0, 0));
    assert_ne!(e.flags & ct_flags::SEEN_NON_SYN, 0);
    assert!(e.lifetime >= mono_now() + 21600 - 1, "established lifetime");
    assert_eq!(e.src_sec_id, A_ID);
}

#[test]
fn from_netdev_delivers_to_local_pods_with_source_identity() {
    require_privileges!();
    let (_dir, dp) = setup("netdev");
    dp.upsert_ipcache("10.2.0.0/16".parse().unwrap(), &IpcacheInfo::new(0x12_3456))
        .unwrap();
    let src: Ipv4Addr = "10.2.3.4".parse().unwrap();
    let pkt = packet4(
        [0x02, 0xee, 0, 0, 0, 1],
        [0x02, 0xee, 0, 0, 0, 2],
        &Ip4::new(src, b4(), 17),
        &udp(999, 53, 4),
    );
    let out = dp
        .test_run(Program::FromNetdev, &pkt, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(
        (&out.data[0..6], &out.data[6..12]),
        (&B_MAC[..], &B_NODE_MAC[..])
    );
    assert_eq!(out.data[22], 63);
    assert!(ip4_hdr_ok(&out.data));
    // Cilium's identity mark encoding: low 16 bits high, bits 16..24 low.
    assert_eq!(out.mark, (0x3456 << 16) | 0x0F00 | 0x12);
    // to-container picks the identity up from the mark.
    let out2 = dp
        .test_run(
            Program::ToContainer,
            &out.data,
            &TestContext::new().mark(out.mark),
        )
        .unwrap();
    assert_eq!(out2.retval, TC_ACT_OK);
    let any = dp.ct4_entries(CtTable::Any).unwrap();
    let (_, e) = any.iter().find(|(k, _)| k.nexthdr == 17).unwrap();
    assert_eq!(e.src_sec_id, 0x12_3456);

    // Traffic for the node itself is left to the stack.
    let to_node = packet4(
        [2; 6],
        [3; 6],
        &Ip4::new(src, "192.168.100.1".parse().unwrap(), 17),
        &udp(1, 2, 0),
    );
    let out = dp
        .test_run(Program::FromNetdev, &to_node, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_OK);
    assert_eq!(out.data, to_node);
}

#[test]
fn ipv6_local_delivery_and_ndp() {
    require_privileges!();
    let (_dir, dp) = setup("v6");
    let pkt6 = {
        let mut p = eth(A_MAC, A_NODE_MAC, ETH_P_IPV6);
        p.extend(ip6(a6(), b6(), 58, 64, &icmp_echo(true, true, 0x99, 1)));
        p
    };
    let out = dp
        .test_run(Program::FromContainer, &pkt6, &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(&out.data[0..6], &B_MAC);
    assert_eq!(out.data[14 + 7], 63, "hop limit decremented");
    let any = dp.ct6_entries(CtTable::Any).unwrap();
    assert_eq!(any.len(), 1);
    let (k, e) = any[0];
    assert_eq!((k.daddr, k.saddr), (a6().octets(), b6().octets()));
    assert_eq!(
        (k.nexthdr, k.sport, k.dport, k.flags),
        (58, 0x99u16.to_be(), 0, TUPLE_F_OUT)
    );
    assert_eq!(e.src_sec_id, A_ID);

    // TCP over IPv6 lands in cilium_ct6_global.
    let mut p = eth(A_MAC, A_NODE_MAC, ETH_P_IPV6);
    p.extend(ip6(a6(), b6(), 6, 64, &tcp(33333, 443, 0x02)));
    assert_eq!(
        dp.test_run(Program::FromContainer, &p, &from_a())
            .unwrap()
            .retval,
        TC_ACT_REDIRECT
    );
    let tcp6 = dp.ct6_entries(CtTable::Tcp).unwrap();
    assert_eq!(tcp6.len(), 1);
    assert_eq!(
        (tcp6[0].0.dport, tcp6[0].0.sport),
        (443u16.to_be(), 33333u16.to_be())
    );

    // Neighbour solicitation passes untouched, no CT entry.
    let mut ns = vec![0u8; 24];
    ns[0] = 135;
    let mut p = eth([0x33, 0x33, 0xff, 0, 0, 1], A_NODE_MAC, ETH_P_IPV6);
    p.extend(ip6(a6(), "ff02::1:ff00:1".parse().unwrap(), 58, 255, &ns));
    let out = dp.test_run(Program::FromContainer, &p, &from_a()).unwrap();
    assert_eq!(out.retval, TC_ACT_OK);
    assert_eq!(out.data, p);
    // Still the echo entry plus the TCP flow's related ICMPv6 entry only.
    assert_eq!(dp.ct6_entries(CtTable::Any).unwrap().len(), 2);
}

#[test]
fn malformed_packets_get_a_defined_verdict_and_are_counted() {
    require_privileges!();
    let (_dir, dp) = setup("malformed");
    let run = |p: &[u8]| dp.test_run(Program::FromContainer, p, &from_a());

    // Less than an Ethernet header: refused by test_run itself. IP shorter
    // than its fixed header: kernel 6.18's BPF_PROG_TEST_RUN refuses it
    // (EINVAL) before the program runs. (The program drops both as
    // DROP_INVALID when they reach it on a device.)
    assert!(matches!(run(&[]), Err(Error::InvalidInput { .. })));
    let mut trunc = syn_a_to_b();
    trunc.truncate(14 + 12);
    assert!(matches!(run(&trunc), Err(Error::TestRun { .. })));
    // ihl < 5.
    let mut bad_ihl = syn_a_to_b();
    bad_ihl[14] = 0x44;
    assert_eq!(run(&bad_ihl).unwrap().retval, TC_ACT_SHOT);
    // tot_len beyond the packet.
    let mut long = syn_a_to_b();
    long[16..18].copy_from_slice(&1500u16.to_be_bytes());
    assert_eq!(run(&long).unwrap().retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::INVALID, TrafficDirection::Egress)
            .unwrap(),
        2
    );

    // Fragments: a later one before the first is dropped and counted (its
    // datagram is unknown); the first, then the later one, pass (tests/frag.rs).
    for (frag, verdict) in [
        (0x0010u16, TC_ACT_SHOT),
        (0x2000, TC_ACT_REDIRECT),
        (0x0010, TC_ACT_REDIRECT),
    ] {
        let mut ip = Ip4::new(a4(), b4(), 17);
        ip.frag_off = frag;
        let p = packet4(A_MAC, A_NODE_MAC, &ip, &udp(1, 2, 16));
        assert_eq!(run(&p).unwrap().retval, verdict, "frag_off {frag:#x}");
    }
    assert_eq!(
        dp.metric(reason::FRAG_NOT_FOUND, TrafficDirection::Egress)
            .unwrap(),
        1
    );

    // TCP header cut short.
    let mut short = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(1, 2, 2)[..10],
    );
    short.truncate(14 + 20 + 10);
    assert_eq!(run(&short).unwrap().retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::CT_INVALID_HDR, TrafficDirection::Egress)
            .unwrap(),
        1
    );

    // Unknown L4 protocol (GRE).
    let gre = packet4(A_MAC, A_NODE_MAC, &Ip4::new(a4(), b4(), 47), &[0u8; 8]);
    assert_eq!(run(&gre).unwrap().retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::CT_UNKNOWN_PROTO, TrafficDirection::Egress)
            .unwrap(),
        1
    );

    // An IPv6 hop-by-hop header is walked past (more in
    // `ipv6_extension_headers_are_walked_to_the_real_l4`): the echo request
    // behind it is tracked and delivered.
    let mut p = eth(A_MAC, A_NODE_MAC, ETH_P_IPV6);
    p.extend(ip6(
        a6(),
        b6(),
        0,
        64,
        &[58, 0, 0, 0, 0, 0, 0, 0, 128, 0, 0, 0, 0, 1, 0, 1],
    ));
    assert_eq!(run(&p).unwrap().retval, TC_ACT_REDIRECT);
    // Multicast control traffic (an MLD report behind hop-by-hop with a
    // router alert) passes untouched, uncounted.
    let mut mld = eth([0x33, 0x33, 0, 0, 0, 0x16], A_MAC, ETH_P_IPV6);
    mld.extend(ip6(
        a6(),
        "ff02::16".parse().unwrap(),
        0,
        1,
        &[58, 0, 5, 2, 0, 0, 1, 0, 143, 0, 0, 0, 0, 0, 0, 0],
    ));
    let out = run(&mld).unwrap();
    assert_eq!((out.retval, &out.data), (TC_ACT_OK, &mld));
    assert_eq!(
        dp.metric(reason::INVALID_EXTHDR, TrafficDirection::Egress)
            .unwrap(),
        0
    );
    // IPv6 payload length beyond the packet.
    p[14 + 4..14 + 6].copy_from_slice(&4000u16.to_be_bytes());
    assert_eq!(run(&p).unwrap().retval, TC_ACT_SHOT);
    assert_eq!(
        dp.metric(reason::INVALID, TrafficDirection::Egress)
            .unwrap(),
        3
    );

    // IP options are parsed past: the ports in the CT key are the real ones.
    let mut ip = Ip4::new(a4(), b4(), 6);
    ip.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let p = packet4(A_MAC, A_NODE_MAC, &ip, &tcp(41000, 8080, 0x02));
    assert_eq!(run(&p).unwrap().retval, TC_ACT_REDIRECT);
    let ct = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert!(
        ct.iter()
            .any(|(k, _)| k.dport == 8080u16.to_be() && k.sport == 41000u16.to_be()),
        "{ct:?}"
    );

    // TTL 1 to a local pod: left to the stack (it sends time exceeded).
    let mut ip = Ip4::new(a4(), b4(), 17);
    ip.ttl = 1;
    let p = packet4(A_MAC, A_NODE_MAC, &ip, &udp(7, 7, 0));
    let out = run(&p).unwrap();
    assert_eq!(out.retval, TC_ACT_OK);
    assert_eq!(out.data, p);

    // ARP and other non-IP traffic pass untouched.
    let mut arp = eth([0xff; 6], A_MAC, ETH_P_ARP);
    arp.extend_from_slice(&[0u8; 28]);
    for prog in [
        Program::FromContainer,
        Program::ToContainer,
        Program::FromNetdev,
    ] {
        let out = dp.test_run(prog, &arp, &from_a()).unwrap();
        assert_eq!(out.retval, TC_ACT_OK);
        assert_eq!(out.data, arp);
    }
    // The other programs are as careful.
    for prog in [Program::ToContainer, Program::FromNetdev] {
        let out = dp
            .test_run(prog, &bad_ihl, &TestContext::default())
            .unwrap();
        assert_eq!(out.retval, TC_ACT_SHOT);
    }
    assert_eq!(
        dp.metric(reason::INVALID, TrafficDirection::Ingress)
            .unwrap(),
        2
    );
}

/// An 8-byte-unit option header (hop-by-hop, routing or destination
/// options): `next`, then `units` x 8 more bytes of PadN / zeros.
fn opt_hdr(next: u8, units: u8) -> Vec<u8> {
    let mut h = vec![0u8; 8 + 8 * usize::from(units)];
    h[0] = next;
    h[1] = units;
    h[2] = 1; // PadN
    h[3] = (h.len() - 4) as u8;
    h
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_real_l4() {
    require_privileges!();
    let (_dir, dp) = setup("exthdr");
    // A enforces egress policy: only TCP 8443 to B is allowed.
    dp.upsert_endpoint(&ep(a6().into(), true, EndpointFlags::EGRESS_ENFORCE))
        .unwrap();
    dp.allow(
        &PolicyKey::new(1001, TrafficDirection::Egress)
            .identity(B_ID)
            .dport(8443)
            .protocol(6),
    )
    .unwrap();
    let run = |p: &[u8]| dp.test_run(Program::FromContainer, p, &from_a()).unwrap();
    let pkt = |first: u8, chain: &[u8], l4: &[u8]| {
        let mut payload = chain.to_vec();
        payload.extend_from_slice(l4);
        let mut p = eth(A_MAC, A_NODE_MAC, ETH_P_IPV6);
        p.extend(ip6(a6(), b6(), first, 64, &payload));
        p
    };
    let metric = |r| dp.metric(r, TrafficDirection::Egress).unwrap();

    // TCP behind hop-by-hop + destination options: tracked and forwarded.
    let mut chain = opt_hdr(60, 0);
    chain.extend(opt_hdr(6, 1));
    let syn = pkt(0, &chain, &tcp(35000, 8443, 0x02));
    let out = run(&syn);
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(out.data[14 + 7], 63, "hop limit decremented");
    assert_eq!(
        &out.data[14 + 40..],
        &syn[14 + 40..],
        "chain and TCP intact"
    );
    let ct = dp.ct6_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 1, "{ct:?}");
    let (k, e) = ct[0];
    assert_eq!((k.daddr, k.saddr), (a6().octets(), b6().octets()));
    assert_eq!(
        (k.nexthdr, k.dport, k.sport, k.flags),
        (6, 8443u16.to_be(), 35000u16.to_be(), TUPLE_F_OUT)
    );
    assert_eq!((e.packets, e.tx_flags_seen), (1, 0x02));
    // The next packet of the flow (same chain) hits the entry.
    let ack = pkt(0, &chain, &tcp(35000, 8443, 0x10));
    assert_eq!(run(&ack).retval, TC_ACT_REDIRECT);
    let ct = dp.ct6_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 1);
    assert_eq!(ct[0].1.packets, 2);
    assert_ne!(ct[0].1.flags & ct_flags::SEEN_NON_SYN, 0);
    // Policy sees the real port: 9999 behind the same chain is denied.
    let denied = pkt(0, &chain, &tcp(35001, 9999, 0x02));
    assert_eq!(run(&denied).retval, TC_ACT_SHOT);
    assert_eq!(metric(reason::POLICY), 1);

    // AH counts its length in 4-byte units (+2): 24 bytes here.
    let mut ah = vec![0u8; 24];
    ah[0] = 6;
    ah[1] = 4;
    let out = run(&pkt(51, &ah, &tcp(35002, 8443, 0x02)));
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert!(dp
        .ct6_entries(CtTable::Tcp)
        .unwrap()
        .iter()
        .any(|(k, _)| k.sport == 35002u16.to_be() && k.dport == 8443u16.to_be()));

    // Exactly IPV6_MAX_HEADERS (4) headers: walked.
    let mut four = Vec::new();
    for next in [60, 60, 60, 6] {
        four.extend(opt_hdr(next, 0));
    }
    assert_eq!(
        run(&pkt(60, &four, &tcp(35003, 8443, 0x02))).retval,
        TC_ACT_REDIRECT
    );
    // One more: dropped, counted.
    let mut five = opt_hdr(60, 0);
    five.extend(&four);
    assert_eq!(
        run(&pkt(60, &five, &tcp(35004, 8443, 0x02))).retval,
        TC_ACT_SHOT
    );
    assert_eq!(metric(reason::INVALID_EXTHDR), 1);

    // Truncated chain: hop-by-hop says 16 bytes, the payload holds 8.
    let mut cut = opt_hdr(6, 1);
    cut.truncate(8);
    assert_eq!(run(&pkt(0, &cut, &[])).retval, TC_ACT_SHOT);
    // ... or the chain ends where the next header would start.
    assert_eq!(run(&pkt(0, &opt_hdr(60, 0), &[])).retval, TC_ACT_SHOT);
    assert_eq!(metric(reason::INVALID), 2);

    // Fragment header (directly and behind hop-by-hop): a first fragment,
    // tracked and forwarded (tests/frag.rs), counted as a fragment.
    let frag = [6u8, 0, 0, 1, 0, 0, 0, 7];
    assert_eq!(
        run(&pkt(44, &frag, &tcp(35005, 8443, 0x02))).retval,
        TC_ACT_REDIRECT
    );
    let mut hbh_frag = opt_hdr(44, 0);
    hbh_frag.extend_from_slice(&frag);
    assert_eq!(
        run(&pkt(0, &hbh_frag, &tcp(35006, 8443, 0x02))).retval,
        TC_ACT_REDIRECT
    );
    assert_eq!(metric(reason::FRAG_PACKET), 2);
    assert_eq!(metric(reason::FRAG_NOSUPPORT), 0);

    // "No next header" and ESP: nothing conntrack can track.
    assert_eq!(run(&pkt(0, &opt_hdr(59, 0), &[])).retval, TC_ACT_SHOT);
    assert_eq!(metric(reason::INVALID_EXTHDR), 2);
    assert_eq!(run(&pkt(50, &[0u8; 16], &[])).retval, TC_ACT_SHOT);
    assert_eq!(metric(reason::CT_UNKNOWN_PROTO), 1);

    // None of the drops created an entry: the three flows walked above and
    // the two first fragments.
    assert_eq!(dp.ct6_entries(CtTable::Tcp).unwrap().len(), 5);

    // to_container walks the chain too: B's reply is found as a reply.
    let mut reply = eth(A_NODE_MAC, B_MAC, ETH_P_IPV6);
    let mut payload = opt_hdr(6, 0);
    payload.extend(tcp(8443, 35000, 0x12));
    reply.extend(ip6(b6(), a6(), 0, 64, &payload));
    let out = dp
        .test_run(Program::ToContainer, &reply, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_OK);
    let ct = dp.ct6_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 5, "a reply creates no entry: {ct:?}");
    let flow = ct
        .iter()
        .find(|(k, _)| k.sport == 35000u16.to_be())
        .unwrap();
    assert_eq!(flow.1.packets, 3);
    assert_eq!(flow.1.rx_flags_seen, 0x12);
}

#[test]
fn pinned_maps_and_conntrack_survive_a_restart_and_teardown_unpins() {
    require_privileges!();
    let dir = BpfDir::new("restart");
    let opts = Options::small(dir.join("globals")).redirect_peer(false);
    {
        let dp = Datapath::load(&opts).unwrap();
        dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::empty()))
            .unwrap();
        dp.upsert_endpoint(&ep(b4().into(), false, EndpointFlags::empty()))
            .unwrap();
        assert_eq!(
            dp.test_run(Program::FromContainer, &syn_a_to_b(), &from_a())
                .unwrap()
                .retval,
            TC_ACT_REDIRECT
        );
        for name in podnet_datapath::maps::PINNED {
            assert!(dir.join("globals").join(name).exists(), "{name} pinned");
        }
        let p = dp.ct_map_paths();
        assert_eq!(p.tcp4, dir.join("globals").join("cilium_ct4_global"));
    }
    let dp = Datapath::load(&opts).unwrap();
    assert_eq!(
        dp.ct4_entries(CtTable::Tcp).unwrap().len(),
        1,
        "conntrack survived"
    );
    assert!(
        dp.endpoint(a4().into()).unwrap().is_some(),
        "endpoints survived"
    );
    // A second packet finds the old entry.
    let ack = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(40000, 80, 0x10),
    );
    dp.test_run(Program::FromContainer, &ack, &from_a())
        .unwrap();
    assert_eq!(dp.ct4_entries(CtTable::Tcp).unwrap()[0].1.packets, 2);

    // Different sizes cannot re-use the pins: checked before load, the
    // message names the pin, the field, both values and what to do.
    let other = opts.clone().ct_tcp_size(8192);
    let e = Datapath::load(&other).expect_err("a pin of another size was re-used");
    let msg = e.to_string();
    let pin = dir.join("globals").join("cilium_ct4_global");
    assert!(
        matches!(
            e,
            Error::PinMismatch {
                field: "max_entries",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        msg,
        format!(
            "pinned map {} has max_entries 4096, this datapath needs 8192: remove the pin \
             (its entries are lost) or load with Options that match it",
            pin.display()
        )
    );
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(pin.exists(), "the pin is untouched");

    dp.teardown().unwrap();
    for name in podnet_datapath::maps::PINNED {
        assert!(!dir.join("globals").join(name).exists(), "{name} unpinned");
    }
}

#[test]
fn bad_input_is_rejected_before_the_kernel() {
    require_privileges!();
    let (_dir, mut dp) = setup("badinput");
    // Host bits are refused, not cleared: nothing is stored.
    let info = IpcacheInfo::new(1);
    for bad in ["10.9.1.77/16", "fd00::1/64", "10.0.0.1/0"] {
        let r = dp.upsert_ipcache(bad.parse().unwrap(), &info);
        assert!(matches!(r, Err(Error::InvalidInput { .. })), "{bad}: {r:?}");
        let r = dp.remove_ipcache(bad.parse().unwrap());
        assert!(matches!(r, Err(Error::InvalidInput { .. })), "{bad}: {r:?}");
    }
    assert!(dp
        .lookup_ipcache("10.9.2.5".parse().unwrap())
        .unwrap()
        .is_none());
    let mut bad = ep(a4().into(), true, EndpointFlags::empty());
    bad.ip = "0.0.0.0".parse().unwrap();
    assert!(matches!(
        dp.upsert_endpoint(&bad),
        Err(Error::InvalidInput { .. })
    ));
    bad.ip = a4().into();
    bad.ifindex = 0;
    assert!(matches!(
        dp.upsert_endpoint(&bad),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        dp.attach(999_999, Hook::FromContainer),
        Err(Error::UnknownInterface { ifindex: 999_999 })
    ));
    assert_eq!(dp.attached(), 0);
    let zero = Options::small("/sys/fs/bpf/never-created").ct_tcp_size(0);
    assert!(matches!(
        Datapath::load(&zero),
        Err(Error::InvalidInput { .. })
    ));
    assert!(!std::path::Path::new("/sys/fs/bpf/never-created").exists());

    // A pin directory outside bpffs: refused before anything is created,
    // with what to do.
    let base = std::env::temp_dir().join(format!("pnt-dp-notbpffs-{}", std::process::id()));
    let notbpf = Options::small(base.join("a").join("g"));
    let r = Datapath::load(&notbpf);
    let left = base.exists();
    let _ = std::fs::remove_dir_all(&base);
    let e = r.expect_err("loaded off bpffs");
    assert!(!left, "{} left behind", base.display());
    assert!(matches!(e, Error::NotBpffs { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "pin directory {} is not on a bpffs mount; mount one with `mount -t bpf bpf <dir>` \
             or pick a dir under /sys/fs/bpf",
            base.join("a").join("g").display()
        )
    );
    // An existing directory off bpffs, too.
    let tmp = std::env::temp_dir();
    let e = Datapath::load(&Options::small(&tmp)).expect_err("loaded into /tmp");
    assert!(matches!(e, Error::NotBpffs { .. }), "{e:?}");

    // A test packet shorter than an Ethernet header: refused before the kernel.
    for len in [0, 3, 13] {
        let e = dp
            .test_run(Program::FromContainer, &vec![0u8; len], &from_a())
            .expect_err("short packet ran");
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&format!("{len} bytes"))
                && e.to_string().contains("Ethernet header (14 bytes)"),
            "{e}"
        );
    }

    // ipcache: longest prefix wins.
    dp.upsert_ipcache("10.9.0.0/16".parse().unwrap(), &IpcacheInfo::new(16))
        .unwrap();
    dp.upsert_ipcache("10.9.1.0/24".parse().unwrap(), &IpcacheInfo::new(24))
        .unwrap();
    assert_eq!(
        dp.lookup_ipcache("10.9.1.5".parse().unwrap())
            .unwrap()
            .unwrap()
            .identity,
        24
    );
    assert_eq!(
        dp.lookup_ipcache("10.9.2.5".parse().unwrap())
            .unwrap()
            .unwrap()
            .identity,
        16
    );
    assert!(dp.remove_ipcache("10.9.0.0/16".parse().unwrap()).unwrap());
    assert!(!dp.remove_ipcache("10.9.0.0/16".parse().unwrap()).unwrap());
    assert!(dp
        .lookup_ipcache("10.9.2.5".parse().unwrap())
        .unwrap()
        .is_none());
    assert!(dp.remove_endpoint(a4().into()).unwrap());
    assert!(!dp.remove_endpoint(a4().into()).unwrap());
}

#[test]
fn redirect_peer_mode_applies_ingress_conntrack_and_policy_before_delivery() {
    require_privileges!();
    let (_dir, dp) = setup_with("peer", true);
    let out = dp
        .test_run(Program::FromContainer, &syn_a_to_b(), &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(
        (&out.data[0..6], &out.data[6..12]),
        (&B_MAC[..], &B_NODE_MAC[..])
    );
    assert_eq!(out.data[22], 63);
    assert_eq!(out.mark, 0, "no identity mark needed");
    // Both the egress (A) and the ingress (B) entry, in one run.
    let ct = dp.ct4_entries(CtTable::Tcp).unwrap();
    assert_eq!(ct.len(), 2, "{ct:?}");
    let inn = ct.iter().find(|(k, _)| k.flags == TUPLE_F_IN).unwrap();
    assert_eq!(inn.1.src_sec_id, A_ID);
    assert_eq!(inn.1.rx_flags_seen, 0x02);
    assert_eq!(
        dp.metric(reason::FORWARDED, TrafficDirection::Ingress)
            .unwrap(),
        1
    );

    // B denies A: dropped at A's from-container, counted as ingress.
    let deny = PolicyKey::new(1002, TrafficDirection::Ingress)
        .identity(A_ID)
        .dport(22)
        .protocol(6);
    dp.deny(&deny).unwrap();
    let ssh = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new(a4(), b4(), 6),
        &tcp(40002, 22, 0x02),
    );
    assert_eq!(
        dp.test_run(Program::FromContainer, &ssh, &from_a())
            .unwrap()
            .retval,
        TC_ACT_SHOT
    );
    assert_eq!(
        dp.metric(reason::POLICY_DENY, TrafficDirection::Ingress)
            .unwrap(),
        1
    );

    // from-netdev: ingress entry with the ipcache identity, then redirect_peer.
    dp.upsert_ipcache("10.2.0.0/16".parse().unwrap(), &IpcacheInfo::new(4242))
        .unwrap();
    let src: Ipv4Addr = "10.2.3.4".parse().unwrap();
    let pkt = packet4([2; 6], [3; 6], &Ip4::new(src, b4(), 17), &udp(999, 53, 4));
    let out = dp
        .test_run(Program::FromNetdev, &pkt, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    assert_eq!(out.mark, 0);
    let any = dp.ct4_entries(CtTable::Any).unwrap();
    let (_, e) = any
        .iter()
        .find(|(k, _)| k.nexthdr == 17 && k.flags == TUPLE_F_IN)
        .unwrap();
    assert_eq!(e.src_sec_id, 4242);
    // From the underlay, a local pod's address as source earns no pod
    // identity: the ipcache alone decides (WORLD here), IPv4 and IPv6.
    let spoof = packet4([2; 6], [3; 6], &Ip4::new(a4(), b4(), 17), &udp(4444, 53, 4));
    let out = dp
        .test_run(Program::FromNetdev, &spoof, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    let any = dp.ct4_entries(CtTable::Any).unwrap();
    let (_, e) = any
        .iter()
        .find(|(k, _)| k.nexthdr == 17 && k.sport == 4444u16.to_be())
        .unwrap();
    assert_eq!(e.src_sec_id, maps::IDENTITY_WORLD);
    let mut spoof6 = eth([3; 6], [2; 6], ETH_P_IPV6);
    spoof6.extend(ip6(a6(), b6(), 17, 64, &udp(4444, 53, 4)));
    let out = dp
        .test_run(Program::FromNetdev, &spoof6, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    let any6 = dp.ct6_entries(CtTable::Any).unwrap();
    let (_, e) = any6
        .iter()
        .find(|(k, _)| k.nexthdr == 17 && k.sport == 4444u16.to_be())
        .unwrap();
    assert_eq!(e.src_sec_id, maps::IDENTITY_WORLD);
    // And a first fragment for a local pod is delivered (tracked,
    // tests/frag.rs), one for the node passes to the stack.
    let mut ip = Ip4::new(src, b4(), 17);
    ip.frag_off = 0x2000;
    let frag = packet4([2; 6], [3; 6], &ip, &udp(1, 2, 8));
    assert_eq!(
        dp.test_run(Program::FromNetdev, &frag, &TestContext::default())
            .unwrap()
            .retval,
        TC_ACT_REDIRECT
    );
    let mut ip = Ip4::new(src, "192.168.100.1".parse().unwrap(), 17);
    ip.frag_off = 0x2000;
    let frag = packet4([2; 6], [3; 6], &ip, &udp(1, 2, 8));
    assert_eq!(
        dp.test_run(Program::FromNetdev, &frag, &TestContext::default())
            .unwrap()
            .retval,
        TC_ACT_OK
    );

    // IPv6 from the underlay behind hop-by-hop: the ingress entry has the
    // real ports; a first fragment for a local pod is delivered, counted.
    let src6: Ipv6Addr = "fd00:2::7".parse().unwrap();
    let mut payload = opt_hdr(17, 0);
    payload.extend(udp(998, 5353, 4));
    let mut p = eth([3; 6], [2; 6], ETH_P_IPV6);
    p.extend(ip6(src6, b6(), 0, 64, &payload));
    let out = dp
        .test_run(Program::FromNetdev, &p, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(dp.last_redirect().unwrap(), Some(B_IF));
    let any6 = dp.ct6_entries(CtTable::Any).unwrap();
    assert!(
        any6.iter().any(|(k, _)| k.nexthdr == 17
            && k.flags == TUPLE_F_IN
            && k.dport == 5353u16.to_be()
            && k.sport == 998u16.to_be()),
        "{any6:?}"
    );
    let frags = dp
        .metric(reason::FRAG_PACKET, TrafficDirection::Ingress)
        .unwrap();
    let mut payload = vec![17u8, 0, 0, 1, 0, 0, 0, 9];
    payload.extend(udp(998, 5353, 4));
    let mut p = eth([3; 6], [2; 6], ETH_P_IPV6);
    p.extend(ip6(src6, b6(), 44, 64, &payload));
    let out = dp
        .test_run(Program::FromNetdev, &p, &TestContext::default())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    assert_eq!(
        dp.metric(reason::FRAG_PACKET, TrafficDirection::Ingress)
            .unwrap(),
        frags + 1
    );
}

/// Issue #15: a full LRU conntrack map evicts silently; the datapath counts
/// the creations that made it evict, per map, in its metrics.
#[test]
fn ct_creations_that_evict_are_counted_per_map() {
    require_privileges!();
    let dir = BpfDir::new("evict");
    let o = Options::small(dir.join("globals"))
        .redirect_peer(false)
        .ct_tcp_size(64);
    let dp = Datapath::load(&o).expect("load");
    dp.upsert_endpoint(&ep(a4().into(), true, EndpointFlags::empty()))
        .unwrap();
    dp.upsert_endpoint(&ep(b4().into(), false, EndpointFlags::empty()))
        .unwrap();
    let syn = |sport: u16| {
        packet4(
            A_MAC,
            A_NODE_MAC,
            &Ip4::new(a4(), b4(), 6),
            &tcp(sport, 80, 0x02),
        )
    };
    // Fewer connections than the map holds: no eviction.
    for sport in 10000..10020 {
        dp.test_run(Program::FromContainer, &syn(sport), &from_a())
            .unwrap();
    }
    assert_eq!(
        dp.metric(reason::CT_EVICTED_TCP4, TrafficDirection::Egress)
            .unwrap(),
        0
    );
    // Ten times as many as it holds: the kernel evicts, and it is counted.
    for sport in 20000..20640 {
        dp.test_run(Program::FromContainer, &syn(sport), &from_a())
            .unwrap();
    }
    let evicting = dp
        .metric(reason::CT_EVICTED_TCP4, TrafficDirection::Egress)
        .unwrap();
    assert!(evicting > 0, "creations that evicted counted");
    assert!(dp.ct4_entries(CtTable::Tcp).unwrap().len() <= 64);
    // Every one of these flows shares one related ICMP entry in the roomy
    // "any" map: refreshing it is no eviction.
    assert_eq!(
        dp.metric(reason::CT_EVICTED_ANY4, TrafficDirection::Egress)
            .unwrap(),
        0
    );
    assert_eq!(
        dp.metric(reason::CT_CREATE_FAILED, TrafficDirection::Egress)
            .unwrap(),
        0
    );
    let m = dp
        .metrics()
        .unwrap()
        .into_iter()
        .find(|m| m.reason == reason::CT_EVICTED_TCP4)
        .unwrap();
    assert_eq!(m.reason_name(), "CT: Map full, entries evicted");
    assert_eq!(reason::ct_evicted_map(m.reason), Some("cilium_ct4_global"));
    dp.teardown().unwrap();
}

/// Loads on several threads at once each keep their own verifier log: the
/// failing ones find theirs while others load and finish around them.
#[test]
fn concurrent_loads_each_keep_their_log() {
    require_privileges!();
    let dir = BpfDir::new("loadlogs");
    std::thread::scope(|s| {
        for t in 0..2 {
            let path = dir.join(&format!("ok{t}"));
            s.spawn(move || {
                for i in 0..3 {
                    let dp = Datapath::load(&Options::small(path.join(format!("{i}"))))
                        .expect("a small datapath loads");
                    dp.teardown().expect("teardown");
                }
            });
        }
        for t in 0..6 {
            let path = dir.join(&format!("fail{t}"));
            s.spawn(move || {
                for i in 0..15 {
                    let huge = Options::small(path.join(format!("{i}"))).ct_tcp_size(u32::MAX);
                    let e = Datapath::load(&huge).expect_err("a 4G-entry map loaded");
                    assert!(
                        e.verifier_log()
                            .is_some_and(|l| l.contains("cilium_ct4_global")),
                        "thread {t}, load {i}: {e:?}"
                    );
                }
            });
        }
    });
}

/// A load that fails in the kernel (here: a map too large to create) leaves
/// no directory it made on bpffs, parents included; directories that were
/// there before stay.
#[test]
fn failed_load_leaves_no_directory_it_created() {
    require_privileges!();
    let dir = BpfDir::new("loadfail");
    let huge = Options::small(dir.join("a").join("b").join("globals")).ct_tcp_size(u32::MAX);
    let r = Datapath::load(&huge);
    assert!(r.is_err(), "a 4G-entry map loaded: {r:?}");
    assert!(!dir.join("a").exists(), "a/ left behind after {r:?}");
    // The kernel's answer: context in Display, errno from the source,
    // libbpf's lines through the accessor only.
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Load { .. }), "{e:?}");
    assert_eq!(e.errno(), Some(libc::E2BIG), "{e:?}");
    assert!(
        !e.to_string().contains('\n') && !e.to_string().contains("os error"),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_some());
    assert!(
        e.verifier_log()
            .is_some_and(|l| l.contains("cilium_ct4_global")),
        "{e:?}"
    );
    assert!(dir.path().exists(), "the existing parent stays");

    // An existing pin dir stays too, empty or not.
    std::fs::create_dir(dir.join("mine")).unwrap();
    let r = Datapath::load(&Options::small(dir.join("mine")).ct_tcp_size(u32::MAX));
    assert!(r.is_err());
    assert!(
        dir.join("mine").exists(),
        "a directory it did not make stays"
    );

    // Teardown removes the directories load made, and only those.
    let opts = Options::small(dir.join("c").join("globals"));
    Datapath::load(&opts).unwrap().teardown().unwrap();
    assert!(!dir.join("c").exists(), "teardown leaves c/");
    assert!(dir.join("mine").exists());
}

/// `teardown` removes what this datapath created and nothing else: a
/// foreign pin in the same directory, and a map of one of its names that
/// was pinned before (a running Cilium's conntrack map, say), stay.
#[test]
fn teardown_removes_only_what_this_datapath_created() {
    require_privileges!();
    let dir = BpfDir::new("foreign");
    let pins = dir.join("globals");
    std::fs::create_dir(&pins).unwrap();
    let opts = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::Hash,
        Some("foreign"),
        4,
        4,
        16,
        &libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        },
    );
    let mut foreign = opts.unwrap();
    foreign.pin(pins.join("someone_elses_map")).unwrap();
    // "Cilium's" conntrack map, with the layout podnet re-uses.
    let ct = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::LruHash,
        Some("cilium_ct4_glob"),
        14,
        56,
        4096,
        &libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        },
    );
    let mut ct = ct.unwrap();
    ct.pin(pins.join("cilium_ct4_global")).unwrap();

    let dp = Datapath::load(&Options::small(&pins)).unwrap();
    assert!(pins.join("podnet_lxc").exists());
    dp.teardown().unwrap();
    assert!(
        pins.join("someone_elses_map").exists(),
        "foreign pin removed"
    );
    assert!(
        pins.join("cilium_ct4_global").exists(),
        "pre-existing CT map unpinned"
    );
    assert!(!pins.join("podnet_lxc").exists(), "own map left");
    assert!(
        !pins.join("cilium_ct_any4_global").exists(),
        "own CT map left"
    );
    assert!(pins.exists(), "a directory it did not make was removed");

    // A restart re-uses its own pins and its teardown still removes them.
    let dp = Datapath::load(&Options::small(&pins)).unwrap();
    drop(dp);
    let dp = Datapath::load(&Options::small(&pins)).unwrap();
    dp.teardown().unwrap();
    assert!(!pins.join("podnet_lxc").exists());
    assert!(pins.join("cilium_ct4_global").exists());
    foreign.unpin(pins.join("someone_elses_map")).unwrap();
    ct.unpin(pins.join("cilium_ct4_global")).unwrap();
}

/// Without CAP_BPF / CAP_NET_ADMIN (root with every capability dropped, in a
/// child process this test re-executes itself as, under util-linux's
/// `setpriv`) the load says what it needs, instead of libbpf's hint about
/// RLIMIT_MEMLOCK, and creates nothing.
#[test]
fn loading_without_capabilities_says_what_is_needed() {
    const CHILD: &str = "PODNET_TEST_NO_CAPS_PIN_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        let e = Datapath::load(&Options::small(std::path::PathBuf::from(dir).join("g")))
            .expect_err("loaded without capabilities");
        assert!(matches!(e, Error::Privileges { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "loading the datapath: needs root or CAP_BPF and CAP_NET_ADMIN"
        );
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        return;
    }
    require_privileges!();
    let dir = BpfDir::new("nocaps");
    let out = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "loading_without_capabilities_says_what_is_needed",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .output()
        .expect("setpriv (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran the test:\n{text}");
    assert!(!dir.join("g").exists(), "the child created its pin dir");
}
