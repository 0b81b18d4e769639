//! Real traffic through the datapath: two "nodes" (network namespaces) joined
//! by an underlay veth, pods in their own namespaces behind veth pairs.
//!
//! ```text
//!  p1a 10.1.0.2 ─ lxc1a ┐                             ┌ lxc2a ─ p2a 10.2.0.2
//!  p1b 10.1.0.3 ─ lxc1b ┤ n1  eth0 ══ underlay ══ eth0 │ n2
//!                       192.168.100.1        192.168.100.2
//! ```
//!
//! Pod side: the address as a /32 on `eth0`, `default via 169.254.1.1`
//! (onlink) and a permanent neighbour entry mapping 169.254.1.1 to the
//! host-side veth's MAC, so a pod never ARPs for its gateway. Node side:
//! `ip_forward=1`, `<pod>/32 dev lxcX` with a permanent neighbour for the pod,
//! and `<remote pod CIDR> via <remote node IP> dev eth0` (seed 003's
//! auto-direct-node-routes). Node 1 hands remote traffic to the stack and
//! delivers with `bpf_redirect_peer`; node 2 runs in skip-FIB mode
//! (`bpf_fib_lookup` + `bpf_redirect_neigh`) and delivers through the veth's
//! egress (`to_container`).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{attach_node, lab_pod};
use podnet_datapath::maps::{TUPLE_F_IN, TUPLE_F_OUT};
use podnet_datapath::*;
use testsupport::{require_privileges, veth, BpfDir, Netns};

struct Pod {
    ns: Netns,
    ip: Ipv4Addr,
    lxc: String,
    id: u16,
    identity: u32,
}

/// Creates a pod namespace behind `lxc` on `node`, configures both sides and
/// returns the endpoint to register.
fn add_pod(
    node: &Netns,
    tag: &str,
    lxc: &str,
    ip: &str,
    id: u16,
    identity: u32,
) -> (Pod, Endpoint) {
    let ip: Ipv4Addr = ip.parse().unwrap();
    let (ns, ep) = lab_pod(node, tag, lxc, IpAddr::V4(ip), id);
    let ep = ep.identity(identity);
    (
        Pod {
            ns,
            ip,
            lxc: lxc.to_string(),
            id,
            identity,
        },
        ep,
    )
}

fn node(tag: &str) -> Netns {
    let n = Netns::new(tag);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"]);
    n.exec_ok("sysctl", &["-qw", "net.ipv4.conf.default.rp_filter=0"]);
    n
}

fn ping(from: &Pod, to: &str) -> bool {
    from.ns
        .exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", to])
        .status
        .success()
}

#[test]
fn pods_talk_on_one_node_and_across_nodes_and_policy_drops() {
    require_privileges!();
    let pins = BpfDir::new("traffic");
    let n1 = node("n1");
    let n2 = node("n2");
    veth(&n1, "eth0", &n2, "eth0");
    n1.add_address("192.168.100.1/24", "eth0");
    n2.add_address("192.168.100.2/24", "eth0");
    n1.add_route("10.2.0.0/24 via 192.168.100.2 dev eth0");
    n2.add_route("10.1.0.0/24 via 192.168.100.1 dev eth0");

    let (p1a, e1a) = add_pod(&n1, "p1a", "lxc1a", "10.1.0.2", 101, 1001);
    let (p1b, e1b) = add_pod(&n1, "p1b", "lxc1b", "10.1.0.3", 102, 1002);
    let (p2a, e2a) = add_pod(&n2, "p2a", "lxc2a", "10.2.0.2", 201, 2001);

    // Node 1: bpf_redirect_peer delivery, remote traffic to the stack.
    // Node 2: skip-FIB, classic delivery through the veth's egress (to_container).
    let mut dp1 = Datapath::load(&Options::small(pins.join("n1"))).unwrap();
    let o2 = Options::small(pins.join("n2"))
        .skip_fib(true)
        .redirect_peer(false);
    let mut dp2 = Datapath::load(&o2).unwrap();

    for e in [&e1a, &e1b] {
        dp1.upsert_endpoint(e).unwrap();
        let info = IpcacheInfo::new(e.identity).tunnel_endpoint("192.168.100.1".parse().unwrap());
        dp2.upsert_ipcache(e.ip.into(), &info).unwrap();
    }
    dp2.upsert_endpoint(&e2a).unwrap();
    dp1.upsert_ipcache(
        e2a.ip.into(),
        &IpcacheInfo::new(e2a.identity).tunnel_endpoint("192.168.100.2".parse().unwrap()),
    )
    .unwrap();

    // Attach from inside each node's namespace (tcx uses the calling thread's netns).
    let n1_eth0 = n1.ifindex("eth0");
    let n2_eth0 = n2.ifindex("eth0");
    attach_node(&n1, &mut dp1, &[&e1a, &e1b], n1_eth0);
    attach_node(&n2, &mut dp2, &[&e2a], n2_eth0);
    assert_eq!(dp1.attached(), 5);

    // Same node, across nodes, pod to node, node to pod.
    assert!(ping(&p1a, "10.1.0.3"), "p1a -> p1b (same node)");
    assert!(ping(&p1a, "10.2.0.2"), "p1a -> p2a (across nodes)");
    assert!(
        ping(&p2a, "10.1.0.3"),
        "p2a -> p1b (across nodes, skip-FIB side first)"
    );
    assert!(ping(&p1a, "192.168.100.1"), "pod -> its node");
    assert!(
        n2.exec("ping", &["-c", "1", "-W", "2", "10.2.0.2"])
            .status
            .success(),
        "node -> pod"
    );

    // Conntrack entries in Cilium's layout on both nodes.
    let icmp_out = |dp: &Datapath, pod: &Pod, peer: &str, flags: u8| {
        let peer: Ipv4Addr = peer.parse().unwrap();
        dp.ct4_entries(CtTable::Any)
            .unwrap()
            .into_iter()
            .any(|(k, e)| {
                k.nexthdr == 1
                    && k.daddr == pod.ip.octets()
                    && k.saddr == peer.octets()
                    && k.flags == flags
                    && e.packets >= 2
            })
    };
    assert!(
        icmp_out(&dp1, &p1a, "10.2.0.2", TUPLE_F_OUT),
        "egress entry on node 1"
    );
    let in_entry = dp2
        .ct4_entries(CtTable::Any)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.nexthdr == 1 && k.daddr == p1a.ip.octets() && k.flags == TUPLE_F_IN)
        .expect("ingress entry on node 2");
    assert_eq!(
        in_entry.1.src_sec_id, p1a.identity,
        "identity from the ipcache via from-netdev"
    );

    // A TCP transfer across nodes.
    let mut server = p2a.ns.spawn("iperf3", &["-s", "-1", "-p", "5201"]);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let out = p1a.ns.exec(
        "iperf3",
        &["-c", "10.2.0.2", "-p", "5201", "-t", "1", "-l", "64k"],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "iperf3: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tcp = dp1.ct4_entries(CtTable::Tcp).unwrap();
    // iperf3 opens a control and a data connection to the same port.
    let flow = tcp
        .iter()
        .filter(|(k, _)| {
            k.daddr == p1a.ip.octets() && k.dport == 5201u16.to_be() && k.flags == TUPLE_F_OUT
        })
        .max_by_key(|(_, e)| e.packets)
        .expect("TCP flow in cilium_ct4_global");
    assert!(flow.1.packets > 100, "{:?}", flow.1);
    assert!(
        flow.1.tx_flags_seen & 0x12 == 0x12,
        "SYN and ACK seen: {:?}",
        flow.1
    );

    // Policy: p2a denies ICMP from p1b's identity; p1a still gets through.
    let deny = PolicyKey::new(p2a.id, TrafficDirection::Ingress)
        .identity(p1b.identity)
        .protocol(1);
    dp2.deny(&deny).unwrap();
    assert!(!ping(&p1b, "10.2.0.2"), "denied across nodes");
    assert!(
        dp2.metric(reason::POLICY_DENY, TrafficDirection::Ingress)
            .unwrap()
            >= 2
    );
    assert!(dp2.policy(&deny).unwrap().unwrap().packets >= 2);
    // Same node: p1b denies ICMP from p1a (to-container runs on redirected packets).
    let deny_local = PolicyKey::new(p1b.id, TrafficDirection::Ingress)
        .identity(p1a.identity)
        .protocol(1);
    // The earlier p1a -> p1b ping left conntrack entries for that echo id;
    // ping uses a new id per process, so this is a new connection.
    dp1.deny(&deny_local).unwrap();
    assert!(!ping(&p1a, "10.1.0.3"), "denied on one node");
    assert!(
        dp1.metric(reason::POLICY_DENY, TrafficDirection::Ingress)
            .unwrap()
            >= 2
    );
    assert!(ping(&p1a, "10.2.0.2"), "other flows unaffected");
    assert!(
        dp1.metric(reason::FORWARDED, TrafficDirection::Egress)
            .unwrap()
            > 0
    );

    // Detach from another thread than the one that attached: fine for tcx.
    dp1.detach(e1a.ifindex, Hook::FromContainer).unwrap();
    assert_eq!(dp1.attached(), 4);
    dp1.teardown().unwrap();
    dp2.teardown().unwrap();
    assert!(!pins.join("n1").join("cilium_ct4_global").exists());
    drop((p1a.lxc, p1b.lxc, p2a.lxc));
}

#[test]
fn tc_clsact_fallback_attaches_and_detaches_in_the_right_namespace() {
    require_privileges!();
    let pins = BpfDir::new("tcmode");
    let n = Netns::new("tcmode");
    n.add_link("lxc9");
    let idx = n.ifindex("lxc9");
    let o = Options::small(pins.join("g")).attach_mode(AttachMode::Tc);
    let mut dp = Datapath::load(&o).unwrap();
    n.run(|| {
        dp.attach(idx, Hook::FromContainer).unwrap();
        dp.attach(idx, Hook::ToContainer).unwrap();
    });
    let ingress = n.exec_ok("tc", &["filter", "show", "dev", "lxc9", "ingress"]);
    assert!(
        ingress.contains("from_container") && ingress.contains("direct-action"),
        "{ingress}"
    );
    let egress = n.exec_ok("tc", &["filter", "show", "dev", "lxc9", "egress"]);
    assert!(egress.contains("to_container"), "{egress}");
    // Detach from this (test) thread: the datapath enters the namespace itself.
    dp.detach(idx, Hook::FromContainer).unwrap();
    let ingress = n.exec_ok("tc", &["filter", "show", "dev", "lxc9", "ingress"]);
    assert!(!ingress.contains("from_container"), "{ingress}");
    assert!(matches!(
        dp.detach(idx, Hook::FromContainer),
        Err(Error::NotAttached { .. })
    ));
    drop(dp); // detaches to_container
    let egress = n.exec_ok("tc", &["filter", "show", "dev", "lxc9", "egress"]);
    assert!(!egress.contains("to_container"), "{egress}");
}

/// The same topology over IPv6: link-local gateway `fe80::1` as a permanent
/// neighbour in the pod, node routes and neighbours as for IPv4.
#[test]
fn ipv6_pods_talk_on_one_node_and_across_nodes() {
    require_privileges!();
    let pins = BpfDir::new("traffic6");
    let n = [node("n61"), node("n62")];
    for nn in &n {
        nn.exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    }
    veth(&n[0], "eth0", &n[1], "eth0");
    n[0].add_address("fd00:100::1/64", "eth0");
    n[1].add_address("fd00:100::2/64", "eth0");
    n[0].add_route("fd00:2::/64 via fd00:100::2 dev eth0");
    n[1].add_route("fd00:1::/64 via fd00:100::1 dev eth0");

    let mut dps = Vec::new();
    for (i, nn) in n.iter().enumerate() {
        let o = Options::small(pins.join(&format!("n{i}")))
            .skip_fib(i == 1)
            .redirect_peer(i == 0);
        dps.push(Datapath::load(&o).unwrap());
        let _ = nn;
    }
    let pods = [
        ("p61a", 0usize, "lxc1a", "fd00:1::2"),
        ("p61b", 0, "lxc1b", "fd00:1::3"),
        ("p62a", 1, "lxc2a", "fd00:2::2"),
    ];
    let mut pod_ns = Vec::new();
    for (k, (tag, ni, lxc, ip)) in pods.iter().enumerate() {
        let node = &n[*ni];
        let (ns, ep) = lab_pod(node, tag, lxc, ip.parse().unwrap(), 300 + k as u16);
        let ep = ep.identity(3000 + k as u32);
        dps[*ni].upsert_endpoint(&ep).unwrap();
        dps[1 - *ni]
            .upsert_ipcache(ep.ip.into(), &IpcacheInfo::new(ep.identity))
            .unwrap();
        let eth0 = node.ifindex("eth0");
        attach_node(node, &mut dps[*ni], &[&ep], eth0);
        pod_ns.push(ns);
    }
    let ping6 = |ns: &Netns, to: &str| {
        ns.exec("ping", &["-6", "-c", "2", "-i", "0.2", "-W", "2", to])
            .status
            .success()
    };
    assert!(ping6(&pod_ns[0], "fd00:1::3"), "same node");
    assert!(ping6(&pod_ns[0], "fd00:2::2"), "across nodes");
    assert!(
        ping6(&pod_ns[2], "fd00:1::3"),
        "across nodes, skip-FIB side first"
    );
    let any = dps[0].ct6_entries(CtTable::Any).unwrap();
    let a: std::net::Ipv6Addr = "fd00:1::2".parse().unwrap();
    assert!(
        any.iter().any(|(k, e)| k.nexthdr == 58
            && k.daddr == a.octets()
            && k.flags == TUPLE_F_OUT
            && e.packets >= 2),
        "{any:?}"
    );

    dps[1]
        .deny(
            &PolicyKey::new(302, TrafficDirection::Ingress)
                .identity(3001)
                .protocol(58),
        )
        .unwrap();
    assert!(!ping6(&pod_ns[1], "fd00:2::2"), "denied");
    assert!(
        dps[1]
            .metric(reason::POLICY_DENY, TrafficDirection::Ingress)
            .unwrap()
            >= 2
    );
    assert!(ping6(&pod_ns[0], "fd00:2::2"), "other pod still allowed");
    for dp in dps {
        dp.teardown().unwrap();
    }
}

/// With `keep_attached`, dropping the datapath (an agent restart) leaves the
/// programs in place: traffic keeps flowing through them and keeps being
/// counted in the pinned maps; the next instance takes the links over.
#[test]
fn keep_attached_survives_an_agent_restart() {
    require_privileges!();
    let pins = BpfDir::new("keep");
    let n = node("keep");
    n.add_address("192.168.200.1/32", "lo");
    let (pod, ep) = add_pod(&n, "keeppod", "lxc7", "10.7.0.2", 7, 7007);
    let opts = Options::small(pins.join("g")).keep_attached(true);
    let fwd = |dp: &Datapath| {
        dp.metric(reason::FORWARDED, TrafficDirection::Egress)
            .unwrap()
    };

    let mut dp = Datapath::load(&opts).unwrap();
    dp.upsert_endpoint(&ep).unwrap();
    n.run(|| dp.attach(ep.ifindex, Hook::FromContainer).unwrap());
    assert!(ping(&pod, "192.168.200.1"));
    let before = fwd(&dp);
    assert!(before >= 2);
    drop(dp); // the agent goes away
    let links = pins.join("g").join("links");
    assert_eq!(
        std::fs::read_dir(&links).unwrap().count(),
        1,
        "tcx link pinned"
    );

    assert!(
        ping(&pod, "192.168.200.1"),
        "traffic flows without the agent"
    );
    let mut dp = Datapath::load(&opts).unwrap();
    let during = fwd(&dp);
    assert!(
        during >= before + 2,
        "still counted by the kept program: {before} -> {during}"
    );
    // Take the link over (the new program is swapped in), then tear down.
    n.run(|| dp.attach(ep.ifindex, Hook::FromContainer).unwrap());
    assert_eq!(dp.attached(), 1);
    assert!(ping(&pod, "192.168.200.1"));
    assert!(fwd(&dp) >= during + 2);
    dp.teardown().unwrap();
    assert!(!links.exists(), "links unpinned");
    assert!(ping(&pod, "192.168.200.1"), "plain stack once detached");
    let _ = pod.lxc;
}
