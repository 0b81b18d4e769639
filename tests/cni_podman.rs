//! The podnet CNI plugin driven by a real container runtime: podman (CNI
//! backend) from Debian, with host-local IPAM from containernetworking-plugins.
//!
//! podman's configuration, storage, CNI config and plugin directories are
//! all in a temporary directory of the test, and podman runs inside a
//! network namespace of the test (`nsenter --net=`, which keeps the host's
//! bpffs in view, unlike `ip netns exec`), which plays the node: every veth,
//! route and map the plugin touches lives there or in the test's pin dir.
//! What podman 4.3 writes whatever its config says (libcni's result cache
//! under `/var/lib/cni/results`, the blob-info cache under
//! `/var/lib/containers/cache`, cgroup directories) is removed again.
//! See `../shared/design/podman-cni.md` for the facts behind the set-up.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use podnet_datapath::{Datapath, Options};
use podnet_route::Handle;
use serde_json::Value;
use testsupport::{require_privileges, BpfDir, Netns};

const PODMAN: &str = "/usr/bin/podman";
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// System-wide paths podman writes regardless of its config, and whether
/// each existed before the first test of this process touched podman.
/// (tests in flight, [(path, existed before)]).
type Users = Option<(usize, Vec<(PathBuf, bool)>)>;
static SYSTEM_PATHS: Mutex<Users> = Mutex::new(None);

fn system_paths_enter() {
    let mut g = SYSTEM_PATHS.lock().unwrap_or_else(|p| p.into_inner());
    let (n, _) = g.get_or_insert_with(|| {
        let paths = ["/var/lib/cni", "/var/lib/containers"]
            .iter()
            .map(|p| (PathBuf::from(p), Path::new(p).exists()))
            .collect();
        (0, paths)
    });
    *n += 1;
}

fn system_paths_leave() {
    let mut g = SYSTEM_PATHS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((n, paths)) = g.as_mut() {
        *n -= 1;
        if *n == 0 {
            for (p, existed) in paths.iter() {
                if !existed {
                    let _ = std::fs::remove_dir_all(p);
                }
            }
            *g = None;
        }
    }
}

/// One podman installation in a temp dir, run in one node netns.
struct Podman {
    tmp: PathBuf,
    net: String,
    subnet: String,
    cgroup: String,
    pin: BpfDir,
    node: Netns,
}

impl Podman {
    /// A fresh podman set-up with the network `net` (IPAM from `subnet`)
    /// and the busybox image `localhost/pntbox:1`.
    fn new(tag: &str, subnet: &str) -> Podman {
        assert!(
            Path::new(PODMAN).exists() && Path::new(HOST_LOCAL).exists(),
            "podman and containernetworking-plugins are missing: run scripts/setup.sh"
        );
        system_paths_enter();
        let node = Netns::new(&format!("cni-{tag}"));
        let pin = BpfDir::new(&format!("cni-{tag}"));
        let id = format!("pnt{}{tag}", std::process::id());
        let tmp = std::env::temp_dir().join(format!("{id}-podman"));
        let _ = std::fs::remove_dir_all(&tmp);
        for d in ["bin", "conf", "rootfs/bin", "tmp"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap();
        }
        let p = Podman {
            net: id.clone(),
            subnet: subnet.into(),
            cgroup: format!("/{id}"),
            tmp,
            pin,
            node,
        };
        p.write_config();
        p.import_image();
        p
    }

    fn write_config(&self) {
        let t = self.tmp.display();
        std::fs::write(
            self.tmp.join("containers.conf"),
            format!(
                r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{t}/events.log"
tmp_dir = "{t}/tmp"
[network]
network_backend = "cni"
network_config_dir = "{t}/conf"
cni_plugin_dirs = ["{t}/bin", "/usr/lib/cni"]
default_network = "pntunused"
"#
            ),
        )
        .unwrap();
        std::fs::write(
            self.tmp.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{t}/graph\"\nrunroot = \"{t}/run\"\n"
            ),
        )
        .unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.net,
            "plugins": [{
                "type": "podnet-cni",
                "pinDir": self.pin.path(),
                "stateDir": self.tmp.join("state"),
                "smallMaps": true,
                "identity": 1000,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.subnet}]],
                    "dataDir": self.tmp.join("ipam"),
                },
            }],
        });
        std::fs::write(
            self.tmp.join("conf").join(format!("{}.conflist", self.net)),
            conflist.to_string(),
        )
        .unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_podnet-cni"),
            self.tmp.join("bin/podnet-cni"),
        )
        .unwrap();
    }

    fn import_image(&self) {
        let root = self.tmp.join("rootfs");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for a in ["sh", "ping", "nc", "sleep", "cat", "echo", "ip"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        let tar = self.tmp.join("rootfs.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let tar = tar.display().to_string();
        self.ok(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            &tar,
            "localhost/pntbox:1",
        ]);
    }

    /// Runs podman in the node netns.
    fn podman(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.node.path().display()))
            .arg(PODMAN)
            .args(args)
            .env("CONTAINERS_CONF", self.tmp.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.tmp.join("storage.conf"))
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.podman(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn run_container(&self, name: &str) -> Output {
        self.podman(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.net,
            "--cap-add",
            "NET_RAW",
            "--cgroup-parent",
            &self.cgroup,
            "localhost/pntbox:1",
            "sleep",
            "1000",
        ])
    }

    fn start(&self, name: &str) {
        let o = self.run_container(name);
        assert!(
            o.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// (IP, MAC) as `podman inspect` shows them.
    fn inspect(&self, name: &str) -> (IpAddr, String) {
        let f = format!(
            "{{{{.NetworkSettings.Networks.{n}.IPAddress}}}} {{{{.NetworkSettings.Networks.{n}.MacAddress}}}}",
            n = self.net
        );
        let out = self.ok(&["inspect", "--format", &f, name]);
        let (ip, mac) = out.split_once(' ').expect("ip and mac");
        (
            ip.parse()
                .unwrap_or_else(|_| panic!("{name}: no IP in {out:?}")),
            mac.to_string(),
        )
    }

    /// The ADD result libcni cached for container `name` (what podman read).
    fn cached_result(&self, name: &str) -> Value {
        let id = self.ok(&["inspect", "--format", "{{.Id}}", name]);
        let p = format!("/var/lib/cni/results/{}-{id}-eth0", self.net);
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["result"].clone()
    }

    /// Runs the plugin itself in the node, as libcni would: `command` for
    /// container `name` with the network's config (and `prevResult`).
    fn plugin(&self, command: &str, id: &str, netns: &str, prev: Option<&Value>) -> (bool, String) {
        let list: Value = serde_json::from_slice(
            &std::fs::read(self.tmp.join("conf").join(format!("{}.conflist", self.net))).unwrap(),
        )
        .unwrap();
        let mut conf = list["plugins"][0].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        if let Some(r) = prev {
            conf["prevResult"] = r.clone();
        }
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.node.path().display()))
            .arg(self.tmp.join("bin/podnet-cni"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_PATH",
                format!("{}:/usr/lib/cni", self.tmp.join("bin").display()),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    }

    fn exec(&self, name: &str, cmd: &str) -> Output {
        self.podman(&["exec", name, "sh", "-c", cmd])
    }

    fn ping(&self, from: &str, to: IpAddr) {
        let o = self.exec(from, &format!("ping -c1 -W2 {to}"));
        assert!(
            o.status.success(),
            "{from} -> {to}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn routes(&self) -> Handle {
        Handle::open_netns(self.node.path()).unwrap()
    }

    /// Host-side veths (`lxc...`) in the node.
    fn lxcs(&self) -> Vec<String> {
        self.routes()
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n.starts_with("lxc"))
            .collect()
    }

    fn datapath(&self) -> Datapath {
        Datapath::load(&Options::small(self.pin.path())).unwrap()
    }

    /// The text of both IPv4 CT maps.
    fn ct_text(&self) -> String {
        let dp = self.datapath();
        let paths = dp.ct_map_paths();
        let mut s = String::new();
        for p in [&paths.tcp4, &paths.any4] {
            let m = podnet_conntrack::CtMap::open(p).unwrap();
            s.push_str(&podnet_conntrack::dump_entries(&m).unwrap());
        }
        s
    }

    fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp.join("ipam").join(&self.net))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn records(&self) -> usize {
        std::fs::read_dir(self.tmp.join("state/containers"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    /// Nothing of the pod at `ip` is left: veth, route, endpoint entry,
    /// IPAM lease, CT entries.
    fn assert_gone(&self, ip: IpAddr, veths_left: usize) {
        assert_eq!(self.lxcs().len(), veths_left, "veths: {:?}", self.lxcs());
        let routes = self
            .routes()
            .list(&podnet_route::RouteFilter::default().family(podnet_route::Family::V4))
            .unwrap();
        assert!(
            routes.iter().all(|r| r.prefix.addr() != ip),
            "route to {ip} left: {routes:?}"
        );
        assert_eq!(
            self.datapath().endpoint(ip).unwrap(),
            None,
            "endpoint {ip} left"
        );
        assert!(
            !self.leases().contains(&ip.to_string()),
            "lease of {ip} left"
        );
        let ct = self.ct_text();
        assert!(
            !ct.contains(&format!("{ip}:")),
            "CT entries of {ip} left:\n{ct}"
        );
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // DEL for whatever still runs, while the node and pin dir exist.
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.podman(&["rmi", "-a", "-f"]);
        // conmon runs `podman container cleanup` (another DEL, which touches
        // /var/lib/cni) after a container exits, in the node netns: wait for
        // every process there to finish before removing what they write.
        for _ in 0..200 {
            let pids = Command::new("ip")
                .args(["netns", "pids", self.node.name()])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if pids.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.net))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // cgroupfs: /sys/fs/cgroup/<controller>/<parent>/... (and the unified one).
        let mut dirs = vec![PathBuf::from(format!("/sys/fs/cgroup{}", self.cgroup))];
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                dirs.push(e.path().join(self.cgroup.trim_start_matches('/')));
            }
        }
        for d in dirs {
            remove_cgroup(&d);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
        system_paths_leave();
    }
}

fn remove_cgroup(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
        let _ = std::fs::remove_dir(d);
    }
}

#[test]
fn two_containers_talk_through_the_datapath_and_leave_nothing_behind() {
    require_privileges!();
    let p = Podman::new("two", "10.89.0.0/24");
    p.start("a");
    p.start("b");
    let (ip_a, mac_a) = p.inspect("a");
    let (ip_b, _) = p.inspect("b");
    assert_ne!(ip_a, ip_b);

    // podman shows what the plugin reported.
    let r = p.cached_result("a");
    assert_eq!(
        r["ips"][0]["address"].as_str(),
        Some(format!("{ip_a}/32").as_str())
    );
    assert_eq!(r["ips"][0]["gateway"].as_str(), Some("169.254.1.1"));
    let i = r["ips"][0]["interface"].as_u64().unwrap() as usize;
    assert_eq!(r["interfaces"][i]["name"].as_str(), Some("eth0"));
    assert!(r["interfaces"][i]["sandbox"].is_string());
    assert_eq!(r["interfaces"][i]["mac"].as_str(), Some(mac_a.as_str()));
    assert_eq!(r["routes"][0]["dst"].as_str(), Some("0.0.0.0/0"));

    // The endpoint entry names the veth and both MACs.
    let ep = p.datapath().endpoint(ip_a).unwrap().expect("endpoint of a");
    let lxc_a = p
        .routes()
        .link_by_index(ep.ifindex)
        .unwrap()
        .expect("veth of a");
    assert_eq!(podnet_route::MacAddr(ep.mac).to_string(), mac_a);
    assert_eq!(Some(podnet_route::MacAddr(ep.node_mac)), lxc_a.mac);
    assert_eq!(ep.identity, 1000);

    // Ping and TCP, through the datapath: CT entries appear for the flow.
    p.ping("a", ip_b);
    p.ping("b", ip_a);
    let o = p.podman(&[
        "exec",
        "-d",
        "b",
        "sh",
        "-c",
        "echo hello-from-b | nc -l -p 8080",
    ]);
    assert!(o.status.success());
    let mut got = String::new();
    for _ in 0..20 {
        let o = p.exec("a", &format!("nc -w 2 {ip_b} 8080 </dev/null"));
        got = String::from_utf8_lossy(&o.stdout).into_owned();
        if got.contains("hello-from-b") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(got.contains("hello-from-b"), "TCP a -> b: {got:?}");
    let ct = p.ct_text();
    assert!(
        ct.lines().any(|l| l.starts_with("TCP")
            && l.contains(&format!("{ip_b}:8080"))
            && l.contains(&format!("{ip_a}:"))),
        "no TCP CT entry for {ip_a} -> {ip_b}:8080:\n{ct}"
    );
    assert!(
        ct.lines().any(|l| l.starts_with("ICMP")),
        "no ICMP CT entry:\n{ct}"
    );

    // CHECK (libcni's CheckNetworkList; podman never sends it) passes, and
    // fails naming the route once the host route is gone.
    let id_a = p.ok(&["inspect", "--format", "{{.Id}}", "a"]);
    let sandbox = r["interfaces"][i]["sandbox"].as_str().unwrap().to_string();
    let (ok, out) = p.plugin("CHECK", &id_a, &sandbox, Some(&r));
    assert!(ok, "CHECK: {out}");
    let host_route =
        podnet_route::Route::new(podnet_route::IpNet::new(ip_a, 32).unwrap()).dev(&lxc_a.name);
    p.routes().delete(&host_route).unwrap();
    let (ok, out) = p.plugin("CHECK", &id_a, &sandbox, Some(&r));
    assert!(!ok, "CHECK must fail without the host route");
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["code"], 104, "{out}");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains(&format!("{ip_a}/32 dev {}", lxc_a.name)),
        "{out}"
    );
    p.routes().upsert(&host_route, None).unwrap();
    assert!(p.plugin("CHECK", &id_a, &sandbox, Some(&r)).0);

    // stop -> DEL: nothing of a is left.
    p.ok(&["stop", "-t", "0", "a"]);
    p.assert_gone(ip_a, 1);
    assert_eq!(p.records(), 1);
    // start -> ADD again: connectivity again.
    p.ok(&["start", "a"]);
    let (ip_a2, _) = p.inspect("a");
    p.ping("a", ip_b);
    p.ping("b", ip_a2);
    // rm of running containers -> DEL.
    p.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    p.assert_gone(ip_a2, 0);
    p.assert_gone(ip_b, 0);
    assert_eq!(p.records(), 0);
    assert!(p.leases().is_empty(), "leases left: {:?}", p.leases());
    // A second DEL, and a DEL of a container never added, succeed with no output.
    assert_eq!(p.plugin("DEL", &id_a, "", None), (true, String::new()));
    assert_eq!(
        p.plugin("DEL", "never-added", "", None),
        (true, String::new())
    );
    // No pinned tcx link outlives its veth.
    assert!(!p.pin.path().join("links").exists());
}

#[test]
fn ten_containers_started_at_once_all_get_connectivity() {
    require_privileges!();
    let p = Podman::new("ten", "10.90.0.0/24");
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| s.spawn(|| (n.clone(), p.run_container(n))))
            .collect();
        for h in hs {
            let (n, o) = h.join().unwrap();
            assert!(
                o.status.success(),
                "podman run {n}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    });
    let ips: Vec<IpAddr> = names.iter().map(|n| p.inspect(n).0).collect();
    assert_eq!(ips.iter().collect::<HashSet<_>>().len(), 10, "{ips:?}");
    assert_eq!(p.lxcs().len(), 10);
    assert_eq!(p.records(), 10);
    let dp = p.datapath();
    for ip in &ips {
        assert!(dp.endpoint(*ip).unwrap().is_some(), "endpoint {ip}");
    }
    drop(dp);
    // Each container reaches the next one.
    for (i, n) in names.iter().enumerate() {
        p.ping(n, ips[(i + 1) % ips.len()]);
    }
    let mut args = vec!["rm", "-f", "-t", "0"];
    args.extend(names.iter().map(String::as_str));
    p.ok(&args);
    for ip in &ips {
        p.assert_gone(*ip, 0);
    }
    assert_eq!(p.records(), 0);
}

#[test]
fn add_failing_on_exhausted_ipam_leaves_nothing_behind() {
    require_privileges!();
    // A /30: host-local hands out one address (.1 is the gateway).
    let p = Podman::new("full", "10.91.0.0/30");
    p.start("one");
    let (ip, _) = p.inspect("one");
    // IPv4 only: the kernel adds IPv6 link-local routes of the veth when it likes.
    let v4 = podnet_route::RouteFilter::default().family(podnet_route::Family::V4);
    let before_routes = p.routes().list(&v4).unwrap();
    let o = p.run_container("two");
    assert!(!o.status.success(), "the second ADD must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("IPAM ADD"), "error names what failed: {err}");
    assert_eq!(p.lxcs().len(), 1, "veths: {:?}", p.lxcs());
    assert_eq!(p.records(), 1);
    assert_eq!(p.leases(), vec![ip.to_string()]);
    let after_routes = p.routes().list(&v4).unwrap();
    assert_eq!(before_routes, after_routes);
    p.ok(&["rm", "-f", "-t", "0", "one", "two"]);
    p.assert_gone(ip, 0);
    assert_eq!(p.records(), 0);
}
