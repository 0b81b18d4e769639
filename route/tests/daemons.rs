//! Coexisting with routing daemons (issue #14): bird2 and FRR from Debian,
//! started by each test in namespaces of its own (see `daemons/fixture.rs`),
//! learn routes over BGP (IPv4 and IPv6, ECMP over two links); the crate
//! lists them exactly as `ip route show` prints them, an upsert of a
//! daemon's exact route changes nothing, a delete without a metric never
//! removes one, and a subscription sees someone else remove one.

#[path = "daemons/fixture.rs"]
mod fixture;

use std::time::{Duration, Instant};

use fixture::{Bgp, PREFIXES4, PREFIXES6, REALM_ECMP_PREFIX, REALM_PREFIX};
use podnet_route::{
    Event, Family, Handle, IpNet, Protocol, Route, RouteFilter, ShowStyle, Topics, MAIN_TABLE,
};
use testsupport::require_privileges;

fn handle(bgp: &Bgp) -> Handle {
    Handle::open_netns(bgp.node.path()).expect("open handle in the node's netns")
}

fn proto(name: &str) -> Protocol {
    name.parse().expect("protocol name")
}

/// The routes of `p` in the node's main table, as the crate lists them.
fn listed(h: &Handle, fam: Family, p: Protocol) -> Vec<Route> {
    h.list(
        &RouteFilter::default()
            .family(fam)
            .table(MAIN_TABLE)
            .proto(p),
    )
    .expect("list")
}

/// Those routes printed as `ip route show` prints them, one line each
/// (a multipath route spans several).
fn shown(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .flat_map(|r| {
            r.show(ShowStyle::OneTable)
                .to_string()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `ip [-6] route show proto P`, without the trailing spaces (and, as
/// `ip` filters by it, without `proto P`), less the gateways' scope-link
/// routes an upsert of a single-path route adds (Cilium's nexthop step,
/// in the route's protocol).
fn ip_shown(bgp: &Bgp, fam: Family, p: &str) -> Vec<String> {
    let f = if fam == Family::V6 { "-6" } else { "-4" };
    bgp.node
        .ip_lines(&[f, "route", "show", "proto", p])
        .into_iter()
        .filter(|l| !l.ends_with(" scope link") || l.contains('/'))
        .collect()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn bird_bgp_routes_listed_as_ip_route_show_prints_them() {
    require_privileges!();
    let mut bgp = Bgp::bird("bird-list");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    for fam in [Family::V4, Family::V6] {
        // The whole main table, as `ip route show` prints it, bird's
        // routes with `realm 7` (on one route, and on each path of another)
        // included.
        let ours = h
            .list(&RouteFilter::default().family(fam).table(MAIN_TABLE))
            .unwrap();
        let f = if fam == Family::V6 { "-6" } else { "-4" };
        let theirs = bgp.node.ip_lines(&[f, "route", "show"]);
        assert_eq!(shown(&ours), theirs, "{fam:?}");
        let bird: Vec<&Route> = ours.iter().filter(|r| r.proto == proto("bird")).collect();
        let n = if fam == Family::V4 {
            PREFIXES4.len() + 1 // and the single-path REALM_PREFIX
        } else {
            PREFIXES6.len()
        };
        assert_eq!(bird.len(), n, "{fam:?}: {bird:#?}");
        for r in bird {
            if r.prefix == net(REALM_PREFIX) {
                assert!(r.multipath.is_empty(), "one path: {r}");
                assert_eq!(r.realm, Some(7), "{r}");
            } else {
                assert_eq!(r.multipath.len(), 2, "ECMP over both links: {r}");
            }
            assert_eq!(r.mtu, Some(1400), "{r}");
            assert!(r.local.is_some(), "src: {r}");
            assert_eq!(r.kernel_metric(), 32, "bird's metric: {r}");
        }
    }
}

/// bird sets `realm 7` (`krt_realm`): on a single-path route and on each
/// path of a multipath route, listed, shown and upserted with it.
#[test]
fn bird_realm_route_listed_as_ip_route_show_prints_it() {
    require_privileges!();
    let mut bgp = Bgp::bird("bird-realm");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    let bird = listed(&h, Family::V4, proto("bird"));
    let theirs = bgp.node.ip_lines(&["route", "show", REALM_PREFIX]);
    assert!(theirs[0].contains(" realm 7"), "{theirs:?}");
    let one: Vec<Route> = bird
        .iter()
        .filter(|r| r.prefix == net(REALM_PREFIX))
        .cloned()
        .collect();
    assert_eq!(shown(&one), theirs);
    let mut mon = h.subscribe(Topics::ROUTES_V4).unwrap();
    // The first upsert may add the gateway's scope-link route (Cilium's
    // nexthop step); the second changes nothing; bird's route is never
    // rewritten.
    h.upsert(&one[0], None).unwrap();
    assert!(!h.upsert(&one[0], None).unwrap(), "unchanged");
    assert_eq!(bgp.node.ip_lines(&["route", "show", REALM_PREFIX]), theirs);
    std::thread::sleep(Duration::from_millis(100));
    let events = mon.drain().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.route().is_none_or(|r| r.prefix != net(REALM_PREFIX))),
        "{events:#?}"
    );

    let theirs = bgp.node.ip_lines(&["route", "show", REALM_ECMP_PREFIX]);
    assert!(
        theirs.iter().filter(|l| l.contains(" realm 7 ")).count() == 2,
        "{theirs:?}"
    );
    let paths: Vec<Route> = bird
        .iter()
        .filter(|r| r.prefix == net(REALM_ECMP_PREFIX))
        .cloned()
        .collect();
    assert_eq!(shown(&paths), theirs, "each path's realm listed");
    assert!(
        !h.upsert(&paths[0], None).unwrap(),
        "the daemon's route as listed changes nothing: {}",
        paths[0]
    );
    assert_eq!(
        bgp.node.ip_lines(&["route", "show", REALM_ECMP_PREFIX]),
        theirs,
        "the realms are still on the paths"
    );
}

#[test]
fn bird_route_upserted_twice_changes_nothing() {
    require_privileges!();
    let mut bgp = Bgp::bird("bird-upsert");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    let mut mon = h.subscribe(Topics::ROUTES).unwrap();
    let before4 = ip_shown(&bgp, Family::V4, "bird");
    let before6 = ip_shown(&bgp, Family::V6, "bird");
    let mut routes: Vec<Route> = [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| listed(&h, f, proto("bird")))
        .collect();
    // Also as text: what `ip route show` prints parses back to the same
    // request (with the metric and protocol in it).
    let text = routes[0].to_string();
    routes.push(text.parse().unwrap());
    for r in &routes {
        for round in 0..2 {
            let changed = h.upsert(r, None).unwrap();
            // A single-path route's first upsert makes Cilium's
            // `GATEWAY dev D scope link` route (its own, proto boot) if
            // it is missing; bird's route itself is never rewritten (the
            // subscription below sees no event of bird's).
            let may = round == 0 && r.multipath.is_empty();
            assert!(!changed || may, "round {round}: {r} was rewritten");
        }
    }
    assert!(h
        .upsert_many(&routes, None)
        .iter()
        .all(|r| matches!(r, Ok(false))));
    // The same identity (table, prefix, metric 32) of another protocol,
    // another path: refused, bird's route is not rewritten.
    let mut mine = Route::new(routes[0].prefix)
        .via(routes[0].multipath[0].gateway.unwrap())
        .dev(routes[0].multipath[0].device.clone().unwrap())
        .metric(32)
        .proto(Protocol::STATIC);
    for _ in 0..2 {
        let e = h.upsert(&mine, None).unwrap_err();
        assert!(e.is_exists(), "{e}");
        mine = mine.proto(Protocol::BOOT);
    }
    assert_eq!(ip_shown(&bgp, Family::V4, "bird"), before4);
    assert_eq!(ip_shown(&bgp, Family::V6, "bird"), before6);
    // And the kernel saw no change of bird's routes (only the gateway's
    // scope-link route a single-path upsert adds).
    let changes = mon.drain().unwrap();
    assert!(
        changes.iter().all(|e| e
            .route()
            .is_none_or(|r| routes.iter().all(|x| x.prefix != r.prefix))),
        "{changes:#?}"
    );
}

#[test]
fn bird_route_survives_a_delete_without_a_metric() {
    require_privileges!();
    let mut bgp = Bgp::bird("bird-delete");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    let before4 = ip_shown(&bgp, Family::V4, "bird");
    let before6 = ip_shown(&bgp, Family::V6, "bird");
    for fam in [Family::V4, Family::V6] {
        for daemon in listed(&h, fam, proto("bird")) {
            // The same paths, without the metric: the family's default,
            // not bird's 32, whatever the protocol says.
            let mut plain = Route::new(daemon.prefix).nexthops(daemon.multipath.clone());
            for p in [Protocol::UNSPEC, Protocol::BOOT, proto("bird")] {
                plain = plain.proto(p);
                let e = h.delete(&plain).unwrap_err();
                assert!(e.is_not_found(), "{plain}: {e}");
                let e = h.delete_many(std::slice::from_ref(&plain)).remove(0);
                assert!(e.unwrap_err().is_not_found(), "{plain}");
                assert!(!h.delete_if_present(&plain).unwrap(), "{plain}");
            }
            // One path of it, as `ip route del P via G dev D` would say.
            let (gw, dev) = match daemon.multipath.first() {
                Some(hop) => (hop.gateway.unwrap(), hop.device.clone().unwrap()),
                None => (daemon.nexthop.unwrap(), daemon.device.clone().unwrap()),
            };
            let one = Route::new(daemon.prefix).via(gw).dev(dev);
            assert!(h.delete(&one).unwrap_err().is_not_found(), "{one}");
        }
    }
    assert_eq!(ip_shown(&bgp, Family::V4, "bird"), before4);
    assert_eq!(ip_shown(&bgp, Family::V6, "bird"), before6);
}

#[test]
fn bird_route_removed_by_someone_else_is_seen_through_a_subscription() {
    require_privileges!();
    let mut bgp = Bgp::bird("bird-monitor");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    let mut mon = h.subscribe(Topics::ROUTES).unwrap();
    for (fam, p) in [(Family::V4, PREFIXES4[1]), (Family::V6, PREFIXES6[1])] {
        let f = if fam == Family::V6 { "-6" } else { "-4" };
        let was = bgp.node.ip_lines(&[f, "route", "show", p]);
        // An admin's `ip route del` of bird's route.
        bgp.node
            .ip(&[f, "route", "del", p, "proto", "bird", "metric", "32"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        let ev = loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no DelRoute of {p}; seen {seen:#?}"));
            match mon.recv_timeout(left).unwrap() {
                Some(Event::DelRoute(r)) if r.prefix == net(p) => break r,
                Some(e) => seen.push(e.to_string()),
                None => {}
            }
        };
        assert_eq!(ev.proto, proto("bird"));
        assert_eq!(
            ev.show(ShowStyle::OneTable)
                .to_string()
                .lines()
                .collect::<Vec<_>>(),
            was,
            "the event prints as `ip route show` printed the route"
        );
    }
}

/// FRR's zebra installs routes through nexthop objects (`nhid N`): listed
/// with the reference and upserted without detaching the route from it.
/// Needs the crate's nexthop-object support (the `nexthop` branch of
/// #14); fails without it.
#[test]
fn frr_nhid_route_kept_on_upsert() {
    require_privileges!();
    let mut bgp = Bgp::frr("frr-nhid");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    for fam in [Family::V4, Family::V6] {
        let f = if fam == Family::V6 { "-6" } else { "-4" };
        let ours = listed(&h, fam, proto("bgp"));
        assert!(!ours.is_empty(), "{fam:?}");
        for r in &ours {
            let p = r.prefix.to_string();
            let theirs = bgp.node.ip_lines(&[f, "route", "show", &p]);
            assert!(theirs[0].contains(" nhid "), "{theirs:?}");
            assert_eq!(
                shown(std::slice::from_ref(r)),
                theirs,
                "listed as ip shows it"
            );
            assert!(!h.upsert(r, None).unwrap(), "{r}: rewritten");
            assert_eq!(
                bgp.node.ip_lines(&[f, "route", "show", &p]),
                theirs,
                "still on its nexthop object"
            );
        }
    }
}

#[test]
fn frr_route_survives_a_delete_without_a_metric() {
    require_privileges!();
    let mut bgp = Bgp::frr("frr-delete");
    bgp.wait_for_ecmp();
    let h = handle(&bgp);
    for fam in [Family::V4, Family::V6] {
        let before = ip_shown(&bgp, fam, "bgp");
        let ours = listed(&h, fam, proto("bgp"));
        assert!(!ours.is_empty());
        for daemon in ours {
            // zebra's metric is 20: a delete without one is not for it.
            let plain = Route::new(daemon.prefix).nexthops(daemon.multipath.clone());
            assert!(h.delete(&plain).unwrap_err().is_not_found(), "{plain}");
            let plain = plain.proto(proto("bgp"));
            assert!(h.delete(&plain).unwrap_err().is_not_found(), "{plain}");
        }
        assert_eq!(ip_shown(&bgp, fam, "bgp"), before);
    }
}
