// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Lookup keys written in whole 8-byte words: the word helpers and the
 * word views of the CT, endpoint and ipcache keys.
 */
#ifndef PODNET_KEYS_H
#define PODNET_KEYS_H

#include "common.h"

/* Lookup keys on the stack are written in whole 8-byte words.
 *
 * The kernel hashes a key with 4-byte loads (jhash) and compares it with
 * 8-byte loads (memcmp) right after the program wrote it. A load that spans
 * two smaller stores still in the CPU's store buffer cannot be forwarded
 * from them and waits until they retire: with the tuple's ports written as
 * two 2-byte stores, that stall alone was a fifth of from-container's
 * established-flow cost. A load that lies inside one wider store forwards
 * fine, hence the words. KEY_BIT(off, width) is the bit position, in an
 * 8-byte word, of the field at byte offset `off`, per byte order;
 * key_word(lo, hi) puts two 32-bit values at offsets 0 and 4. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KEY_BIT(off, width) ((off) * 8)
#else
#define KEY_BIT(off, width) (64 - ((off) + (width)) * 8)
#endif
#define KEY_PUT(v, off, width) ((__u64)(v) << KEY_BIT(off, width))
#define KEY_GET(w, off, width) ((w) >> KEY_BIT(off, width))
/* A byte at the lowest address of a 4-byte word. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KEY_FIRST_BYTE32(v) ((__u32)(v))
#else
#define KEY_FIRST_BYTE32(v) ((__u32)(v) << 24)
#endif

static __always_inline __u64 key_word(__u32 lo, __u32 hi)
{
	return KEY_PUT(lo, 0, 4) | KEY_PUT(hi, 4, 4);
}

/* The last word of a CT tuple: dport, sport, nexthdr, flags (bytes 0-5). */
static __always_inline __u64 tuple_tail(__be16 dport, __be16 sport, __u8 nexthdr, __u8 flags)
{
	return KEY_PUT(dport, 0, 2) | KEY_PUT(sport, 2, 2) | KEY_PUT(nexthdr, 4, 1) |
	       KEY_PUT(flags, 5, 1);
}

/* The same tail with the ports swapped and TUPLE_F_IN flipped. */
static __always_inline __u64 tuple_tail_reversed(__u64 w)
{
	__u64 dport = KEY_GET(w, 0, 2) & 0xffff, sport = KEY_GET(w, 2, 2) & 0xffff;
	__u64 rest = w & (KEY_PUT(0xff, 4, 1) | KEY_PUT(0xff, 5, 1));

	return KEY_PUT(sport, 0, 2) | KEY_PUT(dport, 2, 2) | (rest ^ KEY_PUT(TUPLE_F_IN, 5, 1));
}

union ct4_key {
	struct ipv4_ct_tuple t; /* 14 bytes */
	__u64 w[2];
};

union ct6_key {
	struct ipv6_ct_tuple t; /* 38 bytes */
	__u64 w[5];
};

union endpoint_key_words {
	struct endpoint_key k; /* 20 bytes */
	struct {
		__u64 w[2];
		__u32 tail;
	};
};

union ipcache_key_words {
	struct ipcache_key k; /* 24 bytes */
	__u64 w[3];
};

#endif /* PODNET_KEYS_H */
