//! A two-node native-routing pod network in network namespaces, built with
//! the three crates: seed 003's layout (`auto-direct-node-routes`) with the
//! BPF datapath on every pod's veth and on each node's underlay.
//!
//! ```text
//!  pod1a 10.1.0.10 ─ lxc-pod1a ┐                               ┌ lxc-pod2a ─ pod2a 10.2.0.10
//!  pod1b 10.1.0.11 ─ lxc-pod1b ┤ node1  eth0 ══ underlay ══ eth0  node2 ├ lxc-pod2b ─ pod2b 10.2.0.11
//!      cilium_host 10.1.0.1 ───┘ 192.168.100.1        192.168.100.2    └─── cilium_host 10.2.0.1
//! ```
//!
//! What the container runtime and its CNI plugin would do (veth pairs,
//! addresses inside the pods, neighbour entries) is done with `route`'s link,
//! address and neighbour API (namespaces come from `testsupport`); what the
//! agent does is done with the crates too:
//!
//! * [`Lab::install_routes`]: `route` installs seed 003's node routes
//!   (`<local pod CIDR> via <cilium_host IP> dev cilium_host src ...`,
//!   `<cilium_host IP> dev cilium_host scope link`, `<remote pod CIDR> via
//!   <remote node IP> dev eth0`) plus an endpoint route per pod
//!   (`<pod IP> dev lxc-...`), so the host stack reaches its pods directly.
//! * [`Lab::start_datapath`]: `datapath-bpf` is loaded per node (node 1 hands
//!   remote traffic to the stack, node 2 uses skip-FIB), pods are registered
//!   in the endpoint map and the ipcache, programs attached.
//! * the conntrack maps the datapath fills are read and collected with
//!   `conntrack` ([`Node::ct_maps`]).
//!
//! Pods reach their gateway (the node's `cilium_host` address) through a
//! permanent neighbour entry that names the host-side veth's MAC, as Cilium's
//! ARP responder would answer.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use podnet_datapath::{AttachMode, Datapath, Endpoint, Hook, IpcacheInfo, Options};
use podnet_route::layout::NativeRouting;
use podnet_route::{Address, Handle, MacAddr, Neighbour, Route, Veth};
use testsupport::{BpfDir, Netns};

/// The error of every lab step: what failed, in words.
pub type LabError = Box<dyn StdError + Send + Sync>;
/// Result of a lab step.
pub type LabResult<T> = Result<T, LabError>;

/// Cilium's reserved identity of the local host.
pub const IDENTITY_HOST: u32 = 1;
/// Cilium's reserved identity of remote nodes.
pub const IDENTITY_REMOTE_NODE: u32 = 6;

/// One pod to create.
#[derive(Clone, Debug)]
pub struct PodPlan {
    /// Short name: the pod's namespace is `<prefix>-<name>`, its host-side
    /// veth `lxc-<name>`.
    pub name: String,
    /// Its address (a /32 on its `eth0`).
    pub ip: Ipv4Addr,
    /// Cilium endpoint id.
    pub endpoint_id: u16,
    /// Security identity.
    pub identity: u32,
}

/// One node to create.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// Short name: the namespace is `<prefix>-<name>`.
    pub name: String,
    /// Address on the underlay (`eth0`, /24).
    pub node_ip: Ipv4Addr,
    /// Address of `cilium_host`, the pods' gateway.
    pub host_ip: Ipv4Addr,
    /// The node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// Forward remote traffic with `bpf_fib_lookup` + `bpf_redirect_neigh`.
    pub skip_fib: bool,
    /// Its pods.
    pub pods: Vec<PodPlan>,
    /// BPF masquerade (off in [`LabPlan::two_nodes`]; see `lab_outside`).
    pub masquerade: podnet_datapath::Masquerade,
    /// Underlay interfaces besides `eth0` that get `from_netdev` (and
    /// `to_netdev` with masquerade on), created by the caller before
    /// [`Lab::start_datapath`].
    pub netdevs: Vec<String>,
}

/// The whole lab.
#[derive(Clone, Debug)]
pub struct LabPlan {
    /// Prefix of namespace names and of the bpffs pin directory.
    pub prefix: String,
    /// Exactly two nodes, joined by the underlay.
    pub nodes: Vec<NodePlan>,
}

impl LabPlan {
    /// The layout in the module docs: two nodes, two pods each.
    pub fn two_nodes(prefix: &str) -> LabPlan {
        let pod = |name: &str, ip: [u8; 4], id: u16, identity: u32| PodPlan {
            name: name.into(),
            ip: Ipv4Addr::from(ip),
            endpoint_id: id,
            identity,
        };
        let cidr = |a: u8| Ipv4Net::new(Ipv4Addr::new(10, a, 0, 0), 24).expect("valid /24");
        LabPlan {
            prefix: prefix.into(),
            nodes: vec![
                NodePlan {
                    name: "node1".into(),
                    node_ip: Ipv4Addr::new(192, 168, 100, 1),
                    host_ip: Ipv4Addr::new(10, 1, 0, 1),
                    pod_cidr: cidr(1),
                    skip_fib: false,
                    masquerade: podnet_datapath::Masquerade::new(),
                    netdevs: Vec::new(),
                    pods: vec![
                        pod("pod1a", [10, 1, 0, 10], 101, 10001),
                        pod("pod1b", [10, 1, 0, 11], 102, 10002),
                    ],
                },
                NodePlan {
                    name: "node2".into(),
                    node_ip: Ipv4Addr::new(192, 168, 100, 2),
                    host_ip: Ipv4Addr::new(10, 2, 0, 1),
                    pod_cidr: cidr(2),
                    skip_fib: true,
                    masquerade: podnet_datapath::Masquerade::new(),
                    netdevs: Vec::new(),
                    pods: vec![
                        pod("pod2a", [10, 2, 0, 10], 201, 20001),
                        pod("pod2b", [10, 2, 0, 11], 202, 20002),
                    ],
                },
            ],
        }
    }
}

/// A pod: its namespace and both ends of its veth.
#[derive(Debug)]
pub struct Pod {
    /// What it was made from.
    pub plan: PodPlan,
    /// Its network namespace.
    pub ns: Netns,
    /// Host-side veth name.
    pub lxc: String,
    /// Host-side veth index (in the node's namespace).
    pub lxc_ifindex: u32,
    /// MAC of the pod's `eth0`.
    pub mac: [u8; 6],
    /// MAC of the host-side veth.
    pub lxc_mac: [u8; 6],
}

impl Pod {
    /// The pod's address.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.plan.ip)
    }
}

/// A node: namespace, pods, route handle, datapath.
pub struct Node {
    /// The datapath, once started. First field, so that a dropped lab
    /// detaches its programs before the namespaces go.
    pub datapath: Option<Datapath>,
    /// What it was made from.
    pub plan: NodePlan,
    /// Its network namespace.
    pub ns: Netns,
    /// Its pods.
    pub pods: Vec<Pod>,
    /// A `route` handle opened in the node's namespace.
    pub routes: Handle,
    /// Seed 003's routes for this node.
    pub native: NativeRouting,
    /// The per-pod endpoint routes.
    pub endpoint_routes: Vec<Route>,
    /// Where this node's maps are pinned.
    pub pin_dir: PathBuf,
}

impl Node {
    /// The datapath, or an error saying it was not started.
    pub fn dp(&self) -> LabResult<&Datapath> {
        self.datapath
            .as_ref()
            .ok_or_else(|| format!("{}: datapath not started", self.plan.name).into())
    }

    /// The node's conntrack maps opened with the `conntrack` crate:
    /// (`cilium_ct4_global`, `cilium_ct_any4_global`).
    pub fn ct_maps(&self) -> LabResult<(podnet_conntrack::CtMap, podnet_conntrack::CtMap)> {
        let paths = self.dp()?.ct_map_paths();
        Ok((
            podnet_conntrack::CtMap::open(&paths.tcp4)?,
            podnet_conntrack::CtMap::open(&paths.any4)?,
        ))
    }

    /// The node's main IPv4 routing table as `ip route` prints it, listed
    /// by `route`.
    pub fn routing_table(&self) -> LabResult<Vec<String>> {
        let filter = podnet_route::RouteFilter::default()
            .family(podnet_route::Family::V4)
            .table(podnet_route::MAIN_TABLE);
        let routes = self.routes.list(&filter)?;
        Ok(routes
            .iter()
            .map(|r| r.show(podnet_route::ShowStyle::OneTable).to_string())
            .collect())
    }
}

/// The running lab. Dropping it removes every namespace and pin it made
/// (unless [`Lab::keep`] was called); [`Lab::teardown`] does it step by step
/// and reports errors.
pub struct Lab {
    /// The two nodes.
    pub nodes: Vec<Node>,
    pins: BpfDir,
}

impl Lab {
    /// Creates namespaces, links and addresses: the container runtime's part.
    ///
    /// With `fixed_names` the namespaces are `<prefix>-<node>` and
    /// `<prefix>-<pod>` (a demo the user can inspect) and the pins go to
    /// `/sys/fs/bpf/<prefix>`; otherwise both get per-process unique names
    /// (tests that run in parallel).
    pub fn create(plan: &LabPlan, fixed_names: bool) -> LabResult<Lab> {
        if plan.nodes.len() != 2 {
            return Err("the lab has exactly two nodes".into());
        }
        let new_ns = |name: &str| {
            if fixed_names {
                Netns::named(&format!("{}-{name}", plan.prefix))
            } else {
                Netns::new(name)
            }
        };
        let pins = if fixed_names {
            BpfDir::named(&plan.prefix)
        } else {
            BpfDir::new(&plan.prefix)
        };
        let mut node_ns = Vec::new();
        for n in &plan.nodes {
            let ns = new_ns(&n.name);
            for (k, v) in [
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ] {
                ns.exec_ok("sysctl", &["-qw", &format!("{k}={v}")]);
            }
            node_ns.push(ns);
        }
        // The underlay: one veth pair, an end in each node.
        let underlay = Handle::open_netns(node_ns[0].path())?;
        underlay.add_veth(&Veth::new("eth0", "eth0").peer_netns(node_ns[1].path()))?;
        let mut nodes = Vec::new();
        for (n, ns) in plan.nodes.iter().zip(node_ns) {
            let h = Handle::open_netns(ns.path())?;
            h.set_link_up("eth0")?;
            h.add_address(&Address::new(
                IpNet::new(IpAddr::V4(n.node_ip), 24)?,
                "eth0",
            ))?;
            // Cilium's cilium_host / cilium_net pair, cilium_host holding the
            // pods' gateway address.
            h.add_veth(&Veth::new("cilium_host", "cilium_net"))?;
            h.set_link_up("cilium_host")?;
            h.set_link_up("cilium_net")?;
            h.add_address(&Address::new(
                IpNet::new(IpAddr::V4(n.host_ip), 32)?,
                "cilium_host",
            ))?;
            let mut pods = Vec::new();
            for p in &n.pods {
                pods.push(Self::create_pod(&ns, n, p, &new_ns)?);
            }
            let routes = Handle::open_netns(ns.path())?;
            let mut native =
                NativeRouting::new(IpAddr::V4(n.host_ip), IpNet::V4(n.pod_cidr), "eth0");
            for other in plan.nodes.iter().filter(|o| o.name != n.name) {
                native = native.remote(IpNet::V4(other.pod_cidr), IpAddr::V4(other.node_ip));
            }
            let endpoint_routes = pods
                .iter()
                .map(|p| Route::host(p.ip()).dev(p.lxc.clone()))
                .collect();
            nodes.push(Node {
                pin_dir: pins.join(&n.name),
                plan: n.clone(),
                ns,
                pods,
                routes,
                native,
                endpoint_routes,
                datapath: None,
            });
        }
        Ok(Lab { nodes, pins })
    }

    fn create_pod(
        node: &Netns,
        n: &NodePlan,
        p: &PodPlan,
        new_ns: &dyn Fn(&str) -> Netns,
    ) -> LabResult<Pod> {
        let ns = new_ns(&p.name);
        let lxc = format!("lxc-{}", p.name);
        if lxc.len() > 15 {
            return Err(
                format!("pod name {} makes {lxc} longer than 15 characters", p.name).into(),
            );
        }
        let link = wire_pod(node, &lxc, &ns, p.ip, n.host_ip)?;
        Ok(Pod {
            lxc_ifindex: link.lxc_ifindex,
            plan: p.clone(),
            ns,
            lxc,
            mac: link.pod_mac.octets(),
            lxc_mac: link.lxc_mac.octets(),
        })
    }

    /// Installs every node's routes with `route`; returns how many routes
    /// changed per node (0 when they were all in place already).
    pub fn install_routes(&self) -> LabResult<Vec<usize>> {
        let mut changed = Vec::new();
        for n in &self.nodes {
            let mut count = usize::from(n.native.install(&n.routes)?);
            for r in &n.endpoint_routes {
                count += usize::from(n.routes.upsert(r, None)?);
            }
            changed.push(count);
        }
        Ok(changed)
    }

    /// Checks with `route`'s exact lookup that every route of every node is
    /// in the kernel.
    pub fn verify_routes(&self) -> LabResult<usize> {
        let mut checked = 0;
        for n in &self.nodes {
            for r in n.native.layout().routes.iter().chain(&n.endpoint_routes) {
                if n.routes.lookup(r)?.is_none() {
                    return Err(format!("{}: route `{r}` missing", n.plan.name).into());
                }
                checked += 1;
            }
        }
        Ok(checked)
    }

    /// Loads the datapath on every node (re-using maps pinned by an earlier
    /// start), registers pods and the ipcache, attaches the programs with
    /// `mode` (tc filters outlive the process; tcx links do not).
    ///
    /// Called again, it is an agent restart: a new datapath instance takes
    /// over the pinned maps and the old one is dropped after the new one is
    /// attached (use tcx, [`AttachMode::Auto`], for that: tc filters of the
    /// two instances would share a handle).
    pub fn start_datapath(&mut self, mode: AttachMode) -> LabResult<()> {
        // Everything every node must know: all pods, all node addresses.
        let mut cache: Vec<(IpNet, IpcacheInfo)> = Vec::new();
        for n in &self.nodes {
            for p in &n.pods {
                let info =
                    IpcacheInfo::new(p.plan.identity).tunnel_endpoint(IpAddr::V4(n.plan.node_ip));
                cache.push((p.ip().into(), info));
            }
        }
        let node_ips: Vec<(String, Ipv4Addr)> = self
            .nodes
            .iter()
            .map(|n| (n.plan.name.clone(), n.plan.node_ip))
            .collect();
        for n in &mut self.nodes {
            let opts = Options::small(&n.pin_dir)
                .skip_fib(n.plan.skip_fib)
                .masquerade(n.plan.masquerade.clone())
                .attach_mode(mode);
            let mut dp = Datapath::load(&opts)?;
            for p in &n.pods {
                dp.upsert_endpoint(
                    &Endpoint::new(p.ip(), p.lxc_ifindex)
                        .mac(p.mac)
                        .node_mac(p.lxc_mac)
                        .id(p.plan.endpoint_id)
                        .identity(p.plan.identity),
                )?;
            }
            for (prefix, info) in &cache {
                dp.upsert_ipcache(*prefix, info)?;
            }
            for (name, ip) in &node_ips {
                let identity = if *name == n.plan.name {
                    IDENTITY_HOST
                } else {
                    IDENTITY_REMOTE_NODE
                };
                dp.upsert_ipcache(IpAddr::V4(*ip).into(), &IpcacheInfo::new(identity))?;
            }
            let netdevs: Vec<u32> = std::iter::once("eth0")
                .chain(n.plan.netdevs.iter().map(String::as_str))
                .map(|d| n.ns.ifindex(d))
                .collect();
            let masquerade = n.plan.masquerade.enabled();
            let lxcs: Vec<u32> = n.pods.iter().map(|p| p.lxc_ifindex).collect();
            // tc/tcx attach speaks netlink in the calling thread's namespace.
            n.ns.run(|| -> podnet_datapath::Result<()> {
                for idx in &lxcs {
                    dp.attach(*idx, Hook::FromContainer)?;
                    dp.attach(*idx, Hook::ToContainer)?;
                }
                for idx in &netdevs {
                    dp.attach(*idx, Hook::FromNetdev)?;
                    if masquerade {
                        dp.attach(*idx, Hook::ToNetdev)?;
                    }
                }
                Ok(())
            })?;
            // A restart: the new programs are attached next to the old ones
            // (tcx runs both; the first verdict wins), then the old instance
            // is dropped, which detaches its programs and leaves the pinned
            // maps, and with them conntrack, to the new one.
            drop(n.datapath.replace(dp));
        }
        Ok(())
    }

    /// The pod called `name`.
    pub fn pod(&self, name: &str) -> LabResult<&Pod> {
        self.nodes
            .iter()
            .flat_map(|n| &n.pods)
            .find(|p| p.plan.name == name)
            .ok_or_else(|| format!("no pod {name}").into())
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> LabResult<&Node> {
        self.nodes
            .iter()
            .find(|n| n.plan.name == name)
            .ok_or_else(|| format!("no node {name}").into())
    }

    /// Leaves namespaces and pins in place when the lab is dropped.
    pub fn keep(&mut self) {
        self.pins.keep();
        for n in &mut self.nodes {
            n.ns.keep();
            for p in &mut n.pods {
                p.ns.keep();
            }
            if let Some(dp) = n.datapath.take() {
                // Leave programs attached and maps pinned.
                std::mem::forget(dp);
            }
        }
    }

    /// Detaches and unpins the datapath, removes the routes, then the
    /// namespaces and the pin directory; checks nothing is left.
    pub fn teardown(mut self) -> LabResult<()> {
        for n in &mut self.nodes {
            if let Some(dp) = n.datapath.take() {
                dp.teardown()?;
            }
            for r in &n.endpoint_routes {
                n.routes.delete(r)?;
            }
            n.native.remove(&n.routes)?;
            for r in n.native.layout().routes.iter().chain(&n.endpoint_routes) {
                if n.routes.lookup(r)?.is_some() {
                    return Err(format!("{}: route `{r}` left after removal", n.plan.name).into());
                }
            }
        }
        let pin_root = self.pins.path().to_path_buf();
        let names: Vec<PathBuf> = self
            .nodes
            .iter()
            .flat_map(|n| {
                std::iter::once(n.ns.path().to_path_buf())
                    .chain(n.pods.iter().map(|p| p.ns.path().to_path_buf()))
            })
            .collect();
        drop(self);
        if let Some(left) = names.iter().find(|p| p.exists()) {
            return Err(format!("namespace {} left behind", left.display()).into());
        }
        if pin_root.exists() {
            return Err(format!("pins left behind in {}", pin_root.display()).into());
        }
        Ok(())
    }
}

/// A verified step of a demo: prints `  ok: what` and succeeds when `ok`,
/// fails with `FAILED: what` otherwise.
pub fn check(ok: bool, what: &str) -> LabResult<()> {
    if ok {
        println!("  ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

/// `ping -c count` from `pod` to `to`; returns the replies received.
pub fn ping(pod: &Pod, to: IpAddr, count: u32) -> u32 {
    let out = pod.ns.exec(
        "ping",
        &[
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            &to.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // "3 packets transmitted, 3 received, 0% packet loss, time 402ms"
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// An echo server bound inside a pod: every connection gets back what it
/// sends. The listening socket belongs to the pod's namespace; the thread
/// serving it may run anywhere.
pub struct EchoServer {
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `pod`'s address at `port`, serving `connections` clients.
    pub fn start(pod: &Pod, port: u16, connections: usize) -> LabResult<EchoServer> {
        let addr = SocketAddr::new(pod.ip(), port);
        let listener = pod.ns.run(|| TcpListener::bind(addr))?;
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let Ok(mut s) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(EchoServer {
            addr,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // Unblock accept() if fewer clients came than announced.
        if let Some(t) = self.thread.take() {
            if !t.is_finished() {
                let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
            }
        }
    }
}

/// A TCP connection opened from inside `pod` to `to`.
pub fn connect(pod: &Pod, to: SocketAddr) -> LabResult<TcpStream> {
    let s = pod
        .ns
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(3)))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Sends `bytes` bytes of a pattern over `s` and reads them back; an error
/// unless every byte came back unchanged.
pub fn echo_exchange(s: &mut TcpStream, bytes: usize) -> LabResult<()> {
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let mut reader = s.try_clone()?;
    let expected = data.clone();
    let read = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let mut got = vec![0u8; expected.len()];
        reader.read_exact(&mut got)?;
        Ok(got)
    });
    s.write_all(&data)?;
    let got = read.join().map_err(|_| "echo reader panicked")??;
    if got != data {
        return Err("echoed bytes differ".into());
    }
    Ok(())
}

/// Counts conntrack entries per (map name) in a node, through `conntrack`.
pub fn ct_counts(node: &Node) -> LabResult<BTreeMap<String, usize>> {
    let (tcp, any) = node.ct_maps()?;
    let mut m = BTreeMap::new();
    m.insert(tcp.name().to_string(), tcp.count()?);
    m.insert(any.name().to_string(), any.count()?);
    Ok(m)
}

/// Both ends of a pod's veth, as [`wire_pod`] made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodWiring {
    /// Index of the host-side veth in the node's namespace.
    pub lxc_ifindex: u32,
    /// MAC of the host-side veth (the pod's gateway MAC).
    pub lxc_mac: MacAddr,
    /// MAC of the pod's `eth0`.
    pub pod_mac: MacAddr,
}

/// Wires `pod` to `node` with `route`'s link, address and neighbour API:
/// a veth `lxc` (node) <-> `eth0` (created in the pod under that name).
pub fn wire_pod(
    node: &Netns,
    lxc: &str,
    pod: &Netns,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> LabResult<PodWiring> {
    let (node_h, pod_h) = (
        Handle::open_netns(node.path())?,
        Handle::open_netns(pod.path())?,
    );
    let lxc_ifindex = node_h.add_veth(&Veth::new(lxc, "eth0").peer_netns(pod.path()))?;
    let mac_of = |h: &Handle, name: &str| -> LabResult<MacAddr> {
        h.link(name)?
            .and_then(|l| l.mac)
            .ok_or_else(|| format!("{name} has no MAC").into())
    };
    let (lxc_mac, pod_mac) = (mac_of(&node_h, lxc)?, mac_of(&pod_h, "eth0")?);
    // As a CNI plugin wires a routed pod: the pod's /32, its gateway on
    // link with a permanent neighbour entry naming the host-side veth's
    // MAC (so it never ARPs for it), the default route via the gateway;
    // the node's permanent entry for the pod. The node's route to the
    // pod is left to the caller (the lab's `install_routes`).
    let (ip, gw) = (IpAddr::V4(ip), IpAddr::V4(gateway));
    node_h.set_link_up(lxc)?;
    pod_h.set_link_up("eth0")?;
    pod_h.add_address(&Address::new(IpNet::new(ip, 32)?, "eth0"))?;
    pod_h.replace_neighbour(&Neighbour::permanent(gw, lxc_mac, "eth0"))?;
    pod_h.upsert(
        &Route::new(IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)?)
            .via(gw)
            .dev("eth0"),
        None,
    )?;
    node_h.replace_neighbour(&Neighbour::permanent(ip, pod_mac, lxc))?;
    Ok(PodWiring {
        lxc_ifindex,
        lxc_mac,
        pod_mac,
    })
}
