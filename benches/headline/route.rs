//! Headline benchmarks of the `route` area: `upsert` / `upsert_many` /
//! `delete` / `delete_many` of /32 nexthop routes against `ip -batch` of the
//! same lines in a same-sized fresh namespace (best of two interleaved
//! rounds each), and `lookup` of one route
//! among them against a full dump of the table (what Cilium's lookup does).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use podnet_route::{Handle, Route, RouteFilter, MAIN_TABLE};
use testsupport::Netns;

use crate::report::{peak_rss_mib, reset_peak_rss, time, Goal, Report, Row};

const AREA: &str = "route";

/// A namespace with `eth0` up at 10.0.0.1/24 (the nexthop 10.0.0.2 is on link).
fn node(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.add_link("eth0");
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    ns
}

fn routes(n: usize) -> Vec<Route> {
    (0..n as u32)
        .map(|i| {
            let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i);
            Route::host(IpAddr::V4(a))
                .via("10.0.0.2".parse().expect("literal"))
                .dev("eth0")
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn row(
    report: &mut Report,
    figure: String,
    ours: f64,
    base_name: &str,
    base: f64,
    unit: &'static str,
    goal: Goal,
) {
    report.add(Row {
        area: AREA,
        figure,
        ours,
        baseline_name: base_name.to_string(),
        baseline: base,
        unit,
        goal,
    });
}

pub fn run(report: &mut Report) {
    let n = report.size(100_000, 2_000);
    let k = if n >= 1000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    };
    let rs = routes(n);
    // The same routes as `ip` text, from our own Display.
    let replace: String = rs.iter().map(|r| format!("route replace {r}\n")).collect();
    let del: String = rs.iter().map(|r| format!("route del {r}\n")).collect();

    // Each contender runs ROUNDS times, interleaved, in a fresh namespace
    // each time; the best round counts (the machine is shared, and a single
    // run of either side can be slowed by someone else's build).
    const ROUNDS: usize = 2;
    let mut best = [Duration::MAX; 6];
    let keep = |slot: &mut Duration, d: Duration| *slot = (*slot).min(d);
    let mut per_lookup_ms = f64::NAN;
    let mut per_dump_ms = f64::NAN;
    let mut rss = f64::NAN;
    for round in 0..ROUNDS {
        // Baseline: ip -batch.
        let ns_ip = node("bench-ip");
        let (t, _) = time(|| ns_ip.ip_batch(&replace));
        keep(&mut best[0], t);
        let (t, _) = time(|| ns_ip.ip_batch(&del));
        keep(&mut best[1], t);
        drop(ns_ip);

        // Ours, one by one.
        let ns1 = node("bench-one");
        let h1 = Handle::open_netns(ns1.path()).expect("handle");
        let (t, ok) = time(|| rs.iter().all(|r| h1.upsert(r, None).is_ok_and(|c| c)));
        assert!(ok, "every single upsert succeeds and changes");
        keep(&mut best[2], t);
        if round == 0 {
            // Lookup of one route among n in the main table, vs a full dump.
            let probes: Vec<&Route> = (0..200).map(|i| &rs[(i * 7919) % n]).collect();
            let (t_lookup, found) = time(|| {
                probes
                    .iter()
                    .filter(|r| matches!(h1.lookup(r), Ok(Some(_))))
                    .count()
            });
            assert_eq!(found, probes.len(), "every probe is found");
            per_lookup_ms = t_lookup.as_secs_f64() * 1e3 / probes.len() as f64;
            let dumps = 5;
            let (t_dump, listed) = time(|| {
                (0..dumps)
                    .map(|_| {
                        h1.list(&RouteFilter::default().table(MAIN_TABLE))
                            .map(|v| v.len())
                            .unwrap_or(0)
                    })
                    .sum::<usize>()
            });
            assert!(listed >= dumps * n);
            per_dump_ms = t_dump.as_secs_f64() * 1e3 / dumps as f64;
        }
        let (t, ok) = time(|| rs.iter().all(|r| h1.delete(r).is_ok()));
        assert!(ok, "every single delete succeeds");
        keep(&mut best[3], t);
        drop(h1);
        drop(ns1);

        // Ours, batched.
        let ns2 = node("bench-many");
        let h2 = Handle::open_netns(ns2.path()).expect("handle");
        if round == 0 {
            reset_peak_rss();
        }
        let (t, res) = time(|| h2.upsert_many(&rs, None));
        assert!(
            res.iter().all(|r| matches!(r, Ok(true))),
            "every batched upsert succeeds"
        );
        keep(&mut best[4], t);
        drop(res);
        let (t, res) = time(|| h2.delete_many(&rs));
        assert!(
            res.iter().all(|r| r.is_ok()),
            "every batched delete succeeds"
        );
        keep(&mut best[5], t);
        drop(res);
        if round == 0 {
            rss = peak_rss_mib();
        }
        drop(h2);
        drop(ns2);
    }
    let [t_ip_add, t_ip_del, t_one, t_one_del, t_many, t_many_del] = best;

    let ip_add = rate(n, t_ip_add);
    let ip_del = rate(n, t_ip_del);
    row(
        report,
        format!("upsert one by one (with nexthop check), {k} /32 routes"),
        rate(n, t_one),
        "ip -batch route replace",
        ip_add,
        "routes/s",
        Goal::RatioAtLeast(1.0),
    );
    row(
        report,
        format!("upsert_many, {k} /32 routes"),
        rate(n, t_many),
        "ip -batch route replace",
        ip_add,
        "routes/s",
        Goal::RatioAtLeast(1.5),
    );
    row(
        report,
        format!("delete one by one, {k} /32 routes"),
        rate(n, t_one_del),
        "ip -batch route del",
        ip_del,
        "routes/s",
        Goal::RatioAtLeast(1.0),
    );
    row(
        report,
        format!("delete_many, {k} /32 routes"),
        rate(n, t_many_del),
        "ip -batch route del",
        ip_del,
        "routes/s",
        Goal::RatioAtLeast(1.5),
    );
    row(
        report,
        format!("lookup one route among {k} in main"),
        per_lookup_ms,
        "full dump of main (Cilium's lookup)",
        per_dump_ms,
        "ms",
        Goal::Below(1.0),
    );
    row(
        report,
        format!("peak RSS, upsert_many + delete_many of {k} routes"),
        rss,
        "-",
        f64::NAN,
        "MiB",
        Goal::None,
    );
}
