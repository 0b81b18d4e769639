//! Privileged: `Route::show` / `Rule::show` of what `Handle` lists equals,
//! line for line, what the real `ip route show` / `ip rule show` print in
//! the same namespace (only trailing whitespace is normalised).

use std::net::IpAddr;

use podnet_route::{Family, Handle, Route, RouteFilter, Rule, ShowStyle, MAIN_TABLE};
use testsupport::{require_privileges, Netns};

/// `ip`'s lines without their trailing spaces.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_string()).collect()
}

fn ours_routes(routes: &[Route], style: ShowStyle) -> Vec<String> {
    lines(
        &routes
            .iter()
            .map(|r| r.show(style).to_string() + "\n")
            .collect::<String>(),
    )
}

fn ours_rules(rules: &[Rule]) -> Vec<String> {
    rules.iter().map(|r| r.show().to_string()).collect()
}

fn assert_lines(ours: Vec<String>, theirs: Vec<String>, what: &str) {
    assert!(!theirs.is_empty(), "{what}: ip printed nothing");
    assert_eq!(
        ours,
        theirs,
        "{what}\n--- ours:\n{}\n--- ip:\n{}",
        ours.join("\n"),
        theirs.join("\n")
    );
}

/// A namespace with two links and a varied set of routes and rules, all
/// installed by the real `ip`.
fn populated() -> Netns {
    let ns = Netns::new("show");
    ns.add_link("a0");
    ns.add_link("b0");
    // c0 is up but its peer is not: no carrier, so its routes are `linkdown`.
    ns.ip(&["link", "add", "c0", "type", "veth", "peer", "name", "c1"]);
    ns.ip(&["link", "set", "c0", "up"]);
    ns.ip_batch(
        "addr add 10.0.0.1/24 dev a0
addr add 10.30.0.1/24 dev c0
addr add fd30::1/64 dev c0 nodad
addr add 10.1.0.1/24 dev b0
addr add fd00::1/64 dev a0 nodad
addr add fd01::1/64 dev b0 nodad
route add 10.2.0.0/16 via 10.0.0.2 dev a0 proto static mtu 1400
route add 10.3.0.0/16 dev a0 scope link src 10.0.0.1 metric 5
route add 10.4.0.0/16 via 10.0.0.2 proto 77 table 300
route add 10.5.0.0/16 via 10.1.0.2 dev b0 proto kernel table 300 metric 12
route add blackhole 10.9.0.0/16 table 70000
route add unreachable 10.10.0.0/16
route add prohibit 10.11.0.0/16 metric 9
route add throw 10.12.0.0/16 table 300
route add 10.7.0.0/16 proto static nexthop via 10.0.0.2 dev a0 weight 1 nexthop via 10.1.0.2 dev b0 weight 3
route add 10.8.0.0/16 metric 3 table 4000 nexthop via 10.0.0.3 dev a0 nexthop dev b0 weight 256
route add local 10.20.0.1 dev lo
route add 10.21.0.0/16 dev a0 scope host
route add 10.23.0.0/24 dev b0 proto bird scope 200
route add default via 10.0.0.254 dev a0 proto dhcp
route add 10.22.0.5 dev a0 scope link table 92
route add 10.22.0.0/16 via 10.22.0.5 dev a0 table 92 src 10.0.0.1 mtu 9000
route add fd07::/64 nexthop via fd00::2 dev a0 weight 2 nexthop via fd01::2 dev b0
route add fd08::/64 via fd00::2 dev a0 metric 7 mtu 1300 proto static
route add blackhole fd09::/64 table 300
route add unreachable fd0b::/64 metric 2000
route add default via fd00::2 dev a0
route add fd0a::/64 dev a0 src fd00::1 table 1000 proto 250
route add fd0c::7 via fe80::1 dev b0 proto kernel
route add 10.31.0.0/16 via 10.30.0.2 dev c0 metric 4 mtu 1000
route add 10.32.0.0/16 via 10.5.0.2 dev b0 onlink
route add 10.33.0.0/16 nexthop via 10.30.0.2 dev c0 nexthop via 10.1.0.2 dev b0 weight 2
route add fd31::/64 via fd30::2 dev c0 pref high
route add fd32::/64 via fd00::2 dev a0 pref low
route add fd33::/64 nexthop via fd30::2 dev c0 nexthop via fd00::2 dev a0
rule add priority 20 to 192.168.105.44 lookup main
rule add priority 30 from 192.168.105.44 to 192.168.0.0/16 lookup 92
rule add priority 40 not from 10.0.0.0/8 lookup 300 proto static
rule add priority 41 fwmark 0/0xff lookup 70000 proto boot
rule add priority 42 fwmark 0xa00/0xf00 lookup local proto kernel
rule add priority 43 fwmark 7 blackhole proto 99
rule add priority 44 goto 100
rule add priority 45 to 10.0.0.0/8 unreachable
rule add priority 46 prohibit
rule add priority 47 nop
rule add priority 48 fwmark 0x1/0xffffffff table default
rule add priority 100 from 10.0.0.0/24 lookup 4000
rule add fwmark 0x5 lookup 5
",
    );
    // `ip -batch` takes no `-6` per line.
    for rule in [
        "priority 50 from fd00::/64 to fd01::5 lookup 300",
        "priority 51 not to fd00::/8 fwmark 0x10/0x10 lookup main proto 200",
        "priority 52 fwmark 0xffffffff/0xffff0000 lookup 1000",
    ] {
        let mut args = vec!["-6", "rule", "add"];
        args.extend(rule.split(' '));
        ns.ip(&args);
    }
    ns
}

fn list(h: &Handle, family: Option<Family>, table: Option<u32>) -> Vec<Route> {
    let mut f = RouteFilter::default();
    f.family = family;
    f.table = table;
    h.list(&f).expect("list routes")
}

#[test]
fn route_show_equals_ip_route_show() {
    require_privileges!();
    let ns = populated();
    let h = Handle::open_netns(ns.path()).expect("open handle in netns");

    // `ip route show` = the IPv4 main table, no table printed.
    let main4 = list(&h, Some(Family::V4), Some(MAIN_TABLE));
    assert_lines(
        ours_routes(&main4, ShowStyle::OneTable),
        lines(&ns.ip(&["route", "show"])),
        "ip route show",
    );
    let main6 = list(&h, Some(Family::V6), Some(MAIN_TABLE));
    assert_lines(
        ours_routes(&main6, ShowStyle::OneTable),
        lines(&ns.ip(&["-6", "route", "show"])),
        "ip -6 route show",
    );
    // One table other than main: still no table printed.
    for (fam, flag) in [(Family::V4, "-4"), (Family::V6, "-6")] {
        for table in ["300", "local", "92", "4000"] {
            let t = podnet_route::parse_table(table).unwrap();
            // An IPv6 table that was never created is an error for `ip`.
            let Ok(text) = ns.try_ip(&[flag, "route", "show", "table", table]) else {
                continue;
            };
            let theirs = lines(&text);
            if theirs.is_empty() {
                continue;
            }
            assert_lines(
                ours_routes(&list(&h, Some(fam), Some(t)), ShowStyle::OneTable),
                theirs,
                &format!("ip {flag} route show table {table}"),
            );
        }
    }
    // `ip route show table all`: both families, table printed unless main.
    let all = list(&h, None, None);
    assert_lines(
        ours_routes(&all, ShowStyle::TableAll),
        lines(&ns.ip(&["route", "show", "table", "all"])),
        "ip route show table all",
    );
    let all6 = list(&h, Some(Family::V6), None);
    assert_lines(
        ours_routes(&all6, ShowStyle::TableAll),
        lines(&ns.ip(&["-6", "route", "show", "table", "all"])),
        "ip -6 route show table all",
    );
    // Every shape above is really there (a test that cannot pass vacuously).
    let text = ours_routes(&all, ShowStyle::TableAll).join("\n");
    for needle in [
        "\tnexthop via 10.1.0.2 dev b0 weight 3",
        "\tnexthop dev b0 weight 256",
        "table 70000",
        "proto 77",
        "scope link",
        "scope host",
        "scope site",
        "proto bird",
        "throw 10.12.0.0/16 table 300",
        "table local",
        "mtu 9000",
        "metric 2000 pref medium",
        "multicast ff00::/8",
        "\tnexthop via fd01::2 dev b0 weight 1",
        "fd0a::/64 dev a0 table 1000 proto 250 src fd00::1 metric 1024 pref medium",
        "10.31.0.0/16 via 10.30.0.2 dev c0 metric 4 linkdown mtu 1000",
        "10.32.0.0/16 via 10.5.0.2 dev b0 onlink",
        "\tnexthop via 10.30.0.2 dev c0 weight 1 linkdown",
        "fd31::/64 via fd30::2 dev c0 metric 1024 linkdown pref high",
        "fd32::/64 via fd00::2 dev a0 metric 1024 pref low",
        "\tnexthop via fd30::2 dev c0 weight 1 linkdown",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
}

#[test]
fn rule_show_equals_ip_rule_show() {
    require_privileges!();
    let ns = populated();
    let h = Handle::open_netns(ns.path()).expect("open handle in netns");
    let v4 = h.list_rules(Some(Family::V4)).expect("list IPv4 rules");
    assert_lines(
        ours_rules(&v4),
        lines(&ns.ip(&["rule", "show"])),
        "ip rule show",
    );
    let v6 = h.list_rules(Some(Family::V6)).expect("list IPv6 rules");
    assert_lines(
        ours_rules(&v6),
        lines(&ns.ip(&["-6", "rule", "show"])),
        "ip -6 rule show",
    );
    let text = ours_rules(&v4).join("\n") + &ours_rules(&v6).join("\n");
    for needle in [
        "0:\tfrom all lookup local",
        "32766:\tfrom all lookup main",
        "20:\tfrom all to 192.168.105.44 lookup main",
        "40:\tnot from 10.0.0.0/8 lookup 300 proto static",
        "41:\tfrom all fwmark 0/0xff lookup 70000 proto boot",
        "43:\tfrom all fwmark 0x7 blackhole proto openr",
        "44:\tfrom all goto 100",
        "51:\tnot from all to fd00::/8 fwmark 0x10/0x10 lookup main proto 200",
        "52:\tfrom all fwmark 0xffffffff/0xffff0000 lookup 1000",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
}

#[test]
fn get_answer_prints_like_ip_route_get() {
    require_privileges!();
    let ns = populated();
    let h = Handle::open_netns(ns.path()).expect("open handle in netns");
    for dst in ["10.3.0.5", "10.0.0.1", "10.2.3.4", "10.7.1.1", "8.8.8.8"] {
        let answer = h.get(dst.parse::<IpAddr>().unwrap()).expect("ip route get");
        assert_ne!(answer.proto, podnet_route::Protocol::UNSPEC, "{answer:?}");
        assert!(!answer.to_string().contains("proto"), "{answer}");
        // `ip route get` prints `uid 0` and a `cache` line we do not model;
        // IPv4 metrics go on that `cache` line.
        let ip_text = ns.ip(&["route", "get", dst]);
        let first = ip_text.lines().next().unwrap_or_default();
        let theirs = first
            .trim_end()
            .strip_suffix(" uid 0")
            .unwrap_or_else(|| panic!("unexpected ip route get text {ip_text:?}"));
        let mut shown = answer.clone();
        shown.mtu = None;
        assert_eq!(
            shown.show(ShowStyle::TableAll).to_string(),
            theirs,
            "ip route get {dst}"
        );
    }
}
