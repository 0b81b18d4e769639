// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Forwarding: TTL and MAC rewrite (Cilium's ipv4_l3), redirects, and
 * skip-FIB forwarding with bpf_fib_lookup (Cilium: bpf/lib/fib.h).
 */
#ifndef PODNET_FORWARD_H
#define PODNET_FORWARD_H

#include "common.h"
#include "config.h"
#include "maps.h"
#include "metrics.h"

static __always_inline void ip4_dec_ttl(struct iphdr *ip4)
{
	__u32 check = ip4->check;

	check += bpf_htons(0x0100);
	ip4->check = (__sum16)(check + (check >= 0xFFFF));
	ip4->ttl--;
}

static __always_inline void rewrite_macs(struct ethhdr *eth, const __u8 *src, const __u8 *dst)
{
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
}

/* TTL (IPv4) or hop limit (IPv6) of the IP header at `l3`. */
static __always_inline __u8 l3_ttl(bool v6, const void *l3)
{
	return v6 ? ((const struct ipv6hdr *)l3)->hop_limit : ((const struct iphdr *)l3)->ttl;
}

/* Forwarding takes one off it (IPv4: and updates the checksum). */
static __always_inline void l3_dec_ttl(bool v6, void *l3)
{
	if (v6)
		((struct ipv6hdr *)l3)->hop_limit--;
	else
		ip4_dec_ttl(l3);
}

/* Records a redirect target in podnet_redir_trace (tests only). */
static __always_inline void trace_redirect(__u32 ifindex)
{
	if (CONFIG.trace_redirect) {
		__u32 zero = 0;
		__u32 *slot = bpf_map_lookup_elem(&podnet_redir_trace, &zero);

		if (slot)
			*slot = ifindex;
	}
}

static __always_inline int redirect_to(__u32 ifindex)
{
	trace_redirect(ifindex);
	return bpf_redirect(ifindex, 0);
}

static __always_inline int redirect_peer_to(__u32 ifindex)
{
	trace_redirect(ifindex);
	return bpf_redirect_peer(ifindex, 0);
}

/* Skip-FIB forwarding towards another node: the FIB's egress interface and
 * MACs, or the neighbour subsystem when the next hop is unresolved. The
 * stack decides anything else (no route, MTU, forwarding off). */
static __always_inline int fib_forward(struct __sk_buff *ctx, bool v6, void *l3,
				       struct ethhdr *eth, const __u32 *saddr,
				       const __u32 *daddr, __u8 nexthdr)
{
	struct bpf_fib_lookup fib = {};
	int ret;

	fib.l4_protocol = nexthdr;
	/* tot_len 0: the kernel checks the skb against the egress MTU itself,
	 * GSO-aware (a TSO super-packet is forwardable). */
	fib.tot_len = 0;
	fib.ifindex = ctx->ingress_ifindex;
	if (v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, daddr, 16);
	} else {
		fib.family = AF_INET;
		fib.tos = ((struct iphdr *)l3)->tos;
		fib.ipv4_src = saddr[0];
		fib.ipv4_dst = daddr[0];
	}
	ret = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		l3_dec_ttl(v6, l3);
		rewrite_macs(eth, fib.smac, fib.dmac);
		count(ctx, REASON_FORWARDED, METRIC_EGRESS);
		return redirect_to(fib.ifindex);
	}
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {};

		if (v6) {
			nh.nh_family = AF_INET6;
			__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
		} else {
			nh.nh_family = AF_INET;
			nh.ipv4_nh = fib.ipv4_dst;
		}
		l3_dec_ttl(v6, l3);
		count(ctx, REASON_FORWARDED, METRIC_EGRESS);
		trace_redirect(fib.ifindex);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	count(ctx, REASON_FORWARDED, METRIC_EGRESS);
	return TC_ACT_OK;
}

#endif /* PODNET_FORWARD_H */
