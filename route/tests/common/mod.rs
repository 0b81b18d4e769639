//! Helpers of the privileged tests: reading `ip -d -j` output into our own
//! types, so the kernel state can be compared with what `Handle` reports.
#![allow(dead_code)]

use std::net::IpAddr;

use podnet_route::{
    parse_table, Family, IpNet, NextHop, Protocol, Route, RouteFlags, RoutePref, Rule, RuleAction,
};
use serde_json::Value;
use testsupport::Netns;

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn prefix(v6: bool, dst: &str) -> IpNet {
    if dst == "default" {
        return if v6 {
            "::/0".parse().unwrap()
        } else {
            "0.0.0.0/0".parse().unwrap()
        };
    }
    dst.parse::<IpNet>()
        .unwrap_or_else(|_| IpNet::from(dst.parse::<IpAddr>().unwrap()))
}

/// The `flags` array of `ip -j` as our flags.
fn flags(v: &Value) -> RouteFlags {
    let mut bits = 0;
    for name in v
        .get("flags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        bits |= match name.as_str().unwrap() {
            "dead" => RouteFlags::DEAD.0,
            "onlink" => RouteFlags::ONLINK.0,
            "pervasive" => RouteFlags::PERVASIVE.0,
            "offload" => RouteFlags::OFFLOAD.0,
            "trap" => RouteFlags::TRAP.0,
            "notify" => RouteFlags::NOTIFY.0,
            "linkdown" => RouteFlags::LINKDOWN.0,
            "unresolved" => RouteFlags::UNRESOLVED.0,
            "rt_offload" => RouteFlags::RT_OFFLOAD.0,
            "rt_trap" => RouteFlags::RT_TRAP.0,
            "rt_offload_failed" => RouteFlags::RT_OFFLOAD_FAILED.0,
            other => panic!("unknown route flag {other:?} from ip -j"),
        };
    }
    RouteFlags(bits)
}

/// Every route `ip -d -j route show table all` prints, for one family.
pub fn ip_routes(ns: &Netns, v6: bool) -> Vec<Route> {
    let fam = if v6 { "-6" } else { "-4" };
    let out = ns.ip(&[fam, "-d", "-j", "route", "show", "table", "all"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut routes = Vec::new();
    for e in v.as_array().unwrap() {
        if s(e, "cache").is_some() {
            continue;
        }
        let mut r = Route::new(prefix(v6, s(e, "dst").unwrap()));
        r.kind = s(e, "type").unwrap_or("unicast").parse().unwrap();
        r.nexthop = s(e, "gateway").map(|g| g.parse().unwrap());
        r.device = s(e, "dev").map(str::to_string);
        r.table = parse_table(s(e, "table").unwrap_or("main")).unwrap();
        r.proto = s(e, "protocol").unwrap_or("boot").parse().unwrap();
        r.scope = s(e, "scope").unwrap_or("global").parse().unwrap();
        r.local = s(e, "prefsrc").map(|g| g.parse().unwrap());
        r.priority = e.get("metric").and_then(Value::as_u64).map(|m| m as u32);
        r.flags = flags(e);
        r.pref = match s(e, "pref") {
            None | Some("medium") => RoutePref::MEDIUM,
            Some("high") => RoutePref::HIGH,
            Some("low") => RoutePref::LOW,
            Some(p) => RoutePref(p.parse().unwrap()),
        };
        if let Some(hops) = e.get("nexthops").and_then(Value::as_array) {
            for n in hops {
                let mut h = NextHop::new("")
                    .weight(n.get("weight").and_then(Value::as_u64).unwrap_or(1) as u16);
                h.gateway = s(n, "gateway").map(|g| g.parse().unwrap());
                h.device = s(n, "dev").map(str::to_string);
                h.flags = flags(n);
                r.multipath.push(h);
            }
        }
        if let Some(ms) = e.get("metrics").and_then(Value::as_array) {
            for m in ms {
                if let Some(mtu) = m.get("mtu").and_then(Value::as_u64) {
                    r.mtu = Some(mtu as u32);
                }
            }
        }
        routes.push(r);
    }
    routes
}

/// Both families, sorted.
pub fn ip_routes_all(ns: &Netns) -> Vec<Route> {
    let mut v = ip_routes(ns, false);
    v.extend(ip_routes(ns, true));
    sort_routes(&mut v);
    v
}

pub fn sort_routes(v: &mut [Route]) {
    v.sort_by_key(|r| r.to_ip_command());
}

/// Every rule `ip -d -j rule show` prints, for one family.
pub fn ip_rules(ns: &Netns, v6: bool) -> Vec<Rule> {
    let fam = if v6 { "-6" } else { "-4" };
    let out = ns.ip(&[fam, "-d", "-j", "rule", "show"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut rules = Vec::new();
    for e in v.as_array().unwrap() {
        let mut r = Rule::new(if v6 { Family::V6 } else { Family::V4 });
        r.priority = e.get("priority").and_then(Value::as_u64).map(|p| p as u32);
        r.invert = e.get("not").is_some();
        let net = |k: &str, lk: &str| -> Option<IpNet> {
            let a = s(e, k)?;
            if a == "all" {
                return None;
            }
            let ip: IpAddr = a.parse().unwrap();
            let len = e
                .get(lk)
                .and_then(Value::as_u64)
                .map(|l| l as u8)
                .unwrap_or(if v6 { 128 } else { 32 });
            Some(IpNet::new(ip, len).unwrap())
        };
        r.from = net("src", "srclen");
        r.to = net("dst", "dstlen");
        let hex =
            |k: &str| s(e, k).map(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).unwrap());
        r.mark = hex("fwmark");
        r.mask = hex("fwmask").filter(|m| *m != u32::MAX);
        if r.mask.is_some() && r.mark.is_none() {
            r.mark = Some(0);
        }
        r.protocol = s(e, "protocol")
            .unwrap_or("unspec")
            .parse::<Protocol>()
            .unwrap();
        match s(e, "action") {
            Some("blackhole") => r.action = RuleAction::Blackhole,
            Some("unreachable") => r.action = RuleAction::Unreachable,
            Some("prohibit") => r.action = RuleAction::Prohibit,
            Some("nop") => r.action = RuleAction::Nop,
            _ => r.table = parse_table(s(e, "table").unwrap_or("main")).unwrap(),
        }
        if r.action != RuleAction::Lookup {
            r.table = 0;
        }
        rules.push(r);
    }
    rules
}

pub fn ip_rules_all(ns: &Netns) -> Vec<Rule> {
    let mut v = ip_rules(ns, false);
    v.extend(ip_rules(ns, true));
    sort_rules(&mut v);
    v
}

pub fn sort_rules(v: &mut [Rule]) {
    v.sort_by_key(|r| r.to_ip_command());
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A netns with `eth0` (10.0.0.1/24, fd00::1/64) and `eth1`
/// (10.1.0.1/24, fd01::1/64), both up, IPv6 DAD off.
pub fn world(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.accept_dad=0"]);
    ns.exec_ok("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
    for (dev, v4, v6) in [
        ("eth0", "10.0.0.1/24", "fd00::1/64"),
        ("eth1", "10.1.0.1/24", "fd01::1/64"),
    ] {
        ns.add_link(dev);
        ns.ip(&["addr", "add", v4, "dev", dev]);
        ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
    }
    settle(&ns);
    ns
}

/// Waits until the kernel's own routes (addresses, link-local) are in
/// place: two reads of the routing state 100 ms apart agree and hold the
/// local routes of both IPv6 addresses.
pub fn settle(ns: &Netns) {
    let mut last = String::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = ns.ip(&["-d", "-j", "route", "show", "table", "all"]);
        let now6 = ns.ip(&["-6", "-d", "-j", "route", "show", "table", "all"]);
        let now = now + &now6;
        if now == last && now.contains("fd00::1\"") && now.contains("fd01::1\"") {
            return;
        }
        last = now;
    }
}

/// Waits until the kernel has put the IPv6 link-local routes of `devs` in
/// place (they appear shortly after a link comes up).
pub fn wait_link_local(ns: &Netns, devs: &[&str]) {
    for _ in 0..100 {
        let out = ns.ip(&["-6", "route", "show", "table", "all"]);
        let ready = devs.iter().all(|d| {
            let dev = format!("dev {d} ");
            out.lines()
                .any(|l| l.starts_with("local fe80::") && l.contains(&dev))
                && out
                    .lines()
                    .any(|l| l.starts_with("fe80::/64") && l.contains(&dev))
        });
        if ready {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asserts two sets are equal, printing only the differences.
pub fn assert_set_eq<T: PartialEq + std::fmt::Display>(a: &[T], b: &[T], what: &str) {
    let only_a: Vec<String> = a
        .iter()
        .filter(|x| !b.contains(x))
        .map(|x| x.to_string())
        .collect();
    let only_b: Vec<String> = b
        .iter()
        .filter(|x| !a.contains(x))
        .map(|x| x.to_string())
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && a.len() == b.len(),
        "{what}: only in first: {only_a:#?}, only in second: {only_b:#?} ({} vs {} items)",
        a.len(),
        b.len()
    );
}

/// A handle in the test's netns.
pub fn handle(ns: &Netns) -> podnet_route::Handle {
    podnet_route::Handle::open_netns(ns.path()).expect("open handle in netns")
}

/// Runs `ip` in `ns` with the words of `text` (`"-6 route add fd60::/64
/// via fd00::2 dev eth0"`); returns what it printed.
pub fn ip_text(ns: &Netns, text: &str) -> String {
    ns.ip(&text.split_whitespace().collect::<Vec<_>>())
}

/// The protocol and metric a routing daemon's routes have in these tests
/// (bird's, above the kernel default): what a delete or upsert without a
/// metric must leave alone.
pub const DAEMON: &str = "proto bird metric 32";

/// Adds a routing daemon's route (`route` in `ip` words, then
/// [`DAEMON`]'s protocol and metric).
pub fn add_daemon_route(ns: &Netns, route: &str) {
    let fam = if route.contains(':') { "-6 " } else { "" };
    ip_text(ns, &format!("{fam}route add {route} {DAEMON}"));
}

/// The routes as `ip route show` prints them for one table, one line each.
pub fn shown(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| r.show(podnet_route::ShowStyle::OneTable).to_string())
        .collect::<Vec<_>>()
        .join("\n")
        .lines()
        .map(str::to_string)
        .collect()
}
