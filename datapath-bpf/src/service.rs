//! Kubernetes services (ClusterIP-style frontends with their backends) in
//! Cilium's load-balancing maps: `cilium_lb{4,6}_services_v2`,
//! `cilium_lb{4,6}_backends_v3`, `cilium_lb{4,6}_reverse_nat`.
//!
//! Layouts from cilium/cilium 1.17 `bpf/lib/common.h` and
//! `pkg/maps/lbmap/` (facts only): a frontend is the slot-0 entry of its
//! (address, port, protocol) key with `count` active backend slots and
//! `qcount` slots after them for backends that take no new connections;
//! slot entries name a backend id in the backends map; the reverse NAT map
//! holds the frontend by service id (`rev_nat_index`, network order).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::datapath::Datapath;
use crate::error::{Error, Result};
use crate::maps::{self, Pod};
use crate::service_affinity::{
    match_key, AFFINITY_TIMEOUT_MASK, MAX_AFFINITY_TIMEOUT, SVC_FLAG_AFFINITY,
};

/// Most backends a service may have (a slot number is 16 bits; slot 0 is
/// the frontend).
pub const MAX_BACKENDS: usize = 65535;

/// The transport protocol of a frontend.
///
/// ```
/// use podnet_datapath::L4Protocol;
/// assert_eq!(L4Protocol::Udp.number(), 17);
/// assert_eq!(L4Protocol::Tcp.to_string(), "TCP");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4Protocol {
    /// The IP protocol number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
        }
    }

    fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(L4Protocol::Tcp),
            17 => Some(L4Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4Protocol::Tcp => "TCP",
            L4Protocol::Udp => "UDP",
        })
    }
}

/// Which kind of frontend a service is (Cilium's `SVC_FLAG_*`): where the
/// datapath translates it. A cluster IP is translated for pods only
/// (from-container); node port, external IP and load balancer frontends also
/// for traffic arriving from the underlay (from-netdev), to local backends
/// only (a remote backend would need SNAT).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// A cluster IP (Kubernetes `ClusterIP`).
    #[default]
    ClusterIp,
    /// A node address and node port (Kubernetes `NodePort`).
    NodePort,
    /// An external IP of the service.
    ExternalIp,
    /// A load balancer address (Kubernetes `LoadBalancer`).
    LoadBalancer,
}

const SVC_FLAG_EXTERNAL_IP: u8 = 1 << 0;
const SVC_FLAG_NODEPORT: u8 = 1 << 1;
const SVC_FLAG_LOADBALANCER: u8 = 1 << 5;
const SVC_FLAG_ROUTABLE: u8 = 1 << 6;

impl ServiceKind {
    fn flags(self) -> u8 {
        SVC_FLAG_ROUTABLE
            | match self {
                ServiceKind::ClusterIp => 0,
                ServiceKind::NodePort => SVC_FLAG_NODEPORT,
                ServiceKind::ExternalIp => SVC_FLAG_EXTERNAL_IP,
                ServiceKind::LoadBalancer => SVC_FLAG_LOADBALANCER,
            }
    }

    fn from_flags(f: u8) -> Self {
        if f & SVC_FLAG_NODEPORT != 0 {
            ServiceKind::NodePort
        } else if f & SVC_FLAG_EXTERNAL_IP != 0 {
            ServiceKind::ExternalIp
        } else if f & SVC_FLAG_LOADBALANCER != 0 {
            ServiceKind::LoadBalancer
        } else {
            ServiceKind::ClusterIp
        }
    }
}

/// A backend's state (Cilium's `BE_STATE_*`): only active backends get new
/// connections; terminating ones keep their established connections.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Takes new connections.
    #[default]
    Active,
    /// Keeps its established connections, gets no new ones.
    Terminating,
    /// Gets no connections (health check failed).
    Quarantined,
    /// Gets no connections.
    Maintenance,
}

impl BackendState {
    fn raw(self) -> u8 {
        match self {
            BackendState::Active => 0,
            BackendState::Terminating => 1,
            BackendState::Quarantined => 2,
            BackendState::Maintenance => 3,
        }
    }

    fn from_raw(v: u8) -> Self {
        match v {
            0 => BackendState::Active,
            1 => BackendState::Terminating,
            2 => BackendState::Quarantined,
            _ => BackendState::Maintenance,
        }
    }
}

/// One backend of a service.
///
/// ```
/// use podnet_datapath::Backend;
/// let b = Backend::new("10.1.0.2:8080".parse().unwrap());
/// assert_eq!(b.addr.port(), 8080);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Address and port connections are translated to.
    pub addr: SocketAddr,
    /// Whether it takes new connections.
    pub state: BackendState,
}

impl Backend {
    /// An active backend.
    #[must_use]
    pub fn new(addr: SocketAddr) -> Self {
        Backend {
            addr,
            state: BackendState::Active,
        }
    }

    /// The same backend in `state`.
    #[must_use]
    pub fn with_state(mut self, state: BackendState) -> Self {
        self.state = state;
        self
    }
}

/// A service: a frontend (virtual address, port, protocol), its id (the
/// reverse NAT index, unique per frontend, not 0) and its backends.
///
/// ```
/// use podnet_datapath::{Backend, L4Protocol, Service};
/// let svc = Service::new(7, "10.96.0.10:53".parse().unwrap(), L4Protocol::Udp)
///     .backend(Backend::new("10.1.0.2:53".parse().unwrap()))
///     .backend(Backend::new("10.2.0.2:53".parse().unwrap()));
/// assert_eq!(svc.backends.len(), 2);
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Service id: Cilium's `rev_nat_index` (1..=65535).
    pub id: u16,
    /// Virtual address and port.
    pub frontend: SocketAddr,
    /// Protocol of the frontend.
    pub protocol: L4Protocol,
    /// Kind of frontend (default: cluster IP).
    pub kind: ServiceKind,
    /// Backends, in slot order.
    pub backends: Vec<Backend>,
    /// Session affinity (Kubernetes' `sessionAffinity: ClientIP`) with its
    /// timeout in seconds (`timeoutSeconds`, 1..=[`MAX_AFFINITY_TIMEOUT`]):
    /// a client's new connection goes to the backend the client's last new
    /// connection got, while that backend is active and the timeout has not
    /// run out since. `None` (the default): every new connection picks a
    /// backend at random.
    pub session_affinity: Option<u32>,
}

impl Service {
    /// A service without backends (new connections to it are dropped as
    /// `DROP_NO_SERVICE`).
    #[must_use]
    pub fn new(id: u16, frontend: SocketAddr, protocol: L4Protocol) -> Self {
        Service {
            id,
            frontend,
            protocol,
            kind: ServiceKind::ClusterIp,
            backends: Vec::new(),
            session_affinity: None,
        }
    }

    /// The same service with session affinity by client address, for
    /// `timeout_secs` seconds after a client's last new connection
    /// (Kubernetes' default is 10800).
    ///
    /// ```
    /// use podnet_datapath::{L4Protocol, Service};
    /// let svc = Service::new(7, "10.96.0.10:80".parse().unwrap(), L4Protocol::Tcp)
    ///     .session_affinity(10800);
    /// assert_eq!(svc.session_affinity, Some(10800));
    /// ```
    #[must_use]
    pub fn session_affinity(mut self, timeout_secs: u32) -> Self {
        self.session_affinity = Some(timeout_secs);
        self
    }

    /// The same service as a frontend of `kind`.
    #[must_use]
    pub fn kind(mut self, kind: ServiceKind) -> Self {
        self.kind = kind;
        self
    }

    /// The same service with one more backend.
    #[must_use]
    pub fn backend(mut self, b: Backend) -> Self {
        self.backends.push(b);
        self
    }

    /// Checks the service as `upsert_service` does before touching the
    /// kernel.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &'static str, reason: String| Err(Error::InvalidInput { what, reason });
        if self.id == 0 {
            return bad("service id", "0 is no service id (1..=65535)".into());
        }
        if self.frontend.port() == 0 {
            return bad("service frontend", format!("{}: port 0", self.frontend));
        }
        if self.frontend.ip().is_unspecified() || self.frontend.ip().is_multicast() {
            return bad(
                "service frontend",
                format!("{} cannot be a frontend", self.frontend.ip()),
            );
        }
        if let Some(t) = self.session_affinity {
            if t == 0 || t > MAX_AFFINITY_TIMEOUT {
                return bad(
                    "service session affinity",
                    format!("timeout {t} s: Kubernetes allows 1..={MAX_AFFINITY_TIMEOUT}"),
                );
            }
        }
        if self.backends.len() > MAX_BACKENDS {
            return bad(
                "service backends",
                format!(
                    "{} backends, a frontend has {MAX_BACKENDS} slots",
                    self.backends.len()
                ),
            );
        }
        let mut seen = HashSet::new();
        for b in &self.backends {
            if b.addr.port() == 0 {
                return bad("service backend", format!("{}: port 0", b.addr));
            }
            if b.addr.is_ipv4() != self.frontend.is_ipv4() {
                return bad(
                    "service backend",
                    format!(
                        "{} is not of the frontend {}'s family",
                        b.addr, self.frontend
                    ),
                );
            }
            if b.addr.ip().is_unspecified() || b.addr.ip().is_multicast() {
                return bad("service backend", format!("{} cannot be a backend", b.addr));
            }
            if !seen.insert(b.addr) {
                return bad("service backend", format!("{} listed twice", b.addr));
            }
        }
        Ok(())
    }
}

// ---- layouts ---------------------------------------------------------------

/// `struct lb4_key` / `lb6_key` share the tail; one Rust type per family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lb4Key {
    address: [u8; 4],
    dport: u16,
    backend_slot: u16,
    proto: u8,
    scope: u8,
    pad: [u8; 2],
}
impl Pod for Lb4Key {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lb6Key {
    address: [u8; 16],
    dport: u16,
    backend_slot: u16,
    proto: u8,
    scope: u8,
    pad: [u8; 2],
}
impl Pod for Lb6Key {}

/// `struct lb4_service` (= `lb6_service`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LbService {
    backend_id: u32,
    count: u16,
    rev_nat_index: u16, // network order
    flags: u8,
    flags2: u8,
    qcount: u16,
}
impl Pod for LbService {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lb4Backend {
    address: [u8; 4],
    port: u16,
    proto: u8,
    flags: u8,
    cluster_id: u16,
    zone: u8,
    pad: u8,
}
impl Pod for Lb4Backend {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lb6Backend {
    address: [u8; 16],
    port: u16,
    proto: u8,
    flags: u8,
    cluster_id: u16,
    zone: u8,
    pad: u8,
}
impl Pod for Lb6Backend {}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lb4RevNat {
    address: [u8; 4],
    port: u16,
}
impl Pod for Lb4RevNat {}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lb6RevNat {
    address: [u8; 16],
    port: u16,
}
impl Pod for Lb6RevNat {}

const _: () = assert!(size_of::<Lb4Key>() == 12);
const _: () = assert!(size_of::<Lb6Key>() == 24);
const _: () = assert!(size_of::<LbService>() == 12);
const _: () = assert!(size_of::<Lb4Backend>() == 12);
const _: () = assert!(size_of::<Lb6Backend>() == 24);
const _: () = assert!(size_of::<Lb4RevNat>() == 6);
const _: () = assert!(size_of::<Lb6RevNat>() == 18);

/// The maps of one family.
struct Family {
    services: &'static str,
    backends: &'static str,
    rev_nat: &'static str,
}

fn family(v6: bool) -> Family {
    if v6 {
        Family {
            services: maps::LB6_SERVICES,
            backends: maps::LB6_BACKENDS,
            rev_nat: maps::LB6_REVERSE_NAT,
        }
    } else {
        Family {
            services: maps::LB4_SERVICES,
            backends: maps::LB4_BACKENDS,
            rev_nat: maps::LB4_REVERSE_NAT,
        }
    }
}

fn svc_key(frontend: SocketAddr, proto: u8, slot: u16) -> Vec<u8> {
    match frontend.ip() {
        IpAddr::V4(a) => Lb4Key {
            address: a.octets(),
            dport: frontend.port().to_be(),
            backend_slot: slot,
            proto,
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
        IpAddr::V6(a) => Lb6Key {
            address: a.octets(),
            dport: frontend.port().to_be(),
            backend_slot: slot,
            proto,
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
    }
}

fn backend_value(b: &Backend, proto: u8) -> Vec<u8> {
    match b.addr.ip() {
        IpAddr::V4(a) => Lb4Backend {
            address: a.octets(),
            port: b.addr.port().to_be(),
            proto,
            flags: b.state.raw(),
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
        IpAddr::V6(a) => Lb6Backend {
            address: a.octets(),
            port: b.addr.port().to_be(),
            proto,
            flags: b.state.raw(),
            ..Default::default()
        }
        .as_bytes()
        .to_vec(),
    }
}

fn decode_backend(v6: bool, raw: &[u8]) -> Option<Backend> {
    let (ip, port, flags): (IpAddr, u16, u8) = if v6 {
        let b = Lb6Backend::from_bytes(raw)?;
        (Ipv6Addr::from(b.address).into(), b.port, b.flags)
    } else {
        let b = Lb4Backend::from_bytes(raw)?;
        (Ipv4Addr::from(b.address).into(), b.port, b.flags)
    };
    Some(Backend {
        addr: SocketAddr::new(ip, u16::from_be(port)),
        state: BackendState::from_raw(flags),
    })
}

fn rev_nat_value(frontend: SocketAddr) -> Vec<u8> {
    match frontend.ip() {
        IpAddr::V4(a) => Lb4RevNat {
            address: a.octets(),
            port: frontend.port().to_be(),
        }
        .as_bytes()
        .to_vec(),
        IpAddr::V6(a) => Lb6RevNat {
            address: a.octets(),
            port: frontend.port().to_be(),
        }
        .as_bytes()
        .to_vec(),
    }
}

/// A backend's id: the service id in the upper 16 bits, a 16-bit hash of
/// the backend's address and port below (probing past the ids the service
/// already uses). Stable while the backend stays, so established flows
/// keep it across updates; a removed backend's id comes back only for the
/// same backend (or, rarely, a hash collision).
fn backend_id(service: u16, b: SocketAddr, taken: &HashSet<u32>) -> u32 {
    // FNV-1a over the address and port.
    let mut h: u32 = 0x811c_9dc5;
    let bytes: Vec<u8> = match b.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    for x in bytes.iter().chain(b.port().to_be_bytes().iter()) {
        h ^= u32::from(*x);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut low = ((h >> 16) ^ h) & 0xffff;
    loop {
        let low16 = if low == 0 { 1 } else { low };
        let id = (u32::from(service) << 16) | low16;
        if !taken.contains(&id) {
            return id;
        }
        low = (low16 + 1) & 0xffff;
    }
}

/// What a service holds in the maps now.
struct Current {
    frontend: LbService,
    /// Slot -> backend id.
    slots: BTreeMap<u16, u32>,
    /// Backend id -> backend.
    backends: BTreeMap<u32, Backend>,
}

/// One undo step: put back `old` (or delete when None) under `key`.
struct Undo {
    map: &'static str,
    key: Vec<u8>,
    old: Option<Vec<u8>>,
}

impl Datapath {
    fn lb_current(&self, frontend: SocketAddr, proto: u8) -> Result<Option<Current>> {
        let v6 = frontend.is_ipv6();
        let f = family(v6);
        let mut buf = [0u8; size_of::<LbService>()];
        if !self.lookup(f.services, &svc_key(frontend, proto, 0), &mut buf)? {
            return Ok(None);
        }
        let Some(fe) = LbService::from_bytes(&buf) else {
            return Ok(None);
        };
        let mut slots = BTreeMap::new();
        let mut backends = BTreeMap::new();
        let total = u32::from(fe.count) + u32::from(fe.qcount);
        for slot in 1..=total.min(u32::from(u16::MAX)) {
            let slot = u16::try_from(slot).unwrap_or(u16::MAX);
            let mut sb = [0u8; size_of::<LbService>()];
            if !self.lookup(f.services, &svc_key(frontend, proto, slot), &mut sb)? {
                continue;
            }
            let Some(s) = LbService::from_bytes(&sb) else {
                continue;
            };
            slots.insert(slot, s.backend_id);
            let mut bb = vec![0u8; if v6 { 24 } else { 12 }];
            if self.lookup(f.backends, &s.backend_id.to_ne_bytes(), &mut bb)? {
                if let Some(b) = decode_backend(v6, &bb) {
                    backends.insert(s.backend_id, b);
                }
            }
        }
        Ok(Some(Current {
            frontend: fe,
            slots,
            backends,
        }))
    }

    /// Writes `value` under `key`, remembering what was there (`fresh`: the
    /// caller knows nothing was: one syscall less per entry).
    fn put(
        &self,
        undo: &mut Vec<Undo>,
        fresh: bool,
        map: &'static str,
        key: Vec<u8>,
        value: &[u8],
    ) -> Result<()> {
        let mut old = vec![0u8; value.len()];
        let had = !fresh && self.lookup(map, &key, &mut old)?;
        self.update(map, &key, value)?;
        undo.push(Undo {
            map,
            key,
            old: had.then_some(old),
        });
        Ok(())
    }

    fn rollback(&self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            let _ = match u.old {
                Some(v) => self.update(u.map, &u.key, &v),
                None => self.delete(u.map, &u.key).map(|_| ()),
            };
        }
    }

    /// Adds a service or replaces its backends. Backends that stay keep
    /// their id, so established connections to them stay where they are;
    /// connections to a removed backend get a new backend at their next
    /// packet. Only active backends get new connections.
    ///
    /// The new slots are written before the frontend's slot count, and the
    /// slots and backends no longer used are removed after it, so the
    /// datapath sees the old or the new service, never a slot without a
    /// backend. If a map update fails, what this call wrote is put back:
    /// the previous service stays intact.
    ///
    /// ```no_run
    /// # use podnet_datapath::*;
    /// # let dp = Datapath::load(&Options::new("/sys/fs/bpf/x"))?;
    /// dp.upsert_service(
    ///     &Service::new(1, "10.96.0.1:443".parse().unwrap(), L4Protocol::Tcp)
    ///         .backend(Backend::new("10.1.0.2:6443".parse().unwrap())),
    /// )?;
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] before the kernel is touched (see
    /// [`Service::validate`]; also a service id already used by another
    /// frontend); [`Error::Map`] when a map update fails (rolled back).
    pub fn upsert_service(&self, svc: &Service) -> Result<()> {
        svc.validate()?;
        let v6 = svc.frontend.is_ipv6();
        let f = family(v6);
        let proto = svc.protocol.number();
        let id_key = svc.id.to_be().to_ne_bytes();

        // The id must be this frontend's, or free.
        let mut rn = vec![0u8; if v6 { 18 } else { 6 }];
        if self.lookup(f.rev_nat, &id_key, &mut rn)? && rn != rev_nat_value(svc.frontend) {
            return Err(Error::InvalidInput {
                what: "service id",
                reason: format!("{} is used by another frontend", svc.id),
            });
        }
        let cur = self.lb_current(svc.frontend, proto)?;
        if let Some(c) = &cur {
            if u16::from_be(c.frontend.rev_nat_index) != svc.id {
                return Err(Error::InvalidInput {
                    what: "service id",
                    reason: format!(
                        "{} {} has id {}, not {}",
                        svc.protocol,
                        svc.frontend,
                        u16::from_be(c.frontend.rev_nat_index),
                        svc.id
                    ),
                });
            }
        }

        // Ids: backends already there keep theirs.
        let mut by_addr: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        if let Some(c) = &cur {
            for (id, b) in &c.backends {
                by_addr.insert(b.addr, *id);
            }
        }
        let mut taken: HashSet<u32> = by_addr.values().copied().collect();
        let mut ids = Vec::with_capacity(svc.backends.len());
        for b in &svc.backends {
            let id = if let Some(id) = by_addr.get(&b.addr) {
                *id
            } else {
                let id = backend_id(svc.id, b.addr, &taken);
                taken.insert(id);
                id
            };
            ids.push(id);
        }
        // Slots: active backends first (count), the others after (qcount).
        let mut order: Vec<usize> = (0..svc.backends.len())
            .filter(|i| svc.backends[*i].state == BackendState::Active)
            .collect();
        let active = order.len();
        order.extend(
            (0..svc.backends.len()).filter(|i| svc.backends[*i].state != BackendState::Active),
        );

        // A new service (no frontend yet): its backend ids carry its id, so
        // none of the entries it writes exist.
        let fresh = cur.is_none();
        let mut undo = Vec::new();
        let r = (|| -> Result<()> {
            for (i, b) in svc.backends.iter().enumerate() {
                self.put(
                    &mut undo,
                    fresh,
                    f.backends,
                    ids[i].to_ne_bytes().to_vec(),
                    &backend_value(b, proto),
                )?;
            }
            for (n, i) in order.iter().enumerate() {
                let slot = u16::try_from(n + 1).unwrap_or(u16::MAX);
                let v = LbService {
                    backend_id: ids[*i],
                    rev_nat_index: svc.id.to_be(),
                    ..Default::default()
                };
                self.put(
                    &mut undo,
                    fresh,
                    f.services,
                    svc_key(svc.frontend, proto, slot),
                    v.as_bytes(),
                )?;
            }
            if svc.session_affinity.is_some() {
                for i in &order[..active] {
                    self.put(
                        &mut undo,
                        fresh,
                        maps::LB_AFFINITY_MATCH,
                        match_key(ids[*i], svc.id),
                        &[0],
                    )?;
                }
            }
            self.put(
                &mut undo,
                fresh,
                f.rev_nat,
                id_key.to_vec(),
                &rev_nat_value(svc.frontend),
            )?;
            let fe = LbService {
                backend_id: svc.session_affinity.unwrap_or(0),
                count: u16::try_from(active).unwrap_or(u16::MAX),
                rev_nat_index: svc.id.to_be(),
                flags: svc.kind.flags()
                    | if svc.session_affinity.is_some() {
                        SVC_FLAG_AFFINITY
                    } else {
                        0
                    },
                flags2: 0,
                qcount: u16::try_from(order.len() - active).unwrap_or(u16::MAX),
            };
            self.put(
                &mut undo,
                fresh,
                f.services,
                svc_key(svc.frontend, proto, 0),
                fe.as_bytes(),
            )?;
            Ok(())
        })();
        if let Err(e) = r {
            self.rollback(undo);
            return Err(e);
        }
        // The service is now the new one: drop what it no longer uses.
        if let Some(c) = cur {
            let new_slots = order.len();
            for slot in c.slots.keys() {
                if usize::from(*slot) > new_slots {
                    self.delete(f.services, &svc_key(svc.frontend, proto, *slot))?;
                }
            }
            let keep: HashSet<u32> = ids.iter().copied().collect();
            for id in c.backends.keys() {
                if !keep.contains(id) {
                    self.delete(f.backends, &id.to_ne_bytes())?;
                }
            }
            // Affinity: only active backends keep a match entry (a client
            // whose backend lost it picks a new one at its next connection).
            if c.frontend.flags & SVC_FLAG_AFFINITY != 0 {
                let matched: HashSet<u32> = if svc.session_affinity.is_some() {
                    order[..active].iter().map(|i| ids[*i]).collect()
                } else {
                    HashSet::new()
                };
                for id in c.backends.keys() {
                    if !matched.contains(id) {
                        self.delete(maps::LB_AFFINITY_MATCH, &match_key(*id, svc.id))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Datapath::upsert_service`] for many services; every one is checked
    /// before the first is written. Stops at the first failure (the services
    /// before it are in place, the failed one is as it was).
    ///
    /// # Errors
    /// As [`Datapath::upsert_service`].
    pub fn upsert_services(&self, services: &[Service]) -> Result<()> {
        for s in services {
            s.validate()?;
        }
        for s in services {
            self.upsert_service(s)?;
        }
        Ok(())
    }

    /// Removes the service of `frontend`/`protocol`: first its frontend
    /// entry (new connections to it then pass untranslated), then its slots,
    /// backends and reverse NAT entry. `Ok(false)` when there was none.
    ///
    /// # Errors
    /// [`Error::Map`] when a map operation fails.
    pub fn remove_service(&self, frontend: SocketAddr, protocol: L4Protocol) -> Result<bool> {
        let proto = protocol.number();
        let f = family(frontend.is_ipv6());
        let Some(c) = self.lb_current(frontend, proto)? else {
            return Ok(false);
        };
        self.delete(f.services, &svc_key(frontend, proto, 0))?;
        for slot in c.slots.keys() {
            self.delete(f.services, &svc_key(frontend, proto, *slot))?;
        }
        for id in c.backends.keys() {
            self.delete(f.backends, &id.to_ne_bytes())?;
            if c.frontend.flags & SVC_FLAG_AFFINITY != 0 {
                self.delete(
                    maps::LB_AFFINITY_MATCH,
                    &match_key(*id, u16::from_be(c.frontend.rev_nat_index)),
                )?;
            }
        }
        self.delete(f.rev_nat, &c.frontend.rev_nat_index.to_ne_bytes())?;
        Ok(true)
    }

    /// Every service in the maps (both families), backends in slot order.
    ///
    /// # Errors
    /// [`Error::Map`] when a map operation fails.
    pub fn services(&self) -> Result<Vec<Service>> {
        let mut out = Vec::new();
        let mut fronts = Vec::new();
        for k in self.keys::<Lb4Key>(maps::LB4_SERVICES)? {
            if k.backend_slot == 0 {
                let fe = SocketAddr::new(Ipv4Addr::from(k.address).into(), u16::from_be(k.dport));
                fronts.push((fe, k.proto));
            }
        }
        for k in self.keys::<Lb6Key>(maps::LB6_SERVICES)? {
            if k.backend_slot == 0 {
                let fe = SocketAddr::new(Ipv6Addr::from(k.address).into(), u16::from_be(k.dport));
                fronts.push((fe, k.proto));
            }
        }
        for (fe, proto) in fronts {
            let Some(protocol) = L4Protocol::from_number(proto) else {
                continue; // a frontend for any protocol, written by someone else
            };
            if let Some(c) = self.lb_current(fe, proto)? {
                let backends = c
                    .slots
                    .values()
                    .filter_map(|id| c.backends.get(id).copied())
                    .collect();
                out.push(Service {
                    id: u16::from_be(c.frontend.rev_nat_index),
                    frontend: fe,
                    protocol,
                    kind: ServiceKind::from_flags(c.frontend.flags),
                    backends,
                    session_affinity: (c.frontend.flags & SVC_FLAG_AFFINITY != 0)
                        .then_some(c.frontend.backend_id & AFFINITY_TIMEOUT_MASK),
                });
            }
        }
        out.sort_by_key(|s| (s.frontend, s.protocol));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_ids_are_stable_and_unique() {
        let a: SocketAddr = "10.1.0.2:80".parse().unwrap();
        let b: SocketAddr = "10.1.0.3:80".parse().unwrap();
        let none = HashSet::new();
        let ia = backend_id(5, a, &none);
        assert_eq!(ia >> 16, 5);
        assert_eq!(ia, backend_id(5, a, &none), "stable");
        let taken: HashSet<u32> = [ia].into();
        assert_ne!(backend_id(5, a, &taken), ia, "probes past a taken id");
        assert_ne!(backend_id(5, b, &none) & 0xffff, 0);
    }

    #[test]
    fn validation_rejects_bad_services() {
        let fe: SocketAddr = "10.96.0.1:80".parse().unwrap();
        let ok = Service::new(1, fe, L4Protocol::Tcp)
            .backend(Backend::new("10.1.0.2:8080".parse().unwrap()));
        assert!(ok.validate().is_ok());
        let cases = [
            Service::new(0, fe, L4Protocol::Tcp),
            Service::new(1, "10.96.0.1:0".parse().unwrap(), L4Protocol::Tcp),
            ok.clone()
                .backend(Backend::new("10.1.0.3:0".parse().unwrap())),
            ok.clone()
                .backend(Backend::new("[fd00::2]:80".parse().unwrap())),
            ok.clone()
                .backend(Backend::new("10.1.0.2:8080".parse().unwrap())),
            ok.clone().session_affinity(0),
            ok.clone().session_affinity(MAX_AFFINITY_TIMEOUT + 1),
        ];
        for c in cases {
            let e = c.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        }
        let mut many = Service::new(1, fe, L4Protocol::Tcp);
        for i in 0..=MAX_BACKENDS {
            let ip = Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap() + 1);
            many.backends
                .push(Backend::new(SocketAddr::new(ip.into(), 80)));
        }
        assert!(many.validate().is_err());
    }
}
