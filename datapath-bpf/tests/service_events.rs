//! BPF_PROG_TEST_RUN tests of the events of service flows: the trace of a
//! new connection to a ClusterIP names the client pod and the backend pod it
//! was translated to, the reply's trace names the client again (with the
//! frontend as its source after reverse NAT), a frontend without backends
//! is a `DROP_NO_SERVICE` drop naming the client, and a NodePort connection
//! to a local backend is traced into the backend. Both delivery modes.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

fn vip() -> SocketAddr {
    "10.96.0.10:80".parse().unwrap()
}
fn backend() -> SocketAddr {
    "10.1.0.3:8080".parse().unwrap()
}
/// A node address with a NodePort frontend, and a client on the underlay.
fn node_port() -> SocketAddr {
    "192.168.50.1:30080".parse().unwrap()
}
fn outside() -> Ipv4Addr {
    "192.168.50.100".parse().unwrap()
}

/// Client pod A and backend pod B on this node; the ClusterIP `vip()` and
/// the NodePort `node_port()` to B (`with_backend`), else without backends.
fn setup(tag: &str, peer: bool, with_backend: bool) -> (BpfDir, Datapath, Events) {
    let (dir, dp) = load_small(tag, |o| o.redirect_peer(peer));
    add_pods(
        &dp,
        &[(a4().into(), true), (b4().into(), false)],
        EndpointFlags::empty(),
    );
    for (id, fe, kind) in [
        (7, vip(), ServiceKind::ClusterIp),
        (8, node_port(), ServiceKind::NodePort),
    ] {
        let mut svc = Service::new(id, fe, L4Protocol::Tcp).kind(kind);
        if with_backend {
            svc = svc.backend(Backend::new(backend()));
        }
        dp.upsert_service(&svc).unwrap();
    }
    let ev = dp.events().expect("open events");
    (dir, dp, ev)
}

fn tcp_pkt(src: SocketAddr, dst: SocketAddr, flags: u8, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        unreachable!()
    };
    packet4(
        macs.0,
        macs.1,
        &Ip4::new(s, d, 6),
        &tcp(src.port(), dst.port(), flags),
    )
}

fn client() -> SocketAddr {
    SocketAddr::new(a4().into(), 40000)
}

/// A → ClusterIP (translated to B), then B's reply: each traced once, into
/// the right endpoint, from the right one, with the translated addresses.
#[test]
fn service_connection_traces_name_client_and_backend() {
    require_privileges!();
    for peer in [true, false] {
        let (_dir, dp, mut ev) = setup(&format!("svcev-{peer}"), peer, true);
        let syn = tcp_pkt(client(), vip(), 0x02, (A_MAC, A_NODE_MAC));
        let out = dp
            .test_run(Program::FromContainer, &syn, &from_a())
            .unwrap();
        assert_eq!(out.retval, TC_ACT_REDIRECT, "peer {peer}");
        let (t, _) = one_trace(&mut ev, &format!("peer {peer}"));
        assert_eq!(t.obs_point(), ObsPoint::TO_ENDPOINT);
        assert_eq!(trace_reason_name(t.reason), "new");
        assert_eq!(
            (t.header.source, t.dst_endpoint),
            (A_EP, B_EP),
            "peer {peer}"
        );
        assert_eq!((t.src_identity, t.dst_identity), (A_ID, B_ID));
        assert_eq!(
            flow_ends(DatapathEvent::Trace(t)),
            (client(), backend()),
            "the trace shows the packet as delivered (translated)"
        );
        if !peer {
            // Without redirect_peer the backend's to-container runs its
            // ingress conntrack and policy, and traces the delivery too.
            let into_b = dp
                .test_run(Program::ToContainer, &out.data, &TestContext::new())
                .unwrap();
            assert_eq!(into_b.retval, TC_ACT_OK);
            let (t, _) = one_trace(&mut ev, "into B");
            assert_eq!(t.dst_endpoint, B_EP);
        }

        // The reply from B: source back to the frontend, into A.
        let synack = tcp_pkt(backend(), client(), 0x12, (B_MAC, B_NODE_MAC));
        let out = dp
            .test_run(
                Program::FromContainer,
                &synack,
                &TestContext::new().ingress_ifindex(B_IF),
            )
            .unwrap();
        assert_eq!(out.retval, TC_ACT_REDIRECT);
        if !peer {
            // Without redirect_peer the reply is translated back at A's
            // to-container, where the client's ingress conntrack runs.
            let (t, _) = one_trace(&mut ev, "the reply at B");
            assert_eq!((t.header.source, t.dst_endpoint), (B_EP, A_EP));
            let back = dp
                .test_run(Program::ToContainer, &out.data, &TestContext::new())
                .unwrap();
            assert_eq!(back.retval, TC_ACT_OK);
        }
        let (t, _) = one_trace(&mut ev, &format!("peer {peer}"));
        assert_eq!(t.obs_point(), ObsPoint::TO_ENDPOINT);
        assert_eq!(t.dst_endpoint, A_EP, "peer {peer}: into the client");
        if peer {
            assert_eq!(t.header.source, B_EP, "from the backend");
        }
        assert_eq!(trace_reason_name(t.reason), "reply");
        assert_eq!(
            flow_ends(DatapathEvent::Trace(t)),
            (vip(), client()),
            "peer {peer}: the reply as the client sees it"
        );
    }
}

/// A frontend without backends: one drop, `DROP_NO_SERVICE`, naming the
/// client pod and its identity (the translation runs before the flow's
/// policy decision, which would otherwise be what names them).
#[test]
fn no_backend_drop_names_the_client() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("svcev-none", true, false);
    let syn = tcp_pkt(client(), vip(), 0x02, (A_MAC, A_NODE_MAC));
    let out = dp
        .test_run(Program::FromContainer, &syn, &from_a())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    let evs = drain(&mut ev);
    let d = drops(&evs);
    assert_eq!(d.len(), 1, "{evs:#?}");
    assert_eq!(d[0].reason(), reason::NO_SERVICE);
    assert_eq!(d[0].header.source, A_EP, "{}", d[0]);
    assert_eq!(d[0].src_identity, A_ID);
    assert_eq!(bpf_file_name(d[0].file), "datapath.bpf.c");
    assert_eq!(
        flow_ends(DatapathEvent::Drop(d[0].clone())),
        (client(), vip())
    );
}

/// Medium aggregation: a service connection's established packets are not
/// traced (the service entry does not report on its own), only its first
/// packet and its first ACK, as for any connection.
#[test]
fn established_service_flow_traced_as_any_flow() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("svcev-est", true, true);
    let from_a = from_a();
    dp.test_run(
        Program::FromContainer,
        &tcp_pkt(client(), vip(), 0x02, (A_MAC, A_NODE_MAC)),
        &from_a,
    )
    .unwrap();
    let ack = tcp_pkt(client(), vip(), 0x10, (A_MAC, A_NODE_MAC));
    for _ in 0..5 {
        assert_eq!(
            dp.test_run(Program::FromContainer, &ack, &from_a)
                .unwrap()
                .retval,
            TC_ACT_REDIRECT
        );
    }
    let evs = drain(&mut ev);
    let reasons: Vec<(&str, u16, u16)> = traces(&evs)
        .iter()
        .map(|t| (trace_reason_name(t.reason), t.header.source, t.dst_endpoint))
        .collect();
    assert_eq!(
        reasons,
        [("new", A_EP, B_EP), ("established", A_EP, B_EP)],
        "{evs:#?}"
    );
}

/// NodePort from the underlay to a local backend: traced into the backend.
#[test]
fn nodeport_to_local_backend_traced_into_the_backend() {
    require_privileges!();
    let (_dir, dp, mut ev) = setup("svcev-np", true, true);
    let syn = tcp_pkt(
        SocketAddr::new(outside().into(), 50000),
        node_port(),
        0x02,
        ([0x02, 0xcc, 0, 0, 0, 1], [0x02, 0xcc, 0, 0, 0, 2]),
    );
    let out = dp
        .test_run(Program::FromNetdev, &syn, &TestContext::new())
        .unwrap();
    assert_eq!(out.retval, TC_ACT_REDIRECT);
    let (t, _) = one_trace(&mut ev, "NodePort");
    assert_eq!(t.obs_point(), ObsPoint::TO_ENDPOINT);
    assert_eq!(t.dst_endpoint, B_EP);
    assert_eq!(t.dst_identity, B_ID);
    assert_eq!(flow_ends(DatapathEvent::Trace(t)).1, backend());
}
