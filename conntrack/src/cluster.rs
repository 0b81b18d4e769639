//! Per-cluster conntrack maps (Cilium's `per_cluster_ctmap.go`): for each of
//! TCP4, ANY4, TCP6, ANY6 an outer `BPF_MAP_TYPE_ARRAY_OF_MAPS`
//! (`cilium_per_cluster_ct_tcp4`, ..., indexed by cluster id, 256 slots)
//! whose slot `id` holds an inner LRU CT map pinned as
//! `cilium_per_cluster_ct_tcp4_<id>`, created on demand.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::entry::CtEntry;
use crate::error::{Error, Result};
use crate::map::{CtMap, CtMapKind, CtScope};
use crate::names::CtSizes;
use crate::raw::{self, RawMap};

/// Largest cluster id (Cilium's default `ClusterIDMax`).
pub const CLUSTER_ID_MAX: u32 = 255;
/// Prefix of the outer maps' names.
pub const OUTER_PREFIX: &str = "cilium_per_cluster_ct_";

/// Name of the outer map for `kind` (its scope is ignored).
///
/// ```
/// let k = podnet_conntrack::CtMapKind::from_name("cilium_ct_any6_global").unwrap();
/// assert_eq!(podnet_conntrack::cluster::outer_map_name(&k), "cilium_per_cluster_ct_any6");
/// ```
#[must_use]
pub fn outer_map_name(kind: &CtMapKind) -> String {
    let inner = CtMapKind {
        scope: CtScope::Cluster(0),
        ..*kind
    }
    .name();
    inner.trim_end_matches("_0").to_string()
}

fn validate(id: u32) -> Result<()> {
    if id == 0 || id > CLUSTER_ID_MAX {
        return Err(Error::InvalidInput(format!(
            "cluster id {id} is out of range 1..={CLUSTER_ID_MAX}"
        )));
    }
    Ok(())
}

/// The per-cluster CT maps of one bpffs directory.
///
/// ```no_run
/// use podnet_conntrack::cluster::PerClusterCtMaps;
/// let mut maps = PerClusterCtMaps::open_or_create("/sys/fs/bpf/tc/globals".as_ref(), true, true, Default::default())?;
/// maps.create_cluster_maps(7)?;
/// for m in maps.cluster_maps(7)? { println!("{} entries", m.count()?); }
/// maps.delete_cluster_maps(7)?;
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
#[derive(Debug)]
pub struct PerClusterCtMaps {
    dir: PathBuf,
    sizes: CtSizes,
    outers: Vec<(CtMapKind, RawMap)>,
    ids: BTreeSet<u32>,
}

impl PerClusterCtMaps {
    /// Opens the outer maps pinned in `dir`, creating (and pinning) those
    /// missing. Inner maps get `sizes` entries.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn open_or_create(dir: &Path, ipv4: bool, ipv6: bool, sizes: CtSizes) -> Result<Self> {
        let mut outers = Vec::new();
        for kind in CtMapKind::all(CtScope::Cluster(0), ipv4, ipv6) {
            let name = outer_map_name(&kind);
            let path = dir.join(&name);
            let raw = if path.exists() {
                let raw = RawMap::open_pinned(&path)?;
                if raw.info.map_type != raw::MAP_TYPE_ARRAY_OF_MAPS {
                    return Err(Error::MapType {
                        name,
                        path,
                        expected: "array_of_maps",
                        found: raw::map_type_name(raw.info.map_type),
                    });
                }
                raw
            } else {
                // The inner map template only lives for the outer's creation.
                let template = RawMap::create(
                    libbpf_rs::MapType::LruHash,
                    "ct_inner_tmpl",
                    kind.family.key_size() as u32,
                    CtEntry::SIZE as u32,
                    sizes.max_entries(&kind),
                    None,
                    None,
                )?;
                RawMap::create(
                    libbpf_rs::MapType::ArrayOfMaps,
                    &name,
                    4,
                    4,
                    CLUSTER_ID_MAX + 1,
                    Some(template.fd.as_fd()),
                    Some(&path),
                )?
            };
            outers.push((kind, raw));
        }
        let mut me = PerClusterCtMaps {
            dir: dir.to_path_buf(),
            sizes,
            outers,
            ids: BTreeSet::new(),
        };
        for id in 1..=CLUSTER_ID_MAX {
            if me.outers.iter().any(|(k, _)| me.inner_path(k, id).exists()) {
                me.ids.insert(id);
            }
        }
        Ok(me)
    }

    fn inner_kind(kind: &CtMapKind, id: u32) -> CtMapKind {
        CtMapKind {
            scope: CtScope::Cluster(id),
            ..*kind
        }
    }

    fn inner_path(&self, kind: &CtMapKind, id: u32) -> PathBuf {
        self.dir.join(Self::inner_kind(kind, id).name())
    }

    /// Creates (or reuses) the inner maps of cluster `id` and installs them
    /// in the outer maps.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn create_cluster_maps(&mut self, id: u32) -> Result<()> {
        validate(id)?;
        self.ids.insert(id);
        for (kind, outer) in &self.outers {
            let path = self.inner_path(kind, id);
            let inner = if path.exists() {
                let m = CtMap::open(&path)?;
                let want = self.sizes.max_entries(kind);
                // The outer map accepts only inners like its template; say
                // which parameter differs instead of the kernel's EINVAL.
                if m.max_entries() != want {
                    return Err(Error::Mismatch {
                        name: m.name().to_string(),
                        path,
                        what: "max_entries",
                        expected: want.to_string(),
                        found: m.max_entries().to_string(),
                    });
                }
                if m.info().map_type != raw::MAP_TYPE_LRU_HASH {
                    return Err(Error::Mismatch {
                        name: m.name().to_string(),
                        path,
                        what: "type",
                        expected: "lru_hash".into(),
                        found: raw::map_type_name(m.info().map_type),
                    });
                }
                m
            } else {
                CtMap::create(
                    &crate::map::CreateOptions::new(Self::inner_kind(kind, id))
                        .max_entries(self.sizes.max_entries(kind))
                        .pin_in(&self.dir),
                )?
            };
            let fd = std::os::fd::AsRawFd::as_raw_fd(&inner.as_fd()) as u32;
            outer.update(&id.to_ne_bytes(), &fd.to_ne_bytes(), 0)?;
        }
        Ok(())
    }

    /// Unpins the inner maps of cluster `id` and removes them from the outer
    /// maps. Missing ones are skipped.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn delete_cluster_maps(&mut self, id: u32) -> Result<()> {
        validate(id)?;
        self.ids.remove(&id);
        for (kind, outer) in &self.outers {
            unpin_if_present(self.inner_path(kind, id))?;
            outer.delete(&id.to_ne_bytes())?;
        }
        Ok(())
    }

    /// The inner maps of cluster `id` (TCP4, ANY4, TCP6, ANY6 order), opened.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn cluster_maps(&self, id: u32) -> Result<Vec<CtMap>> {
        validate(id)?;
        self.outers
            .iter()
            .map(|(k, _)| CtMap::open(self.inner_path(k, id)))
            .collect()
    }

    /// The inner maps of every cluster created so far.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn all_cluster_maps(&self) -> Result<Vec<CtMap>> {
        let mut v = Vec::new();
        for &id in &self.ids {
            v.extend(self.cluster_maps(id)?);
        }
        Ok(v)
    }

    /// Cluster ids with inner maps.
    pub fn cluster_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids.iter().copied()
    }

    /// Whether slot `id` of the outer map of `kind` holds a map (reads the
    /// outer array: the kernel returns the inner map's id).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn is_installed(&self, kind: &CtMapKind, id: u32) -> Result<bool> {
        let Some((_, outer)) = self
            .outers
            .iter()
            .find(|(k, _)| k.family == kind.family && k.proto == kind.proto)
        else {
            return Ok(false);
        };
        let mut v = [0u8; 4];
        outer.lookup_into(&id.to_ne_bytes(), &mut v)
    }

    /// Removes every per-cluster map (inner and outer) pinned in `dir`
    /// (Cilium's `CleanupPerClusterCTMaps`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a cluster id outside 1..=255; [`Error::MapType`] or [`Error::Mismatch`] for a pinned map of other parameters; [`Error::Open`] or [`Error::Syscall`] when the filesystem or the kernel refuses.
    pub fn cleanup(dir: &Path, ipv4: bool, ipv6: bool) -> Result<()> {
        for kind in CtMapKind::all(CtScope::Cluster(0), ipv4, ipv6) {
            for id in 1..=CLUSTER_ID_MAX {
                unpin_if_present(dir.join(Self::inner_kind(&kind, id).name()))?;
            }
            unpin_if_present(dir.join(outer_map_name(&kind)))?;
        }
        Ok(())
    }
}

/// Removes the pin at `path`; a pin already gone is fine.
fn unpin_if_present(path: PathBuf) -> Result<()> {
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Open { path, source }),
    }
}
