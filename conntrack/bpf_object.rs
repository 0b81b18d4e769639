// The one description of the GC walk's BPF object, shared by build.rs and
// the test that the prebuilt copy is current (both `include!` this file).
fn gc_walk_object() -> podnet_bpf_build::BpfObject {
    podnet_bpf_build::BpfObject::new("src/bpf", "ct_gc.bpf.c", "prebuilt/ct_gc.bpf.o")
        .clang_arg("-Wall")
        .clang_arg("-Werror")
}
