//! `conntrack` from the command line: list a pinned Cilium conntrack map the
//! way `cilium bpf ct list global` does, and garbage-collect it.
//!
//! ```text
//! sudo cargo run -p podnet-conntrack --example ct_gc -- list /sys/fs/bpf/tc/globals/cilium_ct4_global
//! sudo cargo run -p podnet-conntrack --example ct_gc -- gc /sys/fs/bpf/pn/node1/cilium_ct_any4_global --ip 10.1.0.11
//! ```
//!
//! Works on maps pinned by this workspace's datapath (`native_routing --keep`
//! leaves some under /sys/fs/bpf/pn) and by a running Cilium agent.

use std::collections::HashSet;
use std::process::ExitCode;

use podnet_conntrack::{dump_entries_with_time_diff, gc, ClockSource, CtMap, GcFilter};

const USAGE: &str = "usage: ct_gc list PIN
       ct_gc gc PIN [--ip ADDR]... [--keep-expired] [--jiffies HZ]

  list   print every entry with the time left before it expires
  gc     delete expired entries (lifetime < now) and, with --ip, every entry
         whose source or destination is ADDR; prints what was scanned,
         deleted and kept, and the map pressure after

PIN is a pinned CT map (cilium_ct4_global, cilium_ct_any6_global,
cilium_ct4_00042 ...). Lifetimes are read in monotonic seconds unless
--jiffies HZ says the datapath writes jiffies.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ct_gc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (cmd, pin, rest) = match args {
        [cmd, pin, rest @ ..] => (cmd.as_str(), pin, rest),
        _ => return Err(format!("missing arguments\n\n{USAGE}").into()),
    };
    let mut clock = ClockSource::Monotonic;
    let mut ips = HashSet::new();
    let mut remove_expired = true;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ip" => {
                let v = it.next().ok_or("--ip needs an address")?;
                ips.insert(v.parse().map_err(|e| format!("--ip {v}: {e}"))?);
            }
            "--keep-expired" => remove_expired = false,
            "--jiffies" => {
                let v = it.next().ok_or("--jiffies needs HZ")?;
                clock = ClockSource::Jiffies {
                    hz: v.parse().map_err(|e| format!("--jiffies {v}: {e}"))?,
                };
            }
            other => return Err(format!("unknown option {other}\n\n{USAGE}").into()),
        }
    }
    let map = CtMap::open(pin)?;
    match cmd {
        "list" => {
            print!("{}", dump_entries_with_time_diff(&map, &clock)?);
            println!("{} entries, pressure {:.4}", map.count()?, map.pressure()?);
        }
        "gc" => {
            let mut f = GcFilter::new()
                .remove_expired(remove_expired)
                .time(clock.now()?)
                .match_ips(ips);
            let stats = gc(&map, &mut f)?;
            println!("{}: {stats}", map.name());
            println!("pressure after: {:.4}", map.pressure()?);
        }
        other => return Err(format!("unknown command {other}\n\n{USAGE}").into()),
    }
    Ok(())
}
