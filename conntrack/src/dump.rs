//! `cilium bpf ct list` text (Cilium's `DumpEntriesWithTimeDiff` in
//! `pkg/maps/ctmap/ctmap.go`): each key dumped in reverse (`Dump(sb, true)`),
//! then the entry's `StringWithTimeDiff`; keys with `nexthdr == 0` skipped.

use crate::error::Result;
use crate::gc::ClockSource;
use crate::map::CtMap;

/// The text of `cilium bpf ct list global` for `map` (Cilium's
/// `DoDumpEntries`).
///
/// ```no_run
/// let map = podnet_conntrack::CtMap::open_named(podnet_conntrack::DEFAULT_PIN_DIR, "cilium_ct4_global")?;
/// print!("{}", podnet_conntrack::dump_entries(&map)?);
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
///
/// # Errors
/// [`Error::Syscall`](crate::Error::Syscall) when the scan fails; [`Error::InvalidInput`](crate::Error::InvalidInput) when the clock cannot be read.
pub fn dump_entries(map: &CtMap) -> Result<String> {
    dump(map, None)
}

/// Like [`dump_entries`], with ` (remaining: N sec(s))` after each
/// `expires=` computed against `clock` (Cilium's `DumpEntriesWithTimeDiff`).
///
/// # Errors
/// [`Error::Syscall`](crate::Error::Syscall) when the scan fails; [`Error::InvalidInput`](crate::Error::InvalidInput) when the clock cannot be read.
pub fn dump_entries_with_time_diff(map: &CtMap, clock: &ClockSource) -> Result<String> {
    dump(map, Some(clock))
}

fn dump(map: &CtMap, clock: Option<&ClockSource>) -> Result<String> {
    // The clock with its reading now, in seconds.
    let clock_now = match clock {
        Some(c) => Some((c, c.to_seconds(u64::from(c.now()?)) as i64)),
        None => None,
    };
    let global = map.is_global();
    let mut out = String::new();
    let mut diff = String::new();
    for rec in map.iter()? {
        let (key, entry) = rec?;
        if !key.dump(&mut out, global, true) {
            continue;
        }
        match clock_now {
            Some((c, now)) => {
                diff.clear();
                let t = c.to_seconds(u64::from(entry.lifetime())) as i64;
                use std::fmt::Write as _;
                let _ = write!(diff, "remaining: {} sec(s)", t - now);
                entry.write_with_time_diff(&mut out, Some(&diff));
            }
            None => entry.write_with_time_diff(&mut out, None),
        }
    }
    Ok(out)
}
