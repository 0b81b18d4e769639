//! Attaching programs to interfaces: tcx links, or tc clsact filters.
//!
//! Both go through the calling thread's network namespace (the ifindex is
//! resolved there). A tc filter must also be removed from that namespace, so
//! an attachment keeps the namespace open and detaches on a short-lived
//! thread that `setns`es into it. tcx links detach from any thread.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::datapath::{AttachMode, Program};
use crate::error::{Error, Result};

/// Where a program is attached.
///
/// ```
/// use podnet_datapath::Hook;
/// assert_eq!(Hook::ToContainer.to_string(), "to-container");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `from_container` on the ingress of a pod's host-side veth.
    FromContainer,
    /// `to_container` on the egress of a pod's host-side veth.
    ToContainer,
    /// `from_netdev` on the ingress of the node's underlay interface.
    FromNetdev,
    /// `to_netdev` on the egress of the node's underlay interface
    /// (masquerade); attaching it records the interface's masquerade
    /// addresses when it is a masquerade interface.
    ToNetdev,
}

impl Hook {
    /// The program this hook runs.
    #[must_use]
    pub fn program(self) -> Program {
        match self {
            Hook::FromContainer => Program::FromContainer,
            Hook::ToContainer => Program::ToContainer,
            Hook::FromNetdev => Program::FromNetdev,
            Hook::ToNetdev => Program::ToNetdev,
        }
    }

    fn egress(self) -> bool {
        self == Hook::ToContainer || self == Hook::ToNetdev
    }

    /// "ingress" or "egress", as the attach mode texts say it.
    fn direction(self) -> &'static str {
        if self.egress() {
            "egress"
        } else {
            "ingress"
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cilium's section names.
        f.write_str(match self {
            Hook::FromContainer => "from-container",
            Hook::ToContainer => "to-container",
            Hook::FromNetdev => "from-netdev",
            Hook::ToNetdev => "to-netdev",
        })
    }
}

pub(crate) struct Netns {
    pub id: (u64, u64),
    file: File,
}

/// The calling thread's network namespace.
pub(crate) fn current_netns() -> Result<Netns> {
    let path = "/proc/thread-self/ns/net";
    let file = File::open(path).map_err(|source| Error::PinDir {
        path: path.into(),
        source,
    })?;
    let md = file.metadata().map_err(|source| Error::PinDir {
        path: path.into(),
        source,
    })?;
    Ok(Netns {
        id: (md.dev(), md.ino()),
        file,
    })
}

/// Runs `f` on a short-lived thread that entered the network namespace at
/// `path`, so the caller's threads never change namespace. tcx links and tc
/// filters made there stay bound to that namespace's interface.
pub(crate) fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let err = |source| Error::Netns {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace fd we own; only this thread changes.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(err(io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(err(io::Error::other("netns thread panicked"))))
    })
}

fn interface_exists(ifindex: u32) -> bool {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    !unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) }.is_null()
}

enum Kind {
    Tcx(OwnedFd),
    Tc { prog: OwnedFd },
}

pub(crate) struct Attachment {
    ns: Netns,
    pub ifindex: u32,
    pub hook: Hook,
    /// What runs there: the hook's program, or another one.
    program: Program,
    kind: Kind,
    /// Where the tcx link is pinned (keep-attached mode).
    pin: Option<PathBuf>,
}

/// Where a kept tcx link is pinned: `<pin_dir>/links/<hook>-<netns inode>-<ifindex>`.
pub(crate) fn link_pin_path(pin_dir: &Path, ns: &Netns, ifindex: u32, hook: Hook) -> PathBuf {
    pin_dir
        .join("links")
        .join(format!("{hook}-{}-{ifindex}", ns.id.1))
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))
}

/// Re-uses a pinned tcx link by swapping in `prog`. `None` when there is no
/// usable pin (a stale one is removed).
fn reuse_link(pin: &Path, prog: &OwnedFd) -> Option<OwnedFd> {
    let c = cpath(pin).ok()?;
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        let _ = std::fs::remove_file(pin);
        return None;
    }
    // SAFETY: the kernel just gave us this fd.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: valid link and program fds; NULL opts are allowed.
    let rc = unsafe {
        libbpf_sys::bpf_link_update(link.as_raw_fd(), prog.as_raw_fd(), std::ptr::null())
    };
    if rc < 0 {
        // Defunct (its interface went away): forget it.
        let _ = std::fs::remove_file(pin);
        return None;
    }
    Some(link)
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Attachment({} on ifindex {} {})",
            self.hook,
            self.ifindex,
            self.mode()
        )
    }
}

const TC_HANDLE: u32 = 1;
const TC_PRIORITY: u32 = 1;
const ENOTSUPP: i32 = 524;

/// A new tcx link of `prog` at `hook` of `ifindex`, pinned at `pin` when
/// given. `None` when the kernel has no tcx and `mode` allows falling back
/// to tc.
fn create_tcx_link(
    prog: &OwnedFd,
    program: &'static str,
    ifindex: u32,
    hook: Hook,
    pin: Option<&Path>,
    mode: AttachMode,
) -> Result<Option<OwnedFd>> {
    let dir = hook.direction();
    let attach_type = if hook.egress() {
        libbpf_sys::BPF_TCX_EGRESS
    } else {
        libbpf_sys::BPF_TCX_INGRESS
    };
    // SAFETY: valid prog fd; NULL opts are allowed.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            ifindex as i32,
            attach_type,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        let errno = -fd;
        let no_tcx = errno == libc::EINVAL || errno == libc::EOPNOTSUPP || errno == ENOTSUPP;
        if mode == AttachMode::Tcx || !no_tcx {
            return Err(Error::Attach {
                program,
                ifindex,
                mode: format!("tcx {dir}"),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        return Ok(None);
    }
    // SAFETY: the kernel just gave us this fd.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(pin) = pin {
        let pinned = pin
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| cpath(pin))
            .and_then(|c| {
                // SAFETY: valid link fd and NUL-terminated path.
                let rc = unsafe { libbpf_sys::bpf_obj_pin(link.as_raw_fd(), c.as_ptr()) };
                if rc < 0 {
                    Err(io::Error::from_raw_os_error(-rc))
                } else {
                    Ok(())
                }
            });
        if let Err(source) = pinned {
            // Dropping `link` detaches it again: nothing half-done.
            return Err(Error::Attach {
                program,
                ifindex,
                mode: format!("pinning the tcx {dir} link at {}", pin.display()),
                source,
            });
        }
    }
    Ok(Some(link))
}

fn tc_hook(ifindex: u32, egress: bool) -> libbpf_sys::bpf_tc_hook {
    // SAFETY: plain C struct; zero is its default.
    let mut h: libbpf_sys::bpf_tc_hook = unsafe { std::mem::zeroed() };
    h.sz = size_of::<libbpf_sys::bpf_tc_hook>() as _;
    h.ifindex = ifindex as i32;
    h.attach_point = if egress {
        libbpf_sys::BPF_TC_EGRESS
    } else {
        libbpf_sys::BPF_TC_INGRESS
    };
    h
}

fn tc_opts(prog_fd: i32) -> libbpf_sys::bpf_tc_opts {
    // SAFETY: plain C struct; zero is its default.
    let mut o: libbpf_sys::bpf_tc_opts = unsafe { std::mem::zeroed() };
    o.sz = size_of::<libbpf_sys::bpf_tc_opts>() as _;
    o.prog_fd = prog_fd;
    o.handle = TC_HANDLE;
    o.priority = TC_PRIORITY;
    o
}

impl Attachment {
    pub(crate) fn matches(&self, ns: (u64, u64), ifindex: u32, hook: Hook) -> bool {
        self.ns.id == ns && self.ifindex == ifindex && self.hook == hook
    }

    fn mode(&self) -> String {
        let dir = self.hook.direction();
        match self.kind {
            Kind::Tcx(_) => format!("tcx {dir}"),
            Kind::Tc { .. } => format!("tc clsact {dir}"),
        }
    }

    /// Attaches `prog` (the fd of `program`) where `hook` runs.
    pub(crate) fn attach(
        prog: OwnedFd,
        program: Program,
        ns: Netns,
        ifindex: u32,
        hook: Hook,
        mode: AttachMode,
        link_pin: Option<PathBuf>,
    ) -> Result<Attachment> {
        if ifindex == 0 || !interface_exists(ifindex) {
            return Err(Error::UnknownInterface { ifindex });
        }
        let name = program.name();
        let dir = hook.direction();
        if mode != AttachMode::Tc {
            let link = match link_pin.as_deref().and_then(|pin| reuse_link(pin, &prog)) {
                Some(link) => Some(link),
                None => create_tcx_link(&prog, name, ifindex, hook, link_pin.as_deref(), mode)?,
            };
            if let Some(link) = link {
                return Ok(Attachment {
                    ns,
                    ifindex,
                    hook,
                    program,
                    kind: Kind::Tcx(link),
                    pin: link_pin,
                });
            }
        }
        let mode_text = format!("tc clsact {dir}");
        let mut h = tc_hook(ifindex, hook.egress());
        // libbpf warns when clsact already exists (EEXIST, which is fine).
        let (rc, _) = crate::log::capture(|| {
            // SAFETY: valid hook struct; creates the clsact qdisc.
            unsafe { libbpf_sys::bpf_tc_hook_create(&mut h) }
        });
        if rc < 0 && -rc != libc::EEXIST {
            return Err(Error::Attach {
                program: name,
                ifindex,
                mode: mode_text,
                source: io::Error::from_raw_os_error(-rc),
            });
        }
        let mut o = tc_opts(prog.as_raw_fd());
        o.flags = libbpf_sys::BPF_TC_F_REPLACE;
        // SAFETY: valid hook and opts.
        let rc = unsafe { libbpf_sys::bpf_tc_attach(&h, &mut o) };
        if rc < 0 {
            return Err(Error::Attach {
                program: name,
                ifindex,
                mode: mode_text,
                source: io::Error::from_raw_os_error(-rc),
            });
        }
        Ok(Attachment {
            ns,
            ifindex,
            hook,
            program,
            kind: Kind::Tc { prog },
            pin: None,
        })
    }

    pub(crate) fn detach(self) -> Result<()> {
        if let Some(pin) = &self.pin {
            let _ = std::fs::remove_file(pin);
            if let Some(dir) = pin.parent() {
                let _ = std::fs::remove_dir(dir); // only when empty
            }
        }
        let program = self.program.name();
        let mode = self.mode();
        let ifindex = self.ifindex;
        // The attachment may already be gone with its interface: those errnos are fine.
        let (rc, gone): (i32, [i32; 3]) = match self.kind {
            Kind::Tcx(link) => {
                // SAFETY: a link fd we own.
                let rc = unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) };
                (rc, [libc::ENOLINK, libc::ENOENT, libc::ENODEV])
            }
            Kind::Tc { prog: _prog } => {
                let egress = self.hook.egress();
                let nsfd = self.ns.file.as_raw_fd();
                let rc = std::thread::scope(|s| {
                    s.spawn(|| {
                        // SAFETY: setns on a namespace fd we hold; only this thread changes.
                        if unsafe { libc::setns(nsfd, libc::CLONE_NEWNET) } != 0 {
                            return -io::Error::last_os_error()
                                .raw_os_error()
                                .unwrap_or(libc::EINVAL);
                        }
                        let h = tc_hook(ifindex, egress);
                        let o = tc_opts(0);
                        // SAFETY: valid hook and opts (prog_fd 0 as detach requires).
                        unsafe { libbpf_sys::bpf_tc_detach(&h, &o) }
                    })
                    .join()
                    .unwrap_or(-libc::EINVAL)
                });
                (rc, [libc::ENOENT, libc::ENODEV, libc::EINVAL])
            }
        };
        if rc < 0 && !gone.contains(&-rc) {
            return Err(Error::Detach {
                program,
                ifindex,
                mode,
                source: io::Error::from_raw_os_error(-rc),
            });
        }
        Ok(())
    }
}

/// Detaches and unpins every tcx link pinned in `dir`, then removes `dir`.
pub(crate) fn detach_pinned_links(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Unpin {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for e in entries.flatten() {
        let path = e.path();
        // Only the pins `link_pin_path` names; anything else is not ours.
        let name = e.file_name();
        let ours = ["from-container-", "to-container-", "from-netdev-"]
            .iter()
            .any(|p| name.as_encoded_bytes().starts_with(p.as_bytes()));
        if !ours {
            continue;
        }
        if let Ok(c) = cpath(&path) {
            // SAFETY: NUL-terminated path.
            let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
            if fd >= 0 {
                // SAFETY: the kernel just gave us this fd.
                let link = unsafe { OwnedFd::from_raw_fd(fd) };
                // SAFETY: a link fd we own.
                unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) };
            }
        }
        std::fs::remove_file(&path).map_err(|source| Error::Unpin {
            path: path.clone(),
            source,
        })?;
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
