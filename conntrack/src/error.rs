//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong. Each variant names the map (its pin path or
/// name), the operation and, for kernel failures, the errno.
///
/// ```
/// let e = podnet_conntrack::CtKey4::from_bytes(&[0; 13]).unwrap_err();
/// assert_eq!(e.to_string(), "CtKey4: expected 14 bytes, got 13");
/// assert!(matches!(e, podnet_conntrack::Error::Layout { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing is pinned at the path, or it could not be read.
    #[error("opening conntrack map pin {path}: {source}")]
    Open {
        /// The pin path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not on a BPF filesystem.
    #[error("{path} is not on a bpf filesystem (bpffs): not a pinned map")]
    NotBpffs {
        /// The path.
        path: PathBuf,
    },
    /// The pinned object is not a map (a program, a link, ...).
    #[error("{path} is not a pinned BPF map: {source}")]
    NotAMap {
        /// The pin path.
        path: PathBuf,
        /// The OS error of `BPF_OBJ_GET_INFO_BY_FD`.
        #[source]
        source: io::Error,
    },
    /// The map's type is not the one a conntrack/NAT map has.
    #[error("map {name} at {path}: type {found} is not {expected}")]
    MapType {
        /// The map's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// What was expected.
        expected: &'static str,
        /// What the kernel reports.
        found: String,
    },
    /// The map's key size is not Cilium's.
    #[error("map {name} at {path}: key size {found} bytes, expected {expected} bytes")]
    KeySize {
        /// The map's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// The expected key size.
        expected: u32,
        /// The kernel's key size.
        found: u32,
    },
    /// The map's value size is not Cilium's.
    #[error("map {name} at {path}: value size {found} bytes, expected {expected} bytes")]
    ValueSize {
        /// The map's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// The expected value size.
        expected: u32,
        /// The kernel's value size.
        found: u32,
    },
    /// A key of one family was used with a map of the other.
    #[error("map {name}: an {key} key ({key_size} bytes) cannot be used with an {map} map ({map_key_size}-byte keys)")]
    KeyFamily {
        /// The map's name.
        name: String,
        /// The map's family.
        map: crate::Family,
        /// The map's key size.
        map_key_size: usize,
        /// The key's family.
        key: crate::Family,
        /// The key's size.
        key_size: usize,
    },
    /// A bpf(2) call failed.
    #[error("{op} on map {name}: {source}")]
    Syscall {
        /// The operation (`BPF_MAP_LOOKUP_BATCH`, ...).
        op: &'static str,
        /// The map's name or pin path.
        name: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Loading or running the GC walk's BPF program failed.
    #[error("{op} for map {name}")]
    Bpf {
        /// What was done.
        op: &'static str,
        /// The map's name or pin path.
        name: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A bytes-to-struct conversion got the wrong length.
    #[error("{what}: expected {expected} bytes, got {found}")]
    Layout {
        /// The type being decoded.
        what: &'static str,
        /// Its size.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A map name is not one this crate knows how to interpret.
    #[error("{name:?} is not a Cilium conntrack map name (cilium_ct4_global, cilium_ct_any6_00042, ...)")]
    UnknownName {
        /// The name.
        name: String,
    },
    /// Bad input from the caller.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
}

impl Error {
    /// The errno, when the kernel or OS reported one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Open { source, .. }
            | Error::NotAMap { source, .. }
            | Error::Syscall { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
