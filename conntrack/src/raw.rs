//! Thin, checked wrappers around the bpf(2) map calls (through libbpf-sys),
//! shared by the conntrack and NAT maps.
//!
//! libbpf-rs's own batch iterator ends silently on `ENOSPC` (a hash bucket
//! larger than the batch); [`BatchScanner`] drives `BPF_MAP_LOOKUP_BATCH`
//! itself, grows the batch on `ENOSPC` and never ends early without an error.

use std::ffi::{c_void, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `BPF_MAP_TYPE_HASH`.
pub(crate) const MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
pub(crate) const MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
/// `BPF_MAP_TYPE_LRU_HASH`.
pub(crate) const MAP_TYPE_LRU_HASH: u32 = 9;

/// The kernel's description of a map.
///
/// ```no_run
/// let m = podnet_conntrack::CtMap::open("/sys/fs/bpf/tc/globals/cilium_ct4_global")?;
/// let i = m.info();
/// println!("{} {}: key {} value {} max {}", podnet_conntrack::map_type_name(i.map_type), i.name, i.key_size, i.value_size, i.max_entries);
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// Map flags.
    pub map_flags: u32,
    /// Kernel map id.
    pub id: u32,
    /// The (possibly truncated) kernel name.
    pub name: String,
}

/// The name of a map type as bpftool prints it.
#[must_use]
pub fn map_type_name(t: u32) -> String {
    match t {
        MAP_TYPE_HASH => "hash".into(),
        2 => "array".into(),
        MAP_TYPE_LRU_HASH => "lru_hash".into(),
        MAP_TYPE_ARRAY_OF_MAPS => "array_of_maps".into(),
        13 => "hash_of_maps".into(),
        5 => "percpu_hash".into(),
        6 => "percpu_array".into(),
        10 => "lru_percpu_hash".into(),
        n => format!("type {n}"),
    }
}

pub(crate) fn errno(ret: i32) -> io::Error {
    // libbpf returns -errno and also sets errno.
    if ret < 0 {
        io::Error::from_raw_os_error(-ret)
    } else {
        io::Error::last_os_error()
    }
}

/// `true` for the errnos a kernel answers a bpf(2) command it lacks for a
/// map type with: `EINVAL`, `ENOTSUP`, and the kernel-internal `ENOTSUPP`
/// (524) that leaks out of some batch paths.
pub(crate) fn is_unsupported(errno: i32) -> bool {
    const ENOTSUPP: i32 = 524;
    errno == libc::EINVAL || errno == libc::ENOTSUP || errno == ENOTSUPP
}

/// An open map file descriptor with the name it is known by.
#[derive(Debug)]
pub(crate) struct RawMap {
    pub(crate) fd: OwnedFd,
    pub(crate) label: String,
    pub(crate) path: Option<PathBuf>,
    pub(crate) info: MapInfo,
}

/// A pin directory must exist and be on bpffs: checked before any map is
/// created (else the kernel says EPERM, or ENOENT, and a map was made).
pub(crate) fn check_pin_dir(dir: &Path) -> Result<()> {
    match is_bpffs(dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::NotBpffs {
            path: dir.to_path_buf(),
        }),
        Err(source) => Err(Error::Open {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = cstring(path)?;
    // SAFETY: statfs writes into the zeroed struct we own; `c` is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)]
        Ok(st.f_type as i64 == BPF_FS_MAGIC)
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

pub(crate) fn map_info(fd: BorrowedFd<'_>) -> io::Result<MapInfo> {
    let mut info = libbpf_sys::bpf_map_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: `info` and `len` are valid for writes and `len` is its size.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(errno(ret));
    }
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(MapInfo {
        map_type: info.type_,
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
        map_flags: info.map_flags,
        id: info.id,
        name: String::from_utf8_lossy(&name).into_owned(),
    })
}

impl RawMap {
    /// Opens a pinned map: the path must exist, be on bpffs and hold a map.
    pub(crate) fn open_pinned(path: &Path) -> Result<RawMap> {
        let open_err = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::from_raw_os_error(libc::EISDIR)));
        }
        if !is_bpffs(path).map_err(open_err)? {
            return Err(Error::NotBpffs {
                path: path.to_path_buf(),
            });
        }
        let c = cstring(path).map_err(open_err)?;
        // SAFETY: `c` is a valid NUL-terminated path.
        let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
        if fd < 0 {
            return Err(open_err(errno(fd)));
        }
        // SAFETY: bpf_obj_get returned a fresh descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A pinned program or link opens too, and BPF_OBJ_GET_INFO_BY_FD
        // would describe it in its own layout: check what the fd is.
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !target.is_empty() && target != "anon_inode:bpf-map" {
            return Err(Error::NotAMap {
                path: path.to_path_buf(),
                what: format!("the pinned object is {target}"),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let info = map_info(fd.as_fd()).map_err(|source| Error::NotAMap {
            path: path.to_path_buf(),
            what: "BPF_OBJ_GET_INFO_BY_FD failed".into(),
            source,
        })?;
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| info.name.clone());
        Ok(RawMap {
            fd,
            label,
            path: Some(path.to_path_buf()),
            info,
        })
    }

    /// Creates a map (`bpf_map_create`, so the errno is kept) and, when `pin`
    /// is given, pins it there; on a pin failure nothing is left behind.
    pub(crate) fn create(
        map_type: libbpf_rs::MapType,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        inner_map_fd: Option<BorrowedFd<'_>>,
        pin: Option<&Path>,
    ) -> Result<RawMap> {
        let kernel_name: String = name.chars().take(15).collect();
        #[allow(clippy::needless_update)]
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
            inner_map_fd: inner_map_fd.map(|f| f.as_raw_fd() as u32).unwrap_or(0),
            ..Default::default()
        };
        let cname = CString::new(kernel_name.as_bytes())
            .map_err(|_| Error::InvalidInput(format!("map name {name:?} contains a NUL byte")))?;
        // SAFETY: valid name pointer and options struct for the call.
        let fd = unsafe {
            libbpf_sys::bpf_map_create(
                map_type.into(),
                cname.as_ptr(),
                key_size,
                value_size,
                max_entries,
                &opts,
            )
        };
        if fd < 0 {
            return Err(Error::Syscall {
                op: "BPF_MAP_CREATE",
                name: name.to_string(),
                source: errno(fd),
            });
        }
        // SAFETY: bpf_map_create returned a fresh descriptor that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let info = map_info(fd.as_fd()).map_err(|source| Error::Syscall {
            op: "BPF_OBJ_GET_INFO_BY_FD",
            name: name.to_string(),
            source,
        })?;
        if let Some(p) = pin {
            let c = cstring(p).map_err(|source| Error::Open {
                path: p.to_path_buf(),
                source,
            })?;
            // SAFETY: valid fd and NUL-terminated path.
            let ret = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
            if ret != 0 {
                return Err(Error::Syscall {
                    op: "BPF_OBJ_PIN",
                    name: p.display().to_string(),
                    source: errno(ret),
                });
            }
        }
        Ok(RawMap {
            fd,
            label: name.to_string(),
            path: pin.map(Path::to_path_buf),
            info,
        })
    }

    /// Checks that this is a hash or LRU hash map with the given key and
    /// value sizes (what the conntrack and SNAT maps are).
    pub(crate) fn check_hash_layout(&self, key_size: usize, value_size: usize) -> Result<()> {
        let path = self.path.clone().unwrap_or_default();
        let info = &self.info;
        if info.map_type != MAP_TYPE_LRU_HASH && info.map_type != MAP_TYPE_HASH {
            return Err(Error::MapType {
                name: self.label.clone(),
                path,
                expected: "lru_hash or hash",
                found: map_type_name(info.map_type),
            });
        }
        if info.key_size as usize != key_size {
            return Err(Error::KeySize {
                name: self.label.clone(),
                path,
                expected: key_size as u32,
                found: info.key_size,
            });
        }
        if info.value_size as usize != value_size {
            return Err(Error::ValueSize {
                name: self.label.clone(),
                path,
                expected: value_size as u32,
                found: info.value_size,
            });
        }
        Ok(())
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn err(&self, op: &'static str, source: io::Error) -> Error {
        Error::Syscall {
            op,
            name: self.display_name(),
            source,
        }
    }

    pub(crate) fn display_name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => self.label.clone(),
        }
    }

    /// Reads an element op's return: `Ok(true)` on success, `Ok(false)` for
    /// `ENOENT`, the errno of `op` otherwise.
    fn found(&self, ret: i32, op: &'static str) -> Result<bool> {
        match ret {
            0 => Ok(true),
            r if -r == libc::ENOENT => Ok(false),
            r => Err(self.err(op, errno(r))),
        }
    }

    /// Counts the entries with a batch walk.
    pub(crate) fn count(&self) -> Result<usize> {
        let mut s = BatchScanner::new(self, DEFAULT_BATCH)?;
        let mut n = 0;
        while let Some(k) = s.next_batch()? {
            n += k;
        }
        Ok(n)
    }

    /// Looks `key` up into `value`; `Ok(false)` when absent.
    pub(crate) fn lookup_into(&self, key: &[u8], value: &mut [u8]) -> Result<bool> {
        debug_assert_eq!(key.len(), self.info.key_size as usize);
        debug_assert_eq!(value.len(), self.info.value_size as usize);
        // SAFETY: key/value buffers have the map's key and value sizes.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.raw(),
                key.as_ptr().cast(),
                value.as_mut_ptr().cast(),
            )
        };
        self.found(ret, "BPF_MAP_LOOKUP_ELEM")
    }

    /// Atomically removes `key`, returning its last value in `value`.
    /// `Ok(false)` when absent.
    pub(crate) fn lookup_and_delete_into(&self, key: &[u8], value: &mut [u8]) -> Result<bool> {
        // SAFETY: key/value buffers have the map's key and value sizes.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem(
                self.raw(),
                key.as_ptr().cast(),
                value.as_mut_ptr().cast(),
            )
        };
        self.found(ret, "BPF_MAP_LOOKUP_AND_DELETE_ELEM")
    }

    /// Updates with `BPF_ANY` / `BPF_NOEXIST` / `BPF_EXIST` flags.
    pub(crate) fn update_raw(&self, key: &[u8], value: &[u8], flags: u64) -> i32 {
        // SAFETY: key/value buffers have the map's key and value sizes.
        unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.raw(),
                key.as_ptr().cast(),
                value.as_ptr().cast(),
                flags,
            )
        }
    }

    pub(crate) fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        match self.update_raw(key, value, flags) {
            0 => Ok(()),
            r => Err(self.err("BPF_MAP_UPDATE_ELEM", errno(r))),
        }
    }

    /// Deletes `key`; `Ok(false)` when it was absent.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<bool> {
        // SAFETY: the key buffer has the map's key size.
        let ret = unsafe { libbpf_sys::bpf_map_delete_elem(self.raw(), key.as_ptr().cast()) };
        self.found(ret, "BPF_MAP_DELETE_ELEM")
    }

    /// Writes `keys`/`values` (multiples of the key/value size) with
    /// `BPF_MAP_UPDATE_BATCH` (`BPF_ANY`), falling back to one update per
    /// entry where the kernel has no batch ops.
    pub(crate) fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<()> {
        let ks = self.info.key_size as usize;
        let vs = self.info.value_size as usize;
        let total = keys.len() / ks;
        if values.len() / vs != total || keys.len() % ks != 0 || values.len() % vs != 0 {
            return Err(Error::InvalidInput(format!(
                "update_batch: {} key bytes and {} value bytes are not whole, equal counts of {ks}-byte keys and {vs}-byte values",
                keys.len(),
                values.len()
            )));
        }
        if total == 0 {
            return Ok(());
        }
        let opts = batch_opts();
        let mut count = total as u32;
        // SAFETY: the slices hold `count` keys and values of the map's sizes.
        let ret = unsafe {
            libbpf_sys::bpf_map_update_batch(
                self.raw(),
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let done = (count as usize).min(total);
        if is_unsupported(-ret) {
            for i in done..total {
                self.update(
                    &keys[i * ks..(i + 1) * ks],
                    &values[i * vs..(i + 1) * vs],
                    0,
                )?;
            }
            return Ok(());
        }
        Err(self.err("BPF_MAP_UPDATE_BATCH", errno(ret)))
    }

    /// Deletes `keys` (a multiple of the key size) with
    /// `BPF_MAP_DELETE_BATCH`. Keys already gone (the kernel stops the batch
    /// at the first `ENOENT`) are skipped; returns how many were deleted.
    pub(crate) fn delete_batch(&self, keys: &[u8]) -> Result<usize> {
        let ks = self.info.key_size as usize;
        debug_assert_eq!(keys.len() % ks, 0);
        let total = keys.len() / ks;
        let opts = batch_opts();
        let mut done = 0usize;
        let mut deleted = 0usize;
        while done < total {
            let mut count = (total - done) as u32;
            // SAFETY: `keys[done*ks..]` holds `count` keys of the map's size.
            let ret = unsafe {
                libbpf_sys::bpf_map_delete_batch(
                    self.raw(),
                    keys[done * ks..].as_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            let count = (count as usize).min(total - done);
            done += count;
            deleted += count;
            if ret == 0 {
                break;
            }
            if -ret == libc::ENOENT {
                // The key at `done` vanished (LRU eviction, the datapath):
                // skip it and continue with the rest.
                done += 1;
                continue;
            }
            if is_unsupported(-ret) {
                // No batch ops on this kernel / map: one by one.
                for k in keys[done * ks..].chunks_exact(ks) {
                    if self.delete(k)? {
                        deleted += 1;
                    }
                }
                break;
            }
            return Err(self.err("BPF_MAP_DELETE_BATCH", errno(ret)));
        }
        Ok(deleted)
    }
}

pub(crate) fn batch_opts() -> libbpf_sys::bpf_map_batch_opts {
    #[allow(clippy::needless_update)]
    libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as libbpf_sys::size_t,
        elem_flags: 0,
        flags: 0,
        ..Default::default()
    }
}

/// Default number of entries per `BPF_MAP_LOOKUP_BATCH` call. Cilium uses
/// 4096; on the benchmark machine 256 scans ~12% faster (the batch buffers
/// stay in cache), and `ENOSPC` grows it where a bucket is larger.
pub const DEFAULT_BATCH: u32 = 256;
/// Largest batch [`BatchScanner`] grows to before giving up.
const MAX_BATCH: u32 = 1 << 24;

/// A streaming `BPF_MAP_LOOKUP_BATCH` walk over a hash map with buffers of
/// one batch.
pub(crate) struct BatchScanner<'m> {
    map: &'m RawMap,
    batch: u32,
    pub(crate) keys: Vec<u8>,
    pub(crate) values: Vec<u8>,
    in_tok: [u8; 8],
    out_tok: [u8; 8],
    started: bool,
    done: bool,
    /// How often the batch was grown after `ENOSPC`.
    pub(crate) grows: u32,
    /// How many batch calls returned entries.
    pub(crate) calls: u64,
}

impl<'m> BatchScanner<'m> {
    pub(crate) fn new(map: &'m RawMap, batch: u32) -> Result<Self> {
        if batch == 0 {
            return Err(Error::InvalidInput("batch size must be at least 1".into()));
        }
        let batch = batch.min(MAX_BATCH);
        let ks = map.info.key_size as usize;
        let vs = map.info.value_size as usize;
        Ok(BatchScanner {
            map,
            batch,
            keys: vec![0; ks * batch as usize],
            values: vec![0; vs * batch as usize],
            in_tok: [0; 8],
            out_tok: [0; 8],
            started: false,
            done: false,
            grows: 0,
            calls: 0,
        })
    }

    /// The current batch size.
    pub(crate) fn batch(&self) -> u32 {
        self.batch
    }

    /// Fetches the next batch into `keys`/`values`; returns how many entries
    /// it holds, `None` at the end of the map.
    pub(crate) fn next_batch(&mut self) -> Result<Option<usize>> {
        let opts = batch_opts();
        loop {
            if self.done {
                return Ok(None);
            }
            let mut count = self.batch;
            let in_ptr: *mut c_void = if self.started {
                self.in_tok.as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: the key/value buffers hold `batch` keys/values of the
            // map's sizes; the tokens are 8 bytes (the kernel's hash-map batch
            // token is a u32 bucket index).
            let ret = unsafe {
                libbpf_sys::bpf_map_lookup_batch(
                    self.map.raw(),
                    in_ptr,
                    self.out_tok.as_mut_ptr().cast(),
                    self.keys.as_mut_ptr().cast(),
                    self.values.as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            let n = (count as usize).min(self.batch as usize);
            if ret == 0 {
                self.in_tok = self.out_tok;
                self.started = true;
                if n == 0 {
                    continue;
                }
                self.calls += 1;
                return Ok(Some(n));
            }
            let e = -ret;
            if e == libc::ENOENT {
                self.done = true;
                if n > 0 {
                    self.calls += 1;
                    return Ok(Some(n));
                }
                return Ok(None);
            }
            if e == libc::ENOSPC {
                if n > 0 {
                    // Defensive: entries were copied; continue after them.
                    self.in_tok = self.out_tok;
                    self.started = true;
                    self.calls += 1;
                    return Ok(Some(n));
                }
                // A bucket holds more entries than the batch: grow and retry
                // the same bucket.
                if self.batch >= MAX_BATCH {
                    return Err(self.map.err("BPF_MAP_LOOKUP_BATCH", errno(ret)));
                }
                self.batch = (self.batch * 2).min(MAX_BATCH);
                self.grows += 1;
                self.keys
                    .resize(self.map.info.key_size as usize * self.batch as usize, 0);
                self.values
                    .resize(self.map.info.value_size as usize * self.batch as usize, 0);
                continue;
            }
            return Err(self.map.err("BPF_MAP_LOOKUP_BATCH", errno(ret)));
        }
    }
}
