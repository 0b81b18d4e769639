// The one description of the BPF object, shared by build.rs and the test
// that the prebuilt copy is current (both `include!` this file).
fn datapath_object() -> podnet_bpf_build::BpfObject {
    podnet_bpf_build::BpfObject::new("src/bpf", "datapath.bpf.c", "prebuilt/datapath.bpf.o")
        .clang_arg("-Wall")
        .clang_arg("-Werror")
}
