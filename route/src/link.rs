//! Links: veth pairs (the peer created directly in another network
//! namespace under its final name), delete, up/down, MTU, MAC, and lookup
//! by name or index with the attributes `ip link show` prints.
//!
//! Every method is a [`Handle`] method working in the handle's netns; the
//! requests are `RTM_NEWLINK` / `RTM_DELLINK` / `RTM_GETLINK`, each acked.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};

use crate::error::{Error, Op, Result};
use crate::handle::{dump_retrying, kernel, lock, Handle};
use crate::nl::{self, NlError};

const RTM_DELLINK: u16 = 17;
/// `IFNAMSIZ - 1`: the longest interface name the kernel takes.
pub const MAX_IFNAME_LEN: usize = 15;

/// An Ethernet (link-layer) address, printed and parsed as `ip` does
/// (`0a:1b:2c:3d:4e:5f`).
///
/// ```
/// use podnet_route::MacAddr;
/// let m: MacAddr = "0a:1b:2c:3d:4e:5f".parse().unwrap();
/// assert_eq!(m.octets(), [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]);
/// assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
/// assert!("0a:1b".parse::<MacAddr>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The six octets.
    #[must_use]
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// A MAC from the bytes of an `IFLA_ADDRESS` / `NDA_LLADDR` attribute
    /// (`None` unless it has six bytes).
    #[must_use]
    pub fn from_slice(b: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The text given to [`MacAddr::from_str`] is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (want six hex octets separated by ':')")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for o in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// The operational state of a link (`IFLA_OPERSTATE`), named as `ip`
/// prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperState {
    /// `UNKNOWN`
    Unknown,
    /// `NOTPRESENT`
    NotPresent,
    /// `DOWN`
    Down,
    /// `LOWERLAYERDOWN`
    LowerLayerDown,
    /// `TESTING`
    Testing,
    /// `DORMANT`
    Dormant,
    /// `UP`
    Up,
}

impl fmt::Display for OperState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperState::Unknown => "UNKNOWN",
            OperState::NotPresent => "NOTPRESENT",
            OperState::Down => "DOWN",
            OperState::LowerLayerDown => "LOWERLAYERDOWN",
            OperState::Testing => "TESTING",
            OperState::Dormant => "DORMANT",
            OperState::Up => "UP",
        })
    }
}

/// A link as the kernel reports it (`ip link show`).
///
/// ```
/// use podnet_route::{Link, MacAddr, OperState};
/// let l = Link {
///     index: 7,
///     name: "lxc1".into(),
///     kind: Some("veth".into()),
///     mac: Some(MacAddr([0x0a, 0, 0, 0, 0, 1])),
///     mtu: 1500,
///     up: true,
///     lower_up: true,
///     oper_state: OperState::Up,
///     peer_index: Some(2),
/// };
/// assert_eq!(l.to_string(), "7: lxc1@if2: <UP,LOWER_UP> mtu 1500 state UP link/ether 0a:00:00:00:00:01");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`veth`, `dummy`, ...); `None` for physical
    /// devices and loopback.
    pub kind: Option<String>,
    /// Link-layer address, when it is a six-byte one.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// Operational state.
    pub oper_state: OperState,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's netns).
    pub peer_index: Option<u32>,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.index, self.name)?;
        if let Some(p) = self.peer_index {
            write!(f, "@if{p}")?;
        }
        let mut flags = Vec::new();
        if self.up {
            flags.push("UP");
        }
        if self.lower_up {
            flags.push("LOWER_UP");
        }
        write!(
            f,
            ": <{}> mtu {} state {}",
            flags.join(","),
            self.mtu,
            self.oper_state
        )?;
        if let Some(m) = self.mac {
            write!(f, " link/ether {m}")?;
        }
        Ok(())
    }
}

/// A veth pair to create with [`Handle::add_veth`]: `name` in the handle's
/// netns, `peer` in `peer_netns` (or the same netns), both named at
/// creation (no rename, so no clash with an existing `eth0` of the
/// handle's netns).
///
/// ```
/// use podnet_route::Veth;
/// let v = Veth::new("lxc1234", "eth0").peer_netns("/run/netns/pod").mtu(1500);
/// assert_eq!(v.to_string(), "veth lxc1234 peer eth0 netns /run/netns/pod mtu 1500");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Veth {
    /// Name of the end in the handle's netns.
    pub name: String,
    /// Name of the other end.
    pub peer: String,
    /// Where the other end goes (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub peer_netns: Option<PathBuf>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// MAC of the local end (random when `None`).
    pub mac: Option<MacAddr>,
    /// MAC of the peer (random when `None`).
    pub peer_mac: Option<MacAddr>,
}

impl Veth {
    /// A pair named `name` (here) and `peer`.
    pub fn new(name: impl Into<String>, peer: impl Into<String>) -> Veth {
        Veth {
            name: name.into(),
            peer: peer.into(),
            peer_netns: None,
            mtu: None,
            mac: None,
            peer_mac: None,
        }
    }

    /// Creates the peer in the namespace at `path`.
    #[must_use]
    pub fn peer_netns(mut self, path: impl AsRef<Path>) -> Veth {
        self.peer_netns = Some(path.as_ref().to_path_buf());
        self
    }

    /// The MTU of both ends.
    #[must_use]
    pub fn mtu(mut self, mtu: u32) -> Veth {
        self.mtu = Some(mtu);
        self
    }

    /// The MAC of the local end.
    #[must_use]
    pub fn mac(mut self, mac: MacAddr) -> Veth {
        self.mac = Some(mac);
        self
    }

    /// The MAC of the peer.
    #[must_use]
    pub fn peer_mac(mut self, mac: MacAddr) -> Veth {
        self.peer_mac = Some(mac);
        self
    }
}

impl fmt::Display for Veth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "veth {} peer {}", self.name, self.peer)?;
        if let Some(p) = &self.peer_netns {
            write!(f, " netns {}", p.display())?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        Ok(())
    }
}

/// Refuses a name the kernel would refuse (`EINVAL` without a word).
pub(crate) fn check_ifname(op: Op, object: &dyn fmt::Display, name: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidInput {
        op,
        object: object.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Err(bad(format!(
            "interface name {name:?} must be 1 to {MAX_IFNAME_LEN} bytes"
        )));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(bad(format!("interface name {name:?} is not valid")));
    }
    Ok(())
}

/// The `RTM_NEWLINK` body creating `v`; `peer_fd` is the peer's netns fd.
pub(crate) fn veth_msg(v: &Veth, peer_fd: Option<i32>) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(v.peer.clone()));
    if let Some(fd) = peer_fd {
        peer.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    if let Some(m) = v.mtu {
        peer.attributes.push(LinkAttribute::Mtu(m));
    }
    if let Some(m) = v.peer_mac {
        peer.attributes.push(LinkAttribute::Address(m.0.to_vec()));
    }
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(v.name.clone()));
    if let Some(mtu) = v.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = v.mac {
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    m
}

/// An `RTM_NEWLINK` (modify) / `RTM_DELLINK` body addressing the link `name`.
pub(crate) fn link_by_name(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m
}

/// Decodes an `RTM_NEWLINK` body into a [`Link`].
pub(crate) fn decode_link_full(buf: &[u8]) -> std::result::Result<Link, NlError> {
    use netlink_packet_core::Parseable;
    let m = LinkMessage::parse(buf).map_err(|e| NlError::Decode(e.to_string()))?;
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        mac: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        oper_state: OperState::Unknown,
        peer_index: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(v) => l.mtu = v,
            LinkAttribute::Address(b) => l.mac = MacAddr::from_slice(&b),
            LinkAttribute::Link(i) => l.peer_index = Some(i),
            LinkAttribute::OperState(s) => {
                l.oper_state = match s {
                    State::Up => OperState::Up,
                    State::Down => OperState::Down,
                    State::NotPresent => OperState::NotPresent,
                    State::LowerLayerDown => OperState::LowerLayerDown,
                    State::Testing => OperState::Testing,
                    State::Dormant => OperState::Dormant,
                    _ => OperState::Unknown,
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if l.name.is_empty() {
        return Err(NlError::Decode("link without IFLA_IFNAME".into()));
    }
    Ok(l)
}

impl Handle {
    /// Creates the veth pair `v` and returns the index of its local end.
    /// The peer is created directly in `v.peer_netns` under its final name
    /// (the kernel's `IFLA_NET_NS_FD` in the peer's attributes), so a pod's
    /// `eth0` never exists in the node's namespace, even for a moment.
    /// Both ends are left down. An existing link of either name fails with
    /// `EEXIST` ([`Error::is_exists`]).
    ///
    /// ```no_run
    /// use podnet_route::{Handle, Veth};
    /// let h = Handle::new()?;
    /// let idx = h.add_veth(&Veth::new("lxc1", "eth0").peer_netns("/run/netns/pod1"))?;
    /// h.set_link_up("lxc1")?;
    /// # let _ = idx;
    /// # Ok::<(), podnet_route::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name, [`Error::Io`] when the
    /// namespace file cannot be opened, [`Error::Kernel`] when the kernel
    /// refuses the pair.
    pub fn add_veth(&self, v: &Veth) -> Result<u32> {
        check_ifname(Op::AddLink, v, &v.name)?;
        check_ifname(Op::AddLink, v, &v.peer)?;
        if v.peer_netns.is_none() && v.name == v.peer {
            return Err(Error::InvalidInput {
                op: Op::AddLink,
                object: v.to_string(),
                reason: "both ends have the same name in the same namespace".into(),
            });
        }
        let ns = match &v.peer_netns {
            Some(p) => Some(File::open(p).map_err(|source| Error::Io {
                op: Op::AddLink,
                context: format!("{v}: open {}", p.display()),
                source,
            })?),
            None => None,
        };
        let msg = veth_msg(v, ns.as_ref().map(|f| f.as_raw_fd()));
        let mut c = lock(&self.conn);
        c.ack(nl::RTM_NEWLINK, nl::NLM_F_CREATE | nl::NLM_F_EXCL, &msg)
            .map_err(|e| kernel(Op::AddLink, v, e))?;
        drop(ns);
        c.get(
            nl::RTM_GETLINK,
            &link_by_name(&v.name),
            nl::RTM_NEWLINK,
            decode_link_full,
        )
        .map(|l| l.index)
        .map_err(|e| kernel(Op::GetLink, &v.name, e))
    }

    /// Deletes the link `name` (for a veth, both ends go). A missing link
    /// fails with `ENODEV` (see [`Handle::delete_link_if_present`]).
    ///
    /// # Errors
    /// [`Error::Kernel`] naming the link and the errno.
    pub fn delete_link(&self, name: &str) -> Result<()> {
        check_ifname(Op::DeleteLink, &name, name)?;
        let r = {
            let mut c = lock(&self.conn);
            c.ack(RTM_DELLINK, 0, &link_by_name(name))
                .map_err(|e| kernel(Op::DeleteLink, &name, e))
        };
        self.forget_links();
        r
    }

    /// Deletes the link `name` if it exists; `false` when there was none.
    ///
    /// # Errors
    /// As [`Handle::delete_link`], except for a missing link.
    pub fn delete_link_if_present(&self, name: &str) -> Result<bool> {
        match self.delete_link(name) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn modify_link(&self, name: &str, what: &str, m: LinkMessage) -> Result<()> {
        let object = format!("{name} {what}");
        check_ifname(Op::SetLink, &object, name)?;
        let mut c = lock(&self.conn);
        c.ack(nl::RTM_NEWLINK, 0, &m)
            .map_err(|e| kernel(Op::SetLink, &object, e))
    }

    /// Sets the link `name` up (`ip link set NAME up`).
    ///
    /// # Errors
    /// [`Error::Kernel`] naming the link and the errno (`ENODEV`: no such
    /// link).
    pub fn set_link_up(&self, name: &str) -> Result<()> {
        self.set_link_state(name, true)
    }

    /// Sets the link `name` down (`ip link set NAME down`).
    ///
    /// # Errors
    /// [`Error::Kernel`] naming the link and the errno (`ENODEV`: no such
    /// link).
    pub fn set_link_down(&self, name: &str) -> Result<()> {
        self.set_link_state(name, false)
    }

    fn set_link_state(&self, name: &str, up: bool) -> Result<()> {
        let mut m = link_by_name(name);
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.modify_link(name, if up { "up" } else { "down" }, m)
    }

    /// Sets the MTU of the link `name` (`ip link set NAME mtu N`).
    ///
    /// # Errors
    /// [`Error::Kernel`] naming the link and the errno.
    pub fn set_link_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        let mut m = link_by_name(name);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.modify_link(name, &format!("mtu {mtu}"), m)
    }

    /// Sets the MAC of the link `name` (`ip link set NAME address MAC`).
    ///
    /// # Errors
    /// [`Error::Kernel`] naming the link and the errno.
    pub fn set_link_mac(&self, name: &str, mac: MacAddr) -> Result<()> {
        let mut m = link_by_name(name);
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.modify_link(name, &format!("address {mac}"), m)
    }

    fn get_link(&self, m: &LinkMessage, object: &dyn fmt::Display) -> Result<Option<Link>> {
        let mut c = lock(&self.conn);
        match c.get(nl::RTM_GETLINK, m, nl::RTM_NEWLINK, decode_link_full) {
            Ok(l) => Ok(Some(l)),
            Err(NlError::Kernel { errno, .. }) if errno == libc::ENODEV => Ok(None),
            Err(e) => Err(kernel(Op::GetLink, object, e)),
        }
    }

    /// The link named `name`, `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the request fails for another reason.
    pub fn link(&self, name: &str) -> Result<Option<Link>> {
        check_ifname(Op::GetLink, &name, name)?;
        self.get_link(&link_by_name(name), &name)
    }

    /// The link with index `index`, `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the request fails for another reason.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.get_link(&m, &format!("index {index}"))
    }

    /// Every link of the handle's netns, in index order.
    ///
    /// # Errors
    /// [`Error::Kernel`] / [`Error::DumpInterrupted`] when the dump fails.
    pub fn links(&self) -> Result<Vec<Link>> {
        let mut c = lock(&self.conn);
        dump_retrying(
            &mut c,
            nl::RTM_GETLINK,
            &LinkMessage::default(),
            nl::RTM_NEWLINK,
            |p, out| {
                out.push(decode_link_full(p)?);
                Ok(())
            },
        )
        .map_err(|e| kernel(Op::ListLinks, &"all", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn bytes(m: &LinkMessage) -> Vec<u8> {
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn mac_text_round_trips() {
        let m: MacAddr = "aa:BB:0c:d:00:ff".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:0c:0d:00:ff");
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aaa:bb:cc:dd:ee:ff",
            "g0:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn veth_request_carries_the_peer_with_its_netns_and_name() {
        let v = Veth::new("lxc1", "eth0")
            .mtu(1400)
            .mac(MacAddr([2, 0, 0, 0, 0, 1]))
            .peer_mac(MacAddr([2, 0, 0, 0, 0, 2]));
        let b = bytes(&veth_msg(&v, Some(9)));
        // ifinfomsg, then IFLA_IFNAME "lxc1\0" (len 9, type 3).
        assert_eq!(&b[16..20], &[9, 0, 3, 0]);
        assert_eq!(&b[20..25], b"lxc1\0");
        let m = <LinkMessage as netlink_packet_core::Parseable<[u8]>>::parse(&b[..]).unwrap();
        let peer = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => i.iter().find_map(|x| match x {
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("peer");
        assert!(peer
            .attributes
            .contains(&LinkAttribute::IfName("eth0".into())));
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(9)));
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(peer
            .attributes
            .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 2])));
        assert!(m
            .attributes
            .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn link_decodes_name_kind_mac_mtu_state() {
        let mut m = LinkMessage::default();
        m.header.index = 5;
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        m.attributes.push(LinkAttribute::IfName("lxc1".into()));
        m.attributes.push(LinkAttribute::Mtu(1500));
        m.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        m.attributes.push(LinkAttribute::Link(4));
        m.attributes.push(LinkAttribute::OperState(State::Up));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        let l = decode_link_full(&bytes(&m)).unwrap();
        assert_eq!(
            l.to_string(),
            "5: lxc1@if4: <UP,LOWER_UP> mtu 1500 state UP link/ether 02:00:00:00:00:01"
        );
        assert_eq!(l.kind.as_deref(), Some("veth"));
    }

    #[test]
    fn bad_names_are_refused_before_the_kernel() {
        for n in ["", "0123456789abcdef", "a/b", "a b", ".."] {
            assert!(matches!(
                check_ifname(Op::AddLink, &n, n),
                Err(Error::InvalidInput { .. })
            ));
        }
        check_ifname(Op::AddLink, &"eth0", "eth0").unwrap();
    }
}
