//! Byte-exact Cilium conntrack keys and entries, typed pinned BPF maps, and
//! garbage collection that never stops silently and never deletes a flow the
//! datapath renewed.
//!
//! This is Cilium's `pkg/maps/ctmap` (and the SNAT parts of `pkg/maps/nat`)
//! in Rust, on libbpf-rs / libbpf-sys:
//!
//! * [`CtKey4`], [`CtKey6`] (14 / 38 bytes), their global flavours
//!   [`CtKey4Global`], [`CtKey6Global`], [`CtEntry`] (56 bytes), with
//!   [`TupleFlags`] and [`EntryFlags`];
//! * [`CtMap`]: open a map pinned by the datapath or by a Cilium agent
//!   (checked: type, key and value size), or create one; typed lookup,
//!   update, delete, count, streaming batch iteration;
//! * [`gc`] with a [`GcFilter`], [`ClockSource`], [`GcInterval`]: candidates
//!   found in the kernel by a shipped BPF walk ([`GcScan`]), each deleted
//!   atomically so a flow the datapath renews is never lost;
//! * [`GcController`]: the GC thread an agent embeds (adaptive interval,
//!   early wake-up, orphan SNAT purge, per-map statistics);
//! * [`dump_entries`]: `cilium bpf ct list global` text;
//! * [`nat`]: SNAT maps and [`nat::purge_orphan_nat_entries`];
//! * [`cluster`]: per-cluster CT maps (array of maps by cluster id);
//! * [`write_bpf_macros`], [`delete_if_upgrade_needed`], map pressure.
//!
//! ```no_run
//! use podnet_conntrack::{gc, ClockSource, CtMap, GcFilter};
//! let map = CtMap::open_named("/sys/fs/bpf/tc/globals", "cilium_ct4_global")?;
//! let mut filter = GcFilter::expired(&ClockSource::Monotonic)?;
//! let stats = gc(&map, &mut filter)?;
//! println!("{stats}; pressure {:.2}", map.pressure()?);
//! # Ok::<(), podnet_conntrack::Error>(())
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

pub mod cluster;
mod controller;
mod dump;
mod entry;
mod error;
mod gc;
mod kernel_scan;
pub use kernel_scan::RenewWriter;
mod key;
mod map;
mod names;
pub mod nat;
mod raw;
#[cfg(feature = "serde")]
mod serde_impls;

pub use controller::{GcController, GcControllerBuilder, GcRun, MapRun, MonotonicFn};
pub use dump::{dump_entries, dump_entries_with_time_diff};
pub use entry::{CtEntry, EntryFlags};
pub use error::{Error, Result};
pub use gc::{
    calculate_interval, gc, gc_candidates, ClockSource, EmitFn, GcFilter, GcInterval, GcScan,
    GcStats, GC_MAX_LRU_INTERVAL, GC_MIN_INTERVAL, GC_STARTING_INTERVAL,
};
pub use key::{
    proto_name, AnyCtKey, CtKey, CtKey4, CtKey4Global, CtKey6, CtKey6Global, IpFamily, TupleFlags,
    IPPROTO_TCP, IPPROTO_UDP,
};
pub use map::{
    filter_maps_by_proto, name_is_global, CreateOptions, CtMap, CtMapKind, CtProto, CtScope,
    Direction, Entries, DEFAULT_MAX_ENTRIES_ANY, DEFAULT_MAX_ENTRIES_LOCAL,
    DEFAULT_MAX_ENTRIES_TCP, DEFAULT_PIN_DIR, MAP_NAME_ANY4_GLOBAL, MAP_NAME_ANY6_GLOBAL,
    MAP_NAME_PREFIX, MAP_NAME_TCP4_GLOBAL, MAP_NAME_TCP6_GLOBAL,
};
pub use names::{delete_if_upgrade_needed, exists, write_bpf_macros, CtSizes};
pub use raw::{map_type_name, MapInfo, DEFAULT_BATCH};

/// The libbpf-rs whose types appear in this crate's API
/// ([`CtMap::to_map_handle`], the source of [`Error::Bpf`]).
pub use libbpf_rs;

/// The libbpf-sys this crate is built on, for raw bpf(2) calls next to
/// [`CtMap::as_fd`] (the benchmarks use it for their baselines).
pub use libbpf_sys;

/// Cilium's `Lookup(epname, src, dst, proto, ingress)`: opens the right map
/// in `dir` (TCP or any, by family and `proto`; the endpoint's or the global
/// one) and looks the flow up.
///
/// ```no_run
/// use podnet_conntrack::{lookup, Direction};
/// let e = lookup("/sys/fs/bpf/tc/globals".as_ref(), None,
///     "10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), 6, Direction::Egress)?;
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
///
/// # Errors
/// As [`CtMap::open_kind`] for the map, then as [`CtMap::lookup_flow`].
pub fn lookup(
    dir: &std::path::Path,
    endpoint: Option<u16>,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    proto: u8,
    direction: Direction,
) -> Result<Option<CtEntry>> {
    open_for_flow(dir, endpoint, src, proto)?.lookup_flow(src, dst, proto, direction)
}

/// Cilium's `Update(epname, src, dst, proto, ingress, updateFn)`: looks the
/// flow up and, if present, applies `f` and writes it back. Returns whether
/// the flow was found.
///
/// # Errors
/// As [`CtMap::open_kind`] for the map, then as [`CtMap::lookup_flow`].
pub fn update<F: FnOnce(&mut CtEntry)>(
    dir: &std::path::Path,
    endpoint: Option<u16>,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    proto: u8,
    direction: Direction,
    f: F,
) -> Result<bool> {
    open_for_flow(dir, endpoint, src, proto)?.update_flow(src, dst, proto, direction, f)
}

fn open_for_flow(
    dir: &std::path::Path,
    endpoint: Option<u16>,
    src: std::net::SocketAddr,
    proto: u8,
) -> Result<CtMap> {
    let kind = CtMapKind {
        family: if src.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        },
        proto: CtProto::for_protocol(proto),
        scope: CtScope::of_endpoint(endpoint),
    };
    CtMap::open_kind(dir, kind)
}
