//! Map naming helpers: `write_bpf_macros`, `delete_if_upgrade_needed`,
//! `exists` (Cilium's `WriteBPFMacros`, `DeleteIfUpgradeNeeded`, `Exists`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::entry::CtEntry;
use crate::error::{Error, Result};
use crate::map::{CtMapKind, CtProto, CtScope};
use crate::raw::{self, RawMap};

/// Map sizes an agent configured (`--bpf-ct-global-tcp-max`,
/// `--bpf-ct-global-any-max`); Cilium's defaults unless changed.
///
/// ```
/// let s = podnet_conntrack::CtSizes::default();
/// assert_eq!((s.tcp, s.any), (524288, 262144));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtSizes {
    /// Global TCP maps.
    pub tcp: u32,
    /// Global non-TCP maps.
    pub any: u32,
}

impl Default for CtSizes {
    fn default() -> Self {
        CtSizes {
            tcp: crate::map::DEFAULT_MAX_ENTRIES_TCP,
            any: crate::map::DEFAULT_MAX_ENTRIES_ANY,
        }
    }
}

impl CtSizes {
    /// `max_entries` of `kind` under these sizes.
    #[must_use]
    pub fn max_entries(&self, kind: &CtMapKind) -> u32 {
        match (kind.scope, kind.proto) {
            (CtScope::Endpoint(_), _) => crate::map::DEFAULT_MAX_ENTRIES_LOCAL,
            (_, CtProto::Tcp) => self.tcp,
            (_, CtProto::Any) => self.any,
        }
    }
}

/// The flags Cilium creates conntrack maps with (`newMap` in
/// `pkg/maps/ctmap/ctmap.go` passes 0, and `GetPreAllocateMapFlags` adds
/// nothing for LRU hashes).
const CT_MAP_FLAGS: u32 = 0;

/// Writes the `#define` lines naming the conntrack maps of an endpoint
/// (`Some(id)`) or the global ones (`None`), as Cilium's `WriteBPFMacros`.
///
/// ```
/// let mut out = Vec::new();
/// podnet_conntrack::write_bpf_macros(&mut out, None, &Default::default()).unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(),
///     "#define CT_MAP_TCP4 cilium_ct4_global\n#define CT_MAP_ANY4 cilium_ct_any4_global\n\
///      #define CT_MAP_TCP6 cilium_ct6_global\n#define CT_MAP_ANY6 cilium_ct_any6_global\n\
///      #define CT_MAP_SIZE_TCP 524288\n#define CT_MAP_SIZE_ANY 262144\n");
/// ```
///
/// # Errors
/// The writer's I/O error.
pub fn write_bpf_macros(
    w: &mut dyn Write,
    endpoint: Option<u16>,
    sizes: &CtSizes,
) -> std::io::Result<()> {
    let scope = CtScope::of_endpoint(endpoint);
    let mut tcp = 0;
    let mut any = 0;
    for k in CtMapKind::all(scope, true, true) {
        writeln!(w, "#define {} {}", k.bpf_define(), k.name())?;
        match k.proto {
            CtProto::Tcp => tcp = sizes.max_entries(&k),
            CtProto::Any => any = sizes.max_entries(&k),
        }
    }
    writeln!(w, "#define CT_MAP_SIZE_TCP {tcp}")?;
    writeln!(w, "#define CT_MAP_SIZE_ANY {any}")?;
    Ok(())
}

/// `true` when every conntrack map of the endpoint (or the global ones) is
/// pinned in `dir` (Cilium's `Exists`).
#[must_use]
pub fn exists(dir: &Path, endpoint: Option<u16>, ipv4: bool, ipv6: bool) -> bool {
    let scope = CtScope::of_endpoint(endpoint);
    CtMapKind::all(scope, ipv4, ipv6)
        .iter()
        .all(|k| dir.join(k.name()).exists())
}

/// Unpins the conntrack maps of an endpoint (or the global ones) in `dir`
/// whose type, key size, value size, max entries or map flags differ from
/// what this crate (and `sizes`) expect, so the next datapath load recreates
/// them (Cilium's `DeleteIfUpgradeNeeded` through `objCheck` in
/// `pkg/bpf/bpf_linux.go`: Cilium creates its CT maps as LRU hashes with
/// flags 0, so any flag, e.g. `BPF_F_NO_COMMON_LRU`, means an upgrade). Returns the paths removed. Missing
/// pins are skipped; a pin that is not a map is left alone.
///
/// # Errors
/// [`Error::Open`] when a mismatched pin cannot be removed; [`Error::Syscall`] when a pin cannot be inspected.
pub fn delete_if_upgrade_needed(
    dir: &Path,
    endpoint: Option<u16>,
    sizes: &CtSizes,
) -> Result<Vec<PathBuf>> {
    let scope = CtScope::of_endpoint(endpoint);
    let mut removed = Vec::new();
    for k in CtMapKind::all(scope, true, true) {
        let path = dir.join(k.name());
        if !path.exists() {
            continue;
        }
        let m = match RawMap::open_pinned(&path) {
            Ok(m) => m,
            Err(Error::NotAMap { .. }) | Err(Error::NotBpffs { .. }) => continue,
            Err(e) => return Err(e),
        };
        let i = &m.info;
        let ok = i.map_type == raw::MAP_TYPE_LRU_HASH
            && i.key_size as usize == k.family.key_size()
            && i.value_size == CtEntry::SIZE as u32
            && i.max_entries == sizes.max_entries(&k)
            && i.map_flags == CT_MAP_FLAGS;
        drop(m);
        if !ok {
            std::fs::remove_file(&path).map_err(|source| Error::Open {
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::IpFamily;

    #[test]
    fn endpoint_macros_use_local_names_and_sizes() {
        let mut out = Vec::new();
        write_bpf_macros(&mut out, Some(42), &CtSizes::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "#define CT_MAP_TCP4 cilium_ct4_00042\n\
             #define CT_MAP_ANY4 cilium_ct_any4_00042\n\
             #define CT_MAP_TCP6 cilium_ct6_00042\n\
             #define CT_MAP_ANY6 cilium_ct_any6_00042\n\
             #define CT_MAP_SIZE_TCP 64000\n\
             #define CT_MAP_SIZE_ANY 64000\n"
        );
        let mut out = Vec::new();
        write_bpf_macros(&mut out, None, &CtSizes { tcp: 1000, any: 10 }).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("#define CT_MAP_SIZE_TCP 1000\n#define CT_MAP_SIZE_ANY 10\n"));
    }

    #[test]
    fn map_names_round_trip() {
        for (name, fam, proto, scope) in [
            (
                "cilium_ct4_global",
                IpFamily::V4,
                CtProto::Tcp,
                CtScope::Global,
            ),
            (
                "cilium_ct6_global",
                IpFamily::V6,
                CtProto::Tcp,
                CtScope::Global,
            ),
            (
                "cilium_ct_any4_global",
                IpFamily::V4,
                CtProto::Any,
                CtScope::Global,
            ),
            (
                "cilium_ct_any6_global",
                IpFamily::V6,
                CtProto::Any,
                CtScope::Global,
            ),
            (
                "cilium_ct4_00042",
                IpFamily::V4,
                CtProto::Tcp,
                CtScope::Endpoint(42),
            ),
            (
                "cilium_ct_any6_65535",
                IpFamily::V6,
                CtProto::Any,
                CtScope::Endpoint(65535),
            ),
            (
                "cilium_per_cluster_ct_tcp4_7",
                IpFamily::V4,
                CtProto::Tcp,
                CtScope::Cluster(7),
            ),
            (
                "cilium_per_cluster_ct_any6_255",
                IpFamily::V6,
                CtProto::Any,
                CtScope::Cluster(255),
            ),
        ] {
            let k = CtMapKind::from_name(name).unwrap();
            assert_eq!(
                k,
                CtMapKind {
                    family: fam,
                    proto,
                    scope
                },
                "{name}"
            );
            assert_eq!(k.name(), name);
        }
        for bad in [
            "cilium_ct4_42",
            "cilium_ct4_",
            "cilium_ct5_global",
            "cilium_ct4_globalx",
            "cilium_snat_v4_external",
            "cilium_per_cluster_ct_udp4_1",
            "cilium_ct4_1234a",
        ] {
            assert!(CtMapKind::from_name(bad).is_none(), "{bad}");
        }
        let g = CtMapKind::from_name("cilium_ct4_global").unwrap();
        assert_eq!(g.default_max_entries(), 524_288);
        assert_eq!(
            CtMapKind::from_name("cilium_ct_any4_global")
                .unwrap()
                .default_max_entries(),
            262_144
        );
        assert_eq!(CtProto::for_protocol(6), CtProto::Tcp);
        assert_eq!(CtProto::for_protocol(17), CtProto::Any);
    }
}
