//! Headline row of route change notifications: does a `Monitor` keep up
//! with the fastest change the crate itself can make (`upsert_many` of
//! 100k /32 routes, pipelined), and does it see at least as many of those
//! changes as `ip monitor route` does, run in the same namespace under
//! the same load? Each contender gets a fresh namespace of the same shape
//! per round; the rounds alternate (see `rounds.rs`). `ip` asks for a
//! 1 MiB receive buffer, a `Monitor` for 8 MiB: the share of changes seen
//! is compared with the Monitor at `ip`'s buffer, so that the row says
//! which listener keeps up, not which buffer is larger.
//!
//! Figures per contender and round: the changes made per second (the
//! producer's rate), the share of them the listener saw, the listener's
//! rate (events over the time from the first change to the last event
//! seen), and, for ours, the number of `Event::Lost` it reported.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_route::{Event, Handle, Monitor, Route, Topics};

use crate::report::{Goal, Report};
use crate::rounds::{alternate_until, Record, Rounds, Samples};
use crate::route::{count_label, node, routes};

const AREA: &str = "route";

/// How long a listener may stay silent after the producer finished before
/// it is considered done.
const IDLE: Duration = Duration::from_millis(1000);

/// The receive buffer `ip monitor` asks for (iproute2's default `-rcvbuf`).
const IP_RCVBUF: usize = 1 << 20;

/// The sentinel a listener must have seen before the producer starts.
fn sentinel() -> Route {
    "10.99.0.0/24 dev eth0".parse().expect("literal")
}

/// What one contender's round measured.
struct Seen {
    produce: Duration,
    events: u64,
    listen: Duration,
    lost: u64,
}

fn put(r: &mut Record<'_>, who: &str, n: usize, s: &Seen) {
    r.put(
        &format!("{who} changes/s"),
        n as f64 / s.produce.as_secs_f64(),
    );
    r.put(&format!("{who} seen"), s.events as f64 / n as f64);
    r.put(
        &format!("{who} events/s"),
        s.events as f64 / s.listen.as_secs_f64(),
    );
    r.put(&format!("{who} lost"), s.lost as f64);
    r.put(
        &format!("{who} lag ms"),
        s.listen.saturating_sub(s.produce).as_secs_f64() * 1e3,
    );
}

/// Ours: a `Monitor` on its own thread counting the route events of the
/// benchmark's prefixes, while this thread upserts them; with its default
/// receive buffer or with `rcvbuf` (`ip`'s 1 MiB, say).
fn ours(rs: &[Route], rcvbuf: Option<usize>) -> Seen {
    let ns = node("bench-mon");
    let h = Handle::open_netns(ns.path()).expect("handle");
    let mut mon = Monitor::open_netns(ns.path(), Topics::ROUTES_V4).expect("monitor");
    if let Some(b) = rcvbuf {
        mon.set_receive_buffer(b).expect("receive buffer");
    }
    h.upsert(&sentinel(), None).expect("sentinel");
    let done = Arc::new(AtomicBool::new(false));
    let n = rs.len() as u64;
    let listener = {
        let done = done.clone();
        std::thread::spawn(move || {
            // Wait for the sentinel: the listener is in place.
            loop {
                match mon.recv_timeout(Duration::from_secs(5)).expect("recv") {
                    Some(Event::NewRoute(r)) if r.prefix == sentinel().prefix => break,
                    Some(_) => {}
                    None => panic!("the monitor did not see the sentinel"),
                }
            }
            let mut events = 0u64;
            let mut last = Instant::now();
            loop {
                match mon.recv_timeout(Duration::from_millis(50)).expect("recv") {
                    Some(Event::NewRoute(r))
                        if r.prefix.prefix_len() == 32 && r.nexthop.is_some() =>
                    {
                        events += 1;
                        last = Instant::now();
                        if events == n {
                            break;
                        }
                    }
                    Some(_) => {}
                    None if done.load(Ordering::Acquire) && last.elapsed() > IDLE => break,
                    None => {}
                }
            }
            (events, last, mon.lost())
        })
    };
    // Let the listener reach its loop.
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let res = h.upsert_many(rs, None);
    let produce = start.elapsed();
    done.store(true, Ordering::Release);
    assert!(res.iter().all(|r| matches!(r, Ok(true))), "every upsert");
    let (events, last, lost) = listener.join().expect("listener");
    Seen {
        produce,
        events,
        listen: last.saturating_duration_since(start),
        lost,
    }
}

/// The competitor: `ip monitor route` in the same kind of namespace,
/// its lines counted as they come.
fn ip_monitor(rs: &[Route]) -> Seen {
    let ns = node("bench-ipmon");
    let h = Handle::open_netns(ns.path()).expect("handle");
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "monitor", "route"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip monitor");
    let out = child.stdout.take().expect("stdout");
    let events = Arc::new(AtomicU64::new(0));
    let last_ns = Arc::new(AtomicU64::new(0));
    let sentinel_seen = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let reader = {
        let (events, last_ns, seen) = (events.clone(), last_ns.clone(), sentinel_seen.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("10.99.0.0/24") {
                    seen.store(true, Ordering::Release);
                } else if line.starts_with("10.") && line.contains(" via 10.0.0.2 dev eth0") {
                    events.fetch_add(1, Ordering::AcqRel);
                    last_ns.store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
                }
            }
        })
    };
    // Re-add the sentinel until ip monitor has printed it: it is listening.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sentinel_seen.load(Ordering::Acquire) {
        let _ = h.delete(&sentinel());
        h.upsert(&sentinel(), None).expect("sentinel");
        std::thread::sleep(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "ip monitor printed nothing");
    }
    let start = Instant::now();
    let res = h.upsert_many(rs, None);
    let produce = start.elapsed();
    assert!(res.iter().all(|r| matches!(r, Ok(true))), "every upsert");
    let n = rs.len() as u64;
    let mut before = u64::MAX;
    let mut quiet_since = Instant::now();
    while events.load(Ordering::Acquire) < n {
        let now = events.load(Ordering::Acquire);
        if now != before {
            before = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > IDLE {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let last = epoch + Duration::from_nanos(last_ns.load(Ordering::Acquire));
    Seen {
        produce,
        events: events.load(Ordering::Acquire),
        listen: last.saturating_duration_since(start),
        // ip monitor says "netlink receive error" on stderr; it is counted
        // by the share of events it printed.
        lost: 0,
    }
}

pub fn run(report: &mut Report) {
    let n = report.size(100_000, 2_000);
    let k = count_label(n);
    let rs = routes(n);
    let rows = |samples: &Samples| {
        let mut made = Vec::new();
        let lost = samples.stat("ours lost");
        let ip_seen = samples.stat("ip seen");
        made.push(
        samples
            .row(
                AREA,
                format!("subscription keeps up: events/s seen vs changes/s made, {k} upserts"),
                "ours events/s",
                "changes/s (upsert_many)",
                "ours changes/s",
                "routes/s",
                Goal::RatioAtLeast(0.95),
            )
            .note(format!(
                "last event {:.1} ms (median) after the last change; Event::Lost reported: median {:.0}, max {:.0}",
                samples.stat("ours lag ms").median,
                lost.median,
                lost.max
            )),
    );
        made.push(
        samples
            .row(
                AREA,
                format!("subscription: share of {k} changes seen, Monitor vs ip monitor route (both 1 MiB buffer)"),
                "ours-1m seen",
                "ip monitor route",
                "ip seen",
                "share",
                Goal::RatioAtLeast(1.0),
            )
            .note(format!(
                "ip monitor saw {:.3} (min {:.3}), its last line {:.1} ms after the last change; Monitor with its default 8 MiB buffer saw {:.3} (min {:.3}), with 1 MiB {:.3} (min {:.3}, Event::Lost max {:.0})",
                ip_seen.median,
                ip_seen.min,
                samples.stat("ip lag ms").median,
                samples.stat("ours seen").median,
                samples.stat("ours seen").min,
                samples.stat("ours-1m seen").median,
                samples.stat("ours-1m seen").min,
                samples.stat("ours-1m lost").max,
            )),
    );
        made
    };
    let made = alternate_until(
        report.plan(Rounds::Other, 2),
        &mut [
            &mut |r: &mut Record<'_>| put(r, "ip", n, &ip_monitor(&rs)),
            &mut |r: &mut Record<'_>| put(r, "ours", n, &ours(&rs, None)),
            // The receive buffer `ip` asks for (iproute2's 1 MiB default).
            &mut |r: &mut Record<'_>| put(r, "ours-1m", n, &ours(&rs, Some(IP_RCVBUF))),
        ],
        &rows,
    );
    report.add_all(made);
}
