// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Packet parsing: the L4 ports and flags in Cilium's tuple convention,
 * pulling headers into linear data, and the IPv6 extension header walk.
 * Cilium: bpf/lib/conntrack.h (port placement, ICMP echo id), bpf/lib/ipv6.h
 * (ipv6_hdrlen).
 */
#ifndef PODNET_PARSE_H
#define PODNET_PARSE_H

#include "common.h"

/* L4 part of a tuple, Cilium's convention: for TCP/UDP the packet's
 * (sport, dport) are stored at (&tuple->dport, &tuple->sport); for ICMP echo
 * the identifier goes in dport (request) or sport (reply). */
struct l4info {
	__be16 tdport; /* tuple->dport */
	__be16 tsport; /* tuple->sport */
	__be16 pkt_dport; /* destination port for policy (0 for ICMP) */
	__u8 tcp_flags;
	__u8 related;
	__u8 ndp; /* ICMPv6 neighbour/router discovery: pass untouched */
	int action;
};

/* Reads `len` bytes at `off`: straight from the linear packet data when it
 * is there (the common case), else with bpf_skb_load_bytes. */
static __always_inline int load_l4(struct __sk_buff *ctx, __u32 off, __u8 *buf, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (off <= 14 + 60) {
		__u8 *p = data + off;

		if (len == 14 && (void *)(p + 14) <= data_end) {
			__builtin_memcpy(buf, p, 14);
			return 0;
		}
		if (len == 8 && (void *)(p + 8) <= data_end) {
			__builtin_memcpy(buf, p, 8);
			return 0;
		}
	}
	return bpf_skb_load_bytes(ctx, off, buf, len);
}

static __always_inline int extract_l4(struct __sk_buff *ctx, __u8 proto, __u32 off, __u32 l3_end,
				      struct l4info *l4)
{
	__u8 buf[14];

	if (proto == IPPROTO_TCP) {
		if (off + 14 > l3_end || load_l4(ctx, off, buf, 14) < 0)
			return DROP_CT_INVALID_HDR;
		__builtin_memcpy(&l4->tdport, &buf[0], 2);
		__builtin_memcpy(&l4->tsport, &buf[2], 2);
		l4->pkt_dport = l4->tsport;
		l4->tcp_flags = buf[13];
		l4->action = (buf[13] & (TCP_F_RST | TCP_F_FIN)) ? ACTION_CLOSE : ACTION_CREATE;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		if (off + 8 > l3_end || load_l4(ctx, off, buf, 8) < 0)
			return DROP_CT_INVALID_HDR;
		__builtin_memcpy(&l4->tdport, &buf[0], 2);
		__builtin_memcpy(&l4->tsport, &buf[2], 2);
		l4->pkt_dport = l4->tsport;
		l4->action = ACTION_CREATE;
		return 0;
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		__be16 id;
		__u8 type;

		if (off + 8 > l3_end || load_l4(ctx, off, buf, 8) < 0)
			return DROP_CT_INVALID_HDR;
		type = buf[0];
		__builtin_memcpy(&id, &buf[4], 2);
		l4->action = ACTION_CREATE;
		if (proto == IPPROTO_ICMP) {
			switch (type) {
			case ICMP_DEST_UNREACH:
			case ICMP_TIME_EXCEEDED:
			case ICMP_PARAMETERPROB:
				l4->related = 1;
				l4->action = ACTION_UNSPEC;
				break;
			case ICMP_ECHOREPLY:
				l4->tsport = id;
				l4->action = ACTION_UNSPEC;
				break;
			case ICMP_ECHO:
				l4->tdport = id;
				break;
			}
		} else {
			switch (type) {
			case ICMPV6_DEST_UNREACH:
			case ICMPV6_PKT_TOOBIG:
			case ICMPV6_TIME_EXCEED:
			case ICMPV6_PARAMPROB:
				l4->related = 1;
				l4->action = ACTION_UNSPEC;
				break;
			case ICMPV6_ECHO_REPLY:
				l4->tsport = id;
				l4->action = ACTION_UNSPEC;
				break;
			case ICMPV6_ECHO_REQUEST:
				l4->tdport = id;
				break;
			case 133: /* router solicitation */
			case 134: /* router advertisement */
			case 135: /* neighbour solicitation */
			case 136: /* neighbour advertisement */
			case 137: /* redirect */
				l4->ndp = 1;
				break;
			}
		}
		return 0;
	}
	return DROP_CT_UNKNOWN_PROTO;
}

/* Makes the first `len` bytes linear packet data (pulling them in when they
 * are not): false when the packet is shorter or the pull fails. The caller
 * reloads data/data_end and checks bounds again for the verifier. */
static __always_inline bool pull_headers(struct __sk_buff *ctx, __u32 len)
{
	if ((void *)(long)ctx->data + len <= (void *)(long)ctx->data_end)
		return true;
	return ctx->len >= len && bpf_skb_pull_data(ctx, len) >= 0;
}

/* IPv6 extension headers (Cilium's NEXTHDR_* in bpf/lib/ipv6.h). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_ESP 50
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60

/* Extension headers skipped before giving up (Cilium's IPV6_MAX_HEADERS). */
#define IPV6_MAX_HEADERS 4

/* Walks the extension headers after the fixed IPv6 header, the way Cilium's
 * ipv6_hdrlen() does (bpf/lib/ipv6.h in cilium/cilium; facts only): Hop-by-Hop,
 * Routing, Destination Options and AH are skipped (AH counts its length in
 * 4-byte units minus 2, the others in 8-byte units minus 1), at most
 * IPV6_MAX_HEADERS of them. On success *nexthdr is the upper-layer protocol
 * and *off its offset; ESP ends the walk (its payload is encrypted: the
 * caller sees protocol 50 and drops it as an unknown L4 protocol).
 * Returns 0 or a DROP_* code:
 *  - fragment header: DROP_FRAG_NOSUPPORT, with *nexthdr NEXTHDR_FRAGMENT
 *    and *off the fragment header's offset (for frag6_l4, frag.h),
 *  - "no next header": DROP_INVALID_EXTHDR (nothing to track),
 *  - a header that does not fit the payload: DROP_INVALID,
 *  - more than IPV6_MAX_HEADERS headers: DROP_INVALID_EXTHDR. */
static __always_inline int ipv6_skip_exthdrs(struct __sk_buff *ctx, __u32 l3_end, __u8 *nexthdr,
					     __u32 *off)
{
	__u8 nh = *nexthdr;
	__u32 o = *off;
	__u8 opt[2];
	int i;

#pragma unroll
	for (i = 0; i < IPV6_MAX_HEADERS; i++) {
		switch (nh) {
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_AUTH:
		case NEXTHDR_DEST:
			if (o + 8 > l3_end || bpf_skb_load_bytes(ctx, o, opt, 2) < 0)
				return DROP_INVALID;
			o += nh == NEXTHDR_AUTH ? ((__u32)opt[1] + 2) << 2 :
						  ((__u32)opt[1] + 1) << 3;
			if (o > l3_end)
				return DROP_INVALID;
			nh = opt[0];
			break;
		case NEXTHDR_FRAGMENT:
			*nexthdr = nh;
			*off = o;
			return DROP_FRAG_NOSUPPORT;
		case NEXTHDR_NONE:
			return DROP_INVALID_EXTHDR;
		default:
			*nexthdr = nh;
			*off = o;
			return 0;
		}
	}
	switch (nh) {
	case NEXTHDR_HOP:
	case NEXTHDR_ROUTING:
	case NEXTHDR_AUTH:
	case NEXTHDR_DEST:
	case NEXTHDR_NONE:
		return DROP_INVALID_EXTHDR;
	case NEXTHDR_FRAGMENT:
		*nexthdr = nh;
		*off = o;
		return DROP_FRAG_NOSUPPORT;
	}
	*nexthdr = nh;
	*off = o;
	return 0;
}

#endif /* PODNET_PARSE_H */
