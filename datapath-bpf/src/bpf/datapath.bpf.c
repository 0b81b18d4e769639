// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * podnet pod datapath: native routing between pods, Cilium-compatible
 * conntrack, per-endpoint policy and per-reason metrics.
 *
 * This file holds the programs and what each hook does with a parsed
 * packet (as Cilium's bpf_lxc.c / bpf_host.c do); each concept they use is
 * in the header of lib/ named after it, as in Cilium's bpf/lib/:
 *  - common.h     constants, drop reasons, map key/value layouts
 *  - keys.h       lookup keys written in 8-byte words
 *  - config.h     the loader's options (.rodata)
 *  - maps.h       every map definition
 *  - clock.h      the conntrack clock
 *  - metrics.h    per-reason counters, drop()
 *  - events.h     the events ring buffer, per-packet facts in skb->cb
 *  - drop_notify.h, trace.h, policy_log.h  drop / trace / policy verdict events
 *  - ep_metrics.h per-endpoint counters
 *  - identity.h   identities in skb->mark
 *  - eps.h        endpoints, ipcache, the local-delivery stamp
 *  - policy.h     per-endpoint policy
 *  - parse.h      L4 ports/flags, header pulls, IPv6 extension headers
 *  - conntrack.h  Cilium conntrack
 *  - forward.h    TTL/MAC rewrite, redirects, skip-FIB
 *  - nat.h        address/port rewrite with checksums
 *  - lb.h         services: frontends, backends, reverse NAT
 *  - frag.h       IP fragments: the first fragment's ports for the others
 *  - snat.h       masquerade (SNAT), NodePort to remote backends
 *  - snat_node.h  the masquerade addresses, for from-netdev's check order
 * The socket load balancing programs (cgroup hooks) are in bpf_sock.h,
 * included at the end. This is the one compilation unit build.rs compiles.
 *
 * Facts from seed 003 (native routing walk-through): from-container /
 * from-netdev / to-container responsibilities, ipv4_l3 (TTL + MAC
 * rewrite), skip-FIB. The sources read for each concern are listed at the
 * top of its header.
 */
#include "lib/common.h"
#include "lib/keys.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/clock.h"
#include "lib/metrics.h"
#include "lib/trace.h"
#include "lib/identity.h"
#include "lib/eps.h"
#include "lib/policy.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/forward.h"
#include "lib/nat.h"
#include "lib/lb.h"
#include "lib/frag.h"
#include "lib/snat.h"
#include "lib/snat_node.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- what the hooks do with a parsed packet ----------------------------- */

/* The reverse NAT of a service reply as subprograms, for from-netdev: its
 * own frame is at the limit beside the NodePort and reverse SNAT steps.
 * `off_proto`: the L4 offset, and the L4 protocol in bits 16-23. */
static __noinline int pod_rev_nat4(struct __sk_buff *ctx, const struct ct_entry *e,
				   const __u32 *saddr, const struct l4info *l4, __u32 off_proto)
{
	return lb_rev_nat(ctx, false, e, saddr, off_proto >> 16, l4, off_proto & 0xffff);
}

static __noinline int pod_rev_nat6(struct __sk_buff *ctx, const struct ct_entry *e,
				   const __u32 *saddr, const struct l4info *l4, __u32 off_proto)
{
	return lb_rev_nat(ctx, true, e, saddr, off_proto >> 16, l4, off_proto & 0xffff);
}

static __noinline int pod_rev_nat_icmp4(struct __sk_buff *ctx, const struct ct_entry *e,
					const __u32 *saddr, __u32 l4_off)
{
	return lb_rev_nat_icmp(ctx, false, e, saddr, l4_off);
}

static __noinline int pod_rev_nat_icmp6(struct __sk_buff *ctx, const struct ct_entry *e,
					const __u32 *saddr, __u32 l4_off)
{
	return lb_rev_nat_icmp(ctx, true, e, saddr, l4_off);
}

/* What to_container does for a packet entering endpoint `dep`: conntrack in
 * the ingress direction and, for a new connection, ingress policy with the
 * source identity: `identity`, or resolved here when the connection is new,
 * from the endpoints then the ipcache (0) or from the ipcache alone
 * (IDENTITY_FROM_IPCACHE: traffic from the underlay, whose source may not
 * claim a local pod's identity). `dep` NULL: looked up here, for new
 * connections only. Addresses as for ct_tuple_init. A reply of a service
 * connection gets its source translated back to the frontend (lb_rev_nat),
 * an ICMP error about one its outer source and quoted packet (lb_rev_nat_icmp);
 * *rewritten then tells the caller its packet pointers are void (`rev_call`:
 * through the subprograms above, for from-netdev's own frame). 0,
 * DROP_*, or NOT_ENDPOINT when the destination is no endpoint (nothing
 * done). */
#define NOT_ENDPOINT 1
#define IDENTITY_FROM_IPCACHE 0xFFFFFFFF /* beyond Cilium's 24-bit identities */
static __always_inline int pod_ingress(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
				       const __u32 *daddr, __u8 nexthdr, const struct l4info *l4,
				       __u32 l4_off, const struct endpoint_info *dep,
				       __u32 identity, bool *rewritten, __be16 rev_nat_index,
				       bool rev_call, bool rev_known)
{
	union ct6_key tuple; /* room for either family */
	struct endpoint_info *sep;
	struct ct_entry *e = NULL;
	int ret;

	ct_tuple_init(v6, &tuple, saddr, daddr, nexthdr, l4, TUPLE_F_OUT);
	ret = ct_lookup(ctx, v6, &tuple, CT_INGRESS, l4, false, &e);
	/* The connection's own ingress entry, left by an earlier connection
	 * of the same tuple that was translated where this one is not, or the
	 * other way round (a NodePort flow, then the client dialling the
	 * backend pod itself): its reverse NAT index becomes this one's, or
	 * the pod's replies would leave from the wrong address (from_container
	 * translates them by it). Fixed in place, as from_container_l3 does
	 * for its egress entry, where the caller knows the index
	 * (`rev_known`): to_container cannot tell a NodePort flow delivered
	 * to the pod's veth from any other. */
	if (rev_known && e && (ret == CT_ESTABLISHED || ret == CT_REOPENED) &&
	    e->rev_nat_index != rev_nat_index)
		e->rev_nat_index = rev_nat_index;
	if (ret != CT_NEW) {
		if (e && e->rev_nat_index && (ret == CT_REPLY || ret == CT_RELATED)) {
			if (rev_call && ret == CT_REPLY)
				ret = v6 ? pod_rev_nat6(ctx, e, saddr, l4, (__u32)nexthdr << 16 | l4_off) :
					   pod_rev_nat4(ctx, e, saddr, l4, (__u32)nexthdr << 16 | l4_off);
			else if (rev_call)
				ret = v6 ? pod_rev_nat_icmp6(ctx, e, saddr, l4_off) :
					   pod_rev_nat_icmp4(ctx, e, saddr, l4_off);
			else
				ret = ret == CT_REPLY ?
					      lb_rev_nat(ctx, v6, e, saddr, nexthdr, l4, l4_off) :
					      lb_rev_nat_icmp(ctx, v6, e, saddr, l4_off);
			if (ret < 0)
				return ret;
			*rewritten = ret > 0;
		}
		return 0;
	}
	if (!dep) {
		dep = lookup_ep_of(v6, daddr);
		if (!dep)
			return NOT_ENDPOINT;
	}
	if (identity == IDENTITY_FROM_IPCACHE) {
		identity = ipcache_identity_of(v6, saddr);
	} else if (!identity) {
		sep = lookup_ep_of(v6, saddr);
		identity = sep ? sep->sec_id : ipcache_identity_of(v6, saddr);
	}
	events_set_flow(ctx, identity, dep->sec_id, false, dep->lxc_id);
	ret = policy_check(ctx, identity, l4->pkt_dport, nexthdr, 0, dep->lxc_id,
			   dep->flags & ENDPOINT_F_INGRESS_ENFORCE);
	if (ret < 0)
		return ret;
	return ct_create(ctx, v6, &tuple, CT_INGRESS, identity, rev_nat_index);
}

/* After a helper rewrote the packet: its Ethernet and IP headers again. */
static __always_inline bool reload_l3(struct __sk_buff *ctx, bool v6, struct ethhdr **eth,
				      void **l3)
{
	void *data, *data_end;

	/* Keeps clang from computing &ctx->data once for every reload: the
	 * verifier refuses a load through a ctx pointer with an offset. */
	asm volatile("" : "+r"(ctx));
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	if (data + ETH_HLEN + (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) > data_end)
		return false;
	*eth = data;
	*l3 = data + ETH_HLEN;
	return true;
}

/* From here on the hooks' work is the same for both families, on the
 * parsed packet: `l3` its IP header, `saddr`/`daddr` its addresses (IPv4:
 * one word, in the packet), `nexthdr` its upper-layer protocol, `l4` its
 * ports and flags. `v6` is a constant at every call. */

/* from-netdev, for local pod `dep` once its checks passed: TTL and MACs,
 * then into the pod (redirect_peer, ingress conntrack and policy done by
 * the caller) or to its host-side veth with the source identity in the
 * mark, for to_container. */
static __always_inline int netdev_deliver(struct __sk_buff *ctx, bool v6, void *l3,
					  struct ethhdr *eth, const struct endpoint_info *dep,
					  const __u32 *saddr)
{
	l3_dec_ttl(v6, l3);
	rewrite_macs(eth, dep->node_mac, dep->mac);
	if (CONFIG.redirect_peer) {
		count(ctx, REASON_FORWARDED, METRIC_INGRESS);
		return redirect_peer_to(dep->ifindex);
	}
	set_identity_mark(ctx, ipcache_identity_of(v6, saddr));
	events_set_delivery(ctx, dep->lxc_id);
	return redirect_to(dep->ifindex);
}

/* In skb->mark beside an identity (outside MARK_MAGIC_MASK and the
 * identity's bits): a NodePort flow that from-netdev translated and
 * delivered to the backend's veth, its ingress entry (with the frontend's
 * reverse NAT index) already looked up there. Any other packet that
 * to_container sees has no reverse NAT index in its ingress entry. */
#define MARK_F_NODEPORT_DELIVERED 0x1000

/* to-container: ingress conntrack before the endpoint lookup (a reply or an
 * established flow needs no endpoint, only a new connection does, for its
 * ingress policy); an address that is no endpoint passes. */
static __always_inline int to_container_l3(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					   const __u32 *daddr, __u8 nexthdr,
					   const struct l4info *l4, __u32 l4_off)
{
	bool rewritten = false;
	int ret = pod_ingress(ctx, v6, saddr, daddr, nexthdr, l4, l4_off, NULL,
			      identity_of_mark(ctx->mark), &rewritten, 0, false,
			      !(ctx->mark & MARK_F_NODEPORT_DELIVERED));

	if (ret > 0)
		return TC_ACT_OK;
	clear_identity_mark(ctx);
	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	count(ctx, REASON_FORWARDED, METRIC_INGRESS);
	return TC_ACT_OK;
}

/* from-netdev, a TCP/UDP packet for no local pod (addresses: copies, not
 * in the packet): a NodePort, external IP or LoadBalancer frontend is
 * translated (lb_xlate) into *st. Its backend is then either on another
 * node (netdev_nodeport_fwd: SNAT and out) or local (netdev_nodeport_local:
 * the backend's ingress conntrack and policy with the frontend's reverse
 * NAT index in its entry, so that the backend's replies are translated back
 * at from-container, and delivery). The three are sibling subprograms that
 * from-netdev calls one after the other: its combined stack is its own
 * frame and the largest of theirs, not their sum (512 bytes at most).
 * NODEPORT_XLATED when translated, else a verdict: anything that is no
 * frontend passes to the stack. On entry st->addr holds the destination. */
#define NODEPORT_XLATED 0x30000 /* no TC_ACT_* value */
struct nodeport_state {
	struct lb_state lb; /* first: the steps take a pointer to it */
	__u32 oif; /* remote backend: the interface towards it */
};

/* Its room (per CPU, one slot): not on from-netdev's stack, which is at
 * the limit beside the steps' frames. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct nodeport_state);
	__uint(max_entries, 1);
} podnet_nodeport_scratch SEC(".maps");
static __always_inline int netdev_nodeport_xlate(struct __sk_buff *ctx, bool v6,
						 const __u32 *saddr, __u8 nexthdr,
						 struct l4info *l4, __u32 l4_off,
						 struct lb_state *st)
{
	__u32 daddr[4];
	int ret;

	__builtin_memcpy(daddr, st->addr, 16);
	ret = lb_xlate(ctx, v6, saddr, daddr, nexthdr, l4, l4_off, true, st);
	if (ret <= 0)
		return ret < 0 ? drop(ctx, ret, METRIC_INGRESS) : TC_ACT_OK;
	return NODEPORT_XLATED;
}

static __always_inline int netdev_nodeport_ct(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					      __u8 nexthdr, struct l4info *l4, __u32 l4_off,
					      const struct lb_state *st)
{
	struct nodeport_state *np = (struct nodeport_state *)st;
	int ret = snat_nodeport_ct(ctx, v6, saddr, nexthdr, l4, st);

	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	np->oif = snat_fib_oif(ctx, v6, saddr, st->addr, nexthdr);
	return NODEPORT_XLATED;
}

static __always_inline int netdev_nodeport_fwd(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					       __u8 nexthdr, struct l4info *l4, __u32 l4_off,
					       const struct lb_state *st)
{
	struct ethhdr *eth;
	void *l3;

	if (!reload_l3(ctx, v6, &eth, &l3))
		return drop(ctx, DROP_INVALID, METRIC_INGRESS);
	return snat_nodeport_out(ctx, v6, saddr, nexthdr, l4, l4_off, st,
				 ((const struct nodeport_state *)st)->oif);
}

static __always_inline int netdev_nodeport_local(struct __sk_buff *ctx, bool v6,
						 const __u32 *saddr, __u8 nexthdr,
						 struct l4info *l4, __u32 l4_off,
						 const struct lb_state *st)
{
	struct endpoint_info *dep;
	bool rewritten = false;
	struct ethhdr *eth;
	void *l3;
	int ret;

	if (!reload_l3(ctx, v6, &eth, &l3))
		return drop(ctx, DROP_INVALID, METRIC_INGRESS);
	dep = lookup_ep_of(v6, st->addr);
	if (!dep)
		return drop(ctx, DROP_NO_SERVICE, METRIC_INGRESS);
	l4->tsport = st->port;
	l4->pkt_dport = st->port;
	ret = pod_ingress(ctx, v6, saddr, st->addr, nexthdr, l4, l4_off, dep, IDENTITY_FROM_IPCACHE,
			  &rewritten, st->rev_nat_index, false, true);
	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	if (rewritten && !reload_l3(ctx, v6, &eth, &l3))
		return drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (l3_ttl(v6, l3) <= 1)
		return TC_ACT_OK;
	ret = netdev_deliver(ctx, v6, l3, eth, dep, saddr);
	if (!CONFIG.redirect_peer)
		ctx->mark |= MARK_F_NODEPORT_DELIVERED;
	return ret;
}

/* The NodePort steps per family as subprograms (5 arguments at most).
 * `off_proto`: the L4 offset, and the L4 protocol in bits 16-23. */
#define NODEPORT_STEP(name, fn, v6)                                                        \
	static __noinline int name(struct __sk_buff *ctx, const __u32 *saddr,              \
				   struct l4info *l4, __u32 off_proto, struct lb_state *st) \
	{                                                                                  \
		return fn(ctx, v6, saddr, off_proto >> 16, l4, off_proto & 0xffff, st);    \
	}
NODEPORT_STEP(netdev_nodeport_xlate4, netdev_nodeport_xlate, false)
NODEPORT_STEP(netdev_nodeport_xlate6, netdev_nodeport_xlate, true)
NODEPORT_STEP(netdev_nodeport_ct4, netdev_nodeport_ct, false)
NODEPORT_STEP(netdev_nodeport_ct6, netdev_nodeport_ct, true)
NODEPORT_STEP(netdev_nodeport_fwd4, netdev_nodeport_fwd, false)
NODEPORT_STEP(netdev_nodeport_fwd6, netdev_nodeport_fwd, true)
NODEPORT_STEP(netdev_nodeport_local4, netdev_nodeport_local, false)
NODEPORT_STEP(netdev_nodeport_local6, netdev_nodeport_local, true)

/* from-netdev: NodePort in its three steps (see netdev_nodeport_xlate).
 * `daddr`: the packet's destination. */
static __always_inline int netdev_nodeport(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					   const __u32 *daddr, struct l4info *l4, __u32 off_proto)
{
	__u32 zero = 0;
	struct nodeport_state *np = bpf_map_lookup_elem(&podnet_nodeport_scratch, &zero);
	struct lb_state *st;
	int ret;

	if (!np)
		return TC_ACT_OK;
	__builtin_memset(np, 0, sizeof(*np));
	st = &np->lb;
	__builtin_memcpy(st->addr, daddr, v6 ? 16 : 4);
	ret = v6 ? netdev_nodeport_xlate6(ctx, saddr, l4, off_proto, st) :
		   netdev_nodeport_xlate4(ctx, saddr, l4, off_proto, st);
	if (ret != NODEPORT_XLATED)
		return ret;
	if (st->remote) {
		ret = v6 ? netdev_nodeport_ct6(ctx, saddr, l4, off_proto, st) :
			   netdev_nodeport_ct4(ctx, saddr, l4, off_proto, st);
		if (ret != NODEPORT_XLATED)
			return ret;
		return v6 ? netdev_nodeport_fwd6(ctx, saddr, l4, off_proto, st) :
			    netdev_nodeport_fwd4(ctx, saddr, l4, off_proto, st);
	}
	return v6 ? netdev_nodeport_local6(ctx, saddr, l4, off_proto, st) :
		    netdev_nodeport_local4(ctx, saddr, l4, off_proto, st);
}

/* from-netdev, a packet for no local pod, with masquerade on: the reply of
 * a masqueraded flow (or an ICMP error about one) translated back to its
 * pod (SNAT_TO_POD: *dep is the pod, packet pointers are void), or of a
 * NodePort flow to a remote backend, sent on to the client (a verdict);
 * SNAT_NOT_OURS when it is neither. Addresses: copies. */
#define SNAT_NOT_OURS 0x20000 /* no TC_ACT_* value */
#define SNAT_TO_POD 0x20001
#define SNAT_NODEPORT_REV 0x20002 /* a NodePort reply: netdev_nodeport_rev next */
static __always_inline int netdev_rev_snat(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					   const __u32 *daddr, __u8 nexthdr, __u32 l4_off,
					   __u32 l3_end, bool frag4, struct endpoint_info **dep)
{
	__u32 d[4] = {};
	struct ethhdr *eth;
	void *l3;
	int ret = snat_rev(ctx, v6, saddr, daddr, nexthdr, l4_off, l3_end, frag4);

	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	if (ret == 0)
		return SNAT_NOT_OURS;
	if (!reload_l3(ctx, v6, &eth, &l3))
		return drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (v6)
		__builtin_memcpy(d, &((struct ipv6hdr *)l3)->daddr, 16);
	else
		d[0] = ((struct iphdr *)l3)->daddr;
	*dep = lookup_ep_of(v6, d);
	if (*dep && !((*dep)->flags & ENDPOINT_F_HOST))
		return SNAT_TO_POD;
	return SNAT_NODEPORT_REV;
}

/* After netdev_rev_snat said SNAT_NODEPORT_REV: the reply of a NodePort
 * flow to a remote backend (snat_nodeport_rev), a step of its own so that
 * each is a small frame on from-netdev's stack. A verdict. */
static __always_inline __s64 netdev_nodeport_rev(struct __sk_buff *ctx, bool v6,
						  const __u32 *saddr, __u8 nexthdr, __u32 l4_off,
						  __u32 l3_end)
{
	struct ethhdr *eth;
	void *l3;

	if (!reload_l3(ctx, v6, &eth, &l3))
		return -(__s64)drop(ctx, DROP_INVALID, METRIC_INGRESS) - 1;
	/* The destination read in place (no copy: a smaller frame). <0: the
	 * verdict -(v)-1, 0: not a NodePort reply, else found (for
	 * netdev_nodeport_rev_nat). */
	return snat_nodeport_rev_ct(ctx, v6, saddr,
					 v6 ? (const __u32 *)&((struct ipv6hdr *)l3)->daddr :
					      (const __u32 *)&((struct iphdr *)l3)->daddr,
					 nexthdr, l4_off, l3_end);
}

/* A NodePort reply translated back by lb_rev_nat: its source is now the
 * node's own address, which the stack would drop as a martian arriving on
 * a pod's veth, so it goes out through the FIB's interface from here. */
static __always_inline int netdev_reply(struct __sk_buff *ctx, bool v6, __u8 nexthdr)
{
	__u32 saddr[4] = {}, daddr[4] = {};
	struct ethhdr *eth;
	void *l3;

	if (!reload_l3(ctx, v6, &eth, &l3))
		return drop(ctx, DROP_INVALID, METRIC_EGRESS);
	if (l3_ttl(v6, l3) <= 1)
		return TC_ACT_OK;
	if (v6) {
		__builtin_memcpy(saddr, &((struct ipv6hdr *)l3)->saddr, 16);
		__builtin_memcpy(daddr, &((struct ipv6hdr *)l3)->daddr, 16);
	} else {
		saddr[0] = ((struct iphdr *)l3)->saddr;
		daddr[0] = ((struct iphdr *)l3)->daddr;
	}
	return fib_forward(ctx, v6, l3, eth, saddr, daddr, nexthdr);
}

/* Reverse SNAT per family as subprograms (frames of their own, beside
 * NodePort's: see netdev_nodeport4). `packed`: the L4 offset (bits 0-15),
 * the end of the L3 payload (16-31), the L4 protocol (32-39) and, IPv4,
 * whether it is a fragment (bit 40, SNAT_REV_FRAG4). */
#define SNAT_REV_FRAG4 (1ULL << 40)
static __noinline int netdev_rev_snat4(struct __sk_buff *ctx, const __u32 *saddr,
				       const __u32 *daddr, __u64 packed, struct endpoint_info **dep)
{
	return netdev_rev_snat(ctx, false, saddr, daddr, (__u8)(packed >> 32), packed & 0xffff,
			       (packed >> 16) & 0xffff, packed & SNAT_REV_FRAG4, dep);
}

static __noinline int netdev_rev_snat6(struct __sk_buff *ctx, const __u32 *saddr,
				       const __u32 *daddr, __u64 packed, struct endpoint_info **dep)
{
	return netdev_rev_snat(ctx, true, saddr, daddr, (__u8)(packed >> 32), packed & 0xffff,
			       (packed >> 16) & 0xffff, false, dep);
}

static __noinline __s64 netdev_nodeport_rev4(struct __sk_buff *ctx, const __u32 *saddr,
					     __u64 packed)
{
	return netdev_nodeport_rev(ctx, false, saddr, (__u8)(packed >> 32), packed & 0xffff,
				   (packed >> 16) & 0xffff);
}

static __noinline __s64 netdev_nodeport_rev6(struct __sk_buff *ctx, const __u32 *saddr,
					     __u64 packed)
{
	return netdev_nodeport_rev(ctx, true, saddr, (__u8)(packed >> 32), packed & 0xffff,
				   (packed >> 16) & 0xffff);
}

static __noinline int netdev_nodeport_rev_nat4(struct __sk_buff *ctx, const __u32 *saddr,
					       __u64 packed, __u32 found)
{
	return snat_nodeport_rev_nat(ctx, false, saddr, (__u8)(packed >> 32), packed & 0xffff,
				     found) & 0xff;
}

static __noinline int netdev_nodeport_rev_nat6(struct __sk_buff *ctx, const __u32 *saddr,
					       __u64 packed, __u32 found)
{
	return snat_nodeport_rev_nat(ctx, true, saddr, (__u8)(packed >> 32), packed & 0xffff,
				     found) & 0xff;
}

/* from-netdev: a NodePort reply from a remote backend, in its two steps. */
static __always_inline int netdev_nodeport_reply(struct __sk_buff *ctx, bool v6,
						 const __u32 *saddr, __u64 packed)
{
	__s64 found = v6 ? netdev_nodeport_rev6(ctx, saddr, packed) :
			   netdev_nodeport_rev4(ctx, saddr, packed);

	if (found < 0)
		return (int)(-found - 1);
	if (found == 0) {
		count(ctx, REASON_FORWARDED, METRIC_INGRESS);
		return TC_ACT_OK;
	}
	return v6 ? netdev_nodeport_rev_nat6(ctx, saddr, packed, (__u32)found) :
		    netdev_nodeport_rev_nat4(ctx, saddr, packed, (__u32)found);
}

/* from-container: egress conntrack (anti-spoofing, egress policy and entry
 * creation for a new connection), then local delivery to another pod on
 * the node (TTL and MACs, redirect) or remote: skip-FIB or the stack.
 *
 * Services: a packet without a CT entry whose destination is a frontend is
 * translated to its backend (lb_xlate, when `xlate` is given: the first
 * pass) and LB_TRANSLATED returned, `xlate` saying where it goes now; the
 * caller then runs this again on the translated packet with `svc` set, so
 * that the connection's CT entry (to the backend) carries the reverse NAT
 * index. Established flows that are no service connection never reach the
 * service lookup. */
#define LB_TRANSLATED 0x10000 /* no TC_ACT_* value */
static __always_inline int from_container_l3(struct __sk_buff *ctx, bool v6, void *l3,
					     struct ethhdr *eth, const __u32 *saddr,
					     const __u32 *daddr, __u8 nexthdr,
					     const struct l4info *l4, __u32 l4_off,
					     const struct lb_state *svc, struct lb_state *xlate)
{
	union ct6_key tuple; /* room for either family */
	struct endpoint_info *dep, *sep;
	struct ct_entry *entry = NULL;
	bool rewritten = false;
	__u32 identity = 0;
	int ret;

	ct_tuple_init(v6, &tuple, saddr, daddr, nexthdr, l4, TUPLE_F_IN);
	ret = ct_lookup(ctx, v6, &tuple, CT_EGRESS, l4, true, &entry);
	if (ret == CT_REPLY && entry && entry->rev_nat_index) {
		/* A local backend's reply to a NodePort client (only from-netdev
		 * gives an ingress entry a reverse NAT index): its source back to
		 * the node's frontend, then to the client through the stack. */
		ret = lb_rev_nat(ctx, v6, entry, saddr, nexthdr, l4, l4_off);
		if (ret < 0)
			return drop(ctx, ret, METRIC_EGRESS);
		if (ret > 0)
			return netdev_reply(ctx, v6, nexthdr);
		count(ctx, REASON_FORWARDED, METRIC_EGRESS);
		return TC_ACT_OK;
	}
	if (ret == CT_NEW) {
		__u32 dst_identity;

		/* The source first: a spoofed one is never translated, and a
		 * drop by the translation (DROP_NO_SERVICE) names its pod. */
		sep = lookup_ep_of(v6, saddr);
		if (!sep || sep->ifindex != ctx->ingress_ifindex)
			return drop(ctx, DROP_INVALID_SIP, METRIC_EGRESS);
		identity = sep->sec_id;
		if (xlate) {
			events_set_flow(ctx, identity, 0, true, sep->lxc_id);
			ret = lb_xlate(ctx, v6, saddr, daddr, nexthdr, l4, l4_off, false, xlate);
			if (ret < 0)
				return drop(ctx, ret, METRIC_EGRESS);
			if (ret > 0)
				return LB_TRANSLATED;
		}

		dep = lookup_ep_of(v6, daddr);
		dst_identity = dep ? dep->sec_id : ipcache_identity_of(v6, daddr);
		events_set_flow(ctx, identity, dst_identity, true, sep->lxc_id);
		ret = policy_check(ctx, dst_identity, l4->pkt_dport, nexthdr, 1, sep->lxc_id,
				   sep->flags & ENDPOINT_F_EGRESS_ENFORCE);
		if (ret < 0)
			return drop(ctx, ret, METRIC_EGRESS);
		ret = ct_create(ctx, v6, &tuple, CT_EGRESS, identity,
				svc ? svc->rev_nat_index : 0);
		if (ret < 0)
			return drop(ctx, ret, METRIC_EGRESS);
	} else {
		/* An entry left by an earlier connection of the same tuple,
		 * with service translation where this one has none or the other
		 * way round (a socket given the backend by socket LB, re-using a
		 * port whose earlier connection reached that backend through the
		 * service): its reverse NAT index becomes this connection's, or
		 * its replies would be translated wrongly. Cilium's bpf_lxc
		 * recreates such a "stale" entry; fixing it in place keeps the
		 * established path as fast as it was (recreating it made every
		 * established packet 3-6 ns slower, A/B measured). */
		__be16 want = svc ? svc->rev_nat_index : 0;

		if (entry && entry->rev_nat_index != want &&
		    (ret == CT_ESTABLISHED || ret == CT_REOPENED))
			entry->rev_nat_index = want;
		dep = established_dst(entry, v6, daddr);
	}

	/* Packet pointers are still valid: no helper above changes packet data. */
	if (dep && !(dep->flags & ENDPOINT_F_HOST)) {
		/* Local delivery: ipv4_l3 then redirect to the pod. */
		if (l3_ttl(v6, l3) <= 1)
			return TC_ACT_OK;
		if (CONFIG.redirect_peer) {
			ret = pod_ingress(ctx, v6, saddr, daddr, nexthdr, l4, l4_off, dep, identity,
					  &rewritten, 0, false, true);
			if (ret < 0)
				return drop(ctx, ret, METRIC_INGRESS);
			if (rewritten && !reload_l3(ctx, v6, &eth, &l3))
				return drop(ctx, DROP_INVALID, METRIC_INGRESS);
			l3_dec_ttl(v6, l3);
			rewrite_macs(eth, dep->node_mac, dep->mac);
			count(ctx, REASON_FORWARDED, METRIC_EGRESS);
			count(ctx, REASON_FORWARDED, METRIC_INGRESS);
			return redirect_peer_to(dep->ifindex);
		}
		l3_dec_ttl(v6, l3);
		rewrite_macs(eth, dep->node_mac, dep->mac);
		events_set_delivery(ctx, dep->lxc_id);
		if (identity)
			set_identity_mark(ctx, identity);
		count(ctx, REASON_FORWARDED, METRIC_EGRESS);
		return redirect_to(dep->ifindex);
	}
	if (CONFIG.skip_fib && l3_ttl(v6, l3) > 1)
		return fib_forward(ctx, v6, l3, eth, saddr, daddr, nexthdr);
	count(ctx, REASON_FORWARDED, METRIC_EGRESS);
	return TC_ACT_OK;
}

/* The second pass of a service connection (from_container_l3 with `svc`)
 * is a program of its own, from_container_svc, tail-called after the
 * translation, as Cilium's bpf_lxc tail-calls its CT/policy stage after
 * its service translation: a fresh 512-byte stack and its own
 * 1,000,000-instruction budget (from-container with both passes inline,
 * each with redirect_peer's local delivery, went past the limit). What the
 * first pass knows that the packet does not tell again (the translated
 * flow's ports, so that a later fragment keeps its first fragment's; the
 * L4 offset and protocol; the reverse NAT index) goes in a per-CPU scratch
 * slot: nothing runs on this CPU between the write and the tail call. */
struct svc_pass {
	struct l4info l4;
	__u32 l4_off;
	__be16 rev_nat_index;
	__u8 nexthdr; /* IPv6: after the extension headers */
	__u8 v6;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct svc_pass);
	__uint(max_entries, 1);
} podnet_svc_scratch SEC(".maps");

int from_container_svc(struct __sk_buff *ctx);

/* The tail call's program array, filled by libbpf at load. Pinned: the
 * kernel empties a program array that no descriptor or pin holds, which
 * would leave programs attached past their loader (keep_attached) without
 * their second pass; a new load fills the pinned one with its own. */
#define CALL_FROM_CONTAINER_SVC 0
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u32);
	__array(values, int(void *));
} podnet_calls SEC(".maps") = {
	.values = { [CALL_FROM_CONTAINER_SVC] = (void *)&from_container_svc },
};

static __always_inline int svc_pass_call(struct __sk_buff *ctx, bool v6, const struct l4info *l4,
					 __u32 l4_off, __u8 nexthdr, const struct lb_state *st)
{
	__u32 zero = 0;
	struct svc_pass *p = bpf_map_lookup_elem(&podnet_svc_scratch, &zero);

	if (!p)
		return drop(ctx, DROP_MISSED_TAIL_CALL, METRIC_EGRESS);
	p->l4 = *l4;
	p->l4.tsport = st->port;
	p->l4.pkt_dport = st->port;
	p->l4_off = l4_off;
	p->rev_nat_index = st->rev_nat_index;
	p->nexthdr = nexthdr;
	p->v6 = v6;
	return LB_TRANSLATED; /* from_container tail-calls (one call site) */
}

/* from_container_svc's work: the translated packet's headers again, then
 * from_container_l3 for the flow to the backend. */
static __always_inline int svc_pass_l3(struct __sk_buff *ctx, bool v6, const struct svc_pass *p)
{
	struct lb_state svc = {};
	struct l4info l4 = p->l4;
	__u32 l4_off = p->l4_off;
	struct ethhdr *eth;
	void *l3;

	/* Bounded for the verifier (an L4 offset is far below). */
	if (l4_off > 0x3fff || !reload_l3(ctx, v6, &eth, &l3))
		return drop(ctx, DROP_INVALID, METRIC_EGRESS);
	svc.rev_nat_index = p->rev_nat_index;
	if (v6) {
		struct ipv6hdr *ip6 = l3;
		__u32 saddr[4], daddr[4];

		__builtin_memcpy(saddr, &ip6->saddr, 16);
		__builtin_memcpy(daddr, &ip6->daddr, 16);
		return from_container_l3(ctx, true, l3, eth, saddr, daddr, p->nexthdr, &l4, l4_off,
					 &svc, NULL);
	}
	struct iphdr *ip4 = l3;

	return from_container_l3(ctx, false, l3, eth, &ip4->saddr, &ip4->daddr, ip4->protocol,
				 &l4, l4_off, &svc, NULL);
}

static __always_inline int handle_ipv4(struct __sk_buff *ctx, enum hook hook)
{
	__u32 mdir = hook == HOOK_FROM_CONTAINER ? METRIC_EGRESS : METRIC_INGRESS;
	struct l4info l4 = {};
	struct endpoint_info *dep;
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u32 hlen, tot, l4_off, l3_end;
	bool rewritten = false;
	struct lb_state lbs = {}; /* defined on every path: the verifier follows ones clang knows impossible */
	bool frag;
	int ret;

	if (!pull_headers(ctx, ETH_HLEN + sizeof(struct iphdr)))
		return drop(ctx, DROP_INVALID, mdir);
	asm volatile("" : "+r"(ctx)); /* no ctx+offset kept from dispatch: see reload_l3 */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN + sizeof(struct iphdr) > data_end)
		return drop(ctx, DROP_INVALID, mdir);
	eth = data;
	ip4 = data + ETH_HLEN;

	if (ip4->version != 4 || ip4->ihl < 5)
		return drop(ctx, DROP_INVALID, mdir);
	hlen = ip4->ihl * 4;
	tot = bpf_ntohs(ip4->tot_len);
	if (tot < hlen || ETH_HLEN + tot > ctx->len)
		return drop(ctx, DROP_INVALID, mdir);
	frag = ip4->frag_off & bpf_htons(0x3FFF);
	l4_off = ETH_HLEN + hlen;
	l3_end = ETH_HLEN + tot;

	if (hook == HOOK_FROM_NETDEV) {
		/* Underlay ingress: only traffic for a local pod is ours. */
		/* Copies of the addresses (one pair, fewer stack slots). */
		__u32 s4 = ip4->saddr, d4 = ip4->daddr;

		/* A masquerade address: the reverse SNAT first (snat_node.h). */
		dep = snat_is_node4(d4) ? NULL : lookup_ep4(ip4->daddr);
		if ((!dep || (dep->flags & ENDPOINT_F_HOST)) && snat_enabled(false)) {
			__u64 packed = (__u64)ip4->protocol << 32 | l3_end << 16 | l4_off;

			ret = netdev_rev_snat4(ctx, &s4, &d4,
					       packed | (frag ? SNAT_REV_FRAG4 : 0), &dep);
			if (ret == SNAT_NODEPORT_REV)
				return netdev_nodeport_reply(ctx, false, &s4, packed);
			if (ret != SNAT_NOT_OURS) {
				if (ret != SNAT_TO_POD)
					return ret;
				if (!reload_l3(ctx, false, &eth, (void **)&ip4))
					return drop(ctx, DROP_INVALID, mdir);
			} else if (snat_is_node4(d4)) {
				/* Asked again, not kept: from-netdev's stack is full. */
				dep = lookup_ep4(d4); /* the lookup skipped above */
			}
		}
		if (!dep || (dep->flags & ENDPOINT_F_HOST)) {
			__u8 proto = ip4->protocol;

			if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
				return TC_ACT_OK;
			/* A fragment whose datagram is unknown is the stack's. */
			if (frag)
				ret = frag4_l4(ctx, ip4, &l4_off, l3_end, &l4, mdir);
			else
				ret = extract_l4(ctx, proto, l4_off, l3_end, &l4);
			if (ret < 0)
				return TC_ACT_OK;
			return netdev_nodeport(ctx, false, &s4, &d4, &l4, (__u32)proto << 16 | l4_off);
		}
		if (ip4->ttl <= 1)
			return TC_ACT_OK; /* the stack answers with time exceeded */
		if (CONFIG.redirect_peer) {
			/* The source identity only matters to a new connection:
			 * pod_ingress resolves it after conntrack. */
			if (frag)
				ret = frag4_l4(ctx, ip4, &l4_off, l3_end, &l4, mdir);
			else
				ret = extract_l4(ctx, ip4->protocol, l4_off, l3_end, &l4);
			if (ret < 0)
				return drop(ctx, ret, mdir);
			ret = pod_ingress(ctx, false, &ip4->saddr, &ip4->daddr, ip4->protocol, &l4,
					  l4_off, dep, IDENTITY_FROM_IPCACHE, &rewritten, 0, true, true);
			if (ret < 0)
				return drop(ctx, ret, mdir);
			if (rewritten && !reload_l3(ctx, false, &eth, (void **)&ip4))
				return drop(ctx, DROP_INVALID, mdir);
		}
		return netdev_deliver(ctx, false, ip4, eth, dep, &ip4->saddr);
	}

	/* A later fragment leaves with l4_off 0: no L4 header (frag.h). */
	if (frag)
		ret = frag4_l4(ctx, ip4, &l4_off, l3_end, &l4, mdir);
	else
		ret = extract_l4(ctx, ip4->protocol, l4_off, l3_end, &l4);
	if (ret < 0)
		return drop(ctx, ret, mdir);
	if (hook == HOOK_TO_CONTAINER)
		return to_container_l3(ctx, false, &ip4->saddr, &ip4->daddr, ip4->protocol, &l4,
				       l4_off);
	ret = from_container_l3(ctx, false, ip4, eth, &ip4->saddr, &ip4->daddr, ip4->protocol,
				&l4, l4_off, NULL, &lbs);
	if (ret != LB_TRANSLATED)
		return ret;
	/* A service connection, now to its backend: once more, translated. */
	return svc_pass_call(ctx, false, &l4, l4_off, 0, &lbs);
}

static __always_inline int handle_ipv6(struct __sk_buff *ctx, enum hook hook)
{
	__u32 mdir = hook == HOOK_FROM_CONTAINER ? METRIC_EGRESS : METRIC_INGRESS;
	struct l4info l4 = {};
	struct endpoint_info *dep;
	__u32 saddr[4], daddr[4];
	void *data, *data_end;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u32 l4_off, l3_end;
	bool rewritten = false;
	struct lb_state lbs = {}; /* defined on every path: the verifier follows ones clang knows impossible */
	__u8 nexthdr;
	int ret;

	if (!pull_headers(ctx, ETH_HLEN + sizeof(struct ipv6hdr)))
		return drop(ctx, DROP_INVALID, mdir);
	asm volatile("" : "+r"(ctx)); /* no ctx+offset kept from dispatch: see reload_l3 */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN + sizeof(struct ipv6hdr) > data_end)
		return drop(ctx, DROP_INVALID, mdir);
	eth = data;
	ip6 = data + ETH_HLEN;
	if (ip6->version != 6)
		return drop(ctx, DROP_INVALID, mdir);
	l4_off = ETH_HLEN + sizeof(struct ipv6hdr);
	l3_end = l4_off + bpf_ntohs(ip6->payload_len);
	if (l3_end > ctx->len)
		return drop(ctx, DROP_INVALID, mdir);
	__builtin_memcpy(saddr, &ip6->saddr, 16);
	__builtin_memcpy(daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	/* Multicast (ff00::/8: MLD, solicited-node NDP, router discovery) is
	 * link-local control traffic for the host or the pod, never a pod flow. */
	if ((daddr[0] & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000))
		return TC_ACT_OK;

	if (hook == HOOK_FROM_NETDEV) {
		dep = lookup_ep6(daddr);
		if ((!dep || (dep->flags & ENDPOINT_F_HOST)) && snat_enabled(true)) {
			__u32 off = l4_off;
			__u8 nh = nexthdr;

			ret = ipv6_skip_exthdrs(ctx, l3_end, &nh, &off);
			/* A fragment header: the fragment's turn is in snat_rev. */
			ret = (ret < 0 && ret != DROP_FRAG_NOSUPPORT) ?
				      SNAT_NOT_OURS :
				      netdev_rev_snat6(ctx, saddr, daddr,
						       (__u64)nh << 32 | l3_end << 16 | off, &dep);
			if (ret == SNAT_NODEPORT_REV)
				return netdev_nodeport_reply(ctx, true, saddr,
							     (__u64)nh << 32 | l3_end << 16 | off);
			if (ret != SNAT_NOT_OURS) {
				if (ret != SNAT_TO_POD)
					return ret;
				if (!reload_l3(ctx, true, &eth, (void **)&ip6))
					return drop(ctx, DROP_INVALID, mdir);
				__builtin_memcpy(daddr, &ip6->daddr, 16);
			}
		}
		if (!dep || (dep->flags & ENDPOINT_F_HOST)) {
			ret = ipv6_skip_exthdrs(ctx, l3_end, &nexthdr, &l4_off);
			if (ret == DROP_FRAG_NOSUPPORT) {
				/* As for IPv4: an unknown datagram is the stack's. */
				if (frag6_l4(ctx, saddr, daddr, &nexthdr, &l4_off, l3_end, &l4,
					     mdir) < 0 ||
				    (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP))
					return TC_ACT_OK;
			} else if (ret < 0 || (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP) ||
				   extract_l4(ctx, nexthdr, l4_off, l3_end, &l4) < 0) {
				return TC_ACT_OK;
			}
			return netdev_nodeport(ctx, true, saddr, daddr, &l4, (__u32)nexthdr << 16 | l4_off);
		}
		if (ip6->hop_limit <= 1)
			return TC_ACT_OK;
		if (CONFIG.redirect_peer) {
			ret = ipv6_skip_exthdrs(ctx, l3_end, &nexthdr, &l4_off);
			if (ret == 0)
				ret = extract_l4(ctx, nexthdr, l4_off, l3_end, &l4);
			else if (ret == DROP_FRAG_NOSUPPORT)
				ret = frag6_l4(ctx, saddr, daddr, &nexthdr, &l4_off, l3_end, &l4,
					       mdir);
			if (ret < 0)
				return drop(ctx, ret, mdir);
			if (!l4.ndp) {
				ret = pod_ingress(ctx, true, saddr, daddr, nexthdr, &l4, l4_off, dep,
						  IDENTITY_FROM_IPCACHE, &rewritten, 0, true, true);
				if (ret < 0)
					return drop(ctx, ret, mdir);
				if (rewritten && !reload_l3(ctx, true, &eth, (void **)&ip6))
					return drop(ctx, DROP_INVALID, mdir);
			}
		}
		return netdev_deliver(ctx, true, ip6, eth, dep, saddr);
	}

	ret = ipv6_skip_exthdrs(ctx, l3_end, &nexthdr, &l4_off);
	if (ret == 0)
		ret = extract_l4(ctx, nexthdr, l4_off, l3_end, &l4);
	else if (ret == DROP_FRAG_NOSUPPORT) /* l4_off 0 after: a later fragment */
		ret = frag6_l4(ctx, saddr, daddr, &nexthdr, &l4_off, l3_end, &l4, mdir);
	if (ret < 0)
		return drop(ctx, ret, mdir);
	if (l4.ndp)
		return TC_ACT_OK;
	if (hook == HOOK_TO_CONTAINER)
		return to_container_l3(ctx, true, saddr, daddr, nexthdr, &l4, l4_off);
	ret = from_container_l3(ctx, true, ip6, eth, saddr, daddr, nexthdr, &l4, l4_off, NULL,
				&lbs);
	if (ret != LB_TRANSLATED)
		return ret;
	return svc_pass_call(ctx, true, &l4, l4_off, nexthdr, &lbs);
}

/* ---- programs ----------------------------------------------------------- */

static __always_inline int dispatch(struct __sk_buff *ctx, enum hook hook)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__be16 proto;

	/* Shorter than an Ethernet header: not IP we could parse. */
	if (data + ETH_HLEN > data_end)
		return drop(ctx, DROP_INVALID,
			    hook == HOOK_FROM_CONTAINER ? METRIC_EGRESS : METRIC_INGRESS);
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_IP))
		return handle_ipv4(ctx, hook);
	if (proto == bpf_htons(ETH_P_IPV6))
		return handle_ipv6(ctx, hook);
	/* ARP and every other protocol pass untouched. */
	return TC_ACT_OK;
}

/* Host-side veth ingress: traffic leaving the pod. */
SEC("tc")
int from_container(struct __sk_buff *ctx)
{
	int ret;

	events_init(ctx);
	trace_receive(ctx, HOOK_FROM_CONTAINER);
	ret = dispatch(ctx, HOOK_FROM_CONTAINER);
	if (ret == LB_TRANSLATED) {
		/* A service connection's second pass (svc_pass_call). */
		bpf_tail_call(ctx, &podnet_calls, CALL_FROM_CONTAINER_SVC);
		ret = drop(ctx, DROP_MISSED_TAIL_CALL, METRIC_EGRESS);
	}
	return trace_verdict(ctx, HOOK_FROM_CONTAINER, ret);
}

/* from-container's second pass of a service connection, tail-called by
 * from_container (svc_pass_call); never attached. */
SEC("tc")
int from_container_svc(struct __sk_buff *ctx)
{
	__u32 zero = 0;
	struct svc_pass *p = bpf_map_lookup_elem(&podnet_svc_scratch, &zero);
	int ret;

	if (!p)
		ret = drop(ctx, DROP_MISSED_TAIL_CALL, METRIC_EGRESS);
	else if (p->v6)
		ret = svc_pass_l3(ctx, true, p);
	else
		ret = svc_pass_l3(ctx, false, p);
	return trace_verdict(ctx, HOOK_FROM_CONTAINER, ret);
}

/* Host-side veth egress: traffic entering the pod (from the stack or
 * redirected by from_container / from_netdev); ingress policy. */
SEC("tc")
int to_container(struct __sk_buff *ctx)
{
	events_init(ctx);
	return trace_verdict(ctx, HOOK_TO_CONTAINER, dispatch(ctx, HOOK_TO_CONTAINER));
}

/* Underlay ingress: deliver traffic for local pods directly. */
SEC("tc")
int from_netdev(struct __sk_buff *ctx)
{
	events_init(ctx);
	trace_receive(ctx, HOOK_FROM_NETDEV);
	return trace_verdict(ctx, HOOK_FROM_NETDEV, dispatch(ctx, HOOK_FROM_NETDEV));
}

/* Underlay egress: masquerade of local pods' traffic (snat.h). */
SEC("tc")
int to_netdev(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (data + ETH_HLEN > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return snat_enabled(false) ? snat_to_netdev4(ctx) : TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return snat_enabled(true) ? snat_to_netdev6(ctx) : TC_ACT_OK;
	return TC_ACT_OK;
}

/* Baseline for benchmarks: does nothing. */
SEC("tc")
int tc_pass(struct __sk_buff *ctx)
{
	return TC_ACT_OK;
}

/* Reference for benchmarks: the part of conntrack no datapath can skip.
 * Parses Ethernet + IPv4 to the L4 ports and looks up the tuple of the
 * packet's flow as from_container's first lookup does (the flow opened by
 * the sender), in cilium_ct4_global for TCP, else cilium_ct_any4_global.
 * Nothing else: no checks beyond the verifier's, no update, no policy, no
 * forwarding. TC_ACT_OK when the entry exists, TC_ACT_SHOT otherwise. */
SEC("tc")
int tc_ct_lookup(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip4 = data + ETH_HLEN;
	union ct4_key key;
	__be16 *ports;

	if ((void *)(ip4 + 1) > data_end)
		return TC_ACT_SHOT;
	ports = (void *)ip4 + ip4->ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return TC_ACT_SHOT;
	key.w[0] = key_word(ip4->saddr, ip4->daddr);
	key.w[1] = tuple_tail(ports[1], ports[0], ip4->protocol, TUPLE_F_OUT);
	return ct4_find(ip4->protocol == IPPROTO_TCP, &key) ? TC_ACT_OK : TC_ACT_SHOT;
}

#include "bpf_sock.h"
