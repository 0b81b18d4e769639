//! BPF_PROG_TEST_RUN tests of the events: drop notifications (one per drop,
//! reason, tuple, identities), trace aggregation, policy verdicts, a full
//! ring buffer, the drop rate limit, a reader that outlives a reload, a
//! reader in another process (the monitor example), per-endpoint counters
//! and the Prometheus text.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

/// Another node's pod.
fn r4() -> Ipv4Addr {
    "10.2.0.2".parse().unwrap()
}

fn load(dir: &BpfDir, o: Options) -> Datapath {
    let dp = Datapath::load(&o).expect("load");
    // B enforces ingress policy; A has an IPv6 address too.
    add_pods(
        &dp,
        &[
            (a4().into(), true),
            (b4().into(), false),
            (a6().into(), true),
        ],
        EndpointFlags::INGRESS_ENFORCE,
    );
    let _ = dir;
    dp
}

fn setup(tag: &str, f: impl FnOnce(Options) -> Options) -> (BpfDir, Datapath, Events) {
    let dir = BpfDir::new(tag);
    let dp = load(
        &dir,
        f(Options::small(dir.join("globals")).redirect_peer(true)),
    );
    let ev = dp.events().expect("open events");
    (dir, dp, ev)
}

fn a_to(dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    packet4(A_MAC, A_NODE_MAC, &Ip4::new(a4(), dst, proto), l4)
}

#[test]
fn policy_drop_is_one_drop_event_with_reason_tuple_identities_and_a_verdict() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("ev-pol", |o| o);
    let out = dp
        .test_run(
            Program::FromContainer,
            &a_to(b4(), 6, &tcp(40000, 80, 0x02)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    let evs = drain(&mut ev);
    let d = drops(&evs);
    assert_eq!(d.len(), 1, "{evs:#?}");
    let d = d[0];
    assert_eq!(d.reason(), reason::POLICY);
    assert_eq!((d.src_identity, d.dst_identity), (A_ID, B_ID));
    assert_eq!(d.dst_endpoint, u32::from(B_EP));
    assert_eq!(d.header.source, A_EP);
    assert_eq!(bpf_file_name(d.file), "datapath.bpf.c");
    assert!(d.line > 0);
    let f = DatapathEvent::Drop(d.clone()).flow().expect("tuple");
    assert_eq!(
        (f.src, f.dst, f.proto, f.sport, f.dport),
        (a4().into(), b4().into(), 6, 40000, 80)
    );
    let text = d.to_string();
    assert!(
        text.starts_with("xx drop (Policy denied) flow 0x"),
        "{text}"
    );
    assert!(
        text.ends_with("identity 5001->5002: 10.1.0.2:40000 -> 10.1.0.3:80 tcp SYN"),
        "{text}"
    );

    let verdicts: Vec<&PolicyVerdict> = evs
        .iter()
        .filter_map(|e| match e {
            DatapathEvent::PolicyVerdict(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1, "{evs:#?}");
    let v = verdicts[0];
    assert!(v.denied());
    assert_eq!(v.direction, TrafficDirection::Ingress);
    assert_eq!((v.endpoint(), v.remote_identity), (B_EP, A_ID));
    assert_eq!((v.dst_port, v.proto), (80, 6));
    assert_eq!(policy_match_name(v.match_type), "none");
    let e = DatapathEvent::PolicyVerdict(v.clone());
    assert_eq!((e.to_endpoint(), e.from_endpoint()), (Some(B_EP), None));
    assert!(
        v.to_string()
            .contains("local EP ID 1002, remote ID 5001, proto 6, ingress, action deny"),
        "{v}"
    );
    // An explicit deny entry: L3-L4 match, "Policy denied by denylist".
    dp.deny(
        &PolicyKey::new(B_EP, TrafficDirection::Ingress)
            .identity(A_ID)
            .dport(81)
            .protocol(6),
    )
    .unwrap();
    dp.test_run(
        Program::FromContainer,
        &a_to(b4(), 6, &tcp(40001, 81, 0x02)),
        &from_a(),
    )
    .unwrap();
    let evs = drain(&mut ev);
    assert_eq!(drops(&evs).len(), 1);
    assert_eq!(drops(&evs)[0].reason(), reason::POLICY_DENY);
    assert!(evs.iter().any(
        |e| matches!(e, DatapathEvent::PolicyVerdict(p) if policy_match_name(p.match_type) == "L3-L4")
    ));
}

/// What a packet is, the packet, its drop reason, its ports (if parseable).
type DropCase = (&'static str, Vec<u8>, u8, Option<(u16, u16)>);

/// Every drop path a crafted packet reaches: exactly one drop event each,
/// with its reason and (where the packet has one) its tuple.
#[test]
fn each_drop_path_emits_exactly_one_drop_event() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("ev-paths", |o| o.drop_events_rate(0, 0));
    let mut bad_version = a_to(r4(), 6, &tcp(1, 2, 0x02));
    bad_version[14] = 0x35;
    let short_tcp = a_to(r4(), 6, &tcp(40000, 80, 0x02)[..10]);
    let spoofed = packet4(
        A_MAC,
        A_NODE_MAC,
        &Ip4::new("10.9.9.9".parse().unwrap(), r4(), 6),
        &tcp(40000, 80, 0x02),
    );
    let mut v6_none = eth(A_NODE_MAC, A_MAC, ETH_P_IPV6);
    v6_none.extend(ip6(a6(), "fd00:2::2".parse().unwrap(), 59, 64, &[0u8; 8]));
    let cases: Vec<DropCase> = vec![
        ("invalid version", bad_version, reason::INVALID, None),
        ("truncated tcp", short_tcp, reason::CT_INVALID_HDR, None),
        (
            "gre",
            a_to(r4(), 47, &[0u8; 8]),
            reason::CT_UNKNOWN_PROTO,
            None,
        ),
        (
            "spoofed source",
            spoofed,
            reason::INVALID_SOURCE_IP,
            Some((40000, 80)),
        ),
        ("ipv6 no next header", v6_none, reason::INVALID_EXTHDR, None),
        (
            "policy",
            a_to(b4(), 17, &udp(7000, 53, 4)),
            reason::POLICY,
            Some((7000, 53)),
        ),
    ];
    for (what, pkt, want, ports) in cases {
        let out = dp
            .test_run(Program::FromContainer, &pkt, &from_a())
            .unwrap();
        assert_eq!(out.retval, TC_ACT_SHOT, "{what}");
        let evs = drain(&mut ev);
        let d = drops(&evs);
        assert_eq!(d.len(), 1, "{what}: {evs:#?}");
        assert_eq!(d[0].reason(), want, "{what}: {}", d[0]);
        assert_eq!(d[0].header.orig_len as usize, pkt.len(), "{what}");
        assert_eq!(
            d[0].packet,
            pkt[..pkt.len().min(128)],
            "{what}: first bytes"
        );
        if let Some((sport, dport)) = ports {
            let f = DatapathEvent::Drop(d[0].clone()).flow().unwrap();
            assert_eq!((f.sport, f.dport), (sport, dport), "{what}");
        }
    }
    // to-container and from-netdev drop through the same path.
    let mut bad = a_to(b4(), 6, &tcp(1, 2, 0x02));
    bad[14] = 0x35;
    for prog in [Program::ToContainer, Program::FromNetdev] {
        let out = dp.test_run(prog, &bad, &TestContext::new()).unwrap();
        assert_eq!(out.retval, TC_ACT_SHOT);
        let evs = drain(&mut ev);
        assert_eq!(drops(&evs).len(), 1, "{prog:?}: {evs:#?}");
    }
    assert_eq!(ev.lost().unwrap(), LostEvents::default());
}

/// Medium: one trace for a new UDP flow, none for its next packets; Off:
/// from-endpoint and to-stack for every packet; Max: one per connection
/// even for TCP flags.
#[test]
fn trace_aggregation_medium_once_per_connection_off_every_packet() {
    require_privileges!();
    let udp_pkt = a_to(r4(), 17, &udp(6000, 53, 16));
    let syn = a_to(r4(), 6, &tcp(41000, 80, 0x02));
    let ack = a_to(r4(), 6, &tcp(41000, 80, 0x10));

    let (_d1, dp, mut ev) = setup("ev-med", |o| o);
    for _ in 0..10 {
        assert_eq!(
            dp.test_run(Program::FromContainer, &udp_pkt, &from_a())
                .unwrap()
                .retval,
            TC_ACT_OK
        );
    }
    let evs = drain(&mut ev);
    let t = traces(&evs);
    assert_eq!(t.len(), 1, "{evs:#?}");
    assert_eq!(t[0].obs_point(), ObsPoint::TO_STACK);
    assert_eq!(trace_reason_name(t[0].reason), "new");
    assert_eq!((t[0].src_identity, t[0].header.source), (A_ID, A_EP));
    assert!(t[0].to_string().starts_with("-> stack flow 0x"), "{}", t[0]);
    // TCP at medium: the SYN and the first ACK (new flags), then nothing.
    dp.test_run(Program::FromContainer, &syn, &from_a())
        .unwrap();
    for _ in 0..5 {
        dp.test_run(Program::FromContainer, &ack, &from_a())
            .unwrap();
    }
    let t = drain(&mut ev);
    let reasons: Vec<&str> = traces(&t)
        .iter()
        .map(|t| trace_reason_name(t.reason))
        .collect();
    assert_eq!(reasons, ["new", "established"], "{t:#?}");
    // Repeats of the same run: established flows send nothing.
    dp.test_run(Program::FromContainer, &ack, &from_a().repeat(1000))
        .unwrap();
    assert!(drain(&mut ev).is_empty());

    let (_d2, dp, mut ev) = setup("ev-off", |o| o.monitor_aggregation(MonitorAggregation::Off));
    for _ in 0..10 {
        dp.test_run(Program::FromContainer, &udp_pkt, &from_a())
            .unwrap();
    }
    let evs = drain(&mut ev);
    let t = traces(&evs);
    assert_eq!(t.len(), 20, "{evs:#?}");
    assert_eq!(
        t.iter()
            .filter(|t| t.obs_point() == ObsPoint::FROM_ENDPOINT)
            .count(),
        10
    );
    // Every packet's trace says what conntrack found: the first made the
    // flow, the others hit it.
    let sent: Vec<&str> = t
        .iter()
        .filter(|t| t.obs_point() == ObsPoint::TO_STACK)
        .map(|t| trace_reason_name(t.reason))
        .collect();
    let mut want = vec!["new"];
    want.extend(["established"; 9]);
    assert_eq!(sent, want, "{t:#?}");

    let (_d3, dp, mut ev) = setup("ev-max", |o| o.monitor_aggregation(MonitorAggregation::Max));
    dp.test_run(Program::FromContainer, &syn, &from_a())
        .unwrap();
    for _ in 0..5 {
        dp.test_run(Program::FromContainer, &ack, &from_a())
            .unwrap();
    }
    assert_eq!(traces(&drain(&mut ev)).len(), 1);

    let (_d4, dp, mut ev) = setup("ev-none", |o| o.events(false));
    dp.test_run(Program::FromContainer, &udp_pkt, &from_a())
        .unwrap();
    dp.test_run(
        Program::FromContainer,
        &a_to(b4(), 6, &tcp(1, 80, 0x02)),
        &from_a(),
    )
    .unwrap();
    assert!(drain(&mut ev).is_empty(), "events off: nothing");
}

/// A local delivery (redirect to the pod) is traced at to-endpoint, naming it.
#[test]
fn local_delivery_traces_to_endpoint() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("ev-local", |o| o);
    dp.allow(&PolicyKey::new(B_EP, TrafficDirection::Ingress).identity(A_ID))
        .unwrap();
    let out = dp
        .test_run(
            Program::FromContainer,
            &a_to(b4(), 6, &tcp(42000, 80, 0x02)),
            &from_a(),
        )
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    let evs = drain(&mut ev);
    let t = traces(&evs);
    assert_eq!(t.len(), 1, "{evs:#?}");
    assert_eq!(t[0].obs_point(), ObsPoint::TO_ENDPOINT);
    assert_eq!(t[0].dst_endpoint, B_EP);
    assert!(
        t[0].to_string().starts_with("-> endpoint 1002 flow"),
        "{}",
        t[0]
    );
    let e = DatapathEvent::Trace(t[0].clone());
    assert_eq!(
        (e.from_endpoint(), e.to_endpoint()),
        (Some(A_EP), Some(B_EP))
    );
    // The allow is a verdict too.
    assert!(evs
        .iter()
        .any(|e| matches!(e, DatapathEvent::PolicyVerdict(p) if !p.denied())));
}

/// A full ring buffer: events are counted as lost, the programs neither
/// block nor change their verdicts, and a reader sees the loss.
#[test]
fn full_ring_buffer_counts_lost_events_and_forwards_anyway() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("ev-full", |o| {
        o.events_ring_size(4096)
            .drop_events_rate(0, 0)
            .monitor_aggregation(MonitorAggregation::Off)
    });
    let denied = a_to(b4(), 6, &tcp(43000, 80, 0x02));
    for _ in 0..200 {
        assert_eq!(
            dp.test_run(Program::FromContainer, &denied, &from_a())
                .unwrap()
                .retval,
            TC_ACT_SHOT
        );
    }
    let fwd = a_to(r4(), 17, &udp(6001, 53, 16));
    let out = dp
        .test_run(Program::FromContainer, &fwd, &from_a().repeat(1000))
        .unwrap();
    assert_eq!(out.retval, TC_ACT_OK, "forwarded with the ring full");
    assert!(
        dp.metric(reason::FORWARDED, TrafficDirection::Egress)
            .unwrap()
            >= 1000
    );
    let lost = ev.lost().unwrap();
    assert!(lost.ring_full > 1000, "{lost:?}");
    assert_eq!(dp.events_lost().unwrap(), lost);
    // The reader gets what fit, then the loss report.
    let evs = drain(&mut ev);
    assert!(!drops(&evs).is_empty() && drops(&evs).len() < 200);
    let reported: Vec<&LostEvents> = evs
        .iter()
        .filter_map(|e| match e {
            DatapathEvent::Lost(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(reported.len(), 1, "{evs:#?}");
    assert_eq!(reported[0].ring_full, lost.ring_full);
    assert!(reported[0].to_string().starts_with("Lost "));
    // Room again: events flow.
    dp.test_run(Program::FromContainer, &denied, &from_a())
        .unwrap();
    assert_eq!(drops(&drain(&mut ev)).len(), 1);
}

#[test]
fn drop_notifications_are_rate_limited_and_counted() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("ev-rate", |o| o.drop_events_rate(5, 5));
    let denied = a_to(b4(), 6, &tcp(44000, 80, 0x02));
    dp.test_run(Program::FromContainer, &denied, &from_a().repeat(20))
        .unwrap();
    let evs = drain(&mut ev);
    assert_eq!(drops(&evs).len(), 5, "the burst");
    let lost = ev.lost().unwrap();
    assert_eq!(lost.rate_limited, 15);
    assert_eq!(lost.ring_full, 0);
    assert_eq!(
        dp.metric(reason::POLICY, TrafficDirection::Ingress)
            .unwrap(),
        20
    );
}

/// The ring buffer is pinned: a reader opened before a reload reads the
/// events of the reloaded datapath.
#[test]
fn reader_keeps_reading_across_a_reload() {
    require_privileges!();
    let dir = BpfDir::new("ev-reload");
    let o = Options::small(dir.join("globals")).redirect_peer(true);
    let dp = load(&dir, o.clone());
    let mut ev = Events::open(dir.join("globals")).unwrap();
    drop(dp);
    let dp = load(&dir, o);
    dp.test_run(
        Program::FromContainer,
        &a_to(b4(), 6, &tcp(45000, 80, 0x02)),
        &from_a(),
    )
    .unwrap();
    let got = ev.recv_timeout(Duration::from_secs(2)).unwrap();
    assert!(got.is_some());
    assert!(!drops(&drain(&mut ev)).is_empty() || matches!(got, Some(DatapathEvent::Drop(_))));
    dp.teardown().unwrap();
    assert!(matches!(
        Events::open(dir.join("globals")),
        Err(e) if e.is_not_found()
    ));
}

/// Blocking read: times out with nothing, returns as soon as an event comes.
#[test]
fn recv_timeout_waits_and_returns() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("ev-block", |o| o);
    let t = std::time::Instant::now();
    assert!(ev
        .recv_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    assert!(t.elapsed() >= Duration::from_millis(300));
    let pkt = a_to(b4(), 6, &tcp(46000, 80, 0x02));
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        dp.test_run(Program::FromContainer, &pkt, &from_a())
            .unwrap();
        dp
    });
    let t = std::time::Instant::now();
    let got = ev.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(got.is_some());
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(th.join().unwrap());
}

#[test]
fn endpoint_counters_and_prometheus_text() {
    require_privileges!();
    let (_dir, dp, _ev) = setup("ev-prom", |o| o);
    dp.allow(
        &PolicyKey::new(B_EP, TrafficDirection::Ingress)
            .identity(A_ID)
            .dport(80)
            .protocol(6),
    )
    .unwrap();
    let ok = a_to(b4(), 6, &tcp(47000, 80, 0x02));
    let ack = a_to(b4(), 6, &tcp(47000, 80, 0x10));
    let denied = a_to(b4(), 6, &tcp(47001, 22, 0x02));
    assert_eq!(
        dp.test_run(Program::FromContainer, &ok, &from_a())
            .unwrap()
            .retval,
        TC_ACT_REDIRECT
    );
    // Established: counted from the endpoint id the CT entry keeps.
    dp.test_run(Program::FromContainer, &ack, &from_a().repeat(4))
        .unwrap();
    dp.test_run(Program::FromContainer, &denied, &from_a())
        .unwrap();
    let m = dp.endpoint_metrics().unwrap();
    let get = |ep: u16, d: TrafficDirection| {
        m.iter()
            .find(|x| x.endpoint == ep && x.direction == d)
            .copied()
            .unwrap_or_else(|| panic!("no counters for {ep} {d}: {m:?}"))
    };
    let a_out = get(A_EP, TrafficDirection::Egress);
    assert_eq!(a_out.forwarded_packets, 5);
    assert_eq!(a_out.forwarded_bytes, 5 * ok.len() as u64);
    let b_in = get(B_EP, TrafficDirection::Ingress);
    assert_eq!((b_in.forwarded_packets, b_in.dropped_packets), (5, 1));
    assert_eq!(b_in.dropped_bytes, denied.len() as u64);

    let text = dp.prometheus().unwrap();
    println!("{text}");
    for want in [
        "# TYPE cilium_drop_count_total counter",
        "cilium_drop_count_total{direction=\"INGRESS\",reason=\"Policy denied\"} 1",
        "cilium_forward_count_total{direction=\"EGRESS\"} 5",
        "podnet_endpoint_forward_count_total{direction=\"EGRESS\",endpoint=\"1001\"} 5",
        "podnet_endpoint_drop_count_total{direction=\"INGRESS\",endpoint=\"1002\"} 1",
        "cilium_bpf_map_pressure{map_name=\"cilium_ct4_global\"} ",
        "cilium_bpf_map_pressure{map_name=\"podnet_lxc\"} ",
        "podnet_events_lost_total{reason=\"ring_full\"} 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Every sample line is `name{labels} value` with a number.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
    let p = dp.map_pressure().unwrap();
    let ct = p.iter().find(|p| p.map == "cilium_ct4_global").unwrap();
    // 47000: egress and ingress entries; 47001: egress only (ingress denied).
    assert_eq!(ct.entries, 3, "{p:?}");
    assert_eq!(ct.max_entries, 4096);
}

/// Another process reads the events through the pins: the monitor
/// example, run as a child, prints the drop in `cilium monitor`'s text.
#[test]
fn monitor_example_in_another_process_prints_the_drop() {
    require_privileges!();
    let monitor = monitor_example();
    let (dir, dp, _ev) = setup("ev-child", |o| o);
    let child = std::process::Command::new(&monitor)
        .arg(dir.join("globals"))
        .args([
            "--type",
            "drop",
            "--to",
            "1002",
            "--count",
            "1",
            "--timeout",
            "10",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it open the pins, then drop a packet.
    std::thread::sleep(Duration::from_millis(500));
    let pkt = a_to(b4(), 6, &tcp(48000, 80, 0x02));
    dp.test_run(Program::FromContainer, &pkt, &from_a())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("xx drop (Policy denied)")
            && text.contains("identity 5001->5002: 10.1.0.2:48000 -> 10.1.0.3:80 tcp SYN"),
        "{text}"
    );
}

/// The monitor example's binary, built now by cargo (a no-op when it is
/// up to date; `cargo test --all-targets` builds examples as test harnesses,
/// which take no such arguments).
fn monitor_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples/monitor");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = std::process::Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "podnet-datapath",
            "--example",
            "monitor",
        ])
        .status()
        .unwrap();
    assert!(st.success(), "building the monitor example");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}
