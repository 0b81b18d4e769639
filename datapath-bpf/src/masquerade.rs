//! BPF masquerade (SNAT) configuration, the SNAT maps' layouts and the
//! masquerade addresses of interfaces.
//!
//! Pods' traffic to destinations outside the native-routing CIDRs leaving
//! through a masquerade interface gets the interface's node address as its
//! source, in `to_netdev` ([`crate::Hook::ToNetdev`]); replies are
//! translated back in `from_netdev`. The mappings live in Cilium's maps
//! `cilium_snat_v4_external` / `cilium_snat_v6_external` (pinned, so they
//! survive a reload), in Cilium 1.17's layout (`bpf/lib/nat.h`,
//! `pkg/maps/nat/`): the key is the conntrack tuple of the packet as it is
//! (not conntrack's swapped ports), the value [`RawNatEntry`]. Open them
//! with the `podnet-conntrack` crate ([`crate::Datapath::nat_map_paths`]),
//! whose GC removes a mapping with the conntrack entry that owns it.
//!
//! Cilium's options: `--enable-bpf-masquerade`, `--egress-masquerade-interfaces`
//! (names; a trailing `+` selects by prefix, `eth+`),
//! `--ipv4-native-routing-cidr` / `--ipv6-native-routing-cidr`, and the
//! NAT port range (`NODEPORT_PORT_MIN_NAT`..`NODEPORT_PORT_MAX_NAT`,
//! 32768-65535).

use std::ffi::CStr;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::maps::{self, CtTuple4, CtTuple6, Pod};
use crate::{Datapath, Error, Result};

/// Native-routing prefixes per family the BPF side checks (a fixed array).
pub const MAX_NATIVE_ROUTING_CIDRS: usize = 4;

/// Masquerade settings, off by default.
///
/// ```
/// use podnet_datapath::Masquerade;
/// let m = Masquerade::new()
///     .ipv4(true)
///     .interfaces(["eth+"])
///     .ipv4_native_routing_cidr("10.0.0.0/8".parse().unwrap())
///     .port_range(40000, 50000);
/// assert!(m.validate().is_ok());
/// assert!(m.matches_interface("eth1"));
/// assert!(!m.matches_interface("lxc12"));
/// // An IPv6 prefix as the IPv4 native-routing CIDR is refused.
/// let bad = Masquerade::new().ipv4(true).ipv4_native_routing_cidr("fd00::/64".parse().unwrap());
/// assert!(bad.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Masquerade {
    /// Masquerade IPv4 traffic.
    pub ipv4: bool,
    /// Masquerade IPv6 traffic.
    pub ipv6: bool,
    /// Cilium's `egress-masquerade-interfaces`: interface names, a trailing
    /// `+` matching every name with that prefix. Empty: every interface
    /// `to_netdev` is attached to.
    pub interfaces: Vec<String>,
    /// Destinations in these IPv4 prefixes are not masqueraded
    /// (`ipv4-native-routing-cidr`); at most [`MAX_NATIVE_ROUTING_CIDRS`].
    pub ipv4_native_routing_cidrs: Vec<IpNet>,
    /// The IPv6 twin (`ipv6-native-routing-cidr`).
    pub ipv6_native_routing_cidrs: Vec<IpNet>,
    /// First port of the range mappings are allocated in (host order).
    pub port_min: u16,
    /// Last port of the range (inclusive).
    pub port_max: u16,
    /// `NodePort`, external IP and `LoadBalancer` frontends with a backend on
    /// another node: translate the client's source to the node address
    /// (Cilium's default SNAT mode) and forward. Off: such traffic passes
    /// to the stack untranslated, as without masquerade. Default on (only
    /// for the families masquerade is on for).
    pub nodeport_snat: bool,
}

impl Default for Masquerade {
    fn default() -> Self {
        Masquerade::new()
    }
}

impl Masquerade {
    /// Off for both families, every interface, no native-routing CIDR,
    /// Cilium's port range 32768-65535, `NodePort` SNAT on.
    #[must_use]
    pub fn new() -> Self {
        Masquerade {
            ipv4: false,
            ipv6: false,
            interfaces: Vec::new(),
            ipv4_native_routing_cidrs: Vec::new(),
            ipv6_native_routing_cidrs: Vec::new(),
            port_min: 32768,
            port_max: 65535,
            nodeport_snat: true,
        }
    }

    /// Masquerade IPv4 traffic or not.
    #[must_use]
    pub fn ipv4(mut self, on: bool) -> Self {
        self.ipv4 = on;
        self
    }

    /// Masquerade IPv6 traffic or not.
    #[must_use]
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// The masquerade interfaces: names, or prefixes with a trailing `+`.
    #[must_use]
    pub fn interfaces<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.interfaces = names.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an IPv4 native-routing CIDR.
    #[must_use]
    pub fn ipv4_native_routing_cidr(mut self, cidr: IpNet) -> Self {
        self.ipv4_native_routing_cidrs.push(cidr);
        self
    }

    /// Adds an IPv6 native-routing CIDR.
    #[must_use]
    pub fn ipv6_native_routing_cidr(mut self, cidr: IpNet) -> Self {
        self.ipv6_native_routing_cidrs.push(cidr);
        self
    }

    /// The port range mappings are allocated in, both ends included.
    #[must_use]
    pub fn port_range(mut self, min: u16, max: u16) -> Self {
        self.port_min = min;
        self.port_max = max;
        self
    }

    /// `NodePort` SNAT to remote backends on or off (see the field).
    #[must_use]
    pub fn nodeport_snat(mut self, on: bool) -> Self {
        self.nodeport_snat = on;
        self
    }

    /// Whether masquerade is on for either family.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.ipv4 || self.ipv6
    }

    /// Whether interface `name` masquerades (Cilium's matching of
    /// `egress-masquerade-interfaces`: exact names, `prefix+` by prefix).
    #[must_use]
    pub fn matches_interface(&self, name: &str) -> bool {
        self.interfaces.is_empty()
            || self
                .interfaces
                .iter()
                .any(|sel| match sel.strip_suffix('+') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == sel,
                })
    }

    /// Checks the settings; [`crate::Datapath::load`] does too, before
    /// anything is created.
    ///
    /// # Errors
    ///
    /// [`MasqueradeError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), MasqueradeError> {
        if self.port_min > self.port_max || self.port_min == 0 {
            return Err(MasqueradeError::EmptyPortRange {
                min: self.port_min,
                max: self.port_max,
            });
        }
        for name in &self.interfaces {
            let base = name.strip_suffix('+').unwrap_or(name);
            // IFNAMSIZ 16 with the NUL; no '/', whitespace or NUL (dev_valid_name).
            if (base.is_empty() && !name.ends_with('+'))
                || base.len() > 15
                || base.contains(['/', '\0', ' ', '\t', '\n', ':'])
                || base == "."
                || base == ".."
            {
                return Err(MasqueradeError::BadInterface { name: name.clone() });
            }
        }
        for (option, cidrs, v4) in [
            (
                "ipv4-native-routing-cidr",
                &self.ipv4_native_routing_cidrs,
                true,
            ),
            (
                "ipv6-native-routing-cidr",
                &self.ipv6_native_routing_cidrs,
                false,
            ),
        ] {
            if cidrs.len() > MAX_NATIVE_ROUTING_CIDRS {
                return Err(MasqueradeError::TooManyCidrs {
                    option,
                    max: MAX_NATIVE_ROUTING_CIDRS,
                    given: cidrs.len(),
                });
            }
            for c in cidrs {
                if matches!(c, IpNet::V4(_)) != v4 {
                    return Err(MasqueradeError::CidrFamily { option, cidr: *c });
                }
                if c.trunc() != *c {
                    return Err(MasqueradeError::CidrHostBits { option, cidr: *c });
                }
            }
        }
        Ok(())
    }

    /// `struct pn_snat_config` (`lib/snat_config.h`) as the loader writes it
    /// in `.rodata.snat`: u32 words, addresses and masks in network order.
    pub(crate) fn config_words(&self) -> Vec<u32> {
        let mut w = vec![
            u32::from(self.ipv4),
            u32::from(self.ipv6),
            u32::from(self.port_min),
            u32::from(self.port_max),
            self.ipv4_native_routing_cidrs.len() as u32,
            self.ipv6_native_routing_cidrs.len() as u32,
        ];
        let net_words = |b: &[u8]| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        for i in 0..MAX_NATIVE_ROUTING_CIDRS {
            match self.ipv4_native_routing_cidrs.get(i) {
                Some(IpNet::V4(n)) => {
                    w.extend(net_words(&n.network().octets()));
                    w.extend(net_words(&n.netmask().octets()));
                }
                _ => w.extend([0, 0]),
            }
        }
        for i in 0..MAX_NATIVE_ROUTING_CIDRS {
            match self.ipv6_native_routing_cidrs.get(i) {
                Some(IpNet::V6(n)) => {
                    w.extend(net_words(&n.network().octets()));
                    w.extend(net_words(&n.netmask().octets()));
                }
                _ => w.extend([0; 8]),
            }
        }
        w.push(u32::from(self.nodeport_snat));
        w
    }
}

/// Bad masquerade settings (found before the kernel is touched).
///
/// ```
/// use podnet_datapath::{Masquerade, MasqueradeError};
/// let e = Masquerade::new().ipv4(true).port_range(2000, 1000).validate().unwrap_err();
/// assert_eq!(e, MasqueradeError::EmptyPortRange { min: 2000, max: 1000 });
/// assert_eq!(e.to_string(), "masquerade port range 2000-1000 is empty");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MasqueradeError {
    /// A native-routing CIDR of the other family.
    #[error("{option} {cidr}: not a prefix of that family")]
    CidrFamily {
        /// `ipv4-native-routing-cidr` or `ipv6-native-routing-cidr`.
        option: &'static str,
        /// The prefix given.
        cidr: IpNet,
    },
    /// A native-routing CIDR with host bits set.
    #[error("{option} {cidr}: host bits set (the network is {})", cidr.trunc())]
    CidrHostBits {
        /// `ipv4-native-routing-cidr` or `ipv6-native-routing-cidr`.
        option: &'static str,
        /// The prefix given.
        cidr: IpNet,
    },
    /// More native-routing CIDRs than the datapath checks.
    #[error("{option}: at most {max} prefixes, {given} given")]
    TooManyCidrs {
        /// `ipv4-native-routing-cidr` or `ipv6-native-routing-cidr`.
        option: &'static str,
        /// [`MAX_NATIVE_ROUTING_CIDRS`].
        max: usize,
        /// How many were given.
        given: usize,
    },
    /// A port range with no port in it (or starting at port 0).
    #[error("masquerade port range {min}-{max} is empty")]
    EmptyPortRange {
        /// First port.
        min: u16,
        /// Last port.
        max: u16,
    },
    /// Not an interface name or `prefix+` selector.
    #[error("egress-masquerade-interfaces: {name:?} is neither an interface name nor a prefix selector like eth+")]
    BadInterface {
        /// The name given.
        name: String,
    },
}

/// Where the SNAT maps are pinned, for the `podnet-conntrack` crate
/// (`NatMap::open`).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatMapPaths {
    /// `cilium_snat_v4_external`.
    pub v4: std::path::PathBuf,
    /// `cilium_snat_v6_external`.
    pub v6: std::path::PathBuf,
}

/// Cilium's `struct ipv4_nat_entry` (40 bytes): `struct nat_entry`
/// (`created`, `needs_ct`, two reserved words) and the address and port
/// the packet is translated to (the source for a forward entry, flags
/// `TUPLE_F_OUT`; the destination for a reverse one, `TUPLE_F_IN`).
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawNatEntry4 {
    /// Creation time, monotonic seconds.
    pub created: u64,
    /// 1 when the datapath tracks the flow for this mapping itself.
    pub needs_ct: u64,
    /// Reserved.
    pub pad1: u64,
    /// Reserved.
    pub pad2: u64,
    /// Address (network order bytes).
    pub to_addr: [u8; 4],
    /// Port, network order.
    pub to_port: u16,
    /// Padding.
    pub pad: u16,
}
impl Pod for RawNatEntry4 {}

/// Cilium's `struct ipv6_nat_entry` (56 bytes); see [`RawNatEntry4`].
#[repr(C)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawNatEntry6 {
    /// Creation time, monotonic seconds.
    pub created: u64,
    /// 1 when the datapath tracks the flow for this mapping itself.
    pub needs_ct: u64,
    /// Reserved.
    pub pad1: u64,
    /// Reserved.
    pub pad2: u64,
    /// Address.
    pub to_addr: [u8; 16],
    /// Port, network order.
    pub to_port: u16,
    /// Padding.
    pub pad: [u16; 3],
}
impl Pod for RawNatEntry6 {}

/// `struct snat_ifaddr`: an interface's masquerade addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnatIfaddr {
    pub v4: [u8; 4],
    pub v6: [u8; 16],
}
impl Pod for SnatIfaddr {}

/// The name of interface `ifindex` in the calling thread's namespace.
pub(crate) fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname needs.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The first global IPv4 and IPv6 address of interface `name` in the
/// calling thread's namespace (getifaddrs), for its masquerade address.
pub(crate) fn interface_addresses(name: &str) -> std::io::Result<(Option<IpAddr>, Option<IpAddr>)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (mut v4, mut v6) = (None, None);
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let n = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr of the family it says.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET && v4.is_none() {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in.
            let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
            v4 = Some(IpAddr::from(
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            ));
        } else if family == libc::AF_INET6 && v6.is_none() {
            // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
            let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
            let a = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            // Link-local addresses are no node address.
            if (a.segments()[0] & 0xffc0) != 0xfe80 {
                v6 = Some(IpAddr::V6(a));
            }
        }
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok((v4, v6))
}

/// Writes `struct pn_snat_config` into the open `.rodata.snat` map `m`.
pub(crate) fn write_config(
    m: &mut libbpf_rs::OpenMapMut<'_>,
    name: &str,
    masq: &Masquerade,
) -> crate::Result<()> {
    let words = masq.config_words();
    let Some(init) = m.initial_value_mut() else {
        return Err(crate::Error::Prepare {
            map: name.to_string(),
            source: libbpf_rs::Error::from(std::io::Error::other("no initial value")),
        });
    };
    let Some(dst) = init.get_mut(..words.len() * 4) else {
        return Err(crate::Error::Prepare {
            map: name.to_string(),
            source: libbpf_rs::Error::from(std::io::Error::other(
                "smaller than struct pn_snat_config",
            )),
        });
    };
    for (d, v) in dst.chunks_exact_mut(4).zip(words) {
        d.copy_from_slice(&v.to_ne_bytes());
    }
    Ok(())
}

impl Datapath {
    /// Where the SNAT maps are pinned (open them with the `conntrack`
    /// crate's `NatMap::open`).
    #[must_use]
    pub fn nat_map_paths(&self) -> NatMapPaths {
        NatMapPaths {
            v4: self.pin_dir().join(maps::SNAT4),
            v6: self.pin_dir().join(maps::SNAT6),
        }
    }

    /// The masquerade settings this datapath was loaded with.
    #[must_use]
    pub fn masquerade(&self) -> &Masquerade {
        &self.masquerade
    }

    /// Records `addr` as the masquerade address of interface `ifindex` for
    /// its family (the other family's stays), as attaching
    /// [`crate::Hook::ToNetdev`] does with the interface's first global
    /// address. For a node address the interface does not carry, or for
    /// test runs (`BPF_PROG_TEST_RUN` packets are on the loopback device,
    /// ifindex 1).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an unspecified or multicast address;
    /// [`Error::Map`] when the update fails.
    pub fn set_masquerade_address(&self, ifindex: u32, addr: IpAddr) -> Result<()> {
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(Error::InvalidInput {
                what: "masquerade address",
                reason: format!("{addr} cannot be a node address"),
            });
        }
        let mut cur = [0u8; size_of::<SnatIfaddr>()];
        let key = ifindex.to_ne_bytes();
        let mut v = if self.lookup(maps::SNAT_ADDRS, &key, &mut cur)? {
            SnatIfaddr::from_bytes(&cur).unwrap_or_default()
        } else {
            SnatIfaddr::default()
        };
        match addr {
            IpAddr::V4(a) => v.v4 = a.octets(),
            IpAddr::V6(a) => v.v6 = a.octets(),
        }
        self.record_snat_addrs(ifindex, Some(&v))
    }

    /// Writes interface `ifindex`'s record in `podnet_snat_addrs` (`None`:
    /// removes it), then the table from-netdev checks, which mirrors that
    /// map: every change of the map goes through here.
    pub(crate) fn record_snat_addrs(&self, ifindex: u32, v: Option<&SnatIfaddr>) -> Result<()> {
        let key = ifindex.to_ne_bytes();
        match v {
            Some(v) => self.update(maps::SNAT_ADDRS, &key, v.as_bytes())?,
            None => {
                self.delete(maps::SNAT_ADDRS, &key)?;
            }
        }
        self.write_snat_node_table()
    }

    /// The masquerade addresses recorded for interface `ifindex` (IPv4,
    /// IPv6).
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the lookup fails.
    pub fn masquerade_addresses(&self, ifindex: u32) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
        let mut cur = [0u8; size_of::<SnatIfaddr>()];
        if !self.lookup(maps::SNAT_ADDRS, &ifindex.to_ne_bytes(), &mut cur)? {
            return Ok((None, None));
        }
        let v = SnatIfaddr::from_bytes(&cur).unwrap_or_default();
        let v4 = (v.v4 != [0; 4]).then(|| IpAddr::from(v.v4));
        let v6 = (v.v6 != [0; 16]).then(|| IpAddr::from(v.v6));
        Ok((v4, v6))
    }

    /// After `to_netdev` was attached to `ifindex` (calling thread's
    /// namespace): its addresses become the masquerade addresses when it is
    /// a masquerade interface; any record goes otherwise.
    pub(crate) fn masquerade_interface(&self, ifindex: u32) -> Result<()> {
        let name = ifname(ifindex).ok_or(Error::UnknownInterface { ifindex })?;
        if !self.masquerade.enabled() || !self.masquerade.matches_interface(&name) {
            return self.record_snat_addrs(ifindex, None);
        }
        let (v4, v6) = interface_addresses(&name).map_err(|source| Error::Map {
            map: maps::SNAT_ADDRS,
            op: "read the interface's addresses (getifaddrs)",
            source,
        })?;
        let mut v = SnatIfaddr::default();
        if let (true, Some(IpAddr::V4(a))) = (self.masquerade.ipv4, v4) {
            v.v4 = a.octets();
        }
        if let (true, Some(IpAddr::V6(a))) = (self.masquerade.ipv6, v6) {
            v.v6 = a.octets();
        }
        self.record_snat_addrs(ifindex, Some(&v))
    }

    /// Every entry of `cilium_snat_v4_external`.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or a lookup fails.
    pub fn snat4_entries(&self) -> Result<Vec<(CtTuple4, RawNatEntry4)>> {
        self.nat_entries(maps::SNAT4)
    }

    /// Every entry of `cilium_snat_v6_external`.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or a lookup fails.
    pub fn snat6_entries(&self) -> Result<Vec<(CtTuple6, RawNatEntry6)>> {
        self.nat_entries(maps::SNAT6)
    }

    fn nat_entries<K: Pod + Default, V: Pod + Default>(
        &self,
        map: &'static str,
    ) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        for k in self.keys::<K>(map)? {
            let mut v = vec![0u8; size_of::<V>()];
            if self.lookup(map, k.as_bytes(), &mut v)? {
                if let Some(e) = V::from_bytes(&v) {
                    out.push((k, e));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_bpf_side() {
        assert_eq!(size_of::<RawNatEntry4>(), 40);
        assert_eq!(size_of::<RawNatEntry6>(), 56);
        assert_eq!(size_of::<SnatIfaddr>(), 20);
        // struct pn_snat_config: 6 + 4*2 + 4*8 + 1 words.
        assert_eq!(Masquerade::new().config_words().len(), 47);
    }

    #[test]
    fn bad_settings_are_typed() {
        let m = Masquerade::new().ipv4(true);
        assert!(m.validate().is_ok());
        assert!(matches!(
            m.clone().port_range(5, 4).validate(),
            Err(MasqueradeError::EmptyPortRange { min: 5, max: 4 })
        ));
        assert!(matches!(
            m.clone().port_range(0, 4).validate(),
            Err(MasqueradeError::EmptyPortRange { .. })
        ));
        assert!(matches!(
            m.clone()
                .ipv6_native_routing_cidr("10.0.0.0/8".parse().unwrap())
                .validate(),
            Err(MasqueradeError::CidrFamily {
                option: "ipv6-native-routing-cidr",
                ..
            })
        ));
        assert!(matches!(
            m.clone()
                .ipv4_native_routing_cidr("10.0.0.1/8".parse().unwrap())
                .validate(),
            Err(MasqueradeError::CidrHostBits { .. })
        ));
        assert!(matches!(
            m.clone().interfaces(["eth0", "bad/name"]).validate(),
            Err(MasqueradeError::BadInterface { .. })
        ));
        let many = (0..5).fold(m, |m, i| {
            m.ipv4_native_routing_cidr(format!("10.{i}.0.0/16").parse().unwrap())
        });
        assert!(matches!(
            many.validate(),
            Err(MasqueradeError::TooManyCidrs { given: 5, .. })
        ));
    }

    #[test]
    fn selectors_match_as_cilium() {
        let m = Masquerade::new().interfaces(["eth+", "ens5"]);
        assert!(m.matches_interface("eth0"));
        assert!(m.matches_interface("eth"));
        assert!(m.matches_interface("ens5"));
        assert!(!m.matches_interface("ens55"));
        assert!(Masquerade::new().matches_interface("anything"));
    }

    #[test]
    fn config_words_carry_cidrs_in_network_order() {
        let w = Masquerade::new()
            .ipv4(true)
            .ipv4_native_routing_cidr("10.0.0.0/8".parse().unwrap())
            .config_words();
        assert_eq!(&w[..6], &[1, 0, 32768, 65535, 1, 0]);
        assert_eq!(w[6].to_ne_bytes(), [10, 0, 0, 0]);
        assert_eq!(w[7].to_ne_bytes(), [255, 0, 0, 0]);
        assert_eq!(w[46], 1);
    }
}
