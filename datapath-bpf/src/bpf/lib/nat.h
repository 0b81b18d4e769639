// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Address and port translation of a packet's IP and TCP/UDP headers with
 * incremental checksum updates: the IPv4 header checksum, and the L4
 * checksum including its pseudo header (bpf_l3/l4_csum_replace, as Cilium's
 * bpf/lib/lb.h and csum.h do). A UDP/IPv4 checksum of 0 (none) stays 0.
 */
#ifndef PODNET_NAT_H
#define PODNET_NAT_H

#include "common.h"

/* Offset of the TCP or UDP checksum of the L4 header at `l4_off`. */
static __always_inline __u32 l4_csum_off(__u8 nexthdr, __u32 l4_off)
{
	return l4_off + (nexthdr == IPPROTO_TCP ? 16 : 6);
}

/* Rewrites the destination (`dst`) or source address and port of a TCP or
 * UDP packet from `from`:`from_port` to `to`:`to_port` (IPv6 when `v6`,
 * else one word each; ports in network order). 0 or DROP_WRITE_ERROR.
 * Invalidates every pointer into the packet. `l4_off` 0: a fragment without
 * L4 header (frag.h), whose addresses (and IPv4 header checksum) only are
 * rewritten, as Cilium's lb4_xlate does without has_l4_header. */
static __always_inline int nat_rewrite(struct __sk_buff *ctx, bool v6, __u8 nexthdr, __u32 l4_off,
				       bool dst, const __u32 *from, const __u32 *to,
				       __be16 from_port, __be16 to_port)
{
	__u32 csum_off = l4_csum_off(nexthdr, l4_off);
	__u64 mangled0 = (!v6 && nexthdr == IPPROTO_UDP) ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 addr_off;
	__u32 old[4], new[4];
	__s64 diff;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		old[i] = (v6 || i == 0) ? from[i] : 0;
		new[i] = (v6 || i == 0) ? to[i] : 0;
	}
	if (v6) {
		addr_off = ETH_HLEN + (dst ? offsetof(struct ipv6hdr, daddr) :
					     offsetof(struct ipv6hdr, saddr));
		diff = l4_off ? bpf_csum_diff(old, 16, new, 16, 0) : 0;
		if (diff < 0 ||
		    (l4_off && bpf_l4_csum_replace(ctx, csum_off, 0, diff, BPF_F_PSEUDO_HDR) < 0) ||
		    bpf_skb_store_bytes(ctx, addr_off, new, 16, 0) < 0)
			return DROP_WRITE_ERROR;
	} else {
		addr_off = ETH_HLEN + (dst ? offsetof(struct iphdr, daddr) :
					     offsetof(struct iphdr, saddr));
		if ((l4_off && bpf_l4_csum_replace(ctx, csum_off, old[0], new[0],
						  BPF_F_PSEUDO_HDR | mangled0 | 4) < 0) ||
		    bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), old[0],
					new[0], 4) < 0 ||
		    bpf_skb_store_bytes(ctx, addr_off, new, 4, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (l4_off && from_port != to_port) {
		if (bpf_l4_csum_replace(ctx, csum_off, from_port, to_port, mangled0 | 2) < 0 ||
		    bpf_skb_store_bytes(ctx, l4_off + (dst ? 2 : 0), &to_port, 2, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	return 0;
}

#endif /* PODNET_NAT_H */
