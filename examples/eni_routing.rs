//! Cilium's AWS ENI datapath layout (seed 002) with the `route` crate, in
//! network namespaces: a node with an ENI (`eth1`) into a "VPC" whose router
//! is another namespace, and a pod behind `lxc-eni` holding an ENI IP.
//!
//! ```text
//!  pod 192.168.105.44 ─ lxc-eni ┐ node  eth1 192.168.0.20 ══ eth0 192.168.0.1  vpc router
//!                               │ (no default route in main)      192.168.5.5 on lo
//! ```
//!
//! Installed as one unit: `20: from all to 192.168.105.44 lookup main`,
//! `30: from 192.168.105.44 to 192.168.0.0/16 lookup 92`, table 92 with
//! `default via 192.168.0.1 dev eth1` and `192.168.0.1 dev eth1 scope link`,
//! main with `192.168.105.44 dev lxc-eni`. Verified by a ping from the pod to
//! 192.168.5.5, which only the ENI table can route, before (fails), with
//! (succeeds) and after removal (fails again).
//!
//! ```text
//! sudo cargo run --example eni_routing
//! ```

use podnet::lab::check;
use podnet_route::layout::EniEndpoint;
use podnet_route::{Address, Handle, RouteFilter, ShowStyle, Veth};
use testsupport::Netns;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const POD_IP: &str = "192.168.105.44";
const VPC_HOST: &str = "192.168.5.5";
const ENI_TABLE: u32 = 92;

fn main() {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("usage: eni_routing\n\nInstalls seed 002's ENI rules and table for one pod in network\nnamespaces (pe-node, pe-pod, pe-vpc), shows them as `ip rule` / `ip route`\ntext, proves a pod packet takes the ENI path, and removes them.");
        return;
    }
    if !testsupport::privileges_available() {
        std::process::exit(1);
    }
    match run() {
        Ok(()) => println!("\nall steps verified"),
        Err(e) => {
            eprintln!("\neni_routing: {e}");
            std::process::exit(1);
        }
    }
}

fn pod_pings_vpc(pod: &Netns) -> bool {
    pod.exec("ping", &["-c", "1", "-W", "1", VPC_HOST])
        .status
        .success()
}

fn run() -> Result<()> {
    println!("[1/4] namespaces: node, pod, VPC router");
    let node = Netns::named("pe-node");
    let pod = Netns::named("pe-pod");
    let vpc = Netns::named("pe-vpc");
    node.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    node.exec_ok("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"]);
    // Links, addresses and the pod's wiring with `route` (what a CNI plugin does).
    let (hn, hv) = (
        Handle::open_netns(node.path())?,
        Handle::open_netns(vpc.path())?,
    );
    hn.add_veth(&Veth::new("eth1", "eth0").peer_netns(vpc.path()))?;
    hn.set_link_up("eth1")?;
    hv.set_link_up("eth0")?;
    hn.add_address(&Address::new("192.168.0.20/24".parse()?, "eth1"))?;
    hv.add_address(&Address::new("192.168.0.1/24".parse()?, "eth0"))?;
    hv.add_address(&Address::new(format!("{VPC_HOST}/32").parse()?, "lo"))?;
    hv.upsert(
        &format!("{POD_IP}/32 via 192.168.0.20 dev eth0").parse()?,
        None,
    )?;
    podnet::lab::wire_pod(
        &node,
        "lxc-eni",
        &pod,
        POD_IP.parse()?,
        "169.254.1.1".parse()?,
    )?;
    println!("  node pe-node: eth1 192.168.0.20/24 (ENI), lxc-eni; no default route");
    println!("  pod pe-pod: {POD_IP}/32, default via 169.254.1.1 (the host-side veth)");
    println!("  router pe-vpc: 192.168.0.1/24, {VPC_HOST} on lo");
    check(!pod_pings_vpc(&pod), "before: the pod cannot reach the VPC")?;

    println!("\n[2/4] install the endpoint's rules and ENI table with `route`");
    let h = Handle::open_netns(node.path())?;
    let ep = EniEndpoint::new(
        POD_IP.parse()?,
        "lxc-eni",
        "eth1",
        ENI_TABLE,
        "192.168.0.1".parse()?,
    )
    .vpc_cidr("192.168.0.0/16".parse()?);
    check(ep.install(&h)?, "installed (something changed)")?;
    check(!ep.install(&h)?, "installing again changes nothing")?;

    println!("\n  ip rule show:");
    let rules: Vec<String> = h
        .list_rules(Some(podnet_route::Family::V4))?
        .iter()
        .map(|r| r.show().to_string())
        .collect();
    for r in &rules {
        println!("    {r}");
    }
    println!("  ip route show table {ENI_TABLE}:");
    let table: Vec<String> = h
        .list(&RouteFilter::default().table(ENI_TABLE))?
        .iter()
        .map(|r| r.show(ShowStyle::OneTable).to_string())
        .collect();
    for r in &table {
        println!("    {r}");
    }
    check(
        rules == node.ip_lines(&["rule", "show"]),
        "identical to the real `ip rule show`",
    )?;
    check(
        table == node.ip_lines(&["route", "show", "table", &ENI_TABLE.to_string()]),
        "identical to the real `ip route show table 92`",
    )?;
    let layout = ep.layout();
    for r in &layout.routes {
        check(
            h.lookup(r)?.is_some(),
            &format!("route `{r}` is in the kernel"),
        )?;
    }
    let ip_rules = node.ip(&["rule", "show"]);
    check(
        ip_rules.contains(&format!("20:\tfrom all to {POD_IP} lookup main"))
            && ip_rules.contains(&format!(
                "30:\tfrom {POD_IP} to 192.168.0.0/16 lookup {ENI_TABLE}"
            )),
        "`ip rule show` has rules 20 and 30 as in seed 002",
    )?;

    println!("\n[3/4] a packet from the pod takes the ENI path");
    check(
        pod_pings_vpc(&pod),
        &format!("pod -> {VPC_HOST} answered through table {ENI_TABLE}"),
    )?;
    let via = node.ip(&["route", "get", VPC_HOST, "from", POD_IP, "iif", "lxc-eni"]);
    println!(
        "  ip route get {VPC_HOST} from {POD_IP} iif lxc-eni: {}",
        via.trim()
    );
    check(
        via.contains("via 192.168.0.1 dev eth1") && via.contains(&format!("table {ENI_TABLE}")),
        "the kernel resolves it via the ENI router in the ENI table",
    )?;

    println!("\n[4/4] remove the endpoint");
    ep.remove(&h)?;
    check(
        h.list(&RouteFilter::default().table(ENI_TABLE))?.is_empty(),
        "the ENI table is empty",
    )?;
    let left = h
        .list_rules(Some(podnet_route::Family::V4))?
        .into_iter()
        .filter(|r| r.priority == Some(20) || r.priority == Some(30))
        .count();
    check(left == 0, "rules 20 and 30 are gone")?;
    check(!pod_pings_vpc(&pod), "the pod can no longer reach the VPC")?;
    Ok(())
}
