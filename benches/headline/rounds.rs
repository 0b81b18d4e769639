//! The measurement discipline every row of the headline benchmarks follows.
//!
//! Every contender of a row (ours and its baseline, and any other figure the
//! row is compared with) runs once per round, one after the other, in an
//! order that is reversed every other round, so that none always follows
//! the same other one and a slow moment of the machine hits all of them
//! alike. A row then reports the **median of the per-round paired ratios**
//! (ours / baseline of the same round) with its interquartile spread, plus
//! the raw medians of both sides. Load from elsewhere on the machine that
//! lasts longer than a round cancels out of a paired ratio; a best-of or a
//! ratio of two medians keeps it.
//!
//! ```ignore
//! let samples = alternate(report.rounds(Rounds::Other), &mut [
//!     &mut |r: &mut Record| r.put("raw", measure_raw()),
//!     &mut |r: &mut Record| r.put("ours", measure_ours()),
//! ]);
//! report.add(samples.row(AREA, "GC pass, 1M entries", "ours",
//!     "raw loop", "raw", "ms", Goal::RatioAtMost(1.25)));
//! ```

use std::collections::BTreeMap;

use crate::report::{Goal, Row};

/// Raises the benchmark's scheduling priority to nice -20 (threads and
/// children started later inherit it), so that other work on a shared
/// machine, a build say, takes as little of the contenders' CPU time as the
/// scheduler allows. Says so and carries on when it cannot.
pub fn raise_priority() {
    // SAFETY: setpriority has no memory preconditions; `who` 0 is this process.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
    if rc != 0 {
        eprintln!(
            "could not raise the benchmark's priority (nice -20): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// What kind of row a number of rounds is for (see `Report::rounds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Rounds {
    /// iperf3, request/response, ping: at least 8 rounds in full mode.
    Network,
    /// Everything else: at least 9 rounds in full mode.
    Other,
}

/// The figures one contender recorded in one round.
pub struct Record<'a> {
    round: usize,
    values: &'a mut BTreeMap<String, Vec<Option<f64>>>,
    rounds: usize,
}

impl Record<'_> {
    /// Records `value` as this round's figure for `name`.
    pub fn put(&mut self, name: &str, value: f64) {
        let v = self
            .values
            .entry(name.to_string())
            .or_insert_with(|| vec![None; self.rounds]);
        v[self.round] = Some(value);
    }

    /// The round being run, from 0.
    #[allow(dead_code)]
    pub fn round(&self) -> usize {
        self.round
    }
}

/// A measurement of one contender: records one or more named figures.
pub type Contender<'a> = &'a mut dyn FnMut(&mut Record<'_>);

/// Runs `rounds` rounds of `contenders`, each once per round, in the given
/// order on even rounds and reversed on odd ones.
pub fn alternate(rounds: usize, contenders: &mut [Contender<'_>]) -> Samples {
    let mut values = BTreeMap::new();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let mut rec = Record {
                round,
                values: &mut values,
                rounds,
            };
            (contenders[i])(&mut rec);
        }
    }
    Samples { values, rounds }
}

/// Median, quartiles and extremes of a set of figures.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    /// First quartile.
    pub lo: f64,
    /// Third quartile.
    pub hi: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    /// The statistics of `v` (NaNs dropped); all NaN when none is left.
    pub fn of(v: &[f64]) -> Stat {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let pos = p * (v.len() - 1) as f64;
            let (i, frac) = (pos.floor() as usize, pos.fract());
            let next = v[(i + 1).min(v.len() - 1)];
            v[i] + (next - v[i]) * frac
        };
        Stat {
            median: q(0.5),
            lo: q(0.25),
            hi: q(0.75),
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            n: v.len(),
        }
    }

    /// `true` when the goal lies strictly inside the interquartile spread.
    pub fn straddles(&self, goal: f64) -> bool {
        self.lo < goal && goal < self.hi
    }
}

/// Every figure of every round, by name.
pub struct Samples {
    values: BTreeMap<String, Vec<Option<f64>>>,
    rounds: usize,
}

impl Samples {
    /// The figures recorded for `name`, NaN for a round that recorded none.
    pub fn get(&self, name: &str) -> Vec<f64> {
        match self.values.get(name) {
            Some(v) => v.iter().map(|x| x.unwrap_or(f64::NAN)).collect(),
            None => vec![f64::NAN; self.rounds],
        }
    }

    /// Per-round `f(a, b)` of two figures.
    fn per_round(&self, a: &str, b: &str, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
        self.get(a)
            .into_iter()
            .zip(self.get(b))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    /// Median and spread of the per-round ratios `a / b`.
    pub fn ratio(&self, a: &str, b: &str) -> Stat {
        Stat::of(&self.per_round(a, b, |x, y| x / y))
    }

    /// Median and spread of the per-round differences `a - b`.
    pub fn difference(&self, a: &str, b: &str) -> Stat {
        Stat::of(&self.per_round(a, b, |x, y| x - y))
    }

    /// Median and spread of `name`'s own figures.
    pub fn stat(&self, name: &str) -> Stat {
        Stat::of(&self.get(name))
    }

    /// A row comparing `ours` with `base`, by their per-round ratio.
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &self,
        area: &'static str,
        figure: impl Into<String>,
        ours: &str,
        baseline_name: impl Into<String>,
        base: &str,
        unit: &'static str,
        goal: Goal,
    ) -> Row {
        Row {
            area,
            figure: figure.into(),
            ours: self.stat(ours),
            baseline_name: baseline_name.into(),
            baseline: Some(self.stat(base)),
            ratio: Some(self.ratio(ours, base)),
            unit,
            goal,
            notes: Vec::new(),
        }
    }

    /// A row of one figure alone (a goal of `Below` or none).
    pub fn alone(
        &self,
        area: &'static str,
        figure: impl Into<String>,
        ours: &str,
        unit: &'static str,
        goal: Goal,
    ) -> Row {
        Row {
            area,
            figure: figure.into(),
            ours: self.stat(ours),
            baseline_name: "-".into(),
            baseline: None,
            ratio: None,
            unit,
            goal,
            notes: Vec::new(),
        }
    }
}
