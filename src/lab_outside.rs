//! An "outside" network beyond the lab's cluster CIDR, for masquerade: a
//! namespace that knows the node addresses but no pod address, so it only
//! ever talks to pods masqueraded to a node.
//!
//! ```text
//!  node1 eth1 203.0.113.1/24 ══ eth0 outside 203.0.113.100/24
//!  node2 ── eth0 ══ node1 ── eth1 ══ outside   (203.0.113.0/24 via 192.168.100.1)
//!  outside: 192.168.100.0/24 via 203.0.113.1 (node addresses, no pod CIDR)
//! ```
//!
//! Both nodes masquerade IPv4 on `eth+` (node1 on `eth0` and `eth1`, node2
//! on `eth0`), native-routing CIDR 10.0.0.0/8: pod1x reach the outside as
//! 203.0.113.1 (node1's address on `eth1`), pod2x as 192.168.100.2
//! (node2's, routed on by node1 untouched).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use ipnet::IpNet;
use podnet_datapath::{AttachMode, Masquerade};
use podnet_route::{Address, Handle, Route, Veth};
use testsupport::Netns;

use crate::lab::{Lab, LabPlan, LabResult, Pod};

/// The outside namespace's address.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
/// node1's address towards the outside (on its `eth1`).
pub const NODE1_OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// The masquerade settings of both nodes.
pub fn masquerade() -> Masquerade {
    Masquerade::new()
        .ipv4(true)
        .interfaces(["eth+"])
        .ipv4_native_routing_cidr("10.0.0.0/8".parse().expect("a prefix"))
}

/// [`LabPlan::two_nodes`] with masquerade on and node1's `eth1`.
pub fn plan(prefix: &str) -> LabPlan {
    let mut plan = LabPlan::two_nodes(prefix);
    for n in &mut plan.nodes {
        n.masquerade = masquerade();
    }
    plan.nodes[0].netdevs = vec!["eth1".into()];
    plan
}

/// The outside namespace.
pub struct Outside {
    /// Its namespace (removed on drop).
    pub ns: Netns,
}

/// Creates the outside namespace and its links and routes (before the
/// datapath starts: it attaches to node1's `eth1`).
pub fn create(lab: &Lab, fixed_name: Option<&str>) -> LabResult<Outside> {
    let ns = match fixed_name {
        Some(n) => Netns::named(n),
        None => Netns::new("outside"),
    };
    let node1 = &lab.nodes[0];
    let node2 = &lab.nodes[1];
    let h1 = Handle::open_netns(node1.ns.path())?;
    h1.add_veth(&Veth::new("eth1", "eth0").peer_netns(ns.path()))?;
    h1.set_link_up("eth1")?;
    h1.add_address(&Address::new(
        IpNet::new(IpAddr::V4(NODE1_OUTSIDE_IP), 24)?,
        "eth1",
    ))?;
    let ho = Handle::open_netns(ns.path())?;
    ho.set_link_up("eth0")?;
    ho.add_address(&Address::new(
        IpNet::new(IpAddr::V4(OUTSIDE_IP), 24)?,
        "eth0",
    ))?;
    ho.upsert(
        &Route::new("192.168.100.0/24".parse()?)
            .via(IpAddr::V4(NODE1_OUTSIDE_IP))
            .dev("eth0"),
        None,
    )?;
    let h2 = Handle::open_netns(node2.ns.path())?;
    h2.upsert(
        &Route::new("203.0.113.0/24".parse()?)
            .via(IpAddr::V4(node1.plan.node_ip))
            .dev("eth0"),
        None,
    )?;
    Ok(Outside { ns })
}

/// A two-node lab with masquerade and the outside, routes installed and
/// the datapath started (tcx where the kernel has it).
pub fn start(tag: &str) -> LabResult<(Lab, Outside)> {
    let mut lab = Lab::create(&plan(tag), false)?;
    let outside = create(&lab, None)?;
    lab.install_routes()?;
    lab.start_datapath(AttachMode::Auto)?;
    Ok((lab, outside))
}

/// A TCP and a UDP server in the outside namespace on `port` that answer
/// every line (TCP) or datagram (UDP) with `<peer ip:port> <what was
/// sent>`: the outside's view of who is talking to it.
pub struct PeerServer {
    /// The TCP address.
    pub tcp: SocketAddr,
    /// The UDP address.
    pub udp: SocketAddr,
}

impl PeerServer {
    /// Starts both servers (threads that live as long as the process, their
    /// sockets in the outside namespace).
    pub fn start(outside: &Outside, port: u16) -> LabResult<PeerServer> {
        let addr = SocketAddr::new(IpAddr::V4(OUTSIDE_IP), port);
        let (listener, udp) = outside.ns.run(|| -> std::io::Result<_> {
            Ok((TcpListener::bind(addr)?, UdpSocket::bind(addr)?))
        })?;
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                std::thread::spawn(move || serve_tcp(s));
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, peer)) = udp.recv_from(&mut buf) {
                let msg = format!("{peer} {}", String::from_utf8_lossy(&buf[..n]));
                let _ = udp.send_to(msg.as_bytes(), peer);
            }
        });
        Ok(PeerServer {
            tcp: addr,
            udp: addr,
        })
    }
}

fn serve_tcp(s: TcpStream) {
    let Ok(peer) = s.peer_addr() else { return };
    let Ok(mut w) = s.try_clone() else { return };
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return };
        if writeln!(w, "{peer} {line}").is_err() {
            return;
        }
    }
}

/// Sends `line` over `s` and returns the server's answer (without the
/// newline).
pub fn ask(s: &mut TcpStream, line: &str) -> LabResult<String> {
    writeln!(s, "{line}")?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    Ok(answer.trim_end().to_string())
}

/// One UDP exchange from `pod` with the server: its answer.
pub fn udp_ask(pod: &Pod, to: SocketAddr, msg: &str) -> LabResult<String> {
    let sock = pod.ns.run(|| UdpSocket::bind("0.0.0.0:0"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 2048];
    // A datagram may meet an unresolved neighbour on the way: retry.
    for _ in 0..3 {
        sock.send_to(msg.as_bytes(), to)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    Err(format!("no UDP answer from {to}").into())
}

/// The address the outside sees for a pod of node `node` (1 or 2).
pub fn seen_as(node: usize) -> IpAddr {
    if node == 1 {
        IpAddr::V4(NODE1_OUTSIDE_IP)
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 168, 100, 2))
    }
}
