// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Events to user space: the pinned ring buffer (podnet_events), the
 * counters of events that could not be written (podnet_events_lost), the
 * message header shared by every event, and the per-packet facts the
 * events and the per-endpoint counters need, kept in skb->cb while the
 * packet is in a program.
 *
 * Facts taken from Cilium (cilium/cilium 1.17, read, not copied):
 *  - bpf/lib/common.h: CILIUM_NOTIFY_* message types (drop 1, trace 4,
 *    policy verdict 5), NOTIFY_COMMON_HDR (type, subtype, source, hash) and
 *    NOTIFY_CAPTURE_HDR (len_orig, len_cap, version; NOTIFY_CAPTURE_VER 1),
 *    TRACE_PAYLOAD_LEN 128 bytes of packet after the message.
 *  - bpf/lib/ratelimit.h, drop.h: a token bucket topped up once a second
 *    (EVENTS_MAP_RATE_LIMIT tokens, EVENTS_MAP_BURST_LIMIT bucket).
 * Cilium writes to a perf event array; this datapath to a BPF ring buffer
 * (one buffer for all CPUs, pinned, so a reader in another process opens it
 * by path and keeps it across a datapath reload). A full buffer never
 * blocks or drops the packet: the event is counted as lost.
 */
#ifndef PODNET_EVENTS_H
#define PODNET_EVENTS_H

#include "common.h"
#include "config.h"

#define CILIUM_NOTIFY_DROP 1
#define CILIUM_NOTIFY_TRACE 4
#define CILIUM_NOTIFY_POLICY_VERDICT 5
#define NOTIFY_CAPTURE_VER 1
#define TRACE_PAYLOAD_LEN 128

/* podnet_events_lost slots. */
#define EVENTS_LOST_RING_FULL 0
#define EVENTS_LOST_RATE_LIMITED 1
#define EVENTS_LOST_SLOTS 2

/* Monitor aggregation levels (Cilium's pkg/option/monitor.go; the loader
 * turns Options::monitor_aggregation into CONFIG.trace, flow_reports and
 * ct_state_base): none traces every packet at every observation point;
 * from medium on no trace at the receive points (from-*) and at the others
 * only for a packet conntrack reports (a new connection, TCP flags new in
 * that direction, or CT_REPORT_INTERVAL passed). max: only a connection's
 * first packet. */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* the loader sets it from its options */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EVENTS_LOST_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} podnet_events_lost SEC(".maps");

/* Token bucket of drop notifications, per CPU. Not pinned. */
struct events_bucket {
	__u64 tokens;
	__u64 last_topup;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct events_bucket);
	__uint(max_entries, 1);
} podnet_events_rl SEC(".maps");

/* Cilium's NOTIFY_CAPTURE_HDR. */
struct notify_capture_hdr {
	__u8 type;
	__u8 subtype;
	__u16 source;
	__u32 hash;
	__u32 len_orig;
	__u16 len_cap;
	__u16 version;
};

/* ---- per-packet facts in skb->cb ---------------------------------------
 * Written while the packet is in a program, zeroed at its start:
 *  cb[0] source identity, cb[1] destination identity (where known: set
 *  with the policy decision of a new connection), cb[2] the local endpoint
 *  sending it (egress), cb[3] the local endpoint receiving it (ingress),
 *  both from conntrack (the id kept in the CT entry's ifindex field) or the
 *  policy decision, cb[4] what conntrack said last: bit 0 "report" (the
 *  packet gets a trace: a monitor aggregation sample, or every packet at
 *  level none), bits 8-15 the trace reason (Cilium's
 *  TRACE_REASON_*: new 0, established 1, reply 2, related 3). */
#define CB_SRC_IDENTITY 0
#define CB_DST_IDENTITY 1
#define CB_EGRESS_EP 2
#define CB_INGRESS_EP 3
#define CB_CT_STATE 4
#define CT_STATE_REPORT 1

static __always_inline void events_init(struct __sk_buff *ctx)
{
	if (!CONFIG.cb_used)
		return;
	ctx->cb[CB_SRC_IDENTITY] = 0;
	ctx->cb[CB_DST_IDENTITY] = 0;
	ctx->cb[CB_EGRESS_EP] = 0;
	ctx->cb[CB_INGRESS_EP] = 0;
	ctx->cb[CB_CT_STATE] = CONFIG.ct_state_base;
}

/* A new connection's policy decision: who talks to whom, and the local
 * endpoint (egress: the sender, ingress: the receiver). */
static __always_inline void events_set_flow(struct __sk_buff *ctx, __u32 src_identity,
					    __u32 dst_identity, bool egress, __u16 ep_id)
{
	ctx->cb[CB_SRC_IDENTITY] = src_identity;
	ctx->cb[CB_DST_IDENTITY] = dst_identity;
	ctx->cb[egress ? CB_EGRESS_EP : CB_INGRESS_EP] = ep_id;
}

/* Conntrack's part (called from conntrack.h; `ingress` is a constant at
 * every call). A CT entry keeps its local endpoint's id in `ifindex`. */
static __always_inline void ct_events_new(struct __sk_buff *ctx, struct ct_entry *entry,
					  bool ingress, __u32 report)
{
	if (!CONFIG.cb_used)
		return;
	entry->ifindex = ctx->cb[ingress ? CB_INGRESS_EP : CB_EGRESS_EP];
	ctx->cb[CB_CT_STATE] = (report ? CT_STATE_REPORT : 0) | CONFIG.ct_state_base;
}

/* A packet hit `entry` (ct_lookup): its local endpoint, and conntrack's
 * verdict `ct_ret` with `report` (__ct_lookup's) for the trace. */
static __always_inline void ct_events_hit(struct __sk_buff *ctx, const struct ct_entry *entry,
					  bool ingress, int ct_ret, __u32 report)
{
	if (!CONFIG.cb_used)
		return;
	ctx->cb[ingress ? CB_INGRESS_EP : CB_EGRESS_EP] = entry->ifindex;
	/* What conntrack said, for every packet: a store, where testing the
	 * options first would cost a compare and a branch on every packet.
	 * The flow's reports count at medium only (max: new connections, see
	 * ct_events_new); at none every packet is marked (ct_state_base). */
	ctx->cb[CB_CT_STATE] = (report && CONFIG.flow_reports ? CT_STATE_REPORT : 0) |
			       ((__u32)(ct_ret & 0xff) << 8) | CONFIG.ct_state_base;
}

/* ---- writing events ----------------------------------------------------- */

/* Map keys the event subprograms look up with: in a read-only map of their
 * own rather than on the stack, which the programs' deepest paths use up
 * (a subprogram's frame adds to its caller's: 512 bytes in all). */
const volatile __u32 events_keys[EVENTS_LOST_SLOTS] SEC(".rodata.events") = { 0, 1 };

static __always_inline void events_lost(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&podnet_events_lost, (const void *)&events_keys[slot]);

	if (n)
		*n += 1;
}

/* A drop notification may go out (Cilium's ratelimit_check_and_take with a
 * one-second top-up), else it is counted as rate-limited. */
static __always_inline bool events_drop_allowed(void)
{
	struct events_bucket *b;
	__u64 now;

	if (!CONFIG.drop_events_rate)
		return true;
	b = bpf_map_lookup_elem(&podnet_events_rl, (const void *)&events_keys[0]);
	if (!b)
		return true;
	now = bpf_ktime_get_ns();
	if (now - b->last_topup >= NSEC_PER_SEC) {
		__u64 t = b->tokens + CONFIG.drop_events_rate;

		b->tokens = t > CONFIG.drop_events_burst ? CONFIG.drop_events_burst : t;
		b->last_topup = now;
	}
	if (!b->tokens) {
		events_lost(EVENTS_LOST_RATE_LIMITED);
		return false;
	}
	b->tokens--;
	return true;
}

/* Reserves a message of `size` bytes (header included) plus room for
 * TRACE_PAYLOAD_LEN bytes of packet; NULL (counted as lost) when the ring
 * buffer is full. */
static __always_inline void *events_reserve(__u32 size)
{
	void *msg = bpf_ringbuf_reserve(&podnet_events, size + TRACE_PAYLOAD_LEN, 0);

	if (!msg)
		events_lost(EVENTS_LOST_RING_FULL);
	return msg;
}

/* Fills the capture header and copies the packet's first bytes after the
 * message (`hdr_size` bytes). Call it last: the header is written before
 * the copy, so that little stays live across the helper call (the event
 * subprograms must not spill: see events_keys). */
static __always_inline void events_capture(struct __sk_buff *ctx, struct notify_capture_hdr *h,
					   __u8 type, __u8 subtype, __u16 source, __u32 hdr_size)
{
	__u32 len = ctx->len;
	void *data = (void *)h + hdr_size;
	int err;

	h->type = type;
	h->subtype = subtype;
	h->source = source;
	h->hash = ctx->hash;
	h->len_orig = len;
	h->version = NOTIFY_CAPTURE_VER;
	/* Two calls with their own bounds (a merged call with a run-time
	 * length loses the bound the verifier needs). */
	if (len >= TRACE_PAYLOAD_LEN) {
		h->len_cap = TRACE_PAYLOAD_LEN;
		err = bpf_skb_load_bytes(ctx, 0, data, TRACE_PAYLOAD_LEN);
		asm volatile("" : "+r"(err));
	} else {
		len &= TRACE_PAYLOAD_LEN - 1;
		h->len_cap = len;
		err = len ? bpf_skb_load_bytes(ctx, 0, data, len) : 0;
	}
	if (err < 0)
		h->len_cap = 0;
}

/* Where a drop was decided, as Cilium's __MAGIC_FILE__ ids it: the file's
 * number (pkg/monitor names them, see `events.rs`'s BPF_FILES; add new
 * files at the end of both) and the line. */
#define EVENTS_FILE_IS(name) (__builtin_strcmp(__FILE_NAME__, name) == 0)
#define EVENTS_FILE_ID                                                                            \
	(EVENTS_FILE_IS("datapath.bpf.c") ? 1 :                                                   \
	 EVENTS_FILE_IS("lb.h")		  ? 2 :                                                   \
	 EVENTS_FILE_IS("nat.h")	  ? 3 :                                                   \
	 EVENTS_FILE_IS("conntrack.h")	  ? 4 :                                                   \
	 EVENTS_FILE_IS("forward.h")	  ? 5 :                                                   \
	 EVENTS_FILE_IS("policy.h")	  ? 6 :                                                   \
	 EVENTS_FILE_IS("parse.h")	  ? 7 :                                                   \
	 EVENTS_FILE_IS("snat.h")	  ? 8 :                                                   \
	 EVENTS_FILE_IS("frag.h")	  ? 9 :                                                   \
					    0)

#endif /* PODNET_EVENTS_H */
