//! Cilium's two routing layouts, installed and removed as a unit.
//!
//! * [`NativeRouting`] (native routing with `auto-direct-node-routes`):
//!   `<remote pod CIDR> via <remote node IP> dev <underlay>` per remote
//!   node, and on the node itself `<local pod CIDR> via <cilium_host IP> dev
//!   cilium_host src <cilium_host IP>` with `<cilium_host IP> dev
//!   cilium_host scope link`.
//! * [`EniEndpoint`] (AWS ENI datapath): per endpoint the rules
//!   `20: from all to <podIP> lookup main` and
//!   `30: from <podIP> to <VPC CIDR> lookup <ENI table>`, the ENI's table
//!   with `default via <router> dev ethN` and `<router> dev ethN scope link`,
//!   and `<podIP> dev lxcXXXX` in the main table.
//!
//! Both build a [`Layout`] (plain routes and rules, in order) whose
//! [`install`](Layout::install) either applies everything or, on the first
//! failure, takes back what it changed; [`remove`](Layout::remove) deletes
//! everything, skipping what is already gone.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::names::{Protocol, Scope, DEFAULT_TABLE, LOCAL_TABLE, MAIN_TABLE};
use crate::route::Route;
use crate::rule::{Family, Rule};

/// Cilium's priority of the rule that sends traffic *to* an endpoint to
/// the main table (`linux_defaults.RulePriorityIngress`).
pub const RULE_PRIORITY_INGRESS: u32 = 20;
/// Cilium's priority of the rule that sends traffic *from* an endpoint to
/// its ENI's table (`linux_defaults.RulePriorityEgress`).
pub const RULE_PRIORITY_EGRESS: u32 = 30;

/// A scope-link route to one address through `dev` (scope global for IPv6,
/// which has no route scopes).
#[must_use]
pub fn link_route(ip: IpAddr, dev: &str) -> Route {
    let r = Route::host(ip).dev(dev);
    if ip.is_ipv4() {
        r.scope(Scope::LINK)
    } else {
        r
    }
}

/// Routes and rules that belong together.
///
/// ```no_run
/// use podnet_route::{Handle, Route, layout::Layout};
/// let h = Handle::new()?;
/// let l = Layout::new(vec!["10.9.0.0/16 dev eth0".parse()?], vec![]);
/// l.install(&h)?;
/// l.remove(&h)?;
/// # Ok::<(), podnet_route::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layout {
    /// Routes, upserted in order (put nexthop routes first).
    pub routes: Vec<Route>,
    /// Rules, added after the routes.
    pub rules: Vec<Rule>,
}

enum Undo {
    Delete(Route),
    Restore(Route),
    DeleteRule(Rule),
}

impl Layout {
    /// Routes (upserted in order) and rules (added after them).
    #[must_use]
    pub fn new(routes: Vec<Route>, rules: Vec<Rule>) -> Layout {
        Layout { routes, rules }
    }

    /// Upserts every route, then adds every rule. Returns whether anything
    /// changed. On the first failure, routes this call added are deleted,
    /// routes it changed are restored, rules it added are deleted, and the
    /// error is returned.
    ///
    /// # Errors
    ///
    /// The first failure (after the rollback), as [`Handle::upsert`] and
    /// [`Handle::replace_rule`] report it.
    pub fn install(&self, h: &Handle) -> Result<bool> {
        let mut undo = Vec::new();
        match self.apply(h, &mut undo) {
            Ok(changed) => Ok(changed),
            Err(e) => {
                for u in undo.into_iter().rev() {
                    // Best effort: the error the caller sees is the cause.
                    let _ = match u {
                        Undo::Delete(r) => h.delete_if_present(&r).map(drop),
                        Undo::Restore(r) => h.upsert_take_over(&r, None).map(drop),
                        Undo::DeleteRule(r) => h.delete_rule(&r),
                    };
                }
                Err(e)
            }
        }
    }

    fn apply(&self, h: &Handle, undo: &mut Vec<Undo>) -> Result<bool> {
        let mut changed = false;
        for r in &self.routes {
            r.validate(crate::Op::Upsert)?;
        }
        for r in &self.rules {
            r.validate(crate::Op::ReplaceRule)?;
        }
        for r in &self.routes {
            let mut sel = Route::new(r.prefix).table(r.table);
            sel.kind = r.kind;
            sel.priority = r.priority;
            let prev = h.lookup(&sel)?;
            // The nexthop route an upsert of `via` adds is taken back too.
            let nh = r.nexthop_route();
            let nh_sel = nh.as_ref().map(|n| {
                let mut s = Route::new(n.prefix).table(n.table);
                s.device.clone_from(&n.device);
                s
            });
            let nh_prev = match &nh_sel {
                Some(s) => h.lookup(s)?,
                None => None,
            };
            if h.upsert(r, None)? {
                changed = true;
                if let (Some(nh), Some(s)) = (nh, &nh_sel) {
                    let now = h.lookup(s)?;
                    if now != nh_prev {
                        undo.push(match nh_prev {
                            Some(p) => Undo::Restore(p),
                            None => Undo::Delete(nh),
                        });
                    }
                }
                undo.push(match prev {
                    Some(p) => Undo::Restore(p),
                    None => Undo::Delete(r.clone()),
                });
            }
        }
        for rule in &self.rules {
            if h.replace_rule(rule)? {
                changed = true;
                undo.push(Undo::DeleteRule(rule.clone()));
            }
        }
        Ok(changed)
    }

    /// Deletes the rules, then the routes in reverse order. What is already
    /// gone is skipped (also routes whose device is gone: the kernel
    /// removed them with it); every item is attempted, and the first other
    /// error is returned.
    ///
    /// # Errors
    ///
    /// The first failure other than "already gone".
    pub fn remove(&self, h: &Handle) -> Result<()> {
        let mut first: Option<Error> = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                let gone = e.is_not_found() || matches!(e, Error::UnknownDevice { .. });
                if !gone && first.is_none() {
                    first = Some(e);
                }
            }
        };
        for rule in self.rules.iter().rev() {
            note(h.delete_rule(rule));
        }
        for r in self.routes.iter().rev() {
            note(h.delete(r));
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A remote node of [`NativeRouting`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteNode {
    /// The node's pod CIDR.
    pub pod_cidr: IpNet,
    /// The node's IP on the underlay.
    pub node_ip: IpAddr,
}

/// Cilium's native-routing layout on one node (seed 003).
///
/// ```no_run
/// use podnet_route::{Handle, layout::NativeRouting};
///
/// let h = Handle::new()?;
/// let node = NativeRouting::new("10.0.0.161".parse().unwrap(), "10.0.0.0/24".parse().unwrap(), "eth0")
///     .remote("10.0.1.0/24".parse().unwrap(), "192.168.1.12".parse().unwrap());
/// for r in node.layout().routes {
///     println!("{}", r.to_ip_command());
/// }
/// node.install(&h)?;
/// node.remove(&h)?;
/// # Ok::<(), podnet_route::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NativeRouting {
    /// The host device, `cilium_host` by default.
    pub host_device: String,
    /// The `cilium_host` IP (router IP of the local pod CIDR).
    pub host_ip: IpAddr,
    /// This node's pod CIDR.
    pub local_pod_cidr: IpNet,
    /// The underlay device towards the other nodes.
    pub underlay: String,
    /// The other nodes.
    pub remote_nodes: Vec<RemoteNode>,
    /// The table for all routes (main by default).
    pub table: u32,
    /// The protocol of all routes (`boot` by default).
    pub proto: Protocol,
    /// The MTU of the routes, if any.
    pub mtu: Option<u32>,
}

impl NativeRouting {
    /// A node with host device `cilium_host`, no remote nodes yet.
    pub fn new(host_ip: IpAddr, local_pod_cidr: IpNet, underlay: impl Into<String>) -> Self {
        NativeRouting {
            host_device: "cilium_host".into(),
            host_ip,
            local_pod_cidr,
            underlay: underlay.into(),
            remote_nodes: Vec::new(),
            table: MAIN_TABLE,
            proto: Protocol::BOOT,
            mtu: None,
        }
    }

    /// Sets the host device (`cilium_host` by default).
    #[must_use]
    pub fn host_device(mut self, dev: impl Into<String>) -> Self {
        self.host_device = dev.into();
        self
    }

    /// Sets the table of all routes (main by default).
    #[must_use]
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Sets the protocol of all routes (`boot` by default).
    #[must_use]
    pub fn proto(mut self, proto: Protocol) -> Self {
        self.proto = proto;
        self
    }

    /// Sets the MTU of the routes through a gateway.
    #[must_use]
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Adds a remote node.
    #[must_use]
    pub fn remote(mut self, pod_cidr: IpNet, node_ip: IpAddr) -> Self {
        self.remote_nodes.push(RemoteNode { pod_cidr, node_ip });
        self
    }

    /// The routes, nexthop routes first:
    /// `<host IP> dev cilium_host scope link`,
    /// `<local pod CIDR> via <host IP> dev cilium_host src <host IP>`, and per
    /// remote node `<node IP> dev <underlay> scope link` (the nexthop route
    /// Cilium's upsert adds) and `<pod CIDR> via <node IP> dev <underlay>`.
    /// For IPv6 the local pod CIDR route has no `via`: the kernel refuses a
    /// gateway that is a local address ("Gateway can not be a local
    /// address"), so it is `<local pod CIDR> dev cilium_host src <host IP>`.
    #[must_use]
    pub fn layout(&self) -> Layout {
        let fix = |r: Route| {
            let mut r = r.table(self.table).proto(self.proto);
            if r.nexthop.is_some() {
                r.mtu = self.mtu;
            }
            r
        };
        let mut local = Route::new(self.local_pod_cidr)
            .dev(self.host_device.clone())
            .src(self.host_ip);
        if self.host_ip.is_ipv4() {
            local = local.via(self.host_ip);
        }
        let mut routes = vec![fix(link_route(self.host_ip, &self.host_device)), fix(local)];
        for n in &self.remote_nodes {
            let nh = fix(link_route(n.node_ip, &self.underlay));
            if !routes.contains(&nh) {
                routes.push(nh);
            }
            routes.push(fix(Route::new(n.pod_cidr)
                .via(n.node_ip)
                .dev(self.underlay.clone())));
        }
        Layout {
            routes,
            rules: Vec::new(),
        }
    }

    /// Installs the layout (see [`Layout::install`]).
    ///
    /// # Errors
    ///
    /// As [`Layout::install`].
    pub fn install(&self, h: &Handle) -> Result<bool> {
        self.layout().install(h)
    }

    /// Removes the layout (see [`Layout::remove`]).
    ///
    /// # Errors
    ///
    /// As [`Layout::remove`].
    pub fn remove(&self, h: &Handle) -> Result<()> {
        self.layout().remove(h)
    }
}

/// One endpoint of Cilium's ENI datapath (seed 002).
///
/// ```no_run
/// use podnet_route::{Handle, layout::EniEndpoint};
///
/// let h = Handle::new()?;
/// let ep = EniEndpoint::new(
///     "192.168.105.44".parse().unwrap(),
///     "lxc5a4def8d96c5",
///     "eth2",
///     92,
///     "192.168.0.1".parse().unwrap(),
/// )
/// .vpc_cidr("192.168.0.0/16".parse().unwrap());
/// ep.install(&h)?;
/// ep.remove(&h)?;
/// # Ok::<(), podnet_route::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EniEndpoint {
    /// The pod's IP (an ENI secondary IP).
    pub pod_ip: IpAddr,
    /// The host side of the pod's veth (`lxcXXXX`).
    pub host_device: String,
    /// The ENI's device (`ethN`).
    pub eni_device: String,
    /// The ENI's routing table.
    pub eni_table: u32,
    /// The VPC router of the ENI's subnet.
    pub router: IpAddr,
    /// The VPC CIDRs reached through the ENI.
    pub vpc_cidrs: Vec<IpNet>,
    /// The MTU of the ENI's default route, if any.
    pub mtu: Option<u32>,
}

impl EniEndpoint {
    /// An endpoint `pod_ip` behind `host_device`, on the ENI `eni_device`
    /// whose table is `eni_table` and whose subnet's router is `router`;
    /// no VPC CIDRs yet, no MTU.
    #[must_use]
    pub fn new(
        pod_ip: IpAddr,
        host_device: impl Into<String>,
        eni_device: impl Into<String>,
        eni_table: u32,
        router: IpAddr,
    ) -> EniEndpoint {
        EniEndpoint {
            pod_ip,
            host_device: host_device.into(),
            eni_device: eni_device.into(),
            eni_table,
            router,
            vpc_cidrs: Vec::new(),
            mtu: None,
        }
    }

    /// Adds a VPC CIDR reached through the ENI.
    #[must_use]
    pub fn vpc_cidr(mut self, cidr: IpNet) -> Self {
        self.vpc_cidrs.push(cidr);
        self
    }

    /// Sets the MTU of the ENI's default route.
    #[must_use]
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    fn family(&self) -> Family {
        Family::of(&IpNet::from(self.pod_ip))
    }

    /// The ENI table must be the ENI's own: 0 (unspec), `default` (253),
    /// `main` (254) and `local` (255) belong to the system, and installing
    /// (or removing) the ENI's default route there would replace (or
    /// delete) the node's own.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a system table.
    pub fn validate(&self) -> Result<()> {
        if matches!(self.eni_table, 0 | DEFAULT_TABLE | MAIN_TABLE | LOCAL_TABLE) {
            return Err(Error::InvalidInput {
                op: crate::Op::Upsert,
                object: format!("ENI endpoint {} table {}", self.pod_ip, self.eni_table),
                reason: format!(
                    "table {} belongs to the system; an ENI needs a table of its own",
                    crate::names::table_name(self.eni_table)
                ),
            });
        }
        Ok(())
    }

    /// The ENI table's routes: `<router> dev ethN scope link` and
    /// `default via <router> dev ethN`, in table `eni_table`.
    #[must_use]
    pub fn eni_table_routes(&self) -> Vec<Route> {
        let default = if self.router.is_ipv6() {
            IpNet::V6(Default::default())
        } else {
            IpNet::V4(Default::default())
        };
        let mut dflt = Route::new(default)
            .via(self.router)
            .dev(self.eni_device.clone())
            .table(self.eni_table);
        dflt.mtu = self.mtu;
        vec![
            link_route(self.router, &self.eni_device).table(self.eni_table),
            dflt,
        ]
    }

    /// Everything of this endpoint: the ENI table's routes, `<podIP> dev
    /// lxcXXXX` (scope link) in main, and the rules of priority 20 and 30.
    #[must_use]
    pub fn layout(&self) -> Layout {
        let pod = IpNet::from(self.pod_ip);
        let mut routes = self.eni_table_routes();
        routes.push(link_route(self.pod_ip, &self.host_device));
        let mut rules = vec![Rule::new(self.family())
            .priority(RULE_PRIORITY_INGRESS)
            .to(pod)
            .table(MAIN_TABLE)];
        for c in &self.vpc_cidrs {
            rules.push(
                Rule::new(self.family())
                    .priority(RULE_PRIORITY_EGRESS)
                    .from(pod)
                    .to(*c)
                    .table(self.eni_table),
            );
        }
        Layout { routes, rules }
    }

    /// Installs the endpoint (see [`Layout::install`]); a system table is
    /// refused first (see [`EniEndpoint::validate`]).
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a system table; else as [`Layout::install`].
    pub fn install(&self, h: &Handle) -> Result<bool> {
        self.validate()?;
        self.layout().install(h)
    }

    /// Removes the endpoint's rules and main-table route; the ENI table's
    /// routes go too unless another rule still looks up that table (another
    /// endpoint on the same ENI).
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a system table; else as [`Layout::remove`].
    pub fn remove(&self, h: &Handle) -> Result<()> {
        self.validate()?;
        let mut l = self.layout();
        let shared = self.eni_table_routes();
        l.routes.retain(|r| !shared.contains(r));
        l.remove(h)?;
        let still_used = h
            .list_rules(Some(self.family()))?
            .iter()
            .any(|r| r.action == crate::RuleAction::Lookup && r.table == self.eni_table);
        if !still_used {
            Layout {
                routes: shared,
                rules: Vec::new(),
            }
            .remove(h)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_routing_text_is_the_seed() {
        let n = NativeRouting::new(
            "10.0.0.161".parse().unwrap(),
            "10.0.0.0/24".parse().unwrap(),
            "eth0",
        )
        .remote(
            "10.0.1.0/24".parse().unwrap(),
            "192.168.1.12".parse().unwrap(),
        )
        .remote(
            "10.0.2.0/24".parse().unwrap(),
            "192.168.1.12".parse().unwrap(),
        );
        let text: Vec<String> = n.layout().routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            [
                "10.0.0.161 dev cilium_host",
                "10.0.0.0/24 via 10.0.0.161 dev cilium_host src 10.0.0.161",
                "192.168.1.12 dev eth0",
                "10.0.1.0/24 via 192.168.1.12 dev eth0",
                "10.0.2.0/24 via 192.168.1.12 dev eth0",
            ]
        );
        // scope link is iproute2's default for these, hence not printed.
        assert_eq!(n.layout().routes[0].scope, Scope::LINK);
    }

    #[test]
    fn eni_text_is_the_seed() {
        let ep = EniEndpoint {
            pod_ip: "192.168.105.44".parse().unwrap(),
            host_device: "lxc5a4def8d96c5".into(),
            eni_device: "eth2".into(),
            eni_table: 92,
            router: "192.168.0.1".parse().unwrap(),
            vpc_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
            mtu: None,
        };
        let l = ep.layout();
        let routes: Vec<String> = l.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "192.168.0.1 dev eth2 table 92",
                "default via 192.168.0.1 dev eth2 table 92",
                "192.168.105.44 dev lxc5a4def8d96c5",
            ]
        );
        let rules: Vec<String> = l.rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            [
                "priority 20 from all to 192.168.105.44 lookup main",
                "priority 30 from 192.168.105.44 to 192.168.0.0/16 lookup 92",
            ]
        );
    }
}
