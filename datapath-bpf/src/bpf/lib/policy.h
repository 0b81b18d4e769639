// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-endpoint policy (podnet_policy), decided per new connection.
 */
#ifndef PODNET_POLICY_H
#define PODNET_POLICY_H

#include "common.h"
#include "maps.h"
#include "policy_log.h"

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
		int verdict = e->deny ? DROP_POLICY_DENY : 0;

		__sync_fetch_and_add(&e->packets, 1);
		__sync_fetch_and_add(&e->bytes, ctx->len);
		send_policy_verdict_notify(ctx, identity, dport, proto, egress, ep_id, verdict,
					   policy_match_type(&k));
		return verdict;
	}
	if (enforce)
		send_policy_verdict_notify(ctx, identity, dport, proto, egress, ep_id, DROP_POLICY,
					   POLICY_MATCH_NONE);
	return enforce ? DROP_POLICY : 0;
}

#endif /* PODNET_POLICY_H */
