//! Two nodes, four pods, native routing (Cilium's `auto-direct-node-routes`):
//! routes from `route`, forwarding by `datapath-bpf`, conntrack read and
//! collected with `conntrack`. Every step is verified; the exit code is 0
//! only if all of them held.
//!
//! ```text
//! sudo cargo run --example native_routing            # build, verify, tear down
//! sudo cargo run --example native_routing -- --keep  # leave it up to inspect
//! ```
//!
//! With `--keep` the namespaces `pn-node1`, `pn-node2`, `pn-pod1a` ... stay,
//! with their routes, the programs (attached as tc filters) and the pinned
//! maps under `/sys/fs/bpf/pn`; try `ip -n pn-node1 route`,
//! `ip netns exec pn-pod1a ping 10.2.0.10`, `bpftool map dump pinned
//! /sys/fs/bpf/pn/node1/cilium_ct_any4_global`. Running the demo again
//! replaces them; `ip -all netns delete` and `rm -r /sys/fs/bpf/pn` remove
//! them.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use podnet::lab::{self, check, Lab, LabResult};

/// Cilium's tuple flag of a service entry (`bpf/lib/common.h`).
const TUPLE_F_SERVICE: u8 = 4;
use podnet_conntrack::{dump_entries, gc, ClockSource, GcFilter};
use podnet_datapath::{AttachMode, Backend, CtTable, L4Protocol, Service};

const USAGE: &str = "usage: native_routing [--keep]

Builds two nodes in network namespaces (pn-node1, pn-node2) joined by an
underlay veth, two pods each, installs seed 003's routes with the `route`
crate, loads and attaches the `datapath-bpf` datapath, sends pod-to-pod
traffic on one node and across nodes, prints the routing table, the conntrack
entries and the datapath metrics, programs a ClusterIP with a backend on each
node and connects to it, reaches an outside address from a pod (BPF
masquerade) and prints its NAT entries, runs conntrack GC, then tears it all
down.

  --keep   leave namespaces, routes, programs and pins in place to inspect";

fn step(n: u32, what: &str) {
    println!("\n[{n}/10] {what}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    if let Some(bad) = args.iter().find(|a| *a != "--keep") {
        eprintln!("unknown argument {bad}\n\n{USAGE}");
        std::process::exit(2);
    }
    let keep = args.iter().any(|a| a == "--keep");
    if !testsupport::privileges_available() {
        std::process::exit(1);
    }
    match run(keep) {
        Ok(()) => println!("\nall steps verified"),
        Err(e) => {
            eprintln!("\nnative_routing: {e}");
            std::process::exit(1);
        }
    }
}

fn run(keep: bool) -> LabResult<()> {
    // Two nodes with BPF masquerade on, and an outside network behind
    // node1's eth1 (podnet::lab_outside).
    let plan = podnet::lab_outside::plan("pn");

    step(
        1,
        "topology: namespaces, veth pairs, addresses (the container runtime's part)",
    );
    let mut lab = Lab::create(&plan, true)?;
    let mut outside = podnet::lab_outside::create(&lab, Some("pn-outside"))?;
    for n in &lab.nodes {
        println!(
            "  {} ({}): eth0 {}/24, cilium_host {}, pod CIDR {}, {}",
            n.ns.name(),
            n.plan.name,
            n.plan.node_ip,
            n.plan.host_ip,
            n.plan.pod_cidr,
            if n.plan.skip_fib {
                "skip-FIB"
            } else {
                "remote traffic to the stack"
            }
        );
        for p in &n.pods {
            println!("    pod {} {} behind {}", p.ns.name(), p.plan.ip, p.lxc);
        }
    }

    step(
        2,
        "routes with `route` (seed 003: direct node routes + cilium_host routes + endpoint routes)",
    );
    let changed = lab.install_routes()?;
    for (n, c) in lab.nodes.iter().zip(&changed) {
        println!("  {}: {c} route(s) installed", n.plan.name);
    }
    let checked = lab.verify_routes()?;
    check(
        checked > 0,
        &format!("{checked} routes found again by exact lookup"),
    )?;
    let again = lab.install_routes()?;
    check(
        again.iter().all(|c| *c == 0),
        "a second install changes nothing (idempotent)",
    )?;

    step(
        3,
        "datapath: load, pin, register endpoints and ipcache, attach",
    );
    let mode = if keep {
        AttachMode::Tc
    } else {
        AttachMode::Auto
    };
    lab.start_datapath(mode)?;
    for n in &lab.nodes {
        let dp = n.dp()?;
        println!(
            "  {}: {} programs attached, maps pinned in {}",
            n.plan.name,
            dp.attached(),
            dp.pin_dir().display()
        );
    }

    step(4, "traffic");
    let pod1a = lab.pod("pod1a")?;
    let pod1b = lab.pod("pod1b")?;
    let pod2a = lab.pod("pod2a")?;
    let pod2b = lab.pod("pod2b")?;
    let got = lab::ping(pod1a, pod1b.ip(), 3);
    check(
        got == 3,
        &format!("ping pod1a -> pod1b (same node): {got}/3 replies"),
    )?;
    let got = lab::ping(pod1a, pod2a.ip(), 3);
    check(
        got == 3,
        &format!("ping pod1a -> pod2a (across nodes): {got}/3 replies"),
    )?;
    let got = lab::ping(pod2b, pod1b.ip(), 3);
    check(
        got == 3,
        &format!("ping pod2b -> pod1b (across nodes, skip-FIB side first): {got}/3 replies"),
    )?;
    let server = lab::EchoServer::start(pod2a, 8080, 1)?;
    let mut conn = lab::connect(pod1a, server.addr())?;
    lab::echo_exchange(&mut conn, 256 * 1024)?;
    check(
        true,
        "TCP pod1a -> pod2a:8080: 256 KiB sent and echoed back intact",
    )?;
    let local_server = lab::EchoServer::start(pod1b, 8081, 1)?;
    let mut local = lab::connect(pod1a, local_server.addr())?;
    lab::echo_exchange(&mut local, 64 * 1024)?;
    check(true, "TCP pod1a -> pod1b:8081 (same node): 64 KiB echoed")?;
    let client = conn.local_addr()?;
    drop((conn, local, server, local_server));

    let node1 = lab.node("node1")?;
    step(
        5,
        "node1's main routing table (`route` list, printed as `ip route` does)",
    );
    let ours = node1.routing_table()?;
    for line in &ours {
        println!("  {line}");
    }
    let theirs = node1.ns.ip_lines(&["route", "show"]);
    check(
        ours == theirs,
        "identical to the real `ip route show` in node1",
    )?;

    step(
        6,
        "node1's conntrack entries (`conntrack` reading the datapath's maps)",
    );
    let (tcp, any) = node1.ct_maps()?;
    for map in [&tcp, &any] {
        println!("  {} ({} entries):", map.name(), map.count()?);
        for line in dump_entries(map)?.lines() {
            println!("    {line}");
        }
    }
    // Cilium's `Lookup(src, dst, proto, direction)` for the TCP flow above.
    let server_addr = SocketAddr::new(pod2a.ip(), 8080);
    let flow = tcp
        .lookup_flow(
            client,
            server_addr,
            podnet_conntrack::IPPROTO_TCP,
            podnet_conntrack::Direction::Egress,
        )?
        .ok_or_else(|| format!("no egress CT entry for {client} -> {server_addr}"))?;
    check(
        flow.packets() > 0,
        &format!(
            "egress flow {client} -> {server_addr}: {} packets, {} bytes",
            flow.packets(),
            flow.bytes()
        ),
    )?;

    step(7, "node1's datapath metrics");
    let mut forwarded = 0;
    for m in node1.dp()?.metrics()? {
        println!(
            "  {:<8} {:<28} {:>8} packets {:>10} bytes",
            m.direction.to_string(),
            m.reason_name(),
            m.packets,
            m.bytes
        );
        if m.reason == podnet_datapath::reason::FORWARDED {
            forwarded += m.packets;
        }
    }
    check(
        forwarded > 0,
        "packets forwarded by the datapath were counted",
    )?;
    policy_drop_in_monitor(&lab)?;

    step(
        8,
        "a ClusterIP with one backend per node (services in Cilium's LB maps)",
    );
    let vip: SocketAddr = "10.96.0.10:80".parse()?;
    let backends = [
        SocketAddr::new(pod1b.ip(), 9090),
        SocketAddr::new(pod2a.ip(), 9090),
    ];
    let mut svc = Service::new(1, vip, L4Protocol::Tcp);
    for b in backends {
        svc = svc.backend(Backend::new(b));
    }
    node1.dp()?.upsert_service(&svc)?;
    for s in node1.dp()?.services()? {
        let list: Vec<String> = s.backends.iter().map(|b| b.addr.to_string()).collect();
        println!(
            "  service {} {} {} -> {}",
            s.id,
            s.protocol,
            s.frontend,
            list.join(", ")
        );
    }
    const CONNS: usize = 16;
    let servers = [
        lab::EchoServer::start(pod1b, 9090, CONNS)?,
        lab::EchoServer::start(pod2a, 9090, CONNS)?,
    ];
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let mut c = lab::connect(pod1a, vip)?;
        lab::echo_exchange(&mut c, 4096)?;
        clients.push(c.local_addr()?);
    }
    check(
        true,
        &format!("{CONNS} TCP connections pod1a -> {vip}: 4 KiB echoed on each"),
    )?;
    drop(servers);
    // The entries the datapath made, read back in Cilium's layout.
    let mut used = HashSet::new();
    let mut svc_entries = 0;
    for (k, e) in node1.dp()?.ct4_entries(CtTable::Tcp)? {
        let (d, s) = (Ipv4Addr::from(k.daddr), Ipv4Addr::from(k.saddr));
        let (dport, sport) = (u16::from_be(k.dport), u16::from_be(k.sport));
        if k.flags == TUPLE_F_SERVICE {
            svc_entries += 1;
            println!(
                "  SVC  {s}:{dport} -> {d}:{sport} backend_id={} rev_nat_index={}",
                e.backend_id,
                u16::from_be(e.rev_nat_index)
            );
        } else if e.rev_nat_index != 0 {
            used.insert(s);
            println!(
                "  flow {d}:{sport} -> {s}:{dport} rev_nat_index={} packets={}",
                u16::from_be(e.rev_nat_index),
                e.packets
            );
        }
    }
    check(
        svc_entries == CONNS,
        &format!("{svc_entries} TUPLE_F_SERVICE entries, one per connection"),
    )?;
    check(
        used.len() == 2,
        "connections went to both backends (same node and other node)",
    )?;
    let _ = clients;

    step(
        9,
        "a pod reaches an outside address, masqueraded to its node (BPF SNAT)",
    );
    let peer_server = podnet::lab_outside::PeerServer::start(&outside, 7000)?;
    let mut out_conn = lab::connect(pod1a, peer_server.tcp)?;
    let answer = podnet::lab_outside::ask(&mut out_conn, "hello")?;
    println!("  the outside ({}) says: {answer}", peer_server.tcp);
    let node_addr = podnet::lab_outside::NODE1_OUTSIDE_IP;
    check(
        answer.starts_with(&format!("{node_addr}:")),
        &format!("the outside saw pod1a as node1's address {node_addr}"),
    )?;
    let nat = podnet_conntrack::nat::NatMap::open(node1.dp()?.nat_map_paths().v4)?;
    let clock_now = ClockSource::Monotonic;
    let pod_port = out_conn.local_addr()?.port();
    println!("  node1's NAT entries for it (`cilium bpf nat list`):");
    let nat_text = podnet_conntrack::nat::dump_nat_entries_with_time_diff(&nat, &clock_now)?;
    for line in nat_text
        .lines()
        .filter(|l| l.contains(&format!("{}:{pod_port}", pod1a.ip())))
    {
        println!("    {line}");
    }
    check(
        nat_text.contains(&format!(
            "TCP OUT {}:{pod_port} -> {}",
            pod1a.ip(),
            peer_server.tcp
        )),
        "the forward (XLATE_SRC) and reverse (XLATE_DST) entries are there",
    )?;
    drop(out_conn);

    step(10, "conntrack GC on node1");
    let clock = ClockSource::Monotonic;
    for map in [&tcp, &any] {
        let mut expiry = GcFilter::expired(&clock)?;
        let stats = gc(map, &mut expiry)?;
        println!("  {} expiry pass: {stats}", map.name());
        check(stats.alive > 0, "live flows survive the expiry pass")?;
    }
    // pod1b is deleted: Cilium then collects every flow that names its IP.
    let mut removed = 0;
    for map in [&tcp, &any] {
        let mut f = GcFilter::new().match_ips(HashSet::from([pod1b.ip()]));
        let stats = gc(map, &mut f)?;
        println!(
            "  {} pod1b deleted, flows of {}: {stats}",
            map.name(),
            pod1b.ip()
        );
        removed += stats.deleted_matched;
    }
    check(removed > 0, &format!("{removed} entries of pod1b removed"))?;
    let left = [&tcp, &any]
        .iter()
        .map(|m| dump_entries(m))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    check(
        !left.contains(&format!("{}:", pod1b.ip())),
        "no entry of pod1b is left",
    )?;
    check(
        left.contains(&format!("{}:", pod2a.ip())),
        "entries of other pods are kept",
    )?;
    drop((tcp, any));

    if keep {
        lab.keep();
        outside.ns.keep();
        println!("\n--keep: left in place; e.g. `ip -n pn-node1 route`, `ip netns exec pn-pod1a ping 10.2.0.10`");
        return Ok(());
    }
    println!("\n[teardown] detach, unpin, remove routes and namespaces");
    lab.teardown()?;
    drop(outside);
    check(true, "nothing left behind")?;
    Ok(())
}

/// A policy drop seen through the monitor: node2's events, read from the
/// ring buffer pinned in its pin directory (what
/// `cargo run -p podnet-datapath --example monitor -- <pin-dir>` prints from
/// another process), for a ping node2's policy denies.
fn policy_drop_in_monitor(lab: &Lab) -> LabResult<()> {
    println!("\n[monitor] a policy drop on node2, seen through its events");
    let (pod1a, pod2a) = (lab.pod("pod1a")?, lab.pod("pod2a")?);
    let node2 = lab.node("node2")?;
    let mut events = podnet_datapath::Events::open(&node2.pin_dir)?;
    // What earlier steps left in the ring is not this step's.
    while events.try_recv()?.is_some() {}
    let deny = podnet_datapath::PolicyKey::new(
        pod2a.plan.endpoint_id,
        podnet_datapath::TrafficDirection::Ingress,
    )
    .identity(pod1a.plan.identity)
    .protocol(1);
    node2.dp()?.deny(&deny)?;
    let answered = lab::ping(pod1a, pod2a.ip(), 1);
    node2.dp()?.remove_policy(&deny)?;
    check(
        answered == 0,
        "ping pod1a -> pod2a denied by node2's policy",
    )?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match events.recv_timeout(std::time::Duration::from_millis(500))? {
            Some(ev @ podnet_datapath::DatapathEvent::Drop(_)) => {
                println!("  {ev}");
                return check(true, "the drop, with both identities, in the monitor");
            }
            Some(ev) => println!("  {ev}"),
            None => {}
        }
    }
    check(false, "a drop event from node2")
}
