//! `route` from the command line: upsert, delete, lookup, list, get, in the
//! current or any named network namespace. Routes are written the way
//! `ip route` takes them.
//!
//! ```text
//! sudo cargo run -p podnet-route --example route_cli -- upsert 10.9.0.0/24 via 192.168.1.1 dev eth0 table 300
//! sudo cargo run -p podnet-route --example route_cli -- --netns pe-node list table 92
//! sudo cargo run -p podnet-route --example route_cli -- get 10.9.0.7
//! ```

use std::process::ExitCode;

use podnet_route::{Handle, Route, RouteFilter, ShowStyle};

const USAGE: &str = "usage: route_cli [--netns NAME|PATH] COMMAND ...

commands:
  upsert ROUTE   add or replace a route (Cilium semantics: a nexthop's
                 scope-link route is made first); prints whether it changed
  delete ROUTE   delete a route; exit 2 when it was not there
  lookup ROUTE   print the kernel's exact match, fields filled; exit 2 if none
  list [table T] print the routes of table T (default: main) as `ip route show`
  get ADDRESS    print the kernel's FIB answer, like `ip route get`

ROUTE is `ip route` syntax: PREFIX [via ADDR] [dev IF] [src ADDR] [table T]
[metric N] [mtu N] [proto P] [scope S], or a type first (blackhole PREFIX).";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return if args.is_empty() {
            ExitCode::from(64)
        } else {
            ExitCode::SUCCESS
        };
    }
    let handle = if args[0] == "--netns" {
        if args.len() < 2 {
            eprintln!("--netns needs a name or a path\n\n{USAGE}");
            return ExitCode::from(64);
        }
        let ns = args[1].clone();
        args.drain(..2);
        let path = if ns.contains('/') {
            ns
        } else {
            format!("/run/netns/{ns}")
        };
        Handle::open_netns(path)
    } else {
        Handle::new()
    };
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            eprintln!("route_cli: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    let text = rest.join(" ");
    let parse =
        |t: &str| -> Result<Route, String> { t.parse::<Route>().map_err(|e| e.to_string()) };
    let result: Result<ExitCode, String> = match cmd.as_str() {
        "upsert" => parse(&text).and_then(|r| {
            let changed = handle.upsert(&r, None).map_err(|e| e.to_string())?;
            println!("{} {r}", if changed { "changed:" } else { "unchanged:" });
            Ok(ExitCode::SUCCESS)
        }),
        "delete" => parse(&text).and_then(|r| match handle.delete(&r) {
            Ok(()) => {
                println!("deleted: {r}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if e.is_not_found() => {
                println!("not present: {r}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.to_string()),
        }),
        "lookup" => {
            parse(&text).and_then(|r| match handle.lookup(&r).map_err(|e| e.to_string())? {
                Some(found) => {
                    println!("{found}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!("no route matches {r}");
                    Ok(ExitCode::from(2))
                }
            })
        }
        "list" => {
            let table = match rest {
                [] => Ok(podnet_route::MAIN_TABLE),
                [t, name] if t == "table" => {
                    podnet_route::parse_table(name).map_err(|e| e.to_string())
                }
                _ => Err(format!("list takes `table T`, not `{text}`")),
            };
            table.and_then(|t| {
                for r in handle
                    .list(&RouteFilter::default().table(t))
                    .map_err(|e| e.to_string())?
                {
                    println!("{}", r.show(ShowStyle::OneTable));
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        "get" => text
            .parse()
            .map_err(|e| format!("`{text}` is not an address: {e}"))
            .and_then(|dst| {
                let r = handle.get(dst).map_err(|e| e.to_string())?;
                println!("{r}");
                Ok(ExitCode::SUCCESS)
            }),
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("route_cli: {e}");
            ExitCode::FAILURE
        }
    }
}
