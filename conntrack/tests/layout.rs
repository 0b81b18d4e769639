//! The byte layout contract, checked against bytes laid out by hand per
//! Cilium's C structs and written/read by bpftool, not only our own encoder.

mod common;

use common::*;
use podnet_conntrack::{CtEntry, CtKey4, CtKey6, CtMap, EntryFlags, TupleFlags};
use std::net::{Ipv4Addr, Ipv6Addr};
use testsupport::{require_privileges, BpfDir};

/// `struct ipv4_ct_tuple` bytes written by hand.
const KEY4: [u8; 14] = [
    10, 1, 2, 3, // daddr 10.1.2.3
    192, 168, 0, 9, // saddr 192.168.0.9
    0x1f, 0x90, // dport 8080 (network order)
    0xc3, 0x50, // sport 50000 (network order)
    6,    // nexthdr TCP
    0x05, // flags IN | SERVICE
];

/// `struct ct_entry` bytes written by hand (little-endian host).
fn value_bytes() -> [u8; 56] {
    let mut v = [0u8; 56];
    v[0..8].copy_from_slice(&0u64.to_le_bytes()); // reserved0
    v[8..16].copy_from_slice(&9u64.to_le_bytes()); // backend_id
    v[16..24].copy_from_slice(&1234u64.to_le_bytes()); // packets
    v[24..32].copy_from_slice(&987_654u64.to_le_bytes()); // bytes
    v[32..36].copy_from_slice(&4000u32.to_le_bytes()); // lifetime
    v[36..38].copy_from_slice(&(0x0001u16 | 0x0010 | 0x0080).to_le_bytes()); // rx_closing, seen_non_syn, dsr_internal
    v[38] = 0x01; // rev_nat_index 0x0102 = 258, network order
    v[39] = 0x02;
    v[40..42].copy_from_slice(&7u16.to_le_bytes()); // ifindex
    v[42] = 0x02; // tx_flags_seen SYN
    v[43] = 0x12; // rx_flags_seen SYN|ACK
    v[44..48].copy_from_slice(&0x0001_0002u32.to_le_bytes()); // src_sec_id
    v[48..52].copy_from_slice(&33u32.to_le_bytes()); // last_tx_report
    v[52..56].copy_from_slice(&44u32.to_le_bytes()); // last_rx_report
    v
}

#[test]
#[cfg(target_endian = "little")]
fn bpftool_written_v4_entry_reads_back_field_by_field() {
    require_privileges!();
    let dir = BpfDir::new("ct-layout4");
    let path = dir.join("cilium_ct4_global");
    bpftool_create(&path, "lru_hash", 14, 56, 1024, "cilium_ct4_glob");
    bpftool_update(&path, &KEY4, &value_bytes());

    let map = CtMap::open(&path).unwrap();
    let all: Vec<_> = map.iter().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 1);
    let (key, e) = all[0];
    let podnet_conntrack::AnyCtKey::V4(k) = key else {
        panic!("v4 map yielded {key:?}")
    };
    assert_eq!(k.daddr(), Ipv4Addr::new(10, 1, 2, 3));
    assert_eq!(k.saddr(), Ipv4Addr::new(192, 168, 0, 9));
    assert_eq!(k.dport(), 8080);
    assert_eq!(k.sport(), 50000);
    assert_eq!(k.nexthdr(), 6);
    assert_eq!(k.flags(), TupleFlags::IN | TupleFlags::SERVICE);
    assert_eq!(e.backend_id(), 9);
    assert_eq!(e.packets(), 1234);
    assert_eq!(e.bytes(), 987_654);
    assert_eq!(e.lifetime(), 4000);
    assert_eq!(
        e.flags(),
        EntryFlags::RX_CLOSING | EntryFlags::SEEN_NON_SYN | EntryFlags::DSR_INTERNAL
    );
    assert_eq!(e.rev_nat_index(), 258);
    assert_eq!(e.ifindex(), 7);
    assert_eq!(e.tx_flags_seen(), 0x02);
    assert_eq!(e.rx_flags_seen(), 0x12);
    assert_eq!(e.src_sec_id(), 0x0001_0002);
    assert_eq!(e.last_tx_report(), 33);
    assert_eq!(e.last_rx_report(), 44);

    // The typed lookup with an independently built key finds it.
    let built = CtKey4::new(
        Ipv4Addr::new(10, 1, 2, 3),
        Ipv4Addr::new(192, 168, 0, 9),
        8080,
        50000,
        6,
        TupleFlags::IN | TupleFlags::SERVICE,
    );
    assert_eq!(map.lookup(&built).unwrap(), Some(e));
}

#[test]
#[cfg(target_endian = "little")]
fn bpftool_written_v6_entry_reads_back() {
    require_privileges!();
    let dir = BpfDir::new("ct-layout6");
    let path = dir.join("cilium_ct_any6_global");
    bpftool_create(&path, "lru_hash", 38, 56, 1024, "cilium_ct_any6_");
    let mut key = [0u8; 38];
    key[0..16].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()); // daddr
    key[16..32].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets()); // saddr
    key[32..34].copy_from_slice(&[0x00, 0x35]); // dport 53
    key[34..36].copy_from_slice(&[0x04, 0xd2]); // sport 1234
    key[36] = 17; // UDP
    key[37] = 0; // OUT
    bpftool_update(&path, &key, &value_bytes());
    let map = CtMap::open(&path).unwrap();
    assert_eq!(map.family(), podnet_conntrack::IpFamily::V6);
    let k = CtKey6::new(
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
        53,
        1234,
        17,
        TupleFlags::OUT,
    );
    let e = map.lookup(&k).unwrap().expect("entry written by bpftool");
    assert_eq!(e.to_bytes(), value_bytes());
    assert_eq!(e.rev_nat_index(), 258);
}

#[test]
fn crate_written_entries_dump_through_bpftool_as_c_layout() {
    require_privileges!();
    let dir = BpfDir::new("ct-layout-rev");
    let path = dir.join("cilium_ct4_global");
    bpftool_create(&path, "lru_hash", 14, 56, 1024, "cilium_ct4_glob");
    let map = CtMap::open(&path).unwrap();
    let k = CtKey4::new(
        Ipv4Addr::new(10, 1, 2, 3),
        Ipv4Addr::new(192, 168, 0, 9),
        8080,
        50000,
        6,
        TupleFlags::IN | TupleFlags::SERVICE,
    );
    let mut e = CtEntry::default();
    e.set_backend_id(9);
    e.set_packets(1234);
    e.set_bytes(987_654);
    e.set_lifetime(4000);
    e.set_flags(EntryFlags::RX_CLOSING | EntryFlags::SEEN_NON_SYN | EntryFlags::DSR_INTERNAL);
    e.set_rev_nat_index(258);
    e.set_ifindex(7);
    e.set_tx_flags_seen(0x02);
    e.set_rx_flags_seen(0x12);
    e.set_src_sec_id(0x0001_0002);
    e.set_last_tx_report(33);
    e.set_last_rx_report(44);
    map.update(&k, &e).unwrap();
    let dump = bpftool_dump(&path);
    assert_eq!(dump.len(), 1);
    assert_eq!(dump[0].0, KEY4.to_vec(), "key bytes as bpftool sees them");
    if cfg!(target_endian = "little") {
        assert_eq!(dump[0].1, value_bytes().to_vec(), "value bytes");
    }
}
