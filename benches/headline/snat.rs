//! Headline benchmarks of BPF masquerade (issue #12).
//!
//! * ns/packet of an established masqueraded TCP flow, both directions,
//!   against an established non-NAT flow of the same pod in the same
//!   datapath and rounds. Egress: from-container then to-netdev (SNAT)
//!   against from-container then to-netdev on a flow to a remote pod (the
//!   native-routing CIDR check only). Ingress: from-netdev on the reply
//!   (reverse SNAT, then delivery to the pod) against from-netdev on the
//!   remote pod's reply. BPF_PROG_TEST_RUN repeats a program on one skb, so
//!   a rewrite of the first repetition would be seen by the next: every
//!   figure is the median of single runs on fresh copies (2000 per round,
//!   quick: 200), 21 rounds (quick: 3). Goal: at most 1.5x.
//! * ns/packet of to-netdev on a later fragment of a masqueraded datagram
//!   (its ports from the fragment map, its address rewritten) against
//!   to-netdev on the same flow's unfragmented packet; reported only.
//! * Pod to outside, one node, one pod, the outside beyond the cluster CIDR:
//!   TCP throughput (iperf3, 3 s runs; quick 1 s) and TCP request/response
//!   (1 byte each way, 20000 back to back; quick 500) with the datapath
//!   masquerading, against the same topology with no BPF and the kernel's
//!   `iptables -t nat -A POSTROUTING -s <pod CIDR> -o eth0 -j MASQUERADE`.
//!   Goals: throughput at least 1.0x, latency at most 1.0x. Client and
//!   server run on the same CPU for both contenders.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use podnet_datapath::{Datapath, Endpoint, Hook, Masquerade, Options, Program, TestContext};
use testsupport::{pod_link, veth, BpfDir, Netns};

use crate::datapath::{csum, tcp_packet, NODE_MAC, POD_MAC};
use crate::report::{Goal, Report};
use crate::rounds::{alternate_until, mean, pieces, single_pairs, Record, Rounds, Samples};

const POD_IF: u32 = 10;
const POD: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 7);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
/// Test runs happen on the loopback device.
const LO: u32 = 1;

/// The kernel's time of one run of `prog` on `pkt`, and its output.
fn single(dp: &Datapath, prog: Program, pkt: &[u8], ctx: &TestContext) -> (f64, Vec<u8>) {
    let out = dp.test_run(prog, pkt, ctx).expect("BPF_PROG_TEST_RUN");
    (out.duration.as_nanos() as f64, out.data)
}

/// The BPF_PROG_TEST_RUN rows (area `datapath-snat-programs`).
pub fn run_programs(report: &mut Report) {
    let dir = BpfDir::new("bench-snat");
    let m = Masquerade::new()
        .ipv4(true)
        .ipv4_native_routing_cidr("10.0.0.0/8".parse().expect("prefix"));
    let dp = Datapath::load(&Options::small(dir.join("globals")).masquerade(m)).expect("load");
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
    dp.set_masquerade_address(LO, NODE.into())
        .expect("masquerade address");
    let from_pod = TestContext::new().ingress_ifindex(POD_IF);
    let lo = TestContext::new();
    // Both flows: SYN out (through to-netdev), SYN-ACK in (from-netdev).
    for (peer, reply_to) in [(OUTSIDE, NODE), (REMOTE, POD)] {
        let syn = tcp_packet(POD, peer, 40000, 443, 0x02, 0);
        let (_, out) = single(&dp, Program::FromContainer, &syn, &from_pod);
        let (_, out) = single(&dp, Program::ToNetdev, &out, &lo);
        assert_eq!(&out[26..30], &reply_to.octets(), "source after to-netdev");
        let synack = tcp_packet(peer, reply_to, 443, 40000, 0x12, 0);
        let (_, back) = single(&dp, Program::FromNetdev, &synack, &lo);
        assert_eq!(&back[30..34], &POD.octets(), "reply delivered to the pod");
    }
    assert_eq!(
        dp.snat4_entries().expect("nat").len(),
        2,
        "one masqueraded flow"
    );

    let masq_ack = tcp_packet(POD, OUTSIDE, 40000, 443, 0x10, 1000);
    let plain_ack = tcp_packet(POD, REMOTE, 40000, 443, 0x10, 1000);
    let masq_reply = tcp_packet(OUTSIDE, NODE, 443, 40000, 0x10, 1000);
    let plain_reply = tcp_packet(REMOTE, POD, 443, 40000, 0x10, 1000);
    // A datagram of the masqueraded flow in two fragments: the first (its
    // TCP header) once through to-netdev to remember its ports, the second
    // measured.
    let first = fragment(&masq_ack, 0x4321, 0, true);
    let later = fragment(&masq_ack, 0x4321, 1480 / 8, false);
    let (_, out) = single(&dp, Program::ToNetdev, &first, &lo);
    assert_eq!(&out[26..30], &NODE.octets(), "first fragment translated");
    let (_, out) = single(&dp, Program::ToNetdev, &later, &lo);
    assert_eq!(&out[26..30], &NODE.octets(), "later fragment translated");
    let n = report.size(2000, 200);
    // Each pair's single runs interleave (`single_pairs`): their noise
    // comes and goes within a round.
    let egress = |ack: &[u8]| -> f64 {
        let (a, out) = single(&dp, Program::FromContainer, ack, &from_pod);
        let (b, _) = single(&dp, Program::ToNetdev, &out, &lo);
        a + b
    };
    let to_netdev = |pkt: &[u8]| single(&dp, Program::ToNetdev, pkt, &lo).0;
    let ingress = |reply: &[u8]| single(&dp, Program::FromNetdev, reply, &lo).0;
    let rows = |samples: &Samples| {
        vec![
            samples.row(
                "datapath",
                format!("masquerade egress: from-container + to-netdev, established flow to the outside, median of {n} single runs"),
                "masq out",
                "the same pod's established flow to a remote pod (from-container + to-netdev)",
                "plain out",
                "ns/pkt",
                Goal::RatioAtMost(1.5),
            ),
            samples.row(
                "datapath",
                format!("masquerade ingress: from-netdev, reply of the outside (reverse SNAT, delivery), median of {n} single runs"),
                "masq in",
                "from-netdev, reply of the remote pod (delivery)",
                "plain in",
                "ns/pkt",
                Goal::RatioAtMost(1.5),
            ),
            samples.row(
                "datapath",
                format!("masquerade of a later fragment: to-netdev (fragment map, address rewrite), median of {n} single runs"),
                "later frag",
                "to-netdev on the same flow's unfragmented packet",
                "to-netdev",
                "ns/pkt",
                Goal::None,
            ),
        ]
    };
    report.add_all(alternate_until(
        report.plan_of(21, 2),
        &mut [
            &mut |r: &mut Record<'_>| {
                let [plain, masq] =
                    single_pairs(n, [&mut || egress(&plain_ack), &mut || egress(&masq_ack)]);
                r.put("plain out", plain);
                r.put("masq out", masq);
            },
            &mut |r: &mut Record<'_>| {
                let [plain, masq] = single_pairs(
                    n,
                    [&mut || ingress(&plain_reply), &mut || ingress(&masq_reply)],
                );
                r.put("plain in", plain);
                r.put("masq in", masq);
            },
            &mut |r: &mut Record<'_>| {
                let [whole, later] =
                    single_pairs(n, [&mut || to_netdev(&masq_ack), &mut || to_netdev(&later)]);
                r.put("to-netdev", whole);
                r.put("later frag", later);
            },
        ],
        &rows,
    ));
    if let Err(e) = dp.teardown() {
        eprintln!("snat bench teardown: {e}");
    }
}

/// IPv4 packet `pkt` (Ethernet, 20-byte header) as a fragment of datagram
/// `id` at `offset` (8-byte units): the first carries the L4 header; a
/// later one the same bytes as payload (any will do).
fn fragment(pkt: &[u8], id: u16, offset: u16, more: bool) -> Vec<u8> {
    let mut p = pkt.to_vec();
    p[18..20].copy_from_slice(&id.to_be_bytes());
    p[20..22].copy_from_slice(&(offset | if more { 0x2000 } else { 0 }).to_be_bytes());
    p[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&p[14..34]);
    p[24..26].copy_from_slice(&c.to_be_bytes());
    p
}

/// The CPU client and server run on, for both contenders.
const CPU: usize = 0;

fn pin_thread() {
    // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(CPU, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// What masquerades the pod's traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bpf,
    Iptables,
}

/// A node with one pod (10.1.0.2) and, on its `eth0`, the outside
/// (192.168.77.2, beyond the cluster CIDR, no route to the pod CIDR).
struct Topology {
    pod: Netns,
    outside: Netns,
    _node: Netns,
    dp: Option<Datapath>,
    _pins: BpfDir,
}

const OUT_IP: &str = "192.168.77.2";

impl Topology {
    fn new(kind: Kind) -> Topology {
        let node = Netns::new("bsn");
        let pod = Netns::new("bsp");
        let outside = Netns::new("bso");
        veth(&node, "eth0", &outside, "eth0");
        node.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        node.add_address("192.168.77.1/24", "eth0");
        outside.add_address(&format!("{OUT_IP}/24"), "eth0");
        let gateway = "169.254.1.1".parse().expect("address");
        let link = pod_link(&node, "lxc0", &pod, POD.into(), gateway);
        node.add_route(&format!("{POD}/32 dev lxc0 scope link"));
        let pins = BpfDir::new("bench-snat-x");
        let mut dp = None;
        match kind {
            Kind::Iptables => {
                node.exec_ok(
                    "iptables",
                    &[
                        "-t",
                        "nat",
                        "-A",
                        "POSTROUTING",
                        "-s",
                        "10.1.0.0/24",
                        "-o",
                        "eth0",
                        "-j",
                        "MASQUERADE",
                    ],
                );
            }
            Kind::Bpf => {
                let m = Masquerade::new()
                    .ipv4(true)
                    .interfaces(["eth+"])
                    .ipv4_native_routing_cidr("10.0.0.0/8".parse().expect("prefix"));
                let o = Options::small(pins.join("n")).skip_fib(true).masquerade(m);
                let mut d = Datapath::load(&o).expect("load");
                let lxc = node.ifindex("lxc0");
                let eth0 = node.ifindex("eth0");
                d.upsert_endpoint(
                    &Endpoint::new(POD.into(), lxc)
                        .mac(link.pod_mac)
                        .node_mac(link.lxc_mac)
                        .id(1)
                        .identity(1001),
                )
                .expect("endpoint");
                node.run(|| {
                    d.attach(lxc, Hook::FromContainer).expect("attach");
                    d.attach(lxc, Hook::ToContainer).expect("attach");
                    d.attach(eth0, Hook::FromNetdev).expect("attach");
                    d.attach(eth0, Hook::ToNetdev).expect("attach");
                });
                dp = Some(d);
            }
        }
        Topology {
            pod,
            outside,
            _node: node,
            dp,
            _pins: pins,
        }
    }

    /// iperf3 pod -> outside, Gbit/s.
    fn iperf(&self, secs: usize) -> f64 {
        let mut server = self.outside.spawn("iperf3", &["-s", "-1"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let cpus = format!("{CPU},{CPU}");
        let out = self.pod.exec(
            "iperf3",
            &["-c", OUT_IP, "-t", &secs.to_string(), "-A", &cpus, "-J"],
        );
        let _ = server.kill();
        let _ = server.wait();
        let json = String::from_utf8_lossy(&out.stdout);
        let Some(end) = json.rfind("\"sum_received\"") else {
            eprintln!(
                "iperf3 printed no result: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return f64::NAN;
        };
        let pat = "\"bits_per_second\":";
        let Some(at) = json[end..].find(pat).map(|a| a + end + pat.len()) else {
            return f64::NAN;
        };
        let num: String = json[at..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
            .collect();
        num.parse::<f64>().map_or(f64::NAN, |b| b / 1e9)
    }

    /// A warmed-up request/response connection pod -> outside.
    fn rr_connect(&self, port: u16) -> (TcpStream, std::thread::JoinHandle<()>) {
        let addr: SocketAddr = format!("{OUT_IP}:{port}").parse().expect("address");
        let listener = self
            .outside
            .run(|| TcpListener::bind(addr))
            .expect("listen");
        let server = std::thread::spawn(move || {
            pin_thread();
            let (mut s, _) = listener.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).is_ok() {
                if s.write_all(&b).is_err() {
                    break;
                }
            }
        });
        let c = self.pod.run(|| TcpStream::connect(addr)).expect("connect");
        c.set_nodelay(true).expect("nodelay");
        let mut conn = (c, server);
        rr(&mut conn.0, 10);
        conn
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(dp) = self.dp.take() {
            let _ = dp.teardown();
        }
    }
}

/// `n` one-byte request/responses back to back: mean microseconds each.
fn rr(c: &mut TcpStream, n: usize) -> f64 {
    let mut b = [7u8; 1];
    let start = Instant::now();
    for _ in 0..n {
        c.write_all(&b)
            .and_then(|()| c.read_exact(&mut b))
            .expect("exchange");
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// The pod-to-outside traffic rows (area `datapath-snat-traffic`).
pub fn run_traffic(report: &mut Report) {
    let bpf = Topology::new(Kind::Bpf);
    let ipt = Topology::new(Kind::Iptables);
    let secs = report.size(3, 1);
    // A round's `secs` of traffic per topology go in pieces of 1 s, the
    // two taking turns (`rounds::pieces`).
    let each = 1;
    let turns = secs / each;
    let rows = |samples: &Samples| {
        vec![samples.row(
            "datapath",
            format!("pod to outside TCP throughput, masqueraded by BPF, iperf3 {turns} x {each} s taking turns, client and server on CPU {CPU}"),
            "bpf",
            "the same with iptables MASQUERADE, no BPF",
            "ipt",
            "Gbit/s",
            Goal::RatioAtLeast(1.0),
        )]
    };
    report.add_all(alternate_until(
        report.plan(Rounds::Network, 2),
        &mut [&mut |r: &mut Record<'_>| {
            let [i, b] = pieces(
                turns,
                r.round() % 2,
                [&mut || ipt.iperf(each), &mut || bpf.iperf(each)],
            );
            r.put("ipt", mean(i));
            r.put("bpf", mean(b));
        }],
        &rows,
    ));

    // The request/response client runs on this thread: pin it for the row
    // and give it its old affinity back, so the rows after this one (and the
    // report's core count) see the whole machine.
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a cpu_set_t of the size given.
    unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) };
    pin_thread();
    let transactions = report.size(20_000, 500);
    let (mut cb, sb) = bpf.rr_connect(7101);
    let (mut ci, si) = ipt.rr_connect(7102);
    let rows = |samples: &Samples| {
        vec![samples.row(
            "datapath",
            format!("pod to outside TCP request/response (1 byte each way, {transactions} back to back), masqueraded by BPF"),
            "bpf",
            "the same with iptables MASQUERADE, no BPF",
            "ipt",
            "us",
            Goal::RatioAtMost(1.0),
        )]
    };
    let made = alternate_until(
        report.plan_of(16, 2),
        &mut [
            &mut |r: &mut Record<'_>| r.put("ipt", rr(&mut ci, transactions)),
            &mut |r: &mut Record<'_>| r.put("bpf", rr(&mut cb, transactions)),
        ],
        &rows,
    );
    drop((cb, ci));
    let _ = (sb.join(), si.join());
    // SAFETY: `old` is the affinity read above.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &old) };
    report.add_all(made);
}
