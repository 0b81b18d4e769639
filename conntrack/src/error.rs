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
    #[error("opening conntrack map pin {path}{}", root_hint(source))]
    Open {
        /// The pin path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The path (a pin, or a directory to pin in) is not on a BPF filesystem.
    #[error("{path} is not on a bpf filesystem (bpffs): pins live under a bpffs mount such as /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs {
        /// The path.
        path: PathBuf,
    },
    /// The pinned object is not a map (a program, a link, ...).
    #[error("{path} is not a pinned BPF map: {what}")]
    NotAMap {
        /// The pin path.
        path: PathBuf,
        /// What it is instead, or what failed.
        what: String,
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
        map: crate::IpFamily,
        /// The map's key size.
        map_key_size: usize,
        /// The key's family.
        key: crate::IpFamily,
        /// The key's size.
        key_size: usize,
    },
    /// A bpf(2) call failed.
    #[error("{op} on map {name}{}", root_hint(source))]
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
    /// A pin re-used by `CtMap::create` (or a NAT map's) differs from what
    /// was asked for.
    #[error("map {name} already pinned at {path} with {what} {found}, asked for {expected}: unpin it (delete_if_upgrade_needed) or ask for {found}")]
    Mismatch {
        /// The map's name.
        name: String,
        /// The pin path.
        path: PathBuf,
        /// `max_entries`, `type`, `key size`, `value size` or `flags`.
        what: &'static str,
        /// What was asked for.
        expected: String,
        /// What the pinned map has.
        found: String,
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
    ///
    /// ```
    /// let e = podnet_conntrack::CtMap::open("/nonexistent/cilium_ct4_global").unwrap_err();
    /// assert_eq!(e.errno(), Some(libc::ENOENT));
    /// assert!(e.is_not_found());
    /// ```
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Open { source, .. }
            | Error::NotAMap { source, .. }
            | Error::Syscall { source, .. } => source.raw_os_error(),
            Error::Bpf { source, .. } => bpf_errno(source),
            _ => None,
        }
    }

    /// What kind of failure this is: `NotFound`, `AlreadyExists`,
    /// `PermissionDenied`, `Unsupported`, `InvalidInput` (typed bad input,
    /// nothing sent to the kernel), else `Other`.
    #[must_use]
    pub fn kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            Error::Layout { .. }
            | Error::UnknownName { .. }
            | Error::InvalidInput(_)
            | Error::KeyFamily { .. } => return K::InvalidInput,
            Error::NotBpffs { .. }
            | Error::NotAMap { .. }
            | Error::MapType { .. }
            | Error::KeySize { .. }
            | Error::ValueSize { .. }
            | Error::Mismatch { .. } => return K::InvalidInput,
            _ => {}
        }
        match self.errno() {
            Some(libc::ENOENT) => K::NotFound,
            Some(libc::EEXIST) => K::AlreadyExists,
            Some(libc::EPERM | libc::EACCES) => K::PermissionDenied,
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => K::Unsupported,
            _ => K::Other,
        }
    }

    /// `kind() == NotFound`.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind() == std::io::ErrorKind::NotFound
    }

    /// `kind() == AlreadyExists`.
    #[must_use]
    pub fn is_exists(&self) -> bool {
        self.kind() == std::io::ErrorKind::AlreadyExists
    }
}

/// libbpf-rs keeps the errno only in its error's text and kind.
fn bpf_errno(e: &libbpf_rs::Error) -> Option<i32> {
    use libbpf_rs::ErrorKind as K;
    Some(match e.kind() {
        K::NotFound => libc::ENOENT,
        K::PermissionDenied => libc::EPERM,
        K::AlreadyExists => libc::EEXIST,
        K::InvalidInput => libc::EINVAL,
        K::Unsupported => libc::EOPNOTSUPP,
        _ => return None,
    })
}

/// ": needs root or `CAP_BPF` and `CAP_NET_ADMIN`" for EPERM/EACCES from bpf(2).
fn root_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => ": needs root or CAP_BPF and CAP_NET_ADMIN",
        _ => "",
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
