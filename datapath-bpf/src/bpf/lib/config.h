// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The loader's options, written in .rodata before load: code behind an
 * option that is off is removed by the verifier.
 */
#ifndef PODNET_CONFIG_H
#define PODNET_CONFIG_H

#include "common.h"

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
	/* Events (events.h): drop, trace and policy verdict notifications
	 * into podnet_events; the monitor aggregation level (Cilium's
	 * numbers); drop notifications per second and burst per CPU (0: no
	 * limit); per-endpoint counters (ep_metrics.h). */
	__u32 events;
	__u32 monitor_aggregation;
	__u32 drop_events_rate;
	__u32 drop_events_burst;
	__u32 endpoint_metrics;
};

/* The only variable in .rodata: the loader writes it before load. */
const volatile struct pn_config CONFIG = {};

#endif /* PODNET_CONFIG_H */
