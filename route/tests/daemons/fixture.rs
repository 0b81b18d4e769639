//! Routing daemons for the coexistence tests: two network namespaces
//! joined by two veth pairs, a BGP speaker in each, started by the test
//! with its config, control socket, pid file and logs in a temporary
//! directory of its own, and stopped (then everything removed) on drop,
//! also when the test fails. Nothing under /etc, /run/bird or /run/frr
//! is used, and no daemon of the host is touched.
//!
//! ```text
//!   node (AS 65001)                         peer (AS 65002)
//!   a0 10.0.0.1/24 fd00::1/64  <-------->  b0 10.0.0.2 fd00::2
//!   a1 10.1.0.1/24 fd01::1/64  <-------->  b1 10.1.0.2 fd01::2
//!   bird2 or FRR (zebra+bgpd)               bird2: announces PREFIXES
//! ```
//! Four eBGP sessions (IPv4 and IPv6 over each link), so each prefix the
//! peer announces reaches the node over two paths (ECMP).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use testsupport::{veth, Netns};

/// What the peer announces over both links: IPv4 and IPv6.
pub const PREFIXES4: [&str; 3] = ["10.50.0.0/24", "10.51.0.0/24", REALM_ECMP_PREFIX];
pub const PREFIXES6: [&str; 2] = ["fd50::/64", "fd51::/64"];
/// Announced over the first link only (one path); the node's bird exports
/// it with `realm 7` (`RTA_FLOW` on the route).
pub const REALM_PREFIX: &str = "10.52.0.0/24";
/// Announced over both links; the node's bird exports it with `realm 7`
/// on each path (`RTA_FLOW` in `RTA_MULTIPATH`).
pub const REALM_ECMP_PREFIX: &str = "10.53.0.0/24";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("pnt-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One daemon process started in a netns (in the foreground, so that the
/// child is the daemon itself), output to a log file.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(ns: &Netns, dir: &TempDir, name: &str, program: &str, args: &[&str]) -> Daemon {
        let path = which(program);
        let log = dir.join(&format!("{name}.out"));
        let out = File::create(&log).expect("daemon log");
        let err = out.try_clone().expect("daemon log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} in {}: {e}", ns.name()));
        Daemon {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Fails the test with the daemon's output when it has exited.
    pub fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 3 s; waits for the process.
    fn stop(&mut self) {
        let pid = self.child.id() as i32;
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the pid is
            // our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // FRR keeps a crash-log directory per process under /var/tmp/frr,
        // removed on a clean exit; remove ours should the exit not be clean.
        let _ = fs::remove_dir_all(format!("/var/tmp/frr/{}.{pid}", self.name));
        // FRR makes /var/tmp/frr itself on its first start: leave the host
        // as found once no daemon of any test uses it (fails while one does).
        let _ = fs::remove_dir("/var/tmp/frr");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The absolute path of `program` (daemons live in /usr/sbin and
/// /usr/lib/frr); panics naming the Debian package when it is missing.
pub fn which(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/lib/frr", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    let pkg = match program {
        "bird" | "birdc" => "bird2",
        _ => "frr",
    };
    panic!("{program} not found: install the Debian package {pkg} (scripts/setup.sh does)");
}

/// The two namespaces and their daemons. Fields drop in order: daemons
/// first, then the namespaces, then the directory.
pub struct Bgp {
    pub daemons: Vec<Daemon>,
    pub node: Netns,
    _peer: Netns,
    _dir: TempDir,
}

fn links(tag: &str) -> (Netns, Netns) {
    let node = Netns::new(&format!("{tag}-n"));
    let peer = Netns::new(&format!("{tag}-p"));
    for ns in [&node, &peer] {
        for k in ["all", "default"] {
            ns.exec_ok(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{k}.accept_dad=0")],
            );
        }
        ns.exec_ok("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        ns.exec_ok("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
    }
    veth(&node, "a0", &peer, "b0");
    veth(&node, "a1", &peer, "b1");
    for (ns, i0, i1, host) in [(&node, "a0", "a1", 1), (&peer, "b0", "b1", 2)] {
        ns.add_address(&format!("10.0.0.{host}/24"), i0);
        ns.add_address(&format!("fd00::{host}/64"), i0);
        ns.add_address(&format!("10.1.0.{host}/24"), i1);
        ns.add_address(&format!("fd01::{host}/64"), i1);
    }
    (node, peer)
}

/// BGP timers short enough for a test: sessions up within a second or two.
const BIRD_TIMERS: &str = "hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 2; startup hold time 3;";

fn peer_bird_conf() -> String {
    let mut s =
        String::from("log stderr all;\nrouter id 10.0.0.2;\nprotocol device { scan time 1; }\n");
    s.push_str("protocol static s4 { ipv4;\n");
    for p in PREFIXES4.iter().chain([&REALM_PREFIX]) {
        s.push_str(&format!("  route {p} blackhole;\n"));
    }
    s.push_str("}\nprotocol static s6 { ipv6;\n");
    for p in PREFIXES6 {
        s.push_str(&format!("  route {p} blackhole;\n"));
    }
    s.push_str("}\n");
    s.push_str(&format!(
        "template bgp up {{ local as 65002; {BIRD_TIMERS} }}\n"
    ));
    let only_first_link = format!("source = RTS_STATIC && net != {REALM_PREFIX}");
    for (name, local, nb, fam, export) in [
        ("q0", "10.0.0.2", "10.0.0.1", "ipv4", "source = RTS_STATIC"),
        (
            "q1",
            "10.1.0.2",
            "10.1.0.1",
            "ipv4",
            only_first_link.as_str(),
        ),
        ("q0v6", "fd00::2", "fd00::1", "ipv6", "source = RTS_STATIC"),
        ("q1v6", "fd01::2", "fd01::1", "ipv6", "source = RTS_STATIC"),
    ] {
        s.push_str(&format!(
            "protocol bgp {name} from up {{ local {local} as 65002; neighbor {nb} as 65001; {fam} {{ import none; export where {export}; }}; }}\n"
        ));
    }
    s
}

/// The node's bird: learns over BGP, exports to the kernel with merged
/// paths (ECMP), `src`, `mtu`, and a realm on [`REALM_PREFIX`] and
/// [`REALM_ECMP_PREFIX`].
fn node_bird_conf() -> String {
    let mut s =
        String::from("log stderr all;\nrouter id 10.0.0.1;\nprotocol device { scan time 1; }\n");
    s.push_str(&format!(
        "protocol kernel k4 {{ ipv4 {{ import none; export filter {{ krt_prefsrc = 10.0.0.1; krt_mtu = 1400; if net ~ [ {REALM_PREFIX}, {REALM_ECMP_PREFIX} ] then krt_realm = 7; accept; }}; }}; merge paths on; }}\n"
    ));
    s.push_str(
        "protocol kernel k6 { ipv6 { import none; export filter { krt_prefsrc = fd00::1; krt_mtu = 1400; accept; }; }; merge paths on; }\n",
    );
    s.push_str(&format!(
        "template bgp up {{ local as 65001; {BIRD_TIMERS} }}\n"
    ));
    for (name, local, nb, fam) in [
        ("p0", "10.0.0.1", "10.0.0.2", "ipv4"),
        ("p1", "10.1.0.1", "10.1.0.2", "ipv4"),
        ("p0v6", "fd00::1", "fd00::2", "ipv6"),
        ("p1v6", "fd01::1", "fd01::2", "ipv6"),
    ] {
        s.push_str(&format!(
            "protocol bgp {name} from up {{ local {local} as 65001; neighbor {nb} as 65002; {fam} {{ import all; export none; }}; }}\n"
        ));
    }
    s
}

fn start_bird(ns: &Netns, dir: &TempDir, name: &str, conf: &str) -> Daemon {
    let c = dir.join(&format!("{name}.conf"));
    fs::write(&c, conf).expect("write bird config");
    let sock = dir.join(&format!("{name}.ctl"));
    let pid = dir.join(&format!("{name}.pid"));
    Daemon::start(
        ns,
        dir,
        name,
        "bird",
        &[
            "-f",
            "-c",
            c.to_str().expect("utf-8 path"),
            "-s",
            sock.to_str().expect("utf-8 path"),
            "-P",
            pid.to_str().expect("utf-8 path"),
        ],
    )
}

impl Bgp {
    /// bird2 on both sides.
    pub fn bird(tag: &str) -> Bgp {
        let dir = TempDir::new(tag);
        let (node, peer) = links(tag);
        let mut daemons = vec![start_bird(&peer, &dir, "peer-bird", &peer_bird_conf())];
        daemons.push(start_bird(&node, &dir, "node-bird", &node_bird_conf()));
        Bgp {
            daemons,
            node,
            _peer: peer,
            _dir: dir,
        }
    }

    /// FRR (zebra + bgpd) on the node, bird2 on the peer.
    pub fn frr(tag: &str) -> Bgp {
        let dir = TempDir::new(tag);
        let (node, peer) = links(tag);
        let mut daemons = vec![start_bird(&peer, &dir, "peer-bird", &peer_bird_conf())];
        let d = dir.path().to_str().expect("utf-8 path").to_string();
        let zsock = format!("{d}/zserv.api");
        fs::write(
            dir.join("zebra.conf"),
            "hostname node\nlog stdout debugging\n",
        )
        .expect("write zebra config");
        let mut bgpd = String::from(
            "frr defaults datacenter\nhostname node\nlog stdout debugging\nrouter bgp 65001\n bgp router-id 10.0.0.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n timers bgp 1 3\n",
        );
        for nb in ["10.0.0.2", "10.1.0.2", "fd00::2", "fd01::2"] {
            bgpd.push_str(&format!(
                " neighbor {nb} remote-as 65002\n neighbor {nb} timers connect 1\n"
            ));
        }
        bgpd.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n  neighbor 10.0.0.2 activate\n  neighbor 10.1.0.2 activate\n exit-address-family\n");
        bgpd.push_str(" address-family ipv6 unicast\n  maximum-paths 8\n  neighbor fd00::2 activate\n  neighbor fd01::2 activate\n exit-address-family\n");
        fs::write(dir.join("bgpd.conf"), bgpd).expect("write bgpd config");
        testsupport::run_ok("chown", ["-R", "frr:frr", d.as_str()]);
        let common = |name: &str| -> Vec<String> {
            vec![
                "-f".into(),
                format!("{d}/{name}.conf"),
                "-i".into(),
                format!("{d}/{name}.pid"),
                "-z".into(),
                zsock.clone(),
                "--vty_socket".into(),
                d.clone(),
                // FRR drops to its own user (root is not in its vty
                // group); the temp dir is handed to it below.
                "-u".into(),
                "frr".into(),
                "-g".into(),
                "frr".into(),
                "-P".into(),
                "0".into(),
            ]
        };
        let zargs = common("zebra");
        let zargs: Vec<&str> = zargs.iter().map(String::as_str).collect();
        let mut zebra = Daemon::start(&node, &dir, "zebra", "zebra", &zargs);
        // bgpd connects to zebra's socket: wait until it is there.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&zsock).exists() {
            zebra.check_running();
            assert!(
                Instant::now() < deadline,
                "zebra did not open {zsock}:\n{}",
                zebra.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemons.push(zebra);
        let bargs = common("bgpd");
        let bargs: Vec<&str> = bargs.iter().map(String::as_str).collect();
        daemons.push(Daemon::start(&node, &dir, "bgpd", "bgpd", &bargs));
        Bgp {
            daemons,
            node,
            _peer: peer,
            _dir: dir,
        }
    }

    /// Polls (at most 30 s) until `ready` holds for the node's `ip route
    /// show` of both families; fails with the daemons' output otherwise.
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&str, &str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v4 = self.node.ip(&["-4", "route", "show"]);
            let v6 = self.node.ip(&["-6", "route", "show"]);
            if ready(&v4, &v6) {
                return;
            }
            for d in &mut self.daemons {
                d.check_running();
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .daemons
                    .iter()
                    .map(|d| format!("--- {}\n{}", d.name, d.output()))
                    .collect();
                panic!(
                    "{what}: not within 30 s.\nip -4 route:\n{v4}\nip -6 route:\n{v6}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every prefix announced over both links is in the node's
    /// main table over both (two `nexthop` lines each), and
    /// [`REALM_PREFIX`] over the first.
    pub fn wait_for_ecmp(&mut self) {
        self.wait_until("every prefix over both links", |v4, v6| {
            let has = |text: &str, p: &str| {
                let mut lines = text
                    .lines()
                    .skip_while(|l| !l.starts_with(&format!("{p} ")));
                lines.next().is_some()
                    && lines
                        .take_while(|l| l.starts_with('\t'))
                        .filter(|l| l.contains("nexthop"))
                        .count()
                        == 2
            };
            PREFIXES4.iter().all(|p| has(v4, p))
                && PREFIXES6.iter().all(|p| has(v6, p))
                && v4
                    .lines()
                    .any(|l| l.starts_with(&format!("{REALM_PREFIX} ")))
        });
    }
}
