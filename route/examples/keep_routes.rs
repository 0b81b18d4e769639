//! An agent that keeps its routes installed whoever removes them: it
//! subscribes, installs, and then answers every route or link event (and a
//! lost notification) with the upserts a `Keeper` asks for, printing what
//! happens as `ip monitor` would.
//!
//! ```text
//! sudo cargo run -p podnet-route --example keep_routes -- --netns blue \
//!     "10.2.0.0/16 via 10.0.0.2 dev eth0 proto static" "fd02::/64 via fd00::2 dev eth0"
//! # in another shell: sudo ip -n blue route del 10.2.0.0/16
//! ```

use std::process::ExitCode;
use std::time::Duration;

use podnet_route::{Handle, Keeper, Monitor, Route, Topics};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut netns = None;
    if args.first().map(String::as_str) == Some("--netns") && args.len() > 1 {
        let name = args.remove(1);
        args.remove(0);
        netns = Some(if name.contains('/') {
            name
        } else {
            format!("/run/netns/{name}")
        });
    }
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: keep_routes [--netns NAME|PATH] ROUTE...   (ROUTE in `ip route` syntax)");
        return ExitCode::from(2);
    }
    match run(netns.as_deref(), &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keep_routes: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(netns: Option<&str>, texts: &[String]) -> Result<(), podnet_route::Error> {
    let routes = texts
        .iter()
        .map(|t| t.parse::<Route>())
        .collect::<Result<Vec<_>, _>>()?;
    let h = match netns {
        Some(p) => Handle::open_netns(p)?,
        None => Handle::new()?,
    };
    // Subscribe first, then install: a removal right after the install is
    // not missed. Links too: the kernel drops IPv4 routes of a link that
    // goes down without saying so.
    let mut mon: Monitor = h.subscribe(Topics::ROUTES | Topics::LINKS)?;
    let keeper = Keeper::new(routes);
    for r in keeper.routes() {
        let changed = h.upsert(r, None)?;
        println!("{} {r}", if changed { "installed" } else { "present" });
    }
    loop {
        let Some(ev) = mon.recv_timeout(Duration::from_secs(10))? else {
            continue;
        };
        // The events of our own upserts come back too: their repairs
        // find the routes intact and send nothing (`Ok(false)`).
        for (r, res) in keeper.repair(&h, &ev) {
            match res {
                Ok(true) => println!("after `{ev}`: re-installed {r}"),
                Ok(false) => {}
                Err(e) => eprintln!("after `{ev}`: {e}"),
            }
        }
    }
}
