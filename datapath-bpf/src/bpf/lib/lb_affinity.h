// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Session affinity (Kubernetes' sessionAffinity: ClientIP) in Cilium's
 * maps: cilium_lb4_affinity / cilium_lb6_affinity (LRU hash: client address
 * and service id -> the client's backend and when it was last chosen) and
 * cilium_lb_affinity_match (hash: backend id and service id, one entry per
 * active backend of a service with affinity, written by the loader; a
 * client's backend is valid only while its match entry is there).
 *
 * Facts taken from Cilium (bpf/lib/common.h and bpf/lib/lb.h of
 * cilium/cilium 1.17, read, not copied): the layouts (lb4_affinity_key
 * 16 bytes packed: the client, a union of its address and a netns cookie,
 * 8 bytes; rev_nat_id; the netns_cookie bit; pads; lb6_affinity_key 24
 * bytes; lb_affinity_val: last_used u64, backend_id, pad; lb_affinity_match:
 * backend_id, rev_nat_id, pad), SVC_FLAG_AFFINITY, the frontend entry's
 * timeout in seconds in the low 24 bits of its backend_id word
 * (AFFINITY_TIMEOUT_MASK), and __lb4_affinity_backend_id: an entry is
 * valid while last_used + timeout > now and its match entry exists, else
 * it is deleted.
 *
 * When the entry is written: Cilium's lb4_local writes it at every packet
 * of a service connection; here at a connection's first packet (and when
 * a connection's backend is replaced), as kube-proxy's iptables mode does
 * (`-m recent --set` in the KUBE-SEP chain, which sees first packets only):
 * established packets pay nothing for affinity. The timeout then runs
 * from the client's last new connection.
 */
#ifndef PODNET_LB_AFFINITY_H
#define PODNET_LB_AFFINITY_H

#include "common.h"
#include "maps.h"
#include "clock.h"
#include "events.h"

#define LB_AFFINITY_TIMEOUT_MASK 0xffffff

union lb4_affinity_client_id {
	__u32 client_ip;
	__u64 client_cookie;
} __attribute__((packed));

struct lb4_affinity_key {
	union lb4_affinity_client_id client_id;
	__be16 rev_nat_id;
	__u8 netns_cookie; /* bit 0: client_id is a netns cookie (socket LB) */
	__u8 pad1;
	__u32 pad2;
} __attribute__((packed));

union lb6_affinity_client_id {
	__u32 client_ip[4];
	__u64 client_cookie;
} __attribute__((packed));

struct lb6_affinity_key {
	union lb6_affinity_client_id client_id;
	__be16 rev_nat_id;
	__u8 netns_cookie;
	__u8 pad1;
	__u32 pad2;
} __attribute__((packed));

struct lb_affinity_val {
	__u64 last_used;
	__u32 backend_id;
	__u32 pad;
} __attribute__((packed));

struct lb_affinity_match {
	__u32 backend_id;
	__be16 rev_nat_id;
	__u16 pad;
} __attribute__((packed));

_Static_assert(sizeof(struct lb4_affinity_key) == 16, "lb4_affinity_key");
_Static_assert(sizeof(struct lb6_affinity_key) == 24, "lb6_affinity_key");
_Static_assert(sizeof(struct lb_affinity_val) == 16, "lb_affinity_val");
_Static_assert(sizeof(struct lb_affinity_match) == 8, "lb_affinity_match");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb6_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb6_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_affinity_match);
	__type(value, __u8);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb_affinity_match SEC(".maps");

union lb_affinity_key {
	struct lb4_affinity_key k4;
	struct lb6_affinity_key k6;
};

/* The subprograms' keys and values, per CPU (one slot, used within one
 * call): on their stack they took from-container's combined stack past 512
 * bytes (its own frame is 480). Looked up with events.h's read-only zero
 * key, so the subprograms need no stack of their own. */
struct lb_affinity_scratch {
	union lb_affinity_key k;
	struct lb_affinity_val v;
	struct lb_affinity_match m;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_affinity_scratch);
	__uint(max_entries, 1);
} podnet_affinity_scratch SEC(".maps");

/* The conntrack clock's seconds (clock.h), read without its per-CPU
 * cache, whose key would take stack: only new connections get here. */
static __always_inline __u32 lb_affinity_now(void)
{
	return (__u32)ns_to_sec(bpf_ktime_get_coarse_ns());
}

static __always_inline struct lb_affinity_scratch *lb_affinity_scratch(bool v6, const __u32 *client,
								      __be16 rev_nat_id)
{
	struct lb_affinity_scratch *sc =
		bpf_map_lookup_elem(&podnet_affinity_scratch, (const void *)&events_keys[0]);

	if (!sc)
		return NULL;
	__builtin_memset(&sc->k, 0, sizeof(sc->k));
	if (v6) {
		__builtin_memcpy(sc->k.k6.client_id.client_ip, client, 16);
		sc->k.k6.rev_nat_id = rev_nat_id;
	} else {
		sc->k.k4.client_id.client_ip = client[0];
		sc->k.k4.rev_nat_id = rev_nat_id;
	}
	return sc;
}

/* The backend `client` had for the service of `rev_nat_id` whose timeout is
 * `timeout` seconds; 0 when it has none (an expired or no longer valid
 * entry is deleted). A subprogram: only new connections to a service with
 * affinity run it. */
static __noinline __u32 lb_affinity_backend(bool v6, const __u32 *client, __be16 rev_nat_id,
					    __u32 timeout)
{
	struct lb_affinity_scratch *sc = lb_affinity_scratch(v6, client, rev_nat_id);
	struct lb_affinity_val *val;

	if (!sc)
		return 0;
	val = v6 ? bpf_map_lookup_elem(&cilium_lb6_affinity, &sc->k.k6) :
		   bpf_map_lookup_elem(&cilium_lb4_affinity, &sc->k.k4);
	if (!val)
		return 0;
	sc->m.backend_id = val->backend_id;
	sc->m.rev_nat_id = rev_nat_id;
	sc->m.pad = 0;
	if (val->last_used + (timeout & LB_AFFINITY_TIMEOUT_MASK) <= lb_affinity_now() ||
	    !bpf_map_lookup_elem(&cilium_lb_affinity_match, &sc->m)) {
		if (v6)
			bpf_map_delete_elem(&cilium_lb6_affinity, &sc->k.k6);
		else
			bpf_map_delete_elem(&cilium_lb4_affinity, &sc->k.k4);
		return 0;
	}
	return sc->m.backend_id;
}

/* Remembers `backend_id` as `client`'s backend for the service. */
static __noinline void lb_affinity_update(bool v6, const __u32 *client, __be16 rev_nat_id,
					  __u32 backend_id)
{
	struct lb_affinity_scratch *sc = lb_affinity_scratch(v6, client, rev_nat_id);

	if (!sc)
		return;
	sc->v.last_used = lb_affinity_now();
	sc->v.backend_id = backend_id;
	sc->v.pad = 0;
	if (v6)
		bpf_map_update_elem(&cilium_lb6_affinity, &sc->k.k6, &sc->v, BPF_ANY);
	else
		bpf_map_update_elem(&cilium_lb4_affinity, &sc->k.k4, &sc->v, BPF_ANY);
}

#endif /* PODNET_LB_AFFINITY_H */
