//! Fixtures for the privileged tests of this workspace.
//!
//! Every privileged test builds its own world and tears it down again:
//!
//! * [`Netns`]: a fresh, uniquely named network namespace (`ip netns add`) with
//!   `lo` up, removed in `Drop` (also when the test panics), together with every
//!   process still running inside it.
//! * [`veth`]: a veth pair between two namespaces.
//! * [`Netns::run`]: run a closure on a dedicated thread that has `setns`'d into
//!   the namespace, so the calling thread never changes namespace.
//! * [`BpfDir`]: a per-test directory on bpffs for pinned maps and programs,
//!   removed with everything pinned below it in `Drop`.
//!
//! Tests never touch the host's own links, routes, rules or pins, so they run in
//! parallel safely. Names carry the test process's pid, and the first fixture a
//! process creates sweeps away namespaces and pin directories left behind by
//! test processes that no longer exist (killed by a signal, say).
//!
//! A privileged test starts with [`require_privileges!`]: without root, iproute2
//! or a mounted bpffs it fails with a message that says what is missing. Only
//! where `PODNET_SKIP_PRIVILEGED=1` is set (an unprivileged laptop; CI never
//! sets it) does it return early instead, after saying so on stderr.
//!
//! ```no_run
//! use testsupport::{require_privileges, Netns};
//!
//! require_privileges!();
//! let ns = Netns::new("doc");
//! ns.add_link("eth9");
//! let index = ns.run(|| unsafe { libc::if_nametoindex(c"eth9".as_ptr()) });
//! assert!(index > 0);
//! // `ns` and the link inside it are removed here.
//! ```

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use podnet_route::ipnet::IpNet;
use podnet_route::{Address, Handle, MacAddr, Neighbour, Route, Veth};

/// Environment variable that lets privileged tests return early on a machine
/// without root. CI never sets it.
pub const SKIP_ENV: &str = "PODNET_SKIP_PRIVILEGED";

/// Prefix of every namespace and pin directory a test creates.
const PREFIX: &str = "pnt";

/// Where bpffs is expected to be mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Returns `true` when the process may run privileged tests.
///
/// Panics with a message naming what is missing (root, `ip`, bpffs at
/// `/sys/fs/bpf`), unless `PODNET_SKIP_PRIVILEGED=1` is set, in which case it
/// prints that it skips and returns `false`. Use [`require_privileges!`] at the
/// top of a test.
pub fn privileges_available() -> bool {
    let missing = missing_facilities();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join("; ");
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("skipping privileged test ({SKIP_ENV}=1): {what}");
        return false;
    }
    panic!(
        "this test needs privileges the process does not have: {what}. \
         Run as root via scripts/test.sh, or set {SKIP_ENV}=1 to skip privileged tests"
    );
}

fn missing_facilities() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (effective uid 0)".to_string());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        _ => missing.push("iproute2's `ip` on PATH (apt-get install iproute2)".to_string()),
    }
    if !is_bpffs(Path::new(BPFFS_ROOT)) {
        missing.push(format!(
            "bpffs mounted at {BPFFS_ROOT} (mount -t bpf bpf {BPFFS_ROOT})"
        ));
    }
    missing
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; `c` is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Starts a privileged test: fails it with a message naming what is missing,
/// or returns early when `PODNET_SKIP_PRIVILEGED=1` is set.
#[macro_export]
macro_rules! require_privileges {
    () => {
        if !$crate::privileges_available() {
            return;
        }
    };
}

fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    format!("{PREFIX}-{}-{n}-{tag}", std::process::id())
}

/// Removes namespaces and pin directories whose creating process is gone.
fn sweep_stale() {
    SWEEP.call_once(|| {
        let dead = |name: &str| -> bool {
            let mut parts = name.splitn(3, '-');
            if parts.next() != Some(PREFIX) {
                return false;
            }
            match parts.next().and_then(|p| p.parse::<u32>().ok()) {
                Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                None => false,
            }
        };
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dead(&name) {
                    let _ = Command::new("ip").args(["netns", "del", &name]).output();
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(BPFFS_ROOT) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dead(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
}

/// Runs a command and returns its output, panicking with the command line and
/// its stderr when it cannot be started or exits non-zero.
pub fn run_ok<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    match try_run(program, &args) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

fn try_run(program: &str, args: &[std::ffi::OsString]) -> Result<String, String> {
    let line = || {
        let mut s = program.to_string();
        for a in args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}` could not start: {e}", line()))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}{}",
            line(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace created for one test, removed in `Drop`.
///
/// The namespace is bound at `/run/netns/<name>` like `ip netns add` does, so
/// `ip -n <name> ...` and `ip netns exec <name> ...` work on it, and code under
/// test can open it by [`Netns::path`].
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    keep: bool,
}

impl Netns {
    /// Creates a namespace named `pnt-<pid>-<n>-<tag>` and brings `lo` up.
    ///
    /// Panics when the namespace cannot be created (a test fixture failing is
    /// a test failure).
    pub fn new(tag: &str) -> Netns {
        sweep_stale();
        Netns::create(unique_name(tag))
    }

    /// Creates a namespace with exactly this name (a demo's `node1`, say),
    /// first removing one of the same name left by an earlier run.
    pub fn named(name: &str) -> Netns {
        if Path::new("/run/netns").join(name).exists() {
            let old = Netns {
                name: name.to_string(),
                path: Path::new("/run/netns").join(name),
                keep: false,
            };
            drop(old);
        }
        Netns::create(name.to_string())
    }

    fn create(name: String) -> Netns {
        run_ok("ip", ["netns", "add", name.as_str()]);
        let ns = Netns {
            path: PathBuf::from(format!("/run/netns/{name}")),
            name,
            keep: false,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Leaves the namespace in place when this value is dropped (a demo's
    /// `--keep`); `ip netns del NAME` removes it later.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The name under `/run/netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ip -n <name> ARGS` and returns its stdout; panics on failure with
    /// the command line and the error text.
    pub fn ip(&self, args: &[&str]) -> String {
        match self.try_ip(args) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs `ip -n <name> ARGS` and returns its output lines without their
    /// trailing white space (iproute2 ends many lines with a space), for
    /// comparing with text a program printed.
    pub fn ip_lines(&self, args: &[&str]) -> Vec<String> {
        self.ip(args)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Runs `ip -n <name> ARGS`; `Err` holds the command line and stderr.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all: Vec<std::ffi::OsString> = vec!["-n".into(), self.name.as_str().into()];
        all.extend(args.iter().map(|a| std::ffi::OsString::from(*a)));
        try_run("ip", &all)
    }

    /// Runs `ip -n <name> -batch -` feeding `lines` on stdin; panics on failure.
    pub fn ip_batch(&self, lines: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", self.name.as_str(), "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("ip -batch could not start: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(lines.as_bytes())
                .unwrap_or_else(|e| panic!("writing to ip -batch: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("ip -batch: {e}"));
        assert!(
            out.status.success(),
            "ip -n {} -batch failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `PROGRAM ARGS` inside the namespace (`ip netns exec`) and waits.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.name.as_str(), program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name))
    }

    /// Like [`Netns::exec`] but panics unless the command exits 0; returns stdout.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "`ip netns exec {} {program} {}` failed ({}): {}{}",
            self.name,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `PROGRAM ARGS` inside the namespace in the background (a server,
    /// say). The namespace's `Drop` kills whatever still runs inside it; kill
    /// and wait for the child yourself to read its output.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", self.name.as_str(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name))
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns
    /// its result. A panic in `f` is resumed on the calling thread. The calling
    /// thread's own namespace never changes.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file =
            File::open(&self.path).unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        std::thread::scope(|s| {
            let handle = s.spawn(move || {
                // SAFETY: setns on a namespace fd we own; it affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert!(
                    rc == 0,
                    "setns into {}: {}",
                    self.path.display(),
                    std::io::Error::last_os_error()
                );
                f()
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The interface index of `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let c = std::ffi::CString::new(ifname).expect("interface name without NUL");
        // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
        let idx = self.run(|| unsafe { libc::if_nametoindex(c.as_ptr()) });
        assert!(idx != 0, "no interface {ifname} in netns {}", self.name);
        idx
    }

    /// The MAC address of `ifname` inside this namespace.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let text = self.exec_ok("cat", &[&format!("/sys/class/net/{ifname}/address")]);
        parse_mac(text.trim())
            .unwrap_or_else(|| panic!("unexpected MAC {text:?} of {ifname} in netns {}", self.name))
    }

    /// Creates an up interface `ifname` inside this namespace, for tests that
    /// need a device to point routes at. The kernels we run on may lack the
    /// `dummy` driver, so it is a veth whose peer (`ifname` with a `p` suffix,
    /// cut to 15 characters) stays in the namespace too, also up.
    pub fn add_link(&self, ifname: &str) {
        let mut peer: String = ifname.chars().take(14).collect();
        peer.push('p');
        let h = self.route_handle();
        h.add_veth(&Veth::new(ifname, peer.as_str()))
            .unwrap_or_else(|e| panic!("netns {}: {e}", self.name));
        for dev in [ifname, peer.as_str()] {
            h.set_link_up(dev)
                .unwrap_or_else(|e| panic!("netns {}: {e}", self.name));
        }
    }

    /// Adds the address `cidr` (`"192.168.100.1/24"`) to `dev` with
    /// podnet-route; IPv6 addresses skip duplicate address detection.
    pub fn add_address(&self, cidr: &str, dev: &str) {
        let net: IpNet = cidr
            .parse()
            .unwrap_or_else(|e| panic!("address {cidr:?}: {e}"));
        let a = Address::new(net, dev);
        let a = if net.addr().is_ipv6() { a.nodad() } else { a };
        self.route_handle()
            .add_address(&a)
            .unwrap_or_else(|e| panic!("netns {}: {e}", self.name));
    }

    /// Installs a route given as `ip route` text (`"10.2.0.0/24 via
    /// 192.168.100.2 dev eth0"`) with podnet-route.
    pub fn add_route(&self, text: &str) {
        let r: Route = text
            .parse()
            .unwrap_or_else(|e| panic!("route {text:?}: {e}"));
        self.route_handle()
            .upsert(&r, None)
            .unwrap_or_else(|e| panic!("netns {}: {e}", self.name));
    }

    /// A `podnet-route` handle in this namespace (the fixtures wire links,
    /// addresses and neighbours with the crate, not with `ip`).
    pub fn route_handle(&self) -> Handle {
        Handle::open_netns(&self.path)
            .unwrap_or_else(|e| panic!("route handle in netns {}: {e}", self.name))
    }

    fn kill_processes(&self) {
        if let Ok(pids) = try_run(
            "ip",
            &["netns".into(), "pids".into(), self.name.as_str().into()],
        ) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.kill_processes();
        if let Err(e) = try_run(
            "ip",
            &["netns".into(), "del".into(), self.name.as_str().into()],
        ) {
            eprintln!("testsupport: could not remove netns {}: {e}", self.name);
        }
    }
}

/// Creates a veth pair `a_if` (in `a`) <-> `b_if` (in `b`) and sets both up.
///
/// Interface names must fit the kernel's 15 characters.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    let (ha, hb) = (a.route_handle(), b.route_handle());
    ha.add_veth(&Veth::new(a_if, b_if).peer_netns(b.path()))
        .unwrap_or_else(|e| panic!("veth {a_if} ({}) <-> {b_if} ({}): {e}", a.name(), b.name()));
    ha.set_link_up(a_if)
        .unwrap_or_else(|e| panic!("netns {}: {e}", a.name()));
    hb.set_link_up(b_if)
        .unwrap_or_else(|e| panic!("netns {}: {e}", b.name()));
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Both ends of a pod's veth, as [`pod_link`] made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodLink {
    /// MAC of the host-side veth (the pod's gateway MAC).
    pub lxc_mac: [u8; 6],
    /// MAC of the pod's `eth0`.
    pub pod_mac: [u8; 6],
    /// Index of the host-side veth in the node's namespace.
    pub lxc_ifindex: u32,
}

/// Wires `pod` to `node` the way a CNI plugin does for a routed pod: a veth
/// `lxc` (node) <-> `eth0` (pod); the pod gets `pod_ip` as a host address,
/// `gateway dev eth0 scope link`, `default via gateway` and a permanent
/// neighbour entry mapping `gateway` to the host-side veth's MAC (so it never
/// ARPs for it); the node gets a permanent neighbour entry for `pod_ip` on
/// `lxc`. The node's route to the pod is left to the caller. For IPv6 the
/// address is added without duplicate address detection, and a link-local
/// gateway needs no route of its own.
pub fn pod_link(
    node: &Netns,
    lxc: &str,
    pod: &Netns,
    pod_ip: std::net::IpAddr,
    gateway: std::net::IpAddr,
) -> PodLink {
    veth(node, lxc, pod, "eth0");
    let link = PodLink {
        lxc_mac: node.mac(lxc),
        pod_mac: pod.mac("eth0"),
        lxc_ifindex: node.ifindex(lxc),
    };
    let (hn, hp) = (node.route_handle(), pod.route_handle());
    let fail = |what: &str, e: podnet_route::Error| -> ! {
        panic!(
            "wiring pod {} ({pod_ip}) to {}: {what}: {e}",
            pod.name(),
            node.name()
        )
    };
    let host = |ip: std::net::IpAddr| {
        IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).unwrap_or_else(|e| panic!("{e}"))
    };
    let addr = Address::new(host(pod_ip), "eth0");
    // IPv6: no duplicate address detection, so the address is usable at once.
    let addr = if pod_ip.is_ipv6() { addr.nodad() } else { addr };
    hp.add_address(&addr).unwrap_or_else(|e| fail("address", e));
    // A link-local IPv6 gateway is on-link already; others get a route.
    let link_local =
        matches!(gateway, std::net::IpAddr::V6(g) if g.segments()[0] & 0xffc0 == 0xfe80);
    let mut routes = Vec::new();
    if !link_local {
        routes.push(format!("{gateway} dev eth0 scope link"));
    }
    routes.push(format!("default via {gateway} dev eth0"));
    for text in routes {
        let r: Route = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        hp.upsert(&r, None).unwrap_or_else(|e| fail("route", e));
    }
    hp.replace_neighbour(&Neighbour::permanent(
        gateway,
        MacAddr(link.lxc_mac),
        "eth0",
    ))
    .unwrap_or_else(|e| fail("gateway neighbour", e));
    hn.replace_neighbour(&Neighbour::permanent(pod_ip, MacAddr(link.pod_mac), lxc))
        .unwrap_or_else(|e| fail("pod neighbour", e));
    link
}

/// A directory on bpffs for one test's pins, removed with its contents in `Drop`.
#[derive(Debug)]
pub struct BpfDir {
    path: PathBuf,
    keep: bool,
}

impl BpfDir {
    /// Creates `/sys/fs/bpf/pnt-<pid>-<n>-<tag>`; panics when bpffs is not
    /// mounted there or the directory cannot be made.
    pub fn new(tag: &str) -> BpfDir {
        sweep_stale();
        assert!(
            is_bpffs(Path::new(BPFFS_ROOT)),
            "bpffs is not mounted at {BPFFS_ROOT} (mount -t bpf bpf {BPFFS_ROOT})"
        );
        let path = Path::new(BPFFS_ROOT).join(unique_name(tag));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        BpfDir { path, keep: false }
    }

    /// Uses exactly `/sys/fs/bpf/<name>`, first removing what an earlier run
    /// left there.
    pub fn named(name: &str) -> BpfDir {
        assert!(
            is_bpffs(Path::new(BPFFS_ROOT)),
            "bpffs is not mounted at {BPFFS_ROOT} (mount -t bpf bpf {BPFFS_ROOT})"
        );
        let path = Path::new(BPFFS_ROOT).join(name);
        if path.exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        BpfDir { path, keep: false }
    }

    /// Leaves the directory and its pins in place when dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for BpfDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("testsupport: could not remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_is_created_used_and_removed() {
        require_privileges!();
        let path;
        {
            let ns = Netns::new("self");
            path = ns.path().to_path_buf();
            assert!(path.exists());
            ns.add_link("d0");
            assert!(ns.ifindex("d0p") > 0);
            assert!(ns.ifindex("d0") > 0);
            // The calling thread stays in its own namespace.
            let c = std::ffi::CString::new("d0").unwrap();
            assert_eq!(unsafe { libc::if_nametoindex(c.as_ptr()) }, 0);
        }
        assert!(!path.exists(), "netns left behind at {}", path.display());
    }

    #[test]
    fn netns_is_removed_when_the_test_panics() {
        require_privileges!();
        let mut path = PathBuf::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ns = Netns::new("panic");
            path = ns.path().to_path_buf();
            ns.run(|| panic!("boom"));
        }));
        assert!(r.is_err());
        assert!(!path.as_os_str().is_empty() && !path.exists());
    }

    #[test]
    fn veth_joins_two_namespaces() {
        require_privileges!();
        let a = Netns::new("va");
        let b = Netns::new("vb");
        veth(&a, "va0", &b, "vb0");
        a.ip(&["addr", "add", "10.99.0.1/24", "dev", "va0"]);
        b.ip(&["addr", "add", "10.99.0.2/24", "dev", "vb0"]);
        a.exec_ok("ping", &["-c", "1", "-W", "2", "10.99.0.2"]);
    }

    #[test]
    fn macs_parse_and_format() {
        let m = parse_mac("02:ab:00:10:ff:09").unwrap();
        assert_eq!(m, [0x02, 0xab, 0x00, 0x10, 0xff, 0x09]);
        assert_eq!(fmt_mac(&m), "02:ab:00:10:ff:09");
        assert_eq!(parse_mac("02:ab:00:10:ff"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:09:01"), None);
        assert_eq!(parse_mac("zz:ab:00:10:ff:09"), None);
    }

    #[test]
    fn pod_link_reaches_the_node_through_its_gateway() {
        require_privileges!();
        let node = Netns::new("pln");
        let pod = Netns::new("plp");
        node.ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"]);
        let link = pod_link(
            &node,
            "lxc0",
            &pod,
            "10.77.1.5".parse().unwrap(),
            "169.254.1.1".parse().unwrap(),
        );
        assert_eq!(link.lxc_mac, node.mac("lxc0"));
        assert_eq!(link.lxc_ifindex, node.ifindex("lxc0"));
        node.ip(&["route", "add", "10.77.1.5/32", "dev", "lxc0"]);
        pod.exec_ok("ping", &["-c", "1", "-W", "2", "10.77.0.1"]);
    }

    #[test]
    fn pod_link_works_for_ipv6_with_a_link_local_gateway() {
        require_privileges!();
        let node = Netns::new("pl6n");
        let pod = Netns::new("pl6p");
        node.ip(&["addr", "add", "fd77::1/128", "dev", "lo"]);
        pod_link(
            &node,
            "lxc0",
            &pod,
            "fd77:1::5".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        );
        node.ip(&["route", "add", "fd77:1::5/128", "dev", "lxc0"]);
        pod.exec_ok("ping", &["-6", "-c", "1", "-W", "2", "fd77::1"]);
    }

    #[test]
    fn bpf_dir_is_removed_with_contents() {
        require_privileges!();
        let path;
        {
            let d = BpfDir::new("dir");
            path = d.path().to_path_buf();
            std::fs::create_dir(d.join("sub")).unwrap();
        }
        assert!(!path.exists());
    }
}
