//! Service connections' conntrack entries as the `conntrack` crate reads
//! them: the `TUPLE_F_SERVICE` entries dump in Cilium's `SVC` form, and GC
//! collects them with their flows (a deleted pod's entries, then expiry).

use std::collections::HashSet;
use std::net::SocketAddr;

use podnet::lab::{self, Lab, LabPlan};
use podnet_conntrack::{gc, ClockSource, GcFilter};
use podnet_datapath::{AttachMode, Backend, L4Protocol, Service};
use testsupport::require_privileges;

#[test]
fn service_entries_dump_as_svc_and_go_with_their_flows() {
    require_privileges!();
    let mut lab = Lab::create(&LabPlan::two_nodes("svcct"), false).expect("topology");
    lab.install_routes().expect("routes");
    lab.start_datapath(AttachMode::Auto).expect("datapath");
    let (pod1a, pod1b, pod2a) = (
        lab.pod("pod1a").unwrap(),
        lab.pod("pod1b").unwrap(),
        lab.pod("pod2a").unwrap(),
    );
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let node1 = lab.node("node1").unwrap();
    node1
        .dp()
        .unwrap()
        .upsert_service(
            &Service::new(1, vip, L4Protocol::Tcp)
                .backend(Backend::new(SocketAddr::new(pod1b.ip(), 9090)))
                .backend(Backend::new(SocketAddr::new(pod2a.ip(), 9090))),
        )
        .unwrap();
    const CONNS: usize = 8;
    let servers = [
        lab::EchoServer::start(pod1b, 9090, CONNS).unwrap(),
        lab::EchoServer::start(pod2a, 9090, CONNS).unwrap(),
    ];
    let mut ports = HashSet::new();
    for _ in 0..CONNS {
        let mut c = lab::connect(pod1a, vip).unwrap();
        lab::echo_exchange(&mut c, 1024).unwrap();
        ports.insert(c.local_addr().unwrap().port());
    }
    drop(servers);

    let (tcp, _any) = node1.ct_maps().unwrap();
    let dump = podnet_conntrack::dump_entries(&tcp).unwrap();
    // `TCP SVC <client>:<port> -> <frontend>:<port> ...` (Cilium's CtKey4
    // form for TUPLE_F_SERVICE), one per connection.
    let svc: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("TCP SVC ") && l.contains(" -> 10.96.0.10:80 "))
        .collect();
    assert_eq!(svc.len(), CONNS, "{dump}");
    let seen: HashSet<u16> = svc
        .iter()
        .map(|l| {
            let client = l.split(' ').nth(2).unwrap();
            assert!(client.starts_with(&format!("{}:", pod1a.ip())), "{l}");
            client.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(seen, ports, "one service entry per connection");
    // The flows themselves, to the backends, are there too.
    assert!(
        dump.lines().filter(|l| l.contains(":9090 ")).count() >= CONNS,
        "{dump}"
    );

    // The client pod deleted: GC by its address takes its service entries
    // with its flows.
    let mut f = GcFilter::new().match_ips([pod1a.ip()]);
    let stats = gc(&tcp, &mut f).unwrap();
    assert!(stats.deleted_matched >= 2 * CONNS, "{stats}");
    let after = podnet_conntrack::dump_entries(&tcp).unwrap();
    assert!(!after.contains(" SVC "), "{after}");
    assert!(!after.contains(&pod1a.ip().to_string()), "{after}");

    // New connections again; an hour later every entry is expired and goes,
    // the service entries too.
    node1
        .dp()
        .unwrap()
        .upsert_service(
            &Service::new(1, vip, L4Protocol::Tcp)
                .backend(Backend::new(SocketAddr::new(pod1b.ip(), 9091)))
                .backend(Backend::new(SocketAddr::new(pod2a.ip(), 9091))),
        )
        .unwrap();
    let servers = [
        lab::EchoServer::start(pod1b, 9091, CONNS).unwrap(),
        lab::EchoServer::start(pod2a, 9091, CONNS).unwrap(),
    ];
    for _ in 0..4 {
        let mut c = lab::connect(pod1a, vip).unwrap();
        lab::echo_exchange(&mut c, 1024).unwrap();
    }
    drop(servers);
    assert!(podnet_conntrack::dump_entries(&tcp)
        .unwrap()
        .contains(" SVC "));
    let later = ClockSource::custom(move || {
        ClockSource::Monotonic
            .now()
            .unwrap_or(0)
            .saturating_add(30_000)
    });
    let mut f = GcFilter::expired(&later).unwrap();
    gc(&tcp, &mut f).unwrap();
    assert_eq!(tcp.count().unwrap(), 0);
    drop(tcp);
    lab.teardown().unwrap();
}
