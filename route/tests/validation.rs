//! One validation for text and builders (issue #14): the same route or
//! rule is accepted or refused alike by `FromStr`, the builders'
//! `validate` and `upsert` / `replace_rule`, refused ones with a typed
//! error before anything reaches the kernel.

mod common;

use common::*;
use podnet_route::{Error, Family, Handle, Nexthop, Route, Rule, Scope};
use testsupport::require_privileges;

fn invalid<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidInput { .. }))
}

/// (text, the same thing built) pairs that must be refused.
fn bad_routes() -> Vec<(&'static str, Route)> {
    vec![
        (
            "10.0.0.1/24 dev eth0",
            Route::new(net("10.0.0.1/24")).dev("eth0"),
        ),
        (
            "10.2.0.0/16 via fd00::2 dev eth0",
            Route::new(net("10.2.0.0/16"))
                .via(ip("fd00::2"))
                .dev("eth0"),
        ),
        (
            "10.2.0.0/16 dev eth0 table 0",
            Route::new(net("10.2.0.0/16")).dev("eth0").table(0),
        ),
        (
            "fd02::/64 dev eth0 tos 0x10",
            Route::new(net("fd02::/64")).dev("eth0").tos(0x10),
        ),
        (
            "fd02::/64 dev eth0 realm 3",
            Route::new(net("fd02::/64")).dev("eth0").realm(3),
        ),
        (
            "10.2.0.0/16 dev eth0 pref high",
            Route::new(net("10.2.0.0/16"))
                .dev("eth0")
                .pref(podnet_route::RoutePref::HIGH),
        ),
        (
            "10.2.0.0/16 dev eth0 expires 30",
            Route::new(net("10.2.0.0/16")).dev("eth0").expires(30),
        ),
        (
            "10.2.0.0/16 dev eth0 onlink",
            Route::new(net("10.2.0.0/16")).dev("eth0").onlink(),
        ),
        ("10.2.0.0/16 nhid 0", Route::new(net("10.2.0.0/16")).nhid(0)),
        (
            "unreachable fd02::/64 pref low",
            Route::new(net("fd02::/64"))
                .kind(podnet_route::RouteType::UNREACHABLE)
                .pref(podnet_route::RoutePref::LOW),
        ),
        (
            "10.2.0.0/16 realm 3 nexthop via 10.0.0.2 dev eth0",
            Route::new(net("10.2.0.0/16"))
                .realm(3)
                .nexthops(vec![podnet_route::NextHop::new("eth0").via(ip("10.0.0.2"))]),
        ),
        (
            "fd02::/64 nexthop via fd00::2 realm 3 dev eth0",
            Route::new(net("fd02::/64")).nexthops(vec![podnet_route::NextHop::new("eth0")
                .via(ip("fd00::2"))
                .realm(3)]),
        ),
        (
            "10.2.0.0/16 nexthop via 10.0.0.2 realm 0 dev eth0",
            Route::new(net("10.2.0.0/16")).nexthops(vec![podnet_route::NextHop::new("eth0")
                .via(ip("10.0.0.2"))
                .realm(0)]),
        ),
        (
            "10.2.0.0/16 nhid 1 realm 3",
            Route::new(net("10.2.0.0/16")).nhid(1).realm(3),
        ),
    ]
}

#[test]
fn text_and_builders_are_refused_alike() {
    for (text, built) in bad_routes() {
        assert!(invalid(text.parse::<Route>()), "parse {text:?}");
        assert!(
            invalid(built.validate(podnet_route::Op::Upsert)),
            "{built:?}"
        );
    }
    // Refused by the parser only because text can say it: a word twice,
    // and an address of the other family than -4/-6 says.
    for text in [
        "10.2.0.0/16 dev eth0 dev eth1",
        "10.2.0.0/16 via 10.0.0.2 via 10.0.0.3 dev eth0",
        "10.2.0.0/16 nexthop via 10.0.0.2 dev eth0 dev eth1",
        "ip -6 route add 10.2.0.0/16 dev eth0",
        "ip -4 route add default via fd00::1 dev eth0",
        "10.2.0.0/16 dev eth0 hoplimit 3",
        "10.2.0.0/16 dev eth0 linkdown",
    ] {
        assert!(invalid(text.parse::<Route>()), "parse {text:?}");
    }
    // The family comes from the addresses where `ip` takes it from them.
    let r: Route = "default via fd00::fe dev eth0 table 77".parse().unwrap();
    assert_eq!(r.prefix, net("::/0"));
    let n: Nexthop = "id 1 via fd00::2 dev eth0".parse().unwrap();
    assert_eq!(n.family, Family::V6);
    // A device alone is scope link, built or parsed, as with `ip`; a
    // gateway makes it global again.
    let built = Route::new(net("10.2.0.0/16")).dev("eth0");
    assert_eq!(built.scope, Scope::LINK);
    assert_eq!(built, "10.2.0.0/16 dev eth0".parse().unwrap());
    let built = built.via(ip("10.0.0.2"));
    assert_eq!(built.scope, Scope::UNIVERSE);
    assert_eq!(built, "10.2.0.0/16 dev eth0 via 10.0.0.2".parse().unwrap());

    // Rules: an empty rule, a prefix of the other family, host bits.
    assert!(invalid("".parse::<Rule>()));
    assert!(invalid(
        Rule::new(Family::V4).validate(podnet_route::Op::ReplaceRule)
    ));
    let mixed = Rule::new(Family::V4)
        .priority(10)
        .from(net("fd00::/64"))
        .table(5);
    assert_eq!(mixed.family, Family::V4);
    assert!(invalid(mixed.validate(podnet_route::Op::ReplaceRule)));
    assert!(invalid(
        "ip -4 rule add priority 10 from fd00::/64 lookup 5".parse::<Rule>()
    ));
    assert!(invalid(
        "priority 10 from 10.0.0.1/8 lookup 5".parse::<Rule>()
    ));
    assert!(invalid(
        Rule::new(Family::V4)
            .priority(10)
            .from(net("10.0.0.1/8"))
            .validate(podnet_route::Op::ReplaceRule)
    ));
    assert!(invalid(
        "priority 10 from all lookup 5 l3mdev".parse::<Rule>()
    ));
    // Nexthop objects too.
    assert!(invalid("id 1 via 10.0.0.2".parse::<Nexthop>()));
    assert!(invalid("id 1 group 2,0".parse::<Nexthop>()));
}

#[test]
fn upsert_refuses_the_same_before_the_kernel_is_touched() {
    require_privileges!();
    let ns = world("valid");
    let h = Handle::open_netns(ns.path()).unwrap();
    let before = ns.ip(&["route", "show", "table", "all"]);
    for (text, built) in bad_routes() {
        assert!(invalid(h.upsert(&built, None)), "upsert of {text:?}");
        assert!(invalid(h.upsert_many(&[built], None).remove(0)));
    }
    let mixed = Rule::new(Family::V4)
        .priority(10)
        .from(net("fd00::/64"))
        .table(5);
    assert!(invalid(h.replace_rule(&mixed)));
    assert!(invalid(h.replace_rule(&Rule::new(Family::V6))));
    assert_eq!(before, ns.ip(&["route", "show", "table", "all"]));
    assert!(!ns.ip(&["-6", "rule", "show"]).contains("lookup 5"));
    // What the text says and what the builder says is the same kernel
    // route: upserting one after the other changes nothing.
    let built = Route::new(net("10.2.0.0/16")).dev("eth0");
    assert!(h.upsert(&built, None).unwrap());
    let parsed: Route = "10.2.0.0/16 dev eth0".parse().unwrap();
    assert!(!h.upsert(&parsed, None).unwrap());
    assert_eq!(
        ns.ip_lines(&["route", "show", "10.2.0.0/16"]),
        ["10.2.0.0/16 dev eth0 scope link"]
    );
}
