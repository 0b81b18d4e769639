//! A libbpf-built pod datapath for native routing, with Cilium-compatible
//! conntrack maps, that a CNI agent embeds.
//!
//! * [`OBJECT`]: the compiled BPF object (from `src/bpf/datapath.bpf.c`,
//!   shipped prebuilt), for your own loader.
//! * [`Datapath`]: load it ([`Options`]: pin directory, map sizes, skip-FIB),
//!   fill the endpoint / IP cache / policy maps, [`Datapath::attach`] the
//!   programs ([`Hook`]) with tcx or tc, read [`Datapath::metrics`], hand the
//!   conntrack maps ([`Datapath::ct_map_paths`]) to the `podnet-conntrack` crate.
//! * Services ([`Service`], [`Datapath::upsert_services`]): `ClusterIP` DNAT
//!   per packet for pods, `NodePort` to local backends, and socket load
//!   balancing for the node's processes ([`Datapath::attach_socket_lb`]).
//!
//! Needs Linux 5.11 or later (tcx attach: 6.6), root or `CAP_BPF` and
//! `CAP_NET_ADMIN`, and a pin directory of its own on bpffs; the crate
//! README lists the kernel per feature and what the map sizes cost.
//!
//! ```no_run
//! use podnet_datapath::{Datapath, Hook, Options, PolicyKey, TrafficDirection};
//! // A pin directory of its own: never Cilium's `/sys/fs/bpf/tc/globals`.
//! let mut dp = Datapath::load(&Options::new("/sys/fs/bpf/podnet").skip_fib(true))?;
//! dp.attach(2, Hook::FromNetdev)?;
//! dp.deny(&PolicyKey::new(1001, TrafficDirection::Ingress).dport(22).protocol(6))?;
//! for m in dp.metrics()? {
//!     println!("{} {} {} packets", m.direction, m.reason_name(), m.packets);
//! }
//! # Ok::<(), podnet_datapath::Error>(())
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]
// Issue #10: every fallible call says how it fails, results worth using are
// #[must_use], and code in docs is marked as code (CI denies warnings).
#![warn(
    clippy::missing_errors_doc,
    clippy::must_use_candidate,
    clippy::doc_markdown
)]

mod attach;
mod checks;
mod datapath;
mod drop_reasons;
mod error;
mod events;
mod frag;
mod log;
pub mod maps;
mod masquerade;
pub mod monitor;
mod object;
mod owned;
mod prometheus;
mod service;
mod service_affinity;
mod snat_node;
mod sock_lb;

pub use attach::Hook;
pub use datapath::{
    AttachMode, CtMapPaths, Datapath, Options, Program, TestContext, TestOutput, TC_ACT_OK,
    TC_ACT_REDIRECT, TC_ACT_SHOT,
};
pub use error::{Error, Result};
pub use events::{
    bpf_file_name, message_type, policy_match_name, trace_reason_name, DatapathEvent, DropNotify,
    EventHeader, EventKind, Events, LostEvents, MonitorAggregation, ObsPoint, PolicyVerdict,
    TraceNotify, BPF_FILES,
};
pub use frag::{FragId4, FragId6, FragMapPaths, FragPorts};
pub use maps::{
    reason, CtTable, CtTuple4, CtTuple6, Endpoint, EndpointFlags, IpcacheInfo, Metric, PolicyKey,
    PolicyStats, RawCtEntry, TrafficDirection,
};
pub use masquerade::{
    Masquerade, MasqueradeError, NatMapPaths, RawNatEntry4, RawNatEntry6, MAX_NATIVE_ROUTING_CIDRS,
};
pub use object::OBJECT;
pub use prometheus::{EndpointMetric, MapPressure};
pub use service::{Backend, BackendState, L4Protocol, Service, ServiceKind, MAX_BACKENDS};
pub use service_affinity::MAX_AFFINITY_TIMEOUT;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The prefix type of [`Datapath::upsert_ipcache`], re-exported so callers
/// need no version-matched dependency of their own.
pub use ipnet;
/// libbpf-rs, whose types appear in [`Error`]'s sources, re-exported.
pub use libbpf_rs;
