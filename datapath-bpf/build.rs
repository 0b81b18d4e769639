//! Compiles `src/bpf/datapath.bpf.c` with libbpf-cargo's `SkeletonBuilder`
//! into `$OUT_DIR/datapath.bpf.o`, which `src/object.rs` embeds.
//!
//! Headers: the kernel's uapi headers from /usr/include (plus the multiarch
//! directory for `asm/`), and libbpf's `bpf_helpers.h`, which libbpf-cargo
//! extracts from libbpf-sys itself. Nothing is downloaded.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/datapath.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("datapath.bpf.o");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        other => panic!("datapath-bpf: no multiarch include directory known for {other}"),
    };
    let mut args = vec![
        "-Wall".to_string(),
        "-Werror".to_string(),
        format!("-I/usr/include/{multiarch}"),
    ];
    if let Ok(extra) = env::var("DATAPATH_BPF_CLANG_ARGS") {
        args.extend(extra.split_whitespace().map(str::to_string));
    }

    if let Err(e) = SkeletonBuilder::new()
        .source(SRC)
        .obj(&obj)
        .clang_args(&args)
        .build()
    {
        panic!("datapath-bpf: compiling {SRC} failed: {e:#}");
    }
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-env-changed=DATAPATH_BPF_CLANG_ARGS");
}
