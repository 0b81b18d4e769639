//! CNI errors: the specification's well-known codes and ours, printed as
//! the error JSON a runtime shows to its user.

use serde::{Deserialize, Serialize};

/// The specification's error code 1: incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// 2: unsupported field in network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// 3: container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// 4: invalid necessary environment variables.
pub const INVALID_ENV: u32 = 4;
/// 5: I/O failure.
pub const IO_FAILURE: u32 = 5;
/// 6: failed to decode content.
pub const DECODE_FAILURE: u32 = 6;
/// 7: invalid network config.
pub const INVALID_CONFIG: u32 = 7;
/// 11: try again later.
pub const TRY_AGAIN: u32 = 11;
/// Plugin-specific (100+): a netlink request (links, addresses, routes,
/// neighbours) failed.
pub const NETLINK_FAILURE: u32 = 100;
/// Plugin-specific: loading the datapath or a map update failed.
pub const DATAPATH_FAILURE: u32 = 101;
/// Plugin-specific: the delegated IPAM plugin failed or returned nothing usable.
pub const IPAM_FAILURE: u32 = 102;
/// Plugin-specific: flushing the pod's conntrack entries failed.
pub const CONNTRACK_FAILURE: u32 = 103;
/// Plugin-specific: CHECK found the container's networking not as ADD left it.
pub const CHECK_FAILED: u32 = 104;

/// A CNI error (`{"cniVersion","code","msg","details"}`).
///
/// ```
/// use podnet::cni::{CniError, INVALID_ENV};
/// let e = CniError::new(INVALID_ENV, "CNI_NETNS is not set");
/// let j = e.to_json("1.0.0");
/// assert_eq!(j, r#"{"cniVersion":"1.0.0","code":4,"msg":"CNI_NETNS is not set"}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// The code: 1-99 the specification's, 100+ this plugin's.
    pub code: u32,
    /// What failed, in words.
    pub msg: String,
    /// More detail (the cause chain), when there is any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with `code` and message `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// An error with `code`, saying `what` failed and why (`err` and its
    /// sources, in the message; the runtime shows only `msg`).
    pub fn from_err(code: u32, what: &str, err: &dyn std::error::Error) -> CniError {
        let mut msg = format!("{what}: {err}");
        let mut src = err.source();
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        CniError::new(code, msg)
    }

    /// The error JSON for the runtime (stdout, exit code 1).
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            cni_version: &'a str,
            #[serde(flatten)]
            e: &'a CniError,
        }
        serde_json::to_string(&Out {
            cni_version,
            e: self,
        })
        .unwrap_or_else(|_| format!(r#"{{"code":{},"msg":"unprintable error"}}"#, self.code))
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)
    }
}

impl std::error::Error for CniError {}

/// Result of a CNI step.
pub type CniResult<T> = Result<T, CniError>;
