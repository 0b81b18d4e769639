//! Puts the GC walk's BPF object at `$OUT_DIR/ct_gc.bpf.o`, which
//! `src/kernel_scan.rs` embeds: the committed `prebuilt/ct_gc.bpf.o` when it
//! matches the C sources in `src/bpf/` (no clang needed), else compiled from
//! them with clang. Modes: see the `podnet-bpf-build` crate
//! (`PODNET_BPF_REBUILD`, `PODNET_BPF_UPDATE`, `PODNET_BPF_CHECK`, `BPF_CLANG`).

include!("bpf_object.rs");

fn main() {
    let obj = gc_walk_object().force_rebuild(cfg!(feature = "rebuild-bpf"));
    if let Err(e) = obj.build() {
        eprintln!("podnet-conntrack: {e}");
        std::process::exit(1);
    }
}
