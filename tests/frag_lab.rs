//! Fragmented UDP in the two-node lab (issue #12): 8 KB datagrams over MTU
//! 1500, which the pods' stacks cut into six fragments each, pod to pod on
//! one node and across nodes (both directions: node 1 hands remote traffic
//! to the stack, node 2 forwards with skip-FIB), and pod to a ClusterIP
//! whose backend is on the same or the other node. Every datagram must come
//! back whole (the server checks it arrived whole and echoes it, itself
//! fragmented), a service's replies from its frontend; the datapath must
//! have seen the fragments (not reassembled datagrams) and dropped none.
//! And pod to the outside under masquerade (`podnet::lab_outside`): the
//! outside sees only the node addresses, its fragmented replies reach the
//! pods.

use std::net::{IpAddr, SocketAddr};

use podnet::lab::{Lab, LabPlan};
use podnet::lab_frag::{udp_exchange, UdpEchoServer};
use podnet::lab_outside::{self, seen_as, OUTSIDE_IP};
use podnet_datapath::{reason, AttachMode, Backend, L4Protocol, Service, TrafficDirection};
use testsupport::require_privileges;

const LEN: usize = 8000;
const COUNT: u32 = 20;

fn started_lab(tag: &str) -> Lab {
    let mut lab = Lab::create(&LabPlan::two_nodes(tag), false).expect("topology");
    lab.install_routes().expect("routes");
    lab.start_datapath(AttachMode::Auto).expect("datapath");
    lab
}

/// Fragments every node's datapath saw and the ones it dropped as unknown.
fn frag_counts(lab: &Lab) -> Vec<(u64, u64)> {
    lab.nodes
        .iter()
        .map(|n| {
            let dp = n.dp().unwrap();
            let seen: u64 = [TrafficDirection::Egress, TrafficDirection::Ingress]
                .iter()
                .map(|d| dp.metric(reason::FRAG_PACKET, *d).unwrap())
                .sum();
            let lost: u64 = [TrafficDirection::Egress, TrafficDirection::Ingress]
                .iter()
                .map(|d| dp.metric(reason::FRAG_NOT_FOUND, *d).unwrap())
                .sum();
            (seen, lost)
        })
        .collect()
}

#[test]
fn fragmented_udp_pod_to_pod() {
    require_privileges!();
    let lab = started_lab("fraglab");
    let s1b = UdpEchoServer::start(lab.pod("pod1b").unwrap(), 5301, LEN).unwrap();
    let s2a = UdpEchoServer::start(lab.pod("pod2a").unwrap(), 5301, LEN).unwrap();
    let pod1a = lab.pod("pod1a").unwrap();
    let pod2b = lab.pod("pod2b").unwrap();
    for (what, from, to) in [
        ("same node", pod1a, s1b.addr()),
        ("node 1 to node 2", pod1a, s2a.addr()),
        ("node 2 to node 1", pod2b, s1b.addr()),
        ("same node on node 2", pod2b, s2a.addr()),
    ] {
        let whole = udp_exchange(from, to, COUNT, LEN).unwrap();
        assert_eq!(whole, COUNT, "{what}: datagrams back whole");
    }
    let counts = frag_counts(&lab);
    for (n, (seen, lost)) in counts.iter().enumerate() {
        // Six fragments per datagram, each way, several hooks.
        assert!(*seen >= u64::from(COUNT) * 6, "node {}: {counts:?}", n + 1);
        assert_eq!(*lost, 0, "node {}: {counts:?}", n + 1);
    }
    assert!(!lab.nodes[0]
        .dp()
        .unwrap()
        .frag4_entries()
        .unwrap()
        .is_empty());
    drop((s1b, s2a));
    lab.teardown().unwrap();
}

#[test]
fn fragmented_udp_pod_to_service() {
    require_privileges!();
    let lab = started_lab("fragsvc");
    let s1b = UdpEchoServer::start(lab.pod("pod1b").unwrap(), 5301, LEN).unwrap();
    let s2a = UdpEchoServer::start(lab.pod("pod2a").unwrap(), 5301, LEN).unwrap();
    let local: SocketAddr = "10.96.0.50:5300".parse().unwrap();
    let remote: SocketAddr = "10.96.0.51:5300".parse().unwrap();
    let dp1 = lab.nodes[0].dp().unwrap();
    dp1.upsert_service(&Service::new(50, local, L4Protocol::Udp).backend(Backend::new(s1b.addr())))
        .unwrap();
    dp1.upsert_service(
        &Service::new(51, remote, L4Protocol::Udp).backend(Backend::new(s2a.addr())),
    )
    .unwrap();
    let pod1a = lab.pod("pod1a").unwrap();
    for (what, to) in [
        ("backend on the node", local),
        ("backend on node 2", remote),
    ] {
        let whole = udp_exchange(pod1a, to, COUNT, LEN).unwrap();
        assert_eq!(whole, COUNT, "{what}: datagrams back whole, from {to}");
    }
    let counts = frag_counts(&lab);
    assert!(counts[0].0 >= u64::from(COUNT) * 6 * 2, "{counts:?}");
    assert!(counts.iter().all(|(_, lost)| *lost == 0), "{counts:?}");
    drop((s1b, s2a));
    lab.teardown().unwrap();
}

/// Masquerade (IPv4; the lab has no IPv6): 8 KB datagrams from pods of
/// both nodes to an echo server in the outside namespace, fragmented by the
/// pods' stacks and SNATed fragment by fragment at the nodes' to-netdev;
/// the outside reassembles them from the node address only, and its
/// fragmented replies are reverse-translated at from-netdev and reach the
/// pods whole.
#[test]
fn fragmented_udp_pod_to_outside() {
    require_privileges!();
    let (lab, outside) = lab_outside::start("fragout").unwrap();
    let server = UdpEchoServer::start_in(
        &outside.ns,
        SocketAddr::new(IpAddr::V4(OUTSIDE_IP), 5302),
        LEN,
    )
    .unwrap();
    for (name, _) in [("pod1a", 1), ("pod2a", 2)] {
        let pod = lab.pod(name).unwrap();
        let whole = udp_exchange(pod, server.addr(), COUNT, LEN).unwrap();
        assert_eq!(
            whole, COUNT,
            "{name}: datagrams back whole from the outside"
        );
    }
    let seen: Vec<IpAddr> = server.peers().iter().map(SocketAddr::ip).collect();
    assert!(!seen.is_empty());
    for ip in &seen {
        assert!(
            *ip == seen_as(1) || *ip == seen_as(2),
            "the outside saw {ip}: {seen:?}"
        );
    }
    assert!(
        seen.contains(&seen_as(1)) && seen.contains(&seen_as(2)),
        "{seen:?}"
    );
    let counts = frag_counts(&lab);
    assert!(counts.iter().all(|(_, lost)| *lost == 0), "{counts:?}");
    // node1 masqueraded pod1a's UDP flow: a mapping pair.
    let node1 = lab.nodes[0].dp().unwrap();
    let udp_pairs = node1
        .snat4_entries()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.nexthdr == 17)
        .count();
    assert_eq!(udp_pairs, 2, "one UDP mapping pair on node1");
    drop(server);
    drop(outside);
    lab.teardown().unwrap();
}
