//! Privileged, differential against `ip` (issue #14): a few hundred routes,
//! rules and nexthop objects generated from a fixed seed, as text, are
//! installed by the real `ip` in one namespace and by this crate (parsed,
//! then `add_nexthop`, `upsert_many`, `replace_rule`) in another one with
//! the same links. The two kernels must then agree: `ip -d -j route/rule/
//! nexthop show` of both namespaces is the same JSON, `list` of both is
//! the same, `list`'s `show()` text is `ip route show`'s, and upserting
//! everything again (in either namespace) changes nothing.

mod common;

use common::*;
use podnet_route::{Family, Handle, Nexthop, Route, RouteFilter, Rule, ShowStyle};
use serde_json::Value;
use testsupport::{require_privileges, Netns};

const SEED: u64 = 0x5eed_0014;
const ROUTES: usize = 300;
const RULES: usize = 120;

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const NEXTHOPS: &[&str] = &[
    "nexthop add id 1 via 10.0.0.2 dev eth0",
    "nexthop add id 2 via 10.1.0.2 dev eth1 proto zebra",
    "nexthop add id 3 group 1/2,3",
    "nexthop add id 4 via fd00::2 dev eth0",
    "nexthop add id 5 dev eth1",
    "nexthop add id 6 via 10.99.0.1 dev eth0 onlink",
];

/// One generated route as `ip route add` arguments.
fn route_text(rng: &mut Rng, i: usize) -> String {
    let v6 = rng.chance(35);
    let prefix = if v6 {
        format!("fd{:02x}:{:x}::/64", 0x10 + i / 256, i % 256)
    } else {
        format!("10.{}.{}.0/24", 2 + i / 256, i % 256)
    };
    let mut t;
    // `nexthop ...` groups come last, as `ip` wants them.
    let mut tail = String::new();
    let shape = rng.below(100);
    let (dev, gw) = if rng.chance(50) {
        ("eth0", if v6 { "fd00::" } else { "10.0.0." })
    } else {
        ("eth1", if v6 { "fd01::" } else { "10.1.0." })
    };
    let gateway = format!("{gw}{}", 2 + rng.below(6));
    let mut can_mtu = true;
    match shape {
        0..=39 => t = format!("{prefix} via {gateway} dev {dev}"),
        40..=54 => {
            t = format!("{prefix} dev {dev}");
            if !v6 && rng.chance(40) {
                t.push_str(&format!(" src {gw}1"));
            }
        }
        55..=64 => {
            let kind = rng.pick(&["blackhole", "unreachable", "prohibit"]);
            t = format!("{kind} {prefix}");
            can_mtu = false;
        }
        65..=74 => {
            let (a, b) = if v6 {
                ("fd00::", "fd01::")
            } else {
                ("10.0.0.", "10.1.0.")
            };
            t = prefix.clone();
            tail = format!(
                " nexthop via {a}{} dev eth0 weight {} nexthop via {b}{} dev eth1 weight {}",
                2 + rng.below(6),
                1 + rng.below(4),
                2 + rng.below(6),
                1 + rng.below(4)
            );
        }
        75..=84 if !v6 => t = format!("{prefix} via 10.99.{}.1 dev {dev} onlink", rng.below(9)),
        _ => {
            let id = if v6 {
                "4"
            } else {
                rng.pick(&["1", "2", "3", "5", "6"])
            };
            t = format!("{prefix} nhid {id}");
        }
    }
    if !v6 && rng.chance(15) {
        t.push_str(rng.pick(&[" tos 0x10", " tos 0x8", " tos AF11"]));
    }
    let table = rng.pick(&["", "", " table 100", " table 300", " table 70000"]);
    t.push_str(table);
    t.push_str(rng.pick(&["", "", " proto static", " proto bgp", " proto 77"]));
    t.push_str(rng.pick(&["", "", " metric 5", " metric 20", " metric 1024"]));
    if !v6 && !t.contains("nhid") && tail.is_empty() && rng.chance(15) {
        t.push_str(rng.pick(&[" realm 5", " realms 3/4", " realm 9"]));
    }
    if can_mtu && rng.chance(25) {
        t.push_str(rng.pick(&[" mtu 1400", " mtu lock 1300", " mtu 1280"]));
    }
    if can_mtu && rng.chance(15) {
        t.push_str(rng.pick(&[" advmss 1200", " initcwnd 10", " advmss 1300 initcwnd 20"]));
    }
    if v6 && can_mtu && rng.chance(20) {
        t.push_str(rng.pick(&[" pref high", " pref low", " pref medium"]));
    }
    t + &tail
}

/// One generated rule as `ip rule add` arguments (each has a priority of
/// its own and an address that gives its family).
fn rule_text(rng: &mut Rng, i: usize) -> String {
    let v6 = rng.chance(30);
    let mut t = format!("priority {}", 1000 + i);
    if rng.chance(15) {
        t.push_str(" not");
    }
    let (from, to) = if v6 {
        (
            format!("fd{:02x}::/48", rng.below(200)),
            format!("fd{:02x}:{:x}::/64", rng.below(200), rng.below(300)),
        )
    } else {
        (
            format!("10.{}.0.0/16", rng.below(200)),
            format!("10.{}.{}.0/24", rng.below(200), rng.below(250)),
        )
    };
    match rng.below(3) {
        0 => t.push_str(&format!(" from {from}")),
        1 => t.push_str(&format!(" to {to}")),
        _ => t.push_str(&format!(" from {from} to {to}")),
    }
    if rng.chance(15) {
        // IPv4 rules take the TOS bits only; IPv6 rules any traffic class.
        t.push_str(if v6 {
            rng.pick(&[" tos 0x10", " tos AF11"])
        } else {
            rng.pick(&[" tos 0x10", " tos 0x8"])
        });
    }
    if rng.chance(20) {
        t.push_str(rng.pick(&[" fwmark 0x7", " fwmark 0x100/0xf00", " fwmark 0x0/0xff"]));
    }
    if rng.chance(20) {
        t.push_str(rng.pick(&[" iif eth0", " iif eth1", " iif lo"]));
    }
    if rng.chance(15) {
        t.push_str(rng.pick(&[" oif eth0", " oif eth1"]));
    }
    if rng.chance(15) {
        t.push_str(rng.pick(&[" uidrange 100-200", " uidrange 0-0", " uidrange 1000-65535"]));
    }
    if rng.chance(25) {
        t.push_str(rng.pick(&[" ipproto tcp", " ipproto udp"]));
        t.push_str(rng.pick(&[
            "",
            " dport 80",
            " sport 1000-2000",
            " sport 53 dport 1024-65000",
        ]));
    } else if rng.chance(5) {
        t.push_str(" ipproto icmp");
    }
    match rng.below(10) {
        0 => t.push_str(" blackhole"),
        1 => t.push_str(" unreachable"),
        2 => t.push_str(" prohibit"),
        _ => {
            t.push_str(rng.pick(&[
                " lookup 100",
                " lookup 300",
                " lookup main",
                " lookup 70000",
            ]));
            if rng.chance(15) {
                t.push_str(rng.pick(&[" suppress_prefixlength 0", " suppress_prefixlength 16"]));
            }
        }
    }
    t.push_str(rng.pick(&["", "", " proto static", " proto 77"]));
    t
}

/// The scope-link routes to the gateways that the crate's upsert adds
/// (Cilium's nexthop routes), as `ip` commands: the first route through a
/// (table, gateway, device) gives its protocol.
fn nexthop_routes(routes: &[Route]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in routes {
        if let Some(nh) = r.nexthop_route() {
            if seen.insert((nh.table, nh.prefix, nh.device.clone())) {
                out.push(format!("route replace {nh}"));
            }
        }
    }
    out
}

/// `ip -d -j OBJECT show` of one family without what differs between two
/// namespaces by nature (the link-local addresses, table local) or by
/// time (`expires`).
fn ip_json(ns: &Netns, family: &str, object: &[&str]) -> Value {
    let mut args = vec![family, "-d", "-j"];
    args.extend_from_slice(object);
    let out = ns.ip(&args);
    let v: Value = serde_json::from_str(&out).unwrap();
    let keep = |e: &Value| {
        let dst = e.get("dst").and_then(Value::as_str).unwrap_or("");
        e.get("table").and_then(Value::as_str) != Some("local")
            && !dst.starts_with("fe80")
            && !dst.starts_with("ff00")
    };
    Value::Array(
        v.as_array()
            .unwrap()
            .iter()
            .filter(|e| keep(e))
            .cloned()
            .collect(),
    )
}

fn listed(h: &Handle) -> Vec<Route> {
    h.list(&RouteFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.table != podnet_route::LOCAL_TABLE && !r.prefix.to_string().starts_with("fe80")
        })
        .collect()
}

/// `ip route show table all`'s lines, without table local and link-local
/// routes (one entry per route: multipath lines joined).
fn ip_show_lines(ns: &Netns, family: &str) -> Vec<String> {
    let mut joined: Vec<String> = Vec::new();
    for l in ns.ip_lines(&[family, "route", "show", "table", "all"]) {
        if l.starts_with(char::is_whitespace) {
            if let Some(last) = joined.last_mut() {
                last.push('\n');
                last.push_str(&l);
            }
        } else {
            joined.push(l);
        }
    }
    joined
        .into_iter()
        .filter(|l| {
            !l.contains(" table local")
                && !l.starts_with("fe80")
                && !l.starts_with("multicast ff00")
        })
        .collect()
}

#[test]
fn generated_routes_rules_and_nexthops_agree_with_ip() {
    require_privileges!();
    let mut rng = Rng(SEED);
    let route_texts: Vec<String> = (0..ROUTES).map(|i| route_text(&mut rng, i)).collect();
    let rule_texts: Vec<String> = (0..RULES).map(|i| rule_text(&mut rng, i)).collect();

    // Every text parses, and prints back to a text that parses to the same.
    let routes: Vec<Route> = route_texts
        .iter()
        .map(|t| t.parse().unwrap_or_else(|e| panic!("{t}: {e}")))
        .collect();
    for (t, r) in route_texts.iter().zip(&routes) {
        assert_eq!(&r.to_string().parse::<Route>().unwrap(), r, "{t}");
    }
    let rules: Vec<Rule> = rule_texts
        .iter()
        .map(|t| t.parse().unwrap_or_else(|e| panic!("{t}: {e}")))
        .collect();
    for (t, r) in rule_texts.iter().zip(&rules) {
        assert_eq!(&r.to_string().parse::<Rule>().unwrap(), r, "{t}");
    }

    // Namespace A: `ip`, one command at a time (`ip -batch` of iproute2
    // 6.1 reuses a cached protocol or dsfield name of an earlier line),
    // with the nexthop routes the crate's upsert adds. `ip rule` does not
    // take the family from the addresses (the crate does): IPv6 rules get
    // `-6`.
    let a = world("diff-ip");
    let mut cmds: Vec<String> = NEXTHOPS.iter().map(|s| s.to_string()).collect();
    cmds.extend(nexthop_routes(&routes));
    cmds.extend(route_texts.iter().map(|t| format!("route add {t}")));
    for (t, r) in rule_texts.iter().zip(&rules) {
        let six = if r.family == Family::V6 { "-6 " } else { "" };
        cmds.push(format!("{six}rule add {t}"));
    }
    for c in &cmds {
        let args: Vec<&str> = c.split_whitespace().collect();
        a.try_ip(&args).unwrap_or_else(|e| panic!("{c}: {e}"));
    }

    // Namespace B: this crate, from the same text.
    let b = world("diff-crate");
    let hb = Handle::open_netns(b.path()).unwrap();
    for t in NEXTHOPS {
        let n: Nexthop = t.parse().unwrap();
        hb.add_nexthop(&n).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    for (res, t) in hb.upsert_many(&routes, None).into_iter().zip(&route_texts) {
        assert!(
            res.unwrap_or_else(|e| panic!("{t}: {e}")),
            "{t} changed nothing"
        );
    }
    for (r, t) in rules.iter().zip(&rule_texts) {
        assert!(hb.replace_rule(r).unwrap_or_else(|e| panic!("{t}: {e}")));
    }

    // The kernels agree, as `ip -j` shows them.
    for fam in ["-4", "-6"] {
        for obj in [
            &["route", "show", "table", "all"][..],
            &["rule", "show"][..],
        ] {
            let (ja, jb) = (ip_json(&a, fam, obj), ip_json(&b, fam, obj));
            if ja != jb {
                let (va, vb) = (ja.as_array().unwrap(), jb.as_array().unwrap());
                let only_a: Vec<_> = va.iter().filter(|x| !vb.contains(x)).collect();
                let only_b: Vec<_> = vb.iter().filter(|x| !va.contains(x)).collect();
                panic!("ip {fam} {obj:?}: only by ip: {only_a:#?}\nonly by the crate: {only_b:#?}");
            }
        }
    }
    assert_eq!(
        a.ip(&["-d", "-j", "nexthop", "show"]),
        b.ip(&["-d", "-j", "nexthop", "show"])
    );

    // And through `list`: the same routes, rules and objects in both,
    // printed as `ip` prints them.
    let ha = Handle::open_netns(a.path()).unwrap();
    let (la, lb) = (listed(&ha), listed(&hb));
    assert_set_eq(&la, &lb, "list: ip's namespace vs the crate's");
    for (fam, flag) in [(Family::V4, "-4"), (Family::V6, "-6")] {
        let ours: Vec<String> = la
            .iter()
            .filter(|r| Family::of(&r.prefix) == fam)
            .map(|r| r.show(ShowStyle::TableAll).to_string())
            .filter(|l| !l.starts_with("multicast ff00"))
            .collect();
        let theirs = ip_show_lines(&a, flag);
        let mut o = ours.clone();
        let mut t = theirs.clone();
        o.sort();
        t.sort();
        assert_eq!(o, t, "show() of list vs ip {flag} route show table all");
        let ra = ha.list_rules(Some(fam)).unwrap();
        assert_eq!(ra, hb.list_rules(Some(fam)).unwrap(), "rules {flag}");
        let shown: Vec<String> = ra.iter().map(|r| r.show().to_string()).collect();
        assert_eq!(
            shown,
            a.ip_lines(&[flag, "rule", "show"]),
            "rule show {flag}"
        );
    }
    assert_eq!(ha.nexthops().unwrap(), hb.nexthops().unwrap());

    // Upserting everything again changes nothing, in either namespace: what
    // `ip` installed is exactly what the crate would have.
    for (h, who) in [(&ha, "ip's"), (&hb, "the crate's")] {
        for ((res, t), r) in h
            .upsert_many(&routes, None)
            .into_iter()
            .zip(&route_texts)
            .zip(&routes)
        {
            assert!(
                !res.unwrap_or_else(|e| panic!("{who} {t}: {e}\n{r:?}\n{:?}", h.lookup(r))),
                "{t} changed in {who}"
            );
        }
        for (r, t) in rules.iter().zip(&rule_texts) {
            assert!(!h.replace_rule(r).unwrap(), "{t} changed in {who}");
        }
    }
    // Deleting every generated route leaves only the nexthop routes.
    for (res, t) in hb.delete_many(&routes).into_iter().zip(&route_texts) {
        res.unwrap_or_else(|e| panic!("delete {t}: {e}"));
    }
    let left = listed(&hb).len();
    assert_eq!(left, listed(&ha).len() - routes.len());
}
