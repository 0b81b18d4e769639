//! BPF_PROG_TEST_RUN tests of session affinity (Kubernetes'
//! `sessionAffinity: ClientIP`): a client keeps its backend across new
//! connections, moves to another one when its backend is removed (or stops
//! taking new connections) and keeps that one then; a service without
//! affinity spreads the same connections; the match entries the loader keeps
//! follow the active backends. Both families.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use common::*;
use podnet_datapath::libbpf_rs::{MapCore, MapHandle};
use podnet_datapath::*;
use testsupport::{require_privileges, BpfDir};

const A_IF: u32 = 10;
const A_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const A_NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 2];

struct Fam {
    client: IpAddr,
    vip: SocketAddr,
    plain_vip: SocketAddr,
    backends: [SocketAddr; 3],
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn fam(v6: bool) -> Fam {
    if v6 {
        Fam {
            client: ip("fd00:1::2"),
            vip: sa("[fd00:96::20]:80"),
            plain_vip: sa("[fd00:96::21]:80"),
            backends: [
                sa("[fd00:2::2]:8080"),
                sa("[fd00:2::3]:8080"),
                sa("[fd00:2::4]:8080"),
            ],
        }
    } else {
        Fam {
            client: ip("10.1.0.2"),
            vip: sa("10.96.0.20:80"),
            plain_vip: sa("10.96.0.21:80"),
            backends: [
                sa("10.2.0.2:8080"),
                sa("10.2.0.3:8080"),
                sa("10.2.0.4:8080"),
            ],
        }
    }
}

fn setup(tag: &str) -> (BpfDir, Datapath) {
    let dir = BpfDir::new(tag);
    let dp = Datapath::load(&Options::small(dir.join("globals"))).expect("load");
    for v6 in [false, true] {
        dp.upsert_endpoint(
            &Endpoint::new(fam(v6).client, A_IF)
                .mac(A_MAC)
                .node_mac(A_NODE_MAC)
                .id(1001)
                .identity(5001),
        )
        .unwrap();
    }
    (dir, dp)
}

fn syn(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let l4 = tcp(src.port(), dst.port(), 0x02);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => packet4(A_MAC, A_NODE_MAC, &Ip4::new(s, d, 6), &l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = eth(A_NODE_MAC, A_MAC, ETH_P_IPV6);
            p.extend(ip6(s, d, 6, 64, &l4));
            p
        }
        _ => unreachable!(),
    }
}

/// Where a translated packet goes.
fn dst_of(p: &[u8]) -> SocketAddr {
    if p[12..14] == [0x08, 0] {
        let hl = usize::from(p[14] & 0xf) * 4;
        let d: [u8; 4] = p[30..34].try_into().unwrap();
        let port = u16::from_be_bytes([p[14 + hl + 2], p[14 + hl + 3]]);
        SocketAddr::new(d.into(), port)
    } else {
        let d: [u8; 16] = p[38..54].try_into().unwrap();
        SocketAddr::new(d.into(), u16::from_be_bytes([p[56], p[57]]))
    }
}

/// The backends `n` new connections (source ports from `first`) get.
fn backends_of(
    dp: &Datapath,
    client: IpAddr,
    vip: SocketAddr,
    first: u16,
    n: u16,
) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| {
            let out = dp
                .test_run(
                    Program::FromContainer,
                    &syn(SocketAddr::new(client, first + i), vip),
                    &TestContext::new().ingress_ifindex(A_IF),
                )
                .unwrap();
            assert_eq!(out.retval, TC_ACT_OK, "remote backend: to the stack");
            dst_of(&out.data)
        })
        .collect()
}

fn distinct(v: &[SocketAddr]) -> HashSet<SocketAddr> {
    v.iter().copied().collect()
}

fn match_entries(dir: &BpfDir) -> usize {
    let m = MapHandle::from_pinned_path(dir.join("globals").join(maps::LB_AFFINITY_MATCH))
        .expect("open the match map");
    m.keys().count()
}

#[test]
fn client_keeps_its_backend_and_moves_when_it_is_removed() {
    require_privileges!();
    for v6 in [false, true] {
        let (dir, dp) = setup(&format!("aff-{v6}"));
        let f = fam(v6);
        let all = f.backends.iter().map(|b| Backend::new(*b));
        let svc = Service::new(9, f.vip, L4Protocol::Tcp).session_affinity(600);
        let svc = all.clone().fold(svc, Service::backend);
        dp.upsert_service(&svc).unwrap();
        let plain = all.fold(
            Service::new(10, f.plain_vip, L4Protocol::Tcp),
            Service::backend,
        );
        dp.upsert_service(&plain).unwrap();
        assert_eq!(
            match_entries(&dir),
            3,
            "one per active backend of the affinity service"
        );
        assert_eq!(
            dp.services()
                .unwrap()
                .iter()
                .find(|s| s.id == 9)
                .unwrap()
                .session_affinity,
            Some(600)
        );

        // Without affinity the same client is spread (all 30 on one of
        // three backends: 3^-29).
        assert!(distinct(&backends_of(&dp, f.client, f.plain_vip, 30000, 30)).len() > 1);

        // With affinity: one backend for every new connection.
        let got = backends_of(&dp, f.client, f.vip, 40000, 30);
        let first = distinct(&got);
        assert_eq!(first.len(), 1, "v6 {v6}: {got:?}");
        let b0 = got[0];

        // Its backend removed: the client moves, and stays on the new one.
        let rest: Vec<Backend> = f
            .backends
            .iter()
            .filter(|b| **b != b0)
            .map(|b| Backend::new(*b))
            .collect();
        let svc2 = rest.iter().copied().fold(
            Service::new(9, f.vip, L4Protocol::Tcp).session_affinity(600),
            Service::backend,
        );
        dp.upsert_service(&svc2).unwrap();
        assert_eq!(match_entries(&dir), 2);
        let got = backends_of(&dp, f.client, f.vip, 41000, 30);
        assert_eq!(distinct(&got).len(), 1, "v6 {v6}: {got:?}");
        let b1 = got[0];
        assert_ne!(b1, b0, "v6 {v6}: not the removed backend");

        // Its backend terminating (no new connections): it moves again.
        let svc3 = rest.iter().fold(
            Service::new(9, f.vip, L4Protocol::Tcp).session_affinity(600),
            |s, b| {
                s.backend(if b.addr == b1 {
                    b.with_state(BackendState::Terminating)
                } else {
                    *b
                })
            },
        );
        dp.upsert_service(&svc3).unwrap();
        assert_eq!(match_entries(&dir), 1);
        let got = backends_of(&dp, f.client, f.vip, 42000, 10);
        assert_eq!(distinct(&got).len(), 1);
        assert!(got[0] != b0 && got[0] != b1, "v6 {v6}: {got:?}");

        // Affinity off: no match entries left; removed: none either.
        let off = rest
            .iter()
            .copied()
            .fold(Service::new(9, f.vip, L4Protocol::Tcp), Service::backend);
        dp.upsert_service(&off).unwrap();
        assert_eq!(match_entries(&dir), 0);
        dp.upsert_service(&svc2).unwrap();
        assert_eq!(match_entries(&dir), 2);
        assert!(dp.remove_service(f.vip, L4Protocol::Tcp).unwrap());
        assert_eq!(match_entries(&dir), 0);
    }
}
