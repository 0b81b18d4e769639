//! [`CtMap`]: a typed handle on a pinned (or freshly created) conntrack map.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::entry::CtEntry;
use crate::error::{Error, Result};
use crate::key::{AnyCtKey, CtKey, CtKey4, CtKey6, IpFamily, TupleFlags, IPPROTO_TCP};
use crate::raw::{BatchScanner, MapInfo, RawMap, DEFAULT_BATCH};

/// Where Cilium pins its global maps (`bpf.MapPath`): the directory that
/// directly holds the pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tc/globals";

/// Cilium's map name prefix (`MapNamePrefix`).
pub const MAP_NAME_PREFIX: &str = "cilium_ct";
/// `cilium_ct4_global` (TCP, IPv4).
pub const MAP_NAME_TCP4_GLOBAL: &str = "cilium_ct4_global";
/// `cilium_ct6_global` (TCP, IPv6).
pub const MAP_NAME_TCP6_GLOBAL: &str = "cilium_ct6_global";
/// `cilium_ct_any4_global` (non-TCP, IPv4).
pub const MAP_NAME_ANY4_GLOBAL: &str = "cilium_ct_any4_global";
/// `cilium_ct_any6_global` (non-TCP, IPv6).
pub const MAP_NAME_ANY6_GLOBAL: &str = "cilium_ct_any6_global";

/// Cilium's default size of the global TCP maps (`CTMapEntriesGlobalTCPDefault`, 512Ki).
pub const DEFAULT_MAX_ENTRIES_TCP: u32 = 2 << 18;
/// Cilium's default size of the global non-TCP maps (`CTMapEntriesGlobalAnyDefault`, 256Ki).
pub const DEFAULT_MAX_ENTRIES_ANY: u32 = 2 << 17;
/// Cilium's size of per-endpoint maps (`mapNumEntriesLocal`).
pub const DEFAULT_MAX_ENTRIES_LOCAL: u32 = 64000;

/// TCP or "any other protocol" map.
///
/// ```
/// assert_eq!(podnet_conntrack::CtProto::for_protocol(17), podnet_conntrack::CtProto::Any);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtProto {
    /// `cilium_ct4_*` / `cilium_ct6_*`.
    Tcp,
    /// `cilium_ct_any4_*` / `cilium_ct_any6_*`.
    Any,
}

impl CtProto {
    /// The map used for IP protocol `proto` (TCP map for 6, any map otherwise).
    #[must_use]
    pub fn for_protocol(proto: u8) -> CtProto {
        if proto == IPPROTO_TCP {
            CtProto::Tcp
        } else {
            CtProto::Any
        }
    }
}

/// Whose map: the global ones, an endpoint's, or a remote cluster's.
///
/// ```
/// use podnet_conntrack::{CtMapKind, CtScope};
/// assert_eq!(CtMapKind::from_name("cilium_ct4_00007").unwrap().scope, CtScope::Endpoint(7));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtScope {
    /// `..._global`.
    Global,
    /// A per-endpoint map, `..._00042` (Cilium's `CtEndpoint`).
    Endpoint(u16),
    /// A per-cluster inner map, `cilium_per_cluster_ct_tcp4_<id>`.
    Cluster(u32),
}

impl CtScope {
    /// The scope of an endpoint's maps (`Some(id)`) or the global ones.
    pub(crate) fn of_endpoint(endpoint: Option<u16>) -> CtScope {
        endpoint.map(CtScope::Endpoint).unwrap_or(CtScope::Global)
    }
}

/// Which Cilium conntrack map: family, protocol class and scope.
///
/// ```
/// use podnet_conntrack::{CtMapKind, CtProto, IpFamily, CtScope};
/// let k = CtMapKind::from_name("cilium_ct_any6_00042").unwrap();
/// assert_eq!(k, CtMapKind { family: IpFamily::V6, proto: CtProto::Any, scope: CtScope::Endpoint(42) });
/// assert_eq!(k.name(), "cilium_ct_any6_00042");
/// assert_eq!(k.bpf_define(), "CT_MAP_ANY6");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtMapKind {
    /// IPv4 or IPv6.
    pub family: IpFamily,
    /// TCP or any.
    pub proto: CtProto,
    /// Global, endpoint or cluster.
    pub scope: CtScope,
}

/// The names Cilium gives one (protocol, family) pair of conntrack maps.
struct KindNames {
    proto: CtProto,
    family: IpFamily,
    /// Pin name prefix of the global and endpoint maps.
    prefix: &'static str,
    /// Middle part of the per-cluster map names.
    short: &'static str,
    /// The datapath macro.
    define: &'static str,
}

/// One row per (protocol, family), in Cilium's order (TCP4, ANY4, TCP6, ANY6).
static KIND_NAMES: [KindNames; 4] = [
    KindNames {
        proto: CtProto::Tcp,
        family: IpFamily::V4,
        prefix: "cilium_ct4_",
        short: "tcp4",
        define: "CT_MAP_TCP4",
    },
    KindNames {
        proto: CtProto::Any,
        family: IpFamily::V4,
        prefix: "cilium_ct_any4_",
        short: "any4",
        define: "CT_MAP_ANY4",
    },
    KindNames {
        proto: CtProto::Tcp,
        family: IpFamily::V6,
        prefix: "cilium_ct6_",
        short: "tcp6",
        define: "CT_MAP_TCP6",
    },
    KindNames {
        proto: CtProto::Any,
        family: IpFamily::V6,
        prefix: "cilium_ct_any6_",
        short: "any6",
        define: "CT_MAP_ANY6",
    },
];

impl CtMapKind {
    /// The four global maps in Cilium's order (TCP4, ANY4, TCP6, ANY6).
    #[must_use]
    pub fn globals(ipv4: bool, ipv6: bool) -> Vec<CtMapKind> {
        Self::all(CtScope::Global, ipv4, ipv6)
    }

    /// The maps of `scope` in Cilium's order (TCP4, ANY4, TCP6, ANY6).
    #[must_use]
    pub fn all(scope: CtScope, ipv4: bool, ipv6: bool) -> Vec<CtMapKind> {
        KIND_NAMES
            .iter()
            .filter(|n| match n.family {
                IpFamily::V4 => ipv4,
                IpFamily::V6 => ipv6,
            })
            .map(|n| CtMapKind {
                family: n.family,
                proto: n.proto,
                scope,
            })
            .collect()
    }

    /// This map's row of [`KIND_NAMES`].
    fn names(&self) -> &'static KindNames {
        let row = match (self.proto, self.family) {
            (CtProto::Tcp, IpFamily::V4) => 0,
            (CtProto::Any, IpFamily::V4) => 1,
            (CtProto::Tcp, IpFamily::V6) => 2,
            (CtProto::Any, IpFamily::V6) => 3,
        };
        &KIND_NAMES[row]
    }

    /// The pin name Cilium gives this map.
    #[must_use]
    pub fn name(&self) -> String {
        let KindNames { prefix, short, .. } = self.names();
        match self.scope {
            CtScope::Global => format!("{prefix}global"),
            CtScope::Endpoint(id) => format!("{prefix}{id:05}"),
            CtScope::Cluster(id) => format!("cilium_per_cluster_ct_{short}_{id}"),
        }
    }

    /// Parses a Cilium conntrack map name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<CtMapKind> {
        if let Some(rest) = name.strip_prefix("cilium_per_cluster_ct_") {
            let (short, id) = rest.split_once('_')?;
            let id: u32 = id.parse().ok()?;
            let n = KIND_NAMES.iter().find(|n| n.short == short)?;
            return Some(CtMapKind {
                family: n.family,
                proto: n.proto,
                scope: CtScope::Cluster(id),
            });
        }
        let (n, rest) = KIND_NAMES
            .iter()
            .find_map(|n| Some((n, name.strip_prefix(n.prefix)?)))?;
        let scope = if rest == "global" {
            CtScope::Global
        } else if rest.len() == 5 && rest.bytes().all(|b| b.is_ascii_digit()) {
            CtScope::Endpoint(rest.parse().ok()?)
        } else {
            return None;
        };
        Some(CtMapKind {
            family: n.family,
            proto: n.proto,
            scope,
        })
    }

    /// The datapath macro naming this map (`CT_MAP_TCP4`, ...).
    #[must_use]
    pub fn bpf_define(&self) -> &'static str {
        self.names().define
    }

    /// Cilium's default `max_entries` for this map.
    #[must_use]
    pub fn default_max_entries(&self) -> u32 {
        crate::names::CtSizes::default().max_entries(self)
    }

    /// `true` for maps whose keys dump in the global format.
    #[must_use]
    pub fn is_global(&self) -> bool {
        !matches!(self.scope, CtScope::Endpoint(_))
    }
}

/// `true` for the four global map names (Cilium's `NameIsGlobal`).
///
/// ```
/// assert!(podnet_conntrack::name_is_global("cilium_ct_any6_global"));
/// assert!(!podnet_conntrack::name_is_global("cilium_ct4_00042"));
/// ```
#[must_use]
pub fn name_is_global(name: &str) -> bool {
    matches!(
        name,
        MAP_NAME_TCP4_GLOBAL | MAP_NAME_ANY4_GLOBAL | MAP_NAME_TCP6_GLOBAL | MAP_NAME_ANY6_GLOBAL
    )
}

/// Picks the TCP and the non-TCP map of `family` among `maps` (Cilium's
/// `FilterMapsByProto`); maps without a Cilium name are ignored.
#[must_use]
pub fn filter_maps_by_proto(maps: &[CtMap], family: IpFamily) -> (Option<&CtMap>, Option<&CtMap>) {
    let mut tcp = None;
    let mut any = None;
    for m in maps {
        match m.kind() {
            Some(k) if k.family == family && k.proto == CtProto::Tcp => tcp = Some(m),
            Some(k) if k.family == family && k.proto == CtProto::Any => any = Some(m),
            _ => {}
        }
    }
    (tcp, any)
}

impl fmt::Display for CtMapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Direction of a flow for [`CtMap::lookup_flow`] (Cilium's `ingress bool`).
///
/// ```
/// use podnet_conntrack::{CtMap, Direction, TupleFlags};
/// let k = CtMap::flow_key("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap(), 17, Direction::Ingress).unwrap();
/// assert_eq!(k.flags(), TupleFlags::IN);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `TUPLE_F_OUT`.
    Egress,
    /// `TUPLE_F_IN`.
    Ingress,
}

/// Options of [`CtMap::create`].
///
/// ```
/// use podnet_conntrack::{CreateOptions, CtMapKind};
/// let kind = CtMapKind::from_name("cilium_ct4_global").unwrap();
/// let opts = CreateOptions::new(kind).max_entries(65536).pin_in("/sys/fs/bpf/mine");
/// assert_eq!(opts.max_entries, 65536);
/// ```
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// What map (sets the name, key size and default size).
    pub kind: CtMapKind,
    /// `max_entries`; Cilium's default for the kind unless set.
    pub max_entries: u32,
    /// `true` (default) for `BPF_MAP_TYPE_LRU_HASH`, `false` for a plain hash.
    pub lru: bool,
    /// Directory to pin the map in (under its Cilium name), if any.
    pub pin_dir: Option<PathBuf>,
}

impl CreateOptions {
    /// Cilium's defaults for `kind`, unpinned.
    #[must_use]
    pub fn new(kind: CtMapKind) -> Self {
        CreateOptions {
            kind,
            max_entries: kind.default_max_entries(),
            lru: true,
            pin_dir: None,
        }
    }

    /// Sets `max_entries`.
    #[must_use]
    pub fn max_entries(mut self, n: u32) -> Self {
        self.max_entries = n;
        self
    }

    /// Pins the map as `dir/<name>`.
    pub fn pin_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pin_dir = Some(dir.into());
        self
    }

    /// Uses a plain `BPF_MAP_TYPE_HASH`.
    #[must_use]
    pub fn hash(mut self) -> Self {
        self.lru = false;
        self
    }
}

/// A conntrack map: checked on open, typed access, streaming batch iteration.
///
/// ```no_run
/// use podnet_conntrack::{CtMap, CtKey4, TupleFlags};
/// let map = CtMap::open_named(podnet_conntrack::DEFAULT_PIN_DIR, "cilium_ct4_global")?;
/// for rec in map.iter()? {
///     let (key, entry) = rec?;
///     println!("{key} expires {}", entry.lifetime());
/// }
/// let k = CtKey4::new([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 80, 40000, 6, TupleFlags::OUT);
/// let _ = map.lookup(&k)?;
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
#[derive(Debug)]
pub struct CtMap {
    pub(crate) raw: RawMap,
    family: IpFamily,
    kind: Option<CtMapKind>,
}

/// What a pinned map's file name says it is, when it is a Cilium CT name.
fn kind_of(path: &Path) -> Option<CtMapKind> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(CtMapKind::from_name)
}

impl CtMap {
    /// Opens the map pinned at `path`. A Cilium name (`cilium_ct4_global`,
    /// `cilium_ct_any6_00042`, ...) sets the family; other names take it from
    /// the key size. Checks type (LRU hash or hash), key size (14/38) and
    /// value size (56); a mismatch is an error and nothing is modified.
    ///
    /// # Errors
    /// [`Error::Open`] when nothing is pinned there; [`Error::NotBpffs`], [`Error::NotAMap`], [`Error::MapType`], [`Error::KeySize`] or [`Error::ValueSize`] when it is not a map of this layout (nothing is modified).
    pub fn open(path: impl AsRef<Path>) -> Result<CtMap> {
        let path = path.as_ref();
        let kind = kind_of(path);
        let raw = RawMap::open_pinned(path)?;
        let family = match kind {
            Some(k) => k.family,
            None => match raw.info.key_size as usize {
                CtKey6::SIZE => IpFamily::V6,
                _ => IpFamily::V4,
            },
        };
        Self::check(raw, family, kind)
    }

    /// Opens the map at `path` as a map of `family`, whatever its name.
    ///
    /// # Errors
    /// [`Error::Open`] when nothing is pinned there; [`Error::NotBpffs`], [`Error::NotAMap`], [`Error::MapType`], [`Error::KeySize`] or [`Error::ValueSize`] when it is not a map of this layout (nothing is modified).
    pub fn open_as(path: impl AsRef<Path>, family: IpFamily) -> Result<CtMap> {
        let path = path.as_ref();
        let kind = kind_of(path);
        let raw = RawMap::open_pinned(path)?;
        Self::check(raw, family, kind.filter(|k| k.family == family))
    }

    /// Opens `dir/name`, where `dir` directly holds the pins (Cilium's
    /// [`DEFAULT_PIN_DIR`]) and `name` is a Cilium conntrack map name.
    ///
    /// # Errors
    /// [`Error::UnknownName`] (conntrack maps) for a name that is not Cilium's; otherwise as `open`: [`Error::Open`] when nothing is pinned there; [`Error::NotBpffs`], [`Error::NotAMap`], [`Error::MapType`], [`Error::KeySize`] or [`Error::ValueSize`] when it is not a map of this layout (nothing is modified).
    pub fn open_named(dir: impl AsRef<Path>, name: &str) -> Result<CtMap> {
        if CtMapKind::from_name(name).is_none() {
            return Err(Error::UnknownName {
                name: name.to_string(),
            });
        }
        Self::open(dir.as_ref().join(name))
    }

    /// Opens the map of `kind` in `dir`.
    ///
    /// # Errors
    /// [`Error::Open`] when nothing is pinned there; [`Error::NotBpffs`], [`Error::NotAMap`], [`Error::MapType`], [`Error::KeySize`] or [`Error::ValueSize`] when it is not a map of this layout (nothing is modified).
    pub fn open_kind(dir: impl AsRef<Path>, kind: CtMapKind) -> Result<CtMap> {
        Self::open(dir.as_ref().join(kind.name()))
    }

    fn check(raw: RawMap, family: IpFamily, kind: Option<CtMapKind>) -> Result<CtMap> {
        raw.check_hash_layout(family.key_size(), CtEntry::SIZE)?;
        Ok(CtMap { raw, family, kind })
    }

    /// Creates a map (LRU hash unless [`CreateOptions::hash`]), pinned when
    /// asked. Fails with `EEXIST` rather than replace an existing pin.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for `max_entries` 0 and [`Error::NotBpffs`] for a pin directory outside bpffs (both before the kernel is touched); [`Error::Syscall`] when the kernel refuses, `EEXIST` for an existing pin.
    pub fn create(opts: &CreateOptions) -> Result<CtMap> {
        let name = opts.kind.name();
        if opts.max_entries == 0 {
            return Err(Error::InvalidInput(format!(
                "map {name}: max_entries must be at least 1"
            )));
        }
        if let Some(d) = &opts.pin_dir {
            crate::raw::check_pin_dir(d)?;
        }
        let pin = opts.pin_dir.as_ref().map(|d| d.join(&name));
        if let Some(p) = &pin {
            if p.exists() {
                return Err(Error::Syscall {
                    op: "BPF_OBJ_PIN",
                    name: p.display().to_string(),
                    source: std::io::Error::from_raw_os_error(libc::EEXIST),
                });
            }
        }
        let ty = if opts.lru {
            libbpf_rs::MapType::LruHash
        } else {
            libbpf_rs::MapType::Hash
        };
        let raw = RawMap::create(
            ty,
            &name,
            opts.kind.family.key_size() as u32,
            CtEntry::SIZE as u32,
            opts.max_entries,
            None,
            pin.as_deref(),
        )?;
        Ok(CtMap {
            raw,
            family: opts.kind.family,
            kind: Some(opts.kind),
        })
    }

    /// The map's family.
    #[must_use]
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The Cilium map kind, when the name is one of Cilium's.
    #[must_use]
    pub fn kind(&self) -> Option<CtMapKind> {
        self.kind
    }

    /// The pin name (or the name given at creation).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.raw.label
    }

    /// The pin path, if the map is pinned.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.raw.path.as_deref()
    }

    /// The kernel's description of the map (as checked at open).
    #[must_use]
    pub fn info(&self) -> &MapInfo {
        &self.raw.info
    }

    /// `max_entries`.
    #[must_use]
    pub fn max_entries(&self) -> u32 {
        self.raw.info.max_entries
    }

    /// The map's file descriptor.
    #[must_use]
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.raw.fd.as_fd()
    }

    /// A libbpf-rs handle on the same map (a second descriptor), for code
    /// built on libbpf-rs.
    ///
    /// # Errors
    /// [`Error::Syscall`] when the map's descriptor cannot be duplicated.
    pub fn to_map_handle(&self) -> Result<libbpf_rs::MapHandle> {
        libbpf_rs::MapHandle::from_map_id(self.raw.info.id).map_err(|e| Error::Syscall {
            op: "BPF_MAP_GET_FD_BY_ID",
            name: self.raw.display_name(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// `true` when keys dump in Cilium's global format.
    #[must_use]
    pub fn is_global(&self) -> bool {
        self.kind.map(|k| k.is_global()).unwrap_or(true)
    }

    /// `key`'s bytes, once checked to be a key of this map's family.
    fn key_bytes<'k, K: CtKey + ?Sized>(&self, key: &'k K) -> Result<&'k [u8]> {
        let bytes = key.key_bytes();
        if key.family() != self.family || bytes.len() != self.family.key_size() {
            return Err(Error::KeyFamily {
                name: self.raw.display_name(),
                map: self.family,
                map_key_size: self.family.key_size(),
                key: key.family(),
                key_size: bytes.len(),
            });
        }
        Ok(bytes)
    }

    /// Looks a key up.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn lookup<K: CtKey + ?Sized>(&self, key: &K) -> Result<Option<CtEntry>> {
        let key = self.key_bytes(key)?;
        let mut v = [0u8; CtEntry::SIZE];
        if self.raw.lookup_into(key, &mut v)? {
            Ok(Some(CtEntry::from_bytes(&v)?))
        } else {
            Ok(None)
        }
    }

    /// Inserts or replaces an entry.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn update<K: CtKey + ?Sized>(&self, key: &K, entry: &CtEntry) -> Result<()> {
        self.raw.update(self.key_bytes(key)?, entry.as_bytes(), 0)
    }

    /// Inserts or replaces many entries with `BPF_MAP_UPDATE_BATCH`.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn update_many<K: CtKey>(&self, items: &[(K, CtEntry)]) -> Result<()> {
        let ks = self.family.key_size();
        let mut keys = Vec::with_capacity(items.len() * ks);
        let mut vals = Vec::with_capacity(items.len() * CtEntry::SIZE);
        for (k, e) in items {
            keys.extend_from_slice(self.key_bytes(k)?);
            vals.extend_from_slice(e.as_bytes());
        }
        self.raw.update_batch(&keys, &vals)
    }

    /// Deletes many keys with `BPF_MAP_DELETE_BATCH`; keys that are not
    /// there are skipped (the kernel stops a batch at the first one; this
    /// carries on after it). Returns how many were deleted.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn delete_many<K: CtKey>(&self, keys: &[K]) -> Result<usize> {
        let ks = self.family.key_size();
        let mut buf = Vec::with_capacity(keys.len() * ks);
        for k in keys {
            buf.extend_from_slice(self.key_bytes(k)?);
        }
        self.raw.delete_batch(&buf)
    }

    /// Deletes a key; `Ok(false)` when it was not there.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn delete<K: CtKey + ?Sized>(&self, key: &K) -> Result<bool> {
        self.raw.delete(self.key_bytes(key)?)
    }

    /// Counts the entries with a batch walk (Cilium's `Count`).
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn count(&self) -> Result<usize> {
        self.raw.count()
    }

    /// Map pressure: entries / `max_entries`, the figure Cilium exports as
    /// `bpf_map_pressure`.
    ///
    /// An LRU map starts evicting *before* this reaches 1.0 (about 0.9 on
    /// a small map): free elements sit in per-CPU lists the inserting CPU
    /// cannot use. [`CtMap::effective_pressure`] reaches 1.0 there.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn pressure(&self) -> Result<f64> {
        let n = self.count()?;
        Ok(n as f64 / f64::from(self.max_entries().max(1)))
    }

    /// Entries / the capacity usable before evictions start, capped at 1.0:
    /// 1.0 means the map is full, and for an LRU map that every new flow
    /// evicts an old one. For a plain hash it equals [`CtMap::pressure`].
    ///
    /// For an LRU map the usable capacity is `max_entries` less what the
    /// kernel may hold in per-CPU free lists (`LOCAL_FREE_TARGET`, 128
    /// elements per possible CPU, `kernel/bpf/bpf_lru_list.h`), at most half
    /// the map; with `BPF_F_NO_COMMON_LRU` each CPU has its own
    /// `max_entries / ncpus` share, so one CPU's flows can fill only that:
    /// the figure is then the fullest share a single CPU can see, judged
    /// conservatively as entries / (`max_entries` / ncpus).
    ///
    /// ```no_run
    /// let m = podnet_conntrack::CtMap::open("/sys/fs/bpf/tc/globals/cilium_ct4_global")?;
    /// if m.effective_pressure()? >= 1.0 {
    ///     eprintln!("{}: full, new flows evict old ones", m.name());
    /// }
    /// # Ok::<(), podnet_conntrack::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Syscall`] when counting the entries fails.
    pub fn effective_pressure(&self) -> Result<f64> {
        let n = self.count()? as f64;
        let max = f64::from(self.max_entries().max(1));
        let info = self.info();
        if info.map_type != crate::raw::MAP_TYPE_LRU_HASH {
            return Ok((n / max).min(1.0));
        }
        let cpus = possible_cpus() as f64;
        let usable = if info.map_flags & libbpf_sys::BPF_F_NO_COMMON_LRU != 0 {
            max / cpus
        } else {
            max - (cpus * 128.0).min(max / 2.0)
        };
        Ok((n / usable.max(1.0)).min(1.0))
    }

    /// Streams every entry with `BPF_MAP_LOOKUP_BATCH` (batches of [`DEFAULT_BATCH`],
    /// grown on `ENOSPC`). Memory stays O(batch).
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn iter(&self) -> Result<Entries<'_>> {
        self.iter_with_batch(DEFAULT_BATCH)
    }

    /// Like [`CtMap::iter`] with a chosen initial batch size.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn iter_with_batch(&self, batch: u32) -> Result<Entries<'_>> {
        Ok(Entries {
            scanner: BatchScanner::new(&self.raw, batch)?,
            family: self.family,
            pos: 0,
            len: 0,
            failed: false,
        })
    }

    /// Calls `f(keys, values, n)` for each raw batch of the map: the fastest
    /// way through it, with `n` keys of [`IpFamily::key_size`] bytes and `n`
    /// values of 56 bytes. Returns the number of entries seen.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn for_each_batch<F>(&self, batch: u32, mut f: F) -> Result<usize>
    where
        F: FnMut(&[u8], &[u8], usize) -> Result<()>,
    {
        let mut s = BatchScanner::new(&self.raw, batch)?;
        let ks = self.family.key_size();
        let mut total = 0;
        while let Some(n) = s.next_batch()? {
            f(&s.keys[..n * ks], &s.values[..n * CtEntry::SIZE], n)?;
            total += n;
        }
        Ok(total)
    }

    /// Builds the key Cilium's `Lookup`/`Update` build for a flow from `src`
    /// to `dst` (`lookup.go`, `createTupleKey`): addresses reversed, ports
    /// as given, `TUPLE_F_IN` for ingress.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the two addresses differ in family.
    pub fn flow_key(
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        direction: Direction,
    ) -> Result<AnyCtKey> {
        let flags = match direction {
            Direction::Egress => TupleFlags::OUT,
            Direction::Ingress => TupleFlags::IN,
        };
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ok(AnyCtKey::V4(CtKey4::new(
                s,
                d,
                dst.port(),
                src.port(),
                proto,
                flags,
            ))),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ok(AnyCtKey::V6(CtKey6::new(
                s,
                d,
                dst.port(),
                src.port(),
                proto,
                flags,
            ))),
            _ => Err(Error::InvalidInput(format!(
                "source {src} and destination {dst} are of different address families"
            ))),
        }
    }

    /// Cilium's `Lookup(epname, src, dst, proto, ingress)` on this map.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn lookup_flow(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        direction: Direction,
    ) -> Result<Option<CtEntry>> {
        self.lookup(&Self::flow_key(src, dst, proto, direction)?)
    }

    /// Cilium's `Update`: looks the flow up and, when present, applies `f`
    /// and writes the entry back. Returns whether the flow was found.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn update_flow<F: FnOnce(&mut CtEntry)>(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        direction: Direction,
        f: F,
    ) -> Result<bool> {
        let key = Self::flow_key(src, dst, proto, direction)?;
        match self.lookup(&key)? {
            None => Ok(false),
            Some(mut e) => {
                f(&mut e);
                self.update(&key, &e)?;
                Ok(true)
            }
        }
    }

    /// Deletes every entry (Cilium's `Flush`); returns how many went.
    ///
    /// # Errors
    /// [`Error::KeyFamily`] for a key of the other family (nothing sent); [`Error::Syscall`], with the errno, when the kernel call fails.
    pub fn flush(&self) -> Result<usize> {
        let stats = crate::gc::gc(
            self,
            // No address is valid: every entry goes, whatever its lifetime
            // (`lifetime < u32::MAX` would keep those at u32::MAX).
            &mut crate::gc::GcFilter {
                valid_ips: Some(std::collections::HashSet::new()),
                ..Default::default()
            },
        )?;
        Ok(stats.deleted)
    }
}

/// Streaming iterator over a conntrack map's entries (see [`CtMap::iter`]).
///
/// Yields `Err` once, then ends, when the kernel fails; it never ends early
/// without an error.
///
/// ```no_run
/// let m = podnet_conntrack::CtMap::open("/sys/fs/bpf/tc/globals/cilium_ct4_global")?;
/// let mut it = m.iter_with_batch(64)?;
/// let n = it.by_ref().filter(|r| r.is_ok()).count();
/// println!("{n} entries, batch grew {} times", it.enospc_grows());
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
pub struct Entries<'m> {
    scanner: BatchScanner<'m>,
    family: IpFamily,
    pos: usize,
    len: usize,
    failed: bool,
}

impl Entries<'_> {
    /// The current batch size (grows on `ENOSPC`).
    #[must_use]
    pub fn batch_size(&self) -> u32 {
        self.scanner.batch()
    }

    /// How many times the batch had to grow because a hash bucket did not fit.
    #[must_use]
    pub fn enospc_grows(&self) -> u32 {
        self.scanner.grows
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(AnyCtKey, CtEntry)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pos == self.len {
            match self.scanner.next_batch() {
                Ok(Some(n)) => {
                    self.pos = 0;
                    self.len = n;
                }
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        let ks = self.family.key_size();
        let i = self.pos;
        self.pos += 1;
        // The scanner's buffers hold whole keys and values of the sizes
        // checked at open: plain copies, no fallible decoding per entry.
        let key = AnyCtKey::copy_from(self.family, &self.scanner.keys[i * ks..(i + 1) * ks]);
        let val =
            CtEntry::copy_from(&self.scanner.values[i * CtEntry::SIZE..(i + 1) * CtEntry::SIZE]);
        Some(Ok((key, val)))
    }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`), as
/// the kernel sizes per-CPU LRU lists; 1 when unreadable.
fn possible_cpus() -> usize {
    // SAFETY: no arguments; libbpf reads and parses the sysfs file.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    usize::try_from(n).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_finds_its_own_names_row() {
        for scope in [CtScope::Global, CtScope::Endpoint(1), CtScope::Cluster(2)] {
            for row in &KIND_NAMES {
                let k = CtMapKind {
                    family: row.family,
                    proto: row.proto,
                    scope,
                };
                assert!(std::ptr::eq(k.names(), row), "{k:?}");
                assert_eq!(CtMapKind::from_name(&k.name()), Some(k));
            }
        }
        let order: Vec<_> = CtMapKind::globals(true, true)
            .iter()
            .map(CtMapKind::bpf_define)
            .collect();
        assert_eq!(
            order,
            ["CT_MAP_TCP4", "CT_MAP_ANY4", "CT_MAP_TCP6", "CT_MAP_ANY6"]
        );
        assert_eq!(
            CtMapKind::all(CtScope::Endpoint(3), false, true),
            [
                CtMapKind {
                    family: IpFamily::V6,
                    proto: CtProto::Tcp,
                    scope: CtScope::Endpoint(3)
                },
                CtMapKind {
                    family: IpFamily::V6,
                    proto: CtProto::Any,
                    scope: CtScope::Endpoint(3)
                },
            ]
        );
    }
}
