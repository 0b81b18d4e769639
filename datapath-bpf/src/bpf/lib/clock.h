// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The conntrack clock: monotonic seconds, read once per tick per CPU.
 */
#ifndef PODNET_CLOCK_H
#define PODNET_CLOCK_H

#include "common.h"
#include "maps.h"

/* ns / NSEC_PER_SEC without a 64-bit divide (the JIT emits `div`, several
 * ns per packet): compilers' reciprocal for 1e9, the high 64 bits of
 * (ns >> 9) * 0x44B82FA09B5A53, shifted right by 11. BPF has no
 * multiply-high, so the product's high half is built from 32-bit halves:
 * with a, b < 2^55 no partial sum overflows. Exact for every u64: checked
 * against division at both sides of every second boundary below 2^32 s and
 * for 10^9 pseudo-random values. */
static __always_inline __u64 ns_to_sec(__u64 ns)
{
	__u64 a = ns >> 9, b = 0x44B82FA09B5A53ULL;
	__u64 al = a & 0xffffffff, ah = a >> 32, bl = b & 0xffffffff, bh = b >> 32;
	__u64 mid = ah * bl + al * bh + ((al * bl) >> 32);

	return (ah * bh + (mid >> 32)) >> 11;
}

/* Monotonic seconds, the clock of Cilium's bpf_mono_now() in its ktime mode
 * (lifetimes in seconds of CLOCK_MONOTONIC, not in jiffies), read with the
 * coarse helper (tick resolution, far finer than the one-second unit,
 * without reading the clocksource).
 *
 * The coarse clock only moves at a tick, so it is read once per tick per
 * CPU: jiffies (read inline, no helper call) tell when a tick has passed.
 * The helper call cost about a tenth of an established flow's packet. A
 * reader racing the tick's own update (jiffies move just before the clock)
 * keeps the previous tick's second: `now` may lag by at most one tick, as
 * the coarse clock itself does. sec is written before jiffies, so a
 * program on this CPU that sees the new tick sees its second. */
static __always_inline __u32 mono_now(void)
{
	__u32 zero = 0;
	struct mono_cache *c = bpf_map_lookup_elem(&podnet_clock, &zero);
	__u64 tick = bpf_jiffies64();
	__u32 sec;

	if (c && c->jiffies == tick)
		return c->sec;
	sec = (__u32)ns_to_sec(bpf_ktime_get_coarse_ns());
	if (c) {
		c->sec = sec;
		c->jiffies = tick;
	}
	return sec;
}

#endif /* PODNET_CLOCK_H */
