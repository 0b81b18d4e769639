//! GC on real maps: exact survivors, emit exactly for kept entries, ENOSPC,
//! and a concurrent writer renewing entries.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use common::*;
use podnet_conntrack::{
    gc, AnyCtKey, CreateOptions, CtEntry, CtMap, CtMapKind, GcFilter, GcScan, GcStats, RenewWriter,
};
use testsupport::{require_privileges, BpfDir};

const NOW: u32 = 1_000_000;

fn ct4(dir: &BpfDir, max: u32, lru: bool) -> CtMap {
    let mut o = CreateOptions::new(CtMapKind::from_name("cilium_ct4_global").unwrap())
        .max_entries(max)
        .pin_in(dir.path());
    if !lru {
        o = o.hash();
    }
    CtMap::create(&o).unwrap()
}

/// Fills `n` entries: i % 4 == 0 expired; i % 4 == 1 live but matching an IP
/// in `match_ips` (every i % 8 == 1); the rest live. Returns the expected
/// survivors and the match set.
fn fill(map: &CtMap, n: u32) -> (HashSet<AnyCtKey>, HashSet<IpAddr>) {
    let mut items = Vec::with_capacity(n as usize);
    let mut survivors = HashSet::new();
    let mut ips = HashSet::new();
    for i in 0..n {
        let k = key4(i);
        let expired = i % 4 == 0;
        let lifetime = if expired {
            NOW - 1 - (i % 100)
        } else {
            NOW + (i % 100)
        };
        let matching = i % 8 == 1;
        if matching {
            // Alternate between matching the source and the destination.
            if i % 16 == 1 {
                ips.insert(IpAddr::V4(k.daddr()));
            } else {
                ips.insert(IpAddr::V4(k.saddr()));
            }
        }
        items.push((k, entry(lifetime, u64::from(i))));
    }
    map.update_many(&items).unwrap();
    // Survivors computed after the match set is known (a source address may
    // be shared by several keys).
    for (k, e) in &items {
        let expired = e.lifetime() < NOW;
        let m = ips.contains(&IpAddr::V4(k.daddr())) || ips.contains(&IpAddr::V4(k.saddr()));
        if !expired && !m {
            survivors.insert(AnyCtKey::V4(*k));
        }
    }
    (survivors, ips)
}

fn check_gc(n: u32, batch: u32, lru: bool, sequential: bool) {
    check_gc_with(n, batch, lru, sequential, false);
}

/// `kernel`: candidates found by the in-kernel walk (no emit then).
fn check_gc_with(n: u32, batch: u32, lru: bool, sequential: bool, kernel: bool) -> GcStats {
    let dir = BpfDir::new("ct-gc");
    let map = ct4(&dir, (n * 2).max(1024), lru);
    let (survivors, ips) = fill(&map, n);
    assert_eq!(map.count().unwrap(), n as usize);
    let emitted = Mutex::new(Vec::new());
    let stats = {
        let mut f = GcFilter::new()
            .remove_expired(true)
            .time(NOW)
            .match_ips(ips)
            .batch_size(batch)
            .sequential(sequential)
            .scan(if kernel {
                GcScan::Kernel
            } else {
                GcScan::Syscall
            });
        if !kernel {
            f.emit = Some(Box::new(|k: &AnyCtKey, e: &CtEntry| {
                emitted.lock().unwrap().push((*k, *e))
            }));
        }
        gc(&map, &mut f).unwrap()
    };
    assert_eq!(stats.kernel_scan, kernel, "{stats:?}");
    let emitted = emitted.into_inner().unwrap();
    let left: HashSet<AnyCtKey> = map.iter().unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(left.len(), survivors.len());
    assert!(left == survivors, "survivors differ");
    assert_eq!(stats.scanned, n as usize);
    assert_eq!(stats.alive, survivors.len());
    assert_eq!(stats.deleted, n as usize - survivors.len());
    assert_eq!(stats.deleted_expired, (n as usize).div_ceil(4));
    assert_eq!(stats.renewed, 0);
    assert_eq!(stats.vanished, 0);
    assert_eq!(stats.nat_deleted, 0);
    if kernel {
        assert!(stats.kernel_runs >= 1);
        return stats;
    }
    // emit: exactly once per kept entry, with its value.
    assert_eq!(emitted.len(), survivors.len());
    let emitted_keys: HashSet<AnyCtKey> = emitted.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        emitted_keys.len(),
        emitted.len(),
        "an entry was emitted twice"
    );
    assert!(emitted_keys == survivors);
    for (k, e) in &emitted {
        assert_eq!(map.lookup(k).unwrap(), Some(*e));
        assert!(e.lifetime() >= NOW);
    }
    stats
}

#[test]
fn gc_10k_exact_survivors_and_emit() {
    require_privileges!();
    check_gc(10_000, 0, true, false);
    check_gc(10_000, 0, true, true);
}

#[test]
fn gc_1m_exact_survivors_and_emit() {
    require_privileges!();
    check_gc(1_000_000, 0, true, false);
}

#[test]
fn kernel_walk_finds_exactly_the_candidates() {
    require_privileges!();
    // One slot of output, several slots in one run (32,768 entries, 12,288
    // candidates: 8,192 keys a slot), and resumed runs (1M entries: 250k
    // expired + 62.5k matched candidates, at most 1,048,576 entries examined
    // and 131,072 keys found a run: three runs).
    for (n, runs) in [(10_000, 1), (8192 * 4, 1), (1_000_000, 3)] {
        let stats = check_gc_with(n, 0, true, false, true);
        assert_eq!(stats.kernel_runs, runs, "{n} entries: {stats:?}");
    }
    // Plain hash maps too.
    check_gc_with(20_000, 0, false, false, true);
}

#[test]
fn enospc_grows_the_batch_and_never_ends_early() {
    require_privileges!();
    // 4096 keys in a 4096-bucket hash map: buckets with 2+ entries are
    // certain, so a batch of 1 hits ENOSPC.
    let dir = BpfDir::new("ct-enospc");
    let map = ct4(&dir, 4096, false);
    let items: Vec<_> = (0..4096).map(|i| (key4(i), entry(NOW + 1, 1))).collect();
    map.update_many(&items).unwrap();
    let mut it = map.iter_with_batch(1).unwrap();
    let mut n = 0;
    for r in it.by_ref() {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 4096, "iteration ended early");
    assert!(it.enospc_grows() >= 1, "ENOSPC path not exercised");
    assert!(it.batch_size() >= 2);
    // libbpf-rs's own batch iterator stops silently here; ours must not.
    drop(map);
    check_gc(4096, 1, false, false);
    check_gc(4096, 1, false, true);
}

#[test]
fn gc_with_tiny_batch_reports_enospc_growth() {
    require_privileges!();
    let dir = BpfDir::new("ct-enospc-gc");
    let map = ct4(&dir, 4096, false);
    let items: Vec<_> = (0..4096)
        .map(|i| (key4(i), entry(if i % 2 == 0 { NOW - 1 } else { NOW }, 1)))
        .collect();
    map.update_many(&items).unwrap();
    let mut f = GcFilter::new()
        .remove_expired(true)
        .time(NOW)
        .batch_size(1)
        .scan(GcScan::Syscall);
    let s = gc(&map, &mut f).unwrap();
    assert!(s.enospc_grows >= 1, "{s:?}");
    assert_eq!(s.scanned, 4096);
    assert_eq!(s.deleted, 2048);
    assert_eq!(map.count().unwrap(), 2048);
}

#[test]
fn writer_renewing_entries_during_gc_loses_none() {
    require_privileges!();
    writer_during_gc(false, GcScan::Syscall);
    writer_during_gc(true, GcScan::Syscall);
    writer_during_gc(false, GcScan::Kernel);
}

#[test]
fn bpf_writer_renewing_in_place_during_gc_loses_none() {
    require_privileges!();
    bpf_writer_during_gc(GcScan::Syscall);
    bpf_writer_during_gc(GcScan::Kernel);
}

/// A BPF program renews expired entries in place (as the datapath does)
/// while GC runs; every renewal it saw land must survive.
fn bpf_writer_during_gc(scan: GcScan) {
    let dir = BpfDir::new("ct-bpfwriter");
    let n = 200_000u32;
    let map = ct4(&dir, n * 2, true);
    let items: Vec<_> = (0..n)
        .map(|i| (key4(i), entry(NOW - 5, u64::from(i))))
        .collect();
    map.update_many(&items).unwrap();
    let writer_map = CtMap::open(dir.join("cilium_ct4_global")).unwrap();
    let done = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let (renewed, stats) = std::thread::scope(|s| {
        let gc_thread = s.spawn(|| {
            while !started.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            let mut f = GcFilter::new().remove_expired(true).time(NOW).scan(scan);
            let stats = gc(&map, &mut f).unwrap();
            done.store(true, Ordering::Relaxed);
            stats
        });
        // Few renewals per pass, so that they spread over the whole GC.
        let mut w = RenewWriter::load(&writer_map).unwrap();
        let mut all = Vec::new();
        loop {
            let (keys, fin) = w.run(&writer_map, NOW + 1000, 64).unwrap();
            all.extend(keys);
            started.store(true, Ordering::Relaxed);
            if fin && done.load(Ordering::Relaxed) {
                break;
            }
        }
        (all, gc_thread.join().unwrap())
    });
    eprintln!(
        "gc ({scan:?}) during in-place BPF writes: {stats}, {} renewed",
        renewed.len()
    );
    assert_eq!(stats.kernel_scan, scan == GcScan::Kernel);
    assert_eq!(
        stats.scanned,
        stats.deleted + stats.alive + stats.vanished,
        "{stats}"
    );
    assert!(!renewed.is_empty());
    let lost: Vec<_> = renewed
        .iter()
        .filter(|k| {
            map.lookup(*k)
                .unwrap()
                .is_none_or(|e| e.lifetime() != NOW + 1000)
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} renewed entries lost, e.g. {:?}",
        lost.len(),
        renewed.len(),
        &lost[..lost.len().min(3)]
    );
}

fn writer_during_gc(sequential: bool, scan: GcScan) {
    let dir = BpfDir::new("ct-writer");
    let n = 200_000u32;
    let map = ct4(&dir, n * 2, true);
    // Everything starts expired.
    let items: Vec<_> = (0..n)
        .map(|i| (key4(i), entry(NOW - 5, u64::from(i))))
        .collect();
    map.update_many(&items).unwrap();
    let writer_map = CtMap::open(dir.join("cilium_ct4_global")).unwrap();
    let done = AtomicBool::new(false);
    let renewed: Vec<u32> = std::thread::scope(|s| {
        let w = s.spawn(|| {
            // Renew odd keys, last to first (against the scan order), in
            // place like the datapath: only if the entry still exists.
            let mut ok = Vec::new();
            for i in (0..n).rev().filter(|i| i % 2 == 1) {
                let k = key4(i);
                if let Some(mut e) = writer_map.lookup(&k).unwrap() {
                    e.set_lifetime(NOW + 1000);
                    if update_exist(&writer_map, &k, &e) {
                        ok.push(i);
                    }
                }
                if done.load(Ordering::Relaxed) && ok.len() > 1000 {
                    break;
                }
            }
            ok
        });
        let mut f = GcFilter::new()
            .remove_expired(true)
            .time(NOW)
            .batch_size(256)
            .sequential(sequential)
            .scan(scan);
        let stats = gc(&map, &mut f).unwrap();
        done.store(true, Ordering::Relaxed);
        eprintln!("gc during writes: {stats}");
        assert_eq!(
            stats.scanned,
            stats.deleted + stats.alive + stats.vanished,
            "{stats}"
        );
        w.join().unwrap()
    });
    assert!(!renewed.is_empty());
    let mut lost = Vec::new();
    for &i in &renewed {
        match map.lookup(&key4(i)).unwrap() {
            Some(e) => assert!(e.lifetime() == NOW + 1000),
            None => lost.push(i),
        }
    }
    assert!(
        lost.is_empty(),
        "{} renewed entries lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Nothing expired and not renewed survives a second pass.
    let mut f = GcFilter::new().remove_expired(true).time(NOW);
    gc(&map, &mut f).unwrap();
    for r in map.iter().unwrap() {
        let (_, e) = r.unwrap();
        assert!(e.lifetime() >= NOW);
    }
}

/// `BPF_EXIST` update, as the datapath renews in place: fails if the entry
/// is gone.
fn update_exist(map: &CtMap, k: &podnet_conntrack::CtKey4, e: &CtEntry) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: key and value buffers have the map's sizes.
    let r = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_fd().as_raw_fd(),
            k.as_bytes().as_ptr().cast(),
            e.as_bytes().as_ptr().cast(),
            libbpf_sys::BPF_EXIST.into(),
        )
    };
    r == 0
}

#[test]
fn jiffies_clock_reads_the_kernel_and_advances() {
    require_privileges!();
    let c = podnet_conntrack::ClockSource::Jiffies { hz: 1000 };
    let a = c.now().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let b = c.now().unwrap();
    let d = b.wrapping_sub(a);
    // At least HZ=100 and at most HZ=1000 ticks per second.
    assert!((5..=1000).contains(&d), "jiffies advanced by {d} in 100 ms");
}

#[test]
fn gc_with_monotonic_clock_collects_what_the_datapath_let_expire() {
    require_privileges!();
    // The datapath writes lifetime = bpf_ktime_get_ns() / 1e9 + timeout.
    let dir = BpfDir::new("ct-mono");
    let map = ct4(&dir, 1024, true);
    let now = podnet_conntrack::ClockSource::Monotonic.now().unwrap();
    map.update(&key4(1), &entry(now - 1, 1)).unwrap(); // expired a second ago
    map.update(&key4(2), &entry(now + 60, 2)).unwrap(); // a minute left
    let mut f = GcFilter::expired(&podnet_conntrack::ClockSource::Monotonic).unwrap();
    let s = gc(&map, &mut f).unwrap();
    assert_eq!((s.deleted, s.alive), (1, 1));
    assert!(map.lookup(&key4(2)).unwrap().is_some());
}

#[test]
fn gc_on_ipv6_endpoint_map_matches_addresses_and_expiry() {
    require_privileges!();
    let dir = BpfDir::new("ct-gc6");
    let map = CtMap::create(
        &CreateOptions::new(CtMapKind::from_name("cilium_ct_any6_00042").unwrap())
            .max_entries(8192)
            .pin_in(dir.path()),
    )
    .unwrap();
    let items: Vec<_> = (0..3000u32)
        .map(|i| {
            (
                key6(i),
                entry(if i % 3 == 0 { NOW - 1 } else { NOW + 1 }, 0),
            )
        })
        .collect();
    map.update_many(&items).unwrap();
    // Match the source address (daddr) of key 1 and the destination (saddr) of key 2.
    let mut ips = HashSet::new();
    ips.insert(IpAddr::V6(key6(1).daddr()));
    ips.insert(IpAddr::V6(key6(2).saddr()));
    let mut kept = 0usize;
    let s = {
        let mut f = GcFilter::new()
            .remove_expired(true)
            .time(NOW)
            .match_ips(ips)
            .emit(|k: &AnyCtKey, _e: &CtEntry| {
                assert_eq!(k.family(), podnet_conntrack::IpFamily::V6);
                kept += 1
            });
        gc(&map, &mut f).unwrap()
    };
    assert_eq!(s.deleted_expired, 1000);
    assert_eq!(s.deleted_matched, 2);
    assert_eq!(s.alive, 1998);
    assert_eq!(kept, 1998);
    assert!(map.lookup(&key6(1)).unwrap().is_none());
    assert!(map.lookup(&key6(2)).unwrap().is_none());
    assert!(map.lookup(&key6(4)).unwrap().is_some());
    assert_eq!(map.count().unwrap(), 1998);
    // Per-endpoint flow lookup goes to the endpoint's map.
    let e = podnet_conntrack::lookup(
        dir.path(),
        Some(42),
        std::net::SocketAddr::new(key6(4).daddr().into(), key6(4).sport()),
        std::net::SocketAddr::new(key6(4).saddr().into(), key6(4).dport()),
        6,
        podnet_conntrack::Direction::Egress,
    );
    // key6 uses nexthdr 6 and OUT: the flow is found in the "any" map only
    // because we put it there; lookup picks the TCP map for proto 6.
    assert!(
        matches!(e, Err(podnet_conntrack::Error::Open { .. })),
        "{e:?}"
    );
}

#[test]
fn valid_ips_deletes_entries_with_neither_address_valid() {
    require_privileges!();
    let dir = BpfDir::new("ct-validips");
    let map = ct4(&dir, 4096, true);
    let items: Vec<_> = (0..1000).map(|i| (key4(i), entry(NOW + 10, 1))).collect();
    map.update_many(&items).unwrap();
    // Valid: the daddr of keys 0..250 and the saddr of keys 250..500.
    let valid: HashSet<IpAddr> = (0..500)
        .map(|i| {
            let k = key4(i);
            IpAddr::V4(if i < 250 { k.daddr() } else { k.saddr() })
        })
        .collect();
    let mut f = GcFilter::new()
        .remove_expired(true)
        .time(NOW)
        .valid_ips(valid);
    let s = gc(&map, &mut f).unwrap();
    assert_eq!(
        (s.scanned, s.deleted, s.deleted_matched, s.alive),
        (1000, 500, 500, 500),
        "{s}"
    );
    for i in 0..1000 {
        assert_eq!(map.lookup(&key4(i)).unwrap().is_some(), i < 500, "key {i}");
    }
}
