//! Conntrack keys: Cilium's `struct ipv4_ct_tuple` and `struct ipv6_ct_tuple`.
//!
//! Layout (read in cilium/cilium `bpf/lib/common.h`, `struct ipv4_ct_tuple` /
//! `struct ipv6_ct_tuple`, and `pkg/tuple/ipv4.go` / `ipv6.go`), `__packed`:
//!
//! | offset (v4) | offset (v6) | field     | type                      |
//! |-------------|-------------|-----------|---------------------------|
//! | 0           | 0           | `daddr`   | 4 / 16 bytes, network order |
//! | 4           | 16          | `saddr`   | 4 / 16 bytes, network order |
//! | 8           | 32          | `dport`   | `__be16`                  |
//! | 10          | 34          | `sport`   | `__be16`                  |
//! | 12          | 36          | `nexthdr` | `__u8`                    |
//! | 13          | 37          | `flags`   | `__u8` ([`TupleFlags`])   |
//!
//! Sizes: 14 and 38 bytes. As in Cilium, the *address* field names are correct
//! for reply-direction traffic (reversed w.r.t. the original packet), while the
//! *port* field names are correct for the original direction.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bitflags::bitflags;

use crate::error::Error;

bitflags! {
    /// `TUPLE_F_*` flags of a conntrack tuple (`bpf/lib/common.h`).
    ///
    /// `TUPLE_F_OUT` is `0`, i.e. the absence of [`TupleFlags::IN`].
    ///
    /// ```
    /// use podnet_conntrack::TupleFlags;
    /// let f = TupleFlags::IN | TupleFlags::RELATED;
    /// assert_eq!(f.bits(), 3);
    /// assert_eq!(TupleFlags::OUT.bits(), 0);
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct TupleFlags: u8 {
        /// `TUPLE_F_OUT` (0): egress direction.
        const OUT = 0;
        /// `TUPLE_F_IN` (1): ingress direction.
        const IN = 1;
        /// `TUPLE_F_RELATED` (2): related flow (ICMP errors).
        const RELATED = 2;
        /// `TUPLE_F_SERVICE` (4): service (load-balancer) entry.
        const SERVICE = 4;
        // Bits Cilium does not define are kept as they are.
        const _ = !0;
    }
}

/// The address family of a conntrack map or key.
///
/// ```
/// assert_eq!(podnet_conntrack::IpFamily::V6.key_size(), 38);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4: 14-byte keys.
    V4,
    /// IPv6: 38-byte keys.
    V6,
}

impl IpFamily {
    /// The key size of this family's conntrack (and SNAT) maps.
    #[must_use]
    pub const fn key_size(self) -> usize {
        match self {
            IpFamily::V4 => CtKey4::SIZE,
            IpFamily::V6 => CtKey6::SIZE,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Cilium's protocol names (`pkg/u8proto`): `ANY`, `ICMP`, `TCP`, `UDP`,
/// `ICMPv6`, `SCTP`, otherwise the number.
///
/// ```
/// assert_eq!(podnet_conntrack::proto_name(6), "TCP");
/// assert_eq!(podnet_conntrack::proto_name(47), "47");
/// ```
#[must_use]
pub fn proto_name(p: u8) -> std::borrow::Cow<'static, str> {
    match p {
        0 => "ANY".into(),
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => n.to_string().into(),
    }
}

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

macro_rules! ct_key {
    ($name:ident, $addr:ty, $alen:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            bytes: [u8; 2 * $alen + 6],
        }

        impl $name {
            /// Size of the key in the map, in bytes.
            pub const SIZE: usize = 2 * $alen + 6;
            const DPORT: usize = 2 * $alen;
            const SPORT: usize = 2 * $alen + 2;
            const NEXTHDR: usize = 2 * $alen + 4;
            const FLAGS: usize = 2 * $alen + 5;

            /// Builds a key from its fields as Cilium names them; ports in
            /// host order (stored in network order).
            pub fn new(
                daddr: $addr,
                saddr: $addr,
                dport: u16,
                sport: u16,
                nexthdr: u8,
                flags: TupleFlags,
            ) -> Self {
                let mut k = Self {
                    bytes: [0; Self::SIZE],
                };
                k.set_daddr(daddr);
                k.set_saddr(saddr);
                k.set_dport(dport);
                k.set_sport(sport);
                k.bytes[Self::NEXTHDR] = nexthdr;
                k.bytes[Self::FLAGS] = flags.bits();
                k
            }

            /// The key's bytes exactly as the map stores them.
            pub fn to_bytes(&self) -> [u8; Self::SIZE] {
                self.bytes
            }

            /// The key with these bytes.
            pub fn from_array(bytes: [u8; Self::SIZE]) -> Self {
                Self { bytes }
            }

            /// Copies a slice already known to be `SIZE` long (scan buffers).
            pub(crate) fn copy_from(b: &[u8]) -> Self {
                let mut bytes = [0u8; Self::SIZE];
                bytes.copy_from_slice(b);
                Self { bytes }
            }

            /// The key's bytes, borrowed.
            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes
            }

            /// Decodes a key; `bytes` must be exactly [`Self::SIZE`] long.
            ///
            /// # Errors
            /// [`Error::Layout`] when `bytes` has the wrong length.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                let bytes: [u8; Self::SIZE] = bytes.try_into().map_err(|_| Error::Layout {
                    what: stringify!($name),
                    expected: Self::SIZE,
                    found: bytes.len(),
                })?;
                Ok(Self { bytes })
            }

            /// `daddr` (the original *source* address of the flow, see the
            /// module docs).
            pub fn daddr(&self) -> $addr {
                let mut a = [0u8; $alen];
                a.copy_from_slice(&self.bytes[0..$alen]);
                <$addr>::from(a)
            }

            /// `saddr` (the original *destination* address of the flow).
            pub fn saddr(&self) -> $addr {
                let mut a = [0u8; $alen];
                a.copy_from_slice(&self.bytes[$alen..2 * $alen]);
                <$addr>::from(a)
            }

            /// `dport`, host order.
            pub fn dport(&self) -> u16 {
                u16::from_be_bytes([self.bytes[Self::DPORT], self.bytes[Self::DPORT + 1]])
            }

            /// `sport`, host order.
            pub fn sport(&self) -> u16 {
                u16::from_be_bytes([self.bytes[Self::SPORT], self.bytes[Self::SPORT + 1]])
            }

            /// `dport` exactly as stored (network order), like Cilium's
            /// `ToNetwork` representation.
            pub fn dport_network(&self) -> u16 {
                u16::from_ne_bytes([self.bytes[Self::DPORT], self.bytes[Self::DPORT + 1]])
            }

            /// `sport` exactly as stored (network order).
            pub fn sport_network(&self) -> u16 {
                u16::from_ne_bytes([self.bytes[Self::SPORT], self.bytes[Self::SPORT + 1]])
            }

            /// The IP protocol (`nexthdr`).
            pub fn nexthdr(&self) -> u8 {
                self.bytes[Self::NEXTHDR]
            }

            /// The tuple flags.
            pub fn flags(&self) -> TupleFlags {
                TupleFlags::from_bits_retain(self.bytes[Self::FLAGS])
            }

            /// Sets `daddr`.
            pub fn set_daddr(&mut self, a: $addr) {
                self.bytes[0..$alen].copy_from_slice(&a.octets());
            }

            /// Sets `saddr`.
            pub fn set_saddr(&mut self, a: $addr) {
                self.bytes[$alen..2 * $alen].copy_from_slice(&a.octets());
            }

            /// Sets `dport` (host order in, network order stored).
            pub fn set_dport(&mut self, p: u16) {
                self.bytes[Self::DPORT..Self::DPORT + 2].copy_from_slice(&p.to_be_bytes());
            }

            /// Sets `sport` (host order in, network order stored).
            pub fn set_sport(&mut self, p: u16) {
                self.bytes[Self::SPORT..Self::SPORT + 2].copy_from_slice(&p.to_be_bytes());
            }

            /// Sets `nexthdr`.
            pub fn set_nexthdr(&mut self, p: u8) {
                self.bytes[Self::NEXTHDR] = p;
            }

            /// Sets the tuple flags.
            pub fn set_flags(&mut self, f: TupleFlags) {
                self.bytes[Self::FLAGS] = f.bits();
            }

            /// Swaps `daddr` and `saddr` (Cilium's `SwapAddresses`).
            pub fn swap_addresses(&mut self) {
                let (d, s) = (self.daddr(), self.saddr());
                self.set_daddr(s);
                self.set_saddr(d);
            }

            /// Writes Cilium's local-map `Dump` text (`CtKey4.Dump` /
            /// `CtKey6.Dump` in `pkg/maps/ctmap/types.go`) into `out`;
            /// returns `false` (writing nothing) when `nexthdr` is 0.
            ///
            /// Service keys (`TUPLE_F_SERVICE`) print as
            /// `PROTO SVC daddr dport:sport `, whatever `reverse`; the others
            /// as `PROTO IN addr sport:dport ` / `PROTO OUT addr dport:sport `,
            /// `addr` being `saddr` when `reverse`. `related ` follows for
            /// `TUPLE_F_RELATED`. IPv4-mapped IPv6 addresses print as IPv4
            /// (Go's `net.IP.String`).
            pub fn dump(&self, out: &mut String, reverse: bool) -> bool {
                use fmt::Write as _;
                if self.nexthdr() == 0 {
                    return false;
                }
                let proto = proto_name(self.nexthdr());
                let flags = self.flags();
                if flags.contains(TupleFlags::SERVICE) {
                    let _ = write!(
                        out,
                        "{proto} SVC {} {}:{} ",
                        go_ip(self.daddr()),
                        self.dport(),
                        self.sport()
                    );
                } else {
                    let addr = go_ip(if reverse { self.saddr() } else { self.daddr() });
                    if flags.contains(TupleFlags::IN) {
                        let _ = write!(out, "{proto} IN {addr} {}:{} ", self.sport(), self.dport());
                    } else {
                        let _ =
                            write!(out, "{proto} OUT {addr} {}:{} ", self.dport(), self.sport());
                    }
                }
                if flags.contains(TupleFlags::RELATED) {
                    out.push_str("related ");
                }
                true
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    bytes: [0; Self::SIZE],
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("daddr", &self.daddr())
                    .field("saddr", &self.saddr())
                    .field("dport", &self.dport())
                    .field("sport", &self.sport())
                    .field("nexthdr", &self.nexthdr())
                    .field("flags", &self.flags())
                    .finish()
            }
        }
    };
}

/// An address as Cilium's Go text prints it (`net.IP.String`): an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as plain IPv4.
pub(crate) fn go_ip(a: impl Into<IpAddr>) -> IpAddr {
    a.into().to_canonical()
}

ct_key!(
    CtKey4,
    Ipv4Addr,
    4,
    "An IPv4 conntrack key (`struct ipv4_ct_tuple`, 14 bytes).\n\n\
     ```\n\
     use podnet_conntrack::{CtKey4, TupleFlags};\n\
     use std::net::Ipv4Addr;\n\
     let k = CtKey4::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 80, 40000, 6, TupleFlags::OUT);\n\
     assert_eq!(&k.to_bytes()[..], &[10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0x9c, 0x40, 6, 0]);\n\
     assert_eq!(k.to_string(), \"10.0.0.1:40000, 80, 6, 0\");\n\
     ```"
);
ct_key!(
    CtKey6,
    Ipv6Addr,
    16,
    "An IPv6 conntrack key (`struct ipv6_ct_tuple`, 38 bytes).\n\n\
     ```\n\
     use podnet_conntrack::{CtKey6, TupleFlags};\n\
     let k = CtKey6::new(\"f00d::1\".parse().unwrap(), \"f00d::2\".parse().unwrap(), 53, 1234, 17, TupleFlags::IN);\n\
     assert_eq!(k.to_bytes().len(), 38);\n\
     assert_eq!(k.to_string(), \"[f00d::1]:1234, 53, 17, 1\");\n\
     ```"
);

// Cilium `String()`: "%s:%d, %d, %d, %d" (daddr, sport, dport, nexthdr, flags).
impl fmt::Display for CtKey4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}, {}, {}, {}",
            go_ip(self.daddr()),
            self.sport(),
            self.dport(),
            self.nexthdr(),
            self.flags().bits()
        )
    }
}

impl fmt::Display for CtKey6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}]:{}, {}, {}, {}",
            go_ip(self.daddr()),
            self.sport(),
            self.dport(),
            self.nexthdr(),
            self.flags().bits()
        )
    }
}

macro_rules! global_key {
    ($name:ident, $inner:ident, $open:literal, $close:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
        pub struct $name(pub $inner);

        impl $name {
            /// Size of the key in the map, in bytes.
            pub const SIZE: usize = $inner::SIZE;

            /// Decodes a key; `bytes` must be exactly [`Self::SIZE`] long.
            ///
            /// # Errors
            /// [`Error::Layout`] when `bytes` has the wrong length.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                $inner::from_bytes(bytes).map($name)
            }

            /// The key's bytes exactly as the map stores them.
            pub fn to_bytes(&self) -> [u8; $inner::SIZE] {
                self.0.to_bytes()
            }

            /// Writes Cilium's global-map `Dump` text (`CtKey4Global.Dump` /
            /// `CtKey6Global.Dump` in `pkg/maps/ctmap/types.go`) into `out`;
            /// returns `false` (writing nothing) when `nexthdr` is 0.
            /// `cilium bpf ct list global` uses `reverse = true`.
            ///
            /// Service keys print as `PROTO SVC saddr:dport -> daddr:sport `
            /// whatever `reverse`; the others as
            /// `PROTO IN|OUT src:sport -> dst:dport `. Addresses carry no
            /// brackets, IPv6 included, and IPv4-mapped IPv6 addresses print
            /// as IPv4, as Cilium prints them.
            pub fn dump(&self, out: &mut String, reverse: bool) -> bool {
                use fmt::Write as _;
                let k = &self.0;
                if k.nexthdr() == 0 {
                    return false;
                }
                let proto = proto_name(k.nexthdr());
                let flags = k.flags();
                if flags.contains(TupleFlags::SERVICE) {
                    let _ = write!(
                        out,
                        "{proto} SVC {}:{} -> {}:{} ",
                        go_ip(k.saddr()),
                        k.dport(),
                        go_ip(k.daddr()),
                        k.sport()
                    );
                } else {
                    let (src, dst) = if reverse {
                        (k.daddr(), k.saddr())
                    } else {
                        (k.saddr(), k.daddr())
                    };
                    let dir = if flags.contains(TupleFlags::IN) {
                        "IN"
                    } else {
                        "OUT"
                    };
                    let _ = write!(
                        out,
                        "{proto} {dir} {}:{} -> {}:{} ",
                        go_ip(src),
                        k.sport(),
                        go_ip(dst),
                        k.dport()
                    );
                }
                if flags.contains(TupleFlags::RELATED) {
                    out.push_str("related ");
                }
                true
            }
        }

        impl std::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.0
            }
        }

        impl From<$inner> for $name {
            fn from(k: $inner) -> Self {
                $name(k)
            }
        }

        // Cilium `String()`: "%s:%d --> %s:%d, %d, %d".
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let k = &self.0;
                write!(
                    f,
                    concat!(
                        $open,
                        "{}",
                        $close,
                        ":{} --> ",
                        $open,
                        "{}",
                        $close,
                        ":{}, {}, {}"
                    ),
                    go_ip(k.saddr()),
                    k.sport(),
                    go_ip(k.daddr()),
                    k.dport(),
                    k.nexthdr(),
                    k.flags().bits()
                )
            }
        }
    };
}

global_key!(
    CtKey4Global,
    CtKey4,
    "",
    "",
    "An IPv4 key of a *global* conntrack map: same bytes as [`CtKey4`],\n\
     Cilium's global `String`/`Dump` text.\n\n\
     ```\n\
     use podnet_conntrack::{CtKey4, CtKey4Global, TupleFlags};\n\
     let k = CtKey4Global(CtKey4::new([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 80, 40000, 6, TupleFlags::OUT));\n\
     let mut s = String::new();\n\
     assert!(k.dump(&mut s, true));\n\
     assert_eq!(s, \"TCP OUT 10.0.0.1:40000 -> 10.0.0.2:80 \");\n\
     ```"
);
global_key!(
    CtKey6Global,
    CtKey6,
    "[",
    "]",
    "An IPv6 key of a *global* conntrack map: same bytes as [`CtKey6`],\n\
     Cilium's global `String`/`Dump` text.\n\n\
     ```\n\
     use podnet_conntrack::{CtKey6, CtKey6Global, TupleFlags};\n\
     let k = CtKey6Global(CtKey6::new(\"::1\".parse().unwrap(), \"::2\".parse().unwrap(), 80, 1, 6, TupleFlags::IN));\n\
     assert_eq!(k.to_string(), \"[::2]:1 --> [::1]:80, 6, 1\");\n\
     ```"
);

/// A key of either family, as yielded by iteration over a [`crate::CtMap`].
///
/// ```
/// use podnet_conntrack::{AnyCtKey, CtKey4, TupleFlags};
/// let k = AnyCtKey::from(CtKey4::new([1, 1, 1, 1].into(), [2, 2, 2, 2].into(), 1, 2, 17, TupleFlags::IN));
/// assert_eq!(k.src_ip().to_string(), "1.1.1.1");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AnyCtKey {
    /// An IPv4 key.
    V4(CtKey4),
    /// An IPv6 key.
    V6(CtKey6),
}

impl AnyCtKey {
    /// Decodes `bytes` as a key of `family`.
    ///
    /// # Errors
    /// [`Error::Layout`] when `bytes` has the wrong length.
    pub fn from_bytes(family: IpFamily, bytes: &[u8]) -> Result<Self, Error> {
        Ok(match family {
            IpFamily::V4 => AnyCtKey::V4(CtKey4::from_bytes(bytes)?),
            IpFamily::V6 => AnyCtKey::V6(CtKey6::from_bytes(bytes)?),
        })
    }

    pub(crate) fn copy_from(family: IpFamily, bytes: &[u8]) -> Self {
        match family {
            IpFamily::V4 => AnyCtKey::V4(CtKey4::copy_from(bytes)),
            IpFamily::V6 => AnyCtKey::V6(CtKey6::copy_from(bytes)),
        }
    }

    /// The key's family.
    #[must_use]
    pub fn family(&self) -> IpFamily {
        match self {
            AnyCtKey::V4(_) => IpFamily::V4,
            AnyCtKey::V6(_) => IpFamily::V6,
        }
    }

    /// The key's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            AnyCtKey::V4(k) => k.as_bytes(),
            AnyCtKey::V6(k) => k.as_bytes(),
        }
    }

    /// `daddr` as an [`IpAddr`].
    #[must_use]
    pub fn daddr(&self) -> IpAddr {
        match self {
            AnyCtKey::V4(k) => k.daddr().into(),
            AnyCtKey::V6(k) => k.daddr().into(),
        }
    }

    /// `saddr` as an [`IpAddr`].
    #[must_use]
    pub fn saddr(&self) -> IpAddr {
        match self {
            AnyCtKey::V4(k) => k.saddr().into(),
            AnyCtKey::V6(k) => k.saddr().into(),
        }
    }

    /// The flow's source address as Cilium's GC passes it to filters and
    /// `EmitCTEntryCB` (the key's `daddr`, see `doGC4` in `ctmap.go`).
    #[must_use]
    pub fn src_ip(&self) -> IpAddr {
        self.daddr()
    }

    /// The flow's destination address as Cilium's GC sees it (`saddr`).
    #[must_use]
    pub fn dst_ip(&self) -> IpAddr {
        self.saddr()
    }

    /// `dport`, host order.
    #[must_use]
    pub fn dport(&self) -> u16 {
        match self {
            AnyCtKey::V4(k) => k.dport(),
            AnyCtKey::V6(k) => k.dport(),
        }
    }

    /// `sport`, host order.
    #[must_use]
    pub fn sport(&self) -> u16 {
        match self {
            AnyCtKey::V4(k) => k.sport(),
            AnyCtKey::V6(k) => k.sport(),
        }
    }

    /// `nexthdr`.
    #[must_use]
    pub fn nexthdr(&self) -> u8 {
        match self {
            AnyCtKey::V4(k) => k.nexthdr(),
            AnyCtKey::V6(k) => k.nexthdr(),
        }
    }

    /// Tuple flags.
    #[must_use]
    pub fn flags(&self) -> TupleFlags {
        match self {
            AnyCtKey::V4(k) => k.flags(),
            AnyCtKey::V6(k) => k.flags(),
        }
    }

    /// Cilium's `Dump` text, global or local flavour.
    pub fn dump(&self, out: &mut String, global: bool, reverse: bool) -> bool {
        match (self, global) {
            (AnyCtKey::V4(k), true) => CtKey4Global(*k).dump(out, reverse),
            (AnyCtKey::V4(k), false) => k.dump(out, reverse),
            (AnyCtKey::V6(k), true) => CtKey6Global(*k).dump(out, reverse),
            (AnyCtKey::V6(k), false) => k.dump(out, reverse),
        }
    }
}

impl From<CtKey4> for AnyCtKey {
    fn from(k: CtKey4) -> Self {
        AnyCtKey::V4(k)
    }
}
impl From<CtKey6> for AnyCtKey {
    fn from(k: CtKey6) -> Self {
        AnyCtKey::V6(k)
    }
}
impl From<CtKey4Global> for AnyCtKey {
    fn from(k: CtKey4Global) -> Self {
        AnyCtKey::V4(k.0)
    }
}
impl From<CtKey6Global> for AnyCtKey {
    fn from(k: CtKey6Global) -> Self {
        AnyCtKey::V6(k.0)
    }
}

impl fmt::Display for AnyCtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyCtKey::V4(k) => k.fmt(f),
            AnyCtKey::V6(k) => k.fmt(f),
        }
    }
}

/// A conntrack key type: the four Cilium key types and [`AnyCtKey`].
///
/// Used by [`crate::CtMap::lookup`] and friends, which check that the key's
/// family matches the map's before touching the kernel.
pub trait CtKey {
    /// The key's family.
    fn family(&self) -> IpFamily;
    /// The key's bytes as stored in the map.
    fn key_bytes(&self) -> &[u8];
}

impl CtKey for CtKey4 {
    fn family(&self) -> IpFamily {
        IpFamily::V4
    }
    fn key_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
impl CtKey for CtKey6 {
    fn family(&self) -> IpFamily {
        IpFamily::V6
    }
    fn key_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
impl CtKey for CtKey4Global {
    fn family(&self) -> IpFamily {
        IpFamily::V4
    }
    fn key_bytes(&self) -> &[u8] {
        &self.0.bytes
    }
}
impl CtKey for CtKey6Global {
    fn family(&self) -> IpFamily {
        IpFamily::V6
    }
    fn key_bytes(&self) -> &[u8] {
        &self.0.bytes
    }
}
impl CtKey for AnyCtKey {
    fn family(&self) -> IpFamily {
        AnyCtKey::family(self)
    }
    fn key_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_layout_matches_hand_annotated_bytes() {
        // struct ipv4_ct_tuple, packed:
        let raw: [u8; 14] = [
            192, 168, 1, 10, // daddr 192.168.1.10
            10, 0, 0, 5, // saddr 10.0.0.5
            0x01, 0xbb, // dport 443 (network order)
            0xd4, 0x31, // sport 54321 (network order)
            6,    // nexthdr TCP
            1,    // flags TUPLE_F_IN
        ];
        let k = CtKey4::from_bytes(&raw).unwrap();
        assert_eq!(k.daddr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(k.saddr(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(k.dport(), 443);
        assert_eq!(k.sport(), 54321);
        assert_eq!(k.dport_network(), u16::from_ne_bytes([0x01, 0xbb]));
        assert_eq!(k.nexthdr(), 6);
        assert_eq!(k.flags(), TupleFlags::IN);
        let built = CtKey4::new(
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(10, 0, 0, 5),
            443,
            54321,
            6,
            TupleFlags::IN,
        );
        assert_eq!(built.to_bytes(), raw);
        assert_eq!(built, k);
    }

    #[test]
    fn v6_layout_matches_hand_annotated_bytes() {
        let mut raw = [0u8; 38];
        raw[0] = 0xf0; // daddr f00d::1
        raw[1] = 0x0d;
        raw[15] = 1;
        raw[16] = 0xfe; // saddr fe80::2
        raw[17] = 0x80;
        raw[31] = 2;
        raw[32] = 0; // dport 53
        raw[33] = 53;
        raw[34] = 0x30; // sport 12345 = 0x3039
        raw[35] = 0x39;
        raw[36] = 17; // UDP
        raw[37] = 2 | 1; // RELATED | IN
        let k = CtKey6::from_bytes(&raw).unwrap();
        assert_eq!(k.daddr(), "f00d::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(k.saddr(), "fe80::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(k.dport(), 53);
        assert_eq!(k.sport(), 12345);
        assert_eq!(k.nexthdr(), 17);
        assert_eq!(k.flags(), TupleFlags::IN | TupleFlags::RELATED);
        assert_eq!(k.to_bytes(), raw);
    }

    #[test]
    fn wrong_sizes_are_typed_errors() {
        assert!(matches!(
            CtKey4::from_bytes(&[0; 13]),
            Err(Error::Layout {
                expected: 14,
                found: 13,
                ..
            })
        ));
        assert!(matches!(
            CtKey6::from_bytes(&[0; 14]),
            Err(Error::Layout {
                expected: 38,
                found: 14,
                ..
            })
        ));
    }

    #[test]
    fn cilium_strings_and_dumps() {
        let k = CtKey4::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            80,
            40000,
            6,
            TupleFlags::IN | TupleFlags::RELATED,
        );
        assert_eq!(k.to_string(), "10.0.0.1:40000, 80, 6, 3");
        assert_eq!(
            CtKey4Global(k).to_string(),
            "10.0.0.2:40000 --> 10.0.0.1:80, 6, 3"
        );
        let mut s = String::new();
        assert!(k.dump(&mut s, false));
        assert_eq!(s, "TCP IN 10.0.0.1 40000:80 related ");
        let mut s = String::new();
        assert!(CtKey4Global(k).dump(&mut s, false));
        assert_eq!(s, "TCP IN 10.0.0.2:40000 -> 10.0.0.1:80 related ");
        let mut s = String::new();
        assert!(CtKey4Global(k).dump(&mut s, true));
        assert_eq!(s, "TCP IN 10.0.0.1:40000 -> 10.0.0.2:80 related ");

        let out = CtKey4::new(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            53,
            1000,
            17,
            TupleFlags::SERVICE,
        );
        let mut s = String::new();
        assert!(out.dump(&mut s, false));
        assert_eq!(s, "UDP SVC 1.2.3.4 53:1000 ");

        let zero = CtKey4::default();
        let mut s = String::new();
        assert!(!zero.dump(&mut s, true));
        assert!(s.is_empty());

        let k6 = CtKey6Global(CtKey6::new(
            "f00d::1".parse().unwrap(),
            "f00d::2".parse().unwrap(),
            443,
            5555,
            6,
            TupleFlags::OUT,
        ));
        let mut s = String::new();
        assert!(k6.dump(&mut s, true));
        assert_eq!(s, "TCP OUT f00d::1:5555 -> f00d::2:443 ");
        assert_eq!(k6.to_string(), "[f00d::2]:5555 --> [f00d::1]:443, 6, 0");
        let mut s = String::new();
        assert!(k6.0.dump(&mut s, true));
        assert_eq!(s, "TCP OUT f00d::2 443:5555 ");
    }

    #[test]
    fn service_keys_print_cilium_svc_form() {
        // Vectors from the issue, checked against Cilium's CtKey*.Dump.
        let k = CtKey4::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            80,
            40000,
            6,
            TupleFlags::SERVICE,
        );
        for reverse in [true, false] {
            let mut s = String::new();
            assert!(CtKey4Global(k).dump(&mut s, reverse));
            assert_eq!(s, "TCP SVC 10.0.0.2:80 -> 10.0.0.1:40000 ");
            let mut s = String::new();
            assert!(k.dump(&mut s, reverse));
            assert_eq!(s, "TCP SVC 10.0.0.1 80:40000 ");
        }
        // SERVICE wins over IN; RELATED still follows.
        let mut k = k;
        k.set_flags(TupleFlags::SERVICE | TupleFlags::IN | TupleFlags::RELATED);
        let mut s = String::new();
        assert!(k.dump(&mut s, true));
        assert_eq!(s, "TCP SVC 10.0.0.1 80:40000 related ");
        let k6 = CtKey6::new(
            "f00d::1".parse().unwrap(),
            "f00d::2".parse().unwrap(),
            53,
            1000,
            17,
            TupleFlags::SERVICE,
        );
        let mut s = String::new();
        assert!(CtKey6Global(k6).dump(&mut s, true));
        assert_eq!(s, "UDP SVC f00d::2:53 -> f00d::1:1000 ");
        let mut s = String::new();
        assert!(k6.dump(&mut s, false));
        assert_eq!(s, "UDP SVC f00d::1 53:1000 ");
    }

    #[test]
    fn ipv6_global_dump_has_no_brackets_and_mapped_prints_as_ipv4() {
        let k = CtKey6Global(CtKey6::new(
            "f00d::1".parse().unwrap(),
            "::".parse().unwrap(),
            443,
            51000,
            1,
            TupleFlags::OUT,
        ));
        let mut s = String::new();
        assert!(k.dump(&mut s, true));
        assert_eq!(s, "ICMP OUT f00d::1:51000 -> :::443 ");
        let m = CtKey6Global(CtKey6::new(
            "fe80::1".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
            443,
            51004,
            132,
            TupleFlags::OUT,
        ));
        assert_eq!(m.to_string(), "[10.0.0.1]:51004 --> [fe80::1]:443, 132, 0");
        let mut s = String::new();
        assert!(m.dump(&mut s, false));
        assert_eq!(s, "SCTP OUT 10.0.0.1:51004 -> fe80::1:443 ");
        let mut s = String::new();
        assert!(m.0.dump(&mut s, true));
        assert_eq!(s, "SCTP OUT 10.0.0.1 443:51004 ");
        let l = CtKey6::new(
            "::ffff:1.2.3.4".parse().unwrap(),
            "::1".parse().unwrap(),
            1,
            2,
            6,
            TupleFlags::IN,
        );
        assert_eq!(l.to_string(), "[1.2.3.4]:2, 1, 6, 1");
        // Not mapped (IPv4-compatible) stays IPv6 as in Go.
        let c = CtKey6::new(
            "::102:304".parse().unwrap(),
            "::1".parse().unwrap(),
            1,
            2,
            6,
            TupleFlags::IN,
        );
        assert_eq!(c.to_string(), "[::102:304]:2, 1, 6, 1");
    }

    #[test]
    fn proto_names() {
        assert_eq!(proto_name(0), "ANY");
        assert_eq!(proto_name(1), "ICMP");
        assert_eq!(proto_name(17), "UDP");
        assert_eq!(proto_name(58), "ICMPv6");
        assert_eq!(proto_name(132), "SCTP");
        assert_eq!(proto_name(255), "255");
    }
}
