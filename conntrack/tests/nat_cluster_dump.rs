//! Orphan SNAT purge, per-cluster maps, upgrade deletion and dump text.

mod common;

use common::*;
use podnet_conntrack::cluster::{outer_map_name, PerClusterCtMaps};
use podnet_conntrack::nat::{purge_orphan_nat_entries, NatEntry, NatMap};
use podnet_conntrack::{
    dump_entries, dump_entries_with_time_diff, AnyCtKey, ClockSource, CreateOptions, CtKey4, CtMap,
    CtMapKind, CtSizes, Direction, EntryFlags, Error, IpFamily, TupleFlags,
};
use std::net::Ipv4Addr;
use testsupport::{require_privileges, BpfDir};

fn ct(dir: &BpfDir, name: &str) -> CtMap {
    CtMap::create(
        &CreateOptions::new(CtMapKind::from_name(name).unwrap())
            .max_entries(1024)
            .pin_in(dir.path()),
    )
    .unwrap()
}

fn k4(d: [u8; 4], s: [u8; 4], dport: u16, sport: u16, proto: u8, f: TupleFlags) -> AnyCtKey {
    AnyCtKey::V4(CtKey4::new(d.into(), s.into(), dport, sport, proto, f))
}

/// Writes the SNAT pair of a pod's flow `pod -> remote` translated to `snat`
/// and returns its keys: the egress key is the packet's tuple (daddr remote,
/// saddr pod) mapping to `snat`; the reverse key is the reply `remote ->
/// snat` (`TUPLE_F_IN`) mapping back to the pod.
fn snat_pair(
    nat: &NatMap,
    pod: ([u8; 4], u16),
    remote: ([u8; 4], u16),
    snat: ([u8; 4], u16),
    proto: u8,
) -> (AnyCtKey, AnyCtKey) {
    let out = k4(remote.0, pod.0, remote.1, pod.1, proto, TupleFlags::OUT);
    nat.update(&out, &NatEntry::new(Ipv4Addr::from(snat.0).into(), snat.1))
        .unwrap();
    let rev = k4(snat.0, remote.0, snat.1, remote.1, proto, TupleFlags::IN);
    nat.update(&rev, &NatEntry::new(Ipv4Addr::from(pod.0).into(), pod.1))
        .unwrap();
    (out, rev)
}

#[test]
fn orphan_snat_entries_are_purged_as_cilium_does() {
    require_privileges!();
    let dir = BpfDir::new("ct-nat");
    let tcp = ct(&dir, "cilium_ct4_global");
    let any = ct(&dir, "cilium_ct_any4_global");
    let nat = NatMap::create(IpFamily::V4, 1024, Some(dir.path())).unwrap();
    let nat = {
        drop(nat);
        NatMap::open_named(dir.path(), podnet_conntrack::nat::MAP_NAME_SNAT4).unwrap()
    };

    // Flow A (TCP), pod 10.0.0.5:40000 -> 1.1.1.1:443, SNAT to 192.168.1.1:33000,
    // with its CT entry (built the way Cilium's Lookup builds it).
    let ct_a = CtMap::flow_key(
        "10.0.0.5:40000".parse().unwrap(),
        "1.1.1.1:443".parse().unwrap(),
        6,
        Direction::Egress,
    )
    .unwrap();
    tcp.update(&ct_a, &entry(100, 1)).unwrap();
    let (a_out, a_in) = snat_pair(
        &nat,
        ([10, 0, 0, 5], 40000),
        ([1, 1, 1, 1], 443),
        ([192, 168, 1, 1], 33000),
        6,
    );

    // Flow B (UDP) the same way but its CT entry is gone (LRU eviction):
    // both SNAT entries are orphans.
    let (b_out, b_in) = snat_pair(
        &nat,
        ([10, 0, 0, 6], 5353),
        ([8, 8, 8, 8], 53),
        ([192, 168, 1, 1], 33001),
        17,
    );
    // A UDP CT entry for flow B in the *TCP* map does not keep it alive.
    let ct_b = CtMap::flow_key(
        "10.0.0.6:5353".parse().unwrap(),
        "8.8.8.8:53".parse().unwrap(),
        17,
        Direction::Egress,
    )
    .unwrap();
    tcp.update(&ct_b, &entry(100, 2)).unwrap();

    // Flow C (TCP, DSR): egress SNAT entry kept by a CT entry with ports
    // swapped and DSRInternal set; flow D the same without the flag: orphan.
    let c_out = k4([10, 0, 0, 7], [10, 0, 1, 9], 80, 8080, 6, TupleFlags::OUT);
    nat.update(&c_out, &NatEntry::new("172.16.0.1".parse().unwrap(), 80))
        .unwrap();
    let mut dsr = entry(100, 3);
    dsr.set_flags(EntryFlags::DSR_INTERNAL);
    tcp.update(
        &k4([10, 0, 0, 7], [10, 0, 1, 9], 8080, 80, 6, TupleFlags::OUT),
        &dsr,
    )
    .unwrap();
    let d_out = k4([10, 0, 0, 8], [10, 0, 1, 9], 80, 8080, 6, TupleFlags::OUT);
    nat.update(&d_out, &NatEntry::new("172.16.0.1".parse().unwrap(), 81))
        .unwrap();
    tcp.update(
        &k4([10, 0, 0, 8], [10, 0, 1, 9], 8080, 80, 6, TupleFlags::OUT),
        &entry(100, 4),
    )
    .unwrap();

    let stats = purge_orphan_nat_entries(&tcp, &any, &nat).unwrap();
    assert_eq!(stats.scanned, 6);
    assert_eq!(stats.ingress_alive, 1);
    assert_eq!(stats.ingress_deleted, 1);
    assert_eq!(stats.egress_alive, 2);
    assert_eq!(stats.egress_deleted, 2);
    assert!(nat.lookup(&a_out).unwrap().is_some());
    assert!(nat.lookup(&a_in).unwrap().is_some());
    assert!(nat.lookup(&c_out).unwrap().is_some());
    assert!(nat.lookup(&b_out).unwrap().is_none());
    assert!(nat.lookup(&b_in).unwrap().is_none());
    assert!(nat.lookup(&d_out).unwrap().is_none());
    assert_eq!(nat.count().unwrap(), 3);
    // Mixed families are refused.
    let ct6 = ct(&dir, "cilium_ct6_global");
    assert!(matches!(
        purge_orphan_nat_entries(&ct6, &any, &nat),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn snat_layout_against_bpftool() {
    require_privileges!();
    let dir = BpfDir::new("ct-natlayout");
    let p = dir.join(podnet_conntrack::nat::MAP_NAME_SNAT4);
    bpftool_create(&p, "lru_hash", 14, 40, 64, "cilium_snat_v4");
    let key = [1u8, 1, 1, 1, 10, 0, 0, 5, 0x01, 0xbb, 0x9c, 0x40, 6, 0];
    let mut val = [0u8; 40];
    val[0..8].copy_from_slice(&77u64.to_ne_bytes()); // created
    val[8..16].copy_from_slice(&1u64.to_ne_bytes()); // needs_ct
    val[32..36].copy_from_slice(&[192, 168, 1, 1]); // to_saddr
    val[36..38].copy_from_slice(&[0x80, 0xe8]); // to_sport 33000
    bpftool_update(&p, &key, &val);
    let nat = NatMap::open(&p).unwrap();
    let e = nat
        .lookup(&AnyCtKey::from_bytes(IpFamily::V4, &key).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(e.created(), 77);
    assert_eq!(e.needs_ct(), 1);
    assert_eq!(e.to_addr().to_string(), "192.168.1.1");
    assert_eq!(e.to_port(), 33000);
    assert_eq!(
        e.to_string(),
        "Addr=192.168.1.1 Port=33000 Created=77 NeedsCT=1\n"
    );
    // A 56-byte value is not a v4 SNAT map.
    let bad = dir.join("cilium_snat_v4_bad");
    bpftool_create(&bad, "lru_hash", 14, 56, 64, "bad");
    assert!(matches!(
        NatMap::open(&bad),
        Err(Error::ValueSize {
            expected: 40,
            found: 56,
            ..
        })
    ));
}

#[test]
fn per_cluster_maps_lifecycle() {
    require_privileges!();
    let dir = BpfDir::new("ct-cluster");
    let sizes = CtSizes {
        tcp: 1024,
        any: 512,
    };
    let mut pc = PerClusterCtMaps::open_or_create(dir.path(), true, true, sizes).unwrap();
    for name in [
        "cilium_per_cluster_ct_tcp4",
        "cilium_per_cluster_ct_any4",
        "cilium_per_cluster_ct_tcp6",
        "cilium_per_cluster_ct_any6",
    ] {
        assert!(dir.join(name).exists(), "{name}");
    }
    let tcp4 = CtMapKind::from_name("cilium_ct4_global").unwrap();
    assert_eq!(outer_map_name(&tcp4), "cilium_per_cluster_ct_tcp4");
    assert!(!pc.is_installed(&tcp4, 3).unwrap());
    pc.create_cluster_maps(3).unwrap();
    assert!(dir.join("cilium_per_cluster_ct_tcp4_3").exists());
    assert!(dir.join("cilium_per_cluster_ct_any6_3").exists());
    assert!(pc.is_installed(&tcp4, 3).unwrap());
    let maps = pc.cluster_maps(3).unwrap();
    assert_eq!(maps.len(), 4);
    assert_eq!(maps[0].max_entries(), 1024);
    assert_eq!(maps[1].max_entries(), 512);
    maps[0].update(&key4(1), &entry(5, 5)).unwrap();
    assert_eq!(maps[0].lookup(&key4(1)).unwrap(), Some(entry(5, 5)));
    // Idempotent create; reopening finds the cluster.
    pc.create_cluster_maps(3).unwrap();
    assert_eq!(maps[0].count().unwrap(), 1);
    drop(pc);
    let mut pc = PerClusterCtMaps::open_or_create(dir.path(), true, true, sizes).unwrap();
    assert_eq!(pc.cluster_ids().collect::<Vec<_>>(), vec![3]);
    assert_eq!(pc.all_cluster_maps().unwrap().len(), 4);
    // Bad ids.
    assert!(matches!(
        pc.create_cluster_maps(0),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        pc.create_cluster_maps(256),
        Err(Error::InvalidInput(_))
    ));
    pc.delete_cluster_maps(3).unwrap();
    assert!(!dir.join("cilium_per_cluster_ct_tcp4_3").exists());
    assert!(!pc.is_installed(&tcp4, 3).unwrap());
    pc.create_cluster_maps(9).unwrap();
    // A pinned inner map of another size is named, not an EINVAL.
    pc.delete_cluster_maps(4).unwrap();
    CtMap::create(
        &CreateOptions::new(CtMapKind {
            scope: podnet_conntrack::CtScope::Cluster(4),
            ..tcp4
        })
        .max_entries(99)
        .pin_in(dir.path()),
    )
    .unwrap();
    let err = pc.create_cluster_maps(4).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mismatch {
                what: "max_entries",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("max_entries 99, asked for 1024"),
        "{err}"
    );
    pc.delete_cluster_maps(4).unwrap();
    drop(pc);
    PerClusterCtMaps::cleanup(dir.path(), true, true).unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn delete_if_upgrade_needed_unpins_only_mismatched_maps() {
    require_privileges!();
    let dir = BpfDir::new("ct-upgrade");
    let sizes = CtSizes {
        tcp: 1024,
        any: 512,
    };
    bpftool_create(
        &dir.join("cilium_ct4_global"),
        "lru_hash",
        14,
        48,
        1024,
        "old",
    ); // old value size
    bpftool_create(
        &dir.join("cilium_ct_any4_global"),
        "lru_hash",
        14,
        56,
        512,
        "ok",
    );
    bpftool_create(
        &dir.join("cilium_ct6_global"),
        "lru_hash",
        38,
        56,
        2048,
        "resized",
    );
    bpftool_create(
        &dir.join("cilium_ct_any6_global"),
        "hash",
        38,
        56,
        512,
        "nonlru",
    );
    let mut removed = podnet_conntrack::delete_if_upgrade_needed(dir.path(), None, &sizes).unwrap();
    removed.sort();
    let mut want = vec![
        dir.join("cilium_ct4_global"),
        dir.join("cilium_ct6_global"),
        dir.join("cilium_ct_any6_global"),
    ];
    want.sort();
    assert_eq!(removed, want);
    assert!(dir.join("cilium_ct_any4_global").exists());
    assert!(!podnet_conntrack::exists(dir.path(), None, true, true));
    assert!(podnet_conntrack::exists(dir.path(), Some(1), false, false));
    // Right sizes but BPF_F_NO_COMMON_LRU (flags 2): Cilium unpins it too.
    let p = dir.join("cilium_ct4_global");
    bpftool(&[
        "map",
        "create",
        p.to_str().unwrap(),
        "type",
        "lru_hash",
        "key",
        "14",
        "value",
        "56",
        "entries",
        "1024",
        "name",
        "nocommon",
        "flags",
        "2",
    ]);
    assert_eq!(
        podnet_conntrack::delete_if_upgrade_needed(dir.path(), None, &sizes).unwrap(),
        vec![p.clone()]
    );
    assert!(dir.join("cilium_ct_any4_global").exists());
    // Endpoint maps: none pinned, nothing to do.
    assert!(
        podnet_conntrack::delete_if_upgrade_needed(dir.path(), Some(42), &sizes)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn dump_text_matches_cilium() {
    require_privileges!();
    let dir = BpfDir::new("ct-dump");
    let g = ct(&dir, "cilium_ct4_global");
    let k = CtMap::flow_key(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
        6,
        Direction::Egress,
    )
    .unwrap();
    let mut e = entry(1100, 3);
    e.set_flags(EntryFlags::SEEN_NON_SYN);
    e.set_tx_flags_seen(0x1a);
    e.set_src_sec_id(4242);
    g.update(&k, &e).unwrap();
    // nexthdr 0 entries are skipped.
    g.update(
        &k4([1, 1, 1, 1], [2, 2, 2, 2], 1, 1, 0, TupleFlags::OUT),
        &entry(1, 1),
    )
    .unwrap();
    assert_eq!(
        dump_entries(&g).unwrap(),
        "TCP OUT 10.0.0.1:40000 -> 10.0.0.2:80 expires=1100 Packets=3 Bytes=300 \
         RxFlagsSeen=0x00 LastRxReport=0 TxFlagsSeen=0x1a LastTxReport=0 \
         Flags=0x0010 [ SeenNonSyn ] RevNAT=3 SourceSecurityID=4242 IfIndex=0 BackendID=0 \n"
    );
    assert_eq!(
        dump_entries_with_time_diff(&g, &ClockSource::custom(|| 1000)).unwrap(),
        "TCP OUT 10.0.0.1:40000 -> 10.0.0.2:80 expires=1100 (remaining: 100 sec(s)) Packets=3 Bytes=300 \
         RxFlagsSeen=0x00 LastRxReport=0 TxFlagsSeen=0x1a LastTxReport=0 \
         Flags=0x0010 [ SeenNonSyn ] RevNAT=3 SourceSecurityID=4242 IfIndex=0 BackendID=0 \n"
    );
    // A per-endpoint map dumps keys in Cilium's local format.
    let l = ct(&dir, "cilium_ct_any4_00042");
    let lk = CtMap::flow_key(
        "10.0.0.1:5000".parse().unwrap(),
        "10.0.0.3:53".parse().unwrap(),
        17,
        Direction::Ingress,
    )
    .unwrap();
    l.update(&lk, &entry(50, 1)).unwrap();
    let text = dump_entries_with_time_diff(&l, &ClockSource::custom(|| 60)).unwrap();
    assert!(
        text.starts_with("UDP IN 10.0.0.3 5000:53 expires=50 (remaining: -10 sec(s)) Packets=1 "),
        "{text}"
    );
}

#[test]
fn dump_of_service_and_ipv6_keys_matches_cilium() {
    require_privileges!();
    let dir = BpfDir::new("ct-dumpsvc");
    // One service tuple, in a global map and in a per-endpoint one.
    let svc = k4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        80,
        40000,
        6,
        TupleFlags::SERVICE,
    );
    let g = ct(&dir, "cilium_ct4_global");
    g.update(&svc, &entry(7, 1)).unwrap();
    let text = dump_entries(&g).unwrap();
    assert!(
        text.starts_with("TCP SVC 10.0.0.2:80 -> 10.0.0.1:40000 expires=7 "),
        "{text}"
    );
    let l = ct(&dir, "cilium_ct4_00007");
    l.update(&svc, &entry(7, 1)).unwrap();
    let text = dump_entries(&l).unwrap();
    assert!(
        text.starts_with("TCP SVC 10.0.0.1 80:40000 expires=7 "),
        "{text}"
    );
    let g6 = ct(&dir, "cilium_ct_any6_global");
    let k6 = podnet_conntrack::CtKey6::new(
        "::ffff:10.0.0.1".parse().unwrap(),
        "f00d::1".parse().unwrap(),
        443,
        51000,
        1,
        TupleFlags::OUT,
    );
    g6.update(&k6, &entry(9, 1)).unwrap();
    let text = dump_entries(&g6).unwrap();
    assert!(
        text.starts_with("ICMP OUT 10.0.0.1:51000 -> f00d::1:443 expires=9 "),
        "{text}"
    );
}

#[test]
fn gc_removes_the_snat_mappings_of_deleted_egress_entries() {
    require_privileges!();
    let dir = BpfDir::new("ct-gcnat");
    let tcp = ct(&dir, "cilium_ct4_global");
    let nat = NatMap::create(IpFamily::V4, 1024, Some(dir.path())).unwrap();
    // Flow A: expired egress CT entry with its SNAT pair.
    let ct_a = CtMap::flow_key(
        "10.0.0.5:40000".parse().unwrap(),
        "1.1.1.1:443".parse().unwrap(),
        6,
        Direction::Egress,
    )
    .unwrap();
    tcp.update(&ct_a, &entry(10, 1)).unwrap();
    let (a_out, a_in) = snat_pair(
        &nat,
        ([10, 0, 0, 5], 40000),
        ([1, 1, 1, 1], 443),
        ([192, 168, 1, 1], 33000),
        6,
    );
    // Flow C: expired DSR entry; its SNAT entry is the CT key with ports swapped.
    let ct_c = k4([10, 0, 0, 7], [10, 0, 1, 9], 8080, 80, 6, TupleFlags::OUT);
    let mut dsr = entry(10, 3);
    dsr.set_flags(EntryFlags::DSR_INTERNAL);
    tcp.update(&ct_c, &dsr).unwrap();
    let c_out = k4([10, 0, 0, 7], [10, 0, 1, 9], 80, 8080, 6, TupleFlags::OUT);
    nat.update(&c_out, &NatEntry::new("172.16.0.1".parse().unwrap(), 80))
        .unwrap();
    // Flow E: live; its SNAT pair stays.
    let ct_e = CtMap::flow_key(
        "10.0.0.5:40001".parse().unwrap(),
        "1.1.1.1:443".parse().unwrap(),
        6,
        Direction::Egress,
    )
    .unwrap();
    tcp.update(&ct_e, &entry(1000, 5)).unwrap();
    let e_out = k4([1, 1, 1, 1], [10, 0, 0, 5], 443, 40001, 6, TupleFlags::OUT);
    nat.update(
        &e_out,
        &NatEntry::new("192.168.1.1".parse().unwrap(), 33001),
    )
    .unwrap();
    // An ingress CT entry's deletion touches no SNAT entry.
    tcp.update(
        &k4([10, 0, 0, 5], [1, 1, 1, 1], 443, 40002, 6, TupleFlags::IN),
        &entry(10, 6),
    )
    .unwrap();
    for sequential in [false, true] {
        let mut f = podnet_conntrack::GcFilter::new()
            .remove_expired(true)
            .time(100)
            .nat(&nat)
            .sequential(sequential);
        let s = podnet_conntrack::gc(&tcp, &mut f).unwrap();
        if !sequential {
            assert_eq!((s.deleted, s.alive, s.nat_deleted), (3, 1, 3), "{s:?}");
        }
    }
    assert!(nat.lookup(&a_out).unwrap().is_none());
    assert!(nat.lookup(&a_in).unwrap().is_none());
    assert!(nat.lookup(&c_out).unwrap().is_none());
    assert!(nat.lookup(&e_out).unwrap().is_some());
    assert_eq!(nat.count().unwrap(), 1);
}
