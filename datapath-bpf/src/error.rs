//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// What went wrong, naming the map, program or interface.
///
/// `Display` gives the context (what was asked); the cause (the errno, or
/// libbpf's error) is only in [`std::error::Error::source`], so a reporter
/// that walks the chain (`anyhow`'s `{:#}`) shows it once. What libbpf and
/// the verifier printed during a failed load is in [`Error::verifier_log`].
///
/// ```
/// use podnet_datapath::Error;
/// let e = Error::UnknownInterface { ifindex: 4242 };
/// assert!(e.to_string().contains("4242"));
/// assert!(e.is_not_found());
/// assert_eq!(e.errno(), None);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input rejected before the kernel was touched.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Bad masquerade settings (before the kernel is touched).
    #[error(transparent)]
    Masquerade(#[from] crate::MasqueradeError),
    /// No interface with that index in the calling thread's network namespace.
    #[error("no interface with index {ifindex} in the calling thread's network namespace")]
    UnknownInterface {
        /// The index asked for.
        ifindex: u32,
    },
    /// The calling process lacks the capabilities to load or attach BPF
    /// programs (checked before the kernel is asked, and on `EPERM`).
    #[error("{what}: needs root or CAP_BPF and CAP_NET_ADMIN")]
    Privileges {
        /// What was asked.
        what: &'static str,
    },
    /// The pin directory is not on a bpffs mount (checked before anything
    /// is created or loaded).
    #[error("pin directory {} is not on a bpffs mount; mount one with `mount -t bpf bpf <dir>` or pick a dir under /sys/fs/bpf", path.display())]
    NotBpffs {
        /// The directory asked for.
        path: PathBuf,
    },
    /// A map pinned in the pin directory has another layout or size than
    /// this datapath needs (checked before load).
    #[error("pinned map {} has {field} {pinned}, this datapath needs {wanted}: remove the pin (its entries are lost) or load with Options that match it", path.display())]
    PinMismatch {
        /// The pin.
        path: PathBuf,
        /// `type`, `key_size`, `value_size`, `max_entries` or `map_flags`.
        field: &'static str,
        /// The pinned map's value.
        pinned: String,
        /// The value this datapath (with these `Options`) needs.
        wanted: String,
    },
    /// The pin directory could not be created or used.
    #[error("pin directory {}", path.display())]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The network namespace given to [`crate::Datapath::attach_in`] /
    /// [`crate::Datapath::detach_in`] could not be opened or entered.
    #[error("entering network namespace {}", path.display())]
    Netns {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// libbpf could not open the embedded object.
    #[error("opening the datapath BPF object")]
    Open {
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// Setting up a map or the config before load failed.
    #[error("preparing map {map}")]
    Prepare {
        /// The map.
        map: String,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// Loading failed: map creation or pin reuse, or a verifier rejection
    /// (what libbpf printed is in [`Error::verifier_log`]).
    #[error("loading the datapath (maps pinned under {})", pin_dir.display())]
    Load {
        /// The pin directory in use.
        pin_dir: PathBuf,
        /// libbpf's error.
        source: libbpf_rs::Error,
        /// What libbpf printed while loading, with the verifier log.
        verifier_log: String,
    },
    /// A map operation failed.
    #[error("map {map}: {op}")]
    Map {
        /// The map.
        map: &'static str,
        /// The operation: "update", "delete", "lookup", "iterate".
        op: &'static str,
        /// The OS error (errno).
        source: io::Error,
    },
    /// Attaching a program failed.
    #[error("attaching {program} to ifindex {ifindex} ({mode})")]
    Attach {
        /// The program.
        program: &'static str,
        /// The interface.
        ifindex: u32,
        /// "tcx ingress", "tc clsact egress" ...
        mode: String,
        /// The OS error (errno).
        source: io::Error,
    },
    /// Detaching a program failed.
    #[error("detaching {program} from ifindex {ifindex} ({mode})")]
    Detach {
        /// The program.
        program: &'static str,
        /// The interface.
        ifindex: u32,
        /// "tc clsact ingress" ...
        mode: String,
        /// The OS error (errno).
        source: io::Error,
    },
    /// Nothing of ours is attached there.
    #[error("{program} is not attached to ifindex {ifindex}")]
    NotAttached {
        /// The program.
        program: &'static str,
        /// The interface.
        ifindex: u32,
    },
    /// Running a program with `BPF_PROG_TEST_RUN` failed.
    #[error("test run of {program}")]
    TestRun {
        /// The program.
        program: &'static str,
        /// The OS error (errno).
        source: io::Error,
    },
    /// Removing a pin failed.
    #[error("unpinning {}", path.display())]
    Unpin {
        /// The pin.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Attaching the socket load balancing programs to a cgroup, or
    /// opening it, failed ([`crate::Datapath::attach_socket_lb`]).
    #[error("socket load balancing on cgroup {}: {op}", cgroup.display())]
    SocketLb {
        /// The cgroup v2 directory.
        cgroup: PathBuf,
        /// What was done: "opening the cgroup", "attaching `sock4_connect`" ...
        op: String,
        /// The OS error (errno).
        source: io::Error,
    },
}

/// The errno of a libbpf-rs error: libbpf reports negative errnos, which
/// libbpf-rs wraps as an `io::Error` it shows but does not expose.
pub(crate) fn libbpf_errno(e: &libbpf_rs::Error) -> Option<i32> {
    let text = e.to_string();
    let start = text.rfind("(os error ")? + "(os error ".len();
    let end = start + text[start..].find(')')?;
    text[start..end].parse().ok()
}

impl Error {
    /// The errno the kernel (or libbpf) returned, when the error came from
    /// one; `None` for errors raised before the kernel was asked.
    ///
    /// ```
    /// let e = podnet_datapath::Error::Map {
    ///     map: "podnet_lxc",
    ///     op: "update",
    ///     source: std::io::Error::from_raw_os_error(libc::E2BIG),
    /// };
    /// assert_eq!(e.errno(), Some(libc::E2BIG));
    /// ```
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::PinDir { source, .. }
            | Error::Netns { source, .. }
            | Error::Map { source, .. }
            | Error::Attach { source, .. }
            | Error::Detach { source, .. }
            | Error::TestRun { source, .. }
            | Error::Unpin { source, .. }
            | Error::SocketLb { source, .. } => source.raw_os_error(),
            Error::Open { source } | Error::Prepare { source, .. } | Error::Load { source, .. } => {
                libbpf_errno(source)
            }
            Error::Privileges { .. } => Some(libc::EPERM),
            Error::InvalidInput { .. }
            | Error::Masquerade(_)
            | Error::UnknownInterface { .. }
            | Error::NotBpffs { .. }
            | Error::PinMismatch { .. }
            | Error::NotAttached { .. } => None,
        }
    }

    /// What kind of error: `NotFound`, `AlreadyExists`, `PermissionDenied`,
    /// `Unsupported`, `InvalidInput` (input refused before the kernel was
    /// asked: bad arguments, a pin dir off bpffs, a mismatching pin), or
    /// `Other`.
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// let e = podnet_datapath::Error::Privileges { what: "loading the datapath" };
    /// assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    /// ```
    #[must_use]
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::InvalidInput { .. }
            | Error::Masquerade(_)
            | Error::NotBpffs { .. }
            | Error::PinMismatch { .. } => io::ErrorKind::InvalidInput,
            Error::UnknownInterface { .. } | Error::NotAttached { .. } => io::ErrorKind::NotFound,
            Error::Privileges { .. } => io::ErrorKind::PermissionDenied,
            _ => match self.errno() {
                Some(libc::ENOENT) | Some(libc::ENODEV) => io::ErrorKind::NotFound,
                Some(libc::EEXIST) => io::ErrorKind::AlreadyExists,
                Some(libc::EPERM) | Some(libc::EACCES) => io::ErrorKind::PermissionDenied,
                // ENOTSUPP (524) is the kernel-internal "not supported".
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(524) => {
                    io::ErrorKind::Unsupported
                }
                _ => io::ErrorKind::Other,
            },
        }
    }

    /// `kind() == NotFound`: no such interface, key, pin or attachment.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind() == io::ErrorKind::NotFound
    }

    /// `kind() == AlreadyExists`.
    #[must_use]
    pub fn is_exists(&self) -> bool {
        self.kind() == io::ErrorKind::AlreadyExists
    }

    /// What libbpf printed while the datapath failed to load (map creation,
    /// pin reuse, the verifier's log), when this is a load error and it
    /// printed anything.
    #[must_use]
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            Error::Load { verifier_log, .. } if !verifier_log.is_empty() => Some(verifier_log),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_has_the_context_and_source_the_cause() {
        let e = Error::Map {
            map: "podnet_lxc",
            op: "update",
            source: io::Error::from_raw_os_error(libc::E2BIG),
        };
        assert_eq!(e.to_string(), "map podnet_lxc: update");
        assert!(e.source().is_some());
        let load = Error::Load {
            pin_dir: "/sys/fs/bpf/x".into(),
            source: libbpf_rs::Error::from_raw_os_error(libc::EINVAL),
            verifier_log: "libbpf: map 'x': failed\nline two".into(),
        };
        assert!(!load.to_string().contains('\n'), "{load}");
        assert!(!load.to_string().contains("os error"), "{load}");
        assert_eq!(load.errno(), Some(libc::EINVAL));
        assert_eq!(
            load.verifier_log(),
            Some("libbpf: map 'x': failed\nline two")
        );
        assert_eq!(e.verifier_log(), None);
    }

    #[test]
    fn kinds_follow_the_errno() {
        let with = |errno| Error::TestRun {
            program: "p",
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(with(libc::ENOENT).is_not_found());
        assert!(with(libc::EEXIST).is_exists());
        assert_eq!(with(libc::EPERM).kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(with(libc::EOPNOTSUPP).kind(), io::ErrorKind::Unsupported);
        assert_eq!(with(libc::EINVAL).kind(), io::ErrorKind::Other);
        let bad = Error::InvalidInput {
            what: "x",
            reason: "y".into(),
        };
        assert_eq!(bad.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(bad.errno(), None);
    }
}
