//! Headline benchmarks of the `route` area: `upsert` / `upsert_many` /
//! `delete` / `delete_many` of /32 nexthop routes against `ip -batch` of the
//! same lines in a same-sized fresh namespace (alternating rounds, see
//! `rounds.rs`), and `lookup` of one route
//! among them against a full dump of the table (what Cilium's lookup does).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use podnet_route::{Handle, Route, RouteFilter, MAIN_TABLE};
use testsupport::Netns;

// The rows against the raw netlink floor, run after these.
#[path = "route_floor.rs"]
mod floor;

use crate::report::{peak_rss_mib, reset_peak_rss, time, Goal, Report, Row};
use crate::rounds::{alternate_until, Record, Rounds, Samples};

const AREA: &str = "route";

/// A namespace with `eth0` up at 10.0.0.1/24 (the nexthop 10.0.0.2 is on link);
/// the route benchmarks' node (`route_floor.rs`, `route_monitor.rs` too).
pub(crate) fn node(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.add_link("eth0");
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    ns
}

/// `n` host routes 10.128.0.1, 10.128.0.2, ... via 10.0.0.2 dev eth0.
pub(crate) fn routes(n: usize) -> Vec<Route> {
    (0..n as u32)
        .map(|i| {
            let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + i);
            Route::host(IpAddr::V4(a))
                .via("10.0.0.2".parse().expect("literal"))
                .dev("eth0")
        })
        .collect()
}

/// `n` as the rows name it: "100k", or "500" below a thousand.
pub(crate) fn count_label(n: usize) -> String {
    if n >= 1000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub fn run(report: &mut Report) {
    let n = report.size(100_000, 2_000);
    let k = count_label(n);
    let rs = routes(n);
    // The same routes as `ip` text, from our own Display.
    let replace: String = rs.iter().map(|r| format!("route replace {r}\n")).collect();
    let del: String = rs.iter().map(|r| format!("route del {r}\n")).collect();

    // Lookups and dumps run in one namespace filled once.
    let ns_lookup = node("bench-lookup");
    let hl = Handle::open_netns(ns_lookup.path()).expect("handle");
    assert!(
        hl.upsert_many(&rs, None)
            .iter()
            .all(|r| matches!(r, Ok(true))),
        "filling the lookup namespace"
    );
    let probes: Vec<&Route> = (0..200).map(|i| &rs[(i * 7919) % n]).collect();

    // Each contender adds and deletes the n routes in a fresh namespace of
    // the same shape; a round runs every contender once.
    let rows = |samples: &Samples| {
        let rows = [
            (
                format!("upsert one by one (with nexthop check), {k} /32 routes"),
                "one add",
                "ip -batch route replace",
                "ip add",
                Goal::RatioAtLeast(1.0),
            ),
            (
                format!("upsert_many, {k} /32 routes"),
                "many add",
                "ip -batch route replace",
                "ip add",
                Goal::RatioAtLeast(1.5),
            ),
            (
                format!("delete one by one, {k} /32 routes"),
                "one del",
                "ip -batch route del",
                "ip del",
                Goal::RatioAtLeast(1.0),
            ),
            (
                format!("delete_many, {k} /32 routes"),
                "many del",
                "ip -batch route del",
                "ip del",
                Goal::RatioAtLeast(1.5),
            ),
        ];
        let mut made: Vec<Row> = rows
            .into_iter()
            .map(|(figure, ours, base_name, base, goal)| {
                samples.row(AREA, figure, ours, base_name, base, "routes/s", goal)
            })
            .collect();
        made.push(samples.row(
            AREA,
            format!("lookup one route among {k} in main"),
            "lookup",
            "full dump of main (Cilium's lookup)",
            "dump",
            "ms",
            Goal::Below(1.0),
        ));
        made.push(samples.alone(
            AREA,
            format!("peak RSS, upsert_many + delete_many of {k} routes"),
            "rss",
            "MiB",
            Goal::None,
        ));
        made
    };
    let made = alternate_until(
        report.plan(Rounds::Other, 2),
        &mut [
            &mut |r: &mut Record<'_>| {
                let ns = node("bench-ip");
                let (t, _) = time(|| ns.ip_batch(&replace));
                r.put("ip add", rate(n, t));
                let (t, _) = time(|| ns.ip_batch(&del));
                r.put("ip del", rate(n, t));
            },
            &mut |r: &mut Record<'_>| {
                let ns = node("bench-one");
                let h = Handle::open_netns(ns.path()).expect("handle");
                let (t, ok) = time(|| rs.iter().all(|r| h.upsert(r, None).is_ok_and(|c| c)));
                assert!(ok, "every single upsert succeeds and changes");
                r.put("one add", rate(n, t));
                let (t, ok) = time(|| rs.iter().all(|r| h.delete(r).is_ok()));
                assert!(ok, "every single delete succeeds");
                r.put("one del", rate(n, t));
            },
            &mut |r: &mut Record<'_>| {
                let ns = node("bench-many");
                let h = Handle::open_netns(ns.path()).expect("handle");
                reset_peak_rss();
                let (t, res) = time(|| h.upsert_many(&rs, None));
                assert!(
                    res.iter().all(|r| matches!(r, Ok(true))),
                    "every batched upsert succeeds"
                );
                r.put("many add", rate(n, t));
                drop(res);
                let (t, res) = time(|| h.delete_many(&rs));
                assert!(
                    res.iter().all(|r| r.is_ok()),
                    "every batched delete succeeds"
                );
                r.put("many del", rate(n, t));
                drop(res);
                r.put("rss", peak_rss_mib());
            },
            &mut |r: &mut Record<'_>| {
                let (t, found) = time(|| {
                    probes
                        .iter()
                        .filter(|r| matches!(hl.lookup(r), Ok(Some(_))))
                        .count()
                });
                assert_eq!(found, probes.len(), "every probe is found");
                r.put("lookup", t.as_secs_f64() * 1e3 / probes.len() as f64);
            },
            &mut |r: &mut Record<'_>| {
                let dumps = 3;
                let (t, listed) = time(|| {
                    (0..dumps)
                        .map(|_| {
                            hl.list(&RouteFilter::default().table(MAIN_TABLE))
                                .map(|v| v.len())
                                .unwrap_or(0)
                        })
                        .sum::<usize>()
                });
                assert!(listed >= dumps * n);
                r.put("dump", t.as_secs_f64() * 1e3 / dumps as f64);
            },
        ],
        &rows,
    );
    drop(hl);
    drop(ns_lookup);
    report.add_all(made);
    floor::run(report);
}
