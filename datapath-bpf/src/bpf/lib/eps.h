// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Endpoints (podnet_lxc) and the ipcache (podnet_ipcache): local pods by
 * address, identities of remote addresses, and the local-delivery stamp
 * established flows carry (podnet_lxc_gen). Cilium: bpf/lib/eps.h.
 */
#ifndef PODNET_EPS_H
#define PODNET_EPS_H

#include "common.h"
#include "keys.h"
#include "maps.h"

/* endpoint_key written in words (see keys.h): ip, then
 * family, key 0, cluster 0. */
static __always_inline struct endpoint_info *lookup_ep(__u64 ip_lo, __u64 ip_hi, __u8 family)
{
	union endpoint_key_words key;

	key.w[0] = ip_lo;
	key.w[1] = ip_hi;
	key.tail = KEY_FIRST_BYTE32(family);
	return bpf_map_lookup_elem(&podnet_lxc, &key);
}

static __always_inline struct endpoint_info *lookup_ep4(__be32 addr)
{
	return lookup_ep(key_word(addr, 0), 0, ENDPOINT_KEY_IPV4);
}

static __always_inline struct endpoint_info *lookup_ep6(const __u32 *addr)
{
	return lookup_ep(key_word(addr[0], addr[1]), key_word(addr[2], addr[3]),
			 ENDPOINT_KEY_IPV6);
}

/* ipcache_key in words: prefixlen, cluster 0, pad, family; then the address. */
static __always_inline __u32 ipcache_identity(__u32 prefixlen, __u8 family, __u64 ip_lo,
					      __u64 ip_hi)
{
	union ipcache_key_words key;
	struct remote_endpoint_info *info;

	key.w[0] = KEY_PUT(prefixlen, 0, 4) | KEY_PUT(family, 7, 1);
	key.w[1] = ip_lo;
	key.w[2] = ip_hi;
	info = bpf_map_lookup_elem(&podnet_ipcache, &key);
	return info ? info->sec_identity : IDENTITY_WORLD;
}

static __always_inline __u32 ipcache_identity4(__be32 addr)
{
	return ipcache_identity(32 + 32, ENDPOINT_KEY_IPV4, key_word(addr, 0), 0);
}

static __always_inline __u32 ipcache_identity6(const __u32 *addr)
{
	return ipcache_identity(32 + 128, ENDPOINT_KEY_IPV6, key_word(addr[0], addr[1]),
				key_word(addr[2], addr[3]));
}

/* The endpoint, or the ipcache identity, of an address of either family
 * (`v6` a constant at every call; IPv4: one word). */
static __always_inline struct endpoint_info *lookup_ep_of(bool v6, const __u32 *addr)
{
	return v6 ? lookup_ep6(addr) : lookup_ep4(addr[0]);
}

static __always_inline __u32 ipcache_identity_of(bool v6, const __u32 *addr)
{
	return v6 ? ipcache_identity6(addr) : ipcache_identity4(addr[0]);
}

static __always_inline __u64 endpoints_generation(void)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&podnet_lxc_gen, &zero);

	return gen ? *gen : 0;
}

/* The local pod an established flow's packet goes to (its destination
 * address `daddr`, IPv6 when `v6`), NULL when it goes to no local pod
 * (another node, the host, the world). That answer is cached in the CT
 * entry `e` (see podnet_lxc_gen in maps.h). The generation is read before
 * the lookup: an endpoint added meanwhile comes with a new generation, so
 * the stamp this lookup leaves is never trusted by a later packet. */
static __always_inline struct endpoint_info *established_dst(struct ct_entry *e, bool v6,
							     const __u32 *daddr)
{
	__u64 gen = endpoints_generation();
	struct endpoint_info *ep;

	if (e && gen && e->reserved0 == gen)
		return NULL;
	ep = lookup_ep_of(v6, daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return ep;
	if (e && gen)
		e->reserved0 = gen;
	return NULL;
}

#endif /* PODNET_EPS_H */
