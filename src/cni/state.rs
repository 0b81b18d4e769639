//! The plugin's own state: one lock serialising every invocation that
//! changes shared state (the pin dir's maps, endpoint ids), and one record
//! per container interface so DEL knows what ADD made even without a
//! `prevResult`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CniError, CniResult, IO_FAILURE};

/// What ADD made for one container interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS` at ADD.
    pub netns: String,
    /// Host-side veth name.
    pub host_if: String,
    /// Host-side veth index.
    pub host_ifindex: u32,
    /// Host-side veth MAC.
    pub host_mac: String,
    /// Pod-side MAC.
    pub pod_mac: String,
    /// The pod's address (none while ADD has not got one yet).
    pub ip: Option<IpAddr>,
    /// Endpoint id in the datapath.
    pub endpoint_id: u16,
    /// Security identity.
    pub identity: u32,
}

/// An exclusive `flock` on `<state dir>/lock`, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> CniError {
    CniError::from_err(IO_FAILURE, &format!("{what} {}", path.display()), e)
}

impl Lock {
    /// Takes the lock, waiting for other invocations to finish.
    pub fn take(dir: &Path) -> CniResult<Lock> {
        std::fs::create_dir_all(dir).map_err(|e| io("create state dir", dir, &e))?;
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open lock", &path, &e))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io("lock", &path, &e));
            }
        }
    }
}

/// The records of one state directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// A file-name-safe key of (container id, ifname).
fn key(container_id: &str, ifname: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}-{}-{:016x}.json",
        clean(container_id).chars().take(64).collect::<String>(),
        clean(ifname),
        fnv(&format!("{container_id}/{ifname}"))
    )
}

/// FNV-1a, 64 bits: short stable names from container ids.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Store {
    /// The store under `dir` (`<dir>/containers/`).
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.join("containers"),
        }
    }

    fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(key(container_id, ifname))
    }

    /// The record of a container interface, if ADD left one.
    pub fn get(&self, container_id: &str, ifname: &str) -> CniResult<Option<Record>> {
        let p = self.path(container_id, ifname);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                CniError::new(IO_FAILURE, format!("read record {}: {e}", p.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read record", &p, &e)),
        }
    }

    /// Writes `r` (atomically: a temp file renamed over the old one).
    pub fn put(&self, r: &Record) -> CniResult<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create", &self.dir, &e))?;
        let p = self.path(&r.container_id, &r.ifname);
        let tmp = p.with_extension("tmp");
        let body = serde_json::to_vec(r).map_err(|e| CniError::new(IO_FAILURE, e.to_string()))?;
        let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, &e))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", &tmp, &e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("rename", &p, &e))
    }

    /// Removes the record (a missing one is fine).
    pub fn remove(&self, container_id: &str, ifname: &str) -> CniResult<()> {
        let p = self.path(container_id, ifname);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove record", &p, &e)),
        }
    }

    /// Every record.
    pub fn all(&self) -> CniResult<Vec<Record>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &self.dir, &e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Ok(b) = std::fs::read(&p) {
                    if let Ok(r) = serde_json::from_slice(&b) {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The lowest endpoint id (1..) no record uses.
    pub fn free_endpoint_id(&self) -> CniResult<u16> {
        let used: std::collections::HashSet<u16> =
            self.all()?.iter().map(|r| r.endpoint_id).collect();
        (1..=u16::MAX)
            .find(|i| !used.contains(i))
            .ok_or_else(|| CniError::new(super::error::TRY_AGAIN, "no free endpoint id"))
    }
}
