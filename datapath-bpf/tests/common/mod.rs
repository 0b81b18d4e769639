//! Packet crafting for BPF_PROG_TEST_RUN tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod ct;
mod events;
mod lab_pod;
mod two_pods;
// Each test binary uses some of them.
#[allow(unused_imports)]
pub use ct::*;
#[allow(unused_imports)]
pub use events::*;
#[allow(unused_imports)]
pub use lab_pod::*;
#[allow(unused_imports)]
pub use two_pods::*;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;

pub fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The L4 checksum over the pseudo header and `l4` (RFC 768/793/8200),
/// computed independently of the programs.
pub fn l4_csum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!(),
    }
    pseudo.extend_from_slice(l4);
    csum(&pseudo)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], proto: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&proto.to_be_bytes());
    v
}

pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut v = vec![0u8; 20];
    v[0..2].copy_from_slice(&sport.to_be_bytes());
    v[2..4].copy_from_slice(&dport.to_be_bytes());
    v[12] = 5 << 4;
    v[13] = flags;
    v[14..16].copy_from_slice(&64240u16.to_be_bytes());
    v
}

pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut v = vec![0u8; 8 + payload];
    v[0..2].copy_from_slice(&sport.to_be_bytes());
    v[2..4].copy_from_slice(&dport.to_be_bytes());
    v[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    v
}

pub fn icmp_echo(request: bool, v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[0] = match (v6, request) {
        (false, true) => 8,
        (false, false) => 0,
        (true, true) => 128,
        (true, false) => 129,
    };
    v[4..6].copy_from_slice(&id.to_be_bytes());
    v[6..8].copy_from_slice(&seq.to_be_bytes());
    if !v6 {
        let c = csum(&v);
        v[2..4].copy_from_slice(&c.to_be_bytes());
    }
    v
}

pub struct Ip4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub options: Vec<u8>,
    pub frag_off: u16,
}

impl Ip4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Ip4 {
            src,
            dst,
            proto,
            ttl: 64,
            options: Vec::new(),
            frag_off: 0,
        }
    }

    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hlen = 20 + self.options.len();
        let mut v = vec![0u8; 20];
        v[0] = 0x40 | (hlen / 4) as u8;
        v[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
        v[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        v[6..8].copy_from_slice(&self.frag_off.to_be_bytes());
        v[8] = self.ttl;
        v[9] = self.proto;
        v[12..16].copy_from_slice(&self.src.octets());
        v[16..20].copy_from_slice(&self.dst.octets());
        v.extend_from_slice(&self.options);
        let c = csum(&v);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }
}

pub fn ip6(src: Ipv6Addr, dst: Ipv6Addr, nexthdr: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 40];
    v[0] = 0x60;
    v[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    v[6] = nexthdr;
    v[7] = hop;
    v[8..24].copy_from_slice(&src.octets());
    v[24..40].copy_from_slice(&dst.octets());
    v.extend_from_slice(payload);
    v
}

pub fn packet4(src_mac: [u8; 6], dst_mac: [u8; 6], ip: &Ip4, l4: &[u8]) -> Vec<u8> {
    let mut p = eth(dst_mac, src_mac, ETH_P_IP);
    p.extend(ip.build(l4));
    p
}

/// CLOCK_MONOTONIC seconds, the clock of `bpf_ktime_get_ns()`.
pub fn mono_now() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u32
}
