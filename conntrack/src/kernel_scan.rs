//! GC candidate search in the kernel: the BPF program of `src/bpf/ct_gc.bpf.c`
//! walks the map with `bpf_for_each_map_elem` (run with `BPF_PROG_TEST_RUN`)
//! and returns, in resumable runs, the keys of the entries that are expired
//! or matched by the filter's addresses. [`crate::gc`] then deletes each with
//! the atomic per-key call, as after a syscall scan.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder};

use crate::error::{Error, Result};
use crate::key::IpFamily;
use crate::map::CtMap;

/// The compiled object (see `build.rs`: the committed prebuilt copy unless
/// the C sources changed).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ct_gc.bpf.o"));

/// Keys per slot of the walk's output map (`GC_SLOT` in the C).
pub(crate) const GC_SLOT: u32 = 8192;
/// Slots at most (`GC_SLOTS`; `GC_CAP` keys a run in the C). Many, because
/// a resumed run walks again past what the runs before it kept: with one
/// slot, a pass deleting half of 1M entries took 62 runs and 2.6 s, 4x the
/// syscall scan. A walker has only as many slots as its map's entries fill
/// ([`Walker::load`]).
const GC_SLOTS: u32 = 16;
/// Entries one run examines at most: a map of Cilium's largest default
/// size (524,288), or one twice that, in one run (about 0.1 s of kernel
/// time for 1M entries on this 2-core machine). A resumed run re-walks the
/// entries before its cursor (only counting them), so larger runs cost less
/// in total: with runs of 524,288 a 1% pass over 1M entries took 0.19 s,
/// in one run 0.10 s.
pub(crate) const MAX_VISIT: u32 = 1 << 20;

const F_REMOVE_EXPIRED: u32 = 1;
const F_VALID_IPS: u32 = 2;
const F_MATCH_IPS: u32 = 4;
const IP_MATCH: u8 = 1;
const IP_VALID: u8 = 2;

/// `struct gc_args`, the program's context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GcArgs {
    pub time: u32,
    pub flags: u32,
    pub skip: u32,
    pub max_visit: u32,
    pub cap: u32,
    pub visited: u32,
    pub kept: u32,
    pub found: u32,
    pub done: u32,
    pub pad: u32,
}

impl GcArgs {
    fn to_bytes(self) -> [u8; 40] {
        let f = [
            self.time,
            self.flags,
            self.skip,
            self.max_visit,
            self.cap,
            self.visited,
            self.kept,
            self.found,
            self.done,
            self.pad,
        ];
        let mut b = [0u8; 40];
        for (i, v) in f.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    fn from_bytes(b: &[u8; 40]) -> GcArgs {
        let u = |i: usize| u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        GcArgs {
            time: u(0),
            flags: u(1),
            skip: u(2),
            max_visit: u(3),
            cap: u(4),
            visited: u(5),
            kept: u(6),
            found: u(7),
            done: u(8),
            pad: u(9),
        }
    }
}

/// Which of the object's programs to load.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Program {
    /// The GC walk.
    Walk,
    /// The in-place renewing writer (tests, benchmarks; IPv4 only).
    Renew,
}

/// The object loaded against one map.
pub(crate) struct Walker {
    obj: Object,
    prog: &'static str,
    key_size: usize,
    out_fd: i32,
    /// Slots of `gc_out`: a run writes `slots * GC_SLOT` keys at most.
    slots: u32,
    /// One slot of `gc_out`, as read.
    slot: Vec<u8>,
    /// The last run's keys, packed.
    out: Vec<u8>,
    flags: u32,
}

fn bpf_err(op: &'static str, map: &CtMap) -> impl FnOnce(libbpf_rs::Error) -> Error {
    let name = map.name().to_string();
    move |source| Error::Bpf { op, name, source }
}

impl Walker {
    /// Opens the object, points its map at `map` and loads `which`, with the
    /// filter's address sets in its `ips4`/`ips6` maps.
    pub(crate) fn load(
        map: &CtMap,
        which: Program,
        valid_ips: Option<&HashSet<IpAddr>>,
        match_ips: &HashSet<IpAddr>,
    ) -> Result<Walker> {
        let family = map.family();
        let (ct, prog, ips) = match (family, which) {
            (IpFamily::V4, Program::Walk) => ("ct4", "ct4_gc_walk", "ips4"),
            (IpFamily::V6, Program::Walk) => ("ct6", "ct6_gc_walk", "ips6"),
            (IpFamily::V4, Program::Renew) => ("ct4", "ct4_renew", "ips4"),
            (IpFamily::V6, Program::Renew) => {
                return Err(Error::InvalidInput(
                    "the in-place renewing writer exists for IPv4 maps only".into(),
                ))
            }
        };
        // The addresses of this family, with their bits.
        let mut addrs: std::collections::HashMap<Vec<u8>, u8> = std::collections::HashMap::new();
        let mut add = |a: &IpAddr, bit: u8| {
            let bytes = match (a, family) {
                (IpAddr::V4(v4), IpFamily::V4) => v4.octets().to_vec(),
                (IpAddr::V6(v6), IpFamily::V6) => v6.octets().to_vec(),
                _ => return,
            };
            *addrs.entry(bytes).or_default() |= bit;
        };
        for a in match_ips {
            add(a, IP_MATCH);
        }
        for a in valid_ips.into_iter().flatten() {
            add(a, IP_VALID);
        }
        // The renewing writer writes slot 0 only; a walk, no more keys than
        // the map holds entries (a small map needs no 5 MiB of output).
        let slots = match which {
            Program::Renew => 1,
            Program::Walk => map.max_entries().div_ceil(GC_SLOT).clamp(1, GC_SLOTS),
        };
        let mut open = ObjectBuilder::default()
            .open_memory(OBJECT)
            .map_err(bpf_err("opening the GC walk object", map))?;
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            if name == ct {
                m.reuse_fd(map.as_fd())
                    .map_err(bpf_err("bpf_map__reuse_fd", map))?;
            } else if name == ips {
                let n = u32::try_from(addrs.len()).unwrap_or(u32::MAX).max(1);
                m.set_max_entries(n)
                    .map_err(bpf_err("bpf_map__set_max_entries", map))?;
            } else if name.starts_with("ct") || name.starts_with("ips") {
                m.set_autocreate(false)
                    .map_err(bpf_err("bpf_map__set_autocreate", map))?;
            } else if name == "gc_out" {
                m.set_max_entries(slots)
                    .map_err(bpf_err("bpf_map__set_max_entries", map))?;
            }
        }
        for mut p in open.progs_mut() {
            let load = p.name().to_str() == Some(prog);
            p.set_autoload(load);
        }
        let obj = open
            .load()
            .map_err(bpf_err("loading the GC walk program", map))?;
        let mut out_fd = -1;
        for m in obj.maps() {
            let name = m.name().to_string_lossy();
            if name == ips {
                for (k, v) in &addrs {
                    m.update(k, &[*v], MapFlags::ANY)
                        .map_err(bpf_err("BPF_MAP_UPDATE_ELEM (GC address set)", map))?;
                }
            } else if name == "gc_out" {
                out_fd = m.as_fd().as_raw_fd();
            }
        }
        let mut flags = 0;
        if valid_ips.is_some() {
            flags |= F_VALID_IPS;
        }
        if !match_ips.is_empty() {
            flags |= F_MATCH_IPS;
        }
        Ok(Walker {
            obj,
            prog,
            key_size: family.key_size(),
            out_fd,
            slots,
            slot: vec![0u8; GC_SLOT as usize * crate::key::CtKey6::SIZE],
            out: Vec::new(),
            flags,
        })
    }

    /// One run: examines up to `max_visit` entries after the first `skip`
    /// and returns what it did; the keys are in [`Walker::keys`].
    pub(crate) fn run(
        &mut self,
        map: &CtMap,
        remove_expired: bool,
        time: u32,
        skip: u32,
        max_visit: u32,
    ) -> Result<GcArgs> {
        let args = GcArgs {
            time,
            flags: self.flags | if remove_expired { F_REMOVE_EXPIRED } else { 0 },
            skip,
            max_visit,
            cap: self.slots * GC_SLOT,
            ..Default::default()
        };
        let out = self.test_run(map, args)?;
        self.read_out(map, out.found)?;
        Ok(out)
    }

    fn test_run(&self, map: &CtMap, args: GcArgs) -> Result<GcArgs> {
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name().to_str() == Some(self.prog))
            .ok_or_else(|| Error::InvalidInput(format!("{} missing from the object", self.prog)))?;
        let mut ctx = args.to_bytes();
        let input = libbpf_rs::ProgramInput {
            context_in: Some(&mut ctx),
            ..Default::default()
        };
        prog.test_run(input)
            .map_err(bpf_err("BPF_PROG_TEST_RUN (GC walk)", map))?;
        Ok(GcArgs::from_bytes(&ctx))
    }

    /// Reads the `found` keys of the last run, slot by slot, into `out`.
    fn read_out(&mut self, map: &CtMap, found: u32) -> Result<()> {
        self.out.clear();
        let found = found.min(self.slots * GC_SLOT);
        for slot in 0..found.div_ceil(GC_SLOT) {
            // SAFETY: `gc_out` has a 4-byte key and a value of `slot.len()`
            // bytes.
            let r = unsafe {
                libbpf_sys::bpf_map_lookup_elem(
                    self.out_fd,
                    std::ptr::from_ref(&slot).cast(),
                    self.slot.as_mut_ptr().cast(),
                )
            };
            if r != 0 {
                return Err(map.raw.err(
                    "BPF_MAP_LOOKUP_ELEM (GC walk output)",
                    std::io::Error::last_os_error(),
                ));
            }
            let n = (found - slot * GC_SLOT).min(GC_SLOT) as usize;
            self.out.extend_from_slice(&self.slot[..n * self.key_size]);
        }
        Ok(())
    }

    /// The keys (concatenated) the last run found.
    pub(crate) fn keys(&self) -> &[u8] {
        &self.out
    }

    /// The renewing writer's run: renews expired entries with `TUPLE_F_IN`
    /// to `lifetime` in place; returns the keys it renewed and saw still in
    /// the map afterwards, and whether it reached the map's end.
    pub(crate) fn renew(
        &mut self,
        map: &CtMap,
        lifetime: u32,
        max: u32,
    ) -> Result<(Vec<u8>, bool)> {
        let out = self.test_run(
            map,
            GcArgs {
                time: lifetime,
                cap: max.min(GC_SLOT),
                ..Default::default()
            },
        )?;
        self.read_out(map, out.found)?;
        Ok((self.out.clone(), out.done != 0))
    }
}

/// A datapath stand-in for tests and benchmarks: a BPF program that renews
/// expired entries **in place** (a write to the value in the map, as the
/// datapath's conntrack does), for the IPv4 entries whose tuple flags have
/// `TUPLE_F_IN`. Each [`RenewWriter::run`] walks the map in the kernel
/// (`bpf_for_each_map_elem`), renews up to `max` (at most 8,192) entries and
/// returns the keys it renewed that were provably still in the map after the
/// write (a `BPF_EXIST` re-write of the renewed value, which takes the
/// bucket lock a delete holds, must succeed: a write that lands inside a
/// delete's own copy-then-unlink is lost for any GC, and is not counted).
///
/// ```no_run
/// use podnet_conntrack::{CtMap, RenewWriter};
/// let map = CtMap::open("/sys/fs/bpf/tc/globals/cilium_ct4_global")?;
/// let mut w = RenewWriter::load(&map)?;
/// let (renewed, done) = w.run(&map, 2_000_000, 1024)?;
/// println!("{} renewed, finished: {done}", renewed.len());
/// # Ok::<(), podnet_conntrack::Error>(())
/// ```
pub struct RenewWriter(Walker);

impl RenewWriter {
    /// Loads the writer against `map` (an IPv4 conntrack map).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an IPv6 map; [`Error::Bpf`] when the
    /// kernel refuses the program.
    pub fn load(map: &CtMap) -> Result<RenewWriter> {
        Walker::load(map, Program::Renew, None, &HashSet::new()).map(RenewWriter)
    }

    /// One pass: renews up to `max` expired `TUPLE_F_IN` entries to
    /// `lifetime`. Returns the renewed keys still present after the write,
    /// and `true` when the pass reached the map's end (else call again).
    ///
    /// # Errors
    /// [`Error::Bpf`] when `BPF_PROG_TEST_RUN` fails.
    pub fn run(
        &mut self,
        map: &CtMap,
        lifetime: u32,
        max: u32,
    ) -> Result<(Vec<crate::CtKey4>, bool)> {
        let (keys, done) = self.0.renew(map, lifetime, max)?;
        Ok((
            keys.chunks_exact(crate::CtKey4::SIZE)
                .map(crate::CtKey4::copy_from)
                .collect(),
            done,
        ))
    }
}

#[cfg(test)]
mod tests {
    include!("../bpf_object.rs");

    #[test]
    fn prebuilt_object_matches_sources() {
        assert!(
            gc_walk_object().is_current().expect("src/bpf is readable"),
            "prebuilt/ct_gc.bpf.o is stale: run `PODNET_BPF_UPDATE=1 cargo build -p podnet-conntrack` and commit it"
        );
    }
}
