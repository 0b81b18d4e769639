//! The two-pod fixture of the BPF_PROG_TEST_RUN tests: pod A (the client)
//! and pod B on this node, behind host-side veths `A_IF` and `B_IF`, with
//! their MACs, endpoint ids and security identities; a datapath of small
//! maps whose globals are pinned in a bpffs dir of the test's own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use podnet_datapath::{Datapath, Endpoint, EndpointFlags, Options, TestContext};
use testsupport::BpfDir;

pub const A_IF: u32 = 10;
pub const B_IF: u32 = 20;
pub const A_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
pub const A_NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 2];
pub const B_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
pub const B_NODE_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
/// The pods' security identities.
pub const A_ID: u32 = 5001;
pub const B_ID: u32 = 5002;
/// The pods' endpoint ids.
pub const A_EP: u16 = 1001;
pub const B_EP: u16 = 1002;

pub fn a4() -> Ipv4Addr {
    "10.1.0.2".parse().unwrap()
}
pub fn b4() -> Ipv4Addr {
    "10.1.0.3".parse().unwrap()
}
pub fn a6() -> Ipv6Addr {
    "fd00:1::2".parse().unwrap()
}
pub fn b6() -> Ipv6Addr {
    "fd00:1::3".parse().unwrap()
}

/// Pod A's (`a`) or pod B's endpoint at `ip`, with `flags`.
pub fn ep(ip: IpAddr, a: bool, flags: EndpointFlags) -> Endpoint {
    Endpoint::new(ip, if a { A_IF } else { B_IF })
        .mac(if a { A_MAC } else { B_MAC })
        .node_mac(if a { A_NODE_MAC } else { B_NODE_MAC })
        .id(if a { A_EP } else { B_EP })
        .identity(if a { A_ID } else { B_ID })
        .flags(flags)
}

/// Both pods in both families, as (address, is A), in the order
/// [`add_pods`] upserts them.
pub fn both_families() -> [(IpAddr, bool); 4] {
    [
        (a4().into(), true),
        (b4().into(), false),
        (a6().into(), true),
        (b6().into(), false),
    ]
}

/// Upserts the endpoints of `pods` ((address, is A) pairs, in order): A's
/// without flags, B's with `b_flags`.
pub fn add_pods(dp: &Datapath, pods: &[(IpAddr, bool)], b_flags: EndpointFlags) {
    for &(ip, a) in pods {
        let flags = if a { EndpointFlags::empty() } else { b_flags };
        dp.upsert_endpoint(&ep(ip, a, flags)).unwrap();
    }
}

/// A datapath of small maps, its globals pinned in a bpffs dir of its own
/// (named after `tag`), with the options `o` sets on top.
pub fn load_small(tag: &str, o: impl FnOnce(Options) -> Options) -> (BpfDir, Datapath) {
    let dir = BpfDir::new(tag);
    let dp = Datapath::load(&o(Options::small(dir.join("globals")))).expect("load");
    (dir, dp)
}

/// [`load_small`] with both pods in both families, no endpoint flags.
pub fn two_pods(tag: &str, o: impl FnOnce(Options) -> Options) -> (BpfDir, Datapath) {
    let (dir, dp) = load_small(tag, o);
    add_pods(&dp, &both_families(), EndpointFlags::empty());
    (dir, dp)
}

/// A packet that comes from pod A (the ingress of its host-side veth).
pub fn from_a() -> TestContext {
    TestContext::new().ingress_ifindex(A_IF)
}
