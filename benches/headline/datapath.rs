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
//! Every figure over alternating rounds (`rounds.rs`). Programs: 2M
//! repetitions per measurement (`cargo bench`), 20k in quick mode, 21 rounds
//! (quick: 3) of the kernel's own per-run average. iperf3: 3 s runs, 12
//! rounds (quick: 1 s, 3); latency: 16 rounds (quick: 3) of the mean of
//! 20000 request/responses (quick: 500) and of 100 pings (quick: 50), the
//! topologies alternating chunk by chunk within a round (10 chunks of
//! request/responses, 4 of pings). Client and server of
//! every network row run on the same CPU for every contender (iperf3 `-A`,
//! the request/response threads' affinity, `taskset` for ping).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use podnet_datapath::{
    Backend, CtTable, Datapath, Endpoint, Hook, IpcacheInfo, L4Protocol, Options, Program, Service,
    TestContext,
};
use testsupport::{pod_link, veth, BpfDir, Netns};

use crate::report::{cpu_ns_per_run, fmt_ratio, fmt_stat, Goal, Report};
use crate::rounds::{
    alternate, alternate_until, mean, median, pieces, single_pairs, take_turns, Record, Rounds,
    Samples,
};

const POD_IF: u32 = 10;
pub(crate) const POD_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
pub(crate) const NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 2];

/// The Internet checksum of `data` (the other bench areas' packets use it too).
pub(crate) fn csum(data: &[u8]) -> u16 {
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
pub(crate) fn tcp_packet(
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

    /// ns per run over `repeat` runs: the kernel's figure for a single run,
    /// the thread's CPU time per run for more (`report::cpu_ns_per_run`).
    fn ns_per_packet(&self, prog: Program, pkt: &[u8], repeat: u32) -> f64 {
        if repeat <= 1 {
            return self.test_run(prog, pkt, repeat).duration.as_nanos() as f64;
        }
        cpu_ns_per_run(repeat, || {
            self.test_run(prog, pkt, repeat);
        })
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

    // A round is cheap (5 x 0.1 s), so these rows take more rounds than the
    // minimum.
    fn measure<'a>(
        e: &'a Established,
        prog: Program,
        pkt: &'a [u8],
        name: &'a str,
        repeat: u32,
    ) -> impl FnMut(&mut Record<'_>) + 'a {
        move |r: &mut Record<'_>| r.put(name, e.ns_per_packet(prog, pkt, repeat))
    }
    let pass_name = "tc program returning TC_ACT_OK";
    let rows = |samples: &Samples| {
        let mut made = vec![samples.alone(
            "datapath",
            format!("the empty program itself (tc_pass, the test-run loop's own cost on this machine), x{repeat}"),
            "pass",
            "ns/pkt",
            Goal::None,
        )];
        let rows = [
            (
                format!("from-container, established TCP flow, BPF_PROG_TEST_RUN x{repeat}"),
                "from",
                Goal::RatioAtMost(4.0),
            ),
            (
                format!("the same with ct_accounting off (no per-flow counters), x{repeat}"),
                "from noacct",
                Goal::None,
            ),
            (
                format!("to-container, reply of an established flow, x{repeat}"),
                "to",
                Goal::None,
            ),
            (
                format!("floor: parse + one conntrack lookup (tc_ct_lookup), x{repeat}"),
                "floor",
                Goal::None,
            ),
        ];
        for (figure, ours, goal) in rows {
            let mut row = samples
                .row("datapath", figure, ours, pass_name, "pass", "ns/pkt", goal)
                .note(format!(
                    "{} ns above the empty program",
                    fmt_stat(&samples.difference(ours, "pass"))
                ));
            if ours != "floor" {
                row = row.note(format!(
                    "{} tc_ct_lookup",
                    fmt_ratio(&samples.ratio(ours, "floor"))
                ));
            }
            made.push(row);
        }
        made
    };
    report.add_all(alternate_until(
        report.plan_of(21, 3),
        &mut [
            &mut measure(&exact, Program::Pass, &ack, "pass", repeat),
            &mut measure(&exact, Program::FromContainer, &ack, "from", repeat),
            &mut measure(
                &uncounted,
                Program::FromContainer,
                &ack,
                "from noacct",
                repeat,
            ),
            &mut measure(&exact, Program::ToContainer, &reply, "to", repeat),
            &mut measure(&exact, Program::CtLookup, &ack, "floor", repeat),
        ],
        &rows,
    ));
    for e in [exact, uncounted] {
        if let Err(err) = e.dp.teardown() {
            eprintln!("datapath bench teardown: {err}");
        }
    }
    run_services(report);
}

/// The CPU the network rows pin their client and server to, the same for
/// every contender.
const CPU: usize = 0;

/// Pins the calling thread to [`CPU`].
fn pin_thread() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(CPU, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity to CPU {CPU}");
    }
}

/// ksoftirqd's CPU time on [`CPU`] so far, seconds: the softirq work the
/// kernel deferred out of the processes' own context.
fn ksoftirqd_seconds() -> f64 {
    let want = format!("ksoftirqd/{CPU}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == want) {
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<f64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            return f.get(11).zip(f.get(12)).map_or(0.0, |(u, s)| (u + s) / hz);
        }
    }
    0.0
}

/// Throughput and latency of real traffic, with and without the datapath.
pub fn run_traffic(report: &mut Report) {
    let secs = report.size(3, 1);
    let (probes, transactions) = (report.size(100, 50), report.size(20_000, 500));
    // The topologies exist side by side; their runs alternate so that load
    // from elsewhere on the machine hits them alike.
    let plain = Topology::new(Kind::Plain);
    let bpf = Topology::new(Kind::Datapath);
    let hooks = Topology::new(Kind::PassHooks);

    // A round's `secs` of traffic per topology go in pieces of 1 s, the
    // two topologies taking turns (`rounds::pieces`).
    let each = 1;
    let turns = secs / each;
    let plain_name = "plain kernel routing, same topology";
    let pinned = format!("client and server on CPU {CPU}");
    let rows = |tp: &Samples| {
        vec![
            tp.row(
                "datapath",
                format!("cross-node pod-to-pod TCP throughput, iperf3 {turns} x {each} s taking turns, {pinned}"),
                "bpf",
                plain_name,
                "plain",
                "Gbit/s",
                Goal::RatioAtLeast(0.9),
            ),
            tp.row(
                "datapath",
                "the same iperf3 runs per CPU-second (client + server process time, softirq in their context included, + ksoftirqd)",
                "bpf per cpu",
                plain_name,
                "plain per cpu",
                "Gbit/CPU-s",
                Goal::RatioAtLeast(0.9),
            ),
        ]
    };
    report.add_all(alternate_until(
        report.plan(Rounds::Network, 2),
        &mut [&mut |r: &mut Record<'_>| {
            let [p, b] = pieces(
                turns,
                r.round() % 2,
                [&mut || plain.iperf(each), &mut || bpf.iperf(each)],
            );
            for (runs, name) in [(p, "plain"), (b, "bpf")] {
                r.put(name, mean(runs.iter().map(|x| x.gbps)));
                let per_cpu = mean(runs.iter().map(|x| x.gbit_per_cpu_second));
                r.put(&format!("{name} per cpu"), per_cpu);
            }
        }],
        &rows,
    ));

    // Ping and request/response are cheap: more rounds than the minimum.
    // Their noise comes and goes faster than a round, so within a round the
    // three topologies also alternate chunk by chunk (order reversed every
    // chunk and every round), on connections kept open for the round.
    let topologies = [(&plain, "plain"), (&bpf, "bpf"), (&hooks, "hooks")];
    let chunks = report.size(10, 2);
    let ping_chunks = report.size(4, 2);
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a cpu_set_t of the size given.
    unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) };
    pin_thread();
    let rows = |lat: &Samples| {
        [
            (
                format!("cross-node TCP request/response (1 byte each way, {transactions} back to back), {pinned}"),
                "bpf rr",
                "plain rr",
                Goal::RatioAtMost(1.1),
            ),
            (
                "the same request/response with TC_ACT_OK programs on the datapath's hooks instead (what the hooks alone cost)".to_string(),
                "hooks rr",
                "plain rr",
                Goal::None,
            ),
            (
                format!("cross-node ping RTT, {probes} probes 10 ms apart, ping on CPU {CPU}"),
                "bpf rtt",
                "plain rtt",
                Goal::RatioAtMost(1.1),
            ),
            (
                "the same ping with TC_ACT_OK programs on the hooks".to_string(),
                "hooks rtt",
                "plain rtt",
                Goal::None,
            ),
        ]
        .into_iter()
        .map(|(figure, ours, base, goal)| lat.row("datapath", figure, ours, plain_name, base, "us", goal))
        .collect()
    };
    let lat = alternate_until(
        report.plan_of(16, 2),
        &mut [&mut |r: &mut Record<'_>| {
            let flip = r.round() % 2;
            let mut conns: Vec<RrConn> = topologies.iter().map(|(t, _)| t.rr_connect()).collect();
            let mut took = [std::time::Duration::ZERO; 3];
            take_turns(3, chunks, flip, |i, _| {
                took[i] += conns[i].exchange(transactions / chunks);
            });
            for c in conns.drain(..) {
                c.close();
            }
            let mut rtt = [0.0; 3];
            take_turns(3, ping_chunks, flip, |i, _| {
                rtt[i] += topologies[i].0.rtt(probes / ping_chunks) / ping_chunks as f64;
            });
            for (i, (_, name)) in topologies.iter().enumerate() {
                let n = (transactions / chunks * chunks) as f64;
                r.put(&format!("{name} rr"), took[i].as_secs_f64() * 1e6 / n);
                r.put(&format!("{name} rtt"), rtt[i]);
            }
        }],
        &rows,
    );
    // SAFETY: `old` is the affinity read above.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &old) };
    report.add_all(lat);
    drop((plain, bpf, hooks));
}

/// One iperf3 run.
struct Iperf {
    gbps: f64,
    /// Gbit moved per CPU-second of client, server and ksoftirqd.
    gbit_per_cpu_second: f64,
}

/// The number after `"key":` in `json`, searching from `from`.
fn json_number(json: &str, from: usize, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let at = json[from..].find(&pat)? + from + pat.len();
    let num: String = json[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        .collect();
    num.parse().ok()
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
            node.add_address(&format!("192.168.100.{}/24", i + 1), "eth0");
            // The other node (1 or 2) owns 10.<it>.0.0/24 behind 192.168.100.<it>.
            let other = 2 - i;
            node.add_route(&format!(
                "10.{other}.0.0/24 via 192.168.100.{other} dev eth0"
            ));
            let gateway = "169.254.1.1".parse().expect("address");
            let ip = IPS[i].parse().expect("address");
            let link = pod_link(node, "lxc0", &pods[i], ip, gateway);
            node.add_route(&format!("{}/32 dev lxc0 scope link", IPS[i]));
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

    /// iperf3 pod 1 -> pod 2, client and server pinned to [`CPU`].
    fn iperf(&self, secs: usize) -> Iperf {
        let mut server = self.pods[1].spawn("iperf3", &["-s", "-1"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let softirq = ksoftirqd_seconds();
        let cpus = format!("{CPU},{CPU}");
        let out = self.pods[0].exec(
            "iperf3",
            &["-c", IPS[1], "-t", &secs.to_string(), "-A", &cpus, "-J"],
        );
        let softirq = ksoftirqd_seconds() - softirq;
        let _ = server.kill();
        let _ = server.wait();
        let json = String::from_utf8_lossy(&out.stdout);
        let nan = Iperf {
            gbps: f64::NAN,
            gbit_per_cpu_second: f64::NAN,
        };
        let Some(end) = json.rfind("\"sum_received\"") else {
            eprintln!(
                "iperf3 printed no result: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return nan;
        };
        let (Some(bps), Some(seconds)) = (
            json_number(&json, end, "bits_per_second"),
            json_number(&json, end, "seconds"),
        ) else {
            return nan;
        };
        let cpu = json.find("\"cpu_utilization_percent\"").and_then(|at| {
            Some(json_number(&json, at, "host_total")? + json_number(&json, at, "remote_total")?)
        });
        let cpu_seconds = cpu.map_or(f64::NAN, |pct| pct / 100.0 * seconds) + softirq;
        Iperf {
            gbps: bps / 1e9,
            gbit_per_cpu_second: bps / 1e9 * seconds / cpu_seconds,
        }
    }

    /// A TCP connection pod 1 -> pod 2 for request/response, one byte each
    /// way with Nagle off (netperf's TCP_RR, in process), warmed up. The
    /// server thread runs on [`CPU`]; so must the caller's exchanges.
    fn rr_connect(&self) -> RrConn {
        let addr: SocketAddr = format!("{}:7001", IPS[1]).parse().expect("address");
        let listener = self.pods[1]
            .run(|| TcpListener::bind(addr))
            .expect("listen in pod 2");
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
        let c = self.pods[0]
            .run(|| TcpStream::connect(addr))
            .expect("connect from pod 1");
        c.set_nodelay(true).expect("nodelay");
        let mut conn = RrConn { c, server };
        // Connection set-up is not latency.
        conn.exchange(10);
        conn
    }

    /// Mean ping RTT pod 1 -> pod 2, microseconds.
    fn rtt(&self, probes: usize) -> f64 {
        let ping = self.pods[0].exec(
            "taskset",
            &[
                "-c",
                &CPU.to_string(),
                "ping",
                "-q",
                "-c",
                &probes.to_string(),
                "-i",
                "0.01",
                IPS[1],
            ],
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

/// See [`Topology::rr_connect`].
struct RrConn {
    c: TcpStream,
    server: std::thread::JoinHandle<()>,
}

impl RrConn {
    /// `n` request/responses back to back; how long they took.
    fn exchange(&mut self, n: usize) -> std::time::Duration {
        let mut b = [7u8; 1];
        let start = Instant::now();
        for _ in 0..n {
            self.c
                .write_all(&b)
                .and_then(|()| self.c.read_exact(&mut b))
                .expect("exchange");
        }
        start.elapsed()
    }

    fn close(self) {
        drop(self.c);
        let _ = self.server.join();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for dp in self.dps.drain(..) {
            let _ = dp.teardown();
        }
    }
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// Services (issue #11): from-container ns/packet of a service flow next to
/// a non-service flow, in the same datapath and rounds, and the time to
/// program 10,000 services with 3 backends each through the API.
///
/// * Established (single runs: see below): the pod's ACK to ClusterIP 10.96.0.1:443 (backend on the
///   other node, the same remote pod as the non-service flow, port 8443)
///   against the ACK of the pod's non-service flow to that pod. Goal: at
///   most 1.3x.
/// * First packet: SYNs from fresh source ports (a new connection each, so
///   one run per packet: the kernel's time of one run, which includes the
///   test-run loop's own clock reads), median of 200 per round, to the
///   ClusterIP and to the remote pod directly.
fn run_services(report: &mut Report) {
    let e = Established::new("bench-dp-svc", true);
    let svc = Service::new(1, SocketAddr::new(VIP.into(), 443), L4Protocol::Tcp)
        .backend(Backend::new(SocketAddr::new(REMOTE.into(), 8443)));
    e.dp.upsert_service(&svc).expect("service");
    // The service connection: SYN out, SYN-ACK back (reverse NAT), then ACKs.
    let syn = tcp_packet(POD, VIP, 40001, 443, 0x02, 0);
    let synack = tcp_packet(REMOTE, POD, 8443, 40001, 0x12, 0);
    e.dp.test_run(Program::FromContainer, &syn, &from_pod())
        .expect("service syn");
    e.dp.test_run(Program::ToContainer, &synack, &TestContext::new())
        .expect("service syn-ack");
    let svc_ack = tcp_packet(POD, VIP, 40001, 443, 0x10, 1000);
    let out = e.test_run(Program::FromContainer, &svc_ack, 1);
    assert_eq!(out.retval, 0, "service ACK handed to the stack");
    assert_eq!(&out.data[30..34], &REMOTE.octets(), "DNAT to the backend");
    let plain_ack = ack();

    // BPF_PROG_TEST_RUN repeats a program on one skb, so a DNAT done by the
    // first repetition would be seen by the next ones: every figure here is
    // the median of single runs, each on a fresh copy of the packet.
    let n = report.size(2000, 200);
    let rows = |samples: &Samples| {
        vec![
            samples.row(
                "datapath",
                format!("from-container, established service flow (ClusterIP, remote backend), median of {n} single runs per round"),
                "svc",
                "the same pod's established non-service flow",
                "plain",
                "ns/pkt",
                Goal::RatioAtMost(1.3),
            ),
            samples.row(
                "datapath",
                format!("from-container, first packet of a service connection, median of {} new connections per round", n / 10),
                "svc first",
                "first packet of a non-service connection",
                "plain first",
                "ns/pkt",
                Goal::None,
            ),
        ]
    };
    let made = {
        // The two flows' single runs interleave (`single_pairs`), so that a
        // slow stretch of the machine falls on both alike.
        let mut port: u16 = 1024;
        let mut first = |dst: Ipv4Addr, dport: u16| -> f64 {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n / 10 {
                port = if port == u16::MAX { 1024 } else { port + 1 };
                let pkt = tcp_packet(POD, dst, port, dport, 0x02, 0);
                v.push(e.ns_per_packet(Program::FromContainer, &pkt, 1));
            }
            median(v)
        };
        alternate_until(
            report.plan_of(21, 2),
            &mut [
                &mut |r: &mut Record<'_>| {
                    let [plain, svc] = single_pairs(
                        n,
                        [
                            &mut || e.ns_per_packet(Program::FromContainer, &plain_ack, 1),
                            &mut || e.ns_per_packet(Program::FromContainer, &svc_ack, 1),
                        ],
                    );
                    r.put("plain", plain);
                    r.put("svc", svc);
                },
                &mut |r: &mut Record<'_>| {
                    let a = first(REMOTE, 443);
                    let b = first(VIP, 443);
                    r.put("plain first", a);
                    r.put("svc first", b);
                },
            ],
            &rows,
        )
    };
    report.add_all(made);
    if let Err(err) = e.dp.teardown() {
        eprintln!("datapath bench teardown: {err}");
    }

    // Programming time: 10,000 services x 3 backends into an empty datapath.
    let n = report.size(10_000, 1_000);
    let services: Vec<Service> = (0..n)
        .map(|i| {
            let i = u32::try_from(i).expect("fits");
            let vip = Ipv4Addr::from(0x0a60_0000 + i);
            let mut s = Service::new(
                u16::try_from(i + 1).expect("fits"),
                SocketAddr::new(vip.into(), 80),
                L4Protocol::Tcp,
            );
            for b in 0..3 {
                let ip = Ipv4Addr::from(0x0a10_0000 + i * 4 + b);
                s = s.backend(Backend::new(SocketAddr::new(ip.into(), 8080)));
            }
            s
        })
        .collect();
    let mut k = 0;
    let samples = alternate(
        report.size(5, 2),
        &mut [&mut |r: &mut Record<'_>| {
            k += 1;
            let dir = BpfDir::new(&format!("bench-svc10k-{k}"));
            let dp = Datapath::load(&Options::small(dir.join("globals"))).expect("load");
            let t = Instant::now();
            dp.upsert_services(&services).expect("upsert_services");
            r.put("program", t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(dp.services().expect("services").len(), services.len());
            if let Err(err) = dp.teardown() {
                eprintln!("datapath bench teardown: {err}");
            }
        }],
    );
    report.add(samples.alone(
        "datapath",
        format!("time to program {n} services x 3 backends (upsert_services, empty maps)"),
        "program",
        "ms",
        Goal::Below(1000.0),
    ));
}
