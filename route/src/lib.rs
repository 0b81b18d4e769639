//! Linux routes and policy rules over synchronous rtnetlink, modelled on
//! Cilium's `pkg/datapath/linux/route` package.
//!
//! * [`Route`] and [`Rule`]: plain data with builder methods, printed as the
//!   exact `ip route` / `ip rule` arguments (`Display`, `to_ip_command`)
//!   and parsed back (`FromStr`); [`Route::show`] and [`Rule::show`] print
//!   them as `ip route show` / `ip rule show` do.
//! * [`Handle`]: one `NETLINK_ROUTE` socket in the current or any other
//!   network namespace: [`upsert`](Handle::upsert) (Cilium's semantics,
//!   idempotent), [`delete`](Handle::delete), exact
//!   [`lookup`](Handle::lookup) without dumping every table,
//!   [`list`](Handle::list), [`get`](Handle::get) (`ip route get`), rules,
//!   and pipelined [`upsert_many`](Handle::upsert_many) /
//!   [`delete_many`](Handle::delete_many).
//! * [`Nexthop`]: the kernel's nexthop objects (`ip nexthop`), with
//!   [`add_nexthop`](Handle::add_nexthop) /
//!   [`replace_nexthop`](Handle::replace_nexthop) /
//!   [`delete_nexthop`](Handle::delete_nexthop) /
//!   [`nexthops`](Handle::nexthops); routes on them carry
//!   [`Route::nhid`].
//! * [`layout`]: Cilium's ENI and native-routing layouts, installed and
//!   removed as a unit.
//! * Links, addresses and neighbours, as `Handle` methods too:
//!   [`add_veth`](Handle::add_veth) (the peer created directly in another
//!   netns under its final name), [`delete_link`](Handle::delete_link),
//!   [`set_link_up`](Handle::set_link_up) / `_mtu` / `_mac`,
//!   [`link`](Handle::link) / [`links`](Handle::links) ([`Link`]: MAC, MTU,
//!   state, kind), [`add_address`](Handle::add_address) /
//!   [`addresses`](Handle::addresses), and permanent neighbour entries
//!   ([`replace_neighbour`](Handle::replace_neighbour) /
//!   [`neighbours`](Handle::neighbours)), each printed as `ip` prints it.
//! * Change notifications: [`Handle::subscribe`] gives a [`Monitor`] of
//!   typed [`Event`]s (routes, rules, links, addresses; `ip monitor`), with
//!   [`Event::Lost`] for dropped notifications and a [`Keeper`] that says
//!   what to re-install.
//!
//! ```no_run
//! use podnet_route::{Handle, Route, Rule, Family};
//!
//! let h = Handle::new()?;
//! let r: Route = "10.1.0.0/16 via 192.168.1.1 dev eth0 table 300".parse()?;
//! h.upsert(&r, None)?;
//! h.replace_rule(&Rule::new(Family::V4).priority(100).to("10.1.0.0/16".parse().unwrap()).table(300))?;
//! for r in h.list(&podnet_route::RouteFilter::default().table(300))? {
//!     println!("{}", r.to_ip_command()); // ip route replace 10.1.0.0/16 via ... table 300
//!     println!("{}", r.show(podnet_route::ShowStyle::TableAll)); // as `ip route show table all`
//! }
//! # Ok::<(), podnet_route::Error>(())
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

mod address;
mod codec;
mod error;
mod fastcodec;
mod fasthash;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
pub mod layout;
mod link;
mod monitor;
mod names;
mod neighbour;
mod nexthop;
mod nl;
mod route;
mod rule;
pub mod show;

pub use address::Address;
pub use error::{Error, Op, Result};
pub use handle::{
    GetOptions, Handle, MtuConfig, RouteFilter, DUMP_MAX_TRIES, ROUTE_REPLACE_MAX_TRIES,
    ROUTE_REPLACE_RETRY_INTERVAL,
};
pub use ipnet;
pub use ipnet::IpNet;
pub use link::{Link, MacAddr, MacParseError, OperState, Veth, MAX_IFNAME_LEN};
pub use monitor::{Event, Keeper, Monitor, RouteKey, Topics, MONITOR_RECEIVE_BUFFER};
pub use names::{
    parse_table, table_name, NameError, Protocol, RouteFlags, RoutePref, RouteType, Scope,
    DEFAULT_TABLE, LOCAL_TABLE, MAIN_TABLE,
};
pub use neighbour::Neighbour;
pub use nexthop::{Nexthop, NexthopMember};
pub use route::{NextHop, Route, MAX_MTU};
pub use rule::{Family, Rule, RuleAction};
pub use show::{RouteShow, RuleShow, ShowStyle};
