//! What the datapath's events cost and carry, via BPF_PROG_TEST_RUN:
//!
//! * ns/packet of `from_container` for an established TCP flow with events
//!   on at Cilium's default aggregation ("medium") against the same with
//!   events off (goal: within 1.05x: no per-packet event on an established
//!   flow), and with events off against the per-endpoint counters off too.
//! * the drop path (a new connection denied by egress policy): ns per
//!   dropped packet with a drop notification and a policy verdict each,
//!   against events off; and the events per second one reader takes out
//!   of the ring buffer, draining a ring filled with drop events, and
//!   while a producer drops at full speed (with what got lost).
//!
//! Every row alternates its contenders within each round (`rounds.rs`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_datapath::{
    Datapath, DatapathEvent, Endpoint, EndpointFlags, Events, Options, Program, TestContext,
};
use testsupport::BpfDir;

use crate::datapath::tcp_packet;
use crate::report::{cpu_ns_per_run, Goal, Report};
use crate::rounds::{alternate, alternate_until, Record, Rounds, Samples};

const AREA: &str = "events";
const POD: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const DENIED_POD: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 7);
const POD_IF: u32 = 10;
const DENIED_IF: u32 = 11;

/// A datapath with two pods (the second enforces egress policy and has
/// none: everything it opens is dropped) and one established flow from
/// the first to a remote pod.
struct Bench {
    dp: Datapath,
    _dir: BpfDir,
}

impl Bench {
    fn new(tag: &str, o: impl FnOnce(Options) -> Options) -> Bench {
        let dir = BpfDir::new(tag);
        let dp = Datapath::load(&o(Options::small(dir.join("globals")))).expect("load");
        for (ip, ifindex, id, flags) in [
            (POD, POD_IF, 1, EndpointFlags::empty()),
            (DENIED_POD, DENIED_IF, 2, EndpointFlags::EGRESS_ENFORCE),
        ] {
            dp.upsert_endpoint(
                &Endpoint::new(ip.into(), ifindex)
                    .id(id)
                    .identity(1000 + u32::from(id))
                    .flags(flags),
            )
            .expect("endpoint");
        }
        let b = Bench { dp, _dir: dir };
        b.run(&tcp_packet(POD, REMOTE, 40000, 443, 0x02, 0), POD_IF, 1);
        b.dp.test_run(
            Program::ToContainer,
            &tcp_packet(REMOTE, POD, 443, 40000, 0x12, 0),
            &TestContext::new(),
        )
        .expect("syn-ack");
        assert_eq!(b.run(&ack(), POD_IF, 1), 0, "established");
        assert_eq!(b.run(&denied(), DENIED_IF, 1), 2, "denied");
        b
    }

    /// ns per packet over `repeat` runs of from-container.
    /// ns per run (`report::cpu_ns_per_run`).
    fn ns(&self, pkt: &[u8], ifindex: u32, repeat: u32) -> f64 {
        let ctx = TestContext::new().ingress_ifindex(ifindex).repeat(repeat);
        cpu_ns_per_run(repeat, || {
            self.dp
                .test_run(Program::FromContainer, pkt, &ctx)
                .expect("test run");
        })
    }

    fn run(&self, pkt: &[u8], ifindex: u32, repeat: u32) -> u32 {
        let ctx = TestContext::new().ingress_ifindex(ifindex).repeat(repeat);
        self.dp
            .test_run(Program::FromContainer, pkt, &ctx)
            .expect("test run")
            .retval
    }
}

/// The pod's 1054-byte ACK of the established flow.
fn ack() -> Vec<u8> {
    tcp_packet(POD, REMOTE, 40000, 443, 0x10, 1000)
}

/// A SYN the second pod's egress policy denies (a drop every run).
fn denied() -> Vec<u8> {
    tcp_packet(DENIED_POD, REMOTE, 50000, 80, 0x02, 0)
}

/// Takes every event out of the ring; how many.
fn drain(ev: &mut Events) -> u64 {
    let mut n = 0;
    while let Ok(Some(_)) = ev.try_recv() {
        n += 1;
    }
    n
}

pub fn run(report: &mut Report) {
    established(report);
    drops(report);
}

/// Loads of each contender in the established-flow rows. Each load of a
/// program lands at its own place in memory (the JIT's random offset, the
/// maps' allocations), and the place moves the cost of the same code by
/// as much as the events' cost itself: two loads of the same datapath, one
/// contender each, came out at 1.01-1.02x in three runs. The rounds take
/// the loads in turn, so a run's median sees several places of each.
const LOADS: usize = 4;

fn established(report: &mut Report) {
    let repeat = report.size(2_000_000, 20_000) as u32;
    let (mut medium, mut off, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    // Loaded in turn, so that no contender's loads are all first or last.
    for i in 0..LOADS {
        medium.push(Bench::new(&format!("ev-b-med{i}"), |o| o));
        off.push(Bench::new(&format!("ev-b-off{i}"), |o| o.events(false)));
        bare.push(Bench::new(&format!("ev-b-bare{i}"), |o| {
            o.events(false).endpoint_metrics(false)
        }));
    }
    let mut ev: Vec<Events> = medium
        .iter()
        .map(|b| b.dp.events().expect("events"))
        .collect();
    let pkt = ack();
    let rows = |samples: &Samples| {
        vec![
            samples.row(
                AREA,
                format!("from-container, established TCP flow, events at medium, x{repeat}"),
                "medium",
                "events off",
                "off",
                "ns/pkt",
                Goal::RatioAtMost(1.05),
            ),
            samples.row(
                AREA,
                format!(
                    "from-container, established TCP flow, events off, per-endpoint counters on, x{repeat}"
                ),
                "off",
                "per-endpoint counters off too",
                "bare",
                "ns/pkt",
                Goal::None,
            ),
        ]
    };
    let mut made = alternate_until(
        report.plan_of(21, 3),
        &mut [
            &mut |r: &mut Record<'_>| {
                let b = &medium[r.round() % LOADS];
                r.put("medium", b.ns(&pkt, POD_IF, repeat));
            },
            &mut |r: &mut Record<'_>| {
                let b = &off[r.round() % LOADS];
                r.put("off", b.ns(&pkt, POD_IF, repeat));
            },
            &mut |r: &mut Record<'_>| {
                let b = &bare[r.round() % LOADS];
                r.put("bare", b.ns(&pkt, POD_IF, repeat));
            },
        ],
        &rows,
    );
    let sent: u64 = ev.iter_mut().map(drain).sum();
    made[0] = made[0].clone().note(format!(
        "{sent} events sent over all rounds (the flow's reports only), {LOADS} loads of each contender"
    ));
    report.add_all(made);
}

fn drops(report: &mut Report) {
    // Two events per dropped packet (policy verdict + drop), 176 bytes each
    // in the ring: 64 MiB hold the runs of a round.
    let repeat = report.size(100_000, 5_000) as u32;
    let rounds = report.rounds(Rounds::Other);
    let ring = 64 << 20;
    let on = Bench::new("ev-b-drop", |o| {
        o.events_ring_size(ring).drop_events_rate(0, 0)
    });
    let off = Bench::new("ev-b-nodrop", |o| o.events(false));
    let mut ev = on.dp.events().expect("events");
    let pkt = denied();
    let mut drained = Vec::new();
    let samples = alternate(
        rounds,
        &mut [
            &mut |r: &mut Record<'_>| {
                r.put("on", on.ns(&pkt, DENIED_IF, repeat));
                // The reader's drain rate of what this run wrote.
                let t = Instant::now();
                let n = drain(&mut ev);
                let secs = t.elapsed().as_secs_f64();
                drained.push(n);
                r.put("drain", n as f64 / secs);
            },
            &mut |r: &mut Record<'_>| r.put("off", off.ns(&pkt, DENIED_IF, repeat)),
        ],
    );
    let lost = on.dp.events_lost().expect("lost");
    report.add(
        samples
            .row(
                AREA,
                format!("drop path (policy-denied new connection), events on, x{repeat}"),
                "on",
                "events off",
                "off",
                "ns/pkt",
                Goal::None,
            )
            .note(format!(
                "{} events per round read back, {} lost",
                drained.first().copied().unwrap_or(0),
                lost.ring_full + lost.rate_limited
            )),
    );
    report.add(
        samples
            .alone(
                AREA,
                format!(
                    "one reader draining a ring of {} drop+verdict events",
                    2 * repeat
                ),
                "drain",
                "events/s",
                Goal::None,
            )
            .note("Events::try_recv: decode + queue, one thread"),
    );

    // Producer at full speed against one reader, default ring (1 MiB).
    let live = Bench::new("ev-b-live", |o| o.drop_events_rate(0, 0));
    let mut ev = live.dp.events().expect("events");
    let stop = Arc::new(AtomicBool::new(false));
    let secs = report.size(2, 1) as u64;
    let mut lost_pct = Vec::new();
    let samples = alternate(
        rounds,
        &mut [&mut |r: &mut Record<'_>| {
            let before = live.dp.events_lost().expect("lost").ring_full;
            stop.store(false, Ordering::Relaxed);
            let s = Arc::clone(&stop);
            let t = Instant::now();
            let mut got = 0u64;
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    let pkt = denied();
                    while !s.load(Ordering::Relaxed) {
                        live.run(&pkt, DENIED_IF, 1000);
                    }
                });
                while t.elapsed() < Duration::from_secs(secs) {
                    if let Ok(Some(e)) = ev.recv_timeout(Duration::from_millis(50)) {
                        if !matches!(e, DatapathEvent::Lost(_)) {
                            got += 1;
                        }
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
            got += drain(&mut ev);
            let lost = live.dp.events_lost().expect("lost").ring_full - before;
            let rate = got as f64 / t.elapsed().as_secs_f64();
            lost_pct.push(100.0 * lost as f64 / (lost + got).max(1) as f64);
            r.put("live", rate);
        }],
    );
    let mut lp = lost_pct.clone();
    lp.sort_by(f64::total_cmp);
    report.add(
        samples
            .alone(
                AREA,
                format!("events/s one reader takes while a producer drops at full speed ({secs} s, 1 MiB ring)"),
                "live",
                "events/s",
                Goal::None,
            )
            .note(format!(
                "lost (ring full) {:.1}% median of rounds",
                lp.get(lp.len() / 2).copied().unwrap_or(f64::NAN)
            )),
    );
}
