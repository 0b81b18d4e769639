//! The conntrack value: Cilium's `struct ct_entry` (56 bytes).
//!
//! Layout read in cilium/cilium `bpf/lib/common.h` (`struct ct_entry`, v1.16+)
//! and `pkg/maps/ctmap/types.go` (`CtEntry`); integers are in host byte order
//! except `rev_nat_index`, which the datapath stores in network order:
//!
//! | offset | field            | type   |
//! |--------|------------------|--------|
//! | 0      | `reserved0`      | u64    |
//! | 8      | `backend_id`     | u64    |
//! | 16     | `packets`        | u64    |
//! | 24     | `bytes`          | u64    |
//! | 32     | `lifetime`       | u32    |
//! | 36     | flags bitfield   | u16 ([`EntryFlags`]) |
//! | 38     | `rev_nat_index`  | `__be16` |
//! | 40     | `ifindex`        | u16    |
//! | 42     | `tx_flags_seen`  | u8     |
//! | 43     | `rx_flags_seen`  | u8     |
//! | 44     | `src_sec_id`     | u32    |
//! | 48     | `last_tx_report` | u32    |
//! | 52     | `last_rx_report` | u32    |
//!
//! The flags are C bitfields of one `__u16` starting at its least significant
//! bit (`rx_closing:1, tx_closing:1, ...`), which is how clang lays them out on
//! the little-endian hosts Cilium supports.

use std::fmt;
use std::fmt::Write as _;

use bitflags::bitflags;

use crate::error::Error;

bitflags! {
    /// The `ct_entry` flag bits, in Cilium's order (`types.go`: `RxClosing =
    /// 1 << iota`, ...). Bit 2 is `reserved1` in C and `Nat64` in Go; bit 9 is
    /// `reserved2` / `Reserved1`.
    ///
    /// ```
    /// use podnet_conntrack::EntryFlags;
    /// assert_eq!(EntryFlags::SEEN_NON_SYN.bits(), 1 << 4);
    /// assert_eq!(EntryFlags::FROM_TUNNEL.bits(), 1 << 10);
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct EntryFlags: u16 {
        /// `rx_closing`.
        const RX_CLOSING = 1 << 0;
        /// `tx_closing`.
        const TX_CLOSING = 1 << 1;
        /// `Nat64` (C: `reserved1`, unused since v1.12).
        const NAT64 = 1 << 2;
        /// `lb_loopback`.
        const LB_LOOPBACK = 1 << 3;
        /// `seen_non_syn`.
        const SEEN_NON_SYN = 1 << 4;
        /// `node_port`.
        const NODE_PORT = 1 << 5;
        /// `proxy_redirect`.
        const PROXY_REDIRECT = 1 << 6;
        /// `dsr_internal`.
        const DSR_INTERNAL = 1 << 7;
        /// `from_l7lb`.
        const FROM_L7LB = 1 << 8;
        /// `Reserved1` (C: `reserved2`).
        const RESERVED1 = 1 << 9;
        /// `from_tunnel`.
        const FROM_TUNNEL = 1 << 10;
        // Unknown bits are kept.
        const _ = !0;
    }
}

/// Cilium's `MaxFlags`: first bit Cilium does not name.
const MAX_FLAGS: u16 = 1 << 11;

/// Offset of `lifetime` in `struct ct_entry`.
const OFF_LIFETIME: usize = 32;
/// Offset of the flags bitfield in `struct ct_entry`.
const OFF_FLAGS: usize = 36;

/// `lifetime` read straight from an entry's map bytes (GC decides on it
/// without copying the entry).
pub(crate) fn lifetime_in(value: &[u8]) -> u32 {
    let o = OFF_LIFETIME;
    u32::from_ne_bytes([value[o], value[o + 1], value[o + 2], value[o + 3]])
}

/// The flags bitfield read straight from an entry's map bytes.
pub(crate) fn flags_in(value: &[u8]) -> EntryFlags {
    EntryFlags::from_bits_retain(u16::from_ne_bytes([value[OFF_FLAGS], value[OFF_FLAGS + 1]]))
}

macro_rules! field {
    ($get:ident, $set:ident, $ty:ty, $off:expr, $doc:literal) => {
        #[doc = concat!("`", $doc, "` (host order).")]
        pub fn $get(&self) -> $ty {
            const N: usize = std::mem::size_of::<$ty>();
            let mut b = [0u8; N];
            b.copy_from_slice(&self.bytes[$off..$off + N]);
            <$ty>::from_ne_bytes(b)
        }

        #[doc = concat!("Sets `", $doc, "`.")]
        pub fn $set(&mut self, v: $ty) {
            const N: usize = std::mem::size_of::<$ty>();
            self.bytes[$off..$off + N].copy_from_slice(&v.to_ne_bytes());
        }
    };
}

/// A conntrack entry (`struct ct_entry`, 56 bytes).
///
/// ```
/// use podnet_conntrack::{CtEntry, EntryFlags};
/// let mut e = CtEntry::default();
/// e.set_lifetime(1000);
/// e.set_rev_nat_index(0x0102);
/// e.set_flags(EntryFlags::SEEN_NON_SYN | EntryFlags::TX_CLOSING);
/// let b = e.to_bytes();
/// assert_eq!(&b[38..40], &[0x01, 0x02]); // network order
/// assert_eq!(CtEntry::from_bytes(&b).unwrap(), e);
/// assert!(e.to_string().starts_with("expires=1000 Packets=0 Bytes=0"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtEntry {
    bytes: [u8; 56],
}

impl Default for CtEntry {
    fn default() -> Self {
        CtEntry { bytes: [0; 56] }
    }
}

impl CtEntry {
    /// Size of the value in the map, in bytes.
    pub const SIZE: usize = 56;

    /// Decodes an entry; `bytes` must be exactly 56 bytes long.
    ///
    /// # Errors
    /// [`Error::Layout`] when `bytes` has the wrong length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; 56] = bytes.try_into().map_err(|_| Error::Layout {
            what: "CtEntry",
            expected: Self::SIZE,
            found: bytes.len(),
        })?;
        Ok(CtEntry { bytes })
    }

    /// The entry with these bytes.
    #[must_use]
    pub fn from_array(bytes: [u8; 56]) -> Self {
        CtEntry { bytes }
    }

    pub(crate) fn copy_from(b: &[u8]) -> Self {
        let mut bytes = [0u8; 56];
        bytes.copy_from_slice(b);
        CtEntry { bytes }
    }

    /// The entry's bytes exactly as the map stores them.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 56] {
        self.bytes
    }

    /// The entry's bytes, borrowed.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    field!(reserved0, set_reserved0, u64, 0, "reserved0");
    field!(backend_id, set_backend_id, u64, 8, "backend_id");
    field!(packets, set_packets, u64, 16, "packets");
    field!(bytes, set_bytes, u64, 24, "bytes");
    field!(lifetime, set_lifetime, u32, OFF_LIFETIME, "lifetime");
    field!(ifindex, set_ifindex, u16, 40, "ifindex");
    field!(src_sec_id, set_src_sec_id, u32, 44, "src_sec_id");
    field!(
        last_tx_report,
        set_last_tx_report,
        u32,
        48,
        "last_tx_report"
    );
    field!(
        last_rx_report,
        set_last_rx_report,
        u32,
        52,
        "last_rx_report"
    );

    /// The flags bitfield.
    #[must_use]
    pub fn flags(&self) -> EntryFlags {
        flags_in(&self.bytes)
    }

    /// Sets the flags bitfield.
    pub fn set_flags(&mut self, f: EntryFlags) {
        self.bytes[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&f.bits().to_ne_bytes());
    }

    /// `rev_nat_index` in host order (stored in network order).
    #[must_use]
    pub fn rev_nat_index(&self) -> u16 {
        u16::from_be_bytes([self.bytes[38], self.bytes[39]])
    }

    /// Sets `rev_nat_index` (host order in, network order stored).
    pub fn set_rev_nat_index(&mut self, v: u16) {
        self.bytes[38..40].copy_from_slice(&v.to_be_bytes());
    }

    /// `tx_flags_seen`: OR of the TCP flags seen in the transmit direction.
    #[must_use]
    pub fn tx_flags_seen(&self) -> u8 {
        self.bytes[42]
    }

    /// Sets `tx_flags_seen`.
    pub fn set_tx_flags_seen(&mut self, v: u8) {
        self.bytes[42] = v;
    }

    /// `rx_flags_seen`: OR of the TCP flags seen in the receive direction.
    #[must_use]
    pub fn rx_flags_seen(&self) -> u8 {
        self.bytes[43]
    }

    /// Sets `rx_flags_seen`.
    pub fn set_rx_flags_seen(&mut self, v: u8) {
        self.bytes[43] = v;
    }

    /// Cilium's `flagsString`: `Flags=0x%04x [ RxClosing ... Unknown=0x%04x ]`.
    #[must_use]
    pub fn flags_string(&self) -> String {
        let mut s = String::with_capacity(64);
        self.write_flags(&mut s);
        s
    }

    fn write_flags(&self, s: &mut String) {
        let f = self.flags();
        let _ = write!(s, "Flags={:#06x} [ ", f.bits());
        for (flag, name) in [
            (EntryFlags::RX_CLOSING, "RxClosing "),
            (EntryFlags::TX_CLOSING, "TxClosing "),
            (EntryFlags::NAT64, "Nat64 "),
            (EntryFlags::LB_LOOPBACK, "LBLoopback "),
            (EntryFlags::SEEN_NON_SYN, "SeenNonSyn "),
            (EntryFlags::NODE_PORT, "NodePort "),
            (EntryFlags::PROXY_REDIRECT, "ProxyRedirect "),
            (EntryFlags::DSR_INTERNAL, "DSRInternal "),
            (EntryFlags::FROM_L7LB, "FromL7LB "),
            (EntryFlags::FROM_TUNNEL, "FromTunnel "),
        ] {
            if f.contains(flag) {
                s.push_str(name);
            }
        }
        let unknown = f.bits() & !(MAX_FLAGS - 1);
        if unknown != 0 {
            let _ = write!(s, "Unknown={unknown:#06x} ");
        }
        s.push(']');
    }

    /// Cilium's `CtEntry.StringWithTimeDiff`: the entry's text, with
    /// ` (<time_diff>)` after `expires=N` when `time_diff` is given. Ends in
    /// `" \n"` as Cilium's does.
    #[must_use]
    pub fn string_with_time_diff(&self, time_diff: Option<&str>) -> String {
        let mut s = String::with_capacity(256);
        self.write_with_time_diff(&mut s, time_diff);
        s
    }

    pub(crate) fn write_with_time_diff(&self, s: &mut String, time_diff: Option<&str>) {
        let _ = write!(s, "expires={}", self.lifetime());
        if let Some(d) = time_diff {
            let _ = write!(s, " ({d})");
        }
        let _ = write!(
            s,
            " Packets={} Bytes={} RxFlagsSeen={:#04x} LastRxReport={} TxFlagsSeen={:#04x} LastTxReport={} ",
            self.packets(),
            self.bytes(),
            self.rx_flags_seen(),
            self.last_rx_report(),
            self.tx_flags_seen(),
            self.last_tx_report()
        );
        self.write_flags(s);
        let _ = writeln!(
            s,
            " RevNAT={} SourceSecurityID={} IfIndex={} BackendID={} ",
            self.rev_nat_index(),
            self.src_sec_id(),
            self.ifindex(),
            self.backend_id()
        );
    }
}

/// Cilium's `CtEntry.String()` (with its trailing `" \n"`).
impl fmt::Display for CtEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.string_with_time_diff(None))
    }
}

impl fmt::Debug for CtEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtEntry")
            .field("backend_id", &self.backend_id())
            .field("packets", &self.packets())
            .field("bytes", &self.bytes())
            .field("lifetime", &self.lifetime())
            .field("flags", &self.flags())
            .field("rev_nat_index", &self.rev_nat_index())
            .field("ifindex", &self.ifindex())
            .field("tx_flags_seen", &self.tx_flags_seen())
            .field("rx_flags_seen", &self.rx_flags_seen())
            .field("src_sec_id", &self.src_sec_id())
            .field("last_tx_report", &self.last_tx_report())
            .field("last_rx_report", &self.last_rx_report())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated() -> [u8; 56] {
        let mut b = Vec::new();
        b.extend_from_slice(&0u64.to_le_bytes()); // reserved0
        b.extend_from_slice(&7u64.to_le_bytes()); // backend_id
        b.extend_from_slice(&100u64.to_le_bytes()); // packets
        b.extend_from_slice(&150_000u64.to_le_bytes()); // bytes
        b.extend_from_slice(&86_400u32.to_le_bytes()); // lifetime
        b.extend_from_slice(&0b0000_0100_0001_0010u16.to_le_bytes()); // TxClosing|SeenNonSyn|FromTunnel
        b.extend_from_slice(&[0x00, 0x2a]); // rev_nat_index 42, network order
        b.extend_from_slice(&3u16.to_le_bytes()); // ifindex
        b.push(0x12); // tx_flags_seen SYN|ACK
        b.push(0x10); // rx_flags_seen ACK
        b.extend_from_slice(&12345u32.to_le_bytes()); // src_sec_id
        b.extend_from_slice(&11u32.to_le_bytes()); // last_tx_report
        b.extend_from_slice(&22u32.to_le_bytes()); // last_rx_report
        b.try_into().unwrap()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn layout_matches_hand_annotated_bytes() {
        let raw = annotated();
        let e = CtEntry::from_bytes(&raw).unwrap();
        assert_eq!(e.reserved0(), 0);
        assert_eq!(e.backend_id(), 7);
        assert_eq!(e.packets(), 100);
        assert_eq!(e.bytes(), 150_000);
        assert_eq!(e.lifetime(), 86_400);
        assert_eq!(
            e.flags(),
            EntryFlags::TX_CLOSING | EntryFlags::SEEN_NON_SYN | EntryFlags::FROM_TUNNEL
        );
        assert_eq!(e.rev_nat_index(), 42);
        assert_eq!(e.ifindex(), 3);
        assert_eq!(e.tx_flags_seen(), 0x12);
        assert_eq!(e.rx_flags_seen(), 0x10);
        assert_eq!(e.src_sec_id(), 12345);
        assert_eq!(e.last_tx_report(), 11);
        assert_eq!(e.last_rx_report(), 22);

        let mut b = CtEntry::default();
        b.set_backend_id(7);
        b.set_packets(100);
        b.set_bytes(150_000);
        b.set_lifetime(86_400);
        b.set_flags(EntryFlags::TX_CLOSING | EntryFlags::SEEN_NON_SYN | EntryFlags::FROM_TUNNEL);
        b.set_rev_nat_index(42);
        b.set_ifindex(3);
        b.set_tx_flags_seen(0x12);
        b.set_rx_flags_seen(0x10);
        b.set_src_sec_id(12345);
        b.set_last_tx_report(11);
        b.set_last_rx_report(22);
        assert_eq!(b.to_bytes(), raw);
    }

    #[test]
    fn wrong_size_is_an_error() {
        assert!(matches!(
            CtEntry::from_bytes(&[0; 48]),
            Err(Error::Layout {
                expected: 56,
                found: 48,
                ..
            })
        ));
    }

    #[test]
    fn cilium_text() {
        let e = CtEntry::from_bytes(&annotated()).unwrap();
        assert_eq!(
            e.to_string(),
            "expires=86400 Packets=100 Bytes=150000 RxFlagsSeen=0x10 LastRxReport=22 \
             TxFlagsSeen=0x12 LastTxReport=11 Flags=0x0412 [ TxClosing SeenNonSyn FromTunnel ] \
             RevNAT=42 SourceSecurityID=12345 IfIndex=3 BackendID=7 \n"
        );
        let mut z = CtEntry::default();
        assert_eq!(z.flags_string(), "Flags=0x0000 [ ]");
        z.set_flags(EntryFlags::from_bits_retain(0x8201));
        assert_eq!(
            z.flags_string(),
            "Flags=0x8201 [ RxClosing Unknown=0x8000 ]"
        );
        assert_eq!(
            z.string_with_time_diff(Some("remaining: 5 sec(s)")),
            "expires=0 (remaining: 5 sec(s)) Packets=0 Bytes=0 RxFlagsSeen=0x00 LastRxReport=0 \
             TxFlagsSeen=0x00 LastTxReport=0 Flags=0x8201 [ RxClosing Unknown=0x8000 ] \
             RevNAT=0 SourceSecurityID=0 IfIndex=0 BackendID=0 \n"
        );
    }
}
