//! End-to-end glue for the `route`, `conntrack` and `datapath-bpf` crates:
//! the two-node lab that the `native_routing` example, the top-level tests and
//! the benchmarks share. Not published; it exists to prove the crates compose.

pub mod cni;
pub mod lab;
pub mod lab_frag;
pub mod lab_outside;

/// The README's code samples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
