//! Privileged: nexthop objects (`ip nexthop`) and the routes that refer to
//! them (`nhid`), checked against the real `ip` in the same namespace.

mod common;

use common::*;
use podnet_route::{Family, Nexthop, Protocol, Route, RouteFilter, ShowStyle};
use testsupport::require_privileges;

fn objects() -> Vec<Nexthop> {
    vec![
        Nexthop::new(1).via(ip("10.0.0.2")).dev("eth0"),
        Nexthop::new(2)
            .via(ip("10.1.0.2"))
            .dev("eth1")
            .proto(Protocol(11)),
        Nexthop::group(3, [(1, 1), (2, 3)]),
        Nexthop::blackhole(4, Family::V4),
        Nexthop::new(5).dev("eth0"),
        Nexthop::new(6).via(ip("10.9.9.9")).dev("eth0").onlink(true),
        Nexthop::new(7).via(ip("fd00::2")).dev("eth0"),
        Nexthop::blackhole(8, Family::V6),
    ]
}

#[test]
fn nexthop_objects_list_as_ip_nexthop_shows_them_and_replace_is_idempotent() {
    require_privileges!();
    let ns = world("nhobj");
    let h = handle(&ns);
    for n in objects() {
        assert!(h.replace_nexthop(&n).unwrap(), "first replace of {n}");
        assert!(!h.replace_nexthop(&n).unwrap(), "second replace of {n}");
    }
    let listed = h.nexthops().unwrap();
    let mut want = objects();
    want.sort_by_key(|n| n.id);
    assert_eq!(listed, want);
    let ours: Vec<String> = listed.iter().map(|n| n.to_string()).collect();
    assert_eq!(ours, ns.ip_lines(&["nexthop", "show"]));
    // Every line `ip` prints parses back to the object listed.
    for (line, n) in ns.ip_lines(&["nexthop", "show"]).iter().zip(&listed) {
        let mut parsed: Nexthop = line.parse().unwrap();
        parsed.family = n.family; // a blackhole's line has no family
        assert_eq!(&parsed, n, "{line}");
    }
    assert_eq!(h.nexthop(3).unwrap(), Some(want[2].clone()));
    assert_eq!(h.nexthop(99).unwrap(), None);

    // A change replaces; the group moves with it.
    let moved = Nexthop::new(1).via(ip("10.0.0.3")).dev("eth0");
    assert!(h.replace_nexthop(&moved).unwrap());
    assert!(ns.ip(&["nexthop", "show", "id", "1"]).contains("10.0.0.3"));
    // add is exclusive.
    assert!(h.add_nexthop(&moved).unwrap_err().is_exists());
    // Bad input never reaches the kernel; the kernel's refusals are typed.
    assert!(h.add_nexthop(&Nexthop::new(0).dev("eth0")).is_err());
    let e = h
        .add_nexthop(&Nexthop::group(20, [(1, 1), (77, 1)]))
        .unwrap_err();
    assert!(e.errno().is_some(), "{e}");
    assert!(matches!(
        h.add_nexthop(&Nexthop::new(21).dev("nope")).unwrap_err(),
        podnet_route::Error::UnknownDevice { .. }
    ));

    h.delete_nexthop(3).unwrap();
    assert!(h.delete_nexthop(3).unwrap_err().is_not_found());
    assert!(!ns.ip(&["nexthop", "show"]).contains("id 3 "));
}

#[test]
fn routes_on_nexthop_objects_list_show_and_upsert_without_detaching() {
    require_privileges!();
    let ns = world("nhroute");
    let h = handle(&ns);
    for n in objects() {
        h.replace_nexthop(&n).unwrap();
    }
    // Ours, through objects.
    let ours = [
        Route::new(net("10.5.0.0/16")).nhid(3),
        Route::new(net("10.6.0.0/16"))
            .nhid(1)
            .proto(Protocol(186))
            .metric(20),
        Route::new(net("fd05::/64")).nhid(7),
    ];
    for r in &ours {
        assert!(h.upsert(r, None).unwrap(), "first upsert of {r}");
        assert!(!h.upsert(r, None).unwrap(), "second upsert of {r}");
    }
    // A daemon's (zebra, protocol 11), installed by `ip`.
    ip_text(&ns, "route add 10.7.0.0/16 nhid 2 proto zebra metric 20");
    let listed = h
        .list(&RouteFilter::default().family(Family::V4).table(254))
        .unwrap();
    assert_eq!(shown(&listed), ns.ip_lines(&["route", "show"]));
    let listed6 = h.list(&RouteFilter::default().family(Family::V6)).unwrap();
    let r6 = listed6
        .iter()
        .find(|r| r.prefix == net("fd05::/64"))
        .unwrap();
    assert_eq!(r6.nhid, Some(7));
    assert_eq!(
        r6.show(ShowStyle::OneTable).to_string(),
        "fd05::/64 nhid 7 via fd00::2 dev eth0 metric 1024 pref medium"
    );

    // Every listed route upserted as it is, and parsed from `ip`'s text,
    // changes nothing and stays on its object.
    let zebra = listed
        .iter()
        .find(|r| r.prefix == net("10.7.0.0/16"))
        .unwrap()
        .clone();
    assert_eq!(zebra.nhid, Some(2));
    for r in listed.iter().filter(|r| r.nhid.is_some()) {
        assert!(!h.upsert(r, None).unwrap(), "re-upsert of listed {r}");
        let text = r.show(ShowStyle::OneTable).to_string();
        let parsed: Route = text.parse().unwrap();
        assert!(!h.upsert(&parsed, None).unwrap(), "upsert of `{text}`");
    }
    // The same route described by its gateway and device (no nhid) is the
    // same route: it is left on the object.
    let plain = Route::new(net("10.7.0.0/16"))
        .via(ip("10.1.0.2"))
        .dev("eth1")
        .proto(Protocol(11))
        .metric(20);
    // (The first upsert adds Cilium's scope-link route to the gateway.)
    h.upsert(&plain, None).unwrap();
    assert!(!h.upsert(&plain, None).unwrap());
    let j = ns.ip(&["-j", "route", "show", "10.7.0.0/16"]);
    assert!(j.contains("\"nhid\":2"), "{j}");
    // Changing the object the route is on is an upsert like any other.
    let moved = zebra.clone().nhid(1);
    assert!(h.upsert(&moved, None).unwrap());
    let j = ns.ip(&["-j", "route", "show", "10.7.0.0/16"]);
    assert!(j.contains("\"nhid\":1"), "{j}");
    // Delete by the identity and the object; a delete without a metric
    // leaves the metric-20 route alone.
    assert!(h
        .delete(&Route::new(net("10.7.0.0/16")).nhid(1).proto(Protocol(11)))
        .unwrap_err()
        .is_not_found());
    h.delete(&moved).unwrap();
    assert!(ns.ip(&["route", "show", "10.7.0.0/16"]).is_empty());
    // Deleting an object takes its routes with it (the kernel's doing).
    h.delete_nexthop(7).unwrap();
    assert!(ns.ip(&["-6", "route", "show", "fd05::/64"]).is_empty());
}

#[test]
fn upsert_many_through_shared_nexthop_objects() {
    require_privileges!();
    let ns = world("nhmany");
    let h = handle(&ns);
    h.replace_nexthop(&Nexthop::new(1).via(ip("10.0.0.2")).dev("eth0"))
        .unwrap();
    let routes: Vec<Route> = (0..200u32)
        .map(|i| {
            Route::new(
                format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
                    .parse()
                    .unwrap(),
            )
            .nhid(1)
            .proto(Protocol::STATIC)
        })
        .collect();
    assert!(h.upsert_many(&routes, None).into_iter().all(|r| r.unwrap()));
    assert!(h
        .upsert_many(&routes, None)
        .into_iter()
        .all(|r| !r.unwrap()));
    let n = ns
        .ip_lines(&["route", "show", "proto", "static"])
        .iter()
        .filter(|l| l.contains("nhid 1 via 10.0.0.2 dev eth0"))
        .count();
    assert_eq!(n, 200);
    // One replace of the object moves them all.
    h.replace_nexthop(&Nexthop::new(1).via(ip("10.0.0.3")).dev("eth0"))
        .unwrap();
    let n = ns
        .ip_lines(&["route", "show", "proto", "static"])
        .iter()
        .filter(|l| l.contains("via 10.0.0.3"))
        .count();
    assert_eq!(n, 200);
    assert!(h.delete_many(&routes).into_iter().all(|r| r.is_ok()));
    assert!(ns.ip(&["route", "show", "proto", "static"]).is_empty());
}
