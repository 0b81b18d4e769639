//! ADD, DEL, CHECK and VERSION.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;
use podnet_datapath::{Datapath, Endpoint, Hook, IpcacheInfo, Options};
use podnet_route::{Address, Handle, MacAddr, Neighbour, Route, Veth};

use super::bpf;
use super::config::{Command, Env, NetConf, DEFAULT_IDENTITY, SUPPORTED_VERSIONS};
use super::error::{
    CniError, CniResult, CHECK_FAILED, CONNTRACK_FAILURE, DATAPATH_FAILURE, INCOMPATIBLE_VERSION,
    INVALID_CONFIG, NETLINK_FAILURE, UNKNOWN_CONTAINER,
};
use super::ipam;
use super::result::{Interface, IpConfig, RouteConfig, Success};
use super::state::{fnv, Lock, Record, Store};

/// The pods' gateway: a link-local address no node owns, resolved in the
/// pod by a permanent neighbour entry naming the host-side veth's MAC (as
/// the lab's pods do), so no ARP responder is needed.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// What one invocation prints on success (`None`: nothing, as DEL).
pub type Output = Option<String>;

/// Runs one invocation: `env` from `CNI_*`, `stdin` the config.
pub fn run(env: &Env, stdin: &[u8]) -> CniResult<Output> {
    if env.command == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let conf = NetConf::parse(stdin)?;
    let _lock = Lock::take(&conf.state_dir())?;
    match env.command {
        Command::Add => add(&conf, env).map(Some),
        Command::Del => del(&conf, env).map(|()| None),
        Command::Check => check(&conf, env).map(|()| None),
        Command::Version => unreachable_version(),
    }
}

fn unreachable_version() -> CniResult<Output> {
    Err(CniError::new(INCOMPATIBLE_VERSION, "VERSION handled above"))
}

/// The VERSION answer.
pub fn version(stdin: &[u8]) -> String {
    let asked = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str().map(String::from))
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.0.0".to_string());
    serde_json::json!({"cniVersion": asked, "supportedVersions": SUPPORTED_VERSIONS}).to_string()
}

/// The host-side veth name of a container interface: `lxc` and 12 hex
/// digits of a hash of (container id, ifname), 15 bytes as the kernel allows.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    format!(
        "lxc{:012x}",
        fnv(&format!("{container_id}/{ifname}")) & 0xffff_ffff_ffff
    )
}

fn nl(what: &str, e: &podnet_route::Error) -> CniError {
    CniError::from_err(NETLINK_FAILURE, what, e)
}

fn dp_err(what: &str, e: &podnet_datapath::Error) -> CniError {
    CniError::from_err(DATAPATH_FAILURE, what, e)
}

fn load_datapath(conf: &NetConf) -> CniResult<Datapath> {
    let pin = conf.pin_dir();
    let o = if conf.small_maps {
        Options::small(&pin)
    } else {
        Options::new(&pin)
    };
    // The plugin exits right after: programs stay attached (tcx links
    // pinned under the pin dir) and DEL removes them.
    let o = o.keep_attached(true);
    Datapath::load(&o)
        .map_err(|e| dp_err(&format!("load datapath pinned in {}", pin.display()), &e))
}

fn identity(conf: &NetConf, env: &Env) -> CniResult<u32> {
    match env.args.get("PODNET_IDENTITY") {
        Some(v) => v.parse().map_err(|_| {
            CniError::new(
                super::error::INVALID_ENV,
                format!("CNI_ARGS PODNET_IDENTITY={v:?} is not a number"),
            )
        }),
        None => Ok(conf.identity.unwrap_or(DEFAULT_IDENTITY)),
    }
}

fn mac_of(h: &Handle, name: &str) -> CniResult<MacAddr> {
    h.link(name)
        .map_err(|e| nl(&format!("look up {name}"), &e))?
        .and_then(|l| l.mac)
        .ok_or_else(|| CniError::new(NETLINK_FAILURE, format!("{name} has no MAC address")))
}

fn add(conf: &NetConf, env: &Env) -> CniResult<String> {
    let store = Store::new(&conf.state_dir());
    if store.get(&env.container_id, &env.ifname)?.is_some() {
        // A second ADD without DEL: start from a clean slate.
        teardown(conf, env, &store)?;
    }
    let identity = identity(conf, env)?;
    let netns = env.netns.clone();
    if !Path::new(&netns).exists() {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            format!("CNI_NETNS {netns} does not exist"),
        ));
    }
    let host_if = host_ifname(&env.container_id, &env.ifname);
    let mut rec = Record {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: netns.clone(),
        host_if: host_if.clone(),
        host_ifindex: 0,
        host_mac: String::new(),
        pod_mac: String::new(),
        ip: None,
        endpoint_id: store.free_endpoint_id()?,
        identity,
    };
    // Recorded first, so a DEL after a crash mid-ADD finds what to undo.
    store.put(&rec)?;
    match wire(conf, env, &mut rec, &store) {
        Ok(out) => Ok(out),
        Err(e) => {
            // Leave nothing behind; the runtime's DEL then finds nothing.
            let _ = teardown(conf, env, &store);
            Err(e)
        }
    }
}

fn wire(conf: &NetConf, env: &Env, rec: &mut Record, store: &Store) -> CniResult<String> {
    let host = Handle::new().map_err(|e| nl("open netlink", &e))?;
    let pod = Handle::open_netns(&rec.netns).map_err(|e| nl("open netlink in CNI_NETNS", &e))?;

    let assigned = ipam::add(conf, env)?;
    let ip = assigned.ip;
    rec.ip = Some(ip);
    store.put(rec)?;

    let mut veth = Veth::new(&rec.host_if, &env.ifname).peer_netns(&rec.netns);
    if let Some(m) = conf.mtu {
        veth = veth.mtu(m);
    }
    rec.host_ifindex = host.add_veth(&veth).map_err(|e| nl("create veth", &e))?;
    let host_mac = mac_of(&host, &rec.host_if)?;
    let pod_mac = mac_of(&pod, &env.ifname)?;
    rec.host_mac = host_mac.to_string();
    rec.pod_mac = pod_mac.to_string();
    store.put(rec)?;

    // The pod side: address, gateway route and permanent neighbour, default route.
    let gw = IpAddr::V4(GATEWAY);
    let err = |what: &str| {
        let what = what.to_string();
        move |e: podnet_route::Error| nl(&what, &e)
    };
    pod.set_link_up("lo").map_err(err("set lo up in the pod"))?;
    pod.set_link_up(&env.ifname)
        .map_err(err("set the pod's interface up"))?;
    let host_net = IpNet::new(ip, 32).map_err(|e| CniError::new(INVALID_CONFIG, e.to_string()))?;
    pod.add_address(&Address::new(host_net, &env.ifname))
        .map_err(err("add the pod's address"))?;
    pod.replace_neighbour(&Neighbour::permanent(gw, host_mac, &env.ifname))
        .map_err(err("add the gateway's neighbour entry in the pod"))?;
    let default = Route::new(
        "0.0.0.0/0"
            .parse()
            .map_err(|_| CniError::new(INVALID_CONFIG, "default"))?,
    )
    .via(gw)
    .dev(&env.ifname);
    pod.upsert(&default, None)
        .map_err(err("add the pod's default route"))?;

    // The node side: veth up, the /32 route and the pod's neighbour entry.
    host.set_link_up(&rec.host_if)
        .map_err(err("set the host-side veth up"))?;
    host.replace_neighbour(&Neighbour::permanent(ip, pod_mac, &rec.host_if))
        .map_err(err("add the pod's neighbour entry on the node"))?;
    host.upsert(&Route::new(host_net).dev(&rec.host_if), None)
        .map_err(err("add the host route to the pod"))?;

    // The datapath.
    let mut dp = load_datapath(conf)?;
    dp.upsert_endpoint(
        &Endpoint::new(ip, rec.host_ifindex)
            .mac(pod_mac.octets())
            .node_mac(host_mac.octets())
            .id(rec.endpoint_id)
            .identity(rec.identity),
    )
    .map_err(|e| dp_err("register endpoint", &e))?;
    dp.upsert_ipcache(host_net, &IpcacheInfo::new(rec.identity))
        .map_err(|e| dp_err("add the pod to the ipcache", &e))?;
    for hook in [Hook::FromContainer, Hook::ToContainer] {
        dp.attach(rec.host_ifindex, hook)
            .map_err(|e| dp_err(&format!("attach {hook} to {}", rec.host_if), &e))?;
    }
    store.put(rec)?;

    let result = Success {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: rec.host_if.clone(),
                mac: rec.host_mac.clone(),
                sandbox: None,
            },
            Interface {
                name: env.ifname.clone(),
                mac: rec.pod_mac.clone(),
                sandbox: Some(rec.netns.clone()),
            },
        ],
        ips: vec![IpConfig {
            version: None,
            address: host_net.to_string(),
            gateway: Some(GATEWAY.to_string()),
            interface: Some(1),
        }],
        routes: vec![RouteConfig {
            dst: "0.0.0.0/0".into(),
            gw: Some(GATEWAY.to_string()),
        }],
        dns: assigned.result.dns,
    }
    .for_version(&conf.cni_version);
    serde_json::to_string(&result).map_err(|e| CniError::new(DATAPATH_FAILURE, e.to_string()))
}

/// Removes everything ADD made for the container interface, whatever is
/// left of it; every step tolerates its object being gone already.
fn teardown(conf: &NetConf, env: &Env, store: &Store) -> CniResult<()> {
    let rec = store.get(&env.container_id, &env.ifname)?;
    let host = Handle::new().map_err(|e| nl("open netlink", &e))?;
    let host_if = rec
        .as_ref()
        .map(|r| r.host_if.clone())
        .unwrap_or_else(|| host_ifname(&env.container_id, &env.ifname));
    let mut first: Option<CniError> = None;
    let mut keep = |r: CniResult<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    if let Some(ip) = rec.as_ref().and_then(|r| r.ip) {
        let net = IpNet::new(ip, 32).map_err(|e| CniError::new(INVALID_CONFIG, e.to_string()))?;
        // Datapath: endpoint, ipcache, attachments (through the crate while
        // the veth exists, so its pinned links go with them).
        match load_datapath(conf) {
            Ok(mut dp) => {
                keep(
                    dp.remove_endpoint(ip)
                        .map(|_| ())
                        .map_err(|e| dp_err("remove endpoint", &e)),
                );
                keep(
                    dp.remove_ipcache(net)
                        .map(|_| ())
                        .map_err(|e| dp_err("remove the pod from the ipcache", &e)),
                );
                if let Ok(Some(l)) = host.link(&host_if) {
                    for hook in [Hook::FromContainer, Hook::ToContainer] {
                        if dp.attach(l.index, hook).is_ok() {
                            keep(
                                dp.detach(l.index, hook).map_err(|e| {
                                    dp_err(&format!("detach {hook} from {host_if}"), &e)
                                }),
                            );
                        }
                    }
                }
                keep(flush_ct(&dp, ip));
            }
            Err(e) => keep(Err(e)),
        }
        match host.delete_if_present(&Route::new(net).dev(&host_if)) {
            Ok(_) => {}
            // The device is gone, and its route with it.
            Err(podnet_route::Error::UnknownDevice { .. }) => {}
            Err(e) => keep(Err(nl("delete the host route to the pod", &e))),
        }
    }
    keep(
        host.delete_link_if_present(&host_if)
            .map(|_| ())
            .map_err(|e| nl(&format!("delete veth {host_if}"), &e)),
    );
    bpf::remove_defunct_links(&conf.pin_dir().join("links"));
    // IPAM last but always: DEL after a failed ADD still releases a lease.
    if conf.ipam.is_some() {
        keep(ipam::del(conf, env));
    }
    if first.is_none() {
        store.remove(&env.container_id, &env.ifname)?;
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Deletes the pod's conntrack entries (either address `ip`) with the
/// conntrack crate's IP filter.
fn flush_ct(dp: &Datapath, ip: IpAddr) -> CniResult<()> {
    let paths = dp.ct_map_paths();
    for p in [&paths.tcp4, &paths.any4] {
        let map = podnet_conntrack::CtMap::open(p).map_err(|e| {
            CniError::from_err(CONNTRACK_FAILURE, &format!("open {}", p.display()), &e)
        })?;
        let mut f = podnet_conntrack::GcFilter::new().match_ips([ip]);
        podnet_conntrack::gc(&map, &mut f).map_err(|e| {
            CniError::from_err(
                CONNTRACK_FAILURE,
                &format!("flush {ip} from {}", p.display()),
                &e,
            )
        })?;
    }
    Ok(())
}

fn del(conf: &NetConf, env: &Env) -> CniResult<()> {
    teardown(conf, env, &Store::new(&conf.state_dir()))
}

fn check(conf: &NetConf, env: &Env) -> CniResult<()> {
    if conf.cni_version.starts_with("0.3.") {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "CHECK needs cniVersion 0.4.0 or later, not {}",
                conf.cni_version
            ),
        ));
    }
    let fail = |m: String| Err(CniError::new(CHECK_FAILED, m));
    let store = Store::new(&conf.state_dir());
    let Some(rec) = store.get(&env.container_id, &env.ifname)? else {
        return fail(format!(
            "container {} interface {}: ADD left no record",
            env.container_id, env.ifname
        ));
    };
    let Some(ip) = rec.ip else {
        return fail(format!("{}: no address recorded", rec.host_if));
    };
    let host = Handle::new().map_err(|e| nl("open netlink", &e))?;
    let Some(l) = host
        .link(&rec.host_if)
        .map_err(|e| nl("look up host veth", &e))?
    else {
        return fail(format!("host-side veth {} is gone", rec.host_if));
    };
    if l.index != rec.host_ifindex || !l.up {
        return fail(format!("host-side veth {} changed: {l}", rec.host_if));
    }
    let net = IpNet::new(ip, 32).map_err(|e| CniError::new(INVALID_CONFIG, e.to_string()))?;
    if host
        .lookup(&Route::new(net).dev(&rec.host_if))
        .map_err(|e| nl("look up the host route", &e))?
        .is_none()
    {
        return fail(format!("route {net} dev {} is missing", rec.host_if));
    }
    let pod = Handle::open_netns(&rec.netns).map_err(|e| nl("open netlink in CNI_NETNS", &e))?;
    let addrs = pod
        .addresses(Some(&env.ifname))
        .map_err(|e| nl("list the pod's addresses", &e))?;
    if !addrs.iter().any(|a| a.addr == net) {
        return fail(format!("{net} is not on {} in the pod", env.ifname));
    }
    let dp = load_datapath(conf)?;
    let mac = |m: &str| m.parse::<MacAddr>().map(|m| m.octets()).unwrap_or_default();
    let want = Endpoint::new(ip, rec.host_ifindex)
        .mac(mac(&rec.pod_mac))
        .node_mac(mac(&rec.host_mac))
        .id(rec.endpoint_id)
        .identity(rec.identity);
    match dp
        .endpoint(ip)
        .map_err(|e| dp_err("look up endpoint", &e))?
    {
        Some(ep) if ep == want => {}
        other => {
            return fail(format!(
                "endpoint entry of {ip} is {other:?}, want {want:?}"
            ))
        }
    }
    for (egress, hook) in [(false, Hook::FromContainer), (true, Hook::ToContainer)] {
        let progs = bpf::tcx_programs(rec.host_ifindex, egress).map_err(|e| {
            CniError::from_err(
                CHECK_FAILED,
                &format!("query {hook} on {}", rec.host_if),
                &e,
            )
        })?;
        if !progs.iter().any(|p| p == hook.program().name()) {
            return fail(format!(
                "{hook} is not attached to {} (attached: {progs:?})",
                rec.host_if
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(args: &str) -> Env {
        Env {
            command: Command::Add,
            container_id: "c".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: super::super::parse_args(args).unwrap(),
            path: Vec::new(),
        }
    }

    #[test]
    fn identity_comes_from_cni_args_then_config_then_default() {
        let mut conf =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"podnet-cni"}"#).unwrap();
        assert_eq!(identity(&conf, &env_with("")).unwrap(), DEFAULT_IDENTITY);
        conf.identity = Some(1000);
        assert_eq!(identity(&conf, &env_with("IgnoreUnknown=1")).unwrap(), 1000);
        assert_eq!(
            identity(&conf, &env_with("PODNET_IDENTITY=4242")).unwrap(),
            4242
        );
        let e = identity(&conf, &env_with("PODNET_IDENTITY=web")).unwrap_err();
        assert_eq!(e.code, super::super::INVALID_ENV);
        assert!(e.msg.contains("PODNET_IDENTITY"), "{e}");
    }
}
