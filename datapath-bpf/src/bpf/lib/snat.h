// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * BPF masquerade (SNAT) in Cilium's NAT maps, cilium_snat_v4_external and
 * cilium_snat_v6_external, and the SNAT half of NodePort to a remote
 * backend.
 *
 * Facts taken from Cilium 1.17 (bpf/lib/nat.h, pkg/maps/nat/; read, not
 * copied):
 *  - struct nat_entry {created, needs_ct, pad1, pad2} (u64 each), then the
 *    translated address and port: 40 bytes (IPv4), 56 (IPv6); LRU hash maps
 *    keyed by ipv4_ct_tuple / ipv6_ct_tuple.
 *  - NAT tuples are the packet's own (sport is the source port, unlike
 *    conntrack's swapped ports); flags NAT_DIR_EGRESS = TUPLE_F_OUT for the
 *    forward mapping {daddr = peer, saddr = pod}, NAT_DIR_INGRESS =
 *    TUPLE_F_IN for the reverse one {daddr = node, saddr = peer, dport =
 *    allocated port} whose value is the pod's address and port.
 *  - ICMP echo: the identifier is the "port" (request: sport = id, dport =
 *    0; reply: sport = 0, dport = id).
 *  - snat_v4_new_mapping: the reverse entry is created first (BPF_NOEXIST),
 *    keeping the source port when it is in range, else random ports,
 *    SNAT_COLLISION_RETRIES (128) tries; then the forward entry, the reverse
 *    one rolled back when that fails; failure is DROP_NAT_NO_MAPPING (-167).
 *  - snat_v4_rev_nat_can_skip: a reply whose destination port is outside
 *    the port range is none of ours.
 *  - Defaults NODEPORT_PORT_MIN_NAT 32768, NODEPORT_PORT_MAX_NAT 65535.
 *
 * Ownership: a mapping is only created for a flow whose CT_EGRESS entry
 * exists (the pod's connection, created by from-container; for NodePort
 * the entry this file creates). Cilium's agent deletes the pair with that
 * entry (DeleteMapping4/6: the CT key with its addresses swapped is the
 * forward NAT key), and its orphan purge keeps exactly the pairs whose
 * entry exists. Pod mappings carry needs_ct 0, as Cilium's do for local
 * endpoints.
 */
#ifndef PODNET_SNAT_H
#define PODNET_SNAT_H

#include "common.h"
#include "keys.h"
#include "maps.h"
#include "clock.h"
#include "metrics.h"
#include "eps.h"
#include "conntrack.h"
#include "nat.h"
#include "lb.h"
#include "snat_config.h"
#include "forward.h"
#include "frag.h"

#define DROP_NAT_NO_MAPPING -167
#define DROP_NAT_UNSUPP_PROTO -168

#define SNAT_COLLISION_RETRIES 128

/* Identities of other nodes (Cilium's REMOTE_NODE_ID, KUBE_APISERVER_NODE_ID):
 * no masquerade towards them. */
#define IDENTITY_REMOTE_NODE 6
#define IDENTITY_KUBE_APISERVER 7

struct nat_entry {
	__u64 created;
	__u64 needs_ct;
	__u64 pad1;
	__u64 pad2;
};

struct ipv4_nat_entry {
	struct nat_entry common;
	__be32 to_addr; /* to_saddr (forward) / to_daddr (reverse) */
	__be16 to_port;
	__u16 pad;
};

struct ipv6_nat_entry {
	struct nat_entry common;
	__u32 to_addr[4];
	__be16 to_port;
	__u16 pad[3];
};

_Static_assert(sizeof(struct ipv4_nat_entry) == 40, "ipv4_nat_entry");

/* Fragments: snat_frag.h, included at the end (it uses this file's NAT
 * lookups); what its steps say. */
#define SNAT_FRAG_EGRESS (1ULL << 32)
#define SNAT_FRAG_FIRST (1ULL << 40)
#define SNAT_FRAG_DONE (1ULL << 41)
#define SNAT_FRAG_MORE (1ULL << 42)
__s64 snat_frag4(struct __sk_buff *ctx, __u64 info);
__s64 snat_frag6(struct __sk_buff *ctx, __u64 info);
__s64 snat_frag_go(struct __sk_buff *ctx);
int snat_frag_xlate(struct __sk_buff *ctx);

static __always_inline __u8 snat_frag_proto(__s64 r)
{
	return (r >> 32) & 0xff;
}

_Static_assert(sizeof(struct ipv6_nat_entry) == 56, "ipv6_nat_entry");

/* The masquerade address of an interface (ifindex): the node address SNAT
 * translates to on it. 0 / :: for a family it does not masquerade. */
struct snat_ifaddr {
	__be32 v4;
	__u32 v6[4];
};

/* Sizes set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ipv4_nat_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_snat_v4_external SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv6_ct_tuple);
	__type(value, struct ipv6_nat_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_snat_v6_external SEC(".maps");

/* Masquerade interfaces: ifindex -> node address (written by the loader
 * when it attaches to-netdev). Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct snat_ifaddr);
	__uint(max_entries, 256);
} podnet_snat_addrs SEC(".maps");

/* A NAT key or value of either family (`v6` a constant at every call). */
static __always_inline void *snat_find(bool v6, const void *key)
{
	if (v6)
		return bpf_map_lookup_elem(&cilium_snat_v6_external, key);
	return bpf_map_lookup_elem(&cilium_snat_v4_external, key);
}

static __always_inline int snat_create(bool v6, const void *key, const void *val)
{
	if (v6)
		return bpf_map_update_elem(&cilium_snat_v6_external, key, val, BPF_NOEXIST);
	return bpf_map_update_elem(&cilium_snat_v4_external, key, val, BPF_NOEXIST);
}

static __always_inline void snat_remove(bool v6, const void *key)
{
	if (v6)
		bpf_map_delete_elem(&cilium_snat_v6_external, key);
	else
		bpf_map_delete_elem(&cilium_snat_v4_external, key);
}

/* The value's address and port (same offsets in both families' values up
 * to the address; the port follows it). */
static __always_inline const __u32 *snat_to_addr(const void *val)
{
	return &((const struct ipv4_nat_entry *)val)->to_addr;
}

static __always_inline __be16 snat_to_port(bool v6, const void *val)
{
	return v6 ? ((const struct ipv6_nat_entry *)val)->to_port :
		    ((const struct ipv4_nat_entry *)val)->to_port;
}

/* A NAT tuple {daddr, saddr, dport, sport, nexthdr, flags} of either family
 * (union ct6_key has room for both), written in words (keys.h). */
static __always_inline void snat_tuple(bool v6, union ct6_key *k, const __u32 *daddr,
				       const __u32 *saddr, __be16 dport, __be16 sport,
				       __u8 nexthdr, __u8 flags)
{
	__u64 tail = tuple_tail(dport, sport, nexthdr, flags);

	if (v6) {
		k->w[0] = key_word(daddr[0], daddr[1]);
		k->w[1] = key_word(daddr[2], daddr[3]);
		k->w[2] = key_word(saddr[0], saddr[1]);
		k->w[3] = key_word(saddr[2], saddr[3]);
		k->w[4] = tail;
	} else {
		k->w[0] = key_word(daddr[0], saddr[0]);
		k->w[1] = tail;
	}
}

/* Whether `daddr` is in one of the native-routing CIDRs (no masquerade). */
static __always_inline bool snat_dst_native(bool v6, const __u32 *daddr)
{
	int i;

#pragma unroll
	for (i = 0; i < SNAT_MAX_CIDRS; i++) {
		if (v6) {
			const volatile __u32 *c = SNAT_CONFIG.cidr6[i];

			if (i < SNAT_CONFIG.n_cidr6 && (daddr[0] & c[4]) == c[0] &&
			    (daddr[1] & c[5]) == c[1] && (daddr[2] & c[6]) == c[2] &&
			    (daddr[3] & c[7]) == c[3])
				return true;
		} else if (i < SNAT_CONFIG.n_cidr4 &&
			   (daddr[0] & SNAT_CONFIG.cidr4[i][1]) == SNAT_CONFIG.cidr4[i][0]) {
			return true;
		}
	}
	return false;
}

/* Cilium's __snat_clamp_port_range: `val` (16 random bits) scaled into
 * [min, max]. */
static __always_inline __u16 snat_clamp_port(__u16 val)
{
	__u32 n = SNAT_CONFIG.max_port - SNAT_CONFIG.min_port + 1;

	return SNAT_CONFIG.min_port + (((__u32)val * n) >> 16);
}

static __always_inline bool snat_port_in_range(__u16 port)
{
	return port >= SNAT_CONFIG.min_port && port <= SNAT_CONFIG.max_port;
}

/* The NAT "ports" of the L4 header at `l4_off`, in packet order: TCP/UDP
 * ports; ICMP echo request: (id, 0); echo reply: (0, id). *type: the ICMP
 * type (0 for TCP/UDP). 0, 1 (not a protocol or type NAT handles), or
 * DROP_*. */
static __always_inline int snat_ports(struct __sk_buff *ctx, bool v6, __u8 nexthdr, __u32 l4_off,
				      __u32 l3_end, __be16 *sport, __be16 *dport, __u8 *type)
{
	/* The first 8 bytes of the L4 header, read as one word (byte-array
	 * copies out of an aligned buffer become pointer ORs the verifier
	 * refuses). */
	union {
		__u64 w;
		__be16 p[4]; /* TCP/UDP: sport, dport; ICMP: type+code, csum, id, seq */
		__u8 b[8];
	} h;

	*type = 0;
	if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP &&
	    nexthdr != (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP))
		return 1;
	if (l4_off + 8 > l3_end)
		return DROP_CT_INVALID_HDR;
	asm volatile("" : "+r"(ctx)); /* see reload_l3 */
	{
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;

		/* Straight from the linear data when it is there. */
		if (l4_off <= ETH_HLEN + 60 && data + l4_off + 8 <= data_end)
			h.w = *(__u64 *)(data + l4_off);
		else if (bpf_skb_load_bytes(ctx, l4_off, &h.w, 8) < 0)
			return DROP_CT_INVALID_HDR;
	}
	if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) {
		*sport = h.p[0];
		*dport = h.p[1];
		return 0;
	}
	*type = h.b[0];
	if (h.b[0] == (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO)) {
		*sport = h.p[2];
		*dport = 0;
		return 0;
	}
	if (h.b[0] == (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY)) {
		*sport = 0;
		*dport = h.p[2];
		return 0;
	}
	return 1;
}

static __always_inline bool icmp_is_error(bool v6, __u8 type)
{
	if (v6)
		return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
		       type == ICMPV6_TIME_EXCEED || type == ICMPV6_PARAMPROB;
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/* nat_rewrite for IPv4 TCP/UDP with one helper call less per address: the
 * L4 checksum through bpf_l4_csum_replace (pseudo header, skb->csum), the
 * address and the IPv4 header checksum written directly, the checksum
 * updated incrementally (RFC 1624). Their two changes cancel in a one's
 * complement sum, so skb->csum (CHECKSUM_COMPLETE) stays right. */
static __always_inline int snat_rewrite4(struct __sk_buff *ctx, __u8 nexthdr, __u32 l4_off,
					 bool dst, __be32 from, __be32 to, __be16 from_port,
					 __be16 to_port)
{
	__u32 csum_off = l4_csum_off(nexthdr, l4_off);
	__u64 mangled0 = nexthdr == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	struct iphdr *ip4;
	__u32 sum;

	if (bpf_l4_csum_replace(ctx, csum_off, from, to, BPF_F_PSEUDO_HDR | mangled0 | 4) < 0)
		return DROP_WRITE_ERROR;
	asm volatile("" : "+r"(ctx));
	ip4 = (void *)(long)ctx->data + ETH_HLEN;
	if ((void *)(ip4 + 1) > (void *)(long)ctx->data_end)
		return DROP_WRITE_ERROR;
	sum = (__u16)~ip4->check;
	sum += (__u16)~from + (__u16)(~from >> 16) + (__u16)to + (__u16)(to >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip4->check = (__sum16)~sum;
	if (dst)
		ip4->daddr = to;
	else
		ip4->saddr = to;
	if (from_port != to_port &&
	    (bpf_l4_csum_replace(ctx, csum_off, from_port, to_port, mangled0 | 2) < 0 ||
	     bpf_skb_store_bytes(ctx, l4_off + (dst ? 2 : 0), &to_port, 2, 0) < 0))
		return DROP_WRITE_ERROR;
	return 0;
}

/* Rewrites the source (or, `dst`, destination) address and port of the
 * packet's TCP, UDP or ICMP echo header from `from`:`from_port` to
 * `to`:`to_port`, with the IPv4 header checksum and the L4 checksum
 * (ICMPv6: its pseudo header; ICMP has none; the echo identifier is the
 * port). Invalidates packet pointers. */
static __always_inline int snat_rewrite(struct __sk_buff *ctx, bool v6, __u8 nexthdr,
					__u32 l4_off, bool dst, const __u32 *from, const __u32 *to,
					__be16 from_port, __be16 to_port)
{
	__u32 csum_off = l4_off + 2, addr_off;
	__u32 old[4], new[4];
	int i;

	if (!l4_off) /* a fragment without L4 header: only its address */
		return nat_rewrite(ctx, v6, nexthdr, 0, dst, from, to, 0, 0);
	if (!v6 && (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP))
		return snat_rewrite4(ctx, nexthdr, l4_off, dst, from[0], to[0], from_port, to_port);
	if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP)
		return nat_rewrite(ctx, v6, nexthdr, l4_off, dst, from, to, from_port, to_port);
#pragma unroll
	for (i = 0; i < 4; i++) {
		old[i] = (v6 || i == 0) ? from[i] : 0;
		new[i] = (v6 || i == 0) ? to[i] : 0;
	}
	if (v6) {
		__s64 diff = bpf_csum_diff(old, 16, new, 16, 0);

		addr_off = ETH_HLEN + (dst ? offsetof(struct ipv6hdr, daddr) :
					     offsetof(struct ipv6hdr, saddr));
		if (diff < 0 ||
		    bpf_l4_csum_replace(ctx, csum_off, 0, diff, BPF_F_PSEUDO_HDR) < 0 ||
		    bpf_skb_store_bytes(ctx, addr_off, new, 16, 0) < 0)
			return DROP_WRITE_ERROR;
	} else {
		addr_off = ETH_HLEN + (dst ? offsetof(struct iphdr, daddr) :
					     offsetof(struct iphdr, saddr));
		if (bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), old[0],
					new[0], 4) < 0 ||
		    bpf_skb_store_bytes(ctx, addr_off, new, 4, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (from_port != to_port &&
	    (bpf_l4_csum_replace(ctx, csum_off, from_port, to_port, 2) < 0 ||
	     bpf_skb_store_bytes(ctx, l4_off + 4, &to_port, 2, 0) < 0))
		return DROP_WRITE_ERROR;
	return 0;
}

/* The masquerade address of the interface the packet is on, NULL when it
 * has none for the family. */
static __always_inline const __u32 *snat_ifaddr_of(__u32 ifindex, bool v6)
{
	struct snat_ifaddr *a = bpf_map_lookup_elem(&podnet_snat_addrs, &ifindex);

	if (!a)
		return NULL;
	if (v6)
		return (a->v6[0] | a->v6[1] | a->v6[2] | a->v6[3]) ? a->v6 : NULL;
	return a->v4 ? &a->v4 : NULL;
}

static __always_inline const __u32 *snat_ifaddr(struct __sk_buff *ctx, bool v6)
{
	return snat_ifaddr_of(ctx->ifindex, v6);
}

/* The interface the FIB sends `daddr` out of (0: none), for the address
 * NodePort SNAT translates to (Cilium: the node address of the device
 * towards the backend). */
static __always_inline __u32 snat_fib_oif(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					  const __u32 *daddr, __u8 nexthdr)
{
	struct bpf_fib_lookup fib = {};
	int ret;

	fib.l4_protocol = nexthdr;
	fib.ifindex = ctx->ingress_ifindex;
	if (v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, daddr, 16);
	} else {
		fib.family = AF_INET;
		fib.ipv4_src = saddr[0];
		fib.ipv4_dst = daddr[0];
	}
	ret = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	return (ret == BPF_FIB_LKUP_RET_SUCCESS || ret == BPF_FIB_LKUP_RET_NO_NEIGH) ? fib.ifindex :
										     0;
}

/* A translated packet that now carries a node address as its source sent
 * on from from-netdev: the stack would drop it as a martian (a local
 * source arriving from outside), so it goes out with the FIB's interface
 * and neighbour (fib_forward). */
static __always_inline int snat_forward(struct __sk_buff *ctx, bool v6, __u8 nexthdr)
{
	__u32 s[4] = {}, d[4] = {};
	struct ethhdr *eth;
	void *data, *data_end, *l3;

	asm volatile("" : "+r"(ctx));
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN + (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) > data_end)
		return drop(ctx, DROP_INVALID, METRIC_INGRESS);
	eth = data;
	l3 = data + ETH_HLEN;
	if (v6) {
		__builtin_memcpy(s, &((struct ipv6hdr *)l3)->saddr, 16);
		__builtin_memcpy(d, &((struct ipv6hdr *)l3)->daddr, 16);
	} else {
		s[0] = ((struct iphdr *)l3)->saddr;
		d[0] = ((struct iphdr *)l3)->daddr;
	}
	if (l3_ttl(v6, l3) <= 1)
		return TC_ACT_OK;
	return fib_forward(ctx, v6, l3, eth, s, d, nexthdr);
}

/* Scratch room for snat_new_mapping's two entries (per CPU, one slot): on
 * the stack they made NodePort's SNAT step too large for from-netdev's
 * 512-byte combined stack. Only a new mapping touches it. */
struct snat_scratch {
	struct ipv6_nat_entry r, o; /* room for either family */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct snat_scratch);
	__uint(max_entries, 1);
} podnet_snat_scratch SEC(".maps");

/* A new mapping for the flow of forward NAT tuple `otuple` (source
 * `saddr`:`sport`, peer `daddr`:`dport`) to `node`: the reverse entry first,
 * on the source port when it is in range and free, else on random ports;
 * then the forward entry. *port: the port allocated. 0 or
 * DROP_NAT_NO_MAPPING. */
static __always_inline int snat_new_mapping(bool v6, const union ct6_key *otuple,
					    const __u32 *saddr, const __u32 *daddr,
					    __be16 sport, __be16 dport, __u8 nexthdr,
					    const __u32 *node, __be16 *port, __u64 needs_ct)
{
	__u32 zero = 0;
	struct snat_scratch *sc = bpf_map_lookup_elem(&podnet_snat_scratch, &zero);
	union ct6_key rtuple;
	__u16 p = bpf_ntohs(sport);
	bool free = false;
	int i;

	if (!sc)
		return DROP_NAT_NO_MAPPING;
	__builtin_memset(sc, 0, sizeof(*sc));
	sc->r.common.created = mono_now();
	sc->r.common.needs_ct = needs_ct;
	sc->o.common = sc->r.common;
	if (v6) {
		__builtin_memcpy(sc->r.to_addr, saddr, 16);
		__builtin_memcpy(sc->o.to_addr, node, 16);
		sc->r.to_port = sport;
	} else {
		((struct ipv4_nat_entry *)&sc->r)->to_addr = saddr[0];
		((struct ipv4_nat_entry *)&sc->r)->to_port = sport;
		((struct ipv4_nat_entry *)&sc->o)->to_addr = node[0];
	}
	if (!snat_port_in_range(p))
		p = snat_clamp_port((__u16)bpf_get_prandom_u32());
	for (i = 0; i < SNAT_COLLISION_RETRIES; i++) {
		snat_tuple(v6, &rtuple, node, daddr, bpf_htons(p), dport, nexthdr, TUPLE_F_IN);
		if (snat_create(v6, &rtuple, &sc->r) == 0) {
			free = true;
			break;
		}
		p = snat_clamp_port((__u16)bpf_get_prandom_u32());
	}
	if (!free)
		return DROP_NAT_NO_MAPPING;
	*port = bpf_htons(p);
	if (v6)
		sc->o.to_port = *port;
	else
		((struct ipv4_nat_entry *)&sc->o)->to_port = *port;
	if (snat_create(v6, otuple, &sc->o) < 0) {
		snat_remove(v6, &rtuple);
		return DROP_NAT_NO_MAPPING;
	}
	return 0;
}

/* The forward mapping of a flow from `saddr`:`sport` to `daddr`:`dport`:
 * found, or created (to the address `node`, when given; else the
 * interface's) when `create`. *to / *to_port: where the source goes. 1
 * translate, 0 nothing to do, or DROP_*. */
static __always_inline int snat_mapping(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					const __u32 *daddr, __be16 sport, __be16 dport,
					__u8 nexthdr, bool create, const __u32 *node, __u32 *to,
					__be16 *to_port)
{
	union ct6_key otuple;
	void *state;
	int ret;

	snat_tuple(v6, &otuple, daddr, saddr, dport, sport, nexthdr, TUPLE_F_OUT);
	state = snat_find(v6, &otuple);
	if (state) {
		__builtin_memcpy(to, snat_to_addr(state), v6 ? 16 : 4);
		*to_port = snat_to_port(v6, state);
		return 1;
	}
	if (!create)
		return 0;
	if (!node) {
		node = snat_ifaddr(ctx, v6);
		if (!node)
			return 0;
	}
	ret = snat_new_mapping(v6, &otuple, saddr, daddr, sport, dport, nexthdr, node, to_port,
			       0);
	if (ret < 0)
		return ret;
	__builtin_memcpy(to, node, v6 ? 16 : 4);
	return 1;
}

/* The CT_EGRESS entry of a flow from `saddr`:`sport` to `daddr`:`dport`
 * (the key from-container stores: the forward NAT tuple with its
 * addresses swapped). */
static __always_inline struct ct_entry *snat_owner(bool v6, const __u32 *saddr,
						   const __u32 *daddr, __be16 sport,
						   __be16 dport, __u8 nexthdr)
{
	union ct6_key k;

	snat_tuple(v6, &k, saddr, daddr, dport, sport, nexthdr, TUPLE_F_OUT);
	return ct_find(v6, nexthdr == IPPROTO_TCP, &k);
}

/* to-netdev: a local pod's packet to `daddr` outside the native-routing
 * CIDRs, leaving through a masquerade interface, gets its source
 * translated to the node address (a new mapping when its connection has a
 * CT_EGRESS entry). `frag`: a fragment (IPv6: `l4_off` is its fragment
 * header), whose later ones take the first one's mapping (snat_frag.h). 0
 * or DROP_*. */
static __always_inline int snat_egress(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
				       const __u32 *daddr, __u8 nexthdr, __u32 l4_off,
				       __u32 l3_end, bool frag)
{
	__be16 sport = 0, dport = 0, to_port;
	struct endpoint_info *sep;
	__u32 to[4] = {};
	__u32 identity;
	__u8 type;
	__s64 fr;
	int ret;

	if (snat_dst_native(v6, daddr))
		return 0;
	if (frag) {
		/* Only a local pod's fragments are the masquerade's. */
		sep = lookup_ep_of(v6, saddr);
		if (!sep || (sep->flags & ENDPOINT_F_HOST))
			return 0;
		fr = v6 ? snat_frag6(ctx, SNAT_FRAG_EGRESS | l3_end << 16 | l4_off) :
			  snat_frag4(ctx, SNAT_FRAG_EGRESS | l3_end << 16 | l4_off);
		if (fr == SNAT_FRAG_MORE)
			fr = snat_frag_go(ctx);
		if (fr < 0)
			return (int)fr;
		/* A later fragment: its mapping's address, if any (it never
		 * makes one). */
		if (fr & SNAT_FRAG_DONE)
			return snat_frag_xlate(ctx);
		if (!(fr & SNAT_FRAG_FIRST))
			return 0;
		nexthdr = snat_frag_proto(fr);
		if (v6)
			l4_off += sizeof(struct frag6_hdr);
	}
	ret = snat_ports(ctx, v6, nexthdr, l4_off, l3_end, &sport, &dport, &type);
	if (ret)
		return ret > 0 ? 0 : ret;
	/* An echo reply answers a ping to the pod: not masqueraded. */
	if (nexthdr == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) &&
	    type == (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY))
		return 0;
	ret = snat_mapping(ctx, v6, saddr, daddr, sport, dport, nexthdr, false, NULL, to,
			   &to_port);
	if (ret == 0) {
		/* A new flow: only a local pod's own connection, not to
		 * another node. */
		sep = lookup_ep_of(v6, saddr);
		if (!sep || (sep->flags & ENDPOINT_F_HOST))
			return 0;
		identity = ipcache_identity_of(v6, daddr);
		if (identity == IDENTITY_REMOTE_NODE || identity == IDENTITY_KUBE_APISERVER)
			return 0;
		if (!snat_owner(v6, saddr, daddr, sport, dport, nexthdr))
			return 0;
		ret = snat_mapping(ctx, v6, saddr, daddr, sport, dport, nexthdr, true, NULL, to,
				   &to_port);
	}
	if (ret <= 0)
		return ret;
	return snat_rewrite(ctx, v6, nexthdr, l4_off, false, saddr, to, sport, to_port);
}

/* An ICMP error at from-netdev quoting a packet we translated (node
 * address:port to a peer): the quoted source, its port and (IPv4) header
 * checksum, and the outer destination go back to the pod, with the ICMP
 * checksum (ICMPv6: its pseudo header too). The quoted TCP/UDP checksum
 * stays, as Cilium leaves it. 1 rewritten, 0 not ours, or DROP_*. */
static __always_inline int snat_rev_icmp_error(struct __sk_buff *ctx, bool v6,
					       const __u32 *daddr, __u32 l4_off, __u32 l3_end)
{
	__u32 csum_off = l4_off + 2, in_l3 = l4_off + 8;
	__u32 in_saddr[4] = {}, in_daddr[4] = {};
	__u32 in_saddr_off, in_l4, port_off;
	__be16 in_ports[2], to_port;
	const __u32 *to;
	union ct6_key k;
	__u8 proto, type;
	void *state;

	if (v6) {
		if (in_l3 + sizeof(struct ipv6hdr) + 8 > l3_end ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct ipv6hdr, nexthdr), &proto, 1) <
			    0 ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct ipv6hdr, saddr), in_saddr, 16) <
			    0 ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct ipv6hdr, daddr), in_daddr, 16) <
			    0)
			return 0;
		in_saddr_off = in_l3 + offsetof(struct ipv6hdr, saddr);
		in_l4 = in_l3 + sizeof(struct ipv6hdr);
	} else {
		__u8 vihl;

		if (bpf_skb_load_bytes(ctx, in_l3, &vihl, 1) < 0 || (vihl & 0xf) < 5 ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct iphdr, protocol), &proto, 1) <
			    0 ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct iphdr, saddr), in_saddr, 4) <
			    0 ||
		    bpf_skb_load_bytes(ctx, in_l3 + offsetof(struct iphdr, daddr), in_daddr, 4) < 0)
			return 0;
		in_saddr_off = in_l3 + offsetof(struct iphdr, saddr);
		in_l4 = in_l3 + (vihl & 0xf) * 4;
	}
	/* The quote was sent by the node address: it must be the outer
	 * destination. */
	if (v6 ? (in_saddr[0] != daddr[0] || in_saddr[1] != daddr[1] ||
		  in_saddr[2] != daddr[2] || in_saddr[3] != daddr[3]) :
		 in_saddr[0] != daddr[0])
		return 0;
	if (bpf_skb_load_bytes(ctx, in_l4, in_ports, 4) < 0)
		return 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		port_off = in_l4;
		/* The reverse tuple of the quoted packet. */
		snat_tuple(v6, &k, in_saddr, in_daddr, in_ports[0], in_ports[1], proto,
			   TUPLE_F_IN);
	} else if (proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) {
		__be16 id;

		if (bpf_skb_load_bytes(ctx, in_l4, &type, 1) < 0 ||
		    type != (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO) ||
		    bpf_skb_load_bytes(ctx, in_l4 + 4, &id, 2) < 0)
			return 0;
		port_off = in_l4 + 4;
		in_ports[0] = id;
		snat_tuple(v6, &k, in_saddr, in_daddr, id, 0, proto, TUPLE_F_IN);
	} else {
		return 0;
	}
	state = snat_find(v6, &k);
	if (!state)
		return 0;
	to = snat_to_addr(state);
	to_port = snat_to_port(v6, state);

	/* The outer destination. */
	if (v6) {
		__s64 d = bpf_csum_diff(in_saddr, 16, (__u32 *)to, 16, 0);

		if (d < 0 || bpf_l4_csum_replace(ctx, csum_off, 0, d, BPF_F_PSEUDO_HDR) < 0 ||
		    bpf_skb_store_bytes(ctx, ETH_HLEN + offsetof(struct ipv6hdr, daddr), to, 16,
					0) < 0)
			return DROP_WRITE_ERROR;
	} else {
		__be32 to4 = to[0];

		if (bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check),
					in_saddr[0], to4, 4) < 0 ||
		    bpf_skb_store_bytes(ctx, ETH_HLEN + offsetof(struct iphdr, daddr), &to4, 4,
					0) < 0)
			return DROP_WRITE_ERROR;
	}
	/* The quoted source address (and its IPv4 header checksum), all in the
	 * ICMP payload. */
	if (v6) {
		__s64 d = bpf_csum_diff(in_saddr, 16, (__u32 *)to, 16, 0);

		if (d < 0 || bpf_l4_csum_replace(ctx, csum_off, 0, d, 0) < 0 ||
		    bpf_skb_store_bytes(ctx, in_saddr_off, to, 16, 0) < 0)
			return DROP_WRITE_ERROR;
	} else {
		__u32 check_off = in_l3 + offsetof(struct iphdr, check);
		__be32 to4 = to[0];
		__u16 old_check, new_check;

		if (bpf_skb_load_bytes(ctx, check_off, &old_check, 2) < 0 ||
		    bpf_l3_csum_replace(ctx, check_off, in_saddr[0], to4, 4) < 0 ||
		    bpf_skb_load_bytes(ctx, check_off, &new_check, 2) < 0 ||
		    bpf_l4_csum_replace(ctx, csum_off, in_saddr[0], to4, 4) < 0 ||
		    bpf_l4_csum_replace(ctx, csum_off, old_check, new_check, 2) < 0 ||
		    bpf_skb_store_bytes(ctx, in_saddr_off, &to4, 4, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (in_ports[0] != to_port &&
	    (bpf_l4_csum_replace(ctx, csum_off, in_ports[0], to_port, 2) < 0 ||
	     bpf_skb_store_bytes(ctx, port_off, &to_port, 2, 0) < 0))
		return DROP_WRITE_ERROR;
	return 1;
}

/* from-netdev, a packet for no local pod: a reply to a masqueraded flow
 * (or an ICMP error about one) gets its destination translated back
 * (reverse entry {daddr = node, saddr = peer, ports, TUPLE_F_IN}). `frag4`:
 * an IPv4 fragment (the caller read its header; IPv6: `nexthdr` says).
 * 1 rewritten (packet pointers void), 0 not ours, or DROP_*. */
static __always_inline int snat_rev(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
				    const __u32 *daddr, __u8 nexthdr, __u32 l4_off,
				    __u32 l3_end, bool frag4)
{
	__be16 sport = 0, dport = 0, to_port;
	__u32 to[4];
	union ct6_key k;
	void *state;
	__u8 type;
	bool frag;
	__s64 fr;
	int ret;
	/* A fresh ctx for clang: see reload_l3 (no shared &ctx->data_end). */
	asm volatile("" : "+r"(ctx));

	/* A fragment (IPv6: `l4_off` is its fragment header): snat_frag.h. */
	frag = v6 ? nexthdr == NEXTHDR_FRAGMENT : frag4;
	if (frag) {
		fr = v6 ? snat_frag6(ctx, l3_end << 16 | l4_off) :
			  snat_frag4(ctx, l3_end << 16 | l4_off);
		if (fr == SNAT_FRAG_MORE)
			fr = snat_frag_go(ctx);
		/* One whose datagram is unknown, or unparsable, is the stack's,
		 * as any such fragment for the node (frag.h). */
		if (fr < 0)
			return 0;
		/* A later fragment of a pod's mapping: its address back. */
		if (fr & SNAT_FRAG_DONE) {
			ret = snat_frag_xlate(ctx);
			return ret < 0 ? ret : 1;
		}
		if (!(fr & SNAT_FRAG_FIRST))
			return 0;
		nexthdr = snat_frag_proto(fr);
		if (v6)
			l4_off += sizeof(struct frag6_hdr);
	}
	ret = snat_ports(ctx, v6, nexthdr, l4_off, l3_end, &sport, &dport, &type);
	if (ret < 0)
		return ret;
	if (ret > 0)
		return (nexthdr == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) && icmp_is_error(v6, type)) ?
			       snat_rev_icmp_error(ctx, v6, daddr, l4_off, l3_end) :
			       0;
	if ((nexthdr == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) &&
	     type == (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO)) ||
	    !snat_port_in_range(bpf_ntohs(dport)))
		return 0;
	snat_tuple(v6, &k, daddr, saddr, dport, sport, nexthdr, TUPLE_F_IN);
	state = snat_find(v6, &k);
	if (!state)
		return 0;
	to_port = snat_to_port(v6, state);
	__builtin_memcpy(to, snat_to_addr(state), v6 ? 16 : 4);
	ret = snat_rewrite(ctx, v6, nexthdr, l4_off, true, daddr, to, dport, to_port);
	return ret < 0 ? ret : 1;
}

/* from-netdev, NodePort to a backend on another node (Cilium's default
 * SNAT mode): the client's packet, already translated to the backend
 * (`st`, by lb_xlate; `saddr` the client, `l4` the packet's ports before
 * the translation), gets the CT_EGRESS entry of the translated flow
 * (client to backend, carrying the service's reverse NAT index: it owns
 * the mapping and takes the backend's replies back to the frontend), then
 * its source translated to the masquerade address of the interface towards
 * the backend, and goes out there (snat_forward). snat_nodeport_ct: the
 * entry (0 or DROP_*); snat_nodeport_out: the rest (a verdict), `oif`
 * the interface towards the backend (snat_fib_oif, looked up beforehand). */
static __always_inline int snat_nodeport_ct(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					    __u8 nexthdr, const struct l4info *l4,
					    const struct lb_state *st)
{
	struct l4info l4b = *l4;
	union ct6_key tuple;
	struct ct_entry *e = NULL;
	int ret;
	/* A fresh ctx for clang: see reload_l3 (no shared &ctx->data_end). */
	asm volatile("" : "+r"(ctx));

	l4b.tsport = st->port;
	l4b.pkt_dport = st->port;
	ct_tuple_init(v6, &tuple, saddr, st->addr, nexthdr, &l4b, TUPLE_F_IN);
	ret = ct_lookup(ctx, v6, &tuple, CT_EGRESS, &l4b, true, &e);
	if (ret == CT_NEW) {
		ret = ct_create(ctx, v6, &tuple, CT_EGRESS, ipcache_identity_of(v6, saddr),
				st->rev_nat_index);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* The second half of snat_nodeport_fwd (after its CT entry: a step of its
 * own, so that each is a small frame on from-netdev's stack). */
static __always_inline int snat_nodeport_out(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					     __u8 nexthdr, const struct l4info *l4, __u32 l4_off,
					     const struct lb_state *st, __u32 oif)
{
	__be16 to_port;
	__u32 to[4] = {};
	int ret;
	/* A fresh ctx for clang: see reload_l3 (no shared &ctx->data_end). */
	asm volatile("" : "+r"(ctx));

	ret = snat_mapping(ctx, v6, saddr, st->addr, l4->tdport, st->port, nexthdr, true,
			   snat_ifaddr_of(oif, v6), to, &to_port);
	if (ret == 0)
		ret = DROP_NAT_NO_MAPPING; /* no masquerade address towards it */
	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	ret = snat_rewrite(ctx, v6, nexthdr, l4_off, false, saddr, to, l4->tdport, to_port);
	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	return snat_forward(ctx, v6, nexthdr);
}

/* from-netdev, after snat_rev translated a reply to `daddr` (a copy, now
 * the original source) that is no local pod: the reply of a NodePort flow
 * to a remote backend, whose CT_EGRESS entry translates its source back to
 * the frontend (as lb_rev_nat); then to the stack, towards the client. In
 * two steps (small frames on from-netdev's stack): snat_nodeport_rev_ct
 * finds the entry (0: none, the packet passes), snat_nodeport_rev_nat
 * translates. */
static __always_inline __u64 snat_nodeport_rev_ct(struct __sk_buff *ctx, bool v6,
						  const __u32 *saddr, const __u32 *daddr,
						  __u8 nexthdr, __u32 l4_off, __u32 l3_end)
{
	struct l4info l4 = {};
	union ct6_key tuple;
	struct ct_entry *e = NULL;
	int ret;
	/* A fresh ctx for clang: see reload_l3 (no shared &ctx->data_end). */
	asm volatile("" : "+r"(ctx));

	if ((nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) &&
	    extract_l4(ctx, nexthdr, l4_off, l3_end, &l4) == 0) {
		ct_tuple_init(v6, &tuple, saddr, daddr, nexthdr, &l4, TUPLE_F_OUT);
		ret = ct_lookup(ctx, v6, &tuple, CT_INGRESS, &l4, false, &e);
		if (ret == CT_REPLY && e && e->rev_nat_index)
			return (__u64)1 << 32 | (__u32)e->rev_nat_index << 16 | l4.tdport;
	}
	return 0;
}

/* The second step of snat_nodeport_rev: `found` from snat_nodeport_rev_ct
 * (the reverse NAT index in bits 16-31, the packet's source port in 0-15).
 * A verdict. */
static __always_inline int snat_nodeport_rev_nat(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
						 __u8 nexthdr, __u32 l4_off, __u32 found)
{
	__u32 from[4] = {}, to[4] = {};
	__be16 port;
	int ret;
	/* A fresh ctx for clang: see reload_l3 (no shared &ctx->data_end). */
	asm volatile("" : "+r"(ctx));

	/* As lb_rev_nat: no reverse NAT entry, nothing rewritten. */
	if (lb_rev_nat_target(v6, found >> 16, to, &port)) {
		__builtin_memcpy(from, saddr, v6 ? 16 : 4);
		ret = nat_rewrite(ctx, v6, nexthdr, l4_off, false, from, to, found & 0xffff, port);
		if (ret < 0)
			return drop(ctx, ret, METRIC_INGRESS);
	}
	/* Its source is the frontend, a node address now. */
	return snat_forward(ctx, v6, nexthdr);
}

/* to-netdev (the underlay's egress): masquerade. IPv4 and IPv6 packets are
 * parsed to their L4 header (IPv6: past extension headers, up to a fragment
 * header); fragments go through snat_frag.h; anything unparsable passes as
 * it is. */
static __always_inline int snat_to_netdev4(struct __sk_buff *ctx)
{
	struct iphdr *ip4;
	__u32 s4, d4, hlen, tot;
	int ret;

	if (!pull_headers(ctx, ETH_HLEN + sizeof(struct iphdr)))
		return TC_ACT_OK;
	ip4 = (void *)(long)ctx->data + ETH_HLEN;
	if ((void *)(ip4 + 1) > (void *)(long)ctx->data_end)
		return TC_ACT_OK;
	if (ip4->version != 4 || ip4->ihl < 5)
		return TC_ACT_OK;
	hlen = ip4->ihl * 4;
	tot = bpf_ntohs(ip4->tot_len);
	if (tot < hlen || ETH_HLEN + tot > ctx->len)
		return TC_ACT_OK;
	s4 = ip4->saddr;
	d4 = ip4->daddr;
	ret = snat_egress(ctx, false, &s4, &d4, ip4->protocol, ETH_HLEN + hlen, ETH_HLEN + tot,
			  frag4_is_fragment(ip4));
	return ret < 0 ? drop(ctx, ret, METRIC_EGRESS) : TC_ACT_OK;
}

static __always_inline int snat_to_netdev6(struct __sk_buff *ctx)
{
	__u32 saddr[4], daddr[4], l4_off, l3_end;
	struct ipv6hdr *ip6;
	__u8 nexthdr;
	int ret;

	if (!pull_headers(ctx, ETH_HLEN + sizeof(struct ipv6hdr)))
		return TC_ACT_OK;
	ip6 = (void *)(long)ctx->data + ETH_HLEN;
	if ((void *)(ip6 + 1) > (void *)(long)ctx->data_end || ip6->version != 6)
		return TC_ACT_OK;
	l4_off = ETH_HLEN + sizeof(struct ipv6hdr);
	l3_end = l4_off + bpf_ntohs(ip6->payload_len);
	if (l3_end > ctx->len)
		return TC_ACT_OK;
	__builtin_memcpy(saddr, &ip6->saddr, 16);
	__builtin_memcpy(daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	if ((daddr[0] & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000))
		return TC_ACT_OK;
	ret = ipv6_skip_exthdrs(ctx, l3_end, &nexthdr, &l4_off);
	if (ret < 0 && ret != DROP_FRAG_NOSUPPORT)
		return TC_ACT_OK;
	ret = snat_egress(ctx, true, saddr, daddr, nexthdr, l4_off, l3_end,
			  ret == DROP_FRAG_NOSUPPORT);
	return ret < 0 ? drop(ctx, ret, METRIC_EGRESS) : TC_ACT_OK;
}

#include "snat_frag.h"

#endif /* PODNET_SNAT_H */
