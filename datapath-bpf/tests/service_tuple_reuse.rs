//! BPF_PROG_TEST_RUN tests of a 4-tuple reused across a service connection
//! and a direct one: a client port that reached a backend through a
//! ClusterIP (per-packet DNAT, its CT entries carrying the reverse NAT
//! index) and then connects to the backend's address itself (socket LB
//! attached meanwhile, or the pod dialling the backend) while the earlier
//! flow's entries still live, and the other way round. The backend's
//! SYN-ACK must come back from the address the client connected to: the
//! backend for the direct connection (translated to the frontend, the
//! client resets it), the frontend for the service one. Every path a reply
//! can take: a backend on this node (`bpf_redirect_peer` from its
//! from-container, or its to-container after a redirect to the client's
//! veth) and a backend on another node (from-netdev, then into the pod or
//! through its to-container); NodePort from the underlay then a direct
//! connection to the backend pod, both families.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

const SVC_ID: u16 = 9;

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// Where the backend is, and how its replies reach the client.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// On this node; its from-container delivers with `bpf_redirect_peer`.
    LocalPeer,
    /// On this node; its from-container redirects to the client's veth,
    /// whose to-container runs next.
    LocalVeth,
    /// On another node: replies arrive at from-netdev, into the pod.
    RemotePeer,
    /// On another node: from-netdev redirects to the client's veth.
    RemoteVeth,
}

impl Path {
    fn peer(self) -> bool {
        matches!(self, Path::LocalPeer | Path::RemotePeer)
    }
    fn local(self) -> bool {
        matches!(self, Path::LocalPeer | Path::LocalVeth)
    }
}

struct Lab {
    dp: Datapath,
    _dir: BpfDir,
    path: Path,
    client: SocketAddr,
    frontend: SocketAddr,
    backend: SocketAddr,
}

/// Client A, backend B (pod B of the two-pod fixture when local, else a
/// pod of another node's CIDR), the ClusterIP.
fn addrs(v6: bool, local: bool) -> (IpAddr, IpAddr, IpAddr) {
    if v6 {
        let b: Ipv6Addr = if local {
            b6()
        } else {
            "fd00:2::3".parse().unwrap()
        };
        (
            a6().into(),
            b.into(),
            "fd00:96::10".parse::<Ipv6Addr>().unwrap().into(),
        )
    } else {
        let b: Ipv4Addr = if local {
            b4()
        } else {
            "10.2.0.3".parse().unwrap()
        };
        (
            a4().into(),
            b.into(),
            "10.96.0.10".parse::<Ipv4Addr>().unwrap().into(),
        )
    }
}

impl Lab {
    /// Client pod A on this node, backend B here or on another node, a
    /// ClusterIP whose one backend is B:8080.
    fn new(v6: bool, path: Path) -> Lab {
        let tag = format!("reuse{}{:?}", u8::from(v6), path).to_lowercase();
        let (dir, dp) = load_small(&tag, |o| o.redirect_peer(path.peer()).trace_redirects(true));
        let (a, b, vip) = addrs(v6, path.local());
        let pods: &[(IpAddr, bool)] = if path.local() {
            &[(a, true), (b, false)]
        } else {
            &[(a, true)]
        };
        add_pods(&dp, pods, EndpointFlags::empty());
        let backend = SocketAddr::new(b, 8080);
        let frontend = SocketAddr::new(vip, 80);
        dp.upsert_service(
            &Service::new(SVC_ID, frontend, L4Protocol::Tcp).backend(Backend::new(backend)),
        )
        .unwrap();
        Lab {
            dp,
            _dir: dir,
            path,
            client: SocketAddr::new(a, 40000),
            frontend,
            backend,
        }
    }

    /// A packet redirected to a pod's veth, through that veth's
    /// to-container (without redirect_peer; with it, the pod has it
    /// already): the packet as the pod receives it.
    fn through_veth(&self, data: Vec<u8>, what: &str) -> Vec<u8> {
        if self.path.peer() {
            return data;
        }
        let out = self
            .dp
            .test_run(Program::ToContainer, &data, &TestContext::new())
            .unwrap();
        assert_eq!(out.retval, TC_ACT_OK, "{what}");
        out.data
    }

    /// The client's packet to `dst`, through from-container (and the
    /// backend's to-container when it is delivered to its veth): the
    /// packet as it leaves.
    fn send(&self, dst: SocketAddr, flags: u8) -> (SocketAddr, SocketAddr) {
        let out = self
            .dp
            .test_run(
                Program::FromContainer,
                &tcp_pkt(self.client, dst, flags, (A_MAC, A_NODE_MAC)),
                &TestContext::new().ingress_ifindex(A_IF),
            )
            .unwrap();
        let what = format!("{:?}: client to {dst}, flags {flags:#x}", self.path);
        assert_ne!(out.retval, TC_ACT_SHOT, "{what}: dropped");
        let mut data = out.data;
        if self.path.local() {
            assert_eq!(out.retval, TC_ACT_REDIRECT, "{what}: delivered");
            assert_eq!(self.dp.last_redirect().unwrap(), Some(B_IF), "{what}");
            data = self.through_veth(data, &format!("{what}: into the backend"));
        }
        let (s, d) = addresses(&data);
        assert_eq!(s, self.client, "{what}: source");
        (s, d)
    }

    /// The backend's packet to the client along the lab's path: the
    /// packet as the client receives it.
    fn reply(&self, flags: u8) -> (SocketAddr, SocketAddr) {
        let p = tcp_pkt(self.backend, self.client, flags, (B_MAC, B_NODE_MAC));
        let first = if self.path.local() {
            Program::FromContainer
        } else {
            Program::FromNetdev
        };
        let ctx = if self.path.local() {
            TestContext::new().ingress_ifindex(B_IF)
        } else {
            TestContext::new()
        };
        let what = format!("{:?}: backend's reply, flags {flags:#x}", self.path);
        let out = self.dp.test_run(first, &p, &ctx).unwrap();
        assert_eq!(out.retval, TC_ACT_REDIRECT, "{what}: redirected");
        assert_eq!(self.dp.last_redirect().unwrap(), Some(A_IF), "{what}");
        let data = self.through_veth(out.data, &format!("{what}: into the client"));
        let (s, d) = addresses(&data);
        assert_eq!(d, self.client, "{what}: destination");
        (s, d)
    }

    /// A connection to `dst` (the frontend or the backend): handshake,
    /// the SYN-ACK's source checked, then closed with a reset by the
    /// client (as a socket with `SO_LINGER` 0 does), its entries left.
    fn connection(&self, dst: SocketAddr, what: &str) {
        let (_, d) = self.send(dst, SYN);
        assert_eq!(
            d, self.backend,
            "{:?} {what}: SYN to the backend",
            self.path
        );
        let (s, _) = self.reply(SYN_ACK);
        assert_eq!(
            s, dst,
            "{:?} {what}: the SYN-ACK comes from the address the client connected to",
            self.path
        );
        self.send(dst, ACK);
        let (s, _) = self.reply(ACK);
        assert_eq!(s, dst, "{:?} {what}: data from it too", self.path);
        self.send(dst, RST | ACK);
    }
}

fn tcp_pkt(src: SocketAddr, dst: SocketAddr, flags: u8, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let mut l4 = tcp(src.port(), dst.port(), flags);
    let c = l4_csum(src.ip(), dst.ip(), 6, &l4);
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => packet4(macs.0, macs.1, &Ip4::new(s, d, 6), &l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = eth(macs.1, macs.0, ETH_P_IPV6);
            p.extend(ip6(s, d, 6, 64, &l4));
            p
        }
        _ => unreachable!("one family"),
    }
}

/// Source and destination of a TCP packet.
fn addresses(p: &[u8]) -> (SocketAddr, SocketAddr) {
    let (s, d, l4): (IpAddr, IpAddr, usize) = if p[12..14] == [0x08, 0] {
        let hl = usize::from(p[14] & 0xf) * 4;
        (
            Ipv4Addr::new(p[26], p[27], p[28], p[29]).into(),
            Ipv4Addr::new(p[30], p[31], p[32], p[33]).into(),
            14 + hl,
        )
    } else {
        let s: [u8; 16] = p[22..38].try_into().unwrap();
        let d: [u8; 16] = p[38..54].try_into().unwrap();
        (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), 54)
    };
    let port = |o: usize| u16::from_be_bytes([p[l4 + o], p[l4 + o + 1]]);
    (SocketAddr::new(s, port(0)), SocketAddr::new(d, port(2)))
}

/// Service, then direct, then service again, on one client port.
fn service_then_direct(v6: bool, path: Path) {
    let lab = Lab::new(v6, path);
    lab.connection(lab.frontend, "service connection");
    lab.connection(lab.backend, "direct connection reusing its tuple");
    lab.connection(lab.frontend, "service connection reusing it again");
    lab.dp.teardown().unwrap();
}

/// Direct first, then a service connection reusing its tuple.
fn direct_then_service(v6: bool, path: Path) {
    let lab = Lab::new(v6, path);
    lab.connection(lab.backend, "direct connection");
    lab.connection(lab.frontend, "service connection reusing its tuple");
    lab.connection(lab.backend, "direct connection reusing it again");
    lab.dp.teardown().unwrap();
}

const PATHS: [Path; 4] = [
    Path::LocalPeer,
    Path::LocalVeth,
    Path::RemotePeer,
    Path::RemoteVeth,
];

#[test]
fn service_flow_then_direct_connection_on_its_tuple_v4() {
    require_privileges!();
    for path in PATHS {
        service_then_direct(false, path);
    }
}

#[test]
fn service_flow_then_direct_connection_on_its_tuple_v6() {
    require_privileges!();
    for path in PATHS {
        service_then_direct(true, path);
    }
}

#[test]
fn direct_connection_then_service_flow_on_its_tuple_v4() {
    require_privileges!();
    for path in PATHS {
        direct_then_service(false, path);
    }
}

#[test]
fn direct_connection_then_service_flow_on_its_tuple_v6() {
    require_privileges!();
    for path in PATHS {
        direct_then_service(true, path);
    }
}

/// NodePort from the underlay to a local backend, then the same client
/// port to the backend pod's own address (routed to it: from-netdev
/// delivers it as any pod traffic), both families, into the pod
/// (`bpf_redirect_peer`) or through its veth's to-container: the backend's
/// ingress entry, made by the NodePort flow with its reverse NAT index,
/// must not translate the direct connection's SYN-ACK to the node's
/// address, nor lose the index when the NodePort flow comes back.
#[test]
fn nodeport_flow_then_direct_connection_on_its_tuple() {
    require_privileges!();
    for (v6, path) in [
        (false, Path::LocalPeer),
        (false, Path::LocalVeth),
        (true, Path::LocalPeer),
        (true, Path::LocalVeth),
    ] {
        let lab = Lab::new(v6, path);
        let (node, ext): (IpAddr, IpAddr) = if v6 {
            (
                "fd00:100::1".parse().unwrap(),
                "fd00:100::9".parse().unwrap(),
            )
        } else {
            (
                "192.168.100.1".parse().unwrap(),
                "192.168.100.9".parse().unwrap(),
            )
        };
        let fe = SocketAddr::new(node, 30080);
        lab.dp
            .upsert_service(
                &Service::new(SVC_ID + 1, fe, L4Protocol::Tcp)
                    .kind(ServiceKind::NodePort)
                    .backend(Backend::new(lab.backend)),
            )
            .unwrap();
        let cl = SocketAddr::new(ext, 5555);
        for (dst, what) in [
            (fe, "NodePort connection"),
            (lab.backend, "direct connection reusing its tuple"),
            (fe, "NodePort connection reusing it again"),
        ] {
            let out = lab
                .dp
                .test_run(
                    Program::FromNetdev,
                    &tcp_pkt(cl, dst, SYN, (B_NODE_MAC, A_NODE_MAC)),
                    &TestContext::new(),
                )
                .unwrap();
            assert_eq!(
                out.retval, TC_ACT_REDIRECT,
                "v6 {v6} {path:?} {what}: delivered"
            );
            assert_eq!(
                addresses(&out.data),
                (cl, lab.backend),
                "v6 {v6} {path:?} {what}"
            );
            if !path.peer() {
                let ctx = TestContext::new().mark(out.mark);
                let out = lab
                    .dp
                    .test_run(Program::ToContainer, &out.data, &ctx)
                    .unwrap();
                assert_eq!(
                    out.retval, TC_ACT_OK,
                    "v6 {v6} {path:?} {what}: into the pod"
                );
            }
            let out = lab
                .dp
                .test_run(
                    Program::FromContainer,
                    &tcp_pkt(lab.backend, cl, SYN_ACK, (B_MAC, B_NODE_MAC)),
                    &TestContext::new().ingress_ifindex(B_IF),
                )
                .unwrap();
            assert_ne!(out.retval, TC_ACT_SHOT, "v6 {v6} {path:?} {what}: SYN-ACK");
            assert_eq!(
                addresses(&out.data),
                (dst, cl),
                "v6 {v6} {path:?} {what}: the SYN-ACK comes from the address the client connected to"
            );
            lab.dp
                .test_run(
                    Program::FromNetdev,
                    &tcp_pkt(cl, dst, RST | ACK, (B_NODE_MAC, A_NODE_MAC)),
                    &TestContext::new(),
                )
                .unwrap();
        }
        lab.dp.teardown().unwrap();
    }
}
