//! Which pins in the pin directory podnet made, so that `teardown` removes
//! those and nothing else.
//!
//! A one-entry array map pinned as `podnet_owned` holds a bit mask over
//! [`maps::PINNED`] (bit `i`: `PINNED[i]` was created by a podnet
//! datapath). A map of one of podnet's names that was pinned before podnet
//! first loaded there (Cilium's `cilium_ct4_global`, say) is re-used but not
//! marked, and survives teardown.

use std::path::Path;

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::error::{Error, Result};
#[cfg(doc)]
use crate::maps;

/// The pin's name.
pub(crate) const NAME: &str = "podnet_owned";

fn map_err(op: &'static str, e: &libbpf_rs::Error) -> Error {
    Error::Map {
        map: NAME,
        op,
        source: std::io::Error::from_raw_os_error(
            crate::error::libbpf_errno(e).unwrap_or(libc::EINVAL),
        ),
    }
}

/// The recorded mask, `None` when there is no record.
pub(crate) fn read(pin_dir: &Path) -> Result<Option<u32>> {
    let path = pin_dir.join(NAME);
    if !path.exists() {
        return Ok(None);
    }
    let map = MapHandle::from_pinned_path(&path).map_err(|e| map_err("open pin", &e))?;
    let v = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| map_err("lookup", &e))?;
    Ok(v.and_then(|b| {
        b.get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }))
}

/// Records `mask`, creating and pinning the map when it is missing.
pub(crate) fn write(pin_dir: &Path, mask: u32) -> Result<()> {
    let path = pin_dir.join(NAME);
    let map = if path.exists() {
        MapHandle::from_pinned_path(&path).map_err(|e| map_err("open pin", &e))?
    } else {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
            ..Default::default()
        };
        let mut m = MapHandle::create(MapType::Array, Some(NAME), 4, 4, 1, &opts)
            .map_err(|e| map_err("create", &e))?;
        m.pin(&path).map_err(|e| map_err("pin", &e))?;
        m
    };
    map.update(&0u32.to_ne_bytes(), &mask.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| map_err("update", &e))
}
