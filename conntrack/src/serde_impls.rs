//! Serialize / Deserialize (feature `serde`) for the data types a tool
//! prints or stores: keys and entries as their named fields (addresses as
//! text, ports in host order, flags as their bits), the rest derived.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::entry::{CtEntry, EntryFlags};
use crate::key::{CtKey4, CtKey4Global, CtKey6, CtKey6Global, TupleFlags};

#[derive(Serialize, Deserialize)]
struct KeyFields<A> {
    daddr: A,
    saddr: A,
    dport: u16,
    sport: u16,
    nexthdr: u8,
    flags: u8,
}

macro_rules! key_serde {
    ($key:ident, $addr:ty) => {
        impl Serialize for $key {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                KeyFields {
                    daddr: self.daddr(),
                    saddr: self.saddr(),
                    dport: self.dport(),
                    sport: self.sport(),
                    nexthdr: self.nexthdr(),
                    flags: self.flags().bits(),
                }
                .serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $key {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let f = KeyFields::<$addr>::deserialize(d)?;
                Ok($key::new(
                    f.daddr,
                    f.saddr,
                    f.dport,
                    f.sport,
                    f.nexthdr,
                    TupleFlags::from_bits_retain(f.flags),
                ))
            }
        }
    };
}

key_serde!(CtKey4, Ipv4Addr);
key_serde!(CtKey6, Ipv6Addr);

macro_rules! global_serde {
    ($g:ident, $inner:ident) => {
        impl Serialize for $g {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $g {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $inner::deserialize(d).map($g)
            }
        }
    };
}

global_serde!(CtKey4Global, CtKey4);
global_serde!(CtKey6Global, CtKey6);

#[derive(Serialize, Deserialize)]
struct EntryFields {
    reserved0: u64,
    backend_id: u64,
    packets: u64,
    bytes: u64,
    lifetime: u32,
    flags: u16,
    rev_nat_index: u16,
    ifindex: u16,
    tx_flags_seen: u8,
    rx_flags_seen: u8,
    src_sec_id: u32,
    last_tx_report: u32,
    last_rx_report: u32,
}

impl Serialize for CtEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EntryFields {
            reserved0: self.reserved0(),
            backend_id: self.backend_id(),
            packets: self.packets(),
            bytes: self.bytes(),
            lifetime: self.lifetime(),
            flags: self.flags().bits(),
            rev_nat_index: self.rev_nat_index(),
            ifindex: self.ifindex(),
            tx_flags_seen: self.tx_flags_seen(),
            rx_flags_seen: self.rx_flags_seen(),
            src_sec_id: self.src_sec_id(),
            last_tx_report: self.last_tx_report(),
            last_rx_report: self.last_rx_report(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for CtEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = EntryFields::deserialize(d)?;
        let mut e = CtEntry::default();
        e.set_reserved0(f.reserved0);
        e.set_backend_id(f.backend_id);
        e.set_packets(f.packets);
        e.set_bytes(f.bytes);
        e.set_lifetime(f.lifetime);
        e.set_flags(EntryFlags::from_bits_retain(f.flags));
        e.set_rev_nat_index(f.rev_nat_index);
        e.set_ifindex(f.ifindex);
        e.set_tx_flags_seen(f.tx_flags_seen);
        e.set_rx_flags_seen(f.rx_flags_seen);
        e.set_src_sec_id(f.src_sec_id);
        e.set_last_tx_report(f.last_tx_report);
        e.set_last_rx_report(f.last_rx_report);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_entries_round_trip_through_json() {
        let k = CtKey6::new(
            "f00d::1".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
            443,
            51000,
            6,
            TupleFlags::IN | TupleFlags::SERVICE,
        );
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(
            j,
            r#"{"daddr":"f00d::1","saddr":"::ffff:10.0.0.1","dport":443,"sport":51000,"nexthdr":6,"flags":5}"#
        );
        assert_eq!(serde_json::from_str::<CtKey6>(&j).unwrap(), k);
        let k4 = CtKey4Global(CtKey4::new(
            [1, 2, 3, 4].into(),
            [5, 6, 7, 8].into(),
            1,
            2,
            17,
            TupleFlags::OUT,
        ));
        let j = serde_json::to_string(&k4).unwrap();
        assert_eq!(serde_json::from_str::<CtKey4Global>(&j).unwrap(), k4);
        let mut e = CtEntry::default();
        e.set_lifetime(77);
        e.set_rev_nat_index(0x0102);
        e.set_flags(EntryFlags::SEEN_NON_SYN);
        e.set_last_rx_report(9);
        let j = serde_json::to_string(&e).unwrap();
        assert!(
            j.contains(r#""lifetime":77"#) && j.contains(r#""rev_nat_index":258"#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<CtEntry>(&j).unwrap(), e);
    }
}
