//! The GC controller an agent embeds (Cilium's `pkg/maps/ctmap/gc`): a thread
//! that runs [`gc`] over a set of conntrack maps, adapts its interval with
//! [`GcInterval`] over the largest share of entries a map lost, can be woken
//! early, runs the orphan SNAT purge when asked, and keeps per-map and
//! per-run statistics.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::gc::{gc, ClockSource, GcFilter, GcInterval, GcStats};
use crate::key::IpFamily;
use crate::map::{filter_maps_by_proto, CtMap};
use crate::nat::{purge_orphan_nat_entries, NatGcStats, NatMap};

/// The controller's own clock, for the interval arithmetic (how long the
/// previous interval actually was). Tests inject one; waiting itself uses
/// the system's monotonic clock, bounded by the interval.
pub type MonotonicFn = Arc<dyn Fn() -> Duration + Send + Sync>;

/// What one map's pass did.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MapRun {
    /// The map's name.
    pub map: String,
    /// Its GC statistics, or the error's text when the pass failed.
    pub result: Result<GcStats, String>,
}

impl MapRun {
    /// `deleted / scanned` of this pass (0 when nothing was scanned or it
    /// failed).
    #[must_use]
    pub fn delete_ratio(&self) -> f64 {
        match &self.result {
            Ok(s) if s.scanned > 0 => s.deleted as f64 / s.scanned as f64,
            _ => 0.0,
        }
    }
}

/// What one run of the controller did.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GcRun {
    /// 1 for the first run.
    pub number: u64,
    /// Woken early ([`GcController::wake`]) rather than by the interval.
    pub woken: bool,
    /// Per map, in the order they were given.
    pub maps: Vec<MapRun>,
    /// The orphan SNAT purge, per family, when it ran.
    pub nat_purge: Vec<(IpFamily, Result<NatGcStats, String>)>,
    /// The largest delete ratio over the maps.
    pub max_delete_ratio: f64,
    /// The interval until the next run.
    pub next_interval: Duration,
    /// How long the pass took (controller clock).
    pub took: Duration,
}

impl fmt::Display for GcRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GC run {}: {} maps, max delete ratio {:.3}, next in {}s",
            self.number,
            self.maps.len(),
            self.max_delete_ratio,
            self.next_interval.as_secs()
        )
    }
}

/// Builds a [`GcController`].
///
/// ```no_run
/// use podnet_conntrack::{CtMap, GcController};
/// let dir = "/sys/fs/bpf/podnet";
/// let maps = vec![CtMap::open_named(dir, "cilium_ct4_global")?, CtMap::open_named(dir, "cilium_ct_any4_global")?];
/// let ctl = GcController::builder(maps).start()?;
/// ctl.wake(); // e.g. on the datapath's "CT map full" signal
/// if let Some(run) = ctl.wait_for_run(1, std::time::Duration::from_secs(30)) {
///     println!("{run}");
/// }
/// ctl.stop();
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
#[must_use]
pub struct GcControllerBuilder {
    maps: Vec<CtMap>,
    nat: Vec<NatMap>,
    clock: ClockSource,
    interval: GcInterval,
    monotonic: Option<MonotonicFn>,
}

impl GcControllerBuilder {
    /// SNAT maps (one per family at most): GC of a CT map of that family
    /// removes the mappings of the flows it deletes, and
    /// [`GcController::purge_orphan_nat`] purges them against the family's
    /// global TCP and non-TCP CT maps.
    pub fn nat(mut self, nat: NatMap) -> Self {
        self.nat.push(nat);
        self
    }

    /// The clock the datapath writes lifetimes in (default monotonic).
    pub fn clock(mut self, clock: ClockSource) -> Self {
        self.clock = clock;
        self
    }

    /// Interval policy (fixed interval, maximum), Cilium's
    /// `--conntrack-gc-interval` / `--conntrack-gc-max-interval`.
    pub fn interval(mut self, interval: GcInterval) -> Self {
        self.interval = interval;
        self
    }

    /// An injected clock for the interval arithmetic (tests).
    pub fn monotonic(mut self, f: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        self.monotonic = Some(Arc::new(f));
        self
    }

    /// Starts the controller's thread; the first run starts at once.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] when two SNAT maps of one family are
    /// given or the thread cannot be spawned.
    pub fn start(self) -> crate::Result<GcController> {
        if self.nat.len() > 1 && self.nat[0].family() == self.nat[1].family() || self.nat.len() > 2
        {
            return Err(crate::Error::InvalidInput(
                "GcController: at most one SNAT map per family".into(),
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let monotonic = self.monotonic.unwrap_or_else(|| {
            let t0 = Instant::now();
            Arc::new(move || t0.elapsed())
        });
        let mut worker = Worker {
            maps: self.maps,
            nat: self.nat,
            clock: self.clock,
            interval: self.interval,
            monotonic,
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name("podnet-ct-gc".into())
            .spawn(move || worker.run())
            .map_err(|e| crate::Error::InvalidInput(format!("spawning the GC thread: {e}")))?;
        Ok(GcController {
            shared,
            thread: Some(thread),
        })
    }
}

#[derive(Default)]
struct State {
    wake: bool,
    purge_nat: bool,
    stop: bool,
    runs: u64,
    last: Option<GcRun>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the worker leaves consistent data (plain fields).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running GC controller (a thread; no async runtime). Stops when
/// [`GcController::stop`] is called or it is dropped.
pub struct GcController {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GcController {
    /// A builder over `maps` (CT maps of any family and scope: global,
    /// per-endpoint, per-cluster).
    pub fn builder(maps: Vec<CtMap>) -> GcControllerBuilder {
        GcControllerBuilder {
            maps,
            nat: Vec::new(),
            clock: ClockSource::Monotonic,
            interval: GcInterval::default(),
            monotonic: None,
        }
    }

    /// Runs GC now instead of at the end of the interval (Cilium runs early
    /// on the datapath's signals: CT map full, NAT ports exhausted).
    pub fn wake(&self) {
        self.shared.lock().wake = true;
        self.shared.cv.notify_all();
    }

    /// Wakes the controller and runs the orphan SNAT purge after the GC pass
    /// (Cilium's `PurgeOrphanNATEntries`, on the NAT-exhausted signal).
    pub fn purge_orphan_nat(&self) {
        {
            let mut s = self.shared.lock();
            s.purge_nat = true;
            s.wake = true;
        }
        self.shared.cv.notify_all();
    }

    /// Runs completed so far.
    #[must_use]
    pub fn runs(&self) -> u64 {
        self.shared.lock().runs
    }

    /// The statistics of the last completed run.
    #[must_use]
    pub fn last_run(&self) -> Option<GcRun> {
        self.shared.lock().last.clone()
    }

    /// Waits until at least `n` runs completed (or `timeout` passed) and
    /// returns the last run then.
    #[must_use]
    pub fn wait_for_run(&self, n: u64, timeout: Duration) -> Option<GcRun> {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        while s.runs < n {
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self
                .shared
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        s.last.clone()
    }

    /// Stops the thread after the pass in progress, if any, and waits for it.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GcController {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

struct Worker {
    maps: Vec<CtMap>,
    nat: Vec<NatMap>,
    clock: ClockSource,
    interval: GcInterval,
    monotonic: MonotonicFn,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(&mut self) {
        let mut woken = false;
        let mut prev_start: Option<Duration> = None;
        let mut number = 0;
        loop {
            let purge = std::mem::take(&mut self.shared.lock().purge_nat);
            let start = (self.monotonic)();
            number += 1;
            let mut run = self.pass(purge);
            run.number = number;
            run.woken = woken;
            let end = (self.monotonic)();
            run.took = end.saturating_sub(start);
            // The previous interval as it actually was (an early run makes
            // it shorter, and GcInterval scales the ratio up for it).
            let actual = prev_start.map_or(Duration::ZERO, |p| start.saturating_sub(p));
            prev_start = Some(start);
            run.next_interval = self.interval.get_interval(actual, run.max_delete_ratio);
            let wait = run.next_interval;
            {
                let mut s = self.shared.lock();
                s.runs = number;
                s.last = Some(run);
            }
            self.shared.cv.notify_all();
            // Wait for the interval, a wake-up or stop.
            let deadline = Instant::now() + wait;
            let mut s = self.shared.lock();
            loop {
                if s.stop {
                    return;
                }
                if s.wake {
                    s.wake = false;
                    woken = true;
                    break;
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    woken = false;
                    break;
                };
                s = self
                    .shared
                    .cv
                    .wait_timeout(s, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
    }

    fn pass(&self, purge: bool) -> GcRun {
        let mut run = GcRun::default();
        let time = self.clock.now();
        for map in &self.maps {
            let result = match &time {
                Err(e) => Err(e.to_string()),
                Ok(t) => {
                    let mut f = GcFilter {
                        remove_expired: true,
                        time: *t,
                        nat: self.nat.iter().find(|n| n.family() == map.family()),
                        ..Default::default()
                    };
                    gc(map, &mut f).map_err(|e| error_text(&e))
                }
            };
            let m = MapRun {
                map: map.name().to_string(),
                result,
            };
            run.max_delete_ratio = run.max_delete_ratio.max(m.delete_ratio());
            run.maps.push(m);
        }
        if purge {
            for nat in &self.nat {
                let (tcp, any) = global_pair(&self.maps, nat.family());
                let r = match (tcp, any) {
                    (Some(t), Some(a)) => {
                        purge_orphan_nat_entries(t, a, nat).map_err(|e| error_text(&e))
                    }
                    _ => Err(format!(
                        "no global TCP and non-TCP {} CT maps to purge {} against",
                        nat.family(),
                        nat.raw.display_name()
                    )),
                };
                run.nat_purge.push((nat.family(), r));
            }
        }
        run
    }
}

/// The global TCP and non-TCP CT maps of `family` among `maps`.
fn global_pair(maps: &[CtMap], family: IpFamily) -> (Option<&CtMap>, Option<&CtMap>) {
    let mut tcp = None;
    let mut any = None;
    for m in maps
        .iter()
        .filter(|m| m.is_global() && m.family() == family)
    {
        let (t, a) = filter_maps_by_proto(std::slice::from_ref(m), family);
        tcp = tcp.or(t);
        any = any.or(a);
    }
    (tcp, any)
}

/// An error with its causes, for the run's statistics.
fn error_text(e: &crate::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
