//! The shared result table of the headline benchmarks.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::rounds::{Rounds, Stat};

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
    /// The interquartile spread straddles the goal.
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

    /// Met or missed by the median; unsettled when the interquartile
    /// spread straddles the goal.
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
            Goal::RatioAtLeast(g) => format!(">= {g}x"),
            Goal::RatioAtMost(g) => format!("<= {g}x"),
            Goal::Below(g) => format!("< {} {}", fmt_num(g), self.unit),
            Goal::None => String::new(),
        }
    }
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
    /// rows and 11 for the others (the minimums are 8 and 9), 3 in quick mode.
    pub fn rounds(&self, kind: Rounds) -> usize {
        match (self.full, kind) {
            (true, Rounds::Network) => 12,
            (true, Rounds::Other) => 11,
            (false, _) => 3,
        }
    }

    pub fn add(&mut self, row: Row) {
        let base = match &row.baseline {
            Some(b) => format!(", {}: {}", row.baseline_name, fmt_stat(b)),
            None => String::new(),
        };
        let ratio = match &row.ratio {
            Some(r) => format!(
                ", ratio {} min {:.3} max {:.3}, {} rounds",
                fmt_ratio(r),
                r.min,
                r.max,
                r.n
            ),
            None => format!(", min {:.3} max {:.3}", row.ours.min, row.ours.max),
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
            "| area | figure | ours | baseline | baseline figure | paired ratio | goal | | notes |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} | {} | {} | {} | {} |",
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
                "# Headline benchmarks\n\nMachine: {} cores, kernel {}. Every figure is the median over alternating rounds (in brackets: first-third quartile); the ratio is the median of the per-round paired ratios ours / baseline. A goal is met or missed by that median, unsettled when the quartiles straddle it.\n\n",
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
