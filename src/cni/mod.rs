//! A CNI plugin (specification 1.0.0; `cniVersion` 0.3.0 to 1.0.0) built
//! from the three crates: `podnet-route` wires the pod (veth, address,
//! gateway neighbour and routes), `podnet-datapath` registers it and
//! attaches from-container / to-container, `podnet-conntrack` flushes its
//! flows on DEL. IPAM is delegated to the plugin the config names. The
//! binary is `src/bin/podnet-cni.rs`; the README says how to install it.
//!
//! Every ADD/DEL/CHECK holds an exclusive lock on `<stateDir>/lock`, so
//! concurrent invocations for different containers never interleave their
//! map and endpoint-id updates.

mod bpf;
mod config;
mod error;
mod ipam;
mod plugin;
mod result;
mod state;

pub use config::{
    check_version, parse_args, Command, Env, NetConf, DEFAULT_IDENTITY, DEFAULT_PIN_DIR,
    DEFAULT_STATE_DIR, SUPPORTED_VERSIONS,
};
pub use error::*;
pub use plugin::{host_ifname, run, version, Output, GATEWAY};
pub use result::{Dns, Interface, IpConfig, RouteConfig, Success};
pub use state::{Record, Store};

#[cfg(test)]
mod tests;
