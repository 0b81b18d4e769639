//! The crate's error type.

use std::fmt;

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What was being done when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Opening the netlink socket (or entering the netns for it).
    Open,
    /// `Handle::upsert` (or one item of `upsert_many`).
    Upsert,
    /// The scope-link route to a nexthop, added by an upsert.
    UpsertNexthop,
    /// `Handle::delete`.
    Delete,
    /// `Handle::lookup`.
    Lookup,
    /// `Handle::list`.
    List,
    /// `Handle::get` (`ip route get`).
    Get,
    /// `Handle::replace_rule`.
    ReplaceRule,
    /// `Handle::delete_rule`.
    DeleteRule,
    /// `Handle::list_rules`.
    ListRules,
    /// Resolving a link name or index.
    ResolveLink,
    /// Parsing `ip` text.
    Parse,
    /// `Handle::add_veth`.
    AddLink,
    /// `Handle::delete_link`.
    DeleteLink,
    /// `Handle::set_link_up` / `set_link_mtu` / `set_link_mac`.
    SetLink,
    /// `Handle::link` / `link_by_index`.
    GetLink,
    /// `Handle::links`.
    ListLinks,
    /// `Handle::add_address`.
    AddAddress,
    /// `Handle::delete_address`.
    DeleteAddress,
    /// `Handle::addresses`.
    ListAddresses,
    /// `Handle::replace_neighbour`.
    ReplaceNeighbour,
    /// `Handle::delete_neighbour`.
    DeleteNeighbour,
    /// `Handle::neighbours`.
    ListNeighbours,
    /// `Handle::subscribe` / `Monitor`: opening or reading a subscription.
    Monitor,
    /// `Handle::add_nexthop` (a nexthop object, `ip nexthop add`).
    AddNexthopObject,
    /// `Handle::replace_nexthop` (`ip nexthop replace`).
    ReplaceNexthopObject,
    /// `Handle::delete_nexthop` (`ip nexthop del`).
    DeleteNexthopObject,
    /// `Handle::nexthop` / `Handle::nexthops` (`ip nexthop show`).
    ListNexthopObjects,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open netlink socket",
            Op::Upsert => "upsert route",
            Op::UpsertNexthop => "upsert nexthop route",
            Op::Delete => "delete route",
            Op::Lookup => "lookup route",
            Op::List => "list routes",
            Op::Get => "get route",
            Op::ReplaceRule => "replace rule",
            Op::DeleteRule => "delete rule",
            Op::ListRules => "list rules",
            Op::ResolveLink => "resolve link",
            Op::Parse => "parse",
            Op::AddLink => "add link",
            Op::DeleteLink => "delete link",
            Op::SetLink => "set link",
            Op::GetLink => "get link",
            Op::ListLinks => "list links",
            Op::AddAddress => "add address",
            Op::DeleteAddress => "delete address",
            Op::ListAddresses => "list addresses",
            Op::ReplaceNeighbour => "replace neighbour",
            Op::DeleteNeighbour => "delete neighbour",
            Op::ListNeighbours => "list neighbours",
            Op::Monitor => "monitor",
            Op::AddNexthopObject => "add nexthop object",
            Op::ReplaceNexthopObject => "replace nexthop object",
            Op::DeleteNexthopObject => "delete nexthop object",
            Op::ListNexthopObjects => "list nexthop objects",
        })
    }
}

/// Everything that can go wrong. Each variant names the operation and the
/// object (as `ip` text).
///
/// ```
/// use podnet_route::{Error, Op};
/// let e = Error::Kernel {
///     op: Op::Delete,
///     object: "10.0.0.0/24 dev eth0".into(),
///     errno: libc::ESRCH,
///     message: None,
/// };
/// assert!(e.is_not_found());
/// assert_eq!(e.to_string(), "delete route 10.0.0.0/24 dev eth0: No such process (os error 3)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel rejected a request.
    #[error("{op} {object}: {}{}", errno_text(*.errno), ext_text(.message))]
    Kernel {
        /// What was being done.
        op: Op,
        /// The route or rule, as `ip` text.
        object: String,
        /// The (positive) errno.
        errno: i32,
        /// The kernel's extended-ack message, when it sent one.
        message: Option<String>,
    },
    /// The input was rejected before anything was sent.
    #[error("{op} {object}: invalid input: {reason}")]
    InvalidInput {
        /// What was being done.
        op: Op,
        /// The route or rule, as `ip` text (or the text that did not parse).
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The device named by a route does not exist in the handle's netns.
    #[error("{op} {object}: no device named {device:?}")]
    UnknownDevice {
        /// What was being done.
        op: Op,
        /// The route, as `ip` text.
        object: String,
        /// The missing device.
        device: String,
    },
    /// A socket-level error (send/recv, setns, opening the netns file).
    #[error("{op}{}: socket error{}", if .context.is_empty() { String::new() } else { format!(" {}", .context) }, source.raw_os_error().map(|e| format!(" (errno {e})")).unwrap_or_default())]
    Io {
        /// What was being done.
        op: Op,
        /// The object or path concerned.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel sent something we could not decode.
    #[error("{op}: undecodable reply: {reason}")]
    Decode {
        /// What was being done.
        op: Op,
        /// What was wrong.
        reason: String,
    },
    /// A route of the same identity (table, prefix, metric) but of another
    /// protocol is in the kernel: an upsert does not rewrite another
    /// owner's route (see `Handle::upsert_take_over`).
    #[error("{op} {object}: a route of protocol {proto} is in the way ({existing}); not replaced")]
    Conflict {
        /// What was being done.
        op: Op,
        /// The route asked for, as `ip` text.
        object: String,
        /// The route in the kernel, as `ip` text.
        existing: String,
        /// Its protocol.
        proto: crate::names::Protocol,
    },
    /// The route in the kernel that an upsert would replace carries
    /// something this crate does not model and so could not carry over
    /// (per-path encapsulation, say): it is left as it is rather than
    /// replaced without it.
    #[error("{op} {object}: the route in the kernel ({existing}) has {what}, which a replace would drop; not replaced")]
    Unmodelled {
        /// What was being done.
        op: Op,
        /// The route asked for, as `ip` text.
        object: String,
        /// The route in the kernel, as `ip` text.
        existing: String,
        /// What is not modelled.
        what: String,
    },
    /// A dump kept being interrupted (`NLM_F_DUMP_INTR`) by concurrent changes.
    #[error("{op}: dump interrupted by concurrent changes {tries} times in a row")]
    DumpInterrupted {
        /// What was being done.
        op: Op,
        /// How many times it was tried.
        tries: u32,
    },
}

fn errno_kind(errno: i32) -> std::io::ErrorKind {
    use std::io::ErrorKind as K;
    match errno {
        libc::ESRCH | libc::ENOENT | libc::ENODEV => K::NotFound,
        libc::EEXIST => K::AlreadyExists,
        libc::EPERM | libc::EACCES => K::PermissionDenied,
        libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => K::Unsupported,
        _ => K::Other,
    }
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

fn ext_text(msg: &Option<String>) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!(" ({m})"),
        _ => String::new(),
    }
}

impl Error {
    /// What kind of failure this is, as an [`std::io::ErrorKind`]:
    /// `NotFound` (a route or rule that is not there, an unknown device),
    /// `AlreadyExists` (EEXIST, a route of another owner in the way),
    /// `PermissionDenied` (EPERM/EACCES), `Unsupported` (EOPNOTSUPP,
    /// EAFNOSUPPORT), `InvalidInput` (input refused before anything was
    /// sent), `Other` for the rest.
    ///
    /// ```
    /// use podnet_route::{Error, Op};
    /// let e = Error::Kernel { op: Op::Upsert, object: "x".into(), errno: libc::EEXIST, message: None };
    /// assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    /// assert!(e.is_exists());
    /// ```
    #[must_use]
    pub fn kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            Error::InvalidInput { .. } => K::InvalidInput,
            Error::UnknownDevice { .. } => K::NotFound,
            Error::Conflict { .. } => K::AlreadyExists,
            Error::Unmodelled { .. } => K::Unsupported,
            Error::Decode { .. } | Error::DumpInterrupted { .. } => K::Other,
            Error::Kernel { errno, .. } => errno_kind(*errno),
            Error::Io { source, .. } => source.raw_os_error().map_or(K::Other, errno_kind),
        }
    }

    /// `true` when the object was not there: a route delete that found no
    /// route (ESRCH), a rule delete that found no rule (ENOENT), an unknown
    /// device (`kind()` is `NotFound`).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind() == std::io::ErrorKind::NotFound
    }

    /// `true` when the object (or another owner's of the same identity)
    /// already exists (`kind()` is `AlreadyExists`).
    #[must_use]
    pub fn is_exists(&self) -> bool {
        self.kind() == std::io::ErrorKind::AlreadyExists
    }

    /// The errno of a kernel or I/O error.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The kernel's extended-ack message, when there is one.
    #[must_use]
    pub fn kernel_message(&self) -> Option<&str> {
        match self {
            Error::Kernel { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// The operation that failed.
    #[must_use]
    pub fn op(&self) -> Op {
        match self {
            Error::Kernel { op, .. }
            | Error::InvalidInput { op, .. }
            | Error::UnknownDevice { op, .. }
            | Error::Io { op, .. }
            | Error::Decode { op, .. }
            | Error::Conflict { op, .. }
            | Error::Unmodelled { op, .. }
            | Error::DumpInterrupted { op, .. } => *op,
        }
    }
}
