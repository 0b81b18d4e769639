// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Conntrack in Cilium's semantics and layouts (cilium_ct{4,6}_global,
 * cilium_ct_any{4,6}_global).
 *
 * Facts taken from Cilium's bpf/lib/conntrack.h (read, not copied):
 * ct_lookup4/6 (reverse lookup first, then the forward tuple), port order
 * in the tuple (packet ports are loaded at &tuple->dport, so tuple->dport
 * holds the packet's source port until the tuple is reversed), ICMP echo id
 * placement, __ct_lookup (closing/reopen, counters), ct_update_timeout (SYN
 * timeout until a non-SYN is seen), ct_create4/6 (created in the forward
 * direction, related ICMP entry in the "any" map).
 */
#ifndef PODNET_CONNTRACK_H
#define PODNET_CONNTRACK_H

#include "common.h"
#include "keys.h"
#include "config.h"
#include "maps.h"
#include "clock.h"
#include "parse.h"
#include "metrics.h"
#include "events.h"

/* Returns 1 when the packet is reported (Cilium's "monitor": the interval
 * passed or flags new in this direction), 0 otherwise. */
static __always_inline __u32 ct_update_timeout(struct ct_entry *entry, bool tcp, int dir,
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
		return 1;
	}
	return 0;
}

static __always_inline bool ct_entry_alive(const struct ct_entry *entry)
{
	return (entry->flags & (CT_F_RX_CLOSING | CT_F_TX_CLOSING)) !=
	       (CT_F_RX_CLOSING | CT_F_TX_CLOSING);
}

/* Updates the entry a packet hit (its lifetime, flags, counters); CT_NEW
 * when there is none. *reported (when not NULL) says whether conntrack
 * reports the packet (ct_update_timeout; a service entry never does). */
static __always_inline int __ct_lookup(struct ct_entry *entry, struct __sk_buff *ctx,
				       int action, int dir, bool is_tcp, __u8 tcp_flags,
				       __u32 *reported)
{
	__u32 now, report = 0;

	if (!entry)
		return CT_NEW;

	now = mono_now();
	if (ct_entry_alive(entry))
		report = ct_update_timeout(entry, is_tcp, dir, tcp_flags, now);
	/* Service entries count nothing (Cilium keeps no stats for
	 * CT_SERVICE): the flow's own entry counts its packets. */
	if (CONFIG.ct_accounting && dir != CT_SERVICE) {
		__sync_fetch_and_add(&entry->packets, 1);
		__sync_fetch_and_add(&entry->bytes, ctx->len);
	}

	if (action == ACTION_CREATE) {
		if ((entry->flags & (CT_F_RX_CLOSING | CT_F_TX_CLOSING)) &&
		    (tcp_flags & TCP_F_SYN)) {
			entry->flags &= ~(CT_F_RX_CLOSING | CT_F_TX_CLOSING);
			report |= ct_update_timeout(entry, is_tcp, dir, tcp_flags, now);
			if (reported)
				*reported = dir != CT_SERVICE ? report : 0;
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
	/* Nor do they report: the flow's entry decides whether the packet is
	 * traced (Cilium's lb4_local ignores its service lookup's "monitor"). */
	if (reported)
		*reported = dir != CT_SERVICE ? report : 0;
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
	__u32 report = ct_update_timeout(entry, is_tcp, dir, is_tcp ? TCP_F_SYN : 0, now);

	/* A service entry reports nothing: the flow's own entry does. */
	if (dir != CT_SERVICE)
		ct_events_new(ctx, entry, dir == CT_INGRESS, report);
	if (CONFIG.ct_accounting && dir != CT_SERVICE) {
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
				    const struct ct_entry *entry, __u64 flags)
{
	int err;

	if (v6) {
		if (is_tcp) {
			err = bpf_map_update_elem(&cilium_ct6_global, k, entry, flags);
			asm volatile("" : "+r"(err));
			return err;
		}
		return bpf_map_update_elem(&cilium_ct_any6_global, k, entry, flags);
	}
	if (is_tcp) {
		err = bpf_map_update_elem(&cilium_ct4_global, k, entry, flags);
		asm volatile("" : "+r"(err));
		return err;
	}
	return bpf_map_update_elem(&cilium_ct_any4_global, k, entry, flags);
}

/* Entries in the family's TCP or "any" map, -1 when the kernel cannot tell
 * (bpf_map_sum_elem_count, Linux 6.6, is absent: the verifier removes the
 * code behind bpf_ksym_exists then). */
static __always_inline __s64 ct_map_count(bool v6, bool is_tcp)
{
	if (!bpf_ksym_exists(bpf_map_sum_elem_count))
		return -1;
	if (v6)
		return bpf_map_sum_elem_count(is_tcp ? (const struct bpf_map *)&cilium_ct6_global :
						       (const struct bpf_map *)&cilium_ct_any6_global);
	return bpf_map_sum_elem_count(is_tcp ? (const struct bpf_map *)&cilium_ct4_global :
					       (const struct bpf_map *)&cilium_ct_any4_global);
}

/* The metrics reason counting creations in the family's TCP or "any" map
 * that made the kernel evict entries (see REASON_CT_EVICTED_TCP4). */
static __always_inline __u32 ct_evicted_reason(bool v6, bool is_tcp)
{
	if (v6)
		return is_tcp ? REASON_CT_EVICTED_TCP6 : REASON_CT_EVICTED_ANY6;
	return is_tcp ? REASON_CT_EVICTED_TCP4 : REASON_CT_EVICTED_ANY4;
}

/* Stores a new entry (its key absent: the caller's lookup missed, or the
 * insert is BPF_NOEXIST) and counts the creation under ct_evicted_reason
 * when the map did not grow by it. A full LRU map makes room by evicting
 * its least recently used entries (a batch of them, per CPU free list), so
 * the number of entries stays or falls across the insert; it grows by one
 * otherwise. Another CPU's insert or delete in between can hide or fake
 * one eviction: the counter tells that the map is evicting, not exactly
 * how often. Only new connections pay for it (two reads of a per-CPU sum). */
static __always_inline int ct_store_new(struct __sk_buff *ctx, bool v6, bool is_tcp,
					const void *k, const struct ct_entry *entry, __u64 flags,
					int dir)
{
	__s64 before = ct_map_count(v6, is_tcp);
	int err = ct_store(v6, is_tcp, k, entry, flags);

	if (err < 0)
		return err;
	if (before >= 0 && ct_map_count(v6, is_tcp) <= before)
		count(ctx, ct_evicted_reason(v6, is_tcp),
		      dir == CT_INGRESS ? METRIC_INGRESS : METRIC_EGRESS);
	return 0;
}

/* Creates the entry of a new connection under `key` and, for TCP and UDP,
 * the related ICMP entry (same addresses, no ports) in the "any" map, both
 * carrying `rev_nat_index` (network order; 0: not a service flow). The
 * related entry is shared by every flow between the same two addresses
 * and protocol: an existing one is refreshed (overwritten, as Cilium
 * does), which is no eviction. */
static __always_inline int ct_create(struct __sk_buff *ctx, bool v6, const void *key, int dir,
				     __u32 src_sec_id, __be16 rev_nat_index)
{
	__u8 nexthdr = ct_key_nexthdr(v6, key);
	/* The key's address words; the last word holds ports and flags. */
	int addr_words = v6 ? 4 : 1, i, err;
	const __u64 *w = key;
	struct ct_entry entry = {};
	union ct6_key icmp; /* room for either family */

	ct_fill_new(&entry, ctx, nexthdr == IPPROTO_TCP, dir, src_sec_id);
	entry.rev_nat_index = rev_nat_index;
	if (ct_store_new(ctx, v6, nexthdr == IPPROTO_TCP, key, &entry, BPF_ANY, dir) < 0)
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
	err = ct_store_new(ctx, v6, false, &icmp, &entry, BPF_NOEXIST, dir);
	if (err == -EEXIST)
		err = ct_store(v6, false, &icmp, &entry, BPF_ANY);
	if (err < 0)
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
	__u32 report = 0;
	int ret;

	if (forward_first) {
		ct_reverse(v6, tuple);
		e = ct_find(v6, is_tcp, tuple);
		ret = __ct_lookup(e, ctx, l4->action, dir, is_tcp, l4->tcp_flags, &report);
		if (ret != CT_NEW)
			goto found;
		ct_reverse(v6, tuple);
	}
	e = ct_find(v6, is_tcp, tuple);
	ret = __ct_lookup(e, ctx, l4->action, dir, is_tcp, l4->tcp_flags, &report);
	if (ret != CT_NEW) {
		ret = ct_settle(ret, ct_key_flags(v6, tuple));
		goto found;
	}
	ct_reverse(v6, tuple);
	if (forward_first)
		return CT_NEW;
	e = ct_find(v6, is_tcp, tuple);
	ret = __ct_lookup(e, ctx, l4->action, dir, is_tcp, l4->tcp_flags, &report);
	if (ret == CT_NEW)
		return CT_NEW;
found:
	if (e)
		ct_events_hit(ctx, e, dir == CT_INGRESS, ret, report);
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

#endif /* PODNET_CONNTRACK_H */
