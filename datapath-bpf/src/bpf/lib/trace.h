// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Trace notifications at the observation points, with Cilium's monitor
 * aggregation (events.h: the levels, which the loader turns into
 * CONFIG.trace and CONFIG.flow_reports).
 *
 * Facts taken from Cilium (bpf/lib/trace.h and pkg/monitor/datapath_trace.go
 * of cilium/cilium 1.17, read, not copied): enum trace_point (to-endpoint 0,
 * to-proxy 1, to-host 2, to-stack 3, to-overlay 4, from-endpoint 5,
 * from-proxy 6, from-host 7, from-stack 8, from-overlay 9, from-network 10,
 * to-network 11) as the subtype; trace reasons new 0, established 1,
 * reply 2, related 3, unknown 5; struct trace_notify version 1 after
 * NOTIFY_CAPTURE_HDR: src_label, dst_label, dst_id (u16), reason (u8),
 * flags (bit 0 IPv6), ifindex, orig_ip (16 bytes); 48 bytes.
 * emit_trace_notify(): from aggregation level 1 no trace at the from-*
 * points, from level 3 ("medium", Cilium's default) none unless conntrack
 * reported the packet ("monitor" non-zero).
 */
#ifndef PODNET_TRACE_H
#define PODNET_TRACE_H

#include "common.h"
#include "config.h"
#include "events.h"

#define TRACE_TO_LXC 0
#define TRACE_TO_STACK 3
#define TRACE_FROM_LXC 5
#define TRACE_FROM_NETWORK 10
#define TRACE_TO_NETWORK 11

#define TRACE_REASON_UNKNOWN 5

struct trace_notify {
	struct notify_capture_hdr hdr;
	__u32 src_label;
	__u32 dst_label;
	__u16 dst_id;
	__u8 reason;
	__u8 flags;
	__u32 ifindex;
	__u32 orig_ip[4];
};

_Static_assert(sizeof(struct trace_notify) == 48, "trace_notify");

/* Writes the trace (a subprogram: only sampled packets call it). `info`:
 * observation point in bits 0-7, reason 8-15, destination endpoint 16-31.
 * Global, verified once (see drop_notify_out); returns 0, which no caller
 * looks at. */
__noinline int trace_notify_out(struct __sk_buff *ctx, __u32 info)
{
	struct trace_notify *msg = events_reserve(sizeof(*msg));

	if (!msg)
		return 0;
	msg->src_label = ctx->cb[CB_SRC_IDENTITY];
	msg->dst_label = ctx->cb[CB_DST_IDENTITY];
	msg->dst_id = info >> 16;
	msg->reason = (info >> 8) & 0xff;
	msg->flags = ctx->protocol == bpf_htons(ETH_P_IPV6) ? 1 : 0;
	msg->ifindex = ctx->ifindex;
	msg->orig_ip[0] = 0;
	msg->orig_ip[1] = 0;
	msg->orig_ip[2] = 0;
	msg->orig_ip[3] = 0;
	events_capture(ctx, &msg->hdr, CILIUM_NOTIFY_TRACE, info & 0xff, ctx->cb[CB_EGRESS_EP],
		       sizeof(*msg));
	bpf_ringbuf_submit(msg, 0);
	return 0;
}

/* A trace at `obs` (the caller decided that the level wants one). */
static __always_inline void send_trace_notify(struct __sk_buff *ctx, __u8 obs, __u8 reason,
					      __u16 dst_id)
{
	trace_notify_out(ctx, (__u32)obs | ((__u32)reason << 8) | ((__u32)dst_id << 16));
}

/* A redirect to local endpoint `ep_id` without its ingress conntrack here
 * (to-container runs it): the redirect's trace names the endpoint. */
static __always_inline void events_set_delivery(struct __sk_buff *ctx, __u16 ep_id)
{
	if (CONFIG.trace)
		ctx->cb[CB_INGRESS_EP] = ep_id;
}

/* The receive point of `hook` (to-container has none: the packet arrives
 * from the stack or a redirect); traced at level none only. */
static __always_inline void trace_receive(struct __sk_buff *ctx, enum hook hook)
{
	if (CONFIG.trace != PN_TRACE_EVERY)
		return;
	if (hook == HOOK_FROM_CONTAINER)
		send_trace_notify(ctx, TRACE_FROM_LXC, TRACE_REASON_UNKNOWN, 0);
	else if (hook == HOOK_FROM_NETDEV)
		send_trace_notify(ctx, TRACE_FROM_NETWORK, TRACE_REASON_UNKNOWN, 0);
}

/* Where `hook`'s verdict `ret` sends the packet: into a pod (to-container
 * passing it, or a redirect to a local endpoint), to the stack, or out of
 * the node (a skip-FIB redirect). Drops are drop notifications. Returns `ret`.
 * It runs where every path of a program meets, for every packet: the
 * common case (medium, a packet conntrack did not report) is a load of the
 * config, one of skb->cb and a test of one bit. */
static __always_inline int trace_verdict(struct __sk_buff *ctx, enum hook hook, int ret)
{
	__u32 st, dst_ep;
	__u8 reason;

	if (!CONFIG.trace)
		return ret;
	/* One bit decides: conntrack's report, or set for every packet
	 * (CONFIG.ct_state_base) when every packet is traced. */
	st = ctx->cb[CB_CT_STATE];
	if (__builtin_expect(!(st & CT_STATE_REPORT), 1))
		return ret;
	if (ret == TC_ACT_SHOT)
		return ret;
	dst_ep = ctx->cb[CB_INGRESS_EP];
	reason = (st >> 8) & 0xff;
	if (hook == HOOK_TO_CONTAINER)
		send_trace_notify(ctx, TRACE_TO_LXC, reason, dst_ep);
	else if (ret == TC_ACT_REDIRECT)
		send_trace_notify(ctx,
				  dst_ep || hook == HOOK_FROM_NETDEV ? TRACE_TO_LXC : TRACE_TO_NETWORK,
				  reason, dst_ep);
	else
		send_trace_notify(ctx, TRACE_TO_STACK, reason, 0);
	return ret;
}

#endif /* PODNET_TRACE_H */
