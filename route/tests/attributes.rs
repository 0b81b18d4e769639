//! Privileged: the route attributes and rule selectors of issue #14
//! (`realm`, `tos`, `onlink`, `pref`, `expires`, `advmss`, `initcwnd`,
//! `mtu lock`; `iif`, `oif`, `uidrange`, `ipproto`, `sport`, `dport`,
//! `tos`, `suppress_prefixlength`) round-trip through the kernel: upserted
//! from text, listed, printed as `ip` prints them, parsed back from `ip`'s
//! text and upserted again without a change. What the crate does not
//! model stays on a route an upsert replaces.

mod common;

use common::*;
use podnet_route::{Error, Family, Route, RouteFilter, Rule};
use testsupport::require_privileges;

/// `ip`'s lines, with the seconds of `expires Nsec` (the kernel counts
/// them down) replaced by `N`.
fn no_seconds(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| match l.find(" expires ") {
            Some(at) => {
                let rest = &l[at + 9..];
                let end = rest.find("sec").map_or(0, |e| e + 3);
                format!("{} expires Nsec{}", &l[..at], &rest[end..])
            }
            None => l,
        })
        .collect()
}

const ROUTES: &[&str] = &[
    "10.8.0.0/16 via 10.0.0.2 dev eth0 realm 5",
    "10.9.0.0/16 tos 0x10 via 10.0.0.2 dev eth0 realms 3/4 mtu lock 1300 advmss 1400 initcwnd 10",
    "10.10.0.0/16 via 10.99.0.1 dev eth0 onlink",
    "10.11.0.0/16 tos AF11 dev eth1 metric 7",
    "10.12.0.0/16 nexthop via 10.77.0.1 dev eth0 weight 1 onlink nexthop via 10.1.0.2 dev eth1 weight 2",
    "fd06::/64 via fd00::2 dev eth0 pref high expires 300",
    "fd07::/64 via fd00::2 dev eth0 metric 5 pref low advmss 1200",
];

#[test]
fn route_attributes_round_trip_through_the_kernel_and_ip_text() {
    require_privileges!();
    let ns = world("attrs");
    let h = handle(&ns);
    for text in ROUTES {
        let r: Route = text.parse().unwrap();
        assert_eq!(r.to_string().parse::<Route>().unwrap(), r, "{text}");
        assert!(h.upsert(&r, None).unwrap(), "first upsert of {text}");
        assert!(!h.upsert(&r, None).unwrap(), "second upsert of {text}");
    }
    for (fam, flag) in [(Family::V4, "-4"), (Family::V6, "-6")] {
        let listed = h
            .list(&RouteFilter::default().family(fam).table(254))
            .unwrap();
        let ip_lines = no_seconds(ns.ip_lines(&[flag, "route", "show"]));
        assert_eq!(no_seconds(shown(&listed)), ip_lines, "{flag}");
        // `ip`'s own text parses back to what was listed, and upserting it
        // (or the listed route) changes nothing.
        let text = ns.ip(&[flag, "route", "show"]);
        let mut joined = Vec::<String>::new();
        for l in text.lines() {
            if l.starts_with(char::is_whitespace) {
                if let Some(last) = joined.last_mut() {
                    last.push_str(l);
                }
            } else {
                joined.push(l.to_string());
            }
        }
        for (line, r) in joined.iter().zip(&listed) {
            let parsed: Route = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            let mut want = r.clone();
            if let (Some(_), Some(_)) = (want.expires, parsed.expires) {
                want.expires = parsed.expires;
            }
            // `ip route show` leaves out the table (main here).
            assert_eq!(parsed, want, "{line}");
            if r.proto != podnet_route::Protocol::KERNEL {
                assert!(!h.upsert(&parsed, None).unwrap(), "upsert of `{line}`");
                assert!(!h.upsert(r, None).unwrap(), "upsert of listed {r}");
            }
        }
    }
    // The metrics one at a time: a changed value is a change.
    let r: Route =
        "10.9.0.0/16 tos 0x10 via 10.0.0.2 dev eth0 realms 3/4 mtu 1300 advmss 1400 initcwnd 10"
            .parse()
            .unwrap();
    assert!(h.upsert(&r, None).unwrap(), "mtu no longer locked");
    assert!(!ns.ip(&["route", "show", "10.9.0.0/16"]).contains("lock"));
    let r = r.realm(4);
    assert!(h.upsert(&r, None).unwrap());
    assert!(ns
        .ip(&["route", "show", "10.9.0.0/16"])
        .contains("realm 4 "));
    // tos is part of the identity: another tos is another route.
    let other: Route = "10.9.0.0/16 via 10.0.0.2 dev eth0".parse().unwrap();
    assert!(h.upsert(&other, None).unwrap());
    assert_eq!(ns.ip_lines(&["route", "show", "10.9.0.0/16"]).len(), 2);
    h.delete(&other).unwrap();
    assert!(ns
        .ip(&["route", "show", "10.9.0.0/16"])
        .contains("tos 0x10"));
}

#[test]
fn what_is_not_modelled_survives_a_replace_or_refuses_it() {
    require_privileges!();
    let ns = world("keep");
    let h = handle(&ns);
    ip_text(
        &ns,
        "route add 10.20.0.0/16 via 10.0.0.2 dev eth0 hoplimit 10 window lock 2000 proto boot",
    );
    let r: Route = "10.20.0.0/16 via 10.0.0.2 dev eth0 mtu 1400"
        .parse()
        .unwrap();
    assert!(h.upsert(&r, None).unwrap());
    let now = ns.ip(&["route", "show", "10.20.0.0/16"]);
    for kept in ["mtu 1400", "window lock 2000", "hoplimit 10"] {
        assert!(now.contains(kept), "{kept} lost: {now}");
    }
    assert!(!h.upsert(&r, None).unwrap());
    // An IPv6 route's lifetime stays when the upsert sets none.
    ip_text(
        &ns,
        "-6 route add fd08::/64 via fd00::2 dev eth0 expires 600",
    );
    let r: Route = "fd08::/64 via fd00::2 dev eth0 mtu 1300".parse().unwrap();
    assert!(h.upsert(&r, None).unwrap());
    let now = ns.ip(&["-6", "route", "show", "fd08::/64"]);
    assert!(now.contains("expires") && now.contains("mtu 1300"), "{now}");
    assert!(!h.upsert(&r, None).unwrap());
    // An encapsulation on one path of a multipath route is not modelled:
    // the route is not replaced without it, and the error says so.
    ip_text(&ns, "route add 10.22.0.0/16 proto boot nexthop via 10.0.0.2 dev eth0 encap ip id 1 dst 10.9.9.9 nexthop via 10.1.0.2 dev eth1");
    let r: Route = "10.22.0.0/16 via 10.0.0.2 dev eth0".parse().unwrap();
    let e = h.upsert(&r, None).unwrap_err();
    assert!(matches!(e, Error::Unmodelled { .. }), "{e}");
    assert!(ns
        .ip(&["route", "show", "10.22.0.0/16"])
        .contains("encap ip id 1"));
}

/// A realm on each path of a multipath route (`RTA_FLOW` in each
/// `rtnexthop`, what bird's `krt_realm` sets on an ECMP route): upserted,
/// listed as `ip route show` prints it, parsed back from `ip`'s text, and
/// upserted again (as given, as listed, as parsed, with the paths in
/// another order) without a change; another realm on a path is a change.
#[test]
fn per_path_realms_round_trip_through_the_kernel_and_ip_text() {
    require_privileges!();
    let ns = world("prealm");
    let h = handle(&ns);
    let text = "10.23.0.0/16 proto static metric 32 mtu 1400 \
        nexthop via 10.0.0.2 realm 7 dev eth0 weight 1 \
        nexthop via 10.1.0.2 realms 3/4 dev eth1 weight 2";
    let r: Route = text.parse().unwrap();
    assert_eq!(r.multipath[0].realm, Some(7));
    assert_eq!(r.to_string().parse::<Route>().unwrap(), r);
    assert!(h.upsert(&r, None).unwrap(), "first upsert");
    assert!(!h.upsert(&r, None).unwrap(), "second upsert");
    let theirs = ns.ip_lines(&["route", "show", "10.23.0.0/16"]);
    assert_eq!(
        theirs,
        [
            "10.23.0.0/16 proto static metric 32 mtu 1400",
            "\tnexthop via 10.0.0.2 realm 7 dev eth0 weight 1",
            "\tnexthop via 10.1.0.2 realms 3/4 dev eth1 weight 2",
        ]
    );
    let listed: Vec<Route> = h
        .list(&RouteFilter::default().family(Family::V4).table(254))
        .unwrap()
        .into_iter()
        .filter(|l| l.prefix == r.prefix)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&r));
    assert_eq!(shown(&listed), theirs);
    assert!(
        !h.upsert(&listed[0], None).unwrap(),
        "upsert of the listed route"
    );
    let parsed: Route = theirs.concat().parse().unwrap();
    assert_eq!(parsed, r);
    assert!(!h.upsert(&parsed, None).unwrap(), "upsert of ip's text");
    let mut swapped = r.clone();
    swapped.multipath.reverse();
    assert!(!h.upsert(&swapped, None).unwrap(), "paths in another order");
    // Another realm on one path, or none, is a change.
    let mut other = r.clone();
    other.multipath[1] = podnet_route::NextHop::new("eth1")
        .via("10.1.0.2".parse().unwrap())
        .weight(2)
        .realm(8);
    assert!(h.upsert(&other, None).unwrap(), "another realm");
    let now = ns.ip(&["route", "show", "10.23.0.0/16"]);
    assert!(now.contains("via 10.1.0.2 realm 8 dev eth1"), "{now}");
    assert!(!h.upsert(&other, None).unwrap());
    other.multipath[0].realm = None;
    assert!(h.upsert(&other, None).unwrap(), "a realm removed");
    let now = ns.ip(&["route", "show", "10.23.0.0/16"]);
    assert!(now.contains("nexthop via 10.0.0.2 dev eth0"), "{now}");
}

const RULES: &[&str] = &[
    "priority 100 iif eth0 lookup 100",
    "priority 101 oif eth1 lookup 101",
    "priority 102 uidrange 100-200 lookup 102",
    "priority 103 from 10.0.0.0/8 ipproto tcp sport 1000-2000 dport 80 lookup 103",
    "priority 104 tos 0x10 fwmark 0x7 lookup 104 suppress_prefixlength 0",
    "priority 105 from fd00::/64 ipproto udp dport 53 lookup 105",
    "priority 106 from all lookup main suppress_prefixlength 0",
    "priority 107 not to fd01::/64 iif eth1 oif eth0 lookup 107",
];

#[test]
fn rule_selectors_round_trip_through_the_kernel_and_ip_text() {
    require_privileges!();
    let ns = world("rulesel");
    let h = handle(&ns);
    for text in RULES {
        let r: Rule = text.parse().unwrap();
        assert_eq!(r.to_string().parse::<Rule>().unwrap(), r, "{text}");
        assert!(h.replace_rule(&r).unwrap(), "first replace of {text}");
        assert!(!h.replace_rule(&r).unwrap(), "second replace of {text}");
    }
    for (fam, flag) in [(Family::V4, "-4"), (Family::V6, "-6")] {
        let listed = h.list_rules(Some(fam)).unwrap();
        let ours: Vec<String> = listed.iter().map(|r| r.show().to_string()).collect();
        assert_eq!(ours, ns.ip_lines(&[flag, "rule", "show"]), "{flag}");
        for (line, r) in ns.ip_lines(&[flag, "rule", "show"]).iter().zip(&listed) {
            // `PRIO:\t...` is `priority PRIO ...` as arguments.
            let (prio, rest) = line.split_once(":\t").unwrap();
            let args = format!("ip {flag} rule add priority {prio} {rest}");
            let mut parsed: Rule = args.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            // `ip rule show` does not print `proto kernel` (default rules).
            if r.protocol == podnet_route::Protocol::KERNEL {
                parsed = parsed.protocol(podnet_route::Protocol::KERNEL);
            }
            assert_eq!(&parsed, r, "{line}");
        }
    }
    // A rule that differs only in a selector is another rule, not a stale
    // variant: both stay.
    let a: Rule = "priority 110 iif eth0 lookup 110".parse().unwrap();
    let b: Rule = "priority 110 iif eth1 lookup 110".parse().unwrap();
    h.replace_rule(&a).unwrap();
    h.replace_rule(&b).unwrap();
    let at110 = ns
        .ip_lines(&["rule", "show"])
        .into_iter()
        .filter(|l| l.starts_with("110:"))
        .count();
    assert_eq!(at110, 2);
    h.delete_rule(&a).unwrap();
    assert!(h.delete_rule(&a).unwrap_err().is_not_found());
}
