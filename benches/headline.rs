//! The headline benchmarks of the three crates, each against a baseline
//! measured in the same run, printed as one table and written as markdown to
//! `target/bench-report.md`.
//!
//! * `cargo bench` (or `cargo bench --bench headline -- route`) runs the full
//!   sizes; a trailing word filters the areas by substring (`route`, `conntrack`,
//!   `datapath`, or only `route-monitor`, `datapath-programs` / `datapath-traffic`,
//!   `datapath-snat-programs` / `datapath-snat-traffic`).
//! * `cargo test --benches` (and `cargo bench -- --quick`) runs every
//!   benchmark at a small size with 3 rounds, so they keep compiling and
//!   working (scripts/test.sh does this).
//!
//! Every row follows one discipline (`headline/rounds.rs`): its contenders
//! alternate within each round, the order reversed every other round, and
//! the row reports the median of the per-round paired ratios with their
//! quartiles and a 95 % confidence interval of the median; a goal inside
//! that interval is "unsettled", and such rows run more rounds (up to a cap)
//! before their verdict. The process
//! runs at nice -20, so that a shared machine's other work takes less of it.
//!
//! Everything runs as root inside network namespaces and bpffs directories the
//! benchmarks create and remove (see the `testsupport` crate).

#[path = "headline/report.rs"]
mod report;
#[path = "headline/rounds.rs"]
mod rounds;

#[path = "headline/conntrack.rs"]
mod conntrack;
#[path = "headline/datapath.rs"]
mod datapath;
#[path = "headline/events.rs"]
mod events;
#[path = "headline/route.rs"]
mod route;
#[path = "headline/route_monitor.rs"]
mod route_monitor;
#[path = "headline/services_scale.rs"]
mod services_scale;
#[path = "headline/snat.rs"]
mod snat;

use report::Report;

/// An area's benchmarks: its name and what runs them.
type Area = (&'static str, fn(&mut Report));

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--quick");
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if !testsupport::privileges_available() {
        return;
    }
    rounds::raise_priority();
    let mut report = Report::new(full);
    let areas: &[Area] = &[
        ("route", route::run),
        ("route-monitor", route_monitor::run),
        ("conntrack", conntrack::run),
        ("datapath-programs", datapath::run_programs),
        ("datapath-traffic", datapath::run_traffic),
        ("events", events::run),
        ("datapath-snat-programs", snat::run_programs),
        ("datapath-snat-traffic", snat::run_traffic),
        ("services-scale", services_scale::run),
    ];
    for &(name, run) in areas {
        if filters.is_empty() || filters.iter().any(|f| name.contains(f)) {
            eprintln!("== {name} ({} mode)", if full { "full" } else { "quick" });
            let (took, ()) = report::time(|| run(&mut report));
            eprintln!("== {name}: {:.0} s", took.as_secs_f64());
        }
    }
    report.finish();
}
