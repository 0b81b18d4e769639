//! IP fragment tracking: the maps in which the datapath remembers the L4
//! ports of a fragmented datagram's first fragment for its later ones
//! (`src/bpf/lib/frag.h`), their layouts, dumps and pressure.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use libbpf_rs::MapInfo;

use crate::datapath::Datapath;
use crate::error::{Error, Result};
use crate::maps::{self, Pod};

/// Cilium's `struct ipv4_frag_id` (12 bytes, packed; `bpf/lib/ipv4.h` of
/// Cilium 1.17): the datagram an IPv4 fragment belongs to, as the datapath
/// saw it at the hook that stored it.
///
/// ```
/// let k = podnet_datapath::FragId4 { saddr: [10, 1, 0, 2], id: 0x1234u16.to_be(), proto: 17, ..Default::default() };
/// assert_eq!(k.source(), std::net::Ipv4Addr::new(10, 1, 0, 2));
/// assert_eq!(u16::from_be(k.id), 0x1234);
/// ```
#[repr(C, packed)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragId4 {
    /// Destination address.
    pub daddr: [u8; 4],
    /// Source address.
    pub saddr: [u8; 4],
    /// The IP header's identification, network order.
    pub id: u16,
    /// IP protocol.
    pub proto: u8,
    /// Zero.
    pub pad: u8,
}
impl Pod for FragId4 {}

impl FragId4 {
    /// The source address.
    #[must_use]
    pub fn source(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.saddr)
    }

    /// The destination address.
    #[must_use]
    pub fn destination(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.daddr)
    }
}

/// `struct ipv6_frag_id` (40 bytes, packed): the IPv6 twin of [`FragId4`]
/// with the fragment header's 32-bit identification. Cilium 1.17 tracks no
/// IPv6 fragments; this is the layout of later Cilium's
/// `cilium_ipv6_frag_datagrams` (`bpf/lib/ipv6.h`).
///
/// ```
/// let k = podnet_datapath::FragId6 { id: 7u32.to_be(), proto: 17, ..Default::default() };
/// assert_eq!(k.source(), std::net::Ipv6Addr::UNSPECIFIED);
/// assert_eq!(u32::from_be(k.id), 7);
/// ```
#[repr(C, packed)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragId6 {
    /// The fragment header's identification, network order.
    pub id: u32,
    /// The fragment header's next header (the upper-layer protocol).
    pub proto: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
}
impl Pod for FragId6 {}

impl FragId6 {
    /// The source address.
    #[must_use]
    pub fn source(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.saddr)
    }

    /// The destination address.
    #[must_use]
    pub fn destination(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.daddr)
    }
}

/// Cilium's `struct ipv4_frag_l4ports` (and the IPv6 twin, the same 4
/// bytes): the first fragment's source and destination ports, network
/// order. For an ICMP echo datagram (tracked by podnet, not by Cilium) the
/// identifier sits where the conntrack tuple keeps it: `sport` for a
/// request, `dport` for a reply.
///
/// ```
/// let p = podnet_datapath::FragPorts { sport: 40000u16.to_be(), dport: 53u16.to_be() };
/// assert_eq!((p.source_port(), p.destination_port()), (40000, 53));
/// ```
#[repr(C, packed)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragPorts {
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
}
impl Pod for FragPorts {}

impl FragPorts {
    /// The source port.
    #[must_use]
    pub fn source_port(&self) -> u16 {
        u16::from_be(self.sport)
    }

    /// The destination port.
    #[must_use]
    pub fn destination_port(&self) -> u16 {
        u16::from_be(self.dport)
    }
}

/// Paths of the two fragment maps (for `bpftool` or a map handle of your
/// own).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FragMapPaths {
    /// `cilium_ipv4_frag_datagrams`.
    pub v4: PathBuf,
    /// `cilium_ipv6_frag_datagrams`.
    pub v6: PathBuf,
}

impl Datapath {
    /// Where the fragment maps are pinned.
    #[must_use]
    pub fn frag_map_paths(&self) -> FragMapPaths {
        FragMapPaths {
            v4: self.pin_dir().join(maps::FRAG4),
            v6: self.pin_dir().join(maps::FRAG6),
        }
    }

    /// Every datagram in the IPv4 fragment map, with its first fragment's
    /// ports.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or a lookup fails.
    pub fn frag4_entries(&self) -> Result<Vec<(FragId4, FragPorts)>> {
        self.frag_entries(maps::FRAG4)
    }

    /// Every datagram in the IPv6 fragment map.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or a lookup fails.
    pub fn frag6_entries(&self) -> Result<Vec<(FragId6, FragPorts)>> {
        self.frag_entries(maps::FRAG6)
    }

    /// Pressure of the IPv4 (`v6` false) or IPv6 fragment map: entries /
    /// `max_entries`, the figure Cilium exports as `bpf_map_pressure`. An
    /// LRU map near 1.0 forgets datagrams whose later fragments are still
    /// to come (they drop as [`crate::reason::FRAG_NOT_FOUND`]): raise
    /// [`crate::Options::frag_size`].
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or reading the map's info fails.
    pub fn frag_pressure(&self, v6: bool) -> Result<f64> {
        let name = if v6 { maps::FRAG6 } else { maps::FRAG4 };
        let entries = if v6 {
            self.keys::<FragId6>(name)?.len()
        } else {
            self.keys::<FragId4>(name)?.len()
        };
        // SAFETY: the fd is owned by `self` and outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(self.map_fd(name)) };
        let info = MapInfo::new(fd).map_err(|e| Error::Map {
            map: name,
            op: "get info",
            source: std::io::Error::from_raw_os_error(
                crate::error::libbpf_errno(&e).unwrap_or(libc::EIO),
            ),
        })?;
        let max = info.info.max_entries.max(1);
        #[allow(clippy::cast_precision_loss)]
        Ok(entries as f64 / f64::from(max))
    }

    fn frag_entries<K: Pod + Default>(&self, map: &'static str) -> Result<Vec<(K, FragPorts)>> {
        let mut out = Vec::new();
        for k in self.keys::<K>(map)? {
            let mut v = [0u8; size_of::<FragPorts>()];
            if self.lookup(map, k.as_bytes(), &mut v)? {
                if let Some(p) = FragPorts::from_bytes(&v) {
                    out.push((k, p));
                }
            }
        }
        Ok(out)
    }
}
