//! `cilium monitor` for a running podnet datapath: opens the events ring
//! buffer pinned in the datapath's pin directory (from any process; the
//! datapath keeps running) and prints each event in `cilium monitor`'s text.
//!
//! ```text
//! sudo cargo run -p podnet-datapath --example monitor -- /sys/fs/bpf/podnet --type drop
//! xx drop (Policy denied) flow 0x0 to endpoint 1002, ifindex 20, file datapath.bpf.c:96, identity 5001->5002: 10.1.0.2:40000 -> 10.1.0.3:80 tcp SYN
//! ```

use std::error::Error as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use podnet_datapath::{EventKind, Events};

const USAGE: &str = "\
usage: monitor <pin-dir> [--type drop|trace|policy-verdict]... [--from <endpoint>]
               [--to <endpoint>] [--count <n>] [--timeout <seconds>]

Prints the events of the podnet datapath whose maps are pinned in <pin-dir>
(its Options::pin_dir), one line each, as `cilium monitor` does.

  --type T       only events of type T (repeatable): drop, trace, policy-verdict
  --from EP      only packets sent by local endpoint id EP
  --to EP        only packets going to local endpoint id EP
  --count N      exit after N events (exit status 0)
  --timeout S    exit after S seconds without N events (exit status 1)
  -h, --help     this text

Lost events (ring buffer full, drop notifications over the rate limit) are
reported as they are noticed. Needs root or CAP_BPF.";

struct Args {
    pin_dir: String,
    types: Vec<EventKind>,
    from: Option<u16>,
    to: Option<u16>,
    count: Option<u64>,
    timeout: Option<Duration>,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        pin_dir: String::new(),
        types: Vec::new(),
        from: None,
        to: None,
        count: None,
        timeout: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--type" | "-t" => a.types.push(value("--type")?.parse()?),
            "--from" => {
                let v = value("--from")?;
                a.from = Some(
                    v.parse()
                        .map_err(|_| format!("--from {v}: not an endpoint id"))?,
                );
            }
            "--to" => {
                let v = value("--to")?;
                a.to = Some(
                    v.parse()
                        .map_err(|_| format!("--to {v}: not an endpoint id"))?,
                );
            }
            "--count" => {
                let v = value("--count")?;
                a.count = Some(
                    v.parse()
                        .map_err(|_| format!("--count {v}: not a number"))?,
                );
            }
            "--timeout" => {
                let v = value("--timeout")?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--timeout {v}: not seconds"))?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("--timeout {v}: not seconds"));
                }
                a.timeout = Some(Duration::from_secs_f64(s));
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if a.pin_dir.is_empty() => a.pin_dir = s.to_string(),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if a.pin_dir.is_empty() {
        return Err("no pin directory given".into());
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("monitor: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut events = match Events::open(&args.pin_dir) {
        Ok(e) => e,
        Err(e) => {
            let cause = e.source().map_or(String::new(), |c| format!(": {c}"));
            eprintln!("monitor: {e}{cause}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "Listening for events on {} (press Ctrl-C to quit)",
        args.pin_dir
    );
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut printed = 0u64;
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            return ExitCode::SUCCESS;
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    eprintln!("monitor: timed out after {printed} events");
                    return ExitCode::FAILURE;
                }
                left
            }
            None => Duration::from_secs(1),
        };
        let ev = match events.recv_timeout(wait) {
            Ok(Some(ev)) => ev,
            Ok(None) => continue,
            Err(e) => {
                let cause = e.source().map_or(String::new(), |c| format!(": {c}"));
                eprintln!("monitor: {e}{cause}");
                return ExitCode::FAILURE;
            }
        };
        if ev.kind() == EventKind::Lost {
            eprintln!("{ev}");
            continue;
        }
        if !args.types.is_empty() && !args.types.contains(&ev.kind()) {
            continue;
        }
        if args.from.is_some() && ev.from_endpoint() != args.from {
            continue;
        }
        if args.to.is_some() && ev.to_endpoint() != args.to {
            continue;
        }
        println!("{ev}");
        printed += 1;
    }
}
