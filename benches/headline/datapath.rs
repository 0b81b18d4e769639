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
//! * Request/response latency on the same pair, two ways, each against
//!   plain routing with goal at most 1.1x: a TCP request/response of one
//!   byte each way repeated back to back on one connection (netperf's
//!   TCP_RR), and ping round trips 10 ms apart. The second mostly measures
//!   how the idle VM wakes up to a lone packet, so the same topology with
//!   `tc_pass` on the datapath's hooks is measured too: what the hooks alone
//!   cost, with a program that does nothing.
//!
//! Repetitions: 2M per measurement (`cargo bench`), 20k in quick mode; the
//! figure is the median of 9 interleaved rounds (quick: 3) of the kernel's own per-run
//! average. iperf3 runs 5 s, best of 3 alternating rounds (quick: 1 s, once);
//! latency: median of 9 alternating rounds (quick: 1) of the mean of 5000
//! request/responses (quick: 500) and of 50 pings.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use podnet_datapath::{
    CtTable, Datapath, Endpoint, Hook, IpcacheInfo, Options, Program, TestContext,
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
        let o = Options::small(dir.join("globals")).ct_accounting(ct_accounting);
        let dp = Datapath::load(&o).expect("loading the datapath");
        for i in 0..=200u32 {
            let ip = if i == 0 {
                POD
            } else {
                Ipv4Addr::from(0x0a01_0100 + i)
            };
            dp.upsert_endpoint(
                &Endpoint::new(ip.into(), if i == 0 { POD_IF } else { 100 + i })
                    .mac(POD_MAC)
                    .node_mac(NODE_MAC)
                    .id(1 + i as u16)
                    .identity(1001 + i),
            )
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
        assert_eq!(
            e.dp.ct4_entries(CtTable::Tcp).expect("ct").len(),
            1,
            "one flow"
        );
        assert_eq!(e.run(Program::CtLookup, &ack(), 1), 0, "the floor finds it");
        e
    }

    /// The program's return value, for `repeat` 1.
    fn run(&self, prog: Program, pkt: &[u8], repeat: u32) -> u32 {
        self.test_run(prog, pkt, repeat).retval
    }

    fn test_run(&self, prog: Program, pkt: &[u8], repeat: u32) -> podnet_datapath::TestOutput {
        let ctx = if prog == Program::ToContainer {
            TestContext::new()
        } else {
            from_pod()
        }
        .repeat(repeat);
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
    TestContext::new().ingress_ifindex(POD_IF)
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
    let lat_rounds = report.size(9, 1);
    let (probes, transactions) = (50, report.size(5000, 500));
    // The topologies exist side by side; runs alternate so that load from
    // elsewhere on the machine hits them alike.
    let plain = Topology::new(Kind::Plain);
    let bpf = Topology::new(Kind::Datapath);
    let hooks = Topology::new(Kind::PassHooks);
    let (mut tp, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        tp.push(plain.iperf(secs));
        tb.push(bpf.iperf(secs));
    }
    let mut rtt = [Vec::new(), Vec::new(), Vec::new()];
    let mut rr = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..lat_rounds {
        for (i, t) in [&plain, &bpf, &hooks].into_iter().enumerate() {
            rtt[i].push(t.rtt(probes));
            rr[i].push(t.request_response(transactions));
        }
    }
    let max = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::max);
    let plain_name = || "plain kernel routing, same topology".to_string();
    report.add(Row {
        area: "datapath",
        figure: format!("cross-node pod-to-pod TCP throughput, iperf3 {secs} s, best of {rounds}"),
        ours: max(tb),
        baseline_name: plain_name(),
        baseline: max(tp),
        unit: "Gbit/s",
        goal: Goal::RatioAtLeast(0.9),
    });
    let [rtt_plain, rtt_bpf, rtt_hooks] = rtt.map(median);
    let [rr_plain, rr_bpf, rr_hooks] = rr.map(median);
    let rows = [
        (
            format!("cross-node TCP request/response (1 byte each way, {transactions} back to back), median of {lat_rounds} rounds"),
            rr_bpf,
            rr_plain,
            Goal::RatioAtMost(1.1),
        ),
        (
            format!("cross-node ping RTT, {probes} probes 10 ms apart, median of {lat_rounds} rounds"),
            rtt_bpf,
            rtt_plain,
            Goal::RatioAtMost(1.1),
        ),
        (
            "the same ping with TC_ACT_OK programs on the datapath's hooks instead (what the hooks alone cost)".to_string(),
            rtt_hooks,
            rtt_plain,
            Goal::None,
        ),
        (
            "the same request/response with TC_ACT_OK programs on the hooks".to_string(),
            rr_hooks,
            rr_plain,
            Goal::None,
        ),
    ];
    for (figure, ours, baseline, goal) in rows {
        report.add(Row {
            area: "datapath",
            figure,
            ours,
            baseline_name: plain_name(),
            baseline,
            unit: "us",
            goal,
        });
    }
    drop((plain, bpf, hooks));
}

/// What forwards the pods' traffic in a [`Topology`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Kernel routing only.
    Plain,
    /// The datapath on both nodes (skip-FIB, `bpf_redirect_peer`).
    Datapath,
    /// Kernel routing, with `tc_pass` attached where the datapath's programs
    /// would be: the cost of the hooks themselves.
    PassHooks,
}

/// Two nodes joined by an underlay veth, one pod each (the topology of
/// datapath-bpf's traffic test), forwarded as [`Kind`] says.
struct Topology {
    pods: [Netns; 2],
    _nodes: [Netns; 2],
    dps: Vec<Datapath>,
    _pins: BpfDir,
}

const IPS: [&str; 2] = ["10.1.0.2", "10.2.0.2"];

impl Topology {
    fn new(kind: Kind) -> Topology {
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
            if kind != Kind::Plain {
                let o = Options::small(pins.join(&format!("n{i}"))).skip_fib(true);
                let mut dp = Datapath::load(&o).expect("load");
                let lxc = node.ifindex("lxc0");
                let eth0 = node.ifindex("eth0");
                dp.upsert_endpoint(
                    &Endpoint::new(IPS[i].parse().expect("ip"), lxc)
                        .mac(link.pod_mac)
                        .node_mac(link.lxc_mac)
                        .id(1 + i as u16)
                        .identity(1001 + i as u32),
                )
                .expect("endpoint");
                dp.upsert_ipcache(
                    IPS[1 - i].parse::<std::net::IpAddr>().expect("ip").into(),
                    &IpcacheInfo::new(1002 - i as u32),
                )
                .expect("ipcache");
                node.run(|| {
                    for (ifindex, hook) in [
                        (lxc, Hook::FromContainer),
                        (lxc, Hook::ToContainer),
                        (eth0, Hook::FromNetdev),
                    ] {
                        let program = match kind {
                            Kind::PassHooks => Program::Pass,
                            _ => hook.program(),
                        };
                        dp.attach_program(ifindex, hook, program).expect("attach");
                    }
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

    /// Mean time of a TCP request/response, pod 1 -> pod 2, microseconds:
    /// one byte each way, `n` times back to back on one connection with
    /// Nagle off (netperf's TCP_RR, in process).
    fn request_response(&self, n: usize) -> f64 {
        let addr: SocketAddr = format!("{}:7001", IPS[1]).parse().expect("address");
        let listener = self.pods[1]
            .run(|| TcpListener::bind(addr))
            .expect("listen in pod 2");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).is_ok() {
                if s.write_all(&b).is_err() {
                    break;
                }
            }
        });
        let mut c = self.pods[0]
            .run(|| TcpStream::connect(addr))
            .expect("connect from pod 1");
        c.set_nodelay(true).expect("nodelay");
        let mut b = [7u8; 1];
        // A few warm-up exchanges: connection set-up is not latency.
        for _ in 0..10 {
            c.write_all(&b)
                .and_then(|()| c.read_exact(&mut b))
                .expect("warm-up");
        }
        let start = Instant::now();
        for _ in 0..n {
            c.write_all(&b)
                .and_then(|()| c.read_exact(&mut b))
                .expect("exchange");
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        drop(c);
        let _ = server.join();
        us
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
