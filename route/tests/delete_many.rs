//! Privileged tests of `delete_many` next to a routing daemon's routes
//! (issue #14): a batch's metric-0 check dumps each table filtered by the
//! protocol and device all its routes name, and that never lets a delete
//! without a metric take a route of another metric, protocol or device.

mod common;

use common::*;
use podnet_route::{Route, RouteFilter, MAIN_TABLE};
use testsupport::{require_privileges, Netns};

/// `ip -4 route show table main` as lines, sorted.
fn main_table(ns: &Netns) -> Vec<String> {
    let mut v: Vec<String> = ns
        .ip(&["-4", "route", "show", "table", "main"])
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn delete_many_takes_only_its_own_routes_next_to_a_daemons() {
    require_privileges!();
    let ns = world("delmany");
    let h = handle(&ns);
    // A daemon's routes: metric 32 on the prefixes we use, metric 0 on
    // others, and metric 0 of its protocol on one of ours through eth1.
    let mut batch = Vec::new();
    for i in 0..40u32 {
        add_daemon_route(&ns, &format!("10.60.{i}.0/24 via 10.0.0.2 dev eth0"));
        ip_text(
            &ns,
            &format!("route add 10.61.{i}.0/24 via 10.1.0.2 dev eth1 proto bird"),
        );
        let mine: Route = format!("10.60.{i}.0/24 via 10.0.0.2 dev eth0 proto static")
            .parse()
            .unwrap();
        // Ours is installed on every other prefix only; on the others an
        // admin's route of our protocol and device, at metric 64, is the
        // one a delete without a metric would take.
        if i % 2 == 0 {
            assert!(h.upsert(&mine, None).unwrap(), "{mine}");
        } else {
            ip_text(
                &ns,
                &format!("route add 10.60.{i}.0/24 via 10.0.0.2 dev eth0 proto static metric 64"),
            );
        }
        batch.push(mine);
    }
    // Ours of the same protocol on another device: a delete through eth0
    // must not take it either.
    ip_text(
        &ns,
        "route add 10.62.0.0/24 via 10.1.0.2 dev eth1 proto static",
    );
    batch.push(
        "10.62.0.0/24 via 10.0.0.2 dev eth0 proto static"
            .parse()
            .unwrap(),
    );
    let theirs_before: Vec<String> = main_table(&ns)
        .into_iter()
        .filter(|l| l.contains("proto bird") || l.contains("metric 64") || l.starts_with("10.62."))
        .collect();
    assert_eq!(theirs_before.len(), 101, "{theirs_before:#?}");

    let res = h.delete_many(&batch);
    for (i, (r, res)) in batch.iter().zip(&res).enumerate() {
        if i < 40 && i % 2 == 0 {
            assert!(res.is_ok(), "{r}: {res:?}");
        } else {
            let e = res.as_ref().unwrap_err();
            assert!(e.is_not_found(), "{r}: {e}");
        }
    }
    let after = main_table(&ns);
    for l in &theirs_before {
        assert!(after.contains(l), "{l} was removed:\n{}", after.join("\n"));
    }
    assert!(
        !after.iter().any(|l| l.contains("proto static")
            && l.starts_with("10.60.")
            && !l.contains("metric")),
        "{}",
        after.join("\n")
    );

    // The same with a batch that names no protocol (nothing narrows its
    // dump) and routes of two devices: still only exact metric-0 routes go.
    for i in 0..10u32 {
        let r: Route = format!("10.63.{i}.0/24 via 10.0.0.2 dev eth0")
            .parse()
            .unwrap();
        h.upsert(&r, None).unwrap();
    }
    let loose: Vec<Route> = (0..10u32)
        .map(|i| {
            let mut r: Route = format!("10.63.{i}.0/24 dev eth0").parse().unwrap();
            r.proto = podnet_route::Protocol::UNSPEC;
            r
        })
        .chain((0..10u32).map(|i| {
            let mut r: Route = format!("10.60.{}.0/24 dev eth0", 2 * i + 1)
                .parse()
                .unwrap();
            r.proto = podnet_route::Protocol::UNSPEC;
            r
        }))
        .collect();
    let res = h.delete_many(&loose);
    assert!(res[..10].iter().all(|r| r.is_ok()), "{res:?}");
    assert!(
        res[10..]
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.is_not_found())),
        "{res:?}"
    );
    let left = h.list(&RouteFilter::default().table(MAIN_TABLE)).unwrap();
    let count = |metric: u32| {
        left.iter()
            .filter(|r| r.priority == Some(metric) && r.prefix.to_string().starts_with("10.60."))
            .count()
    };
    assert_eq!(count(32), 40, "the daemon's metric-32 routes stay");
    assert_eq!(count(64), 20, "the admin's metric-64 routes stay");
}
