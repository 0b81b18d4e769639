//! The conntrack crate's NAT half against the datapath's own SNAT maps
//! (filled by masqueraded flows run through `BPF_PROG_TEST_RUN`): GC of a
//! CT entry removes the mapping it owns (Cilium's `DeleteMapping4/6` from
//! `purgeCtEntry`), the orphan purge finds exactly the mappings whose CT
//! entry was deleted behind its back, and the dump is `cilium bpf nat list`'s.

use std::net::{IpAddr, SocketAddr};

use podnet_conntrack::nat::{dump_nat_entries, purge_orphan_nat_entries, NatMap};
use podnet_conntrack::{gc, CtMap, Direction, GcFilter};
use podnet_datapath::{Datapath, Endpoint, Masquerade, Options, Program, TestContext};
use testsupport::{require_privileges, BpfDir};

const POD_IF: u32 = 10;
const LO: u32 = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An Ethernet frame with a TCP SYN or UDP datagram (L4 checksum 0: the
/// rewrites here are incremental, what is checked is the maps).
fn packet(src: SocketAddr, dst: SocketAddr, proto: u8) -> Vec<u8> {
    let mut l4 = vec![0u8; if proto == 6 { 20 } else { 8 }];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    if proto == 6 {
        l4[12] = 5 << 4;
        l4[13] = 0x02;
    } else {
        l4[4..6].copy_from_slice(&8u16.to_be_bytes());
    }
    let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    p.extend_from_slice(&l4);
    p
}

/// A masquerading datapath with one pod, and `flows` run out through it.
fn setup(tag: &str, flows: &[(SocketAddr, SocketAddr, u8)]) -> (BpfDir, Datapath) {
    let dir = BpfDir::new(tag);
    let m = Masquerade::new()
        .ipv4(true)
        .ipv6(true)
        .ipv4_native_routing_cidr("10.0.0.0/8".parse().unwrap())
        .ipv6_native_routing_cidr("fd00::/16".parse().unwrap());
    let dp = Datapath::load(&Options::small(dir.join("globals")).masquerade(m)).unwrap();
    for pod in ["10.1.0.2", "fd00:1::2"] {
        dp.upsert_endpoint(&Endpoint::new(ip(pod), POD_IF).id(1001).identity(6001))
            .unwrap();
    }
    dp.set_masquerade_address(LO, ip("192.168.50.1")).unwrap();
    dp.set_masquerade_address(LO, ip("2001:db8:50::1")).unwrap();
    for (src, dst, proto) in flows {
        let fc = dp
            .test_run(
                Program::FromContainer,
                &packet(*src, *dst, *proto),
                &TestContext::new().ingress_ifindex(POD_IF),
            )
            .unwrap();
        dp.test_run(Program::ToNetdev, &fc.data, &TestContext::new())
            .unwrap();
    }
    (dir, dp)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn flows4() -> Vec<(SocketAddr, SocketAddr, u8)> {
    vec![
        (sa("10.1.0.2:40000"), sa("203.0.113.5:80"), 6),
        (sa("10.1.0.2:40001"), sa("203.0.113.6:80"), 6),
        (sa("10.1.0.2:40002"), sa("203.0.113.7:53"), 17),
    ]
}

fn flows6() -> Vec<(SocketAddr, SocketAddr, u8)> {
    vec![
        (sa("[fd00:1::2]:40000"), sa("[2001:db8:99::5]:80"), 6),
        (sa("[fd00:1::2]:40002"), sa("[2001:db8:99::7]:53"), 17),
    ]
}

/// The pinned maps, opened by path through the conntrack crate.
struct Maps {
    tcp4: CtMap,
    any4: CtMap,
    tcp6: CtMap,
    any6: CtMap,
    nat4: NatMap,
    nat6: NatMap,
}

fn maps(dp: &Datapath) -> Maps {
    let ct = dp.ct_map_paths();
    let nat = dp.nat_map_paths();
    Maps {
        tcp4: CtMap::open(&ct.tcp4).unwrap(),
        any4: CtMap::open(&ct.any4).unwrap(),
        tcp6: CtMap::open(&ct.tcp6).unwrap(),
        any6: CtMap::open(&ct.any6).unwrap(),
        nat4: NatMap::open(&nat.v4).unwrap(),
        nat6: NatMap::open(&nat.v6).unwrap(),
    }
}

#[test]
fn gc_of_a_ct_entry_removes_the_nat_mapping_it_owns() {
    require_privileges!();
    let mut flows = flows4();
    flows.extend(flows6());
    let (_dir, dp) = setup("natgc", &flows);
    let m = maps(&dp);
    assert_eq!(m.nat4.count().unwrap(), 6, "a pair per IPv4 flow");
    assert_eq!(m.nat6.count().unwrap(), 4, "a pair per IPv6 flow");

    // GC the flows to 203.0.113.5 and 2001:db8:99::5 (TCP): their pairs go.
    for (ct, nat, peer) in [
        (&m.tcp4, &m.nat4, "203.0.113.5"),
        (&m.tcp6, &m.nat6, "2001:db8:99::5"),
    ] {
        let mut f = GcFilter::new().match_ips([ip(peer)]).nat(nat);
        let stats = gc(ct, &mut f).unwrap();
        assert_eq!(stats.deleted, 1, "{peer}: {stats:?}");
        assert_eq!(
            stats.nat_deleted, 2,
            "{peer}: the forward and reverse entries"
        );
    }
    assert_eq!(m.nat4.count().unwrap(), 4);
    assert_eq!(m.nat6.count().unwrap(), 2);
    let left: Vec<String> = m
        .nat4
        .entries()
        .unwrap()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert!(
        left.iter().all(|k| !k.contains("203.0.113.5")),
        "no entry of the collected flow left: {left:?}"
    );

    // The UDP flow's entry lives in the "any" map; GC there takes its pair.
    let mut f = GcFilter::new().match_ips([ip("203.0.113.7")]).nat(&m.nat4);
    let stats = gc(&m.any4, &mut f).unwrap();
    assert_eq!(stats.nat_deleted, 2, "{stats:?}");
    assert_eq!(m.nat4.count().unwrap(), 2);
}

#[test]
fn orphan_purge_finds_exactly_the_orphans_in_the_datapaths_maps() {
    require_privileges!();
    let mut flows = flows4();
    flows.extend(flows6());
    let (_dir, dp) = setup("natorph", &flows);
    let m = maps(&dp);

    // Nothing is an orphan yet.
    let s = purge_orphan_nat_entries(&m.tcp4, &m.any4, &m.nat4).unwrap();
    assert_eq!((s.egress_deleted, s.ingress_deleted), (0, 0), "{s:?}");
    assert_eq!((s.egress_alive, s.ingress_alive), (3, 3), "{s:?}");

    // Delete two IPv4 flows' CT entries and one IPv6 one behind its back.
    for (ct, src, dst, proto) in [
        (&m.tcp4, "10.1.0.2:40001", "203.0.113.6:80", 6),
        (&m.any4, "10.1.0.2:40002", "203.0.113.7:53", 17),
        (&m.any6, "[fd00:1::2]:40002", "[2001:db8:99::7]:53", 17),
    ] {
        let key = CtMap::flow_key(sa(src), sa(dst), proto, Direction::Egress).unwrap();
        assert!(
            ct.delete(&key).unwrap(),
            "{src} -> {dst}: the datapath's CT key"
        );
    }
    let s = purge_orphan_nat_entries(&m.tcp4, &m.any4, &m.nat4).unwrap();
    assert_eq!((s.egress_deleted, s.ingress_deleted), (2, 2), "{s:?}");
    assert_eq!((s.egress_alive, s.ingress_alive), (1, 1), "{s:?}");
    let s = purge_orphan_nat_entries(&m.tcp6, &m.any6, &m.nat6).unwrap();
    assert_eq!((s.egress_deleted, s.ingress_deleted), (1, 1), "{s:?}");
    assert_eq!((s.egress_alive, s.ingress_alive), (1, 1), "{s:?}");

    // What is left is the live flows' pairs.
    let text = dump_nat_entries(&m.nat4).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(
            "TCP OUT 10.1.0.2:40000 -> 203.0.113.5:80 XLATE_SRC 192.168.50.1:40000 Created="
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "TCP IN 203.0.113.5:80 -> 192.168.50.1:40000 XLATE_DST 10.1.0.2:40000 Created="
        ),
        "{text}"
    );
    assert!(text.lines().all(|l| l.ends_with("NeedsCT=0")), "{text}");
    let s = purge_orphan_nat_entries(&m.tcp4, &m.any4, &m.nat4).unwrap();
    assert_eq!(
        (s.egress_deleted, s.ingress_deleted),
        (0, 0),
        "a second pass finds none"
    );
}
