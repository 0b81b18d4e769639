//! Route protocols, scopes, types and table names, with iproute2's own
//! spelling (`/etc/iproute2/rt_protos`, `rt_scopes`, `rt_tables` and the
//! built-in type names of `ip route`).
//!
//! These tables are ours on purpose: netlink-packet-route's `Display` for its
//! protocol and scope enums does not print what `ip` prints.

use std::fmt;
use std::str::FromStr;

/// Why a name could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct NameError {
    /// "protocol", "scope", "route type" or "table".
    pub what: &'static str,
    /// The text that did not parse.
    pub text: String,
}

fn parse_num_or_name(
    text: &str,
    what: &'static str,
    table: &[(u8, &'static str)],
) -> Result<u8, NameError> {
    if let Some((n, _)) = table.iter().find(|(_, name)| *name == text) {
        return Ok(*n);
    }
    let parsed = if let Some(hex) = text.strip_prefix("0x") {
        u8::from_str_radix(hex, 16).ok()
    } else {
        text.parse::<u8>().ok()
    };
    parsed.ok_or_else(|| NameError {
        what,
        text: text.to_string(),
    })
}

/// Writes `n`'s name from `table`, or the number when it has none.
fn write_num_or_name(f: &mut fmt::Formatter<'_>, n: u8, table: &[(u8, &str)]) -> fmt::Result {
    match table.iter().find(|(v, _)| *v == n) {
        Some((_, name)) => f.write_str(name),
        None => write!(f, "{n}"),
    }
}

/// iproute2's `rt_protos`.
const PROTOCOLS: &[(u8, &str)] = &[
    (0, "unspec"),
    (1, "redirect"),
    (2, "kernel"),
    (3, "boot"),
    (4, "static"),
    (8, "gated"),
    (9, "ra"),
    (10, "mrt"),
    (11, "zebra"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp"),
    (187, "isis"),
    (188, "ospf"),
    (189, "rip"),
    (192, "eigrp"),
];

/// The routing protocol that installed a route or rule (`rtm_protocol`,
/// `proto` in `ip route`).
///
/// ```
/// use podnet_route::Protocol;
/// assert_eq!(Protocol::STATIC.to_string(), "static");
/// assert_eq!("kernel".parse::<Protocol>().unwrap(), Protocol::KERNEL);
/// assert_eq!(Protocol(77).to_string(), "77");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

impl Protocol {
    /// `unspec` (0).
    pub const UNSPEC: Protocol = Protocol(0);
    /// `redirect` (1).
    pub const REDIRECT: Protocol = Protocol(1);
    /// `kernel` (2): installed by the kernel (connected routes).
    pub const KERNEL: Protocol = Protocol(2);
    /// `boot` (3): what `ip route add` uses when no `proto` is given.
    pub const BOOT: Protocol = Protocol(3);
    /// `static` (4).
    pub const STATIC: Protocol = Protocol(4);
}

impl Default for Protocol {
    /// [`Protocol::BOOT`], like `ip route add`.
    fn default() -> Self {
        Protocol::BOOT
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_num_or_name(f, self.0, PROTOCOLS)
    }
}

impl FromStr for Protocol {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_num_or_name(s, "protocol", PROTOCOLS).map(Protocol)
    }
}

/// iproute2's `rt_scopes`.
const SCOPES: &[(u8, &str)] = &[
    (0, "global"),
    (200, "site"),
    (253, "link"),
    (254, "host"),
    (255, "nowhere"),
];

/// The scope of a route (`rtm_scope`, `scope` in `ip route`).
///
/// ```
/// use podnet_route::Scope;
/// assert_eq!(Scope::LINK.to_string(), "link");
/// assert_eq!("global".parse::<Scope>().unwrap(), Scope::UNIVERSE);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Scope(pub u8);

impl Scope {
    /// `global` (0), the default.
    pub const UNIVERSE: Scope = Scope(0);
    /// `site` (200).
    pub const SITE: Scope = Scope(200);
    /// `link` (253): the destination is directly on the link.
    pub const LINK: Scope = Scope(253);
    /// `host` (254): the destination is this host.
    pub const HOST: Scope = Scope(254);
    /// `nowhere` (255).
    pub const NOWHERE: Scope = Scope(255);
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_num_or_name(f, self.0, SCOPES)
    }
}

impl FromStr for Scope {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // iproute2 also accepts "universe" as an alias of "global".
        if s == "universe" {
            return Ok(Scope::UNIVERSE);
        }
        parse_num_or_name(s, "scope", SCOPES).map(Scope)
    }
}

/// iproute2's route type names.
const TYPES: &[(u8, &str)] = &[
    (0, "none"),
    (1, "unicast"),
    (2, "local"),
    (3, "broadcast"),
    (4, "anycast"),
    (5, "multicast"),
    (6, "blackhole"),
    (7, "unreachable"),
    (8, "prohibit"),
    (9, "throw"),
    (10, "nat"),
    (11, "xresolve"),
];

/// The type of a route (`rtm_type`; the leading word of `ip route`, e.g.
/// `blackhole 10.0.0.0/8`).
///
/// ```
/// use podnet_route::RouteType;
/// assert_eq!(RouteType::BLACKHOLE.to_string(), "blackhole");
/// assert_eq!("local".parse::<RouteType>().unwrap(), RouteType::LOCAL);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteType(pub u8);

impl RouteType {
    /// `unicast` (1), the default.
    pub const UNICAST: RouteType = RouteType(1);
    /// `local` (2): deliver locally (Cilium's `RTN_LOCAL`).
    pub const LOCAL: RouteType = RouteType(2);
    /// `broadcast` (3).
    pub const BROADCAST: RouteType = RouteType(3);
    /// `anycast` (4).
    pub const ANYCAST: RouteType = RouteType(4);
    /// `multicast` (5).
    pub const MULTICAST: RouteType = RouteType(5);
    /// `blackhole` (6): drop silently.
    pub const BLACKHOLE: RouteType = RouteType(6);
    /// `unreachable` (7): drop with ICMP host unreachable.
    pub const UNREACHABLE: RouteType = RouteType(7);
    /// `prohibit` (8): drop with ICMP administratively prohibited.
    pub const PROHIBIT: RouteType = RouteType(8);
    /// `throw` (9): continue with the next policy rule.
    pub const THROW: RouteType = RouteType(9);

    /// Types that need no device (`blackhole`, `unreachable`, `prohibit`, `throw`).
    #[must_use]
    pub fn is_reject(self) -> bool {
        matches!(self.0, 6..=9)
    }
}

impl Default for RouteType {
    fn default() -> Self {
        RouteType::UNICAST
    }
}

impl fmt::Display for RouteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_num_or_name(f, self.0, TYPES)
    }
}

impl RouteType {
    /// The type named `name` (`blackhole`, `local` ...): names only, no
    /// numbers, as the leading word of `ip route` takes them.
    pub(crate) fn from_name(name: &str) -> Option<RouteType> {
        TYPES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(v, _)| RouteType(*v))
    }
}

impl FromStr for RouteType {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_num_or_name(s, "route type", TYPES).map(RouteType)
    }
}

/// Flags the kernel reports on a route (`rtm_flags`) or on one path of a
/// multipath route (`rtnh_flags`): `linkdown` when the device has no
/// carrier, `onlink`, `dead`, offload state. This crate reads them (and
/// [`Route::show`](crate::Route::show) prints them as `ip route show`
/// does) but never sends them: `upsert` neither sets nor compares them.
///
/// ```
/// use podnet_route::RouteFlags;
/// let f = RouteFlags(RouteFlags::ONLINK.0 | RouteFlags::LINKDOWN.0);
/// assert!(f.contains(RouteFlags::LINKDOWN));
/// assert_eq!(f.to_string(), "onlink linkdown");
/// assert_eq!(RouteFlags::default().to_string(), "");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RouteFlags(pub u32);

impl RouteFlags {
    /// `dead` (`RTNH_F_DEAD`): the nexthop is dead (device down).
    pub const DEAD: RouteFlags = RouteFlags(1);
    /// `pervasive` (`RTNH_F_PERVASIVE`).
    pub const PERVASIVE: RouteFlags = RouteFlags(2);
    /// `onlink` (`RTNH_F_ONLINK`): the gateway is on the link even without
    /// a matching prefix.
    pub const ONLINK: RouteFlags = RouteFlags(4);
    /// `offload` (`RTNH_F_OFFLOAD`).
    pub const OFFLOAD: RouteFlags = RouteFlags(8);
    /// `linkdown` (`RTNH_F_LINKDOWN`): the device has no carrier.
    pub const LINKDOWN: RouteFlags = RouteFlags(16);
    /// `unresolved` (`RTNH_F_UNRESOLVED`).
    pub const UNRESOLVED: RouteFlags = RouteFlags(32);
    /// `trap` (`RTNH_F_TRAP`).
    pub const TRAP: RouteFlags = RouteFlags(64);
    /// `notify` (`RTM_F_NOTIFY`).
    pub const NOTIFY: RouteFlags = RouteFlags(0x100);
    /// `rt_offload` (`RTM_F_OFFLOAD`).
    pub const RT_OFFLOAD: RouteFlags = RouteFlags(0x4000);
    /// `rt_trap` (`RTM_F_TRAP`).
    pub const RT_TRAP: RouteFlags = RouteFlags(0x8000);
    /// `rt_offload_failed` (`RTM_F_OFFLOAD_FAILED`).
    pub const RT_OFFLOAD_FAILED: RouteFlags = RouteFlags(0x2000_0000);

    /// Every flag above (the others in `rtm_flags` are request flags such as
    /// `RTM_F_CLONED`, not kept).
    pub const ALL: RouteFlags = RouteFlags(0x7f | 0x100 | 0x4000 | 0x8000 | 0x2000_0000);

    /// `true` when every flag of `other` is set.
    #[must_use]
    pub fn contains(self, other: RouteFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `true` when no flag is set.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The names `ip route show` prints, in its order.
const FLAG_NAMES: &[(u32, &str)] = &[
    (1, "dead"),
    (4, "onlink"),
    (2, "pervasive"),
    (8, "offload"),
    (64, "trap"),
    (0x100, "notify"),
    (16, "linkdown"),
    (32, "unresolved"),
    (0x4000, "rt_offload"),
    (0x8000, "rt_trap"),
    (0x2000_0000, "rt_offload_failed"),
];

impl fmt::Display for RouteFlags {
    /// The flags' names as `ip route show` prints them, separated by
    /// spaces (empty when none is set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (bit, name) in FLAG_NAMES {
            if self.0 & bit != 0 {
                write!(f, "{sep}{name}")?;
                sep = " ";
            }
        }
        Ok(())
    }
}

/// The router preference of an IPv6 route (`RTA_PREF`, `pref` in `ip -6
/// route`): `medium` unless the route came from a router advertisement
/// that said otherwise (or `ip route add ... pref high`). Read, printed by
/// [`Route::show`](crate::Route::show), never sent.
///
/// ```
/// use podnet_route::RoutePref;
/// assert_eq!(RoutePref::default(), RoutePref::MEDIUM);
/// assert_eq!(RoutePref::HIGH.to_string(), "high");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoutePref(pub u8);

impl RoutePref {
    /// `medium` (0), the default.
    pub const MEDIUM: RoutePref = RoutePref(0);
    /// `high` (1).
    pub const HIGH: RoutePref = RoutePref(1);
    /// `low` (3).
    pub const LOW: RoutePref = RoutePref(3);
}

impl fmt::Display for RoutePref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("medium"),
            1 => f.write_str("high"),
            3 => f.write_str("low"),
            n => write!(f, "{n}"),
        }
    }
}

/// The main table (254), Cilium's `MainTable`.
pub const MAIN_TABLE: u32 = 254;
/// The local table (255).
pub const LOCAL_TABLE: u32 = 255;
/// The default table (253).
pub const DEFAULT_TABLE: u32 = 253;

/// iproute2's name for a table (`main`, `local`, `default`, else the number).
#[must_use]
pub fn table_name(table: u32) -> String {
    match table {
        MAIN_TABLE => "main".into(),
        LOCAL_TABLE => "local".into(),
        DEFAULT_TABLE => "default".into(),
        0 => "unspec".into(),
        n => n.to_string(),
    }
}

/// Parses a table name or number as iproute2 does.
///
/// # Errors
///
/// [`NameError`] for a word that is neither a table name nor a number.
pub fn parse_table(s: &str) -> Result<u32, NameError> {
    match s {
        "main" => Ok(MAIN_TABLE),
        "local" => Ok(LOCAL_TABLE),
        "default" => Ok(DEFAULT_TABLE),
        "unspec" => Ok(0),
        _ => s.parse::<u32>().map_err(|_| NameError {
            what: "table",
            text: s.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in 0..=255u8 {
            let p = Protocol(n);
            assert_eq!(p.to_string().parse::<Protocol>().unwrap(), p);
            let s = Scope(n);
            assert_eq!(s.to_string().parse::<Scope>().unwrap(), s);
            let t = RouteType(n);
            assert_eq!(t.to_string().parse::<RouteType>().unwrap(), t);
        }
        for t in [0u32, 1, 253, 254, 255, 256, 1000, u32::MAX] {
            assert_eq!(parse_table(&table_name(t)).unwrap(), t);
        }
        assert!("nonsense".parse::<Scope>().is_err());
        assert_eq!(Protocol(192).to_string(), "eigrp");
    }
}
