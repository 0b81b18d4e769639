//! Headline benchmarks of the `datapath` area.
//!
//! * ns/packet of `from_container` for an established TCP flow (the pod's
//!   own connection to a pod on another node: forward conntrack hit, endpoint
//!   lookup, metrics, hand to the stack), via BPF_PROG_TEST_RUN with repeat,
//!   against `tc_pass` (returns TC_ACT_OK) on the same packet in the same run.
//!   Goal: at most 4x.
//! * The same for a reply packet at `to_container` (conntrack reply, no
//!   policy), reported against the same baseline.
//! * The floor under both: `tc_ct_lookup`, which only parses the packet to
//!   its ports and looks its flow up in the conntrack map, once (no update,
//!   no endpoint, no metrics). What any conntrack-ing datapath pays per
//!   packet at the least, against the same baseline.
//!
//! * Cross-node pod-to-pod TCP throughput (iperf3) with the datapath attached
//!   on both nodes (skip-FIB mode), against the same topology forwarded by
//!   plain kernel routing without BPF. Goal: at least 0.9x.
//! * Request/response latency (ping round trip, 0.01 s interval) on the same
//!   pair. Goal: at most 1.1x the plain-routing figure.
//!
//! Repetitions: 2M per measurement (`cargo bench`), 20k in quick mode; the
//! figure is the median of 9 interleaved rounds (quick: 3) of the kernel's own per-run
//! average. iperf3 runs 5 s, best of 3 alternating rounds (quick: 1 s, once);
//! ping: median of 9 alternating rounds of 50 probes' mean (quick: 1 round).

use std::net::Ipv4Addr;

use datapath_bpf::{
    Datapath, Endpoint, EndpointFlags, Hook, IpcacheInfo, Options, Program, TestContext,
};
use testsupport::{pod_link, veth, BpfDir, Netns};

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A datapath loaded for the program benchmarks, with the pod, 200 more
/// endpoints (a realistic map population) and one established TCP flow from
/// the pod to a remote pod.
struct Established {
    dp: Datapath,
    _dir: BpfDir,
}

const POD: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 7);

impl Established {
    fn new(tag: &str, ct_accounting: bool) -> Established {
        let dir = BpfDir::new(tag);
        let mut o = Options::small(dir.join("globals"));
        o.ct_accounting = ct_accounting;
        let dp = Datapath::load(&o).expect("loading the datapath");
        for i in 0..=200u32 {
            let ip = if i == 0 {
                POD
            } else {
                Ipv4Addr::from(0x0a01_0100 + i)
            };
            dp.upsert_endpoint(&Endpoint {
                ip: ip.into(),
                ifindex: if i == 0 { POD_IF } else { 100 + i },
                mac: POD_MAC,
                node_mac: NODE_MAC,
                id: 1 + i as u16,
                identity: 1001 + i,
                flags: EndpointFlags::empty(),
            })
            .expect("endpoint");
        }
        // SYN out, SYN-ACK back (to-container), ACK out.
        let syn = tcp_packet(POD, REMOTE, 40000, 443, 0x02, 0);
        let synack = tcp_packet(REMOTE, POD, 443, 40000, 0x12, 0);
        dp.test_run(Program::FromContainer, &syn, &from_pod())
            .expect("syn");
        dp.test_run(Program::ToContainer, &synack, &TestContext::default())
            .expect("syn-ack");
        let e = Established { dp, _dir: dir };
        assert_eq!(e.run(Program::FromContainer, &ack(), 1), 0);
        assert_eq!(e.dp.ct4_entries(true).expect("ct").len(), 1, "one flow");
        assert_eq!(e.run(Program::CtLookup, &ack(), 1), 0, "the floor finds it");
        e
    }

    /// The program's return value, for `repeat` 1.
    fn run(&self, prog: Program, pkt: &[u8], repeat: u32) -> u32 {
        self.test_run(prog, pkt, repeat).retval
    }

    fn test_run(&self, prog: Program, pkt: &[u8], repeat: u32) -> datapath_bpf::TestOutput {
        let ctx = TestContext {
            repeat,
            ..if prog == Program::ToContainer {
                TestContext::default()
            } else {
                from_pod()
            }
        };
        self.dp
            .test_run(prog, pkt, &ctx)
            .expect("BPF_PROG_TEST_RUN")
    }

    /// The kernel's average ns per run over `repeat` runs.
    fn ns_per_packet(&self, prog: Program, pkt: &[u8], repeat: u32) -> f64 {
        self.test_run(prog, pkt, repeat).duration.as_nanos() as f64
    }
}

fn from_pod() -> TestContext {
    TestContext {
        ingress_ifindex: POD_IF,
        ..Default::default()
    }
}

/// The pod's 1054-byte ACK of the established flow.
fn ack() -> Vec<u8> {
    tcp_packet(POD, REMOTE, 40000, 443, 0x10, 1000)
}

/// ns/packet of the programs via BPF_PROG_TEST_RUN.
pub fn run_programs(report: &mut Report) {
    let repeat = report.size(2_000_000, 20_000) as u32;
    let exact = Established::new("bench-dp", true);
    let uncounted = Established::new("bench-dp-noacct", false);
    let (ack, reply) = (ack(), tcp_packet(REMOTE, POD, 443, 40000, 0x10, 1000));

    // Every measurement, run once per round in an order that reverses from
    // round to round, so that none always follows the same other one.
    let runs: [(&Established, Program, &[u8]); 5] = [
        (&exact, Program::Pass, &ack),
        (&exact, Program::FromContainer, &ack),
        (&uncounted, Program::FromContainer, &ack),
        (&exact, Program::ToContainer, &reply),
        (&exact, Program::CtLookup, &ack),
    ];
    let mut ns = vec![Vec::new(); runs.len()];
    for round in 0..report.size(9, 3) {
        let mut order: Vec<usize> = (0..runs.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (e, prog, pkt) = runs[i];
            ns[i].push(e.ns_per_packet(prog, pkt, repeat));
        }
    }
    let mut medians = ns.into_iter().map(median);
    let base = medians.next().unwrap_or(f64::NAN);
    let rows = [
        (
            format!("from-container, established TCP flow, BPF_PROG_TEST_RUN x{repeat}"),
            Goal::RatioAtMost(4.0),
        ),
        (
            format!("the same with ct_accounting off (no per-flow counters), x{repeat}"),
            Goal::None,
        ),
        (
            format!("to-container, reply of an established flow, x{repeat}"),
            Goal::None,
        ),
        (
            format!("floor: parse + one conntrack lookup (tc_ct_lookup), x{repeat}"),
            Goal::None,
        ),
    ];
    for ((figure, goal), ours) in rows.into_iter().zip(medians) {
        report.add(Row {
            area: "datapath",
            figure,
            ours,
            baseline_name: "tc program returning TC_ACT_OK".into(),
            baseline: base,
            unit: "ns/pkt",
            goal,
        });
    }
    for e in [exact, uncounted] {
        if let Err(err) = e.dp.teardown() {
            eprintln!("datapath bench teardown: {err}");
        }
    }
}

/// Throughput and latency of real traffic, with and without the datapath.
pub fn run_traffic(report: &mut Report) {
    let secs = report.size(5, 1);
    let rounds = report.size(3, 1);
    let ping_rounds = report.size(9, 1);
    let probes = 50;
    // Both topologies exist side by side; runs alternate so that load from
    // elsewhere on the machine hits both alike.
    let plain = Topology::new(false);
    let bpf = Topology::new(true);
    let (mut tp, mut tb, mut rp, mut rb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        tp.push(plain.iperf(secs));
        tb.push(bpf.iperf(secs));
    }
    for _ in 0..ping_rounds {
        rp.push(plain.rtt(probes));
        rb.push(bpf.rtt(probes));
    }
    let max = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::max);
    report.add(Row {
        area: "datapath",
        figure: format!("cross-node pod-to-pod TCP throughput, iperf3 {secs} s, best of {rounds}"),
        ours: max(tb),
        baseline_name: "plain kernel routing, same topology".into(),
        baseline: max(tp),
        unit: "Gbit/s",
        goal: Goal::RatioAtLeast(0.9),
    });
    report.add(Row {
        area: "datapath",
        figure: format!(
            "cross-node pod-to-pod ping RTT, median of {ping_rounds} alternating rounds of {probes}"
        ),
        ours: median(rb),
        baseline_name: "plain kernel routing, same topology".into(),
        baseline: median(rp),
        unit: "us",
        goal: Goal::RatioAtMost(1.1),
    });
    drop((plain, bpf));
}

/// Two nodes joined by an underlay veth, one pod each (the topology of
/// datapath-bpf's traffic test), with or without the datapath.
struct Topology {
    pods: [Netns; 2],
    _nodes: [Netns; 2],
    dps: Vec<Datapath>,
    _pins: BpfDir,
}

const IPS: [&str; 2] = ["10.1.0.2", "10.2.0.2"];

impl Topology {
    fn new(with_bpf: bool) -> Topology {
        let n = [Netns::new("bn1"), Netns::new("bn2")];
        let pods = [Netns::new("bp1"), Netns::new("bp2")];
        veth(&n[0], "eth0", &n[1], "eth0");
        let pins = BpfDir::new("bench-dp-x");
        let mut dps = Vec::new();
        for i in 0..2 {
            let node = &n[i];
            node.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
            node.ip(&[
                "addr",
                "add",
                &format!("192.168.100.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            node.ip(&[
                "route",
                "add",
                &format!("10.{}.0.0/24", 2 - i),
                "via",
                &format!("192.168.100.{}", 2 - i),
                "dev",
                "eth0",
            ]);
            let gateway = "169.254.1.1".parse().expect("address");
            let ip = IPS[i].parse().expect("address");
            let link = pod_link(node, "lxc0", &pods[i], ip, gateway);
            node.ip(&[
                "route",
                "add",
                &format!("{}/32", IPS[i]),
                "dev",
                "lxc0",
                "scope",
                "link",
            ]);
            if with_bpf {
                let mut o = Options::small(pins.join(&format!("n{i}")));
                o.skip_fib = true;
                let mut dp = Datapath::load(&o).expect("load");
                let lxc = node.ifindex("lxc0");
                let eth0 = node.ifindex("eth0");
                dp.upsert_endpoint(&Endpoint {
                    ip: IPS[i].parse().expect("ip"),
                    ifindex: lxc,
                    mac: link.pod_mac,
                    node_mac: link.lxc_mac,
                    id: 1 + i as u16,
                    identity: 1001 + i as u32,
                    flags: EndpointFlags::empty(),
                })
                .expect("endpoint");
                dp.upsert_ipcache(
                    IPS[1 - i].parse().expect("ip"),
                    32,
                    &IpcacheInfo {
                        identity: 1002 - i as u32,
                        tunnel_endpoint: None,
                    },
                )
                .expect("ipcache");
                node.run(|| {
                    dp.attach(lxc, Hook::FromContainer).expect("attach");
                    dp.attach(lxc, Hook::ToContainer).expect("attach");
                    dp.attach(eth0, Hook::FromNetdev).expect("attach");
                });
                dps.push(dp);
            }
        }
        Topology {
            pods,
            _nodes: n,
            dps,
            _pins: pins,
        }
    }

    /// iperf3 pod 1 -> pod 2, Gbit/s.
    fn iperf(&self, secs: usize) -> f64 {
        let mut server = self.pods[1].spawn("iperf3", &["-s", "-1"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = self.pods[0].exec("iperf3", &["-c", IPS[1], "-t", &secs.to_string(), "-J"]);
        let _ = server.kill();
        let _ = server.wait();
        let json = String::from_utf8_lossy(&out.stdout);
        json.find("\"sum_received\"")
            .and_then(|at| {
                let rest = &json[at..];
                let b = rest.find("\"bits_per_second\":")? + "\"bits_per_second\":".len();
                let num: String = rest[b..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
                    .collect();
                num.parse::<f64>().ok()
            })
            .map_or(f64::NAN, |bps| bps / 1e9)
    }

    /// Mean ping RTT pod 1 -> pod 2, microseconds.
    fn rtt(&self, probes: usize) -> f64 {
        let ping = self.pods[0].exec(
            "ping",
            &["-q", "-c", &probes.to_string(), "-i", "0.01", IPS[1]],
        );
        let text = String::from_utf8_lossy(&ping.stdout);
        // rtt min/avg/max/mdev = 0.031/0.046/0.120/0.011 ms
        text.lines()
            .find(|l| l.contains("min/avg/max"))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.trim().split('/').nth(1))
            .and_then(|avg| avg.parse::<f64>().ok())
            .map_or(f64::NAN, |ms| ms * 1000.0)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for dp in self.dps.drain(..) {
            let _ = dp.teardown();
        }
    }
}
