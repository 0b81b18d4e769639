//! Loads the datapath into a pin directory of its own, runs one packet
//! through it, prints the metrics, and tears it down again; or re-opens a
//! pin directory to print its metrics, or removes what podnet pinned there.
//!
//! Needs root (or `CAP_BPF` and `CAP_NET_ADMIN`) and bpffs; attaches nothing,
//! so no interface is touched.
//!
//! ```text
//! sudo cargo run -p podnet-datapath --example datapath_metrics -- demo /sys/fs/bpf/podnet-demo
//! sudo cargo run -p podnet-datapath --example datapath_metrics -- metrics /sys/fs/bpf/podnet-demo
//! sudo cargo run -p podnet-datapath --example datapath_metrics -- teardown /sys/fs/bpf/podnet-demo
//! ```

use std::error::Error as _;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use podnet_datapath::{
    Datapath, Endpoint, Error, Options, Program, TestContext, TC_ACT_OK, TC_ACT_REDIRECT,
    TC_ACT_SHOT,
};

const USAGE: &str = "\
usage: datapath_metrics <command> <pin-dir>

commands:
  demo      load into <pin-dir> (small maps), register two pods, send one UDP
            packet from one to the other with BPF_PROG_TEST_RUN, print the
            verdict and the metrics, then tear everything down
  metrics   re-open the maps pinned in <pin-dir> (small sizes) and print the
            metrics; the maps stay
  teardown  remove what podnet pinned in <pin-dir> (other pins stay)

<pin-dir> must be on bpffs, e.g. /sys/fs/bpf/podnet-demo; never use Cilium's
/sys/fs/bpf/tc/globals. Needs root or CAP_BPF and CAP_NET_ADMIN.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match args.as_slice() {
        [cmd, dir] => (cmd.as_str(), dir.as_str()),
        [h] if h == "-h" || h == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let opts = Options::small(dir);
    let result = match cmd {
        "demo" => demo(&opts),
        "metrics" => Datapath::load(&opts).and_then(|dp| print_metrics(&dp)),
        "teardown" => Datapath::load(&opts).and_then(Datapath::teardown),
        _ => {
            eprintln!("unknown command {cmd:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// The error, its causes, and libbpf's log when there is one.
fn report(e: &Error) {
    eprint!("error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        eprint!(": {c}");
        cause = c.source();
    }
    eprintln!();
    if let Some(log) = e.verifier_log() {
        eprintln!("libbpf log:\n{log}");
    }
}

fn demo(opts: &Options) -> Result<(), Error> {
    let dp = Datapath::load(opts)?;
    println!("loaded; maps pinned under {}", dp.pin_dir().display());
    let a = Ipv4Addr::new(10, 1, 0, 2);
    let b = Ipv4Addr::new(10, 1, 0, 3);
    let (a_mac, a_node_mac) = ([2, 0xaa, 0, 0, 0, 1], [2, 0xaa, 0, 0, 0, 2]);
    dp.upsert_endpoint(
        &Endpoint::new(a.into(), 10)
            .mac(a_mac)
            .node_mac(a_node_mac)
            .id(1)
            .identity(5001),
    )?;
    dp.upsert_endpoint(
        &Endpoint::new(b.into(), 20)
            .mac([2, 0xbb, 0, 0, 0, 1])
            .node_mac([2, 0xbb, 0, 0, 0, 2])
            .id(2)
            .identity(5002),
    )?;
    let pkt = udp_packet(a_node_mac, a_mac, a, b, 40000, 53);
    let out = dp.test_run(
        Program::FromContainer,
        &pkt,
        &TestContext::new().ingress_ifindex(10),
    )?;
    let verdict = match out.retval {
        TC_ACT_OK => "to the stack",
        TC_ACT_SHOT => "dropped",
        TC_ACT_REDIRECT => "redirected to the peer pod",
        _ => "other",
    };
    println!(
        "from-container, {a} -> {b} UDP: {verdict} ({}) in {:?}",
        out.retval, out.duration
    );
    print_metrics(&dp)?;
    dp.teardown()?;
    println!("torn down");
    Ok(())
}

fn print_metrics(dp: &Datapath) -> Result<(), Error> {
    let metrics = dp.metrics()?;
    if metrics.is_empty() {
        println!("no packets counted");
    }
    for m in metrics {
        println!(
            "{:<8} {:<35} {:>8} packets {:>10} bytes",
            m.direction.to_string(),
            m.reason_name(),
            m.packets,
            m.bytes
        );
    }
    Ok(())
}

/// An Ethernet + IPv4 + UDP packet with 4 bytes of payload.
fn udp_packet(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(46);
    p.extend_from_slice(&dst_mac);
    p.extend_from_slice(&src_mac);
    p.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = p.len();
    p.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut sum: u32 = p[ip_start..]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    p[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&12u16.to_be_bytes());
    p.extend_from_slice(&[0, 0]); // no UDP checksum
    p.extend_from_slice(b"podn");
    p
}
