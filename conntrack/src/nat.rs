//! SNAT maps (`cilium_snat_v4_external`, `cilium_snat_v6_external`) and
//! Cilium's orphan SNAT purge.
//!
//! Layouts read in cilium/cilium `bpf/lib/nat.h` (`struct ipv4_nat_entry`,
//! `struct nat_entry`) and `pkg/maps/nat/ipv4.go` / `ipv6.go`: the key is the
//! conntrack tuple ([`crate::CtKey4`] / [`crate::CtKey6`] bytes, global
//! semantics); the value is
//!
//! | offset | field      | v4        | v6         |
//! |--------|------------|-----------|------------|
//! | 0      | `created`  | u64       | u64        |
//! | 8      | `needs_ct` | u64       | u64        |
//! | 16     | `pad1`     | u64       | u64        |
//! | 24     | `pad2`     | u64       | u64        |
//! | 32     | `to_addr`  | 4 bytes   | 16 bytes   |
//! | 36/48  | `to_port`  | `__be16`  | `__be16`   |
//!
//! padded to 40 (v4) and 56 (v6) bytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::entry::EntryFlags;
use crate::error::{Error, Result};
use crate::gc::ClockSource;
use crate::key::{AnyCtKey, CtKey6, IpFamily, TupleFlags, IPPROTO_TCP};
use crate::map::CtMap;
use crate::raw::{BatchScanner, RawMap, DEFAULT_BATCH};

/// `cilium_snat_v4_external`.
pub const MAP_NAME_SNAT4: &str = "cilium_snat_v4_external";
/// `cilium_snat_v6_external`.
pub const MAP_NAME_SNAT6: &str = "cilium_snat_v6_external";
/// Cilium's default SNAT map size: 2/3 of the CT maps' (`natMapEntriesGlobalDefault`).
pub const DEFAULT_MAX_ENTRIES_NAT: u32 =
    (crate::map::DEFAULT_MAX_ENTRIES_TCP + crate::map::DEFAULT_MAX_ENTRIES_ANY) * 2 / 3;

/// A SNAT entry (`struct ipv4_nat_entry` / `ipv6_nat_entry`).
///
/// ```
/// use podnet_conntrack::nat::NatEntry;
/// let e = NatEntry::new("192.0.2.1".parse().unwrap(), 33000);
/// assert_eq!(e.to_bytes().len(), 40);
/// assert_eq!(e.to_port(), 33000);
/// assert_eq!(&e.to_bytes()[32..38], &[192, 0, 2, 1, 0x80, 0xe8]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatEntry {
    bytes: [u8; 56],
    family: IpFamily,
}

impl NatEntry {
    /// Value size of IPv4 SNAT maps.
    pub const SIZE_V4: usize = 40;
    /// Value size of IPv6 SNAT maps.
    pub const SIZE_V6: usize = 56;

    /// An entry translating to `addr:port` (port in host order).
    #[must_use]
    pub fn new(addr: IpAddr, port: u16) -> Self {
        let mut e = NatEntry {
            bytes: [0; 56],
            family: if addr.is_ipv4() {
                IpFamily::V4
            } else {
                IpFamily::V6
            },
        };
        match addr {
            IpAddr::V4(a) => e.bytes[OFF_ADDR..OFF_ADDR + 4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => e.bytes[OFF_ADDR..OFF_ADDR + 16].copy_from_slice(&a.octets()),
        }
        e.set_to_port(port);
        e
    }

    /// Value size for `family`.
    #[must_use]
    pub fn size(family: IpFamily) -> usize {
        match family {
            IpFamily::V4 => Self::SIZE_V4,
            IpFamily::V6 => Self::SIZE_V6,
        }
    }

    /// Decodes an entry of `family`.
    ///
    /// # Errors
    /// [`Error::Layout`] when `b` has the wrong length for `family`.
    pub fn from_bytes(family: IpFamily, b: &[u8]) -> Result<Self> {
        let want = Self::size(family);
        if b.len() != want {
            return Err(Error::Layout {
                what: "NatEntry",
                expected: want,
                found: b.len(),
            });
        }
        let mut bytes = [0u8; 56];
        bytes[..want].copy_from_slice(b);
        Ok(NatEntry { bytes, family })
    }

    /// The bytes as the map stores them (40 or 56).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// The bytes, borrowed.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..Self::size(self.family)]
    }

    fn u64_at(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[off..off + 8]);
        u64::from_ne_bytes(b)
    }

    /// `created`.
    #[must_use]
    pub fn created(&self) -> u64 {
        self.u64_at(0)
    }

    /// Sets `created`.
    pub fn set_created(&mut self, v: u64) {
        self.bytes[0..8].copy_from_slice(&v.to_ne_bytes());
    }

    /// `needs_ct`.
    #[must_use]
    pub fn needs_ct(&self) -> u64 {
        self.u64_at(8)
    }

    /// Sets `needs_ct`.
    pub fn set_needs_ct(&mut self, v: u64) {
        self.bytes[8..16].copy_from_slice(&v.to_ne_bytes());
    }

    /// The translated address (`to_saddr` / `to_daddr`).
    #[must_use]
    pub fn to_addr(&self) -> IpAddr {
        let a = self.addr_bytes();
        match self.family {
            IpFamily::V4 => Ipv4Addr::from([a[0], a[1], a[2], a[3]]).into(),
            IpFamily::V6 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(a);
                Ipv6Addr::from(b).into()
            }
        }
    }

    /// The port follows the address.
    fn port_off(&self) -> usize {
        OFF_ADDR + addr_len(self.family)
    }

    /// The translated port, host order.
    #[must_use]
    pub fn to_port(&self) -> u16 {
        let o = self.port_off();
        u16::from_be_bytes([self.bytes[o], self.bytes[o + 1]])
    }

    /// Sets the translated port (host order in, network order stored).
    pub fn set_to_port(&mut self, p: u16) {
        let o = self.port_off();
        self.bytes[o..o + 2].copy_from_slice(&p.to_be_bytes());
    }

    fn addr_bytes(&self) -> &[u8] {
        &self.bytes[OFF_ADDR..self.port_off()]
    }

    fn port_bytes(&self) -> [u8; 2] {
        let o = self.port_off();
        [self.bytes[o], self.bytes[o + 1]]
    }
}

/// Cilium's `NatEntry4.String`: `Addr=%s Port=%d Created=%d NeedsCT=%d\n`.
impl fmt::Display for NatEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Addr={} Port={} Created={} NeedsCT={}",
            self.to_addr(),
            self.to_port(),
            self.created(),
            self.needs_ct()
        )
    }
}

impl fmt::Debug for NatEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatEntry")
            .field("to_addr", &self.to_addr())
            .field("to_port", &self.to_port())
            .field("created", &self.created())
            .field("needs_ct", &self.needs_ct())
            .finish()
    }
}

/// A SNAT map, checked on open like [`CtMap`].
///
/// ```no_run
/// use podnet_conntrack::nat::{NatMap, MAP_NAME_SNAT4};
/// use podnet_conntrack::{CtMap, Direction};
/// let nat = NatMap::open_named(podnet_conntrack::DEFAULT_PIN_DIR, MAP_NAME_SNAT4)?;
/// let ct_key = CtMap::flow_key("10.0.0.5:40000".parse().unwrap(), "1.1.1.1:443".parse().unwrap(), 6, Direction::Egress)?;
/// println!("{} SNAT entries; {} removed with that flow", nat.count()?, nat.delete_mapping(&ct_key)?);
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
#[derive(Debug)]
pub struct NatMap {
    pub(crate) raw: RawMap,
    family: IpFamily,
}

impl NatMap {
    /// Opens a pinned SNAT map; family from the name
    /// (`cilium_snat_v4_external` / `..._v6_...`) or else the key size.
    ///
    /// # Errors
    /// [`Error::Open`] when nothing is pinned there; [`Error::NotBpffs`], [`Error::NotAMap`], [`Error::MapType`], [`Error::KeySize`] or [`Error::ValueSize`] when it is not a map of this layout (nothing is modified).
    pub fn open(path: impl AsRef<Path>) -> Result<NatMap> {
        let path = path.as_ref();
        let raw = RawMap::open_pinned(path)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let family = if name.contains("_v6_") {
            IpFamily::V6
        } else if name.contains("_v4_") {
            IpFamily::V4
        } else if raw.info.key_size as usize == CtKey6::SIZE {
            IpFamily::V6
        } else {
            IpFamily::V4
        };
        Self::check(raw, family)
    }

    /// Opens `dir/name`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] (conntrack maps) for a name that is not Cilium's; otherwise as `open`: [`Error::Open`] when nothing is pinned there; [`Error::NotBpffs`], [`Error::NotAMap`], [`Error::MapType`], [`Error::KeySize`] or [`Error::ValueSize`] when it is not a map of this layout (nothing is modified).
    pub fn open_named(dir: impl AsRef<Path>, name: &str) -> Result<NatMap> {
        Self::open(dir.as_ref().join(name))
    }

    fn check(raw: RawMap, family: IpFamily) -> Result<NatMap> {
        raw.check_hash_layout(family.key_size(), NatEntry::size(family))?;
        Ok(NatMap { raw, family })
    }

    /// Creates an LRU SNAT map with Cilium's name for `family`, pinned in
    /// `pin_dir` when given.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for `max_entries` 0 and [`Error::NotBpffs`] for a pin directory outside bpffs (both before the kernel is touched); [`Error::Syscall`] when the kernel refuses.
    pub fn create(family: IpFamily, max_entries: u32, pin_dir: Option<&Path>) -> Result<NatMap> {
        let name = match family {
            IpFamily::V4 => MAP_NAME_SNAT4,
            IpFamily::V6 => MAP_NAME_SNAT6,
        };
        if max_entries == 0 {
            return Err(Error::InvalidInput(format!(
                "map {name}: max_entries must be at least 1"
            )));
        }
        if let Some(d) = pin_dir {
            crate::raw::check_pin_dir(d)?;
        }
        let pin = pin_dir.map(|d| d.join(name));
        let raw = RawMap::create(
            libbpf_rs::MapType::LruHash,
            name,
            family.key_size() as u32,
            NatEntry::size(family) as u32,
            max_entries,
            None,
            pin.as_deref(),
        )?;
        Ok(NatMap { raw, family })
    }

    /// The map's family.
    #[must_use]
    pub fn family(&self) -> IpFamily {
        self.family
    }

    fn check_family(&self, k: &AnyCtKey, e: Option<&NatEntry>) -> Result<()> {
        let ef = e.map(|e| e.family).unwrap_or(self.family);
        if k.family() != self.family || ef != self.family {
            return Err(Error::KeyFamily {
                name: self.raw.display_name(),
                map: self.family,
                map_key_size: self.family.key_size(),
                key: if k.family() != self.family {
                    k.family()
                } else {
                    ef
                },
                key_size: k.as_bytes().len(),
            });
        }
        Ok(())
    }

    /// Looks a tuple up.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn lookup(&self, key: &AnyCtKey) -> Result<Option<NatEntry>> {
        self.check_family(key, None)?;
        let mut v = [0u8; 56];
        let n = NatEntry::size(self.family);
        if self.raw.lookup_into(key.as_bytes(), &mut v[..n])? {
            Ok(Some(NatEntry::from_bytes(self.family, &v[..n])?))
        } else {
            Ok(None)
        }
    }

    /// Inserts or replaces an entry.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn update(&self, key: &AnyCtKey, e: &NatEntry) -> Result<()> {
        self.check_family(key, Some(e))?;
        self.raw.update(key.as_bytes(), e.as_bytes(), 0)
    }

    /// Deletes an entry; `Ok(false)` when absent.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn delete(&self, key: &AnyCtKey) -> Result<bool> {
        self.check_family(key, None)?;
        self.raw.delete(key.as_bytes())
    }

    /// Removes the SNAT mappings of an egress CT entry (Cilium's
    /// `DeleteMapping4/6`): the egress SNAT key is the CT key with addresses
    /// swapped; when present, its reverse key (`daddr = to_addr, saddr =
    /// ct.saddr, dport = to_port, sport = ct.dport`, `TUPLE_F_IN`) goes too.
    /// Returns how many SNAT entries were deleted.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn delete_mapping(&self, ct_key: &AnyCtKey) -> Result<usize> {
        self.check_family(ct_key, None)?;
        let (al, b) = (addr_len(self.family), ct_key.as_bytes());
        let mut key = b.to_vec();
        key[0..al].copy_from_slice(&b[al..2 * al]);
        key[al..2 * al].copy_from_slice(&b[0..al]);
        let mut v = [0u8; 56];
        let vs = NatEntry::size(self.family);
        if !self.raw.lookup_into(&key, &mut v[..vs])? {
            return Ok(0);
        }
        let val = NatEntry::from_bytes(self.family, &v[..vs])?;
        let mut rkey = key.clone();
        rkey[0..al].copy_from_slice(val.addr_bytes()); // daddr = to_addr
        rkey[al..2 * al].copy_from_slice(&key[0..al]); // saddr = key.daddr
        rkey[2 * al..2 * al + 2].copy_from_slice(&val.port_bytes()); // dport = to_port
        rkey[2 * al + 2..2 * al + 4].copy_from_slice(&key[2 * al..2 * al + 2]); // sport = key.dport
        rkey[2 * al + 5] = TupleFlags::IN.bits();
        let mut n = 0;
        if self.raw.delete(&key)? {
            n += 1;
        }
        if self.raw.delete(&rkey)? {
            n += 1;
        }
        Ok(n)
    }

    /// Removes the SNAT entry a DSR CT entry owns (Cilium's
    /// `DeleteSwappedMapping4/6`): the CT key with ports swapped, `TUPLE_F_OUT`.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn delete_swapped_mapping(&self, ct_key: &AnyCtKey) -> Result<bool> {
        self.check_family(ct_key, None)?;
        let (al, b) = (addr_len(self.family), ct_key.as_bytes());
        let mut key = b.to_vec();
        key[2 * al..2 * al + 2].copy_from_slice(&b[2 * al + 2..2 * al + 4]);
        key[2 * al + 2..2 * al + 4].copy_from_slice(&b[2 * al..2 * al + 2]);
        key[2 * al + 5] = TupleFlags::OUT.bits();
        self.raw.delete(&key)
    }

    /// What Cilium's GC does to the SNAT map when it deletes a CT entry
    /// (`purgeCtEntry4/6`): for egress tuples (flags exactly `TUPLE_F_OUT`),
    /// the swapped mapping of DSR entries, the mapping pair otherwise.
    pub(crate) fn purge_for_ct(&self, ct_key: &AnyCtKey, entry_flags: EntryFlags) -> Result<usize> {
        if ct_key.flags().bits() != TupleFlags::OUT.bits() {
            return Ok(0);
        }
        if entry_flags.contains(EntryFlags::DSR_INTERNAL) {
            Ok(usize::from(self.delete_swapped_mapping(ct_key)?))
        } else {
            self.delete_mapping(ct_key)
        }
    }

    /// Counts entries with a batch walk.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn count(&self) -> Result<usize> {
        self.raw.count()
    }
}

/// What [`purge_orphan_nat_entries`] did (Cilium's `NatGCStats`).
///
/// ```
/// let s = podnet_conntrack::nat::NatGcStats::default();
/// assert_eq!(s.ingress_deleted + s.egress_deleted, 0);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatGcStats {
    /// SNAT entries scanned.
    pub scanned: usize,
    /// Ingress (reverse, `TUPLE_F_IN`) entries kept.
    pub ingress_alive: usize,
    /// Ingress entries deleted.
    pub ingress_deleted: usize,
    /// Egress entries deleted.
    pub egress_deleted: usize,
    /// Egress entries kept.
    pub egress_alive: usize,
}

/// Offset of `to_saddr`/`to_daddr` in the SNAT value (after `created`,
/// `needs_ct` and the 16 reserved bytes).
const OFF_ADDR: usize = 32;

/// Address length of `f`, in bytes.
fn addr_len(f: IpFamily) -> usize {
    match f {
        IpFamily::V4 => 4,
        IpFamily::V6 => 16,
    }
}

fn ct_exists(ct: &CtMap, key: &AnyCtKey, want_dsr: bool) -> bool {
    match ct.lookup(key) {
        Ok(None) => false,
        Ok(Some(e)) => !want_dsr || e.flags().contains(EntryFlags::DSR_INTERNAL),
        // Cilium's ctEntryExist: any error other than ENOENT counts as present.
        Err(_) => true,
    }
}

fn tuple(
    family: IpFamily,
    daddr: &[u8],
    saddr: &[u8],
    dport: [u8; 2],
    sport: [u8; 2],
    proto: u8,
) -> Result<AnyCtKey> {
    let mut b = Vec::with_capacity(family.key_size());
    b.extend_from_slice(daddr);
    b.extend_from_slice(saddr);
    b.extend_from_slice(&dport);
    b.extend_from_slice(&sport);
    b.push(proto);
    b.push(TupleFlags::OUT.bits());
    AnyCtKey::from_bytes(family, &b)
}

/// Removes SNAT entries that have no conntrack entry (Cilium's
/// `PurgeOrphanNATEntries`, `pkg/maps/ctmap/ctmap.go` and `utils.go`):
///
/// * an ingress (reverse) entry `k` (`TUPLE_F_IN`) is kept while the egress CT
///   entry rebuilt from `k` and its value (`saddr = k.saddr, daddr = to_addr,
///   sport = to_port, dport = k.sport`) exists;
/// * an egress entry is kept while either the egress CT entry (the tuple with
///   addresses swapped) exists, or the DSR CT entry (ports swapped) exists
///   with the `DSRInternal` flag.
///
/// TCP tuples are checked in `ct_tcp`, the others in `ct_any`. Deletions use
/// `BPF_MAP_DELETE_BATCH`.
///
/// # Errors
/// [`Error::InvalidInput`] when the maps' families differ (nothing deleted); [`Error::Syscall`] when a map call fails.
pub fn purge_orphan_nat_entries(
    ct_tcp: &CtMap,
    ct_any: &CtMap,
    nat: &NatMap,
) -> Result<NatGcStats> {
    let family = nat.family;
    if ct_tcp.family() != family || ct_any.family() != family {
        return Err(Error::InvalidInput(format!(
            "purge_orphan_nat_entries: CT maps ({}, {}) and SNAT map ({family}) differ in family",
            ct_tcp.family(),
            ct_any.family()
        )));
    }
    let ks = family.key_size();
    let vs = NatEntry::size(family);
    let al = addr_len(family);
    let mut stats = NatGcStats::default();
    let mut scanner = BatchScanner::new(&nat.raw, DEFAULT_BATCH)?;
    let mut del = Vec::new();
    while let Some(n) = scanner.next_batch()? {
        stats.scanned += n;
        del.clear();
        for i in 0..n {
            let k = &scanner.keys[i * ks..(i + 1) * ks];
            let v = NatEntry::from_bytes(family, &scanner.values[i * vs..(i + 1) * vs])?;
            let (daddr, saddr) = (&k[0..al], &k[al..2 * al]);
            let dport = [k[2 * al], k[2 * al + 1]];
            let sport = [k[2 * al + 2], k[2 * al + 3]];
            let proto = k[2 * al + 4];
            let flags = TupleFlags::from_bits_retain(k[2 * al + 5]);
            let ct = if proto == IPPROTO_TCP { ct_tcp } else { ct_any };
            if flags.contains(TupleFlags::IN) {
                // egressCTKeyFromIngressNatKeyAndVal, after SwapAddresses:
                // daddr = to_addr, saddr = k.saddr, dport = k.sport,
                // sport = to_port, flags OUT.
                let ctk = tuple(family, v.addr_bytes(), saddr, sport, v.port_bytes(), proto)?;
                if ct_exists(ct, &ctk, false) {
                    stats.ingress_alive += 1;
                } else {
                    del.extend_from_slice(k);
                    stats.ingress_deleted += 1;
                }
            } else {
                // egressCTKeyFromEgressNatKey: addresses swapped.
                let egress = tuple(family, saddr, daddr, dport, sport, proto)?;
                // dsrCTKeyFromEgressNatKey: ports swapped.
                let dsr = tuple(family, daddr, saddr, sport, dport, proto)?;
                if ct_exists(ct, &egress, false) || ct_exists(ct, &dsr, true) {
                    stats.egress_alive += 1;
                } else {
                    del.extend_from_slice(k);
                    stats.egress_deleted += 1;
                }
            }
        }
        if !del.is_empty() {
            nat.raw.delete_batch(&del)?;
        }
    }
    Ok(stats)
}

/// One line of `cilium bpf nat list`: the key as Cilium's
/// `TupleKey4Global.Dump(sb, false)` writes it (`TCP OUT 10.1.0.2:40000 ->
/// 203.0.113.5:80 `), then the entry's `NatEntry4.Dump` (`XLATE_SRC` for a
/// forward entry, `XLATE_DST` for a reverse one, `TUPLE_F_IN`): `XLATE_SRC
/// 192.0.2.1:40000 Created=? (raw 100) NeedsCT=0` and a newline. `created`
/// is Cilium's text for the creation time (see [`NatRecord::with_clock`]).
///
/// ```
/// use podnet_conntrack::nat::{NatEntry, NatRecord};
/// use podnet_conntrack::{AnyCtKey, CtKey4};
/// let mut k = CtKey4::default();
/// k.set_daddr("203.0.113.5".parse().unwrap());
/// k.set_saddr("10.1.0.2".parse().unwrap());
/// k.set_dport(80);
/// k.set_sport(40000);
/// k.set_nexthdr(6);
/// let mut e = NatEntry::new("192.0.2.1".parse().unwrap(), 40000);
/// e.set_created(100);
/// let r = NatRecord::new(AnyCtKey::V4(k), e);
/// assert_eq!(
///     r.to_string(),
///     "TCP OUT 10.1.0.2:40000 -> 203.0.113.5:80 XLATE_SRC 192.0.2.1:40000 Created=? (raw 100) NeedsCT=0\n"
/// );
/// ```
#[derive(Clone, Debug)]
pub struct NatRecord {
    /// The NAT tuple.
    pub key: AnyCtKey,
    /// Its translation.
    pub entry: NatEntry,
    created: Option<String>,
}

impl NatRecord {
    /// A record whose creation time prints raw (`? (raw N)`, Cilium's text
    /// without a clock source).
    #[must_use]
    pub fn new(key: AnyCtKey, entry: NatEntry) -> Self {
        NatRecord {
            key,
            entry,
            created: None,
        }
    }

    /// The creation time as Cilium prints it with the agent's clock:
    /// `Nsec ago` against `clock`'s now.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the clock cannot be read.
    pub fn with_clock(mut self, clock: &ClockSource) -> Result<Self> {
        let now = clock.to_seconds(u64::from(clock.now()?)) as i64;
        let t = clock.to_seconds(self.entry.created()) as i64;
        self.created = Some(format!("{}sec ago", now - t));
        Ok(self)
    }
}

impl fmt::Display for NatRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = String::new();
        if !self.key.dump(&mut key, true, false) {
            return Ok(());
        }
        let which = if self.key.flags().contains(TupleFlags::IN) {
            "DST"
        } else {
            "SRC"
        };
        let created = match &self.created {
            Some(c) => c.clone(),
            None => format!("? (raw {})", self.entry.created()),
        };
        let addr = match self.entry.to_addr() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => a.to_string(),
        };
        writeln!(
            f,
            "{key}XLATE_{which} {addr}:{} Created={created} NeedsCT={}",
            self.entry.to_port(),
            self.entry.needs_ct()
        )
    }
}

impl NatMap {
    /// Every entry, with a batch walk.
    ///
    /// # Errors
    /// [`Error::Syscall`] when the walk fails.
    pub fn entries(&self) -> Result<Vec<(AnyCtKey, NatEntry)>> {
        let ks = self.family.key_size();
        let vs = NatEntry::size(self.family);
        let mut out = Vec::new();
        let mut scanner = BatchScanner::new(&self.raw, DEFAULT_BATCH)?;
        while let Some(n) = scanner.next_batch()? {
            for i in 0..n {
                let k = AnyCtKey::from_bytes(self.family, &scanner.keys[i * ks..(i + 1) * ks])?;
                let v = NatEntry::from_bytes(self.family, &scanner.values[i * vs..(i + 1) * vs])?;
                out.push((k, v));
            }
        }
        Ok(out)
    }
}

/// The text of `cilium bpf nat list` for `nat` (Cilium's `DoDumpEntries`:
/// creation times raw, entries with protocol 0 skipped).
///
/// # Errors
/// [`Error::Syscall`] when the walk fails.
pub fn dump_nat_entries(nat: &NatMap) -> Result<String> {
    Ok(nat
        .entries()?
        .into_iter()
        .map(|(k, e)| NatRecord::new(k, e).to_string())
        .collect())
}

/// Like [`dump_nat_entries`], creation times as `Nsec ago` against `clock`
/// (Cilium's `DumpEntriesWithTimeDiff`, what `cilium bpf nat list` prints).
///
/// # Errors
/// [`Error::Syscall`] when the walk fails; [`Error::InvalidInput`] when the clock cannot be read.
pub fn dump_nat_entries_with_time_diff(nat: &NatMap, clock: &ClockSource) -> Result<String> {
    let mut out = String::new();
    for (k, e) in nat.entries()? {
        out.push_str(&NatRecord::new(k, e).with_clock(clock)?.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout_both_families() {
        let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let e6 = NatEntry::new(a6.into(), 443);
        let b6 = e6.to_bytes();
        assert_eq!(b6.len(), NatEntry::SIZE_V6);
        assert_eq!(&b6[32..48], &a6.octets());
        assert_eq!(&b6[48..50], &[0x01, 0xbb]);
        assert_eq!(e6.to_addr(), IpAddr::from(a6));
        assert_eq!(e6.to_port(), 443);
        assert_eq!(NatEntry::from_bytes(IpFamily::V6, &b6).unwrap(), e6);

        let e4 = NatEntry::new("192.0.2.1".parse().unwrap(), 33000);
        assert_eq!(e4.to_addr().to_string(), "192.0.2.1");
        assert_eq!(e4.addr_bytes(), &[192, 0, 2, 1]);
        assert_eq!(e4.port_bytes(), [0x80, 0xe8]);
        assert_eq!(
            NatEntry::from_bytes(IpFamily::V4, &e4.to_bytes()).unwrap(),
            e4
        );
    }
}
