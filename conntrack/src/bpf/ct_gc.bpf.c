// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * GC candidate search for podnet-conntrack: walks a conntrack map in the
 * kernel with bpf_for_each_map_elem, from a BPF_PROG_TYPE_SYSCALL program run
 * with BPF_PROG_TEST_RUN, and writes the keys of the entries GC must look at
 * (expired, or matched by the filter's addresses) into `gc_out`. User space
 * then deletes each with BPF_MAP_LOOKUP_AND_DELETE_ELEM and re-decides on the
 * value removed, so a flow the datapath renews meanwhile is never lost.
 *
 * One run examines at most `max_visit` entries and writes at most `cap`
 * keys; the next run resumes after `skip` entries (the ones already
 * examined and still in the map), so no run holds the CPU for long. A
 * resumed run walks past those again, so a run holds many keys (`gc_out`
 * has GC_SLOTS slots of GC_SLOT keys): with one slot, a pass that deleted
 * half of a million entries took 62 runs and walked 16 million entries.
 *
 * Layouts (read in cilium/cilium bpf/lib/common.h, written here anew):
 * struct ipv4_ct_tuple / ipv6_ct_tuple (packed, 14 / 38 bytes) and
 * struct ct_entry (56 bytes, lifetime at offset 32).
 *
 * `ct4_renew` / `ct6_renew` are a datapath stand-in for tests and
 * benchmarks: they renew expired entries in place, as the datapath does.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct bpf_map;

/* Keys per slot of `gc_out` (IPv6-sized), slots, keys per run at most. */
#define GC_SLOT 8192
#define GC_SLOTS 16
#define GC_CAP (GC_SLOT * GC_SLOTS)

struct ct4_key {
	__u8 daddr[4];
	__u8 saddr[4];
	__u16 dport;
	__u16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

struct ct6_key {
	__u8 daddr[16];
	__u8 saddr[16];
	__u16 dport;
	__u16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

struct ct_entry {
	__u64 reserved0;
	__u64 backend_id;
	__u64 packets;
	__u64 bytes;
	__u32 lifetime;
	__u16 flags;
	__u16 rev_nat_index;
	__u16 ifindex;
	__u8 tx_flags_seen;
	__u8 rx_flags_seen;
	__u32 src_sec_id;
	__u32 last_tx_report;
	__u32 last_rx_report;
};

/* Replaced by the map to walk (bpf_map__reuse_fd) before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct ct4_key);
	__type(value, struct ct_entry);
} ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct ct6_key);
	__type(value, struct ct_entry);
} ct6 SEC(".maps");

/* Address sets of the filter: value bit 1 = in MatchIPs, bit 2 = in ValidIPs. */
#define IP_MATCH 1
#define IP_VALID 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8);
} ips4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct { __u8 a[16]; });
	__type(value, __u8);
} ips6 SEC(".maps");

struct out_buf {
	__u8 keys[GC_SLOT * sizeof(struct ct6_key)];
};

/* Key n of a run is key n % GC_SLOT of slot n / GC_SLOT (the renewing
 * writer uses slot 0 only; its loader makes the map one slot long). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GC_SLOTS);
	__type(key, __u32);
	__type(value, struct out_buf);
} gc_out SEC(".maps");

/* The program's context (BPF_PROG_TEST_RUN ctx_in, copied back out). */
#define F_REMOVE_EXPIRED 1
#define F_VALID_IPS 2
#define F_MATCH_IPS 4

struct gc_args {
	__u32 time;      /* in: entries with lifetime < time are expired */
	__u32 flags;     /* in: F_* */
	__u32 skip;      /* in: entries to pass over first */
	__u32 max_visit; /* in: entries to examine at most (0: all) */
	__u32 cap;       /* in: keys to write at most (<= GC_CAP) */
	__u32 visited;   /* out: entries examined */
	__u32 kept;      /* out: examined and not candidates */
	__u32 found;     /* out: keys written to gc_out */
	__u32 done;      /* out: 1 when the walk reached the map's end */
	__u32 pad;
};

struct walk {
	struct gc_args a;
	__u32 seen;
	__u32 stopped;
};

static __always_inline int out_full(struct walk *w)
{
	if (w->a.found >= w->a.cap || w->a.found >= GC_CAP ||
	    (w->a.max_visit && w->a.visited >= w->a.max_visit)) {
		w->stopped = 1;
		return 1;
	}
	return 0;
}

static __always_inline int ip_verdict(__u8 d, __u8 s, __u32 flags)
{
	if ((flags & F_VALID_IPS) && !(d & IP_VALID) && !(s & IP_VALID))
		return 1;
	if ((flags & F_MATCH_IPS) && ((d | s) & IP_MATCH))
		return 1;
	return 0;
}

/* One entry of the walk, for either family (`key_size` and `addr_len` are
 * constants after inlining): skip up to the resume point, stop when the
 * output is full, else record the key when it is a candidate. */
static __always_inline long walk_entry(struct walk *w, void *ips, const void *key,
				       __u32 key_size, const __u8 *daddr,
				       const __u8 *saddr, __u32 addr_len,
				       __u32 lifetime)
{
	__u8 addr[16] = {}, *bits, d = 0, s = 0;
	struct out_buf *out;
	__u32 slot, n;
	int cand = 0;

	if (w->seen < w->a.skip) {
		w->seen++;
		return 0;
	}
	if (out_full(w))
		return 1;
	w->seen++;
	w->a.visited++;
	if ((w->a.flags & F_REMOVE_EXPIRED) && lifetime < w->a.time)
		cand = 1;
	if (!cand && (w->a.flags & (F_VALID_IPS | F_MATCH_IPS))) {
		/* Copied to the stack: the map key must not point into the CT key. */
		__builtin_memcpy(addr, daddr, addr_len);
		bits = bpf_map_lookup_elem(ips, addr);
		if (bits)
			d = *bits;
		__builtin_memcpy(addr, saddr, addr_len);
		bits = bpf_map_lookup_elem(ips, addr);
		if (bits)
			s = *bits;
		cand = ip_verdict(d, s, w->a.flags);
	}
	if (!cand) {
		w->a.kept++;
		return 0;
	}
	n = w->a.found;
	if (n >= GC_CAP)
		return 1;
	slot = n / GC_SLOT;
	out = bpf_map_lookup_elem(&gc_out, &slot);
	if (!out)
		return 1;
	__builtin_memcpy(out->keys + (n & (GC_SLOT - 1)) * key_size, key, key_size);
	w->a.found = n + 1;
	return 0;
}

static long walk4(struct bpf_map *map, struct ct4_key *key, struct ct_entry *val,
		  struct walk *w)
{
	return walk_entry(w, &ips4, key, sizeof(*key), key->daddr, key->saddr, 4,
			  val->lifetime);
}

static long walk6(struct bpf_map *map, struct ct6_key *key, struct ct_entry *val,
		  struct walk *w)
{
	return walk_entry(w, &ips6, key, sizeof(*key), key->daddr, key->saddr, 16,
			  val->lifetime);
}

static __always_inline int run_walk(struct gc_args *ctx, void *map, void *cb)
{
	struct walk w = {};

	w.a = *ctx;
	w.a.visited = 0;
	w.a.kept = 0;
	w.a.found = 0;
	bpf_for_each_map_elem(map, cb, &w, 0);
	ctx->visited = w.a.visited;
	ctx->kept = w.a.kept;
	ctx->found = w.a.found;
	ctx->done = !w.stopped;
	return 0;
}

SEC("syscall")
int ct4_gc_walk(struct gc_args *ctx)
{
	return run_walk(ctx, &ct4, walk4);
}

SEC("syscall")
int ct6_gc_walk(struct gc_args *ctx)
{
	return run_walk(ctx, &ct6, walk6);
}

/* Test/benchmark datapath stand-in: renews, in place, expired entries whose
 * tuple flags have TUPLE_F_IN (1) set, to lifetime `time`, and writes its key
 * to gc_out only when the renewed entry is provably still in the map (see the
 * witness below). `cap`, `found`, `done` as for the walk. */
struct renew {
	__u32 time;
	__u32 cap;
	__u32 found;
	__u32 stopped;
};

static long renew4(struct bpf_map *map, struct ct4_key *key, struct ct_entry *val,
		   struct renew *r)
{
	struct ct4_key k;
	struct ct_entry *again, copy;
	struct out_buf *out;
	__u32 zero = 0, n;

	if (!(key->flags & 1) || val->lifetime >= r->time)
		return 0;
	if (r->found >= r->cap || r->found >= GC_SLOT) {
		r->stopped = 1;
		return 1;
	}
	val->lifetime = r->time;
	__builtin_memcpy(&k, key, sizeof(k));
	again = bpf_map_lookup_elem(&ct4, &k);
	if (again != val || again->lifetime != r->time)
		return 0;
	/* Witness: a BPF_EXIST re-write takes the bucket lock, so it fails when
	 * a delete (whose copy-then-unlink holds that lock) removed the entry
	 * around the in-place write. A renewal counts only when it provably
	 * landed in an entry still in the map. */
	__builtin_memcpy(&copy, val, sizeof(copy));
	if (copy.lifetime != r->time ||
	    bpf_map_update_elem(&ct4, &k, &copy, BPF_EXIST) != 0)
		return 0;
	out = bpf_map_lookup_elem(&gc_out, &zero);
	if (!out)
		return 1;
	n = r->found;
	if (n >= GC_SLOT)
		return 1;
	__builtin_memcpy(out->keys + n * sizeof(struct ct4_key), &k, sizeof(k));
	r->found = n + 1;
	return 0;
}

SEC("syscall")
int ct4_renew(struct gc_args *ctx)
{
	struct renew r = { .time = ctx->time, .cap = ctx->cap };

	bpf_for_each_map_elem(&ct4, renew4, &r, 0);
	ctx->found = r.found;
	ctx->done = !r.stopped;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
