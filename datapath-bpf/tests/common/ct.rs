//! The datapath's conntrack entries of either family in one shape, for the
//! tests that check both families the same way.

use std::net::IpAddr;

use podnet_datapath::maps::{CtTuple4, CtTuple6, RawCtEntry};
use podnet_datapath::{CtTable, Datapath};

/// A conntrack tuple of either family, ports in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub daddr: IpAddr,
    pub saddr: IpAddr,
    pub dport: u16,
    pub sport: u16,
    pub nexthdr: u8,
    pub flags: u8,
}

// The families' tuples differ only in the addresses' type.
macro_rules! tuple_from {
    ($raw:ty) => {
        impl From<$raw> for Tuple {
            fn from(k: $raw) -> Tuple {
                Tuple {
                    daddr: k.daddr.into(),
                    saddr: k.saddr.into(),
                    dport: u16::from_be(k.dport),
                    sport: u16::from_be(k.sport),
                    nexthdr: k.nexthdr,
                    flags: k.flags,
                }
            }
        }
    };
}
tuple_from!(CtTuple4);
tuple_from!(CtTuple6);

/// The entries of `table` of the IPv6 (`v6`) or IPv4 family.
pub fn ct_entries(dp: &Datapath, v6: bool, table: CtTable) -> Vec<(Tuple, RawCtEntry)> {
    if v6 {
        let ct = dp.ct6_entries(table).unwrap();
        ct.into_iter().map(|(k, e)| (k.into(), e)).collect()
    } else {
        let ct = dp.ct4_entries(table).unwrap();
        ct.into_iter().map(|(k, e)| (k.into(), e)).collect()
    }
}
