//! Events from the datapath: drop, trace and policy verdict notifications
//! in Cilium's message layouts, read from the pinned ring buffer.
//!
//! The BPF side (`src/bpf/lib/events.h`, `drop_notify.h`, `trace.h`,
//! `policy_log.h`) writes Cilium's `struct drop_notify`,
//! `struct trace_notify` (version 1) and `struct policy_verdict_notify`
//! (`bpf/lib/*.h` of cilium/cilium 1.17), each followed by the first
//! bytes of the packet, into the ring buffer [`maps::EVENTS`]. Because the
//! buffer is pinned, a reader in any process opens it by path
//! ([`Events::open`]) and keeps reading across a reload of the datapath
//! (the next load re-uses the pin). `Display` of each event follows
//! `cilium monitor` (`pkg/monitor/datapath_*.go`); see [`crate::monitor`].

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapHandle, RingBuffer, RingBufferBuilder};

use crate::error::{Error, Result};
use crate::maps::{self, TrafficDirection};

/// Cilium's message types (`CILIUM_NOTIFY_*`, `pkg/monitor/api/types.go`).
pub mod message_type {
    /// `MessageTypeDrop`.
    pub const DROP: u8 = 1;
    /// `MessageTypeTrace`.
    pub const TRACE: u8 = 4;
    /// `MessageTypePolicyVerdict`.
    pub const POLICY_VERDICT: u8 = 5;
}

/// How many trace events the datapath sends, Cilium's monitor aggregation
/// levels (`--monitor-aggregation`, `pkg/option/monitor.go`).
///
/// Drop notifications and policy verdicts are not aggregated.
///
/// ```
/// use podnet_datapath::MonitorAggregation;
/// assert_eq!(MonitorAggregation::default(), MonitorAggregation::Medium);
/// assert_eq!("max".parse::<MonitorAggregation>(), Ok(MonitorAggregation::Max));
/// assert_eq!(MonitorAggregation::Off.to_string(), "none");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MonitorAggregation {
    /// Cilium's "none": a trace at every observation point for every
    /// packet, received (`from-endpoint`, `from-network`) and sent.
    Off,
    /// Cilium's default: no trace at the receive points; at the others only
    /// for a packet conntrack reports: a new connection, TCP flags seen for
    /// the first time in that direction (SYN, FIN, RST, ...), or the first
    /// packet after `CT_REPORT_INTERVAL` (5 s). An established flow sends
    /// no per-packet event.
    #[default]
    Medium,
    /// One trace per connection: its first packet at each send point.
    /// (Cilium's BPF treats "max" as "medium"; here it also drops the
    /// flag and interval reports.)
    Max,
}

impl MonitorAggregation {
    /// The level's number (Cilium's: none 0, medium 3, max 4).
    #[must_use]
    pub fn level(self) -> u32 {
        match self {
            MonitorAggregation::Off => 0,
            MonitorAggregation::Medium => 3,
            MonitorAggregation::Max => 4,
        }
    }
}

impl fmt::Display for MonitorAggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MonitorAggregation::Off => "none",
            MonitorAggregation::Medium => "medium",
            MonitorAggregation::Max => "max",
        })
    }
}

impl std::str::FromStr for MonitorAggregation {
    type Err = String;

    /// Cilium's names: `none` / `disabled` / `off`, `medium`, `max` / `maximum`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" | "disabled" | "off" => Ok(MonitorAggregation::Off),
            "medium" => Ok(MonitorAggregation::Medium),
            "max" | "maximum" => Ok(MonitorAggregation::Max),
            _ => Err(format!(
                "unknown monitor aggregation level {s:?} (none, medium, max)"
            )),
        }
    }
}

/// The observation point of a trace (Cilium's `enum trace_point`).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObsPoint(pub u8);

impl ObsPoint {
    /// Into a local endpoint (to-container, or a redirect to a pod).
    pub const TO_ENDPOINT: ObsPoint = ObsPoint(0);
    /// Handed to the node's stack.
    pub const TO_STACK: ObsPoint = ObsPoint(3);
    /// From a local endpoint (from-container).
    pub const FROM_ENDPOINT: ObsPoint = ObsPoint(5);
    /// From the underlay (from-netdev).
    pub const FROM_NETWORK: ObsPoint = ObsPoint(10);
    /// Redirected out of the node (skip-FIB).
    pub const TO_NETWORK: ObsPoint = ObsPoint(11);

    /// Cilium's name (`TraceObservationPoints`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "to-endpoint",
            1 => "to-proxy",
            2 => "to-host",
            3 => "to-stack",
            4 => "to-overlay",
            5 => "from-endpoint",
            6 => "from-proxy",
            7 => "from-host",
            8 => "from-stack",
            9 => "from-overlay",
            10 => "from-network",
            11 => "to-network",
            _ => "unknown",
        }
    }
}

/// Cilium's trace reasons (`pkg/monitor/datapath_trace.go`).
#[must_use]
pub fn trace_reason_name(reason: u8) -> &'static str {
    match reason & 0x7f {
        0 => "new",
        1 => "established",
        2 => "reply",
        3 => "related",
        4 => "reopened",
        5 => "unknown",
        _ => "unknown",
    }
}

/// The BPF source files a drop's `file` number names (the C side's
/// `EVENTS_FILE_ID` in `lib/events.h`, same order; Cilium's idea, podnet's
/// files). 0: a file not in the table.
pub const BPF_FILES: [(u8, &str); 9] = [
    (1, "datapath.bpf.c"),
    (2, "lb.h"),
    (3, "nat.h"),
    (4, "conntrack.h"),
    (5, "forward.h"),
    (6, "policy.h"),
    (7, "parse.h"),
    (8, "snat.h"),
    (9, "frag.h"),
];

/// The file name of a drop's `file` number.
#[must_use]
pub fn bpf_file_name(file: u8) -> String {
    BPF_FILES.iter().find(|(n, _)| *n == file).map_or_else(
        || format!("unknown({file})"),
        |(_, name)| (*name).to_string(),
    )
}

/// Cilium's `NOTIFY_CAPTURE_HDR` of every event.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// Message type ([`message_type`]).
    pub msg_type: u8,
    /// Drop reason, trace observation point, 0 for policy verdicts.
    pub subtype: u8,
    /// The local endpoint sending the packet (from-container), 0 when the
    /// sender is no local endpoint; for a policy verdict the endpoint whose
    /// policy decided.
    pub source: u16,
    /// `skb->hash` (Cilium shows it as the flow).
    pub hash: u32,
    /// Length of the packet.
    pub orig_len: u32,
    /// Bytes of the packet in the event.
    pub cap_len: u16,
}

/// A dropped packet (Cilium's `DropNotify`).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropNotify {
    /// The header; `subtype` is the reason.
    pub header: EventHeader,
    /// Source identity (0: not known at the point of the drop).
    pub src_identity: u32,
    /// Destination identity (0: not known).
    pub dst_identity: u32,
    /// The local endpoint the packet was going to (ingress drops).
    pub dst_endpoint: u32,
    /// Source line of the drop.
    pub line: u16,
    /// Source file number ([`bpf_file_name`]).
    pub file: u8,
    /// Extended error (0 here).
    pub ext_error: i8,
    /// The interface the program ran on.
    pub ifindex: u32,
    /// The first bytes of the packet (up to 128).
    pub packet: Vec<u8>,
}

impl DropNotify {
    /// The drop reason (`-DROP_*`, [`maps::reason`]).
    #[must_use]
    pub fn reason(&self) -> u8 {
        self.header.subtype
    }
}

/// A forwarded packet at an observation point (Cilium's `TraceNotify`, v1).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceNotify {
    /// The header; `subtype` is the observation point.
    pub header: EventHeader,
    /// Source identity (known for a new connection).
    pub src_identity: u32,
    /// Destination identity (known for a new connection).
    pub dst_identity: u32,
    /// The local endpoint it is delivered to (to-endpoint), else 0.
    pub dst_endpoint: u16,
    /// Trace reason ([`trace_reason_name`]): new, established, reply, related.
    pub reason: u8,
    /// An IPv6 packet.
    pub ipv6: bool,
    /// The interface the program ran on.
    pub ifindex: u32,
    /// Original address before a translation (unspecified here).
    pub orig_ip: IpAddr,
    /// The first bytes of the packet (up to 128).
    pub packet: Vec<u8>,
}

impl TraceNotify {
    /// The observation point.
    #[must_use]
    pub fn obs_point(&self) -> ObsPoint {
        ObsPoint(self.header.subtype)
    }
}

/// A policy decision for a new connection (Cilium's `PolicyVerdictNotify`).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyVerdict {
    /// The header; `source` is the local endpoint whose policy decided.
    pub header: EventHeader,
    /// The peer's identity.
    pub remote_identity: u32,
    /// 0 allowed, a negative `DROP_*` denied.
    pub verdict: i32,
    /// Destination port (host order).
    pub dst_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// Which way the connection goes, seen from the endpoint.
    pub direction: TrafficDirection,
    /// An IPv6 packet.
    pub ipv6: bool,
    /// Cilium's `POLICY_MATCH_*` ([`policy_match_name`]).
    pub match_type: u8,
    /// The first bytes of the packet (up to 128).
    pub packet: Vec<u8>,
}

impl PolicyVerdict {
    /// The local endpoint.
    #[must_use]
    pub fn endpoint(&self) -> u16 {
        self.header.source
    }

    /// Denied?
    #[must_use]
    pub fn denied(&self) -> bool {
        self.verdict < 0
    }
}

/// Cilium's name of a policy match type (`PolicyMatchType.String`).
#[must_use]
pub fn policy_match_name(match_type: u8) -> &'static str {
    match match_type {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}

/// Events the datapath could not write, summed over CPUs.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LostEvents {
    /// The ring buffer was full (the reader is too slow or gone).
    pub ring_full: u64,
    /// Drop notifications over the rate limit ([`crate::Options::drop_events_rate`]).
    pub rate_limited: u64,
}

/// An event from the datapath.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatapathEvent {
    /// A dropped packet.
    Drop(DropNotify),
    /// A forwarded packet at an observation point.
    Trace(TraceNotify),
    /// A policy decision.
    PolicyVerdict(PolicyVerdict),
    /// Events lost since the reader's last report (the reader's own
    /// message, from the datapath's counters).
    Lost(LostEvents),
    /// A message of a type this reader does not know.
    Unknown {
        /// Its type byte.
        msg_type: u8,
        /// Its bytes.
        data: Vec<u8>,
    },
}

/// Which events ([`DatapathEvent::kind`], `cilium monitor --type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `drop`.
    Drop,
    /// `trace`.
    Trace,
    /// `policy-verdict`.
    PolicyVerdict,
    /// Lost-events reports.
    Lost,
    /// Unknown messages.
    Unknown,
}

impl std::str::FromStr for EventKind {
    type Err = String;

    /// `cilium monitor --type` names: `drop`, `trace`, `policy-verdict`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "drop" => Ok(EventKind::Drop),
            "trace" => Ok(EventKind::Trace),
            "policy-verdict" => Ok(EventKind::PolicyVerdict),
            _ => Err(format!(
                "unknown event type {s:?} (drop, trace, policy-verdict)"
            )),
        }
    }
}

impl DatapathEvent {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match self {
            DatapathEvent::Drop(_) => EventKind::Drop,
            DatapathEvent::Trace(_) => EventKind::Trace,
            DatapathEvent::PolicyVerdict(_) => EventKind::PolicyVerdict,
            DatapathEvent::Lost(_) => EventKind::Lost,
            DatapathEvent::Unknown { .. } => EventKind::Unknown,
        }
    }

    /// The local endpoint the packet comes from (`cilium monitor --from`).
    #[must_use]
    pub fn from_endpoint(&self) -> Option<u16> {
        let ep = match self {
            DatapathEvent::Drop(d) => d.header.source,
            DatapathEvent::Trace(t) => t.header.source,
            DatapathEvent::PolicyVerdict(p) if p.direction == TrafficDirection::Egress => {
                p.endpoint()
            }
            _ => 0,
        };
        (ep != 0).then_some(ep)
    }

    /// The local endpoint the packet goes to (`cilium monitor --to`).
    #[must_use]
    pub fn to_endpoint(&self) -> Option<u16> {
        let ep = match self {
            DatapathEvent::Drop(d) => u16::try_from(d.dst_endpoint).unwrap_or(0),
            DatapathEvent::Trace(t) => t.dst_endpoint,
            DatapathEvent::PolicyVerdict(p) if p.direction == TrafficDirection::Ingress => {
                p.endpoint()
            }
            _ => 0,
        };
        (ep != 0).then_some(ep)
    }

    /// The packet bytes the event carries.
    #[must_use]
    pub fn packet(&self) -> &[u8] {
        match self {
            DatapathEvent::Drop(d) => &d.packet,
            DatapathEvent::Trace(t) => &t.packet,
            DatapathEvent::PolicyVerdict(p) => &p.packet,
            _ => &[],
        }
    }

    /// The packet's addresses, protocol, ports and TCP flags, when the
    /// captured bytes hold them.
    #[must_use]
    pub fn flow(&self) -> Option<crate::monitor::PacketSummary> {
        crate::monitor::PacketSummary::parse(self.packet())
    }

    /// Decodes one ring buffer record; `None` when it is shorter than its
    /// type's message.
    #[must_use]
    pub fn parse(data: &[u8]) -> Option<DatapathEvent> {
        let msg_type = *data.first()?;
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let header = EventHeader {
            msg_type,
            subtype: *data.get(1)?,
            source: u16_at(2)?,
            hash: u32_at(4)?,
            orig_len: u32_at(8)?,
            cap_len: u16_at(12)?,
        };
        let packet = |off: usize| -> Vec<u8> {
            let end = (off + usize::from(header.cap_len)).min(data.len());
            data.get(off..end).map(<[u8]>::to_vec).unwrap_or_default()
        };
        Some(match msg_type {
            message_type::DROP => DatapathEvent::Drop(DropNotify {
                header,
                src_identity: u32_at(16)?,
                dst_identity: u32_at(20)?,
                dst_endpoint: u32_at(24)?,
                line: u16_at(28)?,
                file: *data.get(30)?,
                ext_error: i8::from_ne_bytes([*data.get(31)?]),
                ifindex: u32_at(32)?,
                packet: packet(36),
            }),
            message_type::TRACE => {
                let ipv6 = *data.get(27)? & 1 != 0;
                let o: [u8; 16] = data.get(32..48)?.try_into().ok()?;
                DatapathEvent::Trace(TraceNotify {
                    header,
                    src_identity: u32_at(16)?,
                    dst_identity: u32_at(20)?,
                    dst_endpoint: u16_at(24)?,
                    reason: *data.get(26)?,
                    ipv6,
                    ifindex: u32_at(28)?,
                    orig_ip: if ipv6 {
                        IpAddr::V6(Ipv6Addr::from(o))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
                    },
                    packet: packet(48),
                })
            }
            message_type::POLICY_VERDICT => {
                let flags = *data.get(27)?;
                DatapathEvent::PolicyVerdict(PolicyVerdict {
                    header,
                    remote_identity: u32_at(16)?,
                    verdict: i32::from_ne_bytes(u32_at(20)?.to_ne_bytes()),
                    dst_port: u16_at(24)?,
                    proto: *data.get(26)?,
                    direction: if flags & 3 == 2 {
                        TrafficDirection::Egress
                    } else {
                        TrafficDirection::Ingress
                    },
                    ipv6: flags & 4 != 0,
                    match_type: (flags >> 3) & 7,
                    packet: packet(32),
                })
            }
            _ => DatapathEvent::Unknown {
                msg_type,
                data: data.to_vec(),
            },
        })
    }
}

/// Reader of the datapath's events, from the pins (any process).
///
/// [`Events::recv_timeout`] blocks up to a timeout, [`Events::try_recv`]
/// never blocks. Events the datapath could not write (ring buffer full,
/// drop notifications over the rate limit) come as [`DatapathEvent::Lost`] with
/// the counts since the last such report, and in total from
/// [`Events::lost`].
///
/// ```no_run
/// use std::time::Duration;
/// use podnet_datapath::{DatapathEvent, Events};
/// let mut events = Events::open("/sys/fs/bpf/podnet")?;
/// while let Some(ev) = events.recv_timeout(Duration::from_secs(1))? {
///     if let DatapathEvent::Drop(d) = &ev {
///         assert!(d.reason() > 0);
///     }
///     println!("{ev}");
/// }
/// # Ok::<(), podnet_datapath::Error>(())
/// ```
pub struct Events {
    ring: RingBuffer<'static>,
    queue: Arc<Mutex<VecDeque<DatapathEvent>>>,
    lost_map: MapHandle,
    reported: LostEvents,
    _ring_map: MapHandle,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("ring_fd", &self._ring_map.as_fd().as_raw_fd())
            .field("reported", &self.reported)
            .finish_non_exhaustive()
    }
}

fn pin_error(map: &'static str, op: &'static str, e: &libbpf_rs::Error) -> Error {
    let errno = crate::error::libbpf_errno(e).unwrap_or(libc::EINVAL);
    if errno == libc::EPERM || errno == libc::EACCES {
        return Error::Privileges {
            what: "opening the datapath's events",
        };
    }
    Error::Map {
        map,
        op,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

/// Most events one `recv`/`try_recv` call moves from the ring to the queue:
/// a reader that takes one at a time still frees the ring quickly.
const CONSUME_BATCH: usize = 4096;

impl Events {
    /// Opens the ring buffer and the lost-events counters pinned in
    /// `pin_dir` (the datapath's [`crate::Options::pin_dir`]). Lost events
    /// counted before the open are not reported as [`DatapathEvent::Lost`].
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when a pin is missing (`NotFound`: no datapath with
    /// events was loaded there) or cannot be opened or mapped;
    /// [`Error::Privileges`] without the rights to open BPF pins.
    pub fn open(pin_dir: impl AsRef<Path>) -> Result<Events> {
        let dir = pin_dir.as_ref();
        let ring_map = MapHandle::from_pinned_path(dir.join(maps::EVENTS))
            .map_err(|e| pin_error(maps::EVENTS, "open pin", &e))?;
        let lost_map = MapHandle::from_pinned_path(dir.join(maps::EVENTS_LOST))
            .map_err(|e| pin_error(maps::EVENTS_LOST, "open pin", &e))?;
        let queue: Arc<Mutex<VecDeque<DatapathEvent>>> = Arc::default();
        let q = Arc::clone(&queue);
        let mut b = RingBufferBuilder::new();
        b.add(&ring_map, move |data: &[u8]| {
            if let Some(ev) = DatapathEvent::parse(data) {
                if let Ok(mut q) = q.lock() {
                    q.push_back(ev);
                    // Stop this consume pass once a batch is queued.
                    if q.len() >= CONSUME_BATCH {
                        return 1;
                    }
                }
            }
            0
        })
        .map_err(|e| pin_error(maps::EVENTS, "add to ring buffer reader", &e))?;
        let ring = b
            .build()
            .map_err(|e| pin_error(maps::EVENTS, "map ring buffer", &e))?;
        let mut ev = Events {
            ring,
            queue,
            lost_map,
            reported: LostEvents::default(),
            _ring_map: ring_map,
        };
        ev.reported = ev.lost()?;
        Ok(ev)
    }

    /// Events the datapath could not write since it created the counters
    /// (summed over CPUs).
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the counters cannot be read.
    pub fn lost(&self) -> Result<LostEvents> {
        let read = |slot: u32| -> Result<u64> {
            let v = self
                .lost_map
                .lookup_percpu(&slot.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
                .map_err(|e| pin_error(maps::EVENTS_LOST, "lookup", &e))?;
            Ok(v.map_or(0, |cpus| {
                cpus.iter()
                    .filter_map(|b| b.get(..8))
                    .map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .sum()
            }))
        };
        Ok(LostEvents {
            ring_full: read(0)?,
            rate_limited: read(1)?,
        })
    }

    fn pop(&self) -> Option<DatapathEvent> {
        self.queue.lock().ok()?.pop_front()
    }

    /// An [`DatapathEvent::Lost`] when the counters grew since the last report.
    fn lost_report(&mut self) -> Result<Option<DatapathEvent>> {
        let now = self.lost()?;
        let delta = LostEvents {
            ring_full: now.ring_full.saturating_sub(self.reported.ring_full),
            rate_limited: now.rate_limited.saturating_sub(self.reported.rate_limited),
        };
        self.reported = now;
        Ok((delta != LostEvents::default()).then_some(DatapathEvent::Lost(delta)))
    }

    fn consume(&self) -> Result<()> {
        let rc = self.ring.consume_raw();
        if rc < 0 && rc != -libc::EINTR {
            return Err(Error::Map {
                map: maps::EVENTS,
                op: "consume",
                source: std::io::Error::from_raw_os_error(-rc),
            });
        }
        Ok(())
    }

    /// The next event, without blocking: `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when reading the ring buffer or the counters fails.
    pub fn try_recv(&mut self) -> Result<Option<DatapathEvent>> {
        if let Some(ev) = self.pop() {
            return Ok(Some(ev));
        }
        self.consume()?;
        if let Some(ev) = self.pop() {
            return Ok(Some(ev));
        }
        self.lost_report()
    }

    /// The next event, waiting up to `timeout` for one: `None` when none
    /// came.
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when polling the ring buffer or reading the counters fails.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<DatapathEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.try_recv()? {
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Wakes up on new data (epoll); a short cap so lost-event
            // counters are looked at now and then while the ring is quiet.
            let rc = self.ring.poll_raw(left.min(Duration::from_millis(200)));
            if rc < 0 && rc != -libc::EINTR {
                return Err(Error::Map {
                    map: maps::EVENTS,
                    op: "poll",
                    source: std::io::Error::from_raw_os_error(-rc),
                });
            }
        }
    }
}

impl crate::Datapath {
    /// A reader of this datapath's events (see [`Events`]; another
    /// process opens them with [`Events::open`] on the pin directory).
    ///
    /// # Errors
    ///
    /// As [`Events::open`].
    pub fn events(&self) -> Result<Events> {
        Events::open(self.pin_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(t: u8, sub: u8, src: u16, cap: u16) -> Vec<u8> {
        let mut b = vec![t, sub];
        b.extend_from_slice(&src.to_ne_bytes());
        b.extend_from_slice(&0x1234u32.to_ne_bytes());
        b.extend_from_slice(&60u32.to_ne_bytes());
        b.extend_from_slice(&cap.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b
    }

    #[test]
    fn drop_notify_decodes_cilium_layout() {
        let mut b = header(1, 133, 7, 2);
        for v in [20001u32, 10001, 101] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&99u16.to_ne_bytes());
        b.push(1);
        b.push(0);
        b.extend_from_slice(&12u32.to_ne_bytes());
        b.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
        let Some(DatapathEvent::Drop(d)) = DatapathEvent::parse(&b) else {
            panic!("not a drop");
        };
        assert_eq!(d.reason(), 133);
        assert_eq!(
            (d.src_identity, d.dst_identity, d.dst_endpoint),
            (20001, 10001, 101)
        );
        assert_eq!((d.line, d.file, d.ifindex), (99, 1, 12));
        assert_eq!(d.packet, vec![0xaa, 0xbb], "cap_len bytes only");
        assert_eq!(d.header.hash, 0x1234);
        assert!(DatapathEvent::parse(&b[..30]).is_none(), "truncated");
    }

    #[test]
    fn policy_verdict_flags_decode() {
        let mut b = header(5, 0, 1001, 0);
        b.extend_from_slice(&5002u32.to_ne_bytes());
        b.extend_from_slice(&(-181i32).to_ne_bytes());
        b.extend_from_slice(&80u16.to_ne_bytes());
        b.push(6);
        b.push(1 | (2 << 3)); // ingress, L3-L4
        b.extend_from_slice(&[0, 0, 0, 0]);
        let Some(DatapathEvent::PolicyVerdict(p)) = DatapathEvent::parse(&b) else {
            panic!("not a verdict");
        };
        assert!(p.denied());
        assert_eq!(p.direction, TrafficDirection::Ingress);
        assert_eq!(policy_match_name(p.match_type), "L3-L4");
        let ev = DatapathEvent::PolicyVerdict(p);
        assert_eq!(ev.to_endpoint(), Some(1001));
        assert_eq!(ev.from_endpoint(), None);
    }

    #[test]
    fn aggregation_names() {
        for l in [
            MonitorAggregation::Off,
            MonitorAggregation::Medium,
            MonitorAggregation::Max,
        ] {
            assert_eq!(l.to_string().parse::<MonitorAggregation>(), Ok(l));
        }
        assert!("low".parse::<MonitorAggregation>().is_err());
    }

    /// The C side's file table and this one agree, and every file that
    /// calls `drop()` is in both.
    #[test]
    fn bpf_file_table_covers_every_file_that_drops() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        let events_h = std::fs::read_to_string(dir.join("lib/events.h")).unwrap();
        for (n, name) in BPF_FILES {
            assert!(
                events_h.contains(&format!("EVENTS_FILE_IS(\"{name}\")")),
                "{name} missing in events.h"
            );
            let line = events_h
                .lines()
                .find(|l| l.contains(&format!("\"{name}\"")))
                .unwrap();
            assert!(
                line.contains(&format!("? {n} :")),
                "{name} is not {n} in events.h"
            );
        }
        let mut files = vec![dir.join("datapath.bpf.c")];
        for e in std::fs::read_dir(dir.join("lib")).unwrap() {
            files.push(e.unwrap().path());
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name != "metrics.h" && text.contains("drop(ctx,") {
                assert!(
                    BPF_FILES.iter().any(|(_, n)| *n == name),
                    "{name} calls drop() but has no file number"
                );
            }
        }
    }
}
