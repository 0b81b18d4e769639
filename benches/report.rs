//! The shared result table of the headline benchmarks.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

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

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// `route`, `conntrack` or `datapath`.
    pub area: &'static str,
    /// What was measured, with its size: "upsert one by one, 100k /32 routes".
    pub figure: String,
    /// Our figure, in `unit`.
    pub ours: f64,
    /// The baseline's name: "ip -batch route replace".
    pub baseline_name: String,
    /// The baseline's figure in the same unit (NaN when there is none).
    pub baseline: f64,
    /// "routes/s", "ms", "ns/pkt", "MiB" ...
    pub unit: &'static str,
    pub goal: Goal,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.ours / self.baseline
    }

    fn verdict(&self) -> &'static str {
        let ok = match self.goal {
            Goal::RatioAtLeast(g) => self.ratio() >= g,
            Goal::RatioAtMost(g) => self.ratio() <= g,
            Goal::Below(g) => self.ours < g,
            Goal::None => return "",
        };
        if ok {
            "met"
        } else {
            "MISSED"
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

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
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

    /// `true` under `cargo bench`; `false` under `cargo test --benches`, where
    /// each benchmark should run once at a small size.
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

    pub fn add(&mut self, row: Row) {
        eprintln!(
            "   {}: {} {} (baseline {}: {} {})",
            row.figure,
            fmt_num(row.ours),
            row.unit,
            row.baseline_name,
            fmt_num(row.baseline),
            row.unit
        );
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| area | figure | ours | baseline | baseline figure | ratio | goal | |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let ratio = if r.baseline.is_nan() {
                "-".to_string()
            } else {
                let ratio = r.ratio();
                if ratio < 0.01 {
                    format!("{ratio:.1e}x")
                } else {
                    format!("{ratio:.2}x")
                }
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} {} | {} | {} | {} |",
                r.area,
                r.figure,
                fmt_num(r.ours),
                r.unit,
                r.baseline_name,
                fmt_num(r.baseline),
                r.unit,
                ratio,
                r.goal_text(),
                r.verdict()
            );
        }
        s
    }

    /// Prints the table and writes it to `target/bench-report.md` (full mode).
    pub fn finish(self) {
        let table = self.markdown();
        println!("{table}");
        if self.full {
            let header = format!(
                "# Headline benchmarks\n\nMachine: {} cores, kernel {}. Ratios are ours / baseline, both measured in the same run.\n\n",
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            );
            let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let path = std::path::Path::new(&dir).join("bench-report.md");
            match std::fs::write(&path, header + &table) {
                Ok(()) => eprintln!("wrote {}", path.display()),
                Err(e) => eprintln!("could not write {}: {e}", path.display()),
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
