//! Privileged tests of links, addresses and neighbours against the real
//! kernel, each in its own netns, cross-checked with `ip -j`.

use podnet_route::{Address, Handle, MacAddr, Neighbour, OperState, Veth};
use serde_json::Value;
use testsupport::{require_privileges, Netns};

fn ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    serde_json::from_str(&ns.ip(&a)).expect("ip -j output is JSON")
}

#[test]
fn veth_with_peer_in_another_netns_named_there() {
    require_privileges!();
    let node = Netns::new("lnk-node");
    let pod = Netns::new("lnk-pod");
    let h = Handle::open_netns(node.path()).unwrap();
    let mac = MacAddr([0x0a, 0, 0, 0, 0, 0x11]);
    let peer_mac = MacAddr([0x0a, 0, 0, 0, 0, 0x22]);
    let idx = h
        .add_veth(
            &Veth::new("lxc1", "eth0")
                .peer_netns(pod.path())
                .mtu(1400)
                .mac(mac)
                .peer_mac(peer_mac),
        )
        .unwrap();
    // A second pair of the same name is refused, naming the link.
    let e = h
        .add_veth(&Veth::new("lxc1", "eth0").peer_netns(pod.path()))
        .unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(
        e.to_string().starts_with("add link veth lxc1 peer eth0"),
        "{e}"
    );

    let l = h.link("lxc1").unwrap().expect("host end exists");
    assert_eq!(l.index, idx);
    assert_eq!(l.kind.as_deref(), Some("veth"));
    assert_eq!(l.mac, Some(mac));
    assert_eq!(l.mtu, 1400);
    assert!(!l.up);
    assert_eq!(h.link_by_index(idx).unwrap().unwrap().name, "lxc1");
    let j = ip_json(&node, &["link", "show", "lxc1"]);
    assert_eq!(j[0]["ifindex"].as_u64(), Some(u64::from(idx)));
    assert_eq!(j[0]["address"].as_str(), Some("0a:00:00:00:00:11"));
    assert_eq!(j[0]["mtu"].as_u64(), Some(1400));

    let p = Handle::open_netns(pod.path()).unwrap();
    let e0 = p.link("eth0").unwrap().expect("peer is eth0 in the pod");
    assert_eq!(e0.mac, Some(peer_mac));
    assert_eq!(e0.peer_index, Some(idx));
    assert!(h.link("eth0").unwrap().is_none(), "no eth0 in the node");

    h.set_link_up("lxc1").unwrap();
    p.set_link_up("eth0").unwrap();
    h.set_link_mtu("lxc1", 1300).unwrap();
    let m2 = MacAddr([0x0a, 0, 0, 0, 0, 0x33]);
    h.set_link_mac("lxc1", m2).unwrap();
    let l = h.link("lxc1").unwrap().unwrap();
    assert!(l.up && l.lower_up, "{l}");
    assert_eq!(l.oper_state, OperState::Up);
    assert_eq!((l.mtu, l.mac), (1300, Some(m2)));
    let j = ip_json(&node, &["link", "show", "lxc1"]);
    assert_eq!(j[0]["operstate"].as_str(), Some("UP"));
    assert_eq!(j[0]["mtu"].as_u64(), Some(1300));
    let names: Vec<String> = h.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lo", "lxc1"]);

    let e = h.set_link_up("nope0").unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert!(e.to_string().starts_with("set link nope0 up: "), "{e}");

    h.delete_link("lxc1").unwrap();
    assert!(p.link("eth0").unwrap().is_none(), "the peer goes with it");
    assert!(!h.delete_link_if_present("lxc1").unwrap());
    assert_eq!(
        h.delete_link("lxc1").unwrap_err().errno(),
        Some(libc::ENODEV)
    );
}

#[test]
fn addresses_and_permanent_neighbours() {
    require_privileges!();
    let ns = Netns::new("lnk-addr");
    ns.add_link("d0");
    let h = Handle::open_netns(ns.path()).unwrap();
    let a = Address::new("10.9.0.10/32".parse().unwrap(), "d0");
    h.add_address(&a).unwrap();
    assert!(h.add_address(&a).unwrap_err().is_exists());
    let v6 = Address::new("fd00::10/128".parse().unwrap(), "d0");
    h.add_address(&v6).unwrap();
    let got = h.addresses(Some("d0")).unwrap();
    let texts: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert!(
        texts.contains(&"inet 10.9.0.10/32 scope global d0".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"inet6 fd00::10/128 scope global d0".to_string()),
        "{texts:?}"
    );
    let j = ip_json(&ns, &["-4", "address", "show", "dev", "d0"]);
    assert_eq!(j[0]["addr_info"][0]["local"].as_str(), Some("10.9.0.10"));
    assert_eq!(j[0]["addr_info"][0]["prefixlen"].as_u64(), Some(32));
    h.delete_address(&a).unwrap();
    assert!(h.delete_address(&a).is_err());
    assert!(!ns
        .ip(&["-j", "address", "show", "dev", "d0"])
        .contains("10.9.0.10"));
    assert!(h
        .addresses(Some("d0"))
        .unwrap()
        .iter()
        .all(|x| x.addr != a.addr));
    let e = h
        .add_address(&Address::new("10.9.0.11/32".parse().unwrap(), "nope0"))
        .unwrap_err();
    assert!(e.to_string().contains("nope0"), "{e}");

    let gw = Neighbour::permanent(
        "169.254.1.1".parse().unwrap(),
        MacAddr([0x0a, 0, 0, 0, 0, 1]),
        "d0",
    );
    h.replace_neighbour(&gw).unwrap();
    h.replace_neighbour(&gw).unwrap(); // idempotent
                                       // IPv6 may add entries of its own (multicast, DAD); only ours is IPv4.
    let got: Vec<_> = h
        .neighbours(Some("d0"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ip.is_ipv4())
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].to_string(),
        "169.254.1.1 dev d0 lladdr 0a:00:00:00:00:01 PERMANENT"
    );
    let j = ip_json(&ns, &["-4", "neigh", "show", "dev", "d0"]);
    assert_eq!(j[0]["dst"].as_str(), Some("169.254.1.1"));
    assert_eq!(j[0]["lladdr"].as_str(), Some("0a:00:00:00:00:01"));
    assert_eq!(j[0]["state"][0].as_str(), Some("PERMANENT"));
    h.delete_neighbour(&gw).unwrap();
    assert!(h.delete_neighbour(&gw).unwrap_err().is_not_found());
    assert!(h
        .neighbours(Some("d0"))
        .unwrap()
        .iter()
        .all(|n| n.ip != gw.ip));
}
