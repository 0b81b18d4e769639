//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// What went wrong, naming the map, program or interface and the errno.
///
/// ```
/// use podnet_datapath::Error;
/// let e = Error::UnknownInterface { ifindex: 4242 };
/// assert!(e.to_string().contains("4242"));
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
    /// No interface with that index in the calling thread's network namespace.
    #[error("no interface with index {ifindex} in the calling thread's network namespace")]
    UnknownInterface {
        /// The index asked for.
        ifindex: u32,
    },
    /// The pin directory could not be created or used.
    #[error("pin directory {}: {source}", path.display())]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// libbpf could not open the embedded object.
    #[error("opening the datapath BPF object: {source}")]
    Open {
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// Setting up a map or the config before load failed.
    #[error("preparing map {map}: {source}")]
    Prepare {
        /// The map.
        map: String,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// Loading failed: map creation or pin reuse (a pinned map with another
    /// layout or size), or a verifier rejection (its log is in `verifier_log`).
    #[error("loading the datapath (maps pinned under {}): {source}{}", pin_dir.display(), if verifier_log.is_empty() { String::new() } else { format!("\nlibbpf/verifier log:\n{verifier_log}") })]
    Load {
        /// The pin directory in use.
        pin_dir: PathBuf,
        /// libbpf's error.
        source: libbpf_rs::Error,
        /// What libbpf printed while loading, with the verifier log.
        verifier_log: String,
    },
    /// A map operation failed.
    #[error("map {map}: {op}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The operation: "update", "delete", "lookup", "iterate".
        op: &'static str,
        /// The OS error (errno).
        source: io::Error,
    },
    /// Attaching a program failed.
    #[error("attaching {program} to ifindex {ifindex} ({mode}): {source}")]
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
    #[error("detaching {program} from ifindex {ifindex} ({mode}): {source}")]
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
    /// Running a program with BPF_PROG_TEST_RUN failed.
    #[error("test run of {program}: {source}")]
    TestRun {
        /// The program.
        program: &'static str,
        /// The OS error (errno).
        source: io::Error,
    },
    /// Removing a pin failed.
    #[error("unpinning {}: {source}", path.display())]
    Unpin {
        /// The pin.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
