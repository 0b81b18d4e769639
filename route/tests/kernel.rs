//! Privileged tests against the real kernel, each in its own netns. Every
//! state is checked two ways: through our own lookup/list and through the
//! real `ip -d -j` run in the same netns.

mod common;

use common::*;
use podnet_route::{
    Error, Family, Handle, MtuConfig, NextHop, Protocol, Route, RouteFilter, RouteType, Rule,
    RuleAction, Scope, MAIN_TABLE,
};
use testsupport::{require_privileges, Netns};

/// Our list of every route equals iproute2's.
fn assert_same_as_ip(h: &Handle, ns: &Netns) {
    let mut ours = h.list(&RouteFilter::default()).unwrap();
    sort_routes(&mut ours);
    let theirs = ip_routes_all(ns);
    assert_set_eq(
        &ours,
        &theirs,
        "Handle::list vs ip -d -j route show table all",
    );
    let mut ours = h.list_rules(None).unwrap();
    sort_rules(&mut ours);
    assert_set_eq(
        &ours,
        &ip_rules_all(ns),
        "Handle::list_rules vs ip -d -j rule show",
    );
}

fn sample_routes() -> Vec<Route> {
    vec![
        Route::new(net("10.20.0.0/16"))
            .via(ip("10.0.0.2"))
            .dev("eth0"),
        Route::new(net("10.21.0.0/16"))
            .via(ip("10.0.0.3"))
            .dev("eth0")
            .table(300)
            .proto(Protocol::STATIC)
            .mtu(1400),
        Route::new(net("0.0.0.0/0"))
            .via(ip("10.1.0.254"))
            .dev("eth1")
            .table(92),
        Route::new(net("10.30.0.0/24"))
            .dev("eth1")
            .scope(Scope::LINK)
            .src(ip("10.1.0.1"))
            .metric(20),
        Route::new(net("10.31.0.0/24"))
            .kind(RouteType::BLACKHOLE)
            .table(70000),
        Route::new(net("10.32.0.0/24")).kind(RouteType::UNREACHABLE),
        Route::host(ip("10.0.0.77"))
            .dev("eth0")
            .kind(RouteType::LOCAL)
            .table(255),
        Route::new(net("fd20::/64")).via(ip("fd00::2")).dev("eth0"),
        Route::new(net("fd21::/48"))
            .via(ip("fd00::3"))
            .dev("eth0")
            .table(4000)
            .metric(50)
            .mtu(1300),
        Route::new(net("::/0"))
            .via(ip("fd01::fe"))
            .dev("eth1")
            .table(92)
            .proto(Protocol(192)),
        Route::new(net("fd30::/64")).dev("eth1").src(ip("fd01::1")),
        Route::new(net("fd31::/64"))
            .kind(RouteType::PROHIBIT)
            .table(300),
        Route::new(net("10.7.0.0/16")).metric(5).nexthops(vec![
            NextHop::new("eth0").via(ip("10.0.0.2")),
            NextHop::new("eth1").via(ip("10.1.0.2")).weight(3),
        ]),
        Route::new(net("fd07::/64")).table(300).nexthops(vec![
            NextHop::new("eth0").via(ip("fd00::2")).weight(2),
            NextHop::new("eth1").via(ip("fd01::2")),
        ]),
    ]
}

fn sample_rules() -> Vec<Rule> {
    vec![
        Rule::new(Family::V4).priority(20).to(net("10.0.0.9/32")),
        Rule::new(Family::V4)
            .priority(30)
            .from(net("10.0.0.9/32"))
            .to(net("10.0.0.0/16"))
            .table(92),
        Rule::new(Family::V4)
            .priority(40)
            .mark(0x200, 0xf00)
            .table(70000)
            .protocol(Protocol::STATIC),
        Rule::new(Family::V4)
            .priority(50)
            .to(net("10.99.0.0/16"))
            .invert(true)
            .table(300),
        Rule::new(Family::V4)
            .priority(60)
            .from(net("10.98.0.0/16"))
            .action(RuleAction::Blackhole),
        Rule::new(Family::V6).priority(20).to(net("fd00::9/128")),
        Rule::new(Family::V6)
            .priority(30)
            .from(net("fd00::9/128"))
            .to(net("fd00::/48"))
            .table(92),
        Rule::new(Family::V6)
            .priority(40)
            .mark(0xa00, 0xf00)
            .table(4000),
    ]
}

#[test]
fn upsert_is_idempotent_and_matches_iproute2_v4_v6() {
    require_privileges!();
    let ns = world("upsert");
    let h = handle(&ns);
    for r in sample_routes() {
        assert!(h.upsert(&r, None).unwrap(), "first upsert of {r} changes");
        assert!(
            !h.upsert(&r, None).unwrap(),
            "second upsert of {r} changes nothing"
        );
        let mut want = r.clone();
        if want.is_ipv6() && want.priority.is_none() {
            want.priority = Some(1024);
        }
        if want.is_ipv6() && want.kind.is_reject() {
            // The kernel hangs IPv6 reject routes on the loopback device.
            want.device = Some("lo".into());
        }
        assert_eq!(h.lookup(&r).unwrap().as_ref(), Some(&want), "lookup of {r}");
        if let Some(nh) = r.nexthop_route() {
            let seen = h
                .lookup(&nh)
                .unwrap()
                .unwrap_or_else(|| panic!("nexthop route {nh}"));
            assert_eq!(seen.scope, nh.scope);
            assert_eq!(seen.table, r.table);
        }
    }
    assert_same_as_ip(&h, &ns);
    // Present in iproute2's view with our exact text.
    let theirs = ip_routes_all(&ns);
    for r in sample_routes() {
        assert!(
            theirs
                .iter()
                .any(|t| t.prefix == r.prefix && t.table == r.table && t.kind == r.kind),
            "{r} not in ip output"
        );
    }
}

#[test]
fn upsert_replaces_a_changed_route_and_keeps_the_metric() {
    require_privileges!();
    let ns = world("change");
    let h = handle(&ns);
    let a = Route::new(net("10.40.0.0/16"))
        .via(ip("10.0.0.2"))
        .dev("eth0")
        .table(500)
        .metric(7);
    assert!(h.upsert(&a, None).unwrap());
    let b = a.clone().via(ip("10.1.0.2")).dev("eth1").mtu(1280);
    assert!(h.upsert(&b, None).unwrap());
    assert!(!h.upsert(&b, None).unwrap());
    let in_table: Vec<_> = h
        .list(&RouteFilter::default().table(500))
        .unwrap()
        .into_iter()
        .filter(|r| r.prefix == a.prefix)
        .collect();
    assert_eq!(in_table, vec![b.clone()], "replaced in place, one route");
    // Another metric is another route.
    let c = b.clone().metric(8);
    assert!(h.upsert(&c, None).unwrap());
    assert_eq!(
        h.list(&RouteFilter::default().table(500))
            .unwrap()
            .iter()
            .filter(|r| r.prefix == a.prefix)
            .count(),
        2
    );
    assert_same_as_ip(&h, &ns);
}

#[test]
fn mtu_configuration_sets_route_or_device_mtu() {
    require_privileges!();
    let ns = world("mtu");
    let h = handle(&ns);
    let cfg = MtuConfig::new(9000, 8950);
    let remote = Route::new(net("10.50.0.0/16"))
        .via(ip("10.0.0.2"))
        .dev("eth0")
        .mtu(1500);
    let local = Route::new(net("10.51.0.0/16"))
        .via(ip("10.0.0.2"))
        .dev("eth0")
        .src(ip("10.0.0.1"))
        .mtu(1500);
    h.upsert(&remote, Some(&cfg)).unwrap();
    h.upsert(&local, Some(&cfg)).unwrap();
    assert!(!h.upsert(&remote, Some(&cfg)).unwrap());
    assert_eq!(h.lookup(&remote).unwrap().unwrap().mtu, Some(8950));
    assert_eq!(h.lookup(&local).unwrap().unwrap().mtu, Some(9000));
    let bad = MtuConfig::new(0, 1);
    assert!(matches!(
        h.upsert(&remote, Some(&bad)),
        Err(Error::InvalidInput { .. })
    ));
    assert_same_as_ip(&h, &ns);
}

#[test]
fn delete_reports_not_found_and_removes_kernel_routes() {
    require_privileges!();
    let ns = world("delete");
    let h = handle(&ns);
    for r in sample_routes() {
        h.upsert(&r, None).unwrap();
    }
    for r in sample_routes() {
        h.delete(&r).unwrap_or_else(|e| panic!("delete {r}: {e}"));
        let e = h.delete(&r).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(
            e.to_string().contains(&r.to_string()),
            "error names the route: {e}"
        );
        assert_eq!(h.lookup(&r).unwrap(), None);
        assert!(!h.delete_if_present(&r).unwrap());
    }
    // A `proto kernel scope link` route goes too when described as it is
    // (delete template: scope nowhere, type 0, the protocol given) ...
    let boot = Route::new(net("10.0.0.0/24")).dev("eth0");
    assert!(
        h.delete(&boot).unwrap_err().is_not_found(),
        "other protocol"
    );
    let connected = boot.clone().proto(Protocol::KERNEL);
    h.delete(&connected).unwrap();
    assert!(!ip_routes(&ns, false)
        .iter()
        .any(|r| r.prefix == connected.prefix && r.table == MAIN_TABLE));
    // ... or with Protocol::UNSPEC, the explicit "any protocol".
    let connected6 = Route::new(net("fd00::/64"))
        .dev("eth0")
        .metric(256)
        .proto(Protocol::UNSPEC);
    h.delete(&connected6).unwrap();
    assert_same_as_ip(&h, &ns);
}

#[test]
fn bad_input_is_rejected_before_anything_is_sent() {
    require_privileges!();
    let ns = world("badinput");
    let h = handle(&ns);
    let before = ip_routes_all(&ns);
    let cases = [
        Route::new(net("10.60.0.0/16"))
            .via(ip("fd00::2"))
            .dev("eth0"),
        Route::new(net("10.60.0.1/16"))
            .via(ip("10.0.0.2"))
            .dev("eth0"),
        Route::new(net("10.60.0.0/16"))
            .via(ip("10.0.0.2"))
            .dev("eth0")
            .mtu(0),
        Route::new(net("fd60::/64")).dev("eth0").scope(Scope::LINK),
    ];
    for r in &cases {
        let e = h.upsert(r, None).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{r}: {e}");
    }
    let e = h
        .upsert(
            &Route::new(net("10.60.0.0/16"))
                .via(ip("10.0.0.2"))
                .dev("nosuch0"),
            None,
        )
        .unwrap_err();
    match &e {
        Error::UnknownDevice { device, .. } => assert_eq!(device, "nosuch0"),
        other => panic!("expected UnknownDevice, got {other}"),
    }
    assert_eq!(ip_routes_all(&ns), before, "nothing was sent");
    // The kernel's own refusal carries errno and extended-ack text.
    let e = h
        .upsert(
            &Route::new(net("10.61.0.0/16"))
                .dev("eth0")
                .kind(RouteType(200)),
            None,
        )
        .unwrap_err();
    assert!(e.errno().is_some(), "{e}");
}

#[test]
fn failed_prefix_step_rolls_back_the_nexthop_route() {
    require_privileges!();
    let ns = world("rollback");
    let h = handle(&ns);
    let before = ip_routes_all(&ns);
    // A preferred source that is not a local address: the kernel refuses
    // the prefix route (EINVAL, retried 10 times) after the nexthop route
    // went in.
    let r = Route::new(net("10.70.0.0/16"))
        .via(ip("10.0.0.9"))
        .dev("eth0")
        .src(ip("10.9.9.9"))
        .table(400);
    let e = h.upsert(&r, None).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    assert!(
        e.kernel_message().is_some(),
        "extended ack text expected: {e}"
    );
    assert!(e.to_string().contains("10.70.0.0/16"), "{e}");
    assert_eq!(ip_routes_all(&ns), before, "no half state left");
}

#[test]
fn rules_are_never_duplicated_and_match_iproute2() {
    require_privileges!();
    let ns = world("rules");
    let h = handle(&ns);
    for r in sample_rules() {
        assert!(h.replace_rule(&r).unwrap(), "{r} added");
        assert!(!h.replace_rule(&r).unwrap(), "{r} already present");
    }
    assert_same_as_ip(&h, &ns);
    let listed = h.list_rules(None).unwrap();
    for r in sample_rules() {
        assert_eq!(listed.iter().filter(|k| **k == r).count(), 1, "{r} once");
    }
    // Someone else's rule with a selector we do not model (iif) stays.
    ip_text(
        &ns,
        "rule add priority 30 from 10.0.0.9 to 10.0.0.0/16 iif eth1 lookup 5",
    );
    // A stale variant (same priority and selector, other table) goes.
    let moved = Rule::new(Family::V4)
        .priority(30)
        .from(net("10.0.0.9/32"))
        .to(net("10.0.0.0/16"))
        .table(93);
    assert!(h.replace_rule(&moved).unwrap());
    let v4 = h.list_rules(Some(Family::V4)).unwrap();
    assert_eq!(
        v4.iter().filter(|k| k.priority == Some(30)).count(),
        2,
        "{v4:#?}"
    );
    assert!(v4.contains(&moved));
    assert!(ns
        .ip(&["rule", "show", "priority", "30"])
        .contains("iif eth1"));
    ns.ip(&["rule", "del", "priority", "30", "iif", "eth1"]);
    for r in sample_rules()
        .into_iter()
        .filter(|r| r.priority != Some(30) || r.family == Family::V6)
    {
        h.delete_rule(&r).unwrap();
        let e = h.delete_rule(&r).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }
    h.delete_rule(&moved).unwrap();
    assert_same_as_ip(&h, &ns);
    assert_eq!(
        h.list_rules(None).unwrap().len(),
        5,
        "only the default rules remain"
    );
}

#[test]
fn ip_command_text_recreates_the_same_kernel_state() {
    require_privileges!();
    let ours = world("rt-ours");
    let theirs = world("rt-ip");
    let h = handle(&ours);
    let mut lines = String::new();
    for r in sample_routes() {
        h.upsert(&r, None).unwrap();
        if let Some(nh) = r.nexthop_route() {
            lines += &nh.to_ip_command()["ip ".len()..];
            lines.push('\n');
        }
        lines += &r.to_ip_command()["ip ".len()..];
        lines.push('\n');
        assert_eq!(r.to_string().parse::<Route>().unwrap(), r);
    }
    for r in sample_rules() {
        h.replace_rule(&r).unwrap();
        lines += &r.to_ip_command()["ip ".len()..];
        lines.push('\n');
        assert_eq!(r.to_string().parse::<Rule>().unwrap(), r);
    }
    // `ip -batch` does not take -6 per line: run each line on its own.
    for line in lines.lines() {
        let args: Vec<&str> = line.split_whitespace().collect();
        theirs.ip(&args);
    }
    // Link-local addresses differ between namespaces (random MACs).
    let own = |ns: &Netns| -> Vec<Route> {
        ip_routes_all(ns)
            .into_iter()
            .filter(|r| {
                !(r.prefix.prefix_len() == 128 && r.prefix.addr().to_string().starts_with("fe80:"))
            })
            .collect()
    };
    assert_set_eq(
        &own(&ours),
        &own(&theirs),
        "our upsert vs ip running our text",
    );
    assert_set_eq(&ip_rules_all(&ours), &ip_rules_all(&theirs), "rules");
    // And every route the kernel holds prints as text that parses back.
    for r in h.list(&RouteFilter::default()).unwrap() {
        assert_eq!(r.to_string().parse::<Route>().unwrap(), r, "{r}");
    }
}

#[test]
fn lookup_is_exact_across_tables_and_more_specific_routes() {
    require_privileges!();
    let ns = world("lookup");
    let h = handle(&ns);
    let wide = Route::new(net("10.80.0.0/16"))
        .via(ip("10.0.0.2"))
        .dev("eth0");
    let narrow = Route::new(net("10.80.0.0/24"))
        .via(ip("10.1.0.2"))
        .dev("eth1");
    let other_table = Route::new(net("10.80.0.0/16"))
        .via(ip("10.1.0.3"))
        .dev("eth1")
        .table(1234);
    for r in [&wide, &narrow, &other_table] {
        h.upsert(r, None).unwrap();
    }
    assert_eq!(h.lookup(&wide).unwrap().as_ref(), Some(&wide));
    assert_eq!(h.lookup(&narrow).unwrap().as_ref(), Some(&narrow));
    assert_eq!(h.lookup(&other_table).unwrap().as_ref(), Some(&other_table));
    // Wrong device / nexthop / type / table: not found.
    assert_eq!(h.lookup(&wide.clone().dev("eth1")).unwrap(), None);
    assert_eq!(h.lookup(&wide.clone().via(ip("10.0.0.9"))).unwrap(), None);
    assert_eq!(
        h.lookup(&wide.clone().kind(RouteType::BLACKHOLE)).unwrap(),
        None
    );
    assert_eq!(h.lookup(&wide.clone().table(999)).unwrap(), None);
    // A selector with only prefix and table finds the kernel's full view.
    let mut sel = Route::new(net("10.80.0.0/16")).table(1234);
    sel.device = None;
    assert_eq!(h.lookup(&sel).unwrap().as_ref(), Some(&other_table));
    // `ip route get`.
    let got = h.get(ip("10.80.0.9")).unwrap();
    assert_eq!(
        (got.nexthop, got.device.as_deref()),
        (Some(ip("10.1.0.2")), Some("eth1"))
    );
    let got6 = h.get(ip("fd00::55")).unwrap();
    assert_eq!(got6.device.as_deref(), Some("eth0"));
    // Filters: family, table, device, proto, type.
    let t = h.list(&RouteFilter::default().table(1234)).unwrap();
    assert_eq!(t.len(), 2, "route and its nexthop route: {t:?}");
    let d = h
        .list(&RouteFilter::default().family(Family::V4).device("eth1"))
        .unwrap();
    let ecmp = Route::new(net("10.82.0.0/16")).nexthops(vec![
        NextHop::new("eth0").via(ip("10.0.0.2")),
        NextHop::new("eth1").via(ip("10.1.0.2")),
    ]);
    h.upsert(&ecmp, None).unwrap();
    let via_eth1 = h
        .list(&RouteFilter::default().family(Family::V4).device("eth1"))
        .unwrap();
    assert!(
        via_eth1.contains(&ecmp),
        "a multipath route lists under each of its devices"
    );
    h.delete(&ecmp).unwrap();
    assert!(d
        .iter()
        .all(|r| r.device.as_deref() == Some("eth1") && !r.is_ipv6()));
    assert!(d.contains(&narrow));
    let k = h
        .list(
            &RouteFilter::default()
                .proto(Protocol::KERNEL)
                .family(Family::V6),
        )
        .unwrap();
    assert!(!k.is_empty() && k.iter().all(|r| r.proto == Protocol::KERNEL && r.is_ipv6()));
    assert_eq!(
        h.list(&RouteFilter::default().table(77777)).unwrap(),
        vec![]
    );
}

#[test]
fn batch_reports_each_item() {
    require_privileges!();
    let ns = world("batch");
    let h = handle(&ns);
    let mut routes: Vec<Route> = (0..600u32)
        .map(|i| {
            Route::host(ip(&format!("10.90.{}.{}", i / 250, i % 250 + 1)))
                .via(ip("10.0.0.2"))
                .dev("eth0")
                .table(700)
        })
        .collect();
    routes.extend((0..100u32).map(|i| {
        Route::host(ip(&format!("fd90::{:x}", i + 1)))
            .via(ip("fd00::2"))
            .dev("eth0")
            .table(700)
    }));
    routes.insert(
        10,
        Route::new(net("10.91.0.0/16"))
            .via(ip("10.0.0.2"))
            .dev("nosuch1"),
    );
    routes.insert(
        20,
        Route::new(net("10.92.0.0/16"))
            .dev("eth0")
            .kind(RouteType(200)),
    );
    let res = h.upsert_many(&routes, None);
    assert_eq!(res.len(), routes.len());
    for (i, (r, res)) in routes.iter().zip(&res).enumerate() {
        match i {
            10 => assert!(matches!(res, Err(Error::UnknownDevice { .. })), "{res:?}"),
            20 => assert!(matches!(res, Err(Error::Kernel { .. })), "{res:?}"),
            _ => assert!(
                *res.as_ref().unwrap_or_else(|e| panic!("{r}: {e}")),
                "{r} changed"
            ),
        }
    }
    let again = h.upsert_many(&routes, None);
    assert!(again
        .iter()
        .enumerate()
        .all(|(i, r)| i == 10 || i == 20 || !*r.as_ref().unwrap()));
    let n = h.list(&RouteFilter::default().table(700)).unwrap().len();
    assert_eq!(n, 700 + 2, "700 routes and two nexthop routes");
    assert_same_as_ip(&h, &ns);
    let mut gone = routes.clone();
    gone.remove(20);
    gone.remove(10);
    gone.insert(5, Route::host(ip("10.93.0.1")).dev("eth0").table(700));
    // Missing routes last in the batch and last in a window of 512 too.
    gone.insert(511, Route::host(ip("10.93.0.2")).dev("eth0").table(700));
    gone.push(Route::host(ip("10.93.0.3")).dev("eth0").table(700));
    let missing = [5, 511, gone.len() - 1];
    let del = h.delete_many(&gone);
    for (i, d) in del.iter().enumerate() {
        if missing.contains(&i) {
            assert!(d.as_ref().unwrap_err().is_not_found());
        } else {
            d.as_ref().unwrap();
        }
    }
    assert_eq!(h.list(&RouteFilter::default().table(700)).unwrap().len(), 2);
}

#[test]
fn concurrent_upserts_on_one_and_on_separate_handles() {
    require_privileges!();
    let ns = world("concur");
    let shared = handle(&ns);
    let routes = |t: u32| -> Vec<Route> {
        (0..200u32)
            .map(|i| {
                // Threads 0/1 and 2/3 overlap; pairs are disjoint.
                let base = (t / 2) * 1000 + i;
                Route::host(ip(&format!(
                    "10.{}.{}.{}",
                    100 + base / 60000,
                    (base / 250) % 240,
                    base % 250 + 1
                )))
                .via(ip(if t % 2 == 0 { "10.0.0.2" } else { "10.0.0.3" }))
                .dev("eth0")
                .table(800)
            })
            .collect()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Dumps while the table changes under them: NLM_F_DUMP_INTR is
        // retried, so every list succeeds.
        let lister = s.spawn(|| {
            let h = handle(&ns);
            let mut lists = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                h.list(&RouteFilter::default().table(800)).unwrap();
                lists += 1;
            }
            lists
        });
        let mut workers = Vec::new();
        for t in 0..4u32 {
            let shared = &shared;
            let ns = &ns;
            workers.push(s.spawn(move || {
                let own;
                let h = if t % 2 == 0 {
                    shared
                } else {
                    own = handle(ns);
                    &own
                };
                for r in routes(t) {
                    h.upsert(&r, None)
                        .unwrap_or_else(|e| panic!("thread {t}: {e}"));
                }
                for r in routes(t).iter().step_by(3) {
                    match h.delete(r) {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                }
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(lister.join().unwrap() > 0);
    });
    let listed = shared.list(&RouteFilter::default().table(800)).unwrap();
    let mut prefixes: Vec<_> = listed.iter().map(|r| (r.prefix, r.priority)).collect();
    let n = prefixes.len();
    prefixes.sort();
    prefixes.dedup();
    assert_eq!(n, prefixes.len(), "no duplicate routes");
    // Every surviving route is one some thread wrote.
    for r in listed
        .iter()
        .filter(|r| r.prefix.prefix_len() == 32 && r.nexthop.is_some())
    {
        assert!((0..4).any(|t| routes(t).contains(r)), "{r}");
    }
    assert_same_as_ip(&shared, &ns);
}

#[test]
fn removed_device_gives_clear_errors_and_recreated_device_works() {
    require_privileges!();
    let ns = world("devgone");
    ns.add_link("eth5");
    wait_link_local(&ns, &["eth5", "eth5p"]);
    let h = handle(&ns);
    let r = Route::new(net("10.110.0.0/16"))
        .dev("eth5")
        .scope(Scope::LINK)
        .table(900);
    h.upsert(&r, None).unwrap();
    ns.ip(&["link", "del", "eth5"]);
    // The kernel flushed the route with the device.
    assert_eq!(h.lookup(&Route::new(r.prefix).table(900)).unwrap(), None);
    let e = h.upsert(&r, None).unwrap_err();
    assert!(matches!(e, Error::UnknownDevice { .. }), "{e}");
    let e = h.delete(&r).unwrap_err();
    assert!(matches!(e, Error::UnknownDevice { .. }), "{e}");
    // Re-created under the same name (new ifindex): the cache refreshes.
    ns.add_link("eth5");
    wait_link_local(&ns, &["eth5", "eth5p"]);
    assert!(h.upsert(&r, None).unwrap());
    assert_eq!(h.lookup(&r).unwrap().as_ref(), Some(&r));
    assert_same_as_ip(&h, &ns);
    // A rename needs forget_links(); then the old name is unknown and the
    // route shows the new one.
    ns.ip(&["link", "set", "eth5", "down"]);
    ns.ip(&["link", "set", "eth5", "name", "eth6"]);
    ns.ip(&["link", "set", "eth6", "up"]);
    h.forget_links();
    let e = h.upsert(&r, None).unwrap_err();
    assert!(matches!(e, Error::UnknownDevice { .. }), "{e}");
    let r6 = r.clone().dev("eth6");
    h.upsert(&r6, None).unwrap();
    assert_eq!(
        h.lookup(&Route::new(r.prefix).table(900))
            .unwrap()
            .unwrap()
            .device
            .as_deref(),
        Some("eth6")
    );
}

#[test]
fn removed_netns_while_handle_open_gives_no_panic() {
    require_privileges!();
    let ns = world("nsgone");
    let h = handle(&ns);
    let r = Route::new(net("10.120.0.0/16"))
        .via(ip("10.0.0.2"))
        .dev("eth0");
    h.upsert(&r, None).unwrap();
    drop(ns); // `ip netns del`: the namespace lives on while our socket holds it.
              // Whatever the kernel says, it is a value, not a panic; the handle's
              // view stays consistent with itself.
    let seen = h.lookup(&r);
    match seen {
        Ok(Some(got)) => assert_eq!(got, r),
        Ok(None) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = h.upsert(&r, None);
    let _ = h.delete(&r);
    let _ = h.list(&RouteFilter::default());
    drop(h);
    // A handle for a path that is gone is a clear error naming the path.
    let e = Handle::open_netns("/run/netns/pnt-no-such-netns").unwrap_err();
    assert!(
        e.to_string().contains("/run/netns/pnt-no-such-netns"),
        "{e}"
    );
    let e = Handle::open_netns("/proc/self/status").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn handle_opens_a_netns_by_process_path() {
    require_privileges!();
    let ns = world("procns");
    let mut child = ns.spawn("sleep", &["30"]);
    let path = format!("/proc/{}/ns/net", child.id());
    // `ip netns exec` execs the program: wait until the pid is in the netns.
    let ns_file = std::fs::metadata(ns.path()).unwrap();
    let mut entered = false;
    for _ in 0..100 {
        if let Ok(m) = std::fs::metadata(&path) {
            use std::os::unix::fs::MetadataExt;
            if m.ino() == ns_file.ino() {
                entered = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(entered, "sleep did not enter the netns");
    let h = Handle::open_netns(&path).unwrap();
    assert_eq!(h.netns(), Some(std::path::Path::new(&path)));
    let r = Route::new(net("10.130.0.0/16"))
        .via(ip("10.0.0.2"))
        .dev("eth0");
    assert!(h.upsert(&r, None).unwrap());
    // Visible to ip in the named netns: the same namespace.
    assert!(ip_routes(&ns, false).contains(&r));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn delete_table_and_default_route_device_like_cilium() {
    require_privileges!();
    let ns = world("cilium-extras");
    let h = handle(&ns);
    for r in sample_routes() {
        h.upsert(&r, None).unwrap();
    }
    // Table 300 holds 10.21/16 + its nexthop route (IPv4) and fd31, fd07 (IPv6).
    assert_eq!(h.delete_table(300, Some(Family::V4)).unwrap(), 2);
    assert_eq!(
        h.list(&RouteFilter::default().table(300).family(Family::V4))
            .unwrap(),
        vec![]
    );
    assert_eq!(h.delete_table(300, None).unwrap(), 2);
    assert_eq!(h.delete_table(300, None).unwrap(), 0);
    assert_same_as_ip(&h, &ns);

    let e = h.default_route_device(Family::V4).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    h.upsert(
        &Route::new(net("0.0.0.0/0"))
            .via(ip("10.1.0.254"))
            .dev("eth1")
            .metric(10),
        None,
    )
    .unwrap();
    h.upsert(
        &Route::new(net("0.0.0.0/0"))
            .via(ip("10.0.0.254"))
            .dev("eth0")
            .metric(5),
        None,
    )
    .unwrap();
    assert_eq!(h.default_route_device(Family::V4).unwrap(), "eth0");
    h.upsert(
        &Route::new(net("0.0.0.0/0"))
            .via(ip("10.1.0.253"))
            .dev("eth1")
            .metric(5)
            .table(MAIN_TABLE),
        None,
    )
    .unwrap();
    // Same metric replaced the eth0 one (same identity): eth1 now.
    assert_eq!(h.default_route_device(Family::V4).unwrap(), "eth1");
    h.upsert(
        &Route::new(net("::/0")).via(ip("fd00::fe")).dev("eth0"),
        None,
    )
    .unwrap();
    assert_eq!(h.default_route_device(Family::V6).unwrap(), "eth0");
}
