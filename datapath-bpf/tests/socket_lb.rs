//! Socket load balancing (`Datapath::attach_socket_lb`): a process on a lab
//! node, in a cgroup v2 directory the test creates, reaches ClusterIP
//! backends (TCP, connected and unconnected UDP; IPv4, IPv6 and IPv4-mapped
//! IPv6) and sees the ClusterIP as its peer (`getpeername`, `recvfrom`).
//!
//! The client is a child process (this test binary again, running
//! [`child_socket_lb_client`]) moved into the test's cgroup before it
//! execs, so that no other test's sockets pass the programs.
//!
//! ```text
//!  node 192.168.100.1 (client process, test cgroup)
//!    ├ lxc1 ─ p1 10.1.0.2 / fd00:1::2 (backend "p1")
//!    └ lxc2 ─ p2 10.1.0.3 / fd00:1::3 (backend "p2")
//! ```

mod common;

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{ct_entries, lab_pod};
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir, Netns};

const CHILD_ENV: &str = "PNT_SOCK_LB_CHILD";

/// The cgroup v2 mount (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split(' ').next() != Some("cgroup2") {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

/// A cgroup of the test's own, removed (after its processes ended) on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(tag: &str) -> TestCgroup {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = cgroup2_root().expect("a cgroup2 mount");
        let dir = root.join(format!("pnt-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup(dir)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs [`child_socket_lb_client`] with `spec` in network namespace `ns`
/// and cgroup `cg` (`None`: the test's own); its `PNT` lines.
fn client(ns: &Netns, cg: Option<&TestCgroup>, spec: &str) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let procs = cg.map(|cg| {
        CString::new(
            cg.0.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap()
    });
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(exe)
        .args([
            "--exact",
            "child_socket_lb_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec);
    // SAFETY: only async-signal-safe calls (open, write, close) between
    // fork and exec.
    if let Some(procs) = procs {
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself.
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let out = cmd.output().expect("spawning the client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client {spec}: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        // The harness may print "test ... " before the first line.
        .filter_map(|l| l.split_once("PNT ").map(|(_, rest)| rest.to_string()))
        .collect()
}

/// Not a test of its own: the client process of the tests below (it does
/// nothing unless started by them with `PNT_SOCK_LB_CHILD` set). Spec:
/// `<tcp|udp|udp-unconnected> <frontend> <count>`; prints one
/// `PNT <peer> <answer>` line per exchange.
#[test]
fn child_socket_lb_client() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut it = spec.split(' ');
    let (kind, to, count) = (
        it.next().unwrap(),
        it.next().unwrap().parse::<SocketAddr>().unwrap(),
        it.next().unwrap().parse::<usize>().unwrap(),
    );
    let t = Some(Duration::from_secs(3));
    for _ in 0..count {
        let mut b = [0u8; 64];
        let (peer, n) = match kind {
            "tcp" => {
                let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                    Ok(s) => s,
                    Err(e) => {
                        println!("PNT error {}", e.raw_os_error().unwrap_or(0));
                        continue;
                    }
                };
                s.set_read_timeout(t).unwrap();
                s.write_all(b"hi").unwrap();
                let mut v = Vec::new();
                s.read_to_end(&mut v).unwrap();
                b[..v.len()].copy_from_slice(&v);
                (s.peer_addr().unwrap(), v.len())
            }
            "udp" => {
                let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                    .parse()
                    .unwrap();
                let s = UdpSocket::bind(any).unwrap();
                s.set_read_timeout(t).unwrap();
                s.connect(to).unwrap();
                s.send(b"q").unwrap();
                let n = s.recv(&mut b).unwrap();
                (s.peer_addr().unwrap(), n)
            }
            "udp-unconnected" => {
                let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                    .parse()
                    .unwrap();
                let s = UdpSocket::bind(any).unwrap();
                s.set_read_timeout(t).unwrap();
                s.send_to(b"q", to).unwrap();
                let (n, from) = s.recv_from(&mut b).unwrap();
                (from, n)
            }
            k => panic!("unknown client kind {k}"),
        };
        println!("PNT {peer} {}", String::from_utf8_lossy(&b[..n]));
    }
}

/// TCP on 8080 and UDP on 5353 in `pod`, both answering `name`.
fn serve(pod: &Netns, ip: IpAddr, name: &'static str) {
    let (tcp, udp) = pod.run(move || {
        (
            TcpListener::bind((ip, 8080)).unwrap(),
            UdpSocket::bind((ip, 5353)).unwrap(),
        )
    });
    std::thread::spawn(move || {
        for mut s in tcp.incoming().flatten() {
            let mut b = [0u8; 16];
            let _ = s.read(&mut b);
            let _ = s.write_all(name.as_bytes());
        }
    });
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok((_, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(name.as_bytes(), from);
        }
    });
}

#[test]
fn host_process_reaches_cluster_ip_backends_through_socket_lb_ipv4() {
    require_privileges!();
    host_to_cluster_ip(false);
}

#[test]
fn host_process_reaches_cluster_ip_backends_through_socket_lb_ipv6() {
    require_privileges!();
    host_to_cluster_ip(true);
}

fn host_to_cluster_ip(v6: bool) {
    let pick = |a: &str, b: &str| -> IpAddr { (if v6 { b } else { a }).parse().unwrap() };
    let f = if v6 { "6" } else { "4" };
    let pins = BpfDir::new(&format!("socklb{f}"));
    let node = Netns::new(&format!("sl{f}n"));
    node.add_address(
        if v6 {
            "fd00:100::1/128"
        } else {
            "192.168.100.1/32"
        },
        "lo",
    );
    let (ip1, ip2) = (pick("10.1.0.2", "fd00:1::2"), pick("10.1.0.3", "fd00:1::3"));
    let vip = pick("10.96.0.10", "fd00:96::10");
    let (p1, e1) = lab_pod(&node, &format!("sl{f}p1"), "lxc1", ip1, 101);
    let (p2, e2) = lab_pod(&node, &format!("sl{f}p2"), "lxc2", ip2, 102);
    let mut dp = Datapath::load(&Options::small(pins.join("n"))).unwrap();
    dp.upsert_endpoint(&e1).unwrap();
    dp.upsert_endpoint(&e2).unwrap();
    let (fe_tcp, fe_udp) = (SocketAddr::new(vip, 80), SocketAddr::new(vip, 53));
    let empty = SocketAddr::new(vip, 81);
    dp.upsert_services(&[
        Service::new(1, fe_tcp, L4Protocol::Tcp)
            .backend(Backend::new(SocketAddr::new(ip1, 8080)))
            .backend(Backend::new(SocketAddr::new(ip2, 8080))),
        Service::new(2, fe_udp, L4Protocol::Udp)
            .backend(Backend::new(SocketAddr::new(ip1, 5353)))
            .backend(Backend::new(SocketAddr::new(ip2, 5353))),
        Service::new(3, empty, L4Protocol::Tcp),
    ])
    .unwrap();
    node.run(|| {
        for e in [&e1, &e2] {
            dp.attach(e.ifindex, Hook::FromContainer).unwrap();
            dp.attach(e.ifindex, Hook::ToContainer).unwrap();
        }
    });
    serve(&p1, ip1, "p1");
    serve(&p2, ip2, "p2");
    let both: HashSet<String> = ["p1".to_string(), "p2".to_string()].into();

    let cg = TestCgroup::new(&format!("socklb{f}"));
    dp.attach_socket_lb(&cg.0).unwrap();
    dp.attach_socket_lb(&cg.0).unwrap(); // a no-op
    assert_eq!(dp.socket_lb_cgroups(), vec![cg.0.clone()]);

    let check = |kind: &str, fe: SocketAddr, lines: Vec<String>| {
        assert_eq!(lines.len(), 20, "{kind}: {lines:?}");
        let mut seen = HashSet::new();
        for l in &lines {
            let (peer, answer) = l.split_once(' ').unwrap();
            assert_eq!(
                peer.parse::<SocketAddr>().unwrap(),
                fe,
                "{kind}: the peer is the ClusterIP"
            );
            seen.insert(answer.to_string());
        }
        assert_eq!(seen, both, "{kind}: both backends answered");
    };
    check(
        "tcp",
        fe_tcp,
        client(&node, Some(&cg), &format!("tcp {fe_tcp} 20")),
    );
    check(
        "udp",
        fe_udp,
        client(&node, Some(&cg), &format!("udp {fe_udp} 20")),
    );
    check(
        "udp-unconnected",
        fe_udp,
        client(&node, Some(&cg), &format!("udp-unconnected {fe_udp} 20")),
    );
    if !v6 {
        // A dual-stack socket reaching the IPv4 ClusterIP as ::ffff:a.b.c.d.
        let IpAddr::V4(v4) = vip else { unreachable!() };
        let mapped = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), 80);
        check(
            "tcp v4-mapped",
            mapped,
            client(&node, Some(&cg), &format!("tcp {mapped} 20")),
        );
    }

    // A frontend without backends: connect() fails (EPERM), counted.
    assert_eq!(
        client(&node, Some(&cg), &format!("tcp {empty} 1")),
        vec![format!("error {}", libc::EPERM)]
    );
    assert_eq!(
        dp.metric(reason::NO_SERVICE, TrafficDirection::Egress)
            .unwrap(),
        1
    );
    // Outside the cgroup nothing translates: the node has no route to the
    // ClusterIP.
    assert_eq!(
        client(&node, None, &format!("tcp {fe_tcp} 1")),
        vec![format!("error {}", libc::ENETUNREACH)]
    );
    // The per-packet path saw backends only: no service conntrack entry.
    let service_entries: usize = [CtTable::Tcp, CtTable::Any]
        .into_iter()
        .map(|t| {
            ct_entries(&dp, v6, t)
                .iter()
                .filter(|(k, _)| k.flags == 4)
                .count()
        })
        .sum();
    assert_eq!(service_entries, 0);

    assert!(dp.detach_socket_lb(&cg.0).unwrap());
    assert!(!dp.detach_socket_lb(&cg.0).unwrap());
    assert_eq!(
        client(&node, Some(&cg), &format!("tcp {fe_tcp} 1")),
        vec![format!("error {}", libc::ENETUNREACH)],
        "detached: no translation"
    );
    dp.teardown().unwrap();
}
