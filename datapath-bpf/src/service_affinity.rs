//! Session affinity of services (Kubernetes' `sessionAffinity: ClientIP`)
//! in Cilium's maps: the datapath remembers each client's backend in
//! `cilium_lb4_affinity` / `cilium_lb6_affinity`; the loader keeps
//! `cilium_lb_affinity_match`, one entry per active backend of a service with
//! affinity, so that a remembered backend that left the service (or stopped
//! taking new connections) is not chosen again.
//!
//! Layouts from cilium/cilium 1.17 `bpf/lib/common.h` and
//! `pkg/maps/lbmap/affinity.go` (facts only): `struct lb_affinity_match`
//! {`backend_id` u32, `rev_nat_id` u16 in network order, pad u16}, value one
//! byte; the frontend entry carries the timeout in seconds in the low 24 bits
//! of its `backend_id` word and `SVC_FLAG_AFFINITY` in its flags.

use crate::maps::Pod;

/// Longest session affinity timeout Kubernetes accepts
/// (`sessionAffinityConfig.clientIP.timeoutSeconds`, 1..=86400; its default
/// is 10800).
pub const MAX_AFFINITY_TIMEOUT: u32 = 86_400;

/// `SVC_FLAG_AFFINITY` of the frontend entry's flags.
pub(crate) const SVC_FLAG_AFFINITY: u8 = 1 << 4;

/// Cilium's `AFFINITY_TIMEOUT_MASK`: the timeout's bits in the frontend's
/// `backend_id` word (the upper 8 are the load-balancing algorithm in later
/// Cilium releases; 0 here).
pub(crate) const AFFINITY_TIMEOUT_MASK: u32 = (1 << 24) - 1;

/// `struct lb_affinity_match`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LbAffinityMatch {
    backend_id: u32,
    rev_nat_id: u16, // network order
    pad: u16,
}
impl Pod for LbAffinityMatch {}

const _: () = assert!(size_of::<LbAffinityMatch>() == 8);

/// The match key of backend `backend_id` of service `service`.
pub(crate) fn match_key(backend_id: u32, service: u16) -> Vec<u8> {
    LbAffinityMatch {
        backend_id,
        rev_nat_id: service.to_be(),
        pad: 0,
    }
    .as_bytes()
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn match_key_is_cilium_layout() {
        assert_eq!(
            match_key(0x0007_0102, 7),
            [0x02, 0x01, 0x07, 0x00, 0x00, 0x07, 0, 0],
            "backend id in host order (little endian here), service id in network order"
        );
    }
}
