//! BPF_PROG_TEST_RUN tests of IP fragment tracking (issue #12): the first
//! fragment's ports remembered in `cilium_ipv4_frag_datagrams` /
//! `cilium_ipv6_frag_datagrams`, later fragments handled with them
//! (conntrack, policy, service DNAT and reverse NAT), out-of-order
//! fragments dropped and counted, the maps re-used after a reload. Each
//! datagram is cut into fragments here and put together again from the
//! programs' output, whose checksums are computed from scratch.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

const SVC_ID: u16 = 9;

fn a(v6: bool) -> IpAddr {
    if v6 {
        a6().into()
    } else {
        a4().into()
    }
}
fn b(v6: bool) -> IpAddr {
    if v6 {
        b6().into()
    } else {
        b4().into()
    }
}
fn vip(v6: bool) -> IpAddr {
    if v6 {
        "fd00:96::9".parse().unwrap()
    } else {
        "10.96.0.9".parse().unwrap()
    }
}

/// Pods A and B on this node, both families; B enforces ingress policy
/// when `enforce`.
fn setup(tag: &str, peer: bool, enforce: bool) -> (BpfDir, Datapath) {
    let dir = BpfDir::new(tag);
    let dp = Datapath::load(&opts(&dir, peer)).expect("load");
    let b_flags = if enforce {
        EndpointFlags::INGRESS_ENFORCE
    } else {
        EndpointFlags::empty()
    };
    add_pods(&dp, &both_families(), b_flags);
    (dir, dp)
}

fn opts(dir: &BpfDir, peer: bool) -> Options {
    Options::small(dir.join("globals"))
        .redirect_peer(peer)
        .trace_redirects(true)
}

fn ctx_from(is_a: bool) -> TestContext {
    TestContext::new().ingress_ifindex(if is_a { A_IF } else { B_IF })
}

// ---- datagrams, fragments, and putting them together again -----------------

/// A UDP datagram of `len` payload bytes (a pattern), checksum filled in.
fn udp_datagram(src: SocketAddr, dst: SocketAddr, len: usize) -> Vec<u8> {
    let mut d = udp(src.port(), dst.port(), len);
    for (i, byte) in d[8..].iter_mut().enumerate() {
        *byte = (i * 7 + 3) as u8;
    }
    let c = l4_csum(src.ip(), dst.ip(), 17, &d);
    d[6..8].copy_from_slice(&c.to_be_bytes());
    d
}

/// `l4` (a whole datagram of protocol `proto`) from `src` to `dst` cut
/// into Ethernet frames of at most `chunk` payload bytes each (a multiple
/// of 8), fragment id `id`: first, middle(s), last.
fn fragments(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: &[u8],
    chunk: usize,
    id: u32,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<Vec<u8>> {
    assert_eq!(chunk % 8, 0);
    let mut out = Vec::new();
    let mut off = 0;
    while off < l4.len() {
        let end = (off + chunk).min(l4.len());
        let more = end < l4.len();
        let data = &l4[off..end];
        let frame = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = vec![0u8; 20];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&(id as u16).to_be_bytes());
                let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
                h[6..8].copy_from_slice(&fo.to_be_bytes());
                h[8] = 64;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = csum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                let mut f = eth(macs.1, macs.0, ETH_P_IP);
                f.extend(h);
                f.extend_from_slice(data);
                f
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut payload = vec![proto, 0];
                let fo = ((off / 8) as u16) << 3 | u16::from(more);
                payload.extend_from_slice(&fo.to_be_bytes());
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(data);
                let mut f = eth(macs.1, macs.0, ETH_P_IPV6);
                f.extend(ip6(s, d, 44, 64, &payload));
                f
            }
            _ => unreachable!(),
        };
        out.push(frame);
        off = end;
    }
    out
}

/// The UDP datagram `dgram` from `src` to `dst` cut into frames of 1232
/// payload bytes each, fragment id `id`.
fn udp_frames(
    src: IpAddr,
    dst: IpAddr,
    dgram: &[u8],
    id: u32,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<Vec<u8>> {
    fragments(src, dst, 17, dgram, 1232, id, macs)
}

/// Runs `frames`, in order, through `prog` with `ctx`: each must get the
/// verdict `want` and, given `to`, be redirected to that ifindex (`what`
/// names the frames in the messages). Returns what the program put out,
/// frame by frame.
fn run_all(
    dp: &Datapath,
    prog: Program,
    ctx: &TestContext,
    frames: &[Vec<u8>],
    want: u32,
    to: Option<u32>,
    what: &str,
) -> Vec<Vec<u8>> {
    let mut outs = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let out = dp.test_run(prog, f, ctx).unwrap();
        assert_eq!(out.retval, want, "{what} {i}");
        if let Some(to) = to {
            assert_eq!(dp.last_redirect().unwrap(), Some(to), "{what} {i}: its way");
        }
        outs.push(out.data);
    }
    outs
}

/// One fragment as a program left it: addresses, offset in the datagram,
/// its data. Checks the IPv4 header checksum.
struct Frag {
    src: IpAddr,
    dst: IpAddr,
    offset: usize,
    data: Vec<u8>,
}

fn parse_frag(p: &[u8]) -> Frag {
    if p[12..14] == [0x08, 0] {
        let hl = usize::from(p[14] & 0xf) * 4;
        assert_eq!(csum(&p[14..14 + hl]), 0, "IPv4 header checksum");
        let tot = usize::from(u16::from_be_bytes([p[16], p[17]]));
        let fo = u16::from_be_bytes([p[20], p[21]]);
        Frag {
            src: Ipv4Addr::new(p[26], p[27], p[28], p[29]).into(),
            dst: Ipv4Addr::new(p[30], p[31], p[32], p[33]).into(),
            offset: usize::from(fo & 0x1fff) * 8,
            data: p[14 + hl..14 + tot].to_vec(),
        }
    } else {
        assert_eq!(p[20], 44, "a fragment header");
        let s: [u8; 16] = p[22..38].try_into().unwrap();
        let d: [u8; 16] = p[38..54].try_into().unwrap();
        let fo = u16::from_be_bytes([p[56], p[57]]);
        let plen = usize::from(u16::from_be_bytes([p[18], p[19]]));
        Frag {
            src: Ipv6Addr::from(s).into(),
            dst: Ipv6Addr::from(d).into(),
            offset: usize::from(fo >> 3) * 8,
            data: p[62..54 + plen].to_vec(),
        }
    }
}

/// The addresses (the same in every fragment) and bytes of the datagram
/// `frames` make, any protocol.
fn reassemble_any(frames: &[Vec<u8>]) -> (IpAddr, IpAddr, Vec<u8>) {
    let mut frags: Vec<Frag> = frames.iter().map(|f| parse_frag(f)).collect();
    frags.sort_by_key(|f| f.offset);
    let (src, dst) = (frags[0].src, frags[0].dst);
    let mut d = Vec::new();
    for f in &frags {
        assert_eq!(
            (f.src, f.dst),
            (src, dst),
            "same addresses in every fragment"
        );
        assert_eq!(f.offset, d.len(), "fragments are contiguous");
        d.extend_from_slice(&f.data);
    }
    (src, dst, d)
}

/// The datagram the receiver puts together from `frames`: its addresses
/// (the same in every fragment), its UDP ports, its bytes, and whether its
/// UDP checksum is right.
fn reassemble(frames: &[Vec<u8>]) -> (SocketAddr, SocketAddr, Vec<u8>, bool) {
    let (src, dst, d) = reassemble_any(frames);
    let ok = l4_csum(src, dst, 17, &d) == 0;
    let sport = u16::from_be_bytes([d[0], d[1]]);
    let dport = u16::from_be_bytes([d[2], d[3]]);
    (
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        d,
        ok,
    )
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn frag_entries(dp: &Datapath, v6: bool) -> Vec<(u32, FragPorts)> {
    if v6 {
        dp.frag6_entries()
            .unwrap()
            .into_iter()
            .map(|(k, p)| (u32::from_be(k.id), p))
            .collect()
    } else {
        dp.frag4_entries()
            .unwrap()
            .into_iter()
            .map(|(k, p)| (u32::from(u16::from_be(k.id)), p))
            .collect()
    }
}

fn fam(v6: bool) -> &'static str {
    if v6 {
        "v6"
    } else {
        "v4"
    }
}

// ---- the tests --------------------------------------------------------------

/// First, middle and last fragment of a UDP datagram from pod A to pod B:
/// each delivered to B with conntrack's one entry for the flow, the ports
/// remembered once, the datagram intact; at B's to-container (the reply
/// direction's hook) likewise; every fragment counted.
fn first_middle_last(v6: bool, peer: bool) {
    let tag = format!("fr{}{}", fam(v6), u8::from(peer));
    let (_dir, dp) = setup(&tag, peer, false);
    let (src, dst) = (sa(a(v6), 40000), sa(b(v6), 5000));
    let dgram = udp_datagram(src, dst, 3000);
    let frames = udp_frames(src.ip(), dst.ip(), &dgram, 0x4242, (A_MAC, A_NODE_MAC));
    assert_eq!(frames.len(), 3, "first, middle, last");

    let outs = run_all(
        &dp,
        Program::FromContainer,
        &ctx_from(true),
        &frames,
        TC_ACT_REDIRECT,
        Some(B_IF),
        &format!("{tag}: fragment to B"),
    );
    let (s, d, bytes, ok) = reassemble(&outs);
    assert_eq!((s, d), (src, dst), "{tag}");
    assert_eq!(bytes, dgram, "{tag}: the datagram unchanged");
    assert!(ok, "{tag}: UDP checksum");

    // The first fragment's ports, once; one conntrack entry (+ its related
    // ICMP entry) for all three.
    let fe = frag_entries(&dp, v6);
    assert_eq!(fe.len(), 1, "{tag}: {fe:?}");
    assert_eq!(fe[0].0, 0x4242);
    assert_eq!(
        (fe[0].1.source_port(), fe[0].1.destination_port()),
        (40000, 5000)
    );
    let flows: Vec<(u16, u16, u8)> = ct_entries(&dp, v6, CtTable::Any)
        .iter()
        .filter(|(k, _)| k.nexthdr == 17)
        .map(|(k, _)| (k.sport, k.dport, k.flags))
        .collect();
    // With redirect_peer B's ingress entry is made in the same run.
    assert_eq!(flows.len(), if peer { 2 } else { 1 }, "{tag}: {flows:?}");
    assert!(
        flows.contains(&(40000, 5000, maps::TUPLE_F_OUT)),
        "{tag}: {flows:?}"
    );
    let egress_frags = dp
        .metric(reason::FRAG_PACKET, TrafficDirection::Egress)
        .unwrap();
    assert_eq!(egress_frags, 3, "{tag}");

    // B's to-container sees the same fragments: each passes.
    run_all(
        &dp,
        Program::ToContainer,
        &TestContext::default(),
        &outs,
        TC_ACT_OK,
        None,
        &format!("{tag}: to-container fragment"),
    );
    assert_eq!(
        dp.metric(reason::FRAG_PACKET, TrafficDirection::Ingress)
            .unwrap(),
        3,
        "{tag}: counted once per program run"
    );
    assert_eq!(
        dp.metric(reason::FRAG_NOT_FOUND, TrafficDirection::Egress)
            .unwrap(),
        0
    );

    // From the underlay (another node's pod to B), with redirect_peer the
    // fragments get B's conntrack and policy in from-netdev.
    if peer {
        let far = sa(
            if v6 {
                "fd00:2::7".parse().unwrap()
            } else {
                "10.2.0.7".parse().unwrap()
            },
            41000,
        );
        let dg = udp_datagram(far, dst, 2000);
        let fr = udp_frames(far.ip(), dst.ip(), &dg, 0x77, ([2; 6], [3; 6]));
        let o = run_all(
            &dp,
            Program::FromNetdev,
            &TestContext::default(),
            &fr,
            TC_ACT_REDIRECT,
            None,
            &format!("{tag}: from-netdev fragment"),
        );
        let (_, _, bytes, ok) = reassemble(&o);
        assert_eq!(bytes, dg);
        assert!(ok);
    }
}

#[test]
fn v4_first_middle_last() {
    require_privileges!();
    first_middle_last(false, false);
    first_middle_last(false, true);
}

#[test]
fn v6_first_middle_last() {
    require_privileges!();
    first_middle_last(true, false);
    first_middle_last(true, true);
}

/// A later fragment before the first: dropped as DROP_FRAG_NOT_FOUND and
/// counted; once the first came, the later ones pass. An unfragmented
/// packet and an IPv6 atomic fragment are no fragments.
fn out_of_order(v6: bool) {
    let tag = format!("fo{}", fam(v6));
    let (_dir, dp) = setup(&tag, false, false);
    let (src, dst) = (sa(a(v6), 40001), sa(b(v6), 5001));
    let dgram = udp_datagram(src, dst, 2500);
    let frames = udp_frames(src.ip(), dst.ip(), &dgram, 0x99, (A_MAC, A_NODE_MAC));
    assert_eq!(frames.len(), 3);
    let run = |f: &[u8]| {
        dp.test_run(Program::FromContainer, f, &ctx_from(true))
            .unwrap()
            .retval
    };
    let not_found = || {
        dp.metric(reason::FRAG_NOT_FOUND, TrafficDirection::Egress)
            .unwrap()
    };

    assert_eq!(run(&frames[2]), TC_ACT_SHOT, "{tag}: last before first");
    assert_eq!(run(&frames[1]), TC_ACT_SHOT, "{tag}: middle before first");
    assert_eq!(not_found(), 2, "{tag}");
    assert!(
        frag_entries(&dp, v6).is_empty(),
        "{tag}: nothing remembered"
    );
    assert!(
        !dp.metrics()
            .unwrap()
            .iter()
            .any(|m| m.reason == reason::FORWARDED),
        "{tag}: nothing forwarded"
    );
    assert_eq!(run(&frames[0]), TC_ACT_REDIRECT, "{tag}: first");
    assert_eq!(
        run(&frames[2]),
        TC_ACT_REDIRECT,
        "{tag}: last, after the first"
    );
    assert_eq!(
        run(&frames[1]),
        TC_ACT_REDIRECT,
        "{tag}: middle, after the first"
    );
    assert_eq!(not_found(), 2, "{tag}");
    // Another datagram id of the same flow is another datagram.
    let other = udp_frames(src.ip(), dst.ip(), &dgram, 0x9a, (A_MAC, A_NODE_MAC));
    assert_eq!(run(&other[1]), TC_ACT_SHOT, "{tag}: other datagram");
    assert_eq!(not_found(), 3, "{tag}");

    // IPv6 atomic fragment (offset 0, no M): parsed as a whole packet,
    // nothing remembered.
    if v6 {
        let before = frag_entries(&dp, v6).len();
        let whole = fragments(
            src.ip(),
            dst.ip(),
            17,
            &dgram,
            4096,
            0x9b,
            (A_MAC, A_NODE_MAC),
        );
        assert_eq!(whole.len(), 1);
        assert_eq!(run(&whole[0]), TC_ACT_REDIRECT, "{tag}: atomic fragment");
        assert_eq!(frag_entries(&dp, v6).len(), before);
    }
}

#[test]
fn v4_out_of_order() {
    require_privileges!();
    out_of_order(false);
}

#[test]
fn v6_out_of_order() {
    require_privileges!();
    out_of_order(true);
}

/// B enforces ingress policy, allowing A on UDP 5000 only: every fragment
/// of a datagram to 5000 reaches B, every fragment of one to 6000 is
/// denied (the later ones by the first fragment's port).
fn policy(v6: bool, peer: bool) {
    let tag = format!("fp{}{}", fam(v6), u8::from(peer));
    let (_dir, dp) = setup(&tag, peer, true);
    dp.allow(
        &PolicyKey::new(1002, TrafficDirection::Ingress)
            .identity(A_ID)
            .dport(5000)
            .protocol(17),
    )
    .unwrap();
    // Without redirect_peer, B's ingress policy is at its to-container.
    let deliver = |f: &[u8]| -> u32 {
        let out = dp
            .test_run(Program::FromContainer, f, &ctx_from(true))
            .unwrap();
        if peer || out.retval != TC_ACT_REDIRECT {
            return out.retval;
        }
        let ctx = TestContext::new().mark(0x0F00 | ((A_ID & 0xffff) << 16) | (A_ID >> 16));
        dp.test_run(Program::ToContainer, &out.data, &ctx)
            .unwrap()
            .retval
    };
    let ok_verdict = if peer { TC_ACT_REDIRECT } else { TC_ACT_OK };
    // A datagram from A to B's `port`, fragment by fragment: each allowed,
    // or each dropped and counted under `drop_reason`.
    let datagram_to = |port: u16, allowed: bool, drop_reason: u8| {
        let (src, dst) = (sa(a(v6), 40000 + port), sa(b(v6), port));
        let dgram = udp_datagram(src, dst, 3000);
        let frames = udp_frames(
            src.ip(),
            dst.ip(),
            &dgram,
            u32::from(port),
            (A_MAC, A_NODE_MAC),
        );
        let drops = || dp.metric(drop_reason, TrafficDirection::Ingress).unwrap();
        let before = drops();
        for (i, f) in frames.iter().enumerate() {
            let want = if allowed { ok_verdict } else { TC_ACT_SHOT };
            assert_eq!(deliver(f), want, "{tag}: port {port} fragment {i}");
        }
        assert_eq!(
            drops() - before,
            if allowed { 0 } else { frames.len() as u64 },
            "{tag}: port {port}"
        );
    };

    for (port, allowed) in [(5000u16, true), (6000, false)] {
        datagram_to(port, allowed, reason::POLICY);
    }

    // Without enforcement, an explicit deny of port 7000: the later
    // fragments, which carry no port, are denied by the first one's.
    dp.upsert_endpoint(&ep(b(v6), false, EndpointFlags::empty()))
        .unwrap();
    dp.deny(
        &PolicyKey::new(1002, TrafficDirection::Ingress)
            .identity(A_ID)
            .dport(7000)
            .protocol(17),
    )
    .unwrap();
    for (port, allowed) in [(7000u16, false), (7001, true)] {
        datagram_to(port, allowed, reason::POLICY_DENY);
    }
    assert_eq!(
        dp.metric(reason::FRAG_NOT_FOUND, TrafficDirection::Egress)
            .unwrap(),
        0
    );
}

#[test]
fn v4_policy_applies_to_every_fragment() {
    require_privileges!();
    policy(false, false);
    policy(false, true);
}

#[test]
fn v6_policy_applies_to_every_fragment() {
    require_privileges!();
    policy(true, false);
    policy(true, true);
}

/// A datagram from A to a ClusterIP with backend B (port 80 -> 8080): every
/// fragment reaches B; the first gets its port and L4 checksum rewritten,
/// the later ones their addresses only (their bytes are payload); the
/// datagram B puts together is addressed to B:8080 with a right checksum.
/// B's fragmented reply comes back from the frontend the same way.
fn service(v6: bool, peer: bool) {
    let tag = format!("fs{}{}", fam(v6), u8::from(peer));
    let (_dir, dp) = setup(&tag, peer, false);
    let frontend = sa(vip(v6), 80);
    let backend = sa(b(v6), 8080);
    dp.upsert_service(
        &Service::new(SVC_ID, frontend, L4Protocol::Udp).backend(Backend::new(backend)),
    )
    .unwrap();
    let client = sa(a(v6), 40123);

    for id in [0x1001u32, 0x1002] {
        let dgram = udp_datagram(client, frontend, 3000);
        let frames = udp_frames(client.ip(), frontend.ip(), &dgram, id, (A_MAC, A_NODE_MAC));
        let outs = run_all(
            &dp,
            Program::FromContainer,
            &ctx_from(true),
            &frames,
            TC_ACT_REDIRECT,
            Some(B_IF),
            &format!("{tag}: fragment to the backend"),
        );
        for (i, (f, out)) in frames.iter().zip(&outs).enumerate().skip(1) {
            // No L4 header: the payload bytes are untouched.
            let fin = parse_frag(f);
            let fout = parse_frag(out);
            assert_eq!(fout.data, fin.data, "{tag}: later fragment {i}'s data");
            assert_eq!(fout.dst, backend.ip(), "{tag}: later fragment {i} DNATed");
        }
        let (s, d, bytes, ok) = reassemble(&outs);
        assert_eq!((s, d), (client, backend), "{tag}: DNAT of the datagram");
        assert!(ok, "{tag}: UDP checksum of the datagram after DNAT");
        assert_eq!(bytes[8..], dgram[8..], "{tag}: payload");
    }

    // The backend's reply, fragmented: back from the frontend.
    let reply = udp_datagram(backend, client, 2600);
    let frames = udp_frames(
        backend.ip(),
        client.ip(),
        &reply,
        0x2001,
        (B_MAC, B_NODE_MAC),
    );
    // Translated back at B's from-container (redirect_peer), else at A's
    // to-container.
    let outs = if peer {
        run_all(
            &dp,
            Program::FromContainer,
            &ctx_from(false),
            &frames,
            TC_ACT_REDIRECT,
            Some(A_IF),
            &format!("{tag}: reply fragment"),
        )
    } else {
        run_all(
            &dp,
            Program::ToContainer,
            &TestContext::default(),
            &frames,
            TC_ACT_OK,
            None,
            &format!("{tag}: reply fragment at A's to-container"),
        )
    };
    let (s, d, _, ok) = reassemble(&outs);
    assert_eq!(
        (s, d),
        (frontend, client),
        "{tag}: reverse NAT of the reply"
    );
    assert!(ok, "{tag}: UDP checksum of the reply after reverse NAT");
}

#[test]
fn v4_service_fragments_reach_the_backend() {
    require_privileges!();
    service(false, false);
    service(false, true);
}

#[test]
fn v6_service_fragments_reach_the_backend() {
    require_privileges!();
    service(true, false);
    service(true, true);
}

/// Large pings (ICMP echo datagrams) are tracked too: the identifier.
#[test]
fn icmp_echo_fragments() {
    require_privileges!();
    let (_dir, dp) = setup("ficmp", true, false);
    for v6 in [false, true] {
        let mut echo = icmp_echo(true, v6, 0x3131, 1);
        echo.resize(3000, 0xab);
        let (src, dst) = (a(v6), b(v6));
        let proto = if v6 { 58 } else { 1 };
        let frames = fragments(src, dst, proto, &echo, 1232, 0x5151, (A_MAC, A_NODE_MAC));
        run_all(
            &dp,
            Program::FromContainer,
            &ctx_from(true),
            &frames,
            TC_ACT_REDIRECT,
            None,
            &format!("{}: echo fragment", fam(v6)),
        );
        let fe = frag_entries(&dp, v6);
        assert_eq!(fe.len(), 1, "{fe:?}");
        assert_eq!(fe[0].1.source_port(), 0x3131);
    }
}

/// The maps are pinned: a datapath loaded again (an agent restart) knows
/// the datagrams whose first fragment the old one saw.
#[test]
fn fragment_maps_survive_a_reload() {
    require_privileges!();
    let (dir, dp) = setup("freload", false, false);
    let paths = dp.frag_map_paths();
    assert!(paths.v4.exists() && paths.v6.exists());
    let mut later = Vec::new();
    for v6 in [false, true] {
        let (src, dst) = (sa(a(v6), 40002), sa(b(v6), 5002));
        let dgram = udp_datagram(src, dst, 2000);
        let frames = udp_frames(src.ip(), dst.ip(), &dgram, 0x6161, (A_MAC, A_NODE_MAC));
        let out = dp
            .test_run(Program::FromContainer, &frames[0], &ctx_from(true))
            .unwrap();
        assert_eq!(out.retval, TC_ACT_REDIRECT);
        later.push(frames[1].clone());
    }
    assert!(dp.frag_pressure(false).unwrap() > 0.0);
    drop(dp);
    let dp = Datapath::load(&opts(&dir, false)).expect("reload");
    assert_eq!(frag_entries(&dp, false).len(), 1);
    assert_eq!(frag_entries(&dp, true).len(), 1);
    let p = dp.frag_pressure(true).unwrap();
    // One datagram in Options::small's 1024 entries.
    assert!((p - 1.0 / 1024.0).abs() < 1e-9, "pressure {p}");
    run_all(
        &dp,
        Program::FromContainer,
        &ctx_from(true),
        &later,
        TC_ACT_REDIRECT,
        None,
        "later fragment after the reload",
    );
    // A map of another size pinned there is refused, not silently re-sized.
    drop(dp);
    let e = Datapath::load(&opts(&dir, false).frag_size(2048)).unwrap_err();
    assert!(matches!(e, Error::PinMismatch { .. }), "{e}");
}

/// NodePort from the underlay (a client beyond the node) to a local
/// backend: every fragment is translated and delivered, the datagram right;
/// the backend's fragmented reply leaves from the frontend. Fragments for
/// the node itself (no frontend, or a later one before the first) pass to
/// the stack, never dropped.
fn nodeport(v6: bool, peer: bool) {
    let tag = format!("fn{}{}", fam(v6), u8::from(peer));
    let (_dir, dp) = setup(&tag, peer, false);
    let (node, client): (IpAddr, IpAddr) = if v6 {
        (
            "fd00:100::1".parse().unwrap(),
            "fd00:100::9".parse().unwrap(),
        )
    } else {
        (
            "192.168.100.1".parse().unwrap(),
            "192.168.100.9".parse().unwrap(),
        )
    };
    let fe = sa(node, 30080);
    let backend = sa(b(v6), 8080);
    dp.upsert_service(
        &Service::new(SVC_ID, fe, L4Protocol::Udp)
            .kind(ServiceKind::NodePort)
            .backend(Backend::new(backend)),
    )
    .unwrap();
    let cl = sa(client, 5555);
    let dgram = udp_datagram(cl, fe, 3000);
    let frames = udp_frames(cl.ip(), fe.ip(), &dgram, 0x3003, ([2; 6], [3; 6]));
    let outs = run_all(
        &dp,
        Program::FromNetdev,
        &TestContext::default(),
        &frames,
        TC_ACT_REDIRECT,
        Some(B_IF),
        &format!("{tag}: fragment to the backend"),
    );
    let (s, d, _, ok) = reassemble(&outs);
    assert_eq!(
        (s, d),
        (cl, backend),
        "{tag}: NodePort DNAT of the datagram"
    );
    assert!(ok, "{tag}: checksum after NodePort DNAT");

    let reply = udp_datagram(backend, cl, 2600);
    let frames = udp_frames(backend.ip(), cl.ip(), &reply, 0x3004, (B_MAC, B_NODE_MAC));
    let outs = run_all(
        &dp,
        Program::FromContainer,
        &ctx_from(false),
        &frames,
        TC_ACT_OK,
        None,
        &format!("{tag}: reply fragment to the stack"),
    );
    let (s, d, _, ok) = reassemble(&outs);
    assert_eq!((s, d), (fe, cl), "{tag}: reply from the NodePort frontend");
    assert!(ok, "{tag}: checksum after reverse NAT");

    // For the node: untouched, in any order.
    let to_node = sa(node, 22);
    let dgram = udp_datagram(cl, to_node, 3000);
    let mut frames = udp_frames(cl.ip(), to_node.ip(), &dgram, 0x3005, ([2; 6], [3; 6]));
    frames.reverse();
    let outs = run_all(
        &dp,
        Program::FromNetdev,
        &TestContext::default(),
        &frames,
        TC_ACT_OK,
        None,
        &format!("{tag}: node fragment"),
    );
    assert_eq!(outs, frames, "{tag}: node fragments untouched");
    assert_eq!(
        dp.metric(reason::FRAG_NOT_FOUND, TrafficDirection::Ingress)
            .unwrap(),
        0
    );
}

#[test]
fn v4_nodeport_fragments() {
    require_privileges!();
    nodeport(false, false);
    nodeport(false, true);
}

#[test]
fn v6_nodeport_fragments() {
    require_privileges!();
    nodeport(true, false);
    nodeport(true, true);
}

// ---- masquerade (SNAT) of fragments -----------------------------------------

/// Test runs happen on the loopback device: the masquerade address is its.
const LO: u32 = 1;
const GW_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];

fn node(v6: bool) -> IpAddr {
    if v6 {
        "2001:db8:50::1".parse().unwrap()
    } else {
        "192.168.50.1".parse().unwrap()
    }
}
fn outside(v6: bool) -> IpAddr {
    if v6 {
        "2001:db8:99::5".parse().unwrap()
    } else {
        "203.0.113.5".parse().unwrap()
    }
}

/// Pods A and B, masquerading both families to `node(v6)` on "lo" beyond
/// the native-routing CIDRs 10.0.0.0/8 and fd00::/16, ports `min..=max`.
fn setup_masq(tag: &str, peer: bool, min: u16, max: u16) -> (BpfDir, Datapath) {
    let dir = BpfDir::new(tag);
    let m = Masquerade::new()
        .ipv4(true)
        .ipv6(true)
        .ipv4_native_routing_cidr("10.0.0.0/8".parse().unwrap())
        .ipv6_native_routing_cidr("fd00::/16".parse().unwrap())
        .port_range(min, max);
    let dp = Datapath::load(&opts(&dir, peer).masquerade(m)).expect("load");
    add_pods(&dp, &both_families(), EndpointFlags::empty());
    for v6 in [false, true] {
        dp.set_masquerade_address(LO, node(v6)).unwrap();
    }
    (dir, dp)
}

fn from_netdev() -> TestContext {
    TestContext::new()
}

/// Pod A's fragment through from-container (which must hand it to the
/// stack) and to-netdev: to-netdev's verdict and output.
fn leave(dp: &Datapath, f: &[u8], what: &str) -> (u32, Vec<u8>) {
    let fc = dp
        .test_run(Program::FromContainer, f, &ctx_from(true))
        .unwrap();
    assert_eq!(fc.retval, TC_ACT_OK, "{what}: from-container to the stack");
    let tn = dp
        .test_run(Program::ToNetdev, &fc.data, &TestContext::new())
        .unwrap();
    (tn.retval, tn.data)
}

/// A fragmented UDP datagram from pod A to the outside, from a port
/// outside the range (so the first fragment's port and L4 checksum
/// change): every fragment leaves from the node, the later ones with only
/// their address (and IPv4 header checksum) rewritten; the datagram the
/// outside puts together is from node:port with a right checksum. The
/// outside's fragmented reply to node:port (first fragment, then the last,
/// then the middle) reaches A whole, from the outside.
fn masquerade(v6: bool, peer: bool) {
    let tag = format!("fm{}{}", fam(v6), u8::from(peer));
    let (_dir, dp) = setup_masq(&tag, peer, 40000, 40999);
    let pod = sa(a(v6), 1234);
    let far = sa(outside(v6), 5353);
    let dgram = udp_datagram(pod, far, 3000);
    let frames = udp_frames(pod.ip(), far.ip(), &dgram, 0x7001, (A_MAC, A_NODE_MAC));
    assert_eq!(frames.len(), 3);
    let mut outs = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let (verdict, out) = leave(&dp, f, &tag);
        assert_eq!(verdict, TC_ACT_OK, "{tag}: fragment {i} leaves");
        let (fin, fout) = (parse_frag(f), parse_frag(&out));
        assert_eq!(
            (fout.src, fout.dst),
            (node(v6), far.ip()),
            "{tag}: fragment {i} from the node"
        );
        if i > 0 {
            assert_eq!(fout.data, fin.data, "{tag}: later fragment {i}'s data");
        }
        outs.push(out);
    }
    let (s, d, bytes, ok) = reassemble(&outs);
    assert_eq!(
        (s.ip(), d),
        (node(v6), far),
        "{tag}: the datagram's addresses"
    );
    let port = s.port();
    assert!(
        (40000..=40999).contains(&port),
        "{tag}: port {port} in range"
    );
    assert!(ok, "{tag}: UDP checksum of the datagram after SNAT");
    assert_eq!(bytes[8..], dgram[8..], "{tag}: payload");
    // The datagram's entry is the pod's (before translation): the later
    // fragments find the forward mapping with its ports.
    let fe = frag_entries(&dp, v6);
    assert!(
        fe.iter().any(|(id, p)| *id == 0x7001
            && (p.source_port(), p.destination_port()) == (1234, 5353)),
        "{tag}: {fe:?}"
    );
    let nat = if v6 {
        dp.snat6_entries().unwrap().len()
    } else {
        dp.snat4_entries().unwrap().len()
    };
    assert_eq!(nat, 2, "{tag}: one mapping (a pair) for the datagram");

    let reply = udp_datagram(far, sa(node(v6), port), 2600);
    let frames = udp_frames(far.ip(), node(v6), &reply, 0x7002, (GW_MAC, A_NODE_MAC));
    let mut outs = Vec::new();
    for i in [0, 2, 1] {
        let fr = dp
            .test_run(Program::FromNetdev, &frames[i], &from_netdev())
            .unwrap();
        assert_eq!(fr.retval, TC_ACT_REDIRECT, "{tag}: reply fragment {i}");
        assert_eq!(dp.last_redirect().unwrap(), Some(A_IF), "{tag}: to A");
        if i > 0 {
            let (fin, fout) = (parse_frag(&frames[i]), parse_frag(&fr.data));
            assert_eq!(
                fout.data, fin.data,
                "{tag}: later reply fragment {i}'s data"
            );
        }
        outs.push(fr.data);
    }
    let (s, d, _, ok) = reassemble(&outs);
    assert_eq!((s, d), (far, pod), "{tag}: the reply to the pod");
    assert!(ok, "{tag}: UDP checksum of the reply after reverse SNAT");
    for dir in [TrafficDirection::Egress, TrafficDirection::Ingress] {
        assert_eq!(dp.metric(reason::FRAG_NOT_FOUND, dir).unwrap(), 0, "{tag}");
    }
}

#[test]
fn v4_masquerade_fragments() {
    require_privileges!();
    masquerade(false, false);
    masquerade(false, true);
}

#[test]
fn v6_masquerade_fragments() {
    require_privileges!();
    masquerade(true, false);
    masquerade(true, true);
}

/// Out of order: a pod's later fragment at to-netdev before its first (as
/// when from-container saw the datagram addressed to a service frontend)
/// is dropped as DROP_FRAG_NOT_FOUND and counted; once the first came it
/// leaves translated. A reply's later fragment before its first at
/// from-netdev may be the node's own traffic: the stack's, untouched, no
/// drop; the ones after the first reach the pod. Fragments that are not the
/// masquerade's (the node's own, pod to pod, a pod flow without conntrack
/// entry) leave untouched.
fn masquerade_out_of_order(v6: bool) {
    let tag = format!("fmo{}", fam(v6));
    let (_dir, dp) = setup_masq(&tag, false, 32768, 65535);
    let pod = sa(a(v6), 40100);
    let far = sa(outside(v6), 5353);
    let dgram = udp_datagram(pod, far, 2500);
    let frames = udp_frames(pod.ip(), far.ip(), &dgram, 0x7101, (A_MAC, A_NODE_MAC));
    let to_netdev = |f: &[u8]| {
        let o = dp
            .test_run(Program::ToNetdev, f, &TestContext::new())
            .unwrap();
        (o.retval, o.data)
    };
    let not_found = |dir| dp.metric(reason::FRAG_NOT_FOUND, dir).unwrap();

    assert_eq!(to_netdev(&frames[1]).0, TC_ACT_SHOT, "{tag}: middle first");
    assert_eq!(not_found(TrafficDirection::Egress), 1, "{tag}: counted");
    let (verdict, first) = leave(&dp, &frames[0], &tag);
    assert_eq!(verdict, TC_ACT_OK, "{tag}: first");
    let port = parse_frag(&first).data[..2].to_vec();
    assert_eq!(port, 40100u16.to_be_bytes(), "{tag}: port kept");
    for i in [1, 2] {
        let (verdict, out) = to_netdev(&frames[i]);
        assert_eq!(verdict, TC_ACT_OK, "{tag}: fragment {i} after the first");
        assert_eq!(
            parse_frag(&out).src,
            node(v6),
            "{tag}: fragment {i} translated"
        );
    }
    assert_eq!(not_found(TrafficDirection::Egress), 1, "{tag}");

    let reply = udp_datagram(far, sa(node(v6), 40100), 2500);
    let rframes = udp_frames(far.ip(), node(v6), &reply, 0x7102, (GW_MAC, A_NODE_MAC));
    let early = dp
        .test_run(Program::FromNetdev, &rframes[2], &from_netdev())
        .unwrap();
    assert_eq!(early.retval, TC_ACT_OK, "{tag}: early reply fragment");
    assert_eq!(early.data, rframes[2], "{tag}: to the stack untouched");
    assert_eq!(not_found(TrafficDirection::Ingress), 0, "{tag}: no drop");
    let mut outs = Vec::new();
    for i in [0, 2, 1] {
        let fr = dp
            .test_run(Program::FromNetdev, &rframes[i], &from_netdev())
            .unwrap();
        assert_eq!(fr.retval, TC_ACT_REDIRECT, "{tag}: reply fragment {i}");
        outs.push(fr.data);
    }
    let (s, d, _, ok) = reassemble(&outs);
    assert_eq!((s, d), (far, pod), "{tag}: the reply to the pod");
    assert!(ok, "{tag}: UDP checksum of the reply");

    // Not the masquerade's: untouched, never dropped (the node's own and
    // pod to pod in any order; a pod's datagram is the masquerade's until
    // it finds no mapping, and needs its first fragment first).
    let host = sa(node(v6), 40200);
    let other_pod = sa(b(v6), 5000);
    let no_ct = sa(a(v6), 40300); // never through from-container
    for (src, dst, reverse, what) in [
        (host, far, true, "the node's own"),
        (pod, other_pod, true, "pod to pod"),
        (no_ct, far, false, "a pod flow without CT entry"),
    ] {
        let dg = udp_datagram(src, dst, 2500);
        let mut fr = udp_frames(src.ip(), dst.ip(), &dg, 0x7103, (A_MAC, A_NODE_MAC));
        if reverse {
            fr.reverse();
        }
        for (i, f) in fr.iter().enumerate() {
            let (verdict, out) = to_netdev(f);
            assert_eq!(verdict, TC_ACT_OK, "{tag}: {what}, fragment {i}");
            assert_eq!(&out, f, "{tag}: {what}, fragment {i} untouched");
        }
    }
    assert_eq!(not_found(TrafficDirection::Egress), 1, "{tag}");
}

#[test]
fn v4_masquerade_fragments_out_of_order() {
    require_privileges!();
    masquerade_out_of_order(false);
}

#[test]
fn v6_masquerade_fragments_out_of_order() {
    require_privileges!();
    masquerade_out_of_order(true);
}

/// A large ping from pod A to the outside: the echo request's fragments
/// leave from the node with the identifier mapped (the ICMP checksum,
/// ICMPv6's over its pseudo header, right for the whole message), the
/// fragmented echo reply reaches A with A's identifier.
#[test]
fn masquerade_icmp_echo_fragments() {
    require_privileges!();
    let (_dir, dp) = setup_masq("fmicmp", true, 32768, 65535);
    for v6 in [false, true] {
        let proto = if v6 { 58 } else { 1 };
        let (pod, far) = (a(v6), outside(v6));
        let mut echo = icmp_echo(true, v6, 0x0101, 1);
        echo.resize(3000, 0xab);
        let echo = icmp_fill(pod, far, proto, echo);
        let frames = fragments(pod, far, proto, &echo, 1232, 0x7201, (A_MAC, A_NODE_MAC));
        let mut outs = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let (verdict, out) = leave(&dp, f, fam(v6));
            assert_eq!(verdict, TC_ACT_OK, "{}: echo fragment {i}", fam(v6));
            outs.push(out);
        }
        let (src, dst, msg) = reassemble_any(&outs);
        assert_eq!((src, dst), (node(v6), far), "{}: from the node", fam(v6));
        assert_eq!(
            icmp_sum(src, dst, proto, &msg),
            0,
            "{}: ICMP checksum",
            fam(v6)
        );
        let id = u16::from_be_bytes([msg[4], msg[5]]);
        assert!(
            id >= 32768,
            "{}: identifier {id} mapped into the range",
            fam(v6)
        );
        assert_eq!(msg[8..], echo[8..], "{}: payload", fam(v6));

        let mut reply = icmp_echo(false, v6, id, 1);
        reply.resize(3000, 0xcd);
        let reply = icmp_fill(far, node(v6), proto, reply);
        let frames = fragments(
            far,
            node(v6),
            proto,
            &reply,
            1232,
            0x7202,
            (GW_MAC, A_NODE_MAC),
        );
        let outs = run_all(
            &dp,
            Program::FromNetdev,
            &from_netdev(),
            &frames,
            TC_ACT_REDIRECT,
            None,
            &format!("{}: reply fragment", fam(v6)),
        );
        let (src, dst, msg) = reassemble_any(&outs);
        assert_eq!((src, dst), (far, pod), "{}: reply to the pod", fam(v6));
        assert_eq!(
            icmp_sum(src, dst, proto, &msg),
            0,
            "{}: reply checksum",
            fam(v6)
        );
        assert_eq!(
            u16::from_be_bytes([msg[4], msg[5]]),
            0x0101,
            "{}: A's id",
            fam(v6)
        );
    }
}

/// The ICMP checksum of `msg` (ICMPv6: over its pseudo header too); 0 when
/// the one in it is right.
fn icmp_sum(src: IpAddr, dst: IpAddr, proto: u8, msg: &[u8]) -> u16 {
    if proto == 58 {
        l4_csum(src, dst, proto, msg)
    } else {
        csum(msg)
    }
}

fn icmp_fill(src: IpAddr, dst: IpAddr, proto: u8, mut msg: Vec<u8>) -> Vec<u8> {
    msg[2..4].copy_from_slice(&[0, 0]);
    let c = icmp_sum(src, dst, proto, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    msg
}
