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

/* One's complement sum folded to 16 bits. */
static __always_inline __u16 csum_fold32(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* What bpf_csum_diff(from, 16, to, 16, 0) returns, computed here: the
 * 32-bit one's complement sum of ~from and to. */
static __always_inline __u32 csum_diff16(const __u32 *from, const __u32 *to)
{
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		s += (__u32)~from[i] + (__u64)to[i];
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

/* Rewrites the destination (`dst`) or source address and port of a TCP or
 * UDP packet from `from`:`from_port` to `to`:`to_port` (IPv6 when `v6`,
 * else one word each; ports in network order). 0 or DROP_WRITE_ERROR.
 * Invalidates every pointer into the packet. `l4_off` 0: a fragment without
 * L4 header (frag.h), whose addresses (and IPv4 header checksum) only are
 * rewritten, as Cilium's lb4_xlate does without has_l4_header.
 *
 * The address and port are written directly, and so is the IPv4 header
 * checksum (always complete in the header); the L4 checksum goes through
 * bpf_l4_csum_replace, which knows how the skb carries it (a partial
 * checksum covers the pseudo header only, not the port). Helpers do the
 * writes when the headers are not in the linear part. */
static __always_inline int nat_rewrite(struct __sk_buff *ctx, bool v6, __u8 nexthdr, __u32 l4_off,
				       bool dst, const __u32 *from, const __u32 *to,
				       __be16 from_port, __be16 to_port)
{
	__u32 csum_off = l4_csum_off(nexthdr, l4_off);
	__u64 mangled0 = (!v6 && nexthdr == IPPROTO_UDP) ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 port_off = l4_off + (dst ? 2 : 0);
	void *data, *data_end;
	__u32 addr_off;
	__u32 old[4], new[4];
	__s64 diff;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		old[i] = (v6 || i == 0) ? from[i] : 0;
		new[i] = (v6 || i == 0) ? to[i] : 0;
	}
	if (!l4_off) {
		addr_off = ETH_HLEN + (v6 ? (dst ? offsetof(struct ipv6hdr, daddr) :
						   offsetof(struct ipv6hdr, saddr)) :
					    (dst ? offsetof(struct iphdr, daddr) :
						   offsetof(struct iphdr, saddr)));
		if ((!v6 && bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check),
						old[0], new[0], 4) < 0) ||
		    bpf_skb_store_bytes(ctx, addr_off, new, v6 ? 16 : 4, 0) < 0)
			return DROP_WRITE_ERROR;
		return 0;
	}
	/* As in reload_l3: keeps clang from computing &ctx->data once for
	 * every load of it (the verifier refuses a ctx pointer with an offset). */
	asm volatile("" : "+r"(ctx));
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (v6) {
		addr_off = ETH_HLEN + (dst ? offsetof(struct ipv6hdr, daddr) :
					     offsetof(struct ipv6hdr, saddr));
		diff = csum_diff16(old, new);
		if (port_off < 512 && data + port_off + 2 <= data_end &&
		    data + ETH_HLEN + sizeof(struct ipv6hdr) <= data_end) {
			__be16 *pp = data + port_off;

			if ((void *)(pp + 1) > data_end)
				return DROP_WRITE_ERROR;
			__builtin_memcpy(data + addr_off, new, 16);
			*pp = to_port;
		} else if (bpf_skb_store_bytes(ctx, addr_off, new, 16, 0) < 0 ||
			   bpf_skb_store_bytes(ctx, port_off, &to_port, 2, 0) < 0) {
			return DROP_WRITE_ERROR;
		}
		if (bpf_l4_csum_replace(ctx, csum_off, 0, diff, BPF_F_PSEUDO_HDR) < 0)
			return DROP_WRITE_ERROR;
	} else {
		struct iphdr *ip4 = data + ETH_HLEN;

		addr_off = ETH_HLEN + (dst ? offsetof(struct iphdr, daddr) :
					     offsetof(struct iphdr, saddr));
		if (port_off < 512 && data + port_off + 2 <= data_end &&
		    (void *)(ip4 + 1) <= data_end) {
			__u64 sum = (__u16)~ip4->check + (__u64)(__u16)~(old[0] >> 16) +
				    (__u16)~(old[0] & 0xffff) + (new[0] >> 16) + (new[0] & 0xffff);

			__be16 *pp = data + port_off;

			if ((void *)(pp + 1) > data_end)
				return DROP_WRITE_ERROR;
			ip4->check = (__sum16)~csum_fold32(sum);
			if (dst)
				ip4->daddr = new[0];
			else
				ip4->saddr = new[0];
			*pp = to_port;
		} else if (bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), old[0],
					       new[0], 4) < 0 ||
			   bpf_skb_store_bytes(ctx, addr_off, new, 4, 0) < 0 ||
			   bpf_skb_store_bytes(ctx, port_off, &to_port, 2, 0) < 0) {
			return DROP_WRITE_ERROR;
		}
		if (bpf_l4_csum_replace(ctx, csum_off, old[0], new[0],
					BPF_F_PSEUDO_HDR | mangled0 | 4) < 0)
			return DROP_WRITE_ERROR;
	}
	if (from_port != to_port &&
	    bpf_l4_csum_replace(ctx, csum_off, from_port, to_port, mangled0 | 2) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

#endif /* PODNET_NAT_H */
