// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Drop notifications: one event per dropped packet, written by drop() in
 * metrics.h, rate-limited per CPU (Options::drop_events_rate).
 *
 * Facts taken from Cilium (bpf/lib/drop.h of cilium/cilium 1.17, read, not
 * copied): struct drop_notify after NOTIFY_CAPTURE_HDR: src_label,
 * dst_label, dst_id (designated destination endpoint, ingress only), line
 * (u16), file (u8), ext_error (s8), ifindex; 36 bytes; subtype = the drop
 * reason (-DROP_*), then up to TRACE_PAYLOAD_LEN bytes of the packet.
 */
#ifndef PODNET_DROP_NOTIFY_H
#define PODNET_DROP_NOTIFY_H

#include "common.h"
#include "config.h"
#include "events.h"

struct drop_notify {
	struct notify_capture_hdr hdr;
	__u32 src_label;
	__u32 dst_label;
	__u32 dst_id;
	__u16 line;
	__u8 file;
	__s8 ext_error;
	__u32 ifindex;
};

_Static_assert(sizeof(struct drop_notify) == 36, "drop_notify");

/* A subprogram of its own (BPF-to-BPF call), not inlined at each of the
 * many drop() sites: it only runs for drops, and the hot paths stay small.
 * `info`: reason in bits 0-7, direction 8-15, file 16-23, line 32-47 (one
 * argument, so nothing spills to the stack). A global function (not
 * static): the verifier checks its body once, on its own, instead of again
 * at every drop site and on every path there (which took from_container
 * past the 1,000,000-instruction limit once fragments and masquerade had
 * added drop sites). Callers ignore the 0 it returns: no branch on it. */
__noinline int drop_notify_out(struct __sk_buff *ctx, __u64 info)
{
	struct drop_notify *msg;

	if (!events_drop_allowed())
		return 0;
	msg = events_reserve(sizeof(*msg));
	if (!msg)
		return 0;
	msg->src_label = ctx->cb[CB_SRC_IDENTITY];
	msg->dst_label = ctx->cb[CB_DST_IDENTITY];
	msg->dst_id = ((info >> 8) & 0xff) == METRIC_INGRESS ? ctx->cb[CB_INGRESS_EP] : 0;
	msg->line = (info >> 32) & 0xffff;
	msg->file = (info >> 16) & 0xff;
	msg->ext_error = 0;
	msg->ifindex = ctx->ifindex;
	events_capture(ctx, &msg->hdr, CILIUM_NOTIFY_DROP, info & 0xff, ctx->cb[CB_EGRESS_EP],
		       sizeof(*msg));
	bpf_ringbuf_submit(msg, 0);
	return 0;
}

static __always_inline void send_drop_notify(struct __sk_buff *ctx, __u8 reason, __u32 dir,
					     __u16 line, __u8 file)
{
	drop_notify_out(ctx, (__u64)reason | ((__u64)(dir & 0xff) << 8) | ((__u64)file << 16) |
				     ((__u64)line << 32));
}

#endif /* PODNET_DROP_NOTIFY_H */
