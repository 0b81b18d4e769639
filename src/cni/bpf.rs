//! What the kernel says is attached to an interface (CHECK), and clean-up
//! of tcx links pinned for interfaces that are gone (DEL): the datapath
//! crate pins a kept link per hook and interface, and a pin outlives its
//! interface (holding the program) until someone removes it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The names of the programs attached with tcx at ingress (`egress`
/// false) or egress of `ifindex` in the calling thread's netns.
pub fn tcx_programs(ifindex: u32, egress: bool) -> std::io::Result<Vec<String>> {
    let attach = if egress {
        libbpf_sys::BPF_TCX_EGRESS
    } else {
        libbpf_sys::BPF_TCX_INGRESS
    };
    let mut ids = [0u32; 64];
    // SAFETY: a zeroed opts struct is valid; sz, prog_ids and the count are set below.
    let mut opts: libbpf_sys::bpf_prog_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _;
    opts.prog_ids = ids.as_mut_ptr();
    opts.__bindgen_anon_1.count = ids.len() as u32;
    // SAFETY: opts points at `ids`, which outlives the call, with its length.
    let rc = unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, attach, &mut opts) };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    // SAFETY: the kernel wrote the count.
    let n = unsafe { opts.__bindgen_anon_1.count } as usize;
    let mut names = Vec::new();
    for id in &ids[..n.min(ids.len())] {
        // SAFETY: plain syscall wrapper.
        let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(*id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: the kernel just gave us this fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed info is valid; the kernel fills at most `len` bytes.
        let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        // SAFETY: info and len are valid for the call.
        if unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) } == 0
        {
            let name: Vec<u8> = info
                .name
                .iter()
                .take_while(|c| **c != 0)
                .map(|c| *c as u8)
                .collect();
            names.push(String::from_utf8_lossy(&name).into_owned());
        }
    }
    Ok(names)
}

/// Removes every tcx link pinned under `dir` whose interface is gone (the
/// kernel reports the link defunct: ifindex 0). Returns how many went.
pub fn remove_defunct_links(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let path = e.path();
        let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: NUL-terminated path.
        let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
        if fd < 0 {
            continue;
        }
        // SAFETY: the kernel just gave us this fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // struct bpf_link_info: type, id, prog_id, pad, then the union; a
        // tcx link's union starts with its ifindex.
        let mut buf = [0u64; 32];
        let mut len = std::mem::size_of_val(&buf) as u32;
        // SAFETY: buf is larger than bpf_link_info and suitably aligned.
        let rc = unsafe {
            libbpf_sys::bpf_link_get_info_by_fd(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        };
        if rc != 0 {
            continue;
        }
        let ty = (buf[0] & 0xffff_ffff) as u32;
        let ifindex = (buf[2] & 0xffff_ffff) as u32;
        if ty == libbpf_sys::BPF_LINK_TYPE_TCX
            && ifindex == 0
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    let _ = std::fs::remove_dir(dir); // only when empty
    removed
}
