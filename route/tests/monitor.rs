//! Privileged tests of change notifications (issue #14): a `Monitor` in a
//! netns of the test's own sees routes, rules, links and addresses change,
//! decoded as `list` decodes them, notices lost notifications, and a
//! `Keeper` re-installs what someone else removed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use podnet_route::{
    Address, Event, Family, Keeper, Monitor, NextHop, Route, RouteFilter, Rule, ShowStyle, Topics,
};
use testsupport::require_privileges;

/// Receives events until `want` accepts one, for at most 5 s; panics with
/// everything seen otherwise.
fn wait_for(mon: &mut Monitor, what: &str, mut want: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match mon.recv_timeout(left).expect("receive") {
            Some(ev) if want(&ev) => return ev,
            Some(ev) => seen.push(ev.to_string()),
            None => break,
        }
    }
    panic!("no event {what} within 5 s; seen: {seen:#?}");
}

/// Stops an `ip monitor` and returns the lines it printed.
fn printed(mut ipmon: std::process::Child) -> Vec<String> {
    let _ = ipmon.kill();
    let out = ipmon.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn route_events_decode_as_list_does_and_print_as_ip_monitor() {
    require_privileges!();
    let ns = world("monroute");
    let h = handle(&ns);
    let mut mon = h.subscribe(Topics::ROUTES).unwrap();
    assert_eq!(mon.topics(), Topics::ROUTES);
    // `ip monitor route` in the same netns, as the reference text.
    let ipmon = ns.spawn("ip", &["monitor", "route"]);
    std::thread::sleep(Duration::from_millis(200));
    let routes = [
        "10.70.0.0/24 via 10.0.0.2 dev eth0 proto static mtu 1400 table 300",
        "10.71.0.0/24 nexthop via 10.0.0.2 dev eth0 weight 1 nexthop via 10.1.0.2 dev eth1 weight 2",
        "fd70::/64 via fd00::2 dev eth0 metric 7 src fd00::1",
        "fd71::/64 nexthop via fd00::2 dev eth0 weight 1 nexthop via fd01::2 dev eth1 weight 1",
        "blackhole 10.72.0.0/24",
    ];
    let mut texts = Vec::new();
    for text in routes {
        let r: Route = text.parse().unwrap();
        assert!(h.upsert(&r, None).unwrap(), "{r}");
        let ev = wait_for(
            &mut mon,
            &format!("NewRoute {}", r.prefix),
            |e| matches!(e, Event::NewRoute(x) if x.prefix == r.prefix),
        );
        let listed = h
            .list(&RouteFilter::default().table(r.table))
            .unwrap()
            .into_iter()
            .find(|x| x.prefix == r.prefix)
            .expect("listed");
        assert_eq!(ev.route(), Some(&listed), "the event's route is list's");
        texts.push(ev.to_string());
    }
    for text in routes {
        let r: Route = text.parse().unwrap();
        h.delete(&r).unwrap();
        let ev = wait_for(
            &mut mon,
            &format!("DelRoute {}", r.prefix),
            |e| matches!(e, Event::DelRoute(x) if x.prefix == r.prefix),
        );
        assert!(ev.is_removal());
        texts.push(ev.to_string());
    }
    // Nothing else is due: a non-blocking read finds nothing, a timed one
    // waits about as long as asked.
    while mon.try_recv().unwrap().is_some() {}
    assert!(mon.try_recv().unwrap().is_none());
    let t = Instant::now();
    assert!(mon
        .recv_timeout(Duration::from_millis(150))
        .unwrap()
        .is_none());
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(mon.lost(), 0);
    // Every line we printed is a line (or the lines of one multipath
    // route) `ip monitor route` printed.
    std::thread::sleep(Duration::from_millis(200));
    let theirs = printed(ipmon);
    for t in &texts {
        let lines: Vec<&str> = t.lines().collect();
        let found = theirs
            .windows(lines.len())
            .any(|w| w.iter().zip(&lines).all(|(a, b)| a == b));
        assert!(
            found,
            "{t:?} is not what ip monitor printed:\n{}",
            theirs.join("\n")
        );
    }
}

#[test]
fn rule_link_and_address_events() {
    require_privileges!();
    let ns = world("monother");
    let h = handle(&ns);
    let mut mon = Monitor::open_netns(ns.path(), Topics::ALL).unwrap();
    let rule = Rule::new(Family::V6)
        .priority(40)
        .from(net("fd00:40::/64"))
        .table(40);
    h.replace_rule(&rule).unwrap();
    let listed = h
        .list_rules(Some(Family::V6))
        .unwrap()
        .into_iter()
        .find(|r| r.priority == Some(40))
        .unwrap();
    let ev = wait_for(&mut mon, "NewRule", |e| matches!(e, Event::NewRule(_)));
    assert_eq!(ev, Event::NewRule(listed.clone()));
    assert_eq!(ev.to_string(), listed.show().to_string());
    h.delete_rule(&rule).unwrap();
    wait_for(&mut mon, "DelRule", |e| {
        *e == Event::DelRule(listed.clone())
    });

    ns.add_link("mon9");
    let ev = wait_for(
        &mut mon,
        "NewLink mon9",
        |e| matches!(e, Event::NewLink(l) if l.name == "mon9"),
    );
    let Event::NewLink(l) = ev else {
        unreachable!()
    };
    assert_eq!(l.index, h.link_index("mon9").unwrap());
    h.add_address(&Address::new(net("10.99.0.1/24"), "mon9"))
        .unwrap();
    let ev = wait_for(
        &mut mon,
        "NewAddress",
        |e| matches!(e, Event::NewAddress(a) if a.addr == net("10.99.0.1/24")),
    );
    let listed = h
        .addresses(Some("mon9"))
        .unwrap()
        .into_iter()
        .find(|a| a.addr == net("10.99.0.1/24"))
        .unwrap();
    assert_eq!(ev, Event::NewAddress(listed));
    // The kernel's own route for the address comes on the route topic.
    wait_for(
        &mut mon,
        "the address's prefix route",
        |e| matches!(e, Event::NewRoute(r) if r.prefix == net("10.99.0.0/24")),
    );
    h.add_address(&Address::new(net("fd99::1/64"), "mon9").nodad())
        .unwrap();
    wait_for(
        &mut mon,
        "the IPv6 prefix route",
        |e| matches!(e, Event::NewRoute(r) if r.prefix == net("fd99::/64")),
    );
    // Removing the link removes its routes (IPv6 says so, IPv4 does not),
    // and their events still name it.
    h.delete_link("mon9").unwrap();
    let (mut route_gone, mut link_gone) = (false, false);
    wait_for(
        &mut mon,
        "DelRoute fd99::/64 on mon9 and DelLink mon9",
        |e| {
            match e {
                Event::DelRoute(r) if r.prefix == net("fd99::/64") => {
                    assert_eq!(r.device.as_deref(), Some("mon9"), "{r:?}");
                    route_gone = true;
                }
                Event::DelLink(l) if l.name == "mon9" => link_gone = true,
                _ => {}
            }
            route_gone && link_gone
        },
    );
    // A link re-created under the same name is named by the new index.
    ns.add_link("mon9");
    let idx = h.link_index("mon9").unwrap();
    wait_for(
        &mut mon,
        "NewLink mon9 again",
        |e| matches!(e, Event::NewLink(l) if l.name == "mon9" && l.index == idx),
    );
    h.upsert(&"10.98.0.0/24 dev mon9".parse().unwrap(), None)
        .unwrap();
    wait_for(&mut mon, "a route on the new mon9", |e| {
        matches!(e, Event::NewRoute(r) if r.prefix == net("10.98.0.0/24")
            && r.device.as_deref() == Some("mon9"))
    });
}

#[test]
fn a_monitor_sees_only_its_own_netns_and_topics() {
    require_privileges!();
    let a = world("monns-a");
    let b = world("monns-b");
    let (ha, hb) = (handle(&a), handle(&b));
    let mut mon = ha.subscribe(Topics::ROUTES_V4).unwrap();
    hb.upsert(&"10.80.0.0/24 dev eth0".parse().unwrap(), None)
        .unwrap();
    // Another family and another object in our netns: not subscribed.
    ha.upsert(&"fd80::/64 dev eth0".parse().unwrap(), None)
        .unwrap();
    ha.replace_rule(&Rule::new(Family::V4).priority(50).table(50))
        .unwrap();
    ha.upsert(&"10.81.0.0/24 dev eth0".parse().unwrap(), None)
        .unwrap();
    let ev = wait_for(&mut mon, "NewRoute 10.81.0.0/24", |e| {
        matches!(e, Event::NewRoute(_))
    });
    assert_eq!(ev.route().unwrap().prefix, net("10.81.0.0/24"), "{ev}");
    assert!(mon.drain().unwrap().is_empty());
    assert!(mon.handle().lookup(ev.route().unwrap()).unwrap().is_some());
}

#[test]
fn lost_notifications_are_reported_and_a_keeper_resynchronizes() {
    require_privileges!();
    let ns = world("monlost");
    let h = handle(&ns);
    let mut mon = h.subscribe(Topics::ROUTES).unwrap();
    // The smallest buffer the kernel gives; nobody reads while 3,000
    // routes come and go.
    mon.set_receive_buffer(4096).unwrap();
    assert!(mon.receive_buffer() < 64 * 1024, "{}", mon.receive_buffer());
    let mine: Route = "10.90.0.0/24 via 10.0.0.2 dev eth0 proto static"
        .parse()
        .unwrap();
    let mine6: Route =
        "fd90::/64 nexthop via fd00::2 dev eth0 weight 1 nexthop via fd01::2 dev eth1 weight 1"
            .parse()
            .unwrap();
    let keeper = Keeper::new([mine.clone(), mine6.clone()]);
    for r in keeper.routes() {
        assert!(h.upsert(r, None).unwrap());
    }
    let noise: Vec<Route> = (0..3000u32)
        .map(|i| {
            Route::host(std::net::Ipv4Addr::from(0x0a5b_0000 + i).into())
                .via(ip("10.0.0.2"))
                .dev("eth0")
        })
        .collect();
    assert!(h.upsert_many(&noise, None).iter().all(|r| r.is_ok()));
    // Someone removes ours while notifications are being dropped.
    ns.ip(&["route", "del", "10.90.0.0/24"]);
    ns.ip(&["-6", "route", "del", "fd90::/64"]);
    assert!(h.delete_many(&noise).iter().all(|r| r.is_ok()));
    let mut saw_lost = false;
    let mut repaired = Vec::new();
    while let Some(ev) = mon.try_recv().unwrap() {
        saw_lost |= ev == Event::Lost;
        for (r, res) in keeper.repair(mon.handle(), &ev) {
            if res.unwrap() {
                repaired.push(r.prefix);
            }
        }
    }
    assert!(saw_lost, "a full buffer is reported as Event::Lost");
    assert!(mon.lost() >= 1);
    for r in [&mine, &mine6] {
        assert!(repaired.contains(&r.prefix), "{r} re-installed");
        let seen = h.lookup(r).unwrap().expect("back in place");
        assert!(!h.upsert(r, None).unwrap(), "{seen}: as wanted");
    }
    // With room again, the monitor keeps working.
    mon.set_receive_buffer(1 << 20).unwrap();
    h.delete(&mine).unwrap();
    let ev = wait_for(
        &mut mon,
        "DelRoute of ours",
        |e| matches!(e, Event::DelRoute(r) if r.prefix == mine.prefix),
    );
    let fixed = keeper.repair(mon.handle(), &ev);
    assert_eq!(fixed.len(), 1);
    assert!(matches!(fixed[0].1, Ok(true)));
}

#[test]
fn a_keeper_reinstalls_what_an_admin_removed_or_replaced() {
    require_privileges!();
    let ns = world("monkeep");
    let h = handle(&ns);
    let mut mon = h.subscribe(Topics::ROUTES).unwrap();
    let mine = Route::new(net("fd95::/64")).nexthops(vec![
        NextHop::new("eth0").via(ip("fd00::2")),
        NextHop::new("eth1").via(ip("fd01::2")),
    ]);
    let keeper = Keeper::new([mine.clone()]);
    assert!(h.upsert(&mine, None).unwrap());
    // The event of our own upsert: nothing to write.
    let ev = wait_for(&mut mon, "our own NewRoute", |e| e.route().is_some());
    assert!(keeper
        .repair(&h, &ev)
        .into_iter()
        .all(|(_, r)| matches!(r, Ok(false))));
    // An admin removes one path.
    ns.ip(&[
        "-6",
        "route",
        "del",
        "fd95::/64",
        "nexthop",
        "via",
        "fd00::2",
        "dev",
        "eth0",
    ]);
    let mut fixed = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fixed && Instant::now() < deadline {
        if let Some(ev) = mon.recv_timeout(Duration::from_millis(200)).unwrap() {
            fixed |= keeper
                .repair(&h, &ev)
                .into_iter()
                .any(|(_, r)| matches!(r, Ok(true)));
        }
    }
    assert!(fixed, "the route was re-installed");
    let seen = h.lookup(&mine).unwrap().expect("present");
    assert_eq!(
        seen.multipath.len(),
        2,
        "{}",
        seen.show(ShowStyle::OneTable)
    );
}

#[test]
fn a_keeper_reinstalls_ipv4_routes_the_kernel_dropped_with_a_link_down() {
    require_privileges!();
    let ns = world("monlinkdown");
    let h = handle(&ns);
    let mut mon = h.subscribe(Topics::ROUTES | Topics::LINKS).unwrap();
    let mine: Route = "10.96.0.0/24 via 10.1.0.2 dev eth1 proto static"
        .parse()
        .unwrap();
    let keeper = Keeper::new([mine.clone()]);
    assert!(h.upsert(&mine, None).unwrap());
    // Our own upsert's events are read before the link flaps.
    wait_for(
        &mut mon,
        "our own NewRoute",
        |e| matches!(e, Event::NewRoute(r) if r.prefix == mine.prefix),
    );
    std::thread::sleep(Duration::from_millis(100));
    mon.drain().unwrap();
    ns.ip(&["link", "set", "eth1", "down"]);
    ns.ip(&["link", "set", "eth1", "up"]);
    // The kernel says nothing about the IPv4 route it dropped.
    assert!(h.lookup(&mine).unwrap().is_none());
    let mut fixed = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fixed && Instant::now() < deadline {
        if let Some(ev) = mon.recv_timeout(Duration::from_millis(200)).unwrap() {
            assert!(
                !matches!(&ev, Event::DelRoute(r) if r.prefix == mine.prefix),
                "IPv4 announced the removal after all: {ev}"
            );
            fixed |= keeper
                .repair(&h, &ev)
                .into_iter()
                .any(|(_, r)| matches!(r, Ok(true)));
        }
    }
    assert!(fixed, "re-installed when eth1 came back up");
    assert!(h.lookup(&mine).unwrap().is_some());
}

#[test]
fn nexthop_object_events_and_a_keeper_brings_back_the_routes_on_one() {
    require_privileges!();
    let ns = world("monnh");
    let h = handle(&ns);
    let mut mon = h.subscribe(Topics::NEXTHOPS | Topics::ROUTES).unwrap();
    assert!(mon.topics().contains(Topics::NEXTHOPS));
    // A monitor of routes alone gets no nexthop event.
    let mut routes_only = h.subscribe(Topics::ROUTES).unwrap();
    let ipmon = ns.spawn("ip", &["monitor", "nexthop"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut texts = Vec::new();

    // A daemon's objects: a gateway, a second one and a group of both.
    ns.ip(&[
        "nexthop", "add", "id", "71", "via", "10.0.0.2", "dev", "eth0", "proto", "zebra",
    ]);
    ns.ip(&[
        "nexthop", "add", "id", "72", "via", "10.1.0.2", "dev", "eth1", "proto", "zebra",
    ]);
    ns.ip(&[
        "nexthop", "add", "id", "73", "group", "71/72,3", "proto", "zebra",
    ]);
    for id in [71, 72, 73] {
        let ev = wait_for(
            &mut mon,
            &format!("NewNexthop id {id}"),
            |e| matches!(e, Event::NewNexthop(n) if n.id == id),
        );
        let listed = h.nexthop(id).unwrap().expect("listed");
        assert_eq!(
            ev,
            Event::NewNexthop(listed.clone()),
            "as nexthop() reads it"
        );
        assert_eq!(ev.nexthop(), Some(&listed));
        assert!(h.nexthops().unwrap().contains(&listed));
        texts.push(ev.to_string());
    }

    // Our route on object 71, kept.
    let mine: Route = "10.74.0.0/24 nhid 71 proto static".parse().unwrap();
    let keeper = Keeper::new([mine.clone()]);
    assert!(h.upsert(&mine, None).unwrap());
    wait_for(
        &mut mon,
        "NewRoute of ours",
        |e| matches!(e, Event::NewRoute(r) if r.prefix == mine.prefix),
    );

    // Someone deletes object 71: the kernel takes our route with it, and
    // the monitor says which object went.
    let before = h.nexthop(71).unwrap().expect("present");
    ns.ip(&["nexthop", "del", "id", "71"]);
    let ev = wait_for(
        &mut mon,
        "DelNexthop id 71",
        |e| matches!(e, Event::DelNexthop(n) if n.id == 71),
    );
    assert_eq!(ev, Event::DelNexthop(before));
    assert!(ev.is_removal());
    texts.push(ev.to_string());
    assert!(h.lookup(&mine).unwrap().is_none(), "gone with its object");
    // The keeper names our route; it cannot come back without its object.
    let tried = keeper.repair(&h, &ev);
    assert_eq!(tried.len(), 1);
    assert_eq!(tried[0].0, &mine);
    assert!(tried[0].1.is_err(), "{:?}", tried[0].1);
    // The group lost its member: the kernel announces the group again.
    let ev = wait_for(
        &mut mon,
        "NewNexthop id 73 without 71",
        |e| matches!(e, Event::NewNexthop(n) if n.id == 73),
    );
    let group = ev.nexthop().unwrap();
    assert_eq!(group.group.len(), 1, "{group}");
    assert_eq!(group.group[0].id, 72, "{group}");
    assert_eq!(Some(group.clone()), h.nexthop(73).unwrap());
    texts.push(ev.to_string());

    // The object comes back: so does our route.
    ns.ip(&[
        "nexthop", "add", "id", "71", "via", "10.0.0.2", "dev", "eth0", "proto", "zebra",
    ]);
    let ev = wait_for(
        &mut mon,
        "NewNexthop id 71 again",
        |e| matches!(e, Event::NewNexthop(n) if n.id == 71),
    );
    let fixed = keeper.repair(&h, &ev);
    assert_eq!(fixed.len(), 1);
    assert!(matches!(fixed[0].1, Ok(true)), "{:?}", fixed[0].1);
    assert_eq!(
        h.lookup(&mine).unwrap().and_then(|r| r.nhid),
        Some(71),
        "back on its object"
    );

    // The group goes with `ip nexthop flush`-like deletes, one by one.
    ns.ip(&["nexthop", "del", "id", "73"]);
    let ev = wait_for(
        &mut mon,
        "DelNexthop id 73",
        |e| matches!(e, Event::DelNexthop(n) if n.id == 73),
    );
    texts.push(ev.to_string());

    // The objects of a device that goes down are flushed without an
    // event (as the README says): the link's event is the only word.
    ns.ip(&["link", "set", "eth1", "down"]);
    assert!(h.nexthop(72).unwrap().is_none(), "flushed with eth1");
    std::thread::sleep(Duration::from_millis(300));
    for ev in mon.drain().unwrap() {
        assert!(
            !matches!(&ev, Event::DelNexthop(n) if n.id == 72),
            "the kernel announced the flush after all: {ev}"
        );
    }

    std::thread::sleep(Duration::from_millis(200));
    for ev in routes_only.drain().unwrap() {
        assert!(ev.nexthop().is_none(), "not subscribed, yet: {ev}");
    }
    assert_eq!(mon.lost(), 0);
    // Every line printed is a line `ip monitor nexthop` printed.
    let theirs = printed(ipmon);
    for t in &texts {
        assert!(
            theirs.contains(t),
            "{t:?} is not what ip monitor nexthop printed:\n{}",
            theirs.join("\n")
        );
    }
}
