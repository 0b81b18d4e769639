//! The three crates together, in namespaces each test creates and removes:
//! the native-routing demo's checks, the conntrack layout contract between
//! the datapath and the `conntrack` crate, and an agent restart that must not
//! disturb an established TCP connection.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use podnet::lab::{self, Lab, LabPlan};
use podnet_conntrack::{gc, ClockSource, CtMap, GcFilter, TupleFlags};
use podnet_datapath::{reason, AttachMode, CtTable, PolicyKey, TrafficDirection};
use testsupport::require_privileges;

fn started_lab(tag: &str) -> Lab {
    let mut lab = Lab::create(&LabPlan::two_nodes(tag), false).expect("topology");
    lab.install_routes().expect("routes");
    lab.start_datapath(AttachMode::Auto).expect("datapath");
    lab
}

#[test]
fn native_routing_demo_checks() {
    require_privileges!();
    let mut lab = Lab::create(&LabPlan::two_nodes("demo"), false).unwrap();
    let changed = lab.install_routes().unwrap();
    // cilium_host link route, local pod CIDR, remote pod CIDR and its
    // nexthop route... at least the layout's routes and one per pod.
    assert!(changed.iter().all(|c| *c >= 3), "{changed:?}");
    assert!(lab.verify_routes().unwrap() >= 10);
    assert_eq!(lab.install_routes().unwrap(), vec![0, 0], "idempotent");
    // The kernel agrees: `ip route` in node1 shows seed 003's lines.
    let ip_routes = lab.node("node1").unwrap().ns.ip(&["route", "show"]);
    for line in [
        "10.1.0.0/24 via 10.1.0.1 dev cilium_host src 10.1.0.1",
        "10.1.0.1 dev cilium_host scope link",
        "10.2.0.0/24 via 192.168.100.2 dev eth0",
        "10.1.0.10 dev lxc-pod1a",
    ] {
        assert!(ip_routes.contains(line), "missing `{line}` in\n{ip_routes}");
    }
    lab.start_datapath(AttachMode::Auto).unwrap();

    let node1 = lab.node("node1").unwrap();
    let (pod1a, pod1b, pod2a, pod2b) = (
        lab.pod("pod1a").unwrap(),
        lab.pod("pod1b").unwrap(),
        lab.pod("pod2a").unwrap(),
        lab.pod("pod2b").unwrap(),
    );
    assert_eq!(lab::ping(pod1a, pod1b.ip(), 2), 2, "same node");
    assert_eq!(lab::ping(pod1a, pod2a.ip(), 2), 2, "across nodes");
    assert_eq!(
        lab::ping(pod2b, pod1a.ip(), 2),
        2,
        "across nodes, skip-FIB side"
    );
    let node2_ip: IpAddr = "192.168.100.2".parse().unwrap();
    assert_eq!(lab::ping(pod1a, node2_ip, 2), 2, "pod to remote node");
    let server = lab::EchoServer::start(pod2b, 9000, 1).unwrap();
    let mut c = lab::connect(pod1b, server.addr()).unwrap();
    lab::echo_exchange(&mut c, 128 * 1024).unwrap();

    // Conntrack through the conntrack crate.
    let (tcp, any) = node1.ct_maps().unwrap();
    let client = c.local_addr().unwrap();
    let e = tcp
        .lookup_flow(
            client,
            server.addr(),
            podnet_conntrack::IPPROTO_TCP,
            podnet_conntrack::Direction::Egress,
        )
        .unwrap()
        .expect("egress TCP entry on node1");
    assert!(e.packets() > 10 && e.bytes() > 128 * 1024, "{e}");
    assert_eq!(e.src_sec_id(), pod1b.plan.identity);
    let dump = podnet_conntrack::dump_entries(&any).unwrap();
    assert!(
        dump.contains(&format!("ICMP OUT {}:", pod1a.ip())),
        "{dump}"
    );

    // Policy at the receiving pod, enforced by node2's datapath.
    let node2 = lab.node("node2").unwrap();
    let deny = PolicyKey::new(pod2a.plan.endpoint_id, TrafficDirection::Ingress)
        .identity(pod1a.plan.identity)
        .protocol(1);
    node2.dp().unwrap().deny(&deny).unwrap();
    assert_eq!(lab::ping(pod1a, pod2a.ip(), 2), 0, "denied by policy");
    assert!(
        node2
            .dp()
            .unwrap()
            .metric(reason::POLICY_DENY, TrafficDirection::Ingress)
            .unwrap()
            >= 2
    );
    assert_eq!(lab::ping(pod1b, pod2a.ip(), 1), 1, "other identities pass");

    // GC: a deleted pod's flows go, the rest stay.
    let mut f = GcFilter::new().match_ips(HashSet::from([pod1b.ip()]));
    let stats = gc(&tcp, &mut f).unwrap();
    assert!(stats.deleted_matched >= 1, "{stats}");
    assert!(tcp
        .lookup_flow(
            client,
            server.addr(),
            podnet_conntrack::IPPROTO_TCP,
            podnet_conntrack::Direction::Egress
        )
        .unwrap()
        .is_none());
    drop((c, server, tcp, any));
    lab.teardown().unwrap();
}

#[test]
fn datapath_entries_are_read_and_collected_by_conntrack() {
    require_privileges!();
    let lab = started_lab("ctc");
    let (pod1a, pod2a) = (lab.pod("pod1a").unwrap(), lab.pod("pod2a").unwrap());
    let server = lab::EchoServer::start(pod2a, 7000, 1).unwrap();
    let mut c = lab::connect(pod1a, server.addr()).unwrap();
    lab::echo_exchange(&mut c, 32 * 1024).unwrap();
    let client = c.local_addr().unwrap();
    drop(c);
    assert_eq!(lab::ping(pod1a, pod2a.ip(), 1), 1);

    for node in &lab.nodes {
        let dp = node.dp().unwrap();
        let paths = dp.ct_map_paths();
        // Opened by path, checked for type and sizes by the conntrack crate.
        let tcp = CtMap::open(&paths.tcp4).unwrap();
        let any = CtMap::open(&paths.any4).unwrap();
        assert_eq!(tcp.name(), "cilium_ct4_global");
        assert_eq!(any.name(), "cilium_ct_any4_global");
        // Both decoders, written independently, agree on every entry.
        for (table, map) in [(CtTable::Tcp, &tcp), (CtTable::Any, &any)] {
            let ours: Vec<_> = map.iter().unwrap().map(|r| r.unwrap()).collect();
            let theirs = dp.ct4_entries(table).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{}", map.name());
            assert!(!ours.is_empty(), "{} on {}", map.name(), node.plan.name);
            for (k, e) in &ours {
                let (dk, de) = theirs
                    .iter()
                    .find(|(dk, _)| {
                        IpAddr::from(dk.daddr) == k.daddr()
                            && IpAddr::from(dk.saddr) == k.saddr()
                            && u16::from_be(dk.dport) == k.dport()
                            && u16::from_be(dk.sport) == k.sport()
                            && dk.nexthdr == k.nexthdr()
                            && dk.flags == k.flags().bits()
                    })
                    .unwrap_or_else(|| panic!("{k} not seen by the datapath's decoder"));
                assert_eq!(dk.nexthdr, if table == CtTable::Tcp { 6 } else { 1 });
                assert_eq!(de.packets, e.packets());
                assert_eq!(de.bytes, e.bytes());
                assert_eq!(de.lifetime, e.lifetime());
                assert_eq!(de.flags, e.flags().bits());
                assert_eq!(de.src_sec_id, e.src_sec_id());
                assert_eq!(de.tx_flags_seen, e.tx_flags_seen());
                assert_eq!(de.rx_flags_seen, e.rx_flags_seen());
                assert_eq!(u16::from_be(de.rev_nat_index), e.rev_nat_index());
            }
        }
        // The TCP connection's key, as Cilium builds it, on the client's node.
        if node.plan.name == "node1" {
            let e = tcp
                .lookup_flow(
                    client,
                    server.addr(),
                    6,
                    podnet_conntrack::Direction::Egress,
                )
                .unwrap()
                .expect("egress entry for the connection");
            // Lifetimes are in the datapath's clock: monotonic seconds.
            let now = ClockSource::Monotonic.now().unwrap();
            assert!(
                e.lifetime() > now && e.lifetime() < now + 21_600 + 60,
                "{e} now={now}"
            );
            // Cilium's key for it: addresses reversed, TUPLE_F_OUT.
            let key = CtMap::flow_key(
                client,
                server.addr(),
                6,
                podnet_conntrack::Direction::Egress,
            )
            .unwrap();
            assert_eq!(key.daddr(), client.ip());
            assert_eq!(key.saddr(), server.addr().ip());
            assert_eq!(key.flags(), TupleFlags::OUT);
        }
        // Collected by conntrack as if an hour passed: every entry goes, and
        // the datapath sees the maps empty.
        let later = ClockSource::custom(move || {
            ClockSource::Monotonic
                .now()
                .unwrap_or(0)
                .saturating_add(30_000)
        });
        for map in [&tcp, &any] {
            let mut f = GcFilter::expired(&later).unwrap();
            let stats = gc(map, &mut f).unwrap();
            assert_eq!(stats.deleted_expired, stats.scanned, "{stats}");
            assert_eq!(map.count().unwrap(), 0);
        }
        assert!(dp.ct4_entries(CtTable::Tcp).unwrap().is_empty());
        assert!(dp.ct4_entries(CtTable::Any).unwrap().is_empty());
    }
    // New traffic creates new entries the datapath writes into the collected maps.
    assert_eq!(lab::ping(pod1a, pod2a.ip(), 1), 1);
    let (_, any) = lab.node("node1").unwrap().ct_maps().unwrap();
    assert!(any.count().unwrap() > 0);
    drop((server, any));
    lab.teardown().unwrap();
}

#[test]
fn agent_restart_keeps_established_tcp_and_conntrack() {
    require_privileges!();
    let mut lab = started_lab("restart");
    let server = lab::EchoServer::start(lab.pod("pod2a").unwrap(), 7100, 1).unwrap();
    let server_addr: SocketAddr = server.addr();
    let mut conn = lab::connect(lab.pod("pod1a").unwrap(), server_addr).unwrap();
    lab::echo_exchange(&mut conn, 64 * 1024).unwrap();
    let client = conn.local_addr().unwrap();
    let entry = |lab: &Lab| {
        let (tcp, _) = lab.node("node1").unwrap().ct_maps().unwrap();
        tcp.lookup_flow(client, server_addr, 6, podnet_conntrack::Direction::Egress)
            .unwrap()
            .expect("egress entry")
    };
    let before = entry(&lab);

    // The agent restarts: routes re-upserted (nothing changes), datapath
    // re-loaded over the pinned maps and re-attached, old instance dropped.
    assert_eq!(lab.install_routes().unwrap(), vec![0, 0]);
    lab.start_datapath(AttachMode::Auto).unwrap();
    assert_eq!(lab.node("node1").unwrap().dp().unwrap().attached(), 5);

    // Same connection, no reconnect: data still flows both ways.
    lab::echo_exchange(&mut conn, 64 * 1024).unwrap();
    let after = entry(&lab);
    assert!(
        after.packets() > before.packets() && after.bytes() > before.bytes(),
        "the same CT entry kept counting: before {before}, after {after}"
    );
    // The new instance enforces: a deny for a fresh flow is honoured.
    let (pod1a, pod2a) = (lab.pod("pod1a").unwrap(), lab.pod("pod2a").unwrap());
    let node2 = lab.node("node2").unwrap();
    node2
        .dp()
        .unwrap()
        .deny(
            &PolicyKey::new(pod2a.plan.endpoint_id, TrafficDirection::Ingress)
                .identity(pod1a.plan.identity)
                .protocol(1),
        )
        .unwrap();
    assert_eq!(lab::ping(pod1a, pod2a.ip(), 1), 0);
    drop((conn, server));
    lab.teardown().unwrap();
}
