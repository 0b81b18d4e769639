// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Masquerade (snat.h) of fragmented datagrams: which fragments are for the
 * NAT, the first fragment's ports for the later ones (frag.h's maps), and
 * the rewrite of a fragment without L4 header.
 *
 * Facts from Cilium 1.17 (read, not copied): bpf/lib/nat.h snat_v4_nat and
 * snat_v4_rev_nat load the ports with ipv4_load_l4_ports
 * (bpf/lib/ipv4.h ipv4_handle_fragmentation) on the packet as it reaches
 * the NAT, before it is translated: the datagram's key is the packet's own
 * {daddr, saddr, id, proto}; the first fragment's ports are stored
 * (BPF_ANY, a failed store counted as REASON_FRAG_PACKET_UPDATE), a later
 * fragment takes them, DROP_FRAG_NOT_FOUND when there are none. At egress
 * (snat_v4_needs_masquerade) ports, and so fragments, matter for packets
 * from a local endpoint only.
 * snat_v4_rewrite_headers with has_l4_header false rewrites the address and
 * the IPv4 header checksum only; the first fragment gets the port and the
 * L4 checksum too, whose field it carries for the whole datagram. No
 * REASON_FRAG_PACKET count here (Cilium counts it in conntrack, which
 * to-netdev does not run).
 *
 * So the two directions keep different entries for one datagram:
 *  - to-netdev: {peer, pod, id} -> the pod's ports, before translation (the
 *    forward mapping is found with them). from-container stored the same
 *    entry already unless a service translated the datagram there (its
 *    entry is for the frontend).
 *  - from-netdev: {node, peer, id} -> the ports as they arrive (the reverse
 *    mapping is found with them); the delivery to the pod afterwards stores
 *    the translated datagram's {pod, peer, id} as any fragment for a pod.
 *
 * podnet's choices: only a local pod's fragments are masqueraded (as
 * snat.h's flows); a later fragment from a pod whose datagram is unknown
 * is dropped (DROP_FRAG_NOT_FOUND, counted, as Cilium); at from-netdev one
 * for the node address may be the node's own traffic and goes to the stack
 * untouched (frag.h). A failed store of the first fragment's ports is not
 * counted here (the pod paths' store of the same datagram counts its
 * own). The backend replies of NodePort to a remote backend
 * are not translated when fragmented. IPv6 as IPv4, with the fragment
 * header's 32-bit id (frag.h); its header has no checksum, and the address
 * is stored with BPF_F_RECOMPUTE_CSUM so that a CHECKSUM_COMPLETE skb's sum
 * stays right.
 *
 * The steps (snat_frag4 / snat_frag6: the datagram's key; snat_frag_go:
 * its ports, a later fragment's mapping; snat_frag_xlate: that fragment's
 * rewrite) are global functions with their buffers in a per-CPU scratch
 * map, run back to back for one packet: the verifier checks each once,
 * not at every path of from-netdev that reaches them (as static
 * subprograms they took from-netdev past the verifier's 1M instructions),
 * and none has a stack frame: from-netdev's deepest call chain is at the
 * 512-byte limit already (its own 488 bytes here; 272 + a 240-byte step,
 * from which snat_rev runs, with the services merged). Only snat_frag_xlate
 * writes packet data, so the callers' packet pointers stay valid through
 * the others.
 */
#ifndef PODNET_SNAT_FRAG_H
#define PODNET_SNAT_FRAG_H

#include "common.h"
#include "keys.h"
#include "maps.h"
#include "metrics.h"
#include "frag.h"
#include "snat.h" /* which includes this file at its end, for its callers */

/* Room for the lookups' keys and what one step tells the next (per CPU). */
struct snat_frag_scratch {
	union frag_key k; /* the datagram */
	union ct6_key t; /* its NAT tuple */
	union endpoint_key_words ep; /* where the reply goes */
	struct ipv4_frag_l4ports ports;
	__u8 hdr[8]; /* the fragment header (IPv6), then the L4 header's start */
	/* A later fragment's rewrite (snat_frag_xlate): the address at `off`
	 * from `from` (IPv4) to `to`. */
	__u32 to[4];
	__u32 from;
	__u32 off;
	__u32 v6;
	/* The arguments, kept here across helper calls (few registers
	 * survive a call: values the compiler keeps on the stack instead
	 * would not fit). */
	__u64 info;
	__u32 proto;
	__u32 l4_off; /* the first fragment's L4 header */
	__u32 later;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct snat_frag_scratch);
	__uint(max_entries, 1);
} podnet_snat_frag_scratch SEC(".maps");

/* Its key, 0, in read-only memory rather than on the stack: every byte of
 * these steps' frames counts against from-netdev's 512 (the loader leaves
 * this section alone). */
const volatile __u32 SNAT_FRAG_SCRATCH_KEY SEC(".rodata.snat_frag") = 0;

static __always_inline struct snat_frag_scratch *snat_frag_scratch(void)
{
	return bpf_map_lookup_elem(&podnet_snat_frag_scratch, (const void *)&SNAT_FRAG_SCRATCH_KEY);
}

/* A later fragment's NAT, given its datagram's key in sc->k: the first
 * fragment's ports (DROP_FRAG_NOT_FOUND without), the mapping (forward at
 * egress; reverse, to a local pod, at ingress), its rewrite in sc.
 * SNAT_FRAG_DONE, 0 (no mapping: not masqueraded) or DROP_*. */
static __always_inline __s64 snat_frag_later(bool v6, struct snat_frag_scratch *sc)
{
	bool egress = sc->info & SNAT_FRAG_EGRESS;
	struct ipv4_frag_l4ports *p;
	struct endpoint_info *ep;
	const __u32 *a;
	void *state;

	p = v6 ? bpf_map_lookup_elem(&cilium_ipv6_frag_datagrams, &sc->k.k6) :
		 bpf_map_lookup_elem(&cilium_ipv4_frag_datagrams, &sc->k.k4);
	if (!p)
		return DROP_FRAG_NOT_FOUND;
	sc->ports = *p;
	if (!egress && !snat_port_in_range(bpf_ntohs(sc->ports.dport)))
		return 0;
	/* The NAT tuple {daddr, saddr, dport, sport, nexthdr, flags}, a word
	 * at a time (the barriers keep the compiler from holding them all in
	 * registers, which would not fit). */
	if (v6) {
		__builtin_memcpy(&sc->t.w[0], sc->k.k6.daddr, 16);
		asm volatile("" ::: "memory");
		__builtin_memcpy(&sc->t.w[2], sc->k.k6.saddr, 16);
		asm volatile("" ::: "memory");
		sc->t.w[4] = tuple_tail(sc->ports.dport, sc->ports.sport, sc->proto,
					egress ? TUPLE_F_OUT : TUPLE_F_IN);
	} else {
		sc->t.w[0] = key_word(sc->k.k4.daddr, sc->k.k4.saddr);
		asm volatile("" ::: "memory");
		sc->t.w[1] = tuple_tail(sc->ports.dport, sc->ports.sport, sc->proto,
					egress ? TUPLE_F_OUT : TUPLE_F_IN);
	}
	state = snat_find(v6, &sc->t);
	if (!state)
		return 0;
	a = snat_to_addr(state);
	if (!egress) {
		/* A pod's flows only: the rest of a NodePort reply's path
		 * (snat_nodeport_rev) needs the L4 header. */
		sc->ep.w[0] = key_word(a[0], v6 ? a[1] : 0);
		sc->ep.w[1] = v6 ? key_word(a[2], a[3]) : 0;
		sc->ep.tail = KEY_FIRST_BYTE32(v6 ? ENDPOINT_KEY_IPV6 : ENDPOINT_KEY_IPV4);
		ep = bpf_map_lookup_elem(&podnet_lxc, &sc->ep);
		if (!ep || (ep->flags & ENDPOINT_F_HOST))
			return 0;
	}
	__builtin_memcpy(sc->to, a, v6 ? 16 : 4);
	sc->v6 = v6;
	if (v6) {
		sc->off = ETH_HLEN + (egress ? offsetof(struct ipv6hdr, saddr) :
					       offsetof(struct ipv6hdr, daddr));
	} else {
		sc->off = ETH_HLEN + (egress ? offsetof(struct iphdr, saddr) :
					       offsetof(struct iphdr, daddr));
		sc->from = egress ? sc->k.k4.saddr : sc->k.k4.daddr;
	}
	return SNAT_FRAG_DONE | (__s64)sc->proto << 32;
}

/* The first fragment (its L4 header at `l4_off`): its ports remembered
 * under sc->k (TCP, UDP, ICMP echo: what frag.h remembers too).
 * SNAT_FRAG_FIRST with the protocol. */
static __always_inline __s64 snat_frag_first(struct __sk_buff *ctx, bool v6,
					    struct snat_frag_scratch *sc, __u32 l4_off)
{
	__u8 *h = sc->hdr;

	/* Unreadable: the NAT's own parse decides. */
	if (l4_off + 8 > ((sc->info >> 16) & 0xffff) || bpf_skb_load_bytes(ctx, l4_off, h, 8) < 0)
		return SNAT_FRAG_FIRST | (__s64)sc->proto << 32;
	if (sc->proto == IPPROTO_TCP || sc->proto == IPPROTO_UDP) {
		__builtin_memcpy(&sc->ports, h, 4);
	} else if (h[0] == (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO)) {
		__builtin_memcpy(&sc->ports.sport, h + 4, 2);
		sc->ports.dport = 0;
	} else if (h[0] == (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY)) {
		sc->ports.sport = 0;
		__builtin_memcpy(&sc->ports.dport, h + 4, 2);
	} else {
		return SNAT_FRAG_FIRST | (__s64)sc->proto << 32;
	}
	/* A failed store is not counted here (count()'s key would need
	 * stack this frame cannot have); the pod paths' own store of the
	 * datagram counts its failure (frag.h). */
	if (v6)
		bpf_map_update_elem(&cilium_ipv6_frag_datagrams, &sc->k.k6, &sc->ports, BPF_ANY);
	else
		bpf_map_update_elem(&cilium_ipv4_frag_datagrams, &sc->k.k4, &sc->ports, BPF_ANY);
	return SNAT_FRAG_FIRST | (__s64)sc->proto << 32;
}

static __always_inline bool snat_frag_proto_ok(bool v6, __u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP ||
	       proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
}

/* The IPv4 fragment on the packet (the caller checked frag4_is_fragment).
 * `info`: SNAT_FRAG_EGRESS (to-netdev; else from-netdev), the end of the
 * datagram's L3 part in bits 16-31, its L4 offset in bits 0-15. A global
 * function: verified once, not at every path that reaches it; it writes
 * no packet data, so its callers' packet pointers stay valid. Returns a
 * DROP_*, 0 (not the masquerade's: untouched), SNAT_FRAG_DONE (a later
 * fragment of a mapping: the caller has snat_frag_xlate rewrite it)
 * or SNAT_FRAG_FIRST (its L4 header is there); with either, the
 * upper-layer protocol in bits 32-39 (snat_frag_proto). SNAT_FRAG_MORE:
 * the datagram's key is ready, snat_frag_go says which of these. */
__noinline __s64 snat_frag4(struct __sk_buff *ctx, __u64 info)
{
	struct snat_frag_scratch *sc;
	struct iphdr *ip4;

	sc = snat_frag_scratch();
	if (!sc)
		return DROP_INVALID;
	sc->info = info;
	asm volatile("" : "+r"(ctx)); /* see reload_l3 */
	ip4 = (void *)(long)ctx->data + ETH_HLEN;
	if ((void *)(ip4 + 1) > (void *)(long)ctx->data_end)
		return DROP_INVALID;
	sc->proto = ip4->protocol;
	if (!snat_frag_proto_ok(false, sc->proto))
		return 0;
	sc->k.k4.daddr = ip4->daddr;
	sc->k.k4.saddr = ip4->saddr;
	sc->k.k4.id = ip4->id;
	sc->k.k4.proto = sc->proto;
	sc->k.k4.pad = 0;
	sc->v6 = 0;
	sc->later = frag4_is_later(ip4);
	sc->l4_off = info & 0xffff;
	return SNAT_FRAG_MORE;
}

/* IPv6: the packet's extension headers stop at a fragment header at the
 * offset in `info` (ipv6_skip_exthdrs' DROP_FRAG_NOSUPPORT); the L4 header,
 * if any, follows it (frag.h). An atomic fragment (offset 0, no M) is no
 * fragment: SNAT_FRAG_FIRST, nothing remembered. As snat_frag4. */
__noinline __s64 snat_frag6(struct __sk_buff *ctx, __u64 info)
{
	struct snat_frag_scratch *sc;
	struct frag6_hdr *fh;
	__u16 off_m;

	sc = snat_frag_scratch();
	if (!sc)
		return DROP_INVALID;
	sc->info = info;
	if ((info & 0xffff) + sizeof(*fh) > ((info >> 16) & 0xffff) ||
	    bpf_skb_load_bytes(ctx, info & 0xffff, sc->hdr, sizeof(*fh)) < 0)
		return DROP_INVALID;
	fh = (struct frag6_hdr *)sc->hdr;
	sc->proto = fh->nexthdr;
	if (!snat_frag_proto_ok(true, sc->proto))
		return 0;
	off_m = bpf_ntohs(fh->frag_off);
	if (!(off_m & 0xFFF9))
		return SNAT_FRAG_FIRST | (__s64)sc->proto << 32;
	sc->k.k6.id = fh->id;
	sc->k.k6.proto = sc->proto;
	sc->k.k6.pad[0] = 0;
	sc->k.k6.pad[1] = 0;
	sc->k.k6.pad[2] = 0;
	/* saddr then daddr, as in the IPv6 header. */
	if (bpf_skb_load_bytes(ctx, ETH_HLEN + offsetof(struct ipv6hdr, saddr), sc->k.k6.saddr,
			       32) < 0)
		return DROP_INVALID;
	fh = (struct frag6_hdr *)sc->hdr;
	sc->v6 = 1;
	sc->later = (bpf_ntohs(fh->frag_off) & 0xFFF8) != 0;
	sc->l4_off = (sc->info & 0xffff) + sizeof(*fh);
	return SNAT_FRAG_MORE;
}

/* The second step after SNAT_FRAG_MORE (a function of its own: two small
 * frames instead of one too large): the datagram's ports remembered or
 * taken, a later fragment's mapping found. Returns as snat_frag4. */
__noinline __s64 snat_frag_go(struct __sk_buff *ctx)
{
	struct snat_frag_scratch *sc = snat_frag_scratch();

	if (!sc)
		return DROP_INVALID;
	if (sc->later)
		return sc->v6 ? snat_frag_later(true, sc) : snat_frag_later(false, sc);
	return sc->v6 ? snat_frag_first(ctx, true, sc, sc->l4_off) :
			snat_frag_first(ctx, false, sc, sc->l4_off);
}

/* After SNAT_FRAG_DONE: the later fragment's address rewritten, with the
 * IPv4 header checksum (whose change cancels the address's in skb->csum);
 * IPv6 has none, the store updates skb->csum (CHECKSUM_COMPLETE). A global
 * function of its own (it changes packet data: its callers' packet
 * pointers are void after it, snat_frag4/6's not). 0 or DROP_WRITE_ERROR. */
__noinline int snat_frag_xlate(struct __sk_buff *ctx)
{
	struct snat_frag_scratch *sc;

	sc = snat_frag_scratch();
	if (!sc)
		return DROP_WRITE_ERROR;
	if (sc->v6)
		return bpf_skb_store_bytes(ctx, sc->off, sc->to, 16, BPF_F_RECOMPUTE_CSUM) < 0 ?
			       DROP_WRITE_ERROR :
			       0;
	if (bpf_l3_csum_replace(ctx, ETH_HLEN + offsetof(struct iphdr, check), sc->from, sc->to[0],
				4) < 0 ||
	    bpf_skb_store_bytes(ctx, sc->off, sc->to, 4, 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

#endif /* PODNET_SNAT_FRAG_H */
