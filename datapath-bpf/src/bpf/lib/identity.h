// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Security identities carried in skb->mark between the programs, in
 * Cilium's MARK_MAGIC_IDENTITY encoding (bpf/lib/identity.h).
 */
#ifndef PODNET_IDENTITY_H
#define PODNET_IDENTITY_H

#include "common.h"

static __always_inline void set_identity_mark(struct __sk_buff *ctx, __u32 identity)
{
	ctx->mark = ((identity & 0xFFFF) << 16) | MARK_MAGIC_IDENTITY |
		    ((identity >> 16) & 0xFF);
}

/* The identity carried in the mark, 0 when the mark carries none. */
static __always_inline __u32 identity_of_mark(__u32 mark)
{
	if ((mark & MARK_MAGIC_MASK) != MARK_MAGIC_IDENTITY)
		return 0;
	return (mark >> 16) | ((mark & 0xFF) << 16);
}

/* Consumes an identity mark (it is ours, not the pod's). */
static __always_inline void clear_identity_mark(struct __sk_buff *ctx)
{
	if ((ctx->mark & MARK_MAGIC_MASK) == MARK_MAGIC_IDENTITY)
		ctx->mark = 0;
}

#endif /* PODNET_IDENTITY_H */
