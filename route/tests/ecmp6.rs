//! IPv6 ECMP idempotency through the batch path (issue #14, item 1): the
//! kernel's FIB answer for an IPv6 multipath route starts at the path its
//! hash picked for the probe, so about half of many prefixes come back
//! rotated. `tests/reliability.rs` covers single upserts of 20 prefixes
//! with unequal weights; this covers `upsert_many` of 32 prefixes with
//! equal weights (the rotation cannot be told from the weights), three
//! paths, installed by `ip` and by the crate, and seen by a subscription.

mod common;

use std::time::Duration;

use common::*;
use podnet_route::{Event, Handle, NextHop, Route, Topics};
use testsupport::require_privileges;

fn want(i: u32, paths: usize) -> Route {
    let hops = [
        NextHop::new("eth0").via(ip("fd00::2")),
        NextHop::new("eth1").via(ip("fd01::2")),
        NextHop::new("eth0").via(ip("fd00::3")),
    ];
    Route::new(net(&format!("fd20:{i:x}::/64"))).nexthops(hops[..paths].to_vec())
}

#[test]
fn ipv6_ecmp_upsert_many_of_32_prefixes_is_idempotent() {
    require_privileges!();
    let ns = world("ecmp6many");
    let h = Handle::open_netns(ns.path()).unwrap();
    // Half installed by `ip` (two paths), half by the crate (three paths).
    let mut batch = String::new();
    for i in 0..16 {
        batch.push_str(&format!(
            "route add fd20:{i:x}::/64 nexthop via fd00::2 dev eth0 nexthop via fd01::2 dev eth1\n"
        ));
    }
    ns.ip_batch(&batch);
    let routes: Vec<Route> = (0..32)
        .map(|i| want(i, if i < 16 { 2 } else { 3 }))
        .collect();
    let first = h.upsert_many(&routes, None);
    for (i, (r, res)) in routes.iter().zip(&first).enumerate() {
        // ip's routes are already as wanted; the crate's are new.
        assert_eq!(*res.as_ref().unwrap(), i >= 16, "{r}: first upsert");
    }
    let mut mon = h.subscribe(Topics::ROUTES_V6).unwrap();
    for round in 0..3 {
        let res = h.upsert_many(&routes, None);
        let rewritten: Vec<String> = routes
            .iter()
            .zip(&res)
            .filter(|(_, r)| !matches!(r, Ok(false)))
            .map(|(r, res)| format!("{r}: {res:?}"))
            .collect();
        assert!(rewritten.is_empty(), "round {round}: {rewritten:#?}");
        // The configured order, in the other order: the same route.
        let reversed: Vec<Route> = routes
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.multipath.reverse();
                r
            })
            .collect();
        assert!(h
            .upsert_many(&reversed, None)
            .iter()
            .all(|r| matches!(r, Ok(false))));
    }
    // The kernel saw no change.
    let ev = mon.recv_timeout(Duration::from_millis(200)).unwrap();
    assert!(
        !matches!(ev, Some(Event::NewRoute(_) | Event::DelRoute(_))),
        "{ev:?}"
    );
}
