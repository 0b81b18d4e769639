//! Garbage collection of conntrack maps (Cilium's `GC`, `GCFilter`,
//! `GetInterval`; read in cilium/cilium `pkg/maps/ctmap/ctmap.go`).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::entry::{flags_in, lifetime_in, CtEntry};
use crate::error::{Error, Result};
use crate::kernel_scan::{Program, Walker, MAX_VISIT};
use crate::key::{AnyCtKey, IpFamily};
use crate::map::CtMap;
use crate::nat::NatMap;
use crate::raw::{is_unsupported, BatchScanner, DEFAULT_BATCH};

/// The clock the datapath writes `lifetime` in, and hence the clock GC
/// compares against (Cilium's `models.ClockSource` / `GetCTCurTime`).
///
/// ```
/// use podnet_conntrack::ClockSource;
/// let fixed = ClockSource::custom(|| 1000);
/// assert_eq!(fixed.now().unwrap(), 1000);
/// assert!(ClockSource::Monotonic.now().unwrap() > 0);
/// ```
#[derive(Clone)]
pub enum ClockSource {
    /// Monotonic seconds: the datapath writes `bpf_ktime_get_ns() / 1e9`
    /// (Cilium's default "ktime"; this workspace's datapath uses the coarse
    /// variant). Read from `CLOCK_MONOTONIC_COARSE`, which is never ahead of
    /// either, so GC never judges an entry expired before the datapath would.
    Monotonic,
    /// Kernel jiffies (Cilium with `--enable-bpf-clock-probe` on a kernel
    /// with `bpf_jiffies64`), at `hz` ticks per second.
    Jiffies {
        /// The kernel's `CONFIG_HZ`.
        hz: u32,
    },
    /// An injected clock (tests, replays), in the same unit as the lifetimes.
    Custom(Arc<dyn Fn() -> u32 + Send + Sync>),
}

impl fmt::Debug for ClockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockSource::Monotonic => f.write_str("Monotonic"),
            ClockSource::Jiffies { hz } => write!(f, "Jiffies {{ hz: {hz} }}"),
            ClockSource::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl ClockSource {
    /// An injected clock.
    pub fn custom(f: impl Fn() -> u32 + Send + Sync + 'static) -> ClockSource {
        ClockSource::Custom(Arc::new(f))
    }

    /// The current time in lifetime units (seconds or jiffies), truncated
    /// to 32 bits as the datapath stores it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the clock cannot be read (`clock_gettime`, `/proc/timer_list`).
    pub fn now(&self) -> Result<u32> {
        match self {
            ClockSource::Monotonic => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime writes into the timespec we own.
                if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
                    return Err(Error::InvalidInput(format!(
                        "clock_gettime(CLOCK_MONOTONIC_COARSE): {}",
                        std::io::Error::last_os_error()
                    )));
                }
                Ok(ts.tv_sec as u32)
            }
            ClockSource::Jiffies { .. } => read_jiffies().map(|j| j as u32),
            ClockSource::Custom(f) => Ok(f()),
        }
    }

    /// Converts a time in lifetime units to seconds.
    #[must_use]
    pub fn to_seconds(&self, t: u64) -> u64 {
        match self {
            ClockSource::Jiffies { hz } if *hz > 0 => t / u64::from(*hz),
            _ => t,
        }
    }
}

/// Reads the current jiffies from `/proc/timer_list` (as Cilium does).
fn read_jiffies() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/timer_list")
        .map_err(|e| Error::InvalidInput(format!("reading jiffies from /proc/timer_list: {e}")))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("jiffies:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::InvalidInput("no `jiffies:` line in /proc/timer_list".into()))
}

/// A callback for each entry GC keeps (Cilium's `EmitCTEntryCB`). The key's
/// [`AnyCtKey::src_ip`] / [`AnyCtKey::dst_ip`] are the flow's addresses as
/// Cilium passes them.
pub type EmitFn<'a> = Box<dyn FnMut(&AnyCtKey, &CtEntry) + Send + 'a>;

/// How [`gc`] finds the entries to delete.
///
/// ```
/// assert_eq!(podnet_conntrack::GcScan::default(), podnet_conntrack::GcScan::Auto);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GcScan {
    /// [`GcScan::Kernel`] where the kernel loads the walk program and no
    /// [`GcFilter::emit`] is set, else [`GcScan::Syscall`].
    #[default]
    Auto,
    /// The candidates are found in the kernel: the crate's BPF program walks
    /// the map with `bpf_for_each_map_elem` (run with `BPF_PROG_TEST_RUN`,
    /// kernel 5.13+, root or `CAP_BPF`) and returns the keys of expired or
    /// address-matched entries in runs of at most 1,048,576 entries examined
    /// and 131,072 keys found; no value crosses to user space. When `emit` is
    /// set, GC scans with syscalls instead (kept entries must be read).
    Kernel,
    /// The map is streamed to user space with `BPF_MAP_LOOKUP_BATCH`.
    Syscall,
}

/// What to collect (Cilium's `GCFilter`).
///
/// ```
/// use podnet_conntrack::{ClockSource, GcFilter};
/// let mut kept = 0;
/// let mut f = GcFilter::expired(&ClockSource::custom(|| 100)).unwrap();
/// f.match_ips.insert("10.0.0.9".parse().unwrap());
/// f.emit = Some(Box::new(|_k, _e| kept += 1));
/// assert!(f.remove_expired && f.time == 100);
/// ```
#[derive(Default)]
#[non_exhaustive]
#[must_use]
pub struct GcFilter<'a> {
    /// Delete entries whose `lifetime < time`.
    pub remove_expired: bool,
    /// The reference time, in lifetime units (see [`ClockSource`]).
    pub time: u32,
    /// Cilium's `ValidIPs`: when set, delete entries whose source *and*
    /// destination address are both outside it (an empty set deletes every
    /// entry). Checked after expiry and before `match_ips`; such deletions
    /// count as [`GcStats::deleted_matched`]. Addresses compare as stored: in
    /// an IPv6 map an IPv4-mapped address is an IPv6 address.
    pub valid_ips: Option<HashSet<IpAddr>>,
    /// Delete entries whose source or destination address is in the set.
    pub match_ips: HashSet<IpAddr>,
    /// Called exactly once for every entry that is kept.
    pub emit: Option<EmitFn<'a>>,
    /// Entries per `BPF_MAP_LOOKUP_BATCH` (0: [`crate::DEFAULT_BATCH`]). Grown on `ENOSPC`.
    pub batch_size: u32,
    /// Run the per-key deletions of expired entries of the syscall scan on
    /// the calling thread, instead of a helper thread that overlaps them
    /// with the scan (the default). Measured on a 2-core machine: overlapped
    /// took 0.75x the one-thread time when the machine was otherwise idle,
    /// but 1.24-1.35x in three runs while other builds kept both cores busy
    /// (the helper thread then waits for a CPU): set it on a loaded node.
    pub sequential: bool,
    /// The SNAT map whose mappings go with deleted egress CT entries, as
    /// Cilium's GC does (`purgeCtEntry4/6`: `DeleteMapping`, or
    /// `DeleteSwappedMapping` for `DSRInternal` entries).
    pub nat: Option<&'a NatMap>,
    /// How candidates are found (default [`GcScan::Auto`]).
    pub scan: GcScan,
}

impl fmt::Debug for GcFilter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcFilter")
            .field("remove_expired", &self.remove_expired)
            .field("time", &self.time)
            .field("valid_ips", &self.valid_ips)
            .field("match_ips", &self.match_ips)
            .field("emit", &self.emit.is_some())
            .field("batch_size", &self.batch_size)
            .field("sequential", &self.sequential)
            .field("nat", &self.nat.is_some())
            .field("scan", &self.scan)
            .finish()
    }
}

impl<'a> GcFilter<'a> {
    /// A filter that removes nothing; set what to collect with the builder
    /// methods below (or the public fields).
    ///
    /// ```
    /// use podnet_conntrack::{GcFilter, GcScan};
    /// let f = GcFilter::new().remove_expired(true).time(100).scan(GcScan::Syscall);
    /// assert!(f.remove_expired && f.time == 100);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`GcFilter::remove_expired`].
    pub fn remove_expired(mut self, yes: bool) -> Self {
        self.remove_expired = yes;
        self
    }

    /// Sets [`GcFilter::time`].
    pub fn time(mut self, time: u32) -> Self {
        self.time = time;
        self
    }

    /// Sets [`GcFilter::match_ips`].
    pub fn match_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.match_ips = ips.into_iter().collect();
        self
    }

    /// Sets [`GcFilter::valid_ips`].
    pub fn valid_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.valid_ips = Some(ips.into_iter().collect());
        self
    }

    /// Sets [`GcFilter::emit`].
    pub fn emit(mut self, f: impl FnMut(&AnyCtKey, &CtEntry) + Send + 'a) -> Self {
        self.emit = Some(Box::new(f));
        self
    }

    /// Sets [`GcFilter::batch_size`].
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n;
        self
    }

    /// Sets [`GcFilter::sequential`].
    pub fn sequential(mut self, yes: bool) -> Self {
        self.sequential = yes;
        self
    }

    /// Sets [`GcFilter::nat`].
    pub fn nat(mut self, nat: &'a NatMap) -> Self {
        self.nat = Some(nat);
        self
    }

    /// Sets [`GcFilter::scan`].
    pub fn scan(mut self, scan: GcScan) -> Self {
        self.scan = scan;
        self
    }

    /// A filter removing entries expired at `clock`'s current time.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the clock cannot be read (`clock_gettime`, `/proc/timer_list`).
    pub fn expired(clock: &ClockSource) -> Result<Self> {
        Ok(GcFilter {
            remove_expired: true,
            time: clock.now()?,
            ..Default::default()
        })
    }

    fn decider(&self) -> Decider<'_> {
        Decider {
            remove_expired: self.remove_expired,
            time: self.time,
            valid_ips: self.valid_ips.as_ref(),
            match_ips: &self.match_ips,
            nat: self.nat,
        }
    }

    #[cfg(test)]
    fn decide(&self, family: IpFamily, key: &[u8], lifetime: u32) -> Verdict {
        self.decider().decide(family, key, lifetime)
    }
}

/// The part of a [`GcFilter`] that decides, shareable with the helper thread.
#[derive(Clone, Copy)]
struct Decider<'a> {
    remove_expired: bool,
    time: u32,
    valid_ips: Option<&'a HashSet<IpAddr>>,
    match_ips: &'a HashSet<IpAddr>,
    nat: Option<&'a NatMap>,
}

impl Decider<'_> {
    /// Cilium's NAT clean-up for a deleted CT entry.
    fn purge_nat(&self, family: IpFamily, key: &[u8], value: &[u8]) -> Result<usize> {
        match self.nat {
            None => Ok(0),
            Some(nat) => nat.purge_for_ct(&AnyCtKey::copy_from(family, key), flags_in(value)),
        }
    }
}

impl Decider<'_> {
    fn decide(&self, family: IpFamily, key: &[u8], lifetime: u32) -> Verdict {
        if self.remove_expired && lifetime < self.time {
            return Verdict::Expired;
        }
        if self.valid_ips.is_none() && self.match_ips.is_empty() {
            return Verdict::Keep;
        }
        let (d, s) = addrs(family, key);
        if let Some(valid) = self.valid_ips {
            if !valid.contains(&d) && !valid.contains(&s) {
                return Verdict::Matched;
            }
        }
        if self.match_ips.contains(&d) || self.match_ips.contains(&s) {
            return Verdict::Matched;
        }
        Verdict::Keep
    }
}

fn addrs(family: IpFamily, key: &[u8]) -> (IpAddr, IpAddr) {
    match family {
        IpFamily::V4 => {
            let d: [u8; 4] = [key[0], key[1], key[2], key[3]];
            let s: [u8; 4] = [key[4], key[5], key[6], key[7]];
            (Ipv4Addr::from(d).into(), Ipv4Addr::from(s).into())
        }
        IpFamily::V6 => {
            let mut d = [0u8; 16];
            let mut s = [0u8; 16];
            d.copy_from_slice(&key[0..16]);
            s.copy_from_slice(&key[16..32]);
            (Ipv6Addr::from(d).into(), Ipv6Addr::from(s).into())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Expired,
    Matched,
}

/// What a GC pass did.
///
/// ```
/// let s = podnet_conntrack::GcStats { scanned: 10, deleted: 4, deleted_expired: 3, deleted_matched: 1, alive: 6, ..Default::default() };
/// assert_eq!(s.to_string(), "scanned=10 deleted=4 (expired=3 matched=1) alive=6 renewed=0 vanished=0");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Entries the scan saw.
    pub scanned: usize,
    /// Entries deleted (`deleted_expired + deleted_matched`).
    pub deleted: usize,
    /// Entries kept (each passed to `emit`).
    pub alive: usize,
    /// Deleted because `lifetime < time`.
    pub deleted_expired: usize,
    /// Deleted because an address is in `match_ips`.
    pub deleted_matched: usize,
    /// Seen expired by the scan but renewed by the datapath before deletion:
    /// put back / left in place (counted in `alive`, and emitted).
    pub renewed: usize,
    /// Candidates that disappeared before GC deleted them (LRU eviction,
    /// the datapath): neither deleted nor alive.
    pub vanished: usize,
    /// `BPF_MAP_LOOKUP_BATCH` calls that returned entries.
    pub batches: u64,
    /// Times the batch grew after `ENOSPC`.
    pub enospc_grows: u32,
    /// SNAT entries removed with deleted CT entries ([`GcFilter::nat`]).
    pub nat_deleted: usize,
    /// The candidates were found in the kernel ([`GcScan::Kernel`]).
    pub kernel_scan: bool,
    /// Runs of the in-kernel walk.
    pub kernel_runs: u64,
}

impl fmt::Display for GcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scanned={} deleted={} (expired={} matched={}) alive={} renewed={} vanished={}",
            self.scanned,
            self.deleted,
            self.deleted_expired,
            self.deleted_matched,
            self.alive,
            self.renewed,
            self.vanished
        )
    }
}

/// Runs one GC pass over `map` (Cilium's `GC` / `doGC4` / `doGC6`).
///
/// The scan streams the map with `BPF_MAP_LOOKUP_BATCH` (O(batch) memory,
/// `ENOSPC` handled by growing the batch); it never stops early without
/// returning an error.
///
/// Deletion never loses an entry the datapath renewed during the pass:
/// * entries matched by `match_ips` (a decision that depends on the key
///   only) go with `BPF_MAP_DELETE_BATCH`;
/// * expired entries are removed one by one with
///   `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, which returns the value the kernel
///   removed *atomically*; if that value is no longer expired (the datapath
///   renewed it after the scan) it is put back with `BPF_NOEXIST` (a newer
///   entry the datapath created meanwhile wins) and counted as `renewed`.
///   On kernels without that call for hash maps (< 5.14) the entry is
///   re-read and re-checked just before a batch delete instead.
///
/// Unless [`GcFilter::sequential`] is set, those per-key deletions of the
/// syscall scan run on a helper thread fed through a bounded channel, overlapping the scan (memory
/// stays O(batch)). `emit` is always called on the calling thread.
///
/// ```no_run
/// use podnet_conntrack::{gc, ClockSource, CtMap, GcFilter};
/// let map = CtMap::open_named(podnet_conntrack::DEFAULT_PIN_DIR, "cilium_ct4_global")?;
/// let mut filter = GcFilter::expired(&ClockSource::Monotonic)?;
/// let stats = gc(&map, &mut filter)?;
/// println!("{stats}");
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
///
/// # Errors
/// [`Error::Syscall`] when a map call fails (the pass stops with the error, never silently); [`Error::Bpf`] when [`GcScan::Kernel`] was asked for and the kernel refuses the walk.
pub fn gc(map: &CtMap, filter: &mut GcFilter<'_>) -> Result<GcStats> {
    if filter.emit.is_none() && filter.scan != GcScan::Syscall {
        match Walker::load(
            map,
            Program::Walk,
            filter.valid_ips.as_ref(),
            &filter.match_ips,
        ) {
            Ok(w) => return gc_kernel(map, filter, w),
            Err(e) if filter.scan == GcScan::Kernel => return Err(e),
            // Auto: the syscall scan below.
            Err(_) => {}
        }
    }
    let batch = if filter.batch_size == 0 {
        DEFAULT_BATCH
    } else {
        filter.batch_size
    };
    let mut scanner = BatchScanner::new(&map.raw, batch)?;
    let mut stats = GcStats::default();
    let mut del = Deletions::default();
    if filter.sequential {
        scan(map, filter, &mut scanner, &mut stats, |(keys, d)| {
            del.run(map, d, keys)
        })?;
    } else {
        // The helper thread decides with its own copy of `match_ips`: `scan`
        // holds `filter` mutably (for `emit`) meanwhile.
        let match_ips = filter.match_ips.clone();
        let valid_ips = filter.valid_ips.clone();
        let decider = Decider {
            remove_expired: filter.remove_expired,
            time: filter.time,
            valid_ips: valid_ips.as_ref(),
            match_ips: &match_ips,
            nat: filter.nat,
        };
        del = std::thread::scope(|s| -> Result<Deletions> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let worker = s.spawn(move || -> Result<Deletions> {
                let mut d = Deletions::default();
                for chunk in rx {
                    d.run(map, decider, &chunk)?;
                    let _ = back_tx.send(chunk);
                }
                Ok(d)
            });
            // Keys go over in chunks of up to CHUNK keys: few wake-ups, and
            // memory bounded by the channel's capacity.
            const CHUNK: usize = 2048;
            let ks = map.family().key_size();
            let mut pending: Vec<u8> = Vec::with_capacity(CHUNK * ks);
            let stopped = || Error::InvalidInput("GC delete thread stopped".into());
            let scanned = scan(map, filter, &mut scanner, &mut stats, |(keys, _)| {
                pending.extend_from_slice(keys);
                if pending.len() >= CHUNK * ks {
                    let mut next = back_rx.try_recv().unwrap_or_default();
                    next.clear();
                    // A send error means the helper stopped on an error:
                    // stop scanning; its result below says which.
                    tx.send(std::mem::replace(&mut pending, next))
                        .map_err(|_| stopped())?;
                }
                Ok(())
            })
            .and_then(|()| {
                if pending.is_empty() {
                    Ok(())
                } else {
                    tx.send(std::mem::take(&mut pending)).map_err(|_| stopped())
                }
            });
            drop(tx);
            let d = worker
                .join()
                .map_err(|_| Error::InvalidInput("GC delete thread panicked".into()))??;
            scanned?;
            Ok(d)
        })?;
    }
    stats.batches = scanner.calls;
    stats.enospc_grows = scanner.grows;
    finish(map, filter, stats, del)
}

/// GC with the candidates found by the in-kernel walk: each run's keys are
/// deleted (atomically, per key) before the next run, which resumes after the
/// entries already examined that are still in the map. Entries are never
/// reordered by a delete, and a renewed entry put back lands in its own
/// bucket, so the count of what stays before the cursor is exact unless the
/// datapath inserts or evicts there meanwhile (then an entry is examined
/// twice or left for the next pass; never lost).
fn gc_kernel(map: &CtMap, filter: &mut GcFilter<'_>, mut w: Walker) -> Result<GcStats> {
    let mut stats = GcStats {
        kernel_scan: true,
        ..Default::default()
    };
    let mut del = Deletions::default();
    let decider = filter.decider();
    let mut skip: u32 = 0;
    loop {
        let r = w.run(map, filter.remove_expired, filter.time, skip, MAX_VISIT)?;
        stats.kernel_runs += 1;
        stats.scanned += r.visited as usize;
        stats.alive += r.kept as usize;
        let gone_before = del.deleted_expired + del.deleted_matched + del.vanished;
        del.run(map, decider, w.keys())?;
        let gone = del.deleted_expired + del.deleted_matched + del.vanished - gone_before;
        let gone = u32::try_from(gone).unwrap_or(u32::MAX);
        skip = skip.saturating_add(r.visited.saturating_sub(gone));
        if r.done != 0 {
            break;
        }
    }
    finish(map, filter, stats, del)
}

/// The keys a GC pass with `filter` would look at (expired, or matched by
/// its addresses), found by the in-kernel walk ([`GcScan::Kernel`]) without
/// deleting anything: a dry run. `emit`, `nat`, `scan` are ignored.
///
/// ```no_run
/// use podnet_conntrack::{gc_candidates, ClockSource, CtMap, GcFilter};
/// let map = CtMap::open_named(podnet_conntrack::DEFAULT_PIN_DIR, "cilium_ct4_global")?;
/// let keys = gc_candidates(&map, &GcFilter::expired(&ClockSource::Monotonic)?)?;
/// println!("{} entries would go", keys.len());
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
///
/// # Errors
/// [`Error::Bpf`] when the kernel refuses or fails the walk program.
pub fn gc_candidates(map: &CtMap, filter: &GcFilter<'_>) -> Result<Vec<AnyCtKey>> {
    let mut w = Walker::load(
        map,
        Program::Walk,
        filter.valid_ips.as_ref(),
        &filter.match_ips,
    )?;
    let family = map.family();
    let mut keys = Vec::new();
    let mut skip: u32 = 0;
    loop {
        let r = w.run(map, filter.remove_expired, filter.time, skip, MAX_VISIT)?;
        keys.extend(
            w.keys()
                .chunks_exact(family.key_size())
                .map(|k| AnyCtKey::copy_from(family, k)),
        );
        skip = skip.saturating_add(r.visited);
        if r.done != 0 {
            return Ok(keys);
        }
    }
}

/// Adds the deletions' counts to `stats` and emits the renewed entries.
fn finish(
    map: &CtMap,
    filter: &mut GcFilter<'_>,
    mut stats: GcStats,
    del: Deletions,
) -> Result<GcStats> {
    stats.deleted_expired += del.deleted_expired;
    stats.deleted_matched += del.deleted_matched;
    stats.vanished += del.vanished;
    stats.nat_deleted += del.nat_deleted;
    let family = map.family();
    let ks = family.key_size();
    stats.renewed += del.renewed.len() / ks;
    stats.alive += del.renewed.len() / ks;
    for (k, v) in del
        .renewed
        .chunks_exact(ks)
        .zip(del.renewed_values.chunks_exact(CtEntry::SIZE))
    {
        emit(filter, family, k, v)?;
    }
    stats.deleted = stats.deleted_expired + stats.deleted_matched;
    Ok(stats)
}

/// Scans the map: kept entries are counted and emitted, key-matched ones
/// batch-deleted at once, expired ones handed to `on_expired` (their keys,
/// concatenated) per batch.
fn scan<'f, F>(
    map: &CtMap,
    filter: &mut GcFilter<'f>,
    scanner: &mut BatchScanner<'_>,
    stats: &mut GcStats,
    mut on_expired: F,
) -> Result<()>
where
    F: FnMut((&[u8], Decider<'_>)) -> Result<()>,
{
    let family = map.family();
    let ks = family.key_size();
    let vs = CtEntry::SIZE;
    let mut matched_keys: Vec<u8> = Vec::new();
    let mut matched_vals: Vec<u8> = Vec::new();
    let mut expired_keys: Vec<u8> = Vec::new();
    while let Some(n) = scanner.next_batch()? {
        stats.scanned += n;
        matched_keys.clear();
        matched_vals.clear();
        expired_keys.clear();
        for i in 0..n {
            let key = &scanner.keys[i * ks..(i + 1) * ks];
            let val = &scanner.values[i * vs..(i + 1) * vs];
            match filter.decider().decide(family, key, lifetime_in(val)) {
                Verdict::Keep => {
                    stats.alive += 1;
                    emit(filter, family, key, val)?;
                }
                Verdict::Matched => {
                    matched_keys.extend_from_slice(key);
                    matched_vals.extend_from_slice(val);
                }
                Verdict::Expired => expired_keys.extend_from_slice(key),
            }
        }
        if !matched_keys.is_empty() {
            let d = delete_batch(map, filter.decider(), &matched_keys, &matched_vals)?;
            stats.deleted_matched += d.deleted;
            stats.vanished += d.vanished;
            stats.nat_deleted += d.nat_deleted;
        }
        if !expired_keys.is_empty() {
            on_expired((&expired_keys, filter.decider()))?;
        }
    }
    Ok(())
}

/// Deletion of expired candidates, atomic per key (see [`gc`]).
#[derive(Default)]
struct Deletions {
    deleted_expired: usize,
    deleted_matched: usize,
    vanished: usize,
    nat_deleted: usize,
    /// Keys (concatenated) renewed by the datapath and restored.
    renewed: Vec<u8>,
    renewed_values: Vec<u8>,
    no_atomic: bool,
}

impl Deletions {
    fn run(&mut self, map: &CtMap, decider: Decider<'_>, keys: &[u8]) -> Result<()> {
        let raw = &map.raw;
        let family = map.family();
        let ks = family.key_size();
        let mut old = [0u8; CtEntry::SIZE];
        let mut fallback: Vec<u8> = Vec::new();
        let mut fallback_vals: Vec<u8> = Vec::new();
        for key in keys.chunks_exact(ks) {
            if !self.no_atomic && self.take_atomic(map, decider, key, &mut old)? {
                continue;
            }
            // Kernels without BPF_MAP_LOOKUP_AND_DELETE_ELEM on hash maps:
            // re-read, re-check, then batch delete.
            if !raw.lookup_into(key, &mut old)? {
                self.vanished += 1;
                continue;
            }
            match decider.decide(family, key, lifetime_in(&old)) {
                Verdict::Keep => {
                    self.renewed.extend_from_slice(key);
                    self.renewed_values.extend_from_slice(&old);
                }
                _ => {
                    fallback.extend_from_slice(key);
                    fallback_vals.extend_from_slice(&old);
                }
            }
        }
        if !fallback.is_empty() {
            let d = delete_batch(map, decider, &fallback, &fallback_vals)?;
            self.deleted_expired += d.deleted;
            self.vanished += d.vanished;
            self.nat_deleted += d.nat_deleted;
        }
        Ok(())
    }

    /// Deletes `key` with `BPF_MAP_LOOKUP_AND_DELETE_ELEM` and re-decides on
    /// the value removed, restoring it if the datapath renewed it. `Ok(false)`
    /// (and `no_atomic` set) when the kernel lacks that call for hash maps.
    fn take_atomic(
        &mut self,
        map: &CtMap,
        decider: Decider<'_>,
        key: &[u8],
        old: &mut [u8; CtEntry::SIZE],
    ) -> Result<bool> {
        let raw = &map.raw;
        let family = map.family();
        match raw.lookup_and_delete_into(key, old) {
            Ok(true) => {}
            Ok(false) => {
                self.vanished += 1;
                return Ok(true);
            }
            Err(e) => {
                if is_unsupported(e.errno().unwrap_or(0)) {
                    self.no_atomic = true;
                    return Ok(false);
                }
                return Err(e);
            }
        }
        match decider.decide(family, key, lifetime_in(old)) {
            Verdict::Expired => self.deleted_expired += 1,
            Verdict::Matched => self.deleted_matched += 1,
            Verdict::Keep => {
                // Renewed between scan and delete: put it back unless the
                // datapath already made a new one.
                let r = raw.update_raw(key, old, libbpf_sys::BPF_NOEXIST.into());
                if r != 0 && -r != libc::EEXIST {
                    return Err(raw.err(
                        "BPF_MAP_UPDATE_ELEM (restoring a renewed entry)",
                        crate::raw::errno(r),
                    ));
                }
                self.renewed.extend_from_slice(key);
                self.renewed_values.extend_from_slice(old);
                return Ok(true);
            }
        }
        self.nat_deleted += decider.purge_nat(family, key, old)?;
        Ok(true)
    }
}

/// What [`delete_batch`] did.
struct BatchDeleted {
    deleted: usize,
    vanished: usize,
    nat_deleted: usize,
}

/// Batch-deletes `keys` (concatenated), counting those already gone as
/// vanished, then runs the NAT clean-up for each with its scanned value.
fn delete_batch(
    map: &CtMap,
    decider: Decider<'_>,
    keys: &[u8],
    vals: &[u8],
) -> Result<BatchDeleted> {
    let family = map.family();
    let ks = family.key_size();
    let want = keys.len() / ks;
    let deleted = map.raw.delete_batch(keys)?;
    let mut nat_deleted = 0;
    if decider.nat.is_some() {
        for (k, v) in keys.chunks_exact(ks).zip(vals.chunks_exact(CtEntry::SIZE)) {
            nat_deleted += decider.purge_nat(family, k, v)?;
        }
    }
    Ok(BatchDeleted {
        deleted,
        vanished: want - deleted,
        nat_deleted,
    })
}

fn emit(filter: &mut GcFilter<'_>, family: IpFamily, key: &[u8], val: &[u8]) -> Result<()> {
    if let Some(cb) = filter.emit.as_mut() {
        let k = AnyCtKey::copy_from(family, key);
        let e = CtEntry::copy_from(val);
        cb(&k, &e);
    }
    Ok(())
}

/// Cilium's `ConntrackGCStartingInterval` (`pkg/defaults`).
pub const GC_STARTING_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Cilium's `ConntrackGCMinInterval`.
pub const GC_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Cilium's `ConntrackGCMaxLRUInterval`.
pub const GC_MAX_LRU_INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// Go's `time.Duration.Round(time.Second)` on a nanosecond count.
fn round_to_second(ns: i64) -> Duration {
    const S: i64 = 1_000_000_000;
    if ns <= 0 {
        return Duration::ZERO;
    }
    let r = ns % S;
    // Saturating: an interval near i64::MAX ns (292 years) must not overflow
    // (callers clamp it to GC_MAX_LRU_INTERVAL anyway).
    let d = if r + r < S {
        ns - r
    } else {
        ns.saturating_add(S - r)
    };
    Duration::from_nanos(d.unsigned_abs())
}

/// Cilium's `calculateInterval`: the next interval after one of `prev` that
/// deleted `max_delete_ratio` of the entries. More than 25% deleted shortens
/// it (to `prev * (1 - ratio)`, ratio capped at 0.9, at least 10 s); less than
/// 5% lengthens it 1.5x (at most 12 h); otherwise it stays.
///
/// ```
/// use podnet_conntrack::calculate_interval;
/// use std::time::Duration;
/// assert_eq!(calculate_interval(Duration::from_secs(60), 0.4), Duration::from_secs(36));
/// assert_eq!(calculate_interval(Duration::from_secs(10), 0.01), Duration::from_secs(15));
/// ```
#[must_use]
pub fn calculate_interval(prev: Duration, max_delete_ratio: f64) -> Duration {
    let mut interval = prev;
    if max_delete_ratio == 0.0 {
        return interval;
    }
    let ns = prev.as_nanos().min(i64::MAX as u128) as f64;
    if max_delete_ratio > 0.25 {
        let r = max_delete_ratio.min(0.9);
        interval = round_to_second((ns * (1.0 - r)) as i64);
        if interval < GC_MIN_INTERVAL {
            interval = GC_MIN_INTERVAL;
        }
    } else if max_delete_ratio < 0.05 {
        interval = round_to_second((ns * 1.5) as i64);
        if interval > GC_MAX_LRU_INTERVAL {
            interval = GC_MAX_LRU_INTERVAL;
        }
    }
    interval
}

/// Cilium's `GetInterval` with its state (`cachedGCInterval`) and options
/// (`ConntrackGCInterval`, `ConntrackGCMaxInterval`) made explicit.
///
/// ```
/// use podnet_conntrack::GcInterval;
/// use std::time::Duration;
/// let mut iv = GcInterval::default();
/// // First run: starts from 5 minutes; 50% deleted halves it.
/// assert_eq!(iv.get_interval(Duration::ZERO, 0.5), Duration::from_secs(150));
/// ```
#[derive(Clone, Debug, Default)]
pub struct GcInterval {
    cached: Option<Duration>,
    /// A fixed interval (`--conntrack-gc-interval`): returned as is.
    pub fixed: Option<Duration>,
    /// An upper bound (`--conntrack-gc-max-interval`).
    pub max: Option<Duration>,
}

impl GcInterval {
    /// The next GC interval, given how long the previous one actually was and
    /// the largest share of entries a map lost in the last pass.
    pub fn get_interval(&mut self, actual_prev: Duration, max_delete_ratio: f64) -> Duration {
        if let Some(f) = self.fixed.filter(|f| !f.is_zero()) {
            return f;
        }
        let mut ratio = max_delete_ratio;
        let expected = match self.cached {
            None => GC_STARTING_INTERVAL,
            Some(exp) => {
                if actual_prev < exp && !actual_prev.is_zero() {
                    ratio *= exp.as_secs_f64() / actual_prev.as_secs_f64();
                }
                exp
            }
        };
        let mut next = calculate_interval(expected, ratio);
        if ratio != 0.0 {
            // Cilium caches inside calculateInterval, before the max clamp.
            self.cached = Some(next);
        }
        if let Some(m) = self.max.filter(|m| !m.is_zero()) {
            if next > m {
                next = m;
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calculate_interval_table() {
        let s = Duration::from_secs;
        // (prev, ratio, expected): Cilium's TestCalculateInterval cases and more.
        let cases: &[(Duration, f64, Duration)] = &[
            (s(60), 0.0, s(60)),
            (s(60), 0.1, s(60)),
            (s(60), 0.2, s(60)),
            (s(60), 0.25, s(60)),
            (s(60), 0.05, s(60)),
            (s(60), 0.40, s(36)),
            (s(60), 0.60, s(24)),
            (s(60), 0.95, s(10)), // capped at 0.9 -> 6 s -> min 10 s
            (s(300), 0.95, s(30)),
            (s(10), 0.01, s(15)),
            (s(10), 0.04, s(15)),
            (s(1), 0.9, GC_MIN_INTERVAL),
            (s(24 * 3600), 0.01, GC_MAX_LRU_INTERVAL),
            (s(11 * 3600), 0.01, GC_MAX_LRU_INTERVAL),
            (s(3), 0.01, Duration::from_millis(4500).max(s(5))), // 4.5 s rounds up to 5 s
            (s(7), 0.5, s(10)),                                  // 3.5 s -> min
            (s(101), 0.5, s(51)),                                // 50.5 s rounds half up
        ];
        for &(prev, ratio, want) in cases {
            assert_eq!(
                calculate_interval(prev, ratio),
                want,
                "prev={prev:?} ratio={ratio}"
            );
        }
    }

    #[test]
    fn get_interval_sequence() {
        let s = Duration::from_secs;
        let mut iv = GcInterval::default();
        // No deletions: stays at the starting interval and caches nothing.
        assert_eq!(iv.get_interval(Duration::ZERO, 0.0), GC_STARTING_INTERVAL);
        assert_eq!(iv.cached, None);
        // Few deletions: grows 1.5x from the starting interval.
        assert_eq!(iv.get_interval(s(300), 0.01), s(450));
        assert_eq!(iv.get_interval(s(450), 0.01), s(675));
        // Many deletions: shrinks.
        assert_eq!(
            iv.get_interval(s(675), 0.5),
            Duration::from_millis(337_500).max(s(338))
        );
        // A run that came early (actual < expected) scales the ratio up:
        // expected 338 s, actual 169 s, ratio 0.2 -> 0.4 -> 338 * 0.6 = 202.8 -> 203 s.
        assert_eq!(iv.get_interval(s(169), 0.2), s(203));
        // Fixed interval wins.
        iv.fixed = Some(s(42));
        assert_eq!(iv.get_interval(s(1), 0.9), s(42));
        // Max clamps the result but not the cache.
        let mut iv = GcInterval {
            max: Some(s(400)),
            ..Default::default()
        };
        assert_eq!(iv.get_interval(Duration::ZERO, 0.01), s(400));
        assert_eq!(iv.cached, Some(s(450)));
    }

    #[test]
    fn huge_intervals_do_not_overflow() {
        // Found by fuzzing (#15): 6.2e9 s * 1.5 overflowed the rounding.
        for secs in [6_200_000_000, 6_200_000_001, u64::MAX / 2, u64::MAX] {
            let prev = Duration::from_secs(secs);
            assert_eq!(calculate_interval(prev, 0.01), GC_MAX_LRU_INTERVAL);
            // Halved, from at most i64::MAX ns as Cilium's time.Duration.
            let half = calculate_interval(prev, 0.5).as_secs();
            assert!(
                half.abs_diff(secs.min(9_223_372_036) / 2) <= 1,
                "{secs}: {half}"
            );
            let mut iv = GcInterval {
                cached: Some(prev),
                ..Default::default()
            };
            assert_eq!(iv.get_interval(prev, 0.01), GC_MAX_LRU_INTERVAL);
        }
        assert_eq!(
            round_to_second(i64::MAX),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn filter_and_controller_are_send() {
        fn send<T: Send>() {}
        send::<GcFilter<'static>>();
        send::<crate::GcController>();
    }

    #[test]
    fn rounding_matches_go() {
        assert_eq!(round_to_second(1_499_999_999), Duration::from_secs(1));
        assert_eq!(round_to_second(1_500_000_000), Duration::from_secs(2));
        assert_eq!(round_to_second(0), Duration::ZERO);
    }

    #[test]
    fn filter_decisions() {
        let mut f = GcFilter {
            remove_expired: true,
            time: 100,
            ..Default::default()
        };
        let k = crate::CtKey4::new(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            80,
            1,
            6,
            crate::TupleFlags::OUT,
        );
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 99) == Verdict::Expired);
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 100) == Verdict::Keep);
        f.match_ips.insert("10.0.0.2".parse().unwrap());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 100) == Verdict::Matched);
        f.match_ips.clear();
        f.match_ips.insert("10.0.0.1".parse().unwrap());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 1000) == Verdict::Matched);
        f.remove_expired = false;
        f.match_ips.clear();
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 0) == Verdict::Keep);
        // ValidIPs: kept when either address is valid, deleted when neither.
        f.valid_ips = Some(["10.0.0.2".parse().unwrap()].into());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 0) == Verdict::Keep);
        f.valid_ips = Some(["10.0.0.1".parse().unwrap()].into());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 0) == Verdict::Keep);
        f.valid_ips = Some(["10.0.0.3".parse().unwrap()].into());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 0) == Verdict::Matched);
        f.valid_ips = Some(HashSet::new());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 0) == Verdict::Matched);
        // A valid entry still goes when expired or matched.
        f.valid_ips = Some(["10.0.0.1".parse().unwrap()].into());
        f.match_ips.insert("10.0.0.2".parse().unwrap());
        assert!(f.decide(IpFamily::V4, k.as_bytes(), 0) == Verdict::Matched);
    }

    #[test]
    fn custom_clock_and_jiffies_conversion() {
        let c = ClockSource::custom(|| 7);
        assert_eq!(c.now().unwrap(), 7);
        assert_eq!(ClockSource::Jiffies { hz: 250 }.to_seconds(2500), 10);
        assert_eq!(ClockSource::Monotonic.to_seconds(2500), 2500);
    }
}
