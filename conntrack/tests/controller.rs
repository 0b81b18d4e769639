//! The GC controller over real maps, with an injected clock.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use podnet_conntrack::nat::{NatEntry, NatMap};
use podnet_conntrack::{
    AnyCtKey, ClockSource, CreateOptions, CtKey4, CtMap, CtMapKind, GcController, IpFamily,
    TupleFlags,
};
use testsupport::{require_privileges, BpfDir};

const NOW: u32 = 1_000_000;
const WAIT: Duration = Duration::from_secs(30);

fn ct(dir: &BpfDir, name: &str) -> CtMap {
    CtMap::create(
        &CreateOptions::new(CtMapKind::from_name(name).unwrap())
            .max_entries(4096)
            .pin_in(dir.path()),
    )
    .unwrap()
}

fn fill(map: &CtMap, from: u32, n: u32, expired: u32) {
    let items: Vec<_> = (from..from + n)
        .map(|i| {
            (
                key4(i),
                entry(
                    if i - from < expired {
                        NOW - 1
                    } else {
                        NOW + 100
                    },
                    1,
                ),
            )
        })
        .collect();
    map.update_many(&items).unwrap();
}

#[test]
fn controller_adapts_its_interval_wakes_purges_and_stops() {
    require_privileges!();
    let dir = BpfDir::new("ct-ctl");
    let tcp = ct(&dir, "cilium_ct4_global");
    let _any = ct(&dir, "cilium_ct_any4_global");
    let local = ct(&dir, "cilium_ct4_00042");
    fill(&tcp, 0, 100, 50);
    fill(&local, 0, 100, 10);
    let nat = NatMap::create(IpFamily::V4, 1024, Some(dir.path())).unwrap();
    // An orphan egress SNAT mapping: no CT entry goes with it.
    let orphan = AnyCtKey::V4(CtKey4::new(
        [10, 9, 9, 9].into(),
        [10, 8, 8, 8].into(),
        80,
        5555,
        6,
        TupleFlags::OUT,
    ));
    nat.update(&orphan, &NatEntry::new(IpAddr::from([1, 1, 1, 1]), 7000))
        .unwrap();

    let secs = Arc::new(AtomicU64::new(0));
    let s2 = Arc::clone(&secs);
    let ctl = GcController::builder(vec![
        CtMap::open(dir.join("cilium_ct4_global")).unwrap(),
        CtMap::open(dir.join("cilium_ct_any4_global")).unwrap(),
        CtMap::open(dir.join("cilium_ct4_00042")).unwrap(),
    ])
    .nat(NatMap::open(dir.join("cilium_snat_v4_external")).unwrap())
    .clock(ClockSource::custom(|| NOW))
    .monotonic(move || Duration::from_secs(s2.load(Ordering::SeqCst)))
    .start()
    .unwrap();

    // Run 1 at once: the max delete ratio is the TCP map's 0.5, so the
    // starting 300 s interval halves.
    let r = ctl.wait_for_run(1, WAIT).expect("first run");
    assert_eq!(r.number, 1);
    assert!(!r.woken);
    assert_eq!(r.maps.len(), 3);
    assert_eq!(r.maps[0].map, "cilium_ct4_global");
    let s0 = r.maps[0].result.as_ref().unwrap();
    assert_eq!((s0.scanned, s0.deleted), (100, 50));
    assert_eq!(r.maps[1].result.as_ref().unwrap().scanned, 0);
    assert_eq!(r.maps[2].result.as_ref().unwrap().deleted, 10);
    assert!((r.max_delete_ratio - 0.5).abs() < 1e-9);
    assert_eq!(r.next_interval, Duration::from_secs(150));
    assert!(r.nat_purge.is_empty());
    assert_eq!(tcp.count().unwrap(), 50);

    // Woken early 10 s later (controller clock): the previous interval was
    // 10 s of an expected 150 s, so the ratio 0.2 scales to 3.0 (capped at
    // 0.9): 150 s * 0.1 = 15 s.
    fill(&tcp, 1000, 50, 20);
    secs.store(10, Ordering::SeqCst);
    ctl.wake();
    let r = ctl.wait_for_run(2, WAIT).expect("woken run");
    assert!(r.woken);
    assert_eq!(r.maps[0].result.as_ref().unwrap().deleted, 20);
    assert_eq!(r.next_interval, Duration::from_secs(15));

    // The orphan SNAT purge on request.
    assert_eq!(nat.count().unwrap(), 1);
    ctl.purge_orphan_nat();
    let r = ctl.wait_for_run(3, WAIT).expect("purge run");
    assert_eq!(r.nat_purge.len(), 1);
    let p = r.nat_purge[0].1.as_ref().unwrap();
    assert_eq!(p.egress_deleted, 1, "{p:?}");
    assert_eq!(nat.count().unwrap(), 0);

    // Stop is clean: the thread ends, no more runs.
    ctl.stop();
    fill(&tcp, 2000, 10, 10);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(tcp.count().unwrap(), 90);
}
