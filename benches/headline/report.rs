//! The shared result table of the headline benchmarks.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::rounds::{Plan, Rounds, Stat};

/// What a figure must achieve.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub enum Goal {
    /// ours / baseline must be at least this.
    RatioAtLeast(f64),
    /// ours / baseline must be at most this.
    RatioAtMost(f64),
    /// ours itself (in its unit) must be below this.
    Below(f64),
    /// Reported only.
    None,
}

/// Whether a row met its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// The median's 95 % confidence interval straddles the goal.
    Unsettled,
    /// No goal.
    None,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Unsettled => "unsettled",
            Verdict::None => "",
        }
    }
}

/// One line of the table (made by `rounds::Samples::row` or `alone`).
#[derive(Clone, Debug)]
pub struct Row {
    /// `route`, `conntrack` or `datapath`.
    pub area: &'static str,
    /// What was measured, with its size: "upsert one by one, 100k /32 routes".
    pub figure: String,
    /// Our figure over the rounds, in `unit`.
    pub ours: Stat,
    /// The baseline's name: "ip -batch route replace".
    pub baseline_name: String,
    /// The baseline's figure over the same rounds, in the same unit.
    pub baseline: Option<Stat>,
    /// The per-round paired ratios ours / baseline.
    pub ratio: Option<Stat>,
    /// "routes/s", "ms", "ns/pkt", "MiB" ...
    pub unit: &'static str,
    pub goal: Goal,
    /// Further per-round comparisons, already formatted.
    pub notes: Vec<String>,
}

impl Row {
    /// Adds a note (shown in the table's last column).
    pub fn note(mut self, text: impl Into<String>) -> Row {
        self.notes.push(text.into());
        self
    }

    /// Met or missed by the median; unsettled when the median's confidence
    /// interval straddles the goal.
    pub fn verdict(&self) -> Verdict {
        let (stat, goal, at_least) = match (self.goal, self.ratio) {
            (Goal::RatioAtLeast(g), Some(r)) => (r, g, true),
            (Goal::RatioAtMost(g), Some(r)) => (r, g, false),
            (Goal::Below(g), _) => (self.ours, g, false),
            _ => return Verdict::None,
        };
        if stat.median.is_nan() {
            return Verdict::Missed;
        }
        if stat.straddles(goal) {
            return Verdict::Unsettled;
        }
        let ok = if at_least {
            stat.median >= goal
        } else if matches!(self.goal, Goal::Below(_)) {
            stat.median < goal
        } else {
            stat.median <= goal
        };
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtLeast(g) => format!(">= {}x", fmt_goal(g)),
            Goal::RatioAtMost(g) => format!("<= {}x", fmt_goal(g)),
            Goal::Below(g) => format!("< {} {}", fmt_num(g), self.unit),
            Goal::None => String::new(),
        }
    }
}

/// A goal's ratio with at most three decimals: `0.909` for 1 / 1.1.
fn fmt_goal(g: f64) -> String {
    let s = format!("{g:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 || v == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// `median (q1-q3)`.
pub fn fmt_stat(s: &Stat) -> String {
    format!(
        "{} ({}-{})",
        fmt_num(s.median),
        fmt_num(s.lo),
        fmt_num(s.hi)
    )
}

/// `1.07x (1.02-1.12)`.
pub fn fmt_ratio(s: &Stat) -> String {
    let one = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else if v.abs() < 0.01 {
            format!("{v:.1e}")
        } else {
            format!("{v:.2}")
        }
    };
    format!("{}x ({}-{})", one(s.median), one(s.lo), one(s.hi))
}

/// `0.98-1.07x, 24` (a ratio) or `0.98-1.07, 24`: the median's confidence
/// interval and the number of rounds.
fn fmt_ci(s: &Stat, ratio: bool) -> String {
    if ratio {
        format!("{:.2}-{:.2}x, {}", s.ci_lo, s.ci_hi, s.n)
    } else {
        format!("{}-{}, {}", fmt_num(s.ci_lo), fmt_num(s.ci_hi), s.n)
    }
}

pub struct Report {
    full: bool,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(full: bool) -> Report {
        Report {
            full,
            rows: Vec::new(),
        }
    }

    /// `true` under `cargo bench`; `false` under `cargo test --benches` or
    /// with `--quick`: small sizes and fewer rounds, the same discipline.
    #[allow(dead_code)]
    pub fn full(&self) -> bool {
        self.full
    }

    /// Picks the full or the quick size.
    #[allow(dead_code)]
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.full {
            full
        } else {
            quick
        }
    }

    /// How many alternating rounds a row of this kind runs: 12 for network
    /// rows and 12 for the others (the minimums are 8 and 9), 3 in quick mode.
    pub fn rounds(&self, kind: Rounds) -> usize {
        match (self.full, kind) {
            (true, Rounds::Network) => 12,
            (true, Rounds::Other) => 12,
            (false, _) => 3,
        }
    }

    /// The rounds of a set of rows that may run more of them while one is
    /// unsettled (`rounds::alternate_until`): `rounds(kind)` first, up to
    /// `times` as many in all (full mode; quick mode runs 3).
    pub fn plan(&self, kind: Rounds, times: usize) -> Plan {
        self.plan_of(self.rounds(kind), times)
    }

    /// As `plan`, from `base` rounds (full mode) for rows whose rounds are
    /// cheap enough for more than the kind's number.
    pub fn plan_of(&self, base: usize, times: usize) -> Plan {
        let base = if self.full { base } else { 3 };
        Plan {
            base,
            cap: if self.full { base * times } else { base },
        }
    }

    /// Adds every row of `rows`.
    pub fn add_all(&mut self, rows: Vec<Row>) {
        for row in rows {
            self.add(row);
        }
    }

    pub fn add(&mut self, row: Row) {
        let base = match &row.baseline {
            Some(b) => format!(", {}: {}", row.baseline_name, fmt_stat(b)),
            None => String::new(),
        };
        let ratio = match &row.ratio {
            Some(r) => format!(
                ", ratio {} min {:.3} max {:.3}, median's CI {:.3}-{:.3}, {} rounds",
                fmt_ratio(r),
                r.min,
                r.max,
                r.ci_lo,
                r.ci_hi,
                r.n
            ),
            None => format!(
                ", min {:.3} max {:.3}, median's CI {:.3}-{:.3}, {} rounds",
                row.ours.min, row.ours.max, row.ours.ci_lo, row.ours.ci_hi, row.ours.n
            ),
        };
        eprintln!(
            "   {}: {} {}{base}{ratio} [{}] {}",
            row.figure,
            fmt_stat(&row.ours),
            row.unit,
            row.verdict().text(),
            row.notes.join("; ")
        );
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| area | figure | ours | baseline | baseline figure | paired ratio | median's 95% CI, rounds | goal | | notes |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} | {} | {} | {} | {} | {} |",
                r.area,
                r.figure,
                fmt_stat(&r.ours),
                r.unit,
                r.baseline_name,
                r.baseline.as_ref().map_or("-".to_string(), |b| format!(
                    "{} {}",
                    fmt_stat(b),
                    r.unit
                )),
                r.ratio.as_ref().map_or("-".to_string(), fmt_ratio),
                fmt_ci(r.ratio.as_ref().unwrap_or(&r.ours), r.ratio.is_some()),
                r.goal_text(),
                r.verdict().text(),
                r.notes.join("; ")
            );
        }
        s
    }

    /// The verdicts, one line per row with a goal: `verdict<TAB>figure`.
    fn verdicts(&self) -> String {
        self.rows
            .iter()
            .filter(|r| r.verdict() != Verdict::None)
            .map(|r| format!("{}\t{}\n", r.verdict().text(), r.figure))
            .collect()
    }

    /// Prints the table and writes it to `target/bench-report.md` (full mode),
    /// the verdicts alone to `target/bench-verdicts.txt`.
    pub fn finish(self) {
        let table = self.markdown();
        println!("{table}");
        if self.full {
            let header = format!(
                "# Headline benchmarks\n\nMachine: {} cores, kernel {}. Every figure is the median over alternating rounds (in brackets: first-third quartile); the ratio is the median of the per-round paired ratios ours / baseline, shown with a distribution-free 95% confidence interval of that median and the number of rounds. A goal is met or missed by that median, unsettled when the confidence interval straddles it; rows that are unsettled after their first rounds run more of them, up to a cap, before the verdict.\n\n",
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            );
            let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let dir = std::path::Path::new(&dir);
            for (name, text) in [
                ("bench-report.md", header + &table),
                ("bench-verdicts.txt", self.verdicts()),
            ] {
                let path = dir.join(name);
                match std::fs::write(&path, text) {
                    Ok(()) => eprintln!("wrote {}", path.display()),
                    Err(e) => eprintln!("could not write {}: {e}", path.display()),
                }
            }
        }
    }
}

/// Runs `f` and returns how long it took.
#[allow(dead_code)]
pub fn time<R>(f: impl FnOnce() -> R) -> (Duration, R) {
    let start = Instant::now();
    let r = f();
    (start.elapsed(), r)
}

/// The calling thread's CPU time (user + system), in ns.
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// ns per run of a `BPF_PROG_TEST_RUN` of `repeat` runs that `f` makes: the
/// thread's CPU time over the call divided by `repeat`. The kernel's own
/// figure is an integer (its total divided by `repeat`, rounded down), a
/// step of 2 % on a 50 ns program; this one has sub-ns resolution, and, as
/// the kernel's, leaves out the time the thread is not on the CPU. The
/// call's own set-up (an skb, the copies) adds about 1 us, 0.0005 ns a run
/// at 2,000,000 runs.
#[allow(dead_code)]
pub fn cpu_ns_per_run(repeat: u32, f: impl FnOnce()) -> f64 {
    let t0 = thread_cpu_ns();
    f();
    (thread_cpu_ns() - t0) / f64::from(repeat.max(1))
}

/// Resets the process's peak RSS (VmHWM) so the next reading covers only what
/// follows.
#[allow(dead_code)]
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS (VmHWM) in MiB.
#[allow(dead_code)]
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
