// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * podnet pod datapath: native routing between pods, Cilium-compatible
 * conntrack, per-endpoint policy and per-reason metrics.
 *
 * Facts taken from Cilium (read, not copied), noted where used:
 *  - bpf/lib/common.h: struct ipv4_ct_tuple / ipv6_ct_tuple / ct_entry layout,
 *    TUPLE_F_* flags, endpoint_key / endpoint_info / ipcache_key /
 *    remote_endpoint_info shapes, METRIC_INGRESS / METRIC_EGRESS.
 *  - bpf/lib/conntrack.h: ct_lookup4/6 (reverse lookup first, then the forward
 *    tuple), port order in the tuple (packet ports are loaded at &tuple->dport,
 *    so tuple->dport holds the packet's source port until the tuple is
 *    reversed), ICMP echo id placement, __ct_lookup (closing/reopen, counters),
 *    ct_update_timeout (SYN timeout until a non-SYN is seen), ct_create4/6
 *    (created in the forward direction, related ICMP entry in the "any" map).
 *  - bpf/lib/drop_reasons.h (drop.h in older trees): DROP_* numbers; the
 *    metrics reason is -DROP_*, 0 is "forwarded".
 *  - node_config.h of Cilium's tests: CT_CONNECTION_LIFETIME_TCP 21600,
 *    CT_CONNECTION_LIFETIME_NONTCP 60, CT_SYN_TIMEOUT 60, CT_CLOSE_TIMEOUT 10,
 *    CT_REPORT_INTERVAL 5.
 *  - seed 003 (native routing walk-through): from-container / from-netdev /
 *    to-container responsibilities, ipv4_l3 (TTL + MAC rewrite), skip-FIB.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ICMP types (linux/icmp.h and linux/icmpv6.h pull in libc headers). */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* ---- constants ---------------------------------------------------------- */

#define TUPLE_F_OUT 0
#define TUPLE_F_IN 1
#define TUPLE_F_RELATED 2
#define TUPLE_F_SERVICE 4

/* ct_entry.flags bits, in Cilium's bit-field order. */
#define CT_F_RX_CLOSING (1 << 0)
#define CT_F_TX_CLOSING (1 << 1)
#define CT_F_NAT46 (1 << 2)
#define CT_F_LB_LOOPBACK (1 << 3)
#define CT_F_SEEN_NON_SYN (1 << 4)
#define CT_F_NODE_PORT (1 << 5)
#define CT_F_PROXY_REDIRECT (1 << 6)
#define CT_F_DSR_INTERNAL (1 << 7)
#define CT_F_FROM_L7LB (1 << 8)
#define CT_F_FROM_TUNNEL (1 << 10)

#define CT_CONNECTION_LIFETIME_TCP 21600
#define CT_CONNECTION_LIFETIME_NONTCP 60
#define CT_SYN_TIMEOUT 60
#define CT_CLOSE_TIMEOUT 10
#define CT_REPORT_INTERVAL 5

enum { CT_EGRESS = 0, CT_INGRESS = 1, CT_SERVICE = 2 };
enum { CT_NEW = 0, CT_ESTABLISHED, CT_REPLY, CT_RELATED, CT_REOPENED };
enum { ACTION_UNSPEC = 0, ACTION_CREATE, ACTION_CLOSE };

#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04

#define METRIC_INGRESS 1
#define METRIC_EGRESS 2

#define REASON_FORWARDED 0
#define DROP_INVALID_SIP -132
#define DROP_POLICY -133
#define DROP_INVALID -134
#define DROP_CT_INVALID_HDR -135
#define DROP_CT_UNKNOWN_PROTO -137
#define DROP_CT_CREATE_FAILED -155
#define DROP_INVALID_EXTHDR -156
#define DROP_FRAG_NOSUPPORT -157
#define DROP_POLICY_DENY -181

#define IDENTITY_WORLD 2

/* Identity carried from from-container / from-netdev to to-container in
 * skb->mark, as Cilium's MARK_MAGIC_IDENTITY does. */
#define MARK_MAGIC_MASK 0x0F00
#define MARK_MAGIC_IDENTITY 0x0F00

#define ENDPOINT_KEY_IPV4 1
#define ENDPOINT_KEY_IPV6 2

/* endpoint_info.flags */
#define ENDPOINT_F_HOST 0x1
#define ENDPOINT_F_INGRESS_ENFORCE 0x100
#define ENDPOINT_F_EGRESS_ENFORCE 0x200

#define NSEC_PER_SEC 1000000000ULL

/* ---- map layouts -------------------------------------------------------- */

struct ipv4_ct_tuple {
	__be32 daddr;
	__be32 saddr;
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

struct ipv6_ct_tuple {
	__u32 daddr[4];
	__u32 saddr[4];
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

struct ct_entry {
	__u64 reserved0;
	__u64 backend_id;
	__u64 packets;
	__u64 bytes;
	__u32 lifetime;
	__u16 flags;
	__be16 rev_nat_index;
	__u16 ifindex;
	__u8 tx_flags_seen;
	__u8 rx_flags_seen;
	__u32 src_sec_id;
	__u32 last_tx_report;
	__u32 last_rx_report;
};

_Static_assert(sizeof(struct ipv4_ct_tuple) == 14, "ipv4_ct_tuple");
_Static_assert(sizeof(struct ipv6_ct_tuple) == 38, "ipv6_ct_tuple");
_Static_assert(sizeof(struct ct_entry) == 56, "ct_entry");

struct endpoint_key {
	__u32 ip[4];
	__u8 family;
	__u8 key;
	__u16 cluster_id;
};

struct endpoint_info {
	__u32 ifindex;
	__u16 unused;
	__u16 lxc_id;
	__u32 flags;
	__u8 mac[6];
	__u16 pad_mac;
	__u8 node_mac[6];
	__u16 pad_node_mac;
	__u32 sec_id;
	__u32 parent_ifindex;
	__u32 pad[3];
};

_Static_assert(sizeof(struct endpoint_key) == 20, "endpoint_key");
_Static_assert(sizeof(struct endpoint_info) == 48, "endpoint_info");

struct ipcache_key {
	__u32 prefixlen; /* 32 + address prefix length */
	__u16 cluster_id;
	__u8 pad1;
	__u8 family;
	__u32 ip[4];
};

struct remote_endpoint_info {
	__u32 sec_identity;
	__u32 tunnel_endpoint[4];
	__u16 pad;
	__u8 key;
	__u8 flags;
};

_Static_assert(sizeof(struct ipcache_key) == 24, "ipcache_key");
_Static_assert(sizeof(struct remote_endpoint_info) == 24, "remote_endpoint_info");

/* Lookup keys on the stack are written in whole 8-byte words.
 *
 * The kernel hashes a key with 4-byte loads (jhash) and compares it with
 * 8-byte loads (memcmp) right after the program wrote it. A load that spans
 * two smaller stores still in the CPU's store buffer cannot be forwarded
 * from them and waits until they retire: with the tuple's ports written as
 * two 2-byte stores, that stall alone was a fifth of from-container's
 * established-flow cost. A load that lies inside one wider store forwards
 * fine, hence the words. KEY_BIT(off, width) is the bit position, in an
 * 8-byte word, of the field at byte offset `off`, per byte order;
 * key_word(lo, hi) puts two 32-bit values at offsets 0 and 4. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KEY_BIT(off, width) ((off) * 8)
#else
#define KEY_BIT(off, width) (64 - ((off) + (width)) * 8)
#endif
#define KEY_PUT(v, off, width) ((__u64)(v) << KEY_BIT(off, width))
#define KEY_GET(w, off, width) ((w) >> KEY_BIT(off, width))
/* A byte at the lowest address of a 4-byte word. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KEY_FIRST_BYTE32(v) ((__u32)(v))
#else
#define KEY_FIRST_BYTE32(v) ((__u32)(v) << 24)
#endif

static __always_inline __u64 key_word(__u32 lo, __u32 hi)
{
	return KEY_PUT(lo, 0, 4) | KEY_PUT(hi, 4, 4);
}

/* The last word of a CT tuple: dport, sport, nexthdr, flags (bytes 0-5). */
static __always_inline __u64 tuple_tail(__be16 dport, __be16 sport, __u8 nexthdr, __u8 flags)
{
	return KEY_PUT(dport, 0, 2) | KEY_PUT(sport, 2, 2) | KEY_PUT(nexthdr, 4, 1) |
	       KEY_PUT(flags, 5, 1);
}

/* The same tail with the ports swapped and TUPLE_F_IN flipped. */
static __always_inline __u64 tuple_tail_reversed(__u64 w)
{
	__u64 dport = KEY_GET(w, 0, 2) & 0xffff, sport = KEY_GET(w, 2, 2) & 0xffff;
	__u64 rest = w & (KEY_PUT(0xff, 4, 1) | KEY_PUT(0xff, 5, 1));

	return KEY_PUT(sport, 0, 2) | KEY_PUT(dport, 2, 2) | (rest ^ KEY_PUT(TUPLE_F_IN, 5, 1));
}

union ct4_key {
	struct ipv4_ct_tuple t; /* 14 bytes */
	__u64 w[2];
};

union ct6_key {
	struct ipv6_ct_tuple t; /* 38 bytes */
	__u64 w[5];
};

union endpoint_key_words {
	struct endpoint_key k; /* 20 bytes */
	struct {
		__u64 w[2];
		__u32 tail;
	};
};

union ipcache_key_words {
	struct ipcache_key k; /* 24 bytes */
	__u64 w[3];
};

struct policy_key {
	__u32 sec_label;
	__be16 dport;
	__u8 protocol;
	__u8 egress;
	__u16 endpoint_id;
	__u16 pad;
};

struct policy_entry {
	__u8 deny;
	__u8 pad0;
	__u16 pad1;
	__u32 pad2;
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct policy_key) == 12, "policy_key");
_Static_assert(sizeof(struct policy_entry) == 24, "policy_entry");

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

#define METRICS_SLOTS 1024 /* reason (u8) << 2 | direction (2 bits) */

/* Map sizes here are defaults; the loader sets them from its options. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct_any4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv6_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct6_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv6_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct_any6_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, 65535);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_lxc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct remote_endpoint_info);
	__uint(max_entries, 512000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_policy SEC(".maps");

/* Generation of podnet_lxc: the loader writes a fresh random non-zero value
 * after every change to the endpoints. A CT entry remembers that its flow's
 * destination is no local pod by holding the generation it was checked at
 * in reserved0 (unused by Cilium), so packets of established flows to other
 * nodes skip the endpoint lookup until the endpoints change. 0: no cache. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_lxc_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_metrics SEC(".maps");

/* Last redirect target per CPU, written only when CONFIG.trace_redirect is
 * set (tests); the verifier removes the code otherwise. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} podnet_redir_trace SEC(".maps");

struct pn_config {
	__u32 skip_fib;
	__u32 trace_redirect;
	/* Deliver to local pods with bpf_redirect_peer (straight into the pod's
	 * namespace, ingress policy applied before) instead of bpf_redirect to
	 * the host-side veth's egress, where to_container applies it. */
	__u32 redirect_peer;
	/* Count packets and bytes per flow in the CT entries (Cilium's
	 * CONNTRACK_ACCOUNTING): two atomic adds per packet. Off: the counters
	 * stay 0. */
	__u32 ct_accounting;
};

/* The only variable in .rodata: the loader writes it before load. */
const volatile struct pn_config CONFIG = {};

/* ---- helpers ------------------------------------------------------------ */

/* ns / NSEC_PER_SEC without a 64-bit divide (the JIT emits `div`, several
 * ns per packet): compilers' reciprocal for 1e9, the high 64 bits of
 * (ns >> 9) * 0x44B82FA09B5A53, shifted right by 11. BPF has no
 * multiply-high, so the product's high half is built from 32-bit halves:
 * with a, b < 2^55 no partial sum overflows. Exact for every u64: checked
 * against division at both sides of every second boundary below 2^32 s and
 * for 10^9 pseudo-random values. */
static __always_inline __u64 ns_to_sec(__u64 ns)
{
	__u64 a = ns >> 9, b = 0x44B82FA09B5A53ULL;
	__u64 al = a & 0xffffffff, ah = a >> 32, bl = b & 0xffffffff, bh = b >> 32;
	__u64 mid = ah * bl + al * bh + ((al * bl) >> 32);

	return (ah * bh + (mid >> 32)) >> 11;
}

/* The last second read from the clock on this CPU, and the tick (jiffies)
 * it was read in. Not pinned: a cache. */
struct mono_cache {
	__u64 jiffies;
	__u32 sec;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct mono_cache);
	__uint(max_entries, 1);
} podnet_clock SEC(".maps");

/* Monotonic seconds, the clock of Cilium's bpf_mono_now() in its ktime mode
 * (lifetimes in seconds of CLOCK_MONOTONIC, not in jiffies), read with the
 * coarse helper (tick resolution, far finer than the one-second unit,
 * without reading the clocksource).
 *
 * The coarse clock only moves at a tick, so it is read once per tick per
 * CPU: jiffies (read inline, no helper call) tell when a tick has passed.
 * The helper call cost about a tenth of an established flow's packet. A
 * reader racing the tick's own update (jiffies move just before the clock)
 * keeps the previous tick's second: `now` may lag by at most one tick, as
 * the coarse clock itself does. sec is written before jiffies, so a
 * program on this CPU that sees the new tick sees its second. */
static __always_inline __u32 mono_now(void)
{
	__u32 zero = 0;
	struct mono_cache *c = bpf_map_lookup_elem(&podnet_clock, &zero);
	__u64 tick = bpf_jiffies64();
	__u32 sec;

	if (c && c->jiffies == tick)
		return c->sec;
	sec = (__u32)ns_to_sec(bpf_ktime_get_coarse_ns());
	if (c) {
		c->sec = sec;
		c->jiffies = tick;
	}
	return sec;
}

static __always_inline void count(struct __sk_buff *ctx, __u32 reason, __u32 dir)
{
	__u32 idx = ((reason & 0xff) << 2) | (dir & 3);
	struct metrics_value *v = bpf_map_lookup_elem(&podnet_metrics, &idx);

	if (v) {
		v->count += 1;
		v->bytes += ctx->len;
	}
}

static __always_inline int drop(struct __sk_buff *ctx, int reason, __u32 dir)
{
	count(ctx, (__u32)(-reason), dir);
	return TC_ACT_SHOT;
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

static __always_inline void set_identity_mark(struct __sk_buff *ctx, __u32 identity)
{
	ctx->mark = ((identity & 0xFFFF) << 16) | MARK_MAGIC_IDENTITY |
		    ((identity >> 16) & 0xFF);
}

/* The identity carried in the mark, 0 when the mark carries none. */
static __always_inline __u32 identity_of_mark(__u32 mark)
{
	if ((mark & MARK_MAGIC_MASK) != MARK_MAGIC_IDENTITY)
		return 0;
	return (mark >> 16) | ((mark & 0xFF) << 16);
}

/* Consumes an identity mark (it is ours, not the pod's). */
static __always_inline void clear_identity_mark(struct __sk_buff *ctx)
{
	if ((ctx->mark & MARK_MAGIC_MASK) == MARK_MAGIC_IDENTITY)
		ctx->mark = 0;
}

/* endpoint_key written in words (see "Lookup keys" above): ip, then
 * family, key 0, cluster 0. */
static __always_inline struct endpoint_info *lookup_ep(__u64 ip_lo, __u64 ip_hi, __u8 family)
{
	union endpoint_key_words key;

	key.w[0] = ip_lo;
	key.w[1] = ip_hi;
	key.tail = KEY_FIRST_BYTE32(family);
	return bpf_map_lookup_elem(&podnet_lxc, &key);
}

static __always_inline struct endpoint_info *lookup_ep4(__be32 addr)
{
	return lookup_ep(key_word(addr, 0), 0, ENDPOINT_KEY_IPV4);
}

static __always_inline struct endpoint_info *lookup_ep6(const __u32 *addr)
{
	return lookup_ep(key_word(addr[0], addr[1]), key_word(addr[2], addr[3]),
			 ENDPOINT_KEY_IPV6);
}

/* ipcache_key in words: prefixlen, cluster 0, pad, family; then the address. */
static __always_inline __u32 ipcache_identity(__u32 prefixlen, __u8 family, __u64 ip_lo,
					      __u64 ip_hi)
{
	union ipcache_key_words key;
	struct remote_endpoint_info *info;

	key.w[0] = KEY_PUT(prefixlen, 0, 4) | KEY_PUT(family, 7, 1);
	key.w[1] = ip_lo;
	key.w[2] = ip_hi;
	info = bpf_map_lookup_elem(&podnet_ipcache, &key);
	return info ? info->sec_identity : IDENTITY_WORLD;
}

static __always_inline __u32 ipcache_identity4(__be32 addr)
{
	return ipcache_identity(32 + 32, ENDPOINT_KEY_IPV4, key_word(addr, 0), 0);
}

static __always_inline __u32 ipcache_identity6(const __u32 *addr)
{
	return ipcache_identity(32 + 128, ENDPOINT_KEY_IPV6, key_word(addr[0], addr[1]),
				key_word(addr[2], addr[3]));
}

/* The endpoint, or the ipcache identity, of an address of either family
 * (`v6` a constant at every call; IPv4: one word). */
static __always_inline struct endpoint_info *lookup_ep_of(bool v6, const __u32 *addr)
{
	return v6 ? lookup_ep6(addr) : lookup_ep4(addr[0]);
}

static __always_inline __u32 ipcache_identity_of(bool v6, const __u32 *addr)
{
	return v6 ? ipcache_identity6(addr) : ipcache_identity4(addr[0]);
}

static __always_inline __u64 endpoints_generation(void)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&podnet_lxc_gen, &zero);

	return gen ? *gen : 0;
}

/* The local pod an established flow's packet goes to (its destination
 * address `daddr`, IPv6 when `v6`), NULL when it goes to no local pod
 * (another node, the host, the world). That answer is cached in the CT
 * entry `e` (see podnet_lxc_gen). The generation is read before the lookup:
 * an endpoint added meanwhile comes with a new generation, so the stamp
 * this lookup leaves is never trusted by a later packet. */
static __always_inline struct endpoint_info *established_dst(struct ct_entry *e, bool v6,
							     const __u32 *daddr)
{
	__u64 gen = endpoints_generation();
	struct endpoint_info *ep;

	if (e && gen && e->reserved0 == gen)
		return NULL;
	ep = lookup_ep_of(v6, daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return ep;
	if (e && gen)
		e->reserved0 = gen;
	return NULL;
}

/* Policy: most specific entry wins; an entry with deny set drops. Without a
 * matching entry the packet passes unless the endpoint enforces policy in
 * that direction. Identity 0 / port 0 / protocol 0 are wildcards. */
static __always_inline struct policy_entry *policy_find(struct policy_key *k, __u32 identity,
							__be16 dport, __u8 proto)
{
	struct policy_entry *e;

	k->sec_label = identity;
	k->dport = dport;
	k->protocol = proto;
	e = bpf_map_lookup_elem(&podnet_policy, k);
	if (e)
		return e;
	k->dport = 0;
	e = bpf_map_lookup_elem(&podnet_policy, k);
	if (e)
		return e;
	k->protocol = 0;
	return bpf_map_lookup_elem(&podnet_policy, k);
}

static __always_inline int policy_check(struct __sk_buff *ctx, __u32 identity, __be16 dport,
					__u8 proto, __u8 egress, __u16 ep_id, bool enforce)
{
	struct policy_key k = { .egress = egress, .endpoint_id = ep_id };
	struct policy_entry *e;

	e = policy_find(&k, identity, dport, proto);
	if (!e)
		e = policy_find(&k, 0, dport, proto);
	if (e) {
		__sync_fetch_and_add(&e->packets, 1);
		__sync_fetch_and_add(&e->bytes, ctx->len);
		return e->deny ? DROP_POLICY_DENY : 0;
	}
	return enforce ? DROP_POLICY : 0;
}

/* ---- conntrack (Cilium semantics, see header comment) ------------------- */

static __always_inline void ct_update_timeout(struct ct_entry *entry, bool tcp, int dir,
					      __u8 seen_flags, __u32 now)
{
	__u32 lifetime = CT_CONNECTION_LIFETIME_NONTCP;
	__u8 accumulated;
	__u32 last_report;

	if (tcp) {
		if (!(seen_flags & TCP_F_SYN))
			entry->flags |= CT_F_SEEN_NON_SYN;
		lifetime = (entry->flags & CT_F_SEEN_NON_SYN) ? CT_CONNECTION_LIFETIME_TCP :
								 CT_SYN_TIMEOUT;
	}
	entry->lifetime = now + lifetime;

	if (dir == CT_INGRESS) {
		accumulated = entry->rx_flags_seen;
		last_report = entry->last_rx_report;
	} else {
		accumulated = entry->tx_flags_seen;
		last_report = entry->last_tx_report;
	}
	seen_flags |= accumulated;
	if (last_report + CT_REPORT_INTERVAL < now || accumulated != seen_flags) {
		if (dir == CT_INGRESS) {
			entry->rx_flags_seen = seen_flags;
			entry->last_rx_report = now;
		} else {
			entry->tx_flags_seen = seen_flags;
			entry->last_tx_report = now;
		}
	}
}

static __always_inline bool ct_entry_alive(const struct ct_entry *entry)
{
	return (entry->flags & (CT_F_RX_CLOSING | CT_F_TX_CLOSING)) !=
	       (CT_F_RX_CLOSING | CT_F_TX_CLOSING);
}

static __always_inline int __ct_lookup(struct ct_entry *entry, struct __sk_buff *ctx,
				       int action, int dir, bool is_tcp, __u8 tcp_flags)
{
	__u32 now;

	if (!entry)
		return CT_NEW;

	now = mono_now();
	if (ct_entry_alive(entry))
		ct_update_timeout(entry, is_tcp, dir, tcp_flags, now);
	if (CONFIG.ct_accounting) {
		__sync_fetch_and_add(&entry->packets, 1);
		__sync_fetch_and_add(&entry->bytes, ctx->len);
	}

	if (action == ACTION_CREATE) {
		if ((entry->flags & (CT_F_RX_CLOSING | CT_F_TX_CLOSING)) &&
		    (tcp_flags & TCP_F_SYN)) {
			entry->flags &= ~(CT_F_RX_CLOSING | CT_F_TX_CLOSING);
			ct_update_timeout(entry, is_tcp, dir, tcp_flags, now);
			return CT_REOPENED;
		}
	} else if (action == ACTION_CLOSE) {
		bool both_syns = (entry->rx_flags_seen & TCP_F_SYN) &&
				 (entry->tx_flags_seen & TCP_F_SYN);

		if (!both_syns && (tcp_flags & TCP_F_RST))
			entry->flags |= CT_F_RX_CLOSING | CT_F_TX_CLOSING;
		else if (dir == CT_INGRESS)
			entry->flags |= CT_F_RX_CLOSING;
		else
			entry->flags |= CT_F_TX_CLOSING;
		if (!ct_entry_alive(entry))
			entry->lifetime = now + CT_CLOSE_TIMEOUT;
	}
	return CT_ESTABLISHED;
}

static __always_inline int ct_settle(int ret, __u8 flags)
{
	if (ret == CT_ESTABLISHED || ret == CT_REOPENED)
		return (flags & TUPLE_F_RELATED) ? CT_RELATED : CT_REPLY;
	return ret;
}

static __always_inline void ct_fill_new(struct ct_entry *entry, struct __sk_buff *ctx,
					bool is_tcp, int dir, __u32 src_sec_id)
{
	__u32 now = mono_now();

	ct_update_timeout(entry, is_tcp, dir, is_tcp ? TCP_F_SYN : 0, now);
	if (CONFIG.ct_accounting) {
		entry->packets = 1;
		entry->bytes = ctx->len;
	}
	entry->src_sec_id = src_sec_id;
}

static __always_inline void ct_reverse4(union ct4_key *k)
{
	__u64 a = k->w[0];

	k->w[0] = key_word(KEY_GET(a, 4, 4), KEY_GET(a, 0, 4));
	k->w[1] = tuple_tail_reversed(k->w[1]);
}

static __always_inline void ct_reverse6(union ct6_key *k)
{
	__u64 d0 = k->w[0], d1 = k->w[1];

	k->w[0] = k->w[2];
	k->w[1] = k->w[3];
	k->w[2] = d0;
	k->w[3] = d1;
	k->w[4] = tuple_tail_reversed(k->w[4]);
}

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

/* ---- IPv4 --------------------------------------------------------------- */

enum hook { HOOK_FROM_CONTAINER, HOOK_TO_CONTAINER, HOOK_FROM_NETDEV };

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

/* The map is a constant at each lookup call: the verifier then inlines the
 * hash lookup (a map chosen at run time goes through the generic helper and
 * an indirect call, about a third of the fast path's cost). */
static __always_inline struct ct_entry *ct4_find(bool is_tcp, const union ct4_key *t)
{
	struct ct_entry *e;

	if (is_tcp) {
		e = bpf_map_lookup_elem(&cilium_ct4_global, t);
		/* An empty asm on one branch only keeps clang from merging the
		 * two calls into one with a run-time map operand. */
		asm volatile("" : "+r"(e));
		return e;
	}
	return bpf_map_lookup_elem(&cilium_ct_any4_global, t);
}

static __always_inline struct ct_entry *ct6_find(bool is_tcp, const union ct6_key *t)
{
	struct ct_entry *e;

	if (is_tcp) {
		e = bpf_map_lookup_elem(&cilium_ct6_global, t);
		asm volatile("" : "+r"(e)); /* see ct4_find */
		return e;
	}
	return bpf_map_lookup_elem(&cilium_ct_any6_global, t);
}

/* A CT key of either family (union ct4_key or ct6_key), for the code that
 * is the same for both: `v6` is a constant at every call, so each inlined
 * copy keeps its own family's code only, maps included. */
static __always_inline __u8 ct_key_nexthdr(bool v6, const void *k)
{
	return v6 ? ((const union ct6_key *)k)->t.nexthdr : ((const union ct4_key *)k)->t.nexthdr;
}

static __always_inline __u8 ct_key_flags(bool v6, const void *k)
{
	return v6 ? ((const union ct6_key *)k)->t.flags : ((const union ct4_key *)k)->t.flags;
}

static __always_inline void ct_reverse(bool v6, void *k)
{
	if (v6)
		ct_reverse6(k);
	else
		ct_reverse4(k);
}

static __always_inline struct ct_entry *ct_find(bool v6, bool is_tcp, const void *k)
{
	return v6 ? ct6_find(is_tcp, k) : ct4_find(is_tcp, k);
}

/* Stores `entry` under `k` in the family's TCP or "any" map (a constant
 * map per call, as in ct4_find). */
static __always_inline int ct_store(bool v6, bool is_tcp, const void *k,
				    const struct ct_entry *entry)
{
	int err;

	if (v6) {
		if (is_tcp) {
			err = bpf_map_update_elem(&cilium_ct6_global, k, entry, 0);
			asm volatile("" : "+r"(err));
			return err;
		}
		return bpf_map_update_elem(&cilium_ct_any6_global, k, entry, 0);
	}
	if (is_tcp) {
		err = bpf_map_update_elem(&cilium_ct4_global, k, entry, 0);
		asm volatile("" : "+r"(err));
		return err;
	}
	return bpf_map_update_elem(&cilium_ct_any4_global, k, entry, 0);
}

/* Creates the entry of a new connection under `key` and, for TCP and UDP,
 * the related ICMP entry (same addresses, no ports) in the "any" map. */
static __always_inline int ct_create(struct __sk_buff *ctx, bool v6, const void *key, int dir,
				     __u32 src_sec_id)
{
	__u8 nexthdr = ct_key_nexthdr(v6, key);
	/* The key's address words; the last word holds ports and flags. */
	int addr_words = v6 ? 4 : 1, i;
	const __u64 *w = key;
	struct ct_entry entry = {};
	union ct6_key icmp; /* room for either family */

	ct_fill_new(&entry, ctx, nexthdr == IPPROTO_TCP, dir, src_sec_id);
	if (ct_store(v6, nexthdr == IPPROTO_TCP, key, &entry) < 0)
		return DROP_CT_CREATE_FAILED;
	if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP)
		return 0;
#pragma unroll
	for (i = 0; i < 4; i++)
		if (i < addr_words)
			icmp.w[i] = w[i];
	icmp.w[addr_words] = tuple_tail(0, 0, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP,
					ct_key_flags(v6, key) | TUPLE_F_RELATED);
	entry.flags |= CT_F_SEEN_NON_SYN;
	if (ct_store(v6, false, &icmp, &entry) < 0)
		return DROP_CT_CREATE_FAILED;
	return 0;
}

/* Conntrack lookup of a packet's tuple (Cilium's order: the reverse tuple
 * first, then the forward one; `forward_first` swaps the order for the
 * egress fast path, where an established flow is the common case). On a
 * hit, *hit (when not NULL) is the entry found. */
static __always_inline int ct_lookup(struct __sk_buff *ctx, bool v6, void *tuple, int dir,
				     const struct l4info *l4, bool forward_first,
				     struct ct_entry **hit)
{
	bool is_tcp = ct_key_nexthdr(v6, tuple) == IPPROTO_TCP;
	struct ct_entry *e;
	int ret;

	if (forward_first) {
		ct_reverse(v6, tuple);
		e = ct_find(v6, is_tcp, tuple);
		ret = __ct_lookup(e, ctx, l4->action, dir, is_tcp, l4->tcp_flags);
		if (ret != CT_NEW)
			goto found;
		ct_reverse(v6, tuple);
	}
	e = ct_find(v6, is_tcp, tuple);
	ret = __ct_lookup(e, ctx, l4->action, dir, is_tcp, l4->tcp_flags);
	if (ret != CT_NEW) {
		ret = ct_settle(ret, ct_key_flags(v6, tuple));
		goto found;
	}
	ct_reverse(v6, tuple);
	if (forward_first)
		return CT_NEW;
	e = ct_find(v6, is_tcp, tuple);
	ret = __ct_lookup(e, ctx, l4->action, dir, is_tcp, l4->tcp_flags);
	if (ret == CT_NEW)
		return CT_NEW;
found:
	if (hit)
		*hit = e;
	return ret;
}

/* The tuple of a packet from `saddr` to `daddr` (IPv6 when `v6`, else one
 * word each) whose upper-layer protocol is `nexthdr`; `dir_flag`
 * TUPLE_F_OUT (ingress) or TUPLE_F_IN (egress). */
static __always_inline void ct_tuple_init(bool v6, void *key, const __u32 *saddr,
					  const __u32 *daddr, __u8 nexthdr,
					  const struct l4info *l4, __u8 dir_flag)
{
	__u64 *w = key;
	__u64 tail = tuple_tail(l4->tdport, l4->tsport, nexthdr,
				dir_flag | (l4->related ? TUPLE_F_RELATED : 0));

	if (v6) {
		w[0] = key_word(daddr[0], daddr[1]);
		w[1] = key_word(daddr[2], daddr[3]);
		w[2] = key_word(saddr[0], saddr[1]);
		w[3] = key_word(saddr[2], saddr[3]);
		w[4] = tail;
	} else {
		w[0] = key_word(daddr[0], saddr[0]);
		w[1] = tail;
	}
}

/* What to_container does for a packet entering endpoint `dep`: conntrack in
 * the ingress direction and, for a new connection, ingress policy with the
 * source identity: `identity`, or resolved here when the connection is new,
 * from the endpoints then the ipcache (0) or from the ipcache alone
 * (IDENTITY_FROM_IPCACHE: traffic from the underlay, whose source may not
 * claim a local pod's identity). `dep` NULL: looked up here, for new
 * connections only. Addresses as for ct_tuple_init. 0, DROP_*, or
 * NOT_ENDPOINT when the destination is no endpoint (nothing done). */
#define NOT_ENDPOINT 1
#define IDENTITY_FROM_IPCACHE 0xFFFFFFFF /* beyond Cilium's 24-bit identities */
static __always_inline int pod_ingress(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
				       const __u32 *daddr, __u8 nexthdr, const struct l4info *l4,
				       const struct endpoint_info *dep, __u32 identity)
{
	union ct6_key tuple; /* room for either family */
	struct endpoint_info *sep;
	int ret;

	ct_tuple_init(v6, &tuple, saddr, daddr, nexthdr, l4, TUPLE_F_OUT);
	if (ct_lookup(ctx, v6, &tuple, CT_INGRESS, l4, false, NULL) != CT_NEW)
		return 0;
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
	ret = policy_check(ctx, identity, l4->pkt_dport, nexthdr, 0, dep->lxc_id,
			   dep->flags & ENDPOINT_F_INGRESS_ENFORCE);
	if (ret < 0)
		return ret;
	return ct_create(ctx, v6, &tuple, CT_INGRESS, identity);
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
	return redirect_to(dep->ifindex);
}

/* to-container: ingress conntrack before the endpoint lookup (a reply or an
 * established flow needs no endpoint, only a new connection does, for its
 * ingress policy); an address that is no endpoint passes. */
static __always_inline int to_container_l3(struct __sk_buff *ctx, bool v6, const __u32 *saddr,
					   const __u32 *daddr, __u8 nexthdr,
					   const struct l4info *l4)
{
	int ret = pod_ingress(ctx, v6, saddr, daddr, nexthdr, l4, NULL,
			      identity_of_mark(ctx->mark));

	if (ret > 0)
		return TC_ACT_OK;
	clear_identity_mark(ctx);
	if (ret < 0)
		return drop(ctx, ret, METRIC_INGRESS);
	count(ctx, REASON_FORWARDED, METRIC_INGRESS);
	return TC_ACT_OK;
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

/* from-container: egress conntrack (anti-spoofing, egress policy and entry
 * creation for a new connection), then local delivery to another pod on
 * the node (TTL and MACs, redirect) or remote: skip-FIB or the stack. */
static __always_inline int from_container_l3(struct __sk_buff *ctx, bool v6, void *l3,
					     struct ethhdr *eth, const __u32 *saddr,
					     const __u32 *daddr, __u8 nexthdr,
					     const struct l4info *l4)
{
	union ct6_key tuple; /* room for either family */
	struct endpoint_info *dep, *sep;
	struct ct_entry *entry = NULL;
	__u32 identity = 0;
	int ret;

	ct_tuple_init(v6, &tuple, saddr, daddr, nexthdr, l4, TUPLE_F_IN);
	if (ct_lookup(ctx, v6, &tuple, CT_EGRESS, l4, true, &entry) == CT_NEW) {
		__u32 dst_identity;

		sep = lookup_ep_of(v6, saddr);
		if (!sep || sep->ifindex != ctx->ingress_ifindex)
			return drop(ctx, DROP_INVALID_SIP, METRIC_EGRESS);
		identity = sep->sec_id;
		dep = lookup_ep_of(v6, daddr);
		dst_identity = dep ? dep->sec_id : ipcache_identity_of(v6, daddr);
		ret = policy_check(ctx, dst_identity, l4->pkt_dport, nexthdr, 1, sep->lxc_id,
				   sep->flags & ENDPOINT_F_EGRESS_ENFORCE);
		if (ret < 0)
			return drop(ctx, ret, METRIC_EGRESS);
		ret = ct_create(ctx, v6, &tuple, CT_EGRESS, identity);
		if (ret < 0)
			return drop(ctx, ret, METRIC_EGRESS);
	} else {
		dep = established_dst(entry, v6, daddr);
	}

	/* Packet pointers are still valid: no helper above changes packet data. */
	if (dep && !(dep->flags & ENDPOINT_F_HOST)) {
		/* Local delivery: ipv4_l3 then redirect to the pod. */
		if (l3_ttl(v6, l3) <= 1)
			return TC_ACT_OK;
		if (CONFIG.redirect_peer) {
			ret = pod_ingress(ctx, v6, saddr, daddr, nexthdr, l4, dep, identity);
			if (ret < 0)
				return drop(ctx, ret, METRIC_INGRESS);
			l3_dec_ttl(v6, l3);
			rewrite_macs(eth, dep->node_mac, dep->mac);
			count(ctx, REASON_FORWARDED, METRIC_EGRESS);
			count(ctx, REASON_FORWARDED, METRIC_INGRESS);
			return redirect_peer_to(dep->ifindex);
		}
		l3_dec_ttl(v6, l3);
		rewrite_macs(eth, dep->node_mac, dep->mac);
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

static __always_inline int handle_ipv4(struct __sk_buff *ctx, enum hook hook)
{
	__u32 mdir = hook == HOOK_FROM_CONTAINER ? METRIC_EGRESS : METRIC_INGRESS;
	struct l4info l4 = {};
	struct endpoint_info *dep;
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u32 hlen, tot, l4_off, l3_end;
	bool frag;
	int ret;

	if (!pull_headers(ctx, ETH_HLEN + sizeof(struct iphdr)))
		return drop(ctx, DROP_INVALID, mdir);
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
		dep = lookup_ep4(ip4->daddr);
		if (!dep || (dep->flags & ENDPOINT_F_HOST))
			return TC_ACT_OK;
		if (frag)
			return drop(ctx, DROP_FRAG_NOSUPPORT, mdir);
		if (ip4->ttl <= 1)
			return TC_ACT_OK; /* the stack answers with time exceeded */
		if (CONFIG.redirect_peer) {
			/* The source identity only matters to a new connection:
			 * pod_ingress resolves it after conntrack. */
			ret = extract_l4(ctx, ip4->protocol, l4_off, l3_end, &l4);
			if (ret < 0)
				return drop(ctx, ret, mdir);
			ret = pod_ingress(ctx, false, &ip4->saddr, &ip4->daddr, ip4->protocol, &l4, dep,
					  IDENTITY_FROM_IPCACHE);
			if (ret < 0)
				return drop(ctx, ret, mdir);
		}
		return netdev_deliver(ctx, false, ip4, eth, dep, &ip4->saddr);
	}

	if (frag)
		return drop(ctx, DROP_FRAG_NOSUPPORT, mdir);
	ret = extract_l4(ctx, ip4->protocol, l4_off, l3_end, &l4);
	if (ret < 0)
		return drop(ctx, ret, mdir);
	if (hook == HOOK_TO_CONTAINER)
		return to_container_l3(ctx, false, &ip4->saddr, &ip4->daddr, ip4->protocol, &l4);
	return from_container_l3(ctx, false, ip4, eth, &ip4->saddr, &ip4->daddr, ip4->protocol,
				 &l4);
}

/* ---- IPv6 --------------------------------------------------------------- */

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
 *  - fragment header: DROP_FRAG_NOSUPPORT (no fragment tracking),
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
		return DROP_FRAG_NOSUPPORT;
	}
	*nexthdr = nh;
	*off = o;
	return 0;
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
	__u8 nexthdr;
	int ret;

	if (!pull_headers(ctx, ETH_HLEN + sizeof(struct ipv6hdr)))
		return drop(ctx, DROP_INVALID, mdir);
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
		if (!dep || (dep->flags & ENDPOINT_F_HOST))
			return TC_ACT_OK;
		if (ip6->hop_limit <= 1)
			return TC_ACT_OK;
		if (CONFIG.redirect_peer) {
			ret = ipv6_skip_exthdrs(ctx, l3_end, &nexthdr, &l4_off);
			if (ret < 0)
				return drop(ctx, ret, mdir);
			ret = extract_l4(ctx, nexthdr, l4_off, l3_end, &l4);
			if (ret < 0)
				return drop(ctx, ret, mdir);
			if (!l4.ndp) {
				ret = pod_ingress(ctx, true, saddr, daddr, nexthdr, &l4, dep,
						  IDENTITY_FROM_IPCACHE);
				if (ret < 0)
					return drop(ctx, ret, mdir);
			}
		}
		return netdev_deliver(ctx, true, ip6, eth, dep, saddr);
	}

	ret = ipv6_skip_exthdrs(ctx, l3_end, &nexthdr, &l4_off);
	if (ret < 0)
		return drop(ctx, ret, mdir);
	ret = extract_l4(ctx, nexthdr, l4_off, l3_end, &l4);
	if (ret < 0)
		return drop(ctx, ret, mdir);
	if (l4.ndp)
		return TC_ACT_OK;
	if (hook == HOOK_TO_CONTAINER)
		return to_container_l3(ctx, true, saddr, daddr, nexthdr, &l4);
	return from_container_l3(ctx, true, ip6, eth, saddr, daddr, nexthdr, &l4);
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
	return dispatch(ctx, HOOK_FROM_CONTAINER);
}

/* Host-side veth egress: traffic entering the pod (from the stack or
 * redirected by from_container / from_netdev); ingress policy. */
SEC("tc")
int to_container(struct __sk_buff *ctx)
{
	return dispatch(ctx, HOOK_TO_CONTAINER);
}

/* Underlay ingress: deliver traffic for local pods directly. */
SEC("tc")
int from_netdev(struct __sk_buff *ctx)
{
	return dispatch(ctx, HOOK_FROM_NETDEV);
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
