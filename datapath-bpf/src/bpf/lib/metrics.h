// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-reason, per-direction packet and byte counters (podnet_metrics), and
 * drop(), which counts a drop under its reason and the endpoint's, and
 * sends its drop notification (drop_notify.h) from the file and line of
 * the call.
 */
#ifndef PODNET_METRICS_H
#define PODNET_METRICS_H

#include "common.h"
#include "maps.h"
#include "drop_notify.h"
#include "ep_metrics.h"

static __always_inline void count(struct __sk_buff *ctx, __u32 reason, __u32 dir)
{
	__u32 idx = ((reason & 0xff) << 2) | (dir & 3);
	struct metrics_value *v = bpf_map_lookup_elem(&podnet_metrics, &idx);

	if (v) {
		v->count += 1;
		v->bytes += ctx->len;
	}
	if (reason == REASON_FORWARDED)
		ep_count(ctx, dir, false);
}

static __always_inline int drop_at(struct __sk_buff *ctx, int reason, __u32 dir, __u16 line,
				   __u8 file)
{
	count(ctx, (__u32)(-reason), dir);
	ep_count(ctx, dir, true);
	if (CONFIG.events)
		send_drop_notify(ctx, (__u8)(-reason), dir, line, file);
	return TC_ACT_SHOT;
}

#define drop(ctx, reason, dir) drop_at(ctx, reason, dir, __LINE__, EVENTS_FILE_ID)

#endif /* PODNET_METRICS_H */
