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
	 * into podnet_events (which traces: `trace` and `flow_reports`
	 * below, from the monitor aggregation level); drop notifications per
	 * second and burst per CPU (0: no limit); per-endpoint counters
	 * (ep_metrics.h). */
	__u32 events;
	__u32 drop_events_rate;
	__u32 drop_events_burst;
	__u32 endpoint_metrics;
	/* Derived by the loader from the options above, so that a packet's
	 * path reads one field per decision (a field that is on still costs
	 * its load and compare at run time; see events.h and trace.h):
	 * skb->cb carries the per-packet facts (events or endpoint_metrics);
	 * which packets get a trace (PN_TRACE_*); whether conntrack's interval
	 * and flag reports mark a packet (events at medium); the conntrack
	 * state every packet starts with in skb->cb (events.h: "report" when
	 * every packet is traced, so that one bit decides). */
	__u32 cb_used;
	__u32 trace;
	__u32 flow_reports;
	__u32 ct_state_base;
};

/* CONFIG.trace: no traces; at the send points, the packets conntrack
 * reported (medium, max); every packet at every point (none). */
#define PN_TRACE_NONE 0
#define PN_TRACE_REPORTED 1
#define PN_TRACE_EVERY 2

/* The only variable in .rodata: the loader writes it before load. */
const volatile struct pn_config CONFIG = {};

#endif /* PODNET_CONFIG_H */
