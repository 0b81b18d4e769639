//! Headline benchmarks of the `datapath` area.
//!
//! * ns/packet of `from_container` for an established TCP flow (the pod's
//!   own connection to a pod on another node: conntrack hit, endpoint
//!   lookup, metrics, hand to the stack), via BPF_PROG_TEST_RUN with repeat,
//!   against `tc_pass` (returns TC_ACT_OK) on the same packet in the same run.
//!   Goal: at most 4x.
//! * The same for a reply packet at `to_container` (conntrack reply, no
//!   policy), reported against the same baseline.
//!
//! Repetitions: 2M per measurement (`cargo bench`), 20k in quick mode; the
//! figure is the median of 5 interleaved rounds of the kernel's own per-run
//! average.

use std::net::Ipv4Addr;

use datapath_bpf::{Datapath, Endpoint, EndpointFlags, Options, Program, TestContext};
use testsupport::BpfDir;

use crate::report::{Goal, Report, Row};

const POD_IF: u32 = 10;
const POD_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 2];

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + TCP (20 bytes) + `payload` zero bytes.
fn tcp_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: usize,
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&NODE_MAC);
    p.extend_from_slice(&POD_MAC);
    p.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    p.extend_from_slice(&tcp);
    p.resize(p.len() + payload, 0);
    p
}

fn ns_per_packet(dp: &Datapath, prog: Program, pkt: &[u8], ctx: &TestContext) -> f64 {
    let out = dp.test_run(prog, pkt, ctx).expect("BPF_PROG_TEST_RUN");
    out.duration.as_nanos() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(report: &mut Report) {
    let repeat = report.size(2_000_000, 20_000) as u32;
    let dir = BpfDir::new("bench-dp");
    let dp = Datapath::load(&Options::small(dir.join("globals"))).expect("loading the datapath");
    let pod: Ipv4Addr = "10.1.0.2".parse().unwrap();
    let remote: Ipv4Addr = "10.2.0.7".parse().unwrap();
    dp.upsert_endpoint(&Endpoint {
        ip: pod.into(),
        ifindex: POD_IF,
        mac: POD_MAC,
        node_mac: NODE_MAC,
        id: 1,
        identity: 1001,
        flags: EndpointFlags::empty(),
    })
    .expect("endpoint");
    // Some realistic map population.
    for i in 0..200u32 {
        let ip = Ipv4Addr::from(0x0a01_0100 + i);
        let _ = dp.upsert_endpoint(&Endpoint {
            ip: ip.into(),
            ifindex: 100 + i,
            mac: POD_MAC,
            node_mac: NODE_MAC,
            id: 2 + i as u16,
            identity: 2000 + i,
            flags: EndpointFlags::empty(),
        });
    }

    let from_pod = TestContext {
        ingress_ifindex: POD_IF,
        ..Default::default()
    };
    // Establish the flow: SYN out, SYN-ACK back (to-container), ACK out.
    let syn = tcp_packet(pod, remote, 40000, 443, 0x02, 0);
    let synack = tcp_packet(remote, pod, 443, 40000, 0x12, 0);
    let ack = tcp_packet(pod, remote, 40000, 443, 0x10, 1000);
    let reply = tcp_packet(remote, pod, 443, 40000, 0x10, 1000);
    dp.test_run(Program::FromContainer, &syn, &from_pod)
        .expect("syn");
    dp.test_run(Program::ToContainer, &synack, &TestContext::default())
        .expect("syn-ack");
    assert_eq!(
        dp.test_run(Program::FromContainer, &ack, &from_pod)
            .expect("ack")
            .retval,
        0
    );
    assert_eq!(
        dp.ct4_entries(true).expect("ct").len(),
        1,
        "one established flow"
    );

    let run_ctx = TestContext { repeat, ..from_pod };
    let reply_ctx = TestContext {
        repeat,
        ..Default::default()
    };
    let (mut ours, mut ours_rx, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        base.push(ns_per_packet(&dp, Program::Pass, &ack, &run_ctx));
        ours.push(ns_per_packet(&dp, Program::FromContainer, &ack, &run_ctx));
        ours_rx.push(ns_per_packet(&dp, Program::ToContainer, &reply, &reply_ctx));
    }
    let base = median(base);
    report.add(Row {
        area: "datapath",
        figure: format!("from-container, established TCP flow, BPF_PROG_TEST_RUN x{repeat}"),
        ours: median(ours),
        baseline_name: "tc program returning TC_ACT_OK".into(),
        baseline: base,
        unit: "ns/pkt",
        goal: Goal::RatioAtMost(4.0),
    });
    report.add(Row {
        area: "datapath",
        figure: format!("to-container, reply of an established flow, x{repeat}"),
        ours: median(ours_rx),
        baseline_name: "tc program returning TC_ACT_OK".into(),
        baseline: base,
        unit: "ns/pkt",
        goal: Goal::None,
    });
    if let Err(e) = dp.teardown() {
        eprintln!("datapath bench teardown: {e}");
    }
}
