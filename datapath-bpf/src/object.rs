//! The compiled BPF object.

/// The BPF ELF object built from `src/bpf/datapath.bpf.c` (clang `-O2 -g`,
/// BTF included), for programs that load it with their own loader.
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
