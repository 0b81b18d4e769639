// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-endpoint packet and byte counters (podnet_ep_metrics): forwarded and
 * dropped, per direction, indexed by endpoint id. The id comes from
 * skb->cb (events.h), which conntrack fills from the CT entry it already
 * found: no lookup beyond the counter's own (a per-CPU array, which the
 * verifier inlines). Cilium has no per-endpoint datapath counter; its
 * endpoint ids run 1..4095 (pkg/endpointmanager/idallocator), hence the
 * size (ids are taken modulo it).
 */
#ifndef PODNET_EP_METRICS_H
#define PODNET_EP_METRICS_H

#include "common.h"
#include "config.h"
#include "events.h"

#define EP_METRICS_IDS 4096

struct ep_metrics_value {
	__u64 fwd_packets;
	__u64 fwd_bytes;
	__u64 drop_packets;
	__u64 drop_bytes;
};

/* Key: endpoint id << 1 | 1 for egress (the endpoint sending). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ep_metrics_value);
	__uint(max_entries, EP_METRICS_IDS * 2);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_ep_metrics SEC(".maps");

/* `dir` METRIC_INGRESS or METRIC_EGRESS, `dropped` a constant at each call. */
static __always_inline void ep_count(struct __sk_buff *ctx, __u32 dir, bool dropped)
{
	bool egress = dir == METRIC_EGRESS;
	/* No branch on the id (each one doubles what the verifier walks at
	 * every count() site): ids are below EP_METRICS_IDS (Cilium's range),
	 * and 0, no local endpoint, counts in slot 0, which no endpoint has. */
	__u32 idx = ((ctx->cb[egress ? CB_EGRESS_EP : CB_INGRESS_EP] & (EP_METRICS_IDS - 1)) << 1) |
		    egress;
	struct ep_metrics_value *v;

	if (!CONFIG.endpoint_metrics)
		return;
	v = bpf_map_lookup_elem(&podnet_ep_metrics, &idx);
	if (!v)
		return;
	if (dropped) {
		v->drop_packets += 1;
		v->drop_bytes += ctx->len;
	} else {
		v->fwd_packets += 1;
		v->fwd_bytes += ctx->len;
	}
}

#endif /* PODNET_EP_METRICS_H */
