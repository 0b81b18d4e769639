//! Interface addresses: add, delete and list (`ip address`), as [`Handle`]
//! methods (`RTM_NEWADDR` / `RTM_DELADDR` / `RTM_GETADDR`, each acked).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::AddressFamily;

use crate::error::{Op, Result};
use crate::handle::{dump_retrying, kernel, lock, Handle};
use crate::link::check_ifname;
use crate::names::Scope;
use crate::nl::{self, NlError};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;

/// An address on a link, as `ip address` prints it: the local address
/// with its prefix length (host bits are the point here, so `10.1.0.10/24`
/// is a valid value), its scope and its device.
///
/// ```
/// use podnet_route::{Address, Scope};
/// let a = Address::new("10.1.0.10/32".parse().unwrap(), "eth0");
/// assert_eq!(a.to_string(), "inet 10.1.0.10/32 scope global eth0");
/// assert_eq!(a.clone().scope(Scope::LINK).to_string(), "inet 10.1.0.10/32 scope link eth0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Address {
    /// The address and prefix length.
    pub addr: IpNet,
    /// The device name.
    pub device: String,
    /// The device index (filled in by the kernel's answers; ignored on add).
    pub index: u32,
    /// The scope (`global` by default).
    pub scope: Scope,
    /// IPv6: skip duplicate address detection, so the address is usable at
    /// once (`ip address add ... nodad`). Sent on add only.
    pub nodad: bool,
}

impl Address {
    /// `addr` on `device`, scope global.
    pub fn new(addr: IpNet, device: impl Into<String>) -> Address {
        Address {
            addr,
            device: device.into(),
            index: 0,
            scope: Scope::UNIVERSE,
            nodad: false,
        }
    }

    /// Without duplicate address detection (`nodad`, IPv6).
    #[must_use]
    pub fn nodad(mut self) -> Address {
        self.nodad = true;
        self
    }

    /// With scope `s`.
    #[must_use]
    pub fn scope(mut self, s: Scope) -> Address {
        self.scope = s;
        self
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = if self.addr.addr().is_ipv4() {
            "inet"
        } else {
            "inet6"
        };
        write!(
            f,
            "{fam} {} scope {} {}",
            self.addr, self.scope, self.device
        )
    }
}

fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The `RTM_NEWADDR` / `RTM_DELADDR` body for `a` on link `index`.
pub(crate) fn address_msg(a: &Address, index: u32) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(a.addr.addr());
    m.header.prefix_len = a.addr.prefix_len();
    m.header.scope = AddressScope::from(a.scope.0);
    m.header.index = index;
    if a.nodad {
        m.header.flags |= AddressHeaderFlags::Nodad;
    }
    // As `ip address add` sends it: IFA_LOCAL, and IFA_ADDRESS the same
    // when there is no peer.
    m.attributes.push(AddressAttribute::Local(a.addr.addr()));
    m.attributes.push(AddressAttribute::Address(a.addr.addr()));
    m
}

/// Decodes an `RTM_NEWADDR` body (device left empty).
pub(crate) fn decode_address(buf: &[u8]) -> std::result::Result<Option<Address>, NlError> {
    use netlink_packet_core::Parseable;
    let m = AddressMessage::parse(buf).map_err(|e| NlError::Decode(e.to_string()))?;
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let Some(ip) = local.or(address) else {
        return Ok(None);
    };
    let addr = IpNet::new(ip, m.header.prefix_len)
        .map_err(|_| NlError::Decode(format!("prefix length {} for {ip}", m.header.prefix_len)))?;
    Ok(Some(Address {
        addr,
        device: String::new(),
        index: m.header.index,
        scope: Scope(u8::from(m.header.scope)),
        nodad: m.header.flags.contains(AddressHeaderFlags::Nodad),
    }))
}

impl Handle {
    /// Adds `a` (`ip address add`). An address already there fails with
    /// `EEXIST` ([`crate::Error::is_exists`]).
    ///
    /// ```no_run
    /// use podnet_route::{Address, Handle};
    /// let h = Handle::open_netns("/run/netns/pod1")?;
    /// h.add_address(&Address::new("10.1.0.10/32".parse().unwrap(), "eth0"))?;
    /// # Ok::<(), podnet_route::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::UnknownDevice`] when the device does not exist,
    /// [`crate::Error::Kernel`] naming the address and the errno.
    pub fn add_address(&self, a: &Address) -> Result<()> {
        check_ifname(Op::AddAddress, a, &a.device)?;
        let idx = self
            .link_index(&a.device)
            .map_err(|e| relabel(e, Op::AddAddress, a))?;
        let mut c = lock(&self.conn);
        c.ack(
            RTM_NEWADDR,
            nl::NLM_F_CREATE | nl::NLM_F_EXCL,
            &address_msg(a, idx),
        )
        .map_err(|e| kernel(Op::AddAddress, a, e))
    }

    /// Deletes `a` (`ip address del`). A missing address fails with
    /// `EADDRNOTAVAIL`.
    ///
    /// # Errors
    /// [`crate::Error::UnknownDevice`] when the device does not exist,
    /// [`crate::Error::Kernel`] naming the address and the errno.
    pub fn delete_address(&self, a: &Address) -> Result<()> {
        check_ifname(Op::DeleteAddress, a, &a.device)?;
        let idx = self
            .link_index(&a.device)
            .map_err(|e| relabel(e, Op::DeleteAddress, a))?;
        let mut c = lock(&self.conn);
        c.ack(RTM_DELADDR, 0, &address_msg(a, idx))
            .map_err(|e| kernel(Op::DeleteAddress, a, e))
    }

    /// The addresses of `device` (`None`: of every link), IPv4 first, in
    /// the kernel's order.
    ///
    /// # Errors
    /// [`crate::Error::UnknownDevice`] for a missing device,
    /// [`crate::Error::Kernel`] when the dump fails.
    pub fn addresses(&self, device: Option<&str>) -> Result<Vec<Address>> {
        let what = device.unwrap_or("all");
        let want = match device {
            Some(d) => Some(
                self.link_index(d)
                    .map_err(|e| relabel(e, Op::ListAddresses, &what))?,
            ),
            None => None,
        };
        let mut out: Vec<Address> = {
            let mut c = lock(&self.conn);
            dump_retrying(
                &mut c,
                RTM_GETADDR,
                &AddressMessage::default(),
                RTM_NEWADDR,
                |p, out| {
                    if let Some(a) = decode_address(p)? {
                        if want.is_none_or(|w| w == a.index) {
                            out.push(a);
                        }
                    }
                    Ok(())
                },
            )
            .map_err(|e| kernel(Op::ListAddresses, &what, e))?
        };
        for a in &mut out {
            a.device = match device {
                Some(d) => d.to_string(),
                None => self
                    .link_by_index(a.index)?
                    .map(|l| l.name)
                    .unwrap_or_else(|| format!("if{}", a.index)),
            };
        }
        out.sort_by_key(|a| a.addr.addr().is_ipv6());
        Ok(out)
    }
}

/// An error of resolving the device, re-labelled as the error of `op` on
/// `object`.
pub(crate) fn relabel(e: crate::Error, op: Op, object: &dyn fmt::Display) -> crate::Error {
    match e {
        crate::Error::UnknownDevice { device, .. } => crate::Error::UnknownDevice {
            op,
            object: object.to_string(),
            device,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn address_bytes_round_trip() {
        let a = Address::new("10.1.0.10/24".parse().unwrap(), "eth0").scope(Scope::LINK);
        let m = address_msg(&a, 7);
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        // ifaddrmsg: family, prefixlen, flags, scope, index.
        assert_eq!(&b[..8], &[libc::AF_INET as u8, 24, 0, 253, 7, 0, 0, 0]);
        // IFA_LOCAL (2) then IFA_ADDRESS (1), both 10.1.0.10.
        assert_eq!(&b[8..16], &[8, 0, 2, 0, 10, 1, 0, 10]);
        assert_eq!(&b[16..24], &[8, 0, 1, 0, 10, 1, 0, 10]);
        let back = decode_address(&b).unwrap().unwrap();
        assert_eq!(back.addr, a.addr);
        assert_eq!(back.index, 7);
        assert_eq!(back.scope, Scope::LINK);
    }

    #[test]
    fn ipv6_display_says_inet6() {
        let a = Address::new("fd00::a/128".parse().unwrap(), "eth0");
        assert_eq!(a.to_string(), "inet6 fd00::a/128 scope global eth0");
    }
}
