//! Loading the datapath, its maps and programs.

use std::collections::HashMap;
use std::ffi::c_void;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use libbpf_rs::{AsRawLibbpf, MapCore, ObjectBuilder};

use crate::attach::{Attachment, Hook};
use crate::error::{Error, Result};
use crate::maps::{self, *};
use crate::owned;

/// `CONFIG.trace` (`config.h`'s `PN_TRACE_*`): which packets get a trace.
const PN_TRACE_NONE: u32 = 0;
const PN_TRACE_REPORTED: u32 = 1;
const PN_TRACE_EVERY: u32 = 2;

/// How to load the datapath.
///
/// Built with [`Options::new`] (Cilium's sizes) or [`Options::small`] and
/// the setters; the fields stay readable.
///
/// ```
/// use podnet_datapath::{AttachMode, Options};
/// let o = Options::new("/sys/fs/bpf/podnet")
///     .skip_fib(true)
///     .attach_mode(AttachMode::Tc);
/// assert_eq!(o.ct_tcp_size, 524288);
/// assert!(o.skip_fib);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// bpffs directory the maps are pinned in (created if missing). Maps
    /// already pinned there are re-used, so conntrack survives a restart.
    pub pin_dir: PathBuf,
    /// Entries of `cilium_ct4_global` / `cilium_ct6_global` (Cilium: 512k).
    pub ct_tcp_size: u32,
    /// Entries of `cilium_ct_any4_global` / `cilium_ct_any6_global` (Cilium: 256k).
    pub ct_any_size: u32,
    /// Entries of the endpoints map.
    pub endpoints_size: u32,
    /// Entries of the IP cache.
    pub ipcache_size: u32,
    /// Entries of the policy map.
    pub policy_size: u32,
    /// Entries of each fragment map (`cilium_ipv4_frag_datagrams`,
    /// `cilium_ipv6_frag_datagrams`): datagrams in flight whose later
    /// fragments are still to come (Cilium's `bpf-fragments-map-max`: 8192).
    pub frag_size: u32,
    /// Forward remote traffic with `bpf_fib_lookup` + `bpf_redirect_neigh`
    /// instead of handing it to the stack.
    pub skip_fib: bool,
    /// Deliver to local pods with `bpf_redirect_peer` straight into the pod's
    /// namespace, running conntrack and ingress policy first (Cilium's
    /// "BPF host routing"; needs veth or netkit pods). Off: `bpf_redirect` to
    /// the host-side veth, whose egress runs `to_container`. Default on.
    pub redirect_peer: bool,
    /// Count packets and bytes per flow in the conntrack entries' `packets`
    /// / `bytes`, as Cilium does by default (its `CONNTRACK_ACCOUNTING`).
    /// The counts are exact, at the price of two atomic adds per packet,
    /// about a sixth of an established flow's cost in from-container (see
    /// the crate README). Off: the counters stay 0. Default on.
    pub ct_accounting: bool,
    /// Record each redirect's target so [`Datapath::last_redirect`] can read
    /// it (tests; costs a map write per redirected packet).
    pub trace_redirects: bool,
    /// How [`Datapath::attach`] attaches.
    pub attach_mode: AttachMode,
    /// Leave programs attached when the `Datapath` is dropped, so traffic
    /// keeps flowing while the agent restarts: tcx links are pinned under
    /// `pin_dir/links/` and taken over (program swapped in) by the next
    /// [`Datapath::attach`] of the same hook; tc filters stay and are
    /// replaced by the next attach of the same hook. [`Datapath::teardown`]
    /// detaches what this instance attached and every pinned link. Default off.
    pub keep_attached: bool,
    /// Send drop, trace and policy verdict events to the pinned ring
    /// buffer (read them with [`crate::Events`]). Default on.
    pub events: bool,
    /// How many trace events (Cilium's monitor aggregation). Default
    /// [`crate::MonitorAggregation::Medium`], Cilium's: no per-packet event
    /// on an established flow.
    pub monitor_aggregation: crate::MonitorAggregation,
    /// Size of the events ring buffer in bytes: a power of two, at least
    /// one page (4096). Default 1 MiB (about 5000 drop events).
    pub events_ring_size: u32,
    /// Drop notifications per second per CPU (a token bucket, as Cilium's
    /// `bpf-events-drop-rate-limit`); 0: no limit. Drops over it are
    /// counted ([`crate::LostEvents::rate_limited`]), still dropped and
    /// still in the metrics. Default 1000.
    pub drop_events_rate: u32,
    /// Burst of drop notifications per CPU (the bucket's size). Default 1000.
    pub drop_events_burst: u32,
    /// Count forwarded and dropped packets and bytes per endpoint
    /// ([`Datapath::endpoint_metrics`]). Default on.
    pub endpoint_metrics: bool,
    /// BPF masquerade (SNAT) of pods' traffic leaving the native-routing
    /// CIDRs, and `NodePort` to remote backends; default off.
    pub masquerade: crate::Masquerade,
    /// Entries of `cilium_snat_v4_external` / `cilium_snat_v6_external`
    /// (Cilium: 2/3 of the conntrack maps', 524288).
    pub nat_size: u32,
}

impl Options {
    /// Cilium's default sizes, pinned under `pin_dir`.
    #[must_use]
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        Options {
            pin_dir: pin_dir.into(),
            ct_tcp_size: 524_288,
            ct_any_size: 262_144,
            endpoints_size: 65_535,
            ipcache_size: 512_000,
            policy_size: 16_384,
            frag_size: 8192,
            skip_fib: false,
            redirect_peer: true,
            ct_accounting: true,
            trace_redirects: false,
            attach_mode: AttachMode::Auto,
            keep_attached: false,
            events: true,
            monitor_aggregation: crate::MonitorAggregation::Medium,
            events_ring_size: 1 << 20,
            drop_events_rate: 1000,
            drop_events_burst: 1000,
            endpoint_metrics: true,
            masquerade: crate::Masquerade::new(),
            nat_size: 524_288,
        }
    }

    /// Small maps, for tests and benchmarks.
    #[must_use]
    pub fn small(pin_dir: impl Into<PathBuf>) -> Self {
        Options {
            ct_tcp_size: 4096,
            ct_any_size: 4096,
            endpoints_size: 1024,
            ipcache_size: 1024,
            policy_size: 1024,
            frag_size: 1024,
            nat_size: 4096,
            ..Options::new(pin_dir)
        }
    }

    /// Sets the entries of each fragment map.
    #[must_use]
    pub fn frag_size(mut self, frag_size: u32) -> Self {
        self.frag_size = frag_size;
        self
    }

    /// Sets the bpffs directory the maps are pinned in.
    #[must_use]
    pub fn pin_dir(mut self, pin_dir: impl Into<PathBuf>) -> Self {
        self.pin_dir = pin_dir.into();
        self
    }

    /// Sets the entries of the TCP conntrack maps.
    #[must_use]
    pub fn ct_tcp_size(mut self, ct_tcp_size: u32) -> Self {
        self.ct_tcp_size = ct_tcp_size;
        self
    }

    /// Sets the entries of the non-TCP conntrack maps.
    #[must_use]
    pub fn ct_any_size(mut self, ct_any_size: u32) -> Self {
        self.ct_any_size = ct_any_size;
        self
    }

    /// Sets the entries of the endpoints map.
    #[must_use]
    pub fn endpoints_size(mut self, endpoints_size: u32) -> Self {
        self.endpoints_size = endpoints_size;
        self
    }

    /// Sets the entries of the IP cache.
    #[must_use]
    pub fn ipcache_size(mut self, ipcache_size: u32) -> Self {
        self.ipcache_size = ipcache_size;
        self
    }

    /// Sets the entries of the policy map.
    #[must_use]
    pub fn policy_size(mut self, policy_size: u32) -> Self {
        self.policy_size = policy_size;
        self
    }

    /// Forward remote traffic with `bpf_fib_lookup` + `bpf_redirect_neigh` (see the field).
    #[must_use]
    pub fn skip_fib(mut self, skip_fib: bool) -> Self {
        self.skip_fib = skip_fib;
        self
    }

    /// Deliver to local pods with `bpf_redirect_peer` (see the field).
    #[must_use]
    pub fn redirect_peer(mut self, redirect_peer: bool) -> Self {
        self.redirect_peer = redirect_peer;
        self
    }

    /// Count packets and bytes per flow (see the field).
    #[must_use]
    pub fn ct_accounting(mut self, ct_accounting: bool) -> Self {
        self.ct_accounting = ct_accounting;
        self
    }

    /// Record each redirect's target for [`Datapath::last_redirect`].
    #[must_use]
    pub fn trace_redirects(mut self, trace_redirects: bool) -> Self {
        self.trace_redirects = trace_redirects;
        self
    }

    /// Sets how [`Datapath::attach`] attaches.
    #[must_use]
    pub fn attach_mode(mut self, attach_mode: AttachMode) -> Self {
        self.attach_mode = attach_mode;
        self
    }

    /// Leave programs attached when the `Datapath` is dropped (see the field).
    #[must_use]
    pub fn keep_attached(mut self, keep_attached: bool) -> Self {
        self.keep_attached = keep_attached;
        self
    }

    /// Send events to the ring buffer (see the field).
    #[must_use]
    pub fn events(mut self, events: bool) -> Self {
        self.events = events;
        self
    }

    /// Sets the monitor aggregation level (see the field).
    #[must_use]
    pub fn monitor_aggregation(mut self, level: crate::MonitorAggregation) -> Self {
        self.monitor_aggregation = level;
        self
    }

    /// Sets the events ring buffer's size in bytes (see the field).
    #[must_use]
    pub fn events_ring_size(mut self, bytes: u32) -> Self {
        self.events_ring_size = bytes;
        self
    }

    /// Sets the drop notifications per second per CPU and the burst (0, _:
    /// no limit).
    #[must_use]
    pub fn drop_events_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.drop_events_rate = per_second;
        self.drop_events_burst = burst;
        self
    }

    /// Count packets and bytes per endpoint (see the field).
    #[must_use]
    pub fn endpoint_metrics(mut self, endpoint_metrics: bool) -> Self {
        self.endpoint_metrics = endpoint_metrics;
        self
    }

    /// Sets the masquerade settings (checked by [`Datapath::load`]).
    #[must_use]
    pub fn masquerade(mut self, masquerade: crate::Masquerade) -> Self {
        self.masquerade = masquerade;
        self
    }

    /// Sets the entries of the SNAT maps.
    #[must_use]
    pub fn nat_size(mut self, nat_size: u32) -> Self {
        self.nat_size = nat_size;
        self
    }
}

/// How programs are attached to interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// tcx where the kernel has it (6.6+), tc clsact otherwise.
    Auto,
    /// tcx links only.
    Tcx,
    /// tc clsact filters (direct action) only.
    Tc,
}

/// A program of the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Program {
    /// `from_container`: host-side veth ingress of a pod.
    FromContainer,
    /// `to_container`: host-side veth egress (into the pod).
    ToContainer,
    /// `from_netdev`: underlay ingress.
    FromNetdev,
    /// `tc_pass`: returns `TC_ACT_OK` (benchmark baseline).
    Pass,
    /// `tc_ct_lookup`: parses an IPv4 packet to its ports and looks its flow
    /// up in the conntrack map, nothing else; `TC_ACT_OK` when found,
    /// `TC_ACT_SHOT` when not (benchmark reference: the cost floor of any
    /// conntrack-ing datapath).
    CtLookup,
    /// `to_netdev`: underlay egress (masquerade).
    ToNetdev,
}

impl Program {
    /// The program's name in the object.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Program::FromContainer => "from_container",
            Program::ToContainer => "to_container",
            Program::FromNetdev => "from_netdev",
            Program::Pass => "tc_pass",
            Program::CtLookup => "tc_ct_lookup",
            Program::ToNetdev => "to_netdev",
        }
    }

    const ALL: [Program; 6] = [
        Program::FromContainer,
        Program::ToContainer,
        Program::FromNetdev,
        Program::Pass,
        Program::CtLookup,
        Program::ToNetdev,
    ];
}

/// Paths of the four conntrack maps, for the `conntrack` crate.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtMapPaths {
    /// `cilium_ct4_global`.
    pub tcp4: PathBuf,
    /// `cilium_ct_any4_global`.
    pub any4: PathBuf,
    /// `cilium_ct6_global`.
    pub tcp6: PathBuf,
    /// `cilium_ct_any6_global`.
    pub any6: PathBuf,
}

/// Input of a `BPF_PROG_TEST_RUN`.
///
/// ```
/// let ctx = podnet_datapath::TestContext::new().ingress_ifindex(10).repeat(100);
/// assert_eq!(ctx.mark, 0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct TestContext {
    /// `skb->ingress_ifindex` (from-container checks the source pod's veth).
    pub ingress_ifindex: u32,
    /// `skb->mark`.
    pub mark: u32,
    /// Repetitions (0 = 1).
    pub repeat: u32,
}

impl TestContext {
    /// Ingress ifindex 0, mark 0, one run.
    #[must_use]
    pub fn new() -> Self {
        TestContext::default()
    }

    /// Sets `skb->ingress_ifindex`.
    #[must_use]
    pub fn ingress_ifindex(mut self, ifindex: u32) -> Self {
        self.ingress_ifindex = ifindex;
        self
    }

    /// Sets `skb->mark`.
    #[must_use]
    pub fn mark(mut self, mark: u32) -> Self {
        self.mark = mark;
        self
    }

    /// Sets the repetitions (0 = 1).
    #[must_use]
    pub fn repeat(mut self, repeat: u32) -> Self {
        self.repeat = repeat;
        self
    }
}

/// Output of a `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug)]
pub struct TestOutput {
    /// The program's return value (`TC_ACT_OK` 0, `TC_ACT_SHOT` 2, `TC_ACT_REDIRECT` 7).
    pub retval: u32,
    /// The packet after the program.
    pub data: Vec<u8>,
    /// `skb->mark` after the program.
    pub mark: u32,
    /// Average time per repetition, as the kernel measured it.
    pub duration: Duration,
}

/// `TC_ACT_OK`.
pub const TC_ACT_OK: u32 = 0;
/// `TC_ACT_SHOT`.
pub const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_REDIRECT`.
pub const TC_ACT_REDIRECT: u32 = 7;

/// The loaded datapath: programs, pinned maps and attachments.
///
/// Maps and programs do not belong to a network namespace; attaching does
/// (it uses the calling thread's namespace).
///
/// ```no_run
/// use podnet_datapath::{Datapath, Endpoint, EndpointFlags, Hook, Options};
/// let mut dp = Datapath::load(&Options::new("/sys/fs/bpf/podnet"))?;
/// dp.upsert_endpoint(
///     &Endpoint::new("10.1.0.2".parse().unwrap(), 7)
///         .mac([2, 0, 0, 0, 0, 2])
///         .node_mac([2, 0, 0, 0, 0, 1])
///         .id(1001)
///         .identity(5001)
///         .flags(EndpointFlags::INGRESS_ENFORCE),
/// )?;
/// dp.attach(7, Hook::FromContainer)?;
/// dp.attach(7, Hook::ToContainer)?;
/// # Ok::<(), podnet_datapath::Error>(())
/// ```
#[derive(Debug)]
pub struct Datapath {
    pin_dir: PathBuf,
    /// Directories `load` made for the pin dir, deepest first.
    created_dirs: Vec<PathBuf>,
    /// The pins `teardown` removes: those this datapath or an earlier one
    /// of ours created.
    owned_pins: Vec<&'static str>,
    maps: HashMap<&'static str, OwnedFd>,
    progs: HashMap<Program, OwnedFd>,
    attach_mode: AttachMode,
    keep_attached: bool,
    attachments: Vec<Attachment>,
    ncpus: usize,
    /// What `attach` of [`Hook::ToNetdev`] masquerades.
    pub(crate) masquerade: crate::Masquerade,
    /// The socket load balancing programs (`crate::sock_lb`), by name.
    pub(crate) sock_progs: Vec<(&'static str, OwnedFd)>,
    /// Their cgroup links, per cgroup attached to.
    pub(crate) sock_links: Vec<crate::sock_lb::SockLbLinks>,
}

/// The error of map call `op` on `map` that returned `rc` (a negative errno).
fn map_error(map: &'static str, op: &'static str, rc: i32) -> Error {
    Error::Map {
        map,
        op,
        source: io::Error::from_raw_os_error(-rc),
    }
}

/// A map call's `rc`: `Ok(true)` on success, `Ok(false)` for ENOENT (no
/// such key, or no next key), else the error naming the map and `op`.
fn map_found(map: &'static str, op: &'static str, rc: i32) -> Result<bool> {
    match rc {
        0 => Ok(true),
        e if e == -libc::ENOENT => Ok(false),
        e => Err(map_error(map, op, e)),
    }
}

/// Creates `dir` and its missing parents; returns the directories this call
/// made, deepest first. A directory someone else creates meanwhile is not
/// counted as ours.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.exists()).collect();
    for d in missing.into_iter().rev() {
        if d.as_os_str().is_empty() {
            continue;
        }
        match std::fs::create_dir(d) {
            Ok(()) => made.push(d.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => {
                made.reverse();
                remove_empty_dirs(&made);
                return Err(e);
            }
        }
    }
    made.reverse();
    Ok(made)
}

/// Removes `dirs` (deepest first) while they are empty; stops at the first
/// that is not (it holds something that is not ours to remove).
fn remove_empty_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        if std::fs::remove_dir(d).is_err() {
            return;
        }
    }
}

fn map_names() -> impl Iterator<Item = &'static str> {
    maps::PINNED.into_iter().chain([
        maps::REDIRECT_TRACE,
        crate::maps::SNAT_ADDRS,
        maps::SNAT_NODE,
    ])
}

impl Datapath {
    /// Opens the embedded object, sizes and pins its maps under
    /// `opts.pin_dir` (re-using maps pinned there), and loads the programs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a map size of 0; [`Error::Privileges`]
    /// without `CAP_BPF` and `CAP_NET_ADMIN`; [`Error::NotBpffs`] when the pin
    /// directory is not on bpffs; [`Error::PinMismatch`] when a map pinned
    /// there has another layout or size; [`Error::PinDir`], [`Error::Open`],
    /// [`Error::Prepare`] or [`Error::Load`] (see [`Error::verifier_log`])
    /// when libbpf or the kernel fail. Nothing this call created is left.
    pub fn load(opts: &Options) -> Result<Datapath> {
        for (what, v) in [
            ("ct_tcp_size", opts.ct_tcp_size),
            ("ct_any_size", opts.ct_any_size),
            ("endpoints_size", opts.endpoints_size),
            ("ipcache_size", opts.ipcache_size),
            ("policy_size", opts.policy_size),
            ("frag_size", opts.frag_size),
            ("nat_size", opts.nat_size),
        ] {
            if v == 0 {
                return Err(Error::InvalidInput {
                    what,
                    reason: "a map needs at least one entry".into(),
                });
            }
        }
        if !opts.events_ring_size.is_power_of_two() || opts.events_ring_size < 4096 {
            return Err(Error::InvalidInput {
                what: "events_ring_size",
                reason: format!(
                    "{} bytes: a BPF ring buffer is a power of two of at least a page (4096)",
                    opts.events_ring_size
                ),
            });
        }
        opts.masquerade.validate()?;
        crate::checks::privileges("loading the datapath")?;
        crate::checks::on_bpffs(&opts.pin_dir)?;
        let created_dirs = create_dirs(&opts.pin_dir).map_err(|source| Error::PinDir {
            path: opts.pin_dir.clone(),
            source,
        })?;

        let loaded = Self::load_in(opts, created_dirs.clone());
        if loaded.is_err() {
            // libbpf unpins what it pinned on failure; leave no directory
            // behind that this call made, parents included.
            remove_empty_dirs(&created_dirs);
        }
        loaded
    }

    fn load_in(opts: &Options, created_dirs: Vec<PathBuf>) -> Result<Datapath> {
        let mut builder = ObjectBuilder::default();
        builder
            .pin_root_path(&opts.pin_dir)
            .map_err(|source| Error::PinDir {
                path: opts.pin_dir.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, source.to_string()),
            })?;
        let mut open = builder
            .open_memory(crate::OBJECT)
            .map_err(|source| Error::Open { source })?;

        // struct pn_config, in order: the options, then what the datapath
        // derives from them (config.h).
        let trace = match (opts.events, opts.monitor_aggregation) {
            (false, _) => PN_TRACE_NONE,
            (true, crate::MonitorAggregation::Off) => PN_TRACE_EVERY,
            (true, _) => PN_TRACE_REPORTED,
        };
        let config: [u32; 12] = [
            u32::from(opts.skip_fib),
            u32::from(opts.trace_redirects),
            u32::from(opts.redirect_peer),
            u32::from(opts.ct_accounting),
            u32::from(opts.events),
            opts.drop_events_rate,
            opts.drop_events_burst.max(1),
            u32::from(opts.endpoint_metrics),
            u32::from(opts.events || opts.endpoint_metrics),
            trace,
            u32::from(opts.events && opts.monitor_aggregation == crate::MonitorAggregation::Medium),
            // events.h's CT_STATE_REPORT on every packet when each is traced.
            u32::from(trace == PN_TRACE_EVERY),
        ];
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            let size = match name.as_str() {
                maps::CT4_TCP | maps::CT6_TCP => Some(opts.ct_tcp_size),
                maps::CT4_ANY | maps::CT6_ANY => Some(opts.ct_any_size),
                maps::LB4_REVERSE_SK | maps::LB6_REVERSE_SK => Some(opts.ct_any_size),
                maps::ENDPOINTS => Some(opts.endpoints_size),
                maps::IPCACHE => Some(opts.ipcache_size),
                maps::POLICY => Some(opts.policy_size),
                maps::EVENTS => Some(opts.events_ring_size),
                maps::FRAG4 | maps::FRAG6 => Some(opts.frag_size),
                maps::SNAT4 | maps::SNAT6 => Some(opts.nat_size),
                _ => None,
            };
            if let Some(size) = size {
                m.set_max_entries(size).map_err(|source| Error::Prepare {
                    map: name.clone(),
                    source,
                })?;
            }
            if maps::PINNED.contains(&name.as_str()) {
                let raw = m.as_libbpf_object().as_ptr();
                // SAFETY: raw is the open map, valid while `open` lives.
                let shape = unsafe {
                    crate::checks::MapShape {
                        name: name.clone(),
                        map_type: libbpf_sys::bpf_map__type(raw),
                        key_size: libbpf_sys::bpf_map__key_size(raw),
                        value_size: libbpf_sys::bpf_map__value_size(raw),
                        max_entries: libbpf_sys::bpf_map__max_entries(raw),
                        map_flags: libbpf_sys::bpf_map__map_flags(raw),
                    }
                };
                crate::checks::pin_compatible(&opts.pin_dir, &shape)?;
            }
            if name.ends_with(".rodata.snat") {
                crate::masquerade::write_config(&mut m, &name, &opts.masquerade)?;
            }
            if name.ends_with(".rodata") {
                let Some(init) = m.initial_value_mut() else {
                    return Err(Error::Prepare {
                        map: name,
                        source: libbpf_rs::Error::from(io::Error::other("no initial value")),
                    });
                };
                let Some(dst) = init.get_mut(..config.len() * 4) else {
                    return Err(Error::Prepare {
                        map: name,
                        source: libbpf_rs::Error::from(io::Error::other(
                            "smaller than struct pn_config",
                        )),
                    });
                };
                for (d, v) in dst.chunks_exact_mut(4).zip(config) {
                    d.copy_from_slice(&v.to_ne_bytes());
                }
            }
        }

        // Pins this load finds are re-used. They are ours to unpin at
        // teardown only when a podnet datapath made them (recorded in
        // `podnet_owned`); others belong to someone else (a running
        // Cilium's conntrack maps, say) and stay.
        let new_mask = maps::PINNED
            .iter()
            .enumerate()
            .filter(|(_, n)| !opts.pin_dir.join(n).exists())
            .fold(0u32, |m, (i, _)| m | (1 << i));
        let owned_mask = match owned::read(&opts.pin_dir)? {
            Some(recorded) => recorded | new_mask,
            // Pins of a podnet that kept no record: all of them are its.
            None if !opts.pin_dir.join(maps::ENDPOINTS_GENERATION).exists() => new_mask,
            None => u32::MAX,
        };

        let (loaded, log) = crate::log::capture(|| open.load());
        if let Err(e) = &loaded {
            if crate::error::libbpf_errno(e) == Some(libc::EPERM) {
                return Err(Error::Privileges {
                    what: "loading the datapath",
                });
            }
        }
        let obj = loaded.map_err(|source| Error::Load {
            pin_dir: opts.pin_dir.clone(),
            source,
            verifier_log: log
                .lines()
                .filter(|l| !l.starts_with("libbpf: elf:") && !l.contains("skipping"))
                .collect::<Vec<_>>()
                .join("\n"),
        })?;

        if let Err(e) = owned::write(&opts.pin_dir, owned_mask) {
            // Leave nothing this call pinned.
            for (i, n) in maps::PINNED.iter().enumerate() {
                if new_mask & (1 << i) != 0 {
                    let _ = std::fs::remove_file(opts.pin_dir.join(n));
                }
            }
            return Err(e);
        }
        let owned_pins: Vec<&'static str> = maps::PINNED
            .into_iter()
            .enumerate()
            .filter(|(i, _)| owned_mask & (1 << i) != 0)
            .map(|(_, n)| n)
            .collect();

        let mut map_fds = HashMap::new();
        for m in obj.maps() {
            let name = m.name().to_string_lossy();
            if let Some(n) = map_names().find(|n| *n == name) {
                let fd = m
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| Error::Map {
                        map: n,
                        op: "dup fd",
                        source,
                    })?;
                map_fds.insert(n, fd);
            }
        }
        let mut progs = HashMap::new();
        let mut sock_progs = Vec::new();
        for p in obj.progs() {
            let name = p.name().to_string_lossy();
            if let Some(sock) = crate::sock_lb::PROGRAMS.iter().find(|x| x.0 == name) {
                let fd = p
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| Error::TestRun {
                        program: sock.0,
                        source,
                    })?;
                sock_progs.push((sock.0, fd));
            }
            if let Some(prog) = Program::ALL.into_iter().find(|x| x.name() == name) {
                let fd = p
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|source| Error::TestRun {
                        program: prog.name(),
                        source,
                    })?;
                progs.insert(prog, fd);
            }
        }
        // Every map and program the accessors index must be there.
        if let Some(missing) = map_names().find(|n| !map_fds.contains_key(n)) {
            return Err(map_error(missing, "find in the object", -libc::ENOENT));
        }
        if let Some(missing) = Program::ALL.into_iter().find(|p| !progs.contains_key(p)) {
            return Err(Error::TestRun {
                program: missing.name(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        // SAFETY: no preconditions.
        let ncpus = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
        let dp = Datapath {
            pin_dir: opts.pin_dir.clone(),
            created_dirs,
            owned_pins,
            maps: map_fds,
            progs,
            attach_mode: opts.attach_mode,
            keep_attached: opts.keep_attached,
            attachments: Vec::new(),
            ncpus: usize::try_from(ncpus).unwrap_or(1).max(1),
            masquerade: opts.masquerade.clone(),
            sock_progs,
            sock_links: Vec::new(),
        };
        // A new map holds generation 0, which disables the cache; a re-used
        // one keeps its value, and so do the stamps taken against it.
        let mut gen = [0u8; 8];
        dp.lookup(maps::ENDPOINTS_GENERATION, &0u32.to_ne_bytes(), &mut gen)?;
        if u64::from_ne_bytes(gen) == 0 {
            dp.new_endpoints_generation()?;
        }
        Ok(dp)
    }

    /// The pin directory.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Where the conntrack maps are pinned (open them with the `conntrack` crate).
    #[must_use]
    pub fn ct_map_paths(&self) -> CtMapPaths {
        CtMapPaths {
            tcp4: self.pin_dir.join(maps::CT4_TCP),
            any4: self.pin_dir.join(maps::CT4_ANY),
            tcp6: self.pin_dir.join(maps::CT6_TCP),
            any6: self.pin_dir.join(maps::CT6_ANY),
        }
    }

    /// A program's fd (for test runs or your own attach code).
    #[must_use]
    pub fn program_fd(&self, prog: Program) -> std::os::fd::BorrowedFd<'_> {
        // Every program is inserted by `load` (the object defines every one).
        self.progs[&prog].as_fd()
    }

    pub(crate) fn map_fd(&self, name: &'static str) -> i32 {
        self.maps[name].as_raw_fd()
    }

    /// A map's fd, for the crate's other modules.
    pub(crate) fn map_fd_raw(&self, name: &'static str) -> i32 {
        self.map_fd(name)
    }

    /// Possible CPUs (the per-CPU maps' value count).
    pub(crate) fn ncpus(&self) -> usize {
        self.ncpus
    }

    pub(crate) fn update(&self, map: &'static str, key: &[u8], value: &[u8]) -> Result<()> {
        // SAFETY: key/value buffers have the map's sizes (typed callers).
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.map_fd(map),
                key.as_ptr().cast::<c_void>(),
                value.as_ptr().cast::<c_void>(),
                0,
            )
        };
        if rc < 0 {
            return Err(map_error(map, "update", rc));
        }
        Ok(())
    }

    pub(crate) fn delete(&self, map: &'static str, key: &[u8]) -> Result<bool> {
        // SAFETY: key buffer has the map's key size.
        let rc = unsafe {
            libbpf_sys::bpf_map_delete_elem(self.map_fd(map), key.as_ptr().cast::<c_void>())
        };
        map_found(map, "delete", rc)
    }

    pub(crate) fn lookup(&self, map: &'static str, key: &[u8], value: &mut [u8]) -> Result<bool> {
        // SAFETY: value buffer is large enough for the map's value (per-CPU
        // callers pass ncpus * rounded size).
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.map_fd(map),
                key.as_ptr().cast::<c_void>(),
                value.as_mut_ptr().cast::<c_void>(),
            )
        };
        map_found(map, "lookup", rc)
    }

    pub(crate) fn keys<K: Pod + Default>(&self, map: &'static str) -> Result<Vec<K>> {
        let mut out = Vec::new();
        let mut cur: Option<K> = None;
        loop {
            let mut next = K::default();
            let prev_ptr = cur
                .as_ref()
                .map_or(std::ptr::null(), |k| (k as *const K).cast::<c_void>());
            // SAFETY: key buffers have the map's key size.
            let rc = unsafe {
                libbpf_sys::bpf_map_get_next_key(
                    self.map_fd(map),
                    prev_ptr,
                    (&mut next as *mut K).cast::<c_void>(),
                )
            };
            if !map_found(map, "iterate", rc)? {
                return Ok(out); // no next key
            }
            out.push(next);
            cur = Some(next);
        }
    }

    /// Adds or replaces a local endpoint.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an unspecified or multicast address, or an
    /// ifindex of 0 for a non-host endpoint; [`Error::Map`] when the update
    /// fails (`E2BIG`: the map is full).
    pub fn upsert_endpoint(&self, ep: &Endpoint) -> Result<()> {
        if ep.ip.is_unspecified() || ep.ip.is_multicast() {
            return Err(Error::InvalidInput {
                what: "endpoint address",
                reason: format!("{} cannot be an endpoint", ep.ip),
            });
        }
        if ep.ifindex == 0 && !ep.flags.contains(EndpointFlags::HOST) {
            return Err(Error::InvalidInput {
                what: "endpoint ifindex",
                reason: format!("endpoint {} needs the ifindex of its host-side veth", ep.ip),
            });
        }
        self.update(
            maps::ENDPOINTS,
            EndpointKey::new(ep.ip).as_bytes(),
            ep.value().as_bytes(),
        )?;
        self.new_endpoints_generation()
    }

    /// Removes a local endpoint; `Ok(false)` when there was none.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the kernel refuses the delete.
    pub fn remove_endpoint(&self, ip: IpAddr) -> Result<bool> {
        let removed = self.delete(maps::ENDPOINTS, EndpointKey::new(ip).as_bytes())?;
        if removed {
            self.new_endpoints_generation()?;
        }
        Ok(removed)
    }

    /// Writes a fresh generation of the endpoints map, which invalidates
    /// every "no local pod" answer cached in conntrack entries (see
    /// [`maps::ENDPOINTS_GENERATION`]). Random rather than a counter, so
    /// writers need no read-modify-write: each value written after a change
    /// differs from every stamp taken before it.
    fn new_endpoints_generation(&self) -> Result<()> {
        let mut gen = 0u64;
        while gen == 0 {
            let mut buf = [0u8; 8];
            // SAFETY: buf is valid for 8 bytes of writes.
            let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast::<c_void>(), buf.len(), 0) };
            if n != 8 {
                return Err(Error::Map {
                    map: maps::ENDPOINTS_GENERATION,
                    op: "new generation (getrandom)",
                    source: io::Error::last_os_error(),
                });
            }
            gen = u64::from_ne_bytes(buf);
        }
        self.update(
            maps::ENDPOINTS_GENERATION,
            &0u32.to_ne_bytes(),
            &gen.to_ne_bytes(),
        )
    }

    /// Reads an endpoint back.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the lookup fails.
    pub fn endpoint(&self, ip: IpAddr) -> Result<Option<Endpoint>> {
        let mut v = [0u8; size_of::<EndpointValue>()];
        if !self.lookup(maps::ENDPOINTS, EndpointKey::new(ip).as_bytes(), &mut v)? {
            return Ok(None);
        }
        Ok(EndpointValue::from_bytes(&v).map(|v| Endpoint::from_value(ip, &v)))
    }

    fn ipcache_key(prefix: IpNet) -> Result<IpcacheKey> {
        // The LPM trie would ignore host bits; refuse them, so that what is
        // stored is what was asked for (and removal names the same entry).
        if prefix.trunc() != prefix {
            return Err(Error::InvalidInput {
                what: "ipcache prefix",
                reason: format!(
                    "{prefix} has host bits set (the network is {})",
                    prefix.trunc()
                ),
            });
        }
        Ok(IpcacheKey::new(prefix.addr(), prefix.prefix_len()))
    }

    /// Adds or replaces the IP cache entry of `prefix`, which must have no
    /// host bits set (`10.2.0.0/24`, not `10.2.0.7/24`).
    ///
    /// ```no_run
    /// # let dp = podnet_datapath::Datapath::load(&podnet_datapath::Options::small("/sys/fs/bpf/podnet"))?;
    /// use podnet_datapath::IpcacheInfo;
    /// dp.upsert_ipcache("10.2.0.0/24".parse().unwrap(), &IpcacheInfo::new(20001))?;
    /// assert!(dp.upsert_ipcache("10.2.0.7/24".parse().unwrap(), &IpcacheInfo::new(1)).is_err());
    /// # Ok::<(), podnet_datapath::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a prefix with host bits set;
    /// [`Error::Map`] when the update fails (`ENOSPC`: the trie is full).
    pub fn upsert_ipcache(&self, prefix: IpNet, info: &IpcacheInfo) -> Result<()> {
        let key = Self::ipcache_key(prefix)?;
        self.update(maps::IPCACHE, key.as_bytes(), info.value().as_bytes())
    }

    /// Removes the IP cache entry of `prefix` (no host bits set);
    /// `Ok(false)` when there was none.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a prefix with host bits set; [`Error::Map`]
    /// when the delete fails.
    pub fn remove_ipcache(&self, prefix: IpNet) -> Result<bool> {
        let key = Self::ipcache_key(prefix)?;
        self.delete(maps::IPCACHE, key.as_bytes())
    }

    /// Longest-prefix match of one address in the IP cache.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the lookup fails.
    pub fn lookup_ipcache(&self, addr: IpAddr) -> Result<Option<IpcacheInfo>> {
        let key = IpcacheKey::new(addr, if addr.is_ipv4() { 32 } else { 128 });
        let mut v = [0u8; size_of::<IpcacheValue>()];
        if !self.lookup(maps::IPCACHE, key.as_bytes(), &mut v)? {
            return Ok(None);
        }
        Ok(IpcacheValue::from_bytes(&v).map(|v| IpcacheInfo::from_value(&v)))
    }

    fn set_policy(&self, key: &PolicyKey, deny: bool) -> Result<()> {
        let v = PolicyValue {
            deny: u8::from(deny),
            ..Default::default()
        };
        self.update(maps::POLICY, key.raw().as_bytes(), v.as_bytes())
    }

    /// Allows new connections matching `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the update fails (`E2BIG`: the map is full).
    pub fn allow(&self, key: &PolicyKey) -> Result<()> {
        self.set_policy(key, false)
    }

    /// Denies (drops, counted as "Policy denied by denylist") new connections
    /// matching `key`. Established connections keep flowing until their
    /// conntrack entries go (flush them with the `conntrack` crate).
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the update fails (`E2BIG`: the map is full).
    pub fn deny(&self, key: &PolicyKey) -> Result<()> {
        self.set_policy(key, true)
    }

    /// Removes a policy entry; `Ok(false)` when there was none.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the delete fails.
    pub fn remove_policy(&self, key: &PolicyKey) -> Result<bool> {
        self.delete(maps::POLICY, key.raw().as_bytes())
    }

    /// A policy entry's verdict and counters.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the lookup fails.
    pub fn policy(&self, key: &PolicyKey) -> Result<Option<PolicyStats>> {
        let mut v = [0u8; size_of::<PolicyValue>()];
        if !self.lookup(maps::POLICY, key.raw().as_bytes(), &mut v)? {
            return Ok(None);
        }
        Ok(PolicyValue::from_bytes(&v).map(|v| PolicyStats {
            deny: v.deny != 0,
            packets: v.packets,
            bytes: v.bytes,
        }))
    }

    /// Every non-zero metrics counter, summed over CPUs.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when a lookup fails.
    pub fn metrics(&self) -> Result<Vec<Metric>> {
        let mut out = Vec::new();
        let vsize = size_of::<MetricsValue>();
        let mut buf = vec![0u8; vsize * self.ncpus];
        for reason in 0..=255u32 {
            for (dirbits, direction) in [
                (1u32, TrafficDirection::Ingress),
                (2u32, TrafficDirection::Egress),
            ] {
                let idx = (reason << 2) | dirbits;
                if !self.lookup(maps::METRICS, &idx.to_ne_bytes(), &mut buf)? {
                    continue;
                }
                let (mut packets, mut bytes) = (0u64, 0u64);
                for cpu in buf.chunks_exact(vsize) {
                    if let Some(v) = MetricsValue::from_bytes(cpu) {
                        packets += v.count;
                        bytes += v.bytes;
                    }
                }
                if packets > 0 {
                    out.push(Metric {
                        reason: u8::try_from(reason).unwrap_or(u8::MAX),
                        direction,
                        packets,
                        bytes,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Packets counted for `reason` in `direction`.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when a lookup fails.
    pub fn metric(&self, reason: u8, direction: TrafficDirection) -> Result<u64> {
        Ok(self
            .metrics()?
            .iter()
            .filter(|m| m.reason == reason && m.direction == direction)
            .map(|m| m.packets)
            .sum())
    }

    /// All entries of IPv4 conntrack table `table`.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or a lookup fails.
    pub fn ct4_entries(&self, table: CtTable) -> Result<Vec<(CtTuple4, RawCtEntry)>> {
        self.ct_entries(match table {
            CtTable::Tcp => maps::CT4_TCP,
            CtTable::Any => maps::CT4_ANY,
        })
    }

    /// All entries of IPv6 conntrack table `table`.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating or a lookup fails.
    pub fn ct6_entries(&self, table: CtTable) -> Result<Vec<(CtTuple6, RawCtEntry)>> {
        self.ct_entries(match table {
            CtTable::Tcp => maps::CT6_TCP,
            CtTable::Any => maps::CT6_ANY,
        })
    }

    /// Every entry of conntrack map `map`, keyed by tuples of type `K`.
    fn ct_entries<K: Pod + Default>(&self, map: &'static str) -> Result<Vec<(K, RawCtEntry)>> {
        let mut out = Vec::new();
        for k in self.keys::<K>(map)? {
            let mut v = [0u8; size_of::<RawCtEntry>()];
            if self.lookup(map, k.as_bytes(), &mut v)? {
                if let Some(e) = RawCtEntry::from_bytes(&v) {
                    out.push((k, e));
                }
            }
        }
        Ok(out)
    }

    /// Target ifindex of the last redirect on any CPU, when loaded with
    /// `trace_redirects`; clears it.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the lookup or the reset fails.
    pub fn last_redirect(&self) -> Result<Option<u32>> {
        let mut buf = vec![0u8; 8 * self.ncpus];
        let key = 0u32.to_ne_bytes();
        if !self.lookup(maps::REDIRECT_TRACE, &key, &mut buf)? {
            return Ok(None);
        }
        let found = buf
            .chunks_exact(8)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .find(|v| *v != 0);
        let zero = vec![0u8; 8 * self.ncpus];
        self.update(maps::REDIRECT_TRACE, &key, &zero)?;
        Ok(found)
    }

    /// Runs `prog` on `packet` with `BPF_PROG_TEST_RUN` (in the calling thread's
    /// network namespace; map updates are real).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a packet shorter than an Ethernet header
    /// (14 bytes); [`Error::TestRun`] when the kernel refuses the run.
    pub fn test_run(&self, prog: Program, packet: &[u8], ctx: &TestContext) -> Result<TestOutput> {
        // The kernel refuses less than an Ethernet header with a bare EINVAL.
        if packet.len() < 14 {
            return Err(Error::InvalidInput {
                what: "test packet",
                reason: format!(
                    "{} bytes: a tc program's test run needs at least an Ethernet header (14 bytes)",
                    packet.len()
                ),
            });
        }
        let Ok(data_size_in) = u32::try_from(packet.len()) else {
            return Err(Error::InvalidInput {
                what: "test packet",
                reason: format!("{} bytes is too large", packet.len()),
            });
        };
        // `struct __sk_buff` (192 bytes on kernels >= 5.16) as u32 words:
        // mark is word 2, ingress_ifindex word 9.
        let mut skb_in = [0u32; 48];
        skb_in[2] = ctx.mark;
        skb_in[9] = ctx.ingress_ifindex;
        let mut skb_out = [0u32; 48];
        let mut data_out = vec![0u8; packet.len() + 256];
        // SAFETY: zeroed opts with sz set, as libbpf expects.
        let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
        opts.data_in = packet.as_ptr().cast();
        opts.data_size_in = data_size_in;
        opts.data_out = data_out.as_mut_ptr().cast();
        opts.data_size_out = data_out.len() as u32;
        opts.ctx_in = skb_in.as_ptr().cast();
        opts.ctx_size_in = size_of_val(&skb_in) as u32;
        opts.ctx_out = skb_out.as_mut_ptr().cast();
        opts.ctx_size_out = size_of_val(&skb_out) as u32;
        opts.repeat = ctx.repeat as i32;
        // SAFETY: every buffer outlives the call and has the size given.
        let rc = unsafe {
            libbpf_sys::bpf_prog_test_run_opts(self.program_fd(prog).as_raw_fd(), &mut opts)
        };
        if rc < 0 {
            return Err(Error::TestRun {
                program: prog.name(),
                source: io::Error::from_raw_os_error(-rc),
            });
        }
        data_out.truncate(opts.data_size_out as usize);
        Ok(TestOutput {
            retval: opts.retval,
            data: data_out,
            mark: skb_out[2],
            duration: Duration::from_nanos(u64::from(opts.duration)),
        })
    }

    /// Attaches the hook's program to `ifindex` in the calling thread's
    /// network namespace (tcx, or tc clsact as [`Options::attach_mode`] says).
    /// Attaching the same hook twice to one interface is a no-op.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownInterface`] when `ifindex` is not in the calling
    /// thread's namespace; [`Error::Attach`] when the kernel refuses.
    pub fn attach(&mut self, ifindex: u32, hook: Hook) -> Result<()> {
        self.attach_program(ifindex, hook, hook.program())
    }

    /// Attaches `program` where `hook` runs, in its place: for measurements,
    /// such as [`Program::Pass`] to learn what the hooks alone cost. Apart
    /// from the program, as [`Datapath::attach`]; [`Datapath::detach`] of
    /// the hook removes it.
    ///
    /// # Errors
    ///
    /// As [`Datapath::attach`].
    pub fn attach_program(&mut self, ifindex: u32, hook: Hook, program: Program) -> Result<()> {
        let ns = crate::attach::current_netns()?;
        if self
            .attachments
            .iter()
            .any(|a| a.matches(ns.id, ifindex, hook))
        {
            return Ok(());
        }
        let prog = self
            .program_fd(program)
            .try_clone_to_owned()
            .map_err(|source| Error::Attach {
                program: program.name(),
                ifindex,
                mode: "dup".into(),
                source,
            })?;
        let pin = self
            .keep_attached
            .then(|| crate::attach::link_pin_path(&self.pin_dir, &ns, ifindex, hook));
        let a = Attachment::attach(prog, program, ns, ifindex, hook, self.attach_mode, pin)?;
        self.attachments.push(a);
        if hook == Hook::ToNetdev {
            self.masquerade_interface(ifindex)?;
        }
        Ok(())
    }

    /// Detaches the hook's program from `ifindex`. The interface is looked up
    /// in the calling thread's namespace first, then anywhere it is unique.
    ///
    /// # Errors
    ///
    /// [`Error::NotAttached`] when this datapath did not attach the hook
    /// there; [`Error::Detach`] when the kernel refuses.
    pub fn detach(&mut self, ifindex: u32, hook: Hook) -> Result<()> {
        let ns = crate::attach::current_netns()?;
        let pos = self
            .attachments
            .iter()
            .position(|a| a.matches(ns.id, ifindex, hook))
            .or_else(|| {
                let all: Vec<usize> = self
                    .attachments
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.ifindex == ifindex && a.hook == hook)
                    .map(|(i, _)| i)
                    .collect();
                (all.len() == 1).then(|| all[0])
            })
            .ok_or(Error::NotAttached {
                program: hook.program().name(),
                ifindex,
            })?;
        let a = self.attachments.remove(pos);
        if hook == Hook::ToNetdev {
            self.record_snat_addrs(ifindex, None)?;
        }
        a.detach()
    }

    /// Attaches the hook's program to `ifindex` of the network namespace at
    /// `netns` (`/run/netns/NAME`, `/proc/PID/ns/net`), as
    /// [`Datapath::attach`] does there: the caller's threads stay where they
    /// are (a short-lived thread enters the namespace for the attach).
    ///
    /// ```no_run
    /// # let mut dp = podnet_datapath::Datapath::load(&podnet_datapath::Options::new("/sys/fs/bpf/podnet"))?;
    /// use podnet_datapath::Hook;
    /// dp.attach_in("/run/netns/node1", 7, Hook::FromContainer)?;
    /// dp.detach_in("/run/netns/node1", 7, Hook::FromContainer)?;
    /// # Ok::<(), podnet_datapath::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Netns`] when the namespace cannot be entered; otherwise as
    /// [`Datapath::attach`], for that namespace.
    pub fn attach_in(&mut self, netns: impl AsRef<Path>, ifindex: u32, hook: Hook) -> Result<()> {
        crate::attach::in_netns(netns.as_ref(), || self.attach(ifindex, hook))
    }

    /// Detaches what [`Datapath::attach_in`] attached to `ifindex` of the
    /// network namespace at `netns`.
    ///
    /// # Errors
    ///
    /// [`Error::Netns`] when the namespace cannot be entered; otherwise as
    /// [`Datapath::detach`].
    pub fn detach_in(&mut self, netns: impl AsRef<Path>, ifindex: u32, hook: Hook) -> Result<()> {
        crate::attach::in_netns(netns.as_ref(), || self.detach(ifindex, hook))
    }

    /// How many hooks are attached.
    #[must_use]
    pub fn attached(&self) -> usize {
        self.attachments.len()
    }

    /// Detaches everything and removes what this datapath created: the
    /// pinned links of `keep_attached`, the maps it pinned (or an earlier
    /// podnet datapath in the same directory did), and the directories
    /// [`Datapath::load`] made, while empty. Other pins in the directory stay,
    /// among them maps of the same name that were there before podnet's own
    /// (say, a running Cilium's conntrack maps).
    ///
    /// # Errors
    ///
    /// The first failure to detach or unpin; the rest is still attempted.
    pub fn teardown(mut self) -> Result<()> {
        let mut first_err = None;
        for a in std::mem::take(&mut self.attachments) {
            if let Err(e) = a.detach() {
                first_err.get_or_insert(e);
            }
        }
        // Links kept by an earlier instance and not taken over.
        if let Err(e) = crate::attach::detach_pinned_links(&self.pin_dir.join("links")) {
            first_err.get_or_insert(e);
        }
        for name in &self.owned_pins {
            let path = self.pin_dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    first_err.get_or_insert(Error::Unpin { path, source });
                }
            }
        }
        if first_err.is_none() {
            let path = self.pin_dir.join(owned::NAME);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    first_err.get_or_insert(Error::Unpin { path, source });
                }
            }
        }
        remove_empty_dirs(&self.created_dirs);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Datapath {
    /// Detaches what is still attached, unless `keep_attached` is set; pinned
    /// maps stay (conntrack survives).
    fn drop(&mut self) {
        if self.keep_attached {
            return;
        }
        for a in std::mem::take(&mut self.attachments) {
            if let Err(e) = a.detach() {
                // Display has the context only; the cause is the source.
                let cause =
                    std::error::Error::source(&e).map_or(String::new(), |c| format!(": {c}"));
                eprintln!("podnet-datapath: {e}{cause}");
            }
        }
    }
}
