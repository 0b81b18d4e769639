//! The network configuration on stdin and the `CNI_*` environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::error::{
    CniError, CniResult, DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV,
};

/// The specification versions this plugin speaks (1.0.0 is the newest;
/// Debian's host-local refuses 1.1.0).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// Where the plugin pins the datapath's maps unless the config says
/// otherwise: a directory of its own, not Cilium's `/sys/fs/bpf/tc/globals`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/podnet";
/// Where the plugin keeps its lock and per-container records.
pub const DEFAULT_STATE_DIR: &str = "/run/podnet-cni";
/// The identity of pods whose config and CNI args name none: the first
/// identity above Cilium's reserved range (1..=255).
pub const DEFAULT_IDENTITY: u32 = 256;

/// The plugin's network configuration (one entry of a conflist, with
/// `cniVersion` and `name` injected by the runtime).
///
/// ```
/// use podnet::cni::NetConf;
/// let c = NetConf::parse(br#"{
///   "cniVersion": "1.0.0", "name": "podnet", "type": "podnet-cni",
///   "pinDir": "/sys/fs/bpf/podnet", "mtu": 1500, "identity": 1000,
///   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]]}
/// }"#).unwrap();
/// assert_eq!(c.ipam_type().unwrap(), "host-local");
/// assert_eq!(c.identity, Some(1000));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Specification version of the config (and of the result).
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin type (`podnet-cni`).
    #[serde(rename = "type")]
    pub kind: String,
    /// bpffs directory of the datapath's maps ([`DEFAULT_PIN_DIR`]).
    #[serde(default)]
    pub pin_dir: Option<PathBuf>,
    /// Directory of the lock and per-container records ([`DEFAULT_STATE_DIR`]).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// MTU of the veth pair (kernel default when absent).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Security identity of the pods (overridden by `PODNET_IDENTITY` in
    /// `CNI_ARGS`; [`DEFAULT_IDENTITY`] when neither says).
    #[serde(default)]
    pub identity: Option<u32>,
    /// Use small maps when loading the datapath (tests).
    #[serde(default)]
    pub small_maps: bool,
    /// The IPAM section, passed to the IPAM plugin named by its `type`.
    #[serde(default)]
    pub ipam: Option<Value>,
    /// The previous result (DEL, CHECK).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// Everything, as received (what the IPAM plugin gets on stdin).
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl NetConf {
    /// Parses stdin; an unsupported version is error 1, bad JSON 6, a
    /// missing field 7.
    pub fn parse(stdin: &[u8]) -> CniResult<NetConf> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(DECODE_FAILURE, format!("network config is not JSON: {e}"))
        })?;
        let mut c: NetConf = serde_json::from_value(v)
            .map_err(|e| CniError::new(INVALID_CONFIG, format!("network config: {e}")))?;
        check_version(&c.cni_version)?;
        if c.name.is_empty() {
            return Err(CniError::new(INVALID_CONFIG, "network config: empty name"));
        }
        if let Some(m) = c.mtu {
            if !(68..=65535).contains(&m) {
                return Err(CniError::new(
                    INVALID_CONFIG,
                    format!("network config: mtu {m} is outside 68..=65535"),
                ));
            }
        }
        c.raw = stdin.to_vec();
        Ok(c)
    }

    /// The IPAM plugin's name (`ipam.type`).
    pub fn ipam_type(&self) -> CniResult<&str> {
        let t = self
            .ipam
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "network config: no ipam.type"))?;
        if t.is_empty() || t.contains('/') || t.starts_with('.') {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("network config: ipam.type {t:?} is not a plugin name"),
            ));
        }
        Ok(t)
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> PathBuf {
        self.pin_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_PIN_DIR.into())
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into())
    }
}

/// Error 1 unless `v` is one of [`SUPPORTED_VERSIONS`].
pub fn check_version(v: &str) -> CniResult<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {v:?} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// The verb in `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `ADD`
    Add,
    /// `DEL`
    Del,
    /// `CHECK`
    Check,
    /// `VERSION`
    Version,
}

/// The `CNI_*` environment of one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty on DEL).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, split into `K=V` pairs.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the environment through `get` (`std::env::var` in the binary);
    /// a missing variable the verb needs is error 4.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> CniResult<Env> {
        let need = |k: &str| -> CniResult<String> {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CniError::new(INVALID_ENV, format!("{k} is not set")))
        };
        let command = match need("CNI_COMMAND")?.as_str() {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    INVALID_ENV,
                    format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK or VERSION"),
                ))
            }
        };
        if command == Command::Version {
            return Ok(Env {
                command,
                container_id: String::new(),
                netns: String::new(),
                ifname: String::new(),
                args: BTreeMap::new(),
                path: Vec::new(),
            });
        }
        let container_id = need("CNI_CONTAINERID")?;
        let ifname = need("CNI_IFNAME")?;
        let netns = match command {
            Command::Del => get("CNI_NETNS").unwrap_or_default(),
            _ => need("CNI_NETNS")?,
        };
        let path = need("CNI_PATH")?
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// Splits `CNI_ARGS` (`K1=V1;K2=V2`).
///
/// ```
/// let a = podnet::cni::parse_args("IgnoreUnknown=1;K8S_POD_NAME=web;PODNET_IDENTITY=7").unwrap();
/// assert_eq!(a["PODNET_IDENTITY"], "7");
/// assert!(podnet::cni::parse_args("novalue").is_err());
/// ```
pub fn parse_args(s: &str) -> CniResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CniError::new(INVALID_ENV, format!("CNI_ARGS item {kv:?} is not K=V"))
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}
