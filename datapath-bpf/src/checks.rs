//! What `Datapath::load` checks before it creates or loads anything, so that
//! the common mistakes get a message that says what to do instead of an
//! errno and a page of libbpf log: missing capabilities, a pin directory
//! off bpffs, a pinned map of another size.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapHandle, MapInfo};

use crate::error::{Error, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's effective capability set (64 bits), or `None` when
/// `capget` fails.
fn effective_caps() -> Option<u64> {
    let mut hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data structs, as version 3 requires.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    (rc == 0).then(|| u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

/// Loading tc programs needs `CAP_BPF` (map and program creation) and
/// `CAP_NET_ADMIN` (a networking program type), or `CAP_SYS_ADMIN` for both
/// (kernels before 5.8 know only that one).
pub(crate) fn privileges(what: &'static str) -> Result<()> {
    let Some(caps) = effective_caps() else {
        return Ok(()); // unknown: let the kernel decide
    };
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_NET_ADMIN)) {
        Ok(())
    } else {
        Err(Error::Privileges { what })
    }
}

/// `dir`, or its nearest existing ancestor, is on bpffs (pins are only
/// possible there; libbpf would fail with EINVAL after creating the maps).
pub(crate) fn on_bpffs(dir: &Path) -> Result<()> {
    let existing = dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
        .unwrap_or(Path::new("."));
    let not_bpffs = || Error::NotBpffs {
        path: dir.to_path_buf(),
    };
    let c = CString::new(existing.as_os_str().as_bytes()).map_err(|_| not_bpffs())?;
    // SAFETY: a zeroed statfs is a valid out buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; st is valid for writes.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::PinDir {
            path: existing.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    #[allow(clippy::unnecessary_cast)] // f_type's type differs per libc
    if st.f_type as i64 == BPF_FS_MAGIC {
        Ok(())
    } else {
        Err(not_bpffs())
    }
}

/// What the object asks of one map, after `Options` sized it.
pub(crate) struct MapShape {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

fn type_name(t: u32) -> String {
    // SAFETY: returns a static string or NULL for unknown types.
    let p = unsafe { libbpf_sys::libbpf_bpf_map_type_str(t) };
    if p.is_null() {
        return t.to_string();
    }
    // SAFETY: non-NULL: a NUL-terminated static string.
    let s = unsafe { std::ffi::CStr::from_ptr(p) };
    format!("{} ({t})", s.to_string_lossy())
}

/// A map already pinned at `pin_dir/name` has the shape `want`, the same
/// fields libbpf compares before it re-uses a pin ("parameter mismatch").
/// Pins that are not readable maps are left to libbpf to report.
pub(crate) fn pin_compatible(pin_dir: &Path, want: &MapShape) -> Result<()> {
    let path: PathBuf = pin_dir.join(&want.name);
    if !path.exists() {
        return Ok(());
    }
    let Ok(handle) = MapHandle::from_pinned_path(&path) else {
        return Ok(());
    };
    let Ok(info) = MapInfo::new(std::os::fd::AsFd::as_fd(&handle)) else {
        return Ok(());
    };
    let i = &info.info;
    let fields: [(&'static str, u32, u32); 5] = [
        ("type", i.type_, want.map_type),
        ("key_size", i.key_size, want.key_size),
        ("value_size", i.value_size, want.value_size),
        ("max_entries", i.max_entries, want.max_entries),
        ("map_flags", i.map_flags, want.map_flags),
    ];
    for (field, pinned, wanted) in fields {
        if pinned != wanted {
            let show = |v: u32| match field {
                "type" => type_name(v),
                "map_flags" => format!("{v:#x}"),
                _ => v.to_string(),
            };
            return Err(Error::PinMismatch {
                path,
                field,
                pinned: show(pinned),
                wanted: show(wanted),
            });
        }
    }
    Ok(())
}
