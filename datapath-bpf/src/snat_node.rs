//! The table of IPv4 masquerade addresses from-netdev checks before its
//! endpoint lookup (`struct snat_node_table` in `src/bpf/lib/snat_node.h`):
//! a mirror of `podnet_snat_addrs`, rewritten whenever that map changes.
//!
//! It is a hint only: a reply to a masquerade address goes to the reverse
//! SNAT without the endpoint lookup it would miss; an address not in the
//! table takes the other order, so a collision or a stale slot changes no
//! verdict, only what one packet costs.

use std::net::Ipv4Addr;

use crate::maps::{self, Pod};
use crate::masquerade::SnatIfaddr;
use crate::{Datapath, Result};

/// `SNAT_NODE_SLOTS`.
pub(crate) const SLOTS: usize = 16;

/// `struct snat_node_table`: one address per slot, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnatNodeTable {
    pub v4: [[u8; 4]; SLOTS],
}
impl Pod for SnatNodeTable {}

/// A key of `podnet_snat_addrs` (an ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Ifindex(u32);
impl Pod for Ifindex {}

/// `snat_node_slot`: the xor of the address's four bytes.
pub(crate) fn slot(addr: Ipv4Addr) -> usize {
    usize::from(addr.octets().iter().fold(0u8, |x, b| x ^ b)) & (SLOTS - 1)
}

impl SnatNodeTable {
    /// The table of `addrs`, in order: of two addresses in one slot the
    /// first stays (the other takes from-netdev's other order).
    pub(crate) fn of(addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let mut t = SnatNodeTable::default();
        for a in addrs {
            let s = slot(a);
            if t.v4[s] == [0; 4] {
                t.v4[s] = a.octets();
            }
        }
        t
    }
}

impl Datapath {
    /// Rewrites the table from `podnet_snat_addrs` (interfaces in ifindex
    /// order), after every change to that map.
    pub(crate) fn write_snat_node_table(&self) -> Result<()> {
        let mut keys: Vec<Ifindex> = self.keys(maps::SNAT_ADDRS)?;
        keys.sort_by_key(|k| k.0);
        let mut addrs = Vec::new();
        for k in keys {
            let mut cur = [0u8; size_of::<SnatIfaddr>()];
            if !self.lookup(maps::SNAT_ADDRS, k.as_bytes(), &mut cur)? {
                continue; // gone meanwhile
            }
            let v = SnatIfaddr::from_bytes(&cur).unwrap_or_default();
            if v.v4 != [0; 4] {
                addrs.push(Ipv4Addr::from(v.v4));
            }
        }
        let table = SnatNodeTable::of(addrs);
        self.update(maps::SNAT_NODE, &0u32.to_ne_bytes(), table.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout_and_slots() {
        assert_eq!(size_of::<SnatNodeTable>(), 64);
        let a: Ipv4Addr = "192.168.50.1".parse().expect("address");
        // 192 ^ 168 ^ 50 ^ 1 = 0x5b: slot 11.
        assert_eq!(slot(a), 11);
        let t = SnatNodeTable::of([a]);
        assert_eq!(t.v4[11], [192, 168, 50, 1]);
        assert_eq!(t.v4.iter().filter(|s| **s != [0; 4]).count(), 1);
    }

    #[test]
    fn first_address_keeps_a_shared_slot() {
        let a: Ipv4Addr = "10.0.0.1".parse().expect("address");
        let b: Ipv4Addr = "10.0.1.0".parse().expect("address");
        assert_eq!(slot(a), slot(b));
        let t = SnatNodeTable::of([a, b]);
        assert_eq!(t.v4[slot(a)], [10, 0, 0, 1]);
    }
}
