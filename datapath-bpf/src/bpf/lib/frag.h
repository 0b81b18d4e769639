// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * IP fragments: the L4 ports of a fragmented datagram, remembered from its
 * first fragment (the only one with an L4 header) in
 * cilium_ipv4_frag_datagrams / cilium_ipv6_frag_datagrams, so that its later
 * fragments get the same conntrack, policy and service treatment.
 *
 * Facts from Cilium (read, not copied):
 *  - 1.17, bpf/lib/ipv4.h: struct ipv4_frag_id {daddr, saddr, id, proto,
 *    pad} (12 bytes, packed) -> struct ipv4_frag_l4ports {sport, dport}
 *    (4 bytes, packed, network order), LRU hash pinned by name, sized by
 *    bpf-fragments-map-max (default 8192, pkg/defaults); a fragment is a
 *    packet with MF or an offset (frag_off & 0x3FFF), the first one has
 *    offset 0 (frag_off & 0x1FFF == 0). ipv4_handle_fragmentation: the first
 *    fragment's ports are stored (BPF_ANY) before conntrack and policy, a
 *    failed store counted as REASON_FRAG_PACKET_UPDATE (the packet goes on);
 *    a later fragment whose datagram is unknown is dropped with
 *    DROP_FRAG_NOT_FOUND; conntrack counts every fragment as
 *    REASON_FRAG_PACKET and selects no TCP action for a fragment without L4
 *    header (no flags to read).
 *  - 1.17, bpf/lib/lb.h lb4_xlate / __lb4_rev_nat: only a packet with an
 *    L4 header gets its L4 checksum and port rewritten; a later fragment
 *    gets its addresses (and IPv4 header checksum) only. The first
 *    fragment's L4 checksum covers the whole datagram, so its incremental
 *    update stays right for the reassembled datagram.
 *  - IPv6: Cilium 1.17 tracks none (ipv6_hdrlen returns DROP_FRAG_NOSUPPORT
 *    on a fragment header). Later Cilium (main, bpf/lib/ipv6.h and
 *    ipfrag.h) has cilium_ipv6_frag_datagrams: struct ipv6_frag_id {id
 *    (32 bits, the fragment header's), proto (the fragment header's next
 *    header), pad[3], saddr, daddr} (40 bytes, packed) -> struct
 *    ipv6_frag_l4ports {sport, dport}, same map type and size, a fragment
 *    being offset != 0 or M set (atomic fragments are no fragments). Its
 *    layout is followed here.
 *
 * podnet's additions: ICMP and ICMPv6 echo datagrams (a large ping) are
 * tracked too, their identifier stored in the port it takes in the tuple;
 * Cilium tracks TCP/UDP/SCTP only. Only a fragment header directly followed
 * by the L4 header (what Linux sends) is handled for IPv6.
 */
#ifndef PODNET_FRAG_H
#define PODNET_FRAG_H

#include "common.h"
#include "maps.h"
#include "metrics.h"
#include "parse.h"

/* Cilium's metrics reasons (bpf/lib/common.h, not drops) and drop reason. */
#define REASON_FRAG_PACKET 9
#define REASON_FRAG_PACKET_UPDATE 10
#define DROP_FRAG_NOT_FOUND -175

/* The fragment header of IPv6 (RFC 8200, 4.5). */
struct frag6_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | 2 reserved bits | M */
	__be32 id;
};

/* IPv4: a fragment (MF set or an offset): one test of the header, on the
 * fast path. */
static __always_inline bool frag4_is_fragment(const struct iphdr *ip4)
{
	return ip4->frag_off & bpf_htons(0x3FFF);
}

/* IPv4: a fragment other than the first (it has no L4 header). */
static __always_inline bool frag4_is_later(const struct iphdr *ip4)
{
	return ip4->frag_off & bpf_htons(0x1FFF);
}

/* Whether the ports of a datagram of protocol `proto` are worth
 * remembering: TCP and UDP, and ICMP echo (no error, no NDP). */
static __always_inline bool frag_trackable(__u8 proto, const struct l4info *l4)
{
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
		return true;
	return (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) && !l4->related && !l4->ndp;
}

/* The key of the datagram (IPv6 when `v6`, addresses one word each else). */
union frag_key {
	struct ipv4_frag_id k4;
	struct ipv6_frag_id k6;
};

static __always_inline void frag_key_init(bool v6, union frag_key *k, const __u32 *saddr,
					  const __u32 *daddr, __be32 id, __u8 proto)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (v6) {
		k->k6.id = id;
		k->k6.proto = proto;
		__builtin_memcpy(k->k6.saddr, saddr, 16);
		__builtin_memcpy(k->k6.daddr, daddr, 16);
	} else {
		k->k4.daddr = daddr[0];
		k->k4.saddr = saddr[0];
		k->k4.id = (__be16)id;
		k->k4.proto = proto;
	}
}

/* The L4 information of a fragment of a datagram from `saddr` to `daddr`
 * with fragment id `id` (IPv4: the 16-bit id) and upper-layer protocol
 * `proto`, counted as REASON_FRAG_PACKET in direction `dir`:
 *  - the first fragment (`first`): parsed from its L4 header at *l4_off
 *    (extract_l4), the ports remembered for the datagram;
 *  - a later one: the remembered ports, no TCP flags (ACTION_UNSPEC, as
 *    Cilium), and *l4_off set to 0, which tells the rewrites (nat.h) that
 *    there is no L4 header to touch.
 * 0 or DROP_* (DROP_FRAG_NOT_FOUND: a later fragment before the first, or
 * of a datagram not tracked). */
static __always_inline int frag_l4(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
				   const __u32 *daddr, __be32 id, __u8 proto, bool first,
				   __u32 *l4_off, __u32 l3_end, struct l4info *l4, __u32 dir)
{
	struct ipv4_frag_l4ports ports = {}, *p;
	union frag_key k;
	int ret;

	count(ctx, REASON_FRAG_PACKET, dir);
	frag_key_init(v6, &k, saddr, daddr, id, proto);
	if (first) {
		ret = extract_l4(ctx, proto, *l4_off, l3_end, l4);
		if (ret < 0 || !frag_trackable(proto, l4))
			return ret;
		/* The packet's source port is in tuple->dport (parse.h). */
		ports.sport = l4->tdport;
		ports.dport = l4->tsport;
		ret = v6 ? bpf_map_update_elem(&cilium_ipv6_frag_datagrams, &k.k6, &ports,
					       BPF_ANY) :
			   bpf_map_update_elem(&cilium_ipv4_frag_datagrams, &k.k4, &ports,
					       BPF_ANY);
		if (ret < 0)
			count(ctx, REASON_FRAG_PACKET_UPDATE, dir);
		return 0;
	}
	p = v6 ? bpf_map_lookup_elem(&cilium_ipv6_frag_datagrams, &k.k6) :
		 bpf_map_lookup_elem(&cilium_ipv4_frag_datagrams, &k.k4);
	if (!p)
		return DROP_FRAG_NOT_FOUND;
	l4->tdport = p->sport;
	l4->tsport = p->dport;
	l4->pkt_dport = (proto == IPPROTO_TCP || proto == IPPROTO_UDP) ? p->dport : 0;
	l4->tcp_flags = 0;
	l4->related = 0;
	l4->ndp = 0;
	l4->action = ACTION_UNSPEC;
	*l4_off = 0;
	return 0;
}

/* IPv4 fragment `ip4` (frag4_is_fragment), its L4 header (if any) at
 * *l4_off: see frag_l4. */
static __always_inline int frag4_l4(struct __sk_buff *ctx, const struct iphdr *ip4,
				    __u32 *l4_off, __u32 l3_end, struct l4info *l4, __u32 dir)
{
	__u32 s = ip4->saddr, d = ip4->daddr;

	return frag_l4(ctx, false, &s, &d, ip4->id, ip4->protocol,
		       !frag4_is_later(ip4), l4_off, l3_end, l4, dir);
}

/* IPv6: the packet whose extension header walk (ipv6_skip_exthdrs) stopped
 * at a fragment header at *l4_off. An atomic fragment (offset 0, no M) is
 * no fragment: its L4 header is parsed as usual. Otherwise see frag_l4.
 * On success *nexthdr is the upper-layer protocol and *l4_off its offset
 * (0 for a later fragment). 0 or DROP_*. */
static __always_inline int frag6_l4(struct __sk_buff *ctx, const __u32 *saddr, const __u32 *daddr,
				    __u8 *nexthdr, __u32 *l4_off, __u32 l3_end, struct l4info *l4,
				    __u32 dir)
{
	struct frag6_hdr fh;
	__u16 off_m;

	if (*l4_off + sizeof(fh) > l3_end || bpf_skb_load_bytes(ctx, *l4_off, &fh, sizeof(fh)) < 0)
		return DROP_INVALID;
	*l4_off += sizeof(fh);
	*nexthdr = fh.nexthdr;
	off_m = bpf_ntohs(fh.frag_off);
	if (!(off_m & 0xFFF9))
		return extract_l4(ctx, fh.nexthdr, *l4_off, l3_end, l4);
	return frag_l4(ctx, true, saddr, daddr, fh.id, fh.nexthdr, !(off_m & 0xFFF8), l4_off,
		       l3_end, l4, dir);
}

#endif /* PODNET_FRAG_H */
