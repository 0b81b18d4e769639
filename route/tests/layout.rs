//! Privileged tests of the ENI and native-routing layouts.

mod common;

use common::*;
use podnet_route::layout::{EniEndpoint, Layout, NativeRouting};
use podnet_route::{GetOptions, Handle, Route, RouteFilter, Rule};
use testsupport::{require_privileges, Netns};

fn node(tag: &str, v6: bool) -> (Netns, Handle) {
    let ns = Netns::new(tag);
    ns.exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.accept_dad=0"]);
    ns.exec_ok("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
    ns.add_link("eth0");
    ns.add_link("cilium_host");
    if v6 {
        ns.ip(&["addr", "add", "fd10::11/64", "dev", "eth0", "nodad"]);
        ns.ip(&[
            "addr",
            "add",
            "fd00:0:0:1::1/128",
            "dev",
            "cilium_host",
            "nodad",
        ]);
    } else {
        ns.ip(&["addr", "add", "192.168.1.11/24", "dev", "eth0"]);
        ns.ip(&["addr", "add", "10.0.0.161/32", "dev", "cilium_host"]);
    }
    let h = Handle::open_netns(ns.path()).unwrap();
    (ns, h)
}

fn contains_all(ns: &Netns, routes: &[Route], v6: bool) -> bool {
    let theirs = ip_routes(ns, v6);
    routes.iter().all(|r| {
        let mut want = r.clone();
        if v6 && want.priority.is_none() {
            want.priority = Some(1024);
        }
        theirs.contains(&want)
    })
}

#[test]
fn native_routing_installs_and_removes_as_a_unit() {
    require_privileges!();
    for v6 in [false, true] {
        let (ns, h) = node(if v6 { "native6" } else { "native4" }, v6);
        let n = if v6 {
            NativeRouting::new(ip("fd00:0:0:1::1"), net("fd00:0:0:1::/64"), "eth0")
                .remote(net("fd00:0:0:2::/64"), ip("fd10::12"))
                .remote(net("fd00:0:0:3::/64"), ip("fd10::13"))
        } else {
            NativeRouting::new(ip("10.0.0.161"), net("10.0.0.0/24"), "eth0")
                .remote(net("10.0.1.0/24"), ip("192.168.1.12"))
                .remote(net("10.0.2.0/24"), ip("192.168.1.13"))
        };
        let before = ip_routes_all(&ns);
        assert!(n.install(&h).unwrap());
        assert!(!n.install(&h).unwrap(), "second install changes nothing");
        let routes = n.layout().routes;
        assert!(contains_all(&ns, &routes, v6), "ip shows every route");
        for r in &routes {
            assert!(h.lookup(r).unwrap().is_some(), "{r}");
        }
        // The kernel uses them: a remote pod goes via its node.
        let dst = if v6 {
            ip("fd00:0:0:3::9")
        } else {
            ip("10.0.2.9")
        };
        let got = h.get(dst).unwrap();
        assert_eq!(
            got.nexthop,
            Some(if v6 {
                ip("fd10::13")
            } else {
                ip("192.168.1.13")
            })
        );
        n.remove(&h).unwrap();
        n.remove(&h).unwrap();
        assert_set_eq(&ip_routes_all(&ns), &before, "removed as a unit");
    }
}

#[test]
fn failed_install_leaves_nothing_behind() {
    require_privileges!();
    let (ns, h) = node("unit", false);
    // A route already there with other contents is restored on failure.
    let existing = Route::new(net("10.0.1.0/24"))
        .via(ip("192.168.1.99"))
        .dev("eth0");
    h.upsert(&existing, None).unwrap();
    let before = ip_routes_all(&ns);
    let mut l: Layout = NativeRouting::new(ip("10.0.0.161"), net("10.0.0.0/24"), "eth0")
        .remote(net("10.0.1.0/24"), ip("192.168.1.12"))
        .layout();
    l.rules.push(
        Rule::new(podnet_route::Family::V4)
            .priority(5)
            .to(net("10.0.1.0/24"))
            .table(77),
    );
    l.routes.push(
        Route::new(net("10.0.9.0/24"))
            .via(ip("192.168.1.12"))
            .dev("nosuch9"),
    );
    let e = l.install(&h).unwrap_err();
    assert!(
        matches!(e, podnet_route::Error::UnknownDevice { .. }),
        "{e}"
    );
    assert_set_eq(
        &ip_routes_all(&ns),
        &before,
        "routes after a failed install",
    );
    assert!(h
        .list_rules(None)
        .unwrap()
        .iter()
        .all(|r| r.priority != Some(5)));
}

#[test]
fn eni_endpoints_share_their_eni_table() {
    require_privileges!();
    let ns = Netns::new("eni");
    for d in ["eth2", "lxc1", "lxc2"] {
        ns.add_link(d);
    }
    ns.ip(&["addr", "add", "192.168.0.10/16", "dev", "eth2"]);
    let h = Handle::open_netns(ns.path()).unwrap();
    let ep = |pod: &str, lxc: &str| {
        EniEndpoint::new(ip(pod), lxc, "eth2", 92, ip("192.168.0.1"))
            .vpc_cidr(net("192.168.0.0/16"))
            .vpc_cidr(net("172.16.0.0/12"))
            .mtu(9001)
    };
    let a = ep("192.168.105.44", "lxc1");
    let b = ep("192.168.105.45", "lxc2");
    let rules_before = ip_rules_all(&ns);
    assert!(a.install(&h).unwrap());
    assert!(b.install(&h).unwrap());
    assert!(!a.install(&h).unwrap());
    let rules = ip_rules(&ns, false);
    for ep in [&a, &b] {
        for r in ep.layout().rules {
            assert_eq!(rules.iter().filter(|k| **k == r).count(), 1, "{r}");
        }
        assert!(contains_all(&ns, &ep.layout().routes, false));
    }
    // Egress from a pod to the VPC resolves through the ENI table, ingress
    // to a pod through main to its lxc device: what the kernel does with a
    // packet, asked like `ip route get ... from ... iif ...`.
    assert_eq!(h.list(&RouteFilter::default().table(92)).unwrap().len(), 2);
    ns.exec_ok("sysctl", &["-qw", "net.ipv4.conf.all.forwarding=1"]);
    let egress = h
        .get_with(
            ip("192.168.7.7"),
            &GetOptions::new().from(ip("192.168.105.44")).iif("lxc1"),
        )
        .unwrap();
    assert_eq!(egress.table, 92);
    assert_eq!(
        (egress.nexthop, egress.device.as_deref()),
        (Some(ip("192.168.0.1")), Some("eth2"))
    );
    let outside = h
        .get_with(
            ip("8.8.8.8"),
            &GetOptions::new().from(ip("192.168.105.44")).iif("lxc1"),
        )
        .unwrap_err();
    assert!(
        outside.errno().is_some(),
        "not in a VPC CIDR: main has no route: {outside}"
    );
    let ingress = h
        .get_with(
            ip("192.168.105.45"),
            &GetOptions::new().from(ip("192.168.9.9")).iif("eth2"),
        )
        .unwrap();
    assert_eq!(ingress.device.as_deref(), Some("lxc2"));
    a.remove(&h).unwrap();
    assert_eq!(
        h.list(&RouteFilter::default().table(92)).unwrap().len(),
        2,
        "b still uses table 92"
    );
    assert!(h.lookup(&a.layout().routes[2]).unwrap().is_none());
    b.remove(&h).unwrap();
    assert!(h
        .list(&RouteFilter::default().table(92))
        .unwrap()
        .is_empty());
    assert_set_eq(&ip_rules_all(&ns), &rules_before, "rules after removal");
}
