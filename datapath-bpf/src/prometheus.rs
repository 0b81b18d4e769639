//! Metrics for scrapers in the Prometheus text exposition format (0.0.4),
//! with Cilium's metric names where Cilium has the metric
//! (`pkg/maps/metricsmap/metricsmap.go`, `pkg/metrics/metrics.go` of
//! cilium/cilium 1.17): `cilium_drop_count_total{reason,direction}`,
//! `cilium_drop_bytes_total`, `cilium_forward_count_total{direction}`,
//! `cilium_forward_bytes_total`, `cilium_bpf_map_pressure{map_name}`.
//! podnet's own: `podnet_endpoint_{forward,drop}_{count,bytes}_total
//! {endpoint,direction}`, `podnet_ct_evictions_total{map_name}`,
//! `podnet_events_lost_total{reason}`. No HTTP server: serve the text
//! however you like.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapHandle};

use crate::error::{Error, Result};
use crate::maps::{self, reason, EndpointKey, Pod, TrafficDirection};
use crate::Datapath;

/// One endpoint's counters in one direction, summed over CPUs.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointMetric {
    /// The endpoint id ([`crate::Endpoint::id`]).
    pub endpoint: u16,
    /// Egress: packets the endpoint sent; ingress: packets sent to it.
    pub direction: TrafficDirection,
    /// Packets forwarded.
    pub forwarded_packets: u64,
    /// Bytes forwarded.
    pub forwarded_bytes: u64,
    /// Packets dropped.
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

/// How full a map is.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MapPressure {
    /// The map's name.
    pub map: String,
    /// Entries in it.
    pub entries: u64,
    /// Its size.
    pub max_entries: u64,
}

impl MapPressure {
    /// `entries / max_entries` (Cilium's `cilium_bpf_map_pressure`).
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.max_entries == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let r = self.entries as f64 / self.max_entries as f64;
        r
    }
}

/// Entries of the map at `fd` with keys of `key_size` bytes, walked with
/// `BPF_MAP_GET_NEXT_KEY` (a deleted current key restarts at the first:
/// counted again at most, never looping forever past `limit`).
fn count_entries(map: &'static str, fd: i32, key_size: usize, limit: u64) -> Result<u64> {
    let mut cur = vec![0u8; key_size];
    let mut next = vec![0u8; key_size];
    let mut n = 0u64;
    let mut first = true;
    while n <= limit {
        let prev = if first {
            std::ptr::null()
        } else {
            cur.as_ptr().cast::<c_void>()
        };
        // SAFETY: both buffers have the map's key size.
        let rc = unsafe {
            libbpf_sys::bpf_map_get_next_key(fd, prev, next.as_mut_ptr().cast::<c_void>())
        };
        if rc == -libc::ENOENT {
            break;
        }
        if rc < 0 {
            return Err(Error::Map {
                map,
                op: "iterate",
                source: std::io::Error::from_raw_os_error(-rc),
            });
        }
        n += 1;
        first = false;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(n.min(limit))
}

/// Maps of other podnet features whose pressure is reported when pinned
/// in the pin directory (NAT: Cilium's names).
const OPTIONAL_PRESSURE_MAPS: [&str; 2] = ["cilium_snat_v4_external", "cilium_snat_v6_external"];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Datapath {
    /// Per-endpoint forwarded / dropped packets and bytes of every endpoint
    /// in the endpoints map, non-zero ones only, by endpoint id then
    /// direction. Counted for ids below 4096 (Cilium's endpoint id range).
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when iterating the endpoints or a lookup fails.
    pub fn endpoint_metrics(&self) -> Result<Vec<EndpointMetric>> {
        let mut ids: Vec<u16> = Vec::new();
        for k in self.keys::<EndpointKey>(maps::ENDPOINTS)? {
            let mut v = [0u8; size_of::<maps::EndpointValue>()];
            if self.lookup(maps::ENDPOINTS, k.as_bytes(), &mut v)? {
                if let Some(v) = maps::EndpointValue::from_bytes(&v) {
                    if v.lxc_id != 0 && !ids.contains(&v.lxc_id) {
                        ids.push(v.lxc_id);
                    }
                }
            }
        }
        ids.sort_unstable();
        let mut out = Vec::new();
        let vsize = 32;
        let mut buf = vec![0u8; vsize * self.ncpus()];
        for id in ids.into_iter().filter(|id| *id < 4096) {
            for (bit, dir) in [
                (0u32, TrafficDirection::Ingress),
                (1, TrafficDirection::Egress),
            ] {
                let idx = (u32::from(id) << 1) | bit;
                if !self.lookup(maps::ENDPOINT_METRICS, &idx.to_ne_bytes(), &mut buf)? {
                    continue;
                }
                let mut m = EndpointMetric {
                    endpoint: id,
                    direction: dir,
                    forwarded_packets: 0,
                    forwarded_bytes: 0,
                    dropped_packets: 0,
                    dropped_bytes: 0,
                };
                for cpu in buf.chunks_exact(vsize) {
                    let w = |i: usize| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&cpu[i * 8..i * 8 + 8]);
                        u64::from_ne_bytes(b)
                    };
                    m.forwarded_packets += w(0);
                    m.forwarded_bytes += w(1);
                    m.dropped_packets += w(2);
                    m.dropped_bytes += w(3);
                }
                if m.forwarded_packets + m.dropped_packets > 0 {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Fill of the conntrack maps, the endpoints map and, when pinned in
    /// the pin directory, the NAT maps. Walks each map's keys: time grows
    /// with the entries (about a second per million).
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when a walk or opening a pinned NAT map fails.
    pub fn map_pressure(&self) -> Result<Vec<MapPressure>> {
        let mut out = Vec::new();
        for (name, key_size) in [
            (maps::CT4_TCP, 14),
            (maps::CT4_ANY, 14),
            (maps::CT6_TCP, 38),
            (maps::CT6_ANY, 38),
            (maps::ENDPOINTS, 20),
        ] {
            let fd = self.map_fd_raw(name);
            let max = u64::from(map_max_entries(fd).unwrap_or(0));
            out.push(MapPressure {
                map: name.to_string(),
                entries: count_entries(name, fd, key_size, max)?,
                max_entries: max,
            });
        }
        for name in OPTIONAL_PRESSURE_MAPS {
            let path = self.pin_dir().join(name);
            if !path.exists() {
                continue;
            }
            let m = MapHandle::from_pinned_path(&path).map_err(|e| Error::Map {
                map: "NAT map",
                op: "open pin",
                source: std::io::Error::from_raw_os_error(
                    crate::error::libbpf_errno(&e).unwrap_or(libc::EINVAL),
                ),
            })?;
            let fd = m.as_fd().as_raw_fd();
            let max = u64::from(m.max_entries());
            out.push(MapPressure {
                map: name.to_string(),
                entries: count_entries("NAT map", fd, m.key_size() as usize, max)?,
                max_entries: max,
            });
        }
        Ok(out)
    }

    /// Every counter of the datapath in the Prometheus text format: drops
    /// and forwards by reason and direction (Cilium's names), per-endpoint
    /// counters, conntrack evictions, map pressure and lost events.
    ///
    /// ```no_run
    /// let dp = podnet_datapath::Datapath::load(&podnet_datapath::Options::new("/sys/fs/bpf/podnet"))?;
    /// let text = dp.prometheus()?;
    /// assert!(text.contains("# TYPE cilium_drop_count_total counter"));
    /// # Ok::<(), podnet_datapath::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when reading a map fails.
    pub fn prometheus(&self) -> Result<String> {
        let metrics = self.metrics()?;
        let mut drops: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let mut fwd: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut evicted: BTreeMap<&'static str, u64> = BTreeMap::new();
        for m in &metrics {
            let dir = m.direction.to_string();
            if m.reason == reason::FORWARDED {
                let e = fwd.entry(dir).or_default();
                e.0 += m.packets;
                e.1 += m.bytes;
            } else if let Some(map) = reason::ct_evicted_map(m.reason) {
                *evicted.entry(map).or_default() += m.packets;
            } else {
                let e = drops
                    .entry((reason::name(m.reason).to_string(), dir))
                    .or_default();
                e.0 += m.packets;
                e.1 += m.bytes;
            }
        }
        let mut s = String::new();
        let family = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
        };
        family(
            &mut s,
            "cilium_drop_count_total",
            "counter",
            "Total dropped packets, tagged by drop reason and ingress/egress direction",
        );
        for ((r, d), (p, _)) in &drops {
            let _ = writeln!(
                s,
                "cilium_drop_count_total{{direction=\"{d}\",reason=\"{}\"}} {p}",
                escape(r)
            );
        }
        family(
            &mut s,
            "cilium_drop_bytes_total",
            "counter",
            "Total dropped bytes, tagged by drop reason and ingress/egress direction",
        );
        for ((r, d), (_, b)) in &drops {
            let _ = writeln!(
                s,
                "cilium_drop_bytes_total{{direction=\"{d}\",reason=\"{}\"}} {b}",
                escape(r)
            );
        }
        family(
            &mut s,
            "cilium_forward_count_total",
            "counter",
            "Total forwarded packets, tagged by ingress/egress direction",
        );
        for (d, (p, _)) in &fwd {
            let _ = writeln!(s, "cilium_forward_count_total{{direction=\"{d}\"}} {p}");
        }
        family(
            &mut s,
            "cilium_forward_bytes_total",
            "counter",
            "Total forwarded bytes, tagged by ingress/egress direction",
        );
        for (d, (_, b)) in &fwd {
            let _ = writeln!(s, "cilium_forward_bytes_total{{direction=\"{d}\"}} {b}");
        }

        let eps = self.endpoint_metrics()?;
        for (name, help, pick) in [
            (
                "podnet_endpoint_forward_count_total",
                "Packets forwarded per local endpoint (egress: sent by it, ingress: delivered to it)",
                0,
            ),
            (
                "podnet_endpoint_forward_bytes_total",
                "Bytes forwarded per local endpoint",
                1,
            ),
            (
                "podnet_endpoint_drop_count_total",
                "Packets dropped per local endpoint",
                2,
            ),
            (
                "podnet_endpoint_drop_bytes_total",
                "Bytes dropped per local endpoint",
                3,
            ),
        ] {
            family(&mut s, name, "counter", help);
            for m in &eps {
                let v = [
                    m.forwarded_packets,
                    m.forwarded_bytes,
                    m.dropped_packets,
                    m.dropped_bytes,
                ][pick];
                let d = m.direction;
                let _ = writeln!(
                    s,
                    "{name}{{direction=\"{d}\",endpoint=\"{}\"}} {v}",
                    m.endpoint
                );
            }
        }

        family(
            &mut s,
            "podnet_ct_evictions_total",
            "counter",
            "New connections whose conntrack entry made the full map evict entries, by map",
        );
        for (map, n) in &evicted {
            let _ = writeln!(s, "podnet_ct_evictions_total{{map_name=\"{map}\"}} {n}");
        }

        family(
            &mut s,
            "cilium_bpf_map_pressure",
            "gauge",
            "Fill percentage of map, tagged by map name",
        );
        for p in self.map_pressure()? {
            let _ = writeln!(
                s,
                "cilium_bpf_map_pressure{{map_name=\"{}\"}} {}",
                escape(&p.map),
                p.ratio()
            );
        }

        family(
            &mut s,
            "podnet_events_lost_total",
            "counter",
            "Events the datapath could not send: ring buffer full, or drop notifications over the rate limit",
        );
        let lost = self.events_lost()?;
        let _ = writeln!(
            s,
            "podnet_events_lost_total{{reason=\"ring_full\"}} {}",
            lost.ring_full
        );
        let _ = writeln!(
            s,
            "podnet_events_lost_total{{reason=\"rate_limited\"}} {}",
            lost.rate_limited
        );
        Ok(s)
    }

    /// Events the datapath could not write (see [`crate::Events::lost`]).
    ///
    /// # Errors
    ///
    /// [`Error::Map`] when the counters cannot be read.
    pub fn events_lost(&self) -> Result<crate::LostEvents> {
        let mut buf = vec![0u8; 8 * self.ncpus()];
        let mut sum = [0u64; 2];
        for (slot, total) in sum.iter_mut().enumerate() {
            let key = u32::try_from(slot).unwrap_or(0).to_ne_bytes();
            if self.lookup(maps::EVENTS_LOST, &key, &mut buf)? {
                *total = buf
                    .chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        u64::from_ne_bytes(b)
                    })
                    .sum();
            }
        }
        Ok(crate::LostEvents {
            ring_full: sum[0],
            rate_limited: sum[1],
        })
    }
}

fn map_max_entries(fd: i32) -> Option<u32> {
    // SAFETY: a zeroed bpf_map_info is a valid out buffer of the size given.
    let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: info is valid for `len` bytes.
    let rc = unsafe {
        libbpf_sys::bpf_map_get_info_by_fd(
            fd,
            (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info.max_entries)
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }

    #[test]
    fn pressure_ratio() {
        let p = super::MapPressure {
            map: "m".into(),
            entries: 1,
            max_entries: 4,
        };
        assert!((p.ratio() - 0.25).abs() < 1e-9);
    }
}
