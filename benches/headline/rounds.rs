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
//! ratio of two medians keeps it. Noise that comes and goes within a round
//! is shared too where the contenders take turns inside it: single
//! `BPF_PROG_TEST_RUN`s interleave run by run (`single_pairs`), iperf3 in
//! pieces of a second (`pieces`), route adds in chunks.
//!
//! **The verdict.** A goal is met or missed by that median; the row is
//! *unsettled* when a distribution-free 95 % confidence interval of the
//! median (order statistics, `Stat::ci_lo` / `ci_hi`) holds the goal: the
//! rounds cannot tell. Rows judged by `alternate_until` that are unsettled
//! after their first rounds run as many again, up to a cap, before the
//! verdict; the interval narrows with the rounds where the interquartile
//! spread would not (a median 0.12 above its goal with quartiles 0.1 either
//! side of it is settled, given rounds enough).
//!
//! ```ignore
//! let rows = |s: &Samples| vec![s.row(AREA, "GC pass, 1M entries", "ours",
//!     "raw loop", "raw", "ms", Goal::RatioAtMost(1.25))];
//! report.add_all(alternate_until(report.plan(Rounds::Other, 2), &mut [
//!     &mut |r: &mut Record| r.put("raw", measure_raw()),
//!     &mut |r: &mut Record| r.put("ours", measure_ours()),
//! ], &rows));
//! ```

use std::collections::BTreeMap;

use crate::report::{Goal, Row, Verdict};

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
}

impl Record<'_> {
    /// Records `value` as this round's figure for `name`.
    pub fn put(&mut self, name: &str, value: f64) {
        let v = self.values.entry(name.to_string()).or_default();
        if v.len() <= self.round {
            v.resize(self.round + 1, None);
        }
        v[self.round] = Some(value);
    }

    /// The round being run, from 0.
    pub fn round(&self) -> usize {
        self.round
    }
}

/// A measurement of one contender: records one or more named figures.
pub type Contender<'a> = &'a mut dyn FnMut(&mut Record<'_>);

/// Runs `rounds` rounds of `contenders`, each once per round, in the given
/// order on even rounds and reversed on odd ones.
pub fn alternate(rounds: usize, contenders: &mut [Contender<'_>]) -> Samples {
    let mut samples = Samples {
        values: BTreeMap::new(),
        rounds: 0,
    };
    samples.run(rounds, contenders);
    samples
}

/// How many rounds a set of rows runs: `base` first, then `base` more at a
/// time while a row with a goal is unsettled, up to `cap` in all. Few
/// looks, each on many more rounds: every look is another chance for a
/// median that sits on its goal to seem settled.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub base: usize,
    pub cap: usize,
}

/// Runs the rounds of `plan` (see `Plan`) and returns the rows `rows` makes
/// of the samples of all of them: a row whose median is near its goal gets
/// more rounds, so that its verdict comes from a narrower confidence
/// interval; the others stop at `plan.base`.
pub fn alternate_until(
    plan: Plan,
    contenders: &mut [Contender<'_>],
    rows: &dyn Fn(&Samples) -> Vec<Row>,
) -> Vec<Row> {
    let mut samples = alternate(plan.base, contenders);
    let step = plan.base.max(1).next_multiple_of(2);
    loop {
        let made = rows(&samples);
        let unsettled = made.iter().any(|r| r.verdict() == Verdict::Unsettled);
        if !unsettled || samples.rounds >= plan.cap {
            return made;
        }
        let more = step.min(plan.cap - samples.rounds);
        samples.run(more, contenders);
    }
}

/// The median of `v` (NaN when empty).
pub fn median(v: Vec<f64>) -> f64 {
    Stat::of(&v).median
}

/// Runs `step(contender, turn)` for every turn of every one of
/// `contenders`, the contenders taking turns (their order reversed every
/// other turn, and every other round by `flip`): noise that comes and goes
/// faster than a round falls on all of them alike.
pub fn take_turns(
    contenders: usize,
    turns: usize,
    flip: usize,
    mut step: impl FnMut(usize, usize),
) {
    for turn in 0..turns {
        let reversed = (turn + flip) % 2 == 1;
        for i in 0..contenders {
            step(if reversed { contenders - 1 - i } else { i }, turn);
        }
    }
}

/// `pieces` runs of each of the `N` measurements, taking turns
/// (`take_turns`): for runs of seconds, such as iperf3's, whose noise comes
/// and goes within a round. Returns each measurement's results in the order
/// they ran.
pub fn pieces<const N: usize, T>(
    pieces: usize,
    flip: usize,
    mut runs: [&mut dyn FnMut() -> T; N],
) -> [Vec<T>; N] {
    let mut out: [Vec<T>; N] = std::array::from_fn(|_| Vec::with_capacity(pieces));
    take_turns(N, pieces, flip, |k, _| out[k].push((runs[k])()));
    out
}

/// `n` single runs of each of the `N` measurements, taking turns, and the
/// median of each one's figures: for figures of single
/// `BPF_PROG_TEST_RUN`s, whose noise comes and goes within a round, two
/// contenders measured side by side see the same machine where two blocks
/// of runs one after the other would not.
pub fn single_pairs<const N: usize>(n: usize, runs: [&mut dyn FnMut() -> f64; N]) -> [f64; N] {
    pieces(n, 0, runs).map(median)
}

/// The mean of `v` (NaN when empty).
pub fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = v
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n as f64
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
    /// A distribution-free confidence interval of the median, at least
    /// 95 % coverage (order statistics by the binomial distribution); the
    /// extremes when there are too few figures for one.
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub n: usize,
}

/// The 1-based rank `k` of the order statistics `x(k)` and `x(n + 1 - k)`
/// that bound a confidence interval of the median of `n` figures with at
/// least 95 % coverage: the largest `k` with `P(Binomial(n, 1/2) < k) <=
/// 2.5 %`; 1 (the extremes) when no `k` qualifies.
fn median_ci_rank(n: usize) -> usize {
    let mut p = 0.5f64.powi(n as i32);
    let mut below = 0.0;
    let mut k = 1;
    for i in 0..n / 2 {
        below += p; // P(X <= i) = P(X < i + 1)
        if below > 0.025 {
            break;
        }
        k = i + 1;
        p *= (n - i) as f64 / (i + 1) as f64;
    }
    k.min(n.div_ceil(2)).max(1)
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
        let k = median_ci_rank(v.len());
        let rank = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        Stat {
            median: q(0.5),
            lo: q(0.25),
            hi: q(0.75),
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            ci_lo: rank(k - 1),
            ci_hi: rank(v.len().wrapping_sub(k)),
            n: v.len(),
        }
    }

    /// `true` when the goal lies strictly inside the median's confidence
    /// interval: the rounds cannot tell whether the median meets it.
    pub fn straddles(&self, goal: f64) -> bool {
        self.ci_lo < goal && goal < self.ci_hi
    }
}

/// Every figure of every round, by name.
pub struct Samples {
    values: BTreeMap<String, Vec<Option<f64>>>,
    rounds: usize,
}

impl Samples {
    /// Runs `rounds` more rounds of `contenders` (the order of each round
    /// by its number over all rounds so far).
    fn run(&mut self, rounds: usize, contenders: &mut [Contender<'_>]) {
        for _ in 0..rounds {
            let round = self.rounds;
            let mut order: Vec<usize> = (0..contenders.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let mut rec = Record {
                    round,
                    values: &mut self.values,
                };
                (contenders[i])(&mut rec);
            }
            self.rounds += 1;
        }
    }

    /// The figures recorded for `name`, NaN for a round that recorded none.
    pub fn get(&self, name: &str) -> Vec<f64> {
        match self.values.get(name) {
            Some(v) => (0..self.rounds)
                .map(|i| v.get(i).copied().flatten().unwrap_or(f64::NAN))
                .collect(),
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
