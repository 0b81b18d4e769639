//! Pods of the real-traffic tests: a netns of its own behind a veth pair
//! on a lab node, its route on the node, its endpoint; and the programs
//! attached on a node.

use std::net::IpAddr;

use podnet_datapath::{Datapath, Endpoint, Hook};
use testsupport::{pod_link, Netns};

/// A pod at `ip` in a netns of its own (`tag`) behind host-side veth
/// `lxc` on `node`, with its route on the node (`ip/32 scope link` or
/// `ip/128`) and its endpoint: endpoint id `id`, identity `1000 + id`.
pub fn lab_pod(node: &Netns, tag: &str, lxc: &str, ip: IpAddr, id: u16) -> (Netns, Endpoint) {
    let ns = Netns::new(tag);
    let link = if ip.is_ipv4() {
        let l = pod_link(node, lxc, &ns, ip, "169.254.1.1".parse().unwrap());
        node.add_route(&format!("{ip}/32 dev {lxc} scope link"));
        l
    } else {
        let l = pod_link(node, lxc, &ns, ip, "fe80::1".parse().unwrap());
        node.add_route(&format!("{ip}/128 dev {lxc}"));
        l
    };
    let ep = Endpoint::new(ip, link.lxc_ifindex)
        .mac(link.pod_mac)
        .node_mac(link.lxc_mac)
        .id(id)
        .identity(1000 + u32::from(id));
    (ns, ep)
}

/// Attaches `dp` on `node` (from inside its netns: tcx uses the calling
/// thread's): from-container and to-container on each pod's veth,
/// from-netdev on `uplink`.
pub fn attach_node(node: &Netns, dp: &mut Datapath, pods: &[&Endpoint], uplink: u32) {
    node.run(|| {
        for e in pods {
            dp.attach(e.ifindex, Hook::FromContainer).unwrap();
            dp.attach(e.ifindex, Hook::ToContainer).unwrap();
        }
        dp.attach(uplink, Hook::FromNetdev).unwrap();
    });
}
