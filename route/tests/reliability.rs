//! Privileged tests of issue #15 (never damage the node, never misreport,
//! recover from overload) and of #14's safe deletes and IPv6 ECMP
//! idempotency, each in its own netns.

mod common;

use std::time::Instant;

use common::*;
use podnet_route::layout::{EniEndpoint, Layout};
use podnet_route::{Error, Family, NextHop, Protocol, Route, RouteFilter, Rule, MAIN_TABLE};
use testsupport::{require_privileges, Netns};

fn rules_text(ns: &Netns, v6: bool) -> String {
    ns.ip(&[if v6 { "-6" } else { "-4" }, "rule", "show"])
}

#[test]
fn the_kernels_default_rules_are_never_removed_unless_asked() {
    require_privileges!();
    let ns = world("sysrules");
    let h = handle(&ns);
    for fam in [Family::V4, Family::V6] {
        let v6 = fam == Family::V6;
        let before = rules_text(&ns, v6);
        let mut prios = vec![0, 32766];
        if !v6 {
            prios.push(32767);
        }
        for p in prios {
            // `from all` at a default rule's priority would make it stale.
            let e = h
                .replace_rule(&Rule::new(fam).priority(p).table(100))
                .unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        }
        // Templates the kernel would match against a default rule.
        for r in [
            Rule::new(fam),
            Rule::new(fam).priority(32766),
            Rule::new(fam).table(podnet_route::LOCAL_TABLE),
            Rule::new(fam).priority(0).table(podnet_route::LOCAL_TABLE),
        ] {
            let e = h.delete_rule(&r).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{r}: {e}");
        }
        assert_eq!(rules_text(&ns, v6), before, "nothing sent");
        // An own rule at another priority, or with a selector, is fine.
        let own = Rule::new(fam).priority(32766).mark(7, u32::MAX).table(100);
        assert!(h.replace_rule(&own).unwrap());
        h.delete_rule(&own).unwrap();
        // Re-adding the default rule itself is a no-op.
        for sys in Rule::system_rules(fam) {
            assert!(!h.replace_rule(&sys).unwrap(), "{sys}");
        }
        assert_eq!(rules_text(&ns, v6), before);
    }
    // Asked for explicitly: the default rule at 32767 gives way.
    let r = Rule::new(Family::V4).priority(32767).table(100);
    assert!(h.replace_system_rule(&r).unwrap());
    let now = rules_text(&ns, false);
    assert!(now.contains("32767:\tfrom all lookup 100"), "{now}");
    assert!(!now.contains("lookup default"), "{now}");
    assert!(now.contains("32766:\tfrom all lookup main"), "{now}");
    h.delete_system_rule(&Rule::system_rules(Family::V4)[1])
        .unwrap();
    assert!(!rules_text(&ns, false).contains("lookup main"));
}

#[test]
fn eni_layout_refuses_system_tables() {
    require_privileges!();
    let ns = world("enisys");
    ip_text(&ns, "route add default via 10.0.0.254 dev eth0");
    let h = handle(&ns);
    let before = ns.ip(&["route", "show", "table", "all"]);
    for table in [0, 253, 254, 255] {
        let ep = EniEndpoint::new(ip("10.0.0.44"), "eth0", "eth1", table, ip("10.1.0.254"))
            .vpc_cidr(net("10.0.0.0/16"));
        let e = ep.install(&h).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{table}: {e}");
        assert!(ep.remove(&h).is_err(), "{table}");
    }
    assert_eq!(ns.ip(&["route", "show", "table", "all"]), before);
    assert!(before.contains("default via 10.0.0.254 dev eth0"));
}

#[test]
fn failed_install_takes_back_the_nexthop_routes_it_added() {
    require_privileges!();
    let ns = world("rollbacknh");
    let h = handle(&ns);
    let before = ip_routes_all(&ns);
    let l = Layout::new(
        vec![
            // Its upsert adds `10.0.0.2 dev eth0 scope link` too.
            Route::new(net("10.9.0.0/16"))
                .via(ip("10.0.0.2"))
                .dev("eth0"),
            Route::new(net("fd09::/64")).via(ip("fd00::2")).dev("eth0"),
            // The kernel refuses a preferred source that is not local.
            Route::new(net("10.11.0.0/16"))
                .dev("eth0")
                .src(ip("10.200.0.1")),
        ],
        vec![],
    );
    let e = l.install(&h).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    assert_set_eq(&ip_routes_all(&ns), &before, "after the failed install");
}

#[test]
fn overflowed_receive_buffer_reports_each_item_and_the_handle_recovers() {
    require_privileges!();
    let ns = world("enobufs");
    let h = handle(&ns);
    let big = h.receive_buffer();
    assert!(big >= 4 << 20, "a large buffer by default: {big}");
    // Half the routes exist: their exclusive adds all answer EEXIST,
    // more replies than a tiny buffer holds.
    let routes: Vec<Route> = (0..128u32)
        .map(|i| Route::host(ip(&format!("10.77.{}.{}", i / 200, i % 200 + 1))).dev("eth0"))
        .collect();
    let mut batch = String::new();
    for r in routes.iter().step_by(2) {
        batch.push_str(&format!("route add {} dev eth0 scope global\n", r.prefix));
    }
    ns.ip_batch(&batch);
    let small = h.set_receive_buffer(1).unwrap();
    assert!(small < 8192, "{small}");
    let window = h.batch_window();
    let t = Instant::now();
    let res = h.upsert_many(&routes, None);
    for (i, (r, res)) in routes.iter().zip(&res).enumerate() {
        match res {
            Ok(changed) => assert!(i % 2 == 0 || *changed, "{r}: added, reported unchanged"),
            Err(e) => panic!("{r}: {e}"),
        }
    }
    assert!(
        h.batch_window() < window,
        "the overflow happened and was noticed"
    );
    let present = h
        .list(&RouteFilter::default().family(Family::V4).device("eth0"))
        .unwrap();
    for r in &routes {
        assert!(present.iter().any(|p| p.prefix == r.prefix), "{r} missing");
    }
    // The next call works at once (no reply left behind, no timeout).
    assert!(h
        .upsert(&Route::host(ip("10.78.0.1")).dev("eth0"), None)
        .unwrap());
    // Deletes: the present ones and as many absent ones (ESRCH replies).
    let mut del = routes.clone();
    del.extend((0..128u32).map(|i| Route::host(ip(&format!("10.79.0.{}", i + 1))).dev("eth0")));
    for (r, res) in del.iter().zip(h.delete_many(&del)) {
        match res {
            Ok(()) => {}
            Err(e) if e.is_not_found() && r.prefix.addr().to_string().starts_with("10.79.") => {}
            Err(e) => panic!("{r}: {e}"),
        }
    }
    assert!(
        t.elapsed().as_secs() < 30,
        "no reply was waited for in vain"
    );
    let left = h
        .list(&RouteFilter::default().family(Family::V4).device("eth0"))
        .unwrap();
    assert!(!left
        .iter()
        .any(|p| routes.iter().any(|r| r.prefix == p.prefix)));
    // Per-item truth again with a buffer that holds every reply.
    h.set_receive_buffer(4 << 20).unwrap();
    let res = h.upsert_many(&routes, None);
    assert!(res.iter().all(|r| matches!(r, Ok(true))));
    let res = h.upsert_many(&routes, None);
    assert!(res.iter().all(|r| matches!(r, Ok(false))));
}

#[test]
fn routes_the_kernel_would_change_are_idempotent_or_refused() {
    require_privileges!();
    let ns = world("kstore");
    let h = handle(&ns);
    // IPv6 metric 0 is stored as 1024.
    let r = Route::new(net("fd00:9::/64")).dev("eth0").metric(0);
    assert!(h.upsert(&r, None).unwrap());
    assert!(!h.upsert(&r, None).unwrap(), "metric 0 = 1024: unchanged");
    let seen = h.lookup(&r).unwrap().expect("found with metric 0");
    assert_eq!(seen.priority, Some(1024));
    h.delete(&r).unwrap();
    // An MTU the kernel would clamp is refused, naming the limit.
    let e = h
        .upsert(
            &Route::new(net("10.40.0.0/16")).dev("eth0").mtu(70000),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("65520"), "{e}");
    let m = Route::new(net("10.40.0.0/16")).dev("eth0").mtu(65520);
    assert!(h.upsert(&m, None).unwrap());
    assert!(!h.upsert(&m, None).unwrap());
    // Gateways that cannot be one: refused before anything is sent.
    for gw in ["0.0.0.0", "255.255.255.255", "224.0.0.5", "10.41.0.0"] {
        let r = Route::new(net("10.41.0.0/16")).via(ip(gw)).dev("eth0");
        let e = h.upsert(&r, None).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{gw}: {e}");
    }
    let before = ip_routes_all(&ns);
    let e = h
        .upsert(
            &Route::new(net("fd41::/64")).via(ip("::")).dev("eth0"),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert_set_eq(&ip_routes_all(&ns), &before, "nothing sent");
}

#[test]
fn einval_that_cannot_clear_is_not_retried() {
    require_privileges!();
    let ns = world("noretry");
    let h = handle(&ns);
    // A preferred source that is not local: EINVAL, every time.
    let bad: Vec<Route> = (1..=5u8)
        .map(|i| {
            Route::new(net(&format!("10.50.{i}.0/24")))
                .dev("eth0")
                .src(ip("10.200.0.1"))
        })
        .collect();
    let t = Instant::now();
    for res in h.upsert_many(&bad, None) {
        assert_eq!(res.unwrap_err().errno(), Some(libc::EINVAL));
    }
    assert_eq!(
        h.upsert(&bad[0], None).unwrap_err().errno(),
        Some(libc::EINVAL)
    );
    // Ten tries 100 ms apart per route would take 5.4 s.
    assert!(t.elapsed().as_millis() < 2000, "{:?}", t.elapsed());
}

#[test]
fn reupsert_in_a_table_no_rule_reaches_changes_nothing() {
    require_privileges!();
    let ns = world("enitable");
    let h = handle(&ns);
    // An ENI-style table: only a `from <pod IP>` rule leads there.
    h.replace_rule(
        &Rule::new(Family::V4)
            .priority(30)
            .from(net("10.0.0.44/32"))
            .table(92),
    )
    .unwrap();
    let routes: Vec<Route> = (0..300u32)
        .map(|i| {
            Route::host(ip(&format!("10.90.{}.{}", i / 250, i % 250 + 1)))
                .via(ip("10.1.0.254"))
                .dev("eth1")
                .table(92)
        })
        .collect();
    assert!(h
        .upsert_many(&routes, None)
        .iter()
        .all(|r| matches!(r, Ok(true))));
    assert!(h
        .upsert_many(&routes, None)
        .iter()
        .all(|r| matches!(r, Ok(false))));
    // One changed route among them is found and replaced.
    let mut changed = routes.clone();
    changed[150] = changed[150].clone().mtu(1400);
    let res = h.upsert_many(&changed, None);
    assert!(matches!(res[150], Ok(true)));
    assert_eq!(res.iter().filter(|r| matches!(r, Ok(true))).count(), 1);
    assert_eq!(h.lookup(&changed[150]).unwrap().unwrap().mtu, Some(1400));
}

#[test]
fn ipv6_ecmp_upsert_is_idempotent_and_lookup_keeps_the_configured_order() {
    require_privileges!();
    let ns = world("ecmp6");
    let h = handle(&ns);
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&format!(
            "route add fd10:{i:x}::/64 nexthop via fd00::2 dev eth0 nexthop via fd01::2 dev eth1 weight 2\n"
        ));
    }
    ns.ip_batch(&batch);
    for i in 0..20 {
        let want = Route::new(net(&format!("fd10:{i:x}::/64"))).nexthops(vec![
            NextHop::new("eth0").via(ip("fd00::2")),
            NextHop::new("eth1").via(ip("fd01::2")).weight(2),
        ]);
        let seen = h.lookup(&want).unwrap().expect("present");
        let devs: Vec<_> = seen.multipath.iter().map(|p| p.device.clone()).collect();
        assert_eq!(
            devs,
            [Some("eth0".to_string()), Some("eth1".to_string())],
            "{}: the order of ip route show",
            want.prefix
        );
        // As configured, as lookup returns it, and in the other order.
        let mut reversed = want.clone();
        reversed.multipath.reverse();
        let mut seen_req = seen.clone();
        seen_req.flags = Default::default();
        for r in [&want, &seen_req, &reversed] {
            assert!(
                !h.upsert(r, None).unwrap(),
                "{r}: replaced although the same"
            );
        }
    }
    let listed = ns.ip_lines(&["-6", "route", "show"]);
    assert_eq!(listed.iter().filter(|l| l.starts_with("fd10:")).count(), 20);
}

#[test]
fn delete_and_upsert_leave_routes_of_another_metric_or_protocol_alone() {
    require_privileges!();
    let ns = world("daemonroutes");
    let h = handle(&ns);
    // A daemon's routes: metric 32, proto bird.
    add_daemon_route(&ns, "10.60.0.0/24 via 10.0.0.2 dev eth0");
    add_daemon_route(&ns, "fd60::/64 via fd00::2 dev eth0");
    let before = ip_routes_all(&ns);
    for (p, gw) in [("10.60.0.0/24", "10.0.0.2"), ("fd60::/64", "fd00::2")] {
        let plain = Route::new(net(p)).via(ip(gw)).dev("eth0");
        // No metric means the family default: not the daemon's, both families.
        assert!(h.delete(&plain).unwrap_err().is_not_found(), "{plain}");
        assert!(h.delete_many(std::slice::from_ref(&plain))[0]
            .as_ref()
            .unwrap_err()
            .is_not_found());
        // The right metric but not the right protocol.
        let metric = plain.clone().metric(32);
        assert!(h.delete(&metric).unwrap_err().is_not_found(), "{metric}");
        // Upsert of the same identity by another owner: refused.
        let e = h.upsert(&metric, None).unwrap_err();
        assert!(
            matches!(e, Error::Conflict { proto, .. } if proto == Protocol(12)),
            "{e}"
        );
        assert_set_eq(&ip_routes_all(&ns), &before, "the daemon's routes stay");
    }
    // Of the caller's own protocol, only the metric differs: still left
    // alone (the kernel's IPv4 delete reads metric 0 as "any").
    for (p, gw) in [("10.61.0.0/24", "10.0.0.2"), ("fd61::/64", "fd00::2")] {
        let fam = if p.contains(':') { "-6" } else { "-4" };
        ns.ip(&[
            fam, "route", "add", p, "via", gw, "dev", "eth0", "metric", "32",
        ]);
        let plain = Route::new(net(p)).via(ip(gw)).dev("eth0");
        assert!(h.delete(&plain).unwrap_err().is_not_found(), "{plain}");
        let res = h.delete_many(std::slice::from_ref(&plain));
        assert!(res[0].as_ref().unwrap_err().is_not_found(), "{plain}");
        assert!(
            h.lookup(&plain.clone().metric(32)).unwrap().is_some(),
            "{plain}"
        );
        h.delete(&plain.metric(32)).unwrap();
    }
    // Described exactly, it goes; taken over explicitly, it is replaced.
    let bird4 = Route::new(net("10.60.0.0/24"))
        .via(ip("10.0.0.2"))
        .dev("eth0")
        .metric(32)
        .proto(Protocol(12));
    h.delete(&bird4).unwrap();
    let mine6 = Route::new(net("fd60::/64"))
        .via(ip("fd00::2"))
        .dev("eth0")
        .metric(32);
    assert!(h.upsert_take_over(&mine6, None).unwrap());
    assert_eq!(h.lookup(&mine6).unwrap().unwrap().proto, Protocol::BOOT);
    // The metric-0 IPv4 route of the same prefix is the one a plain
    // delete means.
    ip_text(&ns, "route add 10.60.0.0/24 dev eth1 metric 32 proto bird");
    ns.ip(&["route", "add", "10.60.0.0/24", "dev", "eth1"]);
    h.delete(&Route::new(net("10.60.0.0/24")).dev("eth1"))
        .unwrap();
    let left = ns.ip(&["route", "show", "10.60.0.0/24"]);
    assert_eq!(
        left.trim(),
        "10.60.0.0/24 dev eth1 proto bird scope link metric 32"
    );
    assert_eq!(
        h.list(&RouteFilter::default().table(MAIN_TABLE).family(Family::V4))
            .unwrap()
            .iter()
            .filter(|r| r.prefix == net("10.60.0.0/24"))
            .count(),
        1
    );
}
