//! The compiled BPF object.

/// The BPF ELF object compiled from `src/bpf/datapath.bpf.c` (clang `-O2 -g`,
/// debug sections stripped, BTF kept; shipped prebuilt in `prebuilt/`), for programs that load it with their own loader.
///
/// Programs (`SEC("tc")`): `from_container`, `to_container`, `from_netdev`,
/// and two benchmark references: `tc_pass` (returns `TC_ACT_OK`) and
/// `tc_ct_lookup` (one conntrack lookup of an IPv4 packet). Maps are listed
/// in [`crate::maps`]. The `.rodata` section holds one `struct pn_config`
/// (`skip_fib`, `trace_redirect`, `redirect_peer`, `ct_accounting`, each a
/// `u32`).
///
/// ```
/// assert_eq!(&podnet_datapath::OBJECT[..4], b"\x7fELF");
/// ```
pub const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/datapath.bpf.o"));

#[cfg(test)]
mod tests {
    include!("../bpf_object.rs");

    /// The committed object was compiled from the C sources as they are now
    /// (`PODNET_BPF_UPDATE=1 cargo build` refreshes it). CI also rebuilds it
    /// with clang and compares the bytes (`PODNET_BPF_CHECK=1`).
    #[test]
    fn prebuilt_object_matches_sources() {
        assert!(
            datapath_object().is_current().expect("src/bpf is readable"),
            "prebuilt/datapath.bpf.o is stale: run `PODNET_BPF_UPDATE=1 cargo build -p podnet-datapath` and commit it"
        );
    }
}
