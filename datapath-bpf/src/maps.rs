//! Map names and the byte layouts the BPF side uses (see
//! `src/bpf/datapath.bpf.c`, which notes the Cilium sources they follow).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bitflags::bitflags;

/// Cilium's IPv4 TCP conntrack map (LRU hash, key [`CtTuple4`], value [`RawCtEntry`]).
pub const CT4_TCP: &str = "cilium_ct4_global";
/// Cilium's IPv4 conntrack map for every other protocol.
pub const CT4_ANY: &str = "cilium_ct_any4_global";
/// Cilium's IPv6 TCP conntrack map (key [`CtTuple6`]).
pub const CT6_TCP: &str = "cilium_ct6_global";
/// Cilium's IPv6 conntrack map for every other protocol.
pub const CT6_ANY: &str = "cilium_ct_any6_global";
/// Endpoints: pod IP -> ifindex, MACs, endpoint id, identity (hash).
pub const ENDPOINTS: &str = "podnet_lxc";
/// IP cache: prefix -> identity, tunnel endpoint (LPM trie).
pub const IPCACHE: &str = "podnet_ipcache";
/// Policy: (endpoint, identity, port, protocol, direction) -> allow/deny (hash).
pub const POLICY: &str = "podnet_policy";
/// Metrics: (reason, direction) -> packets, bytes (per-CPU array).
pub const METRICS: &str = "podnet_metrics";

/// Generation of the endpoints map (one `u64`): a fresh random non-zero
/// value after every change to [`ENDPOINTS`]. Conntrack entries cache "this
/// flow goes to no local pod" against it, so a program of your own that
/// writes the endpoints map must write a new value here afterwards.
pub const ENDPOINTS_GENERATION: &str = "podnet_lxc_gen";

/// Cilium's IPv4 service map: (frontend, backend slot) -> service / slot
/// (hash, `struct lb4_key` -> `struct lb4_service`).
pub const LB4_SERVICES: &str = "cilium_lb4_services_v2";
/// Cilium's IPv4 backends: backend id -> address, port, state.
pub const LB4_BACKENDS: &str = "cilium_lb4_backends_v3";
/// Cilium's IPv4 reverse NAT: service id -> frontend address and port.
pub const LB4_REVERSE_NAT: &str = "cilium_lb4_reverse_nat";
/// IPv6 twin of [`LB4_SERVICES`].
pub const LB6_SERVICES: &str = "cilium_lb6_services_v2";
/// IPv6 twin of [`LB4_BACKENDS`].
pub const LB6_BACKENDS: &str = "cilium_lb6_backends_v3";
/// IPv6 twin of [`LB4_REVERSE_NAT`].
pub const LB6_REVERSE_NAT: &str = "cilium_lb6_reverse_nat";
/// Cilium's socket reverse NAT (socket load balancing, LRU hash): socket
/// cookie, backend address and port -> frontend address, port and service
/// id, for `recvmsg` and `getpeername` to show the frontend.
pub const LB4_REVERSE_SK: &str = "cilium_lb4_reverse_sk";
/// IPv6 twin of [`LB4_REVERSE_SK`].
pub const LB6_REVERSE_SK: &str = "cilium_lb6_reverse_sk";
/// Cilium's IPv4 session affinity map (LRU hash): client address and
/// service id -> the client's backend and when it was chosen (seconds of
/// the conntrack clock). Written by the datapath.
pub const LB4_AFFINITY: &str = "cilium_lb4_affinity";
/// IPv6 twin of [`LB4_AFFINITY`].
pub const LB6_AFFINITY: &str = "cilium_lb6_affinity";
/// Cilium's affinity match map (hash): (backend id, service id) of every
/// active backend of a service with session affinity; a client's
/// remembered backend counts only while its entry is here.
pub const LB_AFFINITY_MATCH: &str = "cilium_lb_affinity_match";
/// from-container's program array: its tail call into the second pass of
/// a service connection (program `from_container_svc`), as Cilium's
/// `cilium_calls_*`. Pinned so that it stays filled while the programs are
/// attached (the kernel empties a program array when no descriptor or pin
/// holds it), also with [`crate::Options::keep_attached`]; a new load fills
/// it with its own program.
pub const CALLS: &str = "podnet_calls";

/// Events: drop, trace and policy verdict notifications (BPF ring buffer;
/// read them with [`crate::Events`]).
pub const EVENTS: &str = "podnet_events";
/// Events that could not be written, per CPU: slot 0 ring buffer full,
/// slot 1 drop notifications over the rate limit.
pub const EVENTS_LOST: &str = "podnet_events_lost";
/// Per-endpoint forwarded / dropped packets and bytes (per-CPU array,
/// key endpoint id << 1 | 1 for egress).
pub const ENDPOINT_METRICS: &str = "podnet_ep_metrics";
/// Cilium's IPv4 fragment map: datagram ([`crate::FragId4`]) -> L4 ports
/// of its first fragment ([`crate::FragPorts`]), LRU hash.
pub const FRAG4: &str = "cilium_ipv4_frag_datagrams";
/// The IPv6 twin of [`FRAG4`] (key [`crate::FragId6`]).
pub const FRAG6: &str = "cilium_ipv6_frag_datagrams";

/// Every map of the object pinned in the pin directory. Beside them the
/// loader pins `podnet_owned`, a one-entry array recording which of these a
/// podnet load created (what [`crate::Datapath::teardown`] may remove).
pub const PINNED: [&str; 28] = [
    CT4_TCP,
    CT4_ANY,
    CT6_TCP,
    CT6_ANY,
    ENDPOINTS,
    ENDPOINTS_GENERATION,
    IPCACHE,
    POLICY,
    METRICS,
    LB4_SERVICES,
    LB4_BACKENDS,
    LB4_REVERSE_NAT,
    LB6_SERVICES,
    LB6_BACKENDS,
    LB6_REVERSE_NAT,
    EVENTS,
    EVENTS_LOST,
    ENDPOINT_METRICS,
    FRAG4,
    FRAG6,
    SNAT4,
    SNAT6,
    LB4_REVERSE_SK,
    LB6_REVERSE_SK,
    CALLS,
    LB4_AFFINITY,
    LB6_AFFINITY,
    LB_AFFINITY_MATCH,
];

/// Cilium's IPv4 SNAT map: NAT tuple -> translated address and port
/// ([`crate::RawNatEntry4`]), LRU.
pub const SNAT4: &str = "cilium_snat_v4_external";
/// Cilium's IPv6 SNAT map ([`crate::RawNatEntry6`]).
pub const SNAT6: &str = "cilium_snat_v6_external";
/// Masquerade interfaces: ifindex -> node addresses (hash, not pinned).
pub const SNAT_ADDRS: &str = "podnet_snat_addrs";
/// The masquerade addresses as from-netdev checks them (the data section
/// `.data.snat_node`, mirrored from [`SNAT_ADDRS`]; not pinned).
pub(crate) const SNAT_NODE: &str = ".data.snat_node";

pub(crate) const REDIRECT_TRACE: &str = "podnet_redir_trace";

/// `ENDPOINT_KEY_IPV4` / `_IPV6` as Cilium's endpoint and ipcache keys use them.
pub(crate) const FAMILY_V4: u8 = 1;
pub(crate) const FAMILY_V6: u8 = 2;

/// Reserved identity for addresses outside the cluster (Cilium's `WORLD`).
pub const IDENTITY_WORLD: u32 = 2;
/// Reserved identity of the local host (Cilium's `HOST`).
pub const IDENTITY_HOST: u32 = 1;

/// Plain-old-data conversions for the fixed layouts below.
pub(crate) trait Pod: Copy + Sized {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: implementors are repr(C) structs of integers without padding.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; every bit pattern is valid for these structs.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&v4.octets());
            a
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        FAMILY_V4
    } else {
        FAMILY_V6
    }
}

/// Cilium's `struct endpoint_key` (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EndpointKey {
    pub ip: [u8; 16],
    pub family: u8,
    pub key: u8,
    pub cluster_id: u16,
}
impl Pod for EndpointKey {}

impl EndpointKey {
    pub(crate) fn new(ip: IpAddr) -> Self {
        EndpointKey {
            ip: addr16(ip),
            family: family(ip),
            key: 0,
            cluster_id: 0,
        }
    }
}

/// `struct endpoint_info` (48 bytes), shaped like Cilium's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EndpointValue {
    pub ifindex: u32,
    pub unused: u16,
    pub lxc_id: u16,
    pub flags: u32,
    pub mac: [u8; 6],
    pub pad_mac: u16,
    pub node_mac: [u8; 6],
    pub pad_node_mac: u16,
    pub sec_id: u32,
    pub parent_ifindex: u32,
    pub pad: [u32; 3],
}
impl Pod for EndpointValue {}

bitflags! {
    /// Flags of an [`Endpoint`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    pub struct EndpointFlags: u32 {
        /// The endpoint is the host itself (Cilium's `ENDPOINT_F_HOST`):
        /// traffic to it goes to the stack, never redirected.
        const HOST = 0x1;
        /// Drop new inbound connections no policy entry allows.
        const INGRESS_ENFORCE = 0x100;
        /// Drop new outbound connections no policy entry allows.
        const EGRESS_ENFORCE = 0x200;
    }
}

/// A local pod (an entry of the endpoints map).
///
/// Built with [`Endpoint::new`] and the setters; the fields stay readable.
///
/// ```
/// use podnet_datapath::{Endpoint, EndpointFlags};
/// let ep = Endpoint::new("10.1.0.2".parse().unwrap(), 7)
///     .mac([0x02, 0, 0, 0, 0, 2])
///     .node_mac([0x02, 0, 0, 0, 0, 1])
///     .id(1001)
///     .identity(5001)
///     .flags(EndpointFlags::INGRESS_ENFORCE);
/// assert!(ep.ip.is_ipv4());
/// assert_eq!(ep.ifindex, 7);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// The pod's address.
    pub ip: IpAddr,
    /// Host-side veth of the pod (in the node's namespace).
    pub ifindex: u32,
    /// The pod's own MAC (its `eth0`): destination MAC of delivered packets.
    pub mac: [u8; 6],
    /// The host-side veth's MAC: source MAC of delivered packets.
    pub node_mac: [u8; 6],
    /// Endpoint id (Cilium's `lxc_id`), the key of its policy entries.
    pub id: u16,
    /// Security identity.
    pub identity: u32,
    /// Flags.
    pub flags: EndpointFlags,
}

impl Endpoint {
    /// The pod at `ip` behind host-side veth `ifindex`; MACs zero, id 0,
    /// identity 0, no flags until set.
    #[must_use]
    pub fn new(ip: IpAddr, ifindex: u32) -> Self {
        Endpoint {
            ip,
            ifindex,
            mac: [0; 6],
            node_mac: [0; 6],
            id: 0,
            identity: 0,
            flags: EndpointFlags::empty(),
        }
    }

    /// Sets the pod's own MAC.
    #[must_use]
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = mac;
        self
    }

    /// Sets the host-side veth's MAC.
    #[must_use]
    pub fn node_mac(mut self, node_mac: [u8; 6]) -> Self {
        self.node_mac = node_mac;
        self
    }

    /// Sets the endpoint id.
    #[must_use]
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// Sets the security identity.
    #[must_use]
    pub fn identity(mut self, identity: u32) -> Self {
        self.identity = identity;
        self
    }

    /// Sets the flags.
    #[must_use]
    pub fn flags(mut self, flags: EndpointFlags) -> Self {
        self.flags = flags;
        self
    }
}

impl Endpoint {
    pub(crate) fn value(&self) -> EndpointValue {
        EndpointValue {
            ifindex: self.ifindex,
            lxc_id: self.id,
            flags: self.flags.bits(),
            mac: self.mac,
            node_mac: self.node_mac,
            sec_id: self.identity,
            ..Default::default()
        }
    }

    pub(crate) fn from_value(ip: IpAddr, v: &EndpointValue) -> Self {
        Endpoint {
            ip,
            ifindex: v.ifindex,
            mac: v.mac,
            node_mac: v.node_mac,
            id: v.lxc_id,
            identity: v.sec_id,
            flags: EndpointFlags::from_bits_retain(v.flags),
        }
    }
}

/// `struct ipcache_key` (24 bytes): LPM prefix length counts the 32 bits of
/// cluster id, pad and family before the address, as in Cilium.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IpcacheKey {
    pub prefixlen: u32,
    pub cluster_id: u16,
    pub pad1: u8,
    pub family: u8,
    pub ip: [u8; 16],
}
impl Pod for IpcacheKey {}

impl IpcacheKey {
    pub(crate) fn new(addr: IpAddr, len: u8) -> Self {
        IpcacheKey {
            prefixlen: 32 + u32::from(len),
            cluster_id: 0,
            pad1: 0,
            family: family(addr),
            ip: addr16(addr),
        }
    }
}

/// `struct remote_endpoint_info` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IpcacheValue {
    pub sec_identity: u32,
    pub tunnel_endpoint: [u8; 16],
    pub pad: u16,
    pub key: u8,
    pub flags: u8,
}
impl Pod for IpcacheValue {}

/// What the IP cache knows about a prefix.
///
/// ```
/// let info = podnet_datapath::IpcacheInfo::new(6)
///     .tunnel_endpoint("192.168.100.2".parse().unwrap());
/// assert_eq!(info.identity, 6);
/// assert!(info.tunnel_endpoint.is_some());
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpcacheInfo {
    /// Security identity of the addresses in the prefix.
    pub identity: u32,
    /// The node that hosts them (Cilium's tunnel endpoint / node IP).
    pub tunnel_endpoint: Option<IpAddr>,
}

impl IpcacheInfo {
    /// Addresses of security identity `identity`, no tunnel endpoint.
    #[must_use]
    pub fn new(identity: u32) -> Self {
        IpcacheInfo {
            identity,
            tunnel_endpoint: None,
        }
    }

    /// Sets the node that hosts the addresses.
    #[must_use]
    pub fn tunnel_endpoint(mut self, node: IpAddr) -> Self {
        self.tunnel_endpoint = Some(node);
        self
    }
}

impl IpcacheInfo {
    pub(crate) fn value(&self) -> IpcacheValue {
        let mut v = IpcacheValue {
            sec_identity: self.identity,
            ..Default::default()
        };
        if let Some(t) = self.tunnel_endpoint {
            v.tunnel_endpoint = addr16(t);
            // flag_has_tunnel_ep, flag_ipv6_tunnel_ep (Cilium's bit order).
            v.flags = 0x2 | if t.is_ipv6() { 0x4 } else { 0 };
        }
        v
    }

    pub(crate) fn from_value(v: &IpcacheValue) -> Self {
        let tunnel_endpoint = if v.flags & 0x2 == 0 {
            None
        } else if v.flags & 0x4 != 0 {
            Some(IpAddr::V6(Ipv6Addr::from(v.tunnel_endpoint)))
        } else {
            let t = v.tunnel_endpoint;
            Some(IpAddr::V4(Ipv4Addr::new(t[0], t[1], t[2], t[3])))
        };
        IpcacheInfo {
            identity: v.sec_identity,
            tunnel_endpoint,
        }
    }
}

/// Traffic direction, seen from the pod.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrafficDirection {
    /// Into the pod.
    Ingress,
    /// Out of the pod.
    Egress,
}

impl std::fmt::Display for TrafficDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cilium's metrics text.
        f.write_str(match self {
            TrafficDirection::Ingress => "INGRESS",
            TrafficDirection::Egress => "EGRESS",
        })
    }
}

/// A policy entry's key. `identity` 0, `dport` 0 and `protocol` 0 are
/// wildcards; the datapath tries (identity, port, proto), (identity, 0,
/// proto), (identity, 0, 0), then the same with identity 0, and the first hit
/// decides. ICMP carries port 0.
///
/// ```
/// use podnet_datapath::{PolicyKey, TrafficDirection};
/// let k = PolicyKey::new(1001, TrafficDirection::Ingress)
///     .identity(5002)
///     .dport(80)
///     .protocol(6);
/// assert_eq!(k.dport, 80);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PolicyKey {
    /// The endpoint whose policy this is.
    pub endpoint_id: u16,
    /// The peer's identity (source for ingress, destination for egress).
    pub identity: u32,
    /// Destination port (host order).
    pub dport: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 `ICMPv6`).
    pub protocol: u8,
    /// Which way.
    pub direction: TrafficDirection,
}

impl PolicyKey {
    /// Endpoint `endpoint_id`'s entry for `direction`, matching every
    /// identity, port and protocol until those are set.
    #[must_use]
    pub fn new(endpoint_id: u16, direction: TrafficDirection) -> Self {
        PolicyKey {
            endpoint_id,
            identity: 0,
            dport: 0,
            protocol: 0,
            direction,
        }
    }

    /// Sets the peer's identity (0: any).
    #[must_use]
    pub fn identity(mut self, identity: u32) -> Self {
        self.identity = identity;
        self
    }

    /// Sets the destination port, host order (0: any).
    #[must_use]
    pub fn dport(mut self, dport: u16) -> Self {
        self.dport = dport;
        self
    }

    /// Sets the IP protocol number (0: any).
    #[must_use]
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PolicyKeyRaw {
    pub sec_label: u32,
    pub dport: u16, // network order
    pub protocol: u8,
    pub egress: u8,
    pub endpoint_id: u16,
    pub pad: u16,
}
impl Pod for PolicyKeyRaw {}

impl PolicyKey {
    pub(crate) fn raw(&self) -> PolicyKeyRaw {
        PolicyKeyRaw {
            sec_label: self.identity,
            dport: self.dport.to_be(),
            protocol: self.protocol,
            egress: u8::from(self.direction == TrafficDirection::Egress),
            endpoint_id: self.endpoint_id,
            pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PolicyValue {
    pub deny: u8,
    pub pad0: u8,
    pub pad1: u16,
    pub pad2: u32,
    pub packets: u64,
    pub bytes: u64,
}
impl Pod for PolicyValue {}

/// A policy entry as read back: its verdict and what it matched.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyStats {
    /// `true` for a deny entry.
    pub deny: bool,
    /// Packets of new connections it decided.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Metrics reasons: 0 is forwarded, others are Cilium's `-DROP_*` codes.
pub mod reason {
    /// Forwarded (Cilium's "Forwarded" metric).
    pub const FORWARDED: u8 = 0;
    /// Source address is not the endpoint's (anti-spoofing).
    pub const INVALID_SOURCE_IP: u8 = 132;
    /// No policy allows it (the endpoint enforces policy).
    pub const POLICY: u8 = 133;
    /// Malformed or truncated packet.
    pub const INVALID: u8 = 134;
    /// L4 header missing or truncated.
    pub const CT_INVALID_HDR: u8 = 135;
    /// L4 protocol conntrack does not handle.
    pub const CT_UNKNOWN_PROTO: u8 = 137;
    /// The CT entry could not be created.
    pub const CT_CREATE_FAILED: u8 = 155;
    /// IPv6 extension header.
    pub const INVALID_EXTHDR: u8 = 156;
    /// IP fragment not supported: counted by datapaths before fragment
    /// tracking; fragments now count as [`FRAG_PACKET`] (and those whose
    /// datagram is unknown drop as [`FRAG_NOT_FOUND`]).
    pub const FRAG_NOSUPPORT: u8 = 157;
    /// A later fragment of a datagram whose first fragment was not seen
    /// (out of order, or a datagram not tracked): dropped, as Cilium does.
    pub const FRAG_NOT_FOUND: u8 = 175;
    /// Not a drop: a fragment the datapath handled (Cilium's
    /// `REASON_FRAG_PACKET`, counted once per hook it passes).
    pub const FRAG_PACKET: u8 = 9;
    /// Not a drop: a first fragment whose ports could not be stored in the
    /// fragment map (Cilium's `REASON_FRAG_PACKET_UPDATE`); the fragment
    /// went on, its later fragments will be [`FRAG_NOT_FOUND`].
    pub const FRAG_PACKET_UPDATE: u8 = 10;
    /// Error writing to the packet (a NAT rewrite failed).
    pub const WRITE_ERROR: u8 = 141;
    /// A new connection to a service frontend without (active) backends.
    pub const NO_SERVICE: u8 = 158;
    /// An explicit deny entry matched.
    pub const POLICY_DENY: u8 = 181;
    /// No free port for a masquerade mapping (every try collided), or no
    /// masquerade address for a `NodePort` flow to a remote backend.
    pub const NAT_NO_MAPPING: u8 = 167;
    /// Masquerade of an unsupported protocol.
    pub const NAT_UNSUPP_PROTO: u8 = 168;
    /// Not a drop: a new connection whose entry in `cilium_ct4_global` made
    /// the kernel evict entries, the map being full (podnet's own number,
    /// beyond Cilium's drop reasons). Any count here says the map is too
    /// small: flows are being forgotten. A creation that failed is
    /// [`CT_CREATE_FAILED`] instead. See [`ct_evicted_map`].
    pub const CT_EVICTED_TCP4: u8 = 250;
    /// As [`CT_EVICTED_TCP4`], for `cilium_ct_any4_global`.
    pub const CT_EVICTED_ANY4: u8 = 251;
    /// As [`CT_EVICTED_TCP4`], for `cilium_ct6_global`.
    pub const CT_EVICTED_TCP6: u8 = 252;
    /// As [`CT_EVICTED_TCP4`], for `cilium_ct_any6_global`.
    pub const CT_EVICTED_ANY6: u8 = 253;

    /// The conntrack map whose evictions `reason` counts, if it is one of
    /// the `CT_EVICTED_*` reasons.
    ///
    /// ```
    /// use podnet_datapath::maps::reason;
    /// assert_eq!(reason::ct_evicted_map(reason::CT_EVICTED_ANY4), Some("cilium_ct_any4_global"));
    /// assert_eq!(reason::ct_evicted_map(reason::POLICY), None);
    /// ```
    #[must_use]
    pub fn ct_evicted_map(reason: u8) -> Option<&'static str> {
        match reason {
            CT_EVICTED_TCP4 => Some(super::CT4_TCP),
            CT_EVICTED_ANY4 => Some(super::CT4_ANY),
            CT_EVICTED_TCP6 => Some(super::CT6_TCP),
            CT_EVICTED_ANY6 => Some(super::CT6_ANY),
            _ => None,
        }
    }

    /// Cilium's text for a reason (`pkg/monitor/api/drop.go`).
    #[must_use]
    pub fn name(reason: u8) -> &'static str {
        match reason {
            FORWARDED => "Success",
            INVALID_SOURCE_IP => "Invalid source ip",
            POLICY => "Policy denied",
            INVALID => "Invalid packet",
            CT_INVALID_HDR => "CT: Truncated or invalid header",
            CT_UNKNOWN_PROTO => "CT: Unknown L4 protocol",
            CT_CREATE_FAILED => "CT: Map insertion failed",
            INVALID_EXTHDR => "Invalid IPv6 extension header",
            FRAG_NOSUPPORT => "IP fragmentation not supported",
            FRAG_NOT_FOUND => "First logical datagram fragment not found",
            FRAG_PACKET => "Fragmented packet",
            FRAG_PACKET_UPDATE => "Fragmented packet entry update failed",
            WRITE_ERROR => "Failed to write or read packet",
            NO_SERVICE => "Service backend not found",
            POLICY_DENY => "Policy denied by denylist",
            NAT_NO_MAPPING => "No mapping for NAT masquerade",
            NAT_UNSUPP_PROTO => "Unsupported protocol for NAT masquerade",
            CT_EVICTED_TCP4 | CT_EVICTED_ANY4 | CT_EVICTED_TCP6 | CT_EVICTED_ANY6 => {
                "CT: Map full, entries evicted"
            }
            // Every other code by Cilium's table: a DROP_* number added
            // to the C gets Cilium's text without an edit here.
            _ => crate::drop_reasons::cilium_name(reason).unwrap_or("Unknown reason"),
        }
    }
}

/// One metrics counter, summed over CPUs.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// See [`reason`].
    pub reason: u8,
    /// Which way the packet was going.
    pub direction: TrafficDirection,
    /// Packets.
    pub packets: u64,
    /// Bytes (`skb->len`).
    pub bytes: u64,
}

impl Metric {
    /// Cilium's text for the reason.
    #[must_use]
    pub fn reason_name(&self) -> &'static str {
        reason::name(self.reason)
    }
}

/// Cilium's `struct ipv4_ct_tuple` (14 bytes, packed). Addresses are stored
/// "reversed" and ports in network order, exactly as the datapath writes them:
/// for a connection the pod opened, `daddr` is the pod and `saddr` the peer,
/// `dport` the peer's port and `sport` the pod's, flags [`TUPLE_F_OUT`].
#[repr(C, packed)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTuple4 {
    /// Address (network order bytes).
    pub daddr: [u8; 4],
    /// Address (network order bytes).
    pub saddr: [u8; 4],
    /// Port, network order.
    pub dport: u16,
    /// Port, network order.
    pub sport: u16,
    /// IP protocol.
    pub nexthdr: u8,
    /// `TUPLE_F_*`.
    pub flags: u8,
}
impl Pod for CtTuple4 {}

/// Cilium's `struct ipv6_ct_tuple` (38 bytes, packed).
#[repr(C, packed)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTuple6 {
    /// Address.
    pub daddr: [u8; 16],
    /// Address.
    pub saddr: [u8; 16],
    /// Port, network order.
    pub dport: u16,
    /// Port, network order.
    pub sport: u16,
    /// IP protocol.
    pub nexthdr: u8,
    /// `TUPLE_F_*`.
    pub flags: u8,
}
impl Pod for CtTuple6 {}

/// Which of a family's two conntrack maps.
///
/// ```
/// use podnet_datapath::CtTable;
/// assert_eq!(CtTable::for_protocol(6), CtTable::Tcp);
/// assert_eq!(CtTable::for_protocol(17), CtTable::Any);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtTable {
    /// TCP flows (`cilium_ct4_global` / `cilium_ct6_global`).
    Tcp,
    /// Every other protocol (`cilium_ct_any4_global` / `cilium_ct_any6_global`).
    Any,
}

impl CtTable {
    /// The table flows of IP protocol `protocol` live in.
    #[must_use]
    pub fn for_protocol(protocol: u8) -> Self {
        if protocol == 6 {
            CtTable::Tcp
        } else {
            CtTable::Any
        }
    }
}

/// Tuple flag: entry created by egress (the pod opened it).
pub const TUPLE_F_OUT: u8 = 0;
/// Tuple flag: entry created by ingress.
pub const TUPLE_F_IN: u8 = 1;
/// Tuple flag: ICMP error related to a flow.
pub const TUPLE_F_RELATED: u8 = 2;

/// `ct_entry.flags` bits (Cilium's bit-field order).
pub mod ct_flags {
    /// `RxClosing`.
    pub const RX_CLOSING: u16 = 1 << 0;
    /// `TxClosing`.
    pub const TX_CLOSING: u16 = 1 << 1;
    /// `SeenNonSyn`.
    pub const SEEN_NON_SYN: u16 = 1 << 4;
}

/// Cilium's `struct ct_entry` (56 bytes).
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCtEntry {
    /// Unused by Cilium since 1.16. This datapath keeps its "the flow goes
    /// to no local pod" stamp here: the endpoints generation it was checked
    /// at (see [`ENDPOINTS_GENERATION`]), 0 when not checked.
    pub reserved0: u64,
    /// Service backend (0 here).
    pub backend_id: u64,
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Expiry, in monotonic seconds (`bpf_ktime_get_ns() / 1e9`).
    pub lifetime: u32,
    /// See [`ct_flags`].
    pub flags: u16,
    /// Network order.
    pub rev_nat_index: u16,
    /// Interface index (0 here).
    pub ifindex: u16,
    /// TCP flags seen in the egress direction.
    pub tx_flags_seen: u8,
    /// TCP flags seen in the ingress direction.
    pub rx_flags_seen: u8,
    /// Security identity of the source.
    pub src_sec_id: u32,
    /// Last egress report (monotonic seconds).
    pub last_tx_report: u32,
    /// Last ingress report (monotonic seconds).
    pub last_rx_report: u32,
}
impl Pod for RawCtEntry {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MetricsValue {
    pub count: u64,
    pub bytes: u64,
}
impl Pod for MetricsValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_bpf_side() {
        assert_eq!(size_of::<CtTuple4>(), 14);
        assert_eq!(size_of::<CtTuple6>(), 38);
        assert_eq!(size_of::<RawCtEntry>(), 56);
        assert_eq!(size_of::<EndpointKey>(), 20);
        assert_eq!(size_of::<EndpointValue>(), 48);
        assert_eq!(size_of::<IpcacheKey>(), 24);
        assert_eq!(size_of::<IpcacheValue>(), 24);
        assert_eq!(size_of::<PolicyKeyRaw>(), 12);
        assert_eq!(size_of::<PolicyValue>(), 24);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn data_types_round_trip_through_serde() {
        fn round<T>(v: &T) -> T
        where
            T: serde::Serialize + serde::de::DeserializeOwned,
        {
            serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
        }
        let ep = Endpoint::new("10.1.0.2".parse().unwrap(), 7)
            .mac([2, 0, 0, 0, 0, 2])
            .id(9)
            .flags(EndpointFlags::HOST | EndpointFlags::EGRESS_ENFORCE);
        assert_eq!(round(&ep), ep);
        let info = IpcacheInfo::new(6).tunnel_endpoint("fd00::1".parse().unwrap());
        assert_eq!(round(&info), info);
        let k = PolicyKey::new(1, TrafficDirection::Egress)
            .dport(80)
            .protocol(6);
        assert_eq!(round(&k), k);
        let t = CtTuple4 {
            daddr: [10, 0, 0, 1],
            dport: 80u16.to_be(),
            nexthdr: 6,
            ..Default::default()
        };
        assert_eq!(round(&t), t);
        assert_eq!(round(&CtTuple6::default()), CtTuple6::default());
        let e = RawCtEntry {
            packets: 3,
            lifetime: 77,
            ..Default::default()
        };
        assert_eq!(round(&e), e);
        let m = Metric {
            reason: reason::POLICY,
            direction: TrafficDirection::Ingress,
            packets: 1,
            bytes: 60,
        };
        assert_eq!(round(&m), m);
        assert_eq!(
            serde_json::to_string(&TrafficDirection::Ingress).unwrap(),
            "\"Ingress\""
        );
    }

    #[test]
    fn ipcache_info_round_trips() {
        for t in [
            None,
            Some("10.0.0.1".parse().unwrap()),
            Some("fd00::1".parse().unwrap()),
        ] {
            let i = IpcacheInfo {
                identity: 9,
                tunnel_endpoint: t,
            };
            assert_eq!(IpcacheInfo::from_value(&i.value()), i);
        }
    }
}
