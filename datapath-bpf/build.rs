//! Puts the BPF object at `$OUT_DIR/datapath.bpf.o`, which `src/object.rs`
//! embeds: the committed `prebuilt/datapath.bpf.o` when it matches the C
//! sources in `src/bpf/` (no clang needed), else compiled from them with
//! clang. See the README's "Building the BPF object" and the
//! `podnet-bpf-build` crate for the modes (`PODNET_BPF_REBUILD`,
//! `PODNET_BPF_UPDATE`, `BPF_CLANG`).
//!
//! Headers: the kernel's uapi headers from /usr/include and libbpf's
//! `bpf_helpers.h` from libbpf-sys. Nothing is downloaded.

include!("bpf_object.rs");

fn main() {
    let obj = datapath_object().force_rebuild(cfg!(feature = "rebuild-bpf"));
    if let Err(e) = obj.build() {
        eprintln!("podnet-datapath: {e}");
        std::process::exit(1);
    }
}
