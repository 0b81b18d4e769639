// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-reason, per-direction packet and byte counters (podnet_metrics), and
 * drop(), which counts a drop under its reason.
 */
#ifndef PODNET_METRICS_H
#define PODNET_METRICS_H

#include "common.h"
#include "maps.h"

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

#endif /* PODNET_METRICS_H */
