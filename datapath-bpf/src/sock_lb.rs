//! Socket load balancing: the cgroup programs of `src/bpf/bpf_sock.h`
//! (`connect4/6`, `sendmsg4/6`, `recvmsg4/6`, `getpeername4/6`, as
//! Cilium's `bpf_sock.c`) attached to a cgroup v2 directory the caller names.
//!
//! A socket of that cgroup (and of its descendants) that connects or sends
//! to a service frontend is given a backend at the system call: its packets
//! carry the backend's address from the start, so no per-packet DNAT, no
//! service conntrack entry and no reverse NAT is needed for them. This is
//! how the node's own processes reach cluster IPs (their packets never pass
//! `from_container`); pods get it too when their cgroups are attached,
//! else they use the per-packet path.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::datapath::Datapath;
use crate::error::{Error, Result};

/// `CGROUP2_SUPER_MAGIC` from `linux/magic.h`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The programs and their attach types.
pub(crate) const PROGRAMS: [(&str, libbpf_sys::bpf_attach_type); 8] = [
    ("sock4_connect", libbpf_sys::BPF_CGROUP_INET4_CONNECT),
    ("sock6_connect", libbpf_sys::BPF_CGROUP_INET6_CONNECT),
    ("sock4_sendmsg", libbpf_sys::BPF_CGROUP_UDP4_SENDMSG),
    ("sock6_sendmsg", libbpf_sys::BPF_CGROUP_UDP6_SENDMSG),
    ("sock4_recvmsg", libbpf_sys::BPF_CGROUP_UDP4_RECVMSG),
    ("sock6_recvmsg", libbpf_sys::BPF_CGROUP_UDP6_RECVMSG),
    (
        "sock4_getpeername",
        libbpf_sys::BPF_CGROUP_INET4_GETPEERNAME,
    ),
    (
        "sock6_getpeername",
        libbpf_sys::BPF_CGROUP_INET6_GETPEERNAME,
    ),
];

/// The links of one attached cgroup; dropping them detaches.
#[derive(Debug)]
pub(crate) struct SockLbLinks {
    cgroup: PathBuf,
    /// (device, inode) of the cgroup directory: one cgroup, however named.
    id: (u64, u64),
    _links: Vec<OwnedFd>,
}

/// Opens `cgroup`, refusing what is no cgroup v2 directory (before the
/// kernel is asked to attach anything).
fn open_cgroup(cgroup: &Path) -> Result<(File, (u64, u64))> {
    let bad = |reason: &str| Error::InvalidInput {
        what: "cgroup",
        reason: format!("{}: {reason}", cgroup.display()),
    };
    let file = File::open(cgroup).map_err(|source| Error::SocketLb {
        cgroup: cgroup.to_path_buf(),
        op: "opening the cgroup".into(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| Error::SocketLb {
        cgroup: cgroup.to_path_buf(),
        op: "opening the cgroup".into(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(bad("not a directory"));
    }
    // SAFETY: statfs fills the zeroed struct for a valid fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::SocketLb {
            cgroup: cgroup.to_path_buf(),
            op: "opening the cgroup".into(),
            source: io::Error::last_os_error(),
        });
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by target
    if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return Err(bad("not on a cgroup v2 (cgroup2) mount"));
    }
    Ok((file, (meta.dev(), meta.ino())))
}

impl Datapath {
    /// Attaches socket load balancing to the cgroup v2 directory `cgroup`:
    /// its sockets (and those of its descendants) reach service frontends'
    /// backends directly, chosen at `connect` (TCP at random, UDP by socket
    /// cookie so one socket keeps its backend), and see the frontend in
    /// `getpeername` and in `recvmsg`'s source. A frontend without a usable
    /// backend fails `connect` / `sendmsg` with `EPERM`. External IPs are
    /// not translated. The attachment lasts until
    /// [`Datapath::detach_socket_lb`] or until this `Datapath` is dropped
    /// (also with `keep_attached`). Attaching a cgroup twice is a no-op.
    ///
    /// For the node's own processes attach the cgroup they run in (on a
    /// systemd host the root, `/sys/fs/cgroup`, covers every process); a
    /// pod's cgroup gives that pod socket load balancing instead of the
    /// per-packet path.
    ///
    /// ```no_run
    /// # use podnet_datapath::{Datapath, Options};
    /// let mut dp = Datapath::load(&Options::new("/sys/fs/bpf/podnet"))?;
    /// dp.attach_socket_lb("/sys/fs/cgroup/system.slice")?;
    /// assert_eq!(dp.socket_lb_cgroups().len(), 1);
    /// # Ok::<(), podnet_datapath::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `cgroup` is no cgroup v2 directory,
    /// [`Error::Privileges`] without the capabilities, [`Error::SocketLb`]
    /// when it cannot be opened or a program not attached (then none is).
    pub fn attach_socket_lb(&mut self, cgroup: impl AsRef<Path>) -> Result<()> {
        let cgroup = cgroup.as_ref();
        let (file, id) = open_cgroup(cgroup)?;
        if self.sock_links.iter().any(|l| l.id == id) {
            return Ok(());
        }
        crate::checks::privileges("attaching socket load balancing")?;
        let mut links = Vec::with_capacity(PROGRAMS.len());
        for (name, attach_type) in PROGRAMS {
            let Some((_, prog)) = self.sock_progs.iter().find(|(n, _)| *n == name) else {
                return Err(Error::SocketLb {
                    cgroup: cgroup.to_path_buf(),
                    op: format!("finding {name} in the object"),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            };
            // SAFETY: valid program and cgroup fds; NULL opts are allowed.
            let fd = unsafe {
                libbpf_sys::bpf_link_create(
                    prog.as_raw_fd(),
                    file.as_raw_fd(),
                    attach_type,
                    std::ptr::null(),
                )
            };
            if fd < 0 {
                // `links` drops here: what was attached is detached.
                if -fd == libc::EPERM {
                    return Err(Error::Privileges {
                        what: "attaching socket load balancing",
                    });
                }
                return Err(Error::SocketLb {
                    cgroup: cgroup.to_path_buf(),
                    op: format!("attaching {name}"),
                    source: io::Error::from_raw_os_error(-fd),
                });
            }
            // SAFETY: the kernel just gave us this fd.
            links.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        self.sock_links.push(SockLbLinks {
            cgroup: cgroup.to_path_buf(),
            id,
            _links: links,
        });
        Ok(())
    }

    /// Detaches socket load balancing from `cgroup`; `false` when it was
    /// not attached there by this `Datapath`. Connected sockets keep the
    /// backend they were given; `getpeername` shows it from then on.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `cgroup` is no cgroup v2 directory,
    /// [`Error::SocketLb`] when it cannot be opened.
    pub fn detach_socket_lb(&mut self, cgroup: impl AsRef<Path>) -> Result<bool> {
        let (_, id) = open_cgroup(cgroup.as_ref())?;
        let before = self.sock_links.len();
        self.sock_links.retain(|l| l.id != id);
        Ok(self.sock_links.len() != before)
    }

    /// The cgroups socket load balancing is attached to, as they were named.
    #[must_use]
    pub fn socket_lb_cgroups(&self) -> Vec<PathBuf> {
        self.sock_links.iter().map(|l| l.cgroup.clone()).collect()
    }
}
