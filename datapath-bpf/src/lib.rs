//! A libbpf-built pod datapath (native routing, Cilium-compatible conntrack).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

mod object;

pub use object::OBJECT;
