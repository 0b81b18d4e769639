// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Policy verdict notifications: one per policy decision of a new
 * connection, when an entry decided or the endpoint enforces policy (a
 * default allow of an endpoint without policy is not logged, as Cilium's
 * bpf_host filters POLICY_MATCH_ALL allows).
 *
 * Facts taken from Cilium (bpf/lib/policy_log.h, bpf/lib/common.h and
 * pkg/monitor/datapath_policy.go of cilium/cilium 1.17, read, not copied):
 * struct policy_verdict_notify after NOTIFY_CAPTURE_HDR: remote_label,
 * verdict (s32: 0 allowed, a negative DROP_* denied), dst_port (host
 * order), proto, flags (dir:2 with 1 ingress 2 egress, ipv6:1,
 * match_type:3, audited:1), auth_type, pads; 32 bytes; source = the local
 * endpoint id. POLICY_MATCH_*: none 0, L3-only 1, L3-L4 2, L4-only 3,
 * all 4, L3-proto 5, proto-only 6.
 */
#ifndef PODNET_POLICY_LOG_H
#define PODNET_POLICY_LOG_H

#include "common.h"
#include "config.h"
#include "events.h"

#define POLICY_MATCH_NONE 0
#define POLICY_MATCH_L3_ONLY 1
#define POLICY_MATCH_L3_L4 2
#define POLICY_MATCH_L4_ONLY 3
#define POLICY_MATCH_ALL 4
#define POLICY_MATCH_L3_PROTO 5
#define POLICY_MATCH_PROTO_ONLY 6

struct policy_verdict_notify {
	struct notify_capture_hdr hdr;
	__u32 remote_label;
	__s32 verdict;
	__u16 dst_port;
	__u8 proto;
	__u8 flags;
	__u8 auth_type;
	__u8 pad1;
	__u16 pad2;
};

_Static_assert(sizeof(struct policy_verdict_notify) == 32, "policy_verdict_notify");

/* The match type of the policy key an entry was found under. */
static __always_inline __u8 policy_match_type(const struct policy_key *k)
{
	if (k->sec_label)
		return k->dport ? POLICY_MATCH_L3_L4 :
		       k->protocol ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_L3_ONLY;
	return k->dport ? POLICY_MATCH_L4_ONLY :
	       k->protocol ? POLICY_MATCH_PROTO_ONLY : POLICY_MATCH_ALL;
}

/* Writes the verdict (a subprogram: new connections only). `who`: remote
 * identity in bits 0-31, verdict 32-63; `what`: dst port (network order)
 * 0-15, protocol 16-23, flags 24-31, endpoint id 32-47. Global, verified
 * once (see drop_notify_out); returns 0, which no caller looks at. */
__noinline int policy_verdict_out(struct __sk_buff *ctx, __u64 who, __u64 what)
{
	struct policy_verdict_notify *msg = events_reserve(sizeof(*msg));

	if (!msg)
		return 0;
	msg->remote_label = (__u32)who;
	msg->verdict = (__s32)(who >> 32);
	msg->dst_port = bpf_ntohs((__be16)(what & 0xffff));
	msg->proto = (what >> 16) & 0xff;
	msg->flags = ((what >> 24) & 0xff) | ((ctx->protocol == bpf_htons(ETH_P_IPV6)) << 2);
	msg->auth_type = 0;
	msg->pad1 = 0;
	msg->pad2 = 0;
	events_capture(ctx, &msg->hdr, CILIUM_NOTIFY_POLICY_VERDICT, 0, (what >> 32) & 0xffff,
		       sizeof(*msg));
	bpf_ringbuf_submit(msg, 0);
	return 0;
}

static __always_inline void send_policy_verdict_notify(struct __sk_buff *ctx, __u32 remote,
						       __be16 dport, __u8 proto, __u8 egress,
						       __u16 ep_id, int verdict, __u8 match)
{
	__u8 dir = egress ? METRIC_EGRESS : METRIC_INGRESS;
	__u64 flags = (dir & 3) | ((match & 7) << 3);

	if (!CONFIG.events)
		return;
	policy_verdict_out(ctx, (__u64)remote | ((__u64)(__u32)verdict << 32),
			   (__u64)dport | ((__u64)proto << 16) | (flags << 24) |
				   ((__u64)ep_id << 32));
}

#endif /* PODNET_POLICY_LOG_H */
