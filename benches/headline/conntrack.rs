//! Headline benchmarks of the `conntrack` area.
//!
//! * Full scan of a CT map: `CtMap::iter` (decoding every key and entry)
//!   against a raw `bpf_map_lookup_batch` loop through libbpf-sys at its best
//!   batch size, on the same map. Goal: ours >= 0.8x the raw rate.
//! * GC with 50% expired: `podnet_conntrack::gc` against a raw scan + raw
//!   `bpf_map_delete_batch` of the same expired keys, on identically filled
//!   maps. Goal: ours <= 1.25x the raw time, for both GC modes (deletes
//!   overlapped on a second thread, the default, and one thread), which also
//!   alternate with each other so the table says which one is faster.
//!   These rows pin the syscall scan (`GcScan::Syscall`) they measure.
//! * Peak RSS growth during GC (O(batch), not O(map)).
//! * Issue #16: GC with the candidates found in the kernel (the default
//!   where the kernel allows it): 1% expired against the raw loop (goal
//!   <= 0.5x), 50% expired against the floor of the design that keeps
//!   renewals, an in-kernel walk plus one raw `LOOKUP_AND_DELETE` per key
//!   (goal <= 1.1x). The raw loop deletes flows the datapath renews between
//!   its scan and its delete; the table says so.
//!
//! Sizes: 1M entries (`cargo bench`), 20k in quick mode; every figure over
//! alternating rounds (`rounds.rs`).

use std::os::fd::AsRawFd;
use std::time::Duration;

use podnet_conntrack::libbpf_sys;
use podnet_conntrack::{
    gc, CreateOptions, CtEntry, CtKey4, CtMap, CtMapKind, GcFilter, TupleFlags,
};
use testsupport::BpfDir;

use crate::report::{peak_rss_mib, reset_peak_rss, time, Goal, Report};
use crate::rounds::{alternate_until, median, Record, Rounds, Samples};

const NOW: u32 = 1_000_000;

fn key(i: u32) -> CtKey4 {
    CtKey4::new(
        (0x0a00_0000 | (i & 0x00ff_ffff)).into(),
        std::net::Ipv4Addr::new(192, 168, (i >> 8) as u8, i as u8),
        80,
        (1024 + i % 60000) as u16,
        6,
        if i % 2 == 0 {
            TupleFlags::OUT
        } else {
            TupleFlags::IN
        },
    )
}

/// Writes `entry(j)` under `key(j)` for every `j` of `keys`, 65,536 a batch.
fn write_entries(map: &CtMap, keys: impl Iterator<Item = u32>, entry: impl Fn(u32) -> CtEntry) {
    let mut items = Vec::with_capacity(65536);
    for j in keys {
        items.push((key(j), entry(j)));
        if items.len() == 65536 {
            map.update_many(&items).expect("writing the benchmark map");
            items.clear();
        }
    }
    if !items.is_empty() {
        map.update_many(&items).expect("writing the benchmark map");
    }
}

/// Entry `j` of `fill`'s map: half expired, interleaved.
fn half_expired(j: u32) -> CtEntry {
    let mut e = CtEntry::default();
    e.set_lifetime(if j % 2 == 0 { NOW - 10 } else { NOW + 10 });
    e.set_packets(u64::from(j));
    e
}

fn fill(map: &CtMap, n: u32) {
    write_entries(map, 0..n, half_expired);
}

/// Raw batch-lookup walk; returns entries seen. `on_batch(keys, values, n)`.
fn raw_scan(fd: i32, batch: u32, mut on_batch: impl FnMut(&[u8], &[u8], usize)) -> usize {
    let mut keys = vec![0u8; 14 * batch as usize];
    let mut vals = vec![0u8; 56 * batch as usize];
    let mut in_tok = [0u8; 8];
    let mut out_tok = [0u8; 8];
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut first = true;
    let mut total = 0;
    loop {
        let mut count = batch;
        // SAFETY: buffers sized for `batch` keys/values of this map.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                if first {
                    std::ptr::null_mut()
                } else {
                    in_tok.as_mut_ptr().cast()
                },
                out_tok.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        first = false;
        let n = count as usize;
        if n > 0 {
            on_batch(&keys[..n * 14], &vals[..n * 56], n);
        }
        total += n;
        if ret != 0 {
            assert!(-ret == libc::ENOENT, "raw lookup_batch failed: {ret}");
            break;
        }
        in_tok = out_tok;
    }
    total
}

fn raw_delete_batch(fd: i32, keys: &[u8]) {
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut count = (keys.len() / 14) as u32;
    // SAFETY: `keys` holds `count` 14-byte keys.
    let ret =
        unsafe { libbpf_sys::bpf_map_delete_batch(fd, keys.as_ptr().cast(), &mut count, &opts) };
    assert_eq!(ret, 0, "raw delete_batch");
}

/// The raw GC: scan + batch delete of the expired keys of each batch.
fn raw_gc(fd: i32, batch: u32) {
    let mut del = Vec::with_capacity(14 * batch as usize);
    raw_scan(fd, batch, |keys, vals, cnt| {
        del.clear();
        for i in 0..cnt {
            let lt = u32::from_ne_bytes([
                vals[i * 56 + 32],
                vals[i * 56 + 33],
                vals[i * 56 + 34],
                vals[i * 56 + 35],
            ]);
            if lt < NOW {
                del.extend_from_slice(&keys[i * 14..(i + 1) * 14]);
            }
        }
        if !del.is_empty() {
            raw_delete_batch(fd, &del);
        }
    });
}

fn our_gc(map: &CtMap, sequential: bool) -> usize {
    let mut f = GcFilter::new()
        .remove_expired(true)
        .time(NOW)
        .sequential(sequential)
        .scan(podnet_conntrack::GcScan::Syscall);
    gc(map, &mut f).expect("gc").deleted
}

pub fn run(report: &mut Report) {
    let n = report.size(1_000_000, 20_000) as u32;
    let label = if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1000)
    };
    let dir = BpfDir::new("bench-ct");
    let kind = CtMapKind::from_name("cilium_ct4_global").expect("a Cilium name");
    let opts = CreateOptions::new(kind)
        .max_entries(n * 2)
        .pin_in(dir.path());
    let map = CtMap::create(&opts).expect("creating the benchmark map");
    fill(&map, n);
    let fd = map.as_fd().as_raw_fd();

    // --- Full scan ---------------------------------------------------------
    // Calibration (not counted): the raw loop's best batch size, by the
    // median of alternating rounds (a best of two picked a different size
    // in each of three runs, and the GC rows' baseline with it).
    let sizes = [256u32, 1024, 4096, 16384, 65536];
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for round in 0..report.size(5, 1) {
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (d, seen) = time(|| raw_scan(fd, sizes[i], |_, _, _| {}));
            assert_eq!(seen, n as usize);
            took[i].push(d.as_secs_f64());
        }
    }
    let medians: Vec<f64> = took.into_iter().map(median).collect();
    let batch = (0..sizes.len())
        .min_by(|&a, &b| medians[a].total_cmp(&medians[b]))
        .map_or(4096, |i| sizes[i]);
    if std::env::var_os("CT_BENCH_SWEEP").is_some() {
        for batch in [128u32, 256, 512, 1024, 2048, 4096, 16384] {
            for _ in 0..3 {
                let (r, _) = time(|| raw_scan(fd, batch, |_, _, _| {}));
                let (o, _) = time(|| {
                    map.iter_with_batch(batch)
                        .expect("iter")
                        .map(|r| r.expect("scan").1.lifetime() as u64)
                        .sum::<u64>()
                });
                eprintln!("   sweep batch {batch}: raw {:?} ours {:?}", r, o);
            }
        }
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64() / 1e6;
    let rows = |scans: &Samples| {
        vec![scans.row(
            "conntrack",
            format!("full scan, {label} entries (CtMap::iter, typed)"),
            "ours",
            format!("raw bpf_map_lookup_batch loop, batch {batch}"),
            "raw",
            "M entries/s",
            Goal::RatioAtLeast(0.8),
        )]
    };
    let made = alternate_until(
        report.plan(Rounds::Other, 2),
        &mut [
            &mut |r: &mut Record<'_>| {
                let (d, seen) = time(|| raw_scan(fd, batch, |_, _, _| {}));
                assert_eq!(seen, n as usize);
                r.put("raw", rate(d));
            },
            &mut |r: &mut Record<'_>| {
                let (d, seen) = time(|| {
                    let mut sum = 0u64;
                    let mut c = 0usize;
                    for r in map.iter().expect("iter") {
                        let (k, e) = r.expect("scan");
                        sum = sum.wrapping_add(u64::from(e.lifetime()) + u64::from(k.sport()));
                        c += 1;
                    }
                    std::hint::black_box(sum);
                    c
                });
                assert_eq!(seen, n as usize);
                r.put("ours", rate(d));
            },
        ],
        &rows,
    );
    report.add_all(made);

    // --- GC, 50% expired ---------------------------------------------------
    // Each contender puts back what the last pass took (not timed), then
    // collects the map.
    let refill = || put_back(&map, n, 2, half_expired);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rows = |gcs: &Samples| {
        let mut made = Vec::new();
        let raw_name = "raw lookup_batch scan + raw delete_batch (loses renewals)";
        // Which mode is faster, by the per-round paired ratio of the two.
        let modes = gcs.ratio("overlapped", "sequential");
        let faster = if modes.straddles(1.0) {
            "neither mode faster"
        } else if modes.median < 1.0 {
            "overlapped faster"
        } else {
            "sequential faster"
        };
        made.push(gcs.row(
        "conntrack",
        format!(
            "GC pass, {label} entries, 50% expired, syscall scan, deletes overlapped on a 2nd thread"
        ),
        "overlapped",
        raw_name,
        "raw",
        "ms",
        Goal::RatioAtMost(1.25),
    ));
        made.push(gcs.row(
            "conntrack",
            format!(
            "GC pass, {label} entries, 50% expired, syscall scan, one thread (sequential: true)"
        ),
            "sequential",
            raw_name,
            "raw",
            "ms",
            // The goal belongs to the default mode (overlapped, chosen by the
            // next row's measurement); one thread is reported for comparison.
            Goal::None,
        ));
        made.push(
            gcs.row(
                "conntrack",
                format!("GC pass, {label} entries: overlapped against one thread"),
                "overlapped",
                "the same GC with sequential: true",
                "sequential",
                "ms",
                Goal::None,
            )
            .note(faster),
        );
        made.push(gcs.alone(
            "conntrack",
            format!("peak RSS growth during GC of {label} entries"),
            "rss",
            "MiB",
            Goal::Below(16.0),
        ));
        made
    };
    let made = alternate_until(
        report.plan(Rounds::Other, 2),
        &mut [
            &mut |r: &mut Record<'_>| {
                refill();
                let (d, ()) = time(|| raw_gc(fd, batch));
                assert_eq!(map.count().expect("count"), (n / 2) as usize);
                r.put("raw", ms(d));
            },
            &mut |r: &mut Record<'_>| {
                refill();
                reset_peak_rss();
                let before = peak_rss_mib();
                let (d, deleted) = time(|| our_gc(&map, false));
                r.put("rss", peak_rss_mib() - before);
                assert_eq!(deleted, (n / 2) as usize);
                assert_eq!(map.count().expect("count"), (n / 2) as usize);
                r.put("overlapped", ms(d));
            },
            &mut |r: &mut Record<'_>| {
                refill();
                let (d, deleted) = time(|| our_gc(&map, true));
                assert_eq!(deleted, (n / 2) as usize);
                r.put("sequential", ms(d));
            },
        ],
        &rows,
    );
    report.add_all(made);
    gc_in_kernel_rows(report, &map, n, &label, batch);
}

/// Puts back the entries of the keys `j < n` with `j % every == 0` as
/// `entry(j)` makes them: the expired entries a GC pass removed. Cheaper
/// than a flush and a refill of the whole map (2 s for 1M entries, which a
/// row of 24 rounds of 5 passes per contender paid 240 times).
fn put_back(map: &CtMap, n: u32, every: u32, entry: impl Fn(u32) -> CtEntry) {
    write_entries(map, (0..n).step_by(every as usize), entry);
}

/// The expired entry of `put_back` for `fill_share`'s maps.
fn expired(_: u32) -> CtEntry {
    let mut e = CtEntry::default();
    e.set_lifetime(NOW - 10);
    e
}

/// Fills `n` entries, every `every`-th expired.
fn fill_share(map: &CtMap, n: u32, every: u32) {
    map.flush().expect("flush");
    write_entries(map, 0..n, |j| {
        let mut e = CtEntry::default();
        e.set_lifetime(if j % every == 0 { NOW - 10 } else { NOW + 10 });
        e
    });
}

/// The floor of the design that keeps renewals: candidates found in the
/// kernel (the crate's walk, as a dry run), then one raw
/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` per key, with no bookkeeping.
fn floor_gc(map: &CtMap, fd: i32) -> usize {
    let f = GcFilter::new().remove_expired(true).time(NOW);
    let keys = podnet_conntrack::gc_candidates(map, &f).expect("in-kernel walk");
    let mut v = [0u8; CtEntry::SIZE];
    for k in &keys {
        // SAFETY: 14-byte key and 56-byte value buffers for this map.
        unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem(
                fd,
                k.as_bytes().as_ptr().cast(),
                v.as_mut_ptr().cast(),
            )
        };
    }
    keys.len()
}

/// Our default GC (the in-kernel walk where the kernel allows it).
fn our_default_gc(map: &CtMap, expect: usize) {
    let mut f = GcFilter::new().remove_expired(true).time(NOW);
    let stats = gc(map, &mut f).expect("gc");
    assert!(
        stats.kernel_scan,
        "the in-kernel walk was not used: {stats:?}"
    );
    assert_eq!(stats.deleted, expect);
}

/// Timed passes per contender and round in the short GC rows. Three were
/// not enough: with medians of 0.40-0.43x against a goal of 0.5x, the third
/// quartile still reached 0.50x in one of three idle runs.
const PASSES: usize = 5;

/// Issue #16's rows, on identically refilled maps (refills not timed).
fn gc_in_kernel_rows(report: &mut Report, map: &CtMap, n: u32, label: &str, batch: u32) {
    let fd = map.as_fd().as_raw_fd();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // 1% expired: ours against the raw loop.
    let expired1 = n.div_ceil(100) as usize;
    fill_share(map, n, 100);
    let rows = |one: &Samples| {
        vec![one.row(
            "conntrack",
            format!("GC pass, {label} entries, 1% expired (candidates found in the kernel)"),
            "ours",
            format!("raw lookup_batch scan + delete_batch, batch {batch} (loses renewals)"),
            "raw",
            "ms",
            Goal::RatioAtMost(0.5),
        )]
    };
    let made = alternate_until(
        report.plan(Rounds::Other, 2),
        &mut [
            // A pass takes 0.1-0.3 s, short enough for one preempted slice
            // to move a round's ratio by a third: each contender's figure
            // in a round is the median of `PASSES` passes.
            &mut |r: &mut Record<'_>| {
                let passes = [0; PASSES].map(|_| {
                    put_back(map, n, 100, expired);
                    let (d, ()) = time(|| raw_gc(fd, batch));
                    assert_eq!(map.count().expect("count"), n as usize - expired1);
                    ms(d)
                });
                r.put("raw", median(passes.to_vec()));
            },
            &mut |r: &mut Record<'_>| {
                let passes = [0; PASSES].map(|_| {
                    put_back(map, n, 100, expired);
                    let (d, ()) = time(|| our_default_gc(map, expired1));
                    ms(d)
                });
                r.put("ours", median(passes.to_vec()));
            },
        ],
        &rows,
    );
    report.add_all(made);
    // 50% expired: ours against the floor of the design that keeps renewals.
    let expired50 = n.div_ceil(2) as usize;
    fill_share(map, n, 2);
    let rows = |half: &Samples| {
        vec![half.row(
            "conntrack",
            format!("GC pass, {label} entries, 50% expired (candidates found in the kernel)"),
            "ours",
            "floor: in-kernel walk + raw lookup_and_delete per key",
            "floor",
            "ms",
            Goal::RatioAtMost(1.1),
        )]
    };
    let made = alternate_until(
        report.plan(Rounds::Other, 2),
        &mut [
            &mut |r: &mut Record<'_>| {
                put_back(map, n, 2, expired);
                let (d, found) = time(|| floor_gc(map, fd));
                assert_eq!(found, expired50);
                r.put("floor", ms(d));
            },
            &mut |r: &mut Record<'_>| {
                put_back(map, n, 2, expired);
                let (d, ()) = time(|| our_default_gc(map, expired50));
                r.put("ours", ms(d));
            },
        ],
        &rows,
    );
    report.add_all(made);
}
