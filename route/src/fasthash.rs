//! A fast non-cryptographic hash (the Fx hash of rustc) for the per-batch
//! maps of `upsert_many` / `delete_many`, whose keys are prefixes and
//! small tuples: `SipHash` cost more per route than the rest of a batch's
//! bookkeeping together.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FxHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// rustc's Fx hash: one multiply per word.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            let (w, rest) = bytes.split_at(8);
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.add(u64::from_ne_bytes(b));
            bytes = rest;
        }
        if !bytes.is_empty() {
            let mut b = [0u8; 8];
            b[..bytes.len()].copy_from_slice(bytes);
            self.add(u64::from_ne_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_prefixes_spread() {
        let mut m: FastMap<ipnet::IpNet, u32> = FastMap::default();
        for i in 0..10_000u32 {
            let a = std::net::Ipv4Addr::from(0x0a80_0000 + i);
            m.insert(ipnet::IpNet::from(std::net::IpAddr::V4(a)), i);
        }
        assert_eq!(m.len(), 10_000);
        let a = std::net::Ipv4Addr::from(0x0a80_0000 + 77);
        assert_eq!(
            m.get(&ipnet::IpNet::from(std::net::IpAddr::V4(a))),
            Some(&77)
        );
    }
}
