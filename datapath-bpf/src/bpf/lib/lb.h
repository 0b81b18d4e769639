// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Service load balancing in Cilium's maps (cilium_lb{4,6}_services_v2,
 * cilium_lb{4,6}_backends_v3, cilium_lb{4,6}_reverse_nat; layouts in
 * common.h) and Cilium's conntrack entries for it (bpf/lib/lb.h lb4_local /
 * lb6_local, facts only): a new connection to a frontend gets a random
 * backend slot, remembered in a TUPLE_F_SERVICE entry (the packet's tuple
 * as it arrives, not reversed, carrying backend_id and rev_nat_index) so
 * its later packets go to the same backend; a backend that is gone or no
 * longer active is replaced by a new choice; a frontend without backends
 * drops with DROP_NO_SERVICE. The connection's own entry (after DNAT)
 * carries rev_nat_index, by which replies get their source translated back
 * to the frontend (lb_rev_nat).
 */
#ifndef PODNET_LB_H
#define PODNET_LB_H

#include "common.h"
#include "maps.h"
#include "conntrack.h"
#include "nat.h"
#include "eps.h"
#include "snat_config.h"
#include "lb_affinity.h"

/* What a translated connection carries on: its backend and the reverse
 * NAT index its CT entry stores (network order). */
struct lb_state {
	__u32 addr[4]; /* backend address (IPv4: addr[0]) */
	__be16 port; /* backend port */
	__be16 rev_nat_index;
	/* from-netdev: the backend is on another node (SNAT in snat.h). */
	__u8 remote;
};

union lb_key {
	struct lb4_key k4;
	struct lb6_key k6;
};

static __always_inline struct lb4_service *lb_lookup(bool v6, const union lb_key *k)
{
	if (v6)
		return bpf_map_lookup_elem(&cilium_lb6_services_v2, &k->k6);
	return bpf_map_lookup_elem(&cilium_lb4_services_v2, &k->k4);
}

/* The frontend entry (slot 0) of daddr:dport/proto, falling back to a
 * frontend for any protocol (proto 0), as Cilium's lookup does; `k` is left
 * as the key found, for the slot lookups. */
static __always_inline struct lb4_service *lb_lookup_service(bool v6, union lb_key *k,
							     const __u32 *daddr, __be16 dport,
							     __u8 proto)
{
	struct lb4_service *svc;

	__builtin_memset(k, 0, sizeof(*k));
	if (v6) {
		__builtin_memcpy(k->k6.address, daddr, 16);
		k->k6.dport = dport;
		k->k6.proto = proto;
	} else {
		k->k4.address = daddr[0];
		k->k4.dport = dport;
		k->k4.proto = proto;
	}
	svc = lb_lookup(v6, k);
	if (svc)
		return svc;
	if (v6)
		k->k6.proto = 0;
	else
		k->k4.proto = 0;
	return lb_lookup(v6, k);
}

/* Whether a backend in state `flags` may take a connection: a new one
 * only when active; an established one also while terminating (as the
 * pod finishes its connections), not in maintenance or quarantine. */
static __always_inline bool lb_backend_usable(__u8 flags, bool established)
{
	return flags == BE_STATE_ACTIVE || (established && flags == BE_STATE_TERMINATING);
}

/* The address and port of backend `id` into `st`, false when it is gone or
 * not usable (lb_backend_usable). */
static __always_inline bool lb_backend(bool v6, __u32 id, bool established, struct lb_state *st)
{
	if (v6) {
		struct lb6_backend *be = bpf_map_lookup_elem(&cilium_lb6_backends_v3, &id);

		if (!be || !lb_backend_usable(be->flags, established))
			return false;
		__builtin_memcpy(st->addr, be->address, 16);
		st->port = be->port;
		return true;
	}
	struct lb4_backend *be = bpf_map_lookup_elem(&cilium_lb4_backends_v3, &id);

	if (!be || !lb_backend_usable(be->flags, established))
		return false;
	st->addr[0] = be->address;
	st->port = be->port;
	return true;
}

/* A random backend slot of the service (slots 1..count hold its active
 * backends; the qcount slots after them the others, never chosen), its
 * backend into `st`: the backend id, 0 when the service has none. */
static __always_inline __u32 lb_select(bool v6, union lb_key *k, const struct lb4_service *svc,
				       struct lb_state *st)
{
	__u16 count = svc->count;
	struct lb4_service *slot;

	if (!count)
		return 0;
	if (v6)
		k->k6.backend_slot = (__u16)(bpf_get_prandom_u32() % count) + 1;
	else
		k->k4.backend_slot = (__u16)(bpf_get_prandom_u32() % count) + 1;
	slot = lb_lookup(v6, k);
	if (!slot || !slot->backend_id || !lb_backend(v6, slot->backend_id, false, st))
		return 0;
	return slot->backend_id;
}

/* The service entry lb_xlate creates, per CPU (one slot, used within one
 * call; looked up with events.h's read-only zero key): on the stack it
 * took from-netdev's NodePort step past the 512-byte combined stack once
 * session affinity's subprograms (lb_affinity.h) were called from it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ct_entry);
	__uint(max_entries, 1);
} podnet_lb_scratch SEC(".maps");

/* A packet without a CT entry for its tuple: when its destination is a
 * frontend, chooses (or finds again, through the TUPLE_F_SERVICE entry) the
 * backend and rewrites the destination to it. `external` (from-netdev):
 * only NodePort, external IP and LoadBalancer frontends, and only to a
 * backend that is a local pod (remote backends would need SNAT), else
 * nothing is done (with NodePort SNAT on, a remote backend is translated
 * too and st->remote set). 1 translated (`st` says where to), 0 no service, or
 * DROP_*. */
#define SVC_FLAGS_EXTERNAL (SVC_FLAG_NODEPORT | SVC_FLAG_EXTERNAL_IP | SVC_FLAG_LOADBALANCER)
static __always_inline int lb_xlate(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
				    const __u32 *daddr, __u8 nexthdr, const struct l4info *l4,
				    __u32 l4_off, bool external, struct lb_state *st)
{
	bool is_tcp = nexthdr == IPPROTO_TCP;
	union ct6_key skey; /* room for either family */
	struct lb4_service *svc;
	struct ct_entry *e = NULL;
	union lb_key k;
	__u32 id;
	int ret;

	if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP)
		return 0;
	ct_tuple_init(v6, &skey, saddr, daddr, nexthdr, l4, TUPLE_F_SERVICE);
	if (!external) {
		/* An established connection (the common case): its service
		 * entry names a backend that is still usable, so the frontend
		 * need not be looked up. A backend id belongs to one service
		 * (service.rs) and goes with it, so a deleted service or a
		 * removed backend fails lb_backend and takes the path below:
		 * no translation, or a new backend. */
		e = ct_find(v6, is_tcp, &skey);
		if (e && lb_backend(v6, (__u32)e->backend_id, true, st)) {
			__ct_lookup(e, ctx, l4->action, CT_SERVICE, is_tcp, l4->tcp_flags, NULL);
			st->rev_nat_index = e->rev_nat_index;
			goto rewrite;
		}
	}
	svc = lb_lookup_service(v6, &k, daddr, l4->pkt_dport, nexthdr);
	if (!svc || (external && !(svc->flags & SVC_FLAGS_EXTERNAL)))
		return 0;
	st->rev_nat_index = svc->rev_nat_index;

	if (external)
		e = ct_find(v6, is_tcp, &skey);
	if (e) {
		__ct_lookup(e, ctx, l4->action, CT_SERVICE, is_tcp, l4->tcp_flags, NULL);
		id = (__u32)e->backend_id;
		if (!lb_backend(v6, id, true, st)) {
			/* Its backend went away: a new one for the flow. */
			id = lb_select(v6, &k, svc, st);
			if (!id)
				return DROP_NO_SERVICE;
			e->backend_id = id;
			if (svc->flags & SVC_FLAG_AFFINITY)
				lb_affinity_update(v6, saddr, svc->rev_nat_index, id);
		}
		e->rev_nat_index = svc->rev_nat_index;
	} else {
		struct ct_entry *entry;

		id = 0;
		if (svc->flags & SVC_FLAG_AFFINITY) {
			/* The client's backend of its last connection, while it
			 * is still an active one (lb_affinity.h). */
			id = lb_affinity_backend(v6, saddr, svc->rev_nat_index,
						 svc->affinity_timeout);
			if (id && !lb_backend(v6, id, false, st))
				id = 0;
		}
		if (!id)
			id = lb_select(v6, &k, svc, st);
		if (!id)
			return DROP_NO_SERVICE;
		if (svc->flags & SVC_FLAG_AFFINITY)
			lb_affinity_update(v6, saddr, svc->rev_nat_index, id);
		entry = bpf_map_lookup_elem(&podnet_lb_scratch, (const void *)&events_keys[0]);
		if (!entry)
			return DROP_CT_CREATE_FAILED;
		__builtin_memset(entry, 0, sizeof(*entry));
		ct_fill_new(entry, ctx, is_tcp, CT_SERVICE, 0);
		entry->backend_id = id;
		entry->rev_nat_index = svc->rev_nat_index;
		if (ct_store_new(ctx, v6, is_tcp, &skey, entry, BPF_ANY, CT_EGRESS) < 0)
			return DROP_CT_CREATE_FAILED;
	}
	st->remote = 0;
	if (external) {
		struct endpoint_info *ep = lookup_ep_of(v6, st->addr);

		if (!ep || (ep->flags & ENDPOINT_F_HOST)) {
			/* A remote backend, when NodePort SNAT is on (snat.h). */
			if (!SNAT_CONFIG.nodeport_snat || !snat_enabled(v6))
				return 0;
			st->remote = 1;
		}
	}
rewrite:
	ret = nat_rewrite(ctx, v6, nexthdr, l4_off, true, daddr, st->addr, l4->pkt_dport,
			  st->port);
	return ret < 0 ? ret : 1;
}

/* The frontend of reverse NAT index `idx` (network order) into `addr` /
 * `port`; false when there is none. */
static __always_inline bool lb_rev_nat_target(bool v6, __u16 idx, __u32 *addr, __be16 *port)
{
	if (v6) {
		struct lb6_reverse_nat *r = bpf_map_lookup_elem(&cilium_lb6_reverse_nat, &idx);

		if (!r)
			return false;
		__builtin_memcpy(addr, r->address, 16);
		*port = r->port;
		return true;
	}
	struct lb4_reverse_nat *r = bpf_map_lookup_elem(&cilium_lb4_reverse_nat, &idx);

	if (!r)
		return false;
	addr[0] = r->address;
	*port = r->port;
	return true;
}

/* A reply of a translated connection (its CT entry `e` carries the
 * reverse NAT index): the source goes back to the frontend. 1 rewritten, 0
 * nothing to do, or DROP_*. Invalidates packet pointers when it rewrites. */
static __always_inline int lb_rev_nat(struct __sk_buff *ctx, bool v6, const struct ct_entry *e,
				      const __u32 *saddr, __u8 nexthdr, const struct l4info *l4,
				      __u32 l4_off)
{
	__u32 from[4], to[4] = {};
	__be16 port;
	int ret, i;

	if (!e->rev_nat_index || (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP))
		return 0;
	if (!v6) {
#pragma unroll
		for (i = 0; i < 4; i++)
			from[i] = i == 0 ? saddr[i] : 0;
	}
	if (!lb_rev_nat_target(v6, e->rev_nat_index, to, &port))
		return 0;
	/* The packet's source port is at tuple->dport (l4->tdport). IPv6:
	 * saddr itself (a copy, never in the packet: a smaller frame). */
	ret = nat_rewrite(ctx, v6, nexthdr, l4_off, false, v6 ? saddr : from, to, l4->tdport,
			  port);
	return ret < 0 ? ret : 1;
}

/* An ICMP error about a translated connection, sent by its backend to the
 * client (found by the flow's related entry, which carries the reverse NAT
 * index): the quoted packet is the client's, to the backend. The outer
 * source, when it is the backend, and the quoted destination address and
 * port go back to the frontend, with the ICMP checksum (ICMPv6: its pseudo
 * header too) and the quoted IPv4 header checksum updated. The quoted
 * TCP/UDP checksum is left as it is (the quote is usually truncated; Cilium
 * leaves it too). 1 rewritten, 0 nothing to do, or DROP_*. */
static __always_inline int lb_rev_nat_icmp(struct __sk_buff *ctx, bool v6,
					   const struct ct_entry *e, const __u32 *saddr,
					   __u32 l4_off)
{
	__u32 csum_off = l4_off + 2, in_l3 = l4_off + 8;
	__u32 in_daddr_off, in_l4;
	__u32 vip[4] = {}, be[4] = {}, outer[4] = {};
	__be16 vport, be_port;
	__u8 proto;
	int i;

	if (!e->rev_nat_index || !lb_rev_nat_target(v6, e->rev_nat_index, vip, &vport))
		return 0;
#pragma unroll
	for (i = 0; i < 4; i++)
		outer[i] = (v6 || i == 0) ? saddr[i] : 0;
	if (v6) {
		in_daddr_off = in_l3 + offsetof(struct ipv6hdr, daddr);
		in_l4 = in_l3 + sizeof(struct ipv6hdr);
		if (bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct ipv6hdr, nexthdr), &proto, 1) <
			    0 ||
		    bpf_skb_load_bytes(ctx, in_daddr_off, be, 16) < 0)
			return 0;
	} else {
		__u8 vihl;

		if (bpf_skb_load_bytes(ctx, in_l3, &vihl, 1) < 0 || (vihl & 0xf) < 5 ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct iphdr, protocol), &proto, 1) <
			    0)
			return 0;
		in_daddr_off = in_l3 + offsetof(struct iphdr, daddr);
		in_l4 = in_l3 + (vihl & 0xf) * 4;
		if (bpf_skb_load_bytes(ctx, in_daddr_off, be, 4) < 0)
			return 0;
	}
	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) ||
	    bpf_skb_load_bytes(ctx, in_l4 + 2, &be_port, 2) < 0)
		return 0;

	/* The outer source, when the backend sent the error. */
	if (v6 ? (outer[0] == be[0] && outer[1] == be[1] && outer[2] == be[2] &&
		  outer[3] == be[3]) :
		 outer[0] == be[0]) {
		if (v6) {
			__s64 d = bpf_csum_diff(be, 16, vip, 16, 0);

			if (d < 0 ||
			    bpf_l4_csum_replace(ctx, csum_off, 0, d, BPF_F_PSEUDO_HDR) < 0 ||
			    bpf_skb_store_bytes(ctx, ETH_HLEN + offsetof(struct ipv6hdr, saddr), vip,
						16, 0) < 0)
				return DROP_WRITE_ERROR;
		} else if (bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), be[0],
					       vip[0], 4) < 0 ||
			   bpf_skb_store_bytes(ctx, ETH_HLEN + offsetof(struct iphdr, saddr), vip,
					       4, 0) < 0) {
			return DROP_WRITE_ERROR;
		}
	}
	/* The quoted packet: its destination, and (IPv4) its header checksum,
	 * all inside the ICMP payload. */
	if (v6) {
		__s64 d = bpf_csum_diff(be, 16, vip, 16, 0);

		if (d < 0 || bpf_l4_csum_replace(ctx, csum_off, 0, d, 0) < 0)
			return DROP_WRITE_ERROR;
	} else {
		__u32 check_off = in_l3 + offsetof(struct iphdr, check);
		__u16 old_check, new_check;

		if (bpf_skb_load_bytes(ctx, check_off, &old_check, 2) < 0 ||
		    bpf_l3_csum_replace(ctx, check_off, be[0], vip[0], 4) < 0 ||
		    bpf_skb_load_bytes(ctx, check_off, &new_check, 2) < 0 ||
		    bpf_l4_csum_replace(ctx, csum_off, be[0], vip[0], 4) < 0 ||
		    bpf_l4_csum_replace(ctx, csum_off, old_check, new_check, 2) < 0)
			return DROP_WRITE_ERROR;
	}
	if (bpf_skb_store_bytes(ctx, in_daddr_off, vip, v6 ? 16 : 4, 0) < 0)
		return DROP_WRITE_ERROR;
	if (be_port != vport &&
	    (bpf_l4_csum_replace(ctx, csum_off, be_port, vport, 2) < 0 ||
	     bpf_skb_store_bytes(ctx, in_l4 + 2, &vport, 2, 0) < 0))
		return DROP_WRITE_ERROR;
	return 1;
}

#endif /* PODNET_LB_H */
